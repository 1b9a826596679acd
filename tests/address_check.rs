//! `cartero address check` as a user runs it: the real binary, arguments and
//! stdin, JSON and table output, exit codes, and the operator's disposable
//! list from cartero.toml.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::servers::{Dns, Zone};

fn cartero(dir: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .current_dir(dir)
        .env_remove("CARTERO_CONFIG")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cartero");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("cartero output")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 output")
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[test]
fn json_report_for_valid_and_invalid_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cartero(
        dir.path(),
        &[
            "address",
            "check",
            "--format",
            "json",
            "Maria@GMIAL.com",
            "PostMaster@Example.ORG",
            "用户@例子.广告",
            "x@mailinator.com",
            "john..doe@example.com",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid address makes exit 1"
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 5);

    assert_eq!(rows[0]["address"], "Maria@GMIAL.com");
    assert_eq!(rows[0]["verdict"], "valid");
    assert_eq!(rows[0]["normalized"], "Maria@gmial.com");
    assert_eq!(rows[0]["ascii"], "Maria@gmial.com");
    let flags: Vec<&str> = rows[0]["flags"]
        .as_array()
        .expect("flags array")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(flags.contains(&"typo:gmail.com"), "{flags:?}");
    assert!(rows[0]["reason"].is_null());

    assert_eq!(rows[1]["normalized"], "postmaster@example.org");
    assert_eq!(rows[1]["flags"], serde_json::json!(["role"]));

    assert_eq!(rows[2]["normalized"], "用户@例子.广告");
    assert!(
        rows[2]["ascii"].is_null(),
        "a UTF-8 local part has no ASCII form"
    );

    assert_eq!(rows[3]["flags"], serde_json::json!(["disposable"]));

    assert_eq!(rows[4]["verdict"], "invalid");
    assert!(rows[4]["normalized"].is_null());
    assert!(
        rows[4]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("two periods")),
        "{}",
        rows[4]["reason"]
    );
}

#[test]
fn exit_zero_when_all_valid_and_table_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cartero(
        dir.path(),
        &["address", "check", "a@example.com", "b@example.org"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.starts_with("valid")), "{text}");
}

#[test]
fn stdin_lines_are_read_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // CRLF terminators go; a leading space and a trailing tab stay (and make
    // those addresses invalid).
    let input = b"a@example.com\r\n b@example.com\nc@example.com\t\nd@example.com";
    let out = cartero(
        dir.path(),
        &["address", "check", "-", "--format", "json"],
        Some(input),
    );
    let rows = json_lines(&out);
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap_or(""),
                r["verdict"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a@example.com", "valid"),
            (" b@example.com", "invalid"),
            ("c@example.com\t", "invalid"),
            ("d@example.com", "valid"),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn json_input_carries_control_characters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input =
        b"\"a\\nb@example.com\"\n{\"address\": \"c\\u0000@example.com\"}\n\"ok@example.com\"\n";
    let out = cartero(
        dir.path(),
        &["address", "check", "--json-input", "--format", "json"],
        Some(input),
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["address"], "a\nb@example.com");
    assert_eq!(rows[0]["verdict"], "invalid");
    assert_eq!(rows[1]["address"], "c\u{0}@example.com");
    assert_eq!(rows[1]["verdict"], "invalid");
    assert_eq!(rows[2]["verdict"], "valid");

    let bad = cartero(
        dir.path(),
        &["address", "check", "--json-input"],
        Some(b"not json\n"),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 1"));
}

#[test]
fn operator_disposable_list_from_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cartero.toml"),
        "[hygiene]\ndisposable_list = \"extra-disposable.txt\"\n",
    )
    .expect("write config");
    std::fs::write(
        dir.path().join("extra-disposable.txt"),
        "# our own finds\nthrowaway.example.net\n",
    )
    .expect("write list");
    let out = cartero(
        dir.path(),
        &[
            "address",
            "check",
            "--format",
            "json",
            "x@throwaway.example.net",
            "x@sub.throwaway.example.net",
            "x@example.net",
        ],
        None,
    );
    let rows = json_lines(&out);
    assert_eq!(rows[0]["flags"], serde_json::json!(["disposable"]));
    assert_eq!(rows[1]["flags"], serde_json::json!(["disposable"]));
    assert_eq!(rows[2]["flags"], serde_json::json!([]));

    std::fs::write(dir.path().join("extra-disposable.txt"), "not a domain!\n").expect("write");
    let bad = cartero(dir.path(), &["address", "check", "x@example.net"], None);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("extra-disposable.txt:1"));
}

