//! The scheduler: campaigns that send by themselves.
//!
//! A campaign file with `schedule` (cron) or `send_at` (once) is read from
//! the campaigns folder on every tick of `cartero serve`. Each occurrence
//! that falls due becomes a run of the campaign (`campaign_runs`, unique per
//! campaign and occurrence), so an occurrence is sent once across restarts
//! and across nodes sharing one database; the runs are then delivered by the
//! same send path as `cartero campaign send` (claims with leases: several
//! nodes share a run's rows, a dead node's rows are taken over).
//!
//! Time comes from the injected [`Clock`]: [`tick`] takes `now`, so tests
//! step through weeks of a schedule without sleeping.
//!
//! Rules (docs/SCHEDULING.md):
//! - occurrences before the scheduler first saw the schedule are never sent
//!   (a file committed with a `send_at` long past does not fire), except
//!   those within `missed_after_minutes` of that first sight;
//! - an occurrence found due more than `missed_after_minutes` after its
//!   time was missed (no node was running): `missed = "send"` sends the
//!   latest missed occurrence late and skips the earlier ones, `"skip"`
//!   skips them all; a skipped occurrence is recorded as a run in state
//!   `skipped` with the reason, so no node sends it later.

/// Journeys: contacts moved through steps on the caller's clock.
pub mod journey;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::Clock;
use crate::campaign::{Campaign, Missed, Timing, When};
use crate::config::Config;
use crate::domain::time::{Millis, to_rfc3339};
use crate::store::runs::{self, Initial};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: cannot read the campaigns folder: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Occurrences computed in one look, at most: the most recent ones are kept
/// when a long outage left more (a per-minute schedule down for a year).
const MAX_OCCURRENCES: usize = 1000;
/// Occurrences walked through in one look before the rest is passed over.
const MAX_WALK: usize = 200_000;

/// The occurrences of `timing` in (`after`, `upto`], oldest first: at most
/// `MAX_OCCURRENCES`, the latest ones, and how many earlier ones were
/// passed over.
pub fn occurrences(timing: &Timing, after: Millis, upto: Millis) -> (Vec<Millis>, u64) {
    match timing {
        Timing::At(at) => {
            if *at > after && *at <= upto {
                (vec![*at], 0)
            } else {
                (Vec::new(), 0)
            }
        }
        Timing::Cron { schedule, tz, .. } => {
            use chrono::TimeZone;
            let Some(start) = tz.timestamp_millis_opt(after).single() else {
                return (Vec::new(), 0);
            };
            let mut kept = VecDeque::new();
            let mut passed_over = 0u64;
            for t in schedule.after(&start).take(MAX_WALK) {
                let ms = t.timestamp_millis();
                if ms > upto {
                    break;
                }
                if kept.len() == MAX_OCCURRENCES {
                    kept.pop_front();
                    passed_over += 1;
                }
                kept.push_back(ms);
            }
            (kept.into(), passed_over)
        }
    }
}

/// The first occurrence after `after`.
pub fn next_after(timing: &Timing, after: Millis) -> Option<Millis> {
    match timing {
        Timing::At(at) => (*at > after).then_some(*at),
        Timing::Cron { schedule, tz, .. } => {
            use chrono::TimeZone;
            let start = tz.timestamp_millis_opt(after).single()?;
            schedule.after(&start).next().map(|t| t.timestamp_millis())
        }
    }
}

/// What becomes of one occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Due now: sent.
    Send,
    /// Missed, and the latest missed one under `missed = "send"`: sent late.
    SendLate,
    /// Missed and passed over, with the reason recorded on its run.
    Skip(String),
}

