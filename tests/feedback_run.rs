//! `cartero feedback run` end to end: a campaign goes out through a real
//! Postfix to an existing user, a user that does not exist and a domain
//! whose mail is refused; Postfix's own DSNs come back to the VERP return
//! path in the `bounces` Maildir; `feedback run` reads them from that
//! Maildir, over IMAP from a Dovecot serving it, or from an mbox built from
//! the files, and exactly the contacts whose mail bounced end up `bounced`.
//! A second run changes nothing. Every test runs against SQLite and
//! PostgreSQL.
//!
//! The end-to-end tests import their contacts with `cartero contacts
//! import`; the policy tests further down drive the library directly and
//! write their contacts, campaigns and sends with SQL.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cartero::domain::ConsentAction;
use cartero::store::consent::{Appender, ConsentEntry, Evidence};
use cartero::store::{Store, Tx, contacts};
use common::db::TestDb;
use common::servers::{self, DOMAIN, Dovecot, IMAP_PASSWORD, Postfix, REFUSED_DOMAIN};

const SECRET: &str = "feedback-run-test-secret-0123456789";
const NOW: i64 = 1_790_000_000_000;

/// Recipients of the test campaign and whether their mail bounces.
fn recipients() -> Vec<(String, bool)> {
    vec![
        (format!("alice@{DOMAIN}"), false),
        (format!("nobody@{DOMAIN}"), true),
        (format!("bob@{DOMAIN}"), false),
        (format!("carol@{REFUSED_DOMAIN}"), true),
    ]
}

/// Adds a contact subscribed to `list_id` (SQL: see the module comment).
async fn add_contact(tx: &mut Tx, appender: &mut Appender, email: &str, list_id: i64) -> i64 {
    let domain = email
        .rsplit('@')
        .next()
        .expect("address with @")
        .to_string();
    let id: i64 = cartero::dispatch_tx!(tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO contacts (email, email_ascii, domain, status, created_at, updated_at) \
             VALUES ($1, $1, $2, 'active', $3, $3) RETURNING id",
        )
        .bind(email)
        .bind(&domain)
        .bind(NOW)
        .fetch_one(&mut *conn)
        .await
        .expect("insert contact")
    });
    appender
        .append(
            tx,
            &ConsentEntry {
                contact_id: id,
                list_id: Some(list_id),
                action: ConsentAction::Grant,
                occurred_at: NOW,
                evidence: Evidence {
                    source: "test".into(),
                    method: "import".into(),
                    details: serde_json::json!({}),
                    ..Evidence::default()
                },
            },
        )
        .await
        .expect("grant");
    id
}

async fn seed(store: &Store, emails: &[String]) {
    let mut tx = store.begin().await.expect("begin");
    let list = contacts::ensure_list(&mut tx, "newsletter", NOW)
        .await
        .expect("list");
    let mut appender = Appender::start(&mut tx).await.expect("ledger");
    for e in emails {
        add_contact(&mut tx, &mut appender, e, list).await;
    }
    tx.commit().await.expect("commit");
}

/// A project folder: cartero.toml with `[smtp]` to the Postfix, a campaign
/// and its template, and `feedback` as the `[feedback]` section. The
/// List-Unsubscribe mailto goes to the bounce mailbox too (one mailbox for
/// all feedback, as `feedback run` reads one).
fn project(dir: &Path, smtp_port: u16, feedback: &str) {
    fs::create_dir_all(dir.join("campaigns")).expect("mkdir");
    fs::create_dir_all(dir.join("templates")).expect("mkdir");
    fs::write(
        dir.join("cartero.toml"),
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nhelo_name = \"cartero.example\"\n\
             concurrency = 2\n\n\
             [sender]\nbounce_local = \"bounces\"\nbounce_domain = \"{DOMAIN}\"\n\
             unsubscribe_mailto = \"bounces@{DOMAIN}\"\nmessage_id_domain = \"cartero.example\"\n\
             base_url = \"http://localhost:8080\"\nsecret = \"{SECRET}\"\n\n\
             [policy]\nsoft_bounce_limit = 3\nsoft_bounce_window_days = 30\n\n{feedback}\n"
        ),
    )
    .expect("cartero.toml");
    fs::write(
        dir.join("campaigns/x.toml"),
        "name = \"Feedback test\"\nsubject = \"Hello\"\nfrom = \"Shop <news@shop.example>\"\n\
         list = \"newsletter\"\n\n[template]\nhtml = \"x.html\"\n",
    )
    .expect("campaign");
    fs::write(
        dir.join("templates/x.html"),
        "<html><body><p>Hello, this is the test campaign.</p></body></html>\n",
    )
    .expect("template");
}

