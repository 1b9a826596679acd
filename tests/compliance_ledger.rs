//! The consent ledger's tamper evidence, tried as an attacker with write
//! access to the database (and DDL rights: the append-only triggers are
//! dropped first) but without the ledger key, on both backends: each edit,
//! deletion, insertion, truncation and rewrite is named by `verify`.

mod common;

use cartero::domain::ConsentAction;
use cartero::domain::ledger_key::{LedgerKey, LedgerKeys};
use cartero::store::Store;
use cartero::store::consent::{
    self, Appender, ChainBreak, CheckpointProblem, ConsentEntry, Evidence,
};
use common::db::TestDb;
use common::project::{Project, stdout};
use sha2::{Digest, Sha256};

const KEY_A: &str = "ledger-key-A-0123456789abcdef0123456789";
const KEY_B: &str = "ledger-key-B-0123456789abcdef0123456789";

fn keys(current: &str, retired: &[&str]) -> LedgerKeys {
    LedgerKeys::new(
        current,
        &retired.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .unwrap()
}

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// What an attacker with DDL rights does first.
async fn drop_guards(store: &Store) {
    match store {
        Store::Sqlite(_) => {
            exec(store, "DROP TRIGGER consent_events_no_update").await;
            exec(store, "DROP TRIGGER consent_events_no_delete").await;
        }
        Store::Postgres(_) => {
            exec(
                store,
                "DROP TRIGGER consent_events_no_change ON consent_events",
            )
            .await;
        }
    }
}

/// `n` contacts on a list, each granted in its own transaction with an IP
/// and evidence, signed with `keys` (`None`: the legacy form).
async fn seed(store: &Store, keys: Option<&LedgerKeys>, first: usize, n: usize) {
    exec(
        store,
        "INSERT INTO lists (name, created_at) VALUES ('newsletter', 1) ON CONFLICT (name) DO NOTHING",
    )
    .await;
    for i in first..first + n {
        exec(
            store,
            &format!(
                "INSERT INTO contacts (email, domain, created_at, updated_at) \
                 VALUES ('u{i}@example.com', 'example.com', 1, 1)"
            ),
        )
        .await;
        let mut tx = store.begin().await.unwrap();
        let mut app = Appender::start_with(&mut tx, keys).await.unwrap();
        app.append(
            &mut tx,
            &ConsentEntry {
                contact_id: i as i64 + 1,
                list_id: Some(1),
                action: ConsentAction::Grant,
                occurred_at: 1_000 + i as i64,
                evidence: Evidence {
                    source: "signup form".into(),
                    method: "double-opt-in".into(),
                    ip: Some(format!("192.0.2.{i}")),
                    text_version: Some("v3".into()),
                    details: serde_json::json!({ "form": "footer", "n": i }),
                },
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

/// The rows as (id, every hashed column), for an attacker's recomputation.
type Row = (
    i64,
    i64,
    Option<i64>,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

async fn rows(store: &Store) -> Vec<Row> {
    cartero::dispatch!(store, pool => {
        sqlx::query_as::<_, Row>(
            "SELECT id, contact_id, list_id, action, occurred_at, source, method, ip, text_version, evidence \
             FROM consent_events ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

/// The unkeyed SHA-256 form, as anyone can recompute it from the source.
fn plain_hash(prev: &str, r: &Row) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(prev.as_bytes());
    field(&r.1.to_be_bytes());
    field(r.2.map(|l| l.to_string()).unwrap_or_default().as_bytes());
    field(r.3.as_bytes());
    field(&r.4.to_be_bytes());
    field(r.5.as_bytes());
    field(r.6.as_bytes());
    field(r.7.as_deref().unwrap_or("\0").as_bytes());
    field(r.8.as_deref().unwrap_or("\0").as_bytes());
    field(r.9.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Recomputes every hash from `from_id` on with the plain form, as an
/// attacker without the key would after editing a row.
async fn rehash_from(store: &Store, from_id: i64, clear_keys: bool) {
    let all = rows(store).await;
    let mut prev = consent::GENESIS.to_string();
    for r in &all {
        if r.0 >= from_id {
            let hash = plain_hash(&prev, r);
            let keys = if clear_keys {
                ", key_id = NULL, personal_digest = NULL"
            } else {
                ""
            };
            exec(
                store,
                &format!(
                    "UPDATE consent_events SET prev_hash = '{prev}', hash = '{hash}'{keys} WHERE id = {}",
                    r.0
                ),
            )
            .await;
            prev = hash;
        } else {
            prev = cartero::dispatch!(store, pool => {
                sqlx::query_scalar::<_, String>("SELECT hash FROM consent_events WHERE id = $1")
                    .bind(r.0)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            });
        }
    }
}

async fn verify(store: &Store, k: &LedgerKeys) -> Result<consent::Verified, ChainBreak> {
    consent::verify(store, Some(k), &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_tampering_is_named() {
    let k = keys(KEY_A, &[]);
    // (what the attacker does, what verify must say)
    type Attack = fn(&Store) -> futures::future::BoxFuture<'_, ()>;
    let attacks: Vec<(&str, Attack, ChainBreak)> = vec![
        (
            "edit a field",
            |s| {
                Box::pin(exec(
                    s,
                    "UPDATE consent_events SET source = 'forged' WHERE id = 3",
                ))
            },
            ChainBreak::Content { id: 3 },
        ),
        (
            "edit the IP (a personal field)",
            |s| {
                Box::pin(exec(
                    s,
                    "UPDATE consent_events SET ip = '203.0.113.9' WHERE id = 3",
                ))
            },
            ChainBreak::Content { id: 3 },
        ),
        (
            "edit the evidence",
            |s| {
                Box::pin(exec(
                    s,
                    "UPDATE consent_events SET evidence = '{}' WHERE id = 3",
                ))
            },
            ChainBreak::Content { id: 3 },
        ),
        (
            "delete an entry",
            |s| Box::pin(exec(s, "DELETE FROM consent_events WHERE id = 3")),
            ChainBreak::Link { id: 4 },
        ),
        (
            "insert an entry",
            |s| {
                Box::pin(async move {
                    exec(s, "UPDATE consent_events SET id = id + 100 WHERE id >= 3").await;
                    let prev: String = cartero::dispatch!(s, pool => {
                        sqlx::query_scalar("SELECT hash FROM consent_events WHERE id = 2")
                            .fetch_one(pool).await.unwrap()
                    });
                    let key_id = LedgerKey::new(KEY_A).unwrap().id().to_string();
                    exec(
                        s,
                        &format!(
                            "INSERT INTO consent_events (id, contact_id, list_id, action, occurred_at, source, \
                             method, evidence, prev_hash, hash, key_id, personal_digest) VALUES \
                             (3, 1, 1, 'grant', 1500, 'forged', 'operator', '{{}}', '{prev}', '{}', '{key_id}', 'x')",
                            "ab".repeat(32)
                        ),
                    )
                    .await;
                })
            },
            ChainBreak::Inserted { id: 3 },
        ),
        (
            "edit and rehash the rest without the key",
            |s| {
                Box::pin(async move {
                    exec(
                        s,
                        "UPDATE consent_events SET action = 'withdraw' WHERE id = 3",
                    )
                    .await;
                    rehash_from(s, 3, false).await;
                })
            },
            ChainBreak::Content { id: 3 },
        ),
        (
            "rewrite the keyed tail as unkeyed entries",
            |s| {
                Box::pin(async move {
                    exec(
                        s,
                        "UPDATE consent_events SET action = 'withdraw' WHERE id = 3",
                    )
                    .await;
                    rehash_from(s, 3, true).await;
                })
            },
            ChainBreak::Unkeyed { id: 3 },
        ),
        (
            "remove personal fields without an erasure",
            |s| {
                Box::pin(exec(
                    s,
                    "UPDATE consent_events SET ip = NULL, evidence = '{}', erased_at = 5 WHERE id = 3",
                ))
            },
            ChainBreak::ErasedWithoutRecord { id: 3 },
        ),
        (
            "delete the switch point",
            |s| {
                Box::pin(async move {
                    exec(s, "DELETE FROM ledger_switch").await;
                })
            },
            ChainBreak::Switch {
                reason: "entry 1 is keyed but no switch point is recorded: it was deleted".into(),
            },
        ),
    ];
    for (what, attack, expected) in attacks {
        for db in TestDb::all().await {
            seed(&db.store, Some(&k), 0, 6).await;
            let before = verify(&db.store, &k)
                .await
                .expect("untouched chain verifies");
            assert_eq!((before.entries, before.keyed, before.legacy), (6, 6, 0));
            drop_guards(&db.store).await;
            attack(&db.store).await;
            assert_eq!(
                verify(&db.store, &k).await,
                Err(expected.clone()),
                "{what} ({:?})",
                db.backend()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_catch_truncation_and_a_wholesale_rewrite() {
    let k = keys(KEY_A, &[]);
    for db in TestDb::all().await {
        seed(&db.store, Some(&k), 0, 6).await;
        let cp = consent::checkpoint(&db.store, &k, 10_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cp.entries, 6);
        cp.check(&k).unwrap();
        let mut forged = cp.clone();
        forged.entries = 4;
        assert!(forged.check(&k).is_err(), "an edited checkpoint is refused");
        seed(&db.store, Some(&k), 6, 1).await;
        let cps = [cp.clone()];
        assert!(
            consent::verify(&db.store, Some(&k), &cps)
                .await
                .unwrap()
                .is_ok()
        );

        drop_guards(&db.store).await;
        // Deleting the newest entries leaves a valid, shorter chain...
        exec(&db.store, "DELETE FROM consent_events WHERE id >= 5").await;
        assert_eq!(verify(&db.store, &k).await.map(|v| v.entries), Ok(4));
        // ...which the checkpoint does not accept.
        assert_eq!(
            consent::verify(&db.store, Some(&k), &cps).await.unwrap(),
            Err(ChainBreak::Checkpoint {
                index: 0,
                problem: CheckpointProblem::Truncated { entries: 6, now: 4 }
            })
        );
    }
    // Rewrite everything in the unkeyed form and remove the switch point:
    // without a checkpoint this looks like a ledger that was never keyed.
    for db in TestDb::all().await {
        seed(&db.store, Some(&k), 0, 6).await;
        let cp = consent::checkpoint(&db.store, &k, 10_000)
            .await
            .unwrap()
            .unwrap();
        drop_guards(&db.store).await;
        exec(
            &db.store,
            "UPDATE consent_events SET method = 'import' WHERE id = 2",
        )
        .await;
        rehash_from(&db.store, 1, true).await;
        exec(&db.store, "DELETE FROM ledger_switch").await;
        assert!(verify(&db.store, &k).await.is_ok());
        assert_eq!(
            consent::verify(&db.store, Some(&k), &[cp]).await.unwrap(),
            Err(ChainBreak::Checkpoint {
                index: 0,
                problem: CheckpointProblem::Rewritten { position: 6 }
            })
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_entries_verify_up_to_the_switch_and_rotated_keys_keep_verifying() {
    let a = keys(KEY_A, &[]);
    let b = keys(KEY_B, &[KEY_A]);
    for db in TestDb::all().await {
        // Written before any key was configured.
        seed(&db.store, None, 0, 3).await;
        assert_eq!(
            consent::verify(&db.store, None, &[])
                .await
                .unwrap()
                .map(|v| v.legacy),
            Ok(3)
        );
        seed(&db.store, Some(&a), 3, 2).await;
        // Rotated: B signs, A verifies what it signed.
        seed(&db.store, Some(&b), 5, 2).await;
        let v = verify(&db.store, &b).await.unwrap();
        assert_eq!((v.entries, v.legacy, v.keyed), (7, 3, 4));
        assert_eq!(
            v.key_ids,
            vec![
                LedgerKey::new(KEY_A).unwrap().id().to_string(),
                LedgerKey::new(KEY_B).unwrap().id().to_string()
            ]
        );
        assert_eq!(v.switch_legacy_count, Some(3));
        // Without the retired key, what it signed cannot be verified.
        let a_id = LedgerKey::new(KEY_A).unwrap().id().to_string();
        assert_eq!(
            verify(&db.store, &keys(KEY_B, &[])).await,
            Err(ChainBreak::Switch {
                reason: format!("signed with key {a_id}, which is not configured")
            })
        );
        // Once keyed, the ledger refuses unkeyed appends.
        let mut tx = db.store.begin().await.unwrap();
        let err = Appender::start_with(&mut tx, None)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("ledger_key"), "{err}");
        tx.rollback().await.unwrap();

        drop_guards(&db.store).await;
        // A legacy entry edited and its legacy successors rehashed: the
        // first keyed entry still links to the original legacy head.
        exec(
            &db.store,
            "UPDATE consent_events SET source = 'forged' WHERE id = 2",
        )
        .await;
        let all = rows(&db.store).await;
        let h1: String = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT hash FROM consent_events WHERE id = 1").fetch_one(pool).await.unwrap()
        });
        let h2 = plain_hash(&h1, &all[1]);
        let h3 = plain_hash(&h2, &all[2]);
        exec(
            &db.store,
            &format!("UPDATE consent_events SET prev_hash = '{h1}', hash = '{h2}' WHERE id = 2"),
        )
        .await;
        exec(
            &db.store,
            &format!("UPDATE consent_events SET prev_hash = '{h2}', hash = '{h3}' WHERE id = 3"),
        )
        .await;
        assert_eq!(verify(&db.store, &b).await, Err(ChainBreak::Link { id: 4 }));
        // The switch point itself is signed.
        exec(&db.store, "UPDATE ledger_switch SET legacy_count = 2").await;
        assert!(matches!(
            verify(&db.store, &b).await,
            Err(ChainBreak::Switch { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commands_write_and_check_checkpoints() {
    for db in TestDb::all().await {
        let p = Project::new(&db, &format!("[compliance]\nledger_key = \"{KEY_A}\"\n"));
        let out = p.import("email\na@example.com\nb@example.com\nc@example.com\n");
        assert!(out.status.success(), "{}", common::project::stderr(&out));
        p.ok(&["compliance", "checkpoint", "--out", "cp1.json"]);
        let again = p.run(&["compliance", "checkpoint", "--out", "cp1.json"]);
        assert!(!again.status.success(), "a checkpoint is never overwritten");
        let printed = p.ok(&["compliance", "checkpoint"]);
        let cp: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(cp["entries"], 3);
        assert_eq!(cp["key_id"], LedgerKey::new(KEY_A).unwrap().id());
        let ok = p.ok(&["compliance", "verify", "--checkpoint", "cp1.json"]);
        assert!(
            ok.contains("ledger verifies: 3 entries (3 keyed, 0 legacy"),
            "{ok}"
        );

        // The key from the environment overrides the file's.
        let wrong = p
            .command(&["compliance", "verify"])
            .env("CARTERO_COMPLIANCE_LEDGER_KEY", KEY_B)
            .output()
            .unwrap();
        assert!(!wrong.status.success());
        assert!(
            stdout(&wrong).contains("not configured"),
            "{}",
            stdout(&wrong)
        );

        drop_guards(&db.store).await;
        exec(&db.store, "DELETE FROM consent_events WHERE id = 3").await;
        let bad = p.run(&["compliance", "verify", "--checkpoint", "cp1.json"]);
        assert_eq!(bad.status.code(), Some(1));
        let text = stdout(&bad);
        assert!(
            text.contains("LEDGER DOES NOT VERIFY")
                && text.contains("cp1.json")
                && text.contains("deleted"),
            "{text}"
        );

        // An edited checkpoint file is refused, naming it.
        let edited = std::fs::read_to_string(p.file("cp1.json"))
            .unwrap()
            .replace("\"entries\": 3", "\"entries\": 2");
        p.write("cp2.json", &edited);
        let refused = p.run(&["compliance", "verify", "--checkpoint", "cp2.json"]);
        assert!(!refused.status.success());
        assert!(
            common::project::stderr(&refused).contains("cp2.json: its signature does not verify"),
            "{}",
            common::project::stderr(&refused)
        );
    }
}
