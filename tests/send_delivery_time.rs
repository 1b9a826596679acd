//! Per-contact delivery time (`[delivery]` in a campaign file): quiet hours
//! in each contact's own time zone hold their message until they end, and
//! `best_hour` sends at the hour a contact reads most (human opens and
//! clicks only). Through the real binary, on both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};

const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn due_of(db: &TestDb, email: &str) -> (String, Option<i64>) {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_as(
            "SELECT s.state, s.next_attempt_at FROM sends s JOIN contacts c ON c.id = s.contact_id \
             WHERE c.email = $1",
        )
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap()
    })
}

fn send(p: &Project, file: &str) -> serde_json::Value {
    p.send_tally(&format!("campaigns/{file}"), &["--no-wait"])
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_hours_hold_each_contact_by_their_own_clock_and_release_at_the_end() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        // The quiet span is the current UTC hour and the next: it holds the
        // contact on UTC, and not the one six hours ahead (Etc/GMT-6 is
        // UTC+6 in the POSIX sign convention the zone names keep).
        let now = now_ms();
        let h = (now / HOUR).rem_euclid(24);
        let (start, end) = (h, (h + 2) % 24);
        let out = p.import(
            "email,first_name,city,timezone\nutc@example.org,U,X,UTC\nasia@example.org,A,X,Etc/GMT-6\n\
             none@example.org,N,X,\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        p.write(
            "campaigns/quiet.toml",
            &format!(
                "name = \"Quiet\"\nsubject = \"Hi\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n\
                 [template]\nhtml = \"c.html\"\n[delivery]\nquiet_hours = \"{start:02}:00-{end:02}:00\"\n\
                 default_timezone = \"Etc/GMT-6\"\n"
            ),
        );
        let tally = send(&p, "quiet.toml");
        assert_eq!(tally["accepted"], 2, "{tally}");
        let (state, due) = due_of(&db, "utc@example.org").await;
        assert_eq!(state, "pending");
        let expected = (now / HOUR - (now / HOUR).rem_euclid(24) + h + 2) * HOUR;
        assert_eq!(due, Some(expected), "held until {end:02}:00 UTC");
        assert_eq!(due_of(&db, "asia@example.org").await.0, "accepted");
        // No zone of their own: the campaign's default, six hours ahead.
        assert_eq!(due_of(&db, "none@example.org").await.0, "accepted");
        let status = p.run(&["campaign", "status", "quiet", "--format", "json"]);
        assert!(status.status.success(), "{}", stderr(&status));
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["waiting_for_delivery_time"], 1, "{status}");
        assert_eq!(status["next_delivery_time"], expected, "{status}");

        // The quiet hours end (the row's time is moved to the past).
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE sends SET next_attempt_at = $1 WHERE state = 'pending'")
                .bind(now - 1)
                .execute(pool)
                .await
                .unwrap();
        });
        let tally = send(&p, "quiet.toml");
        assert_eq!(tally["accepted"], 3, "{tally}");
        assert_eq!(tally["pending"], 0, "{tally}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn best_hour_follows_human_opens_and_ignores_machine_ones() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import("email,first_name,city\nreader@example.org,R,X\nnew@example.org,N,X\n");
        assert!(out.status.success(), "{}", stderr(&out));
        let now = now_ms();
        let h = (now / HOUR).rem_euclid(24);
        let human = (h + 5) % 24;
        let machine = (h + 9) % 24;
        let day0 = (now / HOUR - h) * HOUR - 10 * 24 * HOUR;
        // Three human opens at `human`, five machine opens at `machine`.
        let mut rows = Vec::new();
        for d in 0..3 {
            rows.push((
                day0 + d * 24 * HOUR + human * HOUR + 60_000,
                "{\"class\":\"human\"}",
            ));
        }
        for d in 0..5 {
            rows.push((
                day0 + d * 24 * HOUR + machine * HOUR + 60_000,
                "{\"class\":\"prefetch\"}",
            ));
        }
        for (at, data) in rows {
            cartero::dispatch!(&db.store, pool => {
                sqlx::query(
                    "INSERT INTO events (contact_id, kind, occurred_at, data) \
                     SELECT id, 'open', $1, $2 FROM contacts WHERE email = 'reader@example.org'",
                )
                .bind(at)
                .bind(data)
                .execute(pool)
                .await
                .unwrap();
            });
        }
        p.write(
            "campaigns/best.toml",
            "name = \"Best\"\nsubject = \"Hi\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n\
             [template]\nhtml = \"c.html\"\n[delivery]\nbest_hour = true\n",
        );
        let tally = send(&p, "best.toml");
        // No history: at once.
        assert_eq!(tally["accepted"], 1, "{tally}");
        assert_eq!(due_of(&db, "new@example.org").await.0, "accepted");
        let (state, due) = due_of(&db, "reader@example.org").await;
        assert_eq!(state, "pending");
        let due = due.expect("timed");
        assert_eq!(
            (due / HOUR).rem_euclid(24),
            human,
            "the human hour, not the machine's"
        );
        assert_eq!(due % HOUR, 0);
        assert!(due > now && due <= now + 24 * HOUR);
    }
}

#[test]
fn a_bad_delivery_table_is_refused_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let p = dir.path();
    std::fs::create_dir_all(p.join("campaigns")).unwrap();
    std::fs::create_dir_all(p.join("templates")).unwrap();
    std::fs::write(p.join("templates/c.html"), "<p>hi</p>").unwrap();
    std::fs::write(p.join("cartero.toml"), "").unwrap();
    std::fs::write(
        p.join("campaigns/bad.toml"),
        "name = \"Bad\"\nsubject = \"Hi\"\nfrom = \"a@b.example\"\nlist = \"n\"\n[template]\nhtml = \"c.html\"\n\
         [delivery]\nquiet_hours = \"21:00 to 08:00\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(p)
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .args(["campaign", "check", "campaigns/bad.toml"])
        .env_remove("CARTERO_CONFIG")
        .env_remove("CARTERO_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:8:15") && err.contains("quiet_hours"),
        "{err}"
    );
}
