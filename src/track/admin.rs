//! The read-only admin pages of `cartero serve`: `/admin/compliance` (the
//! consent log with `compliance log`'s filters, the audit, the log as CSV)
//! and `/admin/reports` (the campaigns, each campaign's report page, the
//! KPIs and the contact database over time), for compliance officers and
//! analysts who do not run the CLI.
//!
//! Who may read: the holder of an API key with the `admin-read` role
//! (`cartero api-key create --role admin-read NAME`, migration 0018). A
//! script sends it as `Authorization: Bearer KEY`; a browser posts it once
//! to the login form (CSRF-checked like every form here) and gets a signed,
//! expiring session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/admin`,
//! `Secure` when the public base is https). Keys are compared by their
//! SHA-256 in constant time and never logged; the session's MAC names the
//! key, so revoking the key ends its sessions at once.
//!
//! Nothing here writes: every admin route is a GET except login and logout,
//! which only set or clear the cookie (and record the key's last use). The
//! pages reuse what the CLI prints (`report::view`, `report::kpis::html`,
//! the log's CSV record), so the browser and the terminal never disagree.

use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tower_http::set_header::SetResponseHeaderLayer;

use super::conversions::{ct_eq, hash_key};
use super::{AppState, check_form, client_ip, csrf, csrf_secret, events, field, form_fields};
use crate::domain::time::{Millis, parse_instant, to_rfc3339};
use crate::domain::token::Keyring;
use crate::report::ReportError;
use crate::store::StoreError;
use crate::store::compliance::{self, AuditLimits, LogFilter, LogRow};
use crate::store::conversions::{self as keys, ApiKey, KeyRole};

/// The session cookie's name.
pub const COOKIE: &str = "cartero_admin";

/// How long a session lasts: a working day; then the key is asked again.
pub const SESSION_MS: Millis = 8 * 60 * 60 * 1000;

/// Log entries per page of `/admin/compliance`.
pub const PAGE_SIZE: usize = 100;

/// The admin routes, merged into the service's router by `track::router`.
/// Every answer under `/admin` is never cached and never indexed.
pub(super) fn routes() -> Router<AppState> {
    let h = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/reports", get(reports))
        .route("/admin/reports/campaigns/{slug}", get(campaign_report))
        .route("/admin/reports/kpis", get(kpis_report))
        .route("/admin/reports/contacts", get(contacts_report))
        .route("/admin/compliance", get(compliance_page))
        .route("/admin/compliance/log.csv", get(compliance_csv))
        .route("/admin/{*rest}", get(unknown).post(unknown))
        .layer(h("cache-control", "no-store"))
        .layer(h("x-robots-tag", "noindex, nofollow"))
        .route("/assets/admin.css", get(stylesheet))
}

// ------------------------------------------------------------ errors

/// Errors of the admin pages, mapped to status codes here only.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid key or session. A browser (it asks for HTML and sent no
    /// `Authorization`) is sent to the login page; anything else gets 401.
    #[error("authentication required")]
    Unauthenticated { browser: bool },
    /// Too many failed sign-ins from this client or for this key: try
    /// again after this many seconds.
    #[error("too many failed sign-ins")]
    Limited { retry_after_secs: u64 },
    #[error("{0}")]
    BadQuery(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let text = |status: StatusCode, body: String| {
            (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                body,
            )
                .into_response()
        };
        match self {
            AdminError::Unauthenticated { browser: true } => {
                (StatusCode::SEE_OTHER, [(header::LOCATION, "/admin/login")]).into_response()
            }
            AdminError::Unauthenticated { browser: false } => {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "send an admin key as `Authorization: Bearer KEY`, or sign in at /admin/login\n"
                        .into(),
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"cartero admin\""),
                );
                r
            }
            AdminError::Limited { retry_after_secs } => {
                let mut r = text(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many failed sign-ins: try again in {retry_after_secs} seconds\n"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            AdminError::BadQuery(m) => text(StatusCode::BAD_REQUEST, format!("{m}\n")),
            AdminError::NotFound | AdminError::Report(ReportError::NoCampaign(_)) => {
                text(StatusCode::NOT_FOUND, "not found\n".into())
            }
            AdminError::Store(e) => {
                tracing::error!("admin: database error: {e}");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database cannot be read just now\n".into(),
                )
            }
            AdminError::Report(e) => {
                tracing::error!("admin: report error: {e}");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the report cannot be computed just now\n".into(),
                )
            }
        }
    }
}

