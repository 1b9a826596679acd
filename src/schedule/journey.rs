//! The journey engine: one `tick` enrols contacts on their journeys'
//! triggers, ends the walks of those who hit an exit, and moves every
//! contact whose step is due as far as it goes now (until a wait, a
//! send's next step in the future, or the end).
//!
//! Time is the `now` the caller passes (a clock value): the engine never
//! sleeps and never reads the system clock, so tests step time forward.
//! Positions are stored (`store::journeys`): a restart resumes exactly
//! where contacts were. Each step's effect (a tag, attributes, a pending
//! send row) is written in one transaction with the conditional move off
//! the step, so a step is applied once even when two nodes tick at once;
//! a worker also holds the enrolments it moves with a lease, so nodes
//! rarely contend at all. A send step only creates the pending send row in
//! the step's run (trigger `journey`); delivering it is the delivery
//! service's job, not this module's.

use std::collections::{BTreeMap, HashMap};

use crate::campaign::Campaign;
use crate::campaign::journey::{Action, Condition, Journey, Trigger, next_time_of_day};
use crate::domain::time::Millis;
use crate::send::SegmentFilter;
use crate::store::journeys::{self as repo, Enrolment, Entry, Move, Source};
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error("journey {journey}: {source}")]
    Store {
        journey: String,
        #[source]
        source: StoreError,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

/// What one tick did, over every journey.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TickReport {
    pub enrolled: u64,
    /// Steps applied (a wait that ended counts as one).
    pub steps: u64,
    /// Pending send rows created.
    pub sends: u64,
    /// Contacts who left, by reason.
    pub left: BTreeMap<String, u64>,
}

/// A trigger's sources written just before a tick may commit just after
/// it (writers stamp their rows before committing): each tick reads from
/// this long before where the last one stopped. Enrolments are unique, so
/// reading a row twice enrols nobody twice.
const SLACK: Millis = 10 * 60_000;
/// Enrolments claimed at a time.
const BATCH: i64 = 200;
/// How long a worker holds the enrolments it moves: far longer than
/// moving them takes; a worker that dies loses them after this.
const LEASE: Millis = 5 * 60_000;
const DAY: Millis = 24 * 3600 * 1000;
/// Date triggers catch up at most this many missed days.
const MAX_CATCH_UP_DAYS: i64 = 31;

/// One tick of every journey, as this process (`send::worker_identity`).
pub async fn tick(
    store: &Store,
    journeys: &[Journey],
    now: Millis,
) -> std::result::Result<TickReport, JourneyError> {
    tick_as(store, journeys, now, crate::send::worker_identity()).await
}

/// `tick`, holding leases as `worker` (tests stand for two nodes).
pub async fn tick_as(
    store: &Store,
    journeys: &[Journey],
    now: Millis,
    worker: &str,
) -> std::result::Result<TickReport, JourneyError> {
    let mut report = TickReport::default();
    for j in journeys {
        run_one(store, j, now, worker, &mut report)
            .await
            .map_err(|source| JourneyError::Store {
                journey: j.slug.clone(),
                source,
            })?;
    }
    Ok(report)
}

async fn list_id(store: &Store, name: &str, now: Millis) -> Result<i64> {
    let mut tx = store.begin().await?;
    let id = store::contacts::ensure_list(&mut tx, name, now).await?;
    tx.commit().await?;
    Ok(id)
}

async fn run_one(
    store: &Store,
    j: &Journey,
    now: Millis,
    worker: &str,
    report: &mut TickReport,
) -> Result<()> {
    let row = repo::ensure(
        store,
        &j.slug,
        &j.name,
        &j.path.display().to_string(),
        &j.file_hash,
        now,
    )
    .await?;
    let list = list_id(store, &j.list, now).await?;
    report.enrolled += enrol(store, j, &row, list, now).await?;
    let conversion = j.exit_on_conversion.then_some(j.conversion.as_str());
    for (reason, n) in repo::exits(store, row.id, list, conversion, now).await? {
        if n > 0 {
            *report.left.entry(reason.to_string()).or_default() += n;
        }
    }
    let mut runs = HashMap::new();
    loop {
        let due = repo::claim_due(store, row.id, worker, BATCH, now + LEASE, now).await?;
        if due.is_empty() {
            break;
        }
        for e in due {
            let id = e.id;
            if walk(store, j, list, e, now, &mut runs, report).await? {
                repo::release(store, id, worker).await?;
            }
            // Otherwise the lease keeps it out of this tick's next claims.
        }
    }
    Ok(())
}

