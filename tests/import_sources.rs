//! Imports of real tools' exports, on both backends: the fixtures in
//! tests/fixtures/imports/ are written from each tool's documented export
//! columns (Mailchimp's subscribed, unsubscribed and cleaned exports and its
//! zip, listmonk, HubSpot's contacts and unsubscribes/bounces exports, Brevo
//! in Windows-1252 with semicolons, generic files with a BOM and CR line
//! ends, UTF-16 with tabs, an unclosed quote, a NUL byte). Each test states
//! the contacts, statuses, ledger entries and summary it expects.
//!
//! What must hold above all: nobody the source marks unsubscribed, cleaned,
//! blocklisted, bounced, complained or opted out is ever granted consent,
//! and no import turns a suppressed contact active (a property test).

mod common;

use std::path::PathBuf;

use cartero::contacts::import::{ImportError, ImportOptions, ImportSummary};
use cartero::contacts::preset::{MailchimpKind, Preset};
use cartero::contacts::source::Encoding;
use cartero::domain::{ConsentAction, ContactStatus, EmailAddress};
use cartero::store::Store;
use cartero::store::consent::{self, Appender, ConsentEntry, Evidence, StoredEntry};
use cartero::store::contacts::{self, Contact};
use cartero::store::status;
use common::db::TestDb;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imports")
        .join(name)
}

fn to_list(list: &str) -> ImportOptions {
    ImportOptions {
        list: Some(list.into()),
        consent_source: Some(format!("{list} signup")),
        ..Default::default()
    }
}

/// Imports a fixture; rejects go to a temporary file, never beside the fixture.
async fn import(
    store: &Store,
    name: &str,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts.clone();
    if opts.rejects_path.is_none() && !opts.dry_run {
        opts.rejects_path = Some(dir.path().join("rejects.csv"));
    }
    cartero::contacts::import_csv(store, &fixture(name), &opts, &|_| {}).await
}