// ------------------------------------------------------------ keys and sessions

/// The admin key a request came with (an extractor: a handler that takes
/// it answers only authenticated requests).
#[derive(Debug, Clone)]
struct Admin {
    key_name: String,
}

/// The prefix of a presented `ck_<prefix>_<secret>` (12 hex digits), the
/// part that names the stored key.
fn key_prefix(presented: &str) -> Option<&str> {
    let prefix = presented
        .strip_prefix("ck_")
        .and_then(|r| r.split_once('_'))
        .map(|(p, _)| p)?;
    (prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit())).then_some(prefix)
}

/// What a presented key turned out to be.
enum KeyCheck {
    /// A live admin key.
    Admin(ApiKey),
    /// Anything else: unknown, revoked, another role and a wrong secret
    /// look alike to the client. `named` says whether the prefix named a
    /// stored key (whose bucket then counts the failure).
    Refused { named: bool },
}

/// The stored key a presented `ck_<prefix>_<secret>` names, if it is a
/// live admin key.
async fn admin_key(s: &AppState, presented: &str) -> Result<KeyCheck, StoreError> {
    let Some(prefix) = key_prefix(presented) else {
        return Ok(KeyCheck::Refused { named: false });
    };
    let Some(k) = keys::key_by_prefix(&s.app.store, prefix).await? else {
        return Ok(KeyCheck::Refused { named: false });
    };
    let secret_ok = ct_eq(hash_key(presented).as_bytes(), k.secret_hash.as_bytes());
    let live = k.revoked_at.is_none() && k.role()? == KeyRole::AdminRead;
    Ok(if secret_ok && live {
        KeyCheck::Admin(k)
    } else {
        KeyCheck::Refused { named: true }
    })
}

// ------------------------------------------------------------ sign-in limit

/// `serve.admin_login_max_failures` failed sign-ins per client IP, and per
/// key, in a fixed window of `serve.admin_login_window_secs`; then every
/// attempt from that client or for that key, a right one included, is
/// answered 429 until the window ends (otherwise the 429s would tell a
/// guesser which guess was right). The counts live in the database's
/// `rate_limits` table, shared by every node (docs/SERVE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    pub max_failures: u32,
    pub window_ms: Millis,
}

/// The `rate_limits` buckets of admin sign-ins start with this.
const LIMIT_SCOPE: &str = "admin-login:";

