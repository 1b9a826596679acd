//! Sign-up with double opt-in: `POST /subscribe` stores a pending sign-up
//! and mails a confirmation link; `GET /confirm/{token}` shows a button and
//! changes nothing; `POST /confirm/{token}` records the grant through the
//! consent stage with the consent text's version and the evidence of both
//! steps (GDPR Art. 7(1); BGH I ZR 164/09 on double opt-in).
//!
//! Until the confirmation, the address is only in `signups`: it is on no
//! list and gets nothing but the one confirmation mail. A filled honeypot,
//! an erased address (on the suppression list by keyed hash) and an address
//! already on the list get the same answer as a new sign-up, so the form
//! tells nobody whether an address is known; each is counted.
//!
//! Every page is a template of `templates/pages/` (`signup.html`,
//! `confirm.html`, `confirmed.html`, and `message.html` for the answer to a
//! sign-up), in the browser's language.
//!
//! Forms: the confirmation button and the hosted sign-up page
//! (`GET /subscribe/{list}`) carry a form token and are checked by
//! `track::check_form`, as every other form of the server. A form embedded
//! on another site (`cartero form snippet`) cannot carry a token this server
//! issued and is posted cross-origin by design, so a `POST /subscribe`
//! without a `form` field is taken as that form: it is bounded by the
//! honeypot and the per-IP limit, and a forged sign-up can only cause one
//! confirmation mail, since nothing is subscribed without the click in it
//! (double opt-in). This module writes no consent row itself: the grant
//! goes through `consent::Stage`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use hmac::Mac;
use lettre::message::Mailbox;
use sha2::{Digest, Sha256};

use super::i18n::Lang;
use super::{AppState, TrackError, client_ip, events, header_text, html};
use crate::config::{Config, ListConfig, SignupConfig, SmtpConfig, TrackingMode};
use crate::consent::{Cause, EventRef, LedgerEffect, Operation, Stage, StatusTarget};
use crate::domain::time::Millis;
use crate::domain::{ContactStatus, EmailAddress};
use crate::render::{DkimSigner, Envelope, MessageParts, Rendered, escape_html};
use crate::store::consent::Evidence;
use crate::store::feedback::NewEvent;
use crate::store::track::TRACKING_LIST_PREFIX;
use crate::store::{StoreError, contacts, signup as repo};

/// The form field that must stay empty (people do not see it).
pub const HONEYPOT: &str = "website";

const HOUR: Millis = 3_600_000;

/// What the sign-up endpoints need from cartero.toml, typed at start-up.
pub struct Forms {
    pub lists: BTreeMap<String, ListConfig>,
    pub max_per_ip_per_hour: u32,
    /// `None`: `[signup] from` is empty, sign-up is off.
    mailer: Option<Mailer>,
    /// Wakes the confirmation mailer ([`run_mailer`]) after a sign-up.
    wake: tokio::sync::Notify,
    /// `[signup] purge_pending_after_days`, in ms; `None`: off.
    pub purge_pending_after: Option<Millis>,
    /// The outbox, where confirmation mails go without `[smtp]`.
    outbox: PathBuf,
}

impl std::fmt::Debug for Forms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forms")
            .field("lists", &self.lists.keys().collect::<Vec<_>>())
            .field("max_per_ip_per_hour", &self.max_per_ip_per_hour)
            .field("mailer", &self.mailer.is_some())
            .finish()
    }
}

/// The confirmation mail: the campaigns' sender, transport and DKIM key.
struct Mailer {
    from: Mailbox,
    subject: String,
    html: Option<String>,
    text: Option<String>,
    signer: Option<DkimSigner>,
    smtp: Option<SmtpConfig>,
    outbox: PathBuf,
    envelope_from: String,
    unsubscribe_mailto: String,
    bounce_domain: String,
    message_id_domain: String,
}

