//! Journeys repository: where each contact stands in each journey
//! (`journey_enrolments`), what the steps did (`journey_actions`), and how
//! far each journey's trigger has been read (`journeys.scanned_to`).
//!
//! Enrolment is one INSERT ... SELECT per tick over the trigger's source,
//! unique per (journey, contact, entry) and per (journey, contact, what
//! enrolled them), so reading a source twice or from two nodes enrols
//! nobody twice. A step moves a contact with a conditional UPDATE on the
//! position it read (step and next_at), in the same transaction as the
//! step's effect: a step another node applied first is not applied again.
//! Nothing here knows journey files; `schedule::journey` decides.

use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::sends::ContactFilter;
use super::{Result, Store, Tx};
use crate::domain::time::Millis;
use crate::{dispatch, dispatch_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JourneyRow {
    pub id: i64,
    pub slug: String,
    pub created_at: Millis,
    pub scanned_to: Millis,
}

/// Returns the journey with `slug`, creating it on first use (its trigger
/// is read from `now` on). Name, path and hash follow the file.
pub async fn ensure(
    store: &Store,
    slug: &str,
    name: &str,
    file_path: &str,
    file_hash: &str,
    now: Millis,
) -> Result<JourneyRow> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, JourneyRow>(
            "INSERT INTO journeys (slug, name, file_path, file_hash, created_at, scanned_to) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (slug) DO UPDATE SET name = excluded.name, file_path = excluded.file_path, \
             file_hash = excluded.file_hash \
             RETURNING id, slug, created_at, scanned_to",
        )
        .bind(slug)
        .bind(name)
        .bind(file_path)
        .bind(file_hash)
        .bind(now)
        .fetch_one(pool)
        .await?)
    })
}

pub async fn find(store: &Store, slug: &str) -> Result<Option<JourneyRow>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, JourneyRow>(
            "SELECT id, slug, created_at, scanned_to FROM journeys WHERE slug = $1",
        )
        .bind(slug)
        .fetch_optional(pool)
        .await?)
    })
}

