//! `cartero report ...` through the real binary on both backends: the
//! campaign figures agree with the raw rows (recomputed here with plain
//! SQL, not the rollups), the rollups kept by triggers equal the ones
//! `report rebuild` recomputes, KPI files fail with file:line:col, and the
//! contact change log shows old and new values and what made the change.

mod common;

use cartero::store::Store;
use common::db::TestDb;
use common::project::{Project, stderr, stdout};

const KEY: &str = "report-test-key-0123456789abcdef0123456789";
const H: i64 = 3_600_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// Every rollup row, sorted, zero counts left out.
async fn rollups(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for (t, cols) in [
        (
            "report_hourly",
            "campaign_id, kind, machine, hour_at, events, 0",
        ),
        (
            "report_sends",
            "send_id, kind, machine, campaign_id, first_at, events",
        ),
        (
            "report_links",
            "campaign_id, url, machine, send_id, events, 0",
        ),
        ("report_reasons", "campaign_id, kind, reason, events, 0, 0"),
        ("report_uniques", "campaign_id, kind, machine, sends, 0, 0"),
        (
            "report_link_totals",
            "campaign_id, url, machine, sends, events, 0",
        ),
        (
            "report_domains",
            "campaign_id, domain, outcome, events, 0, 0",
        ),
    ] {
        let sql = format!(
            "SELECT CAST({} AS TEXT) FROM {t} WHERE {} <> 0",
            cols.split(", ")
                .map(|c| format!("CAST({c} AS TEXT)"))
                .collect::<Vec<_>>()
                .join(" || '|' || "),
            if t == "report_uniques" {
                "sends"
            } else {
                "events"
            }
        );
        let rows: Vec<String> = cartero::dispatch!(store, pool => {
            sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap()
        });
        out.extend(rows.into_iter().map(|r| format!("{t}: {r}")));
    }
    out.sort();
    out
}