/// The version recorded for a consent text: the first 16 bytes of its
/// SHA-256, hex. The form carries it; a change of text is a new version.
pub fn text_version(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Forms {
    /// Reads `[signup]` and `[lists.*]`; every error names its key.
    pub fn from_config(cfg: &Config) -> Result<Self, crate::app::AppError> {
        let bad =
            |key: &'static str, message: String| crate::app::AppError::Setting { key, message };
        for name in cfg.lists.keys() {
            if name.trim().is_empty() || name.starts_with(TRACKING_LIST_PREFIX) {
                return Err(bad(
                    "lists",
                    format!(
                        "{name:?} cannot name a list (empty, or starts with {TRACKING_LIST_PREFIX:?})"
                    ),
                ));
            }
        }
        let s: &SignupConfig = &cfg.signup;
        let mailer = if s.from.trim().is_empty() {
            None
        } else {
            let from: Mailbox = s.from.parse().map_err(|e| {
                bad(
                    "signup.from",
                    format!("{:?} is not an address: {e}", s.from),
                )
            })?;
            let read = |key: &'static str,
                        p: &Option<PathBuf>|
             -> Result<Option<String>, crate::app::AppError> {
                match p {
                    None => Ok(None),
                    Some(p) => {
                        let path = cfg.resolve(&cfg.project.templates_dir).join(p);
                        std::fs::read_to_string(&path)
                            .map(Some)
                            .map_err(|e| bad(key, format!("{}: {e}", path.display())))
                    }
                }
            };
            let signer = match &cfg.dkim {
                Some(d) => Some(
                    DkimSigner::from_config(d, &cfg.resolve(&d.private_key))
                        .map_err(|e| bad("dkim", e.to_string()))?,
                ),
                None => None,
            };
            Some(Mailer {
                from,
                subject: s.subject.clone(),
                html: read("signup.html_template", &s.html_template)?,
                text: read("signup.text_template", &s.text_template)?,
                signer,
                smtp: cfg.smtp.clone(),
                outbox: cfg.resolve(&cfg.outbox.dir),
                envelope_from: format!("{}@{}", cfg.sender.bounce_local, cfg.sender.bounce_domain),
                unsubscribe_mailto: cfg.sender.unsubscribe_mailto.clone(),
                bounce_domain: cfg.sender.bounce_domain.clone(),
                message_id_domain: cfg.sender.message_id_domain.clone(),
            })
        };
        Ok(Self {
            lists: cfg.lists.clone(),
            max_per_ip_per_hour: s.max_per_ip_per_hour,
            mailer,
            wake: tokio::sync::Notify::new(),
            purge_pending_after: (s.purge_pending_after_days > 0)
                .then(|| i64::from(s.purge_pending_after_days) * 24 * HOUR),
            outbox: cfg.resolve(&cfg.outbox.dir),
        })
    }

    /// The tracking choice of a list (lists not configured keep cartero's
    /// earlier behaviour: per person, docs/TRACKING.md).
    pub fn tracking(&self, list: &str) -> Option<TrackingMode> {
        self.lists.get(list).map(|l| l.tracking)
    }
}

// ------------------------------------------------------------ errors

/// A sign-up refused for its input: the field and what is wrong with it.
#[derive(Debug)]
struct Invalid {
    status: StatusCode,
    field: &'static str,
    message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        status: StatusCode::BAD_REQUEST,
        field,
        message: message.into(),
    }
}

/// JSON for JSON clients (the English message), a page for browsers
/// (`message.html`, in the browser's language, the English reason of a
/// refusal under it).
fn answer(
    s: &AppState,
    headers: &HeaderMap,
    json: bool,
    status: StatusCode,
    field: Option<&str>,
    message: &str,
) -> Response {
    if json {
        let body = if status.is_success() {
            serde_json::json!({ "status": "ok", "message": message })
        } else {
            serde_json::json!({ "error": message, "field": field })
        };
        return super::conversions::json(status, &body);
    }
    let lang = Lang::choose(None, headers);
    let (title, text) = match status.as_u16() {
        200..=299 => ("signup_sent_title", "signup_sent_text"),
        404 => ("error_404_title", "error_404_text"),
        429 => ("signup_invalid_title", "signup_limited_text"),
        400..=499 => ("signup_invalid_title", "signup_invalid_text"),
        _ => ("error_title", "error_503_text"),
    };
    let mut paragraphs = vec![lang.word(text).to_string()];
    if let Some(f) = field.filter(|_| status.is_client_error()) {
        paragraphs.push(format!("{}: {f}: {message}", lang.word("error_detail")));
    }
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word(title));
    ctx.insert("paragraphs", &paragraphs);
    html(
        status,
        s.app.settings.pages.render("message.html", lang, ctx),
    )
}

/// The same answer whatever happened to a well-formed sign-up.
const ACCEPTED: &str = "Thank you. If this address can be subscribed, a message with a confirmation link is on its way: \
     you are subscribed once you follow it.";

// ------------------------------------------------------------ POST /subscribe

/// The fields of a sign-up, from a form or JSON.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SignupInput {
    list: Option<String>,
    email: Option<String>,
    name: Option<String>,
    #[serde(deserialize_with = "flexible_bool")]
    tracking: bool,
    consent_version: Option<String>,
    website: Option<String>,
    /// The form token of the hosted page; absent from an embedded form.
    form: Option<String>,
    /// The hosted page's consent box.
    #[serde(deserialize_with = "flexible_bool")]
    consent: bool,
}

fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => truthy(&s),
        serde_json::Value::Number(n) => n.as_i64() == Some(1),
        _ => false,
    })
}

use serde::Deserialize as _;

fn truthy(s: &str) -> bool {
    matches!(s, "on" | "yes" | "true" | "1")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with("application/json") || v.contains("+json")
        })
}

