//! `cartero campaign ...`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::{Context, Format};
use crate::campaign::Campaign;
use crate::config::Config;
use crate::domain::EmailAddress;
use crate::send::{
    Composer, Progress, SendOptions, SendReport, preview_row, resolve_segment, send_campaign,
};
use crate::store::contacts::{self, Contact};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Validate a campaign: keys, addresses, templates, segment, and a render
    /// for every recipient with strict undefined variables; each recipient
    /// whose message cannot be rendered is listed with the template's
    /// file:line:col. Exit status 1 when any cannot.
    #[command(after_help = "Example:\n  cartero campaign check campaigns/welcome.toml")]
    Check {
        file: PathBuf,
        /// Render for this contact only instead of every recipient.
        #[arg(long)]
        contact: Option<String>,
    },
    /// Print (or write) the exact MIME message a contact would get.
    #[command(
        after_help = "Example:\n  cartero campaign preview campaigns/welcome.toml --contact ana@example.com -o ana.eml"
    )]
    Preview {
        file: PathBuf,
        #[arg(long)]
        contact: String,
        /// Write the message here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Where a campaign's send stands: rows by state, skips and failures by
    /// reason; `--failed` lists each failed or deferred send.
    #[command(
        after_help = "Examples:\n  cartero campaign status welcome\n  cartero campaign status campaigns/welcome.toml --failed --format csv"
    )]
    Status {
        /// The campaign's id (its file name without .toml) or its file.
        campaign: String,
        /// List every failed or deferred send: contact, state, reply, time.
        #[arg(long)]
        failed: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Send a campaign, or resume one that was interrupted.
    ///
    /// Recipients are snapshotted once; running the command again resumes and
    /// never sends twice to a recipient whose send was recorded as accepted.
    /// Without [smtp] in cartero.toml, messages go to the outbox folder.
    ///
    /// Exit status: 0 done; 1 error (nothing or part sent, resumable);
    /// 3 some messages failed; 4 the SMTP server could not be reached for
    /// smtp.outage_timeout_secs, the send stopped and resumes when run again;
    /// 5 the campaign was paused or cancelled (`campaign pause|cancel`).
    #[command(
        after_help = "Examples:\n  cartero campaign send campaigns/welcome.toml --dry-run\n  cartero campaign send campaigns/welcome.toml"
    )]
    Send {
        file: PathBuf,
        /// Render every message and report what would happen; send and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for deferred retries or for contacts' delivery times
        /// ([delivery]); a later run, or `cartero serve`, picks them up.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Pause a campaign: every node stops claiming its messages within
    /// seconds (messages on the wire finish); its scheduled occurrences wait.
    #[command(
        after_help = "Examples:\n  cartero campaign pause weekly --reason \"wrong price in the subject\"\n  cartero campaign resume weekly"
    )]
    Pause {
        /// The campaign's id (its file name without .toml) or its file.
        campaign: String,
        /// Why, recorded and shown by `schedule list`.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused campaign: `cartero serve` goes on with its scheduled
    /// runs; a manual send resumes with `campaign send` again.
    Resume {
        /// The campaign's id (its file name without .toml) or its file.
        campaign: String,
    },
    /// Cancel a campaign's open runs: what is not yet sent is skipped
    /// (reason `cancelled`) and never sent by that run; future occurrences
    /// of a schedule still run (remove `schedule` from the file to stop them).
    Cancel {
        /// The campaign's id (its file name without .toml) or its file.
        campaign: String,
        /// Why, recorded on each cancelled run.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// A campaign's id from the argument of status, pause, resume and cancel:
/// a file names the campaign by its id; a bare id is used as it is.
fn slug_of(cfg: &Config, campaign: &str) -> anyhow::Result<String> {
    Ok(
        if campaign.ends_with(".toml") || std::path::Path::new(campaign).is_file() {
            load(cfg, std::path::Path::new(campaign))?.slug
        } else {
            campaign.to_string()
        },
    )
}

/// `campaign pause|resume|cancel`.
async fn control(
    ctx: &Context,
    cfg: &Config,
    campaign: &str,
    action: Control,
) -> anyhow::Result<ExitCode> {
    let slug = slug_of(cfg, campaign)?;
    let store = ctx.store(cfg).await?;
    let now = crate::domain::time::now_millis();
    let row = match crate::store::campaigns::find(&store, &slug).await? {
        Some(r) => r,
        // A campaign not sent or scheduled yet can be paused ahead of its
        // first occurrence when named by its file.
        None if campaign.ends_with(".toml") && matches!(action, Control::Pause(_)) => {
            let c = load(cfg, std::path::Path::new(campaign))?;
            crate::store::campaigns::ensure(
                &store,
                &c.slug,
                &c.name,
                &c.path.display().to_string(),
                &c.file_hash,
                Some(&c.list),
                now,
            )
            .await?
        }
        None => anyhow::bail!(
            "no campaign {slug:?} has been sent or scheduled yet (name its file to pause it ahead)"
        ),
    };
    let msg = match action {
        Control::Pause(reason) => {
            let reason = reason.unwrap_or_else(|| "paused from the command line".into());
            if crate::store::campaigns::set_paused(&store, row.id, Some(&reason), now).await? {
                format!(
                    "paused {slug}: no node claims its messages from now on (those on the wire finish);                      `cartero campaign resume {slug}` goes on"
                )
            } else {
                format!("{slug} was already paused")
            }
        }
        Control::Resume => {
            if crate::store::campaigns::set_paused(&store, row.id, None, now).await? {
                format!(
                    "resumed {slug}: `cartero serve` goes on with its scheduled runs;                      run `cartero campaign send` again for a manual send"
                )
            } else {
                format!("{slug} was not paused")
            }
        }
        Control::Cancel(reason) => {
            let reason = reason.unwrap_or_else(|| "cancelled from the command line".into());
            let (runs, rows) =
                crate::store::runs::cancel_open(&store, row.id, &reason, now).await?;
            if runs == 0 {
                format!("{slug} has no run in progress: nothing to cancel")
            } else {
                format!(
                    "cancelled {runs} run(s) of {slug}: {rows} messages not yet sent are skipped                      (messages on the wire finish)"
                )
            }
        }
    };
    store.close().await;
    println!("{msg}");
    Ok(ExitCode::SUCCESS)
}

enum Control {
    Pause(Option<String>),
    Resume,
    Cancel(Option<String>),
}

fn load(cfg: &Config, file: &std::path::Path) -> anyhow::Result<Campaign> {
    Ok(Campaign::load(
        file,
        &cfg.resolve(&cfg.project.templates_dir),
    )?)
}

async fn contact_by_email(store: &crate::store::Store, email: &str) -> anyhow::Result<Contact> {
    let addr = EmailAddress::parse(email.trim())
        .map_err(|e| anyhow::anyhow!("{email:?} is not a valid address: {e}"))?;
    contacts::find_by_email(store, &addr)
        .await?
        .with_context(|| format!("no contact with address {addr}"))
}

/// `campaign send` stopped because the SMTP server stayed unreachable for
/// `smtp.outage_timeout_secs`; running it again resumes.
pub const EXIT_OUTAGE: u8 = 4;
/// `campaign send` stopped because the campaign was paused or cancelled
/// (`campaign pause|cancel`, from any node).
pub const EXIT_HALTED: u8 = 5;

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, msg: String) {
        self.0.set_message(msg);
    }
    fn notice(&self, msg: String) {
        // Printed even with --quiet: the send is waiting, and the person
        // running it must know why.
        self.0.suspend(|| eprintln!("cartero: {msg}"));
        tracing::info!("{msg}");
    }
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    match args.command {
        Cmd::Check { file, contact } => {
            let campaign = load(&cfg, &file)?;
            let segment = resolve_segment(&campaign, &cfg)?;
            let store = ctx.store(&cfg).await?;
            let mut check_cfg = cfg.clone();
            if check_cfg.sender.secret.len() < 16 {
                // `check` needs no real secret: tokens are not sent anywhere.
                check_cfg.sender.secret = "check-only-secret-not-for-sending".into();
            }
            let composer = Composer::new(campaign, &check_cfg)?;
            let c = &composer.campaign;
            // Every recipient is rendered (a render is cheap), or the one
            // asked for; with nobody to render for, the templates were
            // still compiled above.
            let (rendered, failures) = match &contact {
                Some(e) => {
                    let one = contact_by_email(&store, e).await?;
                    match composer.compose(0, &preview_row(&one), &one) {
                        Ok(_) => (1, Vec::new()),
                        Err(e) => (0, vec![crate::send::RenderFailure::new(&one, &e)]),
                    }
                }
                None => {
                    let filter = crate::send::SegmentFilter {
                        segment: segment.clone(),
                        now: crate::domain::time::now_millis(),
                    };
                    crate::send::check_renders(&store, &composer, &c.list, &filter).await?
                }
            };
            // Attributes the templates or the segment name that no contact
            // has: a typo, even where `| default(...)` keeps the render
            // from failing.
            let mut unknown = Vec::new();
            if rendered + failures.len() as u64 > 0 {
                let keys = contacts::attribute_keys(&store).await?;
                for path in std::iter::once(&c.html_template).chain(c.text_template.as_ref()) {
                    let source = std::fs::read_to_string(path)
                        .with_context(|| format!("{}: cannot read", path.display()))?;
                    for r in crate::render::attributes::template_refs(&source) {
                        if keys.contains(&r.name) {
                            continue;
                        }
                        let hint = crate::render::attributes::nearest(
                            &r.name,
                            keys.iter().map(String::as_str),
                        )
                        .map(|n| format!(": did you mean `contact.attributes.{n}`?"))
                        .unwrap_or_default();
                        unknown.push(format!(
                            "{}:{}:{}: no contact has the attribute `contact.attributes.{}`{hint}",
                            path.display(),
                            r.line,
                            r.col,
                            r.name
                        ));
                    }
                }
                if let Some(s) = &segment {
                    unknown.extend(super::segment::unknown_attributes(s, &keys));
                }
            }
            let list_exists = crate::dispatch!(&store, pool => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM lists WHERE name = $1")
                    .bind(&c.list)
                    .fetch_one(pool)
                    .await?
            }) > 0;
            if failures.is_empty() {
                println!("{}: ok", file.display());
            } else {
                eprintln!(
                    "{}: cannot render for {} of {} recipients",
                    file.display(),
                    failures.len(),
                    failures.len() as u64 + rendered
                );
            }
            println!("  name      {}", c.name);
            println!(
                "  list      {}{}",
                c.list,
                if list_exists {
                    ""
                } else {
                    "  (warning: no such list in the database yet)"
                }
            );
            if let Some(s) = &segment {
                let n = crate::segment::count(&store, s).await?;
                println!("  segment   {} ({n} contacts match)", s.name);
            } else {
                println!("  segment   everyone on the list");
            }
            if rendered == 0 && failures.is_empty() {
                println!("  rendered  nobody to render for yet (the templates compile)");
            } else {
                println!("  rendered  for {rendered} recipients");
            }
            print_render_failures(&failures, true);
            for w in &unknown {
                eprintln!("warning: {}", crate::domain::text::for_terminal_line(w));
            }
            if let Some(line) = smtp_auth_check(&cfg).await? {
                println!("  smtp      {line}");
            }
            store.close().await;
            Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Status {
            campaign,
            failed,
            format,
        } => status(ctx, &cfg, &campaign, failed, format).await,
        Cmd::Pause { campaign, reason } => {
            control(ctx, &cfg, &campaign, Control::Pause(reason)).await
        }
        Cmd::Resume { campaign } => control(ctx, &cfg, &campaign, Control::Resume).await,
        Cmd::Cancel { campaign, reason } => {
            control(ctx, &cfg, &campaign, Control::Cancel(reason)).await
        }
        Cmd::Preview {
            file,
            contact,
            output,
        } => {
            let campaign = load(&cfg, &file)?;
            let store = ctx.store(&cfg).await?;
            let c = contact_by_email(&store, &contact).await?;
            let composer = Composer::new(campaign, &cfg)?;
            let m = composer.compose(0, &preview_row(&c), &c)?;
            match output {
                Some(p) => crate::private_files::write(&p, &m.bytes)
                    .with_context(|| format!("writing {}", p.display()))?,
                None => {
                    use std::io::IsTerminal;
                    let mut out = std::io::stdout().lock();
                    if out.is_terminal() {
                        // On a terminal, contact data in the body must not
                        // drive it; piped, the bytes are the exact message.
                        let text = String::from_utf8_lossy(&m.bytes);
                        out.write_all(crate::domain::text::for_terminal(&text).as_bytes())?;
                    } else {
                        out.write_all(&m.bytes)?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Send {
            file,
            dry_run,
            no_wait,
            format,
        } => {
            let campaign = load(&cfg, &file)?;
            let store = ctx.store(&cfg).await?;
            let bar = indicatif::ProgressBar::new(0);
            if ctx.progress() {
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} sending [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
            } else {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let progress = Arc::new(Bar(bar.clone()));
            let opts = SendOptions {
                dry_run,
                no_wait,
                ..SendOptions::default()
            };
            let report = match send_campaign(&store, &cfg, campaign, &opts, progress).await {
                Ok(r) => r,
                Err(e @ crate::send::SendError::Outage { .. }) => {
                    bar.finish_and_clear();
                    store.close().await;
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_OUTAGE));
                }
                Err(e) => return Err(e.into()),
            };
            bar.finish_and_clear();
            let failed_by_reason = if report.tally.failed > 0 {
                failures_by_reason(&store, &report.campaign, "failed").await?
            } else {
                Default::default()
            };
            let deferred_by_reason = if report.tally.deferred > 0 {
                failures_by_reason(&store, &report.campaign, "deferred").await?
            } else {
                Default::default()
            };
            store.close().await;
            print_report(&report, &failed_by_reason, &deferred_by_reason, format)?;
            Ok(if report.halted.is_some() {
                ExitCode::from(EXIT_HALTED)
            } else if report.tally.failed > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// What `campaign check` says about the SMTP password: it goes only over
/// TLS or to a loopback relay (send/auth.rs). `tls = "none"` with a host
/// beyond loopback can never authenticate, so the check fails.
async fn smtp_auth_check(cfg: &Config) -> anyhow::Result<Option<String>> {
    use crate::config::TlsMode;
    let Some(s) = &cfg.smtp else { return Ok(None) };
    if s.username.is_none() || s.password.is_none() {
        return Ok(None);
    }
    let local = || async {
        tokio::net::lookup_host((s.host.as_str(), s.port))
            .await
            .map(|addrs| {
                let ips: Vec<_> = addrs.map(|a| a.ip()).collect();
                !ips.is_empty() && ips.into_iter().all(crate::send::auth::is_loopback)
            })
            .unwrap_or(false)
    };
    Ok(Some(match s.tls {
        TlsMode::Tls | TlsMode::Starttls => "the password is sent only over TLS".into(),
        TlsMode::Opportunistic if local().await => {
            "the password may be sent without TLS: the relay is on loopback".into()
        }
        TlsMode::Opportunistic => format!(
            "warning: tls = \"opportunistic\": cartero authenticates to {} only after \
             STARTTLS, and stops before AUTH if the server does not offer it; \
             set tls = \"starttls\" or \"tls\" to make that explicit",
            s.host
        ),
        TlsMode::None if local().await => {
            "the password is sent without TLS: the relay is on loopback".into()
        }
        TlsMode::None => anyhow::bail!(
            "smtp: tls = \"none\" with a username and password: cartero never sends the \
             password in clear beyond loopback, and {} is not a loopback address; \
             use tls = \"starttls\" or \"tls\"",
            s.host
        ),
    }))
}

/// A campaign's sends in `state` (failed or deferred) counted by reason
/// (`failure_reason`).
async fn failures_by_reason(
    store: &crate::store::Store,
    slug: &str,
    state: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let mut by_reason = std::collections::BTreeMap::new();
    if let Some(row) = crate::store::campaigns::find(store, slug).await? {
        for t in crate::store::sends::troubles(store, row.id).await? {
            if t.state == state {
                *by_reason.entry(failure_reason(&t)).or_default() += 1;
            }
        }
    }
    Ok(by_reason)
}

/// A skip reason in the words of the person who sends the campaign.
fn skip_words(code: &str) -> &str {
    match code {
        "unsubscribed" => "unsubscribed",
        "bounced" => "bounced before",
        "complained" => "marked as spam before",
        "erased" => "erased on request",
        "sunset" => "stopped reading (sunset)",
        "no_consent" => "no consent for this list",
        "cancelled" => "cancelled (campaign cancel)",
        "frequency_cap" => "frequency cap reached",
        other => other,
    }
}

fn print_report(
    r: &SendReport,
    failed_by_reason: &std::collections::BTreeMap<String, u64>,
    deferred_by_reason: &std::collections::BTreeMap<String, u64>,
    format: Format,
) -> anyhow::Result<()> {
    if format == Format::Json {
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "failed_by_reason".into(),
                serde_json::to_value(failed_by_reason)?,
            );
            o.insert(
                "deferred_by_reason".into(),
                serde_json::to_value(deferred_by_reason)?,
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let t = &r.tally;
    if r.dry_run {
        println!(
            "dry run of {} via {} (nothing sent, nothing written)",
            r.campaign, r.transport
        );
        if !r.started_now {
            println!("already sent       {:>9}", t.accepted);
        }
        println!("would send now     {:>9}", t.pending);
        if t.deferred > 0 {
            println!(
                "deferred           {:>9}  (waiting for their retry time)",
                t.deferred
            );
        }
        let renders = r.render_failures.len() as u64;
        if t.failed > renders {
            println!("failed earlier     {:>9}", t.failed - renders);
        }
        println!("would fail render  {:>9}", renders);
    } else {
        println!(
            "{} {} via {}",
            if r.started_now { "sent" } else { "resumed" },
            r.campaign,
            r.transport
        );
        match r.halted {
            Some(crate::send::Halt::Paused) => println!(
                "PAUSED: `cartero campaign resume {}`, then `campaign send` again, goes on",
                r.campaign
            ),
            Some(crate::send::Halt::Cancelled) => {
                println!("CANCELLED: what was not sent is skipped (reason: cancelled)")
            }
            Some(crate::send::Halt::Shutdown) => {
                println!("STOPPED: shutting down; the same command resumes")
            }
            None => {}
        }
        println!(
            "accepted           {:>9}  (taken by the mail server; bounces may still come back)",
            t.accepted
        );
        println!("failed             {:>9}", t.failed);
        for (reason, n) in failed_by_reason {
            println!("  {reason:<32} {n:>9}");
        }
        if r.suppressed_by_refusals > 0 {
            println!(
                "  of these, no longer mailed {:>5}  (the server refused them for good: treated as hard bounces)",
                r.suppressed_by_refusals
            );
        }
        if t.deferred > 0 {
            println!(
                "deferred           {:>9}  (to try later: `campaign send` again, or wait)",
                t.deferred
            );
            for (reason, n) in deferred_by_reason {
                println!("  {reason:<32} {n:>9}");
            }
        }
        if t.pending + t.sending > 0 {
            println!("not sent yet       {:>9}", t.pending + t.sending);
        }
        if r.in_flight_resent > 0 {
            println!(
                "may arrive twice   {:>9}  (on their way to the server when the last run stopped, \
                 sent again: docs/SENDING.md)",
                r.in_flight_resent
            );
        }
    }
    println!("not sent to        {:>9}", t.skipped_total());
    for (reason, n) in &t.skipped {
        println!("  {:<16} {n:>9}", skip_words(reason));
    }
    print_render_failures(&r.render_failures, false);
    if !r.dry_run && r.elapsed_secs > 0.0 {
        // The rate counts the time spent sending, not waiting for retries.
        let sending = (r.elapsed_secs - r.waiting_secs).max(0.001);
        print!(
            "this run: {} messages in {:.1}s ({:.0} a second)",
            r.sent_this_run,
            r.elapsed_secs,
            r.sent_this_run as f64 / sending
        );
        if r.waiting_secs >= 0.1 {
            print!(
                ", of which {:.1}s waiting to retry (not counted in the rate)",
                r.waiting_secs
            );
        }
        println!();
    }
    Ok(())
}

/// Names every recipient whose message did not render (the first 50; the
/// JSON report has them all), on standard error where they are the
/// command's errors (`check`).
fn print_render_failures(failures: &[crate::send::RenderFailure], to_stderr: bool) {
    if failures.is_empty() {
        return;
    }
    let mut lines = vec!["could not render for:".to_string()];
    for f in failures.iter().take(50) {
        lines.push(format!("  {}: {}", f.contact, f.error));
    }
    if failures.len() > 50 {
        lines.push(format!(
            "  ... and {} more (--format json lists them all)",
            failures.len() - 50
        ));
    }
    for line in lines {
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Why a send failed or waits, in words, with the SMTP code a postmaster
/// would ask for.
fn failure_reason(t: &crate::store::sends::Trouble) -> String {
    match (t.smtp_code, t.smtp_reply.as_deref()) {
        (Some(code), _) if code >= 500 => format!("refused by the server (smtp {code})"),
        (Some(code), _) if t.state == "failed" => {
            format!("gave up after temporary refusals (smtp {code})")
        }
        (Some(code), _) => format!("server asked to try later (smtp {code})"),
        (None, Some(r)) if r.starts_with(crate::send::RENDER_FAILED) => {
            "could not be rendered".into()
        }
        (None, Some(r)) if r.starts_with(crate::send::smtp::TIMED_OUT) => {
            "no reply from the server in time (timeout)".into()
        }
        (None, Some(r)) if r.starts_with(crate::send::domains::HELD_BACK) => {
            "held back: the domain is slow or at its limit".into()
        }
        (None, Some(_)) => "no answer from the server".into(),
        (None, None) => "unknown".into(),
    }
}

fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

async fn status(
    ctx: &Context,
    cfg: &Config,
    campaign: &str,
    failed: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let slug = slug_of(cfg, campaign)?;
    let store = ctx.store(cfg).await?;
    let row = crate::store::campaigns::find(&store, &slug)
        .await?
        .with_context(|| format!("no campaign {slug:?} has been sent yet"))?;
    let tally = crate::store::sends::tally(&store, row.id).await?;
    let troubles = crate::store::sends::troubles(&store, row.id).await?;
    let (timed, next_timed) = crate::store::sends::timed(&store, row.id).await?;
    store.close().await;
    let mut by_reason: std::collections::BTreeMap<String, u64> = Default::default();
    for t in troubles.iter().filter(|t| t.state == "failed") {
        *by_reason.entry(failure_reason(t)).or_default() += 1;
    }
    if failed {
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&troubles)?),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                w.write_record([
                    "email", "state", "attempts", "reason", "reply", "at", "retry_at",
                ])?;
                for t in &troubles {
                    w.write_record([
                        t.email.clone(),
                        t.state.clone(),
                        t.attempts.to_string(),
                        failure_reason(t),
                        t.smtp_reply.clone().unwrap_or_default(),
                        when(t.updated_at),
                        t.next_attempt_at.map(when).unwrap_or_default(),
                    ])?;
                }
                w.flush()?;
            }
            Format::Table => {
                for t in &troubles {
                    println!(
                        "{:<8} {}  {}  {}  ({} attempts{})",
                        t.state,
                        when(t.updated_at),
                        t.email,
                        t.smtp_reply.as_deref().unwrap_or(""),
                        t.attempts,
                        t.next_attempt_at
                            .map(|n| format!(", retry at {}", when(n)))
                            .unwrap_or_default()
                    );
                }
                if troubles.is_empty() {
                    println!("no failed or deferred sends");
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "campaign": slug,
                "started_at": row.started_at,
                "finished_at": row.finished_at,
                "tally": tally,
                "waiting_for_delivery_time": timed,
                "next_delivery_time": next_timed,
                "failed_by_reason": by_reason,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{slug}: {}",
        match (row.started_at, row.finished_at) {
            (None, _) => "not started".to_string(),
            (Some(s), None) => format!("started {}, not finished", when(s)),
            (Some(s), Some(f)) => format!("started {}, finished {}", when(s), when(f)),
        }
    );
    println!("accepted           {:>9}", tally.accepted);
    println!("not sent yet       {:>9}", tally.pending + tally.sending);
    if timed > 0 {
        println!(
            "  waiting for their delivery time {timed:>9}{}",
            next_timed
                .map(|n| format!(" (next {})", when(n)))
                .unwrap_or_default()
        );
    }
    println!("deferred           {:>9}", tally.deferred);
    println!("failed             {:>9}", tally.failed);
    for (reason, n) in &by_reason {
        println!("  {reason:<32} {n:>9}");
    }
    println!("not sent to        {:>9}", tally.skipped_total());
    for (reason, n) in &tally.skipped {
        println!("  {:<16} {n:>9}", skip_words(reason));
    }
    if tally.failed + tally.deferred > 0 {
        println!("(cartero campaign status {slug} --failed lists them)");
    }
    Ok(ExitCode::SUCCESS)
}
