//! Held reports: what an operator decides about feedback too weakly tied to
//! its contact for cartero to act on alone.
//!
//! Ingestion holds a bounce, complaint or unsubscribe mail that matched its
//! contact by address only (or by a guessable Message-ID), when it would
//! have changed something (`feedback::policy`). `confirm` applies the full
//! policy as of now, through the consent stage, with the operator as actor
//! and their confirmation as evidence; `dismiss` records that it was
//! dismissed and changes nothing. Either decision is final and recorded.
//! Nothing here reads mail.

use crate::config::PolicyConfig;
use crate::consent::{self, EventRef, LedgerEffect, Operation, StatusTarget};
use crate::domain::time::Millis;
use crate::feedback::bounce::Kind;
use crate::feedback::policy;
use crate::store::consent::Evidence;
use crate::store::feedback::{self as repo, Hold, HoldState};
use crate::store::status;
use crate::store::{Store, StoreError, Tx};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no held report with id {0}")]
    NotFound(i64),
    #[error("held report {id} was {state} already")]
    Decided { id: i64, state: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What confirming a held report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub hold: Hold,
    /// `from -> to` when the status changed.
    pub status: Option<(String, String)>,
    pub consent_withdrawn: bool,
}

fn kind_of(s: &str) -> Option<Kind> {
    match s {
        "hard" => Some(Kind::Hard),
        "soft" => Some(Kind::Soft),
        "complaint" => Some(Kind::Complaint),
        "unsubscribe" => Some(Kind::Unsubscribe),
        _ => None,
    }
}

/// Opens a transaction holding the report's row, refused unless it is
/// still held: a decision is final, and two operators deciding at once
/// serialise on the row.
async fn open_held(store: &Store, id: i64) -> Result<(Tx, Hold), ReviewError> {
    let mut tx = store.begin().await?;
    let hold = match repo::hold_for_update(&mut tx, id).await? {
        Some(h) => h,
        None => {
            tx.rollback().await?;
            return Err(ReviewError::NotFound(id));
        }
    };
    if hold.state != HoldState::Held {
        tx.rollback().await?;
        return Err(ReviewError::Decided {
            id,
            state: hold.state.as_str(),
        });
    }
    Ok((tx, hold))
}

/// Applies a held report as if its evidence had been strong: the operator
/// vouches for it. The policy is decided on the contact's status now.
pub async fn confirm(
    store: &Store,
    policy_cfg: &PolicyConfig,
    id: i64,
    actor: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<Confirmed, ReviewError> {
    let (mut tx, hold) = open_held(store, id).await?;
    let kind = kind_of(&hold.kind)
        .ok_or_else(|| StoreError::Corrupt(format!("feedback_holds.kind {:?}", hold.kind)))?;
    let current = status::current(&mut tx, hold.contact_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("contact {} vanished", hold.contact_id)))?;
    // Soft reports are never held; a confirmed one counts as the limit.
    let decision = policy::decide(policy_cfg, kind, current, u64::MAX);
    let (source, method) = if kind == Kind::Complaint {
        ("feedback loop complaint", "feedback")
    } else {
        ("List-Unsubscribe mailto", "mail")
    };
    let reason_text = match reason {
        Some(r) => format!("confirmed by {actor}: {r}"),
        None => format!("confirmed by {actor}"),
    };
    let op = Operation {
        contact_id: hold.contact_id,
        occurred_at: now,
        actor: actor.to_string(),
        event: Some(EventRef::Recorded(hold.event_id)),
        status: decision.status.map(|(to, rule)| StatusTarget {
            from: current,
            to,
            cause: policy::cause(kind),
            rule: rule.to_string(),
            reason: Some(reason_text.clone()),
        }),
        ledger: if decision.withdraw {
            vec![LedgerEffect::WithdrawAll]
        } else {
            Vec::new()
        },
        evidence: Evidence {
            source: source.into(),
            method: method.into(),
            ip: None,
            text_version: None,
            details: serde_json::json!({
                "feedback_message_id": hold.feedback_message_id,
                "hold_id": hold.id,
                "evidence": hold.evidence.as_str(),
                "confirmed_by": actor,
                "confirmation": reason,
                "send_id": hold.send_id,
            }),
        },
    };
    let applied = consent::Stage::new().apply(&mut tx, &op).await?;
    repo::decide_hold(&mut tx, id, HoldState::Confirmed, actor, reason, now).await?;
    tx.commit().await?;
    Ok(Confirmed {
        status: applied
            .status_change_id
            .and(decision.status)
            .map(|(to, _)| (current.to_string(), to.to_string())),
        consent_withdrawn: applied.ledger_entries > 0,
        hold,
    })
}

/// Dismisses a held report: recorded with who and why, nothing else changes.
pub async fn dismiss(
    store: &Store,
    id: i64,
    actor: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<Hold, ReviewError> {
    let (mut tx, hold) = open_held(store, id).await?;
    repo::decide_hold(&mut tx, id, HoldState::Dismissed, actor, reason, now).await?;
    tx.commit().await?;
    Ok(hold)
}