/// Runs the cartero binary in `dir`; panics with its output on failure.
fn cartero(dir: &Path, db_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("cartero.toml"))
        .arg("--database-url")
        .arg(db_url)
        .args(args)
        .env_remove("CARTERO_CONFIG")
        .env_remove("CARTERO_DATABASE_URL")
        .output()
        .expect("run cartero");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cartero {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `feedback run --format json`, parsed: (summary, changes).
fn feedback_run(dir: &Path, db_url: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let out = cartero(dir, db_url, &["feedback", "run", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    (v["summary"].clone(), changes)
}

async fn statuses(store: &Store) -> Vec<(String, String)> {
    cartero::dispatch!(store, pool => {
        sqlx::query_as("SELECT email, status FROM contacts ORDER BY email")
            .fetch_all(pool)
            .await
            .expect("statuses")
    })
}

async fn count(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
    })
}

fn expected_statuses() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = recipients()
        .into_iter()
        .map(|(e, bounces)| (e, if bounces { "bounced" } else { "active" }.to_string()))
        .collect();
    v.sort();
    v
}

/// Sends the campaign through a fresh Postfix and waits for the DSNs.
/// Returns the Postfix (keep it alive) and the DSN files.
async fn send_and_collect_dsns(db: &TestDb, dir: &Path) -> Option<(Postfix, Vec<PathBuf>)> {
    let pf = Postfix::start()?;
    project(dir, pf.smtp_port(), "");
    let csv: String = std::iter::once("email".to_string())
        .chain(recipients().into_iter().map(|(e, _)| e))
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(dir.join("contacts.csv"), csv + "\n").expect("csv");
    cartero(
        dir,
        &db.url,
        &[
            "contacts",
            "import",
            "contacts.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "test form",
        ],
    );
    assert_eq!(count(&db.store, "SELECT COUNT(*) FROM contacts").await, 4);
    let out = cartero(dir, &db.url, &["campaign", "send", "campaigns/x.toml"]);
    assert!(!out.is_empty(), "campaign send prints a summary");
    let bouncing = recipients().iter().filter(|(_, b)| *b).count();
    let dsns = pf.wait_for_messages("bounces", bouncing, Duration::from_secs(60));
    // Exactly the bouncing ones, no more: give a straggler a moment.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        servers::maildir_messages(&pf.maildir("bounces")).len(),
        bouncing,
        "one DSN per bouncing recipient\n{}",
        pf.log()
    );
    assert_eq!(
        servers::maildir_messages(&pf.maildir("alice")).len(),
        1,
        "alice got the campaign"
    );
    Some((pf, dsns))
}

/// What every source must end with after its first run.
async fn assert_first_run(db: &TestDb, summary: &serde_json::Value, changes: &[serde_json::Value]) {
    assert_eq!(summary["messages"], 2, "{summary}");
    assert_eq!(summary["bounces_hard"], 2, "{summary}");
    assert_eq!(summary["bounces_soft"], 0, "{summary}");
    assert_eq!(summary["unmatched"], 0, "{summary}");
    assert_eq!(summary["kept_aside"], 0, "{summary}");
    assert_eq!(summary["status_changes"], 2, "{summary}");
    assert_eq!(changes.len(), 2);
    assert_eq!(statuses(&db.store).await, expected_statuses());
    // Each change names its cause, rule and the event, in one transaction.
    let linked = count(
        &db.store,
        "SELECT COUNT(*) FROM status_changes s JOIN events e ON e.id = s.event_id \
         WHERE s.cause = 'bounce' AND s.rule = 'hard-bounce' AND s.to_status = 'bounced' \
         AND e.kind = 'bounce_hard' AND e.send_id IS NOT NULL AND e.contact_id = s.contact_id",
    )
    .await;
    assert_eq!(linked, 2);
    // Matched by the VERP token, to the very send that bounced.
    let by_verp = count(
        &db.store,
        "SELECT COUNT(*) FROM events e JOIN sends s ON s.id = e.send_id \
         WHERE e.kind = 'bounce_hard' AND e.data LIKE '%\"matched_by\":\"verp\"%' AND s.contact_id = e.contact_id",
    )
    .await;
    assert_eq!(by_verp, 2);
    assert_eq!(
        count(
            &db.store,
            "SELECT COUNT(*) FROM feedback_messages WHERE outcome = 'processed'"
        )
        .await,
        2
    );
}

/// Nothing new after a second run: same statuses, events and changes.
async fn assert_unchanged(db: &TestDb) {
    assert_eq!(statuses(&db.store).await, expected_statuses());
    assert_eq!(
        count(&db.store, "SELECT COUNT(*) FROM status_changes").await,
        2
    );
    assert_eq!(count(&db.store, "SELECT COUNT(*) FROM events").await, 2);
    assert_eq!(
        count(&db.store, "SELECT COUNT(*) FROM feedback_messages").await,
        2
    );
}

