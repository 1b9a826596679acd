//! Contact import semantics on both backends, across batch boundaries (the
//! import writes 1,000 contacts per batch and 1,000 ledger entries per
//! statement): inserts, an idempotent second run, non-empty fields
//! overwriting, attributes merging, withdrawn contacts never re-subscribed,
//! and a consent chain that verifies. Also the ledger's batched append
//! against the one-by-one append it replaces.

mod common;

use std::io::Cursor;

use cartero::contacts::import::{ImportOptions, import_reader};
use cartero::domain::ConsentAction;
use cartero::domain::EmailAddress;
use cartero::store::Store;
use cartero::store::consent::{self, Appender, ConsentEntry, Evidence};
use cartero::store::contacts;
use common::db::TestDb;

const ROWS: usize = 2_500;

fn csv(rows: usize, with_names: bool, plan: &str) -> String {
    let mut s = String::from("email,first_name,last_name,tags,plan,orders\n");
    for i in 0..rows {
        let (first, last) = if with_names {
            (format!("First{i}"), format!("Last{i}"))
        } else {
            (String::new(), String::new())
        };
        s.push_str(&format!(
            "user{i}@example.com,{first},{last},{},{plan},{}\n",
            if i % 3 == 0 { "vip" } else { "" },
            i % 7
        ));
    }
    s
}

fn opts() -> ImportOptions {
    ImportOptions {
        list: Some("news".into()),
        consent_source: Some("test form".into()),
        ..Default::default()
    }
}

async fn import(store: &Store, text: String) -> cartero::contacts::ImportSummary {
    import_reader(store, Cursor::new(text), "test.csv", &opts(), &|_| {})
        .await
        .expect("import")
}

async fn subscribed(store: &Store, email: &str) -> Option<i64> {
    let c = contacts::find_by_email(store, &EmailAddress::parse(email).expect("address"))
        .await
        .expect("lookup")
        .expect("contact exists");
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>("SELECT subscribed FROM contact_lists WHERE contact_id = $1")
            .bind(c.id)
            .fetch_optional(pool)
            .await
            .expect("query")
    })
}

async fn ledger_len(store: &Store) -> u64 {
    consent::verify_chain(store)
        .await
        .expect("read ledger")
        .expect("chain verifies")
}