/// Where arriving at step `idx` at `at` puts a contact: a wait step is due
/// when its wait is over, any other step at once, past the last step out.
pub fn arrive(j: &Journey, idx: usize, at: Millis) -> Move<'_> {
    match j.steps.get(idx) {
        None => Move::Leave("completed"),
        Some(s) => Move::To {
            step: &s.id,
            next_at: match &s.action {
                Action::Wait(d) => at.saturating_add(*d),
                Action::WaitUntil {
                    minute,
                    offset_minutes,
                } => next_time_of_day(at, *minute, *offset_minutes),
                _ => at,
            },
        },
    }
}

/// Days `d` to evaluate a date trigger for (UTC days since the epoch), and
/// what `journeys.scanned_to` becomes: for date triggers it is the first
/// instant of the next day to evaluate, so each day is read once, at the
/// first tick on or after it.
fn date_days(scanned_to: Millis, now: Millis) -> (std::ops::RangeInclusive<i64>, Millis) {
    let today = now.div_euclid(DAY);
    let first = scanned_to
        .div_euclid(DAY)
        .max(today - MAX_CATCH_UP_DAYS + 1);
    (first..=today, (today + 1) * DAY)
}

fn date_of(day: i64) -> Option<time::Date> {
    // Julian day 2440588 is 1970-01-01.
    time::Date::from_julian_day(i32::try_from(day + 2_440_588).ok()?).ok()
}

