//! Sign-up with double opt-in over real HTTP on loopback, on SQLite and
//! PostgreSQL: the confirmation mail through a real Postfix into a Maildir,
//! its link followed, the grant in the ledger with its evidence; the
//! honeypot, the per-IP limit, erased addresses, bad input; and the form
//! snippet.

mod common;

use std::time::Duration;

use common::db::TestDb;
use common::project::{Project, stderr};
use common::serve::{PUBLIC_BASE, Served, client, wait_for_files};
use common::servers::Postfix;

/// Every project of this file uses the same ledger key: the server appends
/// to the ledger with the process's installed keys.
const LEDGER_KEY: &str = "signup-test-ledger-key-0123456789abcdef";

const CONSENT: &str = "Yes, send me the Shop newsletter. I can unsubscribe at any time.";

fn install_key() {
    let keys = cartero::domain::ledger_key::LedgerKeys::new(LEDGER_KEY, &[]).unwrap();
    cartero::store::consent::install_keys(Some(keys));
}

fn project(db: &TestDb, extra: &str) -> Project {
    install_key();
    Project::new(
        db,
        &format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\n\n\
             [compliance]\nledger_key = \"{LEDGER_KEY}\"\n\n\
             [signup]\nfrom = \"Shop <news@shop.example>\"\n{extra}\n\n\
             [lists.newsletter]\nconsent_text = \"{CONSENT}\"\ntracking = \"personal\"\n\n\
             [lists.closed]\nsignup = false\n"
        ),
    )
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

