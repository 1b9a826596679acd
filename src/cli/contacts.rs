//! `cartero contacts ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::output::{Record, Table};
use super::{Context, Format};
use crate::consent::{self as consent_stage, Reinstated};
use crate::contacts::ImportOptions;
use crate::contacts::import::{ColumnType, ImportSummary, Mapping};
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
    /// Import contacts from a CSV export (or a .zip holding one CSV).
    ///
    /// The tool the file came from (Mailchimp, listmonk, HubSpot, Brevo, or a
    /// generic CSV) is detected from the header or named with --from; its
    /// status columns decide what happens to each row: unsubscribed,
    /// cleaned, blocklisted, bounced and complained rows are stored
    /// suppressed and never subscribed, and a contact cartero holds
    /// suppressed is never re-subscribed. The source's opt-in and
    /// confirmation times and IPs become the consent evidence. Encoding
    /// (UTF-8, UTF-16, Windows-1252) and delimiter (comma, semicolon, tab)
    /// are detected. Contacts are matched case-insensitively, so importing
    /// the same file twice changes nothing. Rejected rows go to
    /// FILE.rejects.csv with their row, line and reason. See docs/IMPORT.md.
    ///
    /// Addresses erased on request (the suppression list) are refused and counted.
    ///
    /// Exit status: 0 all rows imported, 3 imported with rejected or refused rows,
    /// 1 error or no usable row (nothing written).
    #[command(after_help = "Examples:\n  \
        cartero contacts import contacts.csv --list newsletter --consent-source \"signup form 2025\"\n  \
        cartero contacts import subscribed_members_export.csv --from mailchimp --list news --consent-source \"Mailchimp audience News\"\n  \
        cartero contacts import export.csv --map \"E-Mail=email\" --type zip=text --skip Notes --dry-run")]
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
        /// The tool the file was exported from: mailchimp, listmonk, hubspot,
        /// brevo or generic (default: detected from the header).
        #[arg(long, value_parser = crate::contacts::preset::Preset::parse)]
        from: Option<crate::contacts::preset::Preset>,
        /// Field delimiter: comma, semicolon, tab or pipe (default: detected).
        #[arg(long, value_parser = crate::contacts::source::parse_delimiter)]
        delimiter: Option<u8>,
        /// Text encoding: utf-8, utf-16le, utf-16be or windows-1252 (default: detected).
        #[arg(long, value_parser = crate::contacts::source::Encoding::parse)]
        encoding: Option<crate::contacts::source::Encoding>,
        /// Map a column to a field or attribute name: "COLUMN=FIELD" (repeatable).
        #[arg(long = "map", value_parser = Mapping::parse_map)]
        map: Vec<(String, String)>,
        /// Declare a column's type: "COLUMN=text|integer|number|boolean|date|datetime" (repeatable).
        #[arg(long = "type", value_parser = Mapping::parse_type)]
        types: Vec<(String, ColumnType)>,
        /// Ignore a column, by name or 1-based number (repeatable).
        #[arg(long)]
        skip: Vec<String>,
        /// A TOML mapping file (skip = [...], [columns], [types]); flags add to it.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Put contacts held suppressed (unsubscribed, bounced, complained,
        /// sunset; never erased) back to active when their row is active,
        /// logged in their status history with this reason. Without it an
        /// import never re-subscribes anyone.
        #[arg(long, value_name = "REASON")]
        override_suppression: Option<String>,
        /// Where to write rejected rows (default: FILE.rejects.csv; on a dry
        /// run, nowhere: they are printed).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Check everything and report, but write nothing at all.
        #[arg(long)]
        dry_run: bool,
        /// Abort, writing nothing, if any row is rejected.
        #[arg(long)]
        strict: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List contacts whose addresses differ only in letter case (stored
    /// before imports matched case-insensitively), and with --merge merge
    /// each group into its oldest contact, keeping both consent histories.
    #[command(
        after_help = "Example:\n  cartero contacts duplicates\n  cartero contacts duplicates --merge --reason \"one person, case variants\""
    )]
    Duplicates {
        /// Merge every group into its oldest contact.
        #[arg(long, requires = "reason")]
        merge: bool,
        /// Why: kept with each merge.
        #[arg(long)]
        reason: Option<String>,
        /// Who is doing it.
        #[arg(long, default_value = "operator")]
        actor: String,
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
                // A field's new values (names, addresses) are not a summary.
                if r.what.starts_with("field:") {
                    "-".into()
                } else {
                    r.new_value.clone().unwrap_or_else(|| "-".into())
                },
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
            from,
            delimiter,
            encoding,
            map,
            types,
            skip,
            mapping,
            override_suppression,
            rejects,
            dry_run,
            strict,
            format,
        } => {
            if consent_source
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                anyhow::bail!(crate::contacts::ImportError::EmptyConsentSource);
            }
            if override_suppression
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                anyhow::bail!(
                    "--override-suppression needs a reason: it is kept in each contact's status history"
                );
            }
            let mut m = match &mapping {
                Some(p) => Mapping::from_toml(p).map_err(anyhow::Error::msg)?,
                None => Mapping::default(),
            };
            m.extend(Mapping { map, types, skip });
            let opts = ImportOptions {
                list,
                consent_source,
                consent_text_version,
                rejects_path: rejects,
                dry_run,
                strict,
                from,
                delimiter,
                encoding,
                mapping: m,
                override_suppression,
                flags: None,
            };
            let cfg = ctx.config()?;
            if let Some(path) = &cfg.hygiene.disposable_list {
                let checker = crate::hygiene::flags::FlagChecker::with_disposable_file(path)?;
                return import(ctx, &cfg, file, opts, format, Some(checker)).await;
            }
            import(ctx, &cfg, file, opts, format, None).await
        }
        Cmd::Duplicates {
            merge,
            reason,
            actor,
            format,
        } => {
            let cfg = ctx.config()?;
            let store = ctx.store(&cfg).await?;
            let groups = contacts::case_duplicates(&store).await?;
            let mut merged = 0;
            if merge {
                let reason = reason.unwrap_or_default();
                if reason.trim().is_empty() {
                    anyhow::bail!("--reason must say why the contacts are merged");
                }
                for g in &groups {
                    merged += contacts::merge_group(&store, g, &actor, reason.trim(), now_millis())
                        .await?;
                }
            }
            store.close().await;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "groups": groups, "merged": merged })
                    )?
                ),
                Format::Csv => {
                    let mut t = Table::new(&[
                        ("key", "KEY"),
                        ("action", "ACTION"),
                        ("id", "ID"),
                        ("status", "STATUS"),
                        ("email", "EMAIL"),
                    ]);
                    for g in &groups {
                        for (i, c) in g.contacts.iter().enumerate() {
                            let action = match (i, merge) {
                                (0, _) => "keep",
                                (_, true) => "merged",
                                (_, false) => "merge",
                            };
                            t.row(vec![
                                g.key.clone().into(),
                                action.into(),
                                c.id.to_string().into(),
                                c.status.clone().into(),
                                c.email.clone().into(),
                            ]);
                        }
                    }
                    t.write(format, &mut std::io::stdout().lock())?;
                }
                Format::Table => {
                    for g in &groups {
                        println!("{}", g.key);
                        for (i, c) in g.contacts.iter().enumerate() {
                            println!(
                                "  {} id {:<8} {:<12} {}",
                                if i == 0 { "keep " } else { "merge" },
                                c.id,
                                c.status,
                                c.email
                            );
                        }
                    }
                    println!("{} group(s) of case variants", groups.len());
                    if merge {
                        println!("{merged} contact(s) merged into the oldest of their group");
                    } else if !groups.is_empty() {
                        println!("merge them with --merge --reason \"...\"");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show { email, format } => show(ctx, email, format).await,
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

/// `contacts show`: the contact's fields, its lists by name, and its
/// consent history.
async fn show(ctx: &Context, email: String, format: Format) -> anyhow::Result<ExitCode> {
    if format == Format::Csv {
        anyhow::bail!(
            "contacts show --format csv: a contact with its lists and consent history is not one \
             table; use --format json (or `contacts export` for everything held on the contact)"
        );
    }
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    let addr = EmailAddress::parse(email.trim())
        .map_err(|e| anyhow::anyhow!("{email:?} is not a valid address: {e}"))?;
    let Some(c) = contacts::find_by_email(&store, &addr).await? else {
        anyhow::bail!("no contact with address {addr}");
    };
    let ledger = consent::entries_for_contact(&store, c.id).await?;
    let names = contacts::list_names_by_id(&store).await?;
    let lists = contacts::lists_of(&store, c.id).await?;
    store.close().await;
    let list_name = |id: Option<i64>| match id {
        None => "all lists".to_string(),
        Some(id) => names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("list {id}")),
    };
    let mut history = Table::new(&[
        ("occurred_at", "WHEN"),
        ("action", "ACTION"),
        ("list", "LIST"),
        ("source", "SOURCE"),
        ("method", "METHOD"),
    ]);
    for e in &ledger {
        history.row(vec![
            to_rfc3339(e.occurred_at).into(),
            e.action.clone().into(),
            list_name(e.list_id).into(),
            e.source.clone().into(),
            e.method.clone().into(),
        ]);
    }
    let on_lists = lists
        .iter()
        .map(|(name, subscribed)| {
            format!(
                "{name} ({})",
                if *subscribed {
                    "subscribed"
                } else {
                    "unsubscribed"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if format == Format::Json {
        let consent: Vec<serde_json::Value> = ledger
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("list".into(), list_name(e.list_id).into());
                }
                v
            })
            .collect();
        let lists: Vec<serde_json::Value> = lists
            .iter()
            .map(|(name, subscribed)| serde_json::json!({ "name": name, "subscribed": subscribed }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "contact": c, "lists": lists, "consent": consent })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let name = [c.first_name.as_deref(), c.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = std::io::stdout().lock();
    Record::new()
        .field("email", "email", c.email.clone())
        .field("name", "name", name)
        .field("status", "status", c.status.clone())
        .field("lists", "lists", on_lists)
        .field("tags", "tags", c.tags.join(", "))
        .field("attributes", "attributes", c.attributes.to_string())
        .write(format, &mut out)?;
    use std::io::Write as _;
    writeln!(out, "consent history:")?;
    if history.is_empty() {
        writeln!(out, "  none")?;
    } else {
        history.write(format, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
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
         status reasons {}, sign-ups {}, journey steps {}); the address is on the suppression list \
         (erasure {})",
        done.ledger_entries,
        done.tags,
        done.flags,
        done.sends,
        done.events,
        done.status_reasons,
        done.signups,
        done.journey_actions,
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

async fn import(
    ctx: &Context,
    cfg: &crate::config::Config,
    file: PathBuf,
    mut opts: ImportOptions,
    format: Format,
    checker: Option<crate::hygiene::flags::FlagChecker>,
) -> anyhow::Result<ExitCode> {
    opts.flags = checker.map(std::sync::Arc::new);
    let prepared = crate::contacts::import::prepare(&file, &opts)?;
    let no_usable = !prepared.has_usable_rows;
    // Nothing may be created for a dry run or a file with no usable row:
    // without a database yet, an in-memory one gives the same answers.
    let store = if (opts.dry_run || no_usable) && !ctx.database_exists(cfg) {
        crate::store::Store::open("sqlite::memory:").await?
    } else {
        ctx.store(cfg).await?
    };
    if no_usable {
        opts.dry_run = true;
    }
    let size = prepared.source_len().unwrap_or(0);
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
            b.set_position(bytes.min(size));
        }
    };
    let summary = crate::contacts::import::run(&store, prepared, &opts, &report).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    store.close().await;
    match format {
        // JSON carries everything: the counts, the rejections, the flagged
        // addresses, how the file was read.
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        // CSV: the counts as one row under a header, for a log of imports.
        Format::Csv => {
            summary_record(&summary, &opts).write(format, &mut std::io::stdout().lock())?
        }
        Format::Table => print_summary(&file, &summary, &opts),
    }
    let bad = summary.rejected + summary.duplicates + summary.suppressed > 0;
    Ok(if summary.no_usable_rows {
        eprintln!("{}: no usable row: nothing was written", file.display());
        ExitCode::FAILURE
    } else if opts.strict && bad {
        ExitCode::FAILURE
    } else if bad {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The import's counts as a record: the same fields in every format.
fn summary_record(s: &ImportSummary, opts: &ImportOptions) -> Record {
    let sup = &s.suppressed_from_source;
    let mut r = Record::new()
        .field("file", "file", s.file.clone())
        .field("rows_read", "rows read", s.rows)
        .field("inserted", "inserted", s.inserted)
        .field("updated", "updated", s.updated)
        .field("unchanged", "unchanged", s.unchanged)
        .field("rejected", "rejected", s.rejected)
        .field("duplicates_in_file", "duplicates in file", s.duplicates)
        .count_if("refused_erased", "refused (erased)", s.suppressed)
        .field(
            "suppressed_by_source",
            "suppressed by source",
            sup.unsubscribed + sup.bounced + sup.complained,
        )
        .field(
            "withdrawals_recorded",
            "withdrawals recorded",
            s.withdrawals_recorded,
        )
        .field("kept_suppressed", "kept suppressed", s.kept_suppressed)
        .count_if(
            "reinstated_by_override",
            "reinstated (override)",
            s.reinstated_by_override,
        );
    if opts.list.is_some() {
        r = r
            .field("consent_granted", "consent granted", s.consent_granted)
            .field(
                "granted_with_source_evidence",
                "  with source evidence",
                s.granted_with_source_evidence,
            )
            .field(
                "granted_asserted",
                "  asserted by importer",
                s.granted_asserted,
            )
            .field(
                "no_consent_in_source",
                "no consent in source",
                s.no_consent_in_source,
            )
            .field("kept_unsubscribed", "kept unsubscribed", s.kept_withdrawn);
    }
    r.field("flagged_typo", "flagged as typo", s.findings.typo)
        .field(
            "flagged_disposable",
            "flagged disposable",
            s.findings.disposable,
        )
        .field("flagged_role", "flagged as role", s.findings.role)
        .field("rejects_file", "rejected rows in", s.rejects_file.clone())
        .field(
            "written",
            "written",
            if s.written { "yes" } else { "no" }.to_string(),
        )
}

/// The import's summary on the terminal: how the file was read, the
/// counts (`summary_record`), and what they mean.
fn print_summary(file: &std::path::Path, s: &ImportSummary, opts: &ImportOptions) {
    for r in &s.rejections {
        eprintln!(
            "{}:{}: row {}: {}",
            file.display(),
            r.line,
            r.row,
            crate::domain::text::for_terminal_line(&r.reason)
        );
    }
    if s.rejected + s.duplicates > s.rejections.len() as u64 {
        eprintln!("... and more");
    }
    let how = |detected: bool| if detected { "detected" } else { "as given" };
    if let Some(entry) = &s.zip_entry {
        println!("read from zip      {entry}");
    }
    println!(
        "file               {} ({}), {}-separated ({})",
        s.encoding.map(|e| e.as_str()).unwrap_or("?"),
        how(s.encoding_detected),
        s.delimiter,
        how(s.delimiter_detected)
    );
    if let Some(p) = s.preset {
        let kind = s
            .mailchimp_export
            .map(|k| {
                format!(
                    ", {} export",
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        println!(
            "source             {}{kind} ({})",
            p.as_str(),
            if s.preset_detected {
                "detected from the header; use --from to choose another"
            } else {
                "from --from"
            }
        );
    }
    for w in &s.warnings {
        println!("warning            {w}");
    }
    // The counts, without the fields the lines above and below say in words.
    let mut counts = summary_record(s, opts);
    counts.retain(|k| !matches!(k, "file" | "rejects_file" | "written"));
    let _ = counts.write(Format::Table, &mut std::io::stdout().lock());
    let sup = &s.suppressed_from_source;
    if sup.unsubscribed + sup.bounced + sup.complained > 0 {
        println!(
            "  (suppressed by source: unsubscribed {}, bounced or cleaned {}, complained {}; \
             stored, never subscribed)",
            sup.unsubscribed, sup.bounced, sup.complained
        );
    }
    if opts.list.is_some() && s.granted_asserted > 0 {
        println!(
            "  (no opt-in time or IP in the file for {} contacts: the ledger records \"asserted by the importer\")",
            s.granted_asserted
        );
    }
    if s.findings.typo + s.findings.disposable + s.findings.role > 0 {
        println!("  (the flagged addresses are listed with --format json)");
    }
    if let Some(f) = &s.rejects_file {
        println!("rejected rows written to {f}");
    }
    if !s.written {
        println!(
            "{}",
            if s.no_usable_rows {
                "no usable row: nothing was written"
            } else if opts.dry_run {
                "dry run: nothing was written"
            } else {
                "strict: rows were rejected, nothing was written"
            }
        );
    }
}
