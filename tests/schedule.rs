//! The scheduler (issue 19): campaigns with `schedule` or `send_at` send by
//! themselves from `cartero serve`, each occurrence once across restarts and
//! nodes; `campaign pause|resume|cancel` act on a running send from the
//! command line, on every node, within seconds. The clock is stepped for the
//! schedule's rules (no sleeping); the end-to-end tests run the real server.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cartero::campaign::Campaign;
use cartero::domain::time::{Millis, now_millis, parse_instant, to_rfc3339};
use cartero::schedule;
use common::db::TestDb;
use common::project::{Project, stderr};
use common::serve::Served;

fn ms(rfc: &str) -> Millis {
    parse_instant(rfc, 0).unwrap()
}

const HOUR: i64 = 3_600_000;

/// The tests that send thousands of messages through several nodes take
/// turns: run side by side on a two-core machine, lease renewals starve.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const DAY: i64 = 24 * HOUR;

fn write_campaign(project: &Project, file: &str, timing: &str) {
    project.write(
        &format!("campaigns/{file}"),
        &format!(
            "name = \"Scheduled\"\nsubject = \"Hola {{{{ contact.first_name }}}}\"\n\
             from = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n{timing}\n\n\
             [template]\nhtml = \"c.html\"\n"
        ),
    );
}

fn scheduled(project: &Project) -> Vec<Campaign> {
    let (c, errors) =
        schedule::load_scheduled(&project.file("campaigns"), &project.file("templates")).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    c
}

