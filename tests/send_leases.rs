//! Leases: a claim is held by one process's worker identity until its lease
//! expires; a live worker renews it, and anyone takes over a row whose lease
//! expired. Times are given explicitly (the send path reads them from the
//! app's clock), so expiry is tested without sleeping. The last test runs
//! two `cartero campaign send` processes on one PostgreSQL database.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cartero::store::Backend;
use cartero::store::sends;
use common::db::TestDb;
use common::project::{Project, stderr};
use common::servers::SmtpRecorder;

async fn exec(store: &cartero::store::Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A run of campaign 1 with `n` pending rows; returns the run's id.
async fn pending_run(store: &cartero::store::Store, n: i64) -> i64 {
    exec(store, "INSERT INTO campaigns (id, slug, name, file_path, file_hash, created_at) VALUES (1, 'c', 'C', 'c.toml', 'h', 0)").await;
    let run = cartero::store::runs::get_or_create(store, 1, "manual", "manual", 0)
        .await
        .unwrap();
    for i in 0..n {
        exec(store, &format!(
            "INSERT INTO contacts (id, email, domain, created_at, updated_at) VALUES ({id}, 'u{id}@example.org', 'example.org', 0, 0)",
            id = i + 1
        )).await;
        exec(store, &format!(
            "INSERT INTO sends (campaign_id, run_id, contact_id, email, state, created_at, updated_at) \
             VALUES (1, {run}, {id}, 'u{id}@example.org', 'pending', 0, 0)",
            run = run.id,
            id = i + 1
        )).await;
    }
    run.id
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_is_taken_over_and_a_renewed_one_is_not() {
    for db in TestDb::all().await {
        let s = &db.store;
        let run = pending_run(s, 3).await;
        const LEASE: i64 = 30_000;
        let t0 = 1_000_000;
        let a = sends::claim(s, run, "worker-a", 10, t0 + LEASE, t0)
            .await
            .unwrap();
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|r| !r.taken_over));
        // Within the lease nobody else gets the rows.
        let b = sends::claim(s, run, "worker-b", 10, t0 + 20_000 + LEASE, t0 + 20_000)
            .await
            .unwrap();
        assert!(b.is_empty(), "{b:?}");
        // A renews at t0 + 25 s: the rows stay A's past the first expiry.
        let renewed = sends::renew(s, run, "worker-a", t0 + 25_000 + LEASE)
            .await
            .unwrap();
        assert_eq!(renewed, 3);
        let b = sends::claim(s, run, "worker-b", 10, t0 + 40_000 + LEASE, t0 + 40_000)
            .await
            .unwrap();
        assert!(b.is_empty(), "a renewed lease is honoured: {b:?}");
        // A stops renewing (killed): after its lease B takes every row over,
        // attempts untouched (a claim is not an attempt).
        let later = t0 + 25_000 + LEASE + 1;
        let b = sends::claim(s, run, "worker-b", 10, later + LEASE, later)
            .await
            .unwrap();
        assert_eq!(b.len(), 3, "expired leases are taken over");
        assert!(b.iter().all(|r| r.taken_over && r.attempts == 0));
        // A's renewal now finds nothing of its own.
        assert_eq!(
            sends::renew(s, run, "worker-a", later + LEASE)
                .await
                .unwrap(),
            0
        );
        // The earliest moment work may be due again is B's lease.
        assert_eq!(
            sends::next_due_at(s, run).await.unwrap(),
            Some(later + LEASE)
        );
    }
}

fn spawn_send(project: &Project) -> Child {
    project
        .command(&["campaign", "send", "campaigns/c.toml", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cartero")
}

fn finish(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

const RECIPIENTS: usize = 1500;
const CONCURRENCY: usize = 2;

fn project_for(db: &TestDb, smtp: &SmtpRecorder) -> Project {
    // A rate limit keeps each process sending long enough to kill one
    // mid-way; a 2 s lease lets the survivor take its rows over quickly.
    let project = Project::new(
        db,
        &format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = {CONCURRENCY}\n\
             rate_limit = 300.0\nlease_secs = 2\n",
            smtp.port()
        ),
    );
    let mut csv = String::from("email,first_name,city\n");
    for i in 0..RECIPIENTS {
        csv.push_str(&format!("user{i}@example.org,User{i},City{i}\n"));
    }
    let out = project.import(&csv);
    assert!(out.status.success(), "{}", stderr(&out));
    project
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_a_send_and_one_finishes_after_the_other_is_killed() {
    let Some(db) = TestDb::all()
        .await
        .into_iter()
        .find(|d| d.backend() == Backend::Postgres)
    else {
        eprintln!("PostgreSQL only (SQLite is one process's database)");
        return;
    };

    // Both live: every recipient exactly once, and both did part of it.
    let smtp = SmtpRecorder::start();
    let project = project_for(&db, &smtp);
    let (a, b) = (spawn_send(&project), spawn_send(&project));
    let (ra, rb) = (finish(a), finish(b));
    let counts = smtp.count_by_recipient();
    assert_eq!(counts.len(), RECIPIENTS, "every recipient");
    assert!(counts.values().all(|n| *n == 1), "nobody twice");
    let (sa, sb) = (
        ra["sent_this_run"].as_u64().unwrap(),
        rb["sent_this_run"].as_u64().unwrap(),
    );
    assert_eq!(sa + sb, RECIPIENTS as u64);
    assert!(sa > 0 && sb > 0, "both processes sent: {sa} and {sb}");
    drop(project);

    // One killed mid-way: the other takes its rows over once the lease
    // expires and finishes the send.
    let db = TestDb::postgres().await.expect("PostgreSQL");
    let smtp = SmtpRecorder::start();
    let project = project_for(&db, &smtp);
    let (mut a, b) = (spawn_send(&project), spawn_send(&project));
    let deadline = Instant::now() + Duration::from_secs(60);
    while smtp.received().len() < RECIPIENTS / 4 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill().expect("SIGKILL");
    a.wait().unwrap();
    let at_kill = smtp.received().len();
    assert!(at_kill < RECIPIENTS, "killed mid-way: {at_kill}");
    let rb = finish(b);
    assert_eq!(rb["tally"]["accepted"], RECIPIENTS as u64, "{rb}");
    assert_eq!(rb["tally"]["sending"], 0);
    assert!(
        rb["in_flight_resent"].as_u64().unwrap() > 0,
        "the survivor took over the killed process's claims: {rb}"
    );
    let counts = smtp.count_by_recipient();
    assert_eq!(counts.len(), RECIPIENTS, "every recipient");
    let twice: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "killed after {at_kill} accepted; the survivor took over {} rows; {twice} second copies",
        rb["in_flight_resent"]
    );
    // Only what the killed process had on the wire or accepted and not yet
    // recorded can arrive twice: four per worker (docs/SENDING.md).
    assert!(
        twice <= 4 * CONCURRENCY,
        "{twice} recipients got a second copy; the window is {}",
        4 * CONCURRENCY
    );
}