fn ymd(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The (entry key, date to match) pairs of a date trigger for `days`.
pub fn date_targets(
    days: std::ops::RangeInclusive<i64>,
    offset_days: i64,
    yearly: bool,
) -> Vec<(String, String)> {
    days.filter_map(|d| {
        let today = date_of(d)?;
        let target = date_of(d - offset_days)?;
        let t = ymd(target);
        Some((
            format!("date:{}", ymd(today)),
            if yearly { t[5..].to_string() } else { t },
        ))
    })
    .collect()
}

async fn enrol(
    store: &Store,
    j: &Journey,
    row: &repo::JourneyRow,
    list: i64,
    now: Millis,
) -> Result<u64> {
    let Move::To { step, next_at } = arrive(j, 0, now) else {
        return Ok(0);
    };
    let entry = Entry {
        journey_id: row.id,
        list_id: list,
        reentry: j.reentry,
        step,
        next_at,
        now,
    };
    let since = row.scanned_to - SLACK;
    let mut scanned_to = now;
    let filter;
    let targets;
    let source = match &j.trigger {
        Trigger::ListJoined { list: l } => Source::ListJoined {
            list_id: if *l == j.list {
                list
            } else {
                list_id(store, l, now).await?
            },
            since,
        },
        Trigger::SignupConfirmed { list: l } => Source::SignupConfirmed {
            list_id: if *l == j.list {
                list
            } else {
                list_id(store, l, now).await?
            },
            since,
        },
        Trigger::Event { kind } => Source::Event { kind, since },
        Trigger::Date {
            attribute,
            offset_days,
            yearly,
        } => {
            let (days, next) = date_days(row.scanned_to, now);
            scanned_to = next;
            targets = date_targets(days, *offset_days, *yearly);
            if targets.is_empty() {
                return Ok(0);
            }
            Source::Date {
                key: attribute,
                days: &targets,
                yearly: *yearly,
            }
        }
        Trigger::Segment(seg) => {
            filter = SegmentFilter {
                segment: Some(seg.clone()),
                now,
            };
            Source::Filter(&filter)
        }
        Trigger::NoEngagement { days } => Source::Silent {
            before: now - Millis::from(*days) * DAY,
        },
    };
    let n = repo::enrol(store, &source, &entry).await?;
    repo::scanned(store, row.id, scanned_to).await?;
    Ok(n)
}

/// What a step writes, decided before its transaction (reads and the
/// step's campaign and run are done outside it: SQLite has one writer).
enum Effect {
    None,
    Send { campaign_id: i64, run_id: i64 },
    Tag(String),
    Untag(String),
    Set(serde_json::Value),
}

/// The campaign row and run of a send step for a contact's `entry`th walk
/// (a run is unique per contact, so each entry has its own run).
async fn run_for(
    store: &Store,
    c: &Campaign,
    entry: i64,
    now: Millis,
    runs: &mut HashMap<(String, i64), (i64, i64)>,
) -> Result<(i64, i64)> {
    let key = (c.slug.clone(), entry);
    if let Some(ids) = runs.get(&key) {
        return Ok(*ids);
    }
    let row = store::campaigns::upsert(
        store,
        &c.slug,
        &c.name,
        &c.path.display().to_string(),
        &c.file_hash,
        Some(&c.list),
        now,
    )
    .await?;
    store::campaigns::set_attribution_days(store, row.id, c.attribution_days).await?;
    let run = store::runs::get_or_create(store, row.id, "journey", &occurrence(entry), now).await?;
    if run.started_at.is_none() {
        store::runs::mark_started(store, run.id, row.id, now).await?;
    }
    runs.insert(key, (row.id, run.id));
    Ok((row.id, run.id))
}

/// The occurrence of a journey step's run: one per entry into the journey.
pub fn occurrence(entry: i64) -> String {
    format!("entry-{entry}")
}

/// Moves one enrolment as far as it goes at `now`. Returns false when it
/// stopped on a step another node moved first (it keeps its lease, and is
/// looked at again by a later tick).
async fn walk(
    store: &Store,
    j: &Journey,
    list: i64,
    mut e: Enrolment,
    now: Millis,
    runs: &mut HashMap<(String, i64), (i64, i64)>,
    report: &mut TickReport,
) -> Result<bool> {
    // Every step but a wait moves on at once; a journey's loops all wait
    // (checked when it is read), so this many steps reach a wait or the end.
    for _ in 0..=j.steps.len() {
        if e.next_at > now {
            return Ok(true);
        }
        let Some(idx) = j.index_of(&e.step) else {
            // The file changed and the step is gone: the contact cannot be
            // placed anywhere sensible.
            let mut tx = store.begin().await?;
            let moved = repo::advance(
                &mut tx,
                &e,
                &Move::Leave("step_removed"),
                None,
                "leave",
                Some("the step is no longer in the journey file"),
                now,
            )
            .await?;
            if !moved {
                return Ok(false);
            }
            tx.commit().await?;
            *report.left.entry("step_removed".into()).or_default() += 1;
            return Ok(true);
        };
        let step = &j.steps[idx];
        let (effect, to, detail) = match &step.action {
            Action::Wait(_) | Action::WaitUntil { .. } => {
                (Effect::None, arrive(j, idx + 1, now), None)
            }
            Action::Send(c) => {
                let (campaign_id, run_id) = run_for(store, c, e.entry, now, runs).await?;
                (
                    Effect::Send {
                        campaign_id,
                        run_id,
                    },
                    arrive(j, idx + 1, now),
                    Some(c.slug.clone()),
                )
            }
            Action::Branch {
                condition,
                then,
                otherwise,
            } => {
                let holds = match condition {
                    Condition::Opened | Condition::Clicked => match e.last_send_id {
                        Some(send) => {
                            let kind = if *condition == Condition::Opened {
                                "open"
                            } else {
                                "click"
                            };
                            repo::send_had(store, send, kind).await?
                        }
                        None => false,
                    },
                    Condition::Purchased => {
                        repo::converted_since(store, e.contact_id, &j.conversion, e.entered_at)
                            .await?
                    }
                    Condition::Matches(seg) => {
                        let f = SegmentFilter {
                            segment: Some(seg.clone()),
                            now,
                        };
                        repo::matches(store, e.contact_id, &f).await?
                    }
                };
                let target = if holds { *then } else { *otherwise };
                let name = j.steps.get(target).map_or("end", |s| s.id.as_str());
                (
                    Effect::None,
                    arrive(j, target, now),
                    Some(format!("{} → {name}", if holds { "yes" } else { "no" })),
                )
            }
            Action::Tag(t) => (
                Effect::Tag(t.clone()),
                arrive(j, idx + 1, now),
                Some(t.clone()),
            ),
            Action::Untag(t) => (
                Effect::Untag(t.clone()),
                arrive(j, idx + 1, now),
                Some(t.clone()),
            ),
            Action::Set(values) => {
                let obj: serde_json::Map<String, serde_json::Value> =
                    values.iter().cloned().collect();
                let v = serde_json::Value::Object(obj);
                let detail = v.to_string();
                (Effect::Set(v), arrive(j, idx + 1, now), Some(detail))
            }
            Action::End => (Effect::None, Move::Leave("completed"), None),
        };

        let mut tx = store.begin().await?;
        store::changes::set_origin(&mut tx, &format!("journey {}: step {}", j.slug, step.id))
            .await?;
        let mut send_id = None;
        match &effect {
            Effect::None => {}
            Effect::Send {
                campaign_id,
                run_id,
            } => {
                send_id = Some(
                    store::sends::insert_one(
                        &mut tx,
                        *campaign_id,
                        *run_id,
                        list,
                        e.contact_id,
                        now,
                    )
                    .await?,
                );
            }
            Effect::Tag(t) => {
                repo::add_tag(&mut tx, e.contact_id, t).await?;
            }
            Effect::Untag(t) => {
                repo::remove_tag(&mut tx, e.contact_id, t).await?;
            }
            Effect::Set(v) => repo::set_attributes(&mut tx, e.contact_id, v, now).await?,
        }
        let moved = repo::advance(
            &mut tx,
            &e,
            &to,
            send_id,
            step.action.kind(),
            detail.as_deref(),
            now,
        )
        .await?;
        if !moved {
            // Dropped: rolled back with the effect.
            return Ok(false);
        }
        tx.commit().await?;
        report.steps += 1;
        if send_id.is_some() {
            report.sends += 1;
        }
        match to {
            Move::Leave(reason) => {
                *report.left.entry(reason.to_string()).or_default() += 1;
                return Ok(true);
            }
            Move::To { step, next_at } => {
                e.step = step.to_string();
                e.next_at = next_at;
                if send_id.is_some() {
                    e.last_send_id = send_id;
                }
            }
        }
    }
    Ok(false)
}

/// Where a journey's contacts stand: in the file's order of steps (with
/// steps no longer in the file after them), and who left by each reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// (step id, what it does, contacts at it)
    pub steps: Vec<(String, String, u64)>,
    /// (reason, contacts)
    pub left: Vec<(String, u64)>,
}

