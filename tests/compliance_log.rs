//! `compliance log` through the real binary on both backends: every grant
//! and withdrawal with its evidence, filters, and CSV that quotes what needs
//! quoting.

mod common;

use cartero::domain::ConsentAction;
use cartero::domain::ledger_key::LedgerKeys;
use cartero::store::Store;
use cartero::store::consent::{Appender, ConsentEntry, Evidence};
use common::db::TestDb;
use common::project::{Project, stderr, stdout};

const KEY: &str = "log-test-key-0123456789abcdef0123456789";

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

fn csv_rows(text: &str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_lists_every_entry_with_its_evidence_filters_and_quotes_csv() {
    for db in TestDb::all().await {
        let p = Project::new(&db, &format!("[compliance]\nledger_key = \"{KEY}\"\n"));
        let out = p.import("email\na@example.com\nb@example.com\nc@example.com\n");
        assert!(out.status.success(), "{}", stderr(&out));
        exec(
            &db.store,
            "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
             VALUES ('spring', 'Spring', 'c.toml', 'x', 'newsletter', 1)",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
             VALUES (1, 2, 'b@example.com', 'accepted', 1, 1)",
        )
        .await;
        // A one-click withdrawal whose source holds a comma, a quote and a
        // line break, with IP, user agent and the send it came from.
        let keys = LedgerKeys::new(KEY, &[]).unwrap();
        let mut tx = db.store.begin().await.unwrap();
        let mut app = Appender::start_with(&mut tx, Some(&keys)).await.unwrap();
        app.append(
            &mut tx,
            &ConsentEntry {
                contact_id: 2,
                list_id: Some(1),
                action: ConsentAction::Withdraw,
                occurred_at: 4_102_444_800_000, // 2100-01-01
                evidence: Evidence {
                    source: "footer, \"one-click\"\nlink".into(),
                    method: "one-click".into(),
                    ip: Some("192.0.2.44".into()),
                    text_version: None,
                    details: serde_json::json!({ "send_id": 1, "user_agent": "Mozilla/5.0 (X11)" }),
                },
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let all = csv_rows(&p.ok(&["compliance", "log", "--format", "csv"]));
        assert_eq!(all.len(), 4);
        assert_eq!(&all[0][2], "a@example.com");
        assert_eq!(&all[0][3], "newsletter");
        assert_eq!(&all[0][4], "grant");
        assert_eq!(&all[0][5], "test signup form");
        assert_eq!(&all[0][6], "import");
        let w = &all[3];
        assert_eq!(&w[2], "b@example.com");
        assert_eq!(&w[4], "withdraw");
        assert_eq!(
            &w[5], "footer, \"one-click\"\nlink",
            "quoted and read back whole"
        );
        assert_eq!(&w[8], "192.0.2.44");
        assert_eq!(&w[9], "Mozilla/5.0 (X11)");
        assert_eq!(&w[10], "spring");
        assert_eq!(&w[11], "1");
        assert_eq!(&w[1], "2100-01-01T00:00:00Z");

        // Filters.
        let withdrawals = csv_rows(&p.ok(&[
            "compliance",
            "log",
            "--action",
            "withdraw",
            "--format",
            "csv",
        ]));
        assert_eq!(withdrawals.len(), 1);
        let spring = csv_rows(&p.ok(&[
            "compliance",
            "log",
            "--campaign",
            "spring",
            "--format",
            "csv",
        ]));
        assert_eq!(spring.len(), 1);
        let future = csv_rows(&p.ok(&[
            "compliance",
            "log",
            "--since",
            "2099-01-01",
            "--format",
            "csv",
        ]));
        assert_eq!(future.len(), 1);
        let past = csv_rows(&p.ok(&[
            "compliance",
            "log",
            "--until",
            "2099-01-01",
            "--format",
            "csv",
        ]));
        assert_eq!(past.len(), 3);
        let one = csv_rows(&p.ok(&[
            "compliance",
            "log",
            "--contact",
            "c@example.com",
            "--format",
            "csv",
        ]));
        assert_eq!(one.len(), 1);
        assert_eq!(&one[0][2], "c@example.com");
        let imports = csv_rows(&p.ok(&[
            "compliance",
            "log",
            "--method",
            "import",
            "--list",
            "newsletter",
            "--format",
            "csv",
        ]));
        assert_eq!(imports.len(), 3);

        // JSON: one array, evidence as stored.
        let json: serde_json::Value =
            serde_json::from_str(&p.ok(&["compliance", "log", "--format", "json"])).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 4);
        assert_eq!(json[3]["campaign"], "spring");
        let empty: serde_json::Value = serde_json::from_str(&p.ok(&[
            "compliance",
            "log",
            "--method",
            "nothing",
            "--format",
            "json",
        ]))
        .unwrap();
        assert_eq!(empty, serde_json::json!([]));

        let table = p.ok(&["compliance", "log"]);
        assert!(
            table.lines().count() == 5 && table.contains("spring"),
            "{table}"
        );

        let bad = p.run(&["compliance", "log", "--since", "last tuesday"]);
        assert!(!bad.status.success());
        assert!(
            stderr(&bad).contains("--since \"last tuesday\""),
            "{}",
            stderr(&bad)
        );
        let _ = stdout(&bad);
    }
}
