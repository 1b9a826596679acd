//! `cartero contacts ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{Context, Format};
use crate::consent::{self as consent_stage, Reinstated};
use crate::contacts::{ImportOptions, import_csv};
use crate::domain::EmailAddress;
use crate::domain::time::{now_millis, to_rfc3339};
use crate::store::status;
use crate::store::{consent, contacts};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Import contacts from a CSV file with a header row.
    ///
    /// `email` is required; first_name, last_name, locale, timezone and tags
    /// (separated by , ; or |) are known columns; every other column is kept
    /// as a typed attribute. Contacts are upserted by normalised address, so
    /// importing the same file twice changes nothing. Rejected rows go to
    /// FILE.rejects.csv with their row number and reason.
    ///
    /// Addresses erased on request (the suppression list) are refused and counted.
    ///
    /// Exit status: 0 all rows imported, 3 imported with rejected or refused rows, 1 error.
    #[command(
        after_help = "Example:\n  cartero contacts import contacts.csv --list newsletter --consent-source \"signup form 2025\""
    )]
    Import {
        file: PathBuf,
        /// Subscribe the imported contacts to this list (created if needed).
        #[arg(long, requires = "consent_source")]
        list: Option<String>,
        /// Where the consent came from: the evidence kept in the consent ledger.
        #[arg(long)]
        consent_source: Option<String>,
        /// Version of the consent text the contacts agreed to.
        #[arg(long)]
        consent_text_version: Option<String>,
        /// Where to write rejected rows (default: FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Check everything and report, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Abort, writing nothing, if any row is rejected.
        #[arg(long)]
        strict: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one contact: fields, attributes, tags and consent history.
    #[command(after_help = "Example:\n  cartero contacts show ana@example.com --format json")]
    Show {
        email: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List a contact's status changes (bounces, complaints, unsubscribes,
    /// hygiene, reinstatements) with their cause, rule and event.
    #[command(after_help = "Example:\n  cartero contacts status-history ana@example.com")]
    StatusHistory {
        email: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Put a suppressed contact (bounced, complained, unsubscribed, sunset)
    /// back to active, recorded with your reason, and restore the list
    /// consent that suppression withdrew: `restore` entries appended to the
    /// consent ledger, each naming the withdrawal it reverses (nothing is
    /// edited). Lists the person left in any other way stay left.
    #[command(
        after_help = "Example:\n  cartero contacts reinstate ana@example.com --reason \"mailbox fixed, confirmed by phone\""
    )]
    Reinstate {
        email: String,
        /// Why: kept in the status history.
        #[arg(long)]
        reason: String,
        /// Who is doing it.
        #[arg(long, default_value = "operator")]
        actor: String,
    },
    /// What changed in the contact database over a period: status changes,
    /// consent grants and withdrawals, erasures and purges, summarised per
    /// day or week (and each one with --detail).
    #[command(after_help = "Example:\n  cartero contacts changes --since 7d --by day --detail")]
    Changes {
        /// From this instant: YYYY-MM-DD (UTC), RFC 3339, or 7d / 24h back.
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long, value_enum, default_value_t = Period::Day)]
        by: Period,
        /// Also list every change (old and new value, when, by what).
        #[arg(long)]
        detail: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Everything held on one contact, as JSON (GDPR Art. 15 and 20):
    /// fields, attributes, tags, lists, consents with their evidence, sends,
    /// events, status changes, hygiene flags.
    #[command(after_help = "Example:\n  cartero contacts export ana@example.com --out ana.json")]
    Export {
        email: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erase a contact's personal data from every table (GDPR Art. 17). The
    /// address goes on the suppression list as a keyed hash, so a later
    /// import or sign-up of it is refused; the erasure is recorded, and the
    /// consent ledger still verifies. Needs [compliance] ledger_key.
    #[command(
        after_help = "Example:\n  cartero contacts erase ana@example.com --reason \"request by mail 2026-12-01, ticket 4711\""
    )]
    Erase {
        email: String,
        /// Why: kept with the erasure (do not write personal data here).
        #[arg(long)]
        reason: String,
        /// Who is doing it.
        #[arg(long, default_value = "operator")]
        actor: String,
    },
}