#[tokio::test]
async fn maildir_dsns_bounce_exactly_the_failed_recipients() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().expect("tmp");
        let Some((pf, dsns)) = send_and_collect_dsns(&db, dir.path()).await else {
            return;
        };
        let maildir = pf.maildir("bounces");
        project(
            dir.path(),
            pf.smtp_port(),
            &format!(
                "[feedback]\nsource = \"maildir\"\npath = \"{}\"\n",
                maildir.display()
            ),
        );

        // A dry run reports the same and writes nothing.
        let out = cartero(
            dir.path(),
            &db.url,
            &["feedback", "run", "--dry-run", "--format", "json"],
        );
        let dry: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(dry["summary"]["status_changes"], 2, "{dry}");
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM feedback_messages").await,
            0
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM status_changes").await,
            0
        );
        assert_eq!(
            servers::maildir_messages(&maildir).len(),
            2,
            "dry run moves nothing"
        );

        let (summary, changes) = feedback_run(dir.path(), &db.url);
        assert_first_run(&db, &summary, &changes).await;
        assert!(
            servers::maildir_messages(&maildir).is_empty(),
            "processed mail moved out of the inbox"
        );
        assert_eq!(
            servers::maildir_messages(&maildir.join(".Processed")).len(),
            2,
            "and into .Processed"
        );

        // Second run: nothing left to read, nothing changes.
        let (again, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(again["messages"], 0, "{again}");
        assert_unchanged(&db).await;

        // A crash between commit and acknowledgement leaves the mail in the
        // inbox: put the DSNs back; the database's dedupe skips them.
        let processed = servers::maildir_messages(&maildir.join(".Processed"));
        assert_eq!(processed.len(), dsns.len());
        for (i, f) in processed.iter().enumerate() {
            fs::copy(f, maildir.join(format!("new/replayed.{i}"))).expect("replay");
        }
        let (replayed, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(replayed["messages"], 2, "{replayed}");
        assert_eq!(replayed["duplicates"], 2, "{replayed}");
        assert_eq!(replayed["status_changes"], 0, "{replayed}");
        assert_unchanged(&db).await;

        // Mail that is no report at all is kept aside with its reason,
        // never dropped, and changes nothing.
        fs::write(
            maildir.join("new/1.letter"),
            servers::test_message(
                "someone@example.net",
                &format!("bounces@{DOMAIN}"),
                "hello",
                "just saying hi",
            ),
        )
        .expect("letter");
        let (letter, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(
            (letter["messages"].as_u64(), letter["kept_aside"].as_u64()),
            (Some(1), Some(1)),
            "{letter}"
        );
        let kept = servers::maildir_messages(&maildir.join(".KeptAside"));
        assert_eq!(kept.len(), 1, "moved to .KeptAside");
        assert_eq!(
            count(
                &db.store,
                "SELECT COUNT(*) FROM feedback_messages WHERE outcome = 'kept_aside' \
                              AND kept_aside_reason LIKE 'not a bounce%'"
            )
            .await,
            1
        );
        assert_eq!(statuses(&db.store).await, expected_statuses());
        drop(pf);
    }
}

#[tokio::test]
async fn mailed_unsubscribe_through_postfix_withdraws_consent() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().expect("tmp");
        let Some((pf, _)) = send_and_collect_dsns(&db, dir.path()).await else {
            return;
        };
        // Alice uses the mailto of the List-Unsubscribe header she got.
        let alice = format!("alice@{DOMAIN}");
        let got =
            fs::read_to_string(&servers::maildir_messages(&pf.maildir("alice"))[0]).expect("mail");
        let unfolded = got
            .replace("\r\n", "\n")
            .replace("\n ", " ")
            .replace("\n\t", " ");
        let header = unfolded
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("list-unsubscribe:"))
            .expect("List-Unsubscribe");
        let mailto = header
            .split("<mailto:")
            .nth(1)
            .and_then(|m| m.split(['?', '>']).next())
            .expect("a mailto")
            .to_string();
        assert!(mailto.starts_with("bounces+"), "{mailto}");
        let msg = servers::test_message(&alice, &mailto, "unsubscribe", "");
        servers::smtp_send(pf.smtp_port(), &alice, &[&mailto], &msg).expect("unsubscribe mail");
        pf.wait_for_messages("bounces", 3, Duration::from_secs(30));

        project(
            dir.path(),
            pf.smtp_port(),
            &format!(
                "[feedback]\nsource = \"maildir\"\npath = \"{}\"\n",
                pf.maildir("bounces").display()
            ),
        );
        let (summary, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(summary["messages"], 3, "{summary}");
        assert_eq!(summary["bounces_hard"], 2, "{summary}");
        assert_eq!(summary["unsubscribes"], 1, "{summary}");
        assert_eq!(summary["consent_withdrawals"], 1, "{summary}");
        assert_eq!(summary["status_changes"], 3, "{summary}");
        assert_eq!(status_of(&db.store, &alice).await, "unsubscribed");
        assert_eq!(
            status_of(&db.store, &format!("bob@{DOMAIN}")).await,
            "active"
        );
        let subscribed_sql = format!(
            "SELECT COUNT(*) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
             WHERE c.email = '{alice}' AND cl.subscribed = 1"
        );
        assert_eq!(
            count(&db.store, &subscribed_sql).await,
            0,
            "alice left the list"
        );
        let via = count(
            &db.store,
            "SELECT COUNT(*) FROM events WHERE kind = 'unsubscribe' \
             AND data LIKE '%\"matched_by\":\"unsubscribe-token\"%'",
        )
        .await;
        assert_eq!(via, 1, "matched by the signed token of the mailto");

        // The operator reinstates her: active again, but still off the list.
        let out = cartero(
            dir.path(),
            &db.url,
            &[
                "contacts",
                "reinstate",
                &alice,
                "--reason",
                "asked by phone to stay",
            ],
        );
        assert!(out.contains("unsubscribed -> active"), "{out}");
        assert!(out.contains("consent restored"), "{out}");
        assert_eq!(status_of(&db.store, &alice).await, "active");
        assert_eq!(
            count(&db.store, &subscribed_sql).await,
            1,
            "the list consent her unsubscribe withdrew is restored"
        );
        assert_eq!(
            count(
                &db.store,
                "SELECT COUNT(*) FROM consent_events WHERE action = 'restore' AND method = 'operator'"
            )
            .await,
            1
        );
        assert!(
            cartero::store::consent::verify_chain(&db.store)
                .await
                .expect("chain")
                .is_ok(),
            "the chain verifies with the restore entry"
        );
        let history = cartero(
            dir.path(),
            &db.url,
            &["contacts", "status-history", &alice, "--format", "json"],
        );
        let history: serde_json::Value = serde_json::from_str(&history).expect("json");
        assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
        assert_eq!(history[0]["rule"], "mailto-unsubscribe");
        assert_eq!(history[1]["actor"], "operator");
        assert_eq!(history[1]["reason"], "asked by phone to stay");
        let all = cartero(
            dir.path(),
            &db.url,
            &["feedback", "changes", "--since", "1d", "--format", "json"],
        );
        let all: serde_json::Value = serde_json::from_str(&all).expect("json");
        assert_eq!(
            all.as_array().map(Vec::len),
            Some(4),
            "2 bounces, 1 unsubscribe, 1 reinstatement: {all}"
        );
        let future = cartero(
            dir.path(),
            &db.url,
            &[
                "feedback",
                "changes",
                "--since",
                "2999-01-01",
                "--format",
                "json",
            ],
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&future).expect("json"),
            serde_json::json!([])
        );
        drop(pf);
    }
}

