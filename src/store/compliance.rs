//! Access, erasure and the suppression list (GDPR Art. 15, 17, 20).
//!
//! `export` gathers everything held on one contact. `erase` removes the
//! personal data from every table that holds it, in one transaction:
//! contact fields and attributes, tags, hygiene flags, sign-ups (address,
//! name, IP and user agent), journey step details, the addresses of
//! sends and their SMTP replies, the personal keys of events, the address
//! wherever a status reason quotes it, and the ledger's personal fields
//! (`consent::erase_personal_fields`, which keeps the chain verifiable). The
//! contact row stays (ids are references; its status becomes `erased`), a
//! keyed hash of the address goes on the suppression list, and the erasure
//! is recorded in `compliance_actions` and as a ledger entry. Nothing here
//! decides who may be erased.

use std::collections::HashSet;

use hmac::Mac;

use super::consent::{self, Appender};
use super::status::{self, StatusChange};
use super::{Backend, Result, Store, StoreError, Tx};
use crate::domain::ledger_key::{LedgerKey, LedgerKeys, field, hex};
use crate::domain::time::Millis;
use crate::domain::{ContactStatus, EmailAddress};
use crate::{dispatch, dispatch_tx};

/// The keys of an event's `data` an erasure keeps: what the event was, not
/// who it was about (recipient, diagnostic text, IP, user agent and URLs go).
pub const EVENT_KEYS_KEPT: &[&str] = &[
    "feedback_message_id",
    "reason",
    "status",
    "action",
    "reply_code",
    "feedback_type",
    "matched_by",
    "link_id",
    "classification",
    "rule",
];

/// The keyed hash of a normalised address on the suppression list. Keyed:
/// a plain hash of an address is reversed by hashing candidate addresses.
pub fn suppression_digest(key: &LedgerKey, email: &str) -> String {
    let mut m = key.mac();
    let mut up = |b: &[u8]| m.update(b);
    field(&mut up, b"cartero suppression v1");
    field(&mut up, email.as_bytes());
    hex(&m.finalize().into_bytes())
}

/// The suppression list, loaded once for a bulk check (an import).
pub struct Suppressions {
    digests: HashSet<String>,
    keys: Option<std::sync::Arc<LedgerKeys>>,
}