/// Decides each occurrence (oldest first) found due at `now`.
pub fn decide(when: &When, occurrences: &[Millis], now: Millis) -> Vec<(Millis, Decision)> {
    let on_time = |o: Millis| now.saturating_sub(o) <= when.missed_after_ms;
    // Under `missed = "send"` only the latest missed occurrence goes out,
    // and only when no occurrence after it is on time.
    let late_one = match when.missed {
        Missed::Send => occurrences.last().copied().filter(|o| !on_time(*o)),
        Missed::Skip => None,
    };
    let minutes = when.missed_after_ms / 60_000;
    occurrences
        .iter()
        .map(|&o| {
            let d = if on_time(o) {
                Decision::Send
            } else if Some(o) == late_one {
                Decision::SendLate
            } else if when.missed == Missed::Skip {
                Decision::Skip(format!(
                    "missed: found due {} after its time (more than {minutes} min), and the campaign says missed = \"skip\"",
                    human_span(now - o)
                ))
            } else {
                Decision::Skip(format!(
                    "missed: a later occurrence ({}) was sent instead",
                    to_rfc3339(occurrences.last().copied().unwrap_or(o))
                ))
            };
            (o, d)
        })
        .collect()
}

/// An occurrence's key in `campaign_runs.occurrence`: its instant in RFC
/// 3339, UTC, to the second (sorts as time does).
pub fn occurrence_key(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    match ::time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let f = ::time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            );
            t.format(&f).unwrap_or_else(|_| ms.to_string())
        }
        Err(_) => ms.to_string(),
    }
}

fn human_span(ms: i64) -> String {
    let m = ms / 60_000;
    if m < 120 {
        format!("{m} min")
    } else if m < 48 * 60 {
        format!("{} h", m / 60)
    } else {
        format!("{} days", m / (24 * 60))
    }
}

/// A campaign file the scheduler could not read, with the error's place.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub path: PathBuf,
    pub error: String,
}

/// The campaign files of `dir` that say `schedule` or `send_at`, parsed and
/// checked, and the ones that could not be. Other files (manual campaigns,
/// `segments.toml`, `kpis.toml`, journeys) are passed over unread beyond
/// their keys.
pub fn load_scheduled(
    dir: &Path,
    templates_dir: &Path,
) -> Result<(Vec<Campaign>, Vec<LoadError>), ScheduleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ScheduleError::Folder {
        path: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    let mut campaigns = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(LoadError {
                    path,
                    error: e.to_string(),
                });
                continue;
            }
        };
        // Only files that ask to be scheduled; a file that is not TOML at
        // all is `campaign check`'s to report, unless it would be ours.
        let Ok(table) = text.parse::<toml::Table>() else {
            if (text.contains("schedule") || text.contains("send_at"))
                && let Err(e) = Campaign::parse(&text, &path, templates_dir)
            {
                errors.push(LoadError {
                    path,
                    error: e.to_string(),
                });
            }
            continue;
        };
        let scheduled = table.contains_key("schedule") || table.contains_key("send_at");
        let journey = table.contains_key("journey")
            || table.get("kind").and_then(|k| k.as_str()) == Some("journey");
        if !scheduled || journey {
            continue;
        }
        match Campaign::parse(&text, &path, templates_dir) {
            Ok(c) => campaigns.push(c),
            Err(e) => errors.push(LoadError {
                path,
                error: e.to_string(),
            }),
        }
    }
    Ok((campaigns, errors))
}

/// What one look at the schedules did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// (campaign, occurrence) runs created to be sent.
    pub created: Vec<(String, String)>,
    /// (campaign, occurrence, why) recorded as skipped.
    pub skipped: Vec<(String, String, String)>,
    /// Occurrences too many to record one by one after a long outage.
    pub passed_over: u64,
}

