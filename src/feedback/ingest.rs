//! Ingestion: one raw message from the bounce mailbox in, its effects on
//! the database out, exactly once.
//!
//! For each message: dedupe (content hash, then Message-ID) → classify →
//! match each record to a send and contact → apply the policy. Matching
//! tries, in order: the VERP token of the envelope recipient the report came
//! back to (verified HMAC, `domain::token`); the original message's
//! Message-ID quoted in the report (`sends.message_id`); the failed
//! recipient's address (`contacts.email`). The message's row, its events,
//! the status changes and consent withdrawals they cause are written in one
//! transaction, so a crash leaves either all of it or none, and a re-run
//! finds the message's hash and skips it. A message nothing can be done
//! with (no bounce, complaint, auto-reply or unsubscribe in it, or no
//! contact it names) is kept aside with the reason, never dropped.
//!
//! A dry run does the same work in one transaction that is rolled back at
//! the end, so its figures are what a real run would report. This module
//! does not read mailboxes (`source` does) or parse mail (`bounce` does).

use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError, PolicyConfig};
use crate::domain::time::Millis;
use crate::domain::token::{self, Purpose};
use crate::domain::{ConsentAction, EmailAddress};
use crate::feedback::bounce::{self, Classification, Kind, Record};
use crate::feedback::policy;
use crate::store::consent::{Appender, ConsentEntry, Evidence};
use crate::store::feedback::{self as repo, FeedbackMessage, NewEvent, SendRef};
use crate::store::status::{self, StatusChange};
use crate::store::{Store, StoreError, Tx};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{source_name}: {error}")]
    Store {
        source_name: String,
        #[source]
        error: StoreError,
    },
}

/// Totals of a run, as printed at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub messages: u64,
    pub duplicates: u64,
    pub bounces_hard: u64,
    pub bounces_soft: u64,
    pub complaints: u64,
    pub autoreplies: u64,
    pub unsubscribes: u64,
    /// Records (recipients) no send or contact could be found for.
    pub unmatched: u64,
    /// Messages kept aside for a human.
    pub kept_aside: u64,
    pub status_changes: u64,
    pub consent_withdrawals: u64,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Recorded; acknowledge it as processed.
    Processed,
    /// Seen before (same bytes or Message-ID): nothing written.
    Duplicate,
    /// Nothing could be done with it; acknowledge it as kept aside.
    KeptAside { reason: String },
}

/// A status change a message caused, for the progress output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub contact_id: i64,
    pub recipient: Option<String>,
    pub from: String,
    pub to: String,
    pub rule: String,
}

/// One message's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub handled: Handled,
    pub changes: Vec<Change>,
}

/// How a record was tied to its contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchedBy {
    Verp,
    UnsubscribeToken,
    MessageId,
    Recipient,
}

impl MatchedBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Verp => "verp",
            Self::UnsubscribeToken => "unsubscribe-token",
            Self::MessageId => "message-id",
            Self::Recipient => "recipient",
        }
    }
}

struct Match {
    contact_id: i64,
    send: Option<SendRef>,
    by: MatchedBy,
}

/// Applies messages to the database. In a dry run every message goes into
/// one transaction that `finish` rolls back.
pub struct Ingestor {
    store: Store,
    secret: Vec<u8>,
    policy: PolicyConfig,
    dry_run: bool,
    dry_tx: Option<(Tx, Option<Appender>)>,
    summary: Summary,
}