impl Suppressions {
    /// Reads the list in `tx`. With entries on it, the check needs the keys
    /// that hashed them.
    pub async fn load(tx: &mut Tx, keys: Option<std::sync::Arc<LedgerKeys>>) -> Result<Self> {
        let digests: Vec<String> = dispatch_tx!(tx, conn => {
            sqlx::query_scalar("SELECT digest FROM suppressions")
                .fetch_all(&mut *conn)
                .await?
        });
        if !digests.is_empty() && keys.is_none() {
            return Err(StoreError::Ledger(
                "the suppression list of erased addresses needs the ledger key: set [compliance] ledger_key"
                    .into(),
            ));
        }
        Ok(Self {
            digests: digests.into_iter().collect(),
            keys,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether the address was erased on request and must not come back.
    pub fn contains(&self, email: &EmailAddress) -> bool {
        if self.digests.is_empty() {
            return false;
        }
        self.keys.as_ref().is_some_and(|keys| {
            keys.all().any(|k| {
                self.digests
                    .contains(&suppression_digest(k, email.as_str()))
            })
        })
    }
}

/// Whether one address is on the suppression list (a sign-up form asks this).
pub async fn is_suppressed(store: &Store, keys: &LedgerKeys, email: &EmailAddress) -> Result<bool> {
    for k in keys.all() {
        let d = suppression_digest(k, email.as_str());
        let hits: i64 = dispatch!(store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM suppressions WHERE digest = $1")
                .bind(&d)
                .fetch_one(pool)
                .await?
        });
        if hits > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What an erasure changed, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erasure {
    pub contact_id: i64,
    pub ledger_entries: u64,
    pub tags: u64,
    pub flags: u64,
    pub sends: u64,
    pub events: u64,
    pub status_reasons: u64,
    /// Sign-up rows (confirmed or not) of the contact or of the address.
    pub signups: u64,
    /// Journey steps' records whose detail was blanked.
    pub journey_actions: u64,
    pub action_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("contact {0} does not exist")]
    NotFound(i64),
    #[error("contact {0} is erased already")]
    AlreadyErased(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Erases a contact's personal data (see the module comment).
pub async fn erase(
    store: &Store,
    keys: &LedgerKeys,
    contact_id: i64,
    reason: &str,
    actor: &str,
    now: Millis,
) -> std::result::Result<Erasure, EraseError> {
    let mut tx = store.begin().await?;
    super::changes::set_origin(&mut tx, &format!("contacts erase by {actor}")).await?;
    let mut appender = Appender::start_with(&mut tx, Some(keys)).await?;
    let row: Option<(String, String)> = dispatch_tx!(&mut tx, conn => {
        sqlx::query_as("SELECT email, status FROM contacts WHERE id = $1")
            .bind(contact_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::from)?
    });
    let Some((email, status_text)) = row else {
        return Err(EraseError::NotFound(contact_id));
    };
    let from: ContactStatus = status_text.parse().map_err(StoreError::Corrupt)?;
    if from == ContactStatus::Erased {
        return Err(EraseError::AlreadyErased(contact_id));
    }
    let mut out = Erasure {
        contact_id,
        ..Default::default()
    };
    let placeholder = format!("erased:{contact_id}");
    let digest = suppression_digest(keys.current(), &email);
    let lower = email.to_lowercase();
    out.ledger_entries =
        consent::erase_personal_fields(&mut tx, &mut appender, contact_id, reason, now).await?;
    let events: Vec<(i64, String)> = dispatch_tx!(&mut tx, conn => {
        sqlx::query(
            "INSERT INTO suppressions (digest, key_id, reason, contact_id, created_at) \
             VALUES ($1, $2, 'erasure', $3, $4) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest)
        .bind(keys.current().id())
        .bind(contact_id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?;
        sqlx::query(
            "UPDATE contacts SET email = $1, email_ascii = NULL, domain = 'erased.invalid', \
             first_name = NULL, last_name = NULL, locale = NULL, timezone = NULL, attributes = '{}', \
             updated_at = $2 WHERE id = $3",
        )
        .bind(&placeholder)
        .bind(now)
        .bind(contact_id)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?;
        out.tags = sqlx::query("DELETE FROM contact_tags WHERE contact_id = $1")
            .bind(contact_id)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?
            .rows_affected();
        out.flags = sqlx::query("DELETE FROM contact_flags WHERE contact_id = $1")
            .bind(contact_id)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?
            .rows_affected();
        // The preference centre's records keep old and new values of the
        // contact's own data; the erasure closes an open request to be
        // forgotten (it is what that request asked for).
        sqlx::query(
            "UPDATE contact_requests SET old_value = NULL, new_value = NULL, evidence = '{}', \
             status = CASE WHEN status = 'open' THEN 'closed' ELSE status END WHERE contact_id = $1",
        )
        .bind(contact_id)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?;
        // An SMTP reply often quotes the address ("550 5.1.1 <ana@...>").
        out.sends = sqlx::query("UPDATE sends SET email = $1, smtp_reply = NULL WHERE contact_id = $2")
            .bind(&placeholder)
            .bind(contact_id)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?
            .rows_affected();
        // A sign-up keeps what the form was sent (address, name) and the
        // request's IP and user agent; an unconfirmed one is not linked to
        // the contact, only to the address. The row stays (the ledger's
        // grant points at it), without anything that names the person.
        out.signups = sqlx::query(
            "UPDATE signups SET email = $1, name = NULL, signup_ip = NULL, signup_ua = NULL, \
             confirm_ip = NULL, confirm_ua = NULL WHERE contact_id = $2 OR lower(email) = $3",
        )
        .bind(&placeholder)
        .bind(contact_id)
        .bind(&lower)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        // A journey's `set` step records the value it wrote (an attribute).
        out.journey_actions = sqlx::query(
            "UPDATE journey_actions SET detail = NULL WHERE detail IS NOT NULL AND enrolment_id IN \
             (SELECT id FROM journey_enrolments WHERE contact_id = $1)",
        )
        .bind(contact_id)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        sqlx::query_as("SELECT id, data FROM events WHERE contact_id = $1")
            .bind(contact_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::from)?
    });
    for (id, data) in events {
        let kept = keep_event_keys(&data);
        if kept != data {
            dispatch_tx!(&mut tx, conn => {
                sqlx::query("UPDATE events SET data = $1 WHERE id = $2")
                    .bind(&kept)
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from)?;
            });
            out.events += 1;
        }
    }
    // Status reasons written from bounces may quote the address.
    let reasons: Vec<(i64, String)> = dispatch_tx!(&mut tx, conn => {
        sqlx::query_as("SELECT id, reason FROM status_changes WHERE contact_id = $1 AND reason IS NOT NULL")
            .bind(contact_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::from)?
    });
    for (id, text) in reasons {
        if text.to_lowercase().contains(&lower) {
            dispatch_tx!(&mut tx, conn => {
                sqlx::query("UPDATE status_changes SET reason = '[erased]' WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from)?;
            });
            out.status_reasons += 1;
        }
    }
    status::change(
        &mut tx,
        &StatusChange {
            contact_id,
            from,
            to: ContactStatus::Erased,
            cause: "operator".into(),
            rule: Some("erasure".into()),
            event_id: None,
            actor: actor.to_string(),
            reason: Some(reason.to_string()),
            occurred_at: now,
        },
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("status changed during the erasure".into()))?;
    let details = serde_json::to_string(&out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.action_id = dispatch_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO compliance_actions (kind, contact_id, actor, reason, details, occurred_at) \
             VALUES ('erase', $1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(contact_id)
        .bind(actor)
        .bind(reason)
        .bind(&details)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::from)?
    });
    tx.commit().await?;
    Ok(out)
}

/// An event's data with only the keys in `EVENT_KEYS_KEPT`.
fn keep_event_keys(data: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(m)) => {
            let kept: serde_json::Map<String, serde_json::Value> = m
                .into_iter()
                .filter(|(k, _)| EVENT_KEYS_KEPT.contains(&k.as_str()))
                .collect();
            serde_json::Value::Object(kept).to_string()
        }
        _ => "{}".into(),
    }
}

/// One column of an exported table: a plain value or JSON stored as text.
enum Col<'a> {
    Plain(&'a str),
    Json(&'a str),
}

/// A query that folds the rows of `from` (which binds the contact id as $1)
/// into one JSON array of objects, in `order`.
fn json_array_sql(backend: Backend, cols: &[Col], from: &str, order: &str) -> String {
    let mut pairs = Vec::with_capacity(cols.len());
    for c in cols {
        let (name, expr) = match (c, backend) {
            (Col::Plain(e), _) => (e, e.to_string()),
            (Col::Json(e), Backend::Sqlite) => (e, format!("json({e})")),
            (Col::Json(e), Backend::Postgres) => (e, format!("({e})::json")),
        };
        let name = name.rsplit('.').next().unwrap_or(name);
        pairs.push(format!("'{name}', {expr}"));
    }
    let pairs = pairs.join(", ");
    match backend {
        Backend::Sqlite => format!(
            "SELECT COALESCE(json_group_array(json(o)), '[]') FROM \
             (SELECT json_object({pairs}) AS o {from} ORDER BY {order})"
        ),
        Backend::Postgres => format!(
            "SELECT COALESCE(json_agg(json_build_object({pairs}) ORDER BY {order}), '[]')::text {from}"
        ),
    }
}

async fn json_rows(
    store: &Store,
    cols: &[Col<'_>],
    from: &str,
    order: &str,
    id: i64,
) -> Result<serde_json::Value> {
    let sql = json_array_sql(store.backend(), cols, from, order);
    let text: String = dispatch!(store, pool => {
        sqlx::query_scalar(&sql).bind(id).fetch_one(pool).await?
    });
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("export of {from}: {e}")))
}

/// Everything held on one contact (GDPR Art. 15 and 20): fields,
/// attributes, tags, lists, consent entries with their evidence, sends,
/// events, status changes, hygiene flags, compliance actions, sign-ups,
/// preference-centre requests, conversions, journeys and the change log.
pub async fn export(store: &Store, contact_id: i64) -> Result<serde_json::Value> {
    use Col::{Json, Plain};
    let contact = json_rows(
        store,
        &[
            Plain("id"),
            Plain("email"),
            Plain("email_ascii"),
            Plain("domain"),
            Plain("first_name"),
            Plain("last_name"),
            Plain("locale"),
            Plain("timezone"),
            Json("attributes"),
            Plain("status"),
            Plain("status_reason"),
            Plain("created_at"),
            Plain("updated_at"),
            Plain("last_sent_at"),
            Plain("last_open_at"),
            Plain("last_click_at"),
            Plain("send_count"),
            Plain("open_count"),
            Plain("click_count"),
            Plain("bounce_count"),
        ],
        "FROM contacts WHERE id = $1",
        "id",
        contact_id,
    )
    .await?;
    let Some(contact) = contact.as_array().and_then(|a| a.first()).cloned() else {
        return Err(StoreError::Corrupt(format!(
            "contact {contact_id} vanished"
        )));
    };
    let tags = json_rows(
        store,
        &[Plain("tag")],
        "FROM contact_tags WHERE contact_id = $1",
        "tag",
        contact_id,
    )
    .await?;
    let lists = json_rows(
        store,
        &[
            Plain("l.name"),
            Plain("cl.subscribed"),
            Plain("cl.changed_at"),
        ],
        "FROM contact_lists cl JOIN lists l ON l.id = cl.list_id WHERE cl.contact_id = $1",
        "l.name",
        contact_id,
    )
    .await?;
    let consents = json_rows(
        store,
        &[
            Plain("e.id"),
            Plain("l.name"),
            Plain("e.action"),
            Plain("e.occurred_at"),
            Plain("e.source"),
            Plain("e.method"),
            Plain("e.ip"),
            Plain("e.text_version"),
            Json("e.evidence"),
            Plain("e.erased_at"),
            Plain("e.hash"),
        ],
        "FROM consent_events e LEFT JOIN lists l ON l.id = e.list_id WHERE e.contact_id = $1",
        "e.id",
        contact_id,
    )
    .await?;
    let sends = json_rows(
        store,
        &[
            Plain("s.id"),
            Plain("c.slug"),
            Plain("s.email"),
            Plain("s.state"),
            Plain("s.skip_reason"),
            Plain("s.attempts"),
            Plain("s.message_id"),
            Plain("s.smtp_code"),
            Plain("s.smtp_reply"),
            Plain("s.created_at"),
            Plain("s.updated_at"),
        ],
        "FROM sends s JOIN campaigns c ON c.id = s.campaign_id WHERE s.contact_id = $1",
        "s.id",
        contact_id,
    )
    .await?;
    let events = json_rows(
        store,
        &[
            Plain("id"),
            Plain("campaign_id"),
            Plain("send_id"),
            Plain("kind"),
            Plain("channel"),
            Plain("occurred_at"),
            Json("data"),
        ],
        "FROM events WHERE contact_id = $1",
        "id",
        contact_id,
    )
    .await?;
    let status_changes = json_rows(
        store,
        &[
            Plain("id"),
            Plain("from_status"),
            Plain("to_status"),
            Plain("cause"),
            Plain("rule"),
            Plain("event_id"),
            Plain("actor"),
            Plain("reason"),
            Plain("occurred_at"),
        ],
        "FROM status_changes WHERE contact_id = $1",
        "id",
        contact_id,
    )
    .await?;
    let flags = json_rows(
        store,
        &[
            Plain("flag"),
            Plain("detail"),
            Plain("first_seen_at"),
            Plain("checked_at"),
        ],
        "FROM contact_flags WHERE contact_id = $1",
        "flag",
        contact_id,
    )
    .await?;
    let actions = json_rows(
        store,
        &[
            Plain("id"),
            Plain("kind"),
            Plain("actor"),
            Plain("reason"),
            Plain("occurred_at"),
        ],
        "FROM compliance_actions WHERE contact_id = $1",
        "id",
        contact_id,
    )
    .await?;
    // Sign-ups of the contact, and unconfirmed ones of the same address
    // (not linked to the contact until confirmed).
    let signups = json_rows(
        store,
        &[
            Plain("s.id"),
            Plain("l.name"),
            Plain("s.email"),
            Plain("s.name"),
            Plain("s.state"),
            Plain("s.text_version"),
            Plain("s.tracking"),
            Plain("s.signed_up_at"),
            Plain("s.signup_ip"),
            Plain("s.signup_ua"),
            Plain("s.mailed_at"),
            Plain("s.confirmed_at"),
            Plain("s.confirm_ip"),
            Plain("s.confirm_ua"),
        ],
        "FROM signups s JOIN lists l ON l.id = s.list_id WHERE s.contact_id = $1 \
         OR lower(s.email) = (SELECT lower(email) FROM contacts WHERE id = $1)",
        "s.id",
        contact_id,
    )
    .await?;
    let requests = json_rows(
        store,
        &[
            Plain("id"),
            Plain("kind"),
            Plain("status"),
            Json("old_value"),
            Json("new_value"),
            Json("evidence"),
            Plain("occurred_at"),
        ],
        "FROM contact_requests WHERE contact_id = $1",
        "id",
        contact_id,
    )
    .await?;
    let conversions = json_rows(
        store,
        &[
            Plain("id"),
            Plain("order_id"),
            Plain("kind"),
            Plain("value_minor"),
            Plain("currency"),
            Plain("occurred_at"),
            Plain("campaign_id"),
            Plain("link"),
        ],
        "FROM conversions WHERE contact_id = $1",
        "id",
        contact_id,
    )
    .await?;
    let journeys = json_rows(
        store,
        &[
            Plain("e.id"),
            Plain("j.slug"),
            Plain("e.entry"),
            Plain("e.step"),
            Plain("e.state"),
            Plain("e.left_reason"),
            Plain("e.entered_at"),
            Plain("e.left_at"),
        ],
        "FROM journey_enrolments e JOIN journeys j ON j.id = e.journey_id WHERE e.contact_id = $1",
        "e.id",
        contact_id,
    )
    .await?;
    let changes = json_rows(
        store,
        &[
            Plain("id"),
            Plain("field"),
            Plain("old_value"),
            Plain("new_value"),
            Plain("origin"),
            Plain("occurred_at"),
        ],
        "FROM contact_changes WHERE contact_id = $1",
        "id",
        contact_id,
    )
    .await?;
    Ok(serde_json::json!({
        "format": "cartero-contact-export/1",
        "contact": contact,
        "tags": tags.as_array().map(|a| a.iter().filter_map(|t| t.get("tag").cloned()).collect::<Vec<_>>()),
        "lists": lists,
        "consents": consents,
        "sends": sends,
        "events": events,
        "status_changes": status_changes,
        "hygiene_flags": flags,
        "compliance_actions": actions,
        "signups": signups,
        "requests": requests,
        "conversions": conversions,
        "journeys": journeys,
        "changes": changes,
    }))
}

/// Which ledger entries `stream_log` reads; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// A list name; withdrawals from every list match too.
    pub list: Option<String>,
    /// A campaign slug, through the send the evidence names.
    pub campaign: Option<String>,
    pub method: Option<String>,
    pub action: Option<String>,
    pub contact_id: Option<i64>,
    /// Only entries with a larger id (the admin page's next page).
    pub after_id: Option<i64>,
}

/// One entry of the consent log, with its evidence as stored.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub occurred_at: Millis,
    pub email: String,
    /// `None`: every list.
    pub list: Option<String>,
    pub action: String,
    pub source: String,
    pub method: String,
    pub text_version: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub send_id: Option<i64>,
    pub campaign: Option<String>,
    pub evidence: String,
    pub erased_at: Option<Millis>,
}

/// The header of the log as CSV (`compliance log --format csv` and the
/// admin page's download write the same bytes).
pub const LOG_CSV_HEADER: [&str; 14] = [
    "id",
    "occurred_at",
    "email",
    "list",
    "action",
    "source",
    "method",
    "text_version",
    "ip",
    "user_agent",
    "campaign",
    "send_id",
    "evidence",
    "erased_at",
];

impl LogRow {
    /// The row's CSV fields, in [`LOG_CSV_HEADER`]'s order.
    pub fn csv_fields(&self) -> [String; 14] {
        use crate::domain::time::to_rfc3339;
        [
            self.id.to_string(),
            to_rfc3339(self.occurred_at),
            self.email.clone(),
            self.list.clone().unwrap_or_default(),
            self.action.clone(),
            self.source.clone(),
            self.method.clone(),
            self.text_version.clone().unwrap_or_default(),
            self.ip.clone().unwrap_or_default(),
            self.user_agent.clone().unwrap_or_default(),
            self.campaign.clone().unwrap_or_default(),
            self.send_id.map(|s| s.to_string()).unwrap_or_default(),
            self.evidence.clone(),
            self.erased_at.map(to_rfc3339).unwrap_or_default(),
        ]
    }
}

/// Calls `row` for every matching ledger entry, oldest first, as the
/// database streams them: a million entries are never held at once. Stops
/// early when `row` returns false (its writer failed).
pub async fn stream_log(
    store: &Store,
    f: &LogFilter,
    mut row: impl FnMut(LogRow) -> bool,
) -> Result<u64> {
    use futures::TryStreamExt;
    let sql = log_sql(store.backend());
    let mut n = 0u64;
    dispatch!(store, pool => {
        let mut rows = bind_log(sqlx::query_as::<_, LogRow>(&sql), f).fetch(pool);
        while let Some(r) = rows.try_next().await? {
            if !row(r) {
                break;
            }
            n += 1;
        }
    });
    Ok(n)
}

/// [`stream_log`] into a channel: the cursor waits while the channel is
/// full, so a slow reader (an HTTP download) holds back the query rather
/// than filling memory. Stops when the receiver is gone.
pub async fn stream_log_into(
    store: &Store,
    f: &LogFilter,
    tx: &tokio::sync::mpsc::Sender<LogRow>,
) -> Result<u64> {
    use futures::TryStreamExt;
    let sql = log_sql(store.backend());
    let mut n = 0u64;
    dispatch!(store, pool => {
        let mut rows = bind_log(sqlx::query_as::<_, LogRow>(&sql), f).fetch(pool);
        while let Some(r) = rows.try_next().await? {
            if tx.send(r).await.is_err() {
                break;
            }
            n += 1;
        }
    });
    Ok(n)
}

/// The log's query; [`bind_log`] binds a [`LogFilter`] to it.
fn log_sql(backend: Backend) -> String {
    let (ua, send) = match backend {
        Backend::Sqlite => (
            "CAST(json_extract(e.evidence, '$.user_agent') AS TEXT)",
            "CASE WHEN json_type(e.evidence, '$.send_id') = 'integer' \
             THEN json_extract(e.evidence, '$.send_id') END",
        ),
        Backend::Postgres => (
            "(e.evidence::jsonb ->> 'user_agent')",
            "CASE WHEN jsonb_typeof(e.evidence::jsonb -> 'send_id') = 'number' \
             THEN (e.evidence::jsonb ->> 'send_id')::bigint END",
        ),
    };
    format!(
        "SELECT e.id, e.occurred_at, c.email, l.name AS list, e.action, e.source, e.method, \
         e.text_version, e.ip, {ua} AS user_agent, s.id AS send_id, cp.slug AS campaign, e.evidence, \
         e.erased_at \
         FROM consent_events e JOIN contacts c ON c.id = e.contact_id \
         LEFT JOIN lists l ON l.id = e.list_id \
         LEFT JOIN sends s ON s.id = {send} \
         LEFT JOIN campaigns cp ON cp.id = s.campaign_id \
         WHERE ($1 IS NULL OR e.occurred_at >= $1) AND ($2 IS NULL OR e.occurred_at < $2) \
           AND ($3 IS NULL OR l.name = $3 OR e.list_id IS NULL) AND ($4 IS NULL OR cp.slug = $4) \
           AND ($5 IS NULL OR e.method = $5) AND ($6 IS NULL OR e.action = $6) \
           AND ($7 IS NULL OR e.contact_id = $7) AND ($8 IS NULL OR e.id > $8) \
         ORDER BY e.id"
    )
}

fn bind_log<'q, DB, O>(
    q: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    f: &'q LogFilter,
) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(f.since)
        .bind(f.until)
        .bind(f.list.clone())
        .bind(f.campaign.clone())
        .bind(f.method.clone())
        .bind(f.action.clone())
        .bind(f.contact_id)
        .bind(f.after_id)
}

