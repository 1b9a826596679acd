//! Recipient domains that are slow or failing must not hold up the others
//! (issue 16, item 10): the gate that decides whether a message may go to
//! its domain now, and the lane where the messages it holds back wait.
//!
//! The gate is adaptive. It measures how long each domain's messages take
//! (an average over its recent answers, a timeout counting as its full
//! length, and a message still in flight counting as soon as it is older
//! than the threshold). A domain whose messages take longer than
//! `smtp.slow_domain_ms` is slow: while other work is waiting, at most
//! `smtp.slow_domain_connections` of its messages are in flight, so the
//! other workers keep the fast domains flowing. A domain nothing is known
//! about yet gets one message in flight until its first answer (a healthy
//! domain answers in milliseconds, so this costs nothing). A healthy domain,
//! however big, is never limited, unless `[smtp.domains."..."]` fixes a
//! `max_connections` or `per_minute` for it; those limits always hold.
//!
//! A held-back message waits in the [`Lane`], rendered and still claimed by
//! this process (its lease is renewed with the others), and any worker of
//! the process takes it as soon as the domain has room. A worker with
//! nothing else to do takes held messages beyond the slow-domain limit, so
//! the tail of a send that is all slow recipients uses every connection.
//! Nothing here is an attempt: a held message has not been offered to a
//! server. The gate and the lane are per process, not per cluster.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{DomainLimit, SmtpConfig};

/// Weight of the newest answer in a domain's average: a single slow answer
/// from a healthy domain (3 s against 50 ms) stays under a 1 s threshold,
/// while a domain that keeps taking 2 s is slow after its first answer.
const WEIGHT: f64 = 0.3;

/// Held-back messages kept in memory per domain; beyond that they go back
/// to the database (deferred, not counted as an attempt) for later.
pub const LANE_PER_DOMAIN: usize = 100;

/// What the reply of a send row starts with when the gate held it back and
/// it went back to the database (never an attempt).
pub const HELD_BACK: &str = "held back: ";

/// The recipient's domain, lower-cased.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(address)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[derive(Default)]
struct DomainState {
    /// When each message now in flight started.
    in_flight: Vec<Instant>,
    /// Average time of an answer; `None` until the first one.
    average: Option<Duration>,
    /// Starts within the last minute, oldest first (with `per_minute`).
    recent: VecDeque<Instant>,
}

/// Why a message may not go to its domain now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// A sentence for the row's reply, should it go back to the database.
    pub reason: String,
    /// When the domain may have room again, as far as the gate can tell.
    pub retry_in: Duration,
}

pub struct DomainGate {
    /// `None`: the adaptive limit is off (`smtp.slow_domain_ms = 0`, or the
    /// outbox).
    slow_after: Option<Duration>,
    slow_connections: usize,
    fixed: HashMap<String, DomainLimit>,
    state: Mutex<HashMap<String, DomainState>>,
}

/// A message's place among its domain's messages in flight; given back on
/// drop.
pub struct Permit {
    gate: Arc<DomainGate>,
    domain: String,
    started: Instant,
}

impl Permit {
    /// The server answered (or timed out) after `took`: the domain's
    /// average learns from it.
    pub fn answered(&self, took: Duration) {
        let mut all = self.gate.lock();
        let s = all.entry(self.domain.clone()).or_default();
        s.average = Some(match s.average {
            None => took,
            Some(avg) => avg.mul_f64(1.0 - WEIGHT) + took.mul_f64(WEIGHT),
        });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut all = self.gate.lock();
        if let Some(s) = all.get_mut(&self.domain)
            && let Some(i) = s.in_flight.iter().position(|t| *t == self.started)
        {
            s.in_flight.swap_remove(i);
        }
    }
}