/// A keyed hash of `value` as a bucket name: the table holds neither the
/// client's address nor a key's prefix.
fn limit_bucket(s: &AppState, kind: &str, value: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(s.app.settings.keys.current_secret())
        .expect("HMAC accepts any key length");
    m.update(b"cartero admin sign-in limit v1\0");
    m.update(kind.as_bytes());
    m.update(b"\0");
    m.update(value.as_bytes());
    let out = m.finalize().into_bytes();
    let hex: String = out[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{LIMIT_SCOPE}{kind}:{hex}")
}

/// One sign-in attempt (the login form's or a `Bearer` header's), counted
/// against the limit: refused at once when the client or the key is over
/// it, else the key is checked and a failure counted.
async fn sign_in(s: &AppState, ip: IpAddr, presented: &str) -> Result<ApiKey, AdminError> {
    let limit = s.app.settings.admin_login;
    let now = s.app.clock.now();
    let window = now - now.rem_euclid(limit.window_ms);
    let ip_bucket = limit_bucket(s, "ip", &ip.to_string());
    let key_bucket = key_prefix(presented).map(|p| limit_bucket(s, "key", p));
    let max = i64::from(limit.max_failures);
    let over_ip = repo_hits(s, &ip_bucket, window).await? >= max;
    let over_key = match &key_bucket {
        Some(b) if !over_ip => repo_hits(s, b, window).await? >= max,
        _ => false,
    };
    if over_ip || over_key {
        s.metrics
            .admin_logins_limited
            .fetch_add(1, Ordering::Relaxed);
        // One line, at warn, without the key: the client as
        // `serve.ip_storage` would store it.
        let client = events::stored_ip(ip, s.app.settings.ip_storage)
            .unwrap_or_else(|| "(not stored)".into());
        tracing::warn!(
            "admin: sign-in refused: too many failed attempts {} in this window (client {client})",
            if over_ip {
                "from this client"
            } else {
                "for this key"
            }
        );
        let left_ms = (window + limit.window_ms - now).max(1);
        return Err(AdminError::Limited {
            retry_after_secs: (left_ms as u64).div_ceil(1000),
        });
    }
    match admin_key(s, presented).await? {
        KeyCheck::Admin(k) => Ok(k),
        KeyCheck::Refused { named } => {
            s.metrics
                .admin_login_failures
                .fetch_add(1, Ordering::Relaxed);
            let forget = window - limit.window_ms;
            let store = &s.app.store;
            crate::store::signup::hit_scoped(store, LIMIT_SCOPE, &ip_bucket, window, forget)
                .await?;
            if let (true, Some(b)) = (named, &key_bucket) {
                crate::store::signup::hit_scoped(store, LIMIT_SCOPE, b, window, forget).await?;
            }
            Err(AdminError::Unauthenticated { browser: false })
        }
    }
}

async fn repo_hits(s: &AppState, bucket: &str, window: Millis) -> Result<i64, StoreError> {
    crate::store::signup::hits(&s.app.store, bucket, window).await
}

/// The key of session cookies: derived from the current signing key, so
/// rotating that key ends every session.
fn session_secret(s: &AppState) -> Vec<u8> {
    session_secret_of(&s.app.settings.keys)
}

fn session_secret_of(keys: &Keyring) -> Vec<u8> {
    keys.form_tag("cartero admin sessions v1").into_bytes()
}

/// HMAC over the key id, the expiry and the key's stored hash: a session
/// names one key, and a key re-issued under the same id opens none of the
/// old key's sessions.
fn session_mac(secret: &[u8], key_id: i64, expiry: Millis, key_hash: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(b"cartero-admin-session-v1\0");
    m.update(key_id.to_string().as_bytes());
    m.update(b"\0");
    m.update(expiry.to_string().as_bytes());
    m.update(b"\0");
    m.update(key_hash.as_bytes());
    m
}

/// A session cookie's value, `KEY_ID.EXPIRY.MAC` (MAC in hex), for the key
/// with this id and stored hash, expiring at `expiry`. Public so tests can
/// make an expired one; the server makes them only at login.
pub fn session_value(keys: &Keyring, key_id: i64, key_hash: &str, expiry: Millis) -> String {
    let tag = session_mac(&session_secret_of(keys), key_id, expiry, key_hash)
        .finalize()
        .into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{key_id}.{expiry}.{hex}")
}

/// The key a session cookie's value names, when its MAC holds, it has not
/// expired (nor claims to last longer than a session) and the key is still
/// a live admin key.
async fn session_key(s: &AppState, value: &str, now: Millis) -> Result<Option<ApiKey>, StoreError> {
    let mut parts = value.split('.');
    let (Some(id), Some(expiry), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let digits = |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(id) || !digits(expiry) || mac.len() != 64 {
        return Ok(None);
    }
    let (Ok(id), Ok(expiry)) = (id.parse::<i64>(), expiry.parse::<Millis>()) else {
        return Ok(None);
    };
    let Some(tag) = unhex(mac) else {
        return Ok(None);
    };
    let Some(k) = keys::key_by_id(&s.app.store, id).await? else {
        return Ok(None);
    };
    if session_mac(&session_secret(s), id, expiry, &k.secret_hash)
        .verify_slice(&tag)
        .is_err()
    {
        return Ok(None);
    }
    if expiry < now || expiry > now.saturating_add(SESSION_MS) {
        return Ok(None);
    }
    if k.revoked_at.is_some() || k.role()? != KeyRole::AdminRead {
        return Ok(None);
    }
    Ok(Some(k))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The value of the cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(s: &AppState, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if s.app.settings.base_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("the cookie holds only token characters")
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, AdminError> {
        let headers = &parts.headers;
        let authorization = headers.get(header::AUTHORIZATION);
        let browser = authorization.is_none()
            && headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
        let refused = AdminError::Unauthenticated { browser };
        let key = match authorization {
            Some(v) => {
                // RFC 9110 §11.1: the scheme is case-insensitive.
                let presented = v
                    .to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, key)| key.trim());
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0)
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                let ip = client_ip(s, peer, headers);
                match sign_in(s, ip, presented.unwrap_or("")).await {
                    Ok(k) => Some(k),
                    Err(AdminError::Unauthenticated { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            None => match cookie(headers, COOKIE) {
                Some(v) => session_key(s, v, s.app.clock.now()).await?,
                None => None,
            },
        };
        let k = key.ok_or(refused)?;
        Ok(Admin { key_name: k.name })
    }
}

// ------------------------------------------------------------ pages

static TEMPLATES: LazyLock<tera::Tera> = LazyLock::new(|| {
    let mut t = tera::Tera::default();
    t.add_raw_templates([
        ("base.html", include_str!("../../templates/admin/base.html")),
        (
            "login.html",
            include_str!("../../templates/admin/login.html"),
        ),
        (
            "reports.html",
            include_str!("../../templates/admin/reports.html"),
        ),
        (
            "compliance.html",
            include_str!("../../templates/admin/compliance.html"),
        ),
    ])
    .expect("the admin templates compile (a unit test renders each)");
    t.autoescape_on(vec![".html"]);
    t
});

const CSS: &str = include_str!("../../templates/admin/admin.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

fn render(name: &str, ctx: &tera::Context) -> Response {
    match TEMPLATES.render(name, ctx) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("admin: template {name}: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The context every signed-in page starts from (the header's sign-out form).
fn page_context(s: &AppState, admin: &Admin) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("signed_in", &true);
    ctx.insert("key_name", &admin.key_name);
    ctx.insert(
        "logout_csrf",
        &csrf::issue(&csrf_secret(s), "admin-logout", s.app.clock.now()),
    );
    ctx
}

/// A report page exactly as `cartero report ... --format html` writes it.
/// Its one inline `<style>` element is allowed by its hash (CSP3); nothing
/// else inline runs or applies.
fn report_page(html: String) -> Response {
    let style = html
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css)
        .unwrap_or("");
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&csp).expect("base64 is a header value"),
            ),
        ],
        html,
    )
        .into_response()
}

/// GET /admin: the reports, or the login page.
async fn home(_: Admin) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/admin/reports")],
    )
        .into_response()
}

