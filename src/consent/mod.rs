//! The consent stage: every change to whether cartero may mail someone, in
//! one place and one transaction.
//!
//! An unsubscribe (by mail, one-click POST or preference centre), a
//! complaint, a bounce, a subscription, an erasure and an operator's
//! reversal are all the same operation: an event (what happened, with the
//! evidence that ties it to the contact), a status change with its cause,
//! and ledger entries with their evidence that also set each list's current
//! state. [`Stage::apply`] writes all of it in the caller's transaction, in
//! that order, so each part can name the others (the status change names
//! the event; the ledger evidence names the event and the status change).
//! [`apply`] does the same in a transaction of its own.
//!
//! Callers decide *what* should change (`feedback::policy` for mail,
//! later the HTTP server and import); this module decides nothing about
//! policy and does not read mail or files. [`reinstate`] is the one
//! operation it composes itself: undoing a wrongful suppression.

pub mod requests;

use std::collections::{BTreeSet, HashMap};

use crate::domain::time::Millis;
use crate::domain::{ConsentAction, ContactStatus};
use crate::store::consent::{
    Appender, ConsentEntry, Evidence, StoredEntry, entries_for_contact_tx,
};
use crate::store::feedback::{NewEvent, insert_event};
use crate::store::status::{self, StatusChange};
use crate::store::{Result, Store, StoreError, Tx};

/// Why a status changed (`status_changes.cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Bounce,
    Complaint,
    Unsubscribe,
    Operator,
    Hygiene,
    Import,
    /// An event that changes no status (an auto-reply).
    Feedback,
    /// A confirmed sign-up (double opt-in) gave consent again.
    Subscribe,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
            Self::Operator => "operator",
            Self::Hygiene => "hygiene",
            Self::Import => "import",
            Self::Feedback => "feedback",
            Self::Subscribe => "subscribe",
        }
    }
}

/// A status change to make if the contact still has `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTarget {
    pub from: ContactStatus,
    pub to: ContactStatus,
    pub cause: Cause,
    pub rule: String,
    pub reason: Option<String>,
}

/// One ledger entry to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerEffect {
    /// Withdraw consent from every list (a complaint, an unsubscribe mail:
    /// RFC 2369 names no list).
    WithdrawAll,
    Withdraw {
        list_id: i64,
    },
    Grant {
        list_id: i64,
    },
    /// Undo the withdrawal `reverses` for one list.
    Restore {
        list_id: i64,
        reverses: i64,
    },
}

/// Everything one consent-relevant fact changes.
#[derive(Debug, Clone)]
pub struct Operation {
    pub contact_id: i64,
    pub occurred_at: Millis,
    /// `cartero`, or the operator's name.
    pub actor: String,
    /// Recorded first (or already recorded); its id goes into the status
    /// change and the ledger evidence.
    pub event: Option<EventRef>,
    pub status: Option<StatusTarget>,
    pub ledger: Vec<LedgerEffect>,
    /// The ledger entries' evidence (GDPR Art. 7(1)); `details` should be a
    /// JSON object: `event_id` and `status_change_id` are added to it.
    pub evidence: Evidence,
}

/// The event an operation is about.
#[derive(Debug, Clone)]
pub enum EventRef {
    /// Record this event as part of the operation.
    New(NewEvent),
    /// An event the caller recorded earlier in the same transaction (the
    /// policy needed it counted before deciding).
    Recorded(i64),
}

/// What an operation wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub event_id: Option<i64>,
    /// `None` also when the status was no longer the expected one.
    pub status_change_id: Option<i64>,
    pub ledger_entries: usize,
}

/// Applies operations inside one transaction, holding the ledger's lock
/// from the first entry on (a ledger append needs the chain head).
#[derive(Default)]
pub struct Stage {
    appender: Option<Appender>,
}

