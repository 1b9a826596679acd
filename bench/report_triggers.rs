//! The rollup triggers' cost on writes: EVENTS opens and clicks written
//! through `store::track::insert_hits` (the SQL the `cartero serve` event
//! writer runs), BATCH hits per transaction as the writer commits them,
//! into a fresh database with its rollup triggers on, or off (`--without`:
//! every trigger on `events` named `*report*` dropped on SQLite, disabled
//! on PostgreSQL). bench/report-triggers.sh runs it both ways and compares.
//!
//! Usage: cargo run --release --example report-triggers -- URL [EVENTS] [BATCH] [--without]
//! Prints `events/s` of the inserts alone (the setup is not timed) and
//! the CPU time this process spent on them.

use std::time::Instant;

use cartero::store::track::{NewHit, insert_hits};
use cartero::store::{Backend, Store};

async fn exec(store: &Store, sql: &str) -> Result<(), Box<dyn std::error::Error>> {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await?;
    });
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let without = args.iter().any(|a| a == "--without");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let url = pos
        .next()
        .ok_or("usage: report-triggers URL [EVENTS] [BATCH] [--without]")?;
    let events: usize = pos
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = pos.next().map(|v| v.parse()).transpose()?.unwrap_or(1_000);
    let store = Store::open(url).await?;

    // 10,000 contacts over a few domains, one campaign sent to them all.
    let contacts = 10_000;
    let seq = match store.backend() {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {contacts}) SELECT i FROM n"
        ),
        Backend::Postgres => {
            format!("SELECT i FROM generate_series(1::bigint, {contacts}) AS g(i)")
        }
    };
    let t0: i64 = 1_767_225_600_000;
    exec(&store, &format!(
        "INSERT INTO contacts (email, domain, status, created_at, updated_at) \
         SELECT 'c' || i || '@d' || (i % 50) || '.example', 'd' || (i % 50) || '.example', 'active', {t0}, {t0} FROM ({seq}) s"
    )).await?;
    exec(&store, &format!(
        "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at, started_at) \
         VALUES ('c1', 'C1', 'c.toml', 'x', 'newsletter', {t0}, {t0})"
    )).await?;
    exec(
        &store,
        &format!(
            "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
         SELECT 1, id, email, 'accepted', {t0}, {t0} FROM contacts ORDER BY id"
        ),
    )
    .await?;
    if without {
        let names: Vec<String> = cartero::dispatch!(&store, pool => {
            sqlx::query_scalar(match store.backend() {
                Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events' AND name LIKE '%report%'",
                Backend::Postgres => "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgname LIKE '%report%'",
            }).fetch_all(pool).await?
        });
        for n in names {
            exec(
                &store,
                &match store.backend() {
                    Backend::Sqlite => format!("DROP TRIGGER {n}"),
                    Backend::Postgres => format!("ALTER TABLE events DISABLE TRIGGER {n}"),
                },
            )
            .await?;
        }
    }

    // The serve writer's mix: opens and clicks, a third of them machine.
    let hits: Vec<NewHit> = (0..events)
        .map(|i| {
            let send = 1 + (i * 7919) % contacts;
            let class = match i % 7 {
                0 => "prefetch",
                1 => "scanner",
                _ => "human",
            };
            let click = i % 10 < 3;
            let data = if click {
                format!(
                    "{{\"method\":\"GET\",\"class\":\"{class}\",\"ip\":\"192.0.2.{}\",\"ua\":\"Mozilla/5.0\",\"link\":{},\"url\":\"https://shop.example/p{}\"}}",
                    i % 250,
                    i % 5,
                    i % 5
                )
            } else {
                format!(
                    "{{\"method\":\"GET\",\"class\":\"{class}\",\"ip\":\"192.0.2.{}\",\"ua\":\"Mozilla/5.0\"}}",
                    i % 250
                )
            };
            NewHit {
                contact_id: send as i64,
                campaign_id: 1,
                send_id: send as i64,
                kind: if click { "click" } else { "open" },
                occurred_at: t0 + i as i64 * 100,
                data,
                engaged: class == "human",
                machine: matches!(class, "prefetch" | "scanner"),
                url: click.then(|| format!("https://shop.example/p{}", i % 5)),
            }
        })
        .collect();
    let server0 = server_cpu(&store).await?;
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    for chunk in hits.chunks(batch.max(1)) {
        let mut tx = store.begin().await?;
        insert_hits(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let server: f64 = server_cpu(&store)
        .await?
        .iter()
        .map(|(pid, t)| t - server0.get(pid).unwrap_or(&0.0))
        .sum();
    println!(
        "{} events in batches of {batch}, rollup triggers {}: {:.2} s, {:.0} events/s; this process's CPU {:.2} s{}",
        events,
        if without { "off" } else { "on" },
        secs,
        events as f64 / secs,
        cpu,
        match store.backend() {
            Backend::Postgres => format!(", the PostgreSQL backends' CPU {server:.2} s"),
            Backend::Sqlite => String::new(),
        }
    );
    store.close().await;
    Ok(())
}

/// CPU time of each PostgreSQL backend serving this database (the server
/// runs on this machine): where the triggers' work is done. Empty on SQLite.
async fn server_cpu(
    store: &Store,
) -> Result<std::collections::BTreeMap<i32, f64>, Box<dyn std::error::Error>> {
    let Store::Postgres(pool) = store else {
        return Ok(Default::default());
    };
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(pool)
            .await?;
    Ok(pids
        .into_iter()
        .map(|pid| (pid, cpu_of(&format!("/proc/{pid}/stat"))))
        .collect())
}

/// User and system CPU time of this process (Linux, /proc/self/stat, in
/// clock ticks of 1/100 s): on SQLite it holds the database's work, which
/// a loaded machine's wall clock does not show alone.
fn cpu_seconds() -> f64 {
    cpu_of("/proc/self/stat")
}

fn cpu_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after ')'.
    (field(11) + field(12)) / 100.0
}