/// A promise the data shows was broken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Violation {
    /// A message was accepted for a contact whose latest consent entry for
    /// the campaign's list, at that time, was a withdrawal.
    SentAfterWithdrawal {
        send_id: i64,
        campaign: String,
        email: String,
        sent_at: Millis,
        withdrawn_at: Millis,
        entry_id: i64,
    },
    /// A message was accepted with no consent recorded for the campaign's list.
    SentWithoutConsent {
        send_id: i64,
        campaign: String,
        list: String,
        email: String,
        sent_at: Millis,
    },
    /// The list state still says subscribed after a withdrawal.
    WithdrawalNotApplied {
        email: String,
        list: String,
        entry_id: i64,
        withdrawn_at: Millis,
    },
    /// A withdrawal took effect later than the limit after it was requested.
    SlowWithdrawal {
        email: String,
        entry_id: i64,
        requested_at: Millis,
        applied_at: Millis,
    },
    /// A double opt-in request still unconfirmed after the limit: an
    /// address held without consent (the sign-up row keeps it).
    DoiPending {
        signup_id: i64,
        list: String,
        email: String,
        signed_up_at: Millis,
    },
    /// Subscribed to a list whose only grants came from sign-ups, none of
    /// which was confirmed: the double opt-in was skipped.
    UnconfirmedSignupGrant {
        email: String,
        list: String,
        entry_id: i64,
        signup_id: i64,
    },
}

