//! Consent to track over real HTTP on loopback, on SQLite and PostgreSQL:
//! a `personal` list ties opens and clicks to a person only with their
//! consent to track (the ledger list `tracking:LIST`), stores the others as
//! counts per campaign and link; DNT and GPC make a hit aggregate but never
//! stop an unsubscribe; the preference centre and the footer link
//! (`tracking_optout_url`) withdraw the consent to track without touching
//! the consent to receive mail; a `none` list gets no pixel and no
//! redirects.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};
use common::serve::{PUBLIC_BASE, Served, client, outbox};

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

async fn texts(db: &TestDb, sql: &str) -> Vec<String> {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

async fn hit(http: &reqwest::Client, url: &str, extra: Option<(&str, &str)>) {
    let mut r = http.get(url).header("user-agent", BROWSER);
    if let Some((k, v)) = extra {
        r = r.header(k, v);
    }
    let st = r.send().await.unwrap().status().as_u16();
    assert!(st == 200 || st == 302, "{url}: {st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn opens_and_clicks_are_personal_only_with_consent_to_track() {
    for db in TestDb::all().await {
        let p = Project::new(
            &db,
            "[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\n\n\
             [lists.newsletter]\ntracking = \"personal\"\n\n[lists.quiet]\ntracking = \"none\"\n",
        );
        let out = p.import(
            "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        ana_consents_to_tracking(&p);
        p.ok(&[
            "contacts",
            "import",
            "t.csv",
            "--list",
            "quiet",
            "--consent-source",
            "form",
        ]);
        p.write(
            "campaigns/q.toml",
            "name = \"Quiet\"\nsubject = \"Hi\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"quiet\"\n\n\
             [template]\nhtml = \"c.html\"\n",
        );
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        p.ok(&["campaign", "send", "campaigns/q.toml"]);
        // Delivered an hour ago: nothing below is a scanner's by timing.
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE sends SET updated_at = updated_at - 3600000").execute(pool).await.unwrap();
        });

        // `none`: no pixel, no redirect; the one-click header stays.
        let q = std::fs::read_dir(p.file("outbox/q"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let q = std::fs::read_to_string(q.path()).unwrap();
        assert!(!q.contains("/o/") && !q.contains("/c/"), "{q}");
        assert!(q.contains("List-Unsubscribe-Post"), "{q}");

        let mail = outbox(&p);
        let ana = &mail["ana@example.com"];
        let bob = &mail["bob@example.com"];
        let pixel = |m: &common::serve::Sent| m.urls(&format!("{PUBLIC_BASE}/o/"))[0].clone();
        let link = |m: &common::serve::Sent| m.urls(&format!("{PUBLIC_BASE}/c/"))[0].clone();

        let s = Served::start(&p, &db).await;
        let http = client();
        hit(&http, &s.url(&pixel(ana)), None).await;
        hit(&http, &s.url(&link(ana)), None).await;
        hit(&http, &s.url(&pixel(bob)), None).await;
        hit(&http, &s.url(&link(bob)), None).await;
        // Ana's browser sends GPC, then DNT: aggregate, her consent notwithstanding.
        hit(&http, &s.url(&pixel(ana)), Some(("sec-gpc", "1"))).await;
        hit(&http, &s.url(&link(ana)), Some(("dnt", "1"))).await;

        // DNT never stops an unsubscribe.
        let unsub = bob.urls(&format!("{PUBLIC_BASE}/u/"))[0].clone();
        let r = http
            .post(s.url(&unsub))
            .header("dnt", "1")
            .header("sec-gpc", "1")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        s.stop().await;

        let ana_id = scalar(
            &db,
            "SELECT id FROM contacts WHERE email = 'ana@example.com'",
        )
        .await;
        assert_eq!(
            scalar(&db, &format!("SELECT COUNT(*) FROM events WHERE kind IN ('open','click') AND contact_id = {ana_id}")).await,
            2,
            "Ana's two hits without DNT/GPC are hers"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind IN ('open','click') AND contact_id IS NULL AND send_id IS NULL").await,
            4,
            "Bob's two (no consent) and Ana's two with DNT/GPC are counts"
        );
        // Aggregate hits keep the campaign and the link, nothing of the person.
        let data = texts(
            &db,
            "SELECT data FROM events WHERE kind = 'click' AND contact_id IS NULL ORDER BY id",
        )
        .await;
        assert_eq!(data.len(), 2);
        for d in &data {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            assert!(
                v["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://shop.example/spring"),
                "{v}"
            );
            assert!(
                v.get("ip").is_none() && v.get("user_agent").is_none(),
                "{v}"
            );
        }
        let why: Vec<String> = data
            .iter()
            .map(|d| {
                serde_json::from_str::<serde_json::Value>(d).unwrap()["why"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(why, ["no-tracking-consent", "do-not-track"]);
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM events WHERE kind IN ('open','click') AND campaign_id IS NULL"
            )
            .await,
            0
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT open_count + click_count FROM contacts WHERE email = 'bob@example.com'"
            )
            .await,
            0
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT open_count + click_count FROM contacts WHERE email = 'ana@example.com'"
            )
            .await,
            2
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
                         JOIN lists l ON l.id = cl.list_id WHERE c.email = 'bob@example.com' AND l.name = 'newsletter' AND cl.subscribed = 0").await,
            1,
            "the unsubscribe under DNT was recorded"
        );

        // The preference centre withdraws the consent to track alone.
        let s = Served::start(&p, &db).await;
        let page = http
            .get(s.url(&ana.urls(&format!("{PUBLIC_BASE}/u/"))[0]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let i = page.find("href=\"../p/").unwrap() + 11;
        let token = &page[i..i + page[i..].find('"').unwrap()];
        let prefs = format!("{}/p/{token}", s.base);
        let page = http.get(&prefs).send().await.unwrap().text().await.unwrap();
        // Shown by what it means, not by its ledger name.
        assert!(
            page.contains(">Let us see when you open and click (newsletter)</label>"),
            "{page}"
        );
        assert!(!page.contains(">tracking:newsletter<"), "{page}");
        let f = page.find("name=\"form\" value=\"").unwrap() + 19;
        let tag = &page[f..f + page[f..].find('"').unwrap()];
        let newsletter = scalar(&db, "SELECT id FROM lists WHERE name = 'newsletter'").await;
        let quiet = scalar(&db, "SELECT id FROM lists WHERE name = 'quiet'").await;
        let r = http
            .post(&prefs)
            .form(&[
                ("form", tag),
                ("list", &newsletter.to_string()),
                ("list", &quiet.to_string()),
                ("action", "save"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        hit(&http, &s.url(&pixel(ana)), None).await;
        s.stop().await;
        let states = texts(
            &db,
            &format!(
                "SELECT l.name || '=' || CAST(cl.subscribed AS TEXT) FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
                 WHERE cl.contact_id = {ana_id} ORDER BY l.name"
            ),
        )
        .await;
        assert_eq!(states, ["newsletter=1", "quiet=1", "tracking:newsletter=0"]);
        assert_eq!(
            scalar(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM events WHERE kind = 'open' AND contact_id = {ana_id}"
                )
            )
            .await,
            1,
            "after the withdrawal Ana's open is a count"
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM events WHERE kind = 'open' AND contact_id IS NULL"
            )
            .await,
            3
        );
    }
}

fn form_token(page: &str) -> String {
    let i = page.find("name=\"form\" value=\"").expect("a form token") + 19;
    page[i..i + page[i..].find('"').unwrap()].to_string()
}

/// Ana's consent to track the newsletter, granted as an import with
/// evidence (a sign-up's checkbox does the same: tests/signup.rs).
fn ana_consents_to_tracking(p: &Project) {
    p.write("t.csv", "email\nana@example.com\n");
    p.ok(&[
        "contacts",
        "import",
        "t.csv",
        "--list",
        "tracking:newsletter",
        "--consent-source",
        "form",
    ]);
}

async fn ledger(db: &TestDb) -> i64 {
    scalar(db, "SELECT COUNT(*) FROM consent_events").await
}

async fn states(db: &TestDb) -> Vec<String> {
    texts(
        db,
        "SELECT l.name || '=' || CAST(cl.subscribed AS TEXT) FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
         JOIN contacts c ON c.id = cl.contact_id WHERE c.email = 'ana@example.com' ORDER BY l.name",
    )
    .await
}

/// The footer link: a template's `tracking_optout_url` is the message's
/// `/u/{token}/tracking`, never rewritten or given UTM parameters; GET
/// shows a button and changes nothing; POST with the page's token withdraws
/// `tracking:LIST` alone (ledger entry, method `tracking-link`), and
/// without it, with a forged one or from another site changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_footer_link_withdraws_the_consent_to_track_and_keeps_the_mail() {
    for db in TestDb::all().await {
        let p = Project::new(
            &db,
            "[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\n\n\
             [lists.newsletter]\ntracking = \"personal\"\n",
        );
        p.write(
            "templates/c.html",
            "<html><body><p>Hola {{ contact.first_name }}</p>\
             <p><a href=\"https://shop.example/spring\">Spring</a></p>\
             <p>{% if tracking_optout_url %}<a href=\"{{ tracking_optout_url }}\">Stop tracking me</a>{% endif %}</p>\
             <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>\n",
        );
        let out = p.import("email,first_name\nana@example.com,Ana\n");
        assert!(out.status.success(), "{}", stderr(&out));
        ana_consents_to_tracking(&p);
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        let ana = &outbox(&p)["ana@example.com"];
        let links: Vec<String> = ana
            .urls(&format!("{PUBLIC_BASE}/u/"))
            .into_iter()
            .filter(|u| u.ends_with("/tracking"))
            .collect();
        assert_eq!(links.len(), 1, "{}", ana.html);
        let link = &links[0];
        assert!(!link.contains("utm_") && !link.contains('?'), "{link}");
        let unsub = ana.header("List-Unsubscribe").unwrap();
        assert!(
            unsub.contains(link.trim_end_matches("/tracking")),
            "the unsubscribe link's own page: {unsub} {link}"
        );
        assert!(
            ana.urls(&format!("{PUBLIC_BASE}/c/")).len() == 1,
            "only Spring is rewritten"
        );

        let s = Served::start(&p, &db).await;
        let http = client();
        let url = s.url(link);
        let before = ledger(&db).await;
        assert_eq!(states(&db).await, ["newsletter=1", "tracking:newsletter=1"]);

        // GET, twice: a page with a button, nothing changes.
        let mut page = String::new();
        for _ in 0..2 {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            page = r.text().await.unwrap();
        }
        assert!(page.contains("Stop tracking my opens and clicks"), "{page}");
        assert!(
            page.contains("ana@example.com") && page.contains("id=\"stop-tracking\""),
            "{page}"
        );
        // The preference centre link resolves from /u/TOKEN/tracking.
        assert!(page.contains("href=\"../../p/"), "{page}");
        assert_eq!(ledger(&db).await, before);

        // Refused: no token, a forged one, another page's, another site.
        let token = form_token(&page);
        let (exp, mac) = token.split_once('.').unwrap();
        let forged = format!("{exp}.{}{}", &mac[1..], &mac[..1]);
        let unsub_page = http
            .get(s.url(link.trim_end_matches("/tracking")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let other = form_token(&unsub_page);
        for (form, origin) in [
            ("", None),
            (forged.as_str(), None),
            (other.as_str(), None),
            (token.as_str(), Some("https://evil.example")),
        ] {
            let mut r = http.post(&url).form(&[("form", form)]);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            assert_eq!(r.send().await.unwrap().status(), 403, "{form} {origin:?}");
        }
        let r = http
            .post(&url)
            .header("content-type", "text/plain")
            .body("form=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        assert_eq!(ledger(&db).await, before);
        assert_eq!(states(&db).await, ["newsletter=1", "tracking:newsletter=1"]);

        // The withdrawal: tracking alone, with its evidence.
        let r = http
            .post(&url)
            .header("user-agent", BROWSER)
            .form(&[("form", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(
            page.contains("we no longer record your opens and clicks"),
            "{page}"
        );
        assert_eq!(states(&db).await, ["newsletter=1", "tracking:newsletter=0"]);
        assert_eq!(ledger(&db).await, before + 1);
        assert_eq!(
            texts(
                &db,
                "SELECT e.method || ' ' || e.action || ' ' || l.name FROM consent_events e \
                 JOIN lists l ON l.id = e.list_id ORDER BY e.id DESC LIMIT 1"
            )
            .await,
            ["tracking-link withdraw tracking:newsletter"]
        );
        assert_eq!(
            texts(
                &db,
                "SELECT status FROM contacts WHERE email = 'ana@example.com'"
            )
            .await,
            ["active"]
        );

        // Again: harmless, and says so.
        let r = http
            .post(&url)
            .form(&[("form", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("there is nothing to stop"));
        assert_eq!(ledger(&db).await, before + 1);
        // Spanish for a Spanish browser.
        let page = http
            .get(&url)
            .header("accept-language", "es")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("Dejar de registrar mis aperturas y clics"),
            "{page}"
        );
        s.stop().await;
    }
}

/// Leaving a list ends its consent to track: one-click on Ana's message
/// withdraws `newsletter` and, in the same transaction, `tracking:newsletter`
/// with a ledger entry of its own that says why; she becomes `unsubscribed`.
/// Re-subscribing in the preference centre does not bring the consent to
/// track back (it must be asked again), a form that grants it while leaving
/// the list grants nothing, and leaving from the preference centre ends a
/// consent to track given again.
#[tokio::test(flavor = "multi_thread")]
async fn leaving_a_list_withdraws_its_consent_to_track() {
    for db in TestDb::all().await {
        let p = Project::new(
            &db,
            "[serve]\nlisten = \"127.0.0.1:0\"\n\n[lists.newsletter]\ntracking = \"personal\"\n",
        );
        let out = p.import("email,first_name,city\nana@example.com,Ana,Madrid\n");
        assert!(out.status.success(), "{}", stderr(&out));
        ana_consents_to_tracking(&p);
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        let lu = outbox(&p)["ana@example.com"]
            .header("List-Unsubscribe")
            .unwrap();
        let url = lu[1..lu.find('>').unwrap()].to_string();
        let s = Served::start(&p, &db).await;
        let http = client();
        let before = ledger(&db).await;
        assert_eq!(states(&db).await, ["newsletter=1", "tracking:newsletter=1"]);
        let r = http
            .post(s.url(&url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(states(&db).await, ["newsletter=0", "tracking:newsletter=0"]);
        assert_eq!(ledger(&db).await, before + 2);
        let entries = texts(
            &db,
            "SELECT e.method || ' ' || e.action || ' ' || l.name || ' ' || CAST(e.occurred_at AS TEXT) \
             FROM consent_events e JOIN lists l ON l.id = e.list_id ORDER BY e.id DESC LIMIT 2",
        )
        .await;
        let at = entries[0].rsplit(' ').next().unwrap().to_string();
        assert_eq!(
            entries,
            [
                format!("one-click withdraw tracking:newsletter {at}"),
                format!("one-click withdraw newsletter {at}"),
            ],
            "one request, one instant, an entry each"
        );
        let evidence = texts(
            &db,
            "SELECT evidence FROM consent_events ORDER BY id DESC LIMIT 2",
        )
        .await;
        let (own, list): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&evidence[0]).unwrap(),
            serde_json::from_str(&evidence[1]).unwrap(),
        );
        assert!(
            own.to_string().contains("no mail from it is left to track"),
            "{own}"
        );
        assert_eq!(
            own.to_string().contains("event_id"),
            list.to_string().contains("event_id"),
            "the same evidence of the request: {own} {list}"
        );
        assert!(!list.to_string().contains("left to track"), "{list}");
        assert_eq!(
            texts(
                &db,
                "SELECT status FROM contacts WHERE email = 'ana@example.com'"
            )
            .await,
            ["unsubscribed"]
        );
        // Repeated: nothing more.
        let r = http
            .post(s.url(&url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(ledger(&db).await, before + 2);

        // The preference centre, from the unsubscribe page's link.
        let page = http
            .get(s.url(&url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = page.find("href=\"../p/").expect("a preferences link") + 9;
        let prefs = format!(
            "{}/{}",
            s.base,
            &page[at..at + page[at..].find('"').unwrap()]
        );
        let id_of = |name: &str| {
            let db = &db;
            let sql = format!("SELECT id FROM lists WHERE name = '{name}'");
            async move { scalar(db, &sql).await.to_string() }
        };
        let (news, track) = (
            id_of("newsletter").await,
            id_of("tracking:newsletter").await,
        );
        let save = |lists: Vec<String>| {
            let http = http.clone();
            let prefs = prefs.clone();
            async move {
                let page = http.get(&prefs).send().await.unwrap().text().await.unwrap();
                let mut form = vec![
                    ("form".to_string(), form_token(&page)),
                    ("action".to_string(), "save".to_string()),
                ];
                form.extend(lists.into_iter().map(|l| ("list".to_string(), l)));
                let r = http
                    .post(&prefs)
                    .header("origin", PUBLIC_BASE)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        };
        // Tracking alone, without the list: nothing to track, nothing granted.
        let n = ledger(&db).await;
        save(vec![track.clone()]).await;
        assert_eq!(states(&db).await, ["newsletter=0", "tracking:newsletter=0"]);
        assert_eq!(ledger(&db).await, n);
        // Back on the list: the consent to track is not brought back.
        save(vec![news.clone()]).await;
        assert_eq!(states(&db).await, ["newsletter=1", "tracking:newsletter=0"]);
        assert_eq!(ledger(&db).await, n + 1);
        // Both in one form: granted, the list first whatever the order.
        save(vec![track.clone(), news.clone()]).await;
        assert_eq!(states(&db).await, ["newsletter=1", "tracking:newsletter=1"]);
        // Leaving from the preference centre ends it again, with its entry.
        save(vec![track.clone()]).await;
        assert_eq!(states(&db).await, ["newsletter=0", "tracking:newsletter=0"]);
        assert_eq!(
            texts(
                &db,
                "SELECT e.method || ' ' || e.action || ' ' || l.name FROM consent_events e \
                 JOIN lists l ON l.id = e.list_id ORDER BY e.id DESC LIMIT 2"
            )
            .await,
            [
                "preferences withdraw tracking:newsletter",
                "preferences withdraw newsletter"
            ]
        );
        s.stop().await;
        let verify = p.ok(&["compliance", "verify"]);
        assert!(verify.contains("ledger verifies"), "{verify}");
    }
}
