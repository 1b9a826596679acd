//! A refusal during the send (a 5xx to RCPT or DATA) is a bounce the server
//! gave at once instead of mailing it later: the same classifier reads the
//! reply (`bounce::classify_reply`) and the same policy decides what it does
//! to the contact (`policy::decide`), so "550 5.1.1 user unknown" suppresses
//! the contact whether it came back as a DSN or as the reply to RCPT.
//!
//! One short transaction per refusal: the event, the contact's bounce
//! count, and the status change with the reply as its reason. This module
//! does not talk SMTP (`send` does) or read mailboxes.

use crate::config::PolicyConfig;
use crate::domain::time::Millis;
use crate::feedback::bounce::{self, Kind, Record};
use crate::feedback::policy;
use crate::store::feedback::{self as repo, NewEvent};
use crate::store::status::{self, StatusChange};
use crate::store::{Store, StoreError};

/// One refused send.
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    pub send_id: i64,
    pub campaign_id: i64,
    pub contact_id: i64,
    pub recipient: &'a str,
    pub code: Option<u16>,
    pub reply: &'a str,
}

/// What a refusal came to: its classification, and the contact's new
/// status when the policy changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub record: Record,
    pub new_status: Option<String>,
}

/// Classifies the refusal and applies the bounce policy. A reply the
/// classifier does not read as a bounce (it never is, for a 5xx, but the
/// rule is the classifier's) changes nothing.
pub async fn apply(
    store: &Store,
    policy_cfg: &PolicyConfig,
    r: &Refusal<'_>,
    now: Millis,
) -> Result<Applied, StoreError> {
    let record = bounce::classify_reply(r.recipient, r.code, r.reply);
    let Some(kind_name) =
        policy::event_kind(record.kind).filter(|_| matches!(record.kind, Kind::Hard | Kind::Soft))
    else {
        return Ok(Applied {
            record,
            new_status: None,
        });
    };
    let mut tx = store.begin().await?;
    let event_id = repo::insert_event(
        &mut tx,
        &NewEvent {
            contact_id: Some(r.contact_id),
            campaign_id: Some(r.campaign_id),
            send_id: Some(r.send_id),
            kind: kind_name,
            occurred_at: now,
            data: serde_json::json!({
                "source": "smtp reply",
                "recipient": record.recipient,
                "reason": record.reason.as_str(),
                "status": record.status,
                "reply_code": record.reply_code,
                "diagnostic": record.diagnostic,
                "command": record.command,
            }),
            // Not mail feedback: the server refused us on our own
            // connection, so there is no forged-report question to weigh.
            evidence: None,
        },
    )
    .await?;
    repo::count_bounce(&mut tx, r.contact_id).await?;
    let soft_in_window = if record.kind == Kind::Soft {
        let since = policy::soft_window_start(policy_cfg, now);
        repo::soft_bounces_since(&mut tx, r.contact_id, since).await? as u64
    } else {
        0
    };
    let mut new_status = None;
    if let Some(current) = status::current(&mut tx, r.contact_id).await? {
        let decision = policy::decide(policy_cfg, record.kind, current, soft_in_window);
        if let Some((to, rule)) = decision.status {
            let mut reason = format!("{} {}", record.kind.as_str(), record.reason.as_str());
            if let Some(st) = &record.status {
                reason.push_str(&format!(" {st}"));
            }
            // The server's own words are the cause.
            reason.push_str(&format!(
                ": {}",
                record
                    .diagnostic
                    .as_deref()
                    .unwrap_or(r.reply)
                    .replace('\0', "")
            ));
            let change = StatusChange {
                contact_id: r.contact_id,
                from: current,
                to,
                cause: policy::cause(record.kind).as_str().to_string(),
                rule: Some(rule.to_string()),
                event_id: Some(event_id),
                actor: status::SYSTEM_ACTOR.to_string(),
                reason: Some(reason),
                occurred_at: now,
            };
            if status::change(&mut tx, &change).await?.is_some() {
                new_status = Some(to.to_string());
            }
        }
    }
    tx.commit().await?;
    Ok(Applied { record, new_status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::bounce::Reason;

    #[test]
    fn replies_are_read_like_a_bounces_diagnostic() {
        let r = bounce::classify_reply(
            "Nobody@Example.org",
            Some(550),
            "5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table",
        );
        assert_eq!((r.kind, r.reason), (Kind::Hard, Reason::UserUnknown));
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.reply_code.as_deref(), Some("550"));
        assert_eq!(r.recipient.as_deref(), Some("nobody@example.org"));

        // A refused sender or content leaves the address good: soft.
        let r = bounce::classify_reply(
            "ana@example.org",
            Some(554),
            "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
        );
        assert_eq!(r.kind, Kind::Soft, "{r:?}");

        // A full mailbox over quota, permanent: soft as well.
        let r = bounce::classify_reply("ana@example.org", Some(552), "5.2.2 mailbox full");
        assert_eq!((r.kind, r.reason), (Kind::Soft, Reason::MailboxFull));
    }
}
