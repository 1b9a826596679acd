//! Suppression is checked again right before each message goes to the
//! server: an unsubscribe recorded while the send runs stops the next
//! message to that contact, even when the row was already claimed and its
//! message rendered.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::db::TestDb;
use common::project::{Project, stderr};
use common::servers::SmtpRecorder;

#[tokio::test(flavor = "multi_thread")]
async fn an_unsubscribe_recorded_mid_send_stops_the_next_message() {
    for db in TestDb::all().await {
        let recorder = SmtpRecorder::start();
        // One connection at one message a second: the whole list is claimed
        // and rendered in the first batch, and the last message goes out
        // about four seconds after the first.
        let project = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 1\nrate_limit = 1.0\n",
                recorder.port()
            ),
        );
        let out = project.import(
            "email,first_name,city\na@example.org,A,X\nb@example.org,B,X\nc@example.org,C,X\n\
             d@example.org,D,X\nlast@example.org,Last,X\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mut child = project
            .command(&["campaign", "send", "campaigns/c.toml", "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cartero");
        let deadline = Instant::now() + Duration::from_secs(30);
        while recorder.received().is_empty() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("nothing was sent: {}", stderr(&out));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The first message is out, so every row is claimed: now the last
        // contact unsubscribes (status and list consent, as the unsubscribe
        // endpoint records it).
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE contacts SET status = 'unsubscribed' WHERE email = 'last@example.org'")
                .execute(pool).await.unwrap();
            sqlx::query(
                "UPDATE contact_lists SET subscribed = 0 WHERE contact_id = \
                 (SELECT id FROM contacts WHERE email = 'last@example.org')",
            )
            .execute(pool).await.unwrap();
        });
        let claimed: String = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT state FROM sends WHERE email = 'last@example.org'")
                .fetch_one(pool).await.unwrap()
        });
        assert_eq!(
            claimed, "sending",
            "the row was claimed before the unsubscribe"
        );
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["tally"]["accepted"], 4, "{report}");
        assert_eq!(report["tally"]["skipped"]["unsubscribed"], 1, "{report}");
        let got = recorder.count_by_recipient();
        assert!(
            !got.contains_key("last@example.org"),
            "mailed after the unsubscribe: {got:?}"
        );
        assert_eq!(got.len(), 4, "{got:?}");
    }
}
