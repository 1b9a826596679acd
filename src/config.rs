//! `cartero.toml`: load, validate, apply `CARTERO_*` environment overrides.
//!
//! Every key and its default is listed in docs/CONFIG.md. Unknown keys are an
//! error with file:line:col, so a typo never silently falls back to a default.
//! An override `CARTERO_<SECTION>_<KEY>` (e.g. `CARTERO_SMTP_PASSWORD`,
//! `CARTERO_DATABASE_URL`) replaces the key of that section.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub project: ProjectConfig,
    pub smtp: Option<SmtpConfig>,
    pub outbox: OutboxConfig,
    pub sender: SenderConfig,
    pub dkim: Option<DkimConfig>,
    pub feedback: FeedbackConfig,
    pub policy: PolicyConfig,
    pub dns: DnsConfig,
    pub hygiene: HygieneConfig,
    pub compliance: ComplianceConfig,
    /// `cartero serve`; absent: no server, so messages carry no tracking
    /// and no one-click unsubscribe (docs/SERVE.md).
    pub serve: Option<ServeConfig>,
    /// `[lists.NAME]`: the lists people may sign up to, and how each is
    /// tracked (docs/TRACKING.md).
    pub lists: std::collections::BTreeMap<String, ListConfig>,
    /// `[signup]`: the double opt-in confirmation mail and the form limits.
    pub signup: SignupConfig,
    /// `[schedule]`: `cartero serve`'s scheduler (docs/SCHEDULING.md).
    pub schedule: ScheduleConfig,
    /// `[frequency]`: at most so many campaign messages per contact per
    /// period, across campaigns and journeys (docs/SCHEDULING.md).
    pub frequency: FrequencyConfig,
    /// `[warmup]`: daily caps rising over the first weeks of a new sending
    /// IP or domain (docs/SENDING.md).
    pub warmup: WarmupConfig,
    /// Where the file was read from; relative paths in it resolve against its folder.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
}
impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://cartero.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    pub campaigns_dir: PathBuf,
    pub templates_dir: PathBuf,
}
impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            campaigns_dir: "campaigns".into(),
            templates_dir: "templates".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection, upgraded with STARTTLS when the server offers it.
    Opportunistic,
    /// STARTTLS is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Never TLS: loopback relays and tests only.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Name sent in EHLO; defaults to the machine's host name.
    pub helo_name: Option<String>,
    /// Parallel SMTP connections, one per worker.
    pub concurrency: usize,
    /// Global ceiling in messages per second; 0 means unlimited.
    pub rate_limit: f64,
    /// Connecting, and waiting for the reply to each command.
    pub timeout_secs: u64,
    /// Waiting for the reply after a message's content (the end of DATA):
    /// the server may check the message before it answers.
    pub data_timeout_secs: u64,
    /// A recipient domain whose messages take longer than this on average
    /// is slow, and gets at most `slow_domain_connections` messages in
    /// flight while other domains have work (`send::domains`). 0: off.
    pub slow_domain_ms: u64,
    /// Messages in flight at once to a slow domain while other work waits.
    pub slow_domain_connections: usize,
    /// Fixed limits per recipient domain: `[smtp.domains."example.com"]`.
    pub domains: std::collections::BTreeMap<String, DomainLimit>,
    /// Attempts before a message that keeps getting 4xx is failed.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub retry_base_secs: u64,
    /// Send MAIL, RCPT and DATA in one write when the server offers
    /// PIPELINING (RFC 2920). Off only to work around a broken server.
    pub pipelining: bool,
    /// PEM file of extra CA certificates for STARTTLS and implicit TLS (a
    /// relay with a private CA); the Mozilla roots are always trusted.
    pub ca_file: Option<PathBuf>,
    /// How long a send keeps retrying a server it cannot reach before it
    /// stops (resumable, exit status 4).
    pub outage_timeout_secs: u64,
    /// How long a claim on a send row is honoured without renewal: a live
    /// process renews its claims every third of it; the rows of a process
    /// that died are taken over by any other once it has passed.
    pub lease_secs: u64,
}
impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 25,
            tls: TlsMode::Opportunistic,
            username: None,
            password: None,
            helo_name: None,
            concurrency: 4,
            rate_limit: 0.0,
            timeout_secs: 30,
            data_timeout_secs: 120,
            slow_domain_ms: 1000,
            slow_domain_connections: 1,
            domains: Default::default(),
            max_attempts: 5,
            retry_base_secs: 60,
            pipelining: true,
            ca_file: None,
            outage_timeout_secs: 300,
            lease_secs: 30,
        }
    }
}

