//! `cartero init` makes a project the README's main job runs in; outside a
//! project cartero refuses to invent a database and says how to start one.

use std::path::Path;
use std::process::{Command, Output};

fn cartero(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(dir)
        .args(args)
        .env_remove("CARTERO_CONFIG")
        .env_remove("CARTERO_DATABASE_URL")
        .env_remove("CARTERO_SENDER_SECRET")
        .output()
        .expect("run cartero")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn secret_of(project: &Path) -> String {
    let toml = std::fs::read_to_string(project.join("cartero.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("secret = \""))
        .map(|s| s.trim_end_matches('"').to_string())
        .expect("a secret line")
}

#[test]
fn init_makes_a_project_where_the_readme_main_job_runs() {
    let root = tempfile::tempdir().unwrap();
    let out = cartero(root.path(), &["init", "shop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shop = root.path().join("shop");
    for f in [
        "cartero.toml",
        ".gitignore",
        "contacts.csv",
        "campaigns/segments.toml",
        "campaigns/welcome.toml",
        "templates/welcome.html",
        "templates/welcome.txt",
    ] {
        assert!(shop.join(f).is_file(), "{f}");
    }
    let ignore = std::fs::read_to_string(shop.join(".gitignore")).unwrap();
    assert!(ignore.contains("/cartero.db") && ignore.contains("/outbox/"));

    // A second project gets a secret of its own.
    assert!(cartero(root.path(), &["init", "other"]).status.success());
    let secret = secret_of(&shop);
    assert!(secret.len() >= 32, "{secret}");
    assert_ne!(secret, secret_of(&root.path().join("other")));

    // The README's main job, inside the new project.
    let out = cartero(
        &shop,
        &[
            "contacts",
            "import",
            "contacts.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "example signup form",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "imported with one rejected row: {}",
        text(&out.stderr)
    );
    let out = cartero(&shop, &["campaign", "send", "campaigns/welcome.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let messages = std::fs::read_dir(shop.join("outbox/welcome"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count();
    assert_eq!(messages, 2, "the vip segment's two messages");

    // From a folder inside the project, cartero finds its cartero.toml.
    let out = cartero(&shop.join("templates"), &["segment", "count", "vip"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains('2'), "{}", text(&out.stdout));

    // A numeric password from the environment is a password.
    let out = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(&shop)
        .args(["campaign", "check", "campaigns/welcome.toml"])
        .env("CARTERO_SMTP_USERNAME", "news")
        .env("CARTERO_SMTP_PASSWORD", "12345678")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // init never overwrites.
    let before = std::fs::read_to_string(shop.join("cartero.toml")).unwrap();
    let out = cartero(root.path(), &["init", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cartero.toml")
            && text(&out.stderr).contains("never overwrites"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(shop.join("cartero.toml")).unwrap(),
        before
    );
}

#[test]
fn outside_a_project_cartero_refuses_and_says_how_to_start() {
    let empty = tempfile::tempdir().unwrap();
    let out = cartero(empty.path(), &["contacts", "show", "ana@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no cartero.toml") && err.contains("cartero init"),
        "{err}"
    );
    assert!(
        !empty.path().join("cartero.db").exists(),
        "no database was created"
    );
    // Commands that need no project still work.
    let out = cartero(empty.path(), &["address", "check", "ana@example.com"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // An explicit database is a choice: allowed.
    let url = format!("sqlite://{}", empty.path().join("chosen.db").display());
    let out = cartero(
        empty.path(),
        &[
            "--database-url",
            &url,
            "segment",
            "count",
            "--filter",
            "true",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}
