//! The composition root of the long-running service: typed settings, built
//! once from `cartero.toml`, and [`build`], which opens the store, binds the
//! listener, starts the event writer and returns a [`Server`] ready to run.
//! `cartero serve` and the integration tests call the same function, so the
//! tests exercise what production runs.
//!
//! Nothing here handles a request (that is `track`) or writes SQL (that is
//! `store`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, EXAMPLE_SECRET, IpStorage};
use crate::domain::time::{Millis, now_millis};
use crate::domain::token::Keyring;
use crate::store::{Store, StoreError};
use crate::track;

/// A secret string (a signing key, a database URL with a password). Its
/// `Debug` shows nothing of it, so a settings dump or a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{key}: {message}")]
    Setting { key: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Everything the service needs, parsed and checked at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    pub listen: SocketAddr,
    /// Public base URL of the service, as recipients reach it.
    pub base_url: url::Url,
    pub keys: Keyring,
    pub ip_storage: IpStorage,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub queue_capacity: usize,
    /// `serve.queue_wait_ms`: how long a hit waits for room in a full queue.
    pub queue_wait: std::time::Duration,
    pub batch_size: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `[signup]` and `[lists.*]`: sign-up forms and tracking per list.
    pub forms: Arc<track::signup::Forms>,
    /// The recipients' pages: the defaults, with the project's
    /// `templates/pages/` over them.
    pub pages: Arc<track::pages::Pages>,
    /// The folder of cartero.toml (campaign files resolve against it).
    pub project_dir: std::path::PathBuf,
    /// `project.templates_dir`, resolved.
    pub templates_dir: std::path::PathBuf,
    /// `serve.editable_attributes`.
    pub editable_attributes: Vec<String>,
    /// Reading the bounce mailbox of `[feedback]` every
    /// `feedback.interval_secs`; `None` when that is 0.
    pub feedback: Option<FeedbackPoll>,
    /// `serve.admin_login_max_failures` and `serve.admin_login_window_secs`.
    pub admin_login: track::admin::LoginLimit,
    /// Sending the campaigns that say `schedule` or `send_at`, every
    /// `schedule.interval_secs`; `None` when `schedule.enabled` is false.
    pub schedule: Option<SchedulePoll>,
}

/// What serve's scheduler needs: the interval and the configuration the
/// send path reads (campaign and template folders, SMTP, sender).
#[derive(Clone)]
pub struct SchedulePoll {
    pub interval: std::time::Duration,
    pub config: Arc<Config>,
}

impl std::fmt::Debug for SchedulePoll {
    // The configuration holds passwords and the signing secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulePoll")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// What serve's feedback poller needs: the interval, and the configuration
/// the feedback stage reads (mailbox, policy, secret), shared with
/// `cartero feedback run` through `feedback::poll::poll_once`.
#[derive(Clone)]
pub struct FeedbackPoll {
    pub interval: std::time::Duration,
    pub config: Arc<Config>,
}

impl std::fmt::Debug for FeedbackPoll {
    // The configuration holds passwords and the signing secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackPoll")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Types the `[serve]` and `[sender]` sections; every error names its key.
    pub fn from_config(cfg: &Config) -> Result<Self, AppError> {
        let serve = cfg.serve.clone().ok_or(AppError::Setting {
            key: "serve",
            message: "there is no [serve] section in cartero.toml (docs/SERVE.md)".into(),
        })?;
        let keys = keyring(cfg)?;
        let base_url = base_url(cfg)?;
        let listen = serve.listen.parse().map_err(|e| AppError::Setting {
            key: "serve.listen",
            message: format!("{:?} is not ADDRESS:PORT: {e}", serve.listen),
        })?;
        let mut trusted_proxies = Vec::new();
        for p in &serve.trusted_proxies {
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| AppError::Setting {
                    key: "serve.trusted_proxies",
                    message: format!("{p:?} is not an IP address or CIDR"),
                })?;
            trusted_proxies.push(net);
        }
        let positive = |key, v: usize| {
            if v == 0 {
                Err(AppError::Setting {
                    key,
                    message: "must be at least 1".into(),
                })
            } else {
                Ok(v)
            }
        };
        let templates_dir = cfg.resolve(&cfg.project.templates_dir);
        let pages = track::pages::Pages::load(&templates_dir.join("pages"), base_url.path())
            .map_err(|e| AppError::Setting {
                key: "templates/pages",
                message: e.to_string(),
            })?;
        Ok(Self {
            pages: Arc::new(pages),
            project_dir: cfg.base_dir.clone(),
            templates_dir,
            editable_attributes: serve.editable_attributes.clone(),
            database_url: Secret::new(cfg.database.url.clone()),
            listen,
            base_url,
            keys,
            ip_storage: serve.ip_storage,
            max_body_bytes: positive("serve.max_body_bytes", serve.max_body_bytes)?,
            request_timeout: std::time::Duration::from_secs(positive(
                "serve.request_timeout_secs",
                serve.request_timeout_secs as usize,
            )? as u64),
            queue_capacity: positive("serve.queue_capacity", serve.queue_capacity)?,
            queue_wait: std::time::Duration::from_millis(serve.queue_wait_ms),
            batch_size: positive("serve.batch_size", serve.batch_size)?,
            trusted_proxies,
            forms: Arc::new(track::signup::Forms::from_config(cfg)?),
            admin_login: track::admin::LoginLimit {
                max_failures: positive(
                    "serve.admin_login_max_failures",
                    serve.admin_login_max_failures as usize,
                )? as u32,
                window_ms: match serve.admin_login_window_secs {
                    // At most an hour: the sign-up limit's clean-up of the
                    // shared `rate_limits` table forgets windows older than
                    // the hour before the current one.
                    s @ 1..=3600 => s as Millis * 1000,
                    _ => {
                        return Err(AppError::Setting {
                            key: "serve.admin_login_window_secs",
                            message: "must be between 1 and 3600".into(),
                        });
                    }
                },
            },
            feedback: (cfg.feedback.interval_secs > 0).then(|| FeedbackPoll {
                interval: std::time::Duration::from_secs(cfg.feedback.interval_secs),
                config: Arc::new(cfg.clone()),
            }),
            schedule: cfg.schedule.enabled.then(|| SchedulePoll {
                interval: std::time::Duration::from_secs(cfg.schedule.interval_secs.max(1)),
                config: Arc::new(cfg.clone()),
            }),
        })
    }
}