/// What `audit` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Audit {
    pub since: Option<Millis>,
    pub sends_checked: u64,
    pub withdrawals: u64,
    /// Withdrawals whose evidence records when they were requested
    /// (`requested_at`, ms): the ones whose time to effect is known.
    pub withdrawals_timed: u64,
    pub effect_median_ms: Option<i64>,
    pub effect_worst_ms: Option<i64>,
    /// The limit for a double opt-in request to stay unconfirmed.
    pub doi_pending_days: u32,
    /// Double opt-in requests pending for longer than that.
    pub doi_pending: u64,
    pub violations: Vec<Violation>,
}

/// The limits `audit` holds the data to besides the fixed ones.
#[derive(Debug, Clone, Copy)]
pub struct AuditLimits {
    /// A double opt-in request pending longer than this is a violation.
    pub doi_pending_days: u32,
    /// The audit's "now" (the tests' clock).
    pub now: Millis,
}

/// The default of `compliance audit --doi-pending-days`: a week is more
/// than any person needs to click a confirmation link, so an older pending
/// request is an address kept without consent (the link does not expire:
/// the row stays until someone deletes it).
pub const DOI_PENDING_DAYS: u32 = 7;

/// The longest a withdrawal may take to apply: Gmail's and Yahoo's bulk
/// sender rules ask for two days (support.google.com/mail/answer/81126).
pub const WITHDRAWAL_LIMIT_MS: i64 = 2 * 24 * 3600 * 1000;

