//! MX checks per second: `cargo run --release --example mx_bench --
//! NAMESERVER DOMAINS_FILE [CONCURRENCY] [TIMEOUT_MS]`. Checks every domain
//! of the file (one per line) with a cold cache, then again warm, and prints
//! the rates and the verdict counts. bench/mx.sh runs it against a local
//! dnsmasq beside email-validator's deliverability check.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use cartero::config::DnsConfig;
use cartero::hygiene::mx::MxChecker;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(nameserver), Some(file)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mx_bench NAMESERVER DOMAINS_FILE [CONCURRENCY] [TIMEOUT_MS]");
        return ExitCode::from(2);
    };
    let concurrency = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let timeout_ms = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let domains: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let checker = match MxChecker::from_config(&DnsConfig {
        nameservers: vec![nameserver.clone()],
        timeout_ms,
        concurrency,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let results = checker.check_many(&domains).await;
    let cold = started.elapsed();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, v) in &results {
        *counts.entry(v.name()).or_default() += 1;
    }
    let started = Instant::now();
    let again = checker.check_many(&domains).await;
    let warm = started.elapsed();
    assert_eq!(again.len(), results.len());
    println!(
        "cartero mx: {} domains, concurrency {concurrency}: cold {:.0} checks/s ({:.2} s), cached {:.0} checks/s",
        results.len(),
        results.len() as f64 / cold.as_secs_f64(),
        cold.as_secs_f64(),
        again.len() as f64 / warm.as_secs_f64(),
    );
    println!("verdicts: {counts:?}");
    ExitCode::SUCCESS
}
