//! Contact status changes: every change of `contacts.status` goes through
//! `change`, which writes the new status and its `status_changes` row (cause,
//! rule, event, actor, reason) in the caller's transaction, so the history
//! is complete by construction. `list` reads the history back. Nothing here
//! decides when a status should change.

use sqlx::Row;

use super::{Result, Store, StoreError, Tx};
use crate::domain::ContactStatus;
use crate::domain::time::Millis;
use crate::{dispatch, dispatch_tx};

/// The actor of changes cartero makes on its own.
pub const SYSTEM_ACTOR: &str = "cartero";

/// One change of a contact's status, with why it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub contact_id: i64,
    pub from: ContactStatus,
    pub to: ContactStatus,
    /// bounce | complaint | unsubscribe | operator | hygiene
    pub cause: String,
    /// The policy rule that fired, e.g. `hard-bounce`, `soft-bounce-limit`.
    pub rule: Option<String>,
    /// The event that caused it, when there is one.
    pub event_id: Option<i64>,
    pub actor: String,
    pub reason: Option<String>,
    pub occurred_at: Millis,
}

/// Applies a change if the contact still has `from` as its status, and
/// records it. Returns the `status_changes` id, or `None` when the status
/// was no longer `from` (someone else changed it first): nothing is written.
pub async fn change(tx: &mut Tx, c: &StatusChange) -> Result<Option<i64>> {
    // The change log names the rule beside what the transaction is doing.
    let outer = super::changes::origin(tx).await?;
    let by = format!(
        "{}{} by {}",
        c.cause,
        c.rule
            .as_deref()
            .map(|r| format!(" rule {r}"))
            .unwrap_or_default(),
        c.actor
    );
    let here = match &outer {
        Some(o) => format!("{o}; {by}"),
        None => by,
    };
    super::changes::set_origin(tx, &here).await?;
    let out = change_inner(tx, c).await;
    super::changes::set_origin(tx, outer.as_deref().unwrap_or("")).await?;
    out
}

async fn change_inner(tx: &mut Tx, c: &StatusChange) -> Result<Option<i64>> {
    dispatch_tx!(tx, conn => {
        let updated = sqlx::query(
            "UPDATE contacts SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(c.to.as_str())
        .bind(c.reason.as_deref().or(c.rule.as_deref()))
        .bind(c.occurred_at)
        .bind(c.contact_id)
        .bind(c.from.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO status_changes (contact_id, from_status, to_status, cause, rule, event_id, actor, \
             reason, occurred_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING id",
        )
        .bind(c.contact_id)
        .bind(c.from.as_str())
        .bind(c.to.as_str())
        .bind(&c.cause)
        .bind(&c.rule)
        .bind(c.event_id)
        .bind(&c.actor)
        .bind(&c.reason)
        .bind(c.occurred_at)
        .fetch_one(&mut *conn)
        .await?;
        Ok(Some(id))
    })
}

/// A stored change, with the contact's address.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredChange {
    pub id: i64,
    pub contact_id: i64,
    pub email: String,
    pub from_status: String,
    pub to_status: String,
    pub cause: String,
    pub rule: Option<String>,
    pub event_id: Option<i64>,
    pub actor: String,
    pub reason: Option<String>,
    pub occurred_at: Millis,
}

/// Changes, oldest first: of one contact, or of everyone, since an instant.
pub async fn list(
    store: &Store,
    contact_id: Option<i64>,
    since: Option<Millis>,
) -> Result<Vec<StoredChange>> {
    let sql = "SELECT s.id, s.contact_id, c.email, s.from_status, s.to_status, s.cause, s.rule, s.event_id, \
               s.actor, s.reason, s.occurred_at FROM status_changes s JOIN contacts c ON c.id = s.contact_id \
               WHERE ($1 IS NULL OR s.contact_id = $1) AND s.occurred_at >= $2 ORDER BY s.id";
    let since = since.unwrap_or(i64::MIN);
    dispatch!(store, pool => {
        let rows = sqlx::query(sql).bind(contact_id).bind(since).fetch_all(pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(StoredChange {
                id: r.try_get("id")?,
                contact_id: r.try_get("contact_id")?,
                email: r.try_get("email")?,
                from_status: r.try_get("from_status")?,
                to_status: r.try_get("to_status")?,
                cause: r.try_get("cause")?,
                rule: r.try_get("rule")?,
                event_id: r.try_get("event_id")?,
                actor: r.try_get("actor")?,
                reason: r.try_get("reason")?,
                occurred_at: r.try_get("occurred_at")?,
            });
        }
        Ok(out)
    })
}

/// A contact's current status.
pub async fn current(tx: &mut Tx, contact_id: i64) -> Result<Option<ContactStatus>> {
    let s: Option<String> = dispatch_tx!(tx, conn => {
        sqlx::query_scalar("SELECT status FROM contacts WHERE id = $1")
            .bind(contact_id)
            .fetch_optional(&mut *conn)
            .await?
    });
    s.map(|s| s.parse::<ContactStatus>().map_err(StoreError::Corrupt))
        .transpose()
}

/// The changes of one contact's current suppression, oldest first: the last
/// change away from `active` and every change after it (empty when the
/// contact is active). Read in the caller's transaction.
pub async fn current_suppression(tx: &mut Tx, contact_id: i64) -> Result<Vec<(i64, Option<i64>)>> {
    let rows: Vec<(i64, String, Option<i64>)> = dispatch_tx!(tx, conn => {
        sqlx::query_as(
            "SELECT id, from_status, event_id FROM status_changes WHERE contact_id = $1 ORDER BY id DESC",
        )
        .bind(contact_id)
        .fetch_all(&mut *conn)
        .await?
    });
    let mut out = Vec::new();
    for (id, from, event_id) in rows {
        out.push((id, event_id));
        if from == ContactStatus::Active.as_str() {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// A contact's id and status by address, as typed by an operator: the
/// normalised form first, else a case-insensitive match of the stored forms
/// (a contact imported before a parser change may hold an address the
/// parser now refuses; it must still be reachable).
pub async fn find_contact(
    store: &Store,
    normalized: Option<&str>,
    raw: &str,
) -> Result<Option<(i64, String)>> {
    let lower = raw.trim().to_lowercase();
    dispatch!(store, pool => {
        if let Some(n) = normalized {
            let hit: Option<(i64, String)> =
                sqlx::query_as("SELECT id, email FROM contacts WHERE email = $1")
                    .bind(n)
                    .fetch_optional(pool)
                    .await?;
            if hit.is_some() {
                return Ok(hit);
            }
        }
        Ok(sqlx::query_as(
            "SELECT id, email FROM contacts WHERE LOWER(email) = $1 OR LOWER(email_ascii) = $1 ORDER BY id LIMIT 1",
        )
        .bind(&lower)
        .fetch_optional(pool)
        .await?)
    })
}
