//! `cartero segment ...`: count, sample, list and explain segments. Thin:
//! finds the segment (a name in segments.toml or an ad-hoc `--filter`), calls
//! `crate::segment`, prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{Context, Format};
use crate::config::Config;
use crate::segment::{self, Dialect, Segment, SegmentError};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Count the contacts a segment selects, per contact status.
    #[command(
        after_help = "Examples:\n  cartero segment count spain_vip\n  cartero segment count --filter '\"vip\" in tags and last_open_at > now() - 30d' --format json"
    )]
    Count {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show a random sample of the contacts a segment selects.
    #[command(
        after_help = "Examples:\n  cartero segment sample spain_vip -n 10\n  cartero segment sample --filter 'domain in [\"gmail.com\", \"yahoo.com\"]' --format csv"
    )]
    Sample {
        #[command(flatten)]
        target: Target,
        /// How many contacts to show at most.
        #[arg(short = 'n', long = "limit", default_value_t = 10)]
        n: u32,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List and check the segments defined in the segments file (exit 1 if
    /// any filter has an error).
    #[command(after_help = "Example:\n  cartero segment list --format json")]
    List {
        /// Segments file [default: <project.campaigns_dir>/segments.toml].
        #[arg(long)]
        file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the SQL condition a segment compiles to, with its bound values.
    #[command(after_help = "Example:\n  cartero segment explain spain_vip --dialect postgres")]
    Explain {
        #[command(flatten)]
        target: Target,
        /// SQL dialect [default: that of database.url].
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
    },
}

/// Which segment: a name from the segments file, or an ad-hoc filter.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Segment name in the segments file.
    #[arg(required_unless_present = "filter")]
    name: Option<String>,
    /// An ad-hoc filter instead of a named segment (see docs/SEGMENTS.md).
    #[arg(long, conflicts_with = "name")]
    filter: Option<String>,
    /// Segments file [default: <project.campaigns_dir>/segments.toml].
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DialectArg {
    Sqlite,
    Postgres,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        Cmd::Count { target, format } => {
            let seg = resolve(&cfg, &target)?;
            let store = ctx.store(&cfg).await?;
            let by_status = segment::count_by_status(&store, &seg)
                .await
                .with_context(|| format!("counting segment {}", seg.name))?;
            let keys = crate::store::contacts::attribute_keys(&store).await?;
            store.close().await;
            print_count(&mut out, &seg, &by_status, format)?;
            for w in unknown_attributes(&seg, &keys) {
                eprintln!("warning: {w}");
            }
        }
        Cmd::Sample { target, n, format } => {
            let seg = resolve(&cfg, &target)?;
            let store = ctx.store(&cfg).await?;
            let rows = segment::sample(&store, &seg, i64::from(n))
                .await
                .with_context(|| format!("sampling segment {}", seg.name))?;
            store.close().await;
            print_sample(&mut out, &rows, format)?;
        }
        Cmd::List { file, format } => {
            let path = segments_file(&cfg, file.as_ref());
            let results = segment::check_file(&path).map_err(diagnostic)?;
            let mut segments = Vec::new();
            let mut failed = 0;
            for r in results {
                match r {
                    Ok(s) => segments.push(s),
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {}", e.render());
                    }
                }
            }
            print_list(&mut out, &segments, format)?;
            if failed > 0 {
                out.flush()?;
                anyhow::bail!("{failed} segment(s) in {} have errors", path.display());
            }
        }
        Cmd::Explain { target, dialect } => {
            let seg = resolve(&cfg, &target)?;
            let dialect = match dialect {
                Some(DialectArg::Sqlite) => Dialect::Sqlite,
                Some(DialectArg::Postgres) => Dialect::Postgres,
                None if cfg.database.url.starts_with("postgres") => Dialect::Postgres,
                None => Dialect::Sqlite,
            };
            let (sql, params) = segment::explain(&seg, dialect, crate::domain::time::now_millis());
            writeln!(out, "{sql}")?;
            for (i, p) in params.iter().enumerate() {
                writeln!(out, "  ${} = {p}", i + 1)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn segments_file(cfg: &Config, file: Option<&PathBuf>) -> PathBuf {
    match file {
        Some(f) => f.clone(),
        None => {
            let p = cfg
                .resolve(&cfg.project.campaigns_dir)
                .join("segments.toml");
            // `./campaigns/...` reads worse in messages than `campaigns/...`.
            p.strip_prefix(".").map(PathBuf::from).unwrap_or(p)
        }
    }
}

fn resolve(cfg: &Config, target: &Target) -> anyhow::Result<Segment> {
    if let Some(filter) = &target.filter {
        return Segment::parse("--filter", filter).map_err(diagnostic);
    }
    let name = target.name.as_deref().unwrap_or_default();
    let path = segments_file(cfg, target.file.as_ref());
    segment::find(&path, name).map_err(diagnostic)
}

/// A segment error with the expression underlined, as the top-level error.
fn diagnostic(e: SegmentError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.render())
}

fn print_count(
    out: &mut impl Write,
    seg: &Segment,
    by_status: &[(String, i64)],
    format: Format,
) -> anyhow::Result<()> {
    let total: i64 = by_status.iter().map(|(_, n)| n).sum();
    match format {
        Format::Table => {
            writeln!(out, "segment {}: {total} contacts", seg.name)?;
            let width = by_status.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
            for (status, n) in by_status {
                writeln!(out, "  {status:<width$}  {n:>10}")?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["segment", "status", "count"])?;
            for (status, n) in by_status {
                w.write_record([seg.name.as_str(), status, &n.to_string()])?;
            }
            w.write_record([seg.name.as_str(), "total", &total.to_string()])?;
            w.flush()?;
        }
        Format::Json => {
            let statuses: serde_json::Map<String, serde_json::Value> = by_status
                .iter()
                .map(|(s, n)| (s.clone(), (*n).into()))
                .collect();
            let doc = serde_json::json!({
                "segment": seg.name,
                "filter": seg.source,
                "total": total,
                "by_status": statuses,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}

fn print_sample(
    out: &mut impl Write,
    rows: &[segment::SampleContact],
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let cells: Vec<[String; 5]> = rows
                .iter()
                .map(|r| {
                    [
                        r.id.to_string(),
                        r.email.clone(),
                        r.first_name.clone().unwrap_or_default(),
                        r.last_name.clone().unwrap_or_default(),
                        r.attributes.to_string(),
                    ]
                })
                .collect();
            write_table(
                out,
                &["id", "email", "first_name", "last_name", "attributes"],
                &cells,
            )?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["id", "email", "first_name", "last_name", "attributes"])?;
            for r in rows {
                w.write_record([
                    r.id.to_string(),
                    r.email.clone(),
                    r.first_name.clone().unwrap_or_default(),
                    r.last_name.clone().unwrap_or_default(),
                    r.attributes.to_string(),
                ])?;
            }
            w.flush()?;
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
    }
    Ok(())
}

fn print_list(out: &mut impl Write, segments: &[Segment], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let cells: Vec<[String; 3]> = segments
                .iter()
                .map(|s| {
                    [
                        s.name.clone(),
                        s.description.clone().unwrap_or_default(),
                        s.one_line(),
                    ]
                })
                .collect();
            write_table(out, &["name", "description", "filter"], &cells)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["name", "description", "filter"])?;
            for s in segments {
                w.write_record([
                    s.name.as_str(),
                    s.description.as_deref().unwrap_or(""),
                    s.source.as_str(),
                ])?;
            }
            w.flush()?;
        }
        Format::Json => {
            let doc: Vec<_> = segments
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name,
                        "description": s.description,
                        "filter": s.source,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}

/// Left-aligned columns separated by two spaces, widths in characters.
fn write_table<const N: usize>(
    out: &mut impl Write,
    head: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<&str>| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, head.to_vec())?;
    for row in rows {
        line(out, row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// A warning for each attribute the segment's filter names that no contact
/// has (a misspelt one selects nobody), with the nearest existing name.
pub fn unknown_attributes(
    seg: &crate::segment::Segment,
    keys: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    use crate::render::attributes::{filter_refs, nearest};
    filter_refs(&seg.source)
        .into_iter()
        .filter(|r| !keys.contains(&r.name))
        .map(|r| {
            let hint = nearest(&r.name, keys.iter().map(String::as_str))
                .map(|n| format!(": did you mean `attributes.{n}`?"))
                .unwrap_or_default();
            format!(
                "segment {}, filter line {} column {}: no contact has the attribute `{}`{hint}",
                seg.name, r.line, r.col, r.name
            )
        })
        .collect()
}
