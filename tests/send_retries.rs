//! Retries count the server's answers, not claims: kills and an SMTP outage
//! leave a temporarily refused recipient with its attempts intact; an outage
//! is announced at once, waited out for `smtp.outage_timeout_secs`, then ends
//! with its own exit status and a send that resumes.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::db::TestDb;
use common::project::{Project, stderr};
use common::servers::SmtpRecorder;

const RECIPIENTS: usize = 20;

fn config(port: u16) -> String {
    // One connection at 5 messages/s: a run takes seconds, long enough to
    // kill it while the last recipient is claimed and not yet tried.
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nconcurrency = 1\n\
         rate_limit = 5.0\nmax_attempts = 3\nretry_base_secs = 1\noutage_timeout_secs = 2\n"
    )
}

async fn row(db: &TestDb, email: &str) -> (String, i64, Option<String>) {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_as("SELECT state, attempts, smtp_reply FROM sends WHERE email = $1")
            .bind(email)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

/// Starts a send and kills it (SIGKILL) once the server received one more
/// message.
fn kill_after_one_more(project: &Project, recorder: &SmtpRecorder) {
    let before = recorder.received().len();
    let mut child = project
        .command(&["campaign", "send", "campaigns/c.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cartero");
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorder.received().len() <= before {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the send ended ({status}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "the send made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_and_an_outage_leave_a_refused_recipients_attempts_intact() {
    for db in TestDb::all().await {
        let recorder = SmtpRecorder::start();
        let project = Project::new(&db, &config(recorder.port()));
        // The recipient the server refuses for now (451) comes last, so each
        // killed run has claimed it without trying it.
        let mut csv = String::from("email,first_name,city\n");
        for i in 0..RECIPIENTS {
            csv.push_str(&format!("user{i:02}@example.org,User{i},City{i}\n"));
        }
        csv.push_str("tempfail@example.org,Temp,Fail\n");
        let out = project.import(&csv);
        assert!(out.status.success(), "{}", stderr(&out));

        for _ in 0..4 {
            kill_after_one_more(&project, &recorder);
        }
        let (state, attempts, _) = row(&db, "tempfail@example.org").await;
        assert_eq!(
            (state.as_str(), attempts),
            ("sending", 0),
            "four claims by killed runs are not attempts"
        );

        // The server goes away: the send says so at once, waits out
        // smtp.outage_timeout_secs, and stops with exit status 4.
        let port = recorder.port();
        drop(recorder);
        let started = Instant::now();
        let out = project.run(&["campaign", "send", "campaigns/c.toml"]);
        let waited = started.elapsed();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "an outage exits 4: {err}");
        assert!(
            err.contains(&format!("cannot reach the SMTP server 127.0.0.1:{port}"))
                && err.contains("up to 2 s"),
            "the outage and what cartero does are announced: {err}"
        );
        assert!(
            err.contains("could not be reached for 2 s") && err.contains("run the same command"),
            "the send ends with a clear message: {err}"
        );
        assert!(
            waited >= Duration::from_secs(2),
            "it kept trying: {waited:?}"
        );
        assert_eq!(row(&db, "tempfail@example.org").await.1, 0);

        // The server is back (on another port): the send resumes; the 451
        // recipient gets exactly max_attempts = 3 real tries.
        let recorder = SmtpRecorder::start();
        let toml = std::fs::read_to_string(project.file("cartero.toml")).unwrap();
        project.write(
            "cartero.toml",
            &toml.replace(
                &format!("port = {port}"),
                &format!("port = {}", recorder.port()),
            ),
        );
        let out = project.run(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        assert_eq!(report["tally"]["accepted"], RECIPIENTS as u64, "{report}");
        let (state, attempts, reply) = row(&db, "tempfail@example.org").await;
        let reply = reply.unwrap_or_default();
        assert_eq!((state.as_str(), attempts), ("failed", 3), "{reply}");
        assert!(reply.contains("gave up after 3 attempts"), "{reply}");
    }
}