/// Records that the trigger's sources were read up to `to` (never back).
pub async fn scanned(store: &Store, journey_id: i64, to: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE journeys SET scanned_to = $1 WHERE id = $2 AND scanned_to < $1")
            .bind(to)
            .bind(journey_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Where a trigger's contacts come from, each with the key that makes its
/// enrolment unique.
pub enum Source<'a> {
    /// Consent grants for the list in (since, until].
    ListJoined { list_id: i64, since: Millis },
    /// Sign-ups to the list confirmed in (since, until].
    SignupConfirmed { list_id: i64, since: Millis },
    /// Events API conversions of this kind received in (since, until].
    Event { kind: &'a str, since: Millis },
    /// Contacts whose date attribute `key` matches one of `days`: (entry
    /// key, the date to match: `YYYY-MM-DD`, or `MM-DD` when `yearly`).
    Date {
        key: &'a str,
        days: &'a [(String, String)],
        yearly: bool,
    },
    /// Contacts the filter selects now.
    Filter(&'a dyn ContactFilter),
    /// Contacts mailed at least once whose last open or click (or, without
    /// one, their creation) is before `before`; keyed by that instant, so
    /// engaging again and falling silent again is a new entry.
    Silent { before: Millis },
}

/// The last time a contact engaged: the later of its last open and last
/// click, else when it was created.
const LAST_ENGAGED: &str = "COALESCE(CASE WHEN c.last_open_at IS NULL THEN c.last_click_at \
     WHEN c.last_click_at IS NULL OR c.last_open_at >= c.last_click_at THEN c.last_open_at \
     ELSE c.last_click_at END, c.created_at)";

/// The first position of a new enrolment.
pub struct Entry<'a> {
    pub journey_id: i64,
    /// The journey's list: only active contacts subscribed to it enter.
    pub list_id: i64,
    pub reentry: bool,
    pub step: &'a str,
    pub next_at: Millis,
    pub now: Millis,
}

/// Enrols the source's contacts who are active, subscribed to the list and
/// not in the journey already (nor ever, without re-entry). Returns how
/// many entered.
pub async fn enrol(store: &Store, source: &Source<'_>, e: &Entry<'_>) -> Result<u64> {
    macro_rules! body {
        ($pool:expr, $db:ty, $push:ident, $json_text:expr) => {{
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO journey_enrolments (journey_id, contact_id, entry, entry_key, step, next_at, \
                 state, entered_at, updated_at) SELECT ",
            );
            qb.push_bind(e.journey_id);
            qb.push(", src.contact_id, COALESCE((SELECT MAX(x.entry) FROM journey_enrolments x \
                     WHERE x.journey_id = ");
            qb.push_bind(e.journey_id);
            qb.push(" AND x.contact_id = src.contact_id), 0) + 1, src.entry_key, ");
            qb.push_bind(e.step);
            qb.push(", ");
            qb.push_bind(e.next_at);
            qb.push(", 'active', ");
            qb.push_bind(e.now);
            qb.push(", ");
            qb.push_bind(e.now);
            qb.push(" FROM (");
            match source {
                Source::ListJoined { list_id, since } => {
                    qb.push("SELECT ce.contact_id AS contact_id, 'grant:' || ce.id AS entry_key, ce.occurred_at AS at \
                             FROM consent_events ce WHERE ce.action = 'grant' AND ce.list_id = ");
                    qb.push_bind(*list_id);
                    qb.push(" AND ce.occurred_at > ");
                    qb.push_bind(*since);
                    qb.push(" AND ce.occurred_at <= ");
                    qb.push_bind(e.now);
                }
                Source::SignupConfirmed { list_id, since } => {
                    qb.push("SELECT s.contact_id AS contact_id, 'signup:' || s.id AS entry_key, s.confirmed_at AS at \
                             FROM signups s WHERE s.state = 'confirmed' AND s.contact_id IS NOT NULL \
                             AND s.list_id = ");
                    qb.push_bind(*list_id);
                    qb.push(" AND s.confirmed_at > ");
                    qb.push_bind(*since);
                    qb.push(" AND s.confirmed_at <= ");
                    qb.push_bind(e.now);
                }
                Source::Event { kind, since } => {
                    qb.push("SELECT cv.contact_id AS contact_id, 'event:' || cv.id AS entry_key, cv.received_at AS at \
                             FROM conversions cv WHERE cv.contact_id IS NOT NULL AND cv.kind = ");
                    qb.push_bind(*kind);
                    qb.push(" AND cv.received_at > ");
                    qb.push_bind(*since);
                    qb.push(" AND cv.received_at <= ");
                    qb.push_bind(e.now);
                }
                Source::Date { key, days, yearly } => {
                    qb.push("SELECT c.id AS contact_id, d.entry_key AS entry_key, ");
                    qb.push_bind(e.now);
                    qb.push(" AS at FROM contacts c JOIN (");
                    for (i, (entry, date)) in days.iter().enumerate() {
                        if i > 0 {
                            qb.push(" UNION ALL ");
                        }
                        qb.push("SELECT ");
                        qb.push_bind(entry.as_str());
                        qb.push(" AS entry_key, ");
                        qb.push_bind(date.as_str());
                        qb.push(" AS target");
                    }
                    qb.push(") d ON substr(");
                    $json_text(&mut qb, *key);
                    qb.push(if *yearly { ", 6, 5)" } else { ", 1, 10)" });
                    qb.push(" = d.target WHERE c.status = 'active'");
                }
                Source::Filter(f) => {
                    qb.push("SELECT c.id AS contact_id, 'segment' AS entry_key, ");
                    qb.push_bind(e.now);
                    qb.push(" AS at FROM contacts c WHERE (");
                    f.$push(&mut qb);
                    qb.push(")");
                }
                Source::Silent { before } => {
                    qb.push("SELECT c.id AS contact_id, 'silent:' || ");
                    qb.push(LAST_ENGAGED);
                    qb.push(" AS entry_key, ");
                    qb.push_bind(e.now);
                    qb.push(" AS at FROM contacts c WHERE c.last_sent_at IS NOT NULL AND ");
                    qb.push(LAST_ENGAGED);
                    qb.push(" < ");
                    qb.push_bind(*before);
                }
            }
            qb.push(") src JOIN contacts c ON c.id = src.contact_id WHERE c.status = 'active' \
                     AND EXISTS (SELECT 1 FROM contact_lists cl WHERE cl.contact_id = c.id \
                     AND cl.subscribed = 1 AND cl.list_id = ");
            qb.push_bind(e.list_id);
            qb.push(") AND NOT EXISTS (SELECT 1 FROM journey_enrolments x WHERE x.journey_id = ");
            qb.push_bind(e.journey_id);
            qb.push(" AND x.contact_id = src.contact_id");
            if e.reentry {
                // Re-entry: after leaving, and by a trigger not used before
                // (the unique entry key refuses that one).
                qb.push(" AND x.state = 'active'");
            }
            // A key already used (a purchase that enrolled before, read
            // again) enrols nobody, nor does one from before the contact's
            // last entry (a second purchase during the first walk); of
            // several new ones for a contact, the first enrols and the
            // others meet the unique (journey, contact, entry) and do
            // nothing.
            qb.push(") AND NOT EXISTS (SELECT 1 FROM journey_enrolments y WHERE y.journey_id = ");
            qb.push_bind(e.journey_id);
            qb.push(" AND y.contact_id = src.contact_id AND (y.entry_key = src.entry_key OR y.entered_at >= src.at)) \
                     ON CONFLICT DO NOTHING");
            qb.build().execute($pool).await?.rows_affected()
        }};
    }
    fn sqlite_attr(qb: &mut QueryBuilder<'_, Sqlite>, key: &str) {
        qb.push("json_extract(c.attributes, ");
        qb.push_bind(format!("$.\"{key}\""));
        qb.push(")");
    }
    fn pg_attr(qb: &mut QueryBuilder<'_, Postgres>, key: &str) {
        qb.push("c.attributes ->> ");
        qb.push_bind(key.to_string());
    }
    Ok(match store {
        Store::Sqlite(p) => body!(p, Sqlite, push_sqlite, sqlite_attr),
        Store::Postgres(p) => body!(p, Postgres, push_postgres, pg_attr),
    })
}

/// Ends the walk of active contacts who may no longer be mailed on the
/// list: `suppressed` (bounced, complained, erased) or `unsubscribed` (the
/// status, or no consent for the list any more). With `conversion`, also
/// `converted`: an event of that kind received after they entered.
/// Returns how many left for each reason.
pub async fn exits(
    store: &Store,
    journey_id: i64,
    list_id: i64,
    conversion: Option<&str>,
    now: Millis,
) -> Result<Vec<(&'static str, u64)>> {
    const LEAVE: &str = "UPDATE journey_enrolments SET state = 'left', left_reason = $1, left_at = $2, \
         updated_at = $2, claimed_by = NULL, lease_until = NULL \
         WHERE journey_id = $3 AND state = 'active' AND ";
    let suppressed = format!(
        "{LEAVE}EXISTS (SELECT 1 FROM contacts c WHERE c.id = journey_enrolments.contact_id \
         AND c.status NOT IN ('active', 'unsubscribed'))"
    );
    let unsubscribed = format!(
        "{LEAVE}(EXISTS (SELECT 1 FROM contacts c WHERE c.id = journey_enrolments.contact_id \
         AND c.status = 'unsubscribed') OR NOT EXISTS (SELECT 1 FROM contact_lists cl \
         WHERE cl.contact_id = journey_enrolments.contact_id AND cl.subscribed = 1 AND cl.list_id = $4))"
    );
    let converted = format!(
        "{LEAVE}EXISTS (SELECT 1 FROM conversions cv WHERE cv.contact_id = journey_enrolments.contact_id \
         AND cv.kind = $4 AND cv.received_at > journey_enrolments.entered_at)"
    );
    let mut out = Vec::new();
    dispatch!(store, pool => {
        let n = sqlx::query(&suppressed)
            .bind("suppressed").bind(now).bind(journey_id)
            .execute(pool).await?.rows_affected();
        out.push(("suppressed", n));
        let n = sqlx::query(&unsubscribed)
            .bind("unsubscribed").bind(now).bind(journey_id).bind(list_id)
            .execute(pool).await?.rows_affected();
        out.push(("unsubscribed", n));
        if let Some(kind) = conversion {
            let n = sqlx::query(&converted)
                .bind("converted").bind(now).bind(journey_id).bind(kind)
                .execute(pool).await?.rows_affected();
            out.push(("converted", n));
        }
    });
    Ok(out)
}

/// An enrolment a worker holds, with the position it read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Enrolment {
    pub id: i64,
    pub contact_id: i64,
    pub entry: i64,
    pub step: String,
    pub next_at: Millis,
    pub entered_at: Millis,
    pub last_send_id: Option<i64>,
}