async fn text(db: &TestDb, sql: &str) -> String {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, String>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

async fn text_rows(db: &TestDb, sql: &str) -> Vec<String> {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

async fn counts(db: &TestDb) -> (i64, i64, i64, i64) {
    (
        scalar(db, "SELECT COUNT(*) FROM signups").await,
        scalar(db, "SELECT COUNT(*) FROM contacts").await,
        scalar(db, "SELECT COUNT(*) FROM contact_lists").await,
        scalar(db, "SELECT COUNT(*) FROM consent_events").await,
    )
}

fn confirm_link(raw: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a parseable message");
    let body = msg.body_text(0).expect("a text part").into_owned();
    let start = body
        .find(&format!("{PUBLIC_BASE}/confirm/"))
        .unwrap_or_else(|| panic!("no confirmation link in {body}"));
    let rest = &body[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The value of the page's `form` field (its form token).
fn form_token(page: &str) -> String {
    let i = page.find("name=\"form\" value=\"").expect("a form token") + 19;
    page[i..i + page[i..].find('"').unwrap()].to_string()
}

/// The confirmation link of the one mail in `outbox/signup`, once the
/// background mailer has written it.
async fn outbox_confirm_link(p: &Project) -> String {
    let files = wait_for_files(&p.file("outbox/signup"), 1).await;
    assert_eq!(files.len(), 1, "{files:?}");
    confirm_link(&std::fs::read_to_string(&files[0]).unwrap())
}

/// No inline style, script or event handler: the CSP (style-src 'self',
/// no script) would block them, and the page would arrive unstyled.
fn assert_no_inline(page: &str) {
    for bad in ["<style", " style=", "<script"] {
        assert!(!page.contains(bad), "{bad} in {page}");
    }
    let handler = page.match_indices(" on").any(|(i, _)| {
        let rest = &page[i + 3..];
        let w = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_lowercase())
                .len();
        w > 0 && rest[w..].starts_with('=')
    });
    assert!(!handler, "an event handler in {page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn double_opt_in_through_postfix_grants_with_evidence() {
    for db in TestDb::all().await {
        let Some(pf) = Postfix::start() else { return };
        let p = project(
            &db,
            &format!(
                "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
                pf.smtp_port()
            ),
        );
        let s = Served::start(&p, &db).await;
        let http = client();
        let version = cartero::track::signup::text_version(CONSENT);

        let r = http
            .post(format!("{}/subscribe", s.base))
            .header("user-agent", "SignupBrowser/1.0")
            .form(&[
                ("list", "newsletter"),
                ("email", "alice@example.org"),
                ("name", "Alice"),
                ("consent_version", version.as_str()),
                ("tracking", "yes"),
                ("website", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("confirmation link"));

        // Pending: not a contact, on no list, nothing in the ledger.
        assert_eq!(counts(&db).await, (1, 0, 0, 0));
        assert_eq!(
            text(&db, "SELECT state FROM signups").await,
            "pending".to_string()
        );

        let mail = pf.wait_for_messages("alice", 1, Duration::from_secs(30));
        assert_eq!(mail.len(), 1, "the confirmation mail; log:\n{}", pf.log());
        let raw = std::fs::read_to_string(&mail[0]).unwrap();
        assert!(
            raw.contains("Subject: Please confirm your subscription"),
            "{raw}"
        );
        assert!(
            raw.contains("Feedback-ID: signup:newsletter:cartero"),
            "{raw}"
        );
        let link = confirm_link(&raw);
        let url = s.url(&link);

        // GET shows a button and changes nothing, however often.
        let mut page = String::new();
        for _ in 0..2 {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            page = r.text().await.unwrap();
            assert!(page.contains("method=\"post\"") && page.contains("alice@example.org"));
        }
        assert_eq!(counts(&db).await, (1, 0, 0, 0));

        // A POST without the page's form token, with an altered one, or
        // from another site, is refused.
        let r = http.post(&url).form(&[("x", "y")]).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let tag = form_token(&page);
        let (exp, mac) = tag.split_once('.').unwrap();
        let forged = format!("{}.{mac}", exp.parse::<i64>().unwrap() + 1);
        let r = http
            .post(&url)
            .form(&[("form", forged.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .post(&url)
            .header("origin", "https://evil.example")
            .form(&[("form", tag.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(counts(&db).await, (1, 0, 0, 0));

        let r = http
            .post(&url)
            .header("user-agent", "ConfirmBrowser/2.0")
            .form(&[("form", tag.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("you are subscribed"));

        // The grant, with the form's text version and both steps' evidence,
        // and the separate consent to track.
        assert_eq!(
            scalar(
                &db,
                "SELECT cl.subscribed FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
                 JOIN contacts c ON c.id = cl.contact_id WHERE c.email = 'alice@example.org' AND l.name = 'newsletter'"
            )
            .await,
            1
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT cl.subscribed FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
                 WHERE l.name = 'tracking:newsletter'"
            )
            .await,
            1
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM consent_events WHERE action = 'grant' AND method = 'double-opt-in'").await,
            2
        );
        let ev = text(
            &db,
            "SELECT e.evidence FROM consent_events e JOIN lists l ON l.id = e.list_id WHERE l.name = 'newsletter'",
        )
        .await;
        let ev: serde_json::Value = serde_json::from_str(&ev).unwrap();
        assert_eq!(ev["signup_ip"], "127.0.0.1");
        assert_eq!(ev["signup_user_agent"], "SignupBrowser/1.0");
        assert_eq!(ev["confirm_ip"], "127.0.0.1");
        assert_eq!(ev["confirm_user_agent"], "ConfirmBrowser/2.0");
        assert!(ev["signed_up_at"].as_i64().unwrap() <= ev["confirmed_at"].as_i64().unwrap());
        assert!(ev["event_id"].as_i64().is_some(), "{ev}");
        assert_eq!(
            text(
                &db,
                "SELECT e.text_version FROM consent_events e JOIN lists l ON l.id = e.list_id WHERE l.name = 'newsletter'"
            )
            .await,
            version
        );
        assert_eq!(
            text(
                &db,
                "SELECT first_name FROM contacts WHERE email = 'alice@example.org'"
            )
            .await,
            "Alice"
        );
        let ledger = scalar(&db, "SELECT COUNT(*) FROM consent_events").await;

        // Repeating is harmless and says so.
        let r = http
            .post(&url)
            .form(&[("form", tag.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("confirmed already"));
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM consent_events").await,
            ledger
        );

        // Signing up again once subscribed sends nothing more.
        let r = http
            .post(format!("{}/subscribe", s.base))
            .form(&[("list", "newsletter"), ("email", "alice@example.org")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM signups").await, 1);

        // The whole chain still verifies with the key.
        let out = p
            .command(&["compliance", "verify"])
            .env("CARTERO_COMPLIANCE_LEDGER_KEY", LEDGER_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn honeypot_limits_erasure_and_bad_input_store_nothing() {
    for db in TestDb::all().await {
        let p = project(&db, "max_per_ip_per_hour = 12");
        // Ana is erased: her address is on the suppression list by keyed hash.
        let out = p.import("email,first_name\nana@example.com,Ana\n");
        assert!(out.status.success(), "{}", stderr(&out));
        p.ok(&["contacts", "erase", "ana@example.com", "--reason", "asked"]);
        let s = Served::start(&p, &db).await;
        let http = client();
        let sub = format!("{}/subscribe", s.base);
        let before = counts(&db).await;

        // The honeypot: the same answer as a sign-up, nothing stored, counted.
        let r = http
            .post(&sub)
            .form(&[
                ("list", "newsletter"),
                ("email", "bot@example.com"),
                ("website", "http://spam"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("confirmation link"));
        assert_eq!(
            s.metrics
                .signups_honeypot
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let m = http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("cartero_signups_honeypot_total 1\n"), "{m}");

        // The erased address: the same answer, nothing stored, counted.
        let r = http
            .post(&sub)
            .header("content-type", "application/json")
            .body(r#"{"list":"newsletter","email":"Ana@example.com"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let j: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(j["status"], "ok");
        assert_eq!(
            s.metrics
                .signups_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(counts(&db).await, before);

        // Bad input: a 4xx naming the field, nothing stored.
        let cases: [(&str, &str, u16, &str); 7] = [
            ("application/json", r#"{"list":"newsletter"}"#, 400, "email"),
            (
                "application/json",
                r#"{"list":"newsletter","email":"not an address"}"#,
                400,
                "email",
            ),
            (
                "application/json",
                r#"{"list":"nope","email":"x@example.com"}"#,
                400,
                "list",
            ),
            (
                "application/json",
                r#"{"list":"closed","email":"x@example.com"}"#,
                400,
                "list",
            ),
            ("application/json", r#"["list"]"#, 400, "body"),
            (
                "application/json",
                "{\"list\":\"newsletter\",\"email\":\"\u{00ff}\"",
                400,
                "body",
            ),
            ("text/plain", "list=newsletter", 415, "content-type"),
        ];
        for (ct, body, status, field) in cases {
            let r = http
                .post(&sub)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{body}");
            if ct == "application/json" {
                let j: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                assert_eq!(j["field"], field, "{body}: {j}");
            }
        }
        let r = http
            .post(&sub)
            .header("content-type", "application/json")
            .body(vec![b'{', 0xff, 0xfe, b'}'])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http
            .post(&sub)
            .header("content-type", "application/json")
            .body(vec![b' '; 64 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(counts(&db).await, before);

        // A real sign-up goes to the outbox (no [smtp]) and is pending.
        let r = http
            .post(&sub)
            .form(&[("list", "newsletter"), ("email", "carla@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let files = wait_for_files(&p.file("outbox/signup"), 1).await;
        assert_eq!(files.len(), 1);
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM signups").await, 1);
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM contacts WHERE email = 'carla@example.com'"
            )
            .await,
            0
        );

        // The per-IP limit counts every request above (12 an hour here),
        // in the database, so every node shares it.
        let mut limited = 0;
        for i in 0..4 {
            let r = http
                .post(&sub)
                .form(&[
                    ("list", "newsletter"),
                    ("email", &format!("d{i}@example.com")),
                ])
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                limited += 1;
            }
        }
        // 11 requests above reached the handler (the oversized body was
        // refused before it), so the 12th passes and the rest are refused.
        assert_eq!(limited, 3);
        assert_eq!(scalar(&db, "SELECT MAX(hits) FROM rate_limits").await, 15);
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM signups").await, 2);
        s.stop().await;
    }
}

/// The hosted sign-up page, the answer, the confirmation page and the
/// confirmed page: templates of `templates/pages/` in the browser's
/// language, with no inline style or script, overridable by the project;
/// every form checked by its token and origin.
#[tokio::test(flavor = "multi_thread")]
async fn signup_pages_are_templates_in_the_browsers_language_and_their_forms_are_checked() {
    for db in TestDb::all().await {
        let p = project(&db, "");
        p.write(
            "templates/pages/confirmed.html",
            "{% extends \"base.html\" %}{% block content %}<h1 id=\"ours\">OURS {{ list }}</h1>\
             <p>{% if already %}{{ t.confirmed_already }}{% else %}{{ t.confirmed_text }}{% endif %}</p>{% endblock content %}",
        );
        let s = Served::start(&p, &db).await;
        let http = client();
        let es =
            |r: reqwest::RequestBuilder| r.header("accept-language", "es-ES,es;q=0.9,en;q=0.5");

        // The hosted form, in Spanish.
        let r = es(http.get(format!("{}/subscribe/newsletter", s.base)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("style-src 'self'") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        let page = r.text().await.unwrap();
        assert!(page.contains("<html lang=\"es\">"), "{page}");
        assert!(
            page.contains("Suscribirse") && page.contains("Correo electrónico"),
            "{page}"
        );
        assert!(page.contains(CONSENT), "{page}");
        assert!(
            page.contains("name=\"tracking\""),
            "a personal list asks: {page}"
        );
        assert!(page.contains("class=\"hp\" aria-hidden=\"true\""), "{page}");
        assert!(page.contains("/assets/pages.css"), "{page}");
        assert_no_inline(&page);
        let token = form_token(&page);
        for missing in ["closed", "nope"] {
            let r = http
                .get(format!("{}/subscribe/{missing}", s.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{missing}");
        }

        // Its POST: a forged, empty or another list's token, a foreign
        // origin, or no consent box is refused, and nothing is stored.
        let sub = format!("{}/subscribe", s.base);
        let post = |form: &str, origin: Option<&str>, consent: bool, list: &str| {
            let mut fields = vec![
                ("list", list.to_string()),
                ("email", "eva@example.com".to_string()),
                ("form", form.to_string()),
            ];
            if consent {
                fields.push(("consent", "yes".into()));
            }
            let mut r = es(http.post(&sub)).form(&fields);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            r
        };
        let (exp, mac) = token.split_once('.').unwrap();
        let forged = format!("{exp}.{}", mac.chars().rev().collect::<String>());
        for (form, origin, consent, status) in [
            (forged.as_str(), None, true, 403),
            ("", None, true, 403),
            (token.as_str(), Some("https://evil.example"), true, 403),
            (token.as_str(), None, false, 400),
        ] {
            let r = post(form, origin, consent, "newsletter")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{form} {origin:?} {consent}");
            let page = r.text().await.unwrap();
            assert!(page.contains("<html lang=\"es\">"), "{page}");
            assert_no_inline(&page);
        }
        // A token served for one list does not post another.
        let r = post(&token, None, true, "closed").send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(counts(&db).await, (0, 0, 0, 0));
        assert!(!p.file("outbox/signup").exists());

        // The real thing: the answer in Spanish, the mail in the outbox.
        let r = post(&token, None, true, "newsletter").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Revise su correo") && page.contains("enlace de confirmación"),
            "{page}"
        );
        assert_no_inline(&page);
        assert_eq!(counts(&db).await, (1, 0, 0, 0));

        // The confirmation page, in Spanish; its form is checked as every
        // other: no token, a forged one, another page's, another site.
        let url = s.url(&outbox_confirm_link(&p).await);
        let page = es(http.get(&url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("<html lang=\"es\">"), "{page}");
        assert!(
            page.contains("Confirme su suscripción") && page.contains("eva@example.com"),
            "{page}"
        );
        assert_no_inline(&page);
        let confirm_token = form_token(&page);
        let (exp, mac) = confirm_token.split_once('.').unwrap();
        let forged = format!("{}.{mac}", exp.parse::<i64>().unwrap() - 1);
        for (form, origin) in [
            (None, None),
            (Some(forged.as_str()), None),
            (Some(token.as_str()), None),
            (Some(confirm_token.as_str()), Some("https://evil.example")),
        ] {
            let mut r = http.post(&url);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            let r = match form {
                Some(f) => r.form(&[("form", f)]),
                None => r.form(&[("x", "y")]),
            };
            let r = es(r).send().await.unwrap();
            assert_eq!(r.status(), 403, "{form:?} {origin:?}");
            let page = r.text().await.unwrap();
            assert!(page.contains("No permitido"), "{page}");
        }
        assert_eq!(counts(&db).await, (1, 0, 0, 0));

        // Confirmed: the project's own confirmed.html, Spanish words.
        let r = es(http.post(&url))
            .header("origin", s.base.as_str())
            .form(&[("form", confirm_token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("<h1 id=\"ours\">OURS newsletter</h1>"),
            "{page}"
        );
        assert!(page.contains("Gracias: ya está suscrito."), "{page}");
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM consent_events WHERE action = 'grant'"
            )
            .await,
            1,
            "no tracking box was ticked: the list's grant alone"
        );
        let page = es(http.get(&url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("Esta suscripción ya estaba confirmada."),
            "{page}"
        );
        s.stop().await;
    }
}

/// The confirmation mail leaves after the answer, from serve's background
/// mailer: an SMTP server that accepts the connection and never speaks does
/// not slow the answer or hold up a shutdown, and the pending row is the
/// durable state: the next start (here on the outbox) sends it, with a link
/// that confirms.
#[tokio::test(flavor = "multi_thread")]
async fn the_confirmation_mail_leaves_after_the_answer_and_survives_a_restart() {
    for db in TestDb::all().await {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let p = project(
            &db,
            &format!(
                "\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_secs = 120\n"
            ),
        );
        let s = Served::start(&p, &db).await;
        let http = client();
        let started = std::time::Instant::now();
        let r = http
            .post(format!("{}/subscribe", s.base))
            .form(&[("list", "newsletter"), ("email", "rosa@example.com")])
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 200);
        // The SMTP client waits up to 120 s for the greeting: an answer
        // that waited for the mail would take that long.
        assert!(took < Duration::from_secs(10), "the answer took {took:?}");
        // The mailer claims the row for its attempt (bounded wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while scalar(&db, "SELECT mail_attempts FROM signups").await < 1 {
            assert!(std::time::Instant::now() < deadline, "no attempt was made");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let stopping = std::time::Instant::now();
        s.stop().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "the shutdown waited for the hung SMTP server: {:?}",
            stopping.elapsed()
        );
        drop(silent);
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM signups WHERE state = 'pending' AND mailed_at IS NULL"
            )
            .await,
            1,
            "the row is kept, unmailed"
        );

        // Its lease runs out (time passes), and serve starts again, now
        // with the outbox as the transport: the mail goes out.
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE signups SET mail_due_at = mail_due_at - 3600000").execute(pool).await.unwrap();
        });
        let q = project(&db, "");
        let s = Served::start(&q, &db).await;
        let link = outbox_confirm_link(&q).await;
        // The mailer records the mail after writing it, then counts it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while s
            .metrics
            .signups_pending
            .load(std::sync::atomic::Ordering::Relaxed)
            < 1
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the mail was not recorded"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM signups WHERE mailed_at IS NOT NULL"
            )
            .await,
            1
        );
        assert_eq!(scalar(&db, "SELECT mail_attempts FROM signups").await, 2);
        assert_eq!(
            s.metrics
                .signups_pending
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let page = http.get(s.url(&link)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        assert!(page.contains("rosa@example.com"), "{page}");
        let r = http
            .post(s.url(&link))
            .form(&[("form", form_token(&page).as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM signups WHERE state = 'confirmed'"
            )
            .await,
            1
        );
        s.stop().await;
    }
}

/// An address the SMTP server refuses for good (550 at RCPT TO) is not
/// retried: one attempt, then the mailer gives up on it; the row stays
/// pending and unmailed, and the answer was the same as for any sign-up.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_refusal_ends_the_attempts() {
    for db in TestDb::all().await {
        let Some(pf) = Postfix::start() else { return };
        let p = project(
            &db,
            &format!(
                "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
                pf.smtp_port_rejecting()
            ),
        );
        let s = Served::start(&p, &db).await;
        let r = client()
            .post(format!("{}/subscribe", s.base))
            .form(&[("list", "newsletter"), ("email", "nobody-here@example.org")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while scalar(&db, "SELECT mail_attempts FROM signups").await
            < cartero::track::signup::MAIL_ATTEMPTS
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the mailer did not give up; log:\n{}",
                pf.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM signups WHERE state = 'pending' AND mailed_at IS NULL"
            )
            .await,
            1
        );
        // Without giving up, the second attempt would wait a minute: reaching
        // the limit within the wait above is the mailer giving up.
        s.stop().await;
    }
}

#[tokio::test]
async fn the_form_snippet_is_labelled_and_posts_to_the_server() {
    let db = TestDb::sqlite().await;
    let p = project(&db, "");
    let html = p.ok(&["form", "snippet", "newsletter"]);
    assert!(
        html.contains(&format!("action=\"{PUBLIC_BASE}/subscribe\"")),
        "{html}"
    );
    assert!(html.contains("<label for=\"cartero-email\">"), "{html}");
    assert!(html.contains("name=\"tracking\""), "{html}");
    assert!(html.contains(&cartero::track::signup::text_version(CONSENT)));
    assert!(html.contains("aria-hidden=\"true\""));
    let out = p.run(&["form", "snippet", "closed"]);
    assert!(!out.status.success());
    let out = p.run(&["form", "snippet", "unknown"]);
    assert!(stderr(&out).contains("[lists.unknown]"), "{}", stderr(&out));
}

/// Sign-ups never confirmed: `signup purge --older-than` deletes the old
/// pending rows (and their mails in the outbox), keeps confirmed and recent
/// ones, records the purge, and `compliance audit` stops naming them;
/// `--dry-run` changes nothing; a bad age is refused by name.
#[tokio::test(flavor = "multi_thread")]
async fn stale_pending_signups_are_purged_recorded_and_leave_the_audit() {
    for db in TestDb::all().await {
        let p = project(&db, "");
        let s = Served::start(&p, &db).await;
        let http = client();
        for email in ["ana@example.com", "bob@example.com", "carla@example.com"] {
            let r = http
                .post(format!("{}/subscribe", s.base))
                .form(&[("list", "newsletter"), ("email", email)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let files = wait_for_files(&p.file("outbox/signup"), 3).await;
        assert_eq!(files.len(), 3);
        let mail_of = |who: &str| {
            files
                .iter()
                .find(|f| std::fs::read_to_string(f).unwrap().contains(who))
                .unwrap_or_else(|| panic!("no mail to {who}"))
                .clone()
        };
        // Carla confirms.
        let carla_mail = mail_of("carla@");
        let link = confirm_link(&std::fs::read_to_string(&carla_mail).unwrap());
        let page = http
            .get(s.url(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = http
            .post(s.url(&link))
            .form(&[("form", form_token(&page).as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        s.stop().await;
        // Dan signs up too, later (not mailed: serve is stopped).
        cartero::dispatch!(&db.store, pool => {
            sqlx::query(
                "INSERT INTO signups (token_hash, list_id, email, state, signed_up_at) \
                 SELECT 'dan', list_id, 'dan@example.com', 'pending', signed_up_at FROM signups LIMIT 1",
            )
            .execute(pool).await.unwrap();
            // Forty days pass for everyone but Dan.
            sqlx::query("UPDATE signups SET signed_up_at = signed_up_at - 3456000000, \
                         confirmed_at = confirmed_at - 3456000000 WHERE email <> 'dan@example.com'")
                .execute(pool).await.unwrap();
        });
        let audit = p.run(&["compliance", "audit"]);
        assert_eq!(audit.status.code(), Some(4), "{}", stderr(&audit));
        let report = common::project::stdout(&audit);
        assert!(
            report.contains("ana@example.com") && report.contains("bob@example.com"),
            "{report}"
        );

        let status = p.ok(&["signup", "status", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v[0]["list"], "newsletter", "{status}");
        assert_eq!(v[0]["mailed"], 2, "{status}");
        assert_eq!(v[0]["queued"], 1, "Dan's mail is still to go: {status}");

        let bad = p.run(&["signup", "purge", "--older-than", "soon"]);
        assert_eq!(bad.status.code(), Some(1));
        assert!(
            stderr(&bad).contains("--older-than \"soon\""),
            "{}",
            stderr(&bad)
        );
        let bad = p.run(&["signup", "purge", "--older-than=-3d"]);
        assert_eq!(bad.status.code(), Some(1), "a cut-off in the future");

        let dry = p.ok(&["signup", "purge", "--older-than", "30d", "--dry-run"]);
        assert!(dry.starts_with("2 unconfirmed sign-ups"), "{dry}");
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM signups").await, 4);
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM compliance_actions").await,
            0
        );

        let out = p.ok(&["signup", "purge", "--older-than", "30d", "--actor", "dpo"]);
        assert!(out.starts_with("deleted 2 unconfirmed sign-ups"), "{out}");
        assert_eq!(
            text_rows(&db, "SELECT email FROM signups ORDER BY email").await,
            ["carla@example.com", "dan@example.com"]
        );
        // Their mails are gone from the outbox; Carla's stays.
        let left = wait_for_files(&p.file("outbox/signup"), 0).await;
        assert_eq!(left, vec![carla_mail.clone()], "{left:?}");
        assert_eq!(
            text(
                &db,
                "SELECT kind || ' ' || actor || ' ' || reason FROM compliance_actions"
            )
            .await,
            "purge dpo pending-signups"
        );
        let details: serde_json::Value =
            serde_json::from_str(&text(&db, "SELECT details FROM compliance_actions").await)
                .unwrap();
        assert_eq!(details["signups"], 2, "{details}");
        let audit = p.run(&["compliance", "audit"]);
        assert_eq!(
            audit.status.code(),
            Some(0),
            "{}",
            common::project::stdout(&audit)
        );
        assert!(!common::project::stdout(&audit).contains("ana@example.com"));
        let changes = p.ok(&["contacts", "changes", "--since", "1d", "--detail"]);
        assert!(changes.contains("purge"), "{changes}");
        // Again: nothing left to purge, and that run is recorded too.
        let out = p.ok(&["signup", "purge", "--older-than", "30d"]);
        assert!(out.starts_with("deleted 0 unconfirmed sign-ups"), "{out}");
    }
}

/// `[signup] purge_pending_after_days`: `cartero serve` purges on its own,
/// as the actor `serve`.
#[tokio::test(flavor = "multi_thread")]
async fn serve_purges_stale_signups_when_configured() {
    for db in TestDb::all().await {
        let p = project(&db, "purge_pending_after_days = 30");
        let s = Served::start(&p, &db).await;
        let r = client()
            .post(format!("{}/subscribe", s.base))
            .form(&[("list", "newsletter"), ("email", "ana@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        wait_for_files(&p.file("outbox/signup"), 1).await;
        s.stop().await;
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM signups").await, 1);
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE signups SET signed_up_at = signed_up_at - 2678400000")
                .execute(pool).await.unwrap();
        });
        let s = Served::start(&p, &db).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while scalar(&db, "SELECT COUNT(*) FROM signups").await > 0 {
            assert!(std::time::Instant::now() < deadline, "not purged");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        s.stop().await;
        assert_eq!(
            text(&db, "SELECT actor || ' ' || reason FROM compliance_actions").await,
            "serve pending-signups"
        );
        assert!(wait_for_files(&p.file("outbox/signup"), 0).await.is_empty());
    }
}

/// The mailer gives up (Postfix refuses the addresses for good); /metrics
/// and `signup status` count the given-up mails, one of them also past the
/// mailer's three days; `signup retry` re-queues both, and serve (now with
/// the outbox) sends them.
#[tokio::test(flavor = "multi_thread")]
async fn given_up_confirmation_mails_are_counted_and_requeued() {
    for db in TestDb::all().await {
        let Some(pf) = Postfix::start() else { return };
        let p = project(
            &db,
            &format!(
                "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
                pf.smtp_port_rejecting()
            ),
        );
        let s = Served::start(&p, &db).await;
        let http = client();
        for email in ["nobody-here@example.org", "nobody-either@example.org"] {
            let r = http
                .post(format!("{}/subscribe", s.base))
                .form(&[("list", "newsletter"), ("email", email)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while scalar(&db, "SELECT MIN(mail_attempts) FROM signups").await
            < cartero::track::signup::MAIL_ATTEMPTS
        {
            assert!(std::time::Instant::now() < deadline, "{}", pf.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("\ncartero_signup_mails_given_up 2\n"), "{m}");
        s.stop().await;
        // One of them was made five days ago: past the mailer's three days too.
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE signups SET signed_up_at = signed_up_at - 5 * 86400000 \
                         WHERE email = 'nobody-either@example.org'")
                .execute(pool).await.unwrap();
        });
        let status = p.ok(&["signup", "status", "--format", "csv"]);
        assert!(status.contains("\nnewsletter,0,0,2,"), "{status}");

        let bad = p.run(&["signup", "retry", "--list", "nope"]);
        assert_eq!(bad.status.code(), Some(1));
        assert!(stderr(&bad).contains("--list \"nope\""), "{}", stderr(&bad));
        let out = p.ok(&["signup", "retry", "--list", "newsletter"]);
        assert!(out.starts_with("re-queued 2 confirmation mails"), "{out}");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM signups WHERE mail_attempts = 0 AND mail_due_at IS NULL AND mail_requeued_at IS NOT NULL").await,
            2
        );
        let out = p.ok(&["signup", "retry"]);
        assert!(
            out.starts_with("re-queued 0 "),
            "nothing is given up now: {out}"
        );

        // The transport is fixed (the outbox here): both go out.
        let q = project(&db, "");
        let s = Served::start(&q, &db).await;
        let files = wait_for_files(&q.file("outbox/signup"), 2).await;
        assert_eq!(files.len(), 2, "{files:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while scalar(
            &db,
            "SELECT COUNT(*) FROM signups WHERE mailed_at IS NOT NULL",
        )
        .await
            < 2
        {
            assert!(std::time::Instant::now() < deadline, "not recorded");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let m = http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(m.contains("\ncartero_signup_mails_given_up 0\n"), "{m}");
        s.stop().await;
        // The sign-ups keep the time they were made.
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM signups WHERE signed_up_at < mail_requeued_at - 4 * 86400000"
            )
            .await,
            1
        );
    }
}
