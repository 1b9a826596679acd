//! Access and erasure on both backends, through the real binary: `contacts
//! export` shows everything held on a person; `contacts erase` removes it
//! from every table, the ledger still verifies (against a checkpoint taken
//! before), and a re-import of the address is refused and counted.

mod common;

use cartero::domain::ConsentAction;
use cartero::domain::ledger_key::LedgerKeys;
use cartero::store::Store;
use cartero::store::consent::{self, Appender, ChainBreak, ConsentEntry, Evidence};
use common::db::TestDb;
use common::project::{Project, stderr, stdout};

const KEY: &str = "erasure-test-key-0123456789abcdef0123";

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap()
    })
}

/// Every value of every table as text, lower-cased.
async fn dump(store: &Store) -> String {
    let mut out = String::new();
    match store {
        Store::Sqlite(p) => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(p)
                    .await
                    .unwrap();
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(p)
                        .await
                        .unwrap();
                let expr = cols
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {expr} FROM \"{t}\""))
                    .fetch_all(p)
                    .await
                    .unwrap();
                out.push_str(&format!("== {t}\n{}\n", rows.join("\n")));
            }
        }
        Store::Postgres(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(p)
            .await
            .unwrap();
            for t in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT x::text FROM \"{t}\" x"))
                        .fetch_all(p)
                        .await
                        .unwrap();
                out.push_str(&format!("== {t}\n{}\n", rows.join("\n")));
            }
        }
    }
    out.to_lowercase()
}

/// What is personal about Ana, wherever cartero may have put it.
const ANA_PERSONAL: &[&str] = &[
    "ana@example.com",
    "garcía",
    "sevilla",
    "vip-customer",
    "198.51.100.7",
    "anaphone/1.0",
    "ana@exmaple.com",
];

