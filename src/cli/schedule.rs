//! `cartero schedule list`: what the scheduler of `cartero serve` sends
//! next, and why.

use std::process::ExitCode;

use super::output::{Table, Value};
use super::{Context, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Every campaign file with `schedule` or `send_at`: its next
    /// occurrence, its last run, and why (paused, being sent, missed, a
    /// send_at that passed before cartero saw it). Files that cannot be
    /// scheduled are listed with their error; exit status 1 then.
    #[command(
        after_help = "Example:\n  cartero schedule list\n  cartero schedule list --format json"
    )]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    match args.command {
        Cmd::List { format } => {
            let (campaigns, errors) = crate::schedule::load_scheduled(
                &cfg.resolve(&cfg.project.campaigns_dir),
                &cfg.resolve(&cfg.project.templates_dir),
            )?;
            let store = ctx.store(&cfg).await?;
            let entries =
                crate::schedule::list(&store, &campaigns, crate::domain::time::now_millis())
                    .await?;
            store.close().await;
            let mut t = Table::new(&[
                ("campaign", "campaign"),
                ("timing", "timing"),
                ("next", "next occurrence (UTC)"),
                ("last_occurrence", "last run"),
                ("last_state", "state"),
                ("why", "why"),
            ]);
            for e in entries {
                t.row(vec![
                    e.campaign.into(),
                    e.timing.into(),
                    e.next.into(),
                    e.last_occurrence.into(),
                    e.last_state.into(),
                    e.why.into(),
                ]);
            }
            for e in &errors {
                t.row(vec![
                    e.path.display().to_string().into(),
                    Value::None,
                    Value::None,
                    Value::None,
                    "error".into(),
                    e.error.clone().into(),
                ]);
            }
            if t.is_empty() && format == Format::Table {
                println!(
                    "no campaign file in {} says `schedule` or `send_at` (docs/SCHEDULING.md)",
                    cfg.project.campaigns_dir.display()
                );
            } else {
                t.write(format, &mut std::io::stdout().lock())?;
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