#[tokio::test]
async fn import_is_idempotent_merges_and_never_resubscribes() {
    for db in TestDb::all().await {
        let store = &db.store;
        let first = import(store, csv(ROWS, true, "free")).await;
        assert_eq!(first.inserted, ROWS as u64, "{:?}", db.backend());
        assert_eq!(first.consent_granted, ROWS as u64);
        assert_eq!(ledger_len(store).await, ROWS as u64);
        assert_eq!(subscribed(store, "user2499@example.com").await, Some(1));

        let again = import(store, csv(ROWS, true, "free")).await;
        assert_eq!(
            (
                again.inserted,
                again.updated,
                again.unchanged,
                again.consent_granted
            ),
            (0, 0, ROWS as u64, 0)
        );
        assert_eq!(ledger_len(store).await, ROWS as u64);

        // user1500 withdraws; a later import must not subscribe them again.
        let mut tx = store.begin().await.expect("begin");
        let mut appender = Appender::start(&mut tx).await.expect("appender");
        let c =
            contacts::find_by_email(store, &EmailAddress::parse("user1500@example.com").unwrap())
                .await
                .unwrap()
                .unwrap();
        let list_id = contacts::ensure_list(&mut tx, "news", 1).await.unwrap();
        appender
            .append(
                &mut tx,
                &ConsentEntry {
                    contact_id: c.id,
                    list_id: Some(list_id),
                    action: ConsentAction::Withdraw,
                    occurred_at: 2,
                    evidence: Evidence {
                        source: "one-click".into(),
                        method: "one-click".into(),
                        ..Default::default()
                    },
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Empty names never blank stored ones; the new plan overwrites; a
        // new attribute merges beside the old ones; one new contact.
        let mut text = csv(ROWS, false, "pro");
        text.push_str("new@example.com,New,,,pro,1\n");
        let third = import(store, text).await;
        assert_eq!(third.inserted, 1);
        assert_eq!(third.updated, ROWS as u64);
        assert_eq!(third.kept_withdrawn, 1);
        assert_eq!(third.consent_granted, 1);
        assert_eq!(subscribed(store, "user1500@example.com").await, Some(0));
        assert_eq!(ledger_len(store).await, ROWS as u64 + 2);
        let c =
            contacts::find_by_email(store, &EmailAddress::parse("user1234@example.com").unwrap())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(c.first_name.as_deref(), Some("First1234"));
        assert_eq!(c.attributes["plan"], "pro");
        assert_eq!(c.attributes["orders"], 1234 % 7);

        // Gaining a tag is the only change for two contacts, one of them in
        // the last batch: two updates, the rest unchanged, tags kept.
        let text = csv(ROWS, false, "pro")
            .replacen("user1@example.com,,,,", "user1@example.com,,,gold,", 1)
            .replacen(
                "user2498@example.com,,,,",
                "user2498@example.com,,,gold,",
                1,
            );
        let fourth = import(store, text).await;
        assert_eq!(
            (fourth.inserted, fourth.updated, fourth.unchanged),
            (0, 2, ROWS as u64 - 2)
        );
        let c = contacts::find_by_email(store, &EmailAddress::parse("user1@example.com").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.tags, vec!["gold".to_string()]);
        let c = contacts::find_by_email(store, &EmailAddress::parse("user0@example.com").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.tags, vec!["vip".to_string()]);
    }
}

/// Ids of the contacts user0@example.com .. user{n-1}@example.com.
async fn ids_of_users(store: &cartero::store::Store, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let e = EmailAddress::parse(&format!("user{i}@example.com")).unwrap();
        ids.push(
            contacts::find_by_email(store, &e)
                .await
                .unwrap()
                .unwrap()
                .id,
        );
    }
    ids
}

#[tokio::test]
async fn batched_append_writes_the_chain_and_state_of_one_by_one_appends() {
    for db in TestDb::all().await {
        let store = &db.store;
        import(store, csv(3, true, "free")).await; // ids, a list, 3 grants
        let ids = ids_of_users(store, 3).await;
        let mut tx = store.begin().await.unwrap();
        let news = contacts::ensure_list(&mut tx, "news", 1).await.unwrap();
        let other = contacts::ensure_list(&mut tx, "other", 1).await.unwrap();
        let entry = |contact_id, list_id, action| ConsentEntry {
            contact_id,
            list_id,
            action,
            occurred_at: 10,
            evidence: Evidence {
                source: "s".into(),
                method: "form".into(),
                ..Default::default()
            },
        };
        use ConsentAction::{Grant, Withdraw};
        let entries = vec![
            entry(ids[0], Some(other), Grant),
            entry(ids[0], Some(news), Withdraw),
            entry(ids[0], Some(news), Grant), // same key twice: the last wins
            entry(ids[1], Some(other), Grant),
            entry(ids[1], None, Withdraw), // every list of ids[1]
            entry(ids[1], Some(other), Grant),
            entry(ids[2], Some(news), Withdraw),
        ];
        let mut appender = Appender::start(&mut tx).await.unwrap();
        appender.append_many(&mut tx, &entries).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ledger_len(store).await, 3 + entries.len() as u64);
        let state: Vec<(i64, i64, i64)> = cartero::dispatch!(store, pool => {
            sqlx::query_as("SELECT contact_id, list_id, subscribed FROM contact_lists ORDER BY contact_id, list_id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        let mut expected = vec![
            (ids[0], news, 1),
            (ids[0], other, 1),
            (ids[1], news, 0),
            (ids[1], other, 1),
            (ids[2], news, 0),
        ];
        expected.sort();
        assert_eq!(state, expected, "{:?}", db.backend());
    }
}

/// The import's shared-evidence grants store exactly the rows, hashes
/// included, that `append_many` writes for the same entries: two fresh
/// databases of each backend, one written each way, hold the same ledger.
#[tokio::test]
async fn grant_many_writes_the_rows_of_append_many() {
    let evidence = Evidence {
        source: "s".into(),
        method: "import".into(),
        ip: None,
        text_version: Some("v2".into()),
        details: serde_json::json!({ "file": "test.csv", "n": 1 }),
    };
    let mut first = TestDb::all().await.into_iter();
    let mut second = TestDb::all().await.into_iter();
    while let (Some(a), Some(b)) = (first.next(), second.next()) {
        let mut ledgers = Vec::new();
        for (shared, db) in [(true, &a), (false, &b)] {
            let store = &db.store;
            // No list: contacts 1..=3 and an empty ledger in both databases.
            let none = ImportOptions::default();
            import_reader(
                store,
                Cursor::new(csv(3, true, "free")),
                "t.csv",
                &none,
                &|_| {},
            )
            .await
            .expect("import");
            let ids = ids_of_users(store, 3).await;
            let mut tx = store.begin().await.unwrap();
            let list = contacts::ensure_list(&mut tx, "news", 1).await.unwrap();
            let mut appender = Appender::start(&mut tx).await.unwrap();
            if shared {
                appender
                    .grant_many(&mut tx, &ids, list, 10, &evidence, |_| false)
                    .await
                    .unwrap();
            } else {
                let entries: Vec<ConsentEntry> = ids
                    .iter()
                    .map(|&contact_id| ConsentEntry {
                        contact_id,
                        list_id: Some(list),
                        action: ConsentAction::Grant,
                        occurred_at: 10,
                        evidence: evidence.clone(),
                    })
                    .collect();
                appender.append_many(&mut tx, &entries).await.unwrap();
            }
            tx.commit().await.unwrap();
            assert_eq!(consent::verify_chain(store).await.unwrap(), Ok(3));
            let mut rows = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                for r in consent::entries_for_contact(store, *id).await.unwrap() {
                    // Every field but the row id, which the chain does not cover.
                    rows.push(format!("{:?}", consent::StoredEntry { id: 0, ..r }));
                }
                let email = format!("user{i}@example.com");
                assert_eq!(subscribed(store, &email).await, Some(1));
            }
            ledgers.push(rows);
        }
        assert_eq!(ledgers[0].len(), 3);
        assert_eq!(ledgers[0], ledgers[1], "{:?}", a.backend());
    }
}
