//! `cartero feedback ...`: read bounces, complaints and unsubscribe mails.
//! `parse` classifies files without a database or configuration, so
//! operators can see why a message was read as it was. `run` reads the
//! configured bounce mailbox and applies the policy; `changes` lists the
//! status changes the policy (and operators) made.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Context, Format};
use crate::domain::EmailAddress;
use crate::domain::text::for_terminal_line;
use crate::domain::time::{Millis, now_millis, to_rfc3339};
use crate::feedback::bounce::{self, Record};
use crate::store::status;
use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Classify mail files, Maildirs or mbox files and print one record per
    /// recipient found. Touches no database.
    #[command(
        after_help = "Examples:\n  cartero feedback parse bounce.eml\n  cartero feedback parse ~/Maildir/.Bounces --format json\n  cartero feedback parse /var/mail/bounces"
    )]
    Parse(ParseArgs),
    /// Read the bounce mailbox of `[feedback]` in cartero.toml (Maildir,
    /// mbox or IMAP), record every bounce, complaint, auto-reply and
    /// unsubscribe request, and apply the `[policy]`. Each message is
    /// handled once: processed messages are moved or flagged, a re-run
    /// skips messages already recorded, and a message nothing can be done
    /// with is kept aside with the reason.
    #[command(
        after_help = "Examples:\n  cartero feedback run --dry-run\n  cartero feedback run --format json"
    )]
    Run(RunArgs),
    /// List contact status changes (bounces, complaints, unsubscribes,
    /// hygiene, operator reversals) with their cause.
    #[command(
        after_help = "Examples:\n  cartero feedback changes --since 2026-11-01\n  cartero feedback changes --contact ana@example.com --format csv"
    )]
    Changes(ChangesArgs),
    /// List reports held for review: bounces, complaints and unsubscribe
    /// mails tied to their contact by address alone (anyone can write
    /// those), which changed nothing. Confirm or dismiss each one.
    #[command(
        after_help = "Examples:\n  cartero feedback review\n  cartero feedback review --all --format json"
    )]
    Review(ReviewArgs),
    /// Confirm held reports: the policy is applied as if the report had
    /// carried a valid token (suppression, and for a complaint or
    /// unsubscribe the withdrawal of consent), with you as the actor.
    #[command(
        after_help = "Example:\n  cartero feedback confirm 12 13 --reason \"the customer's postmaster confirmed by phone\""
    )]
    Confirm(DecideArgs),
    /// Dismiss held reports: recorded as dismissed, nothing else changes.
    #[command(
        after_help = "Example:\n  cartero feedback dismiss 14 --reason \"forged: no such report from that ISP\""
    )]
    Dismiss(DecideArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// Also list reports already confirmed or dismissed.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// Ids of held reports, as `feedback review` lists them.
    #[arg(required = true)]
    pub ids: Vec<i64>,
    /// Why: kept with the decision.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who is deciding.
    #[arg(long, default_value = "operator")]
    pub actor: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Read, classify and match everything and report what would change;
    /// write nothing to the database and leave the mailbox as it is.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ChangesArgs {
    /// Only changes at or after this instant: YYYY-MM-DD, RFC 3339, or a
    /// number of days back such as `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this contact's changes.
    #[arg(long)]
    pub contact: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Mail files, Maildir directories (cur/ and new/) or mbox files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format: a table for people, JSON lines for scripts.
    #[arg(long, value_enum, default_value_t = ParseFormat::Table)]
    pub format: ParseFormat,
    /// Bytes of each message examined (head and tail of a longer one);
    /// 0 for no limit.
    #[arg(long, default_value_t = bounce::Limits::DEFAULT.max_bytes)]
    pub max_bytes: usize,
    /// Failed recipients reported per message; 0 for no limit.
    #[arg(long, default_value_t = bounce::Limits::DEFAULT.max_recipients)]
    pub max_recipients: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParseFormat {
    Table,
    Json,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Parse(a) => parse(a),
        Cmd::Run(a) => feedback_run(a, ctx).await,
        Cmd::Changes(a) => changes(a, ctx).await,
        Cmd::Review(a) => review(a, ctx).await,
        Cmd::Confirm(a) => decide(a, true, ctx).await,
        Cmd::Dismiss(a) => decide(a, false, ctx).await,
    }
}

