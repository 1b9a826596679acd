//! `cartero report ...`: campaign figures, KPIs, the contact database over
//! time, and rebuilding the rollups. The figures come from `report`; this
//! only chooses the tables and the format.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Context;
use crate::report::campaign::CampaignReport;
use crate::report::output;
pub use crate::report::view::{by_table, campaign_html, summary_table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    #[default]
    Table,
    Csv,
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    Segment,
    Variant,
    Domain,
    Provider,
    Day,
    Hour,
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Period {
    Day,
    #[default]
    Week,
    Month,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every figure of a campaign: sent, delivered, bounces, opens, clicks,
    /// rates, unsubscribes, complaints, conversions, the curve of opens and
    /// clicks after the send.
    #[command(
        after_help = "Example:\n  cartero report campaign welcome\n  cartero report campaign welcome --by provider --format csv\n  cartero report campaign welcome --format html > welcome.html"
    )]
    Campaign {
        /// The campaign's slug or name.
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: ReportFormat,
        /// Break the figures down.
        #[arg(long, value_enum)]
        by: Option<By>,
    },
    /// KPIs per week or month with their trend and targets: campaigns/kpis.toml
    /// and the deliverability defaults, overall and per mailbox provider.
    #[command(
        after_help = "Example:\n  cartero report kpis --period month\n  cartero report kpis --file campaigns/kpis.toml --format html > kpis.html"
    )]
    Kpis {
        /// KPI file [default: campaigns/kpis.toml when it exists].
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, value_enum)]
        period: Option<Period>,
        /// Periods shown, newest last.
        #[arg(long, default_value_t = 8)]
        periods: usize,
        #[arg(long, value_enum, default_value_t)]
        format: ReportFormat,
    },
    /// Check campaigns/kpis.toml (file:line:col errors).
    #[command(after_help = "Example:\n  cartero report check-kpis campaigns/kpis.toml")]
    CheckKpis { file: PathBuf },
    /// The contact database over time: new, confirmed, unsubscribed, bounced,
    /// erased per day or week; list sizes; the share hygiene flagged.
    #[command(after_help = "Example:\n  cartero report contacts --period week --since 90d")]
    Contacts {
        #[arg(long, value_enum, default_value_t)]
        period: Period,
        /// How far back (7d, 12w, a date) [default: 12 periods].
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ReportFormat,
    },
    /// Recompute the report rollups from the raw events and sends.
    #[command(after_help = "Example:\n  cartero report rebuild")]
    Rebuild,
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<std::process::ExitCode> {
    let mut alert = false;
    match args.command {
        Command::Campaign { name, format, by } => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            if let Some(b @ (By::Segment | By::Variant)) = by {
                anyhow::bail!(
                    "--by {}: a campaign is sent to one segment and has no variants (A/B tests are not built yet), \
                     so there is nothing to break down; compare segments with `cartero report kpis` (by = \"provider\")",
                    if b == By::Segment {
                        "segment"
                    } else {
                        "variant"
                    }
                );
            }
            let r = crate::report::campaign::load(&store, &name).await?;
            print_campaign(&r, format, by)?;
        }
        Command::Kpis {
            file,
            period,
            periods,
            format,
        } => {
            let cfg = ctx.config()?;
            let path = file.or_else(|| {
                let p = cfg.base_dir.join("campaigns/kpis.toml");
                p.is_file().then_some(p)
            });
            let kpis = match &path {
                Some(p) => crate::report::kpis::load_file(p)?,
                None => crate::report::kpis::defaults(),
            };
            let store = ctx.store(&cfg).await?;
            let rep = crate::report::kpis::compute(&store, &kpis, period, periods).await?;
            let tables = crate::report::kpis::tables(&rep);
            match format {
                ReportFormat::Json => {
                    let mut o = std::io::stdout().lock();
                    serde_json::to_writer_pretty(&mut o, &rep)?;
                    writeln!(o)?;
                }
                ReportFormat::Html => print!("{}", crate::report::kpis::html(&rep)),
                ReportFormat::Csv => {
                    output::write_csv(std::io::stdout().lock(), &crate::report::kpis::flat(&rep))?
                }
                ReportFormat::Table => output::write_tables(
                    &mut std::io::stdout().lock(),
                    &tables,
                    output::terminal_width(),
                )?,
            }
            if rep.kpis.iter().any(|k| k.alert) {
                eprintln!(
                    "alert: a KPI's latest period is past its alert threshold (marked ALERT)"
                );
                alert = true;
            }
        }
        Command::CheckKpis { file } => {
            let k = crate::report::kpis::load_file(&file)?;
            println!("{}: {} KPIs, all valid", file.display(), k.len());
        }
        Command::Contacts {
            period,
            since,
            format,
        } => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            let now = crate::domain::time::now_millis();
            let since = match since {
                Some(s) => super::compliance::parse_instant("--since", &s, now)?,
                None => now - 12 * crate::report::contacts::period_ms(period),
            };
            let rep = crate::report::contacts::compute(&store, period, since).await?;
            let tables = crate::report::contacts::tables(&rep);
            match format {
                ReportFormat::Json => {
                    let mut o = std::io::stdout().lock();
                    serde_json::to_writer_pretty(&mut o, &rep)?;
                    writeln!(o)?;
                }
                ReportFormat::Html => print!("{}", crate::report::contacts::html(&rep)),
                ReportFormat::Csv => output::write_csv(std::io::stdout().lock(), &tables[0])?,
                ReportFormat::Table => output::write_tables(
                    &mut std::io::stdout().lock(),
                    &tables,
                    output::terminal_width(),
                )?,
            }
        }
        Command::Rebuild => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            crate::report::rollup::rebuild(&store).await?;
            println!("report rollups rebuilt from the raw events and sends");
        }
    }
    Ok(if alert {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn print_campaign(r: &CampaignReport, format: ReportFormat, by: Option<By>) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut o, r)?;
            writeln!(o)?;
        }
        ReportFormat::Csv => {
            let t = match by {
                Some(b) => by_table(r, b),
                None => summary_table(r),
            };
            output::write_csv(o, &t)?;
        }
        ReportFormat::Table => {
            let mut tables = vec![match by {
                Some(b) => by_table(r, b),
                None => summary_table(r),
            }];
            if by.is_none() && !r.links.is_empty() {
                tables.push(by_table(r, By::Link));
            }
            output::write_tables(&mut o, &tables, output::terminal_width())?;
        }
        ReportFormat::Html => write!(o, "{}", campaign_html(r, by))?,
    }
    Ok(())
}