/// Checks the promises consent makes against what was recorded since
/// `since` (sends, withdrawals); the current state (withdrawals not
/// applied, pending double opt-in, unconfirmed sign-up grants) whatever
/// its age.
pub async fn audit(store: &Store, since: Option<Millis>, limits: AuditLimits) -> Result<Audit> {
    use futures::TryStreamExt;
    let mut out = Audit {
        since,
        doi_pending_days: limits.doi_pending_days,
        ..Default::default()
    };
    let from = since.unwrap_or(i64::MIN);
    // The latest ledger entry for the send's contact and the campaign's list
    // (or every list) at the moment the send was accepted.
    let latest = |col: &str| {
        format!(
            "(SELECT e.{col} FROM consent_events e WHERE e.contact_id = s.contact_id \
             AND (e.list_id = l.id OR e.list_id IS NULL) AND e.occurred_at <= s.updated_at \
             ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1)"
        )
    };
    let sends_sql = format!(
        "SELECT * FROM (SELECT s.id, cp.slug, l.name, c.email, s.updated_at, {} AS action, {} AS at, {} AS entry \
         FROM sends s JOIN campaigns cp ON cp.id = s.campaign_id JOIN lists l ON l.name = cp.list_name \
         JOIN contacts c ON c.id = s.contact_id \
         WHERE s.state = 'accepted' AND s.updated_at >= $1) x \
         WHERE x.action IS NULL OR x.action <> 'grant' ORDER BY x.id",
        latest("action"),
        latest("occurred_at"),
        latest("id")
    );
    type SendRow = (
        i64,
        String,
        String,
        String,
        Millis,
        Option<String>,
        Option<Millis>,
        Option<i64>,
    );
    let unapplied_sql = "SELECT * FROM (SELECT c.email, l.name, \
         (SELECT e.action FROM consent_events e WHERE e.contact_id = cl.contact_id \
          AND (e.list_id = cl.list_id OR e.list_id IS NULL) ORDER BY e.id DESC LIMIT 1) AS action, \
         (SELECT e.id FROM consent_events e WHERE e.contact_id = cl.contact_id \
          AND (e.list_id = cl.list_id OR e.list_id IS NULL) ORDER BY e.id DESC LIMIT 1) AS entry, \
         (SELECT e.occurred_at FROM consent_events e WHERE e.contact_id = cl.contact_id \
          AND (e.list_id = cl.list_id OR e.list_id IS NULL) ORDER BY e.id DESC LIMIT 1) AS at \
         FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id JOIN lists l ON l.id = cl.list_id \
         WHERE cl.subscribed = 1) x WHERE x.action = 'withdraw' ORDER BY x.entry";
    type UnappliedRow = (String, String, Option<String>, Option<i64>, Option<Millis>);
    let requested = match store.backend() {
        Backend::Sqlite => {
            "CASE WHEN json_type(e.evidence, '$.requested_at') = 'integer' \
             THEN json_extract(e.evidence, '$.requested_at') END"
        }
        Backend::Postgres => {
            "CASE WHEN jsonb_typeof(e.evidence::jsonb -> 'requested_at') = 'number' \
             THEN (e.evidence::jsonb ->> 'requested_at')::bigint END"
        }
    };
    let withdrawals_sql = format!(
        "SELECT e.id, c.email, e.occurred_at, {requested} AS requested_at FROM consent_events e \
         JOIN contacts c ON c.id = e.contact_id WHERE e.action = 'withdraw' AND e.occurred_at >= $1 ORDER BY e.id"
    );
    let mut latencies: Vec<i64> = Vec::new();
    dispatch!(store, pool => {
        let mut rows = sqlx::query_as::<_, SendRow>(&sends_sql).bind(from).fetch(pool);
        while let Some((send_id, campaign, list, email, sent_at, action, at, entry)) = rows.try_next().await? {
            out.violations.push(match (action, at, entry) {
                (Some(_), Some(withdrawn_at), Some(entry_id)) => Violation::SentAfterWithdrawal {
                    send_id, campaign, email, sent_at, withdrawn_at, entry_id,
                },
                _ => Violation::SentWithoutConsent { send_id, campaign, list, email, sent_at },
            });
        }
        drop(rows);
        out.sends_checked = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM sends WHERE state = 'accepted' AND updated_at >= $1",
        )
        .bind(from)
        .fetch_one(pool)
        .await? as u64;
        let mut rows = sqlx::query_as::<_, UnappliedRow>(unapplied_sql).fetch(pool);
        while let Some((email, list, _, entry, at)) = rows.try_next().await? {
            out.violations.push(Violation::WithdrawalNotApplied {
                email,
                list,
                entry_id: entry.unwrap_or_default(),
                withdrawn_at: at.unwrap_or_default(),
            });
        }
        drop(rows);
        let mut rows = sqlx::query_as::<_, (i64, String, Millis, Option<i64>)>(&withdrawals_sql)
            .bind(from)
            .fetch(pool);
        while let Some((entry_id, email, applied_at, requested_at)) = rows.try_next().await? {
            out.withdrawals += 1;
            if let Some(requested_at) = requested_at {
                let took = (applied_at - requested_at).max(0);
                latencies.push(took);
                if took > WITHDRAWAL_LIMIT_MS {
                    out.violations.push(Violation::SlowWithdrawal {
                        email, entry_id, requested_at, applied_at,
                    });
                }
            }
        }
    });
    audit_signups(store, limits, &mut out).await?;
    latencies.sort_unstable();
    out.withdrawals_timed = latencies.len() as u64;
    out.effect_median_ms = latencies.get(latencies.len() / 2).copied();
    out.effect_worst_ms = latencies.last().copied();
    Ok(out)
}

