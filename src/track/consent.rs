//! A recipient's own change of consent: unsubscribe (one-click or the
//! page's button) and the preference centre. One transaction holds the
//! whole operation: the event, the ledger entry with its evidence (and with
//! it the list state), and the contact's status when no consent is left, so
//! the change is durable before the answer goes out and never half-applied.
//!
//! This is the operation the service-architecture note wants in one consent
//! stage shared with feedback, the API and import; it lives here until that
//! stage exists and can move there unchanged (it only calls `store`).

use crate::domain::time::Millis;
use crate::domain::{ConsentAction, ContactStatus};
use crate::store::consent::{Appender, ConsentEntry, Evidence};
use crate::store::feedback::{NewEvent, insert_event};
use crate::store::status::{self, StatusChange};
use crate::store::{Store, StoreError, track};

/// How the recipient asked (`consent_events.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// RFC 8058 POST from the mail client (`List-Unsubscribe=One-Click`).
    OneClick,
    /// The button on the unsubscribe page.
    Page,
    /// The preference centre's form.
    Preferences,
    /// The footer link that withdraws the consent to track
    /// (`/u/{token}/tracking`).
    TrackingLink,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneClick => "one-click",
            Self::Page => "page",
            Self::Preferences => "preferences",
            Self::TrackingLink => "tracking-link",
        }
    }
    fn source(self) -> &'static str {
        match self {
            Self::OneClick => "List-Unsubscribe-Post one-click (RFC 8058)",
            Self::Page => "unsubscribe page",
            Self::Preferences => "preference centre",
            Self::TrackingLink => "tracking opt-out link",
        }
    }
}

/// One list's change; `list_id: None` withdraws from every list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub list_id: Option<i64>,
    pub action: ConsentAction,
}

/// The request and its evidence.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub contact_id: i64,
    pub changes: &'a [Change],
    pub method: Method,
    /// The message whose link was used: (send, campaign).
    pub send: Option<(i64, i64)>,
    /// As stored under `serve.ip_storage`.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Ledger entries written; 0 when everything was already as asked
    /// (a repeated request changes nothing).
    pub applied: usize,
    pub status: Option<(ContactStatus, ContactStatus)>,
}

