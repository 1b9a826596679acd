//! `cartero signup status|purge|retry`: the double opt-in sign-ups that
//! `cartero serve` holds until they are confirmed (docs/TRACKING.md): how
//! many wait and where their confirmation mail is, deleting the ones never
//! confirmed (they hold personal data without consent), and re-queueing
//! the confirmation mails the background mailer gave up on.

use std::process::ExitCode;

use super::output::{Table, Value};
use super::{Context, Format};
use crate::domain::time::{now_millis, parse_instant, to_rfc3339};
use crate::store::signup as repo;
use crate::track::signup::{MAIL_ATTEMPTS, MAIL_MAX_AGE, purge_pending};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Pending (unconfirmed) sign-ups per list: confirmation mail queued,
    /// mailed and waiting for the click, or given up by the mailer.
    #[command(after_help = "Example:\n  cartero signup status --format json")]
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete the sign-ups never confirmed that are older than --older-than,
    /// and the address, name, IP and user agent they hold; the purge is
    /// recorded (compliance_actions) and `compliance audit` stops naming them.
    #[command(
        after_help = "Examples:\n  cartero signup purge --older-than 30d --dry-run\n  cartero signup purge --older-than 30d --actor cron"
    )]
    Purge {
        /// Sign-ups made before this: a span back from now (30d, 72h), a
        /// date (YYYY-MM-DD, UTC) or an RFC 3339 instant.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Count them, delete nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who runs it (recorded with the purge).
        #[arg(long, default_value = "operator")]
        actor: String,
    },
    /// Re-queue the confirmation mails the mailer gave up on (its attempts
    /// or its three days ran out); `cartero serve` sends them on its next
    /// pass. Each gets the attempts and the three days again.
    #[command(
        after_help = "Examples:\n  cartero signup retry\n  cartero signup retry --list newsletter"
    )]
    Retry {
        /// Only this list's sign-ups.
        #[arg(long)]
        list: Option<String>,
    },
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let now = now_millis();
    match args.command {
        Cmd::Status { format } => {
            let store = ctx.store(&cfg).await?;
            let rows = repo::pending_by_list(&store, MAIL_ATTEMPTS, now - MAIL_MAX_AGE).await?;
            store.close().await;
            let mut t = Table::new(&[
                ("list", "list"),
                ("queued", "mail queued"),
                ("mailed", "mailed, unconfirmed"),
                ("given_up", "mail given up"),
                ("oldest", "oldest sign-up"),
            ]);
            let count = |n: i64| Value::Count(n.max(0) as u64);
            for r in &rows {
                t.row(vec![
                    r.list.clone().into(),
                    count(r.queued),
                    count(r.mailed),
                    count(r.given_up),
                    to_rfc3339(r.oldest).into(),
                ]);
            }
            if t.is_empty() && format == Format::Table {
                println!("no sign-up is waiting for its confirmation");
            } else {
                t.write(format, &mut std::io::stdout().lock())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Purge {
            older_than,
            dry_run,
            actor,
        } => {
            let cutoff = parse_instant(&older_than, now)
                .filter(|c| *c < now)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--older-than {older_than:?}: expected a span back from now (30d, 72h), \
                         a date YYYY-MM-DD or an RFC 3339 instant, in the past"
                    )
                })?;
            let store = ctx.store(&cfg).await?;
            if dry_run {
                let n = repo::count_pending_before(&store, cutoff).await?;
                store.close().await;
                println!(
                    "{n} unconfirmed sign-ups made before {} would be deleted (dry run: nothing changed)",
                    to_rfc3339(cutoff)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let outbox = cfg.resolve(&cfg.outbox.dir);
            let p = purge_pending(&store, &outbox, cutoff, &actor, now, true).await?;
            store.close().await;
            println!(
                "deleted {} unconfirmed sign-ups made before {}; recorded as compliance action {}",
                p.signups,
                to_rfc3339(cutoff),
                p.action_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Retry { list } => {
            let store = ctx.store(&cfg).await?;
            if let Some(l) = &list
                && !crate::store::contacts::list_names_by_id(&store)
                    .await?
                    .values()
                    .any(|n| n == l)
            {
                store.close().await;
                anyhow::bail!("--list {l:?}: there is no such list");
            }
            let n = repo::requeue_given_up(
                &store,
                list.as_deref(),
                MAIL_ATTEMPTS,
                now - MAIL_MAX_AGE,
                now,
            )
            .await?;
            store.close().await;
            println!(
                "re-queued {n} confirmation mails; `cartero serve` sends them on its next pass"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