#[tokio::test]
async fn imap_dsns_bounce_exactly_the_failed_recipients() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().expect("tmp");
        let Some((pf, _)) = send_and_collect_dsns(&db, dir.path()).await else {
            return;
        };
        let Some(dovecot) = Dovecot::start(&[("bounces", pf.maildir("bounces"))]) else {
            return;
        };
        project(
            dir.path(),
            pf.smtp_port(),
            &format!(
                "[feedback]\nsource = \"imap\"\nimap_host = \"127.0.0.1\"\nimap_port = {}\n\
                 imap_security = \"plain\"\nimap_user = \"bounces\"\nimap_password = \"{IMAP_PASSWORD}\"\n\
                 imap_processed_folder = \"Processed\"\n",
                dovecot.imap_port()
            ),
        );
        let (summary, changes) = feedback_run(dir.path(), &db.url);
        assert_first_run(&db, &summary, &changes).await;
        let (again, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(again["messages"], 0, "{again}");
        assert_unchanged(&db).await;
        drop(dovecot);
        drop(pf);
    }
}

#[tokio::test]
async fn mbox_dsns_bounce_exactly_the_failed_recipients() {
    for db in TestDb::all().await {
        let dir = tempfile::tempdir().expect("tmp");
        let Some((pf, dsns)) = send_and_collect_dsns(&db, dir.path()).await else {
            return;
        };
        // An mbox as a delivery agent writes it (mboxrd quoting).
        let mut mbox = Vec::new();
        for f in &dsns {
            mbox.extend_from_slice(b"From MAILER-DAEMON Mon Nov 23 05:00:00 2026\n");
            for line in fs::read(f).expect("dsn").split_inclusive(|&b| b == b'\n') {
                let quotes = line.iter().take_while(|&&b| b == b'>').count();
                if line[quotes..].starts_with(b"From ") {
                    mbox.push(b'>');
                }
                mbox.extend_from_slice(line);
            }
            mbox.push(b'\n');
        }
        let mbox_path = dir.path().join("bounces.mbox");
        fs::write(&mbox_path, &mbox).expect("mbox");
        project(
            dir.path(),
            pf.smtp_port(),
            "[feedback]\nsource = \"mbox\"\npath = \"bounces.mbox\"\n",
        );
        let (summary, changes) = feedback_run(dir.path(), &db.url);
        assert_first_run(&db, &summary, &changes).await;
        let (again, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(again["messages"], 0, "{again}");
        assert_unchanged(&db).await;

        // Without the mbox's state file every message is read again; the
        // database's dedupe (content hash, Message-ID) still counts none twice.
        for entry in fs::read_dir(dir.path()).expect("dir") {
            let p = entry.expect("entry").path();
            if p.to_string_lossy().ends_with(".cartero-state") {
                fs::remove_file(&p).expect("remove state");
            }
        }
        let (replayed, _) = feedback_run(dir.path(), &db.url);
        assert_eq!(replayed["messages"], 2, "{replayed}");
        assert_eq!(replayed["duplicates"], 2, "{replayed}");
        assert_unchanged(&db).await;
        assert_eq!(
            fs::read(&mbox_path).expect("mbox"),
            mbox,
            "the mbox is never written"
        );
        drop(pf);
    }
}

// ---------------------------------------------------------------------------
// The policy through the library, on both backends, with reports written
// here: complaints, mailed unsubscribes, auto-replies, the soft-bounce
// window, unmatched and unreadable mail, dedupe, dry runs.

use cartero::config::Config;
use cartero::domain::token::{self, Purpose};
use cartero::feedback::ingest::{Handled, Ingestor};

const DAY: i64 = 24 * 3600 * 1000;

struct World {
    /// contact id and send ids per address, in `people()` order.
    contacts: Vec<(String, i64, Vec<i64>)>,
}

fn people() -> Vec<&'static str> {
    vec![
        "hard@customer.example",
        "soft@customer.example",
        "dave@customer.example",
        "erin@customer.example",
        "frank@customer.example",
    ]
}

