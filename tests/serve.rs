//! `cartero serve` over real HTTP on loopback, on SQLite and PostgreSQL:
//! the links of a real send (read back from the outbox) followed as mail
//! clients, people, scanners and attackers would.

mod common;

use common::db::TestDb;
use common::project::{Project, SECRET};
use common::serve::{PUBLIC_BASE, Served, client, event_rollups, outbox};

use cartero::domain::token::{self, Purpose};

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap()
    })
}

async fn text(db: &TestDb, sql: &str) -> Option<String> {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, Option<String>>(sql).fetch_one(pool).await.unwrap()
    })
}

/// Ana (lists newsletter and other) and Bob (newsletter) get campaign `c`
/// on the newsletter list, written to the outbox, with `[serve]` on.
async fn sent_project(db: &TestDb, extra: &str) -> Project {
    let p = Project::new(
        db,
        &format!("[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\n{extra}"),
    );
    let out =
        p.import("email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n");
    assert!(out.status.success(), "{}", common::project::stderr(&out));
    p.write(
        "other.csv",
        "email,first_name,city\nana@example.com,Ana,Madrid\n",
    );
    p.ok(&[
        "contacts",
        "import",
        "other.csv",
        "--list",
        "other",
        "--consent-source",
        "second form",
    ]);
    p.ok(&["campaign", "send", "campaigns/c.toml"]);
    p
}

async fn ledger(db: &TestDb) -> i64 {
    scalar(db, "SELECT COUNT(*) FROM consent_events").await
}

async fn subscribed(db: &TestDb, email: &str, list: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT COALESCE(MAX(cl.subscribed), -1) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
             JOIN lists l ON l.id = cl.list_id WHERE c.email = '{email}' AND l.name = '{list}'"
        ),
    )
    .await
}

async fn status(db: &TestDb, email: &str) -> String {
    text(
        db,
        &format!("SELECT status FROM contacts WHERE email = '{email}'"),
    )
    .await
    .unwrap()
}

fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let boundary = "----cartero-test-boundary";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn one_click_unsubscribe_is_durable_idempotent_and_get_changes_nothing() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "").await;
        let mail = outbox(&p);
        let ana = &mail["ana@example.com"];
        // RFC 8058 §3.1: the HTTPS URI first, the mailto after, and the
        // one-click header, because serve is configured.
        let lu = ana.header("List-Unsubscribe").unwrap();
        assert!(lu.starts_with(&format!("<{PUBLIC_BASE}/u/")), "{lu}");
        assert!(lu.contains("<mailto:unsubscribe+"), "{lu}");
        assert_eq!(
            ana.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let ana_url = lu[1..lu.find('>').unwrap()].to_string();
        // The body's link is the same URL (RFC 8058 §3.2).
        assert!(ana.html.contains(&ana_url), "{}", ana.html);

        let s = Served::start(&p, &db).await;
        let http = client();
        let before = ledger(&db).await;

        // GET and HEAD show a page and change nothing (scanners follow links).
        for _ in 0..2 {
            let r = http.get(s.url(&ana_url)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["referrer-policy"], "no-referrer");
            assert!(
                r.headers()["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("default-src 'none'")
            );
            let body = r.text().await.unwrap();
            assert!(body.contains("method=\"post\""), "{body}");
            assert!(
                body.contains("newsletter") && body.contains("ana@example.com"),
                "{body}"
            );
            assert!(body.contains("href=\"../p/"), "{body}");
            let r = http.head(s.url(&ana_url)).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(ledger(&db).await, before, "GET wrote to the ledger");
        assert_eq!(subscribed(&db, "ana@example.com", "newsletter").await, 1);

        // A POST without the one-click field, or in another encoding, is refused.
        let r = http.post(s.url(&ana_url)).body("").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = http
            .post(s.url(&ana_url))
            .header("content-type", "application/json")
            .body("{\"List-Unsubscribe\":\"One-Click\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        assert_eq!(ledger(&db).await, before);

        // The one-click POST, as Gmail sends it: multipart, no cookies.
        let (ct, body) = multipart(&[("List-Unsubscribe", "One-Click")]);
        let r = http
            .post(s.url(&ana_url))
            .header("content-type", &ct)
            .header("user-agent", "GoogleOneClick/1.0")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "no redirect (RFC 8058 §3.2)");
        assert!(r.headers().get("location").is_none());
        // Durable before the answer: visible at once, from another connection.
        assert_eq!(subscribed(&db, "ana@example.com", "newsletter").await, 0);
        assert_eq!(subscribed(&db, "ana@example.com", "other").await, 1);
        assert_eq!(
            status(&db, "ana@example.com").await,
            "active",
            "still on `other`"
        );
        assert_eq!(ledger(&db).await, before + 1);
        let method = text(
            &db,
            "SELECT method FROM consent_events ORDER BY id DESC LIMIT 1",
        )
        .await;
        assert_eq!(method.as_deref(), Some("one-click"));
        let ip = text(
            &db,
            "SELECT ip FROM consent_events ORDER BY id DESC LIMIT 1",
        )
        .await;
        assert_eq!(ip.as_deref(), Some("127.0.0.1"));
        let evidence = text(
            &db,
            "SELECT evidence FROM consent_events ORDER BY id DESC LIMIT 1",
        )
        .await
        .unwrap();
        let ev: serde_json::Value = serde_json::from_str(&evidence).unwrap();
        assert_eq!(ev["user_agent"], "GoogleOneClick/1.0", "{ev}");
        assert!(ev["send_id"].as_i64().is_some(), "{ev}");
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM events WHERE kind = 'unsubscribe'"
            )
            .await,
            1
        );

        // Replayed: the same answer, nothing new written.
        let r = http
            .post(s.url(&ana_url))
            .header("content-type", &ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("already"));
        assert_eq!(ledger(&db).await, before + 1);

        // Bob, urlencoded (RFC 8058's MAY), loses his only list: his
        // status becomes unsubscribed, with its cause.
        let bob = &mail["bob@example.com"];
        let bob_lu = bob.header("List-Unsubscribe").unwrap();
        let bob_url = &bob_lu[1..bob_lu.find('>').unwrap()];
        let r = http
            .post(s.url(bob_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(status(&db, "bob@example.com").await, "unsubscribed");
        assert_eq!(
            text(
                &db,
                "SELECT cause FROM status_changes ORDER BY id DESC LIMIT 1"
            )
            .await
            .as_deref(),
            Some("unsubscribe")
        );

        // Links already sent with v0 tokens keep working.
        let send_id = scalar(
            &db,
            "SELECT s.id FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE c.email = 'ana@example.com'",
        )
        .await;
        let v0 = token::sign(SECRET.as_bytes(), Purpose::Unsubscribe, send_id);
        let r = http.get(format!("{}/u/{v0}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("is not subscribed"));

        // Forged, truncated and altered tokens name nothing.
        let t = ana_url.rsplit('/').next().unwrap();
        let flipped = format!(
            "{}{}",
            &t[..t.len() - 1],
            if t.ends_with('a') { 'b' } else { 'a' }
        );
        for bad in [
            flipped.as_str(),
            &t[..t.len() - 1],
            &format!("{t}a"),
            &t.to_uppercase(),
            "not-a-token",
            &token::sign(b"someone else's secret", Purpose::Unsubscribe, send_id),
            &token::sign(SECRET.as_bytes(), Purpose::Bounce, send_id),
        ] {
            let r = http
                .post(format!("{}/u/{bad}", s.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
                .unwrap();
            assert!(
                matches!(r.status().as_u16(), 400 | 404),
                "{bad}: {}",
                r.status()
            );
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn opens_and_clicks_are_recorded_and_clicks_go_only_to_the_message_links() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "").await;
        let mail = outbox(&p);
        let ana = &mail["ana@example.com"];
        let pixels = ana.urls(&format!("{PUBLIC_BASE}/o/"));
        assert_eq!(pixels.len(), 1, "{}", ana.html);
        let clicks = ana.urls(&format!("{PUBLIC_BASE}/c/"));
        assert_eq!(
            clicks.len(),
            1,
            "the shop link only, not unsubscribe: {}",
            ana.html
        );
        // The unsubscribe link is not rewritten.
        assert_eq!(ana.urls(&format!("{PUBLIC_BASE}/u/")).len(), 1);

        // Delivered an hour ago: a click now is not a scanner's at delivery
        // (that rule is `machine`'s unit test).
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE sends SET updated_at = updated_at - 3600000").execute(pool).await.unwrap();
        });
        let s = Served::start(&p, &db).await;
        let http = client();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

        let r = http
            .get(s.url(&pixels[0]))
            .header("user-agent", firefox)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/gif");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store")
        );
        assert_eq!(r.bytes().await.unwrap().len(), 43);
        // Apple MPP's agent: served the same, flagged.
        let r = http
            .get(s.url(&pixels[0]))
            .header("user-agent", "Mozilla/5.0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let r = http
            .get(s.url(&clicks[0]))
            .header("user-agent", firefox)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            loc.starts_with("https://shop.example/spring?utm_source=cartero"),
            "{loc}"
        );
        // A link checker's HEAD: redirected as well, flagged.
        let r = http
            .head(s.url(&clicks[0]))
            .header("user-agent", firefox)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);

        // Open-redirect attempts: the same token with another target, the
        // target altered, a second target, no target, tokens of another
        // kind or altered. Never a 3xx.
        let (path, _) = s
            .url(&clicks[0])
            .split_once('?')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        let token = path.rsplit('/').next().unwrap().to_string();
        let open_token = pixels[0]
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".gif")
            .to_string();
        let enc = |u: &str| form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>();
        let hostile = [
            "https://evil.example/",
            "//evil.example",
            "\\/\\/evil.example",
            "/\\/evil.example",
            "https:evil.example",
            "https://shop.example.evil.example/spring?utm_source=cartero",
            "https://shop.example@evil.example/",
            "https://shop.example%E3%80%82evil.example/",
            "https://shop.example/spring?utm_source=cartero%00",
            "java%0d%0ascript:alert(1)",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "https://shop.example／evil.example",
            " https://shop.example/spring?utm_source=cartero&utm_campaign=x",
        ];
        let mut attempts: Vec<String> = hostile
            .iter()
            .map(|u| format!("{path}?u={}", enc(u)))
            .collect();
        let signed = loc.clone();
        attempts.push(format!(
            "{path}?u={}&u={}",
            enc(&signed),
            enc("https://evil.example/")
        ));
        attempts.push(format!(
            "{path}?u={}&next=https://evil.example/",
            enc(&signed)
        ));
        attempts.push(path.clone());
        attempts.push(format!("{}/c/{open_token}?u={}", s.base, enc(&signed)));
        let flipped = format!(
            "{}{}",
            &token[..token.len() - 1],
            if token.ends_with('a') { 'b' } else { 'a' }
        );
        attempts.push(format!("{}/c/{flipped}?u={}", s.base, enc(&signed)));
        attempts.push(format!("{}/c/{token}a?u={}", s.base, enc(&signed)));
        for a in &attempts {
            let r = http.get(a).send().await.unwrap();
            let code = r.status().as_u16();
            assert!(matches!(code, 400 | 404), "{a}: {code}");
            assert!(r.headers().get("location").is_none(), "{a}");
        }

        // Graceful stop drains the queue: every valid hit is in the database.
        s.stop().await;
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind = 'open'").await,
            2
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind = 'click'").await,
            2
        );
        let classes = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar::<_, String>("SELECT data FROM events WHERE kind IN ('open', 'click') ORDER BY id")
                .fetch_all(pool).await.unwrap()
        });
        let classes: Vec<(String, String)> = classes
            .iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                (
                    v["class"].as_str().unwrap().to_string(),
                    v["rule"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert!(
            classes.contains(&("prefetch".into(), "apple-mpp-user-agent".into())),
            "{classes:?}"
        );
        assert!(
            classes.contains(&("scanner".into(), "head-request".into())),
            "{classes:?}"
        );
        assert_eq!(
            classes.iter().filter(|c| c.0 == "human").count(),
            2,
            "{classes:?}"
        );
        // Engagement counts the human hits only.
        assert_eq!(
            scalar(
                &db,
                "SELECT open_count + click_count FROM contacts WHERE email = 'ana@example.com'"
            )
            .await,
            2
        );
    }
}

