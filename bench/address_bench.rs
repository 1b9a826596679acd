//! In-process speed of the address parser plus risk flags, on one thread:
//! the work `address check` and the importer do per address, without
//! process start-up or output.
//!
//! Usage: cargo run --release --example address-bench -- FILE [ROUNDS]
//! FILE holds one JSON string per line (so addresses may hold CR/LF/NUL).
//! Prints the best round's rate, as bench/address-speed.sh expects.

use std::time::Instant;

use cartero::domain::EmailAddress;
use cartero::hygiene::flags::FlagChecker;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: address-bench FILE [ROUNDS]")?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let text = std::fs::read_to_string(&path)?;
    let inputs: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let checker = FlagChecker::builtin();

    let mut best = f64::INFINITY;
    let (mut valid, mut flagged) = (0usize, 0usize);
    for _ in 0..rounds {
        valid = 0;
        flagged = 0;
        let start = Instant::now();
        for input in &inputs {
            if let Ok(addr) = EmailAddress::parse(input) {
                valid += 1;
                let f = checker.check(&addr);
                flagged += usize::from(f.role || f.disposable || f.typo.is_some());
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "cartero: {} addresses ({valid} valid, {flagged} flagged), best of {rounds}: {:.3} s, {:.2} us/address, {:.0} addresses/s",
        inputs.len(),
        best,
        best * 1e6 / inputs.len() as f64,
        inputs.len() as f64 / best
    );
    Ok(())
}
