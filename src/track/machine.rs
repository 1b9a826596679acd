//! Which opens and clicks a machine made: image proxies, prefetchers and
//! link scanners. Every hit is stored with its verdict and the rule that
//! fired; none is dropped, and the verdict never changes the response (the
//! pixel is always served, the redirect always given). Every rule, its
//! class and its source: docs/TRACKING.md, "Machine opens and scanner
//! clicks".
//!
//! Pure: no I/O.

use std::net::IpAddr;

/// The version of these rules, stored with each verdict so reports can tell
/// which rules classified an old event.
pub const RULESET: &str = "2026-12-03.2";

/// What made a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Nothing says it was a machine.
    Human,
    /// A mail provider's image proxy fetched it for a reader (Gmail, Yahoo):
    /// usually a real open, but not a person's IP or agent.
    Proxied,
    /// Fetched ahead of reading (Apple Mail Privacy Protection, a browser
    /// prefetch): says nothing about reading.
    Prefetch,
    /// A security scanner or another robot.
    Scanner,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Proxied => "proxied",
            Self::Prefetch => "prefetch",
            Self::Scanner => "scanner",
        }
    }
    /// Counts as engagement on the contact.
    pub fn engaged(self) -> bool {
        matches!(self, Self::Human | Self::Proxied)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub class: Class,
    pub rule: Option<&'static str>,
}

/// What a hit says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    pub click: bool,
    pub head: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    /// `Sec-Purpose` or `Purpose` request header.
    pub purpose: Option<&'a str>,
    /// Milliseconds from the receiving server's acceptance of the message
    /// to this hit, when known.
    pub since_delivery_ms: Option<i64>,
}

/// Pure mail-filtering networks that never carry a reader's own request, so
/// every pixel fetch and click from them is a machine's. Sources (docs/TRACKING.md):
/// Microsoft 365 endpoint sets 9 and 10 (Exchange Online Protection,
/// `*.protection.outlook.com`; the Exchange Online ranges are not here,
/// Outlook on the web fetches images from them for real readers); Barracuda
/// Email Gateway Defense's published egress ranges. Both lists as collected
/// in warmbly's `tracking/scanner-networks.txt`.
const SCANNER_NETWORKS: [(&str, &str); 17] = [
    ("40.92.0.0/15", "microsoft-eop-network"),
    ("40.107.0.0/16", "microsoft-eop-network"),
    ("52.100.0.0/14", "microsoft-eop-network"),
    ("52.238.78.88/32", "microsoft-eop-network"),
    ("104.47.0.0/17", "microsoft-eop-network"),
    ("2a01:111:f400::/48", "microsoft-eop-network"),
    ("2a01:111:f403::/48", "microsoft-eop-network"),
    ("3.24.133.128/25", "barracuda-egd-network"),
    ("15.222.16.128/25", "barracuda-egd-network"),
    ("35.157.190.224/27", "barracuda-egd-network"),
    ("18.185.115.192/26", "barracuda-egd-network"),
    ("18.184.203.224/27", "barracuda-egd-network"),
    ("13.200.136.128/25", "barracuda-egd-network"),
    ("35.176.92.96/27", "barracuda-egd-network"),
    ("18.133.136.128/26", "barracuda-egd-network"),
    ("18.133.136.96/27", "barracuda-egd-network"),
    ("209.222.82.0/24", "barracuda-egd-network"),
];

