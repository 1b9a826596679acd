//! `cartero compliance ...`: what a compliance officer runs (docs/COMPLIANCE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::domain::ledger_key::LedgerKeys;
use crate::domain::time::{Millis, now_millis, to_rfc3339};
use crate::store::compliance::{self, LogFilter};
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
    /// Every consent grant and withdrawal with its evidence (source, method,
    /// text version, IP and user agent as stored, campaign and send),
    /// oldest first, streamed as it is read.
    #[command(
        after_help = "Example:\n  cartero compliance log --since 2026-11-01 --action withdraw --format csv > withdrawals.csv"
    )]
    Log {
        /// From this instant: YYYY-MM-DD (UTC), RFC 3339, or 7d / 24h back.
        #[arg(long)]
        since: Option<String>,
        /// Before this instant (same forms).
        #[arg(long)]
        until: Option<String>,
        /// One list (withdrawals from every list are included).
        #[arg(long)]
        list: Option<String>,
        /// One campaign, by slug (entries whose evidence names one of its sends).
        #[arg(long)]
        campaign: Option<String>,
        /// import, form, double-opt-in, one-click, mail, operator, feedback, erasure, ...
        #[arg(long)]
        method: Option<String>,
        #[arg(long, value_parser = ["grant", "withdraw"])]
        action: Option<String>,
        /// One contact, by address.
        #[arg(long)]
        contact: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: super::Format,
    },
    /// Check the promises consent makes and name every violation: a message
    /// sent after a withdrawal, a send without consent recorded for the
    /// campaign's list, a withdrawal not applied to the list state, a
    /// withdrawal that took longer than two days to apply (with the median
    /// and worst time from request to effect), a double opt-in request
    /// pending for longer than --doi-pending-days, a subscription resting
    /// only on sign-ups that were never confirmed.
    ///
    /// Exit status: 0 no violation, 4 violations found, 1 error.
    #[command(
        after_help = "Example (cron, weekly):\n  cartero compliance audit --since 7d || mail -s 'consent audit' dpo@example.com"
    )]
    Audit {
        /// Only sends and withdrawals from this instant (YYYY-MM-DD, RFC 3339, 7d).
        #[arg(long)]
        since: Option<String>,
        /// A double opt-in request unconfirmed for longer than this many
        /// days is a violation (the address is held without consent).
        #[arg(long, value_name = "N", default_value_t = compliance::DOI_PENDING_DAYS)]
        doi_pending_days: u32,
        #[arg(long, value_enum, default_value_t)]
        format: super::Format,
    },
    /// Remove the IP address and user agent of events older than
    /// [compliance] event_ip_retention_days; the purge itself is recorded.
    #[command(after_help = "Example (cron, daily):\n  cartero compliance purge --actor cron")]
    Purge {
        /// Who runs it (recorded with the purge).
        #[arg(long, default_value = "operator")]
        actor: String,
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
        Cmd::Log {
            since,
            until,
            list,
            campaign,
            method,
            action,
            contact,
            format,
        } => {
            let now = now_millis();
            let mut filter = LogFilter {
                since: since
                    .as_deref()
                    .map(|s| parse_instant("--since", s, now))
                    .transpose()?,
                until: until
                    .as_deref()
                    .map(|s| parse_instant("--until", s, now))
                    .transpose()?,
                list,
                campaign,
                method,
                action,
                contact_id: None,
                after_id: None,
            };
            let store = ctx.store(&cfg).await?;
            if let Some(email) = &contact {
                let normalized = crate::domain::EmailAddress::parse(email.trim()).ok();
                let found = crate::store::status::find_contact(
                    &store,
                    normalized.as_ref().map(|a| a.as_str()),
                    email,
                )
                .await?;
                let Some((id, _)) = found else {
                    anyhow::bail!("no contact with address {email}");
                };
                filter.contact_id = Some(id);
            }
            write_log(&store, &filter, format).await?;
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            since,
            doi_pending_days,
            format,
        } => {
            let now = now_millis();
            let since = since
                .as_deref()
                .map(|s| parse_instant("--since", s, now))
                .transpose()?;
            let store = ctx.store(&cfg).await?;
            let limits = compliance::AuditLimits {
                doi_pending_days,
                now,
            };
            let audit = compliance::audit(&store, since, limits).await?;
            store.close().await;
            print_audit(&audit, format)?;
            Ok(if audit.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Cmd::Purge { actor } => {
            let Some(days) = cfg.compliance.event_ip_retention_days else {
                anyhow::bail!(
                    "no retention configured: set [compliance] event_ip_retention_days \
                     (CARTERO_COMPLIANCE_EVENT_IP_RETENTION_DAYS)"
                );
            };
            let store = ctx.store(&cfg).await?;
            let p = compliance::purge(&store, days, &actor, now_millis()).await?;
            store.close().await;
            println!(
                "removed the IP address and user agent of {} events older than {} ({} days); \
                 recorded as compliance action {}",
                p.events,
                to_rfc3339(p.cutoff),
                days,
                p.action_id
            );
            Ok(ExitCode::SUCCESS)
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

/// Streams the log to standard output in `format`, row by row.
async fn write_log(
    store: &crate::store::Store,
    filter: &LogFilter,
    format: super::Format,
) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<anyhow::Error> = None;
    match format {
        super::Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(compliance::LOG_CSV_HEADER)?;
            compliance::stream_log(store, filter, |r| match w.write_record(r.csv_fields()) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e.into());
                    false
                }
            })
            .await?;
            w.flush()?;
        }
        super::Format::Json => {
            // One JSON array, written an element at a time.
            let mut out = out;
            write!(out, "[")?;
            let mut first = true;
            compliance::stream_log(store, filter, |r| {
                let sep = if first { "\n" } else { ",\n" };
                first = false;
                let res = serde_json::to_string(&r)
                    .map_err(anyhow::Error::from)
                    .and_then(|j| Ok(write!(out, "{sep}{j}")?));
                match res {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })
            .await?;
            writeln!(out, "\n]")?;
            out.flush()?;
        }
        super::Format::Table => {
            let mut out = out;
            writeln!(
                out,
                "{:<7} {:<24} {:<30} {:<12} {:<8} {:<13} {:<20} {:<15} SOURCE",
                "ID", "WHEN", "EMAIL", "LIST", "ACTION", "METHOD", "CAMPAIGN", "IP"
            )?;
            compliance::stream_log(store, filter, |r| {
                let res = writeln!(
                    out,
                    "{:<7} {:<24} {:<30} {:<12} {:<8} {:<13} {:<20} {:<15} {}",
                    r.id,
                    to_rfc3339(r.occurred_at),
                    cell(&r.email),
                    cell(r.list.as_deref().unwrap_or("(all)")),
                    r.action,
                    r.method,
                    r.campaign.as_deref().unwrap_or("-"),
                    r.ip.as_deref().unwrap_or("-"),
                    cell(&r.source)
                );
                match res {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e.into());
                        false
                    }
                }
            })
            .await?;
            out.flush()?;
        }
    }
    match failed {
        Some(e) => Err(e.context("writing the log")),
        None => Ok(()),
    }
}