fn hit(class: &str, url: Option<&str>) -> String {
    match url {
        Some(u) => {
            format!("{{\"method\":\"GET\",\"class\":\"{class}\",\"link\":0,\"url\":\"{u}\"}}")
        }
        None => format!("{{\"method\":\"GET\",\"class\":\"{class}\"}}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_figures_agree_with_the_raw_rows_and_rebuild_gives_the_same_rollups() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import(
            "email,first_name\nana@gmail.com,Ana\nbo@outlook.com,Bo\ncy@example.org,Cy\n\
             di@yahoo.com,Di\ned@gmail.com,Ed\nfe@example.org,Fe\ngu@gmail.com,Gu\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let s = &db.store;
        exec(s, "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at, started_at) \
                 VALUES ('spring', 'Spring sale', 'c.toml', 'x', 'newsletter', 1, 1767225600000), \
                        ('other', 'Other', 'o.toml', 'y', 'newsletter', 1, 1767225600000)").await;
        // Sends: inserted pending in one statement, then moved on, as the
        // sender does; one skipped at the start.
        exec(s, &format!(
            "INSERT INTO sends (campaign_id, contact_id, email, state, skip_reason, created_at, updated_at) VALUES \
             (1, 1, 'ana@gmail.com', 'pending', NULL, {T0}, {T0}), (1, 2, 'bo@outlook.com', 'pending', NULL, {T0}, {T0}), \
             (1, 3, 'cy@example.org', 'pending', NULL, {T0}, {T0}), (1, 4, 'di@yahoo.com', 'pending', NULL, {T0}, {T0}), \
             (1, 5, 'ed@gmail.com', 'pending', NULL, {T0}, {T0}), (1, 6, 'fe@example.org', 'skipped', 'unsubscribed', {T0}, {T0}), \
             (1, 7, 'gu@gmail.com', 'pending', NULL, {T0}, {T0}), (2, 1, 'ana@gmail.com', 'pending', NULL, {T0}, {T0})"
        )).await;
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'accepted', updated_at = {} WHERE id IN (1, 2, 3, 4, 8)",
                T0 + 60_000
            ),
        )
        .await;
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'deferred', updated_at = {} WHERE id = 5",
                T0 + 60_000
            ),
        )
        .await;
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'failed', updated_at = {} WHERE id = 7",
                T0 + 70_000
            ),
        )
        .await;
        // Events: a batch in one statement (as the serve writer does), then
        // feedback one by one.
        let e = |c: i64, k: i64, send: i64, kind: &str, at: i64, data: &str| {
            format!("({c}, {k}, {send}, '{kind}', {at}, '{data}')")
        };
        let batch = [
            e(1, 1, 1, "open", T0 + H / 2, &hit("human", None)),
            e(1, 1, 1, "open", T0 + 2 * H, &hit("proxied", None)),
            e(1, 1, 1, "open", T0 + 2 * H, &hit("prefetch", None)),
            e(2, 1, 2, "open", T0 + 60_500, &hit("prefetch", None)),
            e(3, 1, 3, "open", T0 + 5 * H, &hit("human", None)),
            e(
                1,
                1,
                1,
                "click",
                T0 + H / 2,
                &hit("human", Some("https://shop.example/spring")),
            ),
            e(
                1,
                1,
                1,
                "click",
                T0 + H,
                &hit("human", Some("https://shop.example/spring")),
            ),
            e(
                1,
                1,
                1,
                "click",
                T0 + H,
                &hit("human", Some("https://shop.example/shoes")),
            ),
            e(
                2,
                1,
                2,
                "click",
                T0 + 61_000,
                &hit("scanner", Some("https://shop.example/spring")),
            ),
            e(
                3,
                1,
                3,
                "click",
                T0 + 26 * H,
                &hit("human", Some("https://shop.example/spring")),
            ),
            e(1, 2, 8, "open", T0 + H, &hit("human", None)),
        ];
        exec(s, &format!(
            "INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at, data) VALUES {}",
            batch.join(", ")
        )).await;
        for row in [
            e(
                4,
                1,
                4,
                "bounce_hard",
                T0 + 2 * H,
                "{\"reason\":\"mailbox_unknown\"}",
            ),
            e(
                4,
                1,
                4,
                "bounce_hard",
                T0 + 3 * H,
                "{\"reason\":\"mailbox_unknown\"}",
            ),
            e(
                2,
                1,
                2,
                "bounce_soft",
                T0 + 3 * H,
                "{\"reason\":\"mailbox_full\"}",
            ),
            e(3, 1, 3, "complaint", T0 + 30 * H, "{}"),
            e(
                3,
                1,
                3,
                "unsubscribe",
                T0 + 30 * H,
                "{\"method\":\"one-click\"}",
            ),
        ] {
            exec(s, &format!("INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at, data) VALUES {row}")).await;
        }
        exec(s, &format!("INSERT INTO events (contact_id, kind, occurred_at, data) VALUES (5, 'bounce_soft', {T0}, '{{}}')")).await;

        let json: serde_json::Value =
            serde_json::from_str(&p.ok(&["report", "campaign", "spring", "--format", "json"]))
                .unwrap();
        let g = |path: &str| -> i64 {
            json.pointer(path)
                .and_then(|v| v.as_i64())
                .unwrap_or_else(|| panic!("{path} in {json}"))
        };

        // The same figures, recomputed from the raw rows.
        let c = "campaign_id = 1";
        let machine =
            "(data LIKE '%\"class\":\"prefetch\"%' OR data LIKE '%\"class\":\"scanner\"%')";
        let raw = |sql: String| async move { scalar(s, &sql).await };
        assert_eq!(
            g("/recipients"),
            raw(format!("SELECT count(*) FROM sends WHERE {c}")).await
        );
        assert_eq!(
            g("/sent"),
            raw(format!(
                "SELECT count(*) FROM sends WHERE {c} AND state = 'accepted'"
            ))
            .await
        );
        assert_eq!(
            g("/deferred"),
            raw(format!(
                "SELECT count(*) FROM sends WHERE {c} AND state = 'deferred'"
            ))
            .await
        );
        assert_eq!(
            g("/failed"),
            raw(format!(
                "SELECT count(*) FROM sends WHERE {c} AND state = 'failed'"
            ))
            .await
        );
        assert_eq!(
            g("/skipped"),
            raw(format!(
                "SELECT count(*) FROM sends WHERE {c} AND state = 'skipped'"
            ))
            .await
        );
        assert_eq!(
            g("/skipped_by_reason/unsubscribed"),
            raw(format!(
                "SELECT count(*) FROM sends WHERE {c} AND skip_reason = 'unsubscribed'"
            ))
            .await
        );
        let bounced_sent = raw(format!(
            "SELECT count(*) FROM sends WHERE {c} AND state = 'accepted' AND id IN \
             (SELECT send_id FROM events WHERE kind IN ('bounce_hard', 'bounce_soft'))"
        ))
        .await;
        assert_eq!(g("/delivered"), g("/sent") - bounced_sent);
        assert_eq!(g("/bounced"), raw(format!("SELECT count(DISTINCT send_id) FROM events WHERE {c} AND kind IN ('bounce_hard', 'bounce_soft')")).await);
        assert_eq!(
            g("/bounced_hard"),
            raw(format!(
                "SELECT count(DISTINCT send_id) FROM events WHERE {c} AND kind = 'bounce_hard'"
            ))
            .await
        );
        assert_eq!(
            g("/bounce_reasons/hard: mailbox_unknown"),
            raw(format!(
                "SELECT count(*) FROM events WHERE {c} AND kind = 'bounce_hard'"
            ))
            .await
        );
        for (kind, key) in [("open", "opens"), ("click", "clicks")] {
            let k = format!("{c} AND kind = '{kind}'");
            assert_eq!(
                g(&format!("/{key}/total_human")),
                raw(format!(
                    "SELECT count(*) FROM events WHERE {k} AND NOT {machine}"
                ))
                .await,
                "{kind}"
            );
            assert_eq!(
                g(&format!("/{key}/total_machine")),
                raw(format!(
                    "SELECT count(*) FROM events WHERE {k} AND {machine}"
                ))
                .await,
                "{kind}"
            );
            assert_eq!(
                g(&format!("/{key}/unique")),
                raw(format!(
                    "SELECT count(DISTINCT send_id) FROM events WHERE {k}"
                ))
                .await,
                "{kind}"
            );
            assert_eq!(
                g(&format!("/{key}/unique_human")),
                raw(format!(
                    "SELECT count(DISTINCT send_id) FROM events WHERE {k} AND NOT {machine}"
                ))
                .await,
                "{kind}"
            );
            assert_eq!(
                g(&format!("/{key}/unique_machine")),
                raw(format!(
                    "SELECT count(DISTINCT send_id) FROM events WHERE {k} AND {machine}"
                ))
                .await,
                "{kind}"
            );
        }
        assert_eq!(
            g("/unsubscribes"),
            raw(format!(
                "SELECT count(DISTINCT send_id) FROM events WHERE {c} AND kind = 'unsubscribe'"
            ))
            .await
        );
        assert_eq!(
            g("/complaints"),
            raw(format!(
                "SELECT count(DISTINCT send_id) FROM events WHERE {c} AND kind = 'complaint'"
            ))
            .await
        );
        let links = json["links"].as_array().unwrap();
        let spring = links
            .iter()
            .find(|l| l["url"] == "https://shop.example/spring")
            .unwrap();
        assert_eq!(spring["unique_human"].as_i64().unwrap(), raw(format!(
            "SELECT count(DISTINCT send_id) FROM events WHERE {c} AND kind = 'click' AND data LIKE '%/spring\"%' AND NOT {machine}")).await);
        assert_eq!(spring["clicks_human"].as_i64().unwrap(), raw(format!(
            "SELECT count(*) FROM events WHERE {c} AND kind = 'click' AND data LIKE '%/spring\"%' AND NOT {machine}")).await);
        assert_eq!(spring["clicks_machine"].as_i64().unwrap(), raw(format!(
            "SELECT count(*) FROM events WHERE {c} AND kind = 'click' AND data LIKE '%/spring\"%' AND {machine}")).await);
        // Rates from the counts; conversions are not recorded yet.
        let rate = |k: &str| json[k].as_f64();
        assert_eq!(
            rate("click_to_open_rate"),
            Some(g("/clicks/unique_human") as f64 / g("/opens/unique_human") as f64)
        );
        assert_eq!(
            rate("open_rate"),
            Some(g("/opens/unique_human") as f64 / g("/delivered") as f64)
        );
        assert_eq!(g("/conversions/conversions"), 0);
        // The curve: hours after the first acceptance.
        let curve = json["curve"].as_array().unwrap();
        let human_opens: i64 = curve
            .iter()
            .map(|p| p["opens_human"].as_i64().unwrap())
            .sum();
        assert_eq!(human_opens, g("/opens/total_human"));
        let h26 = curve
            .iter()
            .find(|p| p["hour"] == 26)
            .expect("a click 26 hours after");
        assert_eq!(h26["clicks_human"], 1);
        // Per provider: recipients add up; Google has three.
        assert_eq!(json["by_provider"]["Google"]["recipients"], 3);
        assert_eq!(json["by_provider"]["Yahoo"]["bounce_hard"], 2);
        assert_eq!(json["by_domain"]["example.org"]["complaints"], 1);

        // Rollups kept by the triggers equal the rebuilt ones.
        let kept = rollups(s).await;
        assert!(!kept.is_empty());
        p.ok(&["report", "rebuild"]);
        assert_eq!(rollups(s).await, kept);

        // The other formats carry the same figures.
        let table = p.ok(&["report", "campaign", "Spring sale"]);
        assert!(table.contains("unique clicks (human)"), "{table}");
        let csv = p.ok(&[
            "report", "campaign", "spring", "--by", "provider", "--format", "csv",
        ]);
        assert!(csv.starts_with("provider,recipients,sent"), "{csv}");
        assert!(csv.contains("\nGoogle,3,"), "{csv}");
        let html = p.ok(&["report", "campaign", "spring", "--format", "html"]);
        assert!(
            html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() >= 2,
            "{html}"
        );
        assert!(
            !html.contains("<script") && !html.contains("http://")
                || html.contains("xmlns=\"http://www.w3.org/2000/svg\"")
        );
        let narrow = p
            .command(&["report", "campaign", "spring", "--by", "link"])
            .env("COLUMNS", "40")
            .output()
            .unwrap();
        assert!(
            stdout(&narrow).lines().all(|l| l.chars().count() <= 40),
            "{}",
            stdout(&narrow)
        );
        let bad = p.run(&["report", "campaign", "nope"]);
        assert!(
            !bad.status.success() && stderr(&bad).contains("no campaign named \"nope\""),
            "{}",
            stderr(&bad)
        );

        // KPIs: the defaults run; the week with 2 hard bounces of 5 sent is past the 5% alert.
        let kp = p.run(&["report", "kpis", "--format", "json"]);
        let kj: serde_json::Value = serde_json::from_slice(&kp.stdout).unwrap();
        let bounce = &kj["kpis"][0];
        assert_eq!(bounce["name"], "Bounce rate");
        assert_eq!(bounce["series"]["all"][0]["numerator"], 3);
        assert_eq!(bounce["series"]["all"][0]["denominator"], 5);
        assert!(bounce["series"]["Yahoo"][0]["alert"].as_bool().unwrap());
        assert!(!kp.status.success(), "an alert exits non-zero");
        p.write(
            "campaigns/kpis.toml",
            "[[kpi]]\nname = \"Opens\"\nmetric = \"open_rat\"\n",
        );
        let bad = p.run(&["report", "kpis"]);
        assert!(
            stderr(&bad).contains("kpis.toml:3:10: unknown metric"),
            "{}",
            stderr(&bad)
        );
        let contacts = p.ok(&["report", "contacts", "--period", "day", "--format", "json"]);
        let cj: serde_json::Value = serde_json::from_str(&contacts).unwrap();
        assert_eq!(cj["lists"]["newsletter"], 7);
        assert_eq!(cj["contacts"], 7);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_accepted_then_bounced_counts_as_bounced_not_delivered() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import(
            "email\nana@gmail.com\nbo@outlook.com\ncy@example.org\ndi@yahoo.com\ned@gmail.com\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let s = &db.store;
        exec(s, "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at, started_at) \
                 VALUES ('june', 'June', 'c.toml', 'x', 'newsletter', 1, 1767225600000)").await;
        exec(
            s,
            &format!(
                "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) \
             SELECT 1, id, email, 'pending', {T0}, {T0} FROM contacts ORDER BY id"
            ),
        )
        .await;
        let bounce = |send: i64, kind: &str, at: i64| {
            format!("({send}, 1, {send}, '{kind}', {at}, '{{\"reason\":\"mailbox_unknown\"}}')")
        };
        let insert = |rows: Vec<String>| {
            format!(
                "INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at, data) VALUES {}",
                rows.join(", ")
            )
        };
        // The figure the report must show, from the raw rows.
        let pr = &p;
        let check = |step: &'static str| async move {
            let json: serde_json::Value =
                serde_json::from_str(&pr.ok(&["report", "campaign", "june", "--format", "json"]))
                    .unwrap();
            let sent = scalar(
                s,
                "SELECT count(*) FROM sends WHERE campaign_id = 1 AND state = 'accepted'",
            )
            .await;
            let bounced_sent = scalar(
                s,
                "SELECT count(*) FROM sends WHERE campaign_id = 1 AND state = 'accepted' AND id IN \
                 (SELECT send_id FROM events WHERE kind IN ('bounce_hard', 'bounce_soft'))",
            )
            .await;
            assert_eq!(json["sent"].as_i64(), Some(sent), "{step}");
            assert_eq!(
                json["delivered"].as_i64(),
                Some(sent - bounced_sent),
                "{step}"
            );
            let kept = rollups(s).await;
            pr.ok(&["report", "rebuild"]);
            assert_eq!(
                rollups(s).await,
                kept,
                "{step}: the triggers and the rebuild agree"
            );
            json["delivered"].as_i64().unwrap()
        };
        // 1, 2, 4 and 5 accepted, 3 deferred.
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'accepted', updated_at = {} WHERE id IN (1, 2, 4, 5)",
                T0 + 60_000
            ),
        )
        .await;
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'deferred', updated_at = {} WHERE id = 3",
                T0 + 60_000
            ),
        )
        .await;
        assert_eq!(check("accepted").await, 4);
        // Accepted, then a hard bounce: bounced, not delivered.
        exec(s, &insert(vec![bounce(1, "bounce_hard", T0 + H)])).await;
        assert_eq!(check("a bounce after acceptance").await, 3);
        // A second bounce of the same send takes nothing more off.
        exec(s, &insert(vec![bounce(1, "bounce_soft", T0 + 2 * H)])).await;
        assert_eq!(check("a second bounce").await, 3);
        // Two bounces of one send in one statement count once.
        exec(
            s,
            &insert(vec![
                bounce(2, "bounce_hard", T0 + H),
                bounce(2, "bounce_soft", T0 + H),
            ]),
        )
        .await;
        assert_eq!(check("two bounces in one statement").await, 2);
        // A bounce while deferred, then accepted: sent, not delivered.
        exec(s, &insert(vec![bounce(3, "bounce_soft", T0 + H)])).await;
        assert_eq!(check("a bounce while deferred").await, 2);
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'accepted', updated_at = {} WHERE id = 3",
                T0 + 2 * H
            ),
        )
        .await;
        assert_eq!(check("accepted after its bounce").await, 2);
        // A bounced send that leaves `accepted` leaves both figures.
        exec(
            s,
            &format!(
                "UPDATE sends SET state = 'failed', updated_at = {} WHERE id = 1",
                T0 + 3 * H
            ),
        )
        .await;
        assert_eq!(check("a bounced send failed").await, 2);
        // A bounce without a campaign is no campaign's.
        exec(s, &format!("INSERT INTO events (contact_id, send_id, kind, occurred_at, data) VALUES (5, 5, 'bounce_hard', {T0}, '{{}}')")).await;
        let json: serde_json::Value =
            serde_json::from_str(&p.ok(&["report", "campaign", "june", "--format", "json"]))
                .unwrap();
        assert_eq!(json["delivered"].as_i64(), Some(2));
        assert_eq!(json["bounced"].as_i64(), Some(3));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_change_log_shows_old_and_new_values_and_what_changed_them() {
    for db in TestDb::all().await {
        let p = Project::new(&db, &format!("[compliance]\nledger_key = \"{KEY}\"\n"));
        let out = p
            .import("email,first_name,last_name\nana@example.com,Ana,Ruiz\nbo@example.com,Bo,Li\n");
        assert!(out.status.success(), "{}", stderr(&out));
        p.write(
            "fix.csv",
            "email,first_name,last_name\nana@example.com,Anabel,Ruiz\n",
        );
        p.ok(&[
            "contacts",
            "import",
            "fix.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "fix",
        ]);
        let csv = p.ok(&[
            "contacts", "changes", "--since", "1d", "--detail", "--format", "csv",
        ]);
        let line = csv
            .lines()
            .find(|l| l.contains("field:first_name"))
            .unwrap_or_else(|| panic!("{csv}"));
        assert!(
            line.contains(",Ana,Anabel,") && line.contains("contacts import fix.csv"),
            "{line}"
        );
        assert!(
            !csv.lines().any(|l| l.contains("field:last_name")),
            "an unchanged field is not logged: {csv}"
        );
        let created = csv.lines().filter(|l| l.contains("field:created")).count();
        assert_eq!(created, 2, "{csv}");
        let rows = scalar(
            &db.store,
            "SELECT count(*) FROM contact_changes WHERE field = 'first_name' \
                                       AND old_value = 'Ana' AND new_value = 'Anabel'",
        )
        .await;
        assert_eq!(rows, 1);

        // An erasure is logged as such and blanks the values logged before.
        p.ok(&[
            "contacts",
            "erase",
            "ana@example.com",
            "--reason",
            "request 4711",
        ]);
        let left = scalar(&db.store, "SELECT count(*) FROM contact_changes WHERE contact_id = 1 \
                                       AND (old_value LIKE '%Ana%' OR new_value LIKE '%ana@%' OR new_value LIKE '%Ana%')").await;
        assert_eq!(left, 0, "the erased person's values stay out of the log");
        let erased = scalar(
            &db.store,
            "SELECT count(*) FROM contact_changes WHERE contact_id = 1 AND field = 'erased' \
                                         AND origin LIKE 'contacts erase%'",
        )
        .await;
        assert_eq!(erased, 1);
        // A status change through the feedback path names its rule.
        exec(
            &db.store,
            "UPDATE contacts SET status = 'bounced', status_reason = 'manual' WHERE id = 2",
        )
        .await;
        let unattributed = scalar(
            &db.store,
            "SELECT count(*) FROM contact_changes WHERE contact_id = 2 AND field = 'status' \
                                               AND origin IS NULL",
        )
        .await;
        assert_eq!(
            unattributed, 1,
            "a write outside cartero is logged without an origin"
        );
    }
}