impl Ingestor {
    pub fn new(store: Store, cfg: &Config, dry_run: bool) -> Result<Self, IngestError> {
        Ok(Self {
            store,
            secret: cfg.secret()?.to_vec(),
            policy: cfg.policy.clone(),
            dry_run,
            dry_tx: None,
            summary: Summary::default(),
        })
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Handles one raw message read from `source_name` at `now`.
    pub async fn ingest(
        &mut self,
        raw: &[u8],
        source_name: &str,
        now: Millis,
    ) -> Result<Report, IngestError> {
        let err = |error| IngestError::Store {
            source_name: source_name.to_string(),
            error,
        };
        self.summary.messages += 1;
        if self.dry_run {
            if self.dry_tx.is_none() {
                let tx = self.store.begin().await.map_err(err)?;
                self.dry_tx = Some((tx, None));
            }
            let (tx, appender) = self.dry_tx.as_mut().expect("set just above");
            let mut run = Run {
                secret: &self.secret,
                policy: &self.policy,
                summary: &mut self.summary,
                appender,
            };
            return run.message(tx, raw, source_name, now).await.map_err(err);
        }
        let mut tx = self.store.begin().await.map_err(err)?;
        let mut appender = None;
        let mut summary = self.summary.clone();
        let mut run = Run {
            secret: &self.secret,
            policy: &self.policy,
            summary: &mut summary,
            appender: &mut appender,
        };
        match run.message(&mut tx, raw, source_name, now).await {
            Ok(report) => {
                tx.commit().await.map_err(err)?;
                // Counted only once the effects are committed.
                self.summary = summary;
                Ok(report)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(err(e))
            }
        }
    }

    /// Ends the run; a dry run's transaction is rolled back here.
    pub async fn finish(mut self) -> Result<Summary, IngestError> {
        if let Some((tx, _)) = self.dry_tx.take() {
            tx.rollback().await.map_err(|error| IngestError::Store {
                source_name: "dry run".into(),
                error,
            })?;
        }
        Ok(self.summary)
    }
}

/// The state one message's handling borrows.
struct Run<'a> {
    secret: &'a [u8],
    policy: &'a PolicyConfig,
    summary: &'a mut Summary,
    appender: &'a mut Option<Appender>,
}

/// SHA-256 of the raw bytes, hex: the dedupe key that needs no parsing.
pub fn content_hash(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The kind written to `feedback_messages.kind`: the one kind of its
/// actionable records, `mixed` for several, `none` for none.
fn kind_summary(records: &[&Record]) -> &'static str {
    let mut kinds = records.iter().map(|r| r.kind.as_str());
    match kinds.next() {
        None => "none",
        Some(first) if kinds.all(|k| k == first) => first,
        Some(_) => "mixed",
    }
}