async fn review(args: ReviewArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let holds = crate::store::feedback::list_holds(&store, !args.all).await?;
    store.close().await;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&holds)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([
                "id",
                "held_at",
                "email",
                "kind",
                "evidence",
                "state",
                "source",
                "decided_by",
                "decision_reason",
            ])?;
            for h in &holds {
                w.write_record([
                    h.id.to_string(),
                    to_rfc3339(h.held_at),
                    h.email.clone(),
                    h.kind.clone(),
                    h.evidence.to_string(),
                    h.state.as_str().to_string(),
                    h.source.clone(),
                    h.decided_by.clone().unwrap_or_default(),
                    h.decision_reason.clone().unwrap_or_default(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            println!(
                "{:<6} {:<24} {:<32} {:<11} {:<21} {:<9} SOURCE",
                "ID", "HELD", "EMAIL", "KIND", "EVIDENCE", "STATE"
            );
            for h in &holds {
                println!(
                    "{:<6} {:<24} {:<32} {:<11} {:<21} {:<9} {}",
                    h.id,
                    to_rfc3339(h.held_at),
                    h.email,
                    h.kind,
                    h.evidence.as_str(),
                    h.state.as_str(),
                    h.source
                );
            }
            if holds.is_empty() {
                println!("nothing held");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(args: DecideArgs, confirm: bool, ctx: &Context) -> anyhow::Result<ExitCode> {
    use crate::feedback::review;
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let mut failed = false;
    for id in args.ids {
        let outcome = if confirm {
            review::confirm(&store, &cfg.policy, id, &args.actor, reason, now_millis())
                .await
                .map(|c| {
                    let status = c
                        .status
                        .map(|(f, t)| format!("{f} -> {t}"))
                        .unwrap_or_else(|| "status unchanged".into());
                    let consent = if c.consent_withdrawn {
                        ", consent withdrawn"
                    } else {
                        ""
                    };
                    format!(
                        "{id}: confirmed {} {}: {status}{consent}",
                        c.hold.kind, c.hold.email
                    )
                })
        } else {
            review::dismiss(&store, id, &args.actor, reason, now_millis())
                .await
                .map(|h| format!("{id}: dismissed {} {}", h.kind, h.email))
        };
        match outcome {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    store.close().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn feedback_run(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let bar = ctx.progress().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} messages {per_sec} {msg}")
                .expect("static template"),
        );
        b
    });
    let verb = if args.dry_run {
        "would change"
    } else {
        "changed"
    };
    let format = args.format;
    let report = crate::feedback::poll::poll_once(
        &store,
        &cfg,
        args.dry_run,
        |changes| {
            for c in changes {
                if format != Format::Json {
                    let line = format!(
                        "{verb}: {} {} -> {} ({})",
                        for_terminal_line(c.recipient.as_deref().unwrap_or("?")),
                        c.from,
                        c.to,
                        c.rule
                    );
                    match &bar {
                        Some(b) => b.println(line),
                        None => println!("{line}"),
                    }
                }
            }
            if let Some(b) = &bar {
                b.inc(1);
            }
        },
        || false,
    )
    .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (summary, changes) = (report.summary, report.changes);
    store.close().await;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dry_run": args.dry_run,
                "summary": summary,
                "changes": changes,
            }))?
        ),
        Format::Table | Format::Csv => {
            println!("messages read        {:>7}", summary.messages);
            println!("duplicates skipped   {:>7}", summary.duplicates);
            println!("hard bounces         {:>7}", summary.bounces_hard);
            println!("soft bounces         {:>7}", summary.bounces_soft);
            println!("complaints           {:>7}", summary.complaints);
            println!("auto-replies         {:>7}", summary.autoreplies);
            println!("unsubscribes         {:>7}", summary.unsubscribes);
            println!("unmatched recipients {:>7}", summary.unmatched);
            println!("kept aside           {:>7}", summary.kept_aside);
            println!("status changes       {:>7}", summary.status_changes);
            println!("consent withdrawals  {:>7}", summary.consent_withdrawals);
            println!("held for review      {:>7}", summary.held);
            if args.dry_run {
                println!("dry run: nothing was written and the mailbox is unchanged");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since`: YYYY-MM-DD (UTC midnight), RFC 3339, or `Nd` days back.
fn parse_since(s: &str, now: Millis) -> anyhow::Result<Millis> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Some(days) = s.strip_suffix('d')
        && let Ok(n) = days.parse::<i64>()
    {
        return Ok(now - n * 24 * 3600 * 1000);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        let t = d.midnight().assume_utc();
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    anyhow::bail!(
        "--since {s:?}: expected YYYY-MM-DD, an RFC 3339 instant or a number of days like 7d"
    )
}

async fn changes(args: ChangesArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now_millis()))
        .transpose()?;
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let contact_id = match &args.contact {
        Some(email) => {
            let normalized = EmailAddress::parse(email.trim()).ok();
            let found =
                status::find_contact(&store, normalized.as_ref().map(|a| a.as_str()), email)
                    .await?;
            let Some((id, _)) = found else {
                anyhow::bail!("no contact with address {email}");
            };
            Some(id)
        }
        None => None,
    };
    let rows = status::list(&store, contact_id, since).await?;
    store.close().await;
    print_changes(&rows, args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints status changes as a table, CSV or JSON.
pub fn print_changes(rows: &[status::StoredChange], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record([
                "occurred_at",
                "email",
                "from",
                "to",
                "cause",
                "rule",
                "event_id",
                "actor",
                "reason",
            ])?;
            for r in rows {
                w.write_record([
                    to_rfc3339(r.occurred_at),
                    r.email.clone(),
                    r.from_status.clone(),
                    r.to_status.clone(),
                    r.cause.clone(),
                    r.rule.clone().unwrap_or_default(),
                    r.event_id.map(|e| e.to_string()).unwrap_or_default(),
                    r.actor.clone(),
                    r.reason.clone().unwrap_or_default(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            println!(
                "{:<24} {:<32} {:<12} {:<12} {:<11} {:<18} {:<9} REASON",
                "WHEN", "EMAIL", "FROM", "TO", "CAUSE", "RULE", "ACTOR"
            );
            for r in rows {
                println!(
                    "{:<24} {:<32} {:<12} {:<12} {:<11} {:<18} {:<9} {}",
                    to_rfc3339(r.occurred_at),
                    for_terminal_line(&r.email),
                    r.from_status,
                    r.to_status,
                    r.cause,
                    r.rule.as_deref().unwrap_or("-"),
                    for_terminal_line(&r.actor),
                    for_terminal_line(r.reason.as_deref().unwrap_or(""))
                );
            }
        }
    }
    Ok(())
}

/// One message to classify and the name it is reported under.
struct Item {
    name: String,
    raw: Vec<u8>,
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let unlimited = |n: usize| if n == 0 { usize::MAX } else { n };
    let limits = bounce::Limits {
        max_bytes: unlimited(args.max_bytes),
        max_recipients: unlimited(args.max_recipients),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.format == ParseFormat::Table {
        writeln!(
            out,
            "{:<40} {:<36} {:<11} {:<15} {:<7} DIAGNOSTIC",
            "FILE", "RECIPIENT", "KIND", "REASON", "STATUS"
        )?;
    }
    for path in &args.paths {
        let items = read_path(path)?;
        for item in items {
            let c = bounce::classify_with(&item.raw, &limits);
            if c.cut.bytes > 0 {
                eprintln!(
                    "{}: {} bytes in the middle not examined (--max-bytes {})",
                    item.name, c.cut.bytes, args.max_bytes
                );
            }
            if c.cut.recipients {
                eprintln!(
                    "{}: recipients beyond the first {} not reported (--max-recipients)",
                    item.name, args.max_recipients
                );
            }
            for r in &c.records {
                match args.format {
                    ParseFormat::Json => {
                        serde_json::to_writer(&mut out, &json_record(&item.name, r))?;
                        out.write_all(b"\n")?;
                    }
                    ParseFormat::Table => write_row(&mut out, &item.name, r)?,
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn json_record(file: &str, r: &Record) -> serde_json::Value {
    serde_json::json!({
        "file": file,
        "recipient": r.recipient,
        "kind": r.kind.as_str(),
        "reason": r.reason.as_str(),
        "status": r.status,
        "diagnostic": r.diagnostic,
        "remote_mta": r.remote_mta,
        "action": r.action,
        "reply_code": r.reply_code,
        "feedback_type": r.feedback_type,
    })
}

fn write_row(out: &mut impl Write, file: &str, r: &Record) -> std::io::Result<()> {
    let mut diag = r
        .diagnostic
        .clone()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if diag.chars().count() > 80 {
        diag = diag.chars().take(77).collect::<String>() + "...";
    }
    writeln!(
        out,
        "{:<40} {:<36} {:<11} {:<15} {:<7} {}",
        for_terminal_line(file),
        for_terminal_line(r.recipient.as_deref().unwrap_or("-")),
        r.kind.as_str(),
        r.reason.as_str(),
        for_terminal_line(r.status.as_deref().unwrap_or("-")),
        for_terminal_line(&diag)
    )
}

/// A file, a Maildir (its cur/ and new/), or an mbox (first line "From ").
fn read_path(path: &Path) -> anyhow::Result<Vec<Item>> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        let sub: Vec<PathBuf> = ["cur", "new"]
            .iter()
            .map(|d| path.join(d))
            .filter(|p| p.is_dir())
            .collect();
        let dirs = if sub.is_empty() {
            vec![path.to_path_buf()]
        } else {
            sub
        };
        for d in dirs {
            let entries = std::fs::read_dir(&d)
                .with_context(|| format!("cannot read directory {}", d.display()))?;
            for e in entries {
                let e = e.with_context(|| format!("cannot read directory {}", d.display()))?;
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    files.push(e.path());
                }
            }
        }
        files.sort();
        let mut items = Vec::with_capacity(files.len());
        for f in files {
            let raw = std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
            items.push(Item {
                name: f.display().to_string(),
                raw,
            });
        }
        return Ok(items);
    }
    let raw = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    if raw.starts_with(b"From ") {
        // An mbox written with CR or CRLF line ends splits like an LF one.
        let msgs = split_mbox(&bounce::normalise_line_ends(&raw));
        if msgs.len() == 1 {
            return Ok(msgs
                .into_iter()
                .map(|raw| Item {
                    name: shown.clone(),
                    raw,
                })
                .collect());
        }
        if msgs.len() > 1 {
            return Ok(msgs
                .into_iter()
                .enumerate()
                .map(|(i, m)| Item {
                    name: format!("{shown}#{}", i + 1),
                    raw: m,
                })
                .collect());
        }
    }
    Ok(vec![Item { name: shown, raw }])
}

/// Split an mbox (RFC 4155) at lines starting "From " after a blank line,
/// un-escaping ">From " lines (mboxrd).
fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") && prev_blank {
            if let Some(m) = cur.take() {
                msgs.push(m);
            }
            cur = Some(Vec::new());
            prev_blank = false;
            continue;
        }
        let body = cur.get_or_insert_with(Vec::new);
        let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        prev_blank = trimmed.is_empty();
        let unescaped = if line.starts_with(b">")
            && line
                .iter()
                .skip_while(|&&b| b == b'>')
                .take(5)
                .eq(b"From ".iter())
        {
            &line[1..]
        } else {
            line
        };
        body.extend_from_slice(unescaped);
    }
    if let Some(m) = cur {
        msgs.push(m);
    }
    msgs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_at_from_lines_and_unescapes() {
        let m = split_mbox(b"From a@b Mon Jan 1 00:00:00 2024\nSubject: 1\n\n>From here\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: 2\n\nx\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], b"Subject: 1\n\nFrom here\n\n");
        assert_eq!(m[1], b"Subject: 2\n\nx\n");
    }
}
