//! Delivery: the campaign send loop, SMTP workers, rate limit, retries, and
//! the outbox transport.
//!
//! `send_campaign` snapshots the segment into send rows once, then runs
//! `concurrency` workers. Each worker claims a batch (a lease in one
//! short transaction), renders and signs it on the blocking pool, delivers
//! message by message outside any transaction, and hands each result to the
//! recorder (group commit, `recorder.rs`). A kill at any point loses at most
//! the rows a worker had claimed and not yet recorded, resent on resume; of
//! those, at most `IN_FLIGHT` per worker had reached the server (the
//! in-flight window, docs/SENDING.md). Suppression is checked at the
//! snapshot, when a row is claimed, and right before each message goes to
//! the server (a check at most `SUPPRESSION_RECHECK` old), so a contact who
//! unsubscribes during a long send is not mailed.

pub mod auth;
pub mod domains;
pub mod outbox;
pub mod recorder;
pub mod smtp;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::app::Clock;
use crate::campaign::{Campaign, CampaignError, SegmentSpec};
use crate::config::Config;
use crate::domain::SkipReason;
use crate::domain::send::FrequencyCap;
use crate::domain::time::Millis;
use crate::domain::token::{self, Keyring, Purpose, Subject};
use crate::render::{DkimSigner, Envelope, MessageParts, Personal, RenderError, Renderer};
use crate::segment::{Segment, SegmentError};
use crate::store::contacts::Contact;
use crate::store::sends::{self, Claimed, ContactFilter, Everyone, Outcome, Tally};
use crate::store::{Store, StoreError};

pub use smtp::{Attempt, ConnectError, SmtpClient};

use recorder::{Pending, Recorder};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot record send results: {0}")]
    Record(Arc<StoreError>),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Unreachable(#[from] ConnectError),
    /// The server stayed unreachable for `smtp.outage_timeout_secs`: the
    /// send stopped on purpose and resumes when run again (exit status 4).
    #[error(
        "the SMTP server {host}:{port} could not be reached for {secs} s, so the send \
         stopped. Nothing is lost: run the same command again to resume"
    )]
    Outage {
        host: String,
        port: u16,
        secs: u64,
        /// The last cause seen: for logs and JSON. The terminal heard the
        /// first one when the outage began, and is not told it twice.
        reason: String,
    },
    /// The database did not confirm this process's claims within their
    /// lease: another process may have taken the rows over, so this one
    /// stops before it sends any of them twice.
    #[error(
        "this process could not renew its claims for {secs} s (smtp.lease_secs): it stopped \
         so that no message goes out twice. Run the same command again to resume"
    )]
    LeaseLost { secs: u64 },
    #[error("{path}: cannot write to the outbox: {source}")]
    Outbox {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Rows a worker claims at once, at most. Each claim costs four statements
/// (claim, contacts, tags, consent), so larger batches cost less a message;
/// a kill strands the claimed rows, but they were not sent and go back to
/// pending, so the batch size is not the in-flight window.
const CLAIM_BATCH: i64 = 100;
/// Results of one worker that may be unwritten while it delivers the next
/// message: the in-flight window per worker per crash (docs/SENDING.md).
const IN_FLIGHT: usize = 4;
/// Rows a worker claims at once under a rate limit. A worker holds two
/// batches (one on the wire, the next rendered); leases are renewed while
/// it works, but small batches under a low rate keep the rows spread over
/// the nodes and the in-flight claims of a dead node few.
fn claim_size(rate_limit: f64, workers: usize) -> i64 {
    if rate_limit <= 0.0 {
        return CLAIM_BATCH;
    }
    let per_worker = rate_limit / workers.max(1) as f64;
    let fit = (per_worker * BATCH_SPAN.as_secs_f64() / 4.0 / 2.0).floor() as i64;
    fit.clamp(1, CLAIM_BATCH)
}

/// Four times the time two claimed batches may take to go out at the rate
/// limit (`claim_size`).
const BATCH_SPAN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Render every message and report, but write nothing and send nothing.
    pub dry_run: bool,
    /// Stop after the first pass instead of waiting for deferred retries.
    pub no_wait: bool,
    /// The run to send; `None`: the campaign's manual run (the command line).
    pub run: Option<RunOf>,
    /// Stops the send (claims released, nothing lost) when cancelled: the
    /// service's shutdown.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// The process's shared rate limiter and domain gate; `None`: this send's own.
    pub limits: Option<SharedLimits>,
}

/// Which run of a campaign a send works on (`campaign_runs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOf {
    /// `schedule` or `send_at` (the scheduler), `manual` (the command line).
    pub trigger: String,
    /// The occurrence's instant in RFC 3339 (UTC), or `manual`.
    pub occurrence: String,
}

/// Why a send stopped before its run was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Halt {
    /// `cartero campaign pause`: resumes with `campaign resume`.
    Paused,
    /// `cartero campaign cancel`: the run's unsent rows were skipped.
    Cancelled,
    /// The process is shutting down; another run (or node) picks it up.
    Shutdown,
}

/// How often a send asks the database whether its run was paused or
/// cancelled (by any node): the "within seconds" of `campaign pause`.
const CONTROL_POLL: Duration = Duration::from_secs(1);

/// What a send did, for the terminal and for scripts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SendReport {
    pub campaign: String,
    /// False when this run resumed a send started earlier.
    pub started_now: bool,
    /// Messages that may have reached the server just before the last run
    /// stopped, and were sent again: these may arrive twice (at most
    /// `IN_FLIGHT` per worker of that run; docs/SENDING.md).
    pub in_flight_resent: u64,
    /// Rows the stopped run had claimed and not recorded, all handed back
    /// (most of them had not been sent at all).
    pub picked_up_again: u64,
    pub sent_this_run: u64,
    /// Contacts this run suppressed because the server refused them for
    /// good (a hard bounce at RCPT or DATA; docs/SENDING.md).
    pub suppressed_by_refusals: u64,
    pub tally: Tally,
    /// Recipients whose message could not be rendered (this run, or in a
    /// dry run, would not be), each with the reason.
    pub render_failures: Vec<RenderFailure>,
    pub elapsed_secs: f64,
    /// Of `elapsed_secs`, the time spent waiting for deferred retries.
    pub waiting_secs: f64,
    pub transport: String,
    pub dry_run: bool,
    /// Set when the send stopped before its run was done: paused,
    /// cancelled, or shut down.
    pub halted: Option<Halt>,
}

/// A recipient whose message did not render, and why (the template's
/// file:line where the renderer knows it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderFailure {
    pub contact: String,
    pub error: String,
}

impl RenderFailure {
    pub fn new(contact: &Contact, e: &RenderError) -> Self {
        Self {
            contact: contact.email.clone(),
            error: with_template_place(e),
        }
    }
}

/// A render error with the line and column in the template where the
/// failing variable is written, when Tera's message names one (Tera's
/// runtime errors name the template but no line).
pub fn with_template_place(e: &RenderError) -> String {
    let RenderError::Render { path, message } = e else {
        return e.to_string();
    };
    let place = message
        .split_once("Variable `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .and_then(|(name, _)| {
            let source = std::fs::read_to_string(path).ok()?;
            let at = source.find(name)?;
            let line = source[..at].matches('\n').count() + 1;
            let col = at - source[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
            Some((line, col))
        });
    // Tera calls the template by its internal name; the marketer knows
    // the file.
    let message = message
        .replace("'body.html'", "the template")
        .replace("'body.txt'", "the template");
    match place {
        Some((line, col)) => format!("{path}:{line}:{col}: {message}"),
        None => format!("{path}: {message}"),
    }
}

/// What a send row's reply starts with when its message could not be
/// rendered: such rows are tried again once the campaign's files change.
pub const RENDER_FAILED: &str = "render: ";

/// SHA-256 over the campaign file and its templates: a change to any of
/// them gives rows that failed to render another try.
fn content_hash(c: &Campaign) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(c.file_hash.as_bytes());
    for p in std::iter::once(&c.html_template).chain(c.text_template.as_ref()) {
        h.update(b"\0");
        h.update(std::fs::read(p).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Progress for a bar: total rows to deliver and how many are done.
pub trait Progress: Send + Sync {
    fn start(&self, total: u64);
    fn advance(&self, n: u64);
    fn message(&self, msg: String);
    /// Something the person running the send must know now (the server
    /// cannot be reached, and what cartero does about it).
    fn notice(&self, msg: String) {
        tracing::warn!("{msg}");
    }
}

pub struct NoProgress;
impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: String) {}
}

/// The transport a configuration selects.
#[derive(Clone)]
enum Transport {
    Smtp(crate::config::SmtpConfig),
    Outbox(PathBuf),
}

impl Transport {
    fn describe(&self) -> String {
        match self {
            Transport::Smtp(s) => format!("smtp://{}:{}", s.host, s.port),
            Transport::Outbox(p) => format!("outbox {}", p.display()),
        }
    }
}