/// [`SCANNER_NETWORKS`] parsed once.
static NETWORKS: std::sync::LazyLock<Vec<(ipnet::IpNet, &'static str)>> =
    std::sync::LazyLock::new(|| {
        SCANNER_NETWORKS
            .iter()
            .map(|(n, rule)| (n.parse().expect("a valid CIDR in SCANNER_NETWORKS"), *rule))
            .collect()
    });

/// Substrings (lower case) of user agents that only machines send, and the
/// rule each names. The mail-security gateways first; scanners with browser
/// agents are not caught this way (they are by timing, below). Proofpoint's
/// and Mimecast's networks are whole ASNs that also carry people (browser
/// isolation renders a person's click from the vendor's cloud), so they are
/// matched by agent and timing, not by address.
const MACHINE_AGENTS: [(&str, &str); 11] = [
    ("mimecast", "mimecast-user-agent"),
    ("proofpoint", "proofpoint-user-agent"),
    ("barracuda", "barracuda-user-agent"),
    ("bingpreview", "robot-user-agent"),
    ("python-requests", "robot-user-agent"),
    ("go-http-client", "robot-user-agent"),
    ("curl/", "robot-user-agent"),
    ("wget/", "robot-user-agent"),
    ("headlesschrome", "robot-user-agent"),
    ("bot", "robot-user-agent"),
    ("spider", "robot-user-agent"),
];

/// An open or a click this soon after the receiving server accepted the
/// message is a gateway's scan at delivery, not a reader's (Mautic's bot
/// rule uses the same 2 s from sending).
pub const FAST_AFTER_DELIVERY_MS: i64 = 2_000;

/// Two different links of one message clicked within this time: a scanner
/// following every link, not a person (who reads, clicks, comes back).
pub const LINKS_AT_ONCE_MS: i64 = 2_000;

/// The rule [`ClickBursts`] fires.
pub const LINKS_AT_ONCE_RULE: &str = "links-clicked-at-once";

pub fn classify(s: &Signals<'_>) -> Verdict {
    let v = |class, rule| Verdict {
        class,
        rule: Some(rule),
    };
    // HEAD fetches no page and shows no image: link checkers do it
    // (CiviCRM and Mautic stopped counting them).
    if s.head {
        return v(Class::Scanner, "head-request");
    }
    if let Some(ip) = s.ip
        && let Some((_, rule)) = NETWORKS.iter().find(|(n, _)| n.contains(&ip))
    {
        return v(Class::Scanner, rule);
    }
    if s.purpose
        .is_some_and(|p| p.to_ascii_lowercase().contains("prefetch"))
    {
        return v(Class::Prefetch, "sec-purpose-prefetch");
    }
    let ua = s.user_agent.map(str::trim).unwrap_or("");
    if ua.is_empty() {
        return v(Class::Scanner, "no-user-agent");
    }
    if ua.contains("GoogleImageProxy") {
        return v(Class::Proxied, "gmail-image-proxy");
    }
    if ua.starts_with("YahooMailProxy") {
        return v(Class::Proxied, "yahoo-mail-proxy");
    }
    // Apple MPP fetches with exactly this agent (~95% in one tester's data).
    if !s.click && ua == "Mozilla/5.0" {
        return v(Class::Prefetch, "apple-mpp-user-agent");
    }
    let lower = ua.to_ascii_lowercase();
    if let Some((_, rule)) = MACHINE_AGENTS.iter().find(|(n, _)| lower.contains(n)) {
        return v(Class::Scanner, rule);
    }
    if s.since_delivery_ms
        .is_some_and(|d| (0..FAST_AFTER_DELIVERY_MS).contains(&d))
    {
        return v(
            Class::Scanner,
            if s.click {
                "click-within-2s-of-delivery"
            } else {
                "open-within-2s-of-delivery"
            },
        );
    }
    Verdict {
        class: Class::Human,
        rule: None,
    }
}

/// Recent clicks per send, to catch a scanner that follows every link of a
/// message at once. Kept by the event writer of one node: a burst spread
/// over several nodes behind a load balancer is caught only in part.
#[derive(Debug, Default)]
pub struct ClickBursts {
    /// send -> (time, link) of its clicks within the window.
    recent: std::collections::HashMap<i64, Vec<(i64, u16)>>,
    /// Bursts found lately: send -> (first, last click time). Another
    /// writer may hold an earlier click of the burst in a transaction that
    /// commits after the finder's flagging ran; it flags again after its
    /// own commit ([`ClickBursts::found_for`]).
    found: std::collections::HashMap<i64, (i64, i64)>,
}

impl ClickBursts {
    /// Records a click at `at` (milliseconds) on link `link` of `send` and
    /// says whether another link of the same send was clicked within
    /// [`LINKS_AT_ONCE_MS`] of it (before or after, for hits out of order):
    /// then the earliest such click's time, so earlier clicks can be
    /// flagged too.
    pub fn record(&mut self, send: i64, link: u16, at: i64) -> Option<i64> {
        let clicks = self.recent.entry(send).or_default();
        clicks.retain(|(t, _)| at - t < 10 * LINKS_AT_ONCE_MS);
        let burst = clicks
            .iter()
            .filter(|(t, l)| *l != link && (at - t).abs() < LINKS_AT_ONCE_MS)
            .map(|(t, _)| *t)
            .min()
            .map(|t| t.min(at));
        if clicks.len() < 64 {
            clicks.push((at, link));
        }
        burst
    }

    /// Remembers a burst of `send` from `from` to `to`, widening one
    /// already known.
    pub fn found(&mut self, send: i64, from: i64, to: i64) {
        let e = self.found.entry(send).or_insert((from, to));
        e.0 = e.0.min(from);
        e.1 = e.1.max(to);
    }

    /// The known bursts of these sends, to flag again once a batch holding
    /// their clicks has committed.
    pub fn found_for(&self, sends: &[i64]) -> Vec<(i64, i64, i64)> {
        sends
            .iter()
            .filter_map(|s| self.found.get(s).map(|(f, t)| (*s, *f, *t)))
            .collect()
    }

    /// Forgets sends with no click since `before` (bounds the memory).
    pub fn forget_before(&mut self, before: i64) {
        self.recent
            .retain(|_, c| c.iter().any(|(t, _)| *t >= before));
        self.found.retain(|_, (_, to)| *to >= before);
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

    fn s(click: bool, ua: Option<&'static str>) -> Signals<'static> {
        Signals {
            click,
            head: false,
            ip: Some("203.0.113.9".parse().unwrap()),
            user_agent: ua,
            purpose: None,
            since_delivery_ms: Some(3_600_000),
        }
    }

    #[test]
    fn people_are_human_and_machines_are_flagged_with_their_rule() {
        assert_eq!(classify(&s(false, Some(FIREFOX))).class, Class::Human);
        assert_eq!(classify(&s(true, Some(FIREFOX))).class, Class::Human);
        let cases = [
            (
                s(false, Some("Mozilla/5.0")),
                Class::Prefetch,
                "apple-mpp-user-agent",
            ),
            (
                s(
                    false,
                    Some(
                        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
                    ),
                ),
                Class::Proxied,
                "gmail-image-proxy",
            ),
            (
                s(
                    false,
                    Some(
                        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
                    ),
                ),
                Class::Proxied,
                "yahoo-mail-proxy",
            ),
            (s(true, None), Class::Scanner, "no-user-agent"),
            (
                s(true, Some("python-requests/2.32")),
                Class::Scanner,
                "robot-user-agent",
            ),
            (
                Signals {
                    head: true,
                    ..s(true, Some(FIREFOX))
                },
                Class::Scanner,
                "head-request",
            ),
            (
                Signals {
                    ip: Some("40.107.1.2".parse().unwrap()),
                    ..s(true, Some(FIREFOX))
                },
                Class::Scanner,
                "microsoft-eop-network",
            ),
            (
                Signals {
                    since_delivery_ms: Some(800),
                    ..s(true, Some(FIREFOX))
                },
                Class::Scanner,
                "click-within-2s-of-delivery",
            ),
            (
                Signals {
                    purpose: Some("prefetch;anonymous-client-ip"),
                    ..s(false, Some(FIREFOX))
                },
                Class::Prefetch,
                "sec-purpose-prefetch",
            ),
        ];
        for (sig, class, rule) in cases {
            let v = classify(&sig);
            assert_eq!((v.class, v.rule), (class, Some(rule)), "{sig:?}");
        }
        // A click from the bare MPP agent is not a prefetch.
        assert_eq!(classify(&s(true, Some("Mozilla/5.0"))).class, Class::Human);
        assert!(
            Class::Proxied.engaged() && !Class::Prefetch.engaged() && !Class::Scanner.engaged()
        );
    }

    /// Each rule of the list, by name: the class it gives and that
    /// a person's hit beside it is left alone.
    #[test]
    fn every_named_rule_fires_on_its_own_signal() {
        let base = s(true, Some(FIREFOX));
        let cases: Vec<(Signals<'static>, Class, &str)> = vec![
            (
                Signals {
                    ip: Some("52.100.7.8".parse().unwrap()),
                    click: false,
                    ..base
                },
                Class::Scanner,
                "microsoft-eop-network",
            ),
            (
                Signals {
                    ip: Some("2a01:111:f403::1".parse().unwrap()),
                    ..base
                },
                Class::Scanner,
                "microsoft-eop-network",
            ),
            (
                Signals {
                    ip: Some("209.222.82.14".parse().unwrap()),
                    ..base
                },
                Class::Scanner,
                "barracuda-egd-network",
            ),
            (
                s(true, Some("Mozilla/5.0 (compatible; Mimecast URL Protect)")),
                Class::Scanner,
                "mimecast-user-agent",
            ),
            (
                s(true, Some("Proofpoint URL Defense")),
                Class::Scanner,
                "proofpoint-user-agent",
            ),
            (
                s(false, Some("Barracuda Sentinel (EE)")),
                Class::Scanner,
                "barracuda-user-agent",
            ),
            (
                Signals {
                    since_delivery_ms: Some(1_500),
                    ..s(false, Some(FIREFOX))
                },
                Class::Scanner,
                "open-within-2s-of-delivery",
            ),
            (
                Signals {
                    since_delivery_ms: Some(0),
                    ..base
                },
                Class::Scanner,
                "click-within-2s-of-delivery",
            ),
        ];
        for (sig, class, rule) in cases {
            let v = classify(&sig);
            assert_eq!((v.class, v.rule), (class, Some(rule)), "{sig:?}");
        }
        // Just outside each: a person.
        for sig in [
            Signals {
                ip: Some("40.94.0.1".parse().unwrap()),
                ..base
            },
            Signals {
                since_delivery_ms: Some(FAST_AFTER_DELIVERY_MS),
                ..base
            },
            Signals {
                since_delivery_ms: None,
                ..base
            },
        ] {
            assert_eq!(classify(&sig).class, Class::Human, "{sig:?}");
        }
    }

    #[test]
    fn every_link_clicked_at_once_is_a_burst_and_one_link_again_is_not() {
        let mut b = ClickBursts::default();
        // A person: the same link twice, another link a minute later.
        assert_eq!(b.record(1, 0, 10_000), None);
        assert_eq!(b.record(1, 0, 10_500), None);
        assert_eq!(b.record(1, 1, 70_000), None);
        // A scanner: links 0, 1, 2 of send 2 within a second; the burst
        // starts at the first.
        assert_eq!(b.record(2, 0, 5_000), None);
        assert_eq!(b.record(2, 1, 5_300), Some(5_000));
        assert_eq!(b.record(2, 2, 5_600), Some(5_000));
        // Out of order (two writers, or a batch's order) still counts.
        assert_eq!(b.record(3, 1, 9_000), None);
        assert_eq!(b.record(3, 0, 8_800), Some(8_800));
        // Other sends are not mixed in, and old sends are forgotten.
        assert_eq!(b.record(4, 5, 5_100), None);
        b.forget_before(60_000);
        assert_eq!(b.len(), 1);
        b.forget_before(100_000);
        assert!(b.is_empty());
    }

    /// A burst found by one writer is remembered for the others, widened by
    /// a later find, kept apart per send, and forgotten with its clicks.
    #[test]
    fn a_found_burst_is_remembered_for_the_writers_that_commit_after() {
        let mut b = ClickBursts::default();
        assert!(b.found_for(&[2]).is_empty());
        b.found(2, 5_000, 5_300);
        b.found(2, 4_900, 5_600);
        b.found(7, 1_000, 1_200);
        assert_eq!(b.found_for(&[2, 3]), vec![(2, 4_900, 5_600)]);
        b.forget_before(5_500);
        assert_eq!(b.found_for(&[2, 7]), vec![(2, 4_900, 5_600)]);
        b.forget_before(60_000);
        assert!(b.found_for(&[2, 7]).is_empty());
    }
}
