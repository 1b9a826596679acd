//! The recipients' pages of `cartero serve` over real HTTP on loopback, on
//! SQLite and PostgreSQL: languages, project overrides, form tokens (CSRF),
//! the preference centre beyond lists (frequency, corrections, download,
//! erasure request), view in browser and the public archive.

mod common;

use common::db::TestDb;
use common::project::{Project, SECRET};
use common::serve::{PUBLIC_BASE, Served, client, outbox};

use cartero::domain::token::{Keyring, Purpose, Subject};

/// A `[compliance] ledger_key` for the officer's erasure.
const LEDGER_KEY: &str = "pages-test-ledger-key-0123456789abcdef";

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

/// Ana (English by default, lists newsletter and other) and Bea (locale
/// `es`, newsletter) get campaign `c` (public, with a description) on the
/// newsletter list, written to the outbox, with `[serve]` on and `city`
/// declared editable.
async fn sent_project(db: &TestDb) -> Project {
    let p = Project::new(
        db,
        "[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\neditable_attributes = [\"city\"]\n",
    );
    p.write(
        "templates/c.html",
        "<html><body><p>Hola {{ contact.first_name }} from {{ contact.attributes.city }}!</p>\
         <p><a href=\"https://shop.example/spring\">Spring</a></p>\
         <p><a href=\"{{ view_url }}\">View in browser</a></p>\
         <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>\n",
    );
    p.write(
        "campaigns/c.toml",
        "name = \"Spring\"\nsubject = \"Hola {{ contact.first_name }}\"\n\
         from = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\npublic = true\n\
         description = \"Our <spring> sale\"\n\n[template]\nhtml = \"c.html\"\n\n\
         [utm]\nsource = \"cartero\"\n",
    );
    let out = p.import(
        "email,first_name,city,locale\nana@example.com,Ana,Madrid,\nbea@example.com,Bea,Sevilla,es-ES\n",
    );
    assert!(out.status.success(), "{}", common::project::stderr(&out));
    p.write("other.csv", "email,first_name\nana@example.com,Ana\n");
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

fn unsubscribe_url(p: &Project, who: &str) -> String {
    let mail = outbox(p);
    let lu = mail[who].header("List-Unsubscribe").unwrap();
    lu[1..lu.find('>').unwrap()].to_string()
}

/// The value of the first hidden `form` field (the form token).
fn form_token(body: &str) -> String {
    let at = body.find("name=\"form\" value=\"").expect("a form token") + 19;
    body[at..at + body[at..].find('"').unwrap()].to_string()
}

fn prefs_url(s: &Served, unsub_page: &str) -> String {
    let href = unsub_page.split("href=\"../p/").nth(1).unwrap();
    format!("{}/p/{}", s.base, &href[..href.find('"').unwrap()])
}

async fn ledger(db: &TestDb) -> i64 {
    scalar(db, "SELECT COUNT(*) FROM consent_events").await
}

#[tokio::test]
async fn pages_follow_the_contact_locale_then_the_browser_and_carry_a_strict_csp() {
    for db in TestDb::all().await {
        let p = sent_project(&db).await;
        let s = Served::start(&p, &db).await;
        let http = client();
        let ana = s.url(&unsubscribe_url(&p, "ana@example.com"));
        let bea = s.url(&unsubscribe_url(&p, "bea@example.com"));

        // Ana has no locale: English, or the browser's Spanish.
        let r = http.get(&ana).send().await.unwrap();
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("script-src"),
            "{csp}"
        );
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<html lang=\"en\">") && body.contains("Do you want to stop"),
            "{body}"
        );
        assert!(body.contains("name=\"viewport\""), "{body}");
        assert!(
            !body.contains("<script") && !body.contains("style=\""),
            "{body}"
        );
        let body = http
            .get(&ana)
            .header("accept-language", "fr;q=1, es-MX;q=0.8, en;q=0.5")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("<html lang=\"es\">") && body.contains("¿Quiere dejar"),
            "{body}"
        );
        // Bea's own locale wins over her browser.
        let body = http
            .get(&bea)
            .header("accept-language", "en")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("<html lang=\"es\">") && body.contains("Darse de baja"),
            "{body}"
        );

        // The stylesheet is ours and the pages link it; error pages are
        // pages too, in the browser's language.
        let r = http
            .get(format!("{}/assets/pages.css", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/css")
        );
        assert!(r.text().await.unwrap().contains(":focus-visible"));
        assert!(body.contains("href=\"/assets/pages.css\""), "{body}");
        let r = http
            .get(format!("{}/nowhere", s.base))
            .header("accept-language", "es")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("No encontrado") && body.contains("lang=\"es\""),
            "{body}"
        );
        let r = http
            .get(format!("{}/u/%3Cx%3E", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("Bad request"));
        s.stop().await;
    }
}