/// A campaign's segment as a filter over contacts.
pub struct SegmentFilter {
    pub segment: Option<Segment>,
    pub now: Millis,
}

impl ContactFilter for SegmentFilter {
    fn push_sqlite(&self, qb: &mut sqlx::QueryBuilder<'_, sqlx::Sqlite>) {
        match &self.segment {
            Some(s) => crate::segment::push_where_sqlite(qb, s, self.now),
            None => Everyone.push_sqlite(qb),
        }
    }
    fn push_postgres(&self, qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>) {
        match &self.segment {
            Some(s) => crate::segment::push_where_postgres(qb, s, self.now),
            None => Everyone.push_postgres(qb),
        }
    }
}

/// Resolves a campaign's segment against the project's segments file.
pub fn resolve_segment(campaign: &Campaign, cfg: &Config) -> Result<Option<Segment>, SendError> {
    match &campaign.segment {
        SegmentSpec::All => Ok(None),
        SegmentSpec::Inline(seg) => Ok(Some(seg.clone())),
        SegmentSpec::Named { name, at } => {
            let path = cfg
                .resolve(&cfg.project.campaigns_dir)
                .join("segments.toml");
            if !path.is_file() {
                return Err(at
                    .error(format!(
                        "segment {name:?} needs {} (not found)",
                        path.display()
                    ))
                    .into());
            }
            let seg = crate::segment::find(&path, name).map_err(|e| match e {
                SegmentError::Unknown { .. } => SendError::Campaign(at.error(e.to_string())),
                other => SendError::Segment(other),
            })?;
            Ok(Some(seg))
        }
    }
}

/// Everything needed to turn a send row into bytes on the wire.
pub struct Composer {
    pub campaign: Campaign,
    renderer: Renderer,
    signer: Option<DkimSigner>,
    secret: Vec<u8>,
    /// Signs the v1 tokens of the /u/ link, the pixel and the clicks.
    keys: Keyring,
    /// `[serve]` is configured: one-click unsubscribe is advertised, and
    /// (opens, clicks) are tracked as it says.
    serve: Option<(bool, bool)>,
    bounce_local: String,
    bounce_domain: String,
    base_url: String,
    unsubscribe_mailto: (String, String),
    message_id_domain: String,
    list_id: String,
    feedback_id: String,
}

/// One message, rendered and signed.
pub struct Composed {
    pub envelope: Envelope,
    pub message_id: String,
    pub bytes: Vec<u8>,
}

impl Composer {
    pub fn new(campaign: Campaign, cfg: &Config) -> Result<Self, SendError> {
        let secret = cfg
            .secret()
            .map_err(|e| SendError::Config(e.to_string()))?
            .to_vec();
        // Links in mail must keep working for years: with `[serve]` on,
        // base_url is checked now, not when a recipient first clicks.
        if cfg.serve.is_some() {
            crate::app::base_url(cfg).map_err(|e| SendError::Config(e.to_string()))?;
        }
        let renderer = Renderer::new(&campaign)?;
        let signer = match &cfg.dkim {
            Some(d) => Some(
                DkimSigner::from_config(d, &cfg.resolve(&d.private_key))
                    .map_err(RenderError::from)?,
            ),
            None => None,
        };
        let (u_local, u_domain) = cfg
            .sender
            .unsubscribe_mailto
            .rsplit_once('@')
            .map(|(l, d)| (l.to_string(), d.to_string()))
            .ok_or_else(|| {
                SendError::Config(format!(
                    "sender.unsubscribe_mailto {:?} is not an address",
                    cfg.sender.unsubscribe_mailto
                ))
            })?;
        let list_slug: String = campaign
            .list
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let list_id = format!(
            "{} <{list_slug}.{}>",
            campaign.list.replace(['<', '>', '"'], ""),
            cfg.sender.bounce_domain
        );
        let feedback_id = format!("{}:{list_slug}:cartero", campaign.slug);
        Ok(Self {
            renderer,
            signer,
            keys: Keyring::new(cfg.sender.key_id, &secret),
            // Tracking needs all three: `[serve]` allowing it, the campaign
            // asking for it, and a list that tracks (docs/TRACKING.md,
            // "Consent to track").
            serve: cfg.serve.as_ref().map(|s| {
                match cfg.lists.get(&campaign.list).map(|l| l.tracking) {
                    Some(crate::config::TrackingMode::None) => (false, false),
                    _ => (
                        s.track_opens && campaign.tracking.opens,
                        s.track_clicks && campaign.tracking.clicks,
                    ),
                }
            }),
            secret,
            bounce_local: cfg.sender.bounce_local.clone(),
            bounce_domain: cfg.sender.bounce_domain.clone(),
            base_url: cfg.sender.base_url.trim_end_matches('/').to_string(),
            unsubscribe_mailto: (u_local, u_domain),
            message_id_domain: cfg.sender.message_id_domain.clone(),
            list_id,
            feedback_id,
            campaign,
        })
    }

    /// Whether the messages this composer makes carry open or click
    /// tracking (recorded per send: `sends.tracked`).
    pub fn tracked(&self) -> bool {
        self.serve.is_some_and(|(opens, clicks)| opens || clicks)
    }

    /// A new Message-ID: 128 bits from the operating system's CSPRNG, so
    /// nobody can guess the ID of a message they did not receive (the
    /// feedback matcher trusts a report that quotes one). Never derived from
    /// time or row ids. A send row gets its ID once, stored before the first
    /// attempt (`sends::assign_message_ids`), so a resend after a crash
    /// carries the same ID and receivers that dedupe by Message-ID drop the
    /// copy.
    pub fn new_message_id(&self) -> String {
        use rand::RngCore;
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("cartero.{hex}@{}", self.message_id_domain)
    }