/// The double opt-in half of [`audit`]: requests pending past the limit
/// (unless a later sign-up of the same address to the same list was
/// confirmed, which supersedes them), and subscriptions resting only on
/// grants whose sign-up was never confirmed.
async fn audit_signups(store: &Store, limits: AuditLimits, out: &mut Audit) -> Result<()> {
    use futures::TryStreamExt;
    let before = limits
        .now
        .saturating_sub(i64::from(limits.doi_pending_days) * 24 * 3600 * 1000);
    let pending_sql = "SELECT s.id, l.name, s.email, s.signed_up_at FROM signups s \
         JOIN lists l ON l.id = s.list_id WHERE s.state = 'pending' AND s.signed_up_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM signups t WHERE t.email = s.email AND t.list_id = s.list_id \
                         AND t.state = 'confirmed' AND t.id > s.id) \
         ORDER BY s.id";
    // The sign-up a ledger grant names (the confirmation writes it in the
    // evidence); NULL for grants of any other origin.
    let signup = match store.backend() {
        Backend::Sqlite => {
            "CASE WHEN json_type(e.evidence, '$.signup_id') = 'integer' \
             THEN json_extract(e.evidence, '$.signup_id') END"
        }
        Backend::Postgres => {
            "CASE WHEN jsonb_typeof(e.evidence::jsonb -> 'signup_id') = 'number' \
             THEN (e.evidence::jsonb ->> 'signup_id')::bigint END"
        }
    };
    let grants = "FROM consent_events e WHERE e.contact_id = cl.contact_id \
                  AND e.list_id = cl.list_id AND e.action = 'grant'";
    let unconfirmed_sql = format!(
        "SELECT * FROM (SELECT c.email, l.name, \
           (SELECT e.id {grants} AND {signup} IS NOT NULL ORDER BY e.id DESC LIMIT 1) AS entry, \
           (SELECT {signup} {grants} AND {signup} IS NOT NULL ORDER BY e.id DESC LIMIT 1) AS signup \
         FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id JOIN lists l ON l.id = cl.list_id \
         WHERE cl.subscribed = 1 \
           AND NOT EXISTS (SELECT 1 {grants} AND ({signup} IS NULL OR EXISTS \
               (SELECT 1 FROM signups g WHERE g.id = {signup} AND g.state = 'confirmed')))) x \
         WHERE x.entry IS NOT NULL ORDER BY x.entry"
    );
    dispatch!(store, pool => {
        let mut rows = sqlx::query_as::<_, (i64, String, String, Millis)>(pending_sql)
            .bind(before)
            .fetch(pool);
        while let Some((signup_id, list, email, signed_up_at)) = rows.try_next().await? {
            out.doi_pending += 1;
            out.violations.push(Violation::DoiPending { signup_id, list, email, signed_up_at });
        }
        drop(rows);
        let mut rows = sqlx::query_as::<_, (String, String, i64, i64)>(&unconfirmed_sql).fetch(pool);
        while let Some((email, list, entry_id, signup_id)) = rows.try_next().await? {
            out.violations.push(Violation::UnconfirmedSignupGrant { email, list, entry_id, signup_id });
        }
    });
    Ok(())
}

