//! `compliance audit` on both backends: clean data passes; each planted
//! violation is named and the exit status says so.

mod common;

use cartero::domain::ConsentAction;
use cartero::domain::ledger_key::LedgerKeys;
use cartero::domain::time::now_millis;
use cartero::store::Store;
use cartero::store::consent::{Appender, ConsentEntry, Evidence};
use common::db::TestDb;
use common::project::{Project, stderr, stdout};

const KEY: &str = "audit-test-key-0123456789abcdef0123456789";

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

async fn withdraw(store: &Store, contact_id: i64, at: i64, details: serde_json::Value) {
    let keys = LedgerKeys::new(KEY, &[]).unwrap();
    let mut tx = store.begin().await.unwrap();
    let mut app = Appender::start_with(&mut tx, Some(&keys)).await.unwrap();
    app.append(
        &mut tx,
        &ConsentEntry {
            contact_id,
            list_id: Some(1),
            action: ConsentAction::Withdraw,
            occurred_at: at,
            evidence: Evidence {
                source: "one-click".into(),
                method: "one-click".into(),
                details,
                ..Default::default()
            },
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_names_each_planted_violation_and_exits_non_zero() {
    for db in TestDb::all().await {
        let p = Project::new(&db, &format!("[compliance]\nledger_key = \"{KEY}\"\n"));
        let out = p.import("email\na@example.com\nb@example.com\n");
        assert!(out.status.success(), "{}", stderr(&out));
        // c is a contact but never consented to the list.
        p.write("other.csv", "email\nc@example.com\n");
        p.ok(&["contacts", "import", "other.csv"]);
        let t = now_millis() + 60_000;
        exec(
            &db.store,
            "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
             VALUES ('spring', 'Spring', 'c.toml', 'x', 'newsletter', 1)",
        )
        .await;
        // A lawful send: a consented to newsletter.
        exec(
            &db.store,
            &format!(
                "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
                 VALUES (1, 1, 'a@example.com', 'accepted', {t}, {t})"
            ),
        )
        .await;
        let clean = p.run(&["compliance", "audit"]);
        assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
        assert!(
            stdout(&clean).contains("violations                   0"),
            "{}",
            stdout(&clean)
        );

        // b withdraws (asked three days before it was applied), then is mailed.
        withdraw(
            &db.store,
            2,
            t + 1_000,
            serde_json::json!({ "requested_at": t + 1_000 - 3 * 24 * 3600 * 1000 }),
        )
        .await;
        exec(
            &db.store,
            &format!(
                "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
                 VALUES (1, 2, 'b@example.com', 'accepted', {t}, {})",
                t + 2_000
            ),
        )
        .await;
        // c is mailed without consent; b's list state is forced back.
        exec(
            &db.store,
            &format!(
                "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
                 VALUES (1, 3, 'c@example.com', 'accepted', {t}, {t})"
            ),
        )
        .await;
        exec(
            &db.store,
            "UPDATE contact_lists SET subscribed = 1 WHERE contact_id = 2",
        )
        .await;

        let bad = p.run(&["compliance", "audit"]);
        assert_eq!(bad.status.code(), Some(4), "{}", stderr(&bad));
        let text = stdout(&bad);
        for expected in [
            "VIOLATION sent-after-withdrawal: send 2 of campaign spring to b@example.com",
            "VIOLATION sent-without-consent: send 3 of campaign spring to c@example.com",
            "VIOLATION withdrawal-not-applied: b@example.com",
            "VIOLATION slow-withdrawal: b@example.com",
            "median 72.0 h, worst 72.0 h (1 with the request time recorded",
            "violations                   4",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("to a@example.com"), "{text}");

        let json: serde_json::Value =
            serde_json::from_slice(&p.run(&["compliance", "audit", "--format", "json"]).stdout)
                .unwrap();
        assert_eq!(json["violations"].as_array().unwrap().len(), 4);
        assert_eq!(json["violations"][0]["kind"], "sent-after-withdrawal");
        assert_eq!(json["sends_checked"], 3);

        // --since after everything: nothing sent or withdrawn in the period,
        // but the unapplied withdrawal is a standing violation.
        let later = p.run(&["compliance", "audit", "--since", "2100-01-01"]);
        assert_eq!(later.status.code(), Some(4));
        assert!(
            stdout(&later).contains("violations                   1"),
            "{}",
            stdout(&later)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_old_ips_and_user_agents_and_is_recorded() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "[compliance]\nevent_ip_retention_days = 30\n");
        let out = p.import("email\na@example.com\n");
        assert!(out.status.success(), "{}", stderr(&out));
        let day = 24 * 3600 * 1000;
        let now = now_millis();
        exec(
            &db.store,
            &format!(
                "INSERT INTO events (contact_id, kind, occurred_at, data) VALUES \
                 (1, 'open', {}, '{{\"ip\":\"192.0.2.1\",\"user_agent\":\"Old/1\",\"classification\":\"human\"}}'), \
                 (1, 'click', {}, '{{\"ip\":\"192.0.2.2\",\"user_agent\":\"New/1\",\"link_id\":3}}'), \
                 (1, 'open', {}, '{{\"classification\":\"prefetch\"}}')",
                now - 31 * day,
                now - 29 * day,
                now - 40 * day
            ),
        )
        .await;
        let text = p.ok(&["compliance", "purge", "--actor", "cron"]);
        assert!(text.contains("of 1 events older than"), "{text}");
        let data: Vec<String> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT data FROM events ORDER BY id").fetch_all(pool).await.unwrap()
        });
        let data: Vec<serde_json::Value> = data
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(data[0], serde_json::json!({ "classification": "human" }));
        assert_eq!(
            data[1]["ip"], "192.0.2.2",
            "younger than the retention: kept"
        );
        assert_eq!(data[2], serde_json::json!({ "classification": "prefetch" }));
        p.ok(&["compliance", "purge", "--actor", "cron"]);
        let recorded: Vec<(String, String)> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as("SELECT actor, details FROM compliance_actions WHERE kind = 'purge' ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        assert_eq!(
            recorded.len(),
            2,
            "every purge is recorded, even one that found nothing"
        );
        assert_eq!(recorded[0].0, "cron");
        assert!(recorded[0].1.contains("\"events\":1") && recorded[1].1.contains("\"events\":0"));

        let unset = Project::new(&db, "");
        let refused = unset.run(&["compliance", "purge"]);
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("event_ip_retention_days"),
            "{}",
            stderr(&refused)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_changes_summarises_and_details_a_period() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import("email\na@example.com\nb@example.com\n");
        assert!(out.status.success(), "{}", stderr(&out));
        let now = now_millis();
        exec(
            &db.store,
            &format!(
                "INSERT INTO status_changes (contact_id, from_status, to_status, cause, rule, actor, occurred_at) \
                 VALUES (2, 'active', 'bounced', 'bounce', 'hard-bounce', 'cartero', {now}), \
                        (1, 'active', 'unsubscribed', 'unsubscribe', NULL, 'cartero', {})",
                now - 30 * 24 * 3600 * 1000
            ),
        )
        .await;
        let summary = p.ok(&["contacts", "changes", "--since", "7d", "--format", "csv"]);
        let rows: Vec<Vec<String>> = csv::Reader::from_reader(summary.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        let today = &rows[0][0];
        assert_eq!(
            rows,
            vec![
                vec![
                    today.clone(),
                    "consent:newsletter".into(),
                    "grant".into(),
                    "2".into()
                ],
                // The field-level change log: the two new contacts.
                vec![
                    today.clone(),
                    "field:created".into(),
                    "-".into(),
                    "2".into()
                ],
                vec![today.clone(), "status".into(), "bounced".into(), "1".into()],
            ],
            "the old unsubscribe is outside the period"
        );
        let detail = p.ok(&[
            "contacts", "changes", "--since", "60d", "--by", "week", "--detail", "--format", "json",
        ]);
        let doc: serde_json::Value = serde_json::from_str(&detail).unwrap();
        let changes = doc["changes"].as_array().unwrap();
        // Two grants, two new contacts (the field-level log), two status changes.
        assert_eq!(changes.len(), 6);
        assert_eq!(changes[0]["email"], "a@example.com");
        assert_eq!(changes[0]["old_value"], "active");
        assert_eq!(changes[0]["new_value"], "unsubscribed");
        assert_eq!(changes[0]["by_what"], "unsubscribe by cartero");
        assert_eq!(changes[5]["by_what"], "bounce rule hard-bounce by cartero");
        assert!(doc["summary"][0]["week"].as_str().unwrap().contains("-W"));
        let table = p.ok(&["contacts", "changes", "--since", "7d", "--by", "week"]);
        assert!(
            table.contains("consent:newsletter") && table.contains("WEEK"),
            "{table}"
        );
    }
}