/// A random-looking Message-ID of 128 bits, as cartero issues them: a
/// complaint quoting it is tied to its send as strongly as by a token.
fn message_id_of(send_id: i64) -> String {
    let x = (send_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{x:016x}{:016x}@cartero.example",
        x.rotate_left(29) ^ 0x5bd1_e995
    )
}

/// Contacts of `people()`, each subscribed and mailed by three campaigns.
async fn world(store: &Store) -> World {
    let emails: Vec<String> = people().into_iter().map(String::from).collect();
    seed(store, &emails).await;
    let mut contacts_out = Vec::new();
    for e in &emails {
        let id: i64 = cartero::dispatch!(store, pool => {
            sqlx::query_scalar("SELECT id FROM contacts WHERE email = $1")
                .bind(e)
                .fetch_one(pool)
                .await
                .expect("contact")
        });
        contacts_out.push((e.clone(), id, Vec::new()));
    }
    for n in 1..=3 {
        let campaign: i64 = cartero::dispatch!(store, pool => {
            sqlx::query_scalar(
                "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
                 VALUES ($1, $1, 'x.toml', 'h', 'newsletter', $2) RETURNING id",
            )
            .bind(format!("c{n}"))
            .bind(NOW)
            .fetch_one(pool)
            .await
            .expect("campaign")
        });
        for (email, contact_id, sends) in contacts_out.iter_mut() {
            let send: i64 = cartero::dispatch!(store, pool => {
                sqlx::query_scalar(
                    "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'accepted', $4, $4) RETURNING id",
                )
                .bind(campaign)
                .bind(*contact_id)
                .bind(&*email)
                .bind(NOW)
                .fetch_one(pool)
                .await
                .expect("send")
            });
            cartero::dispatch!(store, pool => {
                sqlx::query("UPDATE sends SET message_id = $1 WHERE id = $2")
                    .bind(message_id_of(send))
                    .bind(send)
                    .execute(pool)
                    .await
                    .expect("message id");
            });
            sends.push(send);
        }
    }
    World {
        contacts: contacts_out,
    }
}

impl World {
    fn send(&self, email: &str, n: usize) -> i64 {
        self.contacts
            .iter()
            .find(|(e, _, _)| e == email)
            .map(|(_, _, s)| s[n])
            .expect("known person")
    }
}

fn verp(send_id: i64) -> String {
    format!(
        "bounces+{}@example.net",
        token::sign(SECRET.as_bytes(), Purpose::Bounce, send_id)
    )
}

/// An RFC 3464 report about `recipient`, delivered to `to`.
fn dsn(
    id: &str,
    to: &str,
    recipient: &str,
    status: &str,
    diag: &str,
    original_id: &str,
) -> Vec<u8> {
    format!(
        "Delivered-To: {to}\r\nFrom: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\r\n\
         To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.example\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n\
         Remote-MTA: dns; mx.customer.example\r\nDiagnostic-Code: smtp; {diag}\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_id}>\r\nFrom: news@shop.example\r\n\
         To: {recipient}\r\nSubject: Hello\r\n\r\n--B--\r\n"
    )
    .into_bytes()
}

/// An ARF (RFC 5965) abuse report quoting the original message.
fn arf(id: &str, recipient: &str, original_id: &str) -> Vec<u8> {
    format!(
        "From: fbl@isp.example\r\nTo: fbl@shop.example\r\nSubject: Abuse report\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
         --A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\n\
         Version: 1\r\nOriginal-Rcpt-To: {recipient}\r\nReporting-MTA: dns; fbl.isp.example\r\n\r\n\
         --A\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <{original_id}>\r\nFrom: news@shop.example\r\n\
         To: {recipient}\r\nSubject: Hello\r\n\r\nHello\r\n--A--\r\n"
    )
    .into_bytes()
}