/// `sender.base_url` as a URL: http or https, no query or fragment.
pub fn base_url(cfg: &Config) -> Result<url::Url, AppError> {
    let raw = cfg.sender.base_url.trim_end_matches('/');
    let u = url::Url::parse(raw).map_err(|e| AppError::Setting {
        key: "sender.base_url",
        message: format!("{raw:?} is not a URL: {e}"),
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.query().is_some() || u.fragment().is_some() {
        return Err(AppError::Setting {
            key: "sender.base_url",
            message: format!("{raw:?} must be an http(s) URL without query or fragment"),
        });
    }
    Ok(u)
}

/// The signing keys: `sender.secret` under `sender.key_id`, and the retired
/// `sender.old_keys` until their `verify_until`. The example secret of this
/// repository is refused: anyone can forge links signed with it.
pub fn keyring(cfg: &Config) -> Result<Keyring, AppError> {
    let secret = cfg.secret().map_err(|e| AppError::Setting {
        key: "sender.secret",
        message: e.to_string(),
    })?;
    if secret == EXAMPLE_SECRET.as_bytes() {
        return Err(AppError::Setting {
            key: "sender.secret",
            message: "is the example secret from the cartero repository, which anyone can read: \
                      set your own (CARTERO_SENDER_SECRET)"
                .into(),
        });
    }
    let mut ring = Keyring::new(cfg.sender.key_id, secret);
    for k in &cfg.sender.old_keys {
        if k.id == cfg.sender.key_id {
            return Err(AppError::Setting {
                key: "sender.old_keys",
                message: format!("key id {} is also sender.key_id", k.id),
            });
        }
        let until = ::time::OffsetDateTime::parse(
            &k.verify_until,
            &::time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| AppError::Setting {
            key: "sender.old_keys",
            message: format!(
                "key {}: verify_until {:?} is not RFC 3339: {e}",
                k.id, k.verify_until
            ),
        })?;
        let until_ms = (until.unix_timestamp_nanos() / 1_000_000) as Millis;
        ring = ring.with_old_key(k.id, k.secret.as_bytes(), until_ms);
    }
    Ok(ring)
}

/// Where time comes from; tests inject a fixed or stepped clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        now_millis()
    }
}

/// What every handler and worker shares.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
}

/// A bound, ready server; [`Server::run`] serves until cancelled.
pub struct Server {
    listener: TcpListener,
    router: axum::Router,
    writer: track::events::Writer,
    app: App,
    metrics: Arc<track::Metrics>,
    addr: SocketAddr,
}

/// Builds the service from its settings: opens (and migrates) the store,
/// binds the listener (port 0: a free one), starts the event writer.
pub async fn build(settings: Settings) -> Result<Server, AppError> {
    build_with_clock(settings, Arc::new(SystemClock)).await
}

pub async fn build_with_clock(
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<Server, AppError> {
    let store = Store::open(settings.database_url.expose()).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AppError::Listen {
        addr: settings.listen,
        source,
    })?;
    let app = App {
        store,
        settings: Arc::new(settings),
        clock,
    };
    let metrics = Arc::new(track::Metrics::default());
    let (queue, writer) = track::events::start(app.clone(), metrics.clone());
    let router = track::router(app.clone(), queue, metrics.clone());
    Ok(Server {
        listener,
        router,
        writer,
        app,
        metrics,
        addr,
    })
}

impl Server {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    pub fn metrics(&self) -> Arc<track::Metrics> {
        self.metrics.clone()
    }