async fn read_input(s: &AppState, req: Request, json: bool) -> Result<SignupInput, Invalid> {
    if json {
        let body = Bytes::from_request(req, s)
            .await
            .map_err(|_| invalid("body", "the body is too large or cannot be read"))?;
        let text =
            std::str::from_utf8(&body).map_err(|_| invalid("body", "the body is not UTF-8"))?;
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| invalid("body", format!("the body is not JSON: {e}")))?;
        if !v.is_object() {
            return Err(invalid("body", "the body must be a JSON object"));
        }
        return serde_json::from_value::<SignupInput>(v).map_err(|e| {
            invalid(
                "body",
                format!("the body is not a JSON object of sign-up fields: {e}"),
            )
        });
    }
    let fields = super::form_fields(s, req).await.map_err(|e| match e {
        TrackError::UnsupportedMedia(m) => Invalid {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: "content-type",
            message: format!("{m}, or application/json"),
        },
        other => invalid("body", other.to_string()),
    })?;
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Ok(SignupInput {
        list: get("list"),
        email: get("email"),
        name: get("name"),
        tracking: get("tracking").is_some_and(|v| truthy(&v)),
        consent_version: get("consent_version"),
        website: get(HONEYPOT),
        form: get("form"),
        consent: get("consent").is_some_and(|v| truthy(&v)),
    })
}