#[tokio::test(flavor = "multi_thread")]
async fn erase_removes_everything_personal_keeps_the_chain_and_refuses_a_reimport() {
    for db in TestDb::all().await {
        // No key in the file: the first import writes legacy entries.
        let p = Project::new(&db, "");
        let csv = "email,first_name,last_name,tags,city\n\
                   ana@example.com,Ana,García,vip-customer,Sevilla\n\
                   bob@example.com,Bob,,,Madrid\n";
        let out = p.import(csv);
        assert!(out.status.success(), "{}", stderr(&out));
        let with_key = |args: &[&str]| {
            p.command(args)
                .env("CARTERO_COMPLIANCE_LEDGER_KEY", KEY)
                .output()
                .unwrap()
        };

        // A keyed double opt-in with IP and evidence, a send, events, a
        // status change and a flag that quote her address.
        let keys = LedgerKeys::new(KEY, &[]).unwrap();
        let mut tx = db.store.begin().await.unwrap();
        let mut app = Appender::start_with(&mut tx, Some(&keys)).await.unwrap();
        app.append(
            &mut tx,
            &ConsentEntry {
                contact_id: 1,
                list_id: Some(1),
                action: ConsentAction::Grant,
                occurred_at: 5_000,
                evidence: Evidence {
                    source: "signup form".into(),
                    method: "double-opt-in".into(),
                    ip: Some("198.51.100.7".into()),
                    text_version: Some("v3".into()),
                    details: serde_json::json!({ "user_agent": "AnaPhone/1.0", "email": "ana@example.com" }),
                },
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        exec(
            &db.store,
            "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
             VALUES ('spring', 'Spring', 'c.toml', 'x', 'newsletter', 1)",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO sends (campaign_id, contact_id, email, state, smtp_code, smtp_reply, created_at, updated_at) \
             VALUES (1, 1, 'ana@example.com', 'failed', 550, '550 5.1.1 <ana@example.com>: no such user', 1, 1)",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at, data) VALUES \
             (1, 1, 1, 'open', 6000, '{\"ip\":\"198.51.100.7\",\"user_agent\":\"AnaPhone/1.0\",\"classification\":\"human\"}'), \
             (1, 1, 1, 'bounce_hard', 7000, '{\"recipient\":\"ana@example.com\",\"diagnostic\":\"550 <ana@example.com>\",\"reason\":\"userunknown\"}')",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO status_changes (contact_id, from_status, to_status, cause, rule, actor, reason, occurred_at) \
             VALUES (1, 'active', 'bounced', 'bounce', 'hard-bounce', 'cartero', 'hard bounce for ana@example.com', 7000)",
        )
        .await;
        exec(
            &db.store,
            "UPDATE contacts SET status = 'bounced' WHERE id = 1",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO contact_flags (contact_id, flag, detail, first_seen_at, checked_at) \
             VALUES (1, 'typo', 'ana@exmaple.com', 1, 1)",
        )
        .await;

        // Her confirmed sign-up, and a second one never confirmed (linked
        // to no contact, only to the address); a journey that set an
        // attribute from her data.
        exec(
            &db.store,
            "INSERT INTO signups (token_hash, list_id, email, name, text_version, tracking, state, \
             signed_up_at, signup_ip, signup_ua, mailed_at, confirmed_at, confirm_ip, confirm_ua, contact_id) VALUES \
             ('t1', 1, 'ana@example.com', 'Ana García', 'v3', 0, 'confirmed', 4000, '198.51.100.7', \
              'AnaPhone/1.0', 4001, 5000, '198.51.100.7', 'AnaPhone/1.0', 1), \
             ('t2', 1, 'Ana@Example.com', 'Ana García', 'v3', 0, 'pending', 8000, '198.51.100.7', \
              'AnaPhone/1.0', NULL, NULL, NULL, NULL, NULL)",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO journeys (slug, name, file_path, file_hash, created_at, scanned_to) \
             VALUES ('welcome', 'Welcome', 'w.toml', 'x', 1, 1)",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO journey_enrolments (journey_id, contact_id, entry, entry_key, step, next_at, state, \
             entered_at, updated_at) VALUES (1, 1, 1, 'signup:1', 'two', 9000, 'active', 8500, 8500)",
        )
        .await;
        exec(
            &db.store,
            "INSERT INTO journey_actions (enrolment_id, step, action, detail, occurred_at) \
             VALUES (1, 'one', 'set', 'home_city = Sevilla', 8600)",
        )
        .await;

        // Access: everything held on her.
        let export = with_key(&["contacts", "export", "ana@example.com"]);
        assert!(export.status.success(), "{}", stderr(&export));
        let doc: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
        assert_eq!(doc["contact"]["first_name"], "Ana");
        assert_eq!(doc["contact"]["attributes"]["city"], "Sevilla");
        assert_eq!(doc["tags"], serde_json::json!(["vip-customer"]));
        assert_eq!(doc["lists"][0]["name"], "newsletter");
        assert_eq!(doc["consents"].as_array().unwrap().len(), 2);
        assert_eq!(doc["consents"][0]["method"], "import");
        assert_eq!(doc["consents"][1]["ip"], "198.51.100.7");
        assert_eq!(doc["consents"][1]["evidence"]["user_agent"], "AnaPhone/1.0");
        assert_eq!(doc["sends"][0]["slug"], "spring");
        assert_eq!(doc["events"][0]["data"]["ip"], "198.51.100.7");
        assert_eq!(doc["events"].as_array().unwrap().len(), 2);
        assert_eq!(doc["status_changes"][0]["rule"], "hard-bounce");
        assert_eq!(doc["hygiene_flags"][0]["detail"], "ana@exmaple.com");
        let signups = doc["signups"].as_array().unwrap();
        assert_eq!(signups.len(), 2, "the unconfirmed sign-up is hers too");
        assert_eq!(signups[0]["confirm_ip"], "198.51.100.7");
        assert_eq!(signups[1]["state"], "pending");
        assert_eq!(doc["journeys"][0]["slug"], "welcome");
        assert_eq!(doc["journeys"][0]["step"], "two");
        assert!(
            doc["changes"].as_array().is_some_and(|c| !c.is_empty()),
            "the change log of her record: {}",
            doc["changes"]
        );
        let before = dump(&db.store).await;
        for s in ANA_PERSONAL {
            assert!(before.contains(s), "the fixture puts {s} somewhere");
        }

        let cp = with_key(&["compliance", "checkpoint", "--out", "before.json"]);
        assert!(cp.status.success(), "{}", stderr(&cp));
        let erased = with_key(&[
            "contacts",
            "erase",
            "ana@example.com",
            "--reason",
            "request by mail, ticket 4711",
        ]);
        assert!(erased.status.success(), "{}", stderr(&erased));
        let again = with_key(&["contacts", "erase", "ana@example.com", "--reason", "x"]);
        assert!(
            !again.status.success(),
            "an erased address is not found again"
        );

        let after = dump(&db.store).await;
        for s in ANA_PERSONAL {
            assert!(
                !after.contains(s),
                "{s} survived the erasure ({:?})",
                db.backend()
            );
        }
        assert!(
            after.contains("bob@example.com") && after.contains("madrid"),
            "Bob is untouched"
        );
        assert_eq!(
            scalar(&db.store, "SELECT COUNT(*) FROM suppressions").await,
            1
        );
        assert_eq!(
            scalar(
                &db.store,
                "SELECT COUNT(*) FROM compliance_actions WHERE kind = 'erase'"
            )
            .await,
            1
        );
        assert_eq!(
            scalar(
                &db.store,
                "SELECT COUNT(*) FROM contact_lists WHERE contact_id = 1 AND subscribed = 1"
            )
            .await,
            0,
            "an erased contact is on no list"
        );
        // The chain still verifies, against the checkpoint taken before too.
        let v = with_key(&["compliance", "verify", "--checkpoint", "before.json"]);
        assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
        assert!(stdout(&v).contains("2 erased"), "{}", stdout(&v));

        // Export by the address now says nothing is held.
        let export = with_key(&["contacts", "export", "ana@example.com"]);
        assert!(export.status.success(), "{}", stderr(&export));
        let text = stdout(&export).to_lowercase();
        assert!(text.contains("\"erased\": true"), "{text}");
        for s in &ANA_PERSONAL[1..] {
            assert!(!text.contains(s), "{s} in {text}");
        }

        // A re-import of the same file: Ana refused and counted, Bob as before.
        p.write("contacts.csv", csv);
        let re = with_key(&[
            "contacts",
            "import",
            "contacts.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "test signup form",
        ]);
        assert_eq!(re.status.code(), Some(3), "{}", stderr(&re));
        assert!(
            stdout(&re).contains("refused (erased)           1"),
            "{}",
            stdout(&re)
        );
        assert!(
            stdout(&re).contains("unchanged                  1"),
            "{}",
            stdout(&re)
        );
        assert!(!dump(&db.store).await.contains("ana@example.com"));

        // An attacker who edits a blanked legacy entry is still caught: the
        // erasure entry sealed it.
        match &db.store {
            Store::Sqlite(_) => exec(&db.store, "DROP TRIGGER consent_events_no_update").await,
            Store::Postgres(_) => {
                exec(
                    &db.store,
                    "DROP TRIGGER consent_events_no_change ON consent_events",
                )
                .await
            }
        }
        assert!(
            consent::verify(&db.store, Some(&keys), &[])
                .await
                .unwrap()
                .is_ok()
        );
        exec(
            &db.store,
            "UPDATE consent_events SET source = 'forged' WHERE id = 1",
        )
        .await;
        assert_eq!(
            consent::verify(&db.store, Some(&keys), &[]).await.unwrap(),
            Err(ChainBreak::ErasedWithoutRecord { id: 1 })
        );
    }
}
