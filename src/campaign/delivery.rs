//! When each contact's message of a run goes out: the campaign file's
//! `[delivery]` table. `local_time` sends at a time of day in each
//! contact's own time zone; `best_hour` at the hour the contact has opened
//! or clicked most; `quiet_hours` is a span of the contact's night in which
//! nothing is delivered. Parsed and checked here at file:line:col; the
//! send path (`send::schedule_rows`) turns it into each row's due time.

use std::str::FromStr;

use chrono::{NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::domain::time::Millis;

use super::{CampaignError, Location};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A `local_time` that passed less than this ago today is sent now rather
/// than tomorrow: a run started at 09:20 still reaches the 09:00 people.
pub const LATE_TOLERANCE_MS: i64 = HOUR_MS;

/// `[delivery]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryFile {
    local_time: Option<Spanned<String>>,
    default_timezone: Option<Spanned<String>>,
    quiet_hours: Option<Spanned<String>>,
    #[serde(default)]
    best_hour: bool,
}

/// A campaign's per-contact delivery time.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// A time of day in each contact's own zone.
    pub local_time: Option<NaiveTime>,
    /// The zone of contacts without a valid `timezone`.
    pub default_tz: Tz,
    /// Local `[start, end)`; may wrap midnight ("21:00-08:00").
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    /// At the hour (UTC) the contact opened or clicked most, when they have
    /// such a history; `local_time` (or now) otherwise.
    pub best_hour: bool,
}