#[tokio::test]
async fn preference_centre_shows_lists_and_changes_them_only_by_its_own_form() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "").await;
        let mail = outbox(&p);
        let ana = &mail["ana@example.com"];
        let lu = ana.header("List-Unsubscribe").unwrap();
        let unsub = lu[1..lu.find('>').unwrap()].to_string();
        let s = Served::start(&p, &db).await;
        let http = client();
        let page = http
            .get(s.url(&unsub))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let href = page.split("href=\"../p/").nth(1).unwrap();
        let ptoken = &href[..href.find('"').unwrap()];
        let purl = format!("{}/p/{ptoken}", s.base);

        let before = ledger(&db).await;
        let body = http.get(&purl).send().await.unwrap().text().await.unwrap();
        assert!(
            body.contains("newsletter") && body.contains("other"),
            "{body}"
        );
        assert_eq!(
            body.lines()
                .filter(|l| l.contains("name=\"list\"") && l.contains(" checked"))
                .count(),
            2,
            "{body}"
        );
        let tag_at = body.find("name=\"form\" value=\"").unwrap() + 19;
        let tag = &body[tag_at..tag_at + body[tag_at..].find('"').unwrap()];
        assert_eq!(ledger(&db).await, before, "GET changed nothing");
        let ids: Vec<i64> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar::<_, i64>("SELECT id FROM lists ORDER BY name").fetch_all(pool).await.unwrap()
        });
        let (newsletter, other) = (ids[0], ids[1]);
        let form = |s: &str| {
            http.post(&purl)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(s.to_string())
        };

        // Without the page's form tag, with another page's tag, or posted
        // from another site: refused, nothing written.
        let other_tag = "0".repeat(32);
        for (req, what) in [
            (form(&format!("list={other}&action=save")), "no tag"),
            (
                form(&format!("form={other_tag}&list={other}&action=save")),
                "wrong tag",
            ),
            (
                form(&format!("form={tag}&list={other}&action=save"))
                    .header("origin", "https://evil.example"),
                "cross origin",
            ),
            (
                form(&format!("form={tag}&list={other}&action=save"))
                    .header("sec-fetch-site", "cross-site"),
                "cross site",
            ),
        ] {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 403, "{what}");
        }
        assert_eq!(ledger(&db).await, before);

        // Keep `other`, leave `newsletter`.
        let r = form(&format!("form={tag}&list={other}&action=save"))
            .header("origin", PUBLIC_BASE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("saved"));
        assert_eq!(subscribed(&db, "ana@example.com", "newsletter").await, 0);
        assert_eq!(subscribed(&db, "ana@example.com", "other").await, 1);
        assert_eq!(ledger(&db).await, before + 1);
        assert_eq!(
            text(
                &db,
                "SELECT method FROM consent_events ORDER BY id DESC LIMIT 1"
            )
            .await
            .as_deref(),
            Some("preferences")
        );
        // The same form again: nothing to change.
        let r = form(&format!("form={tag}&list={other}&action=save"))
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains("Nothing to change"));
        assert_eq!(ledger(&db).await, before + 1);

        // Everything off: no consent left, status unsubscribed.
        let r = form(&format!("form={tag}&list={other}&action=all"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(subscribed(&db, "ana@example.com", "other").await, 0);
        assert_eq!(status(&db, "ana@example.com").await, "unsubscribed");
        // Back on `newsletter` by her own hand: a grant with evidence, active again.
        let r = form(&format!("form={tag}&list={newsletter}&action=save"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(subscribed(&db, "ana@example.com", "newsletter").await, 1);
        assert_eq!(status(&db, "ana@example.com").await, "active");
        assert_eq!(
            text(
                &db,
                "SELECT action FROM consent_events ORDER BY id DESC LIMIT 1"
            )
            .await
            .as_deref(),
            Some("grant")
        );
        // A list she was never on cannot be added by posting its id.
        let bogus = newsletter.max(other) + 100;
        form(&format!(
            "form={tag}&list={newsletter}&list={bogus}&action=save"
        ))
        .send()
        .await
        .unwrap();
        assert_eq!(
            scalar(
                &db,
                &format!("SELECT COUNT(*) FROM contact_lists WHERE list_id = {bogus}")
            )
            .await,
            0
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn hostile_requests_are_bounded_and_every_answer_carries_the_security_headers() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "max_body_bytes = 1024\n").await;
        let mail = outbox(&p);
        let lu = mail["ana@example.com"].header("List-Unsubscribe").unwrap();
        let unsub = lu[1..lu.find('>').unwrap()].to_string();
        let s = Served::start(&p, &db).await;
        let http = client();
        let before = ledger(&db).await;

        let r = http
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let big = format!("List-Unsubscribe=One-Click&pad={}", "x".repeat(4096));
        let r = http
            .post(s.url(&unsub))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(
            ledger(&db).await,
            before,
            "an oversized body changed nothing"
        );
        for (method, path, code) in [
            ("GET", "/nothing-here".to_string(), 404),
            ("PUT", s.url(&unsub).replace(&s.base, ""), 405),
            ("DELETE", "/healthz".to_string(), 405),
            ("GET", "/o/short.gif".to_string(), 400),
            ("GET", "/o/noextension".to_string(), 404),
            ("GET", format!("/u/{}", "a".repeat(5000)), 400),
            ("GET", "/p/%3Cscript%3E".to_string(), 400),
        ] {
            let r = http
                .request(method.parse().unwrap(), format!("{}{path}", s.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), code, "{method} {path}");
            assert_eq!(
                r.headers()["referrer-policy"],
                "no-referrer",
                "{method} {path}"
            );
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            assert!(r.headers().contains_key("content-security-policy"));
            let body = r.text().await.unwrap();
            assert!(!body.contains("<script>"), "{body}");
        }
        s.stop().await;
    }
}

/// Serves `p`, fetches `pixel` `n` times at once (each answered 200), stops
/// the server (its writer drains) and returns its counters.
async fn pixel_burst(
    p: &Project,
    db: &TestDb,
    pixel: &str,
    n: usize,
) -> std::sync::Arc<cartero::track::Metrics> {
    let s = Served::start(p, db).await;
    let http = client();
    let url = s.url(pixel);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            http.get(url).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let metrics = s.metrics.clone();
    s.stop().await;
    metrics
}

#[tokio::test]
async fn a_full_queue_answers_normally_and_counts_what_it_dropped() {
    for db in TestDb::all().await {
        let p = sent_project(
            &db,
            "queue_capacity = 1\nqueue_wait_ms = 0\nbatch_size = 1\n",
        )
        .await;
        let mail = outbox(&p);
        let pixel = mail["ana@example.com"].urls(&format!("{PUBLIC_BASE}/o/"))[0].clone();
        let metrics = pixel_burst(&p, &db, &pixel, 200).await;
        use std::sync::atomic::Ordering::Relaxed;
        let written = metrics.events_written.load(Relaxed);
        let dropped = metrics.events_dropped.load(Relaxed);
        assert_eq!(written + dropped, 200, "every hit is written or counted");
        assert!(
            dropped > 0,
            "a queue of one must overflow under 200 concurrent hits"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind = 'open'").await as u64,
            written
        );
    }
}

/// The default: a hit that finds the queue full waits for room, so a burst
/// far larger than the queue is slowed down, never lost.
#[tokio::test]
async fn a_full_queue_slows_a_burst_down_and_loses_nothing() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "queue_capacity = 1\nbatch_size = 1\n").await;
        let mail = outbox(&p);
        let pixel = mail["ana@example.com"].urls(&format!("{PUBLIC_BASE}/o/"))[0].clone();
        let metrics = pixel_burst(&p, &db, &pixel, 200).await;
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(
            metrics.events_dropped.load(Relaxed),
            0,
            "{:?}",
            db.backend()
        );
        assert!(
            metrics.events_waited.load(Relaxed) > 0,
            "a queue of one must have been full under 200 concurrent hits"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind = 'open'").await,
            200,
            "every hit is stored ({:?})",
            db.backend()
        );
    }
}