async fn unknown(_: Admin) -> AdminError {
    AdminError::NotFound
}

fn login_form(s: &AppState, status: StatusCode, notice: Option<&str>) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("signed_in", &false);
    ctx.insert("notice", &notice);
    ctx.insert(
        "csrf",
        &csrf::issue(&csrf_secret(s), "admin-login", s.app.clock.now()),
    );
    let mut r = render("login.html", &ctx);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

/// GET /admin/login: the form; reads nothing.
async fn login_page(State(s): State<AppState>) -> Response {
    login_form(&s, StatusCode::OK, None)
}

/// POST /admin/login: a form token and same-origin post first, then the
/// key; a live admin key gets a session cookie and goes to the reports.
async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, super::TrackError> {
    let headers = req.headers().clone();
    let fields = form_fields(&s, req).await?;
    check_form(&s, &headers, &fields, "admin-login")?;
    let presented = field(&fields, "token").unwrap_or("").trim();
    let k = match sign_in(&s, client_ip(&s, peer, &headers), presented).await {
        Ok(k) => k,
        Err(AdminError::Unauthenticated { .. }) => {
            return Ok(login_form(
                &s,
                StatusCode::UNAUTHORIZED,
                Some(
                    "That key does not open the admin pages (unknown, revoked, or not an admin-read key).",
                ),
            ));
        }
        Err(AdminError::Limited { retry_after_secs }) => {
            let notice = format!(
                "Too many failed sign-ins: try again in {} minutes.",
                retry_after_secs.div_ceil(60)
            );
            let mut r = login_form(&s, StatusCode::TOO_MANY_REQUESTS, Some(&notice));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return Ok(r);
        }
        Err(AdminError::Store(e)) => return Err(e.into()),
        Err(_) => return Err(super::TrackError::NotFound),
    };
    let now = s.app.clock.now();
    keys::touch_key(&s.app.store, k.id, now).await?;
    let value = session_value(
        &s.app.settings.keys,
        k.id,
        &k.secret_hash,
        now.saturating_add(SESSION_MS),
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/admin/reports")),
            (
                header::SET_COOKIE,
                set_cookie(&s, &value, SESSION_MS / 1000),
            ),
        ],
    )
        .into_response())
}

