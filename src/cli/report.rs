//! `cartero report ...`: campaign figures, KPIs, the contact database over
//! time, and rebuilding the rollups. The figures come from `report`; this
//! only chooses the tables and the format.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use super::Context;
use crate::report::campaign::{CampaignReport, Delivery};
use crate::report::output::{self, Table, pct};

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
                ReportFormat::Html => {
                    let charts = crate::report::kpis::charts(&rep);
                    print!("{}", output::html_page("KPIs", &charts, &tables));
                }
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
                ReportFormat::Html => {
                    let charts = crate::report::contacts::charts(&rep);
                    print!("{}", output::html_page("Contacts", &charts, &tables));
                }
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

fn n(v: i64) -> String {
    v.to_string()
}

fn delivery_table(
    title: &str,
    key: &str,
    rows: &std::collections::BTreeMap<String, Delivery>,
) -> Table {
    let mut t = Table::new(
        title,
        &[
            key,
            "recipients",
            "sent",
            "deferred",
            "failed",
            "skipped",
            "bounce_hard",
            "bounce_soft",
            "complaints",
            "unsubscribes",
            "bounce_rate",
            "complaint_rate",
        ],
    );
    let mut sorted: Vec<_> = rows.iter().collect();
    sorted.sort_by(|a, b| b.1.recipients.cmp(&a.1.recipients).then(a.0.cmp(b.0)));
    for (k, d) in sorted {
        t.row(vec![
            k.clone(),
            n(d.recipients),
            n(d.sent),
            n(d.deferred),
            n(d.failed),
            n(d.skipped),
            n(d.bounce_hard),
            n(d.bounce_soft),
            n(d.complaints),
            n(d.unsubscribes),
            pct(crate::report::rate(d.bounce_hard + d.bounce_soft, d.sent)),
            pct(crate::report::rate(d.complaints, d.sent)),
        ]);
    }
    t
}

/// The summary: one metric a row.
pub fn summary_table(r: &CampaignReport) -> Table {
    let mut t = Table::new(
        &format!("Campaign {} ({})", r.name, r.slug),
        &["metric", "value"],
    );
    let mut add = |k: &str, v: String| t.row(vec![k.into(), v]);
    add("recipients", n(r.recipients));
    add("skipped", n(r.skipped));
    for (reason, c) in &r.skipped_by_reason {
        add(&format!("skipped: {reason}"), n(*c));
    }
    add("pending", n(r.pending));
    add("sent", n(r.sent));
    add("delivered", n(r.delivered));
    add("deferred", n(r.deferred));
    add("failed", n(r.failed));
    add("bounced", n(r.bounced));
    add("bounced hard", n(r.bounced_hard));
    add("bounced soft", n(r.bounced_soft));
    for (reason, c) in &r.bounce_reasons {
        add(&format!("bounce events {reason}"), n(*c));
    }
    add("opens (events, human)", n(r.opens.total_human));
    add("opens (events, machine)", n(r.opens.total_machine));
    add("unique opens", n(r.opens.unique));
    add("unique opens (human)", n(r.opens.unique_human));
    add("unique opens (machine)", n(r.opens.unique_machine));
    add("clicks (events, human)", n(r.clicks.total_human));
    add("clicks (events, scanner)", n(r.clicks.total_machine));
    add("unique clicks", n(r.clicks.unique));
    add("unique clicks (human)", n(r.clicks.unique_human));
    add("unique clicks (scanner)", n(r.clicks.unique_machine));
    add("open rate", pct(r.open_rate));
    add("click-through rate", pct(r.click_through_rate));
    add("click-to-open rate", pct(r.click_to_open_rate));
    add("unsubscribes", n(r.unsubscribes));
    add("unsubscribe rate", pct(r.unsubscribe_rate));
    add("complaints", n(r.complaints));
    add("complaint rate", pct(r.complaint_rate));
    add("bounce rate", pct(r.bounce_rate));
    add("conversions", n(r.conversions.conversions));
    add("conversion rate", pct(r.conversion_rate));
    let cur = r.conversions.currency.clone().unwrap_or_default();
    add(
        "revenue",
        format!("{:.2} {cur}", r.conversions.revenue_minor as f64 / 100.0)
            .trim()
            .to_string(),
    );
    add(
        "revenue per recipient",
        r.revenue_per_recipient_minor
            .map(|v| format!("{:.4} {cur}", v / 100.0).trim().to_string())
            .unwrap_or_else(|| "-".into()),
    );
    add(
        "return on cost",
        r.return_on_cost
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "- (no cost configured)".into()),
    );
    t
}

