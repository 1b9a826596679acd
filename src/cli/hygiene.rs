//! `cartero hygiene ...`

use std::process::ExitCode;

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {}

pub async fn run(args: Args, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {}
}
