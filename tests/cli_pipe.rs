//! Piping a command into `head` ends it quietly, as Unix tools do: no
//! panic, no backtrace, nothing on standard error.

mod common;

use std::process::Command;

use common::db::TestDb;
use common::project::{Project, stderr};

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_the_command_quietly() {
    let db = TestDb::all().await.into_iter().next().expect("a backend");
    let p = Project::new(&db, "");
    let mut csv = String::from("email,first_name,city\n");
    for i in 0..3000 {
        csv.push_str(&format!("user{i}@example.org,User{i},City{i}\n"));
    }
    let out = p.import(&csv);
    assert!(out.status.success(), "{}", stderr(&out));
    let cartero = env!("CARGO_BIN_EXE_cartero");
    for args in [
        "segment sample --filter 'domain == \"example.org\"' -n 3000 --format csv",
        "segment sample --filter 'domain == \"example.org\"' -n 3000 --format json",
        "segment sample --filter 'domain == \"example.org\"' -n 3000",
    ] {
        // `head -c 1` exits after one byte; the rest of the output meets a
        // closed pipe.
        let script = format!(
            "'{cartero}' --database-url '{}' {args} | head -c 1 >/dev/null",
            db.url
        );
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &script])
            .current_dir(p.path())
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            err.is_empty(),
            "{args}: nothing on standard error, got: {err}"
        );
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args}: the status of a tool ended by SIGPIPE"
        );
    }
}
