//! A slow recipient domain does not hold up the others (issue 16, item 10).
//! The loopback recorder withholds its reply to every message for one
//! domain until the test releases it: a receiver as slow as it gets, with no
//! timing in the assertions. Every recipient at the other domains must be
//! accepted while the slow domain is still being served, and once released
//! everyone is accepted exactly once.

mod common;

use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::db::TestDb;
use common::project::{Project, stderr};
use common::servers::SmtpRecorder;

const FAST: usize = 60;
const SLOW: usize = 8;
const SLOW_DOMAIN: &str = "slow.example.org";

#[tokio::test(flavor = "multi_thread")]
async fn other_domains_are_accepted_while_a_slow_domain_is_still_being_served() {
    for db in TestDb::all().await {
        let recorder = SmtpRecorder::start_holding(SLOW_DOMAIN);
        // The defaults (slow_domain_ms = 1000, one connection for a slow
        // domain while other work waits), four workers.
        let project = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 4\n",
                recorder.port()
            ),
        );
        // The slow domain's recipients are spread through the list, one in
        // every nine, so that every claimed batch holds some.
        let mut csv = String::from("email,first_name,city\n");
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        for i in 0..FAST + SLOW {
            let email = if i % 9 == 4 && slow.len() < SLOW {
                slow.push(format!("user{i:02}@{SLOW_DOMAIN}"));
                slow.last().cloned()
            } else {
                fast.push(format!("user{i:02}@d{}.example.org", i % 5));
                fast.last().cloned()
            }
            .unwrap();
            csv.push_str(&format!("{email},User{i},City{i}\n"));
        }
        assert_eq!((fast.len(), slow.len()), (FAST, SLOW));
        let out = project.import(&csv);
        assert!(out.status.success(), "{}", stderr(&out));

        let mut child = project
            .command(&["campaign", "send", "campaigns/c.toml", "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cartero");
        // Every fast recipient arrives while the slow domain's messages are
        // still unanswered. Before the gate, each worker sat on a message
        // to the slow domain and the fast ones behind it never came.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = recorder.count_by_recipient();
            if fast.iter().all(|r| got.contains_key(r)) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} of {FAST} fast recipients accepted while the slow domain held {} \
                     messages ({})",
                    fast.iter().filter(|r| got.contains_key(*r)).count(),
                    recorder.held(),
                    db.url
                );
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the send ended while the slow domain had not answered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = recorder.count_by_recipient();
        assert!(
            slow.iter().all(|r| !got.contains_key(r)),
            "nothing to the slow domain was accepted yet: {got:?}"
        );
        assert!(
            recorder.held() >= 1,
            "the slow domain is being served meanwhile, not left aside"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the send waits for the slow domain"
        );

        recorder.release();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "{status}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
        assert_eq!(
            report["tally"]["accepted"],
            (FAST + SLOW) as u64,
            "{report}"
        );
        assert_eq!(report["tally"]["deferred"], 0, "{report}");
        let counts = recorder.count_by_recipient();
        assert_eq!(counts.len(), FAST + SLOW, "{counts:?}");
        assert!(
            counts.values().all(|n| *n == 1),
            "everyone exactly once: {counts:?}"
        );
        // In arrival order, every fast recipient came before the first
        // message to the slow domain.
        let order: Vec<String> = recorder
            .received()
            .into_iter()
            .flat_map(|m| m.rcpt_to)
            .collect();
        let first_slow = order.iter().position(|r| r.ends_with(SLOW_DOMAIN)).unwrap();
        assert_eq!(first_slow, FAST, "{order:?}");
    }
}

/// A server that, once reached, leaves a message unanswered past
/// `smtp.data_timeout_secs` defers it: counted as an attempt, the reply says
/// which step timed out, the summary counts it by reason, and the others
/// are accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_never_comes_is_a_counted_deferral_after_its_timeout() {
    for db in TestDb::all().await {
        let recorder = SmtpRecorder::start_holding("hang.example.org");
        let project = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 2\n\
                 data_timeout_secs = 1\nretry_base_secs = 600\n",
                recorder.port()
            ),
        );
        let out = project.import(
            "email,first_name,city\nann@d1.example.org,Ann,A\nstuck@hang.example.org,Stu,B\n\
             bob@d2.example.org,Bob,C\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = project.run(&[
            "campaign",
            "send",
            "campaigns/c.toml",
            "--no-wait",
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(report["tally"]["accepted"], 2, "{report}");
        assert_eq!(report["tally"]["deferred"], 1, "{report}");
        assert_eq!(
            report["deferred_by_reason"]["no reply from the server in time (timeout)"], 1,
            "{report}"
        );
        let (state, attempts, reply): (String, i64, Option<String>) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as("SELECT state, attempts, smtp_reply FROM sends WHERE email = $1")
                .bind("stuck@hang.example.org")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!((state.as_str(), attempts), ("deferred", 1), "{reply:?}");
        assert_eq!(
            reply.as_deref(),
            Some("timed out: no reply to the message content within 1 s (smtp.data_timeout_secs)")
        );
    }
}