/// The keys of an event's `data` that `purge` removes once they are older
/// than the retention: the recipient's IP address and user agent, as
/// `cartero serve` stores them with opens and clicks.
pub const EVENT_NETWORK_KEYS: [&str; 2] = ["ip", "user_agent"];

/// What a retention purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purge {
    pub retention_days: u32,
    pub cutoff: Millis,
    pub events: u64,
    pub action_id: i64,
}

/// Removes the IP address and user agent of events older than
/// `retention_days`, and records the purge in `compliance_actions`.
pub async fn purge(store: &Store, retention_days: u32, actor: &str, now: Millis) -> Result<Purge> {
    let cutoff = now - i64::from(retention_days) * 24 * 3600 * 1000;
    let [ip, ua] = EVENT_NETWORK_KEYS;
    let sql = match store.backend() {
        Backend::Sqlite => format!(
            "UPDATE events SET data = json_remove(data, '$.{ip}', '$.{ua}') WHERE occurred_at < $1 \
             AND (json_type(data, '$.{ip}') IS NOT NULL OR json_type(data, '$.{ua}') IS NOT NULL)"
        ),
        Backend::Postgres => format!(
            "UPDATE events SET data = ((data::jsonb - '{ip}') - '{ua}')::text WHERE occurred_at < $1 \
             AND ((data::jsonb -> '{ip}') IS NOT NULL OR (data::jsonb -> '{ua}') IS NOT NULL)"
        ),
    };
    let mut tx = store.begin().await?;
    let events = dispatch_tx!(&mut tx, conn => {
        sqlx::query(&sql).bind(cutoff).execute(&mut *conn).await?.rows_affected()
    });
    let mut out = Purge {
        retention_days,
        cutoff,
        events,
        action_id: 0,
    };
    let details = serde_json::to_string(&out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.action_id = dispatch_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO compliance_actions (kind, actor, reason, details, occurred_at) \
             VALUES ('purge', $1, 'event_ip_retention_days', $2, $3) RETURNING id",
        )
        .bind(actor)
        .bind(&details)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?
    });
    tx.commit().await?;
    Ok(out)
}