/// Claims up to `n` active enrolments of a journey that are due, for
/// `worker` until `lease_until`: another node skips them until the lease
/// lapses (a worker that died). PostgreSQL nodes skip each other's locked
/// rows; SQLite's single writer serialises the claim.
pub async fn claim_due(
    store: &Store,
    journey_id: i64,
    worker: &str,
    n: i64,
    lease_until: Millis,
    now: Millis,
) -> Result<Vec<Enrolment>> {
    let lock = match store {
        Store::Sqlite(_) => "",
        Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "UPDATE journey_enrolments SET claimed_by = $1, lease_until = $2 WHERE id IN \
         (SELECT id FROM journey_enrolments WHERE journey_id = $3 AND state = 'active' \
         AND next_at <= $4 AND (lease_until IS NULL OR lease_until <= $4) \
         ORDER BY next_at, id LIMIT $5{lock}) \
         RETURNING id, contact_id, entry, step, next_at, entered_at, last_send_id"
    );
    dispatch!(store, pool => {
        let mut rows = sqlx::query_as::<_, Enrolment>(&sql)
            .bind(worker)
            .bind(lease_until)
            .bind(journey_id)
            .bind(now)
            .bind(n)
            .fetch_all(pool)
            .await?;
        rows.sort_by_key(|r| (r.next_at, r.id));
        Ok(rows)
    })
}

