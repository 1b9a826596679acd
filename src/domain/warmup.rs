//! The warm-up plan (`[warmup]`): a new sending IP or domain earns its
//! reputation with volumes that rise day by day, so mailbox providers see a
//! sender grow rather than burst. On day N of the plan at most `daily[N-1]`
//! messages leave in all. Parsed once when the configuration is loaded; the
//! send path (`send::prepare`) reserves each claim's rows from the day's
//! budget first (`store::warmup`), so every campaign, journey and node
//! shares it, and gives back rows skipped at the re-check. A reservation is
//! never handed back for a message that was deferred or refused: the plan
//! errs on the side of sending less.

use std::str::FromStr;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::config::WarmupConfig;
use crate::domain::time::Millis;

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    start: NaiveDate,
    daily: Vec<u64>,
    tz: Tz,
}

/// Today's place in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// The local date, as the budget's key.
    pub key: String,
    pub cap: u64,
    /// When the next day of the plan starts.
    pub ends_at: Millis,
}

impl Plan {
    /// The plan of `[warmup]`, if one is configured; an error names the key.
    pub fn from_config(c: &WarmupConfig) -> Result<Option<Plan>, String> {
        let Some(start) = &c.start else {
            if !c.daily.is_empty() {
                return Err(
                    "[warmup] daily needs `start`, the plan's first day (YYYY-MM-DD)".into(),
                );
            }
            return Ok(None);
        };
        let start = NaiveDate::parse_from_str(start.trim(), "%Y-%m-%d")
            .map_err(|_| format!("[warmup] start {start:?} is not a date as YYYY-MM-DD"))?;
        if c.daily.is_empty() {
            return Err(
                "[warmup] daily is empty: give the cap of each day, e.g. [50, 100, 200]".into(),
            );
        }
        if let Some(i) = c.daily.iter().position(|&n| n == 0) {
            return Err(format!(
                "[warmup] daily[{i}] is 0: a day of the plan must let some mail out"
            ));
        }
        let tz = Tz::from_str(c.timezone.trim()).map_err(|_| {
            format!(
                "[warmup] timezone {:?} is not an IANA zone such as \"Europe/Madrid\" or \"UTC\"",
                c.timezone
            )
        })?;
        Ok(Some(Plan {
            start,
            daily: c.daily.clone(),
            tz,
        }))
    }

    /// The plan's day at `now`: `None` once the plan is over. Before its
    /// first day the first day's cap applies (the new IP is not warm yet).
    pub fn day(&self, now: Millis) -> Option<Day> {
        let local = self.tz.timestamp_millis_opt(now).single()?;
        let date = local.date_naive();
        let n = (date - self.start).num_days().max(0) as usize;
        let cap = *self.daily.get(n)?;
        let next = date.succ_opt()?;
        let ends_at = self
            .tz
            .from_local_datetime(&next.and_hms_opt(0, 0, 0)?)
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or(now + 86_400_000);
        Some(Day {
            key: date.format("%Y-%m-%d").to_string(),
            cap,
            ends_at,
        })
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

    fn plan(start: &str, daily: &[u64], tz: &str) -> Result<Option<Plan>, String> {
        Plan::from_config(&WarmupConfig {
            start: Some(start.into()),
            daily: daily.to_vec(),
            timezone: tz.into(),
        })
    }

    #[test]
    fn each_day_has_its_cap_and_the_plan_ends() {
        let p = plan("2026-12-01", &[50, 100, 200], "Europe/Madrid")
            .unwrap()
            .unwrap();
        // 2026-12-01 00:30 in Madrid is 23:30Z the day before.
        let d = p.day(ms("2026-11-30T23:30:00Z")).unwrap();
        assert_eq!((d.key.as_str(), d.cap), ("2026-12-01", 50));
        assert_eq!(d.ends_at, ms("2026-12-01T23:00:00Z"));
        assert_eq!(p.day(ms("2026-12-02T12:00:00Z")).unwrap().cap, 100);
        assert_eq!(p.day(ms("2026-12-03T22:59:59Z")).unwrap().cap, 200);
        assert_eq!(p.day(ms("2026-12-03T23:00:00Z")), None, "day 4: no cap");
        // Before the first day: the first day's cap.
        assert_eq!(p.day(ms("2026-11-20T12:00:00Z")).unwrap().cap, 50);
    }

    #[test]
    fn bad_plans_name_their_key() {
        assert!(
            plan("2026-13-01", &[1], "UTC")
                .unwrap_err()
                .contains("start")
        );
        assert!(
            plan("2026-12-01", &[], "UTC")
                .unwrap_err()
                .contains("daily")
        );
        assert!(
            plan("2026-12-01", &[5, 0], "UTC")
                .unwrap_err()
                .contains("daily[1]")
        );
        assert!(
            plan("2026-12-01", &[5], "Nowhere/X")
                .unwrap_err()
                .contains("timezone")
        );
        let none = Plan::from_config(&WarmupConfig::default()).unwrap();
        assert_eq!(none, None);
        let orphan = WarmupConfig {
            daily: vec![5],
            ..WarmupConfig::default()
        };
        assert!(Plan::from_config(&orphan).unwrap_err().contains("start"));
    }
}