/// The per-IP bucket: a keyed hash of the client's address, so the counter
/// table holds no address whatever `serve.ip_storage` says.
fn ip_bucket(s: &AppState, ip: std::net::IpAddr) -> String {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(s.app.settings.keys.current_secret())
        .expect("HMAC accepts any key length");
    m.update(b"cartero signup rate v1\0");
    m.update(ip.to_string().as_bytes());
    let out = m.finalize().into_bytes();
    let hex: String = out[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("signup:{hex}")
}

/// POST /subscribe
pub(super) async fn subscribe(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let json = is_json(&headers);
    match subscribe_inner(&s, peer, &headers, req, json).await {
        Ok(()) => answer(&s, &headers, json, StatusCode::OK, None, ACCEPTED),
        Err(Ok(i)) => answer(&s, &headers, json, i.status, Some(i.field), &i.message),
        Err(Err(e)) => {
            tracing::error!("sign-up: {e}");
            answer(
                &s,
                &headers,
                json,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "We could not take your sign-up just now. Please try again in a minute.",
            )
        }
    }
}

type Outcome<T> = Result<T, Result<Invalid, StoreError>>;

async fn subscribe_inner(
    s: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    req: Request,
    json: bool,
) -> Outcome<()> {
    let forms = &s.app.settings.forms;
    if forms.mailer.is_none() {
        return Err(Ok(Invalid {
            status: StatusCode::NOT_FOUND,
            field: "list",
            message: "sign-up is not enabled here".into(),
        }));
    }
    let now = s.app.clock.now();
    let ip = client_ip(s, peer, headers);
    // Counted before anything else, bots and honeypots included.
    let window = now - now.rem_euclid(HOUR);
    let hits = repo::hit(&s.app.store, &ip_bucket(s, ip), window, window - HOUR)
        .await
        .map_err(Err)?;
    if hits > i64::from(forms.max_per_ip_per_hour) {
        s.metrics.signups_limited.fetch_add(1, Ordering::Relaxed);
        return Err(Ok(Invalid {
            status: StatusCode::TOO_MANY_REQUESTS,
            field: "ip",
            message: "too many sign-ups from this network: please try again in an hour".into(),
        }));
    }
    let input = read_input(s, req, json).await.map_err(Ok)?;
    if let Some(token) = input.form.as_deref() {
        // The hosted page: its token and origin are checked as every other
        // form's, and its consent box must be ticked.
        let list = input.list.as_deref().map(str::trim).unwrap_or("");
        super::check_form_token(s, headers, token, &format!("s:{list}")).map_err(|e| {
            Ok(Invalid {
                status: StatusCode::FORBIDDEN,
                field: "form",
                message: e.to_string(),
            })
        })?;
        if !input.consent {
            return Err(Ok(invalid("consent", "the consent box is not ticked")));
        }
    }
    if input.website.as_deref().is_some_and(|v| !v.is_empty()) {
        s.metrics.signups_honeypot.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let list = input.list.as_deref().map(str::trim).unwrap_or("");
    if list.is_empty() {
        return Err(Ok(invalid("list", "is missing")));
    }
    let Some(list_cfg) = forms.lists.get(list).filter(|l| l.signup) else {
        return Err(Ok(invalid("list", "is not a list you can sign up to here")));
    };
    let raw = input.email.as_deref().map(str::trim).unwrap_or("");
    if raw.is_empty() {
        return Err(Ok(invalid("email", "is missing")));
    }
    let email = EmailAddress::parse(raw).map_err(|e| Ok(invalid("email", e.to_string())))?;
    let name: Option<String> = input
        .name
        .as_deref()
        .map(|n| {
            crate::domain::text::header_phrase(n)
                .chars()
                .take(200)
                .collect::<String>()
        })
        .filter(|n: &String| !n.trim().is_empty());
    let version = match input.consent_version.as_deref() {
        Some(v) if !v.is_empty() => {
            if v.len() > 64
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(Ok(invalid("consent_version", "is not a version id")));
            }
            Some(v.to_string())
        }
        _ if !list_cfg.consent_text.is_empty() => Some(text_version(&list_cfg.consent_text)),
        _ => None,
    };
    // An erased address never comes back, and nobody learns it was here.
    if let Some(keys) = crate::store::consent::installed_keys() {
        if erased(s, &keys, &email).await.map_err(Err)? {
            s.metrics.signups_refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    } else if suppression_entries(s).await.map_err(Err)? > 0 {
        return Err(Err(StoreError::Ledger(
            "the suppression list needs the ledger key to check a sign-up: set [compliance] ledger_key".into(),
        )));
    }
    let list_id = {
        let mut tx = s.app.store.begin().await.map_err(Err)?;
        let id = contacts::ensure_list(&mut tx, list, now)
            .await
            .map_err(Err)?;
        tx.commit().await.map_err(Err)?;
        id
    };
    if repo::is_subscribed(&s.app.store, &email, list_id)
        .await
        .map_err(Err)?
    {
        s.metrics.signups_known.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // A placeholder: each mailing attempt makes the token of its own link
    // ([`mail_due`]), so this one is never mailed to anyone.
    let token = new_token();
    let stored_ip = events::stored_ip(ip, s.app.settings.ip_storage);
    let ua = header_text(headers, "user-agent");
    let id = repo::insert(
        &s.app.store,
        &repo::NewSignup {
            token_hash: &sha256_hex(&token),
            list_id,
            email: email.as_str(),
            name: name.as_deref(),
            text_version: version.as_deref(),
            tracking: input.tracking && list_cfg.tracking == TrackingMode::Personal,
            at: now,
            ip: stored_ip.as_deref(),
            user_agent: ua.as_deref(),
        },
    )
    .await
    .map_err(Err)?;
    // The mail leaves from the background mailer: a slow SMTP server does
    // not slow this answer, and the stored row is what it works from.
    tracing::debug!("sign-up {id} stored; its confirmation mail is due");
    forms.wake.notify_one();
    Ok(())
}

fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------ the mailer

/// Attempts per sign-up before the mailer gives up on it.
pub const MAIL_ATTEMPTS: i64 = 8;
/// Sign-ups older than this are not mailed any more (the person has moved
/// on); `signup retry` gives a sign-up this long again from the re-queue.
pub const MAIL_MAX_AGE: Millis = 3 * 24 * HOUR;
/// How often the mailer looks for due rows besides being woken.
const MAIL_POLL: std::time::Duration = std::time::Duration::from_secs(15);

/// When the attempt after attempt number `n` (1-based) may start: one
/// minute, doubled each time, at most an hour. Also the lease of a claimed
/// attempt: a node that dies mid-send leaves the row to be retried then.
fn retry_delay(n: i64) -> Millis {
    (60_000i64 << n.clamp(1, 7).saturating_sub(1)).min(HOUR)
}

/// One pass: claims every sign-up whose confirmation mail is due and sends
/// it, each attempt with a new token (only its hash is stored, so a retry
/// cannot rebuild an earlier link; one that reached the person but whose
/// sending was not recorded stops working, and the new mail's works).
/// Returns the mails sent.
pub async fn mail_due(
    app: &crate::app::App,
    metrics: &super::Metrics,
) -> Result<usize, StoreError> {
    let Some(mailer) = &app.settings.forms.mailer else {
        return Ok(0);
    };
    let now = app.clock.now();
    let due = repo::due_unmailed(&app.store, now, now - MAIL_MAX_AGE, MAIL_ATTEMPTS, 50).await?;
    let mut sent = 0;
    for id in due {
        let token = new_token();
        let now = app.clock.now();
        let Some(row) = repo::claim_unmailed(
            &app.store,
            id,
            now,
            now + retry_delay(0),
            &sha256_hex(&token),
        )
        .await?
        else {
            continue;
        };
        let email = match EmailAddress::parse(&row.email) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("sign-up {id}: the stored address does not parse ({e}); giving up");
                repo::give_up_mail(&app.store, id, MAIL_ATTEMPTS).await?;
                continue;
            }
        };
        let url = format!(
            "{}/confirm/{token}",
            app.settings.base_url.as_str().trim_end_matches('/')
        );
        // An SMTP reply may quote the address: logs never carry it.
        let masked = |m: &str| m.replace(row.email.as_str(), "<address>");
        match mailer
            .send(id, &email, row.name.as_deref(), &row.list_name, &url)
            .await
        {
            Ok(()) => {
                repo::mark_mailed(&app.store, id, app.clock.now()).await?;
                metrics.signups_pending.fetch_add(1, Ordering::Relaxed);
                sent += 1;
            }
            Err(e) if e.permanent => {
                tracing::warn!(
                    "sign-up {id}: the confirmation mail was refused for good: {}",
                    masked(&e.message)
                );
                repo::give_up_mail(&app.store, id, MAIL_ATTEMPTS).await?;
            }
            Err(e) => {
                // The claim already moved the row's next attempt forward;
                // push it to this attempt's back-off.
                tracing::warn!(
                    "sign-up {id}: the confirmation mail failed (attempt {} of {MAIL_ATTEMPTS}): {}",
                    row.mail_attempts,
                    masked(&e.message)
                );
                repo::retry_mail_at(
                    &app.store,
                    id,
                    app.clock.now() + retry_delay(row.mail_attempts),
                )
                .await?;
            }
        }
    }
    Ok(sent)
}

/// `cartero serve`'s confirmation mailer: a pass at start (rows a stopped
/// node left), after each sign-up, and every [`MAIL_POLL`], until `cancel`.
/// An attempt in progress at cancellation is abandoned rather than waited
/// for (a hung SMTP server must not hold up a shutdown): its row keeps its
/// lease and is tried again when that ends, by this node's next start or
/// another node.
pub async fn run_mailer(
    app: crate::app::App,
    metrics: std::sync::Arc<super::Metrics>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let forms = app.settings.forms.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = mail_due(&app, &metrics) => {
                if let Err(e) = r {
                    tracing::warn!("sign-up mailer: {e}");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = forms.wake.notified() => {}
            _ = tokio::time::sleep(MAIL_POLL) => {}
        }
    }
}

// ------------------------------------------------------------ stale sign-ups

/// Deletes the pending sign-ups made before `cutoff` (the rows, and with
/// them the address, name, IP and user agent they hold), records the purge
/// (`compliance_actions`) and removes their confirmation mails from the
/// outbox (`OUTBOX/signup/ID.eml`), which hold the address too.
pub async fn purge_pending(
    store: &crate::store::Store,
    outbox: &std::path::Path,
    cutoff: Millis,
    actor: &str,
    now: Millis,
    record_empty: bool,
) -> Result<repo::PendingPurge, StoreError> {
    let p = repo::purge_pending(store, cutoff, actor, now, record_empty).await?;
    for id in &p.ids {
        let file = outbox.join("signup").join(format!("{id}.eml"));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("sign-up purge: {}: {e}", file.display()),
        }
    }
    Ok(p)
}