impl Stage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an event on its own (an auto-reply, a held report, or one
    /// the policy must count before it decides).
    pub async fn record(&mut self, tx: &mut Tx, e: &NewEvent) -> Result<i64> {
        insert_event(tx, e).await
    }

    pub async fn apply(&mut self, tx: &mut Tx, op: &Operation) -> Result<Applied> {
        let mut out = Applied {
            event_id: match &op.event {
                Some(EventRef::New(e)) => Some(self.record(tx, e).await?),
                Some(EventRef::Recorded(id)) => Some(*id),
                None => None,
            },
            ..Applied::default()
        };
        if let Some(s) = &op.status {
            out.status_change_id = status::change(
                tx,
                &StatusChange {
                    contact_id: op.contact_id,
                    from: s.from,
                    to: s.to,
                    cause: s.cause.as_str().to_string(),
                    rule: Some(s.rule.clone()),
                    event_id: out.event_id,
                    actor: op.actor.clone(),
                    reason: s.reason.clone(),
                    occurred_at: op.occurred_at,
                },
            )
            .await?;
        }
        if op.ledger.is_empty() {
            return Ok(out);
        }
        let mut evidence = op.evidence.clone();
        if !evidence.details.is_object() {
            evidence.details = serde_json::json!({});
        }
        if let Some(map) = evidence.details.as_object_mut() {
            if let Some(id) = out.event_id {
                map.insert("event_id".into(), id.into());
            }
            if let Some(id) = out.status_change_id {
                map.insert("status_change_id".into(), id.into());
            }
        }
        if self.appender.is_none() {
            self.appender = Some(Appender::start(tx).await?);
        }
        let appender = self.appender.as_mut().expect("set just above");
        for effect in &op.ledger {
            let (list_id, action, reverses) = match *effect {
                LedgerEffect::WithdrawAll => (None, ConsentAction::Withdraw, None),
                LedgerEffect::Withdraw { list_id } => {
                    (Some(list_id), ConsentAction::Withdraw, None)
                }
                LedgerEffect::Grant { list_id } => (Some(list_id), ConsentAction::Grant, None),
                LedgerEffect::Restore { list_id, reverses } => {
                    (Some(list_id), ConsentAction::Restore, Some(reverses))
                }
            };
            let mut evidence = evidence.clone();
            if let (Some(r), Some(map)) = (reverses, evidence.details.as_object_mut()) {
                map.insert("reverses".into(), r.into());
            }
            appender
                .append(
                    tx,
                    &ConsentEntry {
                        contact_id: op.contact_id,
                        list_id,
                        action,
                        occurred_at: op.occurred_at,
                        evidence,
                    },
                )
                .await?;
            out.ledger_entries += 1;
        }
        Ok(out)
    }
}

/// [`Stage::apply`] in a transaction of its own.
pub async fn apply(store: &Store, op: &Operation) -> Result<Applied> {
    let mut tx = store.begin().await?;
    let applied = Stage::new().apply(&mut tx, op).await?;
    tx.commit().await?;
    Ok(applied)
}

/// What an operator's reinstatement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reinstated {
    /// The status went from `from` back to `active`; `restored` lists the
    /// lists whose consent came back (one `restore` ledger entry each).
    Changed {
        from: ContactStatus,
        change_id: i64,
        restored: Vec<i64>,
    },
    /// The contact was active already: nothing written.
    AlreadyActive,
    /// Erased contacts stay erased (the erasure is a legal obligation).
    Erased,
}

/// Undoes a suppression: the status goes back to `active` (cause
/// `operator`, rule `reinstate`, the actor and the reason), and the consent
/// the suppression withdrew comes back as `restore` entries appended to
/// the ledger, one per list, each naming the withdrawal it reverses. The
/// ledger is never edited.
///
/// "The suppression" is the last change away from `active` and the changes
/// after it; the withdrawals it made are those whose evidence names one of
/// their events. A list is restored only if it was subscribed just before
/// such a withdrawal and nothing else has touched it since (a later
/// unsubscribe of that list by the person stands).
pub async fn reinstate(
    store: &Store,
    contact_id: i64,
    actor: &str,
    reason: &str,
    now: Millis,
) -> Result<Reinstated> {
    let mut tx = store.begin().await?;
    let Some(from) = status::current(&mut tx, contact_id).await? else {
        tx.rollback().await?;
        return Err(StoreError::Corrupt(format!(
            "contact {contact_id} vanished"
        )));
    };
    if matches!(from, ContactStatus::Active | ContactStatus::Erased) {
        tx.rollback().await?;
        return Ok(if from == ContactStatus::Active {
            Reinstated::AlreadyActive
        } else {
            Reinstated::Erased
        });
    }
    let suppression = status::current_suppression(&mut tx, contact_id).await?;
    let events: BTreeSet<i64> = suppression.iter().filter_map(|(_, e)| *e).collect();
    let entries = entries_for_contact_tx(&mut tx, contact_id).await?;
    let restores = to_restore(&entries, &events);
    let op = Operation {
        contact_id,
        occurred_at: now,
        actor: actor.to_string(),
        event: None,
        status: Some(StatusTarget {
            from,
            to: ContactStatus::Active,
            cause: Cause::Operator,
            rule: "reinstate".into(),
            reason: Some(reason.to_string()),
        }),
        ledger: restores
            .iter()
            .map(|&(list_id, reverses)| LedgerEffect::Restore { list_id, reverses })
            .collect(),
        evidence: Evidence {
            source: "reinstate".into(),
            method: "operator".into(),
            ip: None,
            text_version: None,
            details: serde_json::json!({
                "actor": actor,
                "reason": reason,
                "reverses_status_changes": suppression.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            }),
        },
    };
    let applied = Stage::new().apply(&mut tx, &op).await?;
    let Some(change_id) = applied.status_change_id else {
        tx.rollback().await?;
        return Err(StoreError::Corrupt(
            "status changed during reinstatement".into(),
        ));
    };
    tx.commit().await?;
    Ok(Reinstated::Changed {
        from,
        change_id,
        restored: restores.into_iter().map(|(l, _)| l).collect(),
    })
}

