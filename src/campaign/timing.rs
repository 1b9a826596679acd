//! When a campaign sends by itself: `schedule` (a cron expression, in a
//! `timezone`) or `send_at` (one instant), and what happens to an occurrence
//! missed while cartero was down (`missed`). Parsed and checked here, with
//! the file:line:col of each key; the scheduler (`crate::schedule`) turns a
//! [`When`] into occurrences.

use std::str::FromStr;

use crate::domain::time::Millis;

use super::{CampaignError, Location};

/// A cron schedule or a single instant.
#[derive(Debug, Clone)]
pub enum Timing {
    /// `schedule = "0 9 * * MON"` in `timezone` (UTC when not given).
    Cron {
        /// As written in the file, for messages and `schedule list`.
        expr: String,
        schedule: Box<cron::Schedule>,
        tz: chrono_tz::Tz,
    },
    /// `send_at = 2026-12-01T09:00:00+01:00`.
    At(Millis),
}

/// What an occurrence that fell due while no cartero process was running
/// (or more than `missed_after` ago) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// The latest missed occurrence is sent late; earlier ones are skipped
    /// (a weekly newsletter missed three times goes out once, not three times).
    Send,
    /// Every missed occurrence is skipped, and recorded as skipped.
    Skip,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Send => "send",
            Missed::Skip => "skip",
        }
    }
}

/// A campaign's own timing.
#[derive(Debug, Clone)]
pub struct When {
    pub timing: Timing,
    pub missed: Missed,
    /// An occurrence found due later than this after its time was missed.
    pub missed_after_ms: i64,
    /// Where `schedule` or `send_at` is written.
    pub at: Location,
}

/// `missed_after_minutes` when the file does not say.
pub const DEFAULT_MISSED_AFTER_MINUTES: i64 = 15;

impl When {
    /// The timing in words: `cron "0 9 * * MON" (Europe/Madrid)`, or the
    /// `send_at` instant in UTC.
    pub fn describe(&self) -> String {
        match &self.timing {
            Timing::Cron { expr, tz, .. } => format!("cron {expr:?} ({tz})"),
            Timing::At(ms) => format!("send_at {}", crate::domain::time::to_rfc3339(*ms)),
        }
    }

    /// The run trigger this timing makes (`campaign_runs.trigger`).
    pub fn trigger(&self) -> &'static str {
        match self.timing {
            Timing::Cron { .. } => "schedule",
            Timing::At(_) => "send_at",
        }
    }
}