/// Creates the runs of every occurrence of `campaigns` that fell due by
/// `now`, once: the first node to insert an occurrence's run decides it.
pub async fn tick(
    store: &Store,
    campaigns: &[Campaign],
    now: Millis,
) -> Result<TickReport, ScheduleError> {
    let mut report = TickReport::default();
    for c in campaigns {
        let Some(when) = &c.when else { continue };
        let row = crate::store::campaigns::ensure(
            store,
            &c.slug,
            &c.name,
            &c.path.display().to_string(),
            &c.file_hash,
            Some(&c.list),
            now,
        )
        .await?;
        let seen = runs::schedule_seen(
            store,
            row.id,
            &when.describe(),
            now.saturating_sub(when.missed_after_ms),
            now,
        )
        .await?;
        let (occs, passed_over) = occurrences(&when.timing, seen.checked_upto, now);
        report.passed_over += passed_over;
        if passed_over > 0 {
            tracing::warn!(
                campaign = %c.slug,
                passed_over,
                "occurrences missed during a long outage were passed over without a record"
            );
        }
        for (o, d) in decide(when, &occs, now) {
            let key = occurrence_key(o);
            let initial = match &d {
                Decision::Send | Decision::SendLate => Initial::Pending,
                Decision::Skip(why) => Initial::Skipped(why.clone()),
            };
            let (_, created) =
                runs::create_as(store, row.id, when.trigger(), &key, initial, now).await?;
            if !created {
                // Another node (or an earlier look) decided it already.
                continue;
            }
            match d {
                Decision::Skip(why) => {
                    tracing::info!(campaign = %c.slug, occurrence = %key, "{why}");
                    report.skipped.push((c.slug.clone(), key, why));
                }
                Decision::SendLate => {
                    tracing::warn!(campaign = %c.slug, occurrence = %key, "an occurrence missed while cartero was down is sent late (missed = \"send\")");
                    report.created.push((c.slug.clone(), key));
                }
                Decision::Send => {
                    tracing::info!(campaign = %c.slug, occurrence = %key, "a scheduled occurrence is due");
                    report.created.push((c.slug.clone(), key));
                }
            }
        }
        runs::schedule_checked(store, row.id, now).await?;
    }
    Ok(report)
}

/// One line of `cartero schedule list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub campaign: String,
    pub file: String,
    pub timing: String,
    /// The next occurrence not yet decided (RFC 3339, UTC).
    pub next: Option<String>,
    pub last_occurrence: Option<String>,
    pub last_state: Option<String>,
    pub paused: bool,
    /// Why the next thing happens (or does not), in words.
    pub why: String,
}

/// What runs next and why, for every scheduled campaign file.
pub async fn list(
    store: &Store,
    campaigns: &[Campaign],
    now: Millis,
) -> Result<Vec<Entry>, ScheduleError> {
    let mut out = Vec::new();
    for c in campaigns {
        let Some(when) = &c.when else { continue };
        let row = crate::store::campaigns::find(store, &c.slug).await?;
        let (seen, last, paused) = match &row {
            Some(r) => (
                runs::schedule_of(store, r.id).await?,
                runs::last_scheduled(store, r.id).await?,
                crate::store::campaigns::paused(store, r.id).await?,
            ),
            None => (None, None, None),
        };
        // The next occurrence no look has decided yet; before the first
        // look, those from now on (a past send_at will not fire).
        let from = seen
            .as_ref()
            .map(|s| s.checked_upto.max(now.saturating_sub(when.missed_after_ms)))
            .unwrap_or(now.saturating_sub(when.missed_after_ms));
        let next = next_after(&when.timing, from);
        let why = match (&paused, next, &last) {
            (Some((at, reason)), _, _) => format!(
                "paused since {}{}: `cartero campaign resume {}` lets it go on",
                to_rfc3339(*at),
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                c.slug
            ),
            (None, _, Some(l)) if l.state == "pending" || l.state == "sending" => format!(
                "the occurrence {} is being sent ({})",
                l.occurrence, l.state
            ),
            (None, Some(n), _) if n <= now => {
                "due now: `cartero serve` sends it on its next look".to_string()
            }
            (None, Some(_), _) => match &when.timing {
                Timing::Cron { expr, tz, .. } => format!("cron {expr:?} in {tz}"),
                Timing::At(_) => "send_at".to_string(),
            },
            (None, None, Some(l)) if l.state == "skipped" => format!(
                "no occurrence left; the last was skipped: {}",
                l.note_text()
            ),
            (None, None, Some(_)) => "no occurrence left: sent".to_string(),
            (None, None, None) => match (&when.timing, &seen) {
                (Timing::At(at), _) => format!(
                    "send_at {} passed before cartero first saw this file{}: it will not be sent by itself; `cartero campaign send {}` sends it now",
                    to_rfc3339(*at),
                    seen.as_ref()
                        .map(|s| format!(" (at {})", to_rfc3339(s.since)))
                        .unwrap_or_default(),
                    c.path.display()
                ),
                _ => "the schedule has no further occurrence".to_string(),
            },
        };
        out.push(Entry {
            campaign: c.slug.clone(),
            file: c.path.display().to_string(),
            timing: when.describe(),
            next: next.map(to_rfc3339),
            last_occurrence: last.as_ref().map(|l| l.occurrence.clone()),
            last_state: last.as_ref().map(|l| l.state.clone()),
            paused: paused.is_some(),
            why,
        });
    }
    Ok(out)
}

