//! `hygiene run`: re-check every contact and record what looks wrong.
//!
//! Each contact's stored address is parsed again with `EmailAddress::parse`
//! (an address imported before a parser fix, or written by another tool, may
//! no longer pass), checked against the role, disposable and typo rules of
//! `hygiene::flags`, and, with MX checks on, its domain's verdict from
//! `hygiene::mx` (each distinct domain once, concurrently within
//! `dns.concurrency`). The results are flags in `contact_flags`: a flag says
//! what is wrong, it suppresses nothing, and no contact is deleted. The one
//! status change hygiene makes is the optional sunset: an active contact who
//! was mailed with open or click tracking and has not opened or clicked for
//! N days since becomes `sunset` (a contact mailed only without tracking
//! gave no evidence and is counted, not sunset),
//! recorded in `status_changes` (cause `hygiene`, rule `sunset`) and
//! reversible by `contacts reinstate`. A DNS failure never raises a flag.
//! A dry run computes everything and writes nothing.

use std::collections::HashMap;

use crate::domain::time::Millis;
use crate::domain::{ContactStatus, EmailAddress};
use crate::hygiene::flags::FlagChecker;
use crate::hygiene::mx::{MxChecker, MxVerdict};
use crate::store::hygiene::{self as repo, HygieneRow};
use crate::store::status::{self, StatusChange};
use crate::store::{Store, StoreError};

/// Contacts read and written per transaction.
const PAGE: i64 = 1000;
/// Changes kept for the listing; the counts cover all of them.
pub const LISTED_MAX: usize = 10_000;
const DAY_MS: Millis = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum HygieneError {
    #[error("contact {contact_id}: {source}")]
    Store {
        contact_id: i64,
        #[source]
        source: StoreError,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    /// Sunset active contacts with no open or click in this many days.
    pub sunset_days: Option<u32>,
}

/// One change, for the listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub contact_id: i64,
    pub email: String,
    /// `+flag`, `-flag`, `~flag` (detail changed) or `status`.
    pub change: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub contacts: u64,
    pub domains_checked: u64,
    /// Contacts carrying each flag after the run.
    pub flagged: std::collections::BTreeMap<String, u64>,
    pub flags_added: u64,
    pub flags_updated: u64,
    pub flags_cleared: u64,
    pub sunset: u64,
    /// Active contacts mailed and silent for the sunset period, left as
    /// they are because none of their messages was tracked (no open could
    /// have been seen).
    pub sunset_no_evidence: u64,
    /// Domains whose DNS could not tell (no flag raised for them).
    pub mx_unknown: u64,
    pub changes: Vec<Change>,
    /// Changes not listed beyond `LISTED_MAX`.
    pub changes_not_listed: u64,
}

impl Report {
    fn note(&mut self, c: Change) {
        if self.changes.len() < LISTED_MAX {
            self.changes.push(c);
        } else {
            self.changes_not_listed += 1;
        }
    }
}

/// The flags an address deserves: flag name → detail.
pub fn flags_for(
    row: &HygieneRow,
    checker: &FlagChecker,
    mx: Option<&HashMap<String, MxVerdict>>,
) -> HashMap<String, Option<String>> {
    let mut want = HashMap::new();
    match EmailAddress::parse(&row.email) {
        Err(e) => {
            want.insert("invalid".to_string(), Some(e.to_string()));
        }
        Ok(a) => {
            let f = checker.check(&a);
            if f.role {
                want.insert("role".to_string(), None);
            }
            if f.disposable {
                want.insert("disposable".to_string(), None);
            }
            if let Some(s) = f.typo {
                want.insert("typo".to_string(), Some(s.to_string()));
            }
        }
    }
    if let Some(v) = mx.and_then(|m| m.get(&row.domain))
        && v.is_undeliverable()
    {
        want.insert("mx".to_string(), Some(v.name().to_string()));
    }
    want
}

/// What the sunset rule says about a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sunset {
    /// Not active, never mailed, or engaged (or added, reinstated, first
    /// tracked) within the period.
    No,
    /// Active, mailed, silent for the period, but no message it got was
    /// tracked: the silence says nothing, and the contact stays.
    NoEvidence,
    Due,
}

