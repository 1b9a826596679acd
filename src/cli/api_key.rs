//! `cartero api-key create|revoke|list`: keys of the events API
//! (`POST /api/events`). Only a hash of each key is stored: the key is
//! printed once, at creation.

use std::process::ExitCode;

use super::{Context, Format};
use crate::domain::time::now_millis;
use crate::store::conversions as repo;
use crate::track::conversions::{new_key, postback_secret};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create a key; prints it (and its postback secret) once.
    #[command(after_help = "Example:\n  cartero api-key create shop")]
    Create {
        /// A name for the key (the shop that uses it).
        name: String,
    },
    /// Revoke a key by id or name; it stops working at once.
    #[command(after_help = "Example:\n  cartero api-key revoke shop")]
    Revoke { id_or_name: String },
    /// List the keys (never their secrets).
    #[command(after_help = "Example:\n  cartero api-key list --format json")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(|m| {
        ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000_000).ok()
    })
    .and_then(|t| {
        t.format(&::time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".into())
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = ctx.config()?;
    let store = ctx.store(&cfg).await?;
    match args.command {
        Cmd::Create { name } => {
            if name.trim().is_empty() || name.len() > 100 || name.parse::<i64>().is_ok() {
                anyhow::bail!("the key's name must be 1-100 characters and not a number");
            }
            if repo::keys(&store).await?.iter().any(|k| k.name == name) {
                anyhow::bail!("there is already a key named {name:?}");
            }
            let k = new_key();
            let id = repo::create_key(&store, &name, &k.prefix, &k.hash, now_millis()).await?;
            println!("id:              {id}");
            println!("name:            {name}");
            println!("key:             {}", k.key);
            println!(
                "postback key id: {}\npostback secret: {}",
                k.prefix,
                postback_secret(cfg.secret()?, &k.prefix)
            );
            eprintln!(
                "Keep the key now: cartero stores only its hash. Send it as `Authorization: Bearer KEY` \
                 to POST /api/events (docs/TRACKING.md)."
            );
        }
        Cmd::Revoke { id_or_name } => {
            match repo::revoke_key(&store, &id_or_name, now_millis()).await? {
                Some(k) if k.revoked_at.is_some() => {
                    println!("key {} ({}) was revoked already", k.id, k.name)
                }
                Some(k) => println!("revoked key {} ({})", k.id, k.name),
                None => {
                    eprintln!("error: no API key has id or name {id_or_name:?}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        Cmd::List { format } => {
            let keys = repo::keys(&store).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&keys)?),
                Format::Csv => {
                    println!("id,name,prefix,created_at,revoked_at,last_used_at");
                    for k in &keys {
                        println!(
                            "{},{},{},{},{},{}",
                            k.id,
                            k.name.replace([',', '"', '\n', '\r'], "_"),
                            k.prefix,
                            when(Some(k.created_at)),
                            when(k.revoked_at),
                            when(k.last_used_at)
                        );
                    }
                }
                Format::Table => {
                    println!(
                        "{:<4} {:<20} {:<13} {:<26} {:<26}",
                        "ID", "NAME", "PREFIX", "CREATED", "REVOKED"
                    );
                    for k in &keys {
                        println!(
                            "{:<4} {:<20} {:<13} {:<26} {:<26}",
                            k.id,
                            k.name,
                            k.prefix,
                            when(Some(k.created_at)),
                            when(k.revoked_at)
                        );
                    }
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