async fn runs_of(
    store: &cartero::store::Store,
    slug: &str,
) -> Vec<(String, String, Option<String>)> {
    cartero::dispatch!(store, pool => {
        sqlx::query_as::<_, (String, String, Option<String>)>(
            "SELECT r.occurrence, r.state, r.note FROM campaign_runs r JOIN campaigns c ON c.id = r.campaign_id \
             WHERE c.slug = $1 ORDER BY r.occurrence",
        )
        .bind(slug)
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn each_occurrence_gets_one_run_across_looks_restarts_and_nodes() {
    for db in TestDb::all().await {
        let project = Project::new(&db, "");
        write_campaign(
            &project,
            "weekly.toml",
            "schedule = \"0 9 * * MON\"\ntimezone = \"Europe/Madrid\"",
        );
        let campaigns = scheduled(&project);
        // Monday 7 December 2026, 09:00 in Madrid is 08:00 UTC.
        let monday = ms("2026-12-07T08:00:00Z");
        let s = &db.store;

        let r = schedule::tick(s, &campaigns, monday - 60_000)
            .await
            .unwrap();
        assert!(
            r.created.is_empty(),
            "nothing is due a minute before: {r:?}"
        );
        let r = schedule::tick(s, &campaigns, monday + 30_000)
            .await
            .unwrap();
        assert_eq!(
            r.created,
            vec![("weekly".to_string(), "2026-12-07T08:00:00Z".to_string())]
        );
        // Another look, another process's look (a second store on the same
        // database), and a look after a restart: nothing new.
        assert!(
            schedule::tick(s, &campaigns, monday + 40_000)
                .await
                .unwrap()
                .created
                .is_empty()
        );
        let other = cartero::store::Store::open(&db.url).await.unwrap();
        assert!(
            schedule::tick(&other, &campaigns, monday + 50_000)
                .await
                .unwrap()
                .created
                .is_empty()
        );
        other.close().await;
        // A node whose clock is behind looks again at an earlier time: the
        // occurrence is still decided.
        assert!(
            schedule::tick(s, &campaigns, monday + 10_000)
                .await
                .unwrap()
                .created
                .is_empty()
        );

        let r = schedule::tick(s, &campaigns, monday + 7 * DAY + 5_000)
            .await
            .unwrap();
        assert_eq!(
            r.created,
            vec![("weekly".to_string(), "2026-12-14T08:00:00Z".to_string())]
        );
        let runs = runs_of(s, "weekly").await;
        assert_eq!(
            runs.iter()
                .map(|r| (r.0.as_str(), r.1.as_str()))
                .collect::<Vec<_>>(),
            [
                ("2026-12-07T08:00:00Z", "pending"),
                ("2026-12-14T08:00:00Z", "pending")
            ]
        );
        let due = cartero::store::runs::due(s).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|d| d.trigger == "schedule"));

        // What runs next, and why.
        let list = schedule::list(s, &campaigns, monday + 7 * DAY + 10_000)
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].next.as_deref(), Some("2026-12-21T08:00:00Z"));
        assert!(list[0].why.contains("being sent"), "{:?}", list[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_occurrences_are_sent_late_once_or_skipped_as_the_file_says() {
    for db in TestDb::all().await {
        let project = Project::new(&db, "");
        write_campaign(
            &project,
            "late.toml",
            "schedule = \"0 9 * * *\"\nmissed = \"send\"",
        );
        write_campaign(
            &project,
            "strict.toml",
            "schedule = \"0 9 * * *\"\nmissed = \"skip\"",
        );
        let campaigns = scheduled(&project);
        let s = &db.store;
        let first_sight = ms("2026-12-01T12:00:00Z");
        let r = schedule::tick(s, &campaigns, first_sight).await.unwrap();
        assert!(r.created.is_empty() && r.skipped.is_empty(), "{r:?}");
        // cartero was down from then until two hours after the third
        // occurrence (2, 3 and 4 December at 09:00).
        let back = ms("2026-12-04T11:00:00Z");
        schedule::tick(s, &campaigns, back).await.unwrap();

        let late = runs_of(s, "late").await;
        assert_eq!(late.len(), 3, "{late:?}");
        assert_eq!(late[0].1, "skipped");
        assert!(
            late[0]
                .2
                .as_deref()
                .unwrap()
                .contains("later occurrence (2026-12-04T09:00:00Z) was sent instead"),
            "{late:?}"
        );
        assert_eq!(late[1].1, "skipped");
        assert_eq!(
            (late[2].0.as_str(), late[2].1.as_str()),
            ("2026-12-04T09:00:00Z", "pending")
        );

        let strict = runs_of(s, "strict").await;
        assert_eq!(strict.len(), 3);
        assert!(strict.iter().all(|r| r.1 == "skipped"), "{strict:?}");
        assert!(
            strict[2]
                .2
                .as_deref()
                .unwrap()
                .contains("2 h after its time"),
            "{strict:?}"
        );

        // Skipped occurrences are decided: no later look sends them.
        schedule::tick(s, &campaigns, back + HOUR).await.unwrap();
        assert_eq!(runs_of(s, "strict").await, strict);
        let due: Vec<String> = cartero::store::runs::due(s)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.slug)
            .collect();
        assert_eq!(due, ["late"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_at_long_past_when_first_seen_never_fires_and_says_so() {
    for db in TestDb::all().await {
        let project = Project::new(&db, "");
        write_campaign(&project, "old.toml", "send_at = 2026-11-01T09:00:00Z");
        write_campaign(&project, "now.toml", "send_at = 2026-12-04T08:59:00+00:00");
        let campaigns = scheduled(&project);
        let s = &db.store;
        let now = ms("2026-12-04T09:00:00Z");
        let r = schedule::tick(s, &campaigns, now).await.unwrap();
        assert_eq!(
            r.created,
            vec![("now".to_string(), "2026-12-04T08:59:00Z".to_string())]
        );
        assert!(runs_of(s, "old").await.is_empty());
        let list = schedule::list(s, &campaigns, now).await.unwrap();
        let old = list.iter().find(|e| e.campaign == "old").unwrap();
        assert!(
            old.why
                .contains("passed before cartero first saw this file"),
            "{old:?}"
        );
        assert_eq!(old.next, None);
        let r = schedule::tick(s, &campaigns, now + DAY).await.unwrap();
        assert!(r.created.is_empty(), "a send_at fires once: {r:?}");
    }
}

#[test]
fn schedule_list_names_a_broken_file_at_its_line_and_fails() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::sqlite());
    let project = Project::new(&db, "");
    write_campaign(&project, "good.toml", "schedule = \"30 8 * * MON-FRI\"");
    write_campaign(&project, "bad.toml", "schedule = \"0 9 * * 1\"");
    let out = project.run(&["schedule", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("good") && text.contains("cron \"30 8 * * MON-FRI\" (UTC)"),
        "{text}"
    );
    assert!(
        text.contains("bad.toml:5:12") && text.contains("by name"),
        "{text}"
    );
    // The manual campaign c.toml is not listed.
    let json = project.run(&["schedule", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
}

fn contacts_csv(n: usize) -> String {
    let mut csv = String::from("email,first_name,city\n");
    for i in 0..n {
        csv.push_str(&format!("user{i}@example.org,User{i},City{i}\n"));
    }
    csv
}

/// The outbox messages of campaign `slug`, counted per recipient.
fn outbox_recipients(project: &Project, slug: &str) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    let Ok(dir) = std::fs::read_dir(project.file(&format!("outbox/{slug}"))) else {
        return by;
    };
    for e in dir {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let raw = std::fs::read(&p).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_string();
        *by.entry(to).or_default() += 1;
    }
    by
}

async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_serve_nodes_send_a_due_campaign_once_to_each_recipient() {
    for db in TestDb::all().await {
        let project = Project::new(
            &db,
            "[serve]\nlisten = \"127.0.0.1:0\"\n[schedule]\ninterval_secs = 1\n",
        );
        let out = project.import(&contacts_csv(120));
        assert!(out.status.success(), "{}", stderr(&out));
        let at = to_rfc3339(now_millis() - 20_000);
        write_campaign(&project, "flash.toml", &format!("send_at = {at}"));

        let a = Served::start(&project, &db).await;
        let b = Served::start(&project, &db).await;
        wait_until("120 messages in the outbox", 60, || {
            outbox_recipients(&project, "flash").values().sum::<usize>() >= 120
        })
        .await;
        // Further looks by both nodes change nothing.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = outbox_recipients(&project, "flash");
        assert_eq!(got.len(), 120, "every recipient");
        assert!(
            got.values().all(|n| *n == 1),
            "each once: {:?}",
            got.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
        );
        let runs = runs_of(&db.store, "flash").await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].1, "finished");
        a.stop().await;
        b.stop().await;

        // A restart sends nothing again.
        let c = Served::start(&project, &db).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            outbox_recipients(&project, "flash").values().sum::<usize>(),
            120
        );
        c.stop().await;
    }
}

async fn accepted(store: &cartero::store::Store, slug: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             WHERE c.slug = $1 AND s.state = 'accepted'",
        )
        .bind(slug)
        .fetch_one(pool)
        .await
        .unwrap()
    })
}