/// One change to a contact as the records show it: a status change, a
/// consent entry, an erasure or purge.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ChangeRow {
    pub occurred_at: Millis,
    pub contact_id: Option<i64>,
    pub email: Option<String>,
    /// `status`, `consent:<list>`, `erase`, `purge`.
    pub what: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    /// The cause, rule and actor; the method and source; who and why.
    pub by_what: String,
}

/// Streams the changes since `since`, oldest first, to `row` (false stops).
pub async fn stream_changes(
    store: &Store,
    since: Millis,
    mut row: impl FnMut(ChangeRow) -> bool,
) -> Result<()> {
    use futures::TryStreamExt;
    let sql = "SELECT * FROM ( \
         SELECT s.occurred_at, s.contact_id, c.email, 'status' AS what, s.from_status AS old_value, \
                s.to_status AS new_value, \
                s.cause || COALESCE(' rule ' || s.rule, '') || ' by ' || s.actor AS by_what \
         FROM status_changes s JOIN contacts c ON c.id = s.contact_id WHERE s.occurred_at >= $1 \
         UNION ALL \
         SELECT e.occurred_at, e.contact_id, c.email, 'consent:' || COALESCE(l.name, '(all)'), NULL, e.action, \
                e.method || ': ' || e.source \
         FROM consent_events e JOIN contacts c ON c.id = e.contact_id \
         LEFT JOIN lists l ON l.id = e.list_id WHERE e.occurred_at >= $1 \
         UNION ALL \
         SELECT a.occurred_at, a.contact_id, c.email, a.kind, NULL, NULL, \
                a.actor || COALESCE(': ' || a.reason, '') \
         FROM compliance_actions a LEFT JOIN contacts c ON c.id = a.contact_id WHERE a.occurred_at >= $1 \
         UNION ALL \
         SELECT f.occurred_at, f.contact_id, c.email, 'field:' || f.field, f.old_value, f.new_value, \
                COALESCE(f.origin, '(origin not recorded)') \
         FROM contact_changes f JOIN contacts c ON c.id = f.contact_id \
         WHERE f.occurred_at >= $1 AND f.field <> 'status' \
         ) x ORDER BY x.occurred_at";
    dispatch!(store, pool => {
        let mut rows = sqlx::query_as::<_, ChangeRow>(sql).bind(since).fetch(pool);
        while let Some(r) = rows.try_next().await? {
            if !row(r) {
                break;
            }
        }
    });
    Ok(())
}