    /// Serves until `cancel` fires; then stops accepting, lets the requests
    /// in flight finish, drains the event queue into the database and
    /// closes the store.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), AppError> {
        let Server {
            listener,
            router,
            writer,
            app,
            metrics,
            ..
        } = self;
        let poller = app.settings.feedback.clone().map(|poll| {
            tokio::spawn(poll_feedback(
                app.clone(),
                poll,
                metrics.clone(),
                cancel.clone(),
            ))
        });
        // The sign-up confirmation mails leave from here, not from the
        // request (docs/TRACKING.md).
        let mailer = app.settings.forms.mails().then(|| {
            tokio::spawn(track::signup::run_mailer(
                app.clone(),
                metrics.clone(),
                cancel.clone(),
            ))
        });
        // Campaigns with `schedule` or `send_at` are sent from here
        // (docs/SCHEDULING.md).
        let scheduler = app.settings.schedule.clone().map(|poll| {
            let s = crate::schedule::Scheduler {
                store: app.store.clone(),
                config: poll.config,
                clock: app.clock.clone(),
                interval: poll.interval,
            };
            tokio::spawn(s.run(cancel.clone()))
        });
        let purger = tokio::spawn(track::signup::run_purger(app.clone(), cancel.clone()));
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
        // The router (and with it every queue sender) is gone: the writer
        // sees the queue close once it has written what was left in it.
        writer.finish().await;
        if let Some(p) = poller {
            let _ = p.await;
        }
        if let Some(m) = mailer {
            let _ = m.await;
        }
        if let Some(s) = scheduler {
            let _ = s.await;
        }
        let _ = purger.await;
        app.store.close().await;
        served.map_err(AppError::Serve)
    }
}

/// Reads the bounce mailbox now and then every `poll.interval` until
/// `cancel` fires, through the same `poll_once` as `cartero feedback run`.
/// On cancellation a read in progress stops after the message it is
/// handling (each message is committed and acknowledged on its own).
async fn poll_feedback(
    app: App,
    poll: FeedbackPoll,
    metrics: Arc<track::Metrics>,
    cancel: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let mut tick = tokio::time::interval(poll.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let stop = || cancel.is_cancelled();
        match crate::feedback::poll::poll_once(&app.store, &poll.config, false, |_| {}, stop).await
        {
            Ok(r) => {
                metrics.feedback_polls.fetch_add(1, Ordering::Relaxed);
                if r.summary.messages > 0 {
                    tracing::info!(
                        "feedback: {} messages read, {} status changes, {} kept aside",
                        r.summary.messages,
                        r.summary.status_changes,
                        r.summary.kept_aside
                    );
                }
            }
            Err(e) => {
                metrics.feedback_polls.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("feedback: reading the bounce mailbox failed: {e}");
            }
        }
    }
}

/// Cancels `cancel` on SIGTERM or SIGINT (Ctrl-C). The handlers are
/// installed before this returns, so a signal that arrives right after
/// start-up is not lost to the default action (killing the process).
pub fn cancel_on_signals(cancel: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down: draining requests and events");
            cancel.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[sender]\nsecret = \"a real secret of some length\"\nbase_url = \"https://t.example/\"\n{extra}"
        );
        Config::from_str_with_env(&text, "c.toml", &[]).unwrap()
    }

    #[test]
    fn settings_are_typed_and_secrets_never_printed() {
        let s = Settings::from_config(&cfg(
            "[serve]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        ))
        .unwrap();
        assert_eq!(s.base_url.as_str(), "https://t.example/");
        assert_eq!(s.trusted_proxies.len(), 2);
        let dump = format!("{s:?}");
        assert!(!dump.contains("a real secret"), "{dump}");
        assert!(dump.contains("Secret(..)"), "{dump}");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = Settings::from_config(&cfg("")).unwrap_err().to_string();
        assert!(e.starts_with("serve:"), "{e}");
        let e = Settings::from_config(&cfg("[serve]\nlisten = \"localhost\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("serve.listen:"), "{e}");
        let e = Settings::from_config(&cfg("[serve]\ntrusted_proxies = [\"10.0.0/8\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("serve.trusted_proxies:"), "{e}");
        for bad in [
            "admin_login_window_secs = 0",
            "admin_login_window_secs = 3601",
        ] {
            let e = Settings::from_config(&cfg(&format!("[serve]\n{bad}\n")))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("serve.admin_login_window_secs:"), "{e}");
        }
        let e = Settings::from_config(&cfg("[serve]\nadmin_login_max_failures = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("serve.admin_login_max_failures:"), "{e}");
        let ok = Settings::from_config(&cfg("[serve]\n"))
            .unwrap()
            .admin_login;
        assert_eq!((ok.max_failures, ok.window_ms), (10, 900_000));
        let e = Settings::from_config(&cfg(
            "[serve]\n[[sender.old_keys]]\nid = 1\nsecret = \"x\"\nverify_until = \"soon\"\n",
        ));
        assert!(e.is_err());
    }

    #[test]
    fn the_example_secret_is_refused() {
        let text = format!("[sender]\nsecret = \"{EXAMPLE_SECRET}\"\n[serve]\n");
        let c = Config::from_str_with_env(&text, "c.toml", &[]).unwrap();
        let e = Settings::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("example secret"), "{e}");
    }
}
