//! Ingestion: one raw message from the bounce mailbox in, its effects on
//! the database out, exactly once.
//!
//! For each message, outside any database transaction: a size check (a
//! message over `feedback.max_message_bytes` is kept aside unread), the
//! classification (pure, on the blocking pool; a report naming more than
//! `feedback.max_recipients` recipients is kept aside unapplied) and, when
//! weak evidence would need it, the sender's authentication (DKIM with
//! mail-auth, `feedback::auth`). Only then one short write transaction:
//! dedupe (content hash, then Message-ID) → match each record to a send and
//! contact → apply the policy through the consent stage (`crate::consent`).
//!
//! Matching says how strong the tie to the contact is
//! (`FeedbackEvidence`): the VERP or unsubscribe token of the address the
//! report came back to (verified HMAC, `domain::token`); the original
//! Message-ID quoted in the report, strong only when cartero issued it at
//! random (`sends.message_id`); the failed recipient's (or the unsubscribe
//! mail's From) address (`contacts.email`), upgraded when that address's own
//! domain authenticated the report. `feedback::policy` decides what each
//! strength may change; reports too weak to act on are recorded and held
//! for an operator (`feedback_holds`, `feedback::review`). The message's
//! row, its events, holds, status changes and consent withdrawals are
//! written in one transaction, so a crash leaves either all of it or none,
//! and a re-run finds the message's hash and skips it. A message nothing
//! can be done with is kept aside with the reason, never dropped.
//!
//! A dry run does the same work in one transaction that is rolled back at
//! the end, so its figures are what a real run would report. This module
//! does not read mailboxes (`source` does) or parse mail (`bounce` does).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{AddressMatch, Config, ConfigError, PolicyConfig};
use crate::consent::{self, EventRef, LedgerEffect, Operation, StatusTarget};
use crate::domain::time::Millis;
use crate::domain::token::{self, Purpose};
use crate::domain::{EmailAddress, FeedbackEvidence};
use crate::feedback::auth::{AuthMethod, Authenticated, SenderAuth};
use crate::feedback::bounce::{self, Classification, Kind, Record};
use crate::feedback::policy;
use crate::store::consent::Evidence;
use crate::store::feedback::{self as repo, FeedbackMessage, NewEvent, SendRef};
use crate::store::status::{self, SYSTEM_ACTOR};
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
    /// Reports too weakly tied to their contact to act on: recorded and
    /// held for `cartero feedback review`.
    pub held: u64,
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

/// How a record was tied to its contact, and how strongly.
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
    evidence: FeedbackEvidence,
    /// The address whose domain must have authenticated the report for
    /// weak evidence to count as `AuthenticatedAddress`.
    address: Option<String>,
    authenticated_by: Option<AuthMethod>,
}

/// What the ingest's limits allow (`[feedback]`).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_message_bytes: u64,
    max_recipients: usize,
}

/// A message read and classified, before any transaction.
enum Prepared {
    /// Larger than `max_message_bytes`: not parsed at all.
    Oversized,
    /// The classifier failed (it must not; kept aside rather than retried).
    Unreadable(String),
    Classified(Classification),
}

/// The classification step, `bounce::classify` unless replaced (tests
/// replace it to hold a message mid-read and show that the database is
/// free meanwhile).
pub type Classifier = Arc<dyn Fn(&[u8]) -> Classification + Send + Sync>;

/// Applies messages to the database. In a dry run every message goes into
/// one transaction that `finish` rolls back.
pub struct Ingestor {
    classifier: Classifier,
    store: Store,
    secret: Vec<u8>,
    policy: PolicyConfig,
    address_match: AddressMatch,
    limits: Limits,
    auth: Option<SenderAuth>,
    dry_run: bool,
    dry_tx: Option<(Tx, consent::Stage)>,
    summary: Summary,
}

