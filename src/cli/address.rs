//! `cartero address check`: judge addresses with the same parser and flags
//! the importer uses, without a database.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context as _;

use super::{Context, Format};
use crate::domain::{AddressError, EmailAddress};
use crate::hygiene::flags::FlagChecker;
use crate::hygiene::mx::MxChecker;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Check addresses: verdict, normalised and ASCII forms, risk flags.
    ///
    /// Exit status: 0 when every address is valid, 1 when any is invalid
    /// (or on an error), 2 on bad usage.
    #[command(after_help = "Examples:\n  \
        cartero address check maria@gmial.com postmaster@example.org\n  \
        cut -d, -f1 contacts.csv | cartero address check - --format json\n  \
        python3 -c 'import json; print(json.dumps(\"a\\nb@x.org\"))' | cartero address check --json-input")]
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Addresses to check; `-` (or none, with stdin not a terminal) reads one
    /// per line from stdin, removing only the line terminator (LF or CRLF).
    pub addresses: Vec<String>,
    /// Output format: one line per address (json: one object a line).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Read stdin as JSON lines: each a JSON string, or an object with an
    /// "address" field. Use it for addresses holding CR, LF or NUL.
    #[arg(long)]
    pub json_input: bool,
    /// Also ask the DNS whether each domain takes mail (RFC 5321 §5.1, RFC
    /// 7505) and add the answer as a flag `mx:<verdict>`; name servers and
    /// timeout come from [dns] in cartero.toml.
    #[arg(long)]
    pub check_mx: bool,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Check(a) => check(a, ctx).await,
    }
}

/// One address's result, in the shape `--format json` prints.
#[derive(Debug, serde::Serialize)]
struct Report<'a> {
    address: &'a str,
    verdict: &'static str,
    normalized: Option<&'a str>,
    ascii: Option<&'a str>,
    flags: Vec<String>,
    reason: Option<String>,
}

async fn check(args: CheckArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let checker = match &cfg.hygiene.disposable_list {
        Some(p) => {
            let path = if p.is_relative() {
                cfg.base_dir.join(p)
            } else {
                p.clone()
            };
            FlagChecker::with_disposable_file(&path)?
        }
        None => FlagChecker::builtin(),
    };

    let from_stdin = args.json_input
        || args.addresses.iter().any(|a| a == "-")
        || (args.addresses.is_empty() && !std::io::stdin().is_terminal());
    let inputs: Vec<String> = if from_stdin {
        read_stdin(args.json_input)?
    } else {
        args.addresses
    };
    if inputs.is_empty() {
        anyhow::bail!("no addresses given: pass them as arguments or on stdin (`-`)");
    }

    let parsed: Vec<Result<EmailAddress, AddressError>> =
        inputs.iter().map(|i| EmailAddress::parse(i)).collect();
    // One DNS check per distinct domain, all before printing, so the table
    // comes out in input order.
    let mx: HashMap<String, &'static str> = if args.check_mx {
        let resolver =
            MxChecker::from_config(&cfg.dns).context("--check-mx needs a usable [dns] section")?;
        let domains: Vec<String> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|a| a.ascii_domain().into_owned())
            .collect();
        resolver
            .check_many(domains)
            .await
            .into_iter()
            .map(|(d, v)| (d, v.name()))
            .collect()
    } else {
        HashMap::new()
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut csv = (args.format == Format::Csv).then(|| csv::Writer::from_writer(Vec::new()));
    if let Some(w) = csv.as_mut() {
        w.write_record([
            "address",
            "verdict",
            "normalized",
            "ascii",
            "flags",
            "reason",
        ])?;
    }
    if args.format == Format::Table && std::io::stdout().is_terminal() {
        writeln!(
            out,
            "{:<8} {:<40} {:<24} REASON",
            "VERDICT", "ADDRESS", "FLAGS"
        )?;
    }
    let mut any_invalid = false;
    for (input, parsed) in inputs.iter().zip(&parsed) {
        let (verdict, flags, reason) = match parsed {
            Ok(addr) => {
                let mut flags = checker.check(addr).labels();
                // UTS #39: a homoglyph domain (Latin with a Cyrillic `а`).
                if crate::hygiene::flags::is_mixed_script(addr.domain()) {
                    flags.push("mixed-script".into());
                }
                if let Some(v) = mx.get(addr.ascii_domain().as_ref()) {
                    flags.push(format!("mx:{v}"));
                }
                ("valid", flags, None)
            }
            Err(e) => {
                any_invalid = true;
                ("invalid", Vec::new(), Some(e.to_string()))
            }
        };
        let report = Report {
            address: input,
            verdict,
            normalized: parsed.as_ref().ok().map(|a| a.as_str()),
            ascii: parsed.as_ref().ok().and_then(|a| a.ascii()),
            flags,
            reason,
        };
        match args.format {
            Format::Json => {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            }
            Format::Csv => {
                if let Some(w) = csv.as_mut() {
                    w.write_record([
                        report.address,
                        report.verdict,
                        report.normalized.unwrap_or(""),
                        report.ascii.unwrap_or(""),
                        &report.flags.join(" "),
                        report.reason.as_deref().unwrap_or(""),
                    ])?;
                }
            }
            Format::Table => {
                // The input may hold control characters: show it escaped.
                let shown = report
                    .normalized
                    .map_or_else(|| format!("{:?}", report.address), |n| n.to_string());
                writeln!(
                    out,
                    "{:<8} {:<40} {:<24} {}",
                    report.verdict,
                    shown,
                    report.flags.join(","),
                    report.reason.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    if let Some(mut w) = csv {
        w.flush()?;
        out.write_all(w.get_ref())?;
    }
    out.flush()?;
    Ok(if any_invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Lines of stdin exactly as given, less the terminator; with `json`, each
/// line decoded from JSON.
fn read_stdin(json: bool) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        // Strict, as the importer is: a lossy decode turned bad bytes into
        // U+FFFD and called the result valid.
        let line = String::from_utf8(std::mem::take(&mut buf)).map_err(|e| {
            anyhow::anyhow!(
                "stdin line {line_no}: not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to() + 1
            )
        })?;
        if !json {
            out.push(line);
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {line_no}: not JSON"))?;
        match value {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Object(mut m) => match m.remove("address") {
                Some(serde_json::Value::String(s)) => out.push(s),
                _ => anyhow::bail!("stdin line {line_no}: object without a string \"address\""),
            },
            _ => anyhow::bail!("stdin line {line_no}: expected a JSON string or object"),
        }
    }
    Ok(out)
}
