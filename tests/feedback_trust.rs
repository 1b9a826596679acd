//! Who can take a subscriber's consent away (issue 15, High 1 and 2).
//!
//! Anyone can mail the bounce, FBL and unsubscribe addresses. These tests
//! send what an attacker would (DSNs and ARF complaints with no token or a
//! forged one, a complaint naming nine subscribers, an unsubscribe with a
//! spoofed From) and check that nobody is suppressed and no consent is
//! withdrawn; that the same reports with a valid token, a random
//! Message-ID cartero issued, or a DKIM signature of the address's own
//! domain (served by dnsmasq) do what the policy says; that held reports
//! can be confirmed or dismissed; that a wrongful suppression is undone by
//! reversal entries in the ledger; and that a huge bounce neither stalls
//! nor locks the database. Every database test runs on SQLite and
//! PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cartero::config::{AddressMatch, Config, DkimAlgorithm, DkimConfig};
use cartero::domain::ConsentAction;
use cartero::domain::token::{self, Purpose};
use cartero::feedback::bounce;
use cartero::feedback::ingest::{Handled, Ingestor};
use cartero::feedback::review;
use cartero::render::dkim::DkimSigner;
use cartero::store::consent::{Appender, ConsentEntry, Evidence, verify_chain};
use cartero::store::{Store, Tx, contacts};
use common::db::TestDb;

const SECRET: &str = "feedback-trust-test-secret-0123456789";
const NOW: i64 = 1_790_000_000_000;
const DOMAIN: &str = "customer.test";

struct Person {
    email: String,
    contact: i64,
    send: i64,
    message_id: String,
}

struct World {
    news: i64,
    offers: i64,
    people: Vec<Person>,
}

fn grant(contact_id: i64, list_id: i64, action: ConsentAction) -> ConsentEntry {
    ConsentEntry {
        contact_id,
        list_id: Some(list_id),
        action,
        occurred_at: NOW,
        evidence: Evidence {
            source: "test".into(),
            method: "form".into(),
            details: serde_json::json!({}),
            ..Evidence::default()
        },
    }
}

async fn insert_contact(tx: &mut Tx, email: &str) -> i64 {
    let domain = email.rsplit('@').next().unwrap().to_string();
    cartero::dispatch_tx!(tx, conn => {
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
    })
}

/// A random-looking 128-bit Message-ID, as cartero issues them.
fn random_message_id(send: i64) -> String {
    let x = (send as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{x:016x}{:016x}@shop.test", x.rotate_left(29) ^ 0x5bd1_e995)
}

/// `n` people at customer.test, each subscribed to `news` and `offers` and
/// sent one message (campaign 1) with a random Message-ID.
async fn world(store: &Store, n: usize) -> World {
    let mut tx = store.begin().await.expect("begin");
    let news = contacts::ensure_list(&mut tx, "news", NOW).await.unwrap();
    let offers = contacts::ensure_list(&mut tx, "offers", NOW).await.unwrap();
    let mut appender = Appender::start(&mut tx).await.unwrap();
    let campaign: i64 = cartero::dispatch_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
             VALUES ('c1', 'c1', 'c1.toml', 'h', 'news', $1) RETURNING id",
        )
        .bind(NOW)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
    });
    let mut people = Vec::new();
    for i in 0..n {
        let email = format!("p{i}@{DOMAIN}");
        let contact = insert_contact(&mut tx, &email).await;
        for list in [news, offers] {
            appender
                .append(&mut tx, &grant(contact, list, ConsentAction::Grant))
                .await
                .unwrap();
        }
        let send: i64 = cartero::dispatch_tx!(&mut tx, conn => {
            sqlx::query_scalar(
                "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'accepted', $4, $4) RETURNING id",
            )
            .bind(campaign)
            .bind(contact)
            .bind(&email)
            .bind(NOW)
            .fetch_one(&mut *conn)
            .await
            .unwrap()
        });
        let message_id = random_message_id(send);
        cartero::dispatch_tx!(&mut tx, conn => {
            sqlx::query("UPDATE sends SET message_id = $1 WHERE id = $2")
                .bind(&message_id)
                .bind(send)
                .execute(&mut *conn)
                .await
                .unwrap();
        });
        people.push(Person {
            email,
            contact,
            send,
            message_id,
        });
    }
    tx.commit().await.unwrap();
    World {
        news,
        offers,
        people,
    }
}

/// Gives a send the old derived, guessable Message-ID.
async fn use_derived_message_id(store: &Store, p: &mut Person) {
    p.message_id = format!("cartero.1.{}.{NOW}@shop.test", p.send);
    cartero::dispatch!(store, pool => {
        sqlx::query("UPDATE sends SET message_id = $1 WHERE id = $2")
            .bind(&p.message_id)
            .bind(p.send)
            .execute(pool)
            .await
            .unwrap();
    });
}