/// POST /admin/logout: clears the cookie (the sign-out form's token first).
async fn logout(State(s): State<AppState>, req: Request) -> Result<Response, super::TrackError> {
    let headers = req.headers().clone();
    let fields = form_fields(&s, req).await?;
    check_form(&s, &headers, &fields, "admin-logout")?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/admin/login")),
            (header::SET_COOKIE, set_cookie(&s, "", 0)),
        ],
    )
        .into_response())
}

fn when(ms: Option<Millis>) -> String {
    ms.map(to_rfc3339).unwrap_or_else(|| "-".into())
}

/// GET /admin/reports: the campaigns, the KPIs and the contacts report.
async fn reports(State(s): State<AppState>, admin: Admin) -> Result<Response, AdminError> {
    let campaigns = crate::store::campaigns::list(&s.app.store).await?;
    let mut ctx = page_context(&s, &admin);
    ctx.insert(
        "campaigns",
        &campaigns
            .iter()
            .map(|c| {
                let slug: String = form_urlencoded::byte_serialize(c.slug.as_bytes()).collect();
                serde_json::json!({
                    "slug_url": slug,
                    "name": c.name,
                    "slug": c.slug,
                    "list": c.list_name.as_deref().unwrap_or("-"),
                    "started": when(c.started_at),
                    "finished": when(c.finished_at),
                })
            })
            .collect::<Vec<_>>(),
    );
    Ok(render("reports.html", &ctx))
}

/// GET /admin/reports/campaigns/{slug}: `report campaign SLUG --format html`.
async fn campaign_report(
    State(s): State<AppState>,
    _: Admin,
    Path(slug): Path<String>,
) -> Result<Response, AdminError> {
    let r = crate::report::campaign::load(&s.app.store, &slug).await?;
    Ok(report_page(crate::report::view::campaign_html(&r, None)))
}

/// GET /admin/reports/kpis: `report kpis --format html` (the project's
/// campaigns/kpis.toml when it exists, else the defaults).
async fn kpis_report(State(s): State<AppState>, _: Admin) -> Result<Response, AdminError> {
    let path = s.app.settings.project_dir.join("campaigns/kpis.toml");
    let kpis = if path.is_file() {
        crate::report::kpis::load_file(&path)?
    } else {
        crate::report::kpis::defaults()
    };
    let rep = crate::report::kpis::compute(&s.app.store, &kpis, None, 8).await?;
    Ok(report_page(crate::report::kpis::html(&rep)))
}

/// GET /admin/reports/contacts: `report contacts --format html` (weeks,
/// the last twelve).
async fn contacts_report(State(s): State<AppState>, _: Admin) -> Result<Response, AdminError> {
    use crate::cli::report::Period;
    let since = s.app.clock.now() - 12 * crate::report::contacts::period_ms(Period::Week);
    let rep = crate::report::contacts::compute(&s.app.store, Period::Week, since).await?;
    Ok(report_page(crate::report::contacts::html(&rep)))
}

