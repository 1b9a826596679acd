//! Crash safety: a send killed with SIGKILL and resumed delivers to every
//! recipient, and to nobody twice outside the reported in-flight window.
//!
//! The SMTP server is Postfix's smtp-sink, dumping each transaction to a file,
//! so the count of what the server received is independent of cartero's own
//! records.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::db::TestDb;
use common::project::{Project, stderr};
use common::servers::{free_port, in_ci};

const RECIPIENTS: usize = 3000;

struct DumpingSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl DumpingSink {
    fn start() -> DumpingSink {
        let bin = Path::new("/usr/sbin/smtp-sink");
        if !bin.exists() {
            assert!(
                !in_ci(),
                "CI=true but smtp-sink (package postfix) is missing"
            );
            panic!("smtp-sink is needed: apt-get install postfix (see .ci/run)");
        }
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("dump");
        std::fs::create_dir(&dump).unwrap();
        // smtp-sink drops privileges to `postfix` before writing dumps.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["-u", "postfix", "-m", "64", "-d"])
            .arg(format!("{}/%Y%m%d%H%M%S.", dump.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        DumpingSink { child, port, dir }
    }

    fn dumps(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.dir.path().join("dump"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    /// Messages received per recipient.
    fn received(&self) -> HashMap<String, usize> {
        let mut per = HashMap::new();
        for f in self.dumps() {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            for line in text.lines().take_while(|l| !l.is_empty()) {
                if let Some(rcpt) = line.strip_prefix("X-Rcpt-Args: ") {
                    let addr = rcpt.trim().trim_start_matches('<');
                    let addr = addr.split('>').next().unwrap_or(addr);
                    *per.entry(addr.to_string()).or_default() += 1;
                }
            }
        }
        per
    }
}

impl Drop for DumpingSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill_when(project: &Project, sink: &DumpingSink, at_least: usize) {
    let mut child = project
        .command(&["campaign", "send", "campaigns/c.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cartero");
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.dumps().len() < at_least {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the send ended ({status}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "the send made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_send_resumes_without_loss_or_duplicates_outside_the_window() {
    for db in TestDb::all().await {
        let sink = DumpingSink::start();
        // A rate limit keeps the send running long enough to kill it twice.
        let project = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 4\nrate_limit = 600.0\n",
                sink.port
            ),
        );
        let mut csv = String::from("email,first_name,city\n");
        for i in 0..RECIPIENTS {
            csv.push_str(&format!("user{i}@example.org,User{i},City{i}\n"));
        }
        let out = project.import(&csv);
        assert!(out.status.success(), "{}", stderr(&out));

        kill_when(&project, &sink, 700);
        let after_first = sink.dumps().len();
        kill_when(&project, &sink, after_first + 700);
        let after_second = sink.dumps().len();
        assert!(
            after_second < RECIPIENTS,
            "killed before the end: {after_second}"
        );

        // Resume to the end.
        let out = project.ok(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["tally"]["accepted"], RECIPIENTS as u64, "{report}");
        assert_eq!(report["tally"]["pending"], 0);
        assert_eq!(report["tally"]["sending"], 0);

        let received = sink.received();
        let missing: Vec<String> = (0..RECIPIENTS)
            .map(|i| format!("user{i}@example.org"))
            .filter(|a| !received.contains_key(a))
            .collect();
        assert!(missing.is_empty(), "never received: {missing:?}");
        let duplicates: usize = received.values().map(|n| n - 1).sum();
        // Rows claimed by a killed run and not recorded are resent: at most
        // 4 workers x 2 batches (one delivered, one being rendered) x 100
        // per killed run. A killed run's rows are taken over once their lease
        // (30 s) expires, by whichever run claims then: the second run was
        // killed before the first one's leases expired, so the last run
        // takes over the rows of both.
        // Of those, only a message the server had accepted while its record
        // was not yet written reaches the recipient twice: at most four per
        // worker per kill, the message on the wire and three being recorded
        // (docs/SENDING.md).
        // The report says how many may arrive twice (the in-flight window,
        // at most four per worker), not how many claims it took back (up to
        // 800), which it reports apart.
        let in_flight = report["in_flight_resent"].as_u64().unwrap() as usize;
        let picked_up = report["picked_up_again"].as_u64().unwrap() as usize;
        assert!(
            picked_up <= 2 * 4 * 2 * 100,
            "one run holds at most 800 claims, two were killed: {picked_up}"
        );
        assert!(
            in_flight <= 2 * 4 * 4 && in_flight <= picked_up,
            "at most four per worker of each killed process may have reached the server: {in_flight} of {picked_up}"
        );
        eprintln!(
            "{:?}: {duplicates} duplicates over 2 kills; last window {in_flight}",
            db.backend()
        );
        assert!(
            duplicates <= 4 * 4 * 2,
            "{duplicates} recipients got a second copy; the documented window is four per worker per kill"
        );
        assert_eq!(
            received.len(),
            RECIPIENTS,
            "only campaign recipients were mailed"
        );
    }
}