fn verp(send: i64) -> String {
    format!(
        "bounces+{}@shop.test",
        token::sign(SECRET.as_bytes(), Purpose::Bounce, send)
    )
}

fn unsubscribe_address(send: i64) -> String {
    format!(
        "unsubscribe+{}@shop.test",
        token::sign(SECRET.as_bytes(), Purpose::Unsubscribe, send)
    )
}

/// A token of the right shape whose MAC does not verify (a character in
/// the middle changed: the last one carries padding bits).
fn forged(token_address: &str) -> String {
    let (local, domain) = token_address.split_once('@').unwrap();
    let (prefix, tok) = local.split_once('+').unwrap();
    let mut t = tok.as_bytes().to_vec();
    t[5] = if t[5] == b'a' { b'b' } else { b'a' };
    format!("{prefix}+{}@{domain}", String::from_utf8(t).unwrap())
}

/// An RFC 3464 hard bounce about `recipient`, delivered to `to`.
fn dsn(id: &str, to: &str, recipient: &str, original_id: &str) -> Vec<u8> {
    format!(
        "Delivered-To: {to}\r\nFrom: MAILER-DAEMON@mx.{DOMAIN}\r\nTo: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.{DOMAIN}\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Remote-MTA: dns; mx.{DOMAIN}\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_id}>\r\nFrom: news@shop.test\r\n\
         To: {recipient}\r\nSubject: Hello\r\n\r\n--B--\r\n"
    )
    .into_bytes()
}

/// An ARF (RFC 5965) abuse report naming `recipients`.
fn arf(id: &str, to: &str, recipients: &[&str], original_id: &str) -> Vec<u8> {
    let rcpts: String = recipients
        .iter()
        .map(|r| format!("Original-Rcpt-To: {r}\r\n"))
        .collect();
    format!(
        "Delivered-To: {to}\r\nFrom: fbl@isp.test\r\nTo: {to}\r\nSubject: Abuse report\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
         --A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
         --A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\n\
         Version: 1\r\n{rcpts}Reporting-MTA: dns; fbl.isp.test\r\n\r\n\
         --A\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <{original_id}>\r\nFrom: news@shop.test\r\n\
         To: {}\r\nSubject: Hello\r\n\r\nHello\r\n--A--\r\n",
        recipients.first().copied().unwrap_or("undisclosed")
    )
    .into_bytes()
}

/// A mail asking to be unsubscribed (RFC 2369 mailto).
fn unsubscribe_mail(id: &str, from: &str, to: &str) -> Vec<u8> {
    format!(
        "Delivered-To: {to}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: unsubscribe\r\nMessage-ID: <{id}>\r\n\
         Date: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\nunsubscribe\r\n"
    )
    .into_bytes()
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.sender.secret = SECRET.into();
    // No DNS at all unless a test gives one: nothing authenticates.
    cfg.dns.nameservers = vec!["127.0.0.1:9".into()];
    cfg.dns.timeout_ms = 300;
    cfg
}

async fn ingest_all(store: &Store, cfg: &Config, mails: &[Vec<u8>]) -> Vec<Handled> {
    let mut ing = Ingestor::new(store.clone(), cfg, false).expect("ingestor");
    let mut out = Vec::new();
    for (i, raw) in mails.iter().enumerate() {
        out.push(
            ing.ingest(raw, &format!("mail {i}"), NOW + i as i64)
                .await
                .expect("ingest")
                .handled,
        );
    }
    ing.finish().await.expect("finish");
    out
}

async fn count(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
    })
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