// ------------------------------------------------------------ compliance

/// The query of `/admin/compliance`, as typed (the form shows it back).
#[derive(Debug, Default, serde::Serialize)]
struct Query {
    since: String,
    until: String,
    list: String,
    campaign: String,
    method: String,
    action: String,
    contact: String,
    after: String,
    doi_pending_days: String,
}

impl Query {
    /// Parses the query string; an unknown parameter or a repeated one is
    /// refused by name (a typo must not silently widen the filter).
    fn parse(raw: Option<&str>) -> Result<Self, AdminError> {
        let mut q = Query::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "since" => &mut q.since,
                "until" => &mut q.until,
                "list" => &mut q.list,
                "campaign" => &mut q.campaign,
                "method" => &mut q.method,
                "action" => &mut q.action,
                "contact" => &mut q.contact,
                "after" => &mut q.after,
                "doi_pending_days" => &mut q.doi_pending_days,
                other => {
                    return Err(AdminError::BadQuery(format!(
                        "unknown query parameter {other:?} (since, until, list, campaign, method, \
                         action, contact, after, doi_pending_days)"
                    )));
                }
            };
            if !seen.insert(k.to_string()) {
                return Err(AdminError::BadQuery(format!("{k}: given twice")));
            }
            if v.chars().count() > 320 || v.chars().any(char::is_control) {
                return Err(AdminError::BadQuery(format!(
                    "{k}: longer than 320 characters or holds control characters"
                )));
            }
            *slot = v.trim().to_string();
        }
        Ok(q)
    }

    /// The filters again as a query string (without `after`), for the CSV
    /// link and the next page.
    fn filters(&self) -> form_urlencoded::Serializer<'static, String> {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("since", &self.since),
            ("until", &self.until),
            ("list", &self.list),
            ("campaign", &self.campaign),
            ("method", &self.method),
            ("action", &self.action),
            ("contact", &self.contact),
        ] {
            if !v.is_empty() {
                ser.append_pair(k, v);
            }
        }
        ser
    }

    /// The ledger filter, as `compliance log` builds it from its flags.
    async fn filter(&self, s: &AppState) -> Result<LogFilter, AdminError> {
        let now = s.app.clock.now();
        let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
        let instant = |name: &str, v: &String| -> Result<Option<Millis>, AdminError> {
            if v.is_empty() {
                return Ok(None);
            }
            parse_instant(v, now).map(Some).ok_or_else(|| {
                AdminError::BadQuery(format!(
                    "{name} {v:?}: expected YYYY-MM-DD, an RFC 3339 instant, or a span like 7d or 24h"
                ))
            })
        };
        if !matches!(self.action.as_str(), "" | "grant" | "withdraw") {
            return Err(AdminError::BadQuery(format!(
                "action {:?}: grant or withdraw",
                self.action
            )));
        }
        let after_id = match self.after.as_str() {
            "" => None,
            a => Some(a.parse::<i64>().map_err(|_| {
                AdminError::BadQuery(format!("after {a:?}: a ledger entry id (a number)"))
            })?),
        };
        let contact_id = if self.contact.is_empty() {
            None
        } else {
            let normalized = crate::domain::EmailAddress::parse(&self.contact).ok();
            let found = crate::store::status::find_contact(
                &s.app.store,
                normalized.as_ref().map(|a| a.as_str()),
                &self.contact,
            )
            .await?;
            // As `compliance log --contact` does: an address with no
            // contact is an error, not an empty log that looks like one.
            let (id, _) = found.ok_or_else(|| {
                AdminError::BadQuery(format!(
                    "contact {:?}: no contact with this address",
                    self.contact
                ))
            })?;
            Some(id)
        };
        Ok(LogFilter {
            since: instant("since", &self.since)?,
            until: instant("until", &self.until)?,
            list: opt(&self.list),
            campaign: opt(&self.campaign),
            method: opt(&self.method),
            action: opt(&self.action),
            contact_id,
            after_id,
        })
    }
}