/// Fixed limits for one recipient domain (`[smtp.domains."example.com"]`),
/// for a receiver that asks for them; a domain not named has none beyond
/// the adaptive limit for slow domains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainLimit {
    /// Messages to the domain in flight at once across this process's
    /// workers; 0 is no limit.
    pub max_connections: usize,
    /// Messages started to the domain per minute; 0 is no limit.
    pub per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    pub dir: PathBuf,
}
impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            dir: "outbox".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderConfig {
    /// Domain of the VERP return path: `bounces+TOKEN@bounce_domain`.
    pub bounce_domain: String,
    /// Local part before the `+` of the VERP return path.
    pub bounce_local: String,
    /// Public base URL of `cartero serve` (unsubscribe links, tracking).
    pub base_url: String,
    /// Address for mailto: unsubscribes (List-Unsubscribe).
    pub unsubscribe_mailto: String,
    /// Right-hand side of generated Message-IDs.
    pub message_id_domain: String,
    /// Key for signing tracking and VERP tokens. Set it with CARTERO_SENDER_SECRET.
    pub secret: Secret,
    /// Id of `secret` written into every v1 token (0-255): give a new secret
    /// a new id and move the old one to `old_keys`.
    pub key_id: u8,
    /// Retired secrets that still verify links in mail already sent.
    pub old_keys: Vec<OldKeyConfig>,
}

/// A password or key from the configuration. It reads as a `str` where it
/// is used, and prints as `[redacted]` in `Debug`, so a configuration
/// logged or shown in an error never carries it. (The `secrecy` crate
/// would also hide it from the code that must use it; every use here is a
/// signature or a login, so only the printing needed closing.)
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Secret {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Secret {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// A retired signing key (`[[sender.old_keys]]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OldKeyConfig {
    pub id: u8,
    pub secret: Secret,
    /// RFC 3339 instant after which links signed with it stop working.
    pub verify_until: String,
}

impl std::fmt::Debug for OldKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OldKeyConfig")
            .field("id", &self.id)
            .field("verify_until", &self.verify_until)
            .finish_non_exhaustive()
    }
}

/// The secret in the example `cartero.toml` of this repository: anyone can
/// read it, so `cartero serve` and sends over SMTP refuse it.
pub const EXAMPLE_SECRET: &str = "example-secret-change-me-0123456789";

/// How much of a client's IP address `cartero serve` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpStorage {
    Full,
    /// IPv4 /24, IPv6 /48.
    #[default]
    Truncated,
    None,
}

/// How a list's opens and clicks are recorded (docs/TRACKING.md, "Consent to track").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrackingMode {
    /// No pixel and no click rewriting in its messages.
    None,
    /// Counts per campaign and link; no event tied to a person.
    #[default]
    Aggregate,
    /// Tied to the person only with their consent to track (a ledger
    /// purpose of its own); aggregate without it.
    Personal,
}

impl TrackingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Aggregate => "aggregate",
            Self::Personal => "personal",
        }
    }
}

/// `[lists.NAME]`: a list that sign-up forms may name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListConfig {
    /// Accept `POST /subscribe` for this list.
    pub signup: bool,
    /// The consent text the form shows; its SHA-256 is the text version
    /// recorded with each confirmation.
    pub consent_text: String,
    pub tracking: TrackingMode,
}
impl Default for ListConfig {
    fn default() -> Self {
        Self {
            signup: true,
            consent_text: String::new(),
            tracking: TrackingMode::default(),
        }
    }
}