/// The writer keeps the report rollups of the hits it stores (on SQLite
/// once per batch, not per row: migration 0024) exactly as `report rebuild`
/// computes them from the raw rows: people, machines, two recipients, one
/// hit stored without the person (DNT), hits one by one and in batches.
#[tokio::test(flavor = "multi_thread")]
async fn the_writer_keeps_the_rollups_that_rebuild_computes() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "batch_size = 4\n").await;
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE sends SET updated_at = updated_at - 3600000").execute(pool).await.unwrap();
        });
        let mail = outbox(&p);
        let s = Served::start(&p, &db).await;
        let http = client();
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
        let mut hits = Vec::new();
        for who in ["ana@example.com", "bob@example.com"] {
            let pixel = s.url(&mail[who].urls(&format!("{PUBLIC_BASE}/o/"))[0]);
            let click = s.url(&mail[who].urls(&format!("{PUBLIC_BASE}/c/"))[0]);
            for (url, agent, dnt, head) in [
                (&pixel, firefox, false, false),
                (&pixel, firefox, false, false),
                (&pixel, "Mozilla/5.0", false, false),
                (&pixel, firefox, true, false),
                (&click, firefox, false, false),
                (&click, "curl/8.5.0", false, false),
                (&click, firefox, false, true),
                (&click, firefox, true, false),
            ] {
                hits.push((url.clone(), agent, dnt, head));
            }
        }
        let send = |(url, agent, dnt, head): (String, &'static str, bool, bool)| {
            let http = http.clone();
            async move {
                let mut r = if head {
                    http.head(&url)
                } else {
                    http.get(&url)
                }
                .header("user-agent", agent);
                if dnt {
                    r = r.header("dnt", "1");
                }
                let code = r.send().await.unwrap().status().as_u16();
                assert!(matches!(code, 200 | 302), "{url}: {code}");
            }
        };
        // One by one (a batch each, mostly), then all at once (batches of
        // several, of both kinds and both recipients).
        for h in hits.clone() {
            send(h).await;
        }
        let tasks: Vec<_> = hits
            .iter()
            .cycle()
            .take(48)
            .cloned()
            .map(|h| tokio::spawn(send(h)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        s.stop().await;
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM events WHERE kind IN ('open', 'click')"
            )
            .await,
            64
        );
        let kept = event_rollups(&db).await;
        for table in [
            "report_hourly",
            "report_uniques",
            "report_link_totals",
            "report_sends",
            "report_links",
        ] {
            assert!(
                kept.iter().any(|r| r.starts_with(&format!("{table}: "))),
                "{table}: {kept:#?}"
            );
        }
        p.ok(&["report", "rebuild"]);
        assert_eq!(event_rollups(&db).await, kept, "{:?}", db.backend());
    }
}