/// The raw keys as found in the file, with their places.
pub(super) struct Keys<'a> {
    pub schedule: Option<(&'a str, Location)>,
    pub timezone: Option<(&'a str, Location)>,
    pub send_at: Option<(&'a toml::value::Datetime, Location)>,
    pub missed: Option<(&'a str, Location)>,
    pub missed_after_minutes: Option<(i64, Location)>,
}

pub(super) fn parse(k: Keys<'_>) -> Result<Option<When>, CampaignError> {
    let tz = match &k.timezone {
        None => None,
        Some((name, at)) => Some(chrono_tz::Tz::from_str(name.trim()).map_err(|_| {
            at.error(format!(
                "unknown time zone {name:?}: use an IANA name such as \"Europe/Madrid\" or \"UTC\""
            ))
        })?),
    };
    let (timing, at) = match (&k.schedule, &k.send_at) {
        (Some(_), Some((_, at))) => {
            return Err(at.error(
                "a campaign has either `schedule` (recurring) or `send_at` (once), not both",
            ));
        }
        (None, None) => {
            for (key, place) in [
                ("timezone", k.timezone.as_ref().map(|t| &t.1)),
                ("missed", k.missed.as_ref().map(|t| &t.1)),
                (
                    "missed_after_minutes",
                    k.missed_after_minutes.as_ref().map(|t| &t.1),
                ),
            ] {
                if let Some(place) = place {
                    return Err(place.error(format!(
                        "`{key}` needs `schedule` or `send_at` in the same file"
                    )));
                }
            }
            return Ok(None);
        }
        (Some((expr, at)), None) => (cron_timing(expr, tz, at)?, at.clone()),
        (None, Some((dt, at))) => (Timing::At(instant(dt, tz, at)?), at.clone()),
    };
    let missed = match &k.missed {
        None => Missed::Send,
        Some((v, at)) => match v.trim() {
            "send" => Missed::Send,
            "skip" => Missed::Skip,
            other => {
                return Err(at.error(format!(
                    "`missed` is \"send\" (the latest missed occurrence goes out late) or \"skip\", not {other:?}"
                )));
            }
        },
    };
    let missed_after_ms = match &k.missed_after_minutes {
        None => DEFAULT_MISSED_AFTER_MINUTES * 60_000,
        Some((m, at)) => {
            if !(1..=7 * 24 * 60).contains(m) {
                return Err(at.error(format!(
                    "`missed_after_minutes` must be from 1 to 10080 (a week), not {m}"
                )));
            }
            m * 60_000
        }
    };
    Ok(Some(When {
        timing,
        missed,
        missed_after_ms,
        at,
    }))
}

/// A cron expression: five fields (minute hour day-of-month month
/// day-of-week, as in crontab) get a seconds field of 0; six or seven
/// fields are the cron crate's own syntax. Days of the week by name only:
/// the cron crate counts 1 = Sunday where crontab counts 1 = Monday, and a
/// campaign sent on the wrong day cannot be called back.
fn cron_timing(
    expr: &str,
    tz: Option<chrono_tz::Tz>,
    at: &Location,
) -> Result<Timing, CampaignError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let full = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 | 7 => fields.join(" "),
        n => {
            return Err(at.error(format!(
                "`schedule` {expr:?} has {n} fields: write five, as in crontab \
                 (minute hour day-of-month month day-of-week), e.g. \"0 9 * * MON\""
            )));
        }
    };
    let parts: Vec<&str> = full.split(' ').collect();
    if !parts[0].bytes().all(|b| b.is_ascii_digit()) {
        return Err(at.error(format!(
            "`schedule` {expr:?}: the seconds field must be one number: a campaign runs at most once a minute"
        )));
    }
    if parts[5].bytes().any(|b| b.is_ascii_digit()) {
        return Err(at.error(format!(
            "`schedule` {expr:?}: write days of the week by name (MON, TUE-FRI, SAT,SUN): \
             numbers mean different days in crontab (1 = Monday) and in the cron crate (1 = Sunday)"
        )));
    }
    let schedule = cron::Schedule::from_str(&full)
        .map_err(|e| at.error(format!("`schedule` {expr:?} is not a cron expression: {e}")))?;
    Ok(Timing::Cron {
        expr: expr.trim().to_string(),
        schedule: Box::new(schedule),
        tz: tz.unwrap_or(chrono_tz::UTC),
    })
}

/// `send_at` as an instant: with its own offset, or a local date-time in
/// `timezone`.
fn instant(
    dt: &toml::value::Datetime,
    tz: Option<chrono_tz::Tz>,
    at: &Location,
) -> Result<Millis, CampaignError> {
    use chrono::TimeZone;
    let (Some(date), Some(time)) = (dt.date, dt.time) else {
        return Err(at.error(format!(
            "`send_at` {dt} needs a date and a time, e.g. 2026-12-01T09:00:00+01:00"
        )));
    };
    let naive = chrono::NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
    .and_then(|d| {
        d.and_hms_nano_opt(
            u32::from(time.hour),
            u32::from(time.minute),
            u32::from(time.second),
            time.nanosecond,
        )
    })
    .ok_or_else(|| at.error(format!("`send_at` {dt} is not a valid date and time")))?;
    let ms = match (dt.offset, tz) {
        (Some(toml::value::Offset::Z), _) => naive.and_utc().timestamp_millis(),
        (Some(toml::value::Offset::Custom { minutes }), _) => {
            let off = chrono::FixedOffset::east_opt(i32::from(minutes) * 60)
                .ok_or_else(|| at.error(format!("`send_at` {dt}: the offset is out of range")))?;
            off.from_local_datetime(&naive)
                .single()
                .ok_or_else(|| at.error(format!("`send_at` {dt} is not a valid instant")))?
                .timestamp_millis()
        }
        (None, Some(tz)) => match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => t.timestamp_millis(),
            chrono::LocalResult::Ambiguous(_, _) => {
                return Err(at.error(format!(
                    "`send_at` {dt} happens twice in {tz} (the clocks go back): add the offset you mean"
                )));
            }
            chrono::LocalResult::None => {
                return Err(at.error(format!(
                    "`send_at` {dt} does not exist in {tz} (the clocks go forward)"
                )));
            }
        },
        (None, None) => {
            return Err(at.error(format!(
                "`send_at` {dt} has no UTC offset: write one (2026-12-01T09:00:00+01:00) or set `timezone`"
            )));
        }
    };
    Ok(ms)
}
