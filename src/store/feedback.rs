//! Feedback repository: the messages read from the bounce mailbox, the
//! events they become, and the lookups that tie a report to its send and
//! contact. Every function takes the caller's transaction, so a message's
//! row, its events and the status changes they cause commit together or not
//! at all. Nothing here decides policy; `feedback::ingest` does.

use sqlx::Row;

use super::{Result, Tx};
use crate::dispatch_tx;
use crate::domain::time::Millis;

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
}

pub async fn insert_event(tx: &mut Tx, e: &NewEvent) -> Result<i64> {
    let data = e.data.to_string();
    dispatch_tx!(tx, conn => {
        Ok(sqlx::query_scalar(
            "INSERT INTO events (contact_id, campaign_id, send_id, kind, channel, occurred_at, data) \
             VALUES ($1,$2,$3,$4,'email',$5,$6) RETURNING id",
        )
        .bind(e.contact_id)
        .bind(e.campaign_id)
        .bind(e.send_id)
        .bind(e.kind)
        .bind(e.occurred_at)
        .bind(&data)
        .fetch_one(&mut *conn)
        .await?)
    })
}

/// Soft bounces of a contact since `since`, counting each send once: a
/// message that was first delayed and then failed, or reported twice, is
/// one failed delivery, not two. Events with no send count one each.
pub async fn soft_bounces_since(tx: &mut Tx, contact_id: i64, since: Millis) -> Result<i64> {
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT COALESCE(send_id, -id)) FROM events \
             WHERE contact_id = $1 AND kind = 'bounce_soft' AND occurred_at >= $2",
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