pub fn by_table(r: &CampaignReport, by: By) -> Table {
    match by {
        By::Domain => delivery_table("By recipient domain", "domain", &r.by_domain),
        By::Provider => delivery_table("By mailbox provider", "provider", &r.by_provider),
        By::Link => {
            let mut t = Table::new(
                "Clicks per link",
                &[
                    "url",
                    "unique_human",
                    "clicks_human",
                    "unique_scanner",
                    "clicks_scanner",
                ],
            );
            for l in &r.links {
                t.row(vec![
                    l.url.clone(),
                    n(l.unique_human),
                    n(l.clicks_human),
                    n(l.unique_machine),
                    n(l.clicks_machine),
                ]);
            }
            t
        }
        By::Hour => {
            let mut t = Table::new(
                "Opens and clicks by hour after the send",
                &[
                    "hour",
                    "opens_human",
                    "opens_machine",
                    "clicks_human",
                    "clicks_scanner",
                ],
            );
            for p in &r.curve {
                t.row(vec![
                    n(p.hour),
                    n(p.opens_human),
                    n(p.opens_machine),
                    n(p.clicks_human),
                    n(p.clicks_machine),
                ]);
            }
            t
        }
        By::Day | By::Segment | By::Variant => {
            let kinds: std::collections::BTreeSet<&String> =
                r.by_day.values().flat_map(|m| m.keys()).collect();
            let mut cols = vec!["day"];
            cols.extend(kinds.iter().map(|k| k.as_str()));
            let mut t = Table::new("Events by day (UTC)", &cols);
            for (day, m) in &r.by_day {
                let mut row = vec![day.clone()];
                row.extend(kinds.iter().map(|k| n(m.get(*k).copied().unwrap_or(0))));
                t.row(row);
            }
            t
        }
    }
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
        ReportFormat::Html => {
            let mut tables = vec![summary_table(r)];
            for b in [By::Provider, By::Domain, By::Link, By::Hour, By::Day] {
                if by.is_none() || by == Some(b) {
                    tables.push(by_table(r, b));
                }
            }
            let labels: Vec<String> = r.curve.iter().map(|p| format!("+{}h", p.hour)).collect();
            let series = vec![
                (
                    "opens (human)".to_string(),
                    r.curve.iter().map(|p| p.opens_human as f64).collect(),
                ),
                (
                    "opens (machine)".to_string(),
                    r.curve.iter().map(|p| p.opens_machine as f64).collect(),
                ),
                (
                    "clicks (human)".to_string(),
                    r.curve.iter().map(|p| p.clicks_human as f64).collect(),
                ),
                (
                    "clicks (scanner)".to_string(),
                    r.curve.iter().map(|p| p.clicks_machine as f64).collect(),
                ),
            ];
            let funnel = vec![
                ("recipients".to_string(), r.recipients as f64),
                ("sent".to_string(), r.sent as f64),
                ("delivered".to_string(), r.delivered as f64),
                ("opened".to_string(), r.opens.unique_human as f64),
                ("clicked".to_string(), r.clicks.unique_human as f64),
                ("converted".to_string(), r.conversions.conversions as f64),
            ];
            let charts = vec![
                output::line_chart(
                    "Opens and clicks over the hours after the send",
                    &labels,
                    &series,
                ),
                output::bar_chart("From sent to converted", &funnel),
            ];
            write!(
                o,
                "{}",
                output::html_page(&format!("Campaign {}", r.name), &charts, &tables)
            )?;
        }
    }
    Ok(())
}
