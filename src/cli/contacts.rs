//! `cartero contacts ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{Context, Format};
use crate::contacts::{ImportOptions, import_csv};
use crate::domain::EmailAddress;
use crate::domain::time::{now_millis, to_rfc3339};
use crate::store::status::{self, Reinstated};
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
    /// Exit status: 0 all rows imported, 3 imported with rejected rows, 1 error.
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
    /// back to active, recorded with your reason. Consent is NOT granted
    /// again: a contact who withdrew stays off the lists until they
    /// subscribe again.
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
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
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
                        eprintln!(
                            "{}:{}: row {}: {}",
                            file.display(),
                            r.line,
                            r.row,
                            crate::domain::text::for_terminal_line(&r.reason)
                        );
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
            let bad = summary.rejected + summary.duplicates > 0;
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
                    let safe = crate::domain::text::for_terminal_line;
                    println!(
                        "name        {} {}",
                        safe(c.first_name.as_deref().unwrap_or("")),
                        safe(c.last_name.as_deref().unwrap_or(""))
                    );
                    println!("status      {}", c.status);
                    println!("tags        {}", safe(&c.tags.join(", ")));
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
                status::reinstate(&store, id, &actor, reason.trim(), now_millis()).await?;
            store.close().await;
            match outcome {
                Reinstated::Changed { from, change_id } => {
                    println!("{stored}: {from} -> active (status change {change_id}, by {actor})");
                    println!(
                        "consent was not re-granted: if the contact withdrew from a list, they stay \
                         off it until they subscribe again"
                    );
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

/// A contact by address as an operator typed it.
async fn find_contact(store: &crate::store::Store, email: &str) -> anyhow::Result<(i64, String)> {
    let normalized = EmailAddress::parse(email.trim()).ok();
    status::find_contact(store, normalized.as_ref().map(|a| a.as_str()), email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no contact with address {email}"))
}