async fn contact(store: &Store, email: &str) -> Contact {
    contacts::find_by_email(store, &EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{email} stored"))
}

async fn ledger(store: &Store, email: &str) -> Vec<StoredEntry> {
    let c = contact(store, email).await;
    consent::entries_for_contact(store, c.id).await.unwrap()
}

/// (list name, subscribed) of a contact.
async fn lists_of(store: &Store, email: &str) -> Vec<(String, i64)> {
    let c = contact(store, email).await;
    cartero::dispatch!(store, pool => {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT l.name, cl.subscribed FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
             WHERE cl.contact_id = $1 ORDER BY l.name",
        )
        .bind(c.id)
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

fn ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn mailchimp_exports_keep_evidence_and_never_resubscribe() {
    for db in TestDb::all().await {
        let s = &db.store;
        let opts = to_list("news");

        // The audience export as Mailchimp ships it: a zip with one CSV.
        let sum = import(s, "mailchimp_export.zip", &opts).await.unwrap();
        assert_eq!(
            sum.zip_entry.as_deref(),
            Some("subscribed_members_export_1a2b3c.csv")
        );
        assert_eq!(sum.preset, Some(Preset::Mailchimp));
        assert!(sum.preset_detected);
        assert_eq!(sum.mailchimp_export, Some(MailchimpKind::Subscribed));
        assert_eq!(sum.encoding, Some(Encoding::Utf8));
        assert_eq!(
            (sum.rows, sum.inserted, sum.duplicates, sum.rejected),
            (3, 2, 1, 0)
        );
        assert_eq!(
            sum.rejections[0].reason,
            "duplicate of row 2 (PEDRO@example.com)"
        );
        assert_eq!(
            (
                sum.consent_granted,
                sum.granted_with_source_evidence,
                sum.granted_asserted
            ),
            (2, 1, 1)
        );

        let ana = contact(s, "ana@example.com").await;
        assert_eq!(ana.tags, vec!["2021 Webinar, Spring", "Customer"]);
        assert_eq!(ana.attributes["Phone Number"], "+34 600 123 123");
        assert_eq!(ana.attributes["MEMBER_RATING"], 4);
        assert_eq!(ana.attributes["LAST_CHANGED"], "2023-01-02T03:04:05Z");
        assert_eq!(ana.timezone.as_deref(), Some("Europe/Madrid"));
        for gone in ["OPTIN_TIME", "OPTIN_IP", "CONFIRM_IP", "LEID", "EUID"] {
            assert!(
                ana.attributes.get(gone).is_none(),
                "{gone} is not an attribute"
            );
        }
        let l = ledger(s, "ana@example.com").await;
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].action, "grant");
        assert_eq!(l[0].occurred_at, ms("2021-03-04T10:11:12Z"), "confirmed at");
        assert_eq!(l[0].ip.as_deref(), Some("192.0.2.2"));
        assert_eq!(l[0].source, "news signup");
        let ev: serde_json::Value = serde_json::from_str(&l[0].evidence).unwrap();
        assert_eq!(ev["imported_from"], "mailchimp");
        assert_eq!(ev["optin_ip"], "192.0.2.1");
        assert_eq!(ev["optin_time"], "2021-03-04 10:00:00");
        assert_eq!(ev["source_method"], "double-opt-in");

        // Pedro has no opt-in data: the ledger says so.
        let pedro = contact(s, "pedro@example.com").await;
        assert_eq!(
            pedro.email, "Pedro@example.com",
            "the address keeps its given form"
        );
        assert_eq!(
            pedro.attributes["NOTES"],
            "met at a fair\nwants the catalogue"
        );
        let l = ledger(s, "Pedro@example.com").await;
        let ev: serde_json::Value = serde_json::from_str(&l[0].evidence).unwrap();
        assert_eq!(ev["evidence"], "asserted by the importer");

        // The unsubscribed export: a new leaver, and Pedro (in another case).
        let sum = import(s, "mailchimp_unsubscribed.csv", &opts)
            .await
            .unwrap();
        assert_eq!(sum.mailchimp_export, Some(MailchimpKind::Unsubscribed));
        assert_eq!((sum.inserted, sum.updated), (1, 1));
        assert_eq!(sum.suppressed_from_source.unsubscribed, 2);
        assert_eq!(sum.withdrawals_recorded, 2);
        assert_eq!(sum.consent_granted, 0);
        let leaver = contact(s, "leaver@example.com").await;
        assert_eq!(leaver.status, "unsubscribed");
        let l = ledger(s, "leaver@example.com").await;
        assert_eq!(l.len(), 1, "a withdrawal only, never a grant");
        assert_eq!(l[0].action, "withdraw");
        assert_eq!(l[0].occurred_at, ms("2022-05-06T07:08:09Z"));
        assert_eq!(
            lists_of(s, "leaver@example.com").await,
            vec![("news".into(), 0)]
        );
        let h = status::list(s, Some(leaver.id), None).await.unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            (h[0].to_status.as_str(), h[0].cause.as_str()),
            ("unsubscribed", "import")
        );
        assert_eq!(h[0].rule.as_deref(), Some("mailchimp:unsubscribed"));
        assert!(
            h[0].reason
                .as_deref()
                .unwrap()
                .contains("No longer interested")
        );
        assert_eq!(h[0].occurred_at, ms("2022-05-06T07:08:09Z"));
        assert_eq!(contact(s, "PEDRO@example.com").await.status, "unsubscribed");
        let actions: Vec<String> = ledger(s, "pedro@example.com")
            .await
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, vec!["grant", "withdraw"]);
        assert_eq!(
            lists_of(s, "pedro@example.com").await,
            vec![("news".into(), 0)]
        );

        // Again: nothing new.
        let sum = import(s, "mailchimp_unsubscribed.csv", &opts)
            .await
            .unwrap();
        assert_eq!(
            (sum.unchanged, sum.withdrawals_recorded, sum.consent_granted),
            (2, 0, 0)
        );

        // The cleaned export: bounced, no withdrawal (a bounce is not consent).
        let sum = import(s, "mailchimp_cleaned.csv", &opts).await.unwrap();
        assert_eq!(sum.mailchimp_export, Some(MailchimpKind::Cleaned));
        assert_eq!(sum.suppressed_from_source.bounced, 1);
        assert_eq!(contact(s, "gone@example.com").await.status, "bounced");
        assert!(ledger(s, "gone@example.com").await.is_empty());

        // The subscribed export once more: Pedro stays suppressed.
        let sum = import(s, "mailchimp_subscribed.csv", &opts).await.unwrap();
        assert_eq!(sum.kept_suppressed, 1);
        assert_eq!(sum.consent_granted, 0);
        assert_eq!(contact(s, "pedro@example.com").await.status, "unsubscribed");
        assert_eq!(
            lists_of(s, "pedro@example.com").await,
            vec![("news".into(), 0)]
        );
        // Two grants, two withdrawals.
        assert_eq!(consent::verify_chain(s).await.unwrap(), Ok(4));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listmonk_names_attributes_and_blocklist() {
    for db in TestDb::all().await {
        let s = &db.store;
        let sum = import(s, "listmonk_subscribers.csv", &to_list("news"))
            .await
            .unwrap();
        assert_eq!(sum.preset, Some(Preset::Listmonk));
        assert_eq!(
            (sum.inserted, sum.consent_granted, sum.granted_asserted),
            (3, 1, 1)
        );
        assert_eq!(sum.suppressed_from_source.unsubscribed, 2);
        assert_eq!(
            sum.withdrawals_recorded, 1,
            "blocklisted: a withdrawal; disabled: none"
        );

        let maria = contact(s, "maria@example.com").await;
        assert_eq!(maria.first_name.as_deref(), Some("María"));
        assert_eq!(maria.last_name.as_deref(), Some("José Pérez"));
        assert_eq!(maria.attributes["city"], "Sevilla");
        assert_eq!(maria.attributes["projects"], 3);
        assert_eq!(maria.attributes["stack"]["languages"][1], "rust");
        assert_eq!(maria.attributes["created_at"], "2020-07-23T08:56:58.546Z");
        assert!(maria.attributes.get("attributes").is_none());

        let blocked = contact(s, "blocked@example.com").await;
        assert_eq!(blocked.status, "unsubscribed");
        let l = ledger(s, "blocked@example.com").await;
        assert_eq!(
            (l.len(), l[0].action.as_str(), l[0].list_id),
            (1, "withdraw", None)
        );
        let off = contact(s, "off@example.com").await;
        assert_eq!(off.status, "unsubscribed");
        assert!(ledger(s, "off@example.com").await.is_empty());
        assert!(lists_of(s, "off@example.com").await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hubspot_unsubscribes_bounces_and_spam_reports() {
    for db in TestDb::all().await {
        let s = &db.store;
        let sum = import(s, "hubspot_contacts.csv", &to_list("news"))
            .await
            .unwrap();
        assert_eq!(sum.preset, Some(Preset::Hubspot));
        assert_eq!(sum.consent_granted, 1);
        assert_eq!(sum.suppressed_from_source.unsubscribed, 1);
        assert_eq!(sum.suppressed_from_source.bounced, 1);
        assert_eq!(contact(s, "ulf@example.com").await.status, "unsubscribed");
        let l = ledger(s, "ulf@example.com").await;
        assert_eq!((l[0].action.as_str(), l[0].list_id), ("withdraw", None));
        assert_eq!(contact(s, "bounce@example.com").await.status, "bounced");
        let hana = contact(s, "hana@example.com").await;
        assert_eq!(hana.status, "active");
        assert_eq!(hana.attributes["Phone Number"], "+81 90 1234 5678");
        assert_eq!(hana.attributes["Create Date"], "2022-02-03T10:00:00Z");

        let sum = import(s, "hubspot_unsubscribes_bounces.csv", &to_list("news"))
            .await
            .unwrap();
        assert_eq!(sum.preset, Some(Preset::Hubspot));
        assert_eq!(sum.suppressed_from_source.complained, 1);
        assert_eq!(sum.suppressed_from_source.unsubscribed, 1);
        assert_eq!(sum.consent_granted, 0);
        assert_eq!(contact(s, "spam@example.com").await.status, "complained");
        let l = ledger(s, "spam@example.com").await;
        assert_eq!((l[0].action.as_str(), l[0].list_id), ("withdraw", None));
        assert_eq!(contact(s, "hana@example.com").await.status, "unsubscribed");
        assert_eq!(
            lists_of(s, "hana@example.com").await,
            vec![("news".into(), 0)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn brevo_windows_1252_with_semicolons() {
    for db in TestDb::all().await {
        let s = &db.store;
        let sum = import(s, "brevo_export_cp1252.csv", &to_list("news"))
            .await
            .unwrap();
        assert_eq!(sum.preset, Some(Preset::Brevo));
        assert_eq!(sum.encoding, Some(Encoding::Windows1252));
        assert!(sum.encoding_detected && sum.delimiter_detected);
        assert_eq!(sum.delimiter, "semicolon");
        assert_eq!((sum.inserted, sum.rejected), (3, 0));
        assert_eq!(
            (sum.consent_granted, sum.no_consent_in_source),
            (1, 1),
            "OPT_IN=No: imported, not subscribed"
        );
        let jose = contact(s, "jose@example.es").await;
        assert_eq!(jose.first_name.as_deref(), Some("José"));
        assert_eq!(jose.last_name.as_deref(), Some("Muñoz"));
        assert_eq!(
            jose.attributes["SMS"], "34600111222",
            "phone numbers stay text"
        );
        assert_eq!(jose.attributes["ADDED_TIME"], "2023-04-05T04:07:08Z");
        let negro = contact(s, "negro@example.es").await;
        assert_eq!(negro.status, "unsubscribed");
        assert_eq!(negro.first_name.as_deref(), Some("Iñaki"));
        let l = ledger(s, "negro@example.es").await;
        assert_eq!(
            (l.len(), l[0].action.as_str(), l[0].list_id),
            (1, "withdraw", None)
        );
        let zoe = contact(s, "nooptin@example.es").await;
        assert_eq!(
            (zoe.status.as_str(), zoe.first_name.as_deref()),
            ("active", Some("Zoë"))
        );
        assert!(ledger(s, "nooptin@example.es").await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_file_with_bom_cr_and_trailing_empty_columns() {
    for db in TestDb::all().await {
        let s = &db.store;
        let sum = import(s, "generic_bom_cr.csv", &to_list("news"))
            .await
            .unwrap();
        assert_eq!(sum.preset, Some(Preset::Generic));
        assert_eq!(sum.encoding, Some(Encoding::Utf8Bom));
        assert_eq!((sum.rows, sum.inserted, sum.rejected), (5, 4, 1));
        assert_eq!(sum.rejections[0].row, 5);
        assert_eq!(sum.rejections[0].line, 6, "CR line ends counted");
        assert!(sum.rejections[0].reason.contains("unknown status"));
        assert_eq!(
            (
                sum.granted_with_source_evidence,
                sum.no_consent_in_source,
                sum.withdrawals_recorded
            ),
            (1, 1, 2)
        );
        let one = contact(s, "one@example.com").await;
        assert_eq!(one.attributes["state"], "MD");
        assert_eq!(one.attributes["orders"], 3);
        assert_eq!(one.attributes["joined"], "2024-01-02");
        let l = ledger(s, "one@example.com").await;
        assert_eq!(l[0].ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(l[0].occurred_at, ms("2024-01-02T03:04:05Z"));
        assert_eq!(
            contact(s, "two@example.com").await.attributes["state"],
            "13"
        );
        assert_eq!(contact(s, "two@example.com").await.status, "unsubscribed");
        assert_eq!(contact(s, "three@example.com").await.status, "complained");
        let four = contact(s, "four@example.com").await;
        assert_eq!(four.status, "active");
        assert!(
            ledger(s, "four@example.com").await.is_empty(),
            "pending: no grant"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn utf16_tab_separated_text() {
    for db in TestDb::all().await {
        let s = &db.store;
        let sum = import(s, "generic_utf16_tab.txt", &ImportOptions::default())
            .await
            .unwrap();
        assert_eq!(sum.encoding, Some(Encoding::Utf16Le));
        assert_eq!(sum.delimiter, "tab");
        assert_eq!(sum.inserted, 2);
        let z = contact(s, "zoe@example.com").await;
        assert_eq!(
            (z.first_name.as_deref(), &z.attributes["city"]),
            (Some("Zoë"), &serde_json::json!("Köln"))
        );
        assert_eq!(
            contact(s, "li@example.com").await.first_name.as_deref(),
            Some("李")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unclosed_quote_rejects_the_lines_it_swallows() {
    for db in TestDb::all().await {
        let s = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let rejects = dir.path().join("r.csv");
        let opts = ImportOptions {
            rejects_path: Some(rejects.clone()),
            ..Default::default()
        };
        let sum = import(s, "unclosed_quote.csv", &opts).await.unwrap();
        assert_eq!((sum.rows, sum.inserted, sum.rejected), (4, 1, 3));
        let lines: Vec<(u64, u64)> = sum.rejections.iter().map(|r| (r.row, r.line)).collect();
        assert_eq!(lines, vec![(2, 3), (3, 4), (4, 5)]);
        assert!(
            sum.rejections[0].reason.starts_with("unclosed quote"),
            "{}",
            sum.rejections[0].reason
        );
        assert!(sum.rejections[1].reason.contains("opened on line 3"));
        let text = std::fs::read_to_string(&rejects).unwrap();
        assert!(
            text.contains("lost1@example.com") && text.contains("lost2@example.com"),
            "{text}"
        );
        assert_eq!(contacts::count(s).await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_rejects_its_row_with_row_and_column() {
    for db in TestDb::all().await {
        let s = &db.store;
        let sum = import(s, "nul_byte.csv", &to_list("news")).await.unwrap();
        assert_eq!((sum.inserted, sum.rejected), (1, 1));
        assert_eq!((sum.rejections[0].row, sum.rejections[0].line), (1, 2));
        assert_eq!(
            sum.rejections[0].reason,
            "column 2 (\"first_name\") contains a NUL byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn honest_modes_write_nothing() {
    for db in TestDb::all().await {
        let s = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "email,name\nnot-an-address,A\n,B\n").unwrap();
        let sum = cartero::contacts::import_csv(s, &bad, &to_list("news"), &|_| {})
            .await
            .unwrap();
        assert!(sum.no_usable_rows && !sum.written);
        assert_eq!(sum.rejected, 2);
        assert!(!dir.path().join("bad.csv.rejects.csv").exists());
        let lists: i64 = cartero::dispatch!(s, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM lists").fetch_one(pool).await.unwrap()
        });
        assert_eq!(lists, 0, "no list created");

        // A dry run writes no rejects file unless one is named.
        let some = dir.path().join("some.csv");
        std::fs::write(&some, "email\na@example.com\nbroken\n").unwrap();
        let dry = ImportOptions {
            dry_run: true,
            ..to_list("news")
        };
        let sum = cartero::contacts::import_csv(s, &some, &dry, &|_| {})
            .await
            .unwrap();
        assert_eq!((sum.inserted, sum.rejected, sum.written), (1, 1, false));
        assert!(sum.rejects_file.is_none());
        assert!(!dir.path().join("some.csv.rejects.csv").exists());
        assert_eq!(contacts::count(s).await.unwrap(), 0);

        let empty = ImportOptions {
            consent_source: Some("  ".into()),
            ..to_list("news")
        };
        assert!(matches!(
            cartero::contacts::import_csv(s, &some, &empty, &|_| {}).await,
            Err(ImportError::EmptyConsentSource)
        ));

        // Typo, disposable and role findings are counted and listed.
        let flagged = dir.path().join("flagged.csv");
        std::fs::write(
            &flagged,
            "email\nana@gmail.con\npostmaster@example.com\nx@mailinator.com\nok@example.com\n",
        )
        .unwrap();
        let sum = cartero::contacts::import_csv(s, &flagged, &ImportOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(
            (
                sum.findings.typo,
                sum.findings.role,
                sum.findings.disposable
            ),
            (1, 1, 1)
        );
        assert_eq!(sum.flagged.len(), 3);
        assert_eq!(sum.flagged[0].email, "ana@gmail.con");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_dry_run_creates_no_database() {
    let db = TestDb::sqlite().await;
    let p = common::project::Project::new(&db, "");
    p.write("c.csv", "email\na@example.com\nbroken\n");
    let fresh = p.file("fresh.db");
    let url = format!("sqlite://{}", fresh.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(p.path())
        .args([
            "--database-url",
            &url,
            "--quiet",
            "contacts",
            "import",
            "c.csv",
            "--dry-run",
        ])
        .env_remove("CARTERO_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("dry run: nothing was written"), "{stdout}");
    assert!(!fresh.exists(), "no database file");
    assert!(!p.file("c.csv.rejects.csv").exists(), "no rejects file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("c.csv:3: row 2: invalid email"));

    p.write("none.csv", "email\nbroken\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(p.path())
        .args([
            "--database-url",
            &url,
            "--quiet",
            "contacts",
            "import",
            "none.csv",
        ])
        .env_remove("CARTERO_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable row"));
    assert!(!fresh.exists(), "a file with no usable row creates nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contact_who_withdrew_from_everything_is_not_granted_a_new_list() {
    for db in TestDb::all().await {
        let s = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.csv");
        std::fs::write(&f, "email\nleft@example.com\n").unwrap();
        cartero::contacts::import_csv(s, &f, &to_list("a"), &|_| {})
            .await
            .unwrap();
        let c = contact(s, "left@example.com").await;
        let mut tx = s.begin().await.unwrap();
        let mut app = Appender::start(&mut tx).await.unwrap();
        app.append(
            &mut tx,
            &ConsentEntry {
                contact_id: c.id,
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
        status::change(
            &mut tx,
            &status::StatusChange {
                contact_id: c.id,
                from: ContactStatus::Active,
                to: ContactStatus::Unsubscribed,
                cause: "unsubscribe".into(),
                rule: None,
                event_id: None,
                actor: "cartero".into(),
                reason: None,
                occurred_at: 1,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        // Reinstated by an operator: what the suppression withdrew is
        // restored, but the person's withdrawal from everything still keeps
        // a new list from being granted by an import.
        cartero::consent::reinstate(s, c.id, "op", "asked by phone", 2)
            .await
            .unwrap();
        let sum = cartero::contacts::import_csv(s, &f, &to_list("b"), &|_| {})
            .await
            .unwrap();
        assert_eq!((sum.consent_granted, sum.kept_withdrawn), (0, 1));
        assert_eq!(lists_of(s, "left@example.com").await, vec![("a".into(), 0)]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_explicit_logged_override_reinstates() {
    for db in TestDb::all().await {
        let s = &db.store;
        import(s, "mailchimp_cleaned.csv", &to_list("news"))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("back.csv");
        std::fs::write(&f, "email\ngone@example.com\n").unwrap();
        let sum = cartero::contacts::import_csv(s, &f, &to_list("news"), &|_| {})
            .await
            .unwrap();
        assert_eq!((sum.kept_suppressed, sum.consent_granted), (1, 0));
        assert_eq!(contact(s, "gone@example.com").await.status, "bounced");

        let over = ImportOptions {
            override_suppression: Some("mailbox fixed, confirmed by phone".into()),
            ..to_list("news")
        };
        let sum = cartero::contacts::import_csv(s, &f, &over, &|_| {})
            .await
            .unwrap();
        assert_eq!((sum.reinstated_by_override, sum.consent_granted), (1, 1));
        let c = contact(s, "gone@example.com").await;
        assert_eq!(c.status, "active");
        let h = status::list(s, Some(c.id), None).await.unwrap();
        let last = h.last().unwrap();
        assert_eq!(
            (
                last.cause.as_str(),
                last.rule.as_deref(),
                last.reason.as_deref()
            ),
            (
                "operator",
                Some("import-override"),
                Some("mailbox fixed, confirmed by phone")
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn case_variants_are_one_contact_and_old_duplicates_merge() {
    for db in TestDb::all().await {
        let s = &db.store;
        // Two case variants stored before imports matched case-insensitively.
        let mut ids = Vec::new();
        for email in ["Bob@example.com", "bob@example.com"] {
            let id: i64 = cartero::dispatch!(s, pool => {
                sqlx::query_scalar(
                    "INSERT INTO contacts (email, email_ascii, domain, created_at, updated_at) \
                     VALUES ($1, $1, 'example.com', 1, 1) RETURNING id",
                )
                .bind(email)
                .fetch_one(pool)
                .await
                .unwrap()
            });
            ids.push(id);
        }
        let mut tx = s.begin().await.unwrap();
        let a = contacts::ensure_list(&mut tx, "a", 1).await.unwrap();
        let b = contacts::ensure_list(&mut tx, "b", 1).await.unwrap();
        let mut app = Appender::start(&mut tx).await.unwrap();
        let entry = |contact_id, list_id, action, occurred_at| ConsentEntry {
            contact_id,
            list_id: Some(list_id),
            action,
            occurred_at,
            evidence: Evidence {
                source: "form".into(),
                method: "form".into(),
                ..Default::default()
            },
        };
        app.append_many(
            &mut tx,
            &[
                entry(ids[0], a, ConsentAction::Grant, 10),
                entry(ids[1], a, ConsentAction::Withdraw, 20),
                entry(ids[1], b, ConsentAction::Grant, 30),
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let groups = contacts::case_duplicates(s).await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].contacts.len(), 2);
        let merged = contacts::merge_group(s, &groups[0], "op", "one person", 100)
            .await
            .unwrap();
        assert_eq!(merged, 1);
        assert!(contacts::case_duplicates(s).await.unwrap().is_empty());
        let dup = contacts::find_by_id(s, ids[1]).await.unwrap().unwrap();
        assert_eq!(dup.status, "merged");
        // Both histories: the duplicate's entries stay, the survivor carries
        // the newer state of each list.
        assert_eq!(
            consent::entries_for_contact(s, ids[1]).await.unwrap().len(),
            2
        );
        let kept = consent::entries_for_contact(s, ids[0]).await.unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[1].method, "merge");
        assert_eq!(
            lists_of(s, "Bob@example.com").await,
            vec![("a".into(), 0), ("b".into(), 1)]
        );
        assert_eq!(consent::verify_chain(s).await.unwrap(), Ok(5));

        // An import in a third case updates the survivor.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.csv");
        std::fs::write(&f, "email,city\nBOB@example.com,Vigo\n").unwrap();
        let sum = cartero::contacts::import_csv(s, &f, &ImportOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!((sum.inserted, sum.updated), (0, 1));
        let bob = contacts::find_by_id(s, ids[0]).await.unwrap().unwrap();
        assert_eq!(bob.attributes["city"], "Vigo");
        assert_eq!(bob.email, "Bob@example.com");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_and_merges_case_duplicates() {
    for db in TestDb::all().await {
        let s = &db.store;
        for email in ["Eve@example.com", "EVE@example.com"] {
            cartero::dispatch!(s, pool => {
                sqlx::query(
                    "INSERT INTO contacts (email, email_ascii, domain, created_at, updated_at) \
                     VALUES ($1, $1, 'example.com', 1, 1)",
                )
                .bind(email)
                .execute(pool)
                .await
                .unwrap();
            });
        }
        let p = common::project::Project::new(&db, "");
        let out = p.ok(&["contacts", "duplicates"]);
        assert!(out.contains("eve@example.com"), "{out}");
        assert!(out.contains("1 group(s) of case variants"), "{out}");
        let refused = p.run(&["contacts", "duplicates", "--merge"]);
        assert_eq!(refused.status.code(), Some(2), "--merge needs --reason");
        let out = p.ok(&[
            "contacts",
            "duplicates",
            "--merge",
            "--reason",
            "one person",
        ]);
        assert!(out.contains("1 contact(s) merged"), "{out}");
        let out = p.ok(&["contacts", "duplicates"]);
        assert!(out.contains("0 group(s)"), "{out}");
        let shown = p.ok(&["contacts", "show", "eve@EXAMPLE.com", "--format", "json"]);
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(shown["contact"]["email"], "Eve@example.com");
        assert_eq!(shown["contact"]["status"], "active");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_lookup_uses_the_address_index_after_analyze() {
    for db in TestDb::all().await {
        let s = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let few = dir.path().join("few.csv");
        std::fs::write(&few, "email\na@example.com\nb@example.com\nc@example.com\n").unwrap();
        cartero::contacts::import_csv(s, &few, &ImportOptions::default(), &|_| {})
            .await
            .unwrap();
        cartero::dispatch!(s, pool => {
            sqlx::query("ANALYZE").execute(pool).await.unwrap();
        });
        let mut text = String::from("email\n");
        for i in 0..3000 {
            text.push_str(&format!("user{i}@example.com\n"));
        }
        let more = dir.path().join("more.csv");
        std::fs::write(&more, text).unwrap();
        let sum = cartero::contacts::import_csv(s, &more, &ImportOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(sum.inserted, 3000);
        let keys: Vec<String> = (0..1000).map(|i| format!("user{i}@example.com")).collect();
        let plan = contacts::explain_batch_lookup(s, &keys)
            .await
            .unwrap()
            .join("\n");
        if db.backend() == cartero::store::Backend::Sqlite {
            assert!(plan.contains("USING INDEX contacts_email_fold"), "{plan}");
            assert!(!plan.contains("SCAN contacts"), "{plan}");
        } else {
            // PostgreSQL may rightly scan a table this small: with sequential
            // scans priced out, the lookup's expression must match the index.
            let cartero::store::Store::Postgres(pool) = s else {
                unreachable!()
            };
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            let sql = contacts::lookup_sql(db.backend(), keys.len());
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("contacts_email_fold"), "{plan}");
            sqlx::query("RESET enable_seqscan")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
}

mod property {
    use super::*;
    use proptest::prelude::*;

    const HEADERS: &[&str] = &[
        "email,status,opt_in",
        "Email Address,OPTIN_TIME,UNSUB_TIME",
        "Email Address,OPTIN_TIME,CLEAN_TIME",
        "uuid,email,attributes,status",
        "Email,Unsubscribed from all email,Email hard bounce reason",
        "EMAIL;EMAIL_BLACKLISTED;OPT_IN",
    ];
    const CELLS: &[&str] = &[
        "",
        "subscribed",
        "unsubscribed",
        "blocklisted",
        "enabled",
        "disabled",
        "yes",
        "no",
        "true",
        "false",
        "2021-03-04 10:11:12",
        "{}",
        "cleaned",
        "pending",
        "\"",
        "x\ny",
    ];
    const PEOPLE: &[&str] = &[
        "p1@example.com",
        "P1@example.com",
        "p2@example.com",
        "P2@EXAMPLE.COM",
        "p3@example.com",
    ];

    fn file() -> impl Strategy<Value = String> {
        (
            0..HEADERS.len(),
            proptest::collection::vec(
                (
                    0..PEOPLE.len(),
                    0..CELLS.len(),
                    0..CELLS.len(),
                    0..CELLS.len(),
                ),
                0..6,
            ),
        )
            .prop_map(|(h, rows)| {
                let header = HEADERS[h];
                let d = if header.contains(';') { ";" } else { "," };
                let width = header.split(d).count();
                let mut text = format!("{header}\n");
                for (p, a, b, c) in rows {
                    let cells = [PEOPLE[p], CELLS[a], CELLS[b], CELLS[c]];
                    let quoted: Vec<String> = cells[..width]
                        .iter()
                        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                        .collect();
                    text.push_str(&quoted.join(d));
                    text.push('\n');
                }
                text
            })
    }

    async fn statuses(s: &Store) -> Vec<(i64, String)> {
        cartero::dispatch!(s, pool => {
            sqlx::query_as("SELECT id, status FROM contacts ORDER BY id").fetch_all(pool).await.unwrap()
        })
    }

    /// Whatever the files say, a contact that is suppressed stays
    /// suppressed and gains no grant. One database per backend takes every
    /// generated file in turn, so suppressions pile up as the cases run.
    #[test]
    fn no_file_makes_a_suppressed_contact_active() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dbs = rt.block_on(async {
            let dbs = TestDb::all().await;
            for db in &dbs {
                // p2 starts bounced.
                let dir = tempfile::tempdir().unwrap();
                let seed = dir.path().join("seed.csv");
                std::fs::write(&seed, "email,status\np2@example.com,bounced\n").unwrap();
                cartero::contacts::import_csv(&db.store, &seed, &to_list("news"), &|_| {})
                    .await
                    .unwrap();
            }
            dbs
        });
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 64,
            ..ProptestConfig::default()
        });
        runner
            .run(&proptest::collection::vec(file(), 1..4), |files| {
                rt.block_on(async {
                    for db in &dbs {
                        let s = &db.store;
                        let dir = tempfile::tempdir().unwrap();
                        for (i, text) in files.iter().enumerate() {
                            let before = statuses(s).await;
                            let mut grants_before = std::collections::HashMap::new();
                            for (id, st) in &before {
                                if st != "active" {
                                    grants_before.insert(*id, grants(s, *id).await);
                                }
                            }
                            let f = dir.path().join(format!("f{i}.csv"));
                            std::fs::write(&f, text).unwrap();
                            let _ = cartero::contacts::import_csv(s, &f, &to_list("news"), &|_| {})
                                .await;
                            let after: std::collections::HashMap<i64, String> =
                                statuses(s).await.into_iter().collect();
                            for (id, st) in before {
                                if st != "active" {
                                    assert_ne!(
                                        after[&id], "active",
                                        "contact {id} was {st}:\n{text}"
                                    );
                                    assert_eq!(
                                        grants(s, id).await,
                                        grants_before[&id],
                                        "no grant for suppressed {id}:\n{text}"
                                    );
                                }
                            }
                        }
                    }
                });
                Ok(())
            })
            .unwrap();
        let suppressed = rt.block_on(statuses(&dbs[0].store));
        assert!(
            suppressed.iter().any(|(_, s)| s != "active"),
            "the cases suppressed someone: {suppressed:?}"
        );
    }

    async fn grants(s: &Store, id: i64) -> usize {
        consent::entries_for_contact(s, id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == "grant")
            .count()
    }
}