/// Gives up `worker`'s hold on an enrolment.
pub async fn release(store: &Store, enrolment_id: i64, worker: &str) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query(
            "UPDATE journey_enrolments SET claimed_by = NULL, lease_until = NULL \
             WHERE id = $1 AND claimed_by = $2",
        )
        .bind(enrolment_id)
        .bind(worker)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Where a step sends a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move<'a> {
    /// To this step, due at this instant.
    To { step: &'a str, next_at: Millis },
    /// Out of the journey, for this reason.
    Leave(&'a str),
}

/// Moves an enrolment from the position `from` (as read when claimed)
/// inside `tx`, recording the step's action. Returns false when the
/// enrolment is no longer there (another node moved it, or it left): the
/// caller rolls back the step's effect.
pub async fn advance(
    tx: &mut Tx,
    from: &Enrolment,
    to: &Move<'_>,
    last_send_id: Option<i64>,
    action: &str,
    detail: Option<&str>,
    now: Millis,
) -> Result<bool> {
    let (step, next_at, state, reason, left_at) = match to {
        Move::To { step, next_at } => (*step, *next_at, "active", None, None),
        Move::Leave(reason) => (
            from.step.as_str(),
            from.next_at,
            "left",
            Some(*reason),
            Some(now),
        ),
    };
    let moved = dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE journey_enrolments SET step = $1, next_at = $2, state = $3, left_reason = $4, \
             left_at = $5, last_send_id = COALESCE($6, last_send_id), updated_at = $7 \
             WHERE id = $8 AND state = 'active' AND step = $9 AND next_at = $10",
        )
        .bind(step)
        .bind(next_at)
        .bind(state)
        .bind(reason)
        .bind(left_at)
        .bind(last_send_id)
        .bind(now)
        .bind(from.id)
        .bind(&from.step)
        .bind(from.next_at)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if moved == 0 {
        return Ok(false);
    }
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO journey_actions (enrolment_id, step, action, detail, occurred_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(from.id)
        .bind(&from.step)
        .bind(action)
        .bind(detail)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    });
    Ok(true)
}

pub async fn add_tag(tx: &mut Tx, contact_id: i64, tag: &str) -> Result<bool> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query("INSERT INTO contact_tags (contact_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(contact_id)
            .bind(tag)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            > 0
    }))
}

