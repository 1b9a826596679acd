//! `Served`: the real `cartero serve` application (the same `app::build`
//! the binary calls) on a random loopback port, over a test project's
//! cartero.toml and database; and the messages a send left in the outbox.

use std::collections::HashMap;
use std::sync::Arc;

use cartero::app::{self, AppError, Secret, Settings};
use cartero::config::Config;
use cartero::track::Metrics;
use tokio_util::sync::CancellationToken;

use super::db::TestDb;
use super::project::Project;

/// The base URL the test projects put in their messages.
pub const PUBLIC_BASE: &str = "https://news.shop.example";

pub struct Served {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub metrics: Arc<Metrics>,
    cancel: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
}

impl Served {
    pub async fn start(project: &Project, db: &TestDb) -> Served {
        let cfg = Config::load(&project.file("cartero.toml")).expect("test cartero.toml");
        let mut settings = Settings::from_config(&cfg).expect("serve settings");
        settings.database_url = Secret::new(db.url.clone());
        settings.listen = "127.0.0.1:0".parse().unwrap();
        let server = app::build(settings).await.expect("build the app");
        let base = format!("http://{}", server.addr());
        let metrics = server.metrics();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(server.run(cancel.clone()));
        Served {
            base,
            metrics,
            cancel,
            handle: Some(handle),
        }
    }

    /// The loopback URL for a URL found in a message.
    pub fn url(&self, public: &str) -> String {
        match public.strip_prefix(PUBLIC_BASE) {
            Some(path) => format!("{}{path}", self.base),
            None => panic!("{public} is not under {PUBLIC_BASE}"),
        }
    }

    /// Graceful shutdown: stops accepting, drains the event queue.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A client that never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A message from the outbox: raw header block and decoded HTML.
pub struct Sent {
    pub headers: String,
    pub html: String,
}

impl Sent {
    pub fn header(&self, name: &str) -> Option<String> {
        let unfolded = self.headers.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// Every `href` and `src` value in the HTML that starts with `prefix`.
    pub fn urls(&self, prefix: &str) -> Vec<String> {
        self.html
            .match_indices(prefix)
            .map(|(i, _)| {
                let rest = &self.html[i..];
                let end = rest.find(['"', '\'', ' ', '>']).unwrap_or(rest.len());
                rest[..end].replace("&amp;", "&")
            })
            .collect()
    }
}

/// The messages of campaign `c` in the project's outbox, by recipient.
pub fn outbox(project: &Project) -> HashMap<String, Sent> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(project.file("outbox/c")).expect("outbox/c") {
        let raw = std::fs::read(e.unwrap().path()).unwrap();
        let msg = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a parseable message");
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_string();
        let text = String::from_utf8_lossy(&raw);
        let end = text.find("\r\n\r\n").unwrap_or(text.len());
        out.insert(
            to,
            Sent {
                headers: text[..end].to_string(),
                html: msg.body_html(0).map(|h| h.into_owned()).unwrap_or_default(),
            },
        );
    }
    out
}

/// The `n` files `cartero serve`'s background mailer writes into `dir`
/// (the sign-up confirmations, `outbox/signup`), waiting for them: they
/// leave after the answer. A bounded wait for the mailer, not a timing.
pub async fn wait_for_files(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        // A file is complete once its name is final (the outbox writes
        // through a temporary name and renames).
        let done: Vec<_> = files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        if done.len() >= n || std::time::Instant::now() > deadline {
            return done;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The rollups of `events` (hours, unique sends, links), every row and
/// count, zero counts left out.
pub async fn event_rollups(db: &TestDb) -> Vec<String> {
    let mut out = Vec::new();
    for (t, cols, count) in [
        // Kind `sent` is the sends' (and this test moves their time).
        (
            "report_hourly",
            "campaign_id, kind, machine, hour_at, events",
            "kind <> 'sent' AND events",
        ),
        (
            "report_uniques",
            "campaign_id, kind, machine, sends",
            "sends",
        ),
        (
            "report_link_totals",
            "campaign_id, url, machine, sends, events",
            "events",
        ),
        (
            "report_sends",
            "send_id, kind, machine, campaign_id, first_at, events",
            "events",
        ),
        (
            "report_links",
            "campaign_id, url, machine, send_id, events",
            "events",
        ),
    ] {
        let row = cols
            .split(", ")
            .map(|c| format!("CAST({c} AS TEXT)"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let sql = format!("SELECT {row} FROM {t} WHERE {count} <> 0");
        let rows: Vec<String> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap()
        });
        out.extend(rows.into_iter().map(|r| format!("{t}: {r}")));
    }
    out.sort();
    out
}
