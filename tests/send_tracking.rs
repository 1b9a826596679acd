//! Whether a send's message carried open or click tracking is recorded per
//! send (`sends.tracked`, issue 16 item 13): on when the campaign's
//! [tracking] asks for it and `[serve]` is configured, off otherwise, and
//! the message carries a pixel exactly when it is on. `hygiene run
//! --sunset-days` takes silence as evidence only after tracked mail, and
//! says how many contacts it left active for lack of it. Real binary,
//! outbox transport, both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};

const DAY: i64 = 24 * 3600 * 1000;

async fn tracked(db: &TestDb, campaign: &str) -> Vec<(String, Option<i64>)> {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_as(
            "SELECT s.email, s.tracked FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             WHERE c.slug = $1 ORDER BY s.email",
        )
        .bind(campaign)
        .fetch_all(pool)
        .await
        .expect("sends")
    })
}

async fn exec(db: &TestDb, sql: &str) {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query(sql).execute(pool).await.expect(sql);
    });
}

/// The HTML bodies of the messages a campaign wrote to the outbox, decoded.
fn outbox(p: &Project, slug: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p.file(&format!("outbox/{slug}"))).expect("outbox") {
        let raw = std::fs::read(e.expect("entry").path()).expect("eml");
        let msg = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a parseable message");
        out.push(msg.body_html(0).map(|h| h.into_owned()).unwrap_or_default());
    }
    assert!(!out.is_empty(), "nothing in outbox/{slug}");
    out
}

fn campaign(name: &str, tracking: &str) -> String {
    format!(
        "name = \"{name}\"\nsubject = \"Hola\"\nfrom = \"Shop <news@shop.example>\"\n\
         list = \"newsletter\"\n\n[template]\nhtml = \"c.html\"\n{tracking}"
    )
}

fn has_pixel(eml: &str) -> bool {
    eml.contains("https://news.shop.example/o/")
}

#[tokio::test]
async fn tracking_is_recorded_per_send_and_sunset_counts_only_tracked_mail() {
    for db in TestDb::all().await {
        let serve = "[serve]\nlisten = \"127.0.0.1:0\"\n";
        let p = Project::new(&db, serve);
        let out = p.import(
            "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));

        // No [tracking] in the campaign, [serve] on: tracked, with a pixel.
        p.write("campaigns/tracked.toml", &campaign("Tracked", ""));
        p.ok(&["campaign", "send", "campaigns/tracked.toml"]);
        assert_eq!(
            tracked(&db, "tracked").await,
            vec![
                ("ana@example.com".into(), Some(1)),
                ("bob@example.com".into(), Some(1))
            ]
        );
        assert!(outbox(&p, "tracked").iter().all(|m| has_pixel(m)));

        // Cara joins; the campaign turns tracking off: no pixel, no click
        // redirect, recorded as untracked.
        let out = p.import("email,first_name,city\ncara@example.com,Cara,Porto\n");
        assert!(out.status.success(), "{}", stderr(&out));
        p.write(
            "campaigns/quiet.toml",
            &campaign("Quiet", "\n[tracking]\nopens = false\nclicks = false\n"),
        );
        p.ok(&["campaign", "send", "campaigns/quiet.toml"]);
        assert!(
            tracked(&db, "quiet")
                .await
                .iter()
                .all(|(_, t)| *t == Some(0)),
            "{:?}",
            tracked(&db, "quiet").await
        );
        for m in outbox(&p, "quiet") {
            assert!(
                !has_pixel(&m) && !m.contains("https://news.shop.example/c/"),
                "{m}"
            );
        }

        // Without [serve] nothing can be tracked, whatever the campaign says.
        let toml = std::fs::read_to_string(p.file("cartero.toml")).unwrap();
        p.write("cartero.toml", &toml.replace(serve, ""));
        p.write("campaigns/plain.toml", &campaign("Plain", ""));
        p.ok(&["campaign", "send", "campaigns/plain.toml"]);
        assert!(
            tracked(&db, "plain")
                .await
                .iter()
                .all(|(_, t)| *t == Some(0))
        );
        assert!(!outbox(&p, "plain").iter().any(|m| has_pixel(m)));

        // A year later, nobody has opened anything. Ana and Bob got tracked
        // mail, so their silence is evidence; Cara never did, nor did Dan,
        // whose only send predates the record (NULL: unknown).
        let now = cartero::domain::time::now_millis();
        exec(
            &db,
            &format!("UPDATE contacts SET created_at = {}", now - 400 * DAY),
        )
        .await;
        exec(
            &db,
            &format!("UPDATE sends SET created_at = {}", now - 300 * DAY),
        )
        .await;
        let out = p.import("email,first_name,city\ndan@example.com,Dan,Faro\n");
        assert!(out.status.success(), "{}", stderr(&out));
        exec(
            &db,
            &format!(
                "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
                 SELECT (SELECT id FROM campaigns WHERE slug = 'plain'), id, email, 'accepted', {0}, {0} \
                 FROM contacts WHERE email = 'dan@example.com'",
                now - 300 * DAY
            ),
        )
        .await;
        exec(
            &db,
            &format!(
                "UPDATE contacts SET send_count = 1, created_at = {} WHERE email = 'dan@example.com'",
                now - 400 * DAY
            ),
        )
        .await;

        let json = p.ok(&[
            "hygiene",
            "run",
            "--sunset-days",
            "30",
            "--dry-run",
            "--format",
            "json",
        ]);
        let r: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            (r["sunset"].as_u64(), r["sunset_no_evidence"].as_u64()),
            (Some(2), Some(2)),
            "{json}"
        );
        let table = p.ok(&["hygiene", "run", "--sunset-days", "30", "--dry-run"]);
        assert!(
            table.contains("would: ana@example.com")
                && table.contains("would: bob@example.com")
                && !table.contains("cara@example.com")
                && !table.contains("dan@example.com"),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("left active") && l.contains(" 2 ")),
            "the summary says who was left out for lack of evidence: {table}"
        );
    }
}