fn row_json(r: &LogRow) -> serde_json::Value {
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    serde_json::json!({
        "id": r.id,
        "when": to_rfc3339(r.occurred_at),
        "email": r.email,
        "list": r.list.as_deref().unwrap_or("(all)"),
        "action": r.action,
        "method": r.method,
        "source": r.source,
        "text_version": or_dash(r.text_version.as_deref()),
        "campaign": or_dash(r.campaign.as_deref()),
        "send_id": r.send_id.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        "ip": or_dash(r.ip.as_deref()),
        "user_agent": or_dash(r.user_agent.as_deref()),
        "erased": when(r.erased_at),
    })
}

/// A violation for the page: its kind and its fields, instants in RFC 3339.
fn violation_json(v: &compliance::Violation) -> serde_json::Value {
    let value = serde_json::to_value(v).unwrap_or_default();
    let mut kind = String::new();
    let mut details = Vec::new();
    if let serde_json::Value::Object(m) = value {
        for (k, v) in m {
            if k == "kind" {
                kind = v.as_str().unwrap_or_default().to_string();
                continue;
            }
            let text = match (&v, k.ends_with("_at")) {
                (serde_json::Value::Number(n), true) => {
                    n.as_i64().map(to_rfc3339).unwrap_or_else(|| n.to_string())
                }
                (serde_json::Value::String(s), _) => s.clone(),
                _ => v.to_string(),
            };
            details.push(serde_json::json!({ "k": k, "v": text }));
        }
    }
    serde_json::json!({ "kind": kind, "details": details })
}

/// GET /admin/compliance: a page of the log under the filters, the link to
/// all of it as CSV, and the audit (since the `since` filter).
async fn compliance_page(
    State(s): State<AppState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q = Query::parse(raw.as_deref())?;
    let filter = q.filter(&s).await?;
    let doi_pending_days = match q.doi_pending_days.as_str() {
        "" => compliance::DOI_PENDING_DAYS,
        d => d.parse::<u32>().map_err(|_| {
            AdminError::BadQuery(format!("doi_pending_days {d:?}: a number of days"))
        })?,
    };
    let mut rows: Vec<LogRow> = Vec::with_capacity(PAGE_SIZE + 1);
    compliance::stream_log(&s.app.store, &filter, |r| {
        rows.push(r);
        rows.len() <= PAGE_SIZE
    })
    .await?;
    let next = if rows.len() > PAGE_SIZE {
        rows.truncate(PAGE_SIZE);
        let mut ser = q.filters();
        if let Some(last) = rows.last() {
            ser.append_pair("after", &last.id.to_string());
        }
        Some(format!("?{}", ser.finish()))
    } else {
        None
    };
    let limits = AuditLimits {
        doi_pending_days,
        now: s.app.clock.now(),
    };
    let audit = compliance::audit(&s.app.store, filter.since, limits).await?;
    let dur = |ms: Option<i64>| match ms {
        Some(ms) if ms >= 3_600_000 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "-".into(),
    };
    let query = q.filters().finish();
    let mut ctx = page_context(&s, &admin);
    ctx.insert("f", &q);
    ctx.insert(
        "query",
        &if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        },
    );
    ctx.insert("rows", &rows.iter().map(row_json).collect::<Vec<_>>());
    ctx.insert("next", &next);
    ctx.insert("page_size", &PAGE_SIZE);
    ctx.insert(
        "audit",
        &serde_json::json!({
            "since": audit.since.map(to_rfc3339).unwrap_or_default(),
            "sends_checked": audit.sends_checked,
            "withdrawals": audit.withdrawals,
            "withdrawals_timed": audit.withdrawals_timed,
            "median": dur(audit.effect_median_ms),
            "worst": dur(audit.effect_worst_ms),
            "doi_pending": audit.doi_pending,
            "doi_pending_days": audit.doi_pending_days,
            "violations": audit.violations.iter().map(violation_json).collect::<Vec<_>>(),
        }),
    );
    Ok(render("compliance.html", &ctx))
}