#[tokio::test]
async fn a_project_overrides_a_page_and_a_broken_override_stops_the_start() {
    for db in TestDb::all().await {
        let p = sent_project(&db).await;
        p.write(
            "templates/pages/unsubscribe.html",
            "{% extends \"base.html\" %}{% block content %}<h1>OUR PAGE {{ email }}</h1>\
             <form method=\"post\"><input type=\"hidden\" name=\"form\" value=\"{{ csrf }}\"></form>\
             {% endblock content %}",
        );
        p.write(
            "templates/pages/404.html",
            "<p>gone: {{ t.error_404_title }}</p>",
        );
        let s = Served::start(&p, &db).await;
        let http = client();
        let body = http
            .get(s.url(&unsubscribe_url(&p, "ana@example.com")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("<h1>OUR PAGE ana@example.com</h1>"), "{body}");
        let body = http
            .get(format!("{}/nowhere", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "<p>gone: Not found</p>");
        s.stop().await;

        p.write("templates/pages/unsubscribe.html", "{% if %}");
        let cfg = cartero::config::Config::load(&p.file("cartero.toml")).unwrap();
        let e = cartero::app::Settings::from_config(&cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsubscribe.html"), "{e}");
    }
}

#[tokio::test]
async fn forms_without_their_token_or_from_another_site_change_nothing() {
    for db in TestDb::all().await {
        let p = sent_project(&db).await;
        let s = Served::start(&p, &db).await;
        let http = client();
        let unsub = s.url(&unsubscribe_url(&p, "ana@example.com"));
        let page = http.get(&unsub).send().await.unwrap().text().await.unwrap();
        let utoken = form_token(&page);
        let purl = prefs_url(&s, &page);
        let ppage = http.get(&purl).send().await.unwrap().text().await.unwrap();
        let ptoken = form_token(&ppage);
        assert_ne!(utoken, ptoken);
        let bob_page = http
            .get(s.url(&unsubscribe_url(&p, "bea@example.com")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let bea_ptoken = form_token(
            &http
                .get(prefs_url(&s, &bob_page))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        let form = |url: &str, body: String| {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        };
        let before = ledger(&db).await;
        let changes = || scalar(&db, "SELECT COUNT(*) FROM contact_requests");
        let (expiry, mac) = ptoken.split_once('.').unwrap();
        let later = format!("{}.{mac}", expiry.parse::<i64>().unwrap() + 1);
        let hostile = [
            // The page's button: every list, without the token.
            form(
                &unsub,
                "List-Unsubscribe=One-Click&via=page&scope=all".into(),
            ),
            form(&unsub, "List-Unsubscribe=One-Click&via=page".into()),
            // The unsubscribe page's token does not post the preference centre.
            form(&purl, format!("form={utoken}&action=all")),
            // Another contact's page token.
            form(&purl, format!("form={bea_ptoken}&action=all")),
            // An altered expiry.
            form(&purl, format!("form={later}&action=all")),
            form(&purl, "action=details&first_name=Mallory".into()),
            form(&purl, "action=forget&confirm=yes".into()),
            form(&purl, "action=export".into()),
            form(&purl, format!("form={ptoken}&action=all")).header("sec-fetch-site", "cross-site"),
            form(&purl, format!("form={ptoken}&action=forget&confirm=yes"))
                .header("origin", "https://evil.example"),
            form(
                &unsub,
                format!("List-Unsubscribe=One-Click&via=page&scope=all&form={utoken}"),
            )
            .header("sec-fetch-site", "same-site"),
        ];
        for (i, req) in hostile.into_iter().enumerate() {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 403, "request {i}");
            let body = r.text().await.unwrap();
            assert!(!body.contains("\"email\""), "request {i} leaked the export");
        }
        assert_eq!(ledger(&db).await, before, "the ledger changed");
        assert_eq!(changes().await, 0, "a request was recorded");
        assert_eq!(
            text(
                &db,
                "SELECT first_name FROM contacts WHERE email = 'ana@example.com'"
            )
            .await
            .as_deref(),
            Some("Ana")
        );

        // With its token and from this site: the button leaves every list.
        let r = form(
            &unsub,
            format!("List-Unsubscribe=One-Click&via=page&scope=all&form={utoken}"),
        )
        .header("origin", PUBLIC_BASE)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("from all our mail"));
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
                 WHERE c.email = 'ana@example.com' AND cl.subscribed = 1"
            )
            .await,
            0
        );
        assert_eq!(
            text(
                &db,
                "SELECT method FROM consent_events ORDER BY id DESC LIMIT 1"
            )
            .await
            .as_deref(),
            Some("page")
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn the_preference_centre_records_frequency_corrections_downloads_and_erasure_requests() {
    for db in TestDb::all().await {
        let p = sent_project(&db).await;
        let s = Served::start(&p, &db).await;
        let http = client();
        let page = http
            .get(s.url(&unsubscribe_url(&p, "ana@example.com")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let purl = prefs_url(&s, &page);
        let body = http.get(&purl).send().await.unwrap().text().await.unwrap();
        let tok = form_token(&body);
        assert!(body.contains("id=\"frequency-all\" checked"), "{body}");
        assert!(
            body.contains("name=\"attr.city\"") && body.contains("value=\"Madrid\""),
            "{body}"
        );
        let post = |b: String| {
            http.post(&purl)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("form={tok}&{b}"))
                .send()
        };
        let lists = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar::<_, i64>("SELECT id FROM lists ORDER BY name").fetch_all(pool).await.unwrap()
        });
        let both = format!("list={}&list={}", lists[0], lists[1]);

        // Frequency: stored as the `frequency` attribute, recorded once.
        let r = post(format!("{both}&frequency=weekly&action=save"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("saved") && body.contains("id=\"frequency-weekly\" checked"),
            "{body}"
        );
        let r = post(format!("{both}&frequency=weekly&action=save"))
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains("Nothing to change"));
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM contact_requests WHERE kind = 'frequency'"
            )
            .await,
            1
        );
        let r = post(format!("{both}&frequency=hourly&action=save"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Corrections: the name and declared attributes; others ignored;
        // personal data escaped when shown again.
        let r = post(
            "action=details&first_name=%3Cb%3EAnita&last_name=Ruiz&attr.city=Toledo&attr.vip=yes"
                .into(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(body.contains("details are saved"), "{body}");
        assert!(
            body.contains("value=\"&lt;b&gt;Anita\"") && !body.contains("<b>Anita"),
            "{body}"
        );
        assert_eq!(
            text(
                &db,
                "SELECT first_name FROM contacts WHERE email = 'ana@example.com'"
            )
            .await
            .as_deref(),
            Some("<b>Anita")
        );
        let attrs = text(
            &db,
            "SELECT CAST(attributes AS TEXT) FROM contacts WHERE email = 'ana@example.com'",
        )
        .await
        .unwrap();
        let attrs: serde_json::Value = serde_json::from_str(&attrs).unwrap();
        assert_eq!(attrs["city"], "Toledo", "{attrs}");
        assert_eq!(attrs["frequency"], "weekly", "{attrs}");
        assert!(attrs.get("vip").is_none(), "{attrs}");
        let row = text(
            &db,
            "SELECT old_value || ' ' || new_value || ' ' || evidence FROM contact_requests WHERE kind = 'correction'",
        )
        .await
        .unwrap();
        assert!(
            row.contains("Madrid") && row.contains("Toledo") && row.contains("127.0.0.1"),
            "{row}"
        );
        let r = post("action=details&first_name=".to_string() + &"x".repeat(201))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Download: the same JSON as `cartero contacts export`.
        let r = post("action=export".into()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("attachment")
        );
        let data: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        // The function behind `cartero contacts export`, called here rather
        // than through the binary: another process on this SQLite file while
        // this one has it open twice (the test's pool and Served's) breaks
        // SQLite's locks (see the erasure below).
        let ana = scalar(
            &db,
            "SELECT id FROM contacts WHERE email = 'ana@example.com'",
        )
        .await;
        let held = cartero::store::compliance::export(&db.store, ana)
            .await
            .unwrap();
        assert_eq!(data, held);
        assert_eq!(data["contact"]["first_name"], "<b>Anita", "{data}");

        // Forget me: needs the box ticked, recorded once, open for the officer.
        let r = post("action=forget".into()).await.unwrap();
        assert!(r.text().await.unwrap().contains("Tick the box"));
        let r = post("action=forget&confirm=yes".into()).await.unwrap();
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("request to be forgotten is recorded")
        );
        let r = post("action=forget&confirm=yes".into()).await.unwrap();
        assert!(r.text().await.unwrap().contains("already recorded"));
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM contact_requests WHERE kind = 'erasure' AND status = 'open'"
            )
            .await,
            1
        );
        assert_eq!(
            text(
                &db,
                "SELECT status FROM contacts WHERE email = 'ana@example.com'"
            )
            .await
            .as_deref(),
            Some("active"),
            "a request erases nothing by itself"
        );
        // The officer's erasure (the library call behind `cartero contacts
        // erase`, in this process for the same reason) closes it
        // and blanks what it kept.
        s.stop().await;
        let keys = cartero::domain::ledger_key::LedgerKeys::new(LEDGER_KEY, &[]).unwrap();
        let ana = scalar(
            &db,
            "SELECT id FROM contacts WHERE email = 'ana@example.com'",
        )
        .await;
        cartero::store::compliance::erase(
            &db.store,
            &keys,
            ana,
            "asked in the preference centre",
            "officer",
            1,
        )
        .await
        .unwrap();
        let scalar = |sql: &'static str| scalar(&db, sql);
        assert_eq!(
            scalar("SELECT COUNT(*) FROM contact_requests WHERE status = 'open'").await,
            0
        );
        assert_eq!(
            scalar(
                "SELECT COUNT(*) FROM contact_requests WHERE old_value IS NOT NULL OR evidence <> '{}'"
            )
            .await,
            0
        );
    }
}

#[tokio::test]
async fn view_in_browser_shows_the_contacts_message_and_the_archive_a_stand_in() {
    for db in TestDb::all().await {
        let p = sent_project(&db).await;
        let s = Served::start(&p, &db).await;
        let http = client();
        let send_id = scalar(
            &db,
            "SELECT s.id FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE c.email = 'ana@example.com'",
        )
        .await;
        let keys = Keyring::new(0, SECRET.as_bytes());
        let view = keys.sign(Purpose::View, Subject::Send(send_id));
        // The message's own link, `{{ view_url }}`, untracked and without UTM.
        let links = outbox(&p)["ana@example.com"].urls(&format!("{PUBLIC_BASE}/v/"));
        assert_eq!(links, vec![format!("{PUBLIC_BASE}/v/{view}")]);
        let r = http
            .get(format!("{}/v/{view}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            !csp.contains("script") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        let body = r.text().await.unwrap();
        assert!(body.contains("Hola Ana from Madrid"), "{body}");
        assert!(!body.contains("/o/"), "viewing is not an open: {body}");
        assert!(
            body.contains(&format!("href=\"{PUBLIC_BASE}/v/{view}\"")),
            "{body}"
        );
        // Another purpose's token, or a forged one, shows nothing.
        let unsub = keys.sign(Purpose::Unsubscribe, Subject::Send(send_id));
        let mut forged = view.clone().into_bytes();
        forged[20] = if forged[20] == b'a' { b'b' } else { b'a' };
        for t in [unsub, String::from_utf8(forged).unwrap()] {
            let r = http.get(format!("{}/v/{t}", s.base)).send().await.unwrap();
            assert_eq!(r.status(), 404);
        }

        // The archive: the public campaign, for a stand-in.
        let body = http
            .get(format!("{}/archive", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("href=\"archive/c\""), "{body}");
        assert!(body.contains("Our &lt;spring&gt; sale"), "{body}");
        assert!(
            body.contains(&format!(
                "<link rel=\"canonical\" href=\"{PUBLIC_BASE}/archive\">"
            )),
            "{body}"
        );
        let body = http
            .get(format!("{}/archive/c", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains(&format!(
                "<link rel=\"canonical\" href=\"{PUBLIC_BASE}/archive/c\">"
            )),
            "{body}"
        );
        assert!(
            body.contains("<meta property=\"og:title\" content=\"Hola\">"),
            "{body}"
        );
        assert!(
            body.contains("og:description\" content=\"Our &lt;spring&gt; sale\""),
            "{body}"
        );
        assert!(
            !body.contains("Ana") && !body.contains("Madrid") && !body.contains("Bea"),
            "{body}"
        );
        assert!(
            !body.contains("/u/") && !body.contains("/v/"),
            "no real link: {body}"
        );
        let feed = http
            .get(format!("{}/archive/feed.xml", s.base))
            .send()
            .await
            .unwrap();
        assert!(
            feed.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/rss+xml")
        );
        let feed = feed.text().await.unwrap();
        assert!(
            feed.contains(&format!("<link>{PUBLIC_BASE}/archive/c</link>")),
            "{feed}"
        );
        assert!(
            feed.contains("<pubDate>") && feed.contains("Our &lt;spring&gt; sale"),
            "{feed}"
        );
        let map = http
            .get(format!("{}/sitemap.xml", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            map.contains(&format!("<loc>{PUBLIC_BASE}/archive/c</loc>")),
            "{map}"
        );

        // Not public any more: gone from all three.
        let c = std::fs::read_to_string(p.file("campaigns/c.toml")).unwrap();
        p.write(
            "campaigns/c.toml",
            &c.replace("public = true", "public = false"),
        );
        let r = http
            .get(format!("{}/archive/c", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body = http
            .get(format!("{}/archive", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !body.contains("archive/c\"") && body.contains("Nothing is published"),
            "{body}"
        );
        let map = http
            .get(format!("{}/sitemap.xml", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!map.contains("/archive/c<"), "{map}");
        s.stop().await;
    }
}