impl Run<'_> {
    async fn message(
        &mut self,
        tx: &mut Tx,
        raw: &[u8],
        source_name: &str,
        now: Millis,
    ) -> Result<Report, StoreError> {
        let hash = content_hash(raw);
        let c = bounce::classify(raw);
        let message_id = c.message_id.as_deref().map(text).filter(|m| !m.is_empty());
        let message_id = message_id.as_deref();
        let retry = match repo::find_message(tx, &hash, message_id).await? {
            Some(seen) if seen.outcome != "kept_aside" => {
                self.summary.duplicates += 1;
                return Ok(Report {
                    handled: Handled::Duplicate,
                    changes: Vec::new(),
                });
            }
            // Kept aside last time: try again (the contact may exist now).
            Some(seen) => Some(seen.id),
            None => None,
        };
        let actionable: Vec<&Record> = c
            .records
            .iter()
            .filter(|r| policy::event_kind(r.kind).is_some())
            .collect();
        let row = FeedbackMessage {
            message_id,
            content_hash: &hash,
            received_at: now,
            source: source_name,
            kind: kind_summary(&actionable),
            outcome: "processed",
            kept_aside_reason: None,
            raw_size: raw.len() as i64,
            records: actionable.len() as i64,
            matched: 0,
        };
        let feedback_id = match retry {
            Some(id) => {
                repo::update_message(tx, id, &row).await?;
                id
            }
            None => repo::insert_message(tx, &row).await?,
        };

        if actionable.is_empty() {
            let reason = if raw.is_empty() {
                "empty message".to_string()
            } else {
                "not a bounce, complaint, auto-reply or unsubscribe request".to_string()
            };
            return self.keep_aside(tx, feedback_id, reason, 0).await;
        }

        let mut changes = Vec::new();
        let mut matched = 0i64;
        let mut misses = Vec::new();
        for rec in &actionable {
            let Some(m) = find_match(tx, self.secret, &c, rec, actionable.len()).await? else {
                self.summary.unmatched += 1;
                misses.push(
                    rec.recipient
                        .clone()
                        .unwrap_or_else(|| "(no recipient)".into()),
                );
                continue;
            };
            matched += 1;
            self.apply(tx, &c, rec, &m, feedback_id, &hash, now, &mut changes)
                .await?;
        }
        if matched == 0 {
            let reason = format!(
                "no send or contact matches {}{}",
                misses.join(", "),
                if c.verp_token.is_some() {
                    " (the VERP token did not verify or names no send)"
                } else {
                    ""
                }
            );
            return self.keep_aside(tx, feedback_id, text(&reason), 0).await;
        }
        repo::set_outcome(tx, feedback_id, "processed", None, matched).await?;
        Ok(Report {
            handled: Handled::Processed,
            changes,
        })
    }

    async fn keep_aside(
        &mut self,
        tx: &mut Tx,
        feedback_id: i64,
        reason: String,
        matched: i64,
    ) -> Result<Report, StoreError> {
        repo::set_outcome(tx, feedback_id, "kept_aside", Some(&reason), matched).await?;
        self.summary.kept_aside += 1;
        Ok(Report {
            handled: Handled::KeptAside { reason },
            changes: Vec::new(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &mut self,
        tx: &mut Tx,
        c: &Classification,
        rec: &Record,
        m: &Match,
        feedback_id: i64,
        hash: &str,
        now: Millis,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        let Some(kind_name) = policy::event_kind(rec.kind) else {
            return Ok(());
        };
        match rec.kind {
            Kind::Hard => self.summary.bounces_hard += 1,
            Kind::Soft => self.summary.bounces_soft += 1,
            Kind::Complaint => self.summary.complaints += 1,
            Kind::AutoReply => self.summary.autoreplies += 1,
            Kind::Unsubscribe => self.summary.unsubscribes += 1,
            Kind::None => {}
        }
        let data = serde_json::json!({
            "feedback_message_id": feedback_id,
            "report_message_id": c.message_id,
            "recipient": rec.recipient,
            "reason": rec.reason.as_str(),
            "status": rec.status,
            "diagnostic": rec.diagnostic,
            "remote_mta": rec.remote_mta,
            "action": rec.action,
            "reply_code": rec.reply_code,
            "feedback_type": rec.feedback_type,
            "matched_by": m.by.as_str(),
        });
        let event_id = repo::insert_event(
            tx,
            &NewEvent {
                contact_id: Some(m.contact_id),
                campaign_id: m.send.as_ref().map(|s| s.campaign_id),
                send_id: m.send.as_ref().map(|s| s.send_id),
                kind: kind_name,
                occurred_at: now,
                data,
            },
        )
        .await?;
        if matches!(rec.kind, Kind::Hard | Kind::Soft) {
            repo::count_bounce(tx, m.contact_id).await?;
        }
        let soft_in_window = if rec.kind == Kind::Soft {
            let since = policy::soft_window_start(self.policy, now);
            repo::soft_bounces_since(tx, m.contact_id, since).await? as u64
        } else {
            0
        };
        let Some(current) = status::current(tx, m.contact_id).await? else {
            return Ok(());
        };
        let decision = policy::decide(self.policy, rec.kind, current, soft_in_window);
        if let Some((to, rule)) = decision.status {
            let reason = describe(rec);
            let change = StatusChange {
                contact_id: m.contact_id,
                from: current,
                to,
                cause: policy::cause(rec.kind).to_string(),
                rule: Some(rule.to_string()),
                event_id: Some(event_id),
                actor: status::SYSTEM_ACTOR.to_string(),
                reason: Some(text(&reason)),
                occurred_at: now,
            };
            if status::change(tx, &change).await?.is_some() {
                self.summary.status_changes += 1;
                changes.push(Change {
                    contact_id: m.contact_id,
                    recipient: rec.recipient.clone(),
                    from: current.to_string(),
                    to: to.to_string(),
                    rule: rule.to_string(),
                });
            }
        }
        if decision.withdraw {
            if self.appender.is_none() {
                *self.appender = Some(Appender::start(tx).await?);
            }
            let appender = self.appender.as_mut().expect("set just above");
            let (source, method) = if rec.kind == Kind::Complaint {
                ("feedback loop complaint", "feedback")
            } else {
                ("List-Unsubscribe mailto", "mail")
            };
            // GDPR Art. 7(1): the withdrawal keeps what proves it: the
            // report's identity and where the message itself is kept.
            let evidence = Evidence {
                source: source.into(),
                method: method.into(),
                ip: None,
                text_version: None,
                details: serde_json::json!({
                    "event_id": event_id,
                    "feedback_message_id": feedback_id,
                    "report_message_id": c.message_id,
                    "report_sha256": hash,
                    "feedback_type": rec.feedback_type,
                    "reporting_mta": rec.remote_mta,
                    "recipient": rec.recipient,
                    "send_id": m.send.as_ref().map(|s| s.send_id),
                }),
            };
            appender
                .append(
                    tx,
                    &ConsentEntry {
                        contact_id: m.contact_id,
                        list_id: None,
                        action: ConsentAction::Withdraw,
                        occurred_at: now,
                        evidence,
                    },
                )
                .await?;
            self.summary.consent_withdrawals += 1;
        }
        Ok(())
    }
}

/// Text from a message as the database can store it: PostgreSQL refuses
/// NUL in text values, and a hostile or broken message may carry one in a
/// header.
fn text(s: &str) -> String {
    s.replace('\0', "")
}

/// The reason stored with a status change: kind, taxonomy reason, status.
fn describe(rec: &Record) -> String {
    let mut s = format!("{} {}", rec.kind.as_str(), rec.reason.as_str());
    if let Some(st) = &rec.status {
        s.push_str(&format!(" {st}"));
    }
    s
}

/// Whether a send found by token or Message-ID is the one this record is
/// about: a report about one recipient (a VERP envelope names one), or a
/// record naming the send's own address.
fn belongs(rec: &Record, send: &SendRef, actionable: usize) -> bool {
    match rec.named_recipient() {
        None => true,
        Some(_) if actionable == 1 => true,
        Some(r) => r.eq_ignore_ascii_case(&send.email),
    }
}

async fn find_match(
    tx: &mut Tx,
    secret: &[u8],
    c: &Classification,
    rec: &Record,
    actionable: usize,
) -> Result<Option<Match>, StoreError> {
    if let Some(t) = &c.verp_token {
        // The token's purpose is part of its MAC: an unsubscribe token only
        // verifies as one, so a bounce cannot be passed off as an
        // unsubscribe request or the other way round.
        let (purpose, by) = if rec.kind == Kind::Unsubscribe {
            (Purpose::Unsubscribe, MatchedBy::UnsubscribeToken)
        } else {
            (Purpose::Bounce, MatchedBy::Verp)
        };
        if let Ok(send_id) = token::verify(secret, purpose, t)
            && let Some(send) = repo::send_by_id(tx, send_id).await?
            && belongs(rec, &send, actionable)
        {
            return Ok(Some(Match {
                contact_id: send.contact_id,
                send: Some(send),
                by,
            }));
        }
    }
    if let Some(mid) = &c.original_message_id
        && let Some(send) = repo::send_by_message_id(tx, &text(mid)).await?
        && belongs(rec, &send, actionable)
    {
        return Ok(Some(Match {
            contact_id: send.contact_id,
            send: Some(send),
            by: MatchedBy::MessageId,
        }));
    }
    // A NUL is never part of an address (and PostgreSQL text cannot hold one).
    if let Some(r) = rec.named_recipient().filter(|r| !r.contains('\0')) {
        let normalized = EmailAddress::parse(r).ok();
        if let Some(contact_id) =
            repo::contact_by_address(tx, normalized.as_ref().map(|a| a.as_str()), r).await?
        {
            return Ok(Some(Match {
                contact_id,
                send: None,
                by: MatchedBy::Recipient,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn kind_summary_names_one_kind_or_mixed() {
        let c = bounce::classify(b"Subject: unsubscribe\nFrom: a@b.example\n\n\n");
        let recs: Vec<&Record> = c.records.iter().collect();
        assert_eq!(kind_summary(&recs), "unsubscribe");
        assert_eq!(kind_summary(&[]), "none");
        let mut hard = c.records[0].clone();
        hard.kind = Kind::Hard;
        assert_eq!(kind_summary(&[&c.records[0], &hard]), "mixed");
    }
}
