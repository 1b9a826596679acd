//! `cartero feedback ...`: read bounces, complaints and unsubscribe mails.
//! `parse` classifies files without a database or configuration, so
//! operators can see why a message was read as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::feedback::bounce::{self, Record};

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
}

#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Mail files, Maildir directories (cur/ and new/) or mbox files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format: a table for people, JSON lines for scripts.
    #[arg(long, value_enum, default_value_t = ParseFormat::Table)]
    pub format: ParseFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParseFormat {
    Table,
    Json,
}

pub async fn run(args: Args, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Parse(a) => parse(a),
    }
}

/// One message to classify and the name it is reported under.
struct Item {
    name: String,
    raw: Vec<u8>,
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
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
            let c = bounce::classify(&item.raw);
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
        file,
        r.recipient.as_deref().unwrap_or("-"),
        r.kind.as_str(),
        r.reason.as_str(),
        r.status.as_deref().unwrap_or("-"),
        diag
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
