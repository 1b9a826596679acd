//! The HTML campaign report in a real browser: headless Chromium renders
//! the file cartero wrote and saves a screenshot under
//! target/test-artefacts/ for a person to look at. Without Chromium the
//! test fails (under CI=true always; elsewhere unless
//! CARTERO_SKIP_SERVER_TESTS=1), like the other server tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::db::TestDb;
use common::project::{Project, stderr};

const CHROMIUM: &str = "/usr/bin/chromium";

async fn exec(store: &cartero::store::Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

fn chromium_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let skip = std::env::var("CARTERO_SKIP_SERVER_TESTS").is_ok_and(|v| v == "1");
    if ci || !skip {
        panic!(
            "{CHROMIUM} is needed by this test (Debian package chromium); outside CI set CARTERO_SKIP_SERVER_TESTS=1 to skip"
        );
    }
    eprintln!("SKIPPED: {CHROMIUM} missing; CARTERO_SKIP_SERVER_TESTS=1");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_report_renders_in_chromium_and_a_screenshot_is_saved() {
    if !chromium_available() {
        return;
    }
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import("email\nana@gmail.com\nbo@outlook.com\ncy@example.org\n");
        assert!(out.status.success(), "{}", stderr(&out));
        let s = &db.store;
        exec(s, "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at, started_at) \
                 VALUES ('spring', 'Spring <sale>', 'c.toml', 'x', 'newsletter', 1, 1767225600000)").await;
        exec(s, "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at) VALUES \
                 (1, 1, 'a', 'accepted', 1767225600000, 1767225600000), (1, 2, 'b', 'accepted', 1767225600000, 1767225600000), \
                 (1, 3, 'c', 'accepted', 1767225600000, 1767225600000)").await;
        let mut rows = Vec::new();
        for h in 0..24i64 {
            for send in 1..=3i64 {
                if (h + send) % 3 == 0 {
                    rows.push(format!(
                        "({send}, 1, {send}, 'open', {}, '{{\"class\":\"human\"}}')",
                        1767225600000 + h * 3_600_000
                    ));
                }
                if (h + send) % 5 == 0 {
                    rows.push(format!("({send}, 1, {send}, 'click', {}, '{{\"class\":\"human\",\"url\":\"https://shop.example/spring\"}}')", 1767225600000 + h * 3_600_000));
                }
            }
        }
        exec(s, &format!("INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at, data) VALUES {}", rows.join(", "))).await;
        let html = p.ok(&["report", "campaign", "spring", "--format", "html"]);
        let page = p.file("report.html");
        std::fs::write(&page, &html).unwrap();

        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
        std::fs::create_dir_all(&dir).unwrap();
        let shot = dir.join(format!("report-campaign-{:?}.png", db.backend()).to_lowercase());
        let _ = std::fs::remove_file(&shot);
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--screenshot={}", shot.display()),
                "--window-size=1280,2000",
                &format!("file://{}", page.display()),
            ])
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read(&shot)
            .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        // A blank 1280x2000 page compresses to a few KB; charts and tables do not.
        assert!(
            png.len() > 20_000,
            "the screenshot looks empty ({} bytes)",
            png.len()
        );
        eprintln!("screenshot: {}", shot.display());
    }
}
