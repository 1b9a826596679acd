//! `cartero form snippet LIST`: the embeddable sign-up form of a list.

use std::process::ExitCode;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Print an HTML sign-up form for LIST (a `[lists.LIST]` section of
    /// cartero.toml) that posts to `cartero serve`'s /subscribe.
    #[command(after_help = "Example:\n  cartero form snippet newsletter > signup.html")]
    Snippet {
        /// The list, as named in `[lists.NAME]`.
        list: String,
    },
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Snippet { list } => {
            let cfg = ctx.config()?;
            let Some(l) = cfg.lists.get(&list) else {
                anyhow::bail!(
                    "there is no [lists.{list}] section in cartero.toml: add one to accept sign-ups \
                     for it (docs/CONFIG.md)"
                );
            };
            if !l.signup {
                anyhow::bail!("lists.{list}.signup is false: this list takes no sign-ups");
            }
            let base = crate::app::base_url(&cfg)?;
            print!("{}", crate::track::signup::snippet(base.as_str(), &list, l));
            Ok(ExitCode::SUCCESS)
        }
    }
}
