//! Feedback repository: the messages read from the bounce mailbox, the
//! events they become, and the lookups that tie a report to its send and
//! contact. Every function takes the caller's transaction, so a message's
//! row, its events and the status changes they cause commit together or not
//! at all. Nothing here decides policy; `feedback::ingest` does.

use sqlx::Row;

use super::{Result, Store, StoreError, Tx};
use crate::domain::FeedbackEvidence;
use crate::domain::time::Millis;
use crate::{dispatch, dispatch_tx};

/// A message seen before, found by content hash or Message-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenMessage {
    pub id: i64,
    pub outcome: String,
}

/// Looks for an earlier copy of a message: the same bytes, or the same
/// Message-ID (the same report fetched from another mailbox, or re-delivered
/// with different trace headers).
pub async fn find_message(
    tx: &mut Tx,
    content_hash: &str,
    message_id: Option<&str>,
) -> Result<Option<SeenMessage>> {
    let row = dispatch_tx!(tx, conn => {
        sqlx::query(
            "SELECT id, outcome FROM feedback_messages WHERE content_hash = $1 \
             OR (message_id IS NOT NULL AND message_id = $2) ORDER BY id LIMIT 1",
        )
        .bind(content_hash)
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| -> std::result::Result<SeenMessage, sqlx::Error> {
            Ok(SeenMessage { id: r.try_get("id")?, outcome: r.try_get("outcome")? })
        })
        .transpose()?
    });
    Ok(row)
}

/// A row of `feedback_messages`.
#[derive(Debug, Clone)]
pub struct FeedbackMessage<'a> {
    pub message_id: Option<&'a str>,
    pub content_hash: &'a str,
    pub received_at: Millis,
    pub source: &'a str,
    pub kind: &'a str,
    pub outcome: &'a str,
    pub kept_aside_reason: Option<&'a str>,
    pub raw_size: i64,
    pub records: i64,
    pub matched: i64,
}

/// Inserts the message's row and returns its id (events refer to it).
pub async fn insert_message(tx: &mut Tx, m: &FeedbackMessage<'_>) -> Result<i64> {
    dispatch_tx!(tx, conn => {
        Ok(sqlx::query_scalar(
            "INSERT INTO feedback_messages (message_id, content_hash, received_at, source, kind, outcome, \
             kept_aside_reason, raw_size, records, matched) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
        )
        .bind(m.message_id)
        .bind(m.content_hash)
        .bind(m.received_at)
        .bind(m.source)
        .bind(m.kind)
        .bind(m.outcome)
        .bind(m.kept_aside_reason)
        .bind(m.raw_size)
        .bind(m.records)
        .bind(m.matched)
        .fetch_one(&mut *conn)
        .await?)
    })
}

/// Rewrites a row that was kept aside and has now been read again.
pub async fn update_message(tx: &mut Tx, id: i64, m: &FeedbackMessage<'_>) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE feedback_messages SET received_at = $1, source = $2, kind = $3, outcome = $4, \
             kept_aside_reason = $5, records = $6, matched = $7 WHERE id = $8",
        )
        .bind(m.received_at)
        .bind(m.source)
        .bind(m.kind)
        .bind(m.outcome)
        .bind(m.kept_aside_reason)
        .bind(m.records)
        .bind(m.matched)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// The outcome of a stored message: the counters a later run reports.
pub async fn set_outcome(
    tx: &mut Tx,
    id: i64,
    outcome: &str,
    kept_aside_reason: Option<&str>,
    matched: i64,
) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE feedback_messages SET outcome = $1, kept_aside_reason = $2, matched = $3 WHERE id = $4",
        )
        .bind(outcome)
        .bind(kept_aside_reason)
        .bind(matched)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// A send a report refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRef {
    pub send_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    /// The address the message was sent to (ASCII form when there is one).
    pub email: String,
}

const SEND_COLUMNS: &str = "SELECT id, contact_id, campaign_id, email FROM sends WHERE ";

fn send_ref<R: Row>(r: &R) -> std::result::Result<SendRef, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SendRef {
        send_id: r.try_get("id")?,
        contact_id: r.try_get("contact_id")?,
        campaign_id: r.try_get("campaign_id")?,
        email: r.try_get("email")?,
    })
}

pub async fn send_by_id(tx: &mut Tx, send_id: i64) -> Result<Option<SendRef>> {
    let sql = format!("{SEND_COLUMNS}id = $1");
    Ok(dispatch_tx!(tx, conn => {
        match sqlx::query(&sql).bind(send_id).fetch_optional(&mut *conn).await? {
            Some(r) => Some(send_ref(&r)?),
            None => None,
        }
    }))
}

