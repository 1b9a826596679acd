//! Journeys: the engine (`schedule::journey::tick`) on both backends with a
//! stepped clock (no sleeping), the shipped examples checked by
//! `cartero journey check`, and `cartero journey status`.

mod common;

use std::path::PathBuf;

use cartero::campaign::journey::Journey;
use cartero::schedule::journey::{tick, tick_as};
use cartero::store::Store;
use common::db::TestDb;
use common::project::{Project, stderr, stdout};

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

async fn count(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

async fn strings(store: &Store, sql: &str) -> Vec<String> {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

async fn contact_id(store: &Store, email: &str) -> i64 {
    count(
        store,
        &format!("SELECT id FROM contacts WHERE email = '{email}'"),
    )
    .await
}

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped(name: &str) -> Journey {
    Journey::load(
        &repo_dir().join("campaigns").join(name),
        &repo_dir().join("templates"),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A confirmed double opt-in sign-up, as `POST /confirm` leaves it.
async fn confirmed_signup(store: &Store, email: &str, at: i64) {
    let id = contact_id(store, email).await;
    exec(
        store,
        &format!(
            "INSERT INTO signups (token_hash, list_id, email, state, signed_up_at, confirmed_at, contact_id) \
             SELECT 'hash-{email}', id, '{email}', 'confirmed', {at}, {at}, {id} FROM lists WHERE name = 'newsletter'"
        ),
    )
    .await;
}

/// Pending send rows of a journey step's campaign, by contact email.
async fn sent(store: &Store, campaign: &str) -> Vec<String> {
    sent_in(store, campaign, "pending").await
}

/// Send rows of a journey step's campaign in `state`, by contact email.
async fn sent_in(store: &Store, campaign: &str, state: &str) -> Vec<String> {
    strings(
        store,
        &format!(
            "SELECT s.email FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             WHERE c.slug = '{campaign}' AND s.state = '{state}' ORDER BY s.email"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_welcome_series_walks_confirmed_signups_through_a_week_on_a_stepped_clock() {
    for db in TestDb::all().await {
        let s = &db.store;
        let p = Project::new(&db, "");
        let out = p.import(
            "email,first_name\nana@example.org,Ana\nben@example.org,Ben\ncleo@example.org,Cleo\nold@example.org,Old\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let j = shipped("welcome-series.toml");
        let t0 = cartero::domain::time::now_millis();

        // A confirmation before the journey existed (beyond the few
        // minutes a tick reads back) does not enrol.
        confirmed_signup(s, "old@example.org", t0 - DAY).await;
        for who in ["ana", "ben", "cleo"] {
            confirmed_signup(s, &format!("{who}@example.org"), t0).await;
        }
        let r = tick(s, std::slice::from_ref(&j), t0 + 1000).await.unwrap();
        assert_eq!(r.enrolled, 3, "{r:?}");
        assert_eq!(r.sends, 3, "{r:?}");
        assert_eq!(
            sent(s, "welcome-series.welcome").await,
            ["ana@example.org", "ben@example.org", "cleo@example.org"]
        );
        let runs = strings(
            s,
            "SELECT r.trigger || ' ' || r.occurrence || ' ' || r.state FROM campaign_runs r \
             JOIN campaigns c ON c.id = r.campaign_id WHERE c.slug = 'welcome-series.welcome'",
        )
        .await;
        assert_eq!(runs, ["journey entry-1 sending"]);

        // The same instant again, and a day later: nothing is due.
        for at in [t0 + 1000, t0 + DAY] {
            let r = tick(s, std::slice::from_ref(&j), at).await.unwrap();
            assert_eq!(
                (r.enrolled, r.steps, r.sends),
                (0, 0, 0),
                "at +{}: {r:?}",
                at - t0
            );
        }

        // Cleo unsubscribes: her walk ends at the next tick.
        exec(
            s,
            "UPDATE contacts SET status = 'unsubscribed' WHERE email = 'cleo@example.org'",
        )
        .await;
        let r = tick(s, std::slice::from_ref(&j), t0 + 2 * DAY + 2000)
            .await
            .unwrap();
        assert_eq!(r.left.get("unsubscribed"), Some(&1), "{r:?}");
        assert_eq!(
            sent(s, "welcome-series.tips").await,
            ["ana@example.org", "ben@example.org"]
        );

        // Ana opens the tips (a human open, as `cartero serve` records it).
        let ana = contact_id(s, "ana@example.org").await;
        exec(
            s,
            &format!(
                "INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at) \
                 SELECT s.contact_id, s.campaign_id, s.id, 'open', {} FROM sends s \
                 JOIN campaigns c ON c.id = s.campaign_id WHERE c.slug = 'welcome-series.tips' AND s.contact_id = {ana}",
                t0 + 3 * DAY
            ),
        )
        .await;

        // A week: Ana gets the thank-you, Ben the nudge; both are tagged
        // and leave, completed.
        let r = tick(s, std::slice::from_ref(&j), t0 + 7 * DAY + 3000)
            .await
            .unwrap();
        assert_eq!(r.sends, 2, "{r:?}");
        assert_eq!(r.left.get("completed"), Some(&2), "{r:?}");
        assert_eq!(sent(s, "welcome-series.thanks").await, ["ana@example.org"]);
        assert_eq!(sent(s, "welcome-series.nudge").await, ["ben@example.org"]);
        assert_eq!(
            strings(
                s,
                "SELECT c.email FROM contact_tags t JOIN contacts c ON c.id = t.contact_id \
                        WHERE t.tag = 'welcomed' ORDER BY c.email"
            )
            .await,
            ["ana@example.org", "ben@example.org"]
        );
        let row = cartero::store::journeys::find(s, "welcome-series")
            .await
            .unwrap()
            .unwrap();
        let steps: Vec<String> = cartero::store::journeys::actions_of(s, row.id, ana)
            .await
            .unwrap()
            .into_iter()
            .map(|(step, action, detail)| format!("{step}:{action}:{}", detail.unwrap_or_default()))
            .collect();
        assert_eq!(
            steps,
            [
                "welcome:send:welcome-series.welcome",
                "step-2:wait:",
                "tips:send:welcome-series.tips",
                "step-4:wait:",
                "welcomed:tag:welcomed",
                "opened-tips:branch:yes → thanks",
                "thanks:send:welcome-series.thanks",
            ]
        );
        // Three mails each; none twice.
        assert_eq!(
            count(
                s,
                &format!("SELECT COUNT(*) FROM sends WHERE contact_id = {ana}")
            )
            .await,
            3
        );
        assert_eq!(count(s, "SELECT COUNT(*) FROM sends").await, 7);

        let st = cartero::schedule::journey::status(s, &j).await.unwrap();
        assert!(st.steps.iter().all(|(_, _, n)| *n == 0), "{st:?}");
        let left: Vec<(String, u64)> = st.left.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            left,
            [
                ("completed".to_string(), 2),
                ("unsubscribed".to_string(), 1)
            ]
        );

        // Later ticks change nothing: every walk is over, and nobody
        // enters twice.
        confirmed_signup_again(s, "ana@example.org", t0 + 8 * DAY).await;
        let r = tick(s, std::slice::from_ref(&j), t0 + 8 * DAY + 1000)
            .await
            .unwrap();
        assert_eq!((r.enrolled, r.steps, r.sends), (0, 0, 0), "{r:?}");
    }
}

/// A second confirmation by the same contact (another sign-up row).
async fn confirmed_signup_again(store: &Store, email: &str, at: i64) {
    let id = contact_id(store, email).await;
    exec(
        store,
        &format!(
            "INSERT INTO signups (token_hash, list_id, email, state, signed_up_at, confirmed_at, contact_id) \
             SELECT 'hash2-{email}', id, '{email}', 'confirmed', {at}, {at}, {id} FROM lists WHERE name = 'newsletter'"
        ),
    )
    .await;
}

/// A journey written for a test, with one template.
fn journey(p: &Project, slug: &str, body: &str) -> Journey {
    p.write(
        "templates/j.html",
        "<p>Hi {{ contact.first_name }}</p><a href=\"{{ unsubscribe_url }}\">u</a>",
    );
    let text = format!(
        "name = \"{slug}\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n{body}"
    );
    p.write(&format!("campaigns/{slug}.toml"), &text);
    Journey::load(
        &p.file(&format!("campaigns/{slug}.toml")),
        &p.file("templates"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_ticking_at_once_apply_each_step_once_and_a_restart_resumes() {
    for db in TestDb::all().await {
        let s = &db.store;
        let p = Project::new(&db, "");
        let mut csv = String::from("email,first_name\n");
        for i in 0..60 {
            csv.push_str(&format!("c{i:02}@example.org,C{i}\n"));
        }
        assert!(p.import(&csv).status.success());
        let j = journey(
            &p,
            "vips",
            "[journey]\n[journey.trigger]\non = \"segment\"\nfilter = 'email like \"c%\"'\n\n\
             [[step]]\nid = \"hello\"\nsend = { subject = \"Hi\", html = \"j.html\" }\n\
             [[step]]\ntag = \"greeted\"\n\
             [[step]]\nwait = \"1d\"\n\
             [[step]]\nid = \"again\"\nset = { greeted = true, tier = \"gold\" }\n",
        );
        let t0 = 1_800_000_000_000;
        let js = std::slice::from_ref(&j);
        let (a, b) = tokio::join!(tick_as(s, js, t0, "node-a"), tick_as(s, js, t0, "node-b"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.enrolled + b.enrolled, 60, "{a:?} {b:?}");
        assert_eq!(a.sends + b.sends, 60, "{a:?} {b:?}");
        assert_eq!(count(s, "SELECT COUNT(*) FROM sends").await, 60);
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM journey_actions WHERE action = 'send'"
            )
            .await,
            60,
            "each send step applied once"
        );
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM contact_tags WHERE tag = 'greeted'").await,
            60
        );

        // A restart: the journey read again from its file, a new process.
        let j2 = Journey::load(&j.path, &p.file("templates")).unwrap();
        let (a, b) = tokio::join!(
            tick_as(s, std::slice::from_ref(&j2), t0 + DAY, "node-c"),
            tick_as(s, std::slice::from_ref(&j2), t0 + DAY, "node-d")
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            a.steps + b.steps,
            120,
            "the wait and the set, once each: {a:?} {b:?}"
        );
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM journey_actions WHERE action = 'set'"
            )
            .await,
            60
        );
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM sends").await,
            60,
            "no second mail"
        );
        // The attribute change is in the contact change log, with the step
        // as its origin.
        let origins = strings(
            s,
            "SELECT DISTINCT origin FROM contact_changes WHERE field = 'attributes'",
        )
        .await;
        assert_eq!(origins, ["journey vips: step again"]);
        let c = cartero::store::contacts::find_by_id(s, contact_id(s, "c07@example.org").await)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.attributes["tier"], "gold", "{:?}", c.attributes);
        assert_eq!(c.attributes["greeted"], true);
        assert_eq!(
            count(s, "SELECT COUNT(*) FROM journey_enrolments WHERE state = 'left' AND left_reason = 'completed'").await,
            60
        );
        // A segment trigger enrols once: the contacts still match, and
        // stay out.
        let r = tick(s, std::slice::from_ref(&j2), t0 + 2 * DAY)
            .await
            .unwrap();
        assert_eq!(r.enrolled, 0, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn triggers_exits_and_reentry() {
    for db in TestDb::all().await {
        let s = &db.store;
        let p = Project::new(&db, "");
        assert!(
            p.import("email,first_name,birthday,renewal\nana@example.org,Ana,1990-03-14,2027-01-10\nben@example.org,Ben,1985-03-21,\n")
                .status
                .success()
        );
        let steps = "[[step]]\nsend = { subject = \"Hi\", html = \"j.html\" }\n[[step]]\nwait = \"3d\"\n\
                     [[step]]\nbranch = { if = \"purchased\", then = \"bought\", else = \"end\" }\n\
                     [[step]]\nid = \"bought\"\ntag = \"buyer\"\n";
        let birthday = journey(
            &p,
            "birthday",
            &format!(
                "[journey]\nreentry = true\n[journey.trigger]\non = \"date\"\nattribute = \"birthday\"\n\
                 offset = \"-7d\"\nyearly = true\n\n{steps}"
            ),
        );
        let purchase = journey(
            &p,
            "after-purchase",
            &format!(
                "[journey]\nreentry = true\nexit = [\"converted\"]\nconversion = \"review\"\n\
                 [journey.trigger]\non = \"event\"\nevent = \"purchase\"\n\n{steps}"
            ),
        );
        let joined = journey(
            &p,
            "joined",
            &format!("[journey]\n[journey.trigger]\non = \"list_joined\"\n\n{steps}"),
        );
        let silent = journey(
            &p,
            "silent",
            &format!("[journey]\n[journey.trigger]\non = \"no_engagement\"\ndays = 90\n\n{steps}"),
        );
        let all = [birthday, purchase, joined, silent];
        // 2027-03-07T08:00Z (day 20884): Ana's birthday is a week away.
        let t0: i64 = 20_884 * DAY + 8 * 3_600_000;
        let r = tick(s, &all, t0).await.unwrap();
        // Only Ana: the joins were before the journey existed, nobody
        // bought, nobody was ever mailed.
        assert_eq!(r.enrolled, 1, "{r:?}");
        assert_eq!(sent(s, "birthday.step-1").await, ["ana@example.org"]);
        // The same day again: the date is read once a day.
        assert_eq!(tick(s, &all, t0 + 3_600_000).await.unwrap().enrolled, 0);

        // A week later it is Ben's turn (his birthday is on the 21st).
        let r = tick(s, &all, t0 + 7 * DAY).await.unwrap();
        assert_eq!(r.enrolled, 1, "{r:?}");
        assert_eq!(
            sent(s, "birthday.step-1").await,
            ["ana@example.org", "ben@example.org"]
        );

        // Purchases through the events API's table: Ben buys twice; with
        // re-entry he enters once per walk, not once per purchase.
        let ben = contact_id(s, "ben@example.org").await;
        exec(s, "INSERT INTO api_keys (name, prefix, secret_hash, created_at) VALUES ('shop', 'pfx', 'h', 0)").await;
        let buy = |order: &str, kind: &str, at: i64| {
            format!(
                "INSERT INTO conversions (order_id, kind, contact_id, value_minor, currency, occurred_at, received_at, api_key_id, via) \
                 SELECT '{order}', '{kind}', {ben}, 1000, 'EUR', {at}, {at}, id, 'api' FROM api_keys WHERE name = 'shop'"
            )
        };
        let t1 = t0 + 8 * DAY;
        exec(s, &buy("o-1", "purchase", t1 - 1000)).await;
        exec(s, &buy("o-2", "purchase", t1 - 500)).await;
        let r = tick(s, &all, t1).await.unwrap();
        assert_eq!(r.enrolled, 1, "{r:?}");
        assert_eq!(sent(s, "after-purchase.step-1").await, ["ben@example.org"]);
        // A review (the journey's conversion) ends his walk: converted.
        exec(s, &buy("r-1", "review", t1 + 1000)).await;
        let r = tick(s, &all, t1 + 2000).await.unwrap();
        assert_eq!(r.left.get("converted"), Some(&1), "{r:?}");
        // A purchase after he left: a second walk, with its own run.
        exec(s, &buy("o-3", "purchase", t1 + 3000)).await;
        let r = tick(s, &all, t1 + 4000).await.unwrap();
        assert_eq!(r.enrolled, 1, "{r:?}");
        let entries = strings(
            s,
            "SELECT r.occurrence FROM campaign_runs r JOIN campaigns c ON c.id = r.campaign_id \
             WHERE c.slug = 'after-purchase.step-1' ORDER BY r.occurrence",
        )
        .await;
        assert_eq!(entries, ["entry-1", "entry-2"]);

        // The birthday branch: Ben made a purchase since he entered (on
        // the 14th); Ana did not.
        let r = tick(s, &all, t0 + 10 * DAY + 1000).await.unwrap();
        assert_eq!(r.left.get("completed"), Some(&1), "{r:?}");
        assert_eq!(
            strings(s, "SELECT c.email FROM contact_tags t JOIN contacts c ON c.id = t.contact_id WHERE t.tag = 'buyer'").await,
            ["ben@example.org"]
        );

        // Cleo, mailed once, silent for 200 days.
        assert!(
            p.import("email,first_name\ncleo@example.org,Cleo\n")
                .status
                .success()
        );
        let now = t0 + 11 * DAY;
        let cleo = contact_id(s, "cleo@example.org").await;
        exec(
            s,
            &format!(
                "UPDATE contacts SET last_sent_at = {t0}, last_open_at = {}, created_at = {} WHERE id = {cleo}",
                t0 - 200 * DAY,
                t0 - 400 * DAY
            ),
        )
        .await;
        let r = tick(s, &all[3..4], now + 2000).await.unwrap();
        assert_eq!(r.enrolled, 1, "Cleo, silent for 90 days after mail: {r:?}");
        assert_eq!(sent(s, "silent.step-1").await, ["cleo@example.org"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_join_after_the_journey_started_enrols_and_a_removed_step_ends_the_walk() {
    for db in TestDb::all().await {
        let s = &db.store;
        let p = Project::new(&db, "");
        let body = "[journey]\n[journey.trigger]\non = \"list_joined\"\n\n\
                    [[step]]\nid = \"first\"\nwait = \"1d\"\n\
                    [[step]]\nid = \"second\"\nsend = { subject = \"Hi\", html = \"j.html\" }\n";
        let j = journey(&p, "joined", body);
        let t0 = cartero::domain::time::now_millis();
        tick(s, std::slice::from_ref(&j), t0).await.unwrap();
        assert!(
            p.import("email,first_name\nana@example.org,Ana\n")
                .status
                .success()
        );
        let r = tick(
            s,
            std::slice::from_ref(&j),
            cartero::domain::time::now_millis() + 1000,
        )
        .await
        .unwrap();
        assert_eq!(r.enrolled, 1, "{r:?}");
        let st = cartero::schedule::journey::status(s, &j).await.unwrap();
        assert_eq!(st.steps[0], ("first".to_string(), "wait".to_string(), 1));

        // The file is edited while Ana waits: her step is gone.
        let edited = journey(
            &p,
            "joined",
            "[journey]\n[journey.trigger]\non = \"list_joined\"\n\n\
             [[step]]\nid = \"other\"\nsend = { subject = \"Hi\", html = \"j.html\" }\n",
        );
        let r = tick(s, std::slice::from_ref(&edited), t0 + 2 * DAY)
            .await
            .unwrap();
        assert_eq!(r.left.get("step_removed"), Some(&1), "{r:?}");
        assert_eq!(count(s, "SELECT COUNT(*) FROM sends").await, 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shipped_journey_passes_journey_check() {
    let db = TestDb::sqlite().await;
    let templates = repo_dir().join("templates");
    let p = Project::new(
        &db,
        &format!("[project]\ntemplates_dir = \"{}\"\n", templates.display()),
    );
    // The shipped project: its campaigns and templates.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo_dir().join("campaigns")).unwrap() {
        let f = entry.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if f.extension().is_some_and(|x| x == "toml")
            && cartero::campaign::journey::is_journey(&text)
        {
            files.push(f);
        }
    }
    assert!(!files.is_empty(), "no journey in campaigns/");
    let mut args = vec!["journey".to_string(), "check".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = p.ok(&args);
    for f in &files {
        assert!(out.contains(&format!("{}: ok", f.display())), "{out}");
    }
    assert!(
        out.contains(
            "journey \"welcome-series\": on signup_confirmed \"newsletter\", 9 steps, 4 of them send a message"
        ),
        "{out}"
    );

    // A mistake: exit 1, at its file:line:col.
    let bad = p.file("bad.toml");
    let text = std::fs::read_to_string(repo_dir().join("campaigns/welcome-series.toml"))
        .unwrap()
        .replace("wait = \"2d\"", "wait = \"two days\"");
    std::fs::write(&bad, &text).unwrap();
    let line = text.lines().position(|l| l.contains("two days")).unwrap() + 1;
    let o = p.run(&["journey", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(&format!("bad.toml:{line}:8:")),
        "{}",
        stderr(&o)
    );
    // A journey is refused by `campaign check`, with the way to check it.
    let o = p.run(&["campaign", "check", files[0].to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("journey check"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn journey_status_prints_steps_and_exits_as_a_table_csv_and_json() {
    for db in TestDb::all().await {
        let s = &db.store;
        let p = Project::new(&db, "");
        assert!(
            p.import("email,first_name\nana@example.org,Ana\nben@example.org,Ben\n")
                .status
                .success()
        );
        let j = journey(
            &p,
            "hello",
            "[journey]\n[journey.trigger]\non = \"segment\"\nfilter = 'email like \"%@example.org\"'\n\n\
             [[step]]\nid = \"hello\"\nsend = { subject = \"Hi\", html = \"j.html\" }\n\
             [[step]]\nid = \"pause\"\nwait = \"2d\"\n\
             [[step]]\nid = \"bye\"\nsend = { subject = \"Bye\", html = \"j.html\" }\n",
        );
        let t0 = cartero::domain::time::now_millis();
        tick(s, std::slice::from_ref(&j), t0).await.unwrap();
        exec(
            s,
            "UPDATE contacts SET status = 'bounced' WHERE email = 'ben@example.org'",
        )
        .await;
        tick(s, std::slice::from_ref(&j), t0 + 1000).await.unwrap();

        let json: serde_json::Value =
            serde_json::from_str(&p.ok(&["journey", "status", "hello", "--format", "json"]))
                .unwrap();
        let row = |w: &str, n: &str| {
            json.as_array()
                .unwrap()
                .iter()
                .find(|r| r["where"] == w && r["name"] == n)
                .unwrap_or_else(|| panic!("{w} {n}: {json}"))["contacts"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(row("step", "pause"), 1);
        assert_eq!(row("step", "bye"), 0);
        assert_eq!(row("left", "suppressed"), 1);
        assert_eq!(row("left", "completed"), 0);
        let csv = p.ok(&[
            "journey",
            "status",
            "campaigns/hello.toml",
            "--format",
            "csv",
        ]);
        assert!(csv.starts_with("where,name,what,contacts\n"), "{csv}");
        assert!(csv.contains("step,pause,wait,1\n"), "{csv}");
        let table = p.ok(&["journey", "status", "hello"]);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("left") && l.contains("suppressed") && l.ends_with('1')),
            "{table}"
        );
        let o = p.run(&["journey", "status", "nope"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
    }
}

/// A project with the shipped welcome series, a `cartero serve` on it
/// (the same app the binary runs), and Alice signed up and confirmed over
/// HTTP. `schedule` is the project's `[schedule]` section.
async fn alice_confirmed_through_serve(
    db: &TestDb,
    schedule: &str,
) -> (Project, common::serve::Served) {
    use common::serve::{Served, client, wait_for_files};
    const LEDGER_KEY: &str = "journeys-test-ledger-key-0123456789abcdef";
    let keys = cartero::domain::ledger_key::LedgerKeys::new(LEDGER_KEY, &[]).unwrap();
    cartero::store::consent::install_keys(Some(keys));
    let p = Project::new(
        db,
        &format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\n\n[compliance]\nledger_key = \"{LEDGER_KEY}\"\n\n\
                 [signup]\nfrom = \"Shop <news@shop.example>\"\n\n\
                 [lists.newsletter]\nconsent_text = \"Yes, send me the newsletter.\"\n\n{schedule}"
        ),
    );
    p.write(
        "campaigns/welcome-series.toml",
        &std::fs::read_to_string(repo_dir().join("campaigns/welcome-series.toml")).unwrap(),
    );
    for f in std::fs::read_dir(repo_dir().join("templates/welcome-series")).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        p.write(
            &format!("templates/welcome-series/{name}"),
            &std::fs::read_to_string(&f).unwrap(),
        );
    }

    let s = Served::start(&p, db).await;
    let http = client();
    let r = http
        .post(format!("{}/subscribe", s.base))
        .form(&[
            ("list", "newsletter"),
            ("email", "alice@example.org"),
            ("name", "Alice"),
            ("website", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let files = wait_for_files(&p.file("outbox/signup"), 1).await;
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap();
    let body = msg.body_text(0).unwrap().into_owned();
    let start = body
        .find("https://news.shop.example/confirm/")
        .expect("a confirmation link");
    let link = body[start..].split_whitespace().next().unwrap().to_string();
    let url = s.url(&link);
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    let i = page.find("name=\"form\" value=\"").expect("a form token") + 19;
    let token = &page[i..i + page[i..].find('"').unwrap()];
    let r = http
        .post(&url)
        .form(&[("form", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    (p, s)
}

/// The welcome series' trigger through the real path: a sign-up and its
/// confirmation over HTTP to `cartero serve`, then a tick of the journeys
/// read from the project's campaigns folder (the shipped example copied
/// in), and `cartero journey status` and `journey tick` on the same
/// database. Serve's own scheduler is off here: the tick is the test's.
#[tokio::test(flavor = "multi_thread")]
async fn a_signup_confirmed_through_serve_enters_the_shipped_welcome_series() {
    for db in TestDb::all().await {
        let (p, s) = alice_confirmed_through_serve(&db, "[schedule]\nenabled = false\n").await;
        s.stop().await;

        let journeys: Vec<Journey> =
            cartero::campaign::journey::load_dir(&p.file("campaigns"), &p.file("templates"))
                .unwrap()
                .into_iter()
                .map(|j| j.unwrap())
                .collect();
        assert_eq!(journeys.len(), 1, "c.toml is a campaign, not a journey");
        let now = cartero::domain::time::now_millis();
        let r = tick(&db.store, &journeys, now + 1000).await.unwrap();
        assert_eq!((r.enrolled, r.sends), (1, 1), "{r:?}");
        assert_eq!(
            sent(&db.store, "welcome-series.welcome").await,
            ["alice@example.org"]
        );

        let json: serde_json::Value = serde_json::from_str(&p.ok(&[
            "journey",
            "status",
            "welcome-series",
            "--format",
            "json",
        ]))
        .unwrap();
        let waiting = json
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "step-2")
            .unwrap();
        assert_eq!(waiting["contacts"], 1, "{json}");
        // A tick by hand: nothing more is due, nobody enters twice.
        let json: serde_json::Value =
            serde_json::from_str(&p.ok(&["journey", "tick", "--format", "json"])).unwrap();
        assert_eq!(json["journeys"], 1, "{json}");
        assert_eq!(json["enrolled"], 0, "{json}");
        assert_eq!(json["sends"], 0, "{json}");
    }
}

/// The same sign-up with serve's scheduler on: serve itself enrols Alice
/// and delivers the series' first mail (the outbox), and the next step
/// waits.
#[tokio::test(flavor = "multi_thread")]
async fn serve_moves_a_confirmed_signup_through_the_welcome_series_and_delivers_its_first_mail() {
    for db in TestDb::all().await {
        let (p, s) = alice_confirmed_through_serve(&db, "[schedule]\ninterval_secs = 1\n").await;
        let files =
            common::serve::wait_for_files(&p.file("outbox/welcome-series.welcome"), 1).await;
        assert_eq!(
            files.len(),
            1,
            "serve delivered the first mail of the series"
        );
        let raw = std::fs::read_to_string(&files[0]).unwrap();
        assert!(raw.contains("alice@example.org"), "{raw}");
        // Delivered, recorded as accepted; the contact waits at step 2.
        let accepted = sent_in(&db.store, "welcome-series.welcome", "accepted").await;
        assert_eq!(accepted, ["alice@example.org"]);
        s.stop().await;
        let json: serde_json::Value = serde_json::from_str(&p.ok(&[
            "journey",
            "status",
            "welcome-series",
            "--format",
            "json",
        ]))
        .unwrap();
        let waiting = json
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "step-2")
            .unwrap();
        assert_eq!(waiting["contacts"], 1, "{json}");
    }
}
