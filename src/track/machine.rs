//! Which opens and clicks a machine made: image proxies, prefetchers and
//! link scanners. Every hit is stored with its verdict and the rule that
//! fired; none is dropped, and the verdict never changes the response (the
//! pixel is always served, the redirect always given). Facts and sources:
//! the tracking-and-consent note (Apple MPP, Gmail and Yahoo proxies,
//! Microsoft EOP networks, HEAD requests, clicks seconds after delivery).
//!
//! Pure: no I/O.

use std::net::IpAddr;

/// The version of these rules, stored with each verdict so reports can tell
/// which rules classified an old event.
pub const RULESET: &str = "2026-12-03";

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

/// Exchange Online Protection: pure filtering networks, never a reader
/// (Microsoft 365 endpoint sets; see the tracking note).
const EOP_NETWORKS: [&str; 4] = [
    "40.92.0.0/15",
    "40.107.0.0/16",
    "52.100.0.0/14",
    "104.47.0.0/17",
];

/// Substrings of user agents that only robots send. Scanners with browser
/// agents are not caught this way (they are by timing, below).
const ROBOT_AGENTS: [&str; 10] = [
    "bingpreview",
    "barracuda",
    "mimecast",
    "proofpoint",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
    "headlesschrome",
    "bot",
];

/// A click this soon after delivery is a scanner's, not a reader's.
const FAST_CLICK_MS: i64 = 2_000;

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
        && EOP_NETWORKS
            .iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(&ip))
    {
        return v(Class::Scanner, "microsoft-eop-network");
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
    if ROBOT_AGENTS.iter().any(|r| lower.contains(r)) {
        return v(Class::Scanner, "robot-user-agent");
    }
    if s.click
        && s.since_delivery_ms
            .is_some_and(|d| (0..FAST_CLICK_MS).contains(&d))
    {
        return v(Class::Scanner, "click-within-2s-of-delivery");
    }
    Verdict {
        class: Class::Human,
        rule: None,
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
}
