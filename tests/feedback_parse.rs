//! `cartero feedback parse` and `feedback::bounce::classify` against the
//! hand-written fixtures in tests/fixtures/bounces/ (expected results in
//! expected.jsonl beside them), over files, a Maildir and an mbox, and with
//! every line-end convention; plus property tests that classification never
//! panics on arbitrary or mutated input.

use std::path::{Path, PathBuf};
use std::process::Command;

use cartero::feedback::bounce::{Kind, classify};
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces")
}

fn expected() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.jsonl")).expect("expected.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON"))
        .collect()
}

fn fixture_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    v.sort();
    v
}

fn parse_json(args: &[&Path]) -> (bool, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .args(["feedback", "parse", "--format", "json"])
        .args(args)
        // No config file exists here: parse must not need one.
        .env("CARTERO_CONFIG", "/nonexistent/cartero.toml")
        .output()
        .expect("run cartero");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let rows = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    (
        out.status.success(),
        rows,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key(v: &serde_json::Value) -> (String, String, String, String, String) {
    let s = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".into(),
        other => other.to_string(),
    };
    let file = Path::new(&s("file"))
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    (file, s("recipient"), s("kind"), s("reason"), s("status"))
}

#[test]
fn parse_files_gives_the_expected_records() {
    let files = fixture_files();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, rows, err) = parse_json(&refs);
    assert!(ok, "cartero failed: {err}");
    let mut got: Vec<_> = rows.iter().map(key).collect();
    let mut want: Vec<_> = expected().iter().map(key).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // `file` is the path as given.
    assert!(
        rows.iter()
            .all(|r| r["file"].as_str().is_some_and(|f| f.starts_with('/')))
    );
}

#[test]
fn parse_reads_a_maildir_and_an_mbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("mkdir");
    }
    let mut mbox = Vec::new();
    for (i, f) in fixture_files().iter().enumerate() {
        let raw = std::fs::read(f).expect("fixture");
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        std::fs::write(maildir.join(sub).join(format!("{i}.host:2,S")), &raw).expect("write");
        mbox.extend_from_slice(b"From MAILER-DAEMON Mon Nov 10 10:00:00 2025\n");
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b"From ") {
                mbox.push(b'>');
            }
            mbox.extend_from_slice(line);
        }
        mbox.extend_from_slice(b"\n");
    }
    let mbox_path = dir.path().join("bounces.mbox");
    std::fs::write(&mbox_path, &mbox).expect("write mbox");

    let summary = |rows: &[serde_json::Value]| {
        let mut v: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                let k = key(r);
                (k.1, k.2)
            })
            .collect();
        v.sort();
        v
    };
    let mut want: Vec<(String, String)> = expected()
        .iter()
        .map(|r| {
            let k = key(r);
            (k.1, k.2)
        })
        .collect();
    want.sort();

    let (ok, rows, err) = parse_json(&[&maildir]);
    assert!(ok, "{err}");
    assert_eq!(summary(&rows), want);

    let (ok, rows, err) = parse_json(&[&mbox_path]);
    assert!(ok, "{err}");
    assert_eq!(summary(&rows), want);
    assert!(rows.iter().all(|r| {
        r["file"]
            .as_str()
            .is_some_and(|f| f.contains("bounces.mbox#"))
    }));
}

#[test]
fn unreadable_path_fails_with_a_message() {
    let (ok, _, err) = parse_json(&[Path::new("/nonexistent/bounce.eml")]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/bounce.eml"), "stderr: {err}");
}

#[test]
fn table_format_names_kind_and_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .args(["feedback", "parse"])
        .arg(fixtures().join("postfix-userunknown.eml"))
        .output()
        .expect("run cartero");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .is_some_and(|h| h.contains("RECIPIENT") && h.contains("REASON"))
    );
    assert!(
        text.contains("nobody@example.org")
            && text.contains("hard")
            && text.contains("userunknown")
    );
}

#[test]
fn crlf_and_cr_copies_classify_the_same() {
    for f in fixture_files() {
        let lf = std::fs::read(&f).expect("fixture");
        let text = String::from_utf8_lossy(&lf).into_owned();
        let crlf = text.replace('\n', "\r\n");
        let cr = text.replace('\n', "\r");
        let base = classify(&lf);
        assert_eq!(
            base,
            classify(crlf.as_bytes()),
            "CRLF differs for {}",
            f.display()
        );
        assert_eq!(
            base,
            classify(cr.as_bytes()),
            "CR differs for {}",
            f.display()
        );
    }
}

#[test]
fn library_reports_send_identifiers() {
    let raw = std::fs::read(fixtures().join("postfix-userunknown.eml")).expect("fixture");
    let c = classify(&raw);
    assert_eq!(c.verp_token.as_deref(), Some("c7-s1042"));
    assert_eq!(
        c.original_message_id.as_deref(),
        Some("c7.s1042@news.example.com")
    );
    assert!(
        c.original_headers
            .iter()
            .any(|(n, v)| n == "X-Cartero-Send" && v == "c7-s1042")
    );
    assert_eq!(c.records[0].kind, Kind::Hard);

    let arf = std::fs::read(fixtures().join("arf-abuse.eml")).expect("fixture");
    let c = classify(&arf);
    assert_eq!(c.records[0].feedback_type.as_deref(), Some("abuse"));
    assert!(
        c.original_headers
            .iter()
            .any(|(n, v)| n == "X-Cartero-Send" && v == "c7-s3")
    );
}

fn fixture_bytes() -> Vec<Vec<u8>> {
    fixture_files()
        .iter()
        .map(|f| std::fs::read(f).expect("fixture"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn classify_never_panics_on_bytes(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let c = classify(&raw);
        prop_assert!(!c.records.is_empty());
    }

    #[test]
    fn classify_never_panics_on_text(text in "\\PC{0,2000}") {
        let c = classify(text.as_bytes());
        prop_assert!(!c.records.is_empty());
    }

    #[test]
    fn classify_never_panics_on_mutated_reports(
        which in 0usize..64,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..40),
    ) {
        let all = fixture_bytes();
        let mut raw = all[which % all.len()].clone();
        for (at, byte, op) in edits {
            if raw.is_empty() {
                raw.push(byte);
                continue;
            }
            let i = at.index(raw.len());
            match op {
                0 => raw[i] = byte,
                1 => raw.insert(i, byte),
                _ => { raw.truncate(i); }
            }
        }
        let c = classify(&raw);
        prop_assert!(!c.records.is_empty());
    }
}