/// The accepted count of `slug` once it has not moved for `quiet`.
async fn settled(store: &cartero::store::Store, slug: &str, quiet: Duration) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = accepted(store, slug).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = accepted(store, slug).await;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "the accepted count never settled: {last}"
        );
    }
}

async fn skipped_cancelled(store: &cartero::store::Store, slug: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             WHERE c.slug = $1 AND s.state = 'skipped' AND s.skip_reason = 'cancelled'",
        )
        .bind(slug)
        .fetch_one(pool)
        .await
        .unwrap()
    })
}

/// A project whose scheduled campaign `slow` goes at 40 messages a second
/// to Postfix's smtp-sink, so a pause lands mid-send.
fn slow_project(db: &TestDb, sink_port: u16, recipients: usize) -> Project {
    let project = Project::new(
        db,
        &format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\n[schedule]\ninterval_secs = 1\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {sink_port}\ntls = \"none\"\nconcurrency = 2\nrate_limit = 40.0\n"
        ),
    );
    let out = project.import(&contacts_csv(recipients));
    assert!(out.status.success(), "{}", stderr(&out));
    let at = to_rfc3339(now_millis() - 5_000);
    write_campaign(&project, "slow.toml", &format!("send_at = {at}"));
    project
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_stops_every_node_within_seconds_and_resume_finishes_exactly_once() {
    let _turn = HEAVY.lock().await;
    // The scheduler's log lines, shown when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("cartero=info")
        .with_test_writer()
        .try_init();
    for db in TestDb::all().await {
        let Some(sink) = common::servers::SmtpSink::start() else {
            common::servers::unavailable("smtp-sink", "Postfix's smtp-sink is not installed");
            continue;
        };
        let project = slow_project(&db, sink.port(), 400);
        let a = Served::start(&project, &db).await;
        let b = Served::start(&project, &db).await;
        let deadline = Instant::now() + Duration::from_secs(180);
        while accepted(&db.store, "slow").await < 40 {
            assert!(
                Instant::now() < deadline,
                "the scheduled send did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = project.ok(&["campaign", "pause", "slow", "--reason", "wrong price"]);
        assert!(out.contains("paused slow"), "{out}");
        let paused = Instant::now();
        // Within seconds no node delivers any more: the count settles
        // (messages on the wire finish) and then stays.
        let at_pause = settled(&db.store, "slow", Duration::from_secs(2)).await;
        eprintln!(
            "settled {:.1} s after the pause",
            paused.elapsed().as_secs_f64()
        );
        assert!(
            paused.elapsed() < Duration::from_secs(15),
            "the pause took {:?}",
            paused.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            accepted(&db.store, "slow").await,
            at_pause,
            "a paused campaign kept sending"
        );
        assert!(at_pause < 400, "paused before the end: {at_pause}");
        let list = project.ok(&["schedule", "list"]);
        assert!(
            list.contains("paused since") && list.contains("wrong price"),
            "{list}"
        );
        // Nothing is held by a node while paused: every unsent row is pending.
        let sending: i64 = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM sends WHERE state = 'sending'").fetch_one(pool).await.unwrap()
        });
        assert_eq!(sending, 0, "claims released on pause");

        let out = project.ok(&["campaign", "resume", "slow"]);
        assert!(out.contains("resumed slow"), "{out}");
        let resumed = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(300);
        while accepted(&db.store, "slow").await < 400 {
            assert!(
                Instant::now() < deadline,
                "the resumed send did not finish: {} accepted, runs {:?}",
                accepted(&db.store, "slow").await,
                runs_of(&db.store, "slow").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{:?}: paused at {at_pause}; the rest sent {:.1} s after the resume",
            db.backend(),
            resumed.elapsed().as_secs_f64()
        );
        let total: i64 = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM sends").fetch_one(pool).await.unwrap()
        });
        assert_eq!(total, 400, "one row per recipient in the one run");
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_skips_what_was_not_sent_and_a_manual_send_of_a_paused_campaign_waits() {
    let _turn = HEAVY.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("cartero=info")
        .with_test_writer()
        .try_init();
    for db in TestDb::all().await {
        let Some(sink) = common::servers::SmtpSink::start() else {
            common::servers::unavailable("smtp-sink", "Postfix's smtp-sink is not installed");
            continue;
        };
        let project = slow_project(&db, sink.port(), 300);
        let a = Served::start(&project, &db).await;
        let deadline = Instant::now() + Duration::from_secs(180);
        while accepted(&db.store, "slow").await < 20 {
            assert!(
                Instant::now() < deadline,
                "the scheduled send did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = project.ok(&[
            "campaign",
            "cancel",
            "slow",
            "--reason",
            "sent to the wrong list",
        ]);
        assert!(out.contains("cancelled 1 run(s) of slow"), "{out}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sent = accepted(&db.store, "slow").await;
        let cancelled = skipped_cancelled(&db.store, "slow").await;
        assert_eq!(
            sent + cancelled,
            300,
            "every row is sent or skipped as cancelled: {sent} + {cancelled}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            accepted(&db.store, "slow").await,
            sent,
            "a cancelled run kept sending"
        );
        let runs = runs_of(&db.store, "slow").await;
        assert_eq!(runs[0].1, "cancelled");
        assert_eq!(runs[0].2.as_deref(), Some("sent to the wrong list"));
        a.stop().await;

        // The manual campaign of the project, paused ahead by its file:
        // `campaign send` sends nothing and says so (exit 5).
        project.ok(&["campaign", "pause", "campaigns/c.toml"]);
        let out = project.run(&["campaign", "send", "campaigns/c.toml"]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("PAUSED"));
        assert_eq!(accepted(&db.store, "c").await, 0);
        project.ok(&["campaign", "resume", "c"]);
        let out = project.ok(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["tally"]["accepted"], 300, "{v}");
    }
}

/// `cartero serve` as its own process (the real binary), on a free port.
fn spawn_serve(project: &Project, n: usize) -> std::process::Child {
    // Each node's log in the project folder, to read when the test fails.
    let log = std::fs::File::create(project.file(&format!("serve-{n}.log"))).unwrap();
    project
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn cartero serve")
}

#[tokio::test(flavor = "multi_thread")]
async fn four_serve_processes_share_a_scheduled_send_and_finish_it_when_one_is_killed() {
    let _turn = HEAVY.lock().await;
    use cartero::store::Backend;
    let Some(db) = TestDb::all()
        .await
        .into_iter()
        .find(|d| d.backend() == Backend::Postgres)
    else {
        eprintln!("PostgreSQL only: several nodes share one PostgreSQL database");
        return;
    };
    const N: usize = 20_000;
    const CONCURRENCY: usize = 2;
    let smtp = common::servers::SmtpRecorder::start();
    // A 5 s lease lets the others take the killed node's rows over soon.
    let project = Project::new(
        &db,
        &format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\n[schedule]\ninterval_secs = 1\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = {CONCURRENCY}\nlease_secs = 5\n",
            smtp.port()
        ),
    );
    let out = project.import(&contacts_csv(N));
    assert!(out.status.success(), "{}", stderr(&out));
    write_campaign(
        &project,
        "big.toml",
        &format!("send_at = {}", to_rfc3339(now_millis() - 5_000)),
    );

    let mut nodes: Vec<std::process::Child> = (0..4).map(|n| spawn_serve(&project, n)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while smtp.received().len() < N / 4 {
        assert!(
            Instant::now() < deadline,
            "the scheduled send made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[0].kill().expect("SIGKILL");
    nodes[0].wait().unwrap();
    let at_kill = smtp.received().len();
    assert!(at_kill < N, "killed mid-way: {at_kill}");

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let finished: i64 = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM campaign_runs WHERE state = 'finished'")
                .fetch_one(pool).await.unwrap()
        });
        if finished == 1 {
            break;
        }
        if Instant::now() >= deadline {
            for n in 0..4 {
                let log = std::fs::read_to_string(project.file(&format!("serve-{n}.log")))
                    .unwrap_or_default();
                eprintln!(
                    "--- node {n}\n{}",
                    log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
                );
            }
            panic!(
                "the survivors did not finish: {} received",
                smtp.received().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut n in nodes.drain(1..) {
        // SIGTERM: drain and exit 0.
        let _ = std::process::Command::new("kill")
            .arg(n.id().to_string())
            .status();
        let status = n.wait().unwrap();
        assert!(status.success(), "a node exited with {status} on SIGTERM");
    }
    let counts = smtp.count_by_recipient();
    assert_eq!(counts.len(), N, "every recipient");
    let twice: usize = counts.values().map(|n| n - 1).sum();
    // Only what the killed node had on the wire, or accepted and not yet
    // recorded, can arrive twice: four per worker (docs/SENDING.md).
    eprintln!("killed after {at_kill} accepted; {twice} second copies");
    assert!(
        twice <= 4 * CONCURRENCY,
        "{twice} second copies; the window is {}",
        4 * CONCURRENCY
    );
    let runs = runs_of(&db.store, "big").await;
    assert_eq!(
        runs.len(),
        1,
        "one occurrence, one run, whatever the nodes: {runs:?}"
    );
}
