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
use crate::send::{Composer, Progress, SendOptions, SendReport, resolve_segment, send_campaign};
use crate::store::contacts::{self, Contact};
use crate::store::sends::Claimed;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Validate a campaign: keys, addresses, templates, segment, and a render
    /// against a sample contact with strict undefined variables.
    #[command(after_help = "Example:\n  cartero campaign check campaigns/welcome.toml")]
    Check {
        file: PathBuf,
        /// Render for this contact instead of the segment's first one.
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
    /// Send a campaign, or resume one that was interrupted.
    ///
    /// Recipients are snapshotted once; running the command again resumes and
    /// never sends twice to a recipient whose send was recorded as accepted.
    /// Without [smtp] in cartero.toml, messages go to the outbox folder.
    #[command(
        after_help = "Examples:\n  cartero campaign send campaigns/welcome.toml --dry-run\n  cartero campaign send campaigns/welcome.toml"
    )]
    Send {
        file: PathBuf,
        /// Render every message and report what would happen; send and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for deferred retries; a later run picks them up.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

fn load(cfg: &Config, file: &std::path::Path) -> anyhow::Result<Campaign> {
    Ok(Campaign::load(
        file,
        &cfg.resolve(&cfg.project.templates_dir),
    )?)
}

/// A stand-in contact for checks on an empty database.
fn sample_contact() -> Contact {
    Contact {
        id: 0,
        email: "sample@example.com".into(),
        first_name: Some("Sample".into()),
        last_name: Some("Contact".into()),
        locale: Some("en".into()),
        timezone: Some("Europe/Madrid".into()),
        attributes: serde_json::json!({}),
        status: "active".into(),
        tags: vec![],
    }
}

async fn contact_by_email(store: &crate::store::Store, email: &str) -> anyhow::Result<Contact> {
    let addr = EmailAddress::parse(email.trim())
        .map_err(|e| anyhow::anyhow!("{email:?} is not a valid address: {e}"))?;
    contacts::find_by_email(store, &addr)
        .await?
        .with_context(|| format!("no contact with address {addr}"))
}

fn preview_row(c: &Contact) -> Claimed {
    Claimed {
        id: 0,
        contact_id: c.id,
        email: c.email.clone(),
        attempts: 0,
        created_at: 0,
        message_id: None,
    }
}

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
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    match args.command {
        Cmd::Check { file, contact } => {
            let campaign = load(&cfg, &file)?;
            let segment = resolve_segment(&campaign, &cfg)?;
            let store = ctx.store(&cfg).await?;
            let sample = match &contact {
                Some(e) => contact_by_email(&store, e).await?,
                None => {
                    // The first contact the send would mail: on the list,
                    // active, in the segment; never someone off the list.
                    let list_id = crate::dispatch!(&store, pool => {
                        sqlx::query_scalar::<_, i64>("SELECT id FROM lists WHERE name = $1")
                            .bind(&campaign.list)
                            .fetch_optional(pool)
                            .await?
                    });
                    let first = match list_id {
                        Some(list_id) => {
                            let filter = crate::send::SegmentFilter {
                                segment: segment.clone(),
                                now: crate::domain::time::now_millis(),
                            };
                            crate::store::sends::first_recipients(&store, list_id, &filter, 1)
                                .await?
                                .into_iter()
                                .next()
                        }
                        None => None,
                    };
                    match first {
                        Some(id) => contacts::find_by_id(&store, id)
                            .await?
                            .unwrap_or_else(sample_contact),
                        None => sample_contact(),
                    }
                }
            };
            let mut check_cfg = cfg.clone();
            if check_cfg.sender.secret.len() < 16 {
                // `check` needs no real secret: tokens are not sent anywhere.
                check_cfg.sender.secret = "check-only-secret-not-for-sending".into();
            }
            let composer = Composer::new(campaign, &check_cfg)?;
            composer
                .compose(0, &preview_row(&sample), &sample)
                .with_context(|| format!("rendering for {}", sample.email))?;
            let c = &composer.campaign;
            let list_exists = crate::dispatch!(&store, pool => {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM lists WHERE name = $1")
                    .bind(&c.list)
                    .fetch_one(pool)
                    .await?
            }) > 0;
            println!("{}: ok", file.display());
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
            println!("  rendered  for {}", sample.email);
            if let Some(line) = smtp_auth_check(&cfg).await? {
                println!("  smtp      {line}");
            }
            Ok(ExitCode::SUCCESS)
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
            let opts = SendOptions { dry_run, no_wait };
            let report = send_campaign(&store, &cfg, campaign, &opts, progress).await?;
            bar.finish_and_clear();
            store.close().await;
            print_report(&report, format)?;
            Ok(if report.tally.failed > 0 {
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

fn print_report(r: &SendReport, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let t = &r.tally;
    if r.dry_run {
        println!(
            "dry run of {} via {} (nothing sent, nothing written)",
            r.campaign, r.transport
        );
        println!("would send         {:>9}", t.pending);
        println!("would fail render  {:>9}", t.failed);
    } else {
        println!(
            "{} {} via {}",
            if r.started_now { "sent" } else { "resumed" },
            r.campaign,
            r.transport
        );
        println!("accepted           {:>9}", t.accepted);
        println!("failed             {:>9}", t.failed);
        println!("deferred           {:>9}", t.deferred);
        println!("pending            {:>9}", t.pending + t.sending);
        if r.in_flight_resent > 0 {
            println!(
                "in flight, resent  {:>9}  (claimed by a run that stopped; see docs/SENDING.md)",
                r.in_flight_resent
            );
        }
    }
    println!("skipped            {:>9}", t.skipped_total());
    for (reason, n) in &t.skipped {
        println!("  {reason:<16} {n:>9}");
    }
    if !r.dry_run && r.elapsed_secs > 0.0 {
        println!(
            "this run: {} messages in {:.1}s ({:.0}/s)",
            r.sent_this_run,
            r.elapsed_secs,
            r.sent_this_run as f64 / r.elapsed_secs
        );
    }
    Ok(())
}
