//! Hygiene repository: contacts read page by page for re-validation, and
//! their flags (`contact_flags`: invalid, role, disposable, typo, mx), each
//! with a detail and when it was first and last seen. Nothing here decides
//! which flags apply; `hygiene::run` does.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row};

use super::{Result, Store, Tx};
use crate::domain::time::Millis;
use crate::{dispatch, dispatch_tx};

/// What hygiene needs of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HygieneRow {
    pub id: i64,
    pub email: String,
    pub domain: String,
    pub status: String,
    pub created_at: Millis,
    pub last_open_at: Option<Millis>,
    pub last_click_at: Option<Millis>,
    pub send_count: i64,
    /// The last time the contact was set back to `active` (an operator's
    /// reinstatement): a fresh start for the sunset clock.
    pub reactivated_at: Option<Millis>,
    /// When the contact's first accepted send with open or click tracking
    /// started (`sends.tracked`): silence is evidence only from then on.
    pub first_tracked_send_at: Option<Millis>,
}

/// Up to `limit` contacts with an id above `after_id`, by id (keyset
/// pagination: no OFFSET scan, stable while rows are updated). Erased
/// contacts hold no address worth checking and are left out.
pub async fn page(store: &Store, after_id: i64, limit: i64) -> Result<Vec<HygieneRow>> {
    dispatch!(store, pool => {
        let rows = sqlx::query(
            "SELECT c.id, c.email, c.domain, c.status, c.created_at, c.last_open_at, c.last_click_at, \
             c.send_count, (SELECT MAX(s.occurred_at) FROM status_changes s WHERE s.contact_id = c.id \
             AND s.to_status = 'active') AS reactivated_at, \
             (SELECT MIN(t.created_at) FROM sends t WHERE t.contact_id = c.id AND t.tracked = 1 \
             AND t.state = 'accepted') AS first_tracked_send_at \
             FROM contacts c WHERE c.id > $1 AND c.status <> 'erased' ORDER BY c.id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(HygieneRow {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                domain: r.try_get("domain")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
                last_open_at: r.try_get("last_open_at")?,
                last_click_at: r.try_get("last_click_at")?,
                send_count: r.try_get("send_count")?,
                reactivated_at: r.try_get("reactivated_at")?,
                first_tracked_send_at: r.try_get("first_tracked_send_at")?,
            });
        }
        Ok(out)
    })
}

/// Distinct domains of contacts that are not erased.
pub async fn domains(store: &Store) -> Result<Vec<String>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT domain FROM contacts WHERE status <> 'erased' ORDER BY domain",
        )
        .fetch_all(pool)
        .await?)
    })
}

/// The stored flags of these contacts: flag name → detail.
pub async fn flags_of(
    store: &Store,
    ids: &[i64],
) -> Result<HashMap<i64, HashMap<String, Option<String>>>> {
    let mut out: HashMap<i64, HashMap<String, Option<String>>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    dispatch!(store, pool => {
        let mut qb = QueryBuilder::new("SELECT contact_id, flag, detail FROM contact_flags WHERE contact_id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        for r in qb.build().fetch_all(pool).await? {
            out.entry(r.try_get("contact_id")?)
                .or_default()
                .insert(r.try_get("flag")?, r.try_get("detail")?);
        }
    });
    Ok(out)
}

/// Sets a flag (or updates its detail), keeping when it was first seen.
pub async fn set_flag(
    tx: &mut Tx,
    contact_id: i64,
    flag: &str,
    detail: Option<&str>,
    now: Millis,
) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO contact_flags (contact_id, flag, detail, first_seen_at, checked_at) VALUES ($1,$2,$3,$4,$4) \
             ON CONFLICT (contact_id, flag) DO UPDATE SET detail = excluded.detail, checked_at = excluded.checked_at",
        )
        .bind(contact_id)
        .bind(flag)
        .bind(detail)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// Removes a flag that no longer applies (the address was corrected, the
/// domain got mail servers).
pub async fn clear_flag(tx: &mut Tx, contact_id: i64, flag: &str) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query("DELETE FROM contact_flags WHERE contact_id = $1 AND flag = $2")
            .bind(contact_id)
            .bind(flag)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}
