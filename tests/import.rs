//! Contacts import against both backends: idempotence, typed attributes,
//! consent evidence, withdrawals respected, and the ledger's tamper evidence.

mod common;

use cartero::contacts::{ImportOptions, import_csv};
use cartero::domain::{ConsentAction, EmailAddress};
use cartero::store::consent::{self, Appender, ChainBreak, ConsentEntry, Evidence};
use cartero::store::contacts;
use common::db::TestDb;

fn opts() -> ImportOptions {
    ImportOptions {
        list: Some("newsletter".into()),
        consent_source: Some("signup form 2025".into()),
        consent_text_version: Some("v3".into()),
        ..Default::default()
    }
}

fn csv_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn import_is_idempotent_and_merges() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let first = csv_file(
            &dir,
            "a.csv",
            "\u{feff}Email,First Name,last_name,tags,country,orders,zip,vip\n\
             Ana@Example.COM,Ana,García,\"b2b, vip\",ES,12,08001,true\n\
             zoë@bücher.de,Zoë,,,DE,1.5,,false\n",
        );
        let s = import_csv(&db.store, &first, &opts(), &|_| {})
            .await
            .unwrap();
        assert_eq!(
            (s.inserted, s.updated, s.unchanged, s.rejected),
            (2, 0, 0, 0)
        );
        assert_eq!(s.consent_granted, 2);
        let s = import_csv(&db.store, &first, &opts(), &|_| {})
            .await
            .unwrap();
        assert_eq!(
            (s.inserted, s.updated, s.unchanged),
            (0, 0, 2),
            "the same file twice changes nothing"
        );
        assert_eq!(s.consent_granted, 0);

        let ana = EmailAddress::parse("Ana@example.com").unwrap();
        let c = contacts::find_by_email(&db.store, &ana)
            .await
            .unwrap()
            .expect("stored by normalised address");
        assert_eq!(
            c.email, "Ana@example.com",
            "domain lower-cased, local part as written"
        );
        // One column, one type: 12 and 1.5 make a column of numbers.
        assert_eq!(c.attributes["orders"], 12.0);
        assert_eq!(c.attributes["zip"], "08001", "leading zeros stay text");
        assert_eq!(c.attributes["vip"], true);
        assert_eq!(c.tags, vec!["b2b", "vip"]);
        let zoe = EmailAddress::parse("zoë@BÜCHER.de").unwrap();
        let z = contacts::find_by_email(&db.store, &zoe)
            .await
            .unwrap()
            .expect("IDN contact");
        assert_eq!(z.attributes["orders"], 1.5);

        // A partial file updates only what it carries.
        let second = csv_file(
            &dir,
            "b.csv",
            "email,first_name,city,tags\nAna@example.com,,Madrid,early\n",
        );
        let s = import_csv(&db.store, &second, &opts(), &|_| {})
            .await
            .unwrap();
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 1, 0));
        let c = contacts::find_by_email(&db.store, &ana)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            c.first_name.as_deref(),
            Some("Ana"),
            "an empty cell never blanks data"
        );
        assert_eq!(c.attributes["city"], "Madrid");
        assert_eq!(c.attributes["country"], "ES");
        assert_eq!(c.tags, vec!["b2b", "early", "vip"]);

        // Consent evidence is in the ledger.
        let ledger = consent::entries_for_contact(&db.store, c.id).await.unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].action, "grant");
        assert_eq!(ledger[0].source, "signup form 2025");
        assert_eq!(ledger[0].text_version.as_deref(), Some("v3"));
        assert_eq!(ledger[0].method, "import");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_never_resubscribes_a_contact_who_withdrew() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let f = csv_file(
            &dir,
            "a.csv",
            "email\nleaver@example.com\nstayer@example.com\n",
        );
        import_csv(&db.store, &f, &opts(), &|_| {}).await.unwrap();
        let leaver = contacts::find_by_email(
            &db.store,
            &EmailAddress::parse("leaver@example.com").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        let mut tx = db.store.begin().await.unwrap();
        let mut app = Appender::start(&mut tx).await.unwrap();
        app.append(
            &mut tx,
            &ConsentEntry {
                contact_id: leaver.id,
                list_id: None,
                action: ConsentAction::Withdraw,
                occurred_at: 1,
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

        let s = import_csv(&db.store, &f, &opts(), &|_| {}).await.unwrap();
        assert_eq!(s.kept_withdrawn, 1);
        assert_eq!(s.consent_granted, 0);
        let ledger = consent::entries_for_contact(&db.store, leaver.id)
            .await
            .unwrap();
        assert_eq!(
            ledger.last().unwrap().action,
            "withdraw",
            "no new grant after the withdrawal"
        );
        assert_eq!(consent::verify_chain(&db.store).await.unwrap(), Ok(3));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_refuses_edits_and_detects_tampering() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().unwrap();
        let f = csv_file(
            &dir,
            "a.csv",
            "email\na@example.com\nb@example.com\nc@example.com\n",
        );
        import_csv(&db.store, &f, &opts(), &|_| {}).await.unwrap();
        assert_eq!(consent::verify_chain(&db.store).await.unwrap(), Ok(3));

        // The database itself refuses UPDATE and DELETE.
        let upd = cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE consent_events SET source = 'forged' WHERE id = 2").execute(pool).await.map(|_| ())
        });
        assert!(upd.is_err(), "UPDATE on the ledger must fail");
        let del = cartero::dispatch!(&db.store, pool => {
            sqlx::query("DELETE FROM consent_events WHERE id = 2").execute(pool).await.map(|_| ())
        });
        assert!(del.is_err(), "DELETE on the ledger must fail");

        // Someone with DDL rights drops the guard and edits a row: the chain shows it.
        match &db.store {
            cartero::store::Store::Sqlite(p) => {
                sqlx::query("DROP TRIGGER consent_events_no_update")
                    .execute(p)
                    .await
                    .unwrap();
                sqlx::query("UPDATE consent_events SET source = 'forged' WHERE id = 2")
                    .execute(p)
                    .await
                    .unwrap();
            }
            cartero::store::Store::Postgres(p) => {
                sqlx::query("DROP TRIGGER consent_events_no_change ON consent_events")
                    .execute(p)
                    .await
                    .unwrap();
                sqlx::query("UPDATE consent_events SET source = 'forged' WHERE id = 2")
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(
            consent::verify_chain(&db.store).await.unwrap(),
            Err(ChainBreak::Content { id: 2 })
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_schemas_have_the_same_tables_and_columns() {
    let sqlite = TestDb::sqlite().await;
    let Some(pg) = TestDb::postgres().await else {
        return;
    };
    let lite: Vec<(String, String)> = match &sqlite.store {
        cartero::store::Store::Sqlite(p) => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' ORDER BY 1, 2",
        )
        .fetch_all(p)
        .await
        .unwrap(),
        _ => unreachable!(),
    };
    let post: Vec<(String, String)> = match &pg.store {
        cartero::store::Store::Postgres(p) => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%' ORDER BY 1, 2",
        )
        .fetch_all(p)
        .await
        .unwrap(),
        _ => unreachable!(),
    };
    assert!(!lite.is_empty());
    assert_eq!(lite, post);
}

/// References into contacts and lists hold on both backends, whichever way
/// each enforces them (SQLite's foreign keys, PostgreSQL's set-based checks
/// per statement): a row naming a missing contact or list is refused, in a
/// single-row and in a multi-row statement, and contacts and lists are never
/// deleted nor renumbered. Nothing refused leaves a row behind.
#[tokio::test(flavor = "multi_thread")]
async fn references_to_contacts_and_lists_are_enforced() {
    for db in TestDb::all().await {
        let b = db.backend();
        let dir = tempfile::tempdir().unwrap();
        let f = csv_file(&dir, "a.csv", "email,tags\na@example.com,vip\n");
        import_csv(&db.store, &f, &opts(), &|_| {}).await.unwrap();
        let (contact, list): (i64, i64) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as("SELECT contact_id, list_id FROM contact_lists").fetch_one(pool).await.unwrap()
        });
        let missing = contact + 1000;
        let refused = [
            format!("INSERT INTO contact_tags (contact_id, tag) VALUES ({missing}, 't')"),
            format!(
                "INSERT INTO contact_tags (contact_id, tag) VALUES ({contact}, 'ok'), ({missing}, 't')"
            ),
            // Consecutive ids with one missing: a dense range with a gap.
            format!(
                "INSERT INTO contact_tags (contact_id, tag) VALUES ({contact}, 'ok'), ({}, 't')",
                contact + 1
            ),
            format!(
                "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) \
                 VALUES ({missing}, {list}, 1, 0)"
            ),
            format!(
                "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) \
                 VALUES ({contact}, {}, 1, 0)",
                list + 1000
            ),
            format!("UPDATE contact_lists SET contact_id = {missing}"),
            format!("UPDATE contact_tags SET contact_id = {missing}"),
            format!(
                "INSERT INTO consent_events (contact_id, list_id, action, occurred_at, source, method, \
                 prev_hash, hash) VALUES ({missing}, {list}, 'grant', 0, 's', 'm', 'p', 'h')"
            ),
            format!(
                "INSERT INTO consent_events (contact_id, list_id, action, occurred_at, source, method, \
                 prev_hash, hash) VALUES ({contact}, {}, 'grant', 0, 's', 'm', 'p', 'h')",
                list + 1000
            ),
            format!("DELETE FROM contacts WHERE id = {contact}"),
            "DELETE FROM lists".to_string(),
            format!("UPDATE contacts SET id = {missing} WHERE id = {contact}"),
            format!("UPDATE lists SET id = {} WHERE id = {list}", list + 1000),
        ];
        for sql in &refused {
            let r = cartero::dispatch!(&db.store, pool => {
                sqlx::query(sql).execute(pool).await.map(|_| ())
            });
            assert!(r.is_err(), "{b:?} accepted: {sql}");
        }
        if let cartero::store::Store::Postgres(p) = &db.store {
            let r = sqlx::query("TRUNCATE contacts CASCADE").execute(p).await;
            assert!(r.is_err(), "TRUNCATE of contacts must fail");
        }
        let counts: (i64, i64, i64, i64, i64) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM contacts), (SELECT COUNT(*) FROM lists), \
                 (SELECT COUNT(*) FROM contact_tags), (SELECT COUNT(*) FROM contact_lists), \
                 (SELECT COUNT(*) FROM consent_events)",
            )
            .fetch_one(pool)
            .await
            .unwrap()
        });
        assert_eq!(counts, (1, 1, 1, 1, 1), "{b:?}");
        // What the references allow still works: a second list, a new tag.
        let ok = cartero::dispatch!(&db.store, pool => {
            sqlx::query(&format!("INSERT INTO contact_tags (contact_id, tag) VALUES ({contact}, 'new')"))
                .execute(pool)
                .await
                .map(|_| ())
        });
        assert!(ok.is_ok(), "{b:?}: {ok:?}");
    }
}