/// Applies `r` in one transaction. A withdrawal applies only to a list the
/// contact is subscribed to, a grant only to a list they had withdrawn from
/// (the preference centre cannot add lists the contact never joined).
/// "Unsubscribed" as a contact status means no list consent left: it is
/// set then (from `active` only), and lifted when the preference centre
/// gives consent again.
///
/// Leaving list `L` also withdraws the consent to track `tracking:L`, with
/// a ledger entry of its own: with no mail from `L` there is nothing left
/// to track, and a consent kept on file would tie the hits of a later
/// re-subscription to the person without asking again. For the same
/// reason a consent to track is granted only while its list's mail is
/// (docs/TRACKING.md, "The purpose of its own").
pub async fn apply(store: &Store, r: &Request<'_>) -> Result<Outcome, StoreError> {
    let mut tx = store.begin().await?;
    crate::store::changes::set_origin(
        &mut tx,
        &format!("HTTP {} ({})", r.method.as_str(), r.method.source()),
    )
    .await?;
    // Taken first: on PostgreSQL it serialises concurrent changes (two
    // one-click POSTs of the same message), so both cannot see "subscribed".
    let mut appender = Appender::start(&mut tx).await?;
    let mut states = track::list_states(&mut tx, r.contact_id).await?;
    let mut out = Outcome::default();
    let mut first_event = None;
    // Withdrawals first, then the mail lists' grants, then the consents to
    // track: whether a grant of `tracking:L` stands depends on `L` as the
    // rest of the request leaves it, whatever order the form sent.
    let is_mail =
        |l: Option<i64>| l.is_none_or(|l| states.iter().any(|s| s.list_id == l && s.mail));
    let mut changes: Vec<Change> = r.changes.to_vec();
    changes.sort_by_key(|c| (c.action != ConsentAction::Withdraw, !is_mail(c.list_id)));
    for c in &changes {
        let needed = match (c.action, c.list_id) {
            (ConsentAction::Withdraw, Some(l)) => {
                states.iter().any(|s| s.list_id == l && s.subscribed)
            }
            (ConsentAction::Withdraw, None) => states.iter().any(|s| s.subscribed),
            (ConsentAction::Grant, Some(l)) => states.iter().any(|s| {
                s.list_id == l
                    && !s.subscribed
                    && s.tracking_of
                        .is_none_or(|m| states.iter().any(|t| t.list_id == m && t.subscribed))
                    && (s.mail || s.tracking_of.is_some())
            }),
            (ConsentAction::Grant, None) => false,
            // A recipient never restores: that is an operator's reversal.
            (ConsentAction::Restore, _) => false,
        };
        if !needed {
            continue;
        }
        let kind = match c.action {
            ConsentAction::Withdraw => "unsubscribe",
            ConsentAction::Grant | ConsentAction::Restore => "subscribe",
        };
        let event_id = insert_event(
            &mut tx,
            &NewEvent {
                contact_id: Some(r.contact_id),
                campaign_id: r.send.map(|s| s.1),
                send_id: r.send.map(|s| s.0),
                kind,
                occurred_at: r.at,
                data: serde_json::json!({
                    "method": r.method.as_str(),
                    "list_id": c.list_id,
                    "ip": r.ip,
                    "user_agent": r.user_agent,
                }),
                // The recipient's own signed link, not a mailed report.
                evidence: None,
            },
        )
        .await?;
        // GDPR Art. 7(1) and 7(3): what proves the change, kept with it.
        let evidence = |reason: Option<String>| {
            let mut details = serde_json::json!({
                "event_id": event_id,
                "send_id": r.send.map(|s| s.0),
                "campaign_id": r.send.map(|s| s.1),
                "user_agent": r.user_agent,
            });
            if let Some(reason) = reason {
                details["reason"] = serde_json::Value::String(reason);
            }
            Evidence {
                source: r.method.source().into(),
                method: r.method.as_str().into(),
                ip: r.ip.clone(),
                text_version: None,
                details,
            }
        };
        appender
            .append(
                &mut tx,
                &ConsentEntry {
                    contact_id: r.contact_id,
                    list_id: c.list_id,
                    action: c.action,
                    occurred_at: r.at,
                    evidence: evidence(None),
                },
            )
            .await?;
        let granted = c.action == ConsentAction::Grant;
        for s in states.iter_mut() {
            if c.list_id.is_none_or(|l| l == s.list_id) {
                s.subscribed = granted;
            }
        }
        out.applied += 1;
        first_event.get_or_insert(event_id);
        // Leaving a list's mail ends its consent to track, in this
        // transaction, as an entry of its own that says why.
        if let (ConsentAction::Withdraw, Some(l)) = (c.action, c.list_id) {
            for t in states
                .iter_mut()
                .filter(|t| t.tracking_of == Some(l) && t.subscribed)
            {
                appender
                    .append(
                        &mut tx,
                        &ConsentEntry {
                            contact_id: r.contact_id,
                            list_id: Some(t.list_id),
                            action: ConsentAction::Withdraw,
                            occurred_at: r.at,
                            evidence: evidence(Some(format!(
                                "follows the withdrawal from list {l}: no mail from it is left to track"
                            ))),
                        },
                    )
                    .await?;
                t.subscribed = false;
                out.applied += 1;
            }
        }
    }
    // The status follows the final state of the lists.
    if let Some(event_id) = first_event {
        out.status = status_after(&mut tx, r, &states, event_id).await?;
    }
    tx.commit().await?;
    Ok(out)
}

async fn status_after(
    tx: &mut crate::store::Tx,
    r: &Request<'_>,
    states: &[track::ListState],
    event_id: i64,
) -> Result<Option<(ContactStatus, ContactStatus)>, StoreError> {
    let Some(current) = status::current(tx, r.contact_id).await? else {
        return Ok(None);
    };
    // Only a list mail goes to keeps a contact subscribed: a consent to
    // track left over (`tracking:LIST`) is no reason to mail anyone.
    let any = states.iter().any(|s| s.subscribed && s.mail);
    let (to, cause, rule) = match (current, any) {
        (ContactStatus::Active, false) => (
            ContactStatus::Unsubscribed,
            "unsubscribe",
            "no-list-consent-left",
        ),
        (ContactStatus::Unsubscribed, true) if r.method == Method::Preferences => {
            (ContactStatus::Active, "subscribe", "consent-given-again")
        }
        _ => return Ok(None),
    };
    let change = StatusChange {
        contact_id: r.contact_id,
        from: current,
        to,
        cause: cause.into(),
        rule: Some(rule.into()),
        event_id: Some(event_id),
        actor: status::SYSTEM_ACTOR.into(),
        reason: Some(format!("{} ({})", r.method.source(), r.method.as_str())),
        occurred_at: r.at,
    };
    Ok(status::change(tx, &change).await?.map(|_| (current, to)))
}