/// An instant on the command line: YYYY-MM-DD (UTC midnight), RFC 3339, or
/// a span back from now (`7d`, `24h`).
pub fn parse_instant(flag: &str, s: &str, now: Millis) -> anyhow::Result<Millis> {
    crate::domain::time::parse_instant(s, now).ok_or_else(|| {
        anyhow::anyhow!(
            "{flag} {:?}: expected YYYY-MM-DD, an RFC 3339 instant, or a span like 7d or 24h",
            s.trim()
        )
    })
}

fn print_audit(a: &compliance::Audit, format: super::Format) -> anyhow::Result<()> {
    use compliance::Violation as V;
    if format == super::Format::Json {
        println!("{}", serde_json::to_string_pretty(a)?);
        return Ok(());
    }
    let dur = |ms: Option<i64>| match ms {
        Some(ms) if ms >= 3_600_000 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "-".into(),
    };
    println!("sends checked        {:>9}", a.sends_checked);
    println!("withdrawals          {:>9}", a.withdrawals);
    println!(
        "time to effect       median {}, worst {} ({} with the request time recorded; limit 48 h)",
        dur(a.effect_median_ms),
        dur(a.effect_worst_ms),
        a.withdrawals_timed
    );
    println!(
        "double opt-in pending {:>8} (unconfirmed for more than {} days)",
        a.doi_pending, a.doi_pending_days
    );
    println!("violations           {:>9}", a.violations.len());
    for v in &a.violations {
        let line = match v {
            V::SentAfterWithdrawal {
                send_id,
                campaign,
                email,
                sent_at,
                withdrawn_at,
                entry_id,
            } => format!(
                "sent-after-withdrawal: send {send_id} of campaign {campaign} to {email} at {},                  withdrawn at {} (ledger entry {entry_id})",
                to_rfc3339(*sent_at),
                to_rfc3339(*withdrawn_at)
            ),
            V::SentWithoutConsent {
                send_id,
                campaign,
                list,
                email,
                sent_at,
            } => format!(
                "sent-without-consent: send {send_id} of campaign {campaign} to {email} at {}:                  no consent recorded for list {list}",
                to_rfc3339(*sent_at)
            ),
            V::WithdrawalNotApplied {
                email,
                list,
                entry_id,
                withdrawn_at,
            } => format!(
                "withdrawal-not-applied: {email} withdrew at {} (ledger entry {entry_id}) but is                  still subscribed to {list}",
                to_rfc3339(*withdrawn_at)
            ),
            V::SlowWithdrawal {
                email,
                entry_id,
                requested_at,
                applied_at,
            } => format!(
                "slow-withdrawal: {email} asked at {}, applied at {} (ledger entry {entry_id}):                  more than 48 h",
                to_rfc3339(*requested_at),
                to_rfc3339(*applied_at)
            ),
            V::DoiPending {
                signup_id,
                list,
                email,
                signed_up_at,
            } => format!(
                "doi-pending: sign-up {signup_id} of {email} to {list} at {} is still unconfirmed \
                 after {} days",
                to_rfc3339(*signed_up_at),
                a.doi_pending_days
            ),
            V::UnconfirmedSignupGrant {
                email,
                list,
                entry_id,
                signup_id,
            } => format!(
                "unconfirmed-signup-grant: {email} is subscribed to {list} on the grant of \
                 sign-up {signup_id} (ledger entry {entry_id}), which was never confirmed"
            ),
        };
        println!("VIOLATION {}", cell(&line));
    }
    Ok(())
}

/// Text for a terminal cell: control characters (line breaks, escape
/// sequences a hostile form could have stored) are shown escaped.
fn cell(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
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