/// `[schedule]`: the scheduler inside `cartero serve` (docs/SCHEDULING.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Whether `cartero serve` sends campaigns with `schedule` or `send_at`.
    /// Every node may: an occurrence runs once, its rows are claimed once.
    pub enabled: bool,
    /// Seconds between looks at the campaign files and the open runs.
    pub interval_secs: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 15,
        }
    }
}

/// `[frequency]`: the frequency cap. A message that would be a contact's
/// `max_messages + 1`-th in `period_days` is skipped (reason
/// `frequency_cap`); campaigns marked `transactional = true` neither count
/// nor are capped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrequencyConfig {
    /// 0: no cap.
    pub max_messages: u32,
    pub period_days: u32,
}

impl Default for FrequencyConfig {
    fn default() -> Self {
        Self {
            max_messages: 0,
            period_days: 7,
        }
    }
}

impl FrequencyConfig {
    /// The cap in force, if any.
    pub fn cap(&self) -> Option<crate::domain::send::FrequencyCap> {
        (self.max_messages > 0 && self.period_days > 0).then(|| crate::domain::send::FrequencyCap {
            max: self.max_messages,
            period_ms: i64::from(self.period_days) * 86_400_000,
        })
    }
}

/// `[warmup]`: the warm-up plan of a new sending IP or domain: on day N of
/// the plan (counted from `start` in `timezone`) at most `daily[N-1]`
/// messages leave, across every campaign, journey and node; after the last
/// day there is no cap. Checked by `send::warmup::Plan::from_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupConfig {
    /// The plan's first day, `YYYY-MM-DD`; absent: no plan.
    pub start: Option<String>,
    pub daily: Vec<u64>,
    pub timezone: String,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            start: None,
            daily: Vec::new(),
            timezone: "UTC".into(),
        }
    }
}

/// `[signup]`: the confirmation mail of double opt-in and the form's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupConfig {
    /// From of the confirmation mail; empty: sign-up is off.
    pub from: String,
    pub subject: String,
    /// Templates in `project.templates_dir` that replace the built-in mail
    /// (Tera; `confirm_url`, `list`, `name`).
    pub html_template: Option<PathBuf>,
    pub text_template: Option<PathBuf>,
    /// Sign-ups accepted per client IP per hour, counted in the database
    /// across every node.
    pub max_per_ip_per_hour: u32,
    /// `cartero serve` deletes sign-ups left unconfirmed this many days
    /// (`signup purge`), every hour; 0: never (the default).
    pub purge_pending_after_days: u32,
}
impl Default for SignupConfig {
    fn default() -> Self {
        Self {
            from: String::new(),
            subject: "Please confirm your subscription".into(),
            html_template: None,
            text_template: None,
            max_per_ip_per_hour: 20,
            purge_pending_after_days: 0,
        }
    }
}