/// Whether a contact is due for sunset: active, mailed with tracking at
/// least once, and no open or click within `days` before `now`. Being
/// added or reinstated by an operator starts the clock again, and so does
/// the first tracked send: before it, no open could have been seen.
pub fn sunset_verdict(row: &HygieneRow, days: u32, now: Millis) -> Sunset {
    if row.status != ContactStatus::Active.as_str() || row.send_count < 1 {
        return Sunset::No;
    }
    let engaged = [
        row.last_open_at,
        row.last_click_at,
        row.reactivated_at,
        Some(row.created_at),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(row.created_at);
    let cutoff = now - Millis::from(days) * DAY_MS;
    if engaged >= cutoff {
        return Sunset::No;
    }
    match row.first_tracked_send_at {
        None => Sunset::NoEvidence,
        Some(t) if t >= cutoff => Sunset::No,
        Some(_) => Sunset::Due,
    }
}

/// Whether a contact is due for sunset (`sunset_verdict` says `Due`).
pub fn due_for_sunset(row: &HygieneRow, days: u32, now: Millis) -> bool {
    sunset_verdict(row, days, now) == Sunset::Due
}

/// Runs hygiene over every contact that is not erased.
pub async fn run(
    store: &Store,
    checker: &FlagChecker,
    mx: Option<&MxChecker>,
    opts: &Options,
    now: Millis,
) -> Result<Report, HygieneError> {
    let mut report = Report {
        dry_run: opts.dry_run,
        ..Report::default()
    };
    let store_err = |contact_id| move |source| HygieneError::Store { contact_id, source };

    let verdicts: Option<HashMap<String, MxVerdict>> = match mx {
        Some(checker) => {
            let domains = repo::domains(store).await.map_err(store_err(0))?;
            let results = checker.check_many(&domains).await;
            report.domains_checked = results.len() as u64;
            report.mx_unknown = results
                .iter()
                .filter(|(_, v)| matches!(v, MxVerdict::Unknown { .. }))
                .count() as u64;
            Some(results.into_iter().collect())
        }
        None => None,
    };

    let mut after = 0i64;
    loop {
        let rows = repo::page(store, after, PAGE)
            .await
            .map_err(store_err(after))?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let stored = repo::flags_of(store, &ids)
            .await
            .map_err(store_err(after))?;
        let mut tx = if opts.dry_run {
            None
        } else {
            let mut tx = store.begin().await.map_err(store_err(after))?;
            crate::store::changes::set_origin(&mut tx, "hygiene run")
                .await
                .map_err(store_err(after))?;
            Some(tx)
        };
        for row in &rows {
            report.contacts += 1;
            let err = store_err(row.id);
            let want = flags_for(row, checker, verdicts.as_ref());
            let empty = HashMap::new();
            let have = stored.get(&row.id).unwrap_or(&empty);
            for (flag, detail) in &want {
                *report.flagged.entry(flag.clone()).or_default() += 1;
                let change = match have.get(flag) {
                    None => {
                        report.flags_added += 1;
                        format!("+{flag}")
                    }
                    Some(old) if old != detail => {
                        report.flags_updated += 1;
                        format!("~{flag}")
                    }
                    Some(_) => continue,
                };
                if let Some(tx) = tx.as_mut() {
                    repo::set_flag(tx, row.id, flag, detail.as_deref(), now)
                        .await
                        .map_err(err)?;
                }
                report.note(Change {
                    contact_id: row.id,
                    email: row.email.clone(),
                    change,
                    detail: detail.clone(),
                });
            }
            for flag in have.keys() {
                // Without MX checks this run knows nothing new about DNS:
                // an earlier mx flag stands.
                if want.contains_key(flag) || (flag == "mx" && verdicts.is_none()) {
                    if flag == "mx" && !want.contains_key(flag) {
                        *report.flagged.entry(flag.clone()).or_default() += 1;
                    }
                    continue;
                }
                report.flags_cleared += 1;
                if let Some(tx) = tx.as_mut() {
                    repo::clear_flag(tx, row.id, flag).await.map_err(err)?;
                }
                report.note(Change {
                    contact_id: row.id,
                    email: row.email.clone(),
                    change: format!("-{flag}"),
                    detail: None,
                });
            }
            let verdict = opts
                .sunset_days
                .map(|days| (days, sunset_verdict(row, days, now)));
            if let Some((_, Sunset::NoEvidence)) = verdict {
                report.sunset_no_evidence += 1;
            }
            if let Some((days, Sunset::Due)) = verdict {
                let reason = format!("no open or click in {days} days");
                let applied = match tx.as_mut() {
                    Some(tx) => status::change(
                        tx,
                        &StatusChange {
                            contact_id: row.id,
                            from: ContactStatus::Active,
                            to: ContactStatus::Sunset,
                            cause: "hygiene".into(),
                            rule: Some("sunset".into()),
                            event_id: None,
                            actor: status::SYSTEM_ACTOR.into(),
                            reason: Some(reason.clone()),
                            occurred_at: now,
                        },
                    )
                    .await
                    .map_err(err)?
                    .is_some(),
                    None => true,
                };
                if applied {
                    report.sunset += 1;
                    report.note(Change {
                        contact_id: row.id,
                        email: row.email.clone(),
                        change: "status active -> sunset".into(),
                        detail: Some(reason),
                    });
                }
            }
        }
        if let Some(tx) = tx {
            tx.commit().await.map_err(store_err(after))?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: &str) -> HygieneRow {
        HygieneRow {
            id: 1,
            email: email.into(),
            domain: email.rsplit('@').next().unwrap_or("").into(),
            status: "active".into(),
            created_at: 0,
            last_open_at: None,
            last_click_at: None,
            send_count: 0,
            reactivated_at: None,
            first_tracked_send_at: None,
        }
    }

    #[test]
    fn flags_follow_the_address_checks() {
        let c = FlagChecker::builtin();
        let f = flags_for(&row("john..doe@example.com"), &c, None);
        assert!(f.contains_key("invalid"), "{f:?}");
        let f = flags_for(&row("postmaster@example.com"), &c, None);
        assert_eq!(f.keys().collect::<Vec<_>>(), vec!["role"]);
        let f = flags_for(&row("ana@gmial.com"), &c, None);
        assert_eq!(f.get("typo"), Some(&Some("gmail.com".to_string())));
        assert!(flags_for(&row("ana@example.com"), &c, None).is_empty());
    }

    #[test]
    fn only_undeliverable_mx_verdicts_flag() {
        let c = FlagChecker::builtin();
        let mut mx = HashMap::new();
        mx.insert("gone.example".to_string(), MxVerdict::NoSuchDomain);
        mx.insert(
            "slow.example".to_string(),
            MxVerdict::Unknown {
                reason: "timeout".into(),
            },
        );
        let f = flags_for(&row("a@gone.example"), &c, Some(&mx));
        assert_eq!(f.get("mx"), Some(&Some("no-such-domain".to_string())));
        assert!(flags_for(&row("a@slow.example"), &c, Some(&mx)).is_empty());
    }

    #[test]
    fn sunset_needs_a_send_and_a_long_silence() {
        let now = 400 * DAY_MS;
        let mut r = row("a@example.com");
        assert!(!due_for_sunset(&r, 180, now), "never mailed");
        r.send_count = 3;
        assert_eq!(
            sunset_verdict(&r, 180, now),
            Sunset::NoEvidence,
            "mailed, but never with tracking: no evidence"
        );
        r.first_tracked_send_at = Some(300 * DAY_MS);
        assert!(
            !due_for_sunset(&r, 180, now),
            "tracked only for 100 days: too short to tell"
        );
        r.first_tracked_send_at = Some(10 * DAY_MS);
        assert!(due_for_sunset(&r, 180, now));
        r.last_open_at = Some(300 * DAY_MS);
        assert!(!due_for_sunset(&r, 180, now), "opened 100 days ago");
        r.last_open_at = Some(100 * DAY_MS);
        r.last_click_at = Some(250 * DAY_MS);
        assert!(!due_for_sunset(&r, 180, now), "clicked 150 days ago");
        r.last_click_at = Some(200 * DAY_MS);
        assert!(due_for_sunset(&r, 180, now));
        r.created_at = 350 * DAY_MS;
        assert!(!due_for_sunset(&r, 180, now), "added recently");
        r.created_at = 0;
        r.reactivated_at = Some(390 * DAY_MS);
        assert!(!due_for_sunset(&r, 180, now), "reinstated recently");
        r.reactivated_at = None;
        r.status = "bounced".into();
        assert!(!due_for_sunset(&r, 180, now), "only active contacts");
    }
}