/// `--check-mx` against dnsmasq on loopback: the DNS verdict of each
/// distinct domain becomes an `mx:` flag. A refused query (dnsmasq has no
/// upstream for names outside its records) or a server that never answers
/// gives `mx:unknown`, never an invalid address. (The zone cannot be under
/// `.test`, which the address policy refuses as special-use.)
#[test]
fn check_mx_adds_the_dns_verdict() {
    let zone = Zone::new()
        .mx("mail.example.net", 10, "mx1.mail.example.net")
        .addr("mx1.mail.example.net", "192.0.2.10")
        .null_mx("nomail.example.net");
    let Some(dns) = Dns::start(&zone) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cartero.toml"),
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_ms = 2000\n",
            dns.addr()
        ),
    )
    .expect("write config");
    let out = cartero(
        dir.path(),
        &[
            "address",
            "check",
            "--check-mx",
            "--format",
            "json",
            "a@mail.example.net",
            "b@MAIL.example.net",
            "c@nomail.example.net",
            "d@elsewhere.example.org",
            "not an address",
        ],
        None,
    );
    let rows = json_lines(&out);
    let flags: Vec<serde_json::Value> = rows.iter().map(|r| r["flags"].clone()).collect();
    assert_eq!(
        flags,
        [
            serde_json::json!(["mx:deliverable"]),
            serde_json::json!(["mx:deliverable"]),
            serde_json::json!(["mx:null-mx"]),
            serde_json::json!(["mx:unknown"]),
            serde_json::json!([]),
        ],
        "{}",
        dns.log()
    );

    std::fs::write(
        dir.path().join("cartero.toml"),
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_ms = 300\n",
            dns.silent_addr()
        ),
    )
    .expect("write config");
    let out = cartero(
        dir.path(),
        &[
            "address",
            "check",
            "--check-mx",
            "--format",
            "json",
            "a@mail.example.net",
        ],
        None,
    );
    let rows = json_lines(&out);
    assert_eq!(rows[0]["verdict"], "valid");
    assert_eq!(rows[0]["flags"], serde_json::json!(["mx:unknown"]));
    assert_eq!(out.status.code(), Some(0));
}

/// Agreement with the shared corpus's `expect` column, when the checkout has
/// its sibling `shared/` (or `SHARED` names it); the held-out evaluation runs
/// the same binary.
#[test]
fn shared_corpus_agreement() {
    let shared = std::env::var_os("SHARED").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
        std::path::PathBuf::from,
    );
    let path = shared.join("corpus/addresses/cases.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "{} not present: corpus agreement not measured here",
            path.display()
        );
        return;
    };
    let cases: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("case JSON"))
        .collect();
    let input: String = cases
        .iter()
        .map(|c| format!("{}\n", c["address"]))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cartero(
        dir.path(),
        &["address", "check", "--json-input", "--format", "json"],
        Some(input.as_bytes()),
    );
    let rows = json_lines(&out);
    assert_eq!(rows.len(), cases.len());
    let agree = cases
        .iter()
        .zip(&rows)
        .filter(|(c, r)| c["expect"] == r["verdict"])
        .count();
    assert!(
        agree * 100 >= cases.len() * 99,
        "{agree}/{} verdicts agree",
        cases.len()
    );
}