fn plain(id: &str, from: &str, to: &str, extra: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "Delivered-To: {to}\r\nFrom: {from}\r\nTo: {to}\r\n{extra}Subject: {subject}\r\nMessage-ID: <{id}>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.sender.secret = SECRET.into();
    cfg.policy.soft_bounce_limit = 2;
    cfg.policy.soft_bounce_window_days = 30;
    cfg
}

async fn status_of(store: &Store, email: &str) -> String {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar("SELECT status FROM contacts WHERE email = $1")
            .bind(email)
            .fetch_one(pool)
            .await
            .expect("status")
    })
}

/// The reports of the policy test, in arrival order, with when they arrive.
fn reports(w: &World) -> Vec<(&'static str, i64, Vec<u8>)> {
    let hard = "hard@customer.example";
    let soft = "soft@customer.example";
    let s0 = w.send(soft, 0);
    let s1 = w.send(soft, 1);
    let s2 = w.send(soft, 2);
    let u_token = token::sign(
        SECRET.as_bytes(),
        Purpose::Unsubscribe,
        w.send("erin@customer.example", 0),
    );
    vec![
        (
            "hard",
            NOW,
            dsn(
                "h1@mx",
                &verp(w.send(hard, 0)),
                hard,
                "5.1.1",
                "550 5.1.1 <hard@customer.example>: Recipient address rejected: User unknown",
                &message_id_of(w.send(hard, 0)),
            ),
        ),
        // Soft bounces: one 40 days ago (outside the 30-day window), then
        // two reports about the same send (one failed delivery), then a
        // second send: only that one reaches the limit of 2.
        (
            "soft-old",
            NOW - 40 * DAY,
            dsn(
                "s0@mx",
                &verp(s0),
                soft,
                "4.2.2",
                "452 4.2.2 Mailbox full",
                &message_id_of(s0),
            ),
        ),
        (
            "soft-1",
            NOW,
            dsn(
                "s1@mx",
                &verp(s1),
                soft,
                "4.2.2",
                "452 4.2.2 Mailbox full",
                &message_id_of(s1),
            ),
        ),
        (
            "soft-1-again",
            NOW + 1,
            dsn(
                "s1b@mx",
                &verp(s1),
                soft,
                "4.2.2",
                "452 4.2.2 Mailbox full, still",
                &message_id_of(s1),
            ),
        ),
        (
            "soft-2",
            NOW + 2,
            dsn(
                "s2@mx",
                &verp(s2),
                soft,
                "4.2.2",
                "452 4.2.2 Mailbox full",
                &message_id_of(s2),
            ),
        ),
        // A complaint names the original Message-ID, no VERP.
        (
            "complaint",
            NOW + 3,
            arf(
                "arf1@isp",
                "dave@customer.example",
                &message_id_of(w.send("dave@customer.example", 1)),
            ),
        ),
        (
            "unsubscribe",
            NOW + 4,
            plain(
                "u1@customer",
                "Erin <erin@customer.example>",
                &format!("unsubscribe+{u_token}@example.net"),
                "",
                "unsubscribe",
                "",
            ),
        ),
        (
            "autoreply",
            NOW + 5,
            plain(
                "ar1@customer",
                "frank@customer.example",
                &verp(w.send("frank@customer.example", 2)),
                "Auto-Submitted: auto-replied\r\n",
                "Out of office: Hello",
                "I am away until Monday.",
            ),
        ),
        // A bounce about nobody we know, with a forged token.
        (
            "unmatched",
            NOW + 6,
            dsn(
                "x1@mx",
                "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.net",
                "stranger@elsewhere.example",
                "5.1.1",
                "550 5.1.1 User unknown",
                "unknown@elsewhere.example",
            ),
        ),
        ("garbage", NOW + 7, b"\x00\xff not a mail at all".to_vec()),
    ]
}