/// The scheduler inside `cartero serve`: looks at the campaign files and
/// the open runs every `interval`, creates the runs of due occurrences and
/// delivers every open scheduled run that this process is not delivering
/// yet. Stops when `cancel` fires: the sends in progress release their
/// claims (another node, or the next start, resumes them).
pub struct Scheduler {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub interval: Duration,
}

/// A run whose send failed (the database busy, the server refusing TLS)
/// waits before this process tries again: 5 s, doubled after each failure
/// in a row, at most 5 minutes.
const RETRY_FAILED_RUN: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));

impl Scheduler {
    pub async fn run(self, cancel: CancellationToken) {
        let dir = self.config.resolve(&self.config.project.campaigns_dir);
        let templates = self.config.resolve(&self.config.project.templates_dir);
        let mut active: HashSet<i64> = HashSet::new();
        // Runs whose last send failed: when, and how long to wait.
        let mut failed: HashMap<i64, (std::time::Instant, Duration)> = HashMap::new();
        let mut reported: HashMap<PathBuf, String> = HashMap::new();
        let mut sends: tokio::task::JoinSet<(i64, bool)> = tokio::task::JoinSet::new();
        // One rate limiter and one domain gate for every run this node
        // sends; the rate is divided among the nodes alive.
        let limits = crate::send::SharedLimits::for_config(&self.config);
        let me = crate::send::worker_identity();
        let alive_window = (self.interval * 3).as_millis() as i64;
        let mut tick_every = tokio::time::interval(self.interval);
        tick_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick_every.tick() => {}
                Some(done) = sends.join_next(), if !sends.is_empty() => {
                    if let Ok((run_id, ok)) = done {
                        active.remove(&run_id);
                        if ok {
                            failed.remove(&run_id);
                        } else {
                            let wait = failed
                                .get(&run_id)
                                .map_or(RETRY_FAILED_RUN.0, |(_, w)| (*w * 2).min(RETRY_FAILED_RUN.1));
                            failed.insert(run_id, (std::time::Instant::now(), wait));
                        }
                    }
                    continue;
                }
            }
            let now = self.clock.now();
            match runs_alive(&self.store, me, now, alive_window).await {
                Ok(n) => limits.limiter.set_nodes(n),
                Err(e) => tracing::warn!("scheduler: cannot record this node as alive: {e}"),
            }
            let (campaigns, errors) = match load_scheduled(&dir, &templates) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("scheduler: {e}");
                    continue;
                }
            };
            // Each broken file is reported once per version of its error.
            for e in errors {
                if reported.get(&e.path) != Some(&e.error) {
                    tracing::warn!(
                        "scheduler: {} (the file is not scheduled until fixed)",
                        e.error
                    );
                    reported.insert(e.path, e.error);
                }
            }
            if let Err(e) = tick(&self.store, &campaigns, self.clock.now()).await {
                tracing::warn!("scheduler: {e}");
                continue;
            }
            // Journeys move their contacts on; a send step leaves a pending
            // row in the step's run, delivered below (docs/JOURNEYS.md).
            let journeys = match crate::campaign::journey::load_dir(&dir, &templates) {
                Ok(all) => all
                    .into_iter()
                    .filter_map(|j| match j {
                        Ok(j) => Some(j),
                        Err(e) => {
                            let msg = e.to_string();
                            let key = PathBuf::from(format!("journey:{msg}"));
                            if reported.insert(key, msg.clone()).is_none() {
                                tracing::warn!(
                                    "scheduler: {msg} (the journey does not run until fixed)"
                                );
                            }
                            None
                        }
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!("scheduler: {e}");
                    Vec::new()
                }
            };
            match journey::tick(&self.store, &journeys, self.clock.now()).await {
                Ok(r) if r.enrolled + r.sends > 0 => {
                    tracing::info!(enrolled = r.enrolled, sends = r.sends, "journeys moved on")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("scheduler: {e}"),
            }
            let due = match runs::due(&self.store).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("scheduler: cannot read the open runs: {e}");
                    continue;
                }
            };
            for run in due {
                let waiting = failed
                    .get(&run.run_id)
                    .is_some_and(|(at, wait)| at.elapsed() < *wait);
                if active.contains(&run.run_id) || waiting {
                    continue;
                }
                let campaign = match run.trigger.as_str() {
                    "journey" => journeys.iter().find_map(|j| j.step_campaign(&run.slug)),
                    _ => campaigns.iter().find(|c| c.slug == run.slug),
                };
                let Some(campaign) = campaign else {
                    if reported
                        .insert(PathBuf::from(&run.slug), String::new())
                        .is_none()
                    {
                        tracing::warn!(campaign = %run.slug, occurrence = %run.occurrence, "an open scheduled run has no campaign file (or journey step) any more: it waits");
                    }
                    continue;
                };
                active.insert(run.run_id);
                let opts = crate::send::SendOptions {
                    dry_run: false,
                    no_wait: false,
                    run: Some(crate::send::RunOf {
                        trigger: run.trigger.clone(),
                        occurrence: run.occurrence.clone(),
                    }),
                    cancel: Some(cancel.child_token()),
                    limits: Some(limits.clone()),
                };
                let (store, config, clock, campaign) = (
                    self.store.clone(),
                    self.config.clone(),
                    self.clock.clone(),
                    campaign.clone(),
                );
                sends.spawn(async move {
                    let slug = campaign.slug.clone();
                    let r = crate::send::send_campaign_with_clock(
                        &store,
                        &config,
                        campaign,
                        &opts,
                        Arc::new(crate::send::NoProgress),
                        clock,
                    )
                    .await;
                    match r {
                        Ok(rep) => {
                            tracing::info!(
                                campaign = %slug,
                                occurrence = %run.occurrence,
                                sent = rep.sent_this_run,
                                halted = ?rep.halted,
                                "scheduled send stopped"
                            );
                            (run.run_id, true)
                        }
                        Err(e) => {
                            tracing::warn!(campaign = %slug, occurrence = %run.occurrence, "scheduled send failed, tried again soon: {e}");
                            (run.run_id, false)
                        }
                    }
                });
            }
        }
        // Shutdown: each send sees its child token, releases its claims and
        // returns.
        while sends.join_next().await.is_some() {}
        if let Err(e) = crate::store::nodes::leave(&self.store, me).await {
            tracing::debug!("scheduler: could not record this node's leaving: {e}");
        }
    }
}

/// Records this node alive and counts the nodes alive (seen within
/// `window`), itself included.
async fn runs_alive(store: &Store, me: &str, now: Millis, window: i64) -> Result<u64, StoreError> {
    crate::store::nodes::beat(store, me, now).await?;
    Ok(
        crate::store::nodes::alive(store, now.saturating_sub(window))
            .await?
            .max(1),
    )
}

#[cfg(test)]
mod tests;