/// `[serve]`: the recipients' HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address and port to listen on.
    pub listen: String,
    pub ip_storage: IpStorage,
    /// Add an open pixel to HTML bodies.
    pub track_opens: bool,
    /// Route links through the click redirect.
    pub track_clicks: bool,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// A request taking longer is answered 408.
    pub request_timeout_secs: u64,
    /// Opens and clicks waiting to be written.
    pub queue_capacity: usize,
    /// How long a hit that finds the queue full waits for room before it is
    /// counted as dropped (the response is the same either way), ms. A
    /// flood then slows its own clients down to what the writer stores
    /// instead of losing events; 0 never waits.
    pub queue_wait_ms: u64,
    /// Most events written in one transaction.
    pub batch_size: usize,
    /// CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Contact attributes a contact may correct in the preference centre
    /// (the name always may).
    pub editable_attributes: Vec<String>,
    /// Failed admin sign-ins (login form or `Authorization: Bearer`) a
    /// client IP, or a key, may have in one window before further attempts
    /// are answered 429. Counted in the database across every node.
    pub admin_login_max_failures: u32,
    /// The window of `admin_login_max_failures`, seconds (at most 3600).
    pub admin_login_window_secs: u64,
}
impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            ip_storage: IpStorage::Truncated,
            track_opens: true,
            track_clicks: true,
            max_body_bytes: 16 * 1024,
            request_timeout_secs: 10,
            queue_capacity: 65_536,
            queue_wait_ms: 2_000,
            batch_size: 1_000,
            trusted_proxies: Vec::new(),
            editable_attributes: Vec::new(),
            admin_login_max_failures: 10,
            admin_login_window_secs: 900,
        }
    }
}
impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            bounce_domain: "bounces.localhost".into(),
            bounce_local: "bounces".into(),
            base_url: "http://localhost:8080".into(),
            unsubscribe_mailto: "unsubscribe@bounces.localhost".into(),
            message_id_domain: "cartero.localhost".into(),
            secret: Secret::default(),
            key_id: 0,
            old_keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    pub domain: String,
    pub selector: String,
    /// PEM (PKCS#1 or PKCS#8) private key file.
    pub private_key: PathBuf,
    #[serde(default = "default_dkim_algorithm")]
    pub algorithm: DkimAlgorithm,
}
fn default_dkim_algorithm() -> DkimAlgorithm {
    DkimAlgorithm::Rsa
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailboxKind {
    Maildir,
    Mbox,
    Imap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapSecurity {
    Tls,
    Starttls,
    Plain,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    pub source: MailboxKind,
    /// Maildir directory or mbox file.
    pub path: PathBuf,
    pub imap_host: String,
    pub imap_port: u16,
    pub imap_security: ImapSecurity,
    pub imap_user: String,
    pub imap_password: Secret,
    pub imap_mailbox: String,
    /// IMAP folder processed messages are moved to; empty: flag them \Seen instead.
    pub imap_processed_folder: String,
    /// PEM file of extra CA certificates to trust for IMAP TLS (a private
    /// CA); the Mozilla roots are always trusted.
    pub imap_ca_file: Option<PathBuf>,
    /// Maildir++ folder (`.NAME` inside the Maildir) processed messages are
    /// moved to; empty: they stay and get the Maildir `S` (seen) flag.
    pub maildir_processed_folder: String,
    /// Folder (Maildir++ or IMAP) for messages that could not be handled;
    /// in a Maildir the reason is written beside them in `reasons/`.
    pub kept_aside_folder: String,
    /// Seconds between mailbox reads inside `cartero serve`.
    pub interval_secs: u64,
    /// What a report matched by address alone (no valid token, no random
    /// Message-ID) may do: `record` (held for an operator) or
    /// `suppress_if_authenticated` (suppress, never withdraw consent, when
    /// the address's own domain authenticated the report).
    pub address_match: AddressMatch,
    /// Messages larger than this are kept aside unread (bytes).
    pub max_message_bytes: u64,
    /// Reports naming more recipients than this are kept aside unapplied.
    pub max_recipients: usize,
    /// The authserv-id (RFC 8601 §2.5) of the MTA that delivers to the
    /// feedback mailbox: its Authentication-Results headers are trusted for
    /// SPF and DKIM. Empty: none is trusted (cartero checks DKIM itself).
    pub authserv_id: String,
}

/// `feedback.address_match` (docs/FEEDBACK.md, docs/SECURITY.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressMatch {
    /// Record and count, hold for `cartero feedback review`.
    #[default]
    Record,
    /// Suppress when DKIM or SPF of the address's own domain passed.
    SuppressIfAuthenticated,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            source: MailboxKind::Maildir,
            path: "bounces".into(),
            imap_host: "localhost".into(),
            imap_port: 993,
            imap_security: ImapSecurity::Tls,
            imap_user: String::new(),
            imap_password: Secret::default(),
            imap_mailbox: "INBOX".into(),
            imap_processed_folder: String::new(),
            imap_ca_file: None,
            maildir_processed_folder: "Processed".into(),
            kept_aside_folder: "KeptAside".into(),
            interval_secs: 300,
            address_match: AddressMatch::Record,
            // Real DSNs quoting a whole message with attachments stay whole.
            max_message_bytes: 10 * 1024 * 1024,
            max_recipients: 1000,
            authserv_id: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Soft bounces within `soft_bounce_window_days` that suppress a contact.
    pub soft_bounce_limit: u32,
    pub soft_bounce_window_days: u32,
}
impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            soft_bounce_limit: 3,
            soft_bounce_window_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `host:port` of name servers; empty: the system's resolv.conf.
    pub nameservers: Vec<String>,
    pub timeout_ms: u64,
    /// MX checks running at once.
    pub concurrency: usize,
}
impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_ms: 3000,
            concurrency: 32,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HygieneConfig {
    /// Extra disposable domains, one per line, added to the built-in list.
    pub disposable_list: Option<PathBuf>,
    /// Contacts with no open or click for this many days are sunset by `hygiene run --sunset`.
    pub sunset_days: Option<u32>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// HMAC-SHA256 key of the consent ledger, at least 32 characters; kept
    /// out of the database. Set it with CARTERO_COMPLIANCE_LEDGER_KEY.
    pub ledger_key: Option<String>,
    /// Keys used before a rotation: they verify the entries they signed.
    pub retired_ledger_keys: Vec<String>,
    /// Days the IP address and user agent of an event are kept; unset: kept.
    pub event_ip_retention_days: Option<u32>,
}