/// GET /admin/compliance/log.csv: every entry under the filters, the bytes
/// `cartero compliance log --format csv` writes, streamed: the database
/// cursor advances only as fast as the client reads.
async fn compliance_csv(
    State(s): State<AppState>,
    _: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q = Query::parse(raw.as_deref())?;
    if !q.after.is_empty() || !q.doi_pending_days.is_empty() {
        return Err(AdminError::BadQuery(
            "the CSV is the whole log under the filters: no after, no doi_pending_days".into(),
        ));
    }
    let filter = q.filter(&s).await?;
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = s.app.store.clone();
    tokio::spawn(async move {
        /// Bytes gathered before a chunk goes to the client.
        const CHUNK: usize = 64 * 1024;
        let (row_tx, mut row_rx) = tokio::sync::mpsc::channel::<LogRow>(256);
        let read = async move {
            let r = compliance::stream_log_into(&store, &filter, &row_tx).await;
            drop(row_tx);
            r
        };
        // A writer per chunk: `into_inner` hands its bytes over whole.
        let writer = || csv::Writer::from_writer(Vec::with_capacity(CHUNK + 4096));
        let out = &out_tx;
        let write = async move {
            let mut w = writer();
            w.write_record(compliance::LOG_CSV_HEADER).ok()?;
            while let Some(r) = row_rx.recv().await {
                w.write_record(r.csv_fields()).ok()?;
                w.flush().ok()?;
                if w.get_ref().len() >= CHUNK {
                    let chunk = std::mem::replace(&mut w, writer()).into_inner().ok()?;
                    // The client went away: dropping `row_rx` stops the query.
                    out.send(Ok(Bytes::from(chunk))).await.ok()?;
                }
            }
            w.into_inner().ok()
        };
        let (read, rest) = tokio::join!(read, write);
        let end = match (read, rest) {
            (Ok(_), Some(rest)) => Ok(Bytes::from(rest)),
            (Err(e), _) => {
                tracing::error!("admin: the log's CSV stopped: {e}");
                // An error in the body: the client sees a broken download,
                // never a short file that looks complete.
                Err(std::io::Error::other(
                    "the log could not be read to the end",
                ))
            }
            (Ok(_), None) => Err(std::io::Error::other("the CSV was not written to the end")),
        };
        let _ = out_tx.send(end).await;
    });
    let body = Body::from_stream(futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"consent-log.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders() {
        let mut ctx = tera::Context::new();
        ctx.insert("signed_in", &true);
        ctx.insert("key_name", "dpo <b>");
        ctx.insert("logout_csrf", "1.ab");
        ctx.insert("notice", &Some("n"));
        ctx.insert("csrf", "1.ab");
        ctx.insert(
            "campaigns",
            &[
                serde_json::json!({"slug_url": "x", "name": "<i>", "slug": "s",
            "list": "-", "started": "-", "finished": "-"}),
            ],
        );
        ctx.insert("f", &Query::default());
        ctx.insert("query", "");
        ctx.insert("rows", &Vec::<serde_json::Value>::new());
        ctx.insert("next", &None::<String>);
        ctx.insert("page_size", &PAGE_SIZE);
        ctx.insert(
            "audit",
            &serde_json::json!({"since": "", "sends_checked": 0, "withdrawals": 0,
            "withdrawals_timed": 0, "median": "-", "worst": "-", "doi_pending": 0,
            "doi_pending_days": 7, "violations": [{"kind": "doi-pending",
            "details": [{"k": "email", "v": "<a@b>"}]}]}),
        );
        for name in ["login.html", "reports.html", "compliance.html"] {
            let html = TEMPLATES
                .render(name, &ctx)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(
                !html.contains("<b>") && !html.contains("<i>") && !html.contains("<a@b>"),
                "{html}"
            );
        }
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; cartero_admin=2.3.ff; b=4".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("2.3.ff"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(unhex("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex("0AFF"), None);
        assert_eq!(unhex("0af"), None);
    }
}