#[tokio::test]
async fn the_binary_drains_its_events_on_sigterm_and_exits_0() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "").await;
        let mail = outbox(&p);
        let pixel = mail["ana@example.com"].urls(&format!("{PUBLIC_BASE}/o/"))[0].clone();
        let mut child = p
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect(&line)
            .to_string();
        let url = pixel.replace(PUBLIC_BASE, &base);
        let http = client();
        for _ in 0..300 {
            assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
        }
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind = 'open'").await,
            300
        );
    }
}

#[tokio::test]
async fn without_serve_no_one_click_is_advertised_and_the_example_secret_is_refused() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        p.import("email,first_name,city\nana@example.com,Ana,Madrid\n");
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        let mail = outbox(&p);
        let ana = &mail["ana@example.com"];
        let lu = ana.header("List-Unsubscribe").unwrap();
        assert!(
            lu.starts_with("<mailto:unsubscribe+") && !lu.contains("https:"),
            "{lu}"
        );
        assert_eq!(ana.header("List-Unsubscribe-Post"), None);
        assert!(ana.urls(&format!("{PUBLIC_BASE}/o/")).is_empty());
        assert!(ana.urls(&format!("{PUBLIC_BASE}/c/")).is_empty());

        // `cartero serve` refuses to start without [serve] or with the
        // repository's example secret; SMTP sends refuse that secret too.
        let out = p.run(&["serve"]);
        assert!(!out.status.success());
        assert!(common::project::stderr(&out).contains("[serve]"));
        let example = cartero::config::EXAMPLE_SECRET;
        let q = Project::new(
            &db,
            "[serve]\n[smtp]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\n",
        );
        q.import("email,first_name,city\nbob@example.com,Bob,Lisboa\n");
        let toml = std::fs::read_to_string(q.file("cartero.toml"))
            .unwrap()
            .replace(SECRET, example);
        q.write("cartero.toml", &toml);
        let out = q.run(&["serve"]);
        assert!(!out.status.success());
        assert!(
            common::project::stderr(&out).contains("example secret"),
            "{}",
            common::project::stderr(&out)
        );
        let out = q.run(&["campaign", "send", "campaigns/c.toml"]);
        assert!(!out.status.success());
        assert!(
            common::project::stderr(&out).contains("example secret"),
            "{}",
            common::project::stderr(&out)
        );
    }
}