/// The send whose message carried this Message-ID (without angle brackets).
pub async fn send_by_message_id(tx: &mut Tx, message_id: &str) -> Result<Option<SendRef>> {
    let sql = format!("{SEND_COLUMNS}message_id = $1 ORDER BY id LIMIT 1");
    Ok(dispatch_tx!(tx, conn => {
        match sqlx::query(&sql).bind(message_id).fetch_optional(&mut *conn).await? {
            Some(r) => Some(send_ref(&r)?),
            None => None,
        }
    }))
}

/// The contact with this address: by its normalised form when the address
/// parses, else (an address the parser refuses but a contact may still
/// hold, or a report that changed the local part's case) by a
/// case-insensitive comparison of the stored forms.
pub async fn contact_by_address(
    tx: &mut Tx,
    normalized: Option<&str>,
    raw: &str,
) -> Result<Option<i64>> {
    if let Some(n) = normalized {
        let id: Option<i64> = dispatch_tx!(tx, conn => {
            sqlx::query_scalar("SELECT id FROM contacts WHERE email = $1")
                .bind(n)
                .fetch_optional(&mut *conn)
                .await?
        });
        if id.is_some() {
            return Ok(id);
        }
    }
    let lower = raw.to_lowercase();
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_scalar(
            "SELECT id FROM contacts WHERE LOWER(email) = $1 OR LOWER(email_ascii) = $1 ORDER BY id LIMIT 1",
        )
        .bind(&lower)
        .fetch_optional(&mut *conn)
        .await?
    }))
}

/// A contact's current status, as stored.
pub async fn contact_status(tx: &mut Tx, contact_id: i64) -> Result<Option<String>> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_scalar("SELECT status FROM contacts WHERE id = $1")
            .bind(contact_id)
            .fetch_optional(&mut *conn)
            .await?
    }))
}

/// An interaction to record in `events`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub contact_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub send_id: Option<i64>,
    /// bounce_hard | bounce_soft | complaint | autoreply | unsubscribe
    pub kind: &'static str,
    pub occurred_at: Millis,
    pub data: serde_json::Value,
    /// How a feedback event was tied to its contact (`events.evidence`).
    pub evidence: Option<FeedbackEvidence>,
}

pub async fn insert_event(tx: &mut Tx, e: &NewEvent) -> Result<i64> {
    let data = e.data.to_string();
    dispatch_tx!(tx, conn => {
        Ok(sqlx::query_scalar(
            "INSERT INTO events (contact_id, campaign_id, send_id, kind, channel, occurred_at, data, evidence) \
             VALUES ($1,$2,$3,$4,'email',$5,$6,$7) RETURNING id",
        )
        .bind(e.contact_id)
        .bind(e.campaign_id)
        .bind(e.send_id)
        .bind(e.kind)
        .bind(e.occurred_at)
        .bind(&data)
        .bind(e.evidence.map(FeedbackEvidence::as_str))
        .fetch_one(&mut *conn)
        .await?)
    })
}

/// Soft bounces of a contact since `since`, counting each send once: a
/// message that was first delayed and then failed, or reported twice, is
/// one failed delivery, not two. Events with no send count one each.
/// Reports tied to the contact by address alone (or a guessable
/// Message-ID) are not counted: forged soft bounces must not add up to a
/// suppression. Events from before evidence was recorded (NULL) count.
pub async fn soft_bounces_since(tx: &mut Tx, contact_id: i64, since: Millis) -> Result<i64> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT COALESCE(send_id, -id)) FROM events \
             WHERE contact_id = $1 AND kind = 'bounce_soft' AND occurred_at >= $2 \
             AND (evidence IS NULL OR evidence NOT IN ('address_only', 'guessable_message_id'))",
        )
        .bind(contact_id)
        .bind(since)
        .fetch_one(&mut *conn)
        .await?
    }))
}

/// Counts a bounce on the contact (the `bounce_count` column).
pub async fn count_bounce(tx: &mut Tx, contact_id: i64) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query("UPDATE contacts SET bounce_count = bounce_count + 1 WHERE id = $1")
            .bind(contact_id)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// A report held for an operator (`feedback_holds`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    pub id: i64,
    pub event_id: i64,
    pub feedback_message_id: i64,
    pub contact_id: i64,
    pub email: String,
    /// hard | soft | complaint | unsubscribe
    pub kind: String,
    pub evidence: FeedbackEvidence,
    pub state: HoldState,
    pub held_at: Millis,
    pub decided_at: Option<Millis>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// The report's own source and the event's details, for the reviewer.
    pub source: String,
    pub data: String,
    /// The event's send, when the report named one (by a guessable Message-ID).
    pub send_id: Option<i64>,
    pub campaign_id: Option<i64>,
}