/// How often `cartero serve` purges stale sign-ups when
/// `[signup] purge_pending_after_days` is set.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// `cartero serve`'s purge of stale sign-ups: at start and every
/// [`PURGE_EVERY`], until `cancel`. Every node runs it; the deletes are
/// idempotent, and only a purge that deleted something is recorded.
pub async fn run_purger(app: crate::app::App, cancel: tokio_util::sync::CancellationToken) {
    let Some(age) = app.settings.forms.purge_pending_after else {
        return;
    };
    let mut tick = tokio::time::interval(PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = app.clock.now();
        let outbox = &app.settings.forms.outbox;
        match purge_pending(&app.store, outbox, now - age, "serve", now, false).await {
            Ok(p) if p.signups > 0 => tracing::info!(
                "sign-up purge: {} unconfirmed sign-ups older than {} days deleted (compliance action {})",
                p.signups,
                age / (24 * HOUR),
                p.action_id
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("sign-up purge: {e}"),
        }
    }
}

impl Forms {
    /// Whether sign-up is on (`[signup] from` is set): serve runs the mailer.
    pub fn mails(&self) -> bool {
        self.mailer.is_some()
    }
}

/// Why a confirmation mail was not sent.
#[derive(Debug)]
struct MailError {
    /// The SMTP server refused it for good (5xx): no retry.
    permanent: bool,
    message: String,
}

impl From<String> for MailError {
    fn from(message: String) -> Self {
        Self {
            permanent: false,
            message,
        }
    }
}

/// Whether the address was erased: as written, or in the form contacts are
/// matched by (ASCII letters folded, docs/ADDRESSES.md), so `Ana@` does not
/// bring back an erased `ana@`.
async fn erased(
    s: &AppState,
    keys: &crate::domain::ledger_key::LedgerKeys,
    email: &EmailAddress,
) -> Result<bool, StoreError> {
    if crate::store::compliance::is_suppressed(&s.app.store, keys, email).await? {
        return Ok(true);
    }
    let folded = contacts::email_key(email.as_str());
    match EmailAddress::parse(&folded) {
        Ok(f) if f.as_str() != email.as_str() => {
            crate::store::compliance::is_suppressed(&s.app.store, keys, &f).await
        }
        _ => Ok(false),
    }
}

async fn suppression_entries(s: &AppState) -> Result<i64, StoreError> {
    Ok(crate::dispatch!(&s.app.store, pool => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM suppressions").fetch_one(pool).await?
    }))
}