pub async fn remove_tag(tx: &mut Tx, contact_id: i64, tag: &str) -> Result<bool> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query("DELETE FROM contact_tags WHERE contact_id = $1 AND tag = $2")
            .bind(contact_id)
            .bind(tag)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            > 0
    }))
}

/// Merges `values` (a JSON object) into the contact's attributes; the
/// change log's triggers record it with the transaction's origin.
pub async fn set_attributes(
    tx: &mut Tx,
    contact_id: i64,
    values: &serde_json::Value,
    now: Millis,
) -> Result<()> {
    let json = values.to_string();
    match tx {
        Tx::Sqlite(t) => {
            // RFC 7396 merge: a journey's values are never null, so no key
            // is removed.
            sqlx::query(
                "UPDATE contacts SET attributes = json_patch(attributes, $1), updated_at = $2 \
                 WHERE id = $3",
            )
            .bind(json)
            .bind(now)
            .bind(contact_id)
            .execute(&mut **t)
            .await?;
        }
        Tx::Postgres(t) => {
            sqlx::query(
                "UPDATE contacts SET attributes = attributes || $1::jsonb, updated_at = $2 WHERE id = $3",
            )
            .bind(json)
            .bind(now)
            .bind(contact_id)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

/// Whether the send had a human open (`open`) or click (`click`): the
/// report rollups keep one row per send and kind (migration 0015).
pub async fn send_had(store: &Store, send_id: i64, kind: &str) -> Result<bool> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM report_sends WHERE send_id = $1 AND kind = $2 AND machine = 0",
        )
        .bind(send_id)
        .bind(kind)
        .fetch_one(pool)
        .await?
            > 0)
    })
}

/// Whether the contact has an event of `kind` received since `since`.
pub async fn converted_since(
    store: &Store,
    contact_id: i64,
    kind: &str,
    since: Millis,
) -> Result<bool> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM conversions WHERE contact_id = $1 AND kind = $2 AND received_at >= $3",
        )
        .bind(contact_id)
        .bind(kind)
        .bind(since)
        .fetch_one(pool)
        .await?
            > 0)
    })
}

/// Whether the filter selects the contact now.
pub async fn matches(store: &Store, contact_id: i64, filter: &dyn ContactFilter) -> Result<bool> {
    macro_rules! body {
        ($pool:expr, $db:ty, $push:ident) => {{
            let mut qb = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM contacts c WHERE c.id = ");
            qb.push_bind(contact_id);
            qb.push(" AND (");
            filter.$push(&mut qb);
            qb.push(")");
            qb.build_query_scalar::<i64>().fetch_one($pool).await? > 0
        }};
    }
    Ok(match store {
        Store::Sqlite(p) => body!(p, Sqlite, push_sqlite),
        Store::Postgres(p) => body!(p, Postgres, push_postgres),
    })
}

/// Active contacts at each step, and contacts who left by each reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub at_step: Vec<(String, u64)>,
    pub left: Vec<(String, u64)>,
}

pub async fn standing(store: &Store, journey_id: i64) -> Result<Standing> {
    let rows: Vec<(String, String, i64)> = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT state, CASE WHEN state = 'active' THEN step ELSE left_reason END, COUNT(*) \
             FROM journey_enrolments WHERE journey_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(journey_id)
        .fetch_all(pool)
        .await?
    });
    let mut s = Standing::default();
    for (state, key, n) in rows {
        let n = n.max(0) as u64;
        if state == "active" {
            s.at_step.push((key, n));
        } else {
            s.left.push((key, n));
        }
    }
    Ok(s)
}

/// What the steps did to one contact, oldest first: (step, action, detail).
pub async fn actions_of(
    store: &Store,
    journey_id: i64,
    contact_id: i64,
) -> Result<Vec<(String, String, Option<String>)>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as(
            "SELECT a.step, a.action, a.detail FROM journey_actions a \
             JOIN journey_enrolments e ON e.id = a.enrolment_id \
             WHERE e.journey_id = $1 AND e.contact_id = $2 ORDER BY a.id",
        )
        .bind(journey_id)
        .bind(contact_id)
        .fetch_all(pool)
        .await?)
    })
}