async fn subscribed_lists(store: &Store, contact: i64) -> Vec<i64> {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar(
            "SELECT list_id FROM contact_lists WHERE contact_id = $1 AND subscribed = 1 ORDER BY list_id",
        )
        .bind(contact)
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

async fn event_evidence(store: &Store) -> Vec<(String, Option<String>)> {
    cartero::dispatch!(store, pool => {
        sqlx::query_as("SELECT kind, evidence FROM events ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

/// Nobody suppressed, no withdrawal, no status change.
async fn assert_untouched(store: &Store) {
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM contacts WHERE status <> 'active'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM consent_events WHERE action = 'withdraw'"
        )
        .await,
        0
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM status_changes").await, 0);
}

#[tokio::test]
async fn forged_bounces_and_complaints_without_a_valid_token_change_nothing() {
    for db in TestDb::all().await {
        let mut w = world(&db.store, 4).await;
        use_derived_message_id(&db.store, &mut w.people[3]).await;
        let p = &w.people;
        let mails = vec![
            // No token at all, the victim's address in the report.
            dsn("f1@x", "bounces@shop.test", &p[0].email, "unknown@x"),
            // A token that does not verify.
            dsn("f2@x", &forged(&verp(p[1].send)), &p[1].email, "unknown@x"),
            // A complaint with no token quoting an unknown Message-ID.
            arf("f3@x", "fbl@shop.test", &[&p[2].email], "unknown@x"),
            // A complaint quoting the old, guessable Message-ID of a send.
            arf("f4@x", "fbl@shop.test", &[&p[3].email], &p[3].message_id),
        ];
        let handled = ingest_all(&db.store, &config(), &mails).await;
        assert!(
            handled.iter().all(|h| *h == Handled::Processed),
            "recorded, not dropped: {handled:?}"
        );
        assert_untouched(&db.store).await;
        assert_eq!(
            event_evidence(&db.store).await,
            vec![
                ("bounce_hard".into(), Some("address_only".into())),
                ("bounce_hard".into(), Some("address_only".into())),
                ("complaint".into(), Some("address_only".into())),
                ("complaint".into(), Some("guessable_message_id".into())),
            ]
        );
        for person in p {
            assert_eq!(
                subscribed_lists(&db.store, person.contact).await,
                vec![w.news, w.offers]
            );
        }
        let held = cartero::store::feedback::list_holds(&db.store, true)
            .await
            .unwrap();
        assert_eq!(held.len(), 4, "{held:?}");
        assert_eq!(
            count(&db.store, "SELECT bounce_count FROM contacts WHERE id = 1").await,
            1,
            "still counted"
        );
    }
}

#[tokio::test]
async fn one_forged_complaint_naming_nine_subscribers_hits_nobody() {
    for db in TestDb::all().await {
        let w = world(&db.store, 9).await;
        let names: Vec<&str> = w.people.iter().map(|p| p.email.as_str()).collect();
        let raw = arf("nine@x", "fbl@shop.test", &names, "unknown@x");
        assert_eq!(bounce::classify(&raw).records.len(), 9);
        let handled = ingest_all(&db.store, &config(), &[raw]).await;
        assert_eq!(handled, vec![Handled::Processed]);
        assert_untouched(&db.store).await;
        assert_eq!(
            count(
                &db.store,
                "SELECT COUNT(*) FROM events WHERE kind = 'complaint' AND evidence = 'address_only'"
            )
            .await,
            9
        );
        assert_eq!(
            count(
                &db.store,
                "SELECT COUNT(*) FROM feedback_holds WHERE state = 'held'"
            )
            .await,
            9
        );
    }
}

#[tokio::test]
async fn spoofed_unsubscribe_mail_is_held_and_answered_with_nothing() {
    for db in TestDb::all().await {
        let w = world(&db.store, 2).await;
        let p = &w.people;
        let mails = vec![
            // A spoofed From, sent to the plain address (no token).
            unsubscribe_mail("u1@x", &p[0].email, "unsubscribe@shop.test"),
            // A spoofed From, sent to a token address whose MAC is forged.
            unsubscribe_mail(
                "u2@x",
                &p[0].email,
                &forged(&unsubscribe_address(p[1].send)),
            ),
            // A bounce token is not an unsubscribe token.
            unsubscribe_mail(
                "u3@x",
                &p[1].email,
                &verp(p[1].send).replace("bounces", "unsubscribe"),
            ),
        ];
        let handled = ingest_all(&db.store, &config(), &mails).await;
        assert!(
            handled.iter().all(|h| *h == Handled::Processed),
            "{handled:?}"
        );
        assert_untouched(&db.store).await;
        assert_eq!(
            count(
                &db.store,
                "SELECT COUNT(*) FROM feedback_holds WHERE kind = 'unsubscribe' AND state = 'held'"
            )
            .await,
            3
        );
    }
}

#[tokio::test]
async fn valid_tokens_and_issued_message_ids_suppress_and_withdraw() {
    for db in TestDb::all().await {
        let w = world(&db.store, 3).await;
        let p = &w.people;
        let mails = vec![
            dsn("v1@x", &verp(p[0].send), &p[0].email, "unknown@x"),
            // The FBL address, no token: the random Message-ID cartero
            // issued for that send ties it as strongly.
            arf("v2@x", "fbl@shop.test", &[&p[1].email], &p[1].message_id),
            unsubscribe_mail("v3@x", &p[2].email, &unsubscribe_address(p[2].send)),
        ];
        let handled = ingest_all(&db.store, &config(), &mails).await;
        assert!(
            handled.iter().all(|h| *h == Handled::Processed),
            "{handled:?}"
        );
        assert_eq!(status_of(&db.store, &p[0].email).await, "bounced");
        assert_eq!(status_of(&db.store, &p[1].email).await, "complained");
        assert_eq!(status_of(&db.store, &p[2].email).await, "unsubscribed");
        assert_eq!(
            subscribed_lists(&db.store, p[0].contact).await,
            vec![w.news, w.offers],
            "a bounce withdraws no consent"
        );
        assert!(subscribed_lists(&db.store, p[1].contact).await.is_empty());
        assert!(subscribed_lists(&db.store, p[2].contact).await.is_empty());
        assert_eq!(
            event_evidence(&db.store).await,
            vec![
                ("bounce_hard".into(), Some("verp_token".into())),
                ("complaint".into(), Some("issued_message_id".into())),
                ("unsubscribe".into(), Some("unsubscribe_token".into())),
            ]
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM feedback_holds").await,
            0
        );
        // The withdrawal's evidence names the event and the status change.
        let evidence: String = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT evidence FROM consent_events WHERE action = 'withdraw' ORDER BY id LIMIT 1")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        let evidence: serde_json::Value = serde_json::from_str(&evidence).unwrap();
        assert_eq!(evidence["evidence"], "issued_message_id");
        assert!(evidence["event_id"].is_i64() && evidence["status_change_id"].is_i64());
        assert_eq!(verify_chain(&db.store).await.unwrap(), Ok(6 + 2));
    }
}

/// A contact that is a list or a group passes our message on; a member's
/// bounce sent back with the message quotes our Message-ID but names the
/// member: it is not about the contact, whose status stays. A bounce
/// carrying the send's signed VERP token under another name is an alias
/// or forward that kept our envelope: that failure is the contact's.
#[tokio::test]
async fn a_members_bounce_quoting_our_message_id_does_not_bounce_the_list() {
    for db in TestDb::all().await {
        let w = world(&db.store, 2).await;
        let p = &w.people;
        let mails = vec![
            dsn(
                "m1@x",
                "bounces@shop.test",
                "member@elsewhere.test",
                &p[0].message_id,
            ),
            dsn(
                "m2@x",
                &verp(p[1].send),
                "forwarded@elsewhere.test",
                "unknown@x",
            ),
        ];
        let handled = ingest_all(&db.store, &config(), &mails).await;
        // The member is nobody here: the report is kept aside, unapplied.
        assert!(
            matches!(&handled[..], [Handled::KeptAside { reason }, Handled::Processed]
                if reason.contains("member@elsewhere.test")),
            "{handled:?}"
        );
        assert_eq!(status_of(&db.store, &p[0].email).await, "active");
        assert_eq!(status_of(&db.store, &p[1].email).await, "bounced");
        assert_eq!(
            count(
                &db.store,
                &format!(
                    "SELECT COUNT(*) FROM status_changes WHERE contact_id = {}",
                    p[0].contact
                )
            )
            .await,
            0
        );
    }
}

#[tokio::test]
async fn held_reports_are_confirmed_or_dismissed_by_an_operator() {
    for db in TestDb::all().await {
        let w = world(&db.store, 3).await;
        let p = &w.people;
        let mails = vec![
            arf("h1@x", "fbl@shop.test", &[&p[0].email], "unknown@x"),
            dsn("h2@x", "bounces@shop.test", &p[1].email, "unknown@x"),
            unsubscribe_mail("h3@x", &p[2].email, "unsubscribe@shop.test"),
        ];
        ingest_all(&db.store, &config(), &mails).await;
        let held = cartero::store::feedback::list_holds(&db.store, true)
            .await
            .unwrap();
        assert_eq!(held.len(), 3);
        let cfg = config();
        let c = review::confirm(
            &db.store,
            &cfg.policy,
            held[0].id,
            "ops",
            Some("ISP confirmed"),
            NOW + 10,
        )
        .await
        .expect("confirm");
        assert_eq!(c.status, Some(("active".into(), "complained".into())));
        assert!(c.consent_withdrawn);
        assert!(subscribed_lists(&db.store, p[0].contact).await.is_empty());
        let d = review::dismiss(&db.store, held[1].id, "ops", Some("forged"), NOW + 11)
            .await
            .expect("dismiss");
        assert_eq!(d.email, p[1].email);
        assert_eq!(status_of(&db.store, &p[1].email).await, "active");
        // Decided once.
        assert!(matches!(
            review::confirm(&db.store, &cfg.policy, held[1].id, "ops", None, NOW + 12).await,
            Err(review::ReviewError::Decided { .. })
        ));
        assert!(matches!(
            review::dismiss(&db.store, 9999, "ops", None, NOW + 12).await,
            Err(review::ReviewError::NotFound(9999))
        ));
        let c = review::confirm(&db.store, &cfg.policy, held[2].id, "ops", None, NOW + 13)
            .await
            .expect("confirm unsubscribe");
        assert_eq!(c.status, Some(("active".into(), "unsubscribed".into())));
        assert_eq!(
            cartero::store::feedback::list_holds(&db.store, true)
                .await
                .unwrap()
                .len(),
            0
        );
        let history = cartero::store::status::list(&db.store, Some(p[0].contact), None)
            .await
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].actor, "ops");
        assert_eq!(
            history[0].reason.as_deref(),
            Some("confirmed by ops: ISP confirmed")
        );
        assert!(verify_chain(&db.store).await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn reinstate_restores_the_withdrawn_lists_by_reversal_entries() {
    for db in TestDb::all().await {
        let w = world(&db.store, 2).await;
        let p = &w.people;
        // p[0] left `offers` on their own before the complaint.
        {
            let mut tx = db.store.begin().await.unwrap();
            let mut appender = Appender::start(&mut tx).await.unwrap();
            appender
                .append(
                    &mut tx,
                    &grant(p[0].contact, w.offers, ConsentAction::Withdraw),
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        // A complaint that turns out wrongful (a token of p[0]'s send).
        let raw = arf("w1@x", &verp(p[0].send), &[&p[0].email], "unknown@x");
        ingest_all(&db.store, &config(), &[raw]).await;
        assert_eq!(status_of(&db.store, &p[0].email).await, "complained");
        assert!(subscribed_lists(&db.store, p[0].contact).await.is_empty());
        let entries_before = count(&db.store, "SELECT COUNT(*) FROM consent_events").await;

        let r = cartero::consent::reinstate(
            &db.store,
            p[0].contact,
            "ops",
            "complaint was a mistake",
            NOW + 100,
        )
        .await
        .expect("reinstate");
        let cartero::consent::Reinstated::Changed { from, restored, .. } = r else {
            panic!("{r:?}");
        };
        assert_eq!(from.as_str(), "complained");
        assert_eq!(restored, vec![w.news], "offers was left by the person");
        assert_eq!(status_of(&db.store, &p[0].email).await, "active");
        assert_eq!(
            subscribed_lists(&db.store, p[0].contact).await,
            vec![w.news]
        );

        // Appended, never edited: the withdrawal is still there and the
        // reversal names it, with the reason and the operator.
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM consent_events").await,
            entries_before + 1
        );
        let (action, method, evidence, withdrawal): (String, String, String, i64) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT r.action, r.method, r.evidence, w.id FROM consent_events r, consent_events w \
                 WHERE r.action = 'restore' AND w.action = 'withdraw' AND w.list_id IS NULL",
            )
            .fetch_one(pool)
            .await
            .unwrap()
        });
        assert_eq!((action.as_str(), method.as_str()), ("restore", "operator"));
        let evidence: serde_json::Value = serde_json::from_str(&evidence).unwrap();
        assert_eq!(evidence["reverses"], withdrawal);
        assert_eq!(evidence["reason"], "complaint was a mistake");
        assert_eq!(evidence["actor"], "ops");
        assert!(verify_chain(&db.store).await.unwrap().is_ok());
        let history = cartero::store::status::list(&db.store, Some(p[0].contact), None)
            .await
            .unwrap();
        assert_eq!(
            (
                history[1].cause.as_str(),
                history[1].rule.as_deref(),
                history[1].actor.as_str()
            ),
            ("operator", Some("reinstate"), "ops")
        );

        // A second reinstatement finds the contact active.
        assert_eq!(
            cartero::consent::reinstate(&db.store, p[0].contact, "ops", "again", NOW + 101)
                .await
                .unwrap(),
            cartero::consent::Reinstated::AlreadyActive
        );
    }
}

/// An Ed25519 DKIM key: the signer, and the TXT record publishing it.
fn dkim_key(domain: &str, dir: &std::path::Path) -> (DkimSigner, String) {
    let key = dir.join(format!("{domain}.pem"));
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ED25519", "-out"])
        .arg(&key)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .expect("openssl");
    // SubjectPublicKeyInfo of Ed25519: a 12-byte prefix, then the key (RFC 8463 §4).
    use base64::Engine as _;
    let p = base64::engine::general_purpose::STANDARD.encode(&public.stdout[12..]);
    let signer = DkimSigner::from_config(
        &DkimConfig {
            domain: domain.into(),
            selector: "s1".into(),
            private_key: key.clone(),
            algorithm: DkimAlgorithm::Ed25519,
        },
        &key,
    )
    .expect("signer");
    (signer, format!("v=DKIM1; k=ed25519; p={p}"))
}

#[tokio::test]
async fn dkim_of_the_addresss_own_domain_lets_an_address_match_act() {
    use common::servers::{Dns, Zone};
    let dir = tempfile::tempdir().unwrap();
    let (ours, ours_txt) = dkim_key(DOMAIN, dir.path());
    let (other, other_txt) = dkim_key("other.test", dir.path());
    let Some(dns) = Dns::start(
        &Zone::new()
            .txt(&format!("s1._domainkey.{DOMAIN}"), &ours_txt)
            .txt("s1._domainkey.other.test", &other_txt),
    ) else {
        eprintln!("skipping: dnsmasq is not installed");
        return;
    };
    for db in TestDb::all().await {
        let w = world(&db.store, 4).await;
        let p = &w.people;
        let mut cfg = config();
        cfg.dns.nameservers = vec![dns.addr().to_string()];
        cfg.dns.timeout_ms = 2000;
        cfg.feedback.address_match = AddressMatch::SuppressIfAuthenticated;
        let mails = vec![
            // Signed by the recipient's own domain: suppress, no withdrawal.
            ours.sign(&dsn("d1@x", "bounces@shop.test", &p[0].email, "unknown@x"))
                .unwrap(),
            ours.sign(&arf("d2@x", "fbl@shop.test", &[&p[1].email], "unknown@x"))
                .unwrap(),
            // Signed by some other domain: proves nothing about p[2].
            other
                .sign(&dsn("d3@x", "bounces@shop.test", &p[2].email, "unknown@x"))
                .unwrap(),
            // An unsubscribe whose From is authenticated by its domain.
            ours.sign(&unsubscribe_mail(
                "d4@x",
                &p[3].email,
                "unsubscribe@shop.test",
            ))
            .unwrap(),
        ];
        let handled = ingest_all(&db.store, &cfg, &mails).await;
        assert!(
            handled.iter().all(|h| *h == Handled::Processed),
            "{handled:?}"
        );
        assert_eq!(status_of(&db.store, &p[0].email).await, "bounced");
        assert_eq!(status_of(&db.store, &p[1].email).await, "complained");
        assert_eq!(
            subscribed_lists(&db.store, p[1].contact).await,
            vec![w.news, w.offers],
            "authenticated, yet matched by address: never a withdrawal"
        );
        assert_eq!(status_of(&db.store, &p[2].email).await, "active");
        assert_eq!(status_of(&db.store, &p[3].email).await, "unsubscribed");
        assert!(subscribed_lists(&db.store, p[3].contact).await.is_empty());
        assert_eq!(
            event_evidence(&db.store).await,
            vec![
                ("bounce_hard".into(), Some("authenticated_address".into())),
                ("complaint".into(), Some("authenticated_address".into())),
                ("bounce_hard".into(), Some("address_only".into())),
                ("unsubscribe".into(), Some("authenticated_address".into())),
            ]
        );

        // With the default rule, an authenticated bounce is only held.
        let db2 = if db.url.starts_with("sqlite") {
            TestDb::sqlite().await
        } else {
            TestDb::postgres().await.expect("postgres")
        };
        let w2 = world(&db2.store, 1).await;
        let mut cfg = cfg.clone();
        cfg.feedback.address_match = AddressMatch::Record;
        let raw = ours
            .sign(&dsn(
                "d5@x",
                "bounces@shop.test",
                &w2.people[0].email,
                "unknown@x",
            ))
            .unwrap();
        ingest_all(&db2.store, &cfg, &[raw]).await;
        assert_untouched(&db2.store).await;
        assert_eq!(
            count(&db2.store, "SELECT COUNT(*) FROM feedback_holds").await,
            1
        );
    }
}

#[tokio::test]
async fn oversized_and_crowded_reports_are_kept_aside_and_acknowledged() {
    for db in TestDb::all().await {
        let w = world(&db.store, 3).await;
        let p = &w.people;
        let mut cfg = config();
        cfg.feedback.max_message_bytes = 4096;
        cfg.feedback.max_recipients = 2;
        let mut big = dsn("big@x", &verp(p[0].send), &p[0].email, "unknown@x");
        big.extend(std::iter::repeat_n(b'x', 5000));
        let names: Vec<&str> = p.iter().map(|x| x.email.as_str()).collect();
        let crowded = arf("crowd@x", &verp(p[1].send), &names, "unknown@x");
        let handled = ingest_all(&db.store, &cfg, &[big.clone(), crowded]).await;
        match &handled[0] {
            Handled::KeptAside { reason } => {
                assert!(
                    reason.contains("feedback.max_message_bytes (4096)"),
                    "{reason}"
                )
            }
            h => panic!("{h:?}"),
        }
        match &handled[1] {
            Handled::KeptAside { reason } => {
                assert!(
                    reason.contains("3 recipients") && reason.contains("max_recipients (2)"),
                    "{reason}"
                )
            }
            h => panic!("{h:?}"),
        }
        assert_untouched(&db.store).await;
        let reasons: Vec<(String, Option<String>)> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as("SELECT outcome, kept_aside_reason FROM feedback_messages ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons
                .iter()
                .all(|(o, r)| o == "kept_aside" && r.is_some())
        );
        // A later run with the same message: tried again, kept aside again,
        // never an error that stops the run.
        let again = ingest_all(&db.store, &cfg, &[big]).await;
        assert!(matches!(again[0], Handled::KeptAside { .. }));
    }
}

/// A 20 MB bounce is read outside any transaction: while the classifier is
/// still holding it, an import and a campaign send (the real binary, its
/// own process) write to the same SQLite database and succeed. Before,
/// the ingest's transaction took SQLite's write lock before classifying,
/// and both failed with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_and_an_import_proceed_while_a_hostile_bounce_is_read() {
    use common::project::Project;
    let db = TestDb::sqlite().await;
    let proj = Project::new(&db, "");
    assert!(
        proj.import("email,first_name,city\nana@example.com,Ana,Madrid\n")
            .status
            .success()
    );
    // 20 MB of report text around one recipient: the classifier must
    // read all of it (how long it takes is the classifier's business; the
    // database must not wait for it).
    let filler = "Your message could not be delivered. ".repeat(60) + "\r\n";
    let notice = filler.repeat(20 * 1024 * 1024 / filler.len() + 1);
    let hostile = String::from_utf8(dsn(
        "hostile@x",
        "bounces@shop.test",
        "x@example.com",
        "unknown@x",
    ))
    .unwrap()
    .replace("Your message could not be delivered.\r\n", &notice)
    .into_bytes();
    assert!(hostile.len() > 20 * 1024 * 1024);

    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let entered_tx = std::sync::Mutex::new(entered_tx);
    let mut cfg = config();
    cfg.feedback.max_message_bytes = 32 * 1024 * 1024;
    let ingestor = Ingestor::new(db.store.clone(), &cfg, false)
        .expect("ingestor")
        .with_classifier(Arc::new(move |raw: &[u8]| {
            let _ = entered_tx.lock().unwrap().send(());
            let c = bounce::classify(raw);
            // Hold the message until the others are done (at most a minute).
            let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(60));
            c
        }));
    let ingest = tokio::spawn(async move {
        let mut ing = ingestor;
        let r = ing.ingest(&hostile, "hostile", NOW).await;
        (r, ing.finish().await)
    });
    entered_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the ingest started classifying");

    let others = tokio::task::spawn_blocking(move || {
        let import = proj.import("email,first_name,city\nbob@example.com,Bob,Lisboa\n");
        let send = proj.run(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        (proj, import, send)
    });
    let (proj, import, send) = tokio::time::timeout(Duration::from_secs(120), others)
        .await
        .expect("import and send finished")
        .unwrap();
    let _ = go_tx.send(());
    assert!(
        import.status.success(),
        "import: {}",
        common::project::stderr(&import)
    );
    assert!(
        send.status.success(),
        "send: {}",
        common::project::stderr(&send)
    );
    let sent: serde_json::Value = serde_json::from_slice(&send.stdout).expect("send summary json");
    assert_eq!(sent["tally"]["accepted"], 2, "{sent}");
    drop(proj);

    let (report, summary) = ingest.await.unwrap();
    let report = report.expect("the hostile bounce is handled, not an error");
    assert!(
        matches!(report.handled, Handled::KeptAside { .. }),
        "{:?}",
        report.handled
    );
    assert_eq!(summary.unwrap().kept_aside, 1);
}

/// The matcher's property (issue 15): whatever mail arrives, without a
/// valid token (or a random Message-ID cartero issued, of which this world
/// has none: every send carries the old guessable form) nobody's consent
/// is withdrawn and nobody's status changes. The mails are bounces,
/// complaints and unsubscribe requests naming real subscribers, quoting
/// their sends' Message-IDs, with random would-be tokens and random junk.
#[test]
fn no_mail_without_a_valid_token_withdraws_consent() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for db in rt.block_on(TestDb::all()) {
        let mut w = rt.block_on(world(&db.store, 5));
        for p in &mut w.people {
            rt.block_on(use_derived_message_id(&db.store, p));
        }
        let emails: Vec<String> = w.people.iter().map(|p| p.email.clone()).collect();
        let mids: Vec<String> = w.people.iter().map(|p| p.message_id.clone()).collect();
        let cfg = config();
        let n = std::sync::atomic::AtomicU32::new(0);
        let strategy = (
            0u8..3,
            proptest::sample::subsequence(emails.clone(), 1..=5),
            prop_oneof![
                Just("bounces@shop.test".to_string()),
                Just("fbl@shop.test".to_string()),
                Just("unsubscribe@shop.test".to_string()),
                "[a-z2-7]{1,40}".prop_map(|t| format!("bounces+{t}@shop.test")),
                "[a-z2-7]{1,40}".prop_map(|t| format!("unsubscribe+{t}@shop.test")),
                "[a-zA-Z0-9+=/]{1,40}".prop_map(|t| format!("unsubscribe+{t}@shop.test")),
            ],
            proptest::sample::select(mids.clone()),
            proptest::collection::vec(any::<u8>(), 0..64),
        );
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 40,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&strategy, |(kind, names, to, mid, junk)| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let id = format!("prop{i}@x");
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let mut raw = match kind {
                    0 => dsn(&id, &to, names[0], &mid),
                    1 => arf(&id, &to, &names, &mid),
                    _ => unsubscribe_mail(&id, names[0], &to),
                };
                raw.extend_from_slice(&junk);
                rt.block_on(async {
                    ingest_all(&db.store, &cfg, &[raw]).await;
                    let withdrawn = count(
                        &db.store,
                        "SELECT COUNT(*) FROM consent_events WHERE action = 'withdraw'",
                    )
                    .await;
                    let changes = count(&db.store, "SELECT COUNT(*) FROM status_changes").await;
                    prop_assert_eq!((withdrawn, changes), (0, 0), "to {}", to);
                    Ok(())
                })
            })
            .unwrap();
        assert!(
            rt.block_on(count(&db.store, "SELECT COUNT(*) FROM feedback_holds")) > 0,
            "the property saw reports that would have acted"
        );
    }
}

