//! The suppression policy: what a classified report does to a contact.
//!
//! Pure: a kind, the contact's status and (for soft bounces) how many it has
//! had lately go in; a decision comes out. `ingest` applies it. The rules
//! (docs/FEEDBACK.md):
//! - a hard bounce suppresses at once (`bounced`, rule `hard-bounce`);
//! - soft bounces suppress once `soft_bounce_limit` of them fall within
//!   `soft_bounce_window_days` (rule `soft-bounce-limit`);
//! - a complaint (ARF, RFC 5965) withdraws consent from every list and sets
//!   `complained` (rule `complaint`), whatever the status was;
//! - a mailed unsubscribe request (RFC 2369 §3.2 mailto) withdraws consent
//!   from every list and sets `unsubscribed` when the contact was active
//!   (rule `mailto-unsubscribe`);
//! - an auto-reply is recorded and changes nothing: it is not a bounce.
//!
//! An erased contact is never changed: erasure is final.
//!
//! Those rules apply in full only to a report whose evidence is strong
//! (`FeedbackEvidence::is_strong`: a verified token or a random Message-ID
//! cartero issued). [`trust`] says what weaker evidence may do: a mailed
//! unsubscribe from an authenticated From is honoured; a bounce or
//! complaint authenticated by the address's own domain suppresses (never
//! withdraws) under `feedback.address_match = "suppress_if_authenticated"`;
//! anything else is recorded and, if it would have changed something, held
//! for an operator (docs/SECURITY.md, "Feedback mail").
//! This module must not touch the database or the mailbox.

use crate::config::{AddressMatch, PolicyConfig};
use crate::consent::Cause;
use crate::domain::time::Millis;
use crate::domain::{ContactStatus, FeedbackEvidence};
use crate::feedback::bounce::Kind;

const DAY_MS: Millis = 24 * 3600 * 1000;

/// What to do with one matched report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The new status and the rule that sets it, if the status changes.
    pub status: Option<(ContactStatus, &'static str)>,
    /// Append a withdrawal of consent from every list to the ledger.
    pub withdraw: bool,
    /// Change nothing now; hold the report for an operator, who may
    /// confirm it (the full decision is applied then) or dismiss it.
    pub hold: bool,
}

impl Decision {
    const NOTHING: Decision = Decision {
        status: None,
        withdraw: false,
        hold: false,
    };
}

/// What a report's evidence allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Suppress and withdraw as the rules say.
    Full,
    /// Change the status as the rules say, never withdraw consent.
    SuppressOnly,
    /// Change nothing; hold the report if it would have changed something.
    Hold,
}

/// The trust a report of `kind` earns with `evidence`.
pub fn trust(kind: Kind, evidence: FeedbackEvidence, address_match: AddressMatch) -> Trust {
    use FeedbackEvidence as E;
    if evidence.is_strong() {
        return Trust::Full;
    }
    match (kind, evidence) {
        // The From of the unsubscribe mail is the address, authenticated
        // by its own domain: the person asked.
        (Kind::Unsubscribe, E::AuthenticatedAddress) => Trust::Full,
        (Kind::Hard | Kind::Soft | Kind::Complaint, E::AuthenticatedAddress)
            if address_match == AddressMatch::SuppressIfAuthenticated =>
        {
            Trust::SuppressOnly
        }
        _ => Trust::Hold,
    }
}

/// The event kind a report is stored under in `events`, or `None` for a
/// record nothing is done with.
pub fn event_kind(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Hard => Some("bounce_hard"),
        Kind::Soft => Some("bounce_soft"),
        Kind::Complaint => Some("complaint"),
        Kind::AutoReply => Some("autoreply"),
        Kind::Unsubscribe => Some("unsubscribe"),
        Kind::None => None,
    }
}

/// The cause written to `status_changes` for a kind.
pub fn cause(kind: Kind) -> Cause {
    match kind {
        Kind::Hard | Kind::Soft => Cause::Bounce,
        Kind::Complaint => Cause::Complaint,
        Kind::Unsubscribe => Cause::Unsubscribe,
        Kind::AutoReply | Kind::None => Cause::Feedback,
    }
}

