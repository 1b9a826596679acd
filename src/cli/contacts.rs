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

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Export { email, out } => export(ctx, email, out).await,
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
