//! `cartero compliance ...`: what a compliance officer runs (docs/COMPLIANCE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::domain::ledger_key::LedgerKeys;
use crate::domain::time::now_millis;
use crate::store::consent::{self, Checkpoint};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Walk the consent ledger's hash chain and name the first entry that
    /// was altered, inserted or deleted; with checkpoints, also catch the
    /// newest entries deleted and a rewritten chain.
    ///
    /// Exit status: 0 the chain verifies, 1 it does not (or an error).
    #[command(
        after_help = "Example:\n  cartero compliance verify --checkpoint checkpoints/2026-12-01.json --checkpoint checkpoints/2026-12-08.json"
    )]
    Verify {
        /// A checkpoint written by `compliance checkpoint` (repeatable).
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: super::Format,
    },
    /// Verify the ledger and write a signed checkpoint of it (entry count,
    /// head hash, time, key id). Keep it outside the database: `compliance
    /// verify --checkpoint FILE` then catches truncation and rewriting.
    #[command(
        after_help = "Example:\n  cartero compliance checkpoint --out /safe/place/ledger-$(date +%F).json"
    )]
    Checkpoint {
        /// Write here instead of standard output (refuses to overwrite).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    match args.command {
        Cmd::Verify {
            checkpoints,
            format,
        } => {
            let keys = cfg.compliance.ledger_keys()?;
            let mut cps = Vec::with_capacity(checkpoints.len());
            for path in &checkpoints {
                cps.push(read_checkpoint(path, keys.as_ref())?);
            }
            let store = ctx.store(&cfg).await?;
            let verdict = consent::verify(&store, keys.as_ref(), &cps).await?;
            store.close().await;
            match verdict {
                Ok(v) => {
                    match format {
                        super::Format::Json => println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &serde_json::json!({ "ok": true, "verified": v })
                            )?
                        ),
                        _ => {
                            println!(
                                "ledger verifies: {} entries ({} keyed, {} legacy, {} erased)",
                                v.entries, v.keyed, v.legacy, v.erased
                            );
                            println!("head {} (entry {})", v.head, opt(v.head_id));
                            if !v.key_ids.is_empty() {
                                println!("keys {}", v.key_ids.join(", "));
                            }
                            if v.switch_legacy_count.is_none() && v.legacy > 0 {
                                println!(
                                    "warning: no entry is keyed yet; these {} legacy entries are \
                                     sealed by the first `compliance checkpoint` with a ledger key",
                                    v.legacy
                                );
                            }
                            for (p, cp) in checkpoints.iter().zip(&cps) {
                                println!(
                                    "checkpoint {} ({} entries at {}) holds",
                                    p.display(),
                                    cp.entries,
                                    cp.at
                                );
                            }
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(b) => {
                    let named = match &b {
                        consent::ChainBreak::Checkpoint { index, .. } => checkpoints
                            .get(*index)
                            .map(|p| format!(" ({})", p.display()))
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    match format {
                        super::Format::Json => println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &serde_json::json!({ "ok": false, "break": format!("{b}{named}") })
                            )?
                        ),
                        _ => println!("LEDGER DOES NOT VERIFY: {b}{named}"),
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Checkpoint { out } => {
            let keys = require_keys(&cfg)?;
            let store = ctx.store(&cfg).await?;
            let cp = consent::checkpoint(&store, &keys, now_millis()).await?;
            store.close().await;
            let cp = match cp {
                Ok(cp) => cp,
                Err(b) => anyhow::bail!("the ledger does not verify, nothing signed: {b}"),
            };
            let text = serde_json::to_string_pretty(&cp)? + "\n";
            match out {
                Some(path) => {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .with_context(|| format!("{}: cannot create", path.display()))?;
                    f.write_all(text.as_bytes())
                        .with_context(|| format!("{}: cannot write", path.display()))?;
                    println!(
                        "checkpoint of {} entries written to {}",
                        cp.entries,
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The ledger keys, or an error saying how to configure one.
pub fn require_keys(cfg: &crate::config::Config) -> anyhow::Result<LedgerKeys> {
    cfg.compliance.ledger_keys()?.ok_or_else(|| {
        anyhow::anyhow!(
            "no ledger key: set [compliance] ledger_key or CARTERO_COMPLIANCE_LEDGER_KEY \
             (at least 32 characters, e.g. `openssl rand -base64 32`)"
        )
    })
}

/// Reads and checks a checkpoint file; its errors name the file.
fn read_checkpoint(
    path: &std::path::Path,
    keys: Option<&LedgerKeys>,
) -> anyhow::Result<Checkpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let cp: Checkpoint = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not a checkpoint: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let keys = keys.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: checking a checkpoint needs the ledger key ([compliance] ledger_key)",
            path.display()
        )
    })?;
    cp.check(keys)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(cp)
}