// Secrets never reach a log: the keys print as their count.
impl std::fmt::Debug for ComplianceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplianceConfig")
            .field("ledger_key", &self.ledger_key.as_ref().map(|_| "***"))
            .field("retired_ledger_keys", &self.retired_ledger_keys.len())
            .field("event_ip_retention_days", &self.event_ip_retention_days)
            .finish()
    }
}

impl ComplianceConfig {
    /// The ledger keys, `None` when no key is configured.
    pub fn ledger_keys(
        &self,
    ) -> Result<Option<crate::domain::ledger_key::LedgerKeys>, ConfigError> {
        let Some(key) = &self.ledger_key else {
            return Ok(None);
        };
        crate::domain::ledger_key::LedgerKeys::new(key, &self.retired_ledger_keys)
            .map(Some)
            .map_err(|message| ConfigError::Invalid {
                path: "compliance.ledger_key".into(),
                message,
            })
    }
}

/// The sections an environment override may name, longest first so that a
/// section whose name prefixes another's cannot steal its variables.
const SECTIONS: [&str; 13] = [
    "compliance",
    "schedule",
    "database",
    "project",
    "feedback",
    "hygiene",
    "sender",
    "outbox",
    "policy",
    "smtp",
    "dkim",
    "dns",
    "serve",
];