impl Mailer {
    /// Builds the confirmation mail as campaigns are built (`render::
    /// build_message`, the same DKIM key) and hands it to the same
    /// transport: SMTP when `[smtp]` is set, else the outbox
    /// (`outbox/signup/<id>.eml`). Nothing in it but the link (an ad in a
    /// confirmation mail is itself unsolicited advertising in Germany).
    async fn send(
        &self,
        id: i64,
        to: &EmailAddress,
        name: Option<&str>,
        list: &str,
        url: &str,
    ) -> Result<(), MailError> {
        let mut ctx = tera::Context::new();
        ctx.insert("confirm_url", url);
        ctx.insert("list", list);
        ctx.insert("name", &name.unwrap_or(""));
        let render = |src: &str| -> Result<String, String> {
            let mut t = crate::render::sandbox::tera();
            t.autoescape_on(vec!["html"]);
            t.add_raw_template("t.html", src)
                .map_err(|e| e.to_string())?;
            t.render("t.html", &ctx).map_err(|e| e.to_string())
        };
        let html = match &self.html {
            Some(src) => render(src)?,
            None => format!(
                "<html><body><p>Please confirm that you want to receive <strong>{}</strong>:</p>\
                 <p><a href=\"{}\">Confirm my subscription</a></p>\
                 <p>If you did not ask for this, ignore this message: you will get nothing else.</p></body></html>",
                escape_html(list),
                escape_html(url)
            ),
        };
        let text = match &self.text {
            Some(src) => {
                let mut t = crate::render::sandbox::tera();
                t.add_raw_template("t.txt", src)
                    .map_err(|e| e.to_string())?;
                t.render("t.txt", &ctx).map_err(|e| e.to_string())?
            }
            None => format!(
                "Please confirm that you want to receive {list}:\n\n{url}\n\n\
                 If you did not ask for this, ignore this message: you will get nothing else.\n"
            ),
        };
        let rendered = Rendered {
            subject: self.subject.clone(),
            html,
            text,
        };
        let message_id = {
            use rand::RngCore;
            let mut b = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut b);
            let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
            format!("cartero.{hex}@{}", self.message_id_domain)
        };
        let slug: String = list
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let list_id = format!(
            "{} <{slug}.{}>",
            list.replace(['<', '>', '"'], ""),
            self.bounce_domain
        );
        let feedback_id = format!("signup:{slug}:cartero");
        let rcpt = to.ascii().unwrap_or(to.as_str()).to_string();
        let parts = MessageParts {
            from: &self.from,
            reply_to: None,
            to: &rcpt,
            to_name: name,
            message_id: &message_id,
            unsubscribe_url: "",
            unsubscribe_mailto: &self.unsubscribe_mailto,
            list_id: &list_id,
            feedback_id: &feedback_id,
            extra_headers: &[],
        };
        let mut bytes =
            crate::render::build_message(&rendered, &parts).map_err(|e| e.to_string())?;
        if let Some(signer) = &self.signer {
            bytes = signer.sign(&bytes).map_err(|e| e.to_string())?;
        }
        let envelope = Envelope {
            from: self.envelope_from.clone(),
            to: rcpt,
        };
        match &self.smtp {
            Some(cfg) => {
                let mut client = crate::send::SmtpClient::new(cfg);
                client.connect().await.map_err(|e| e.to_string())?;
                let attempt = client.deliver(&envelope, &bytes).await;
                client.quit().await;
                match attempt {
                    crate::send::Attempt::Accepted { .. } => Ok(()),
                    crate::send::Attempt::Permanent { code, reply } => Err(MailError {
                        permanent: true,
                        message: format!("{code:?} {reply}"),
                    }),
                    other => Err(format!("{other:?}").into()),
                }
            }
            None => {
                let composed = crate::send::Composed {
                    envelope,
                    message_id,
                    bytes,
                };
                let dir = self.outbox.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(dir.join("signup")).map_err(|e| e.to_string())?;
                    crate::send::outbox::write(&dir, "signup", id, &composed)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??;
                Ok(())
            }
        }
    }
}

// ------------------------------------------------------------ /confirm

/// `confirmed.html`: the grant is recorded (or was already).
fn confirmed_page(s: &AppState, lang: Lang, list: &str, already: bool) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("confirmed_title"));
    ctx.insert("list", list);
    ctx.insert("already", &already);
    html(
        StatusCode::OK,
        s.app.settings.pages.render("confirmed.html", lang, ctx),
    )
}

/// The form-token purpose of a confirmation page: bound to its link.
fn confirm_purpose(token: &str) -> String {
    format!("c:{token}")
}

fn token_hash(token: &str) -> Result<String, TrackError> {
    if token.len() != 64
        || !token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(TrackError::NotFound);
    }
    Ok(sha256_hex(token))
}

/// GET /confirm/{token}: a page with a button; changes nothing (mail
/// scanners follow every link in a message, mautic#9400).
pub(super) async fn confirm_page_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let hash = token_hash(&token)?;
    let row = repo::by_token(&s.app.store, &hash)
        .await?
        .ok_or(TrackError::NotFound)?;
    let lang = Lang::choose(None, &headers);
    if row.state == "confirmed" {
        return Ok(confirmed_page(&s, lang, &row.list_name, true));
    }
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("confirm_title"));
    ctx.insert("email", &row.email);
    ctx.insert("list", &row.list_name);
    ctx.insert("csrf", &super::form_token(&s, &confirm_purpose(&token)));
    Ok(html(
        StatusCode::OK,
        s.app.settings.pages.render("confirm.html", lang, ctx),
    ))
}

