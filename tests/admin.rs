//! The read-only admin pages of `cartero serve` over real HTTP on loopback,
//! on SQLite and PostgreSQL: refused without a key, with a conversions key,
//! with a tampered, expired or revoked session; the login form (CSRF
//! token, same-origin) answering with a strict session cookie; the report
//! pages byte for byte what `cartero report ... --format html` prints; the
//! log's CSV byte for byte what `cartero compliance log --format csv`
//! prints for the same filters; and no admin answer cached or indexed.

mod common;

use cartero::config::Config;
use cartero::domain::time::now_millis;
use common::db::TestDb;
use common::project::{Project, stderr, stdout};
use common::serve::{PUBLIC_BASE, Served, client};
use sha2::Digest;

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .trim()
}

/// The hidden form token of the first form in `html`.
fn form_token(html: &str) -> String {
    let at = html
        .find("name=\"form\" value=\"")
        .unwrap_or_else(|| panic!("no form token in {html}"));
    let rest = &html[at + "name=\"form\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Every admin answer: never cached, never indexed, the strict CSP.
fn assert_admin_headers(r: &reqwest::Response, what: &str) {
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(h("cache-control"), "no-store", "{what}");
    assert_eq!(h("x-robots-tag"), "noindex, nofollow", "{what}");
    let csp = h("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{what}: {csp}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_pages_need_an_admin_key_and_show_what_the_cli_prints() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "[serve]\nlisten = \"127.0.0.1:0\"\n");
        let out = p.import(
            "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        p.write("other.csv", "email\ncarla@example.com\n");
        p.ok(&[
            "contacts",
            "import",
            "other.csv",
            "--list",
            "offers",
            "--consent-source",
            "fair stand",
        ]);
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        let admin = p.ok(&["api-key", "create", "--role", "admin-read", "dpo"]);
        assert!(admin.contains("role:            admin-read"), "{admin}");
        assert!(
            !admin.contains("postback"),
            "an admin key has no postback: {admin}"
        );
        let admin_key = field(&admin, "key").to_string();
        let shop_key = field(&p.ok(&["api-key", "create", "shop"]), "key").to_string();
        let listed = p.ok(&["api-key", "list", "--format", "csv"]);
        assert!(
            listed.contains(",dpo,") && listed.contains(",admin-read,"),
            "{listed}"
        );
        assert!(
            !listed.contains(&admin_key[admin_key.len() - 20..]),
            "{listed}"
        );

        let s = Served::start(&p, &db).await;
        let http = client();
        let get = |path: &str, auth: Option<&str>, cookie: Option<&str>| {
            let mut r = http.get(format!("{}{path}", s.base));
            if let Some(k) = auth {
                r = r.header("authorization", format!("Bearer {k}"));
            }
            if let Some(c) = cookie {
                r = r.header("cookie", c);
            }
            r.send()
        };

        // Nobody: 401 for a script, the login page for a browser, and no
        // personal data either way.
        for path in [
            "/admin/compliance",
            "/admin/compliance/log.csv",
            "/admin/reports",
            "/admin/reports/campaigns/c",
            "/admin/reports/kpis",
            "/admin/nothing-here",
        ] {
            let r = get(path, None, None).await.unwrap();
            assert_eq!(r.status(), 401, "{path}");
            assert_admin_headers(&r, path);
            assert!(
                r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("@example.com") && !body.contains("Spring"),
                "{path}: {body}"
            );
            let r = http
                .get(format!("{}{path}", s.base))
                .header("accept", "text/html,application/xhtml+xml")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303, "{path}");
            assert_eq!(r.headers()["location"], "/admin/login");
        }
        // The wrong role, a wrong secret, a malformed key: the same 401.
        // The last hex digit changed (never to itself: a key ending in 0
        // must not be "forged" into itself).
        let last = if admin_key.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &admin_key[..admin_key.len() - 1]);
        for key in [shop_key.as_str(), forged.as_str(), "ck_zz_x", "dpo"] {
            let r = get("/admin/compliance", Some(key), None).await.unwrap();
            assert_eq!(r.status(), 401, "{key}");
        }
        // An admin key records no conversion.
        let r = http
            .post(format!("{}/api/events", s.base))
            .header("authorization", format!("Bearer {admin_key}"))
            .header("content-type", "application/json")
            .body(r#"{"type":"purchase","contact":"ana@example.com","order_id":"A-1","value":"1","currency":"EUR"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // A script with the admin key (the scheme in any case, RFC 9110 §11.1).
        let r = http
            .get(format!("{}/admin/reports", s.base))
            .header("authorization", format!("bearer {admin_key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = get("/admin/compliance", Some(&admin_key), None)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_admin_headers(&r, "compliance");
        let page = r.text().await.unwrap();
        for expected in [
            "ana@example.com",
            "bob@example.com",
            "carla@example.com",
            "Violations",
        ] {
            assert!(page.contains(expected), "missing {expected} in {page}");
        }

        // The CSV is the CLI's, byte for byte, for the same filters.
        for (query, args) in [
            ("", vec![]),
            ("?list=offers", vec!["--list", "offers"]),
            (
                "?action=grant&method=import",
                vec!["--action", "grant", "--method", "import"],
            ),
            (
                "?contact=bob%40example.com",
                vec!["--contact", "bob@example.com"],
            ),
            ("?since=2100-01-01", vec!["--since", "2100-01-01"]),
        ] {
            let r = get(
                &format!("/admin/compliance/log.csv{query}"),
                Some(&admin_key),
                None,
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 200, "{query}");
            assert_admin_headers(&r, query);
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/csv")
            );
            let served = r.bytes().await.unwrap();
            let mut cli = vec!["compliance", "log", "--format", "csv"];
            cli.extend(args);
            let printed = p.run(&cli);
            assert!(printed.status.success(), "{}", stderr(&printed));
            assert_eq!(
                String::from_utf8_lossy(&served),
                String::from_utf8_lossy(&printed.stdout),
                "{query}"
            );
        }
        let all = String::from_utf8(
            get("/admin/compliance/log.csv", Some(&admin_key), None)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(all.lines().count(), 4, "a header and three grants: {all}");

        // Filters narrow the page; bad ones are refused by name.
        let bob = get(
            "/admin/compliance?contact=bob%40example.com",
            Some(&admin_key),
            None,
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(bob.contains("<td>bob@example.com</td>"), "{bob}");
        assert!(!bob.contains("<td>ana@example.com</td>"), "{bob}");
        let offers = get("/admin/compliance?list=offers", Some(&admin_key), None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(offers.contains("<td>carla@example.com</td>"), "{offers}");
        assert!(!offers.contains("<td>ana@example.com</td>"), "{offers}");
        let none = get("/admin/compliance?action=withdraw", Some(&admin_key), None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(none.contains("No entry matches."), "{none}");
        let first = scalar(&db, "SELECT MIN(id) FROM consent_events").await;
        let after = get(
            &format!("/admin/compliance?after={first}"),
            Some(&admin_key),
            None,
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(
            !after.contains("<td>ana@example.com</td>")
                && after.contains("<td>bob@example.com</td>"),
            "{after}"
        );
        for (query, named) in [
            ("?since=yesterday", "since"),
            ("?action=maybe", "action"),
            ("?after=x", "after"),
            ("?lists=offers", "lists"),
            ("?list=a&list=b", "list"),
            (
                "?contact=nobody%40example.com",
                "no contact with this address",
            ),
        ] {
            let r = get(&format!("/admin/compliance{query}"), Some(&admin_key), None)
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{query}");
            assert!(r.text().await.unwrap().contains(named), "{query}");
        }

        // A log of several CSV chunks (64 KiB each) streams whole and equal;
        // the page shows the first hundred and links the next.
        let mut bulk = String::from("email\n");
        for i in 0..1500 {
            bulk.push_str(&format!("bulk{i:04}@example.org\n"));
        }
        p.write("bulk.csv", &bulk);
        p.ok(&[
            "contacts",
            "import",
            "bulk.csv",
            "--list",
            "bulk",
            "--consent-source",
            "a long fair",
        ]);
        let served = get("/admin/compliance/log.csv", Some(&admin_key), None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(served.len() > 3 * 64 * 1024, "{} bytes", served.len());
        let printed = p.run(&["compliance", "log", "--format", "csv"]);
        assert_eq!(served.as_ref(), printed.stdout.as_slice());
        assert_eq!(served.iter().filter(|b| **b == b'\n').count(), 1 + 3 + 1500);
        let page = get("/admin/compliance?list=bulk", Some(&admin_key), None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            page.matches("@example.org</td>").count(),
            100,
            "a page of a hundred"
        );
        assert!(page.contains("bulk0099@example.org") && !page.contains("bulk0100@example.org"));
        let next = page
            .split("href=\"/admin/compliance?")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a next-page link")
            .replace("&amp;", "&");
        assert!(next.starts_with("list=bulk&after="), "{next}");
        let page2 = get(&format!("/admin/compliance?{next}"), Some(&admin_key), None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page2.contains("bulk0100@example.org") && !page2.contains("bulk0099@example.org"));

        // Read-only: nothing but GET on the pages.
        let r = http
            .post(format!("{}/admin/compliance", s.base))
            .header("authorization", format!("Bearer {admin_key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);

        // A browser: the login form, its token, the cookie.
        let r = get("/admin/login", None, None).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_admin_headers(&r, "login");
        let login_page = r.text().await.unwrap();
        let token = form_token(&login_page);
        let login = |key: String, form: String, origin: &'static str| {
            http.post(format!("{}/admin/login", s.base))
                .header("origin", origin)
                .form(&[("form", form), ("token", key)])
                .send()
        };
        // Without the page's token, from another site, with a wrong key.
        let r = login(admin_key.clone(), String::new(), PUBLIC_BASE)
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("set-cookie").is_none());
        let r = login(admin_key.clone(), token.clone(), "https://evil.example")
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("set-cookie").is_none());
        let r = login(shop_key.clone(), token.clone(), PUBLIC_BASE)
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("set-cookie").is_none());
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("does not open the admin pages")
        );

        let r = login(admin_key.clone(), token.clone(), PUBLIC_BASE)
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/admin/reports");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/admin",
            "Secure",
            "Max-Age=28800",
        ] {
            assert!(set.contains(attr), "missing {attr} in {set}");
        }
        assert!(
            !set.contains(&admin_key),
            "the cookie is not the key: {set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();

        let r = get("/admin/reports", None, Some(&cookie)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_admin_headers(&r, "reports");
        let reports = r.text().await.unwrap();
        assert!(
            reports.contains("href=\"/admin/reports/campaigns/c\""),
            "{reports}"
        );
        assert!(
            reports.contains(">Spring</a>") && reports.contains("dpo"),
            "{reports}"
        );

        // Each report page is the CLI's HTML, with a CSP that lets only its
        // own style element apply.
        for (path, args) in [
            (
                "/admin/reports/campaigns/c",
                vec!["report", "campaign", "c", "--format", "html"],
            ),
            (
                "/admin/reports/kpis",
                vec!["report", "kpis", "--format", "html"],
            ),
        ] {
            let r = get(path, None, Some(&cookie)).await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_admin_headers(&r, path);
            let csp = r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(csp.contains("style-src 'sha256-"), "{csp}");
            let served = r.text().await.unwrap();
            let printed = p.run(&args);
            assert!(
                printed.status.success() || printed.status.code() == Some(1),
                "{}",
                stderr(&printed)
            );
            assert_eq!(served, stdout(&printed), "{path}");
        }
        let r = get("/admin/reports/contacts", None, Some(&cookie))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("<svg"));
        let r = get("/admin/reports/campaigns/nope", None, Some(&cookie))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // Tampered sessions are refused: another key id, a later expiry, a
        // flipped MAC, garbage.
        let value = cookie.strip_prefix("cartero_admin=").unwrap();
        let parts: Vec<&str> = value.split('.').collect();
        assert_eq!(parts.len(), 3, "{value}");
        let flipped_mac = format!(
            "{}{}",
            &parts[2][..63],
            if parts[2].ends_with('0') { "1" } else { "0" }
        );
        let later: i64 = parts[1].parse::<i64>().unwrap() + 1;
        let other_id = if parts[0] == "1" { "2" } else { "1" };
        for bad in [
            format!("{other_id}.{}.{}", parts[1], parts[2]),
            format!("{}.{later}.{}", parts[0], parts[2]),
            format!("{}.{}.{flipped_mac}", parts[0], parts[1]),
            "x.y.z".to_string(),
            String::new(),
        ] {
            let r = get(
                "/admin/reports",
                None,
                Some(&format!("cartero_admin={bad}")),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 401, "{bad}");
        }
        // Expired, or lasting longer than a session: refused; a fresh one
        // made the same way passes (so the refusals are about the time).
        let cfg = Config::load(&p.file("cartero.toml")).unwrap();
        let keys = cartero::app::Settings::from_config(&cfg).unwrap().keys;
        let admin_id = scalar(&db, "SELECT id FROM api_keys WHERE name = 'dpo'").await;
        let hash: String = sha2::Sha256::digest(admin_key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let made = |expiry: i64| {
            format!(
                "cartero_admin={}",
                cartero::track::admin::session_value(&keys, admin_id, &hash, expiry)
            )
        };
        let now = now_millis();
        for (expiry, status) in [
            (now - 1_000, 401),
            (now + 2 * cartero::track::admin::SESSION_MS, 401),
            (now + 60_000, 200),
        ] {
            let r = get("/admin/reports", None, Some(&made(expiry)))
                .await
                .unwrap();
            assert_eq!(r.status(), status, "expiry {expiry} at {now}");
        }

        // Sign out: the cookie is cleared (the form's token first).
        let logout_token = form_token(&reports);
        let r = http
            .post(format!("{}/admin/logout", s.base))
            .header("origin", PUBLIC_BASE)
            .header("cookie", &cookie)
            .form(&[("form", logout_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(
            r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );

        // Revoking the key ends its sessions and its bearer use at once.
        p.ok(&["api-key", "revoke", "dpo"]);
        let r = get("/admin/reports", None, Some(&cookie)).await.unwrap();
        assert_eq!(r.status(), 401);
        let r = get("/admin/reports", Some(&admin_key), None).await.unwrap();
        assert_eq!(r.status(), 401);
        s.stop().await;
    }
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// Failed admin sign-ins are limited per client IP and per key, counted in
/// the database so that two nodes on one database share the count: after
/// `admin_login_max_failures` failures the next attempt, a right key
/// included, is a 429 with `Retry-After` (never a 500), counted in
/// /metrics; another client and another key still sign in at once.
#[tokio::test(flavor = "multi_thread")]
async fn failed_admin_sign_ins_are_limited_per_client_and_key_across_nodes() {
    for db in TestDb::all().await {
        let p = Project::new(
            &db,
            "[serve]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
             admin_login_max_failures = 3\nadmin_login_window_secs = 3600\n",
        );
        let dpo = field(
            &p.ok(&["api-key", "create", "--role", "admin-read", "dpo"]),
            "key",
        )
        .to_string();
        let auditor = field(
            &p.ok(&["api-key", "create", "--role", "admin-read", "auditor"]),
            "key",
        )
        .to_string();
        // Two nodes on one database.
        let one = Served::start(&p, &db).await;
        let two = Served::start(&p, &db).await;
        let http = client();
        let token = form_token(
            &http
                .get(format!("{}/admin/login", one.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        let login = |node: &Served, client_ip: &str, key: &str| {
            http.post(format!("{}/admin/login", node.base))
                .header("origin", PUBLIC_BASE)
                .header("x-forwarded-for", client_ip)
                .form(&[("form", token.as_str()), ("token", key)])
                .send()
        };

        // Client A guesses three times on node one.
        for guess in ["hunter2", "ck_000000000000_nope", "ck_zz_zz"] {
            let r = login(&one, "203.0.113.5", guess).await.unwrap();
            assert_eq!(r.status(), 401, "{guess}");
        }
        // Then the right key from A, on node two: refused, and told when.
        let r = login(&two, "203.0.113.5", &dpo).await.unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.headers().get("set-cookie").is_none());
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
        assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
        // A script from A with a Bearer header is refused as well.
        let r = http
            .get(format!("{}/admin/reports", two.base))
            .header("authorization", format!("Bearer {dpo}"))
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
        // Client B is not slowed by A: the right key signs in at once.
        let r = login(&one, "198.51.100.9", &dpo).await.unwrap();
        assert_eq!(r.status(), 303);

        // The key: three wrong secrets under dpo's prefix from three clients.
        let prefix = &dpo[..dpo.len() - dpo.rsplit('_').next().unwrap().len()];
        for (i, ip) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
            let r = login(&one, ip, &format!("{prefix}wrongsecret{i}"))
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = login(&two, "192.0.2.50", &dpo).await.unwrap();
        assert_eq!(r.status(), 429, "the key is over its limit");
        let r = http
            .get(format!("{}/admin/reports", one.base))
            .header("authorization", format!("Bearer {dpo}"))
            .header("x-forwarded-for", "192.0.2.51")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        // Another key from a clean client is not affected.
        let r = login(&two, "192.0.2.50", &auditor).await.unwrap();
        assert_eq!(r.status(), 303);

        // Counted where they happened.
        let metrics = |node: &Served| {
            let url = format!("{}/metrics", node.base);
            let http = http.clone();
            async move { http.get(url).send().await.unwrap().text().await.unwrap() }
        };
        let m1 = metrics(&one).await;
        let m2 = metrics(&two).await;
        assert!(
            m1.contains("cartero_admin_login_failures_total 6\n"),
            "{m1}"
        );
        assert!(
            m1.contains("cartero_admin_logins_limited_total 1\n"),
            "{m1}"
        );
        assert!(
            m2.contains("cartero_admin_logins_limited_total 3\n"),
            "{m2}"
        );
        // The counters hold keyed hashes, never an address or a prefix.
        let stored = scalar(
            &db,
            "SELECT COUNT(*) FROM rate_limits WHERE bucket LIKE 'admin-login:%'",
        )
        .await;
        assert_eq!(stored, 5, "A, the three key guessers, and dpo's key");
        let leaks = scalar(
            &db,
            &format!(
                "SELECT COUNT(*) FROM rate_limits WHERE bucket LIKE '%203.0.113%' OR bucket LIKE '%{}%'",
                &prefix[3..15]
            ),
        )
        .await;
        assert_eq!(leaks, 0);
        one.stop().await;
        two.stop().await;
    }
}