impl Config {
    /// Reads `path` if it exists (a missing file means all defaults), then
    /// applies `CARTERO_*` overrides from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CARTERO_"))
            .collect();
        let mut cfg = Self::from_str_with_env(&text, &path.display().to_string(), &env)?;
        cfg.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    pub fn from_str_with_env(
        text: &str,
        path: &str,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        // The file alone first, so its own mistakes are reported at line:col.
        let from_file: Config = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
        let mut applied = 0;
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("CARTERO_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) else {
                continue; // CARTERO_CONFIG, CARTERO_LOG and friends are not overrides
            };
            let key = &rest[section.len() + 1..];
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!("[{section}] in {path} is not a table"),
                });
            };
            // An override takes the type of the key it sets: kept as the
            // string it is when the key takes a string (a password of digits,
            // `true`, or with its own quotes), read as a TOML value (number,
            // boolean, array) only when a string does not fit the key.
            t.insert(key.to_string(), toml::Value::String(value.clone()));
            if toml::Value::Table(table.clone())
                .try_into::<Config>()
                .is_err()
                && let Some(toml::Value::Table(t)) = table.get_mut(*section)
            {
                t.insert(key.to_string(), env_value(value));
            }
            applied += 1;
        }
        let cfg = if applied == 0 {
            from_file
        } else {
            // Re-serialise so a bad override is reported by the same checks as the file.
            let merged = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
                path: path.into(),
                message: e.to_string(),
            })?;
            toml::from_str(&merged).map_err(|e| ConfigError::Invalid {
                path: format!("{path} (with CARTERO_* overrides)"),
                message: e.message().to_string(),
            })?
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.into(),
            message,
        };
        if let Some(smtp) = &self.smtp {
            if smtp.concurrency == 0 {
                return Err(invalid("smtp.concurrency must be at least 1".into()));
            }
            if smtp.rate_limit < 0.0 || !smtp.rate_limit.is_finite() {
                return Err(invalid(
                    "smtp.rate_limit must be 0 (unlimited) or positive".into(),
                ));
            }
            if smtp.slow_domain_connections == 0 {
                return Err(invalid(
                    "smtp.slow_domain_connections must be at least 1 (slow_domain_ms = 0 turns \
                     the limit off)"
                        .into(),
                ));
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err(invalid(
                    "smtp.username and smtp.password go together (set CARTERO_SMTP_PASSWORD)"
                        .into(),
                ));
            }
        }
        // A limit of 0 would keep every report aside unread.
        if self.feedback.max_message_bytes < 1024 {
            return Err(invalid(
                "feedback.max_message_bytes must be at least 1024 (default 10485760)".into(),
            ));
        }
        crate::domain::warmup::Plan::from_config(&self.warmup).map_err(invalid)?;
        if self.feedback.max_recipients == 0 {
            return Err(invalid(
                "feedback.max_recipients must be at least 1 (default 1000)".into(),
            ));
        }
        Ok(())
    }

    /// Resolves a path from the config against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The signing secret, or an error saying how to set one.
    pub fn secret(&self) -> Result<&[u8], ConfigError> {
        if self.sender.secret.len() < 16 {
            return Err(ConfigError::Invalid {
                path: "cartero.toml".into(),
                message:
                    "sender.secret must be set to at least 16 characters (CARTERO_SENDER_SECRET); \
                          it signs VERP and tracking tokens"
                        .into(),
            });
        }
        Ok(self.sender.secret.as_bytes())
    }
}