#[tokio::test]
async fn a_request_that_stalls_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for db in TestDb::all().await {
        let p = sent_project(&db, "request_timeout_secs = 1\n").await;
        let mail = outbox(&p);
        let lu = mail["ana@example.com"].header("List-Unsubscribe").unwrap();
        let unsub = lu[1..lu.find('>').unwrap()].to_string();
        let s = Served::start(&p, &db).await;
        let path = s.url(&unsub).replace(&s.base, "");
        let before = ledger(&db).await;
        let mut conn = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
            .await
            .unwrap();
        // Announces 100 bytes, sends 10, then waits.
        conn.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 100\r\n\r\nList-Unsub"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut answer))
            .await
            .expect("the server answered within its time limit")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(started.elapsed() >= std::time::Duration::from_millis(900));
        assert_eq!(ledger(&db).await, before);
        s.stop().await;
    }
}

#[tokio::test]
async fn links_signed_with_a_retired_key_work_until_its_time() {
    for db in TestDb::all().await {
        let p = sent_project(&db, "").await;
        let mail = outbox(&p);
        let ana = &mail["ana@example.com"];
        let lu = ana.header("List-Unsubscribe").unwrap();
        let unsub = lu[1..lu.find('>').unwrap()].to_string();
        let pixel = ana.urls(&format!("{PUBLIC_BASE}/o/"))[0].clone();
        let original = std::fs::read_to_string(p.file("cartero.toml")).unwrap();
        let rotated = |until: &str| {
            format!(
                "{}\n[[sender.old_keys]]\nid = 0\nsecret = \"{SECRET}\"\nverify_until = \"{until}\"\n",
                original.replace(
                    &format!("secret = \"{SECRET}\""),
                    "secret = \"the new secret, rotated in 2026\"\nkey_id = 1"
                )
            )
        };
        let http = client();
        for (until, expect) in [("2999-01-01T00:00:00Z", 200), ("2001-01-01T00:00:00Z", 404)] {
            p.write("cartero.toml", &rotated(until));
            let s = Served::start(&p, &db).await;
            for url in [&unsub, &pixel] {
                let r = http.get(s.url(url)).send().await.unwrap();
                assert_eq!(
                    r.status().as_u16(),
                    expect,
                    "{url} with the old key valid until {until}"
                );
            }
            s.stop().await;
        }
    }
}