impl DomainGate {
    pub fn new(cfg: &SmtpConfig) -> Self {
        Self {
            slow_after: (cfg.slow_domain_ms > 0).then(|| Duration::from_millis(cfg.slow_domain_ms)),
            slow_connections: cfg.slow_domain_connections.max(1),
            fixed: cfg
                .domains
                .iter()
                .map(|(d, l)| (domain_of(d), l.clone()))
                .collect(),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// No limits at all (the outbox transport).
    pub fn unlimited() -> Self {
        Self {
            slow_after: None,
            slow_connections: usize::MAX,
            fixed: HashMap::new(),
            state: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, DomainState>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `domain` counts as slow now, and its average if known.
    fn slow(&self, s: &DomainState, now: Instant) -> bool {
        let Some(limit) = self.slow_after else {
            return false;
        };
        s.average.is_some_and(|a| a > limit)
            || s.in_flight.iter().any(|t| now.duration_since(*t) > limit)
    }

    /// Why a message to `domain` would be held back now, if it would.
    /// With `soft` (other work is waiting), a slow domain, or one not yet
    /// heard from, is held to its limit; without, only the fixed limits
    /// hold.
    fn check(
        &self,
        domain: &str,
        s: &mut DomainState,
        soft: bool,
        now: Instant,
    ) -> Result<(), Held> {
        if let Some(l) = self.fixed.get(domain) {
            if l.max_connections > 0 && s.in_flight.len() >= l.max_connections {
                return Err(Held {
                    reason: format!(
                        "{HELD_BACK}{} messages to {domain} in flight (smtp.domains max_connections)",
                        s.in_flight.len()
                    ),
                    retry_in: s.average.unwrap_or(Duration::from_secs(1)),
                });
            }
            if l.per_minute > 0 {
                while s
                    .recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
                {
                    s.recent.pop_front();
                }
                if s.recent.len() >= l.per_minute as usize {
                    let free_at = s
                        .recent
                        .front()
                        .map_or(now, |t| *t + Duration::from_secs(60));
                    return Err(Held {
                        reason: format!(
                            "{HELD_BACK}{} messages to {domain} in the last minute (smtp.domains per_minute)",
                            s.recent.len()
                        ),
                        retry_in: free_at.saturating_duration_since(now),
                    });
                }
            }
        }
        if soft && self.slow_after.is_some() {
            let slow = self.slow(s, now);
            let limit = if slow {
                self.slow_connections
            } else if s.average.is_none() {
                // Not heard from yet: one message finds out.
                1
            } else {
                usize::MAX
            };
            if s.in_flight.len() >= limit {
                let average = s.average.unwrap_or(Duration::from_secs(1));
                return Err(Held {
                    reason: if slow {
                        format!(
                            "{HELD_BACK}{domain} is slow ({} ms a message); other domains go first",
                            average.as_millis()
                        )
                    } else {
                        format!("{HELD_BACK}waiting for the first answer from {domain}")
                    },
                    retry_in: average,
                });
            }
        }
        Ok(())
    }

    /// Why a message to `domain` would wait now (other work waiting), if
    /// it would; nothing is reserved.
    pub fn holds(&self, domain: &str) -> Option<Held> {
        let mut all = self.lock();
        let s = all.entry(domain.to_string()).or_default();
        self.check(domain, s, true, Instant::now()).err()
    }

    /// A place for one message to `domain` now, or why not (`check`).
    pub fn admit(self: &Arc<Self>, domain: &str, soft: bool) -> Result<Permit, Held> {
        let now = Instant::now();
        let mut all = self.lock();
        let s = all.entry(domain.to_string()).or_default();
        self.check(domain, s, soft, now)?;
        if self.fixed.get(domain).is_some_and(|l| l.per_minute > 0) {
            s.recent.push_back(now);
        }
        s.in_flight.push(now);
        Ok(Permit {
            gate: self.clone(),
            domain: domain.to_string(),
            started: now,
        })
    }
}

/// The messages of one process that are ready to go, oldest first, shared
/// by its workers: a worker takes the oldest whose domain the gate admits,
/// so a message held back waits here without holding up a worker or the
/// messages behind it.
pub struct Lane<T> {
    items: Mutex<VecDeque<(String, T)>>,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T> Lane<T> {
    fn lock(&self) -> MutexGuard<'_, VecDeque<(String, T)>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` for `domain`. When [`LANE_PER_DOMAIN`] messages to
    /// the domain wait already and the gate holds it back, the item is given
    /// back, with why and how many wait: memory stays bounded however long
    /// a domain is slow.
    pub fn push(&self, gate: &DomainGate, domain: String, item: T) -> Result<(), (T, Held, usize)> {
        let mut items = self.lock();
        let waiting = items.iter().filter(|(d, _)| *d == domain).count();
        if waiting >= LANE_PER_DOMAIN
            && let Some(held) = gate.holds(&domain)
        {
            return Err((item, held, waiting));
        }
        items.push_back((domain, item));
        Ok(())
    }

    /// Up to `n` of the oldest messages, mapped: what the next check before
    /// delivery covers.
    pub fn peek<U>(&self, n: usize, f: impl Fn(&T) -> U) -> Vec<U> {
        self.lock().iter().take(n).map(|(_, t)| f(t)).collect()
    }

    /// The oldest held message whose domain the gate admits now.
    pub fn take(&self, gate: &Arc<DomainGate>, soft: bool) -> Option<(String, T, Permit)> {
        let mut items = self.lock();
        let mut refused: Vec<&str> = Vec::new();
        let mut found = None;
        for (i, (domain, _)) in items.iter().enumerate() {
            if refused.contains(&domain.as_str()) {
                continue;
            }
            match gate.admit(domain, soft) {
                Ok(permit) => {
                    found = Some((i, permit));
                    break;
                }
                Err(_) => refused.push(domain),
            }
        }
        let (i, permit) = found?;
        let (domain, item) = items.remove(i)?;
        Some((domain, item, permit))
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(toml: &str) -> Arc<DomainGate> {
        let cfg: SmtpConfig = toml::from_str(toml).expect("smtp config");
        Arc::new(DomainGate::new(&cfg))
    }

    #[test]
    fn an_unknown_domain_gets_one_message_until_it_answers_then_no_limit() {
        let g = gate("slow_domain_ms = 1000\n");
        let first = g.admit("fast.example", true).expect("the first goes");
        assert!(
            g.admit("fast.example", true).is_err(),
            "one until it answers"
        );
        assert!(g.admit("other.example", true).is_ok(), "other domains go");
        first.answered(Duration::from_millis(20));
        let many: Vec<_> = (0..10)
            .map(|_| {
                g.admit("fast.example", true)
                    .expect("a fast domain has no limit")
            })
            .collect();
        assert_eq!(many.len(), 10);
    }

    #[test]
    fn a_slow_domain_is_held_to_its_limit_while_there_is_other_work() {
        let g = gate("slow_domain_ms = 1000\nslow_domain_connections = 1\n");
        let p = g.admit("slow.example", true).unwrap();
        p.answered(Duration::from_secs(2));
        drop(p);
        let one = g.admit("slow.example", true).expect("one at a time");
        let held = g.admit("slow.example", true).err().expect("a second waits");
        assert!(
            held.reason.contains("slow.example is slow (2000 ms"),
            "{}",
            held.reason
        );
        assert!(
            g.admit("slow.example", false).is_ok(),
            "a worker with nothing else to do may take it"
        );
        drop(one);
        assert!(g.admit("slow.example", true).is_ok(), "room again");
    }

    #[test]
    fn a_domain_recovers_as_its_answers_get_fast() {
        let g = gate("slow_domain_ms = 1000\n");
        g.admit("d.example", true)
            .unwrap()
            .answered(Duration::from_secs(3));
        let _busy = g.admit("d.example", true).unwrap();
        assert!(g.admit("d.example", true).is_err());
        for _ in 0..6 {
            _busy.answered(Duration::from_millis(10));
        }
        assert!(g.admit("d.example", true).is_ok(), "fast again");
    }

    #[test]
    fn a_single_slow_answer_does_not_make_a_healthy_domain_slow() {
        let g = gate("slow_domain_ms = 1000\n");
        let p = g.admit("big.example", true).unwrap();
        p.answered(Duration::from_millis(50));
        p.answered(Duration::from_secs(3));
        drop(p);
        let a = g.admit("big.example", true).unwrap();
        assert!(g.admit("big.example", true).is_ok(), "{:?}", a.started);
    }

    #[test]
    fn fixed_limits_hold_even_for_a_worker_with_nothing_else_to_do() {
        let g = gate(
            "slow_domain_ms = 0\n[domains.\"Gmail.COM\"]\nmax_connections = 2\n\
             [domains.\"small.example\"]\nper_minute = 2\n",
        );
        let _a = g.admit("gmail.com", false).unwrap();
        let _b = g.admit("gmail.com", false).unwrap();
        let held = g.admit("gmail.com", false).err().expect("third is held");
        assert!(held.reason.contains("max_connections"), "{}", held.reason);
        drop(g.admit("small.example", false).unwrap());
        drop(g.admit("small.example", false).unwrap());
        let held = g
            .admit("small.example", false)
            .err()
            .expect("over the minute");
        assert!(held.retry_in > Duration::from_secs(59), "{held:?}");
        assert!(g.admit("other.example", true).is_ok(), "no limit elsewhere");
    }

    #[test]
    fn without_the_adaptive_limit_nothing_is_held() {
        let g = gate("slow_domain_ms = 0\n");
        let p = g.admit("slow.example", true).unwrap();
        p.answered(Duration::from_secs(10));
        assert!(g.admit("slow.example", true).is_ok());
    }

    #[test]
    fn the_lane_gives_the_oldest_message_whose_domain_has_room() {
        let g = gate("slow_domain_ms = 1000\n");
        let busy = g.admit("slow.example", true).unwrap();
        let lane = Lane::default();
        lane.push(&g, "slow.example".into(), 1).unwrap();
        lane.push(&g, "slow.example".into(), 2).unwrap();
        lane.push(&g, "fast.example".into(), 3).unwrap();
        let (d, item, _p) = lane.take(&g, true).expect("the fast one");
        assert_eq!((d.as_str(), item), ("fast.example", 3));
        assert!(lane.take(&g, true).is_none(), "slow.example is busy");
        drop(busy);
        assert_eq!(lane.take(&g, true).map(|(_, i, _)| i), Some(1));
        assert_eq!(lane.len(), 1);
        for i in 0..LANE_PER_DOMAIN - 1 {
            lane.push(&g, "slow.example".into(), 10 + i).unwrap();
        }
        assert!(
            lane.push(&g, "slow.example".into(), 0).is_ok(),
            "a domain with room is never given back"
        );
        let _busy = g.admit("slow.example", true).unwrap();
        let (item, held, waiting) = lane
            .push(&g, "slow.example".into(), 7)
            .expect_err("a full lane gives a held message back");
        assert_eq!((item, waiting), (7, LANE_PER_DOMAIN + 1));
        assert!(held.reason.starts_with(HELD_BACK), "{}", held.reason);
        for i in 0..LANE_PER_DOMAIN {
            lane.push(&g, "big.example".into(), i).unwrap();
        }
        g.admit("big.example", true)
            .unwrap()
            .answered(Duration::from_millis(5));
        assert!(
            lane.push(&g, "big.example".into(), 0).is_ok(),
            "a healthy domain is never given back"
        );
    }

    #[test]
    fn domains_are_compared_lower_case() {
        assert_eq!(domain_of("Ann@Example.ORG."), "example.org");
        assert_eq!(domain_of("odd"), "odd");
    }
}