/// Where a held report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    Held,
    Confirmed,
    Dismissed,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Dismissed => "dismissed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "held" => Ok(Self::Held),
            "confirmed" => Ok(Self::Confirmed),
            "dismissed" => Ok(Self::Dismissed),
            other => Err(StoreError::Corrupt(format!(
                "feedback_holds.state {other:?}"
            ))),
        }
    }
}

/// Holds a report for review.
pub async fn insert_hold(
    tx: &mut Tx,
    event_id: i64,
    feedback_message_id: i64,
    contact_id: i64,
    kind: &str,
    evidence: FeedbackEvidence,
    held_at: Millis,
) -> Result<i64> {
    dispatch_tx!(tx, conn => {
        Ok(sqlx::query_scalar(
            "INSERT INTO feedback_holds (event_id, feedback_message_id, contact_id, kind, evidence, state, held_at) \
             VALUES ($1,$2,$3,$4,$5,'held',$6) RETURNING id",
        )
        .bind(event_id)
        .bind(feedback_message_id)
        .bind(contact_id)
        .bind(kind)
        .bind(evidence.as_str())
        .bind(held_at)
        .fetch_one(&mut *conn)
        .await?)
    })
}

const HOLD_SELECT: &str = "SELECT h.id, h.event_id, h.feedback_message_id, h.contact_id, c.email, h.kind, \
     h.evidence, h.state, h.held_at, h.decided_at, h.decided_by, h.decision_reason, m.source, e.data, \
     e.send_id, e.campaign_id \
     FROM feedback_holds h JOIN contacts c ON c.id = h.contact_id \
     JOIN feedback_messages m ON m.id = h.feedback_message_id JOIN events e ON e.id = h.event_id ";

fn hold_row<R: Row>(r: &R) -> Result<Hold>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let evidence: String = r.try_get("evidence")?;
    let state: String = r.try_get("state")?;
    Ok(Hold {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        feedback_message_id: r.try_get("feedback_message_id")?,
        contact_id: r.try_get("contact_id")?,
        email: r.try_get("email")?,
        kind: r.try_get("kind")?,
        evidence: evidence.parse().map_err(StoreError::Corrupt)?,
        state: HoldState::parse(&state)?,
        held_at: r.try_get("held_at")?,
        decided_at: r.try_get("decided_at")?,
        decided_by: r.try_get("decided_by")?,
        decision_reason: r.try_get("decision_reason")?,
        source: r.try_get("source")?,
        data: r.try_get("data")?,
        send_id: r.try_get("send_id")?,
        campaign_id: r.try_get("campaign_id")?,
    })
}

/// Held reports, oldest first: those still waiting, or all of them.
pub async fn list_holds(store: &Store, pending_only: bool) -> Result<Vec<Hold>> {
    let sql = format!("{HOLD_SELECT}WHERE ($1 = 0 OR h.state = 'held') ORDER BY h.id");
    let flag = i64::from(pending_only);
    dispatch!(store, pool => {
        let rows = sqlx::query(&sql).bind(flag).fetch_all(pool).await?;
        rows.iter().map(hold_row).collect()
    })
}

/// One held report, in the caller's transaction (locked on PostgreSQL, so
/// two operators cannot decide it twice).
pub async fn hold_for_update(tx: &mut Tx, id: i64) -> Result<Option<Hold>> {
    let sql = format!("{HOLD_SELECT}WHERE h.id = $1");
    match tx {
        Tx::Sqlite(t) => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **t).await?;
            row.as_ref().map(hold_row).transpose()
        }
        Tx::Postgres(t) => {
            let row = sqlx::query(&format!("{sql} FOR UPDATE OF h"))
                .bind(id)
                .fetch_optional(&mut **t)
                .await?;
            row.as_ref().map(hold_row).transpose()
        }
    }
}

/// Records the operator's decision on a held report.
pub async fn decide_hold(
    tx: &mut Tx,
    id: i64,
    state: HoldState,
    by: &str,
    reason: Option<&str>,
    at: Millis,
) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE feedback_holds SET state = $1, decided_by = $2, decision_reason = $3, decided_at = $4 \
             WHERE id = $5 AND state = 'held'",
        )
        .bind(state.as_str())
        .bind(by)
        .bind(reason)
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}
