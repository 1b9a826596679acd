//! `cartero journey ...`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::output::{Table, Value};
use super::{Context, Format};
use crate::campaign::journey::{Action, Journey, Trigger};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Validate journey files: trigger, steps, branch targets, loops,
    /// templates (compiled). Each mistake is reported as FILE:LINE:COL;
    /// exit status 1 when any file has one.
    #[command(
        after_help = "Examples:\n  cartero journey check campaigns/welcome-series.toml\n  cartero journey check campaigns/*.toml"
    )]
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Where a journey's contacts stand: how many are at each step, and
    /// how many left by each exit (completed, unsubscribed, suppressed,
    /// converted, step_removed).
    #[command(
        after_help = "Examples:\n  cartero journey status welcome-series\n  cartero journey status campaigns/welcome-series.toml --format json"
    )]
    Status {
        /// The journey's id (its file name without .toml) or its file.
        journey: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Move every journey of the campaigns folder once, now: enrol, apply
    /// exits and due steps, create the pending sends of send steps.
    /// A run by hand: `cartero serve` runs it on every look of its scheduler.
    #[command(after_help = "Example:\n  cartero journey tick --format json")]
    Tick {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Check { files } => {
            // Without a project, templates resolve beside the files.
            let templates = match ctx.config() {
                Ok(cfg) => cfg.resolve(&cfg.project.templates_dir),
                Err(_) => PathBuf::from("templates"),
            };
            let mut failed = false;
            for f in files {
                match check(&f, &templates) {
                    Ok(summary) => println!("{}: ok, {summary}", f.display()),
                    Err(e) => {
                        failed = true;
                        eprintln!("{}", crate::domain::text::for_terminal(&e));
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Status { journey, format } => {
            let cfg = ctx.config()?;
            let j = find(&cfg, &journey)?;
            let store = ctx.store(&cfg).await?;
            let st = crate::schedule::journey::status(&store, &j).await?;
            let mut t = Table::new(&[
                ("where", "WHERE"),
                ("name", "NAME"),
                ("what", "WHAT"),
                ("contacts", "CONTACTS"),
            ]);
            for (id, kind, n) in st.steps {
                t.row(vec!["step".into(), id.into(), kind.into(), n.into()]);
            }
            for (reason, n) in st.left {
                t.row(vec!["left".into(), reason.into(), Value::None, n.into()]);
            }
            t.write(format, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tick { format } => {
            let cfg = ctx.config()?;
            let dir = cfg.resolve(&cfg.project.campaigns_dir);
            let templates = cfg.resolve(&cfg.project.templates_dir);
            let mut journeys = Vec::new();
            let mut broken = 0;
            for j in crate::campaign::journey::load_dir(&dir, &templates)? {
                match j {
                    Ok(j) => journeys.push(j),
                    Err(e) => {
                        broken += 1;
                        eprintln!(
                            "skipped: {}",
                            crate::domain::text::for_terminal(&e.to_string())
                        );
                    }
                }
            }
            let store = ctx.store(&cfg).await?;
            let now = crate::domain::time::now_millis();
            let r = crate::schedule::journey::tick(&store, &journeys, now).await?;
            let mut rec = super::output::Record::new()
                .field("journeys", "journeys", journeys.len() as u64)
                .field("enrolled", "contacts enrolled", r.enrolled)
                .field("steps", "steps applied", r.steps)
                .field("sends", "sends created", r.sends);
            for (reason, n) in &r.left {
                let key: &'static str = crate::schedule::journey::LEFT_REASONS
                    .iter()
                    .find(|k| *k == reason)
                    .copied()
                    .unwrap_or("left_other");
                rec = rec.field(key, &format!("left: {reason}"), *n);
            }
            rec.write(format, &mut std::io::stdout().lock())?;
            Ok(if broken > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Checks one file; a one-line summary of the journey, or the error.
pub fn check(path: &Path, templates: &Path) -> Result<String, String> {
    let j = Journey::load(path, templates).map_err(|e| e.to_string())?;
    let mut sends = 0;
    for s in &j.steps {
        if let Action::Send(c) = &s.action {
            sends += 1;
            crate::render::Renderer::new(c).map_err(|e| {
                format!(
                    "{}:{}:{}: step {:?}: {e}",
                    s.at.path, s.at.line, s.at.col, s.id
                )
            })?;
        }
    }
    let trigger = match &j.trigger {
        Trigger::ListJoined { list } | Trigger::SignupConfirmed { list } => {
            format!("{} {list:?}", j.trigger.name())
        }
        Trigger::Event { kind } => format!("event {kind:?}"),
        other => other.name().to_string(),
    };
    Ok(format!(
        "journey {:?}: on {trigger}, {} steps, {sends} of them send a message{}",
        j.slug,
        j.steps.len(),
        if j.reentry { ", re-entry allowed" } else { "" }
    ))
}

/// A journey by id (a file of the campaigns folder) or by its file.
fn find(cfg: &Config, name: &str) -> anyhow::Result<Journey> {
    let templates = cfg.resolve(&cfg.project.templates_dir);
    let as_path = Path::new(name);
    let path = if name.ends_with(".toml") || as_path.components().count() > 1 {
        as_path.to_path_buf()
    } else {
        cfg.resolve(&cfg.project.campaigns_dir)
            .join(format!("{name}.toml"))
    };
    Ok(Journey::load(&path, &templates)?)
}
