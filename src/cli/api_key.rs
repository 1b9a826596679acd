//! `cartero api-key create|revoke|list`: keys of the events API
//! (`POST /api/events`, role `conversions`) and of the read-only admin
//! pages (`/admin`, role `admin-read`). Only a hash of each key is stored:
//! the key is printed once, at creation.

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
    /// Create a key; prints it (and, for a conversions key, its postback
    /// secret) once.
    #[command(
        after_help = "Examples:\n  cartero api-key create shop\n  cartero api-key create --role admin-read dpo"
    )]
    Create {
        /// A name for the key (the shop or person that uses it).
        name: String,
        /// What the key opens: `conversions` (POST /api/events and the
        /// postback URL) or `admin-read` (the read-only pages under /admin).
        #[arg(long, value_parser = ["conversions", "admin-read"], default_value = "conversions")]
        role: String,
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
        Cmd::Create { name, role } => {
            let role = repo::KeyRole::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role {role:?}: conversions or admin-read"))?;
            if name.trim().is_empty() || name.len() > 100 || name.parse::<i64>().is_ok() {
                anyhow::bail!("the key's name must be 1-100 characters and not a number");
            }
            if repo::keys(&store).await?.iter().any(|k| k.name == name) {
                anyhow::bail!("there is already a key named {name:?}");
            }
            let k = new_key();
            let id =
                repo::create_key(&store, &name, &k.prefix, &k.hash, role, now_millis()).await?;
            println!("id:              {id}");
            println!("name:            {name}");
            println!("role:            {}", role.as_str());
            println!("key:             {}", k.key);
            match role {
                repo::KeyRole::Conversions => {
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
                repo::KeyRole::AdminRead => eprintln!(
                    "Keep the key now: cartero stores only its hash. Sign in with it at /admin/login, \
                     or send it as `Authorization: Bearer KEY` to /admin/... (docs/SERVE.md)."
                ),
            }
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
                    println!("id,name,prefix,role,created_at,revoked_at,last_used_at");
                    for k in &keys {
                        println!(
                            "{},{},{},{},{},{},{}",
                            k.id,
                            k.name.replace([',', '"', '\n', '\r'], "_"),
                            k.prefix,
                            k.role,
                            when(Some(k.created_at)),
                            when(k.revoked_at),
                            when(k.last_used_at)
                        );
                    }
                }
                Format::Table => {
                    println!(
                        "{:<4} {:<20} {:<13} {:<12} {:<26} {:<26}",
                        "ID", "NAME", "PREFIX", "ROLE", "CREATED", "REVOKED"
                    );
                    for k in &keys {
                        println!(
                            "{:<4} {:<20} {:<13} {:<12} {:<26} {:<26}",
                            k.id,
                            k.name,
                            k.prefix,
                            k.role,
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