impl Ingestor {
    pub fn new(store: Store, cfg: &Config, dry_run: bool) -> Result<Self, IngestError> {
        // Without a resolver no report is authenticated: weak evidence
        // stays weak, which is the safe side.
        let auth = match SenderAuth::from_config(cfg) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!("feedback: sender authentication is off: {e}");
                None
            }
        };
        Ok(Self {
            classifier: Arc::new(bounce::classify),
            store,
            secret: cfg.secret()?.to_vec(),
            policy: cfg.policy.clone(),
            address_match: cfg.feedback.address_match,
            limits: Limits {
                max_message_bytes: cfg.feedback.max_message_bytes,
                max_recipients: cfg.feedback.max_recipients,
            },
            auth,
            dry_run,
            dry_tx: None,
            summary: Summary::default(),
        })
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Replaces the classification step (it must stay pure).
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
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
        // Everything that takes time in proportion to the message happens
        // here, before the write transaction: on SQLite that transaction
        // holds the one write lock, and sends and imports wait for it.
        let hash = content_hash(raw);
        let prepared = if raw.len() as u64 > self.limits.max_message_bytes {
            Prepared::Oversized
        } else {
            let bytes = raw.to_vec();
            let classify = Arc::clone(&self.classifier);
            match tokio::task::spawn_blocking(move || classify(&bytes)).await {
                Ok(c) => Prepared::Classified(c),
                Err(e) => Prepared::Unreadable(format!("the classifier failed: {e}")),
            }
        };
        let authenticated = match (&prepared, &self.auth) {
            (Prepared::Classified(c), Some(auth)) if self.needs_auth(c) => auth.check(raw).await,
            _ => Authenticated::default(),
        };
        let input = Input {
            raw_size: raw.len(),
            hash: &hash,
            prepared: &prepared,
            authenticated: &authenticated,
            source_name,
            now,
        };
        if self.dry_run {
            if self.dry_tx.is_none() {
                let tx = self.store.begin().await.map_err(err)?;
                self.dry_tx = Some((tx, consent::Stage::new()));
            }
            let (tx, stage) = self.dry_tx.as_mut().expect("set just above");
            let mut run = Run {
                secret: &self.secret,
                policy: &self.policy,
                address_match: self.address_match,
                limits: self.limits,
                summary: &mut self.summary,
                stage,
            };
            return run.message(tx, &input).await.map_err(err);
        }
        let mut tx = self.store.begin().await.map_err(err)?;
        crate::store::changes::set_origin(&mut tx, &format!("feedback run: message {source_name}"))
            .await
            .map_err(err)?;
        let mut stage = consent::Stage::new();
        let mut summary = self.summary.clone();
        let mut run = Run {
            secret: &self.secret,
            policy: &self.policy,
            address_match: self.address_match,
            limits: self.limits,
            summary: &mut summary,
            stage: &mut stage,
        };
        match run.message(&mut tx, &input).await {
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

    /// Whether the sender's authentication could change what this message
    /// does: it has a record that a verified token does not already tie to
    /// its send, of a kind that authentication may let act.
    fn needs_auth(&self, c: &Classification) -> bool {
        let actionable: Vec<&Record> = c
            .records
            .iter()
            .filter(|r| policy::event_kind(r.kind).is_some())
            .take(self.limits.max_recipients + 1)
            .collect();
        if actionable.is_empty() || actionable.len() > self.limits.max_recipients {
            return false;
        }
        let useful = actionable.iter().any(|r| match r.kind {
            Kind::Unsubscribe => true,
            Kind::Hard | Kind::Soft | Kind::Complaint => {
                self.address_match == AddressMatch::SuppressIfAuthenticated
            }
            Kind::AutoReply | Kind::None => false,
        });
        if !useful {
            return false;
        }
        let token_ok = c.verp_token.as_deref().is_some_and(|t| {
            token::verify(&self.secret, Purpose::Bounce, t).is_ok()
                || token::verify(&self.secret, Purpose::Unsubscribe, t).is_ok()
        });
        !(token_ok && actionable.len() == 1)
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

/// One message as the transaction sees it.
struct Input<'a> {
    raw_size: usize,
    hash: &'a str,
    prepared: &'a Prepared,
    authenticated: &'a Authenticated,
    source_name: &'a str,
    now: Millis,
}

/// The state one message's handling borrows.
struct Run<'a> {
    secret: &'a [u8],
    policy: &'a PolicyConfig,
    address_match: AddressMatch,
    limits: Limits,
    summary: &'a mut Summary,
    stage: &'a mut consent::Stage,
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
    async fn message(&mut self, tx: &mut Tx, input: &Input<'_>) -> Result<Report, StoreError> {
        let c = match input.prepared {
            Prepared::Classified(c) => Some(c),
            Prepared::Oversized | Prepared::Unreadable(_) => None,
        };
        let message_id = c
            .and_then(|c| c.message_id.as_deref())
            .map(text)
            .filter(|m| !m.is_empty());
        let message_id = message_id.as_deref();
        let retry = match repo::find_message(tx, input.hash, message_id).await? {
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
            .map(|c| {
                c.records
                    .iter()
                    .filter(|r| policy::event_kind(r.kind).is_some())
                    .collect()
            })
            .unwrap_or_default();
        let row = FeedbackMessage {
            message_id,
            content_hash: input.hash,
            received_at: input.now,
            source: input.source_name,
            kind: kind_summary(&actionable),
            outcome: "processed",
            kept_aside_reason: None,
            raw_size: input.raw_size as i64,
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

        let c = match input.prepared {
            Prepared::Classified(c) => c,
            Prepared::Oversized => {
                // The source may have read only the first max + 1 bytes.
                let reason = format!(
                    "larger than feedback.max_message_bytes ({}): kept aside unread",
                    self.limits.max_message_bytes
                );
                return self.keep_aside(tx, feedback_id, reason, 0).await;
            }
            Prepared::Unreadable(why) => {
                return self.keep_aside(tx, feedback_id, text(why), 0).await;
            }
        };
        if actionable.is_empty() {
            let reason = if input.raw_size == 0 {
                "empty message".to_string()
            } else {
                "not a bounce, complaint, auto-reply or unsubscribe request".to_string()
            };
            return self.keep_aside(tx, feedback_id, reason, 0).await;
        }
        if actionable.len() > self.limits.max_recipients {
            let reason = format!(
                "names {} recipients, more than feedback.max_recipients ({}): nothing applied",
                actionable.len(),
                self.limits.max_recipients
            );
            return self.keep_aside(tx, feedback_id, reason, 0).await;
        }

        let mut changes = Vec::new();
        let mut matched = 0i64;
        let mut misses = Vec::new();
        for rec in &actionable {
            let Some(mut m) = find_match(tx, self.secret, c, rec, actionable.len()).await? else {
                self.summary.unmatched += 1;
                misses.push(
                    rec.recipient
                        .clone()
                        .unwrap_or_else(|| "(no recipient)".into()),
                );
                continue;
            };
            if !m.evidence.is_strong()
                && let Some(address) = &m.address
                && let Some(method) = input.authenticated.aligned_with(address)
            {
                m.evidence = FeedbackEvidence::AuthenticatedAddress;
                m.authenticated_by = Some(method);
            }
            matched += 1;
            self.apply(tx, c, rec, &m, feedback_id, input, &mut changes)
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
        input: &Input<'_>,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        let Some(kind_name) = policy::event_kind(rec.kind) else {
            return Ok(());
        };
        let now = input.now;
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
            "evidence": m.evidence.as_str(),
            "authenticated_by": m.authenticated_by,
        });
        let event_id = self
            .stage
            .record(
                tx,
                &NewEvent {
                    contact_id: Some(m.contact_id),
                    campaign_id: m.send.as_ref().map(|s| s.campaign_id),
                    send_id: m.send.as_ref().map(|s| s.send_id),
                    kind: kind_name,
                    occurred_at: now,
                    data,
                    evidence: Some(m.evidence),
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
        let trust = policy::trust(rec.kind, m.evidence, self.address_match);
        let decision = policy::decide_with(self.policy, rec.kind, current, soft_in_window, trust);
        if decision.hold {
            repo::insert_hold(
                tx,
                event_id,
                feedback_id,
                m.contact_id,
                rec.kind.as_str(),
                m.evidence,
                now,
            )
            .await?;
            self.summary.held += 1;
            return Ok(());
        }
        if decision.status.is_none() && !decision.withdraw {
            return Ok(());
        }
        let (source, method) = if rec.kind == Kind::Complaint {
            ("feedback loop complaint", "feedback")
        } else {
            ("List-Unsubscribe mailto", "mail")
        };
        let op = Operation {
            contact_id: m.contact_id,
            occurred_at: now,
            actor: SYSTEM_ACTOR.to_string(),
            event: Some(EventRef::Recorded(event_id)),
            status: decision.status.map(|(to, rule)| StatusTarget {
                from: current,
                to,
                cause: policy::cause(rec.kind),
                rule: rule.to_string(),
                reason: Some(text(&describe(rec))),
            }),
            ledger: if decision.withdraw {
                vec![LedgerEffect::WithdrawAll]
            } else {
                Vec::new()
            },
            // GDPR Art. 7(1): the withdrawal keeps what proves it: the
            // report's identity, the evidence that tied it to the contact,
            // and where the message itself is kept.
            evidence: Evidence {
                source: source.into(),
                method: method.into(),
                ip: None,
                text_version: None,
                details: serde_json::json!({
                    "feedback_message_id": feedback_id,
                    "report_message_id": c.message_id,
                    "report_sha256": input.hash,
                    "feedback_type": rec.feedback_type,
                    "reporting_mta": rec.remote_mta,
                    "recipient": rec.recipient,
                    "send_id": m.send.as_ref().map(|s| s.send_id),
                    "evidence": m.evidence.as_str(),
                }),
            },
        };
        let applied = self.stage.apply(tx, &op).await?;
        if applied.status_change_id.is_some()
            && let Some((to, rule)) = decision.status
        {
            self.summary.status_changes += 1;
            changes.push(Change {
                contact_id: m.contact_id,
                recipient: rec.recipient.clone(),
                from: current.to_string(),
                to: to.to_string(),
                rule: rule.to_string(),
            });
        }
        self.summary.consent_withdrawals += applied.ledger_entries as u64;
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
/// about: a record naming the send's own address, or none; or, for a
/// signed VERP token, a report about one recipient under another name (an
/// alias or forward kept our envelope, so its failure is the contact's).
/// A Message-ID proves only that the reporter saw the message: a list or
/// group the contact is reaches others, and one member's bounce sent back
/// with the message must not bounce the contact.
fn belongs(rec: &Record, send: &SendRef, actionable: usize, by_token: bool) -> bool {
    match rec.named_recipient() {
        None => true,
        Some(_) if by_token && actionable == 1 => true,
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
        let (purpose, by, evidence) = if rec.kind == Kind::Unsubscribe {
            (
                Purpose::Unsubscribe,
                MatchedBy::UnsubscribeToken,
                FeedbackEvidence::UnsubscribeToken,
            )
        } else {
            (
                Purpose::Bounce,
                MatchedBy::Verp,
                FeedbackEvidence::VerpToken,
            )
        };
        if let Ok(send_id) = token::verify(secret, purpose, t)
            && let Some(send) = repo::send_by_id(tx, send_id).await?
            && belongs(rec, &send, actionable, true)
        {
            return Ok(Some(Match {
                contact_id: send.contact_id,
                send: Some(send),
                by,
                evidence,
                address: None,
                authenticated_by: None,
            }));
        }
    }
    // An unsubscribe mail quotes no original message: only its token or
    // its From can tie it to someone.
    if rec.kind != Kind::Unsubscribe
        && let Some(mid) = &c.original_message_id
        && let Some(send) = repo::send_by_message_id(tx, &text(mid)).await?
        && belongs(rec, &send, actionable, false)
    {
        // Only a Message-ID nobody could guess proves the reporter saw the
        // message (issue 15: the derived `cartero.C.S.T@` IDs could be).
        let evidence = if crate::domain::evidence::message_id_is_unguessable(mid) {
            FeedbackEvidence::IssuedMessageId
        } else {
            FeedbackEvidence::GuessableMessageId
        };
        let address = rec.named_recipient().unwrap_or(&send.email).to_string();
        return Ok(Some(Match {
            contact_id: send.contact_id,
            send: Some(send),
            by: MatchedBy::MessageId,
            evidence,
            address: Some(address),
            authenticated_by: None,
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
                evidence: FeedbackEvidence::AddressOnly,
                address: Some(r.to_string()),
                authenticated_by: None,
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