#[tokio::test]
async fn policy_applies_each_kind_of_report_once() {
    for db in TestDb::all().await {
        let w = world(&db.store).await;
        let mut ing = Ingestor::new(db.store.clone(), &config(), false).expect("ingestor");
        let mut handled = Vec::new();
        for (name, at, raw) in reports(&w) {
            let r = ing.ingest(&raw, name, at).await.expect(name);
            handled.push((name, r.handled));
        }
        let kept: Vec<&str> = handled
            .iter()
            .filter(|(_, h)| matches!(h, Handled::KeptAside { .. }))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(kept, vec!["unmatched", "garbage"], "{handled:?}");

        assert_eq!(
            status_of(&db.store, "hard@customer.example").await,
            "bounced"
        );
        assert_eq!(
            status_of(&db.store, "soft@customer.example").await,
            "bounced"
        );
        assert_eq!(
            status_of(&db.store, "dave@customer.example").await,
            "complained"
        );
        assert_eq!(
            status_of(&db.store, "erin@customer.example").await,
            "unsubscribed"
        );
        assert_eq!(
            status_of(&db.store, "frank@customer.example").await,
            "active"
        );

        // The soft bounce that crossed the limit is the one of the third send.
        let soft_rule: (String, i64) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT s.rule, e.send_id FROM status_changes s JOIN events e ON e.id = s.event_id \
                 JOIN contacts c ON c.id = s.contact_id WHERE c.email = 'soft@customer.example'",
            )
            .fetch_one(pool)
            .await
            .expect("soft change")
        });
        assert_eq!(
            soft_rule,
            (
                "soft-bounce-limit".to_string(),
                w.send("soft@customer.example", 2)
            )
        );

        // Complaint and unsubscribe withdrew consent from every list, with evidence.
        let withdrawals: Vec<(String, String, Option<i64>, String)> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT c.email, e.method, e.list_id, e.evidence FROM consent_events e \
                 JOIN contacts c ON c.id = e.contact_id WHERE e.action = 'withdraw' ORDER BY e.id",
            )
            .fetch_all(pool)
            .await
            .expect("withdrawals")
        });
        assert_eq!(withdrawals.len(), 2, "{withdrawals:?}");
        assert_eq!(withdrawals[0].0, "dave@customer.example");
        assert_eq!(withdrawals[0].1, "feedback");
        assert_eq!(withdrawals[0].2, None);
        assert!(
            withdrawals[0].3.contains("arf1@isp"),
            "{}",
            withdrawals[0].3
        );
        assert_eq!(withdrawals[1].0, "erin@customer.example");
        assert_eq!(withdrawals[1].1, "mail");
        let subscribed = count(
            &db.store,
            "SELECT COUNT(*) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
             WHERE cl.subscribed = 1 AND c.email IN ('dave@customer.example', 'erin@customer.example')",
        )
        .await;
        assert_eq!(subscribed, 0);
        assert_eq!(
            cartero::store::consent::verify_chain(&db.store)
                .await
                .expect("chain"),
            Ok(7),
            "5 grants and 2 withdrawals, chain intact"
        );

        // The auto-reply is an event, not a bounce.
        assert_eq!(
            count(
                &db.store,
                "SELECT COUNT(*) FROM events WHERE kind = 'autoreply'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &db.store,
                "SELECT bounce_count FROM contacts WHERE email = 'frank@customer.example'"
            )
            .await,
            0
        );

        let s = ing.finish().await.expect("finish");
        assert_eq!(s.messages, 10);
        assert_eq!((s.bounces_hard, s.bounces_soft), (1, 4));
        assert_eq!((s.complaints, s.unsubscribes, s.autoreplies), (1, 1, 1));
        assert_eq!((s.unmatched, s.kept_aside, s.duplicates), (1, 2, 0));
        assert_eq!(s.status_changes, 4);
        assert_eq!(s.consent_withdrawals, 2);

        // Everything again: the processed ones are duplicates; the two kept
        // aside are tried again and kept aside again.
        let events = count(&db.store, "SELECT COUNT(*) FROM events").await;
        let changes = count(&db.store, "SELECT COUNT(*) FROM status_changes").await;
        let mut again = Ingestor::new(db.store.clone(), &config(), false).expect("ingestor");
        for (name, at, raw) in reports(&w) {
            again.ingest(&raw, name, at + DAY).await.expect(name);
        }
        let s = again.finish().await.expect("finish");
        assert_eq!(
            (s.duplicates, s.kept_aside, s.status_changes),
            (8, 2, 0),
            "{s:?}"
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM events").await,
            events
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM status_changes").await,
            changes
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM feedback_messages").await,
            10
        );

        // The operator reverses the hard bounce; consent is untouched.
        let hard_id = w.contacts[0].1;
        let r = cartero::consent::reinstate(&db.store, hard_id, "ops", "mailbox fixed", NOW + DAY)
            .await
            .expect("reinstate");
        assert!(
            matches!(&r, cartero::consent::Reinstated::Changed { restored, .. } if restored.is_empty()),
            "a bounce withdrew no consent, so none comes back: {r:?}"
        );
        assert_eq!(
            status_of(&db.store, "hard@customer.example").await,
            "active"
        );
        let history = cartero::store::status::list(&db.store, Some(hard_id), None)
            .await
            .expect("history");
        assert_eq!(history.len(), 2);
        assert_eq!(
            (history[1].actor.as_str(), history[1].cause.as_str()),
            ("ops", "operator")
        );
        assert_eq!(history[1].reason.as_deref(), Some("mailbox fixed"));
    }
}