/// The period `contacts changes` sums over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Period {
    Day,
    Week,
}

/// The day (YYYY-MM-DD) or ISO week (YYYY-Www) of an instant, UTC.
fn period_of(ms: crate::domain::time::Millis, by: Period) -> String {
    let t = ::time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH);
    match by {
        Period::Day => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Period::Week => {
            let (year, week, _) = t.to_iso_week_date();
            format!("{year:04}-W{week:02}")
        }
    }
}

async fn changes(
    ctx: &Context,
    since: String,
    by: Period,
    detail: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    use std::collections::BTreeMap;
    use std::io::Write;
    let since = super::compliance::parse_instant("--since", &since, now_millis())?;
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut summary: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut failed: Option<std::io::Error> = None;
    let mut first = true;
    if detail {
        match format {
            Format::Table => writeln!(
                out,
                "{:<24} {:<32} {:<22} {:<12} {:<12} BY",
                "WHEN", "EMAIL", "WHAT", "OLD", "NEW"
            )?,
            Format::Csv => writeln!(out, "occurred_at,email,what,old_value,new_value,by_what")?,
            Format::Json => write!(out, "{{\"changes\": [")?,
        }
    }
    crate::store::compliance::stream_changes(&store, since, |r| {
        *summary
            .entry((
                period_of(r.occurred_at, by),
                r.what.clone(),
                r.new_value.clone().unwrap_or_else(|| "-".into()),
            ))
            .or_default() += 1;
        if !detail {
            return true;
        }
        let res = match format {
            Format::Table => writeln!(
                out,
                "{:<24} {:<32} {:<22} {:<12} {:<12} {}",
                to_rfc3339(r.occurred_at),
                r.email.as_deref().unwrap_or("-"),
                r.what,
                r.old_value.as_deref().unwrap_or("-"),
                r.new_value.as_deref().unwrap_or("-"),
                r.by_what.replace(char::is_control, " ")
            ),
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::new());
                let rec = [
                    to_rfc3339(r.occurred_at),
                    r.email.clone().unwrap_or_default(),
                    r.what.clone(),
                    r.old_value.clone().unwrap_or_default(),
                    r.new_value.clone().unwrap_or_default(),
                    r.by_what.clone(),
                ];
                match w
                    .write_record(&rec)
                    .map_err(std::io::Error::other)
                    .and_then(|()| {
                        w.into_inner()
                            .map_err(|e| std::io::Error::other(e.to_string()))
                    }) {
                    Ok(bytes) => out.write_all(&bytes),
                    Err(e) => Err(e),
                }
            }
            Format::Json => {
                let sep = if first { "\n" } else { ",\n" };
                first = false;
                match serde_json::to_string(&r) {
                    Ok(j) => write!(out, "{sep}{j}"),
                    Err(e) => Err(std::io::Error::other(e)),
                }
            }
        };
        match res {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .await?;
    store.close().await;
    if let Some(e) = failed {
        return Err(anyhow::Error::from(e).context("writing the changes"));
    }
    let period = match by {
        Period::Day => "day",
        Period::Week => "week",
    };
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = summary
                .iter()
                .map(|((p, what, new), n)| {
                    serde_json::json!({ period: p, "what": what, "new_value": new, "count": n })
                })
                .collect();
            let rows = serde_json::to_string(&rows)?;
            if detail {
                writeln!(out, "\n], \"summary\": {rows}}}")?;
            } else {
                writeln!(out, "{{\"summary\": {rows}}}")?;
            }
        }
        Format::Csv if detail => {}
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record([period, "what", "new_value", "count"])?;
            for ((p, what, new), n) in &summary {
                w.write_record([p.as_str(), what, new, &n.to_string()])?;
            }
            w.flush()?;
        }
        Format::Table => {
            if detail {
                writeln!(out)?;
            }
            writeln!(
                out,
                "{:<10} {:<28} {:<14} {:>9}",
                period.to_uppercase(),
                "WHAT",
                "NEW",
                "COUNT"
            )?;
            for ((p, what, new), n) in &summary {
                writeln!(out, "{p:<10} {what:<28} {new:<14} {n:>9}")?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Export { email, out } => export(ctx, email, out).await,
        Cmd::Changes {
            since,
            by,
            detail,
            format,
        } => changes(ctx, since, by, detail, format).await,
        Cmd::Erase {
            email,
            reason,
            actor,
        } => erase(ctx, email, reason, actor).await,
        Cmd::Import {
            file,
            list,
            consent_source,
            consent_text_version,
            rejects,
            dry_run,
            strict,
            format,
        } => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            let size = std::fs::metadata(&file)
                .with_context(|| format!("{}: cannot read", file.display()))?
                .len();
            let bar = ctx.progress().then(|| {
                let b = indicatif::ProgressBar::new(size);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} importing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                b
            });
            let report = |bytes: u64| {
                if let Some(b) = &bar {
                    b.set_position(bytes);
                }
            };
            let opts = ImportOptions {
                list,
                consent_source,
                consent_text_version,
                rejects_path: rejects,
                dry_run,
                strict,
            };
            let summary = import_csv(&store, &file, &opts, &report).await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            store.close().await;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
                Format::Table | Format::Csv => {
                    for r in &summary.rejections {
                        eprintln!("{}:{}: row {}: {}", file.display(), r.line, r.row, r.reason);
                    }
                    if summary.rejected > summary.rejections.len() as u64 {
                        eprintln!("... and more");
                    }
                    println!("rows read          {:>9}", summary.rows);
                    println!("inserted           {:>9}", summary.inserted);
                    println!("updated            {:>9}", summary.updated);
                    println!("unchanged          {:>9}", summary.unchanged);
                    println!("rejected           {:>9}", summary.rejected);
                    println!("duplicates in file {:>9}", summary.duplicates);
                    if summary.suppressed > 0 {
                        println!("refused (erased)   {:>9}", summary.suppressed);
                    }
                    if opts.list.is_some() {
                        println!("consent granted    {:>9}", summary.consent_granted);
                        println!("kept unsubscribed  {:>9}", summary.kept_withdrawn);
                    }
                    if let Some(f) = &summary.rejects_file {
                        println!("rejected rows written to {f}");
                    }
                    if !summary.written {
                        println!(
                            "{}",
                            if dry_run {
                                "dry run: nothing was written"
                            } else {
                                "strict: rows were rejected, nothing was written"
                            }
                        );
                    }
                }
            }
            let bad = summary.rejected + summary.duplicates + summary.suppressed > 0;
            Ok(if strict && bad {
                ExitCode::FAILURE
            } else if bad {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Show { email, format } => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            let addr = EmailAddress::parse(email.trim())
                .map_err(|e| anyhow::anyhow!("{email:?} is not a valid address: {e}"))?;
            let Some(c) = contacts::find_by_email(&store, &addr).await? else {
                anyhow::bail!("no contact with address {addr}");
            };
            let ledger = consent::entries_for_contact(&store, c.id).await?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "contact": c, "consent": ledger })
                    )?
                ),
                Format::Table | Format::Csv => {
                    println!("email       {}", c.email);
                    println!(
                        "name        {} {}",
                        c.first_name.as_deref().unwrap_or(""),
                        c.last_name.as_deref().unwrap_or("")
                    );
                    println!("status      {}", c.status);
                    println!("tags        {}", c.tags.join(", "));
                    println!("attributes  {}", c.attributes);
                    println!("consent:");
                    for e in ledger {
                        println!(
                            "  {}  {:<8} list={} source={:?} method={}",
                            to_rfc3339(e.occurred_at),
                            e.action,
                            e.list_id
                                .map(|l| l.to_string())
                                .unwrap_or_else(|| "all".into()),
                            e.source,
                            e.method
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::StatusHistory { email, format } => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            let (id, _) = find_contact(&store, &email).await?;
            let rows = status::list(&store, Some(id), None).await?;
            store.close().await;
            super::feedback::print_changes(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reinstate {
            email,
            reason,
            actor,
        } => {
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why the contact is reinstated");
            }
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            let (id, stored) = find_contact(&store, &email).await?;
            let outcome =
                consent_stage::reinstate(&store, id, &actor, reason.trim(), now_millis()).await?;
            let restored = match &outcome {
                Reinstated::Changed { restored, .. } => {
                    contacts::list_names(&store, restored).await?
                }
                _ => Vec::new(),
            };
            store.close().await;
            match outcome {
                Reinstated::Changed {
                    from, change_id, ..
                } => {
                    println!("{stored}: {from} -> active (status change {change_id}, by {actor})");
                    if restored.is_empty() {
                        println!(
                            "no consent to restore: the suppression withdrew none that had not been \
                             withdrawn otherwise"
                        );
                    } else {
                        println!(
                            "consent restored (reversal entries in the ledger): {}",
                            restored.join(", ")
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Reinstated::AlreadyActive => {
                    println!("{stored} is already active: nothing changed");
                    Ok(ExitCode::SUCCESS)
                }
                Reinstated::Erased => {
                    anyhow::bail!("{stored} was erased; an erased contact cannot be reinstated")
                }
            }
        }
    }
}

async fn export(ctx: &Context, email: String, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let normalized = EmailAddress::parse(email.trim()).ok();
    let found =
        status::find_contact(&store, normalized.as_ref().map(|a| a.as_str()), &email).await?;
    let doc = match found {
        Some((id, _)) => crate::store::compliance::export(&store, id).await?,
        None => {
            let erased = match (&normalized, cfg.compliance.ledger_keys()?) {
                (Some(addr), Some(keys)) => {
                    crate::store::compliance::is_suppressed(&store, &keys, addr).await?
                }
                _ => false,
            };
            if !erased {
                anyhow::bail!("no contact with address {email}");
            }
            serde_json::json!({
                "format": "cartero-contact-export/1",
                "erased": true,
                "held": "nothing: the contact was erased on request; a keyed hash of the address is \
                         on the suppression list so that it is not imported again",
            })
        }
    };
    store.close().await;
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match out {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("{}: cannot write", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn erase(
    ctx: &Context,
    email: String,
    reason: String,
    actor: String,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the contact is erased (the request, its date)");
    }
    let cfg = ctx.config()?;
    let keys = super::compliance::require_keys(&cfg)?;
    let store = ctx.store(&cfg).await?;
    let (id, stored) = find_contact(&store, &email).await?;
    let done =
        crate::store::compliance::erase(&store, &keys, id, reason.trim(), &actor, now_millis())
            .await?;
    store.close().await;
    println!(
        "{stored}: erased (contact {id}; ledger entries {}, tags {}, flags {}, sends {}, events {}, \
         status reasons {}); the address is on the suppression list (erasure {})",
        done.ledger_entries,
        done.tags,
        done.flags,
        done.sends,
        done.events,
        done.status_reasons,
        done.action_id
    );
    Ok(ExitCode::SUCCESS)
}

/// A contact by address as an operator typed it.
async fn find_contact(store: &crate::store::Store, email: &str) -> anyhow::Result<(i64, String)> {
    let normalized = EmailAddress::parse(email.trim()).ok();
    status::find_contact(store, normalized.as_ref().map(|a| a.as_str()), email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no contact with address {email}"))
}