/// The start of the soft-bounce window ending at `now`.
pub fn soft_window_start(policy: &PolicyConfig, now: Millis) -> Millis {
    now - Millis::from(policy.soft_bounce_window_days) * DAY_MS
}

/// Decides what one report does, given what its evidence allows.
/// `soft_in_window` is the number of soft bounces within the window
/// including this one (ignored for other kinds).
pub fn decide_with(
    policy: &PolicyConfig,
    kind: Kind,
    status: ContactStatus,
    soft_in_window: u64,
    trust: Trust,
) -> Decision {
    let full = decide(policy, kind, status, soft_in_window);
    match trust {
        Trust::Full => full,
        Trust::SuppressOnly => Decision {
            withdraw: false,
            ..full
        },
        // A soft bounce is not held: alone it never suppresses, and the
        // weak ones are not counted towards the limit.
        Trust::Hold => Decision {
            hold: kind != Kind::Soft && (full.status.is_some() || full.withdraw),
            ..Decision::NOTHING
        },
    }
}

/// Decides what one report with strong evidence does. `soft_in_window` is
/// the number of soft bounces within the window including this one
/// (ignored for other kinds).
pub fn decide(
    policy: &PolicyConfig,
    kind: Kind,
    status: ContactStatus,
    soft_in_window: u64,
) -> Decision {
    use ContactStatus as S;
    if status == S::Erased {
        return Decision::NOTHING;
    }
    match kind {
        Kind::Hard if status == S::Active => Decision {
            status: Some((S::Bounced, "hard-bounce")),
            ..Decision::NOTHING
        },
        // A limit of 0 would suppress on nothing at all; treat it as 1.
        Kind::Soft
            if status == S::Active
                && soft_in_window >= u64::from(policy.soft_bounce_limit.max(1)) =>
        {
            Decision {
                status: Some((S::Bounced, "soft-bounce-limit")),
                ..Decision::NOTHING
            }
        }
        Kind::Complaint => Decision {
            status: (status != S::Complained).then_some((S::Complained, "complaint")),
            // A contact who complained twice withdrew the first time.
            withdraw: status != S::Complained,
            hold: false,
        },
        Kind::Unsubscribe => Decision {
            status: (status == S::Active).then_some((S::Unsubscribed, "mailto-unsubscribe")),
            withdraw: !matches!(status, S::Unsubscribed | S::Complained),
            hold: false,
        },
        _ => Decision::NOTHING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32, days: u32) -> PolicyConfig {
        PolicyConfig {
            soft_bounce_limit: limit,
            soft_bounce_window_days: days,
        }
    }

    #[test]
    fn hard_bounce_suppresses_an_active_contact_at_once() {
        let d = decide(&policy(3, 30), Kind::Hard, ContactStatus::Active, 0);
        assert_eq!(d.status, Some((ContactStatus::Bounced, "hard-bounce")));
        assert!(!d.withdraw);
        // Already suppressed for another reason: no second change.
        for s in [
            ContactStatus::Bounced,
            ContactStatus::Unsubscribed,
            ContactStatus::Complained,
            ContactStatus::Sunset,
        ] {
            assert_eq!(decide(&policy(3, 30), Kind::Hard, s, 0).status, None, "{s}");
        }
    }

    #[test]
    fn soft_bounces_suppress_only_at_the_limit() {
        let p = policy(3, 30);
        assert_eq!(
            decide(&p, Kind::Soft, ContactStatus::Active, 1).status,
            None
        );
        assert_eq!(
            decide(&p, Kind::Soft, ContactStatus::Active, 2).status,
            None
        );
        assert_eq!(
            decide(&p, Kind::Soft, ContactStatus::Active, 3).status,
            Some((ContactStatus::Bounced, "soft-bounce-limit"))
        );
        assert_eq!(
            decide(&policy(1, 30), Kind::Soft, ContactStatus::Active, 1).status,
            Some((ContactStatus::Bounced, "soft-bounce-limit"))
        );
        assert_eq!(
            decide(&policy(0, 30), Kind::Soft, ContactStatus::Active, 0).status,
            None,
            "a limit of 0 still needs one bounce"
        );
    }

    #[test]
    fn window_start_is_days_before_now() {
        let now = 100 * DAY_MS;
        assert_eq!(soft_window_start(&policy(3, 30), now), 70 * DAY_MS);
        assert_eq!(soft_window_start(&policy(3, 0), now), now);
    }

    #[test]
    fn complaint_withdraws_and_overrides_other_suppressions() {
        for s in [
            ContactStatus::Active,
            ContactStatus::Bounced,
            ContactStatus::Unsubscribed,
        ] {
            let d = decide(&policy(3, 30), Kind::Complaint, s, 0);
            assert_eq!(d.status, Some((ContactStatus::Complained, "complaint")));
            assert!(d.withdraw);
        }
        let again = decide(
            &policy(3, 30),
            Kind::Complaint,
            ContactStatus::Complained,
            0,
        );
        assert_eq!(again, Decision::NOTHING);
    }

    #[test]
    fn unsubscribe_withdraws_consent_even_when_bounced() {
        let d = decide(&policy(3, 30), Kind::Unsubscribe, ContactStatus::Active, 0);
        assert_eq!(
            d.status,
            Some((ContactStatus::Unsubscribed, "mailto-unsubscribe"))
        );
        assert!(d.withdraw);
        let bounced = decide(&policy(3, 30), Kind::Unsubscribe, ContactStatus::Bounced, 0);
        assert_eq!(bounced.status, None);
        assert!(bounced.withdraw);
        let twice = decide(
            &policy(3, 30),
            Kind::Unsubscribe,
            ContactStatus::Unsubscribed,
            0,
        );
        assert_eq!(twice, Decision::NOTHING);
    }

    #[test]
    fn weak_evidence_never_withdraws_and_suppresses_only_by_the_rule() {
        use FeedbackEvidence as E;
        let p = policy(1, 30);
        for kind in [Kind::Hard, Kind::Soft, Kind::Complaint, Kind::Unsubscribe] {
            for ev in [E::AddressOnly, E::GuessableMessageId] {
                for rule in [AddressMatch::Record, AddressMatch::SuppressIfAuthenticated] {
                    let d = decide_with(&p, kind, ContactStatus::Active, 1, trust(kind, ev, rule));
                    assert_eq!((d.status, d.withdraw), (None, false), "{kind:?} {ev:?}");
                    assert_eq!(d.hold, kind != Kind::Soft, "{kind:?} {ev:?}");
                }
            }
        }
        // Authenticated by the address's own domain: suppress under the
        // rule, never withdraw; an unsubscribe from an authenticated From
        // is the person asking.
        let t = trust(
            Kind::Complaint,
            E::AuthenticatedAddress,
            AddressMatch::SuppressIfAuthenticated,
        );
        let d = decide_with(&p, Kind::Complaint, ContactStatus::Active, 0, t);
        assert_eq!(d.status, Some((ContactStatus::Complained, "complaint")));
        assert!(!d.withdraw && !d.hold);
        let t = trust(
            Kind::Complaint,
            E::AuthenticatedAddress,
            AddressMatch::Record,
        );
        assert_eq!(t, Trust::Hold);
        let t = trust(
            Kind::Unsubscribe,
            E::AuthenticatedAddress,
            AddressMatch::Record,
        );
        assert_eq!(t, Trust::Full);
        // Held only when the report would have changed something.
        let d = decide_with(&p, Kind::Hard, ContactStatus::Bounced, 0, Trust::Hold);
        assert_eq!(d, Decision::NOTHING);
        for ev in [E::VerpToken, E::UnsubscribeToken, E::IssuedMessageId] {
            assert_eq!(
                trust(Kind::Complaint, ev, AddressMatch::Record),
                Trust::Full
            );
        }
    }

    #[test]
    fn autoreplies_and_erased_contacts_change_nothing() {
        let p = policy(1, 30);
        assert_eq!(
            decide(&p, Kind::AutoReply, ContactStatus::Active, 5),
            Decision::NOTHING
        );
        for k in [Kind::Hard, Kind::Soft, Kind::Complaint, Kind::Unsubscribe] {
            assert_eq!(
                decide(&p, k, ContactStatus::Erased, 5),
                Decision::NOTHING,
                "{k:?}"
            );
        }
        assert_eq!(event_kind(Kind::AutoReply), Some("autoreply"));
        assert_eq!(event_kind(Kind::None), None);
    }
}