#[tokio::test]
async fn dry_run_reports_the_same_and_writes_nothing() {
    for db in TestDb::all().await {
        let w = world(&db.store).await;
        let before = (
            count(&db.store, "SELECT COUNT(*) FROM consent_events").await,
            statuses(&db.store).await,
        );
        let mut dry = Ingestor::new(db.store.clone(), &config(), true).expect("ingestor");
        for (name, at, raw) in reports(&w) {
            dry.ingest(&raw, name, at).await.expect(name);
        }
        // The same message twice in one dry run is still a duplicate.
        let all = reports(&w);
        let (_, at, raw) = &all[0];
        assert_eq!(
            dry.ingest(raw, "hard again", *at)
                .await
                .expect("dup")
                .handled,
            Handled::Duplicate
        );
        let s = dry.finish().await.expect("finish");
        assert_eq!(
            (s.status_changes, s.consent_withdrawals, s.duplicates),
            (4, 2, 1),
            "{s:?}"
        );
        for table in ["feedback_messages", "events", "status_changes"] {
            assert_eq!(
                count(&db.store, &format!("SELECT COUNT(*) FROM {table}")).await,
                0,
                "{table}"
            );
        }
        let after = (
            count(&db.store, "SELECT COUNT(*) FROM consent_events").await,
            statuses(&db.store).await,
        );
        assert_eq!(before, after);
    }
}

/// Broken and hostile variants of the reports (bytes flipped, cut short,
/// NULs in headers) never make a run fail: each is processed, kept aside
/// or skipped as a duplicate, and reading them all again changes nothing.
#[tokio::test]
async fn mangled_reports_are_kept_aside_never_fatal() {
    use rand::{Rng, SeedableRng};
    for db in TestDb::all().await {
        let w = world(&db.store).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let base = reports(&w);
        let mut mangled: Vec<Vec<u8>> = Vec::new();
        for i in 0..120 {
            let mut raw = base[i % base.len()].2.clone();
            match i % 4 {
                0 => {
                    for _ in 0..rng.gen_range(1..20) {
                        let at = rng.gen_range(0..raw.len());
                        raw[at] = rng.r#gen();
                    }
                }
                1 => raw.truncate(rng.gen_range(0..raw.len())),
                2 => {
                    let at = rng.gen_range(0..raw.len());
                    raw.splice(
                        at..at,
                        b"\0Message-ID: <\0x\0@y>\r\nTo: \0bounces+\0@x\r\n"
                            .iter()
                            .copied(),
                    );
                }
                _ => {
                    let mut head = format!("Message-ID: <nul\0{i}@x>\r\n").into_bytes();
                    head.extend_from_slice(&raw);
                    raw = head;
                }
            }
            mangled.push(raw);
        }
        for round in 0..2 {
            let before = count(&db.store, "SELECT COUNT(*) FROM status_changes").await;
            let mut ing = Ingestor::new(db.store.clone(), &config(), false).expect("ingestor");
            for (i, raw) in mangled.iter().enumerate() {
                if let Err(e) = ing.ingest(raw, &format!("mangled {i}"), NOW).await {
                    panic!(
                        "message {i} failed the run: {e}\n{}",
                        String::from_utf8_lossy(raw)
                    );
                }
            }
            let s = ing.finish().await.expect("finish");
            assert_eq!(s.messages, 120);
            if round == 1 {
                assert_eq!(s.status_changes, 0, "{s:?}");
                assert_eq!(
                    count(&db.store, "SELECT COUNT(*) FROM status_changes").await,
                    before
                );
            }
        }
    }
}

/// A complaint whose report withholds the recipient names Sisimai's
/// placeholder address. It is never looked up as an address, so with no
/// VERP token and no known Message-ID it is kept aside as evidence and
/// unsubscribes nobody, not even a contact stored under that very address.
#[tokio::test]
async fn complaint_naming_nobody_is_kept_aside() {
    use cartero::feedback::bounce::UNDISCLOSED_RECIPIENT;
    for db in TestDb::all().await {
        seed(&db.store, &[UNDISCLOSED_RECIPIENT.to_string()]).await;
        let consents = count(&db.store, "SELECT COUNT(*) FROM consent_events").await;
        let raw = "From: fbl@isp.example\r\nTo: fbl@shop.example\r\nSubject: Abuse report\r\n\
             Message-ID: <redacted1@isp>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
             --A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
             --A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\
             User-Agent: isp-fbl/1.0\r\nVersion: 1\r\n\r\n\
             --A\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <unknown@shop.example>\r\n\
             From: news@shop.example\r\nTo: <Undisclosed Recipients>\r\nSubject: Hello\r\n\r\nHello\r\n--A--\r\n";
        let c = cartero::feedback::bounce::classify(raw.as_bytes());
        assert_eq!(
            c.records[0].recipient.as_deref(),
            Some(UNDISCLOSED_RECIPIENT)
        );
        assert_eq!(c.records[0].named_recipient(), None);

        let mut ing = Ingestor::new(db.store.clone(), &config(), false).expect("ingestor");
        let r = ing
            .ingest(raw.as_bytes(), "redacted", NOW)
            .await
            .expect("ingest");
        assert!(matches!(r.handled, Handled::KeptAside { .. }), "{r:?}");
        let s = ing.finish().await.expect("finish");
        assert_eq!((s.status_changes, s.consent_withdrawals), (0, 0), "{s:?}");
        assert_eq!(status_of(&db.store, UNDISCLOSED_RECIPIENT).await, "active");
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM consent_events").await,
            consents
        );
    }
}
