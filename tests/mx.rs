//! MX checks against real DNS servers on loopback: dnsmasq serving the
//! standard test zone, a server answering SERVFAIL and one never answering.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cartero::config::DnsConfig;
use cartero::hygiene::mx::{MxChecker, MxVerdict};
use common::servers::{Dns, Zone};

/// Generous, for tests that expect answers: the machine may be busy, and
/// only the timeout tests measure time.
const ANSWER_TIMEOUT_MS: u64 = 5000;

fn checker(servers: &[SocketAddr], timeout_ms: u64) -> MxChecker {
    MxChecker::from_config(&DnsConfig {
        nameservers: servers.iter().map(|a| a.to_string()).collect(),
        timeout_ms,
        concurrency: 8,
    })
    .expect("valid dns config")
}

#[tokio::test]
async fn verdicts_from_the_test_zone() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    let mx = checker(&[dns.addr()], ANSWER_TIMEOUT_MS);
    assert_eq!(
        mx.check("mx.test").await,
        MxVerdict::Deliverable {
            mx: vec![(10, "mail.mx.test".into()), (20, "backup.mx.test".into())]
        }
    );
    assert_eq!(mx.check("nullmx.test").await, MxVerdict::NullMx);
    assert_eq!(mx.check("aonly.test").await, MxVerdict::ImplicitMx);
    assert_eq!(mx.check("aaaaonly.test").await, MxVerdict::ImplicitMx);
    assert_eq!(mx.check("nxdomain.test").await, MxVerdict::NoSuchDomain);
    assert_eq!(mx.check("dangling.test").await, MxVerdict::NoMailHost);
    assert_eq!(mx.check("txtonly.test").await, MxVerdict::NoMailHost);
    // The MX host's lookup fails: the DNS could not tell, so not "no mail host".
    assert!(
        matches!(mx.check("brokenmx.test").await, MxVerdict::Unknown { .. }),
        "{}",
        dns.log()
    );
    // A zone whose server fails, reached through dnsmasq.
    assert!(matches!(
        mx.check("x.servfail.test").await,
        MxVerdict::Unknown { .. }
    ));
    // Case and a trailing dot do not matter.
    assert_eq!(mx.check("NullMX.Test.").await, MxVerdict::NullMx);
}

#[tokio::test]
async fn servfail_is_unknown_never_invalid() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    let mx = checker(&[dns.servfail_addr()], ANSWER_TIMEOUT_MS);
    let started = Instant::now();
    let v = mx.check("mx.test").await;
    let MxVerdict::Unknown { reason } = &v else {
        panic!("SERVFAIL must be unknown, got {v:?}");
    };
    assert!(reason.contains("Server Failure"), "{reason}");
    assert!(!v.is_undeliverable());
    assert!(dns.servfail_queries() >= 1, "the query reached the server");
    assert!(
        started.elapsed() < Duration::from_millis(ANSWER_TIMEOUT_MS / 2),
        "an answer, not a timeout: {reason} after {:?}",
        started.elapsed()
    );
    assert_eq!(mx.cached(), 0, "a failure is not cached");
}

#[tokio::test]
async fn silent_server_gives_unknown_within_the_timeout() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    let mx = checker(&[dns.silent_addr()], 300);
    let started = Instant::now();
    let v = mx.check("mx.test").await;
    let elapsed = started.elapsed();
    let MxVerdict::Unknown { reason } = &v else {
        panic!("a silent server must be unknown, got {v:?}");
    };
    assert!(
        reason.contains("timed out") || reason.contains("no answer"),
        "{reason}"
    );
    assert!(
        elapsed >= Duration::from_millis(250),
        "it waited for the server: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1000),
        "bounded by timeout_ms: {elapsed:?}"
    );
}

#[tokio::test]
async fn answers_are_cached() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    let mx = checker(&[dns.addr()], ANSWER_TIMEOUT_MS);
    assert_eq!(mx.check("aonly.test").await, MxVerdict::ImplicitMx);
    assert_eq!(mx.check("nxdomain.test").await, MxVerdict::NoSuchDomain);
    assert_eq!(mx.cached(), 2, "positive and negative answers are cached");
    let queries = |log: &str, name: &str| {
        log.lines()
            .filter(|l| l.contains("query[") && l.contains(&format!(" {name} ")))
            .count()
    };
    let before = queries(&dns.log(), "aonly.test");
    assert!(before >= 1, "dnsmasq saw the first check:\n{}", dns.log());
    assert_eq!(mx.check("aonly.test").await, MxVerdict::ImplicitMx);
    assert_eq!(mx.check("AONLY.test").await, MxVerdict::ImplicitMx);
    assert_eq!(
        queries(&dns.log(), "aonly.test"),
        before,
        "a cached verdict asks the DNS nothing"
    );
}

#[tokio::test]
async fn check_many_checks_each_domain_once() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    let mx = checker(&[dns.addr()], ANSWER_TIMEOUT_MS);
    let mut got = mx
        .check_many([
            "mx.test",
            "nullmx.test",
            "aonly.test",
            "nxdomain.test",
            "mx.test",
            "MX.test",
        ])
        .await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<(&str, &str)> = got.iter().map(|(d, v)| (d.as_str(), v.name())).collect();
    assert_eq!(
        names,
        vec![
            ("aonly.test", "implicit-mx"),
            ("mx.test", "deliverable"),
            ("nullmx.test", "null-mx"),
            ("nxdomain.test", "no-such-domain"),
        ]
    );
}

#[tokio::test]
async fn many_silent_domains_finish_together_not_one_after_another() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    // 16 timeouts of 300 ms with concurrency 8 take about 2 × 300 ms, not
    // 16 × 300 ms.
    let mx = checker(&[dns.silent_addr()], 300);
    let domains: Vec<String> = (0..16).map(|i| format!("d{i}.test")).collect();
    let started = Instant::now();
    let got = mx.check_many(&domains).await;
    let elapsed = started.elapsed();
    assert_eq!(got.len(), 16);
    assert!(
        got.iter()
            .all(|(_, v)| matches!(v, MxVerdict::Unknown { .. }))
    );
    assert!(elapsed < Duration::from_millis(2400), "{elapsed:?}");
}