    /// `_campaign_id` is kept for the callers; nothing in a message is
    /// derived from row ids any more.
    pub fn compose(
        &self,
        _campaign_id: i64,
        row: &Claimed,
        contact: &Contact,
    ) -> Result<Composed, RenderError> {
        let bounce_token = token::sign(&self.secret, Purpose::Bounce, row.id);
        // v0 in the mailto: feedback ingestion verifies it with `token::verify`.
        let unsub_token = token::sign(&self.secret, Purpose::Unsubscribe, row.id);
        let personal = Personal {
            unsubscribe_url: format!(
                "{}/u/{}",
                self.base_url,
                self.keys.sign(Purpose::Unsubscribe, Subject::Send(row.id))
            ),
            // Only when `cartero serve` answers it.
            view_url: if self.serve.is_some() {
                format!(
                    "{}/v/{}",
                    self.base_url,
                    self.keys.sign(Purpose::View, Subject::Send(row.id))
                )
            } else {
                String::new()
            },
        };
        let mut rendered = self.renderer.render(&self.campaign, contact, &personal)?;
        if let Some((opens, clicks)) = self.serve {
            rendered.html = crate::render::track::apply(
                &rendered.html,
                &crate::render::track::Tracking {
                    keys: &self.keys,
                    base_url: &self.base_url,
                    send_id: row.id,
                    opens,
                    clicks,
                },
            );
        }
        let message_id = row
            .message_id
            .clone()
            .unwrap_or_else(|| self.new_message_id());
        let name = [contact.first_name.as_deref(), contact.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let mailto = format!(
            "{}+{unsub_token}@{}?subject=unsubscribe",
            self.unsubscribe_mailto.0, self.unsubscribe_mailto.1
        );
        let parts = MessageParts {
            from: &self.campaign.from,
            reply_to: self.campaign.reply_to.as_ref(),
            to: &row.email,
            to_name: (!name.is_empty()).then_some(name.as_str()),
            message_id: &message_id,
            // Without `cartero serve` the URL answers nothing: advertise the
            // mailto alone, and no one-click (RFC 8058 needs a live URL).
            unsubscribe_url: if self.serve.is_some() {
                &personal.unsubscribe_url
            } else {
                ""
            },
            unsubscribe_mailto: &mailto,
            list_id: &self.list_id,
            feedback_id: &self.feedback_id,
            extra_headers: &self.campaign.headers,
        };
        let mut bytes = crate::render::build_message(&rendered, &parts)?;
        if let Some(s) = &self.signer {
            bytes = s.sign(&bytes)?;
        }
        Ok(Composed {
            envelope: Envelope {
                from: format!(
                    "{}+{bounce_token}@{}",
                    self.bounce_local, self.bounce_domain
                ),
                to: row.email.clone(),
            },
            message_id,
            bytes,
        })
    }
}

/// A global messages-per-second ceiling shared by the workers: each message
/// reserves the next free slot, so the rate holds however many workers run.
/// In `cartero serve` one limiter serves every run of the process, and its
/// rate is the configured one divided by the nodes alive (`set_nodes`), so
/// the rate holds across runs and across nodes.
pub struct RateLimit {
    /// The configured interval between two messages, in nanoseconds; 0: no limit.
    base_nanos: u64,
    /// The interval in force: `base_nanos` times the nodes sharing the rate.
    interval_nanos: AtomicU64,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimit {
    pub fn new(per_sec: f64) -> Self {
        let base_nanos = if per_sec > 0.0 {
            (1e9 / per_sec).round().max(1.0) as u64
        } else {
            0
        };
        Self {
            base_nanos,
            interval_nanos: AtomicU64::new(base_nanos),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// The rate is shared by `nodes` processes: each takes its part.
    pub fn set_nodes(&self, nodes: u64) {
        self.interval_nanos.store(
            self.base_nanos.saturating_mul(nodes.max(1)),
            Ordering::Relaxed,
        );
    }

    /// Messages a second this process may send now; `None`: no limit.
    pub fn per_sec(&self) -> Option<f64> {
        match self.interval_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(1e9 / n as f64),
        }
    }

    async fn wait(&self) {
        let step = self.interval_nanos.load(Ordering::Relaxed);
        if step == 0 {
            return;
        }
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + Duration::from_nanos(step);
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The limits every run of one process shares: the rate limiter and the
/// recipient-domain gate (`cartero serve` makes one for all its runs; the
/// command line's send makes its own).
#[derive(Clone)]
pub struct SharedLimits {
    pub limiter: Arc<RateLimit>,
    pub gate: Arc<domains::DomainGate>,
}

impl SharedLimits {
    pub fn for_config(cfg: &Config) -> Self {
        match &cfg.smtp {
            Some(s) => Self {
                limiter: Arc::new(RateLimit::new(s.rate_limit)),
                gate: Arc::new(domains::DomainGate::new(s)),
            },
            None => Self {
                limiter: Arc::new(RateLimit::new(0.0)),
                gate: Arc::new(domains::DomainGate::unlimited()),
            },
        }
    }
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("per_sec", &self.limiter.per_sec())
            .finish_non_exhaustive()
    }
}

/// An SMTP server that cannot be reached, as every worker sees it: each
/// worker retries its own connection with back-off, and the person running
/// the send is told once when the outage starts and once when it ends.
/// Connection failures are never attempts (docs/SENDING.md).
struct Outage {
    host: String,
    port: u16,
    limit: Duration,
    /// Workers currently waiting for the server.
    waiting: std::sync::atomic::AtomicUsize,
    progress: Arc<dyn Progress>,
}

/// First and longest pause between two connection attempts in an outage.
const OUTAGE_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

impl Outage {
    fn new(cfg: &crate::config::SmtpConfig, progress: Arc<dyn Progress>) -> Self {
        Self {
            host: cfg.host.clone(),
            port: cfg.port,
            limit: Duration::from_secs(cfg.outage_timeout_secs),
            waiting: Default::default(),
            progress,
        }
    }

    fn begin(&self, reason: &str) {
        if self.waiting.fetch_add(1, Ordering::SeqCst) == 0 {
            self.progress.notice(format!(
                "cannot reach the SMTP server {}:{} ({reason}). cartero keeps trying, \
                 less often as time passes, for up to {} s (smtp.outage_timeout_secs), \
                 then stops; nothing is lost and no message counts as tried meanwhile",
                self.host,
                self.port,
                self.limit.as_secs()
            ));
        }
    }

    fn end(&self, reached: bool) {
        if self.waiting.fetch_sub(1, Ordering::SeqCst) == 1 && reached {
            self.progress.notice(format!(
                "the SMTP server {}:{} answers again; sending goes on",
                self.host, self.port
            ));
        }
    }

    /// Connects `client` again after a failure, retrying with back-off for
    /// up to the outage limit. `Ok(false)`: another worker stopped the send
    /// meanwhile. A failure that waiting does not fix (TLS, AUTH) is
    /// returned at once.
    async fn reconnect(
        &self,
        client: &mut SmtpClient,
        mut reason: String,
        stop: &AtomicBool,
    ) -> Result<bool, SendError> {
        let started = Instant::now();
        self.begin(&reason);
        let mut pause = OUTAGE_BACKOFF.0;
        let result = loop {
            let left = self.limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                break Err(SendError::Outage {
                    host: self.host.clone(),
                    port: self.port,
                    secs: self.limit.as_secs(),
                    reason,
                });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(OUTAGE_BACKOFF.1);
            if stop.load(Ordering::Relaxed) {
                break Ok(false);
            }
            match client.connect().await {
                Ok(()) => break Ok(true),
                Err(e) if e.unreachable => {
                    tracing::info!(host = %self.host, port = self.port, reason = %e.reason, "still cannot reach the SMTP server");
                    reason = e.reason;
                }
                Err(e) => break Err(e.into()),
            }
        };
        self.end(matches!(result, Ok(true)));
        result
    }
}

/// This process's name on its claims: a random UUID (v4) drawn once per
/// process. Nothing is read back from it: a claim is honoured while its
/// lease runs, and taken over by anyone after (`sends::claim`).
pub fn worker_identity() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use rand::RngCore;
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40; // version 4
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    })
}

/// The claims this process holds on a run, as far as it knows: until when
/// the database last confirmed them (a claim, or a renewal). A worker
/// delivers only while that moment is ahead: a process that could not
/// renew (the database unreachable, the process stalled) stops before
/// another one, which may have taken its rows over, sends them too.
pub struct Lease {
    held_until: std::sync::atomic::AtomicI64,
    length: Duration,
    clock: Arc<dyn Clock>,
}

impl Lease {
    pub fn new(length: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            held_until: std::sync::atomic::AtomicI64::new(i64::MIN),
            length,
            clock,
        }
    }

    /// The time, from the clock the send runs on.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Until when a claim or renewal made at `now` holds.
    pub fn until_from(&self, now: Millis) -> Millis {
        now.saturating_add(self.length.as_millis() as i64)
    }