/// Every reason a contact leaves a journey for.
pub const LEFT_REASONS: &[&str] = &[
    "completed",
    "unsubscribed",
    "suppressed",
    "converted",
    "step_removed",
];

pub async fn status(store: &Store, j: &Journey) -> Result<Status> {
    let standing = match repo::find(store, &j.slug).await? {
        Some(row) => repo::standing(store, row.id).await?,
        None => repo::Standing::default(),
    };
    let count =
        |v: &[(String, u64)], k: &str| v.iter().find(|(s, _)| s == k).map_or(0, |(_, n)| *n);
    let mut steps: Vec<(String, String, u64)> = j
        .steps
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                s.action.kind().to_string(),
                count(&standing.at_step, &s.id),
            )
        })
        .collect();
    for (id, n) in &standing.at_step {
        if j.index_of(id).is_none() {
            steps.push((id.clone(), "(not in the file)".into(), *n));
        }
    }
    let left = LEFT_REASONS
        .iter()
        .map(|r| (r.to_string(), count(&standing.left, r)))
        .collect();
    Ok(Status { steps, left })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_days_read_each_day_once_and_catch_up_a_month_at_most() {
        let day = |d: i64| d * DAY;
        // First tick, mid-day: today only; then nothing until tomorrow.
        let (days, next) = date_days(day(100) + 5_000, day(100) + 9_000);
        assert_eq!(days, 100..=100);
        assert_eq!(next, day(101));
        let (days, _) = date_days(next, day(100) + 20_000);
        assert!(days.is_empty());
        // Down for three days: the missed days too.
        let (days, next) = date_days(day(101), day(103) + 1);
        assert_eq!(days, 101..=103);
        assert_eq!(next, day(104));
        // Down for a year: the last 31 days.
        let (days, _) = date_days(day(101), day(500));
        assert_eq!(days, 470..=500);
    }

    #[test]
    fn date_targets_move_by_the_offset() {
        // 2026-12-04 is day 20791.
        let d = 20_791;
        assert_eq!(ymd(date_of(d).unwrap()), "2026-12-04");
        // A week before the birthday: on the 4th, birthdays on the 11th.
        assert_eq!(
            date_targets(d..=d, -7, true),
            vec![("date:2026-12-04".to_string(), "12-11".to_string())]
        );
        // Three days after a renewal date, whole dates.
        assert_eq!(
            date_targets(d..=d + 1, 3, false),
            vec![
                ("date:2026-12-04".to_string(), "2026-12-01".to_string()),
                ("date:2026-12-05".to_string(), "2026-12-02".to_string())
            ]
        );
    }
}