/// `feedback run` over a Maildir holding a message larger than
/// `feedback.max_message_bytes`: read only up to the limit, kept aside with
/// the reason, acknowledged (moved out of new/), so the next run does not
/// meet it again.
#[tokio::test]
async fn feedback_run_acknowledges_an_oversized_message_once() {
    use common::project::Project;
    for db in TestDb::all().await {
        let maildir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(maildir.path().join(sub)).unwrap();
        }
        let mut big = dsn("big@x", "bounces@shop.test", "x@example.com", "unknown@x");
        big.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
        std::fs::write(maildir.path().join("new/1.big"), &big).unwrap();
        let proj = Project::new(
            &db,
            &format!(
                "[feedback]\nsource = \"maildir\"\npath = \"{}\"\nmax_message_bytes = 65536\n",
                maildir.path().display()
            ),
        );
        let out = proj.ok(&["feedback", "run", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["summary"]["kept_aside"], 1, "{v}");
        assert_eq!(
            std::fs::read_dir(maildir.path().join("new"))
                .unwrap()
                .count(),
            0,
            "acknowledged"
        );
        let reason = std::fs::read_to_string(maildir.path().join(".KeptAside/reasons/1.big.txt"))
            .expect("the reason beside the kept message");
        assert!(reason.contains("max_message_bytes (65536)"), "{reason}");
        let again = proj.ok(&["feedback", "run", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(v["summary"]["messages"], 0, "{v}");
        let stored: i64 = count(&db.store, "SELECT raw_size FROM feedback_messages").await;
        assert!(stored <= 65537, "read no more than the limit: {stored}");
    }
}

/// The operator's commands: a forged complaint read by `feedback run` is
/// listed by `feedback review`, and `feedback confirm` / `dismiss` decide
/// held reports by id.
#[tokio::test]
async fn review_confirm_and_dismiss_from_the_command_line() {
    use common::project::Project;
    for db in TestDb::all().await {
        let w = world(&db.store, 2).await;
        let maildir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(maildir.path().join(sub)).unwrap();
        }
        for (i, p) in w.people.iter().enumerate() {
            std::fs::write(
                maildir.path().join(format!("new/{i}.arf")),
                arf(
                    &format!("cli{i}@x"),
                    "fbl@shop.test",
                    &[&p.email],
                    "unknown@x",
                ),
            )
            .unwrap();
        }
        let proj = Project::new(
            &db,
            &format!(
                "[feedback]\nsource = \"maildir\"\npath = \"{}\"\n",
                maildir.path().display()
            ),
        );
        let run: serde_json::Value =
            serde_json::from_str(&proj.ok(&["feedback", "run", "--format", "json"])).unwrap();
        assert_eq!(run["summary"]["held"], 2, "{run}");
        assert_eq!(run["summary"]["status_changes"], 0, "{run}");
        let held: serde_json::Value =
            serde_json::from_str(&proj.ok(&["feedback", "review", "--format", "json"])).unwrap();
        let ids: Vec<String> = held
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].to_string())
            .collect();
        assert_eq!(ids.len(), 2, "{held}");
        assert_eq!(held[0]["evidence"], "address_only");
        let out = proj.ok(&[
            "feedback",
            "confirm",
            &ids[0],
            "--reason",
            "ISP confirmed",
            "--actor",
            "ana",
        ]);
        assert!(
            out.contains("active -> complained") && out.contains("consent withdrawn"),
            "{out}"
        );
        let out = proj.ok(&["feedback", "dismiss", &ids[1], "--reason", "forged"]);
        assert!(out.contains("dismissed complaint"), "{out}");
        let again = proj.run(&["feedback", "dismiss", &ids[1]]);
        assert!(
            !again.status.success(),
            "a decided report cannot be decided again"
        );
        assert!(common::project::stderr(&again).contains("already"));
        assert!(proj.ok(&["feedback", "review"]).contains("nothing held"));
        assert_eq!(status_of(&db.store, &w.people[0].email).await, "complained");
        assert_eq!(status_of(&db.store, &w.people[1].email).await, "active");
    }
}
