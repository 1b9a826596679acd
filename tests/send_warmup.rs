//! The warm-up plan (`[warmup]`): each day of the plan lets at most its cap
//! of messages out across campaigns; what a claim could not send is given
//! back; the next day has its own cap; after the plan there is none.
//! Through the real binary, on both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};

fn day(offset_days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let d = chrono::DateTime::from_timestamp(now + offset_days * 86_400, 0).unwrap();
    d.format("%Y-%m-%d").to_string()
}

fn config(p: &Project, start: &str) {
    let base = std::fs::read_to_string(p.file("cartero.toml")).unwrap();
    let base = base.split("[warmup]").next().unwrap().to_string();
    p.write(
        "cartero.toml",
        &format!("{base}[warmup]\nstart = \"{start}\"\ndaily = [3, 5]\ntimezone = \"UTC\"\n"),
    );
}

fn send(p: &Project, file: &str) -> serde_json::Value {
    p.send_tally(file, &["--no-wait"])
}

#[tokio::test(flavor = "multi_thread")]
async fn each_day_of_the_plan_caps_every_campaign_together_and_the_plan_ends() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import(
            "email,first_name,city\na@example.org,A,X\nb@example.org,B,X\nc@example.org,C,X\n\
             d@example.org,D,X\ne@example.org,E,X\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        p.write(
            "campaigns/d.toml",
            "name = \"Other\"\nsubject = \"Hi\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n\
             [template]\nhtml = \"c.html\"\n",
        );
        // Day 1 of the plan: 3 messages in all.
        config(&p, &day(0));
        let t = send(&p, "campaigns/c.toml");
        assert_eq!(
            (t["accepted"].as_u64(), t["pending"].as_u64()),
            (Some(3), Some(2)),
            "{t}"
        );
        let t = send(&p, "campaigns/d.toml");
        assert_eq!(t["accepted"], 0, "the day is spent for every campaign: {t}");
        let used: i64 = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar("SELECT used FROM warmup_days").fetch_one(pool).await.unwrap()
        });
        assert_eq!(used, 3, "reservations not sent were given back");

        // Day 2 (the plan started yesterday): 5 in all, 3 already used today.
        config(&p, &day(-1));
        let t = send(&p, "campaigns/c.toml");
        assert_eq!(t["accepted"], 5, "{t}");
        let t = send(&p, "campaigns/d.toml");
        assert_eq!(t["accepted"], 0, "{t}");

        // The plan is over: no cap.
        config(&p, &day(-2));
        let t = send(&p, "campaigns/d.toml");
        assert_eq!(t["accepted"], 5, "{t}");
    }
}

#[test]
fn a_broken_plan_stops_the_send_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("campaigns")).unwrap();
    std::fs::create_dir_all(p.join("templates")).unwrap();
    std::fs::write(p.join("templates/c.html"), "<p>hi</p>").unwrap();
    std::fs::write(
        p.join("cartero.toml"),
        "[warmup]\nstart = \"2026-12-01\"\ndaily = [10, 0]\n",
    )
    .unwrap();
    std::fs::write(
        p.join("campaigns/c.toml"),
        "name = \"C\"\nsubject = \"Hi\"\nfrom = \"a@b.example\"\nlist = \"n\"\n[template]\nhtml = \"c.html\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(p)
        .args([
            "--database-url",
            &format!("sqlite://{}", p.join("x.db").display()),
        ])
        .args(["campaign", "send", "campaigns/c.toml"])
        .env_remove("CARTERO_CONFIG")
        .env_remove("CARTERO_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[warmup] daily[1] is 0"), "{err}");
}