/// An override's value for a key that does not take a string: a TOML value
/// when it parses as one (numbers, booleans, arrays), otherwise the raw
/// string (which the key then refuses, with the override named).
fn env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// Turns a toml error into file:line:col, counting columns in characters.
pub fn toml_error(text: &str, path: &str, e: &toml::de::Error) -> ConfigError {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    ConfigError::Parse {
        path: path.into(),
        line,
        col,
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::from_str_with_env("", "cartero.toml", &[]).unwrap();
        assert_eq!(c.database.url, "sqlite://cartero.db");
        assert!(c.smtp.is_none());
    }

    /// A configuration printed with `{:?}` (a log line, an error's
    /// context) carries no password or key, from the file or the
    /// environment, and the secrets still read as themselves where used.
    #[test]
    fn debug_never_prints_a_secret() {
        let text = "[sender]\nsecret = \"file-secret-0123456789\"\n\
                    [[sender.old_keys]]\nid = 1\nsecret = \"old-secret-0123456789\"\nverify_until = \"2030-01-01T00:00:00Z\"\n\
                    [smtp]\nhost = \"x\"\nusername = \"u\"\n\
                    [feedback]\nimap_password = \"imap-secret-pw\"\n";
        let env = vec![(
            "CARTERO_SMTP_PASSWORD".to_string(),
            "smtp-secret-pw".to_string(),
        )];
        let c = Config::from_str_with_env(text, "cartero.toml", &env).unwrap();
        let shown = format!("{c:?}");
        for secret in ["file-secret", "old-secret", "imap-secret", "smtp-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("[redacted]"));
        assert_eq!(&*c.sender.secret, "file-secret-0123456789");
        assert_eq!(c.smtp.unwrap().password.as_deref(), Some("smtp-secret-pw"));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = "[smtp]\nhost = \"x\"\nprot = 25\n";
        let err = Config::from_str_with_env(text, "cartero.toml", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cartero.toml:3:1:"), "{msg}");
        assert!(msg.contains("prot"), "{msg}");
    }

    #[test]
    fn env_overrides_apply_with_types() {
        let env = vec![
            ("CARTERO_SMTP_PORT".to_string(), "2525".to_string()),
            ("CARTERO_SMTP_HOST".to_string(), "127.0.0.1".to_string()),
            (
                "CARTERO_SENDER_BOUNCE_DOMAIN".to_string(),
                "b.example".to_string(),
            ),
            ("CARTERO_CONFIG".to_string(), "elsewhere.toml".to_string()),
        ];
        let c = Config::from_str_with_env("", "cartero.toml", &env).unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(smtp.port, 2525);
        assert_eq!(smtp.host, "127.0.0.1");
        assert_eq!(c.sender.bounce_domain, "b.example");
    }

    #[test]
    fn env_overrides_take_the_type_of_their_key() {
        let env = vec![
            ("CARTERO_SMTP_USERNAME".to_string(), "true".to_string()),
            ("CARTERO_SMTP_PASSWORD".to_string(), "12345678".to_string()),
            (
                "CARTERO_SENDER_SECRET".to_string(),
                "\"quoted-secret-1234\"".to_string(),
            ),
            ("CARTERO_SMTP_PIPELINING".to_string(), "false".to_string()),
            (
                "CARTERO_DNS_NAMESERVERS".to_string(),
                "[\"127.0.0.1:53\"]".to_string(),
            ),
        ];
        let c = Config::from_str_with_env("", "cartero.toml", &env).unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(smtp.password.as_deref(), Some("12345678"));
        assert_eq!(smtp.username.as_deref(), Some("true"));
        assert!(!smtp.pipelining);
        assert_eq!(
            c.sender.secret, "\"quoted-secret-1234\"",
            "a password's own quotes stay"
        );
        assert_eq!(c.dns.nameservers, vec!["127.0.0.1:53".to_string()]);
    }

    #[test]
    fn file_errors_keep_their_place_when_other_cartero_vars_are_set() {
        let env = vec![("CARTERO_TEST_DATABASE".to_string(), "sqlite".to_string())];
        let err = Config::from_str_with_env("[smtp]\nprot = 1\n", "c.toml", &env).unwrap_err();
        assert!(err.to_string().starts_with("c.toml:2:1:"), "{err}");
        let env = vec![("CARTERO_SMTP_PORT".to_string(), "x".to_string())];
        let err = Config::from_str_with_env("", "c.toml", &env).unwrap_err();
        assert!(err.to_string().contains("overrides"), "{err}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncñd", 6), (2, 3));
    }

    #[test]
    fn feedback_trust_keys_parse_and_limits_are_checked() {
        let c = Config::from_str_with_env(
            "[feedback]\naddress_match = \"suppress_if_authenticated\"\nmax_message_bytes = 2048\n\
             max_recipients = 5\nauthserv_id = \"mx.shop.example\"\n",
            "c.toml",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.feedback.address_match,
            AddressMatch::SuppressIfAuthenticated
        );
        assert_eq!(
            (c.feedback.max_message_bytes, c.feedback.max_recipients),
            (2048, 5)
        );
        let d = Config::default().feedback;
        assert_eq!(d.address_match, AddressMatch::Record);
        assert_eq!(d.max_message_bytes, 10 * 1024 * 1024);
        let err =
            Config::from_str_with_env("[feedback]\naddress_match = \"always\"\n", "c.toml", &[])
                .unwrap_err();
        assert!(err.to_string().starts_with("c.toml:2:"), "{err}");
        for bad in ["max_message_bytes = 0", "max_recipients = 0"] {
            let err = Config::from_str_with_env(&format!("[feedback]\n{bad}\n"), "c.toml", &[])
                .unwrap_err();
            assert!(
                err.to_string().contains(bad.split(' ').next().unwrap()),
                "{err}"
            );
        }
    }
}
