//! `cartero serve`: builds the service from cartero.toml and runs it until
//! SIGTERM or SIGINT, then drains and exits 0.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::app::{self, Secret, Settings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  cartero serve\n  cartero serve --listen 0.0.0.0:8080\n\n\
Needs a [serve] section in cartero.toml and sender.secret (docs/SERVE.md).\n\
Prints `listening on http://ADDRESS` once it accepts connections."
)]
pub struct Args {
    /// Address and port to listen on (overrides serve.listen); port 0 picks a free one.
    #[arg(long)]
    pub listen: Option<String>,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut cfg = ctx.config()?;
    if let (Some(l), Some(serve)) = (&args.listen, cfg.serve.as_mut()) {
        serve.listen = l.clone();
    }
    // The ledger is appended to here too (unsubscribes, sign-ups): with
    // the keys of [compliance], as every other command appends it.
    crate::store::consent::install_keys(cfg.compliance.ledger_keys()?);
    let mut settings = Settings::from_config(&cfg)?;
    settings.database_url = Secret::new(super::sqlite_url_relative_to(
        &cfg.database.url,
        &cfg.base_dir,
    ));
    let server = app::build(settings).await?;
    let cancel = CancellationToken::new();
    app::cancel_on_signals(cancel.clone())?;
    println!("listening on http://{}", server.addr());
    server.run(cancel).await?;
    Ok(ExitCode::SUCCESS)
}
