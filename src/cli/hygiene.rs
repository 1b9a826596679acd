//! `cartero hygiene ...`: re-check the contact database.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{Context, Format};
use crate::domain::time::now_millis;
use crate::hygiene::flags::FlagChecker;
use crate::hygiene::mx::MxChecker;
use crate::hygiene::run::{self, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Re-validate every contact's address, flag role accounts, disposable
    /// domains and likely typos (and, with --check-mx, domains that cannot
    /// receive mail), and optionally sunset contacts who stopped engaging.
    /// Flags suppress nothing and nothing is deleted; a sunset is a status
    /// change recorded with its cause, reversible with `contacts reinstate`.
    #[command(
        after_help = "Examples:\n  cartero hygiene run --dry-run --check-mx\n  cartero hygiene run --sunset-days 365 --format json"
    )]
    Run {
        /// Report what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Check each distinct domain's MX records (uses [dns]).
        #[arg(long)]
        check_mx: bool,
        /// Set active contacts with no open or click in this many days to
        /// `sunset`. Only mail sent with open or click tracking counts as
        /// evidence (a campaign's [tracking] with [serve] configured); the
        /// silence is measured from the first tracked send, and contacts
        /// never mailed with tracking are counted and left active.
        /// Default: hygiene.sunset_days.
        #[arg(long)]
        sunset_days: Option<u32>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Run {
            dry_run,
            check_mx,
            sunset_days,
            format,
        } => {
            let cfg = ctx.config()?;
            let checker = match &cfg.hygiene.disposable_list {
                Some(p) => FlagChecker::with_disposable_file(&cfg.resolve(p))?,
                None => FlagChecker::builtin(),
            };
            let mx = if check_mx {
                Some(MxChecker::from_config(&cfg.dns).context("setting up MX checks from [dns]")?)
            } else {
                None
            };
            let store = ctx.store(&cfg).await?;
            let opts = Options {
                dry_run,
                sunset_days: sunset_days.or(cfg.hygiene.sunset_days),
            };
            let report = run::run(&store, &checker, mx.as_ref(), &opts, now_millis()).await?;
            store.close().await;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(std::io::stdout());
                    w.write_record(["contact_id", "email", "change", "detail"])?;
                    for c in &report.changes {
                        w.write_record([
                            c.contact_id.to_string(),
                            c.email.clone(),
                            c.change.clone(),
                            c.detail.clone().unwrap_or_default(),
                        ])?;
                    }
                    w.flush()?;
                }
                Format::Table => {
                    let verb = if dry_run { "would" } else { "did" };
                    for c in &report.changes {
                        println!(
                            "{verb}: {:<40} {:<26} {}",
                            c.email,
                            c.change,
                            c.detail.as_deref().unwrap_or("")
                        );
                    }
                    if report.changes_not_listed > 0 {
                        println!("... and {} more changes", report.changes_not_listed);
                    }
                    println!("contacts checked   {:>9}", report.contacts);
                    if check_mx {
                        println!("domains checked    {:>9}", report.domains_checked);
                        println!("domains unknown    {:>9}", report.mx_unknown);
                    }
                    for (flag, n) in &report.flagged {
                        println!("flagged {flag:<10} {n:>9}");
                    }
                    println!("flags added        {:>9}", report.flags_added);
                    println!("flags updated      {:>9}", report.flags_updated);
                    println!("flags cleared      {:>9}", report.flags_cleared);
                    if opts.sunset_days.is_some() {
                        println!("sunset             {:>9}", report.sunset);
                        if report.sunset_no_evidence > 0 {
                            println!(
                                "left active        {:>9}  (silent, but none of their mail tracked \
                                 opens or clicks: no evidence they stopped reading)",
                                report.sunset_no_evidence
                            );
                        }
                    }
                    if dry_run {
                        println!("dry run: nothing was written");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