/// POST /confirm/{token}: the grant, through the consent stage, with the
/// evidence of the sign-up and of this confirmation. Repeating it changes
/// nothing.
pub(super) async fn confirm(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let headers = req.headers().clone();
    let hash = token_hash(&token)?;
    let fields = super::form_fields(&s, req).await?;
    super::check_form(&s, &headers, &fields, &confirm_purpose(&token))?;
    let lang = Lang::choose(None, &headers);
    let now = s.app.clock.now();
    let ip = events::stored_ip(client_ip(&s, peer, &headers), s.app.settings.ip_storage);
    let ua = header_text(&headers, "user-agent");

    let mut tx = s.app.store.begin().await?;
    let row = repo::by_token_tx(&mut tx, &hash)
        .await?
        .ok_or(TrackError::NotFound)?;
    if row.state == "confirmed" {
        tx.rollback().await?;
        return Ok(confirmed_page(&s, lang, &row.list_name, true));
    }
    let email = EmailAddress::parse(&row.email).map_err(|e| {
        StoreError::Corrupt(format!("sign-up {} holds {:?}: {e}", row.id, row.email))
    })?;
    if let Some(keys) = crate::store::consent::installed_keys()
        && erased(&s, &keys, &email).await?
    {
        // Erased since the sign-up: nothing is stored, the page is the same.
        tx.rollback().await?;
        s.metrics.signups_refused.fetch_add(1, Ordering::Relaxed);
        return Ok(confirmed_page(&s, lang, &row.list_name, false));
    }
    let (contact_id, status) = repo::contact_for(&mut tx, &email, row.name.as_deref(), now).await?;
    if matches!(status, ContactStatus::Erased | ContactStatus::Merged) {
        tx.rollback().await?;
        s.metrics.signups_refused.fetch_add(1, Ordering::Relaxed);
        return Ok(confirmed_page(&s, lang, &row.list_name, false));
    }
    let mut ledger = vec![LedgerEffect::Grant {
        list_id: row.list_id,
    }];
    if row.tracking == 1 {
        let tracking_list = contacts::ensure_list(
            &mut tx,
            &format!("{TRACKING_LIST_PREFIX}{}", row.list_name),
            now,
        )
        .await?;
        ledger.push(LedgerEffect::Grant {
            list_id: tracking_list,
        });
    }
    let op = Operation {
        contact_id,
        occurred_at: now,
        actor: crate::store::status::SYSTEM_ACTOR.into(),
        event: Some(EventRef::New(NewEvent {
            contact_id: Some(contact_id),
            campaign_id: None,
            send_id: None,
            kind: "subscribe",
            occurred_at: now,
            data: serde_json::json!({
                "method": "double-opt-in",
                "list_id": row.list_id,
                "signup_id": row.id,
                "ip": ip,
                "user_agent": ua,
            }),
            evidence: None,
        })),
        // "Unsubscribed" means no list consent left: a confirmed sign-up
        // lifts it. Bounced or complained stay as they are (the send-time
        // check still holds them back) until an operator decides.
        status: (status == ContactStatus::Unsubscribed).then(|| StatusTarget {
            from: ContactStatus::Unsubscribed,
            to: ContactStatus::Active,
            cause: Cause::Subscribe,
            rule: "double-opt-in".into(),
            reason: Some(format!("confirmed sign-up to {}", row.list_name)),
        }),
        ledger,
        evidence: Evidence {
            source: format!("sign-up form ({})", row.list_name),
            method: "double-opt-in".into(),
            ip: ip.clone(),
            text_version: row.text_version.clone(),
            details: serde_json::json!({
                "signup_id": row.id,
                "list": row.list_name,
                "tracking": row.tracking == 1,
                "signed_up_at": row.signed_up_at,
                "signup_ip": row.signup_ip,
                "signup_user_agent": row.signup_ua,
                "confirmed_at": now,
                "confirm_ip": ip,
                "confirm_user_agent": ua,
            }),
        },
    };
    Stage::new().apply(&mut tx, &op).await?;
    repo::mark_confirmed(
        &mut tx,
        row.id,
        contact_id,
        now,
        ip.as_deref(),
        ua.as_deref(),
    )
    .await?;
    tx.commit().await?;
    s.metrics.signups_confirmed.fetch_add(1, Ordering::Relaxed);
    Ok(confirmed_page(&s, lang, &row.list_name, false))
}

// ------------------------------------------------------------ GET /subscribe/{list}