pub(super) fn parse(
    file: &DeliveryFile,
    at: impl Fn(std::ops::Range<usize>) -> Location,
    table_at: Location,
) -> Result<Delivery, CampaignError> {
    let time = |v: &Spanned<String>, key: &str| {
        parse_hhmm(v.get_ref()).ok_or_else(|| {
            at(v.span()).error(format!(
                "`{key}` is a time of day as \"HH:MM\" (24 hours), not {:?}",
                v.get_ref()
            ))
        })
    };
    let local_time = file
        .local_time
        .as_ref()
        .map(|v| time(v, "local_time"))
        .transpose()?;
    let default_tz = match &file.default_timezone {
        None => Tz::UTC,
        Some(v) => Tz::from_str(v.get_ref().trim()).map_err(|_| {
            at(v.span()).error(format!(
                "unknown time zone {:?}: use an IANA name such as \"Europe/Madrid\" or \"UTC\"",
                v.get_ref()
            ))
        })?,
    };
    let quiet = match &file.quiet_hours {
        None => None,
        Some(v) => {
            let bad = || {
                at(v.span()).error(format!(
                    "`quiet_hours` is a span of local time as \"HH:MM-HH:MM\" (\"21:00-08:00\" wraps \
                     midnight), not {:?}",
                    v.get_ref()
                ))
            };
            let (a, b) = v.get_ref().split_once('-').ok_or_else(bad)?;
            let (a, b) = (
                parse_hhmm(a).ok_or_else(bad)?,
                parse_hhmm(b).ok_or_else(bad)?,
            );
            if a == b {
                return Err(at(v.span()).error(
                    "`quiet_hours` starts and ends at the same time: nothing could ever be delivered",
                ));
            }
            Some((a, b))
        }
    };
    if local_time.is_none() && quiet.is_none() && !file.best_hour {
        return Err(table_at.error(
            "[delivery] needs `local_time`, `quiet_hours` or `best_hour = true` (docs/SCHEDULING.md)",
        ));
    }
    Ok(Delivery {
        local_time,
        default_tz,
        quiet,
        best_hour: file.best_hour,
    })
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() > 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

impl Delivery {
    /// When a contact's message is due, for a run preparing it at `now`.
    /// `tz`: the contact's own zone if valid; `best_hour`: the UTC hour
    /// of day of most of the contact's human opens and clicks, if any.
    pub fn due_at(&self, now: Millis, tz: Option<Tz>, best_hour: Option<u32>) -> Millis {
        let tz = tz.unwrap_or(self.default_tz);
        let target = match (
            self.best_hour.then_some(best_hour).flatten(),
            self.local_time,
        ) {
            (Some(h), _) => next_utc_hour(now, h),
            (None, Some(t)) => next_local(now, tz, t),
            (None, None) => now,
        };
        match self.quiet {
            Some((start, end)) if in_span(local_time_of(target, tz), start, end) => {
                next_local(target, tz, end).max(target)
            }
            _ => target,
        }
    }
}

/// The contact's zone from the stored text; `None` if absent or unknown.
pub fn zone(name: Option<&str>) -> Option<Tz> {
    name.and_then(|n| Tz::from_str(n.trim()).ok())
}

fn in_span(t: NaiveTime, start: NaiveTime, end: NaiveTime) -> bool {
    if start < end {
        start <= t && t < end
    } else {
        t >= start || t < end
    }
}

fn local_time_of(at: Millis, tz: Tz) -> NaiveTime {
    match tz.timestamp_millis_opt(at).single() {
        Some(dt) => dt.time(),
        None => NaiveTime::MIN,
    }
}

/// `now` if its UTC hour is `h`; else the next `h`:00 UTC.
fn next_utc_hour(now: Millis, h: u32) -> Millis {
    let h = i64::from(h % 24);
    let day = now.div_euclid(DAY_MS) * DAY_MS;
    if now.rem_euclid(DAY_MS) / HOUR_MS == h {
        return now;
    }
    let today = day + h * HOUR_MS;
    if today > now { today } else { today + DAY_MS }
}

/// The next instant the wall clock in `tz` shows `t`, from `now`: today's
/// if it is ahead or passed less than [`LATE_TOLERANCE_MS`] ago (then
/// `now`), else tomorrow's. A time the clocks skip at a DST change is taken
/// an hour later; one they show twice, the first time.
fn next_local(now: Millis, tz: Tz, t: NaiveTime) -> Millis {
    let Some(local_now) = tz.timestamp_millis_opt(now).single() else {
        return now;
    };
    let date = local_now.date_naive();
    let at = |d: chrono::NaiveDate| -> Option<Millis> {
        let naive = d.and_time(t);
        tz.from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|dt| dt.timestamp_millis())
    };
    match at(date) {
        Some(today) if today >= now => today,
        Some(today) if now - today < LATE_TOLERANCE_MS => now,
        _ => date
            .succ_opt()
            .and_then(at)
            .unwrap_or(now + DAY_MS)
            .max(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn d(local: Option<&str>, quiet: Option<(&str, &str)>, best: bool) -> Delivery {
        Delivery {
            local_time: local.map(|l| parse_hhmm(l).unwrap()),
            default_tz: Tz::UTC,
            quiet: quiet.map(|(a, b)| (parse_hhmm(a).unwrap(), parse_hhmm(b).unwrap())),
            best_hour: best,
        }
    }

    #[test]
    fn local_time_is_the_contacts_own_clock() {
        let nine = d(Some("09:00"), None, false);
        let now = ms("2026-12-04T06:00:00Z");
        // Madrid is UTC+1 in December: 09:00 there is 08:00Z, today.
        assert_eq!(
            nine.due_at(now, zone(Some("Europe/Madrid")), None),
            ms("2026-12-04T08:00:00Z")
        );
        // New York (UTC-5): 14:00Z today.
        assert_eq!(
            nine.due_at(now, zone(Some("America/New_York")), None),
            ms("2026-12-04T14:00:00Z")
        );
        // Tokyo (UTC+9): 09:00 there was 00:00Z, six hours ago: tomorrow.
        assert_eq!(
            nine.due_at(now, zone(Some("Asia/Tokyo")), None),
            ms("2026-12-05T00:00:00Z")
        );
        // No zone or an unknown one: the default (UTC).
        assert_eq!(
            nine.due_at(now, zone(Some("Mars/Olympus")), None),
            ms("2026-12-04T09:00:00Z")
        );
    }

    #[test]
    fn a_local_time_passed_within_the_hour_is_sent_now() {
        let nine = d(Some("09:00"), None, false);
        let now = ms("2026-12-04T09:20:00Z");
        assert_eq!(nine.due_at(now, None, None), now);
        let now = ms("2026-12-04T10:20:00Z");
        assert_eq!(nine.due_at(now, None, None), ms("2026-12-05T09:00:00Z"));
    }

    #[test]
    fn daylight_saving_days_keep_the_wall_clock() {
        let early = d(Some("02:30"), None, false);
        // 2026-03-29: Madrid jumps from 02:00 to 03:00; 02:30 does not
        // exist and becomes 03:30 local (01:30Z).
        let now = ms("2026-03-28T23:00:00Z");
        assert_eq!(
            early.due_at(now, zone(Some("Europe/Madrid")), None),
            ms("2026-03-29T01:30:00Z")
        );
        // 2026-10-25: 02:30 happens twice; the first (CEST, 00:30Z).
        let now = ms("2026-10-24T22:00:00Z");
        assert_eq!(
            early.due_at(now, zone(Some("Europe/Madrid")), None),
            ms("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn quiet_hours_hold_a_message_until_they_end_in_the_contacts_zone() {
        let quiet = d(None, Some(("21:00", "08:00")), false);
        // 23:00 in Madrid (22:00Z): held until 08:00 Madrid (07:00Z).
        let now = ms("2026-12-04T22:00:00Z");
        assert_eq!(
            quiet.due_at(now, zone(Some("Europe/Madrid")), None),
            ms("2026-12-05T07:00:00Z")
        );
        // 17:00 in New York at the same moment: sent now.
        assert_eq!(quiet.due_at(now, zone(Some("America/New_York")), None), now);
        // A span within a day.
        let lunch = d(None, Some(("12:00", "14:00")), false);
        let now = ms("2026-12-04T12:30:00Z");
        assert_eq!(lunch.due_at(now, None, None), ms("2026-12-04T14:00:00Z"));
        assert_eq!(
            lunch.due_at(ms("2026-12-04T14:00:00Z"), None, None),
            ms("2026-12-04T14:00:00Z")
        );
    }

    #[test]
    fn the_best_hour_wins_over_the_local_time_and_quiet_hours_still_hold() {
        let both = d(Some("09:00"), Some(("22:00", "07:00")), true);
        let now = ms("2026-12-04T08:00:00Z");
        // Opens most at 18:00Z: today 18:00Z.
        assert_eq!(both.due_at(now, None, Some(18)), ms("2026-12-04T18:00:00Z"));
        // The current hour is the best: now.
        assert_eq!(both.due_at(now, None, Some(8)), now);
        // No history: the local time.
        assert_eq!(both.due_at(now, None, None), ms("2026-12-04T09:00:00Z"));
        // The best hour now, but in the quiet hours: their end.
        let early = ms("2026-12-04T06:10:00Z");
        assert_eq!(
            both.due_at(early, None, Some(6)),
            ms("2026-12-04T07:00:00Z")
        );
        // Best hour 23:00Z falls in the quiet hours (UTC contact): 07:00Z.
        assert_eq!(both.due_at(now, None, Some(23)), ms("2026-12-05T07:00:00Z"));
    }

    #[test]
    fn never_before_now() {
        let all = d(Some("00:00"), Some(("23:59", "00:01")), true);
        for h in 0..24 {
            let now = ms("2026-12-04T00:00:30Z") + i64::from(h) * HOUR_MS;
            for best in [None, Some(h), Some((h + 5) % 24)] {
                for tz in [
                    None,
                    zone(Some("Pacific/Chatham")),
                    zone(Some("Asia/Kolkata")),
                ] {
                    let due = all.due_at(now, tz, best);
                    assert!(due >= now && due < now + 2 * DAY_MS, "{h} {best:?} {tz:?}");
                }
            }
        }
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(parse_hhmm("9:05"), NaiveTime::from_hms_opt(9, 5, 0));
        for bad in ["24:00", "9", "09:5", "09:60", "aa:bb", "", "009:00"] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }
}