    /// The database confirmed the claims until `until`.
    pub fn confirmed(&self, until: Millis) {
        self.held_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Whether the claims still hold at `now`.
    pub fn holds(&self, now: Millis) -> bool {
        now < self.held_until.load(Ordering::SeqCst)
    }
}

fn halted_now(h: &std::sync::Mutex<Option<Halt>>) -> Option<Halt> {
    *h.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks the database every `CONTROL_POLL` whether the run may go on; on a
/// pause or cancel (from any node), or when `cancel` fires, records why,
/// stops the workers and wakes the send's wait.
async fn watch_control(
    store: Store,
    run_id: i64,
    cancel: Option<tokio_util::sync::CancellationToken>,
    halted: Arc<std::sync::Mutex<Option<Halt>>>,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
) {
    use crate::store::runs::Control;
    let cancelled = async {
        match &cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(cancelled);
    let why = loop {
        tokio::select! {
            _ = &mut cancelled => break Halt::Shutdown,
            _ = tokio::time::sleep(CONTROL_POLL) => {}
        }
        match crate::store::runs::control(&store, run_id).await {
            Ok(Control::Go) | Ok(Control::Over) => {}
            Ok(Control::Paused { .. }) => break Halt::Paused,
            Ok(Control::Cancelled) => break Halt::Cancelled,
            // The lease renewal notices a database that is gone.
            Err(e) => tracing::debug!(error = %e, "could not read the run's state"),
        }
    };
    *halted.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    stop.store(true, Ordering::Relaxed);
    // A permit is kept if the send is not waiting yet.
    wake.notify_one();
}

/// Renews this process's claims on `run_id` every third of the lease until
/// `stop` is set.
async fn keep_leases(store: Store, run_id: i64, lease: Arc<Lease>, stop: Arc<tokio::sync::Notify>) {
    let every = (lease.length / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let until = lease.until_from(lease.now());
        match sends::renew(&store, run_id, worker_identity(), until).await {
            Ok(_) => lease.confirmed(until),
            Err(e) => tracing::warn!(error = %e, "could not renew this process's claims"),
        }
    }
}

async fn list_id_of(store: &Store, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(crate::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>("SELECT id FROM lists WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
    }))
}

/// Sends (or resumes) a campaign, on the system clock.
pub async fn send_campaign(
    store: &Store,
    cfg: &Config,
    campaign: Campaign,
    opts: &SendOptions,
    progress: Arc<dyn Progress>,
) -> Result<SendReport, SendError> {
    send_campaign_with_clock(
        store,
        cfg,
        campaign,
        opts,
        progress,
        Arc::new(crate::app::SystemClock),
    )
    .await
}

/// Sends (or resumes) a campaign's manual run, with time (claims, leases,
/// retries) from `clock`.
pub async fn send_campaign_with_clock(
    store: &Store,
    cfg: &Config,
    campaign: Campaign,
    opts: &SendOptions,
    progress: Arc<dyn Progress>,
    clock: Arc<dyn Clock>,
) -> Result<SendReport, SendError> {
    let started = Instant::now();
    let segment = resolve_segment(&campaign, cfg)?;
    let list_id = list_id_of(store, &campaign.list).await?.ok_or_else(|| {
        SendError::Campaign(campaign.list_at.error(format!(
            "list {:?} does not exist: import contacts with --list {:?} first",
            campaign.list, campaign.list
        )))
    })?;
    let transport = match &cfg.smtp {
        Some(s) => Transport::Smtp(crate::config::SmtpConfig {
            ca_file: s.ca_file.as_ref().map(|p| cfg.resolve(p)),
            ..s.clone()
        }),
        None => Transport::Outbox(cfg.resolve(&cfg.outbox.dir)),
    };
    // Anyone can read the example secret and forge unsubscribe and VERP
    // links for mail signed with it: never over SMTP (issue 15).
    if cfg.sender.secret == crate::config::EXAMPLE_SECRET {
        if let Transport::Smtp(_) = &transport {
            return Err(SendError::Config(
                "sender.secret is the example secret from the cartero repository, which anyone \
                 can read: set your own (CARTERO_SENDER_SECRET) before sending over SMTP"
                    .into(),
            ));
        }
        tracing::warn!(
            "sender.secret is the example secret: fine for the outbox, refused over SMTP"
        );
    }
    let composer = Arc::new(Composer::new(campaign, cfg)?);
    let now = clock.now();
    let filter = SegmentFilter { segment, now };

    if opts.dry_run {
        return dry_run(store, &composer, list_id, &filter, &transport, started).await;
    }

    // Fail before writing anything when the templates cannot render for
    // any of the first recipients (an undefined variable fails for
    // everyone) ...
    preflight(store, &composer, list_id, &filter).await?;
    // ... or when the server cannot be reached.
    // A server that is down waits out the outage here, before anything is
    // written; TLS or AUTH refused stops at once.
    let outage = match &transport {
        Transport::Smtp(s) => Some(Arc::new(Outage::new(s, progress.clone()))),
        Transport::Outbox(_) => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    if let (Transport::Smtp(s), Some(outage)) = (&transport, &outage) {
        let mut probe = SmtpClient::new(s);
        match probe.connect().await {
            Ok(()) => {}
            Err(e) if e.unreachable => {
                outage.reconnect(&mut probe, e.reason, &stop).await?;
            }
            Err(e) => return Err(e.into()),
        }
        probe.quit().await;
    }
    if let Transport::Outbox(dir) = &transport {
        let d = dir.join(&composer.campaign.slug);
        crate::private_files::create_dir_all(dir)
            .and_then(|()| crate::private_files::create_dir_all(&d))
            .map_err(|source| SendError::Outbox {
                path: d.display().to_string(),
                source,
            })?;
    }

    let c = &composer.campaign;
    let hash = content_hash(c);
    let before = crate::store::campaigns::find(store, &c.slug).await?;
    let row = crate::store::campaigns::upsert(
        store,
        &c.slug,
        &c.name,
        &c.path.display().to_string(),
        &hash,
        Some(&c.list),
        now,
    )
    .await?;
    crate::store::campaigns::set_attribution_days(store, row.id, c.attribution_days).await?;
    crate::store::campaigns::set_transactional(store, row.id, c.transactional).await?;
    let cap = if c.transactional {
        None
    } else {
        cfg.frequency.cap()
    };
    let warmup = crate::domain::warmup::Plan::from_config(&cfg.warmup)
        .map_err(SendError::Config)?
        .map(Arc::new);
    let warm_blocked = Arc::new(std::sync::atomic::AtomicI64::new(0));
    // The command line sends the campaign's manual run: created on first
    // use, resumed after; the scheduler names its occurrence's run
    // (docs/SENDING.md, runs).
    let run = match &opts.run {
        None => {
            crate::store::runs::get_or_create(
                store,
                row.id,
                "manual",
                crate::store::runs::MANUAL,
                now,
            )
            .await?
        }
        Some(r) => {
            crate::store::runs::get_or_create(store, row.id, &r.trigger, &r.occurrence, now).await?
        }
    };
    // A paused campaign or a cancelled run sends nothing, and takes no
    // snapshot: a resume sends to the list as it is then.
    match crate::store::runs::control(store, run.id).await? {
        crate::store::runs::Control::Go => {}
        other => {
            let halted = match other {
                crate::store::runs::Control::Paused { .. } => Some(Halt::Paused),
                crate::store::runs::Control::Cancelled => Some(Halt::Cancelled),
                _ => None,
            };
            return Ok(SendReport {
                campaign: c.slug.clone(),
                tally: sends::tally_run(store, run.id).await?,
                elapsed_secs: started.elapsed().as_secs_f64(),
                transport: transport.describe(),
                halted,
                ..SendReport::default()
            });
        }
    }
    // The files changed since the last run: messages that could not be
    // rendered then are tried again.
    if before.is_some_and(|b| b.file_hash != hash) {
        let n = sends::retry_render_failures(store, run.id, RENDER_FAILED, now).await?;
        if n > 0 {
            progress.notice(format!(
                "the campaign's files changed: {n} messages that could not be rendered are tried again"
            ));
        }
    }
    let started_now = sends::snapshot(
        store,
        row.id,
        run.id,
        list_id,
        &filter,
        c.delivery.is_some(),
        now,
    )
    .await?;
    if let Some(delivery) = &c.delivery {
        let n = schedule_rows(store, run.id, delivery, now).await?;
        if n > 0 {
            progress.notice(format!(
                "{n} messages wait for each contact's delivery time ([delivery])"
            ));
        }
    }
    let me = worker_identity();
    // Rows whose worker died are taken over when their lease expires, by
    // `sends::claim`: counted here as the in-flight window.
    let in_flight = Arc::new(AtomicU64::new(0));
    let retry = cfg.smtp.clone().unwrap_or_default();
    let lease = Arc::new(Lease::new(
        Duration::from_secs(retry.lease_secs.max(1)),
        clock.clone(),
    ));
    let renewals_stop = Arc::new(tokio::sync::Notify::new());
    let renewals = tokio::spawn(keep_leases(
        store.clone(),
        run.id,
        lease.clone(),
        renewals_stop.clone(),
    ));
    // A pause or cancel from any node, or this process's shutdown, stops
    // the workers within `CONTROL_POLL`.
    let halted = Arc::new(std::sync::Mutex::new(None::<Halt>));
    let wake = Arc::new(tokio::sync::Notify::new());
    let watch = tokio::spawn(watch_control(
        store.clone(),
        run.id,
        opts.cancel.clone(),
        halted.clone(),
        stop.clone(),
        wake.clone(),
    ));
    // Every message this run delivers is composed with this run's tracking
    // settings; `hygiene run --sunset-days` trusts silence only after them.
    sends::mark_tracked(store, row.id, composer.tracked()).await?;
    // Processes other than this one holding claims now: if their leases
    // lapse, each of their workers had at most IN_FLIGHT messages at the
    // server (the bound `in_flight_resent` reports).
    let other_claimants = sends::claimants(store, run.id, worker_identity()).await?;
    let before = sends::tally_run(store, run.id).await?;
    progress.start(before.open());

    let limits = opts
        .limits
        .clone()
        .unwrap_or_else(|| SharedLimits::for_config(cfg));
    let limiter = limits.limiter.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let suppressed = Arc::new(AtomicU64::new(0));
    let render_failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers = match &transport {
        Transport::Smtp(s) => s.concurrency,
        Transport::Outbox(_) => 2,
    };
    let gate = limits.gate.clone();
    let lane = Arc::new(domains::Lane::default());
    let mut waited = Duration::ZERO;
    let result = loop {
        let mut tasks = tokio::task::JoinSet::new();
        let crew = Arc::new(Crew::new(workers));
        let (recorder, recorder_task) = Recorder::start(store.clone());
        for _ in 0..workers {
            let ctx = WorkerCtx {
                store: store.clone(),
                recorder: recorder.clone(),
                composer: composer.clone(),
                transport: transport.clone(),
                campaign_id: row.id,
                run_id: run.id,
                list_id,
                lease: lease.clone(),
                clock: clock.clone(),
                in_flight: in_flight.clone(),
                outage: outage.clone(),
                policy: cfg.policy.clone(),
                suppressed: suppressed.clone(),
                render_failures: render_failures.clone(),
                limiter: limiter.clone(),
                gate: gate.clone(),
                lane: lane.clone(),
                crew: crew.clone(),
                progress: progress.clone(),
                sent: sent.clone(),
                stop: stop.clone(),
                max_attempts: retry.max_attempts.max(1),
                retry_base: Duration::from_secs(retry.retry_base_secs),
                cap,
                warmup: warmup.clone(),
                warm_blocked: warm_blocked.clone(),
                claim_size: claim_size(retry.rate_limit, workers),
            };
            tasks.spawn(worker(ctx));
        }
        let mut first_err = None;
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    stop.store(true, Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
                Err(join) => {
                    stop.store(true, Ordering::Relaxed);
                    first_err.get_or_insert(SendError::Config(format!("worker failed: {join}")));
                }
            }
        }
        drop(recorder);
        // Every worker has waited for its own results; this only ends the task.
        let _ = recorder_task.await;
        if let Some(e) = first_err {
            // Rows the workers held and had not delivered go back to
            // pending: a resume sends them, and they are not the in-flight
            // window of a crash.
            if let Err(release) = sends::release_claims(store, run.id, &[me.to_string()]).await {
                tracing::warn!(error = %release, "claims left for the next run to release");
            }
            break Err(e);
        }
        if halted_now(&halted).is_some() {
            break Ok(());
        }
        // Deferred rows wait for their retry time, and rows other workers
        // hold for their lease (renewed while they live, taken over after),
        // unless asked not to.
        let next = match sends::next_due_at(store, run.id).await {
            Ok(next) => next,
            Err(e) => break Err(e.into()),
        };
        // The warm-up plan's day was spent with rows still to send: they
        // wait for the next day of the plan.
        let warm = warm_blocked.swap(0, Ordering::Relaxed);
        let next = match (next, warm > 0) {
            (next, true) => match sends::tally_run(store, run.id).await {
                Ok(t) if t.open() > 0 => Some(next.map_or(warm, |n| n.min(warm))),
                Ok(_) => next,
                Err(e) => break Err(e.into()),
            },
            (next, false) => next,
        };
        let Some(next) = next else { break Ok(()) };
        if opts.no_wait {
            break Ok(());
        }
        let wait = (next - clock.now()).clamp(0, 3_600_000) as u64;
        progress.message(format!(
            "waiting {}s for deferred retries, contacts' delivery times, the warm-up plan's next day \
             or another process's claims",
            wait.div_ceil(1000)
        ));
        // A pause, cancel or shutdown ends the wait too.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = wake.notified() => {}
        }
        waited += Duration::from_millis(wait);
        if halted_now(&halted).is_some() {
            break Ok(());
        }
    };
    watch.abort();
    renewals_stop.notify_one();
    let _ = renewals.await;
    result?;
    // The workers may have stopped because claims found the run paused or
    // cancelled before the watcher's next look.
    let halted = match halted_now(&halted) {
        Some(h) => Some(h),
        None => match crate::store::runs::control(store, run.id).await? {
            crate::store::runs::Control::Paused { .. } => Some(Halt::Paused),
            crate::store::runs::Control::Cancelled => Some(Halt::Cancelled),
            _ => None,
        },
    };
    if halted.is_some() {
        // Rows this process claimed and did not deliver go back: to pending
        // for a resume, or skipped for a cancel.
        sends::release_claims(store, run.id, &[me.to_string()]).await?;
        if halted == Some(Halt::Cancelled) {
            crate::store::runs::skip_unsent(store, run.id, clock.now()).await?;
        }
    }
    let in_flight = in_flight.load(Ordering::Relaxed);
    if in_flight > 0 {
        tracing::warn!(
            campaign = %c.slug,
            in_flight,
            "messages claimed by a process that stopped were sent again (the in-flight window)"
        );
    }
    let tally = sends::tally_run(store, run.id).await?;
    if tally.open() == 0 && halted != Some(Halt::Cancelled) {
        crate::store::runs::mark_finished(store, run.id, clock.now()).await?;
        crate::store::campaigns::mark_finished(store, row.id, clock.now()).await?;
    }
    Ok(SendReport {
        campaign: composer.campaign.slug.clone(),
        started_now,
        // Rows were taken over, so at least one process died, even when it
        // claimed only after this one started.
        in_flight_resent: in_flight
            .min(other_claimants.max(u64::from(in_flight > 0)) * (IN_FLIGHT * workers) as u64),
        picked_up_again: in_flight,
        sent_this_run: sent.load(Ordering::Relaxed),
        suppressed_by_refusals: suppressed.load(Ordering::Relaxed),
        render_failures: std::mem::take(
            &mut *render_failures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        ),
        tally,
        elapsed_secs: started.elapsed().as_secs_f64(),
        waiting_secs: waited.as_secs_f64(),
        transport: transport.describe(),
        dry_run: false,
        halted,
    })
}

/// Gives each held row of a run its contact's delivery time (`[delivery]`),
/// a page at a time; returns how many rows it timed. Safe to run on every
/// node and after a crash: it only takes rows still `HELD`.
async fn schedule_rows(
    store: &Store,
    run_id: i64,
    delivery: &crate::campaign::delivery::Delivery,
    now: Millis,
) -> Result<u64, SendError> {
    use crate::campaign::delivery::zone;
    const PAGE: i64 = 2_000;
    let mut after = 0;
    let mut timed = 0;
    loop {
        let rows = sends::held(store, run_id, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let best = if delivery.best_hour {
            let ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
            sends::best_hours(store, &ids).await?
        } else {
            HashMap::new()
        };
        let due: Vec<(i64, Millis)> = rows
            .iter()
            .map(|(id, contact, tz)| {
                let at = delivery.due_at(now, zone(tz.as_deref()), best.get(contact).copied());
                (*id, at)
            })
            .collect();
        sends::set_due(store, &due).await?;
        timed += due.len() as u64;
    }
    Ok(timed)
}

/// Recipients the pre-flight renders for. One contact's bad data fails that
/// contact alone during the send; only when every one of these fails is the
/// template itself taken to be broken.
const PREFLIGHT_RECIPIENTS: i64 = 3;

/// Renders for the first recipients the send would deliver to (on the list,
/// active, in the segment): an error only when all of them fail.
async fn preflight(
    store: &Store,
    composer: &Composer,
    list_id: i64,
    filter: &SegmentFilter,
) -> Result<(), SendError> {
    let ids = sends::first_recipients(store, list_id, filter, PREFLIGHT_RECIPIENTS).await?;
    let contacts = crate::store::contacts::find_many(store, &ids).await?;
    let mut first_err = None;
    for id in &ids {
        let Some(c) = contacts.get(id) else { continue };
        match composer.compose(0, &preview_row(c), c) {
            Ok(_) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

struct WorkerCtx {
    store: Store,
    recorder: Recorder,
    composer: Arc<Composer>,
    transport: Transport,
    campaign_id: i64,
    run_id: i64,
    list_id: i64,
    lease: Arc<Lease>,
    clock: Arc<dyn Clock>,
    /// Rows this run took over from a worker whose lease expired.
    in_flight: Arc<AtomicU64>,
    outage: Option<Arc<Outage>>,
    policy: crate::config::PolicyConfig,
    /// Contacts suppressed by a refusal during this run.
    suppressed: Arc<AtomicU64>,
    render_failures: Arc<std::sync::Mutex<Vec<RenderFailure>>>,
    limiter: Arc<RateLimit>,
    /// Which recipient domains may take a message now (`domains.rs`).
    gate: Arc<domains::DomainGate>,
    /// Messages the gate held back, for any worker of this process.
    lane: Arc<domains::Lane<Ready>>,
    /// The workers of this pass, to know when all of them are idle.
    crew: Arc<Crew>,
    progress: Arc<dyn Progress>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    max_attempts: u32,
    retry_base: Duration,
    claim_size: i64,
    /// `[frequency]`, unless the campaign is transactional.
    cap: Option<FrequencyCap>,
    /// `[warmup]`, and when the day whose budget a claim found spent ends.
    warmup: Option<Arc<crate::domain::warmup::Plan>>,
    warm_blocked: Arc<std::sync::atomic::AtomicI64>,
}

fn skip_reason_for(status: &str) -> Option<SkipReason> {
    match status {
        "active" => None,
        "unsubscribed" => Some(SkipReason::Unsubscribed),
        "bounced" => Some(SkipReason::Bounced),
        "complained" => Some(SkipReason::Complained),
        "erased" => Some(SkipReason::Erased),
        "sunset" => Some(SkipReason::Sunset),
        _ => Some(SkipReason::Unsubscribed),
    }
}

async fn worker(ctx: WorkerCtx) -> Result<(), SendError> {
    let mut smtp = match &ctx.transport {
        Transport::Smtp(s) => Some(SmtpClient::new(s)),
        Transport::Outbox(_) => None,
    };
    let mut unwritten = VecDeque::with_capacity(IN_FLIGHT);
    let result = work(&ctx, &mut smtp, &mut unwritten).await;
    if let Some(c) = smtp.as_mut() {
        c.quit().await;
    }
    // The last result must be in the database before the worker counts as done.
    for last in unwritten {
        last.written().await.map_err(SendError::Record)?;
    }
    result
}

/// Hands a result to the recorder, then waits for the oldest of this
/// worker's unwritten results while `IN_FLIGHT - 1` remain: with the message
/// on the wire, at most `IN_FLIGHT` are accepted and unrecorded at any time.
async fn hand_over(
    ctx: &WorkerCtx,
    unwritten: &mut VecDeque<Pending>,
    row: &Claimed,
    outcome: Outcome,
    at: Millis,
) -> Result<(), SendError> {
    let pending = ctx.recorder.submit(row.id, outcome, at).await;
    unwritten.push_back(pending);
    while unwritten.len() >= IN_FLIGHT {
        if let Some(oldest) = unwritten.pop_front() {
            oldest.written().await.map_err(SendError::Record)?;
        }
    }
    Ok(())
}

/// A claimed batch, checked against suppression again and rendered.
struct Prepared {
    skipped: Vec<(Claimed, SkipReason)>,
    composed: Vec<(Claimed, Result<Composed, RenderError>)>,
    /// Rows of the batch taken over from a worker whose lease expired.
    taken_over: u64,
}

/// What claiming and preparing a batch needs, owned (it runs as its own task
/// while the worker delivers the batch before).
struct Batch {
    store: Store,
    composer: Arc<Composer>,
    campaign_id: i64,
    run_id: i64,
    list_id: i64,
    claim_size: i64,
    lease: Arc<Lease>,
    cap: Option<FrequencyCap>,
    warmup: Option<Arc<crate::domain::warmup::Plan>>,
    warm_blocked: Arc<std::sync::atomic::AtomicI64>,
}

/// Claims the next batch, re-checks each contact (state may have changed
/// since the snapshot, or the frequency cap been reached) and renders and
/// signs the rest on the blocking pool.
async fn prepare(job: Batch) -> Result<Prepared, SendError> {
    let Batch {
        store,
        composer,
        campaign_id,
        run_id,
        list_id,
        claim_size,
        lease,
        cap,
        warmup,
        warm_blocked,
    } = job;
    let worker = worker_identity();
    let now = lease.now();
    let lease_until = lease.until_from(now);
    // The warm-up plan's day: its budget is reserved before the claim, and
    // what is not sent is given back below.
    let day = warmup.as_ref().and_then(|p| p.day(now));
    let want = match &day {
        Some(d) => {
            let got =
                crate::store::warmup::reserve(&store, &d.key, d.cap, claim_size as u64).await?;
            if got == 0 {
                warm_blocked.store(d.ends_at, Ordering::Relaxed);
                return Ok(Prepared {
                    skipped: Vec::new(),
                    composed: Vec::new(),
                    taken_over: 0,
                });
            }
            got as i64
        }
        None => claim_size,
    };
    let mut batch = sends::claim(&store, run_id, worker, want, lease_until, now).await?;
    if let Some(d) = &day {
        crate::store::warmup::give_back(
            &store,
            &d.key,
            (want as u64).saturating_sub(batch.len() as u64),
        )
        .await?;
    }
    // The rows claimed before hold older leases: bring them to the same
    // time before saying the lease holds until then. Confirming the new
    // claim's lease alone let older rows lapse while `holds` said yes, and
    // another node sent them a second time (four nodes under load: 29 of
    // 154 in the window).
    sends::renew(&store, run_id, worker, lease_until).await?;
    lease.confirmed(lease_until);
    let taken_over = batch.iter().filter(|r| r.taken_over).count() as u64;
    // Each row's random Message-ID is stored before its first attempt.
    let mut fresh = Vec::new();
    for row in batch.iter_mut().filter(|r| r.message_id.is_none()) {
        let mid = composer.new_message_id();
        fresh.push((row.id, mid.clone()));
        row.message_id = Some(mid);
    }
    sends::assign_message_ids(&store, &fresh).await?;
    if batch.is_empty() {
        return Ok(Prepared {
            skipped: Vec::new(),
            composed: Vec::new(),
            taken_over,
        });
    }
    let ids: Vec<i64> = batch.iter().map(|r| r.contact_id).collect();
    let contacts = crate::store::contacts::find_many(&store, &ids).await?;
    let subscribed = sends::subscribed_among(&store, list_id, &ids).await?;
    let capped = match cap {
        Some(cap) => sends::capped_among(&store, run_id, &ids, cap, now).await?,
        None => Default::default(),
    };
    let mut skipped = Vec::new();
    let mut to_render = Vec::with_capacity(batch.len());
    for row in batch {
        let verdict = match contacts.get(&row.contact_id) {
            None => Some(SkipReason::Erased),
            Some(c) => skip_reason_for(&c.status)
                .or_else(|| {
                    (!subscribed.contains(&row.contact_id)).then_some(SkipReason::NoConsent)
                })
                .or_else(|| {
                    capped
                        .contains(&row.contact_id)
                        .then_some(SkipReason::FrequencyCap)
                }),
        };
        match verdict {
            Some(reason) => skipped.push((row, reason)),
            None => to_render.push(row),
        }
    }
    if let Some(d) = &day {
        crate::store::warmup::give_back(&store, &d.key, skipped.len() as u64).await?;
    }
    // Rendering and DKIM signing are CPU work: keep them off the async threads.
    let contacts: HashMap<i64, Contact> = contacts;
    let composed = tokio::task::spawn_blocking(move || {
        to_render
            .into_iter()
            .map(|row| {
                let c = contacts.get(&row.contact_id).expect("checked above");
                let m = composer.compose(campaign_id, &row, c);
                (row, m)
            })
            .collect()
    })
    .await
    .map_err(|e| SendError::Config(format!("render task failed: {e}")))?;
    Ok(Prepared {
        skipped,
        composed,
        taken_over,
    })
}

/// A 5xx from the server is a bounce given at once: classified and applied
/// like a bounce mail (`feedback::refusal`), before the result is recorded,
/// so a kill in between leaves the contact suppressed and the row skipped on
/// resume rather than mailed again.
async fn refused(
    ctx: &WorkerCtx,
    row: &Claimed,
    code: Option<u16>,
    reply: &str,
    now: Millis,
) -> Result<(), SendError> {
    let refusal = crate::feedback::refusal::Refusal {
        send_id: row.id,
        campaign_id: ctx.campaign_id,
        contact_id: row.contact_id,
        recipient: &row.email,
        code,
        reply,
    };
    let applied = crate::feedback::refusal::apply(&ctx.store, &ctx.policy, &refusal, now).await?;
    if applied.new_status.is_some() {
        ctx.suppressed.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(
        send = row.id,
        kind = applied.record.kind.as_str(),
        reason = applied.record.reason.as_str(),
        status = applied.new_status.as_deref().unwrap_or("unchanged"),
        "the server refused a message"
    );
    Ok(())
}

/// A stand-in send row for rendering outside a send (checks, previews).
pub fn preview_row(c: &Contact) -> Claimed {
    Claimed {
        id: 0,
        contact_id: c.id,
        email: c.email.clone(),
        attempts: 0,
        created_at: 0,
        message_id: None,
        taken_over: false,
    }
}

/// Renders the message of every contact the campaign would mail (matching
/// its segment, with consent for its list when the list exists) and returns
/// how many rendered and who did not, with why. Renders are cheap; nothing
/// is written.
pub async fn check_renders(
    store: &Store,
    composer: &Composer,
    list: &str,
    filter: &SegmentFilter,
) -> Result<(u64, Vec<RenderFailure>), SendError> {
    let list_id = list_id_of(store, list).await?;
    let rows = sends::preview(store, list_id.unwrap_or(-1), filter, None).await?;
    let mut ok = 0;
    let mut failures = Vec::new();
    for chunk in rows.chunks(500) {
        // Without the list yet, every contact of the segment is checked.
        let ids: Vec<i64> = chunk
            .iter()
            .filter(|(_, reason)| reason.is_none() || list_id.is_none())
            .map(|(id, _)| *id)
            .collect();
        let contacts = crate::store::contacts::find_many(store, &ids).await?;
        for id in &ids {
            let Some(c) = contacts.get(id) else { continue };
            match composer.compose(0, &preview_row(c), c) {
                Ok(_) => ok += 1,
                Err(e) => failures.push(RenderFailure::new(c, &e)),
            }
        }
    }
    Ok((ok, failures))
}

/// How old the last suppression check of a batch may be when its next
/// message goes to the server: the window in which an unsubscribe recorded
/// during a send can still be missed (docs/SENDING.md). One query a batch
/// per interval, not one per message.
const SUPPRESSION_RECHECK: Duration = Duration::from_secs(1);

/// Times in a row a connection may drop during one message, with the
/// server reachable again each time, before the message is deferred (and the
/// drop counted as the server's answer): a message that makes a server hang
/// up must not be retried forever.
const MAX_DROPS: u32 = 3;

/// A rendered message waiting to go out: the worker's own, or one the
/// domain gate held back into the lane.
pub(crate) struct Ready {
    row: Claimed,
    message: Composed,
}

/// How often a worker with nothing to do looks for due retries and held
/// messages while the other workers of the process still deliver.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// The workers of one pass, as far as ending it goes: a worker stops when
/// every one of them is idle and nothing is held back.
struct Crew {
    /// Workers not yet stopped: all of them from the start, so that one
    /// that finds nothing to claim before the others begin does not take
    /// itself for the last.
    live: std::sync::atomic::AtomicUsize,
    idle: std::sync::atomic::AtomicUsize,
}

impl Crew {
    fn new(workers: usize) -> Self {
        Self {
            live: workers.into(),
            idle: 0.into(),
        }
    }
}

/// A worker's place in the crew: it leaves the crew when dropped.
struct Member<'a> {
    crew: &'a Crew,
    idle: bool,
}

impl<'a> Member<'a> {
    fn join(crew: &'a Crew) -> Self {
        Self { crew, idle: false }
    }
    fn set_idle(&mut self, idle: bool) {
        if idle != self.idle {
            self.idle = idle;
            if idle {
                self.crew.idle.fetch_add(1, Ordering::SeqCst);
            } else {
                self.crew.idle.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    fn all_idle(&self) -> bool {
        self.crew.idle.load(Ordering::SeqCst) >= self.crew.live.load(Ordering::SeqCst)
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.set_idle(false);
        self.crew.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The suppression check right before delivery, reused for at most
/// `SUPPRESSION_RECHECK` for the contacts it covered.
#[derive(Default)]
struct Recheck {
    at: Option<Instant>,
    covered: std::collections::HashSet<i64>,
    gone: HashMap<i64, SkipReason>,
}

impl Recheck {
    /// Why `contact` may no longer be mailed, if so. A new check covers
    /// `contact` and the next ready messages (`others`).
    async fn reason(
        &mut self,
        ctx: &WorkerCtx,
        contact: i64,
        others: impl FnOnce() -> Vec<i64>,
    ) -> Result<Option<SkipReason>, SendError> {
        let stale = self.at.is_none_or(|at| at.elapsed() >= SUPPRESSION_RECHECK);
        if stale || !self.covered.contains(&contact) {
            let ids: Vec<i64> = std::iter::once(contact).chain(others()).collect();
            self.gone = sends::suppressed_among(&ctx.store, ctx.list_id, &ids).await?;
            self.covered = ids.into_iter().collect();
            self.at = Some(Instant::now());
        }
        Ok(self.gone.get(&contact).copied())
    }
}

async fn work(
    ctx: &WorkerCtx,
    smtp: &mut Option<SmtpClient>,
    unwritten: &mut VecDeque<Pending>,
) -> Result<(), SendError> {
    // The next batch is claimed and rendered while this one is delivered:
    // rendering is most of the CPU a message costs, and done in turn with
    // delivery it left the connection idle and the cores half used.
    let prepare_next = |ctx: &WorkerCtx| {
        tokio::spawn(prepare(Batch {
            store: ctx.store.clone(),
            composer: ctx.composer.clone(),
            campaign_id: ctx.campaign_id,
            run_id: ctx.run_id,
            list_id: ctx.list_id,
            claim_size: ctx.claim_size,
            lease: ctx.lease.clone(),
            cap: ctx.cap,
            warmup: ctx.warmup.clone(),
            warm_blocked: ctx.warm_blocked.clone(),
        }))
    };
    let mut next = Some(prepare_next(ctx));
    let result = deliver_batches(ctx, smtp, unwritten, &mut next, prepare_next).await;
    // A batch being prepared holds claims: let it finish, so that the rows
    // it claimed are released with the rest when the send stops.
    if let Some(task) = next {
        let _ = task.await;
    }
    result
}

/// A worker's loop. It delivers the oldest ready message of the process
/// whose domain the gate admits (`domains.rs`); when none is admitted it
/// adds its next claimed batch to the ready messages, and when there is no
/// more to claim it takes held-back messages beyond the slow-domain limit
/// (the fixed limits still hold). An idle worker keeps claiming (due
/// retries) while the others deliver, and stops when all are idle and
/// nothing is ready.
async fn deliver_batches(
    ctx: &WorkerCtx,
    smtp: &mut Option<SmtpClient>,
    unwritten: &mut VecDeque<Pending>,
    next: &mut Option<tokio::task::JoinHandle<Result<Prepared, SendError>>>,
    prepare_next: impl Fn(&WorkerCtx) -> tokio::task::JoinHandle<Result<Prepared, SendError>>,
) -> Result<(), SendError> {
    let mut recheck = Recheck::default();
    let mut member = Member::join(&ctx.crew);
    // When this worker last found nothing to claim.
    let mut claimed_nothing: Option<Instant> = None;
    while !ctx.stop.load(Ordering::Relaxed) {
        if next.is_none() && claimed_nothing.is_none_or(|t| t.elapsed() >= IDLE_POLL) {
            *next = Some(prepare_next(ctx));
        }
        if let Some((_, ready, permit)) = ctx.lane.take(&ctx.gate, true) {
            member.set_idle(false);
            if !deliver(ctx, smtp, unwritten, &mut recheck, ready, permit).await? {
                return Ok(());
            }
            continue;
        }
        if let Some(task) = next.take() {
            let Prepared {
                skipped,
                composed,
                taken_over,
            } = task
                .await
                .map_err(|e| SendError::Config(format!("render task failed: {e}")))??;
            ctx.in_flight.fetch_add(taken_over, Ordering::Relaxed);
            if skipped.is_empty() && composed.is_empty() {
                claimed_nothing = Some(Instant::now());
            } else {
                member.set_idle(false);
                claimed_nothing = None;
                *next = Some(prepare_next(ctx));
                queue(ctx, unwritten, skipped, composed).await?;
                continue;
            }
        }
        // Nothing to claim: help with what the gate held back.
        if let Some((_, ready, permit)) = ctx.lane.take(&ctx.gate, false) {
            member.set_idle(false);
            if !deliver(ctx, smtp, unwritten, &mut recheck, ready, permit).await? {
                return Ok(());
            }
            continue;
        }
        member.set_idle(true);
        if member.all_idle() && ctx.lane.is_empty() {
            break;
        }
        // Others still deliver, or held messages wait for a fixed limit:
        // look again soon, claiming retries that fall due meanwhile.
        tokio::time::sleep(IDLE_POLL).await;
    }
    Ok(())
}

/// A claimed batch into the ready messages: skips and render failures are
/// recorded at once; a message for a domain held back with
/// `LANE_PER_DOMAIN` waiting already goes back to the database until about
/// when the ones ahead of it are done (not an attempt).
async fn queue(
    ctx: &WorkerCtx,
    unwritten: &mut VecDeque<Pending>,
    skipped: Vec<(Claimed, SkipReason)>,
    composed: Vec<(Claimed, Result<Composed, RenderError>)>,
) -> Result<(), SendError> {
    for (row, reason) in skipped {
        hand_over(
            ctx,
            unwritten,
            &row,
            Outcome::Skipped(reason),
            ctx.clock.now(),
        )
        .await?;
        ctx.progress.advance(1);
    }
    for (row, message) in composed {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // One contact's data broke the template: fail that
                // message with the reason, keep the others going.
                let failure = RenderFailure {
                    contact: row.email.clone(),
                    error: with_template_place(&e),
                };
                let outcome = Outcome::Failed {
                    code: None,
                    reply: format!("{RENDER_FAILED}{}", failure.error),
                };
                if let Ok(mut all) = ctx.render_failures.lock() {
                    all.push(failure);
                }
                hand_over(ctx, unwritten, &row, outcome, ctx.clock.now()).await?;
                ctx.progress.advance(1);
                continue;
            }
        };
        let domain = domains::domain_of(&row.email);
        if let Err((ready, held, waiting)) =
            ctx.lane.push(&ctx.gate, domain, Ready { row, message })
        {
            let now = ctx.clock.now();
            let wait = (held.retry_in.max(Duration::from_secs(1)) * waiting as u32)
                .min(Duration::from_secs(300));
            let outcome = Outcome::Deferred {
                code: None,
                reply: held.reason,
                retry_at: now + wait.as_millis() as i64,
                counted: false,
            };
            hand_over(ctx, unwritten, &ready.row, outcome, now).await?;
        }
    }
    Ok(())
}

/// Delivers one message under its domain's permit and hands the result to
/// the recorder. `Ok(false)`: another worker stopped the send meanwhile.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    ctx: &WorkerCtx,
    smtp: &mut Option<SmtpClient>,
    unwritten: &mut VecDeque<Pending>,
    recheck: &mut Recheck,
    ready: Ready,
    permit: domains::Permit,
) -> Result<bool, SendError> {
    let Ready { row, message } = ready;
    ctx.limiter.wait().await;
    let mut drops = 0;
    let attempt = loop {
        // After the rate limit's wait and after any reconnection: right
        // before the message goes out.
        if !ctx.lease.holds(ctx.clock.now()) {
            return Err(SendError::LeaseLost {
                secs: ctx.lease.length.as_secs(),
            });
        }
        if let Some(reason) = recheck
            .reason(ctx, row.contact_id, || {
                ctx.lane
                    .peek(CLAIM_BATCH as usize, |r: &Ready| r.row.contact_id)
            })
            .await?
        {
            break Err(reason);
        }
        let started = Instant::now();
        let attempt = match (&ctx.transport, smtp.as_mut()) {
            (Transport::Smtp(_), Some(client)) => {
                client.deliver(&message.envelope, &message.bytes).await
            }
            (Transport::Outbox(dir), _) => {
                outbox::write(dir, &ctx.composer.campaign.slug, row.id, &message)?
            }
            (Transport::Smtp(_), None) => {
                unreachable!("an SMTP worker always has a client")
            }
        };
        // No answer for this recipient: not an attempt. Reconnect
        // (waiting out an outage) and deliver the same message again.
        if let (Attempt::Connection { reason }, Some(client), Some(outage)) =
            (&attempt, smtp.as_mut(), &ctx.outage)
        {
            drops += 1;
            if drops >= MAX_DROPS {
                break Ok(attempt);
            }
            if !outage.reconnect(client, reason.clone(), &ctx.stop).await? {
                // Another worker stopped the send; this row is
                // released with the other claims.
                return Ok(false);
            }
            continue;
        }
        // The domain's pace, for the gate: how long the server took to
        // answer for this recipient (a timeout counts in full).
        permit.answered(started.elapsed());
        break Ok(attempt);
    };
    drop(permit);
    let attempt = match attempt {
        Ok(a) => a,
        Err(reason) => {
            hand_over(
                ctx,
                unwritten,
                &row,
                Outcome::Skipped(reason),
                ctx.clock.now(),
            )
            .await?;
            ctx.progress.advance(1);
            return Ok(true);
        }
    };
    let now = ctx.clock.now();
    // Attempts including this one, when the server answered.
    let tried = row.attempts + 1;
    let retry_at = |attempts: i64| {
        let exp = (attempts.max(1) - 1).min(16) as u32;
        now + (ctx.retry_base.as_millis() as i64).saturating_mul(1i64 << exp)
    };
    let outcome = match attempt {
        Attempt::Accepted { code, reply } => Outcome::Accepted {
            message_id: message.message_id.clone(),
            code,
            reply,
        },
        Attempt::Permanent { code, reply } => {
            if code.is_some() {
                refused(ctx, &row, code, &reply, now).await?;
            }
            Outcome::Failed { code, reply }
        }
        Attempt::Transient { code, reply } if tried >= i64::from(ctx.max_attempts) => {
            Outcome::Failed {
                code,
                reply: format!("{reply} (gave up after {tried} attempts)"),
            }
        }
        Attempt::Transient { code, reply } => Outcome::Deferred {
            code,
            reply,
            retry_at: retry_at(tried),
            counted: true,
        },
        // The server was reached and left this recipient unanswered past
        // its timeout: a deferral that counts, so that a domain that hangs
        // on every message is not retried forever.
        Attempt::TimedOut { reason } if tried >= i64::from(ctx.max_attempts) => Outcome::Failed {
            code: None,
            reply: format!("{reason} (gave up after {tried} attempts)"),
        },
        Attempt::TimedOut { reason } => Outcome::Deferred {
            code: None,
            reply: reason,
            retry_at: retry_at(tried),
            counted: true,
        },
        // The server was reachable, yet hung up on this message MAX_DROPS
        // times: that is its answer, and it counts.
        Attempt::Connection { reason } => Outcome::Deferred {
            code: None,
            reply: format!("{reason} (the connection dropped {drops} times on this message)"),
            retry_at: retry_at(tried),
            counted: true,
        },
    };
    let done = !matches!(outcome, Outcome::Deferred { .. });
    if matches!(outcome, Outcome::Accepted { .. }) {
        ctx.sent.fetch_add(1, Ordering::Relaxed);
    }
    hand_over(ctx, unwritten, &row, outcome, now).await?;
    if done {
        ctx.progress.advance(1);
    }
    Ok(true)
}

/// What a real run would do now, writing nothing. For a campaign not yet
/// started: the snapshot it would take, each recipient rendered. For one
/// already started (a resume): the rows as they stand, the open ones checked
/// against suppression again and rendered; deferred rows not yet due stay
/// deferred.
async fn dry_run(
    store: &Store,
    composer: &Composer,
    list_id: i64,
    filter: &SegmentFilter,
    transport: &Transport,
    started: Instant,
) -> Result<SendReport, SendError> {
    let mut tally = Tally::default();
    let mut render_failures = Vec::new();
    let mut already_started = false;
    let existing = crate::store::campaigns::find(store, &composer.campaign.slug).await?;
    if let Some(row) = existing.filter(|r| r.started_at.is_some()) {
        already_started = true;
        let now = crate::domain::time::now_millis();
        let stored = sends::tally(store, row.id).await?;
        tally.accepted = stored.accepted;
        tally.failed = stored.failed;
        tally.skipped = stored.skipped;
        let open = sends::open_rows(store, row.id).await?;
        for chunk in open.chunks(500) {
            let ids: Vec<i64> = chunk.iter().map(|r| r.contact_id).collect();
            let gone = sends::suppressed_among(store, list_id, &ids).await?;
            let contacts = crate::store::contacts::find_many(store, &ids).await?;
            for r in chunk {
                if let Some(reason) = gone.get(&r.contact_id) {
                    *tally.skipped.entry(reason.as_str().into()).or_default() += 1;
                    continue;
                }
                if r.state == "deferred" && r.next_attempt_at.is_some_and(|t| t > now) {
                    tally.deferred += 1;
                    continue;
                }
                let Some(c) = contacts.get(&r.contact_id) else {
                    continue;
                };
                let claimed = Claimed {
                    id: r.id,
                    contact_id: r.contact_id,
                    email: r.email.clone(),
                    attempts: r.attempts,
                    created_at: r.created_at,
                    message_id: None,
                    taken_over: false,
                };
                match composer.compose(row.id, &claimed, c) {
                    Ok(_) => tally.pending += 1,
                    Err(e) => {
                        tally.failed += 1;
                        render_failures.push(RenderFailure::new(c, &e));
                    }
                }
            }
        }
    } else {
        let rows = sends::preview(store, list_id, filter, None).await?;
        for chunk in rows.chunks(500) {
            let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
            let contacts = crate::store::contacts::find_many(store, &ids).await?;
            for (id, reason) in chunk {
                if let Some(r) = reason {
                    *tally.skipped.entry(r.clone()).or_default() += 1;
                    continue;
                }
                let Some(c) = contacts.get(id) else { continue };
                let row = Claimed {
                    id: 0,
                    contact_id: *id,
                    email: c.email.clone(),
                    attempts: 0,
                    created_at: 0,
                    message_id: None,
                    taken_over: false,
                };
                match composer.compose(0, &row, c) {
                    Ok(_) => tally.pending += 1,
                    Err(e) => {
                        tally.failed += 1;
                        render_failures.push(RenderFailure::new(c, &e));
                    }
                }
            }
        }
    }
    Ok(SendReport {
        campaign: composer.campaign.slug.clone(),
        started_now: !already_started,
        in_flight_resent: 0,
        picked_up_again: 0,
        sent_this_run: 0,
        suppressed_by_refusals: 0,
        tally,
        render_failures,
        elapsed_secs: started.elapsed().as_secs_f64(),
        waiting_secs: 0.0,
        transport: transport.describe(),
        dry_run: true,
        halted: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ManualClock(std::sync::atomic::AtomicI64);
    impl Clock for ManualClock {
        fn now(&self) -> Millis {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_lease_holds_until_it_expires_and_a_renewal_extends_it() {
        let clock = Arc::new(ManualClock(1_000.into()));
        let lease = Lease::new(Duration::from_secs(30), clock.clone());
        assert!(!lease.holds(clock.now()), "nothing claimed yet");
        lease.confirmed(lease.until_from(clock.now()));
        clock.0.store(30_999, Ordering::SeqCst);
        assert!(lease.holds(clock.now()));
        clock.0.store(31_000, Ordering::SeqCst);
        assert!(!lease.holds(clock.now()), "expired at claim + 30 s");
        // A renewal at 20 s holds to 50 s; an older confirmation arriving
        // late never shortens it.
        lease.confirmed(lease.until_from(20_000));
        lease.confirmed(lease.until_from(1_000));
        clock.0.store(49_999, Ordering::SeqCst);
        assert!(lease.holds(clock.now()));
        clock.0.store(50_000, Ordering::SeqCst);
        assert!(!lease.holds(clock.now()));
    }

    #[test]
    fn the_worker_identity_is_one_uuid_per_process() {
        let id = worker_identity();
        assert_eq!(id, worker_identity());
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4', "version 4: {id}");
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn claims_shrink_under_a_low_rate_limit() {
        assert_eq!(claim_size(0.0, 4), CLAIM_BATCH);
        assert_eq!(claim_size(10_000.0, 4), CLAIM_BATCH);
        // 1 message/s over 4 workers: two batches of 9 take 72 s, a
        // quarter of the lease.
        assert_eq!(claim_size(1.0, 4), 9);
        assert_eq!(claim_size(0.01, 4), 1);
    }
}