/// GET /subscribe/{list}: the list's sign-up form, hosted here
/// (`signup.html`): the snippet's fields plus a form token and a consent box
/// that must be ticked. 404 for a list that takes no sign-ups.
pub(super) async fn signup_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(list): Path<String>,
) -> Result<Response, TrackError> {
    let forms = &s.app.settings.forms;
    if forms.mailer.is_none() {
        return Err(TrackError::NotFound);
    }
    let cfg = forms
        .lists
        .get(&list)
        .filter(|l| l.signup)
        .ok_or(TrackError::NotFound)?;
    let lang = Lang::choose(None, &headers);
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("signup_title"));
    ctx.insert("list", &list);
    // Relative to /subscribe/{list}, so it works under a path prefix.
    ctx.insert("action", "../subscribe");
    ctx.insert("consent_text", &cfg.consent_text);
    ctx.insert(
        "consent_version",
        &(!cfg.consent_text.is_empty()).then(|| text_version(&cfg.consent_text)),
    );
    ctx.insert("tracking", &(cfg.tracking == TrackingMode::Personal));
    ctx.insert("csrf", &super::form_token(&s, &format!("s:{list}")));
    Ok(html(
        StatusCode::OK,
        s.app.settings.pages.render("signup.html", lang, ctx),
    ))
}

// ------------------------------------------------------------ the snippet

/// The embeddable form of `cartero form snippet LIST`: labelled fields,
/// the consent text and its version, the optional consent to track for a
/// `personal` list, and a honeypot hidden from people and from screen
/// readers (off-screen, `aria-hidden`, out of the tab order) rather than
/// `display:none`, which some bots skip.
pub fn snippet(base_url: &str, list: &str, cfg: &ListConfig) -> String {
    let action = format!("{}/subscribe", base_url.trim_end_matches('/'));
    let mut out = format!(
        "<form class=\"cartero-signup\" method=\"post\" action=\"{}\">\n\
         \x20 <input type=\"hidden\" name=\"list\" value=\"{}\">\n",
        escape_html(&action),
        escape_html(list)
    );
    if !cfg.consent_text.is_empty() {
        out.push_str(&format!(
            "  <input type=\"hidden\" name=\"consent_version\" value=\"{}\">\n",
            text_version(&cfg.consent_text)
        ));
    }
    out.push_str(
        "  <p><label for=\"cartero-email\">Email address</label>\n\
         \x20 <input type=\"email\" id=\"cartero-email\" name=\"email\" required autocomplete=\"email\"></p>\n\
         \x20 <p><label for=\"cartero-name\">Name (optional)</label>\n\
         \x20 <input type=\"text\" id=\"cartero-name\" name=\"name\" autocomplete=\"name\"></p>\n",
    );
    if !cfg.consent_text.is_empty() {
        out.push_str(&format!("  <p>{}</p>\n", escape_html(&cfg.consent_text)));
    }
    if cfg.tracking == TrackingMode::Personal {
        out.push_str(
            "  <p><input type=\"checkbox\" id=\"cartero-tracking\" name=\"tracking\" value=\"yes\">\n\
             \x20 <label for=\"cartero-tracking\">Optional: you may record when I open your messages and \
             which links I follow, to tailor them to me.</label></p>\n",
        );
    }
    out.push_str(&format!(
        "  <div aria-hidden=\"true\" style=\"position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden\">\n\
         \x20   <label for=\"cartero-{HONEYPOT}\">Leave this field empty</label>\n\
         \x20   <input type=\"text\" id=\"cartero-{HONEYPOT}\" name=\"{HONEYPOT}\" tabindex=\"-1\" autocomplete=\"off\" value=\"\">\n\
         \x20 </div>\n\
         \x20 <p><button type=\"submit\">Subscribe</button></p>\n</form>\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippet_escapes_and_hides_the_honeypot_accessibly() {
        let cfg = ListConfig {
            signup: true,
            consent_text: "I agree <b>".into(),
            tracking: TrackingMode::Personal,
        };
        let html = snippet("https://n.example/", "news\"x", &cfg);
        assert!(
            html.contains("action=\"https://n.example/subscribe\""),
            "{html}"
        );
        assert!(html.contains("value=\"news&quot;x\""), "{html}");
        assert!(html.contains("I agree &lt;b&gt;"), "{html}");
        assert!(html.contains("aria-hidden=\"true\"") && html.contains("tabindex=\"-1\""));
        assert!(html.contains("<label for=\"cartero-email\">"));
        assert!(html.contains("name=\"tracking\""));
        assert!(html.contains(&text_version("I agree <b>")));
        let plain = ListConfig {
            tracking: TrackingMode::Aggregate,
            ..cfg
        };
        assert!(!snippet("https://n.example", "news", &plain).contains("name=\"tracking\""));
    }

    #[test]
    fn retries_back_off_from_a_minute_to_an_hour() {
        let d: Vec<Millis> = (0..=9).map(retry_delay).collect();
        assert_eq!(d[0], 60_000, "the lease of a first attempt");
        assert_eq!(&d[1..5], &[60_000, 120_000, 240_000, 480_000]);
        assert_eq!(d[7], HOUR);
        assert_eq!(d[9], HOUR);
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn tokens_other_than_64_hex_digits_name_nothing() {
        assert!(token_hash(&"a".repeat(64)).is_ok());
        assert!(token_hash(&"A".repeat(64)).is_err());
        assert!(token_hash(&"a".repeat(63)).is_err());
        assert!(token_hash("../../etc").is_err());
    }
}
