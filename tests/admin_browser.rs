//! The admin pages in headless Chromium (SQLite; the HTTP behaviour on
//! both backends is tests/admin.rs): signing in through the form sets a
//! cookie the browser keeps and sends, the reports list leads to the
//! campaign's report, the report's inline style applies under the hashed
//! CSP (a wrong hash would leave the page unstyled), and a screenshot of
//! /admin/reports and of the campaign report is saved under
//! target/test-artefacts/.

mod common;

use common::browser::{Browser, DESKTOP};
use common::db::TestDb;
use common::project::{Project, stderr};
use common::serve::Served;

#[tokio::test(flavor = "multi_thread")]
async fn an_officer_signs_in_and_reads_a_campaign_report_in_chromium() {
    let db = TestDb::sqlite().await;
    let p = Project::new(&db, "[serve]\nlisten = \"127.0.0.1:0\"\n");
    let out = p.import("email,first_name,city\nana@example.com,Ana,Madrid\n");
    assert!(out.status.success(), "{}", stderr(&out));
    p.ok(&["campaign", "send", "campaigns/c.toml"]);
    let created = p.ok(&["api-key", "create", "--role", "admin-read", "dpo"]);
    let key = created
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_string();
    let s = Served::start(&p, &db).await;
    let Some(b) = Browser::start(DESKTOP, "en").await else {
        return;
    };

    // A browser without a session is sent to the login page.
    b.goto(&format!("{}/admin/reports", s.base)).await;
    assert!(
        b.current_url().await.ends_with("/admin/login"),
        "{}",
        b.current_url().await
    );
    b.type_into("#token", &key).await;
    b.submits(b.click("button[type=submit]")).await;
    assert!(
        b.current_url().await.ends_with("/admin/reports"),
        "{}",
        b.current_url().await
    );
    assert_eq!(b.text("h1").await, "Reports");
    // The stylesheet applies (it is the only style source of the page).
    let bg = b
        .eval("return getComputedStyle(document.querySelector('header')).backgroundColor")
        .await;
    assert_eq!(bg, "rgb(244, 244, 244)", "admin.css applied");
    let shot = b.screenshot("admin-reports").await;
    eprintln!("screenshot: {}", shot.display());

    b.submits(b.click("a[href='/admin/reports/campaigns/c']"))
        .await;
    assert_eq!(b.text("h1").await, "Campaign Spring");
    assert_eq!(b.count("svg").await, 2, "the curve and the funnel");
    // The report's own <style> applies: its hash is in the CSP.
    let th = b
        .eval("return getComputedStyle(document.querySelector('th')).backgroundColor")
        .await;
    assert_eq!(
        th, "rgb(244, 244, 244)",
        "the report's inline style applied"
    );
    let shot = b.screenshot("admin-campaign-report").await;
    let size = std::fs::metadata(&shot).unwrap().len();
    assert!(size > 10_000, "the screenshot looks empty ({size} bytes)");
    eprintln!("screenshot: {}", shot.display());
    b.quit().await;
    s.stop().await;
}
