//! The events API over real HTTP on loopback, on SQLite and PostgreSQL:
//! keys made and revoked by the CLI, conversions deduplicated by order id
//! and credited to the contact's last click within the campaign's window,
//! the signed postback URL, and bad input refused with the field named.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};
use common::serve::{PUBLIC_BASE, Served, client, outbox};
use hmac::Mac;

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .trim()
}

fn rfc3339_in(days: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn post(
    http: &reqwest::Client,
    s: &Served,
    key: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{}/api/events", s.base))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "raw": text })),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn conversions_are_deduplicated_attributed_and_checked() {
    for db in TestDb::all().await {
        let p = Project::new(
            &db,
            "[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\n",
        );
        // A bad window is refused with its place in the file.
        p.write(
            "campaigns/bad.toml",
            "name = \"Bad\"\nsubject = \"x\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n\
             attribution_days = 0\n\n[template]\nhtml = \"c.html\"\n",
        );
        let out = p.run(&["campaign", "check", "campaigns/bad.toml"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("bad.toml:5:"), "{}", stderr(&out));

        let out = p.import(
            "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        let mail = outbox(&p);
        let click = mail["ana@example.com"]
            .urls(&format!("{PUBLIC_BASE}/c/"))
            .into_iter()
            .next()
            .expect("a tracked link");

        // Delivered an hour ago (a click seconds after delivery is a
        // scanner's, and is never credited).
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE sends SET updated_at = updated_at - 3600000")
                .execute(pool)
                .await
                .unwrap();
        });
        let created = p.ok(&["api-key", "create", "shop"]);
        let key = field(&created, "key").to_string();
        let key_id = field(&created, "postback key id").to_string();
        let pb_secret = field(&created, "postback secret").to_string();
        let listed = p.ok(&["api-key", "list", "--format", "json"]);
        assert!(
            !listed.contains(&key[key.len() - 20..]),
            "the list shows no secret"
        );
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM api_keys").await, 1);

        // A link scanner's HEAD is recorded, flagged, and credits nothing.
        let s = Served::start(&p, &db).await;
        let http = client();
        let r = http.head(s.url(&click)).send().await.unwrap();
        assert_eq!(r.status(), 302);
        s.stop().await;
        let s = Served::start(&p, &db).await;
        let (st, j) = post(
            &http,
            &s,
            &key,
            r#"{"type":"purchase","contact":"ana@example.com","order_id":"S-1","value":"1","currency":"EUR"}"#,
        )
        .await;
        assert_eq!(
            (st, &j["campaign_id"]),
            (200, &serde_json::Value::Null),
            "{j}"
        );

        // Ana clicks; the server drains its event queue on stop.
        let r = http
            .get(s.url(&click))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        s.stop().await;
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events WHERE kind = 'click'").await,
            2
        );

        let s = Served::start(&p, &db).await;
        let conv = || async { scalar(&db, "SELECT COUNT(*) FROM conversions").await };

        // Recorded once, credited to the click, the value exact.
        let body = r#"{"type":"purchase","contact":"ana@example.com","order_id":"A-1","value":"19.99","currency":"EUR"}"#;
        let (st, j) = post(&http, &s, &key, body).await;
        assert_eq!(st, 200, "{j}");
        assert_eq!(j["status"], "recorded", "{j}");
        let campaign = scalar(&db, "SELECT id FROM campaigns WHERE slug = 'c'").await;
        assert_eq!(j["campaign_id"], campaign, "{j}");
        assert!(
            j["link"]
                .as_str()
                .unwrap()
                .starts_with("https://shop.example/spring"),
            "{j}"
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT value_minor FROM conversions WHERE order_id = 'A-1'"
            )
            .await,
            1999
        );
        let (st, j) = post(&http, &s, &key, body).await;
        assert_eq!((st, j["status"].as_str()), (200, Some("duplicate")));
        assert_eq!(conv().await, 2);

        // The window: 6 days after the click is credited, 8 days is not.
        let ana = scalar(
            &db,
            "SELECT id FROM contacts WHERE email = 'ana@example.com'",
        )
        .await;
        let in6 = format!(
            r#"{{"type":"purchase","contact":{ana},"order_id":"A-2","value":12,"currency":"JPY","time":"{}"}}"#,
            rfc3339_in(6)
        );
        let (st, j) = post(&http, &s, &key, &in6).await;
        assert_eq!(
            (st, &j["campaign_id"]),
            (200, &serde_json::json!(campaign)),
            "{j}"
        );
        let in8 = format!(
            r#"{{"type":"purchase","contact":"ana@example.com","order_id":"A-3","value":"1","currency":"EUR","time":"{}"}}"#,
            rfc3339_in(8)
        );
        let (st, j) = post(&http, &s, &key, &in8).await;
        assert_eq!(
            (st, &j["campaign_id"]),
            (200, &serde_json::Value::Null),
            "{j}"
        );
        // Bob never clicked: recorded, credited to nothing.
        let (st, j) = post(
            &http,
            &s,
            &key,
            r#"{"type":"signup","contact":"bob@example.com","order_id":"B-1","value":"0","currency":"EUR"}"#,
        )
        .await;
        assert_eq!(
            (st, j["status"].as_str(), &j["campaign_id"]),
            (200, Some("recorded"), &serde_json::Value::Null)
        );
        assert_eq!(conv().await, 5);

        // Bad input: a 4xx JSON error naming the field; nothing changes.
        let good = serde_json::json!({"type":"purchase","contact":"ana@example.com","order_id":"X-1","value":"1.00","currency":"EUR"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = good.clone();
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v;
            }
            b.to_string()
        };
        let cases = [
            (with("type", serde_json::Value::Null), "type"),
            (with("order_id", serde_json::Value::Null), "order_id"),
            (with("contact", serde_json::Value::Null), "contact"),
            (with("contact", "not an address@".into()), "contact"),
            (with("currency", "EURO".into()), "currency"),
            (with("currency", "XYZ".into()), "currency"),
            (with("value", "-5".into()), "value"),
            (with("value", "1.234".into()), "value"),
            (with("value", "1e9".into()), "value"),
            (with("time", "yesterday".into()), "time"),
            ("[1,2]".to_string(), "body"),
            ("{".to_string(), "body"),
        ];
        for (body, f) in &cases {
            let (st, j) = post(&http, &s, &key, body).await;
            assert_eq!(st, 400, "{body}: {j}");
            assert_eq!(j["field"], *f, "{body}: {j}");
        }
        let r = http
            .post(format!("{}/api/events", s.base))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(vec![b'{', b'"', 0xff, b'"', b'}'])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("UTF-8"));
        let r = http
            .post(format!("{}/api/events", s.base))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "text/plain")
            .body(with("order_id", "X-2".into()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        assert!(r.text().await.unwrap().contains("content-type"));
        let r = http
            .post(format!("{}/api/events", s.base))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(vec![b' '; 64 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        for auth in [
            "",
            "Bearer ck_000000000000_x",
            &format!("Bearer {key}x"),
            &key,
        ] {
            let r = http
                .post(format!("{}/api/events", s.base))
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(with("order_id", "X-3".into()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{auth}");
        }
        assert_eq!(conv().await, 5);

        // The postback: a signed URL for shops that can only fire one.
        let query = format!(
            "key={key_id}&type=purchase&contact=ana%40example.com&order_id=P-1&value=5.50&currency=EUR"
        );
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(pb_secret.as_bytes()).unwrap();
        m.update(query.as_bytes());
        let sig: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let altered = query.replace("5.50", "550");
        let r = http
            .get(format!(
                "{}/api/events/postback?{altered}&sig={sig}",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(conv().await, 5);
        for expect in ["recorded", "duplicate"] {
            let r = http
                .get(format!("{}/api/events/postback?{query}&sig={sig}", s.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.text().await.unwrap().contains(expect));
        }
        assert_eq!(
            scalar(
                &db,
                "SELECT value_minor FROM conversions WHERE order_id = 'P-1' AND via = 'postback'"
            )
            .await,
            550
        );

        // A revoked key stops working at once.
        p.ok(&["api-key", "revoke", "shop"]);
        let (st, _) = post(&http, &s, &key, &with("order_id", "X-4".into())).await;
        assert_eq!(st, 401);
        let r = http
            .get(format!("{}/api/events/postback?{query}&sig={sig}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(conv().await, 6);
        s.stop().await;
    }
}