/// The lists to restore and the withdrawal each reverses, from a contact's
/// ledger (oldest first) and the events of the suppression being undone.
///
/// Replays the ledger: a list-less withdrawal applies to every list the
/// contact had state for, as `contact_lists` does. A list is restored when
/// the last entry that touched it is a withdrawal made for one of `events`
/// and the list was subscribed just before it.
pub fn to_restore(entries: &[StoredEntry], events: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    // list -> (subscribed, id of the last entry touching it, subscribed before that entry)
    let mut lists: HashMap<i64, (bool, i64, bool)> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    let mut ours: BTreeSet<i64> = BTreeSet::new();
    for e in entries {
        let action: ConsentAction = match e.action.parse() {
            Ok(a) => a,
            Err(_) => continue,
        };
        if action == ConsentAction::Withdraw && names_event(&e.evidence, events) {
            ours.insert(e.id);
        }
        let subscribes = action.subscribes();
        match e.list_id {
            Some(l) => {
                let before = lists.get(&l).is_some_and(|s| s.0);
                if !lists.contains_key(&l) {
                    order.push(l);
                }
                lists.insert(l, (subscribes, e.id, before));
            }
            None => {
                for state in lists.values_mut() {
                    *state = (subscribes, e.id, state.0);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|l| {
            let (subscribed, last, before) = lists[&l];
            (!subscribed && before && ours.contains(&last)).then_some((l, last))
        })
        .collect()
}

fn names_event(evidence: &str, events: &BTreeSet<i64>) -> bool {
    serde_json::from_str::<serde_json::Value>(evidence)
        .ok()
        .and_then(|v| v.get("event_id").and_then(serde_json::Value::as_i64))
        .is_some_and(|id| events.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, list: Option<i64>, action: &str, evidence: &str) -> StoredEntry {
        StoredEntry {
            id,
            contact_id: 1,
            list_id: list,
            action: action.into(),
            occurred_at: id,
            source: "t".into(),
            method: "t".into(),
            ip: None,
            text_version: None,
            evidence: evidence.into(),
            prev_hash: String::new(),
            hash: String::new(),
            key_id: None,
            personal_digest: None,
            erased_at: None,
        }
    }

    #[test]
    fn restores_what_the_suppression_withdrew_and_nothing_else() {
        let events: BTreeSet<i64> = [50].into();
        let ledger = [
            entry(1, Some(10), "grant", "{}"),
            entry(2, Some(11), "grant", "{}"),
            entry(3, Some(12), "grant", "{}"),
            // The person left list 12 on their own.
            entry(4, Some(12), "withdraw", "{}"),
            // The forged complaint withdrew everything.
            entry(5, None, "withdraw", r#"{"event_id":50}"#),
        ];
        assert_eq!(to_restore(&ledger, &events), vec![(10, 5), (11, 5)]);

        // After the complaint, the person unsubscribed list 11 themselves.
        let mut later = ledger.to_vec();
        later.push(entry(6, Some(11), "withdraw", "{}"));
        assert_eq!(to_restore(&later, &events), vec![(10, 5)]);

        // A withdrawal for another event is not this suppression's.
        assert_eq!(to_restore(&ledger, &[51].into()), vec![]);
        // Restored already: nothing left to restore.
        let mut restored = ledger.to_vec();
        restored.push(entry(6, Some(10), "restore", r#"{"reverses":5}"#));
        restored.push(entry(7, Some(11), "restore", r#"{"reverses":5}"#));
        assert_eq!(to_restore(&restored, &events), vec![]);
    }
}
