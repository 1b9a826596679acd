//! The recipients' HTTP endpoint of `cartero serve`: one-click unsubscribe
//! (RFC 8058), the open pixel, the click redirect, the preference centre,
//! view in browser, the public archive, `/healthz` and `/metrics`. Every
//! request is treated as hostile: tokens are verified before anything is
//! read, GET and HEAD never change state, a click redirects only to a URL
//! whose MAC the token carries, bodies and request times are bounded, every
//! form but the one-click POST carries a short-lived signed token
//! ([`csrf`]), pages are Tera templates with autoescaping ([`pages`]) and
//! carry a strict CSP and `Referrer-Policy: no-referrer` (the URL holds the
//! token).
//!
//! Handlers are thin: they verify, call `consent` or queue a hit, and
//! answer; errors become status codes in one place ([`TrackError`]) and
//! pages in one middleware (`render_errors`), in the browser's language.

pub mod admin;
pub mod consent;
pub mod conversions;
pub mod csrf;
pub mod events;
pub mod i18n;
pub mod machine;
pub mod ops;
pub mod pages;
mod public;
pub mod signup;
pub mod tracking;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::App;
use crate::consent::requests as contact_requests;
use crate::domain::ConsentAction;
use crate::domain::token::{Purpose, Subject, TokenError};
use crate::store::{StoreError, track as repo};
use events::{EventQueue, Hit, HitKind};
use i18n::Lang;

/// Counters for `/metrics` (Prometheus text format).
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_queued: AtomicU64,
    pub events_written: AtomicU64,
    /// Batches the writer committed: `events_written / event_batches` is
    /// the batch size, which says how much of the writer's time goes to the
    /// work per transaction rather than per event.
    pub event_batches: AtomicU64,
    /// The queue was full: the hit waited for room (and was then queued or
    /// dropped).
    pub events_waited: AtomicU64,
    /// The queue stayed full for `serve.queue_wait_ms`: the hit was answered
    /// but not recorded.
    pub events_dropped: AtomicU64,
    /// The send named by a valid token no longer exists.
    pub events_orphaned: AtomicU64,
    /// The database refused a batch after retries.
    pub events_lost: AtomicU64,
    pub unsubscribes: AtomicU64,
    /// Sign-ups stored and mailed a confirmation link.
    pub signups_pending: AtomicU64,
    pub signups_confirmed: AtomicU64,
    /// The honeypot field was filled: answered as a success, nothing stored.
    pub signups_honeypot: AtomicU64,
    /// Erased (suppressed) addresses: answered as a success, nothing stored.
    pub signups_refused: AtomicU64,
    /// Already on the list: answered as a success, nothing sent.
    pub signups_known: AtomicU64,
    /// Refused by the per-IP limit.
    pub signups_limited: AtomicU64,
    pub conversions_recorded: AtomicU64,
    pub conversions_duplicate: AtomicU64,
    /// Reads of the bounce mailbox by serve's feedback poller.
    pub feedback_polls: AtomicU64,
    /// Admin sign-ins (login form or `Bearer`) with a key that opens nothing.
    pub admin_login_failures: AtomicU64,
    /// Admin sign-ins refused by the failure limit (429).
    pub admin_logins_limited: AtomicU64,
    /// Requests by route and status, and their latency.
    pub http: ops::HttpMetrics,
}

/// What every handler is given: one `Arc`, so axum's per-request clone of
/// the state (once per handler and once per `from_fn` middleware) is one
/// reference count, not one per field (the store's pool, the settings, the
/// clock, the queue's sender and the metrics were five).
#[derive(Clone)]
struct AppState(Arc<Shared>);

struct Shared {
    app: App,
    queue: EventQueue,
    metrics: Arc<Metrics>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The 43-byte transparent 1×1 GIF.
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// No scripts at all (no nonce is needed: there is no script to allow), no
/// inline style, nothing from another origin, forms only to this origin,
/// never framed (clickjacking an unsubscribe button). Pages that show a
/// message (`/v/`, `/archive/`) set their own, see [`public`].
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(app: App, queue: EventQueue, metrics: Arc<Metrics>) -> Router {
    let max_body = app.settings.max_body_bytes;
    let timeout = app.settings.request_timeout;
    let state = AppState(Arc::new(Shared {
        app,
        queue,
        metrics,
    }));
    let h = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/assets/pages.css", get(stylesheet))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route(
            "/u/{token}/tracking",
            get(tracking::optout_page).post(tracking::optout),
        )
        .route("/o/{file}", get(open))
        .route("/c/{token}", get(click))
        .route("/p/{token}", get(preferences_page).post(preferences))
        .route("/subscribe", axum::routing::post(signup::subscribe))
        .route("/subscribe/{list}", get(signup::signup_page))
        .route(
            "/confirm/{token}",
            get(signup::confirm_page_get).post(signup::confirm),
        )
        .route("/api/events", axum::routing::post(conversions::post_event))
        .route("/api/events/postback", get(conversions::postback))
        .route("/v/{token}", get(public::view))
        .route("/archive", get(public::archive))
        .route("/archive/feed.xml", get(public::feed))
        .route("/archive/{slug}", get(public::archived))
        .route("/sitemap.xml", get(public::sitemap))
        .merge(admin::routes())
        .fallback(|| async { TrackError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            render_errors,
        ))
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(h("referrer-policy", "no-referrer"))
        .layer(h("x-content-type-options", "nosniff"))
        .layer(h("x-frame-options", "DENY"))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        // Outermost: times and counts every answer, the 408s and 413s of
        // the layers above included.
        .layer(axum::middleware::from_fn_with_state(state, ops::observe))
}

/// Errors of this layer, mapped to status codes here and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("unsupported body: {0}")]
    UnsupportedMedia(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `render_errors` turns into a page: the status and, for 4xx, the
/// reason in English (shown under the localised text).
#[derive(Debug, Clone)]
struct ErrorPage {
    detail: Option<&'static str>,
}

impl IntoResponse for TrackError {
    fn into_response(self) -> Response {
        let (status, detail) = match &self {
            // A token that does not parse is a bad request; one that parses
            // but is not ours (or no longer) names nothing we know.
            TrackError::Token(TokenError::Encoding | TokenError::Length | TokenError::Version) => {
                (StatusCode::BAD_REQUEST, None)
            }
            TrackError::Token(_) | TrackError::NotFound => (StatusCode::NOT_FOUND, None),
            TrackError::BadRequest(m) => (StatusCode::BAD_REQUEST, Some(*m)),
            TrackError::Forbidden(m) => (StatusCode::FORBIDDEN, Some(*m)),
            TrackError::UnsupportedMedia(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some(*m)),
            TrackError::Store(e) => {
                tracing::error!("serve: database error: {e}");
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
        };
        let mut r = status.into_response();
        r.extensions_mut().insert(ErrorPage { detail });
        r
    }
}

/// Every [`TrackError`] becomes a page here, in the language the browser
/// asks for; a project's `STATUS.html` (e.g. `404.html`) is used before
/// `error.html`.
async fn render_errors(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let lang = Lang::choose(None, req.headers());
    let mut resp = next.run(req).await;
    let Some(e) = resp.extensions_mut().remove::<ErrorPage>() else {
        return resp;
    };
    let status = resp.status();
    let (title, text) = match status.as_u16() {
        400 | 413 | 415 => ("error_400_title", "error_400_text"),
        403 => ("error_403_title", "error_403_text"),
        404 => ("error_404_title", "error_404_text"),
        _ => ("error_title", "error_503_text"),
    };
    let mut ctx = tera::Context::new();
    ctx.insert("status", &status.as_u16());
    ctx.insert("title", lang.word(title));
    ctx.insert("text", lang.word(text));
    ctx.insert("detail", &e.detail);
    let pages = &s.app.settings.pages;
    let own = format!("{}.html", status.as_u16());
    let name = if pages.has(&own) {
        own.as_str()
    } else {
        "error.html"
    };
    html(status, pages.render(name, lang, ctx))
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet(State(s): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        s.app.settings.pages.css().to_string(),
    )
        .into_response()
}

/// The key of the form tokens: derived from the current signing key (a
/// MAC of a fixed label), so no second secret is needed and rotating the
/// key rotates it.
fn csrf_secret(s: &AppState) -> Vec<u8> {
    s.app
        .settings
        .keys
        .form_tag("cartero form tokens v1")
        .into_bytes()
}

/// A form token for the page whose forms post under `purpose`.
fn form_token(s: &AppState, purpose: &str) -> String {
    csrf::issue(&csrf_secret(s), purpose, s.app.clock.now())
}

/// Refuses a form POST that a browser says came from another site, or
/// whose token (the field `form`) is not one this page was served with (or
/// has expired). The one form-protection check of every form of `cartero
/// serve`: the unsubscribe page, the preference centre, the tracking
/// opt-out, the sign-up confirmation and the hosted sign-up page.
fn check_form(
    s: &AppState,
    headers: &HeaderMap,
    fields: &[(String, String)],
    purpose: &str,
) -> Result<(), TrackError> {
    check_form_token(s, headers, field(fields, "form").unwrap_or(""), purpose)
}

/// [`check_form`] for a token already taken out of its form.
fn check_form_token(
    s: &AppState,
    headers: &HeaderMap,
    token: &str,
    purpose: &str,
) -> Result<(), TrackError> {
    if !csrf::same_origin(headers, &s.app.settings.base_url) {
        return Err(TrackError::Forbidden(
            "the form was posted from another site",
        ));
    }
    csrf::check(&csrf_secret(s), purpose, token, s.app.clock.now()).map_err(|e| match e {
        csrf::CsrfError::Expired => TrackError::Forbidden("the form has expired; reload the page"),
        _ => TrackError::Forbidden("the form is not this page's; reload the page"),
    })
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last address in `X-Forwarded-For` that is not a trusted proxy.
fn client_ip(s: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    forwarded_client(&s.app.settings.trusted_proxies, peer, headers)
}

/// See [`client_ip`]: the right-most untrusted address, never the left-most
/// (the client writes that one itself).
fn forwarded_client(trusted: &[ipnet::IpNet], peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer.ip()) {
        return peer.ip();
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { continue };
        chain.extend(v.split(',').filter_map(|p| p.trim().parse::<IpAddr>().ok()));
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer.ip())
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| {
        // At most 512 characters; a value of at most 512 bytes has no more.
        if v.len() <= 512 {
            v.to_owned()
        } else {
            v.chars().take(512).collect()
        }
    })
}

fn prefs_href(s: &AppState, contact_id: i64) -> String {
    format!(
        "../p/{}",
        s.app
            .settings
            .keys
            .sign(Purpose::Preferences, Subject::Contact(contact_id))
    )
}

// ------------------------------------------------------------ unsubscribe

/// What an unsubscribe token names: the send and its campaign's list, or a
/// contact (every list).
struct Target {
    contact_id: i64,
    email: String,
    send: Option<(i64, i64)>,
    list_id: Option<i64>,
    list_name: Option<String>,
}

async fn unsubscribe_target(s: &AppState, token: &str) -> Result<Target, TrackError> {
    let now = s.app.clock.now();
    let v = s
        .app
        .settings
        .keys
        .verify(Purpose::Unsubscribe, token, now)?;
    match v.subject {
        Subject::Send(id) => {
            let c = repo::send_context(&s.app.store, id)
                .await?
                .ok_or(TrackError::NotFound)?;
            Ok(Target {
                contact_id: c.contact_id,
                email: c.email,
                send: Some((c.send_id, c.campaign_id)),
                list_id: c.list_id,
                list_name: c.list_name,
            })
        }
        Subject::Contact(id) => {
            let (email, _, _) = repo::contact_consents(&s.app.store, id)
                .await?
                .ok_or(TrackError::NotFound)?;
            Ok(Target {
                contact_id: id,
                email,
                send: None,
                list_id: None,
                list_name: None,
            })
        }
    }
}

/// The contact's language: their own locale, else the browser's.
async fn contact_lang(s: &AppState, contact_id: i64, headers: &HeaderMap) -> Lang {
    let locale = crate::store::contacts::find_by_id(&s.app.store, contact_id)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.locale);
    Lang::choose(locale.as_deref(), headers)
}

/// GET /u/{token}: a page with a button; never changes anything (link
/// scanners and prefetchers follow GET links).
async fn unsubscribe_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let t = unsubscribe_target(&s, &token).await?;
    let (_, _, lists) = repo::contact_consents(&s.app.store, t.contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let subscribed = lists
        .iter()
        .any(|l| l.subscribed && t.list_id.is_none_or(|id| id == l.list_id));
    let lang = contact_lang(&s, t.contact_id, &headers).await;
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("unsub_title"));
    ctx.insert("email", &t.email);
    ctx.insert("list", &t.list_name);
    ctx.insert("subscribed", &subscribed);
    ctx.insert("prefs_href", &prefs_href(&s, t.contact_id));
    ctx.insert("csrf", &form_token(&s, &format!("u:{token}")));
    Ok(html(
        StatusCode::OK,
        s.app.settings.pages.render("unsubscribe.html", lang, ctx),
    ))
}

/// POST /u/{token}: RFC 8058 one-click, or the page's buttons. The body
/// must carry `List-Unsubscribe=One-Click`, as multipart/form-data (the
/// RFC's SHOULD) or x-www-form-urlencoded (its MAY). The one-click POST
/// needs nothing else (§3.1: no cookie, no context). The page's buttons
/// add `via=page` and the page's form token, checked like every form; the
/// second button (`scope=all`) leaves every list. The withdrawal is
/// committed before the answer; the answer is 200, never a redirect
/// (RFC 8058 §3.2). Repeating it changes nothing.
async fn unsubscribe(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let headers = req.headers().clone();
    // The token first: a bad link costs no body parsing.
    let t = unsubscribe_target(&s, &token).await?;
    let fields = form_fields(&s, req).await?;
    if !fields
        .iter()
        .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
    {
        return Err(TrackError::BadRequest(
            "the body must carry List-Unsubscribe=One-Click (RFC 8058)",
        ));
    }
    let via_page = field(&fields, "via") == Some("page");
    let all = field(&fields, "scope") == Some("all");
    if via_page || all {
        check_form(&s, &headers, &fields, &format!("u:{token}"))?;
    }
    let method = if via_page {
        consent::Method::Page
    } else {
        consent::Method::OneClick
    };
    let ip = client_ip(&s, peer, &headers);
    let changes = [consent::Change {
        list_id: if all { None } else { t.list_id },
        action: ConsentAction::Withdraw,
    }];
    let out = consent::apply(
        &s.app.store,
        &consent::Request {
            contact_id: t.contact_id,
            changes: &changes,
            method,
            send: t.send,
            ip: events::stored_ip(ip, s.app.settings.ip_storage),
            user_agent: header_text(&headers, "user-agent"),
            at: s.app.clock.now(),
        },
    )
    .await?;
    if out.applied > 0 {
        s.metrics.unsubscribes.fetch_add(1, Ordering::Relaxed);
    }
    let lang = contact_lang(&s, t.contact_id, &headers).await;
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("unsubscribed_title"));
    ctx.insert("list", &t.list_name);
    ctx.insert("all", &(all || t.list_id.is_none()));
    ctx.insert("already", &(out.applied == 0));
    ctx.insert("prefs_href", &prefs_href(&s, t.contact_id));
    Ok(html(
        StatusCode::OK,
        s.app.settings.pages.render("unsubscribed.html", lang, ctx),
    ))
}

/// The fields of a form body, urlencoded or multipart. Bodies are already
/// bounded by `serve.max_body_bytes`.
async fn form_fields(s: &AppState, req: Request) -> Result<Vec<(String, String)>, TrackError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, s)
            .await
            .map_err(|_| TrackError::BadRequest("the multipart body cannot be read"))?;
        let mut out = Vec::new();
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|_| TrackError::BadRequest("the multipart body cannot be read"))?
        {
            let name = field.name().unwrap_or("").to_string();
            let value = field
                .text()
                .await
                .map_err(|_| TrackError::BadRequest("the multipart body cannot be read"))?;
            out.push((name, value));
            if out.len() > 100 {
                return Err(TrackError::BadRequest("too many form fields"));
            }
        }
        Ok(out)
    } else if ct.starts_with("application/x-www-form-urlencoded") || ct.is_empty() {
        let body = Bytes::from_request(req, s)
            .await
            .map_err(|_| TrackError::BadRequest("the body is too large or cannot be read"))?;
        let out: Vec<(String, String)> = form_urlencoded::parse(&body)
            .into_owned()
            .take(101)
            .collect();
        if out.len() > 100 {
            return Err(TrackError::BadRequest("too many form fields"));
        }
        Ok(out)
    } else {
        Err(TrackError::UnsupportedMedia(
            "send multipart/form-data or application/x-www-form-urlencoded",
        ))
    }
}

// ------------------------------------------------------------ pixel, click

/// GET /o/{token}.gif: always the pixel, never cached; the hit is queued.
async fn open(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(file): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let token = file.strip_suffix(".gif").ok_or(TrackError::NotFound)?;
    let now = s.app.clock.now();
    let v = s.app.settings.keys.verify(Purpose::Open, token, now)?;
    let Subject::Send(send_id) = v.subject else {
        return Err(TrackError::NotFound);
    };
    s.queue
        .push(hit(&s, HitKind::Open, send_id, None, now, peer, &req))
        .await;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (
                header::CACHE_CONTROL,
                "no-store, no-cache, must-revalidate, private, max-age=0",
            ),
            (header::EXPIRES, "0"),
        ],
        PIXEL.as_slice(),
    )
        .into_response())
}

/// A pixel or redirect request as the event writer takes it, read from
/// the request's headers where they are (the handlers take the request
/// itself: a `HeaderMap` argument is a copy of every header, per hit).
fn hit(
    s: &AppState,
    kind: HitKind,
    send_id: i64,
    link: Option<(u16, String)>,
    at: crate::domain::time::Millis,
    peer: SocketAddr,
    req: &Request,
) -> Hit {
    let headers = req.headers();
    Hit {
        kind,
        send_id,
        link,
        at,
        head: req.method() == Method::HEAD,
        ip: Some(client_ip(s, peer, headers)),
        user_agent: header_text(headers, "user-agent"),
        purpose: header_text(headers, "sec-purpose").or_else(|| header_text(headers, "purpose")),
        do_not_track: tracking::do_not_track(headers),
    }
}

/// GET /c/{token}?u=URL: 302 to URL only when the token's MAC covers that
/// exact URL (so only links cartero put in that message) and it is http(s).
/// Anything else is a 400 or 404, never a redirect.
async fn click(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let query = req
        .uri()
        .query()
        .ok_or(TrackError::BadRequest("the link has no target"))?;
    let mut pairs = form_urlencoded::parse(query.as_bytes());
    let (Some((k, url)), None) = (pairs.next(), pairs.next()) else {
        return Err(TrackError::BadRequest(
            "the link must carry exactly one target",
        ));
    };
    if k != "u" {
        return Err(TrackError::BadRequest("the link has no target"));
    }
    let now = s.app.clock.now();
    let (send_id, link) = s.app.settings.keys.verify_click(&token, &url, now)?;
    // Defence in depth: rendering signs only absolute http(s) links.
    let target = url::Url::parse(&url).map_err(|_| TrackError::NotFound)?;
    if !matches!(target.scheme(), "http" | "https") || target.host().is_none() {
        return Err(TrackError::NotFound);
    }
    let location = HeaderValue::from_str(target.as_str()).map_err(|_| TrackError::NotFound)?;
    let link = Some((link, url.into_owned()));
    s.queue
        .push(hit(&s, HitKind::Click, send_id, link, now, peer, &req))
        .await;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

// ------------------------------------------------------------ preferences

async fn preference_contact(s: &AppState, token: &str) -> Result<i64, TrackError> {
    let now = s.app.clock.now();
    let v = s
        .app
        .settings
        .keys
        .verify(Purpose::Preferences, token, now)?;
    match v.subject {
        Subject::Contact(id) => Ok(id),
        Subject::Send(id) => Ok(repo::send_context(&s.app.store, id)
            .await?
            .ok_or(TrackError::NotFound)?
            .contact_id),
    }
}

/// The preference centre for `contact_id`, with `notice` (a word key) at
/// the top.
async fn preferences_view(
    s: &AppState,
    token: &str,
    contact_id: i64,
    headers: &HeaderMap,
    notice: Option<&str>,
) -> Result<Response, TrackError> {
    let (email, _, lists) = repo::contact_consents(&s.app.store, contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let contact = crate::store::contacts::find_by_id(&s.app.store, contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let lang = Lang::choose(contact.locale.as_deref(), headers);
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("prefs_title"));
    ctx.insert("email", &email);
    ctx.insert(
        "lists",
        &lists
            .iter()
            .map(|l| {
                // A consent to track is shown by what it means, not by its
                // ledger name (`tracking:LIST`).
                let label = match l
                    .name
                    .strip_prefix(crate::store::track::TRACKING_LIST_PREFIX)
                {
                    Some(list) => format!("{} ({list})", lang.word("tracking_label")),
                    None => l.name.clone(),
                };
                serde_json::json!({
                    "list_id": l.list_id,
                    "name": l.name,
                    "label": label,
                    "tracking": l.name.starts_with(crate::store::track::TRACKING_LIST_PREFIX),
                    "subscribed": l.subscribed,
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "frequencies",
        &contact_requests::Frequency::ALL
            .iter()
            .map(|f| {
                serde_json::json!({
                    "value": f.as_str(),
                    "label": lang.word(&format!("freq_{}", f.as_str())),
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "frequency",
        contact_requests::Frequency::of(&contact.attributes).as_str(),
    );
    ctx.insert("first_name", contact.first_name.as_deref().unwrap_or(""));
    ctx.insert("last_name", contact.last_name.as_deref().unwrap_or(""));
    ctx.insert(
        "attributes",
        &s.app
            .settings
            .editable_attributes
            .iter()
            .map(|name| {
                let value = match contact.attributes.get(name) {
                    Some(serde_json::Value::String(v)) => v.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                serde_json::json!({"name": name, "value": value})
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("notice", &notice.map(|k| lang.word(k)));
    ctx.insert("csrf", &form_token(s, &format!("p:{token}")));
    Ok(html(
        StatusCode::OK,
        s.app.settings.pages.render("preferences.html", lang, ctx),
    ))
}

/// GET /p/{token}: the contact's lists, frequency and details; read-only.
async fn preferences_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let contact_id = preference_contact(&s, &token).await?;
    preferences_view(&s, &token, contact_id, &headers, None).await
}

/// Longest value accepted for a name or attribute from the form.
const MAX_FIELD_CHARS: usize = 200;

/// POST /p/{token}: applies one of the page's forms (`action`): `save`
/// (lists and frequency), `all` (leave every list), `details` (name and
/// editable attributes), `export` (the JSON of everything held) or
/// `forget` (an erasure request). Every form is checked by [`check_form`]
/// first: without the page's token, or from another site, nothing changes.
/// cartero sets no cookies, so there is no session to ride.
async fn preferences(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let headers = req.headers().clone();
    let contact_id = preference_contact(&s, &token).await?;
    let fields = form_fields(&s, req).await?;
    check_form(&s, &headers, &fields, &format!("p:{token}"))?;
    let ip = events::stored_ip(client_ip(&s, peer, &headers), s.app.settings.ip_storage);
    let user_agent = header_text(&headers, "user-agent");
    let now = s.app.clock.now();
    let asked = contact_requests::Asked {
        contact_id,
        ip: ip.clone(),
        user_agent: user_agent.clone(),
        at: now,
    };
    let notice = match field(&fields, "action").unwrap_or("save") {
        "save" | "all" => {
            let all = field(&fields, "action") == Some("all");
            let wanted: Vec<i64> = fields
                .iter()
                .filter(|(k, _)| k == "list")
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            let (_, _, lists) = repo::contact_consents(&s.app.store, contact_id)
                .await?
                .ok_or(TrackError::NotFound)?;
            let changes: Vec<consent::Change> = lists
                .iter()
                .filter_map(|l| {
                    let want = !all && wanted.contains(&l.list_id);
                    (want != l.subscribed).then_some(consent::Change {
                        list_id: Some(l.list_id),
                        action: if want {
                            ConsentAction::Grant
                        } else {
                            ConsentAction::Withdraw
                        },
                    })
                })
                .collect();
            let out = consent::apply(
                &s.app.store,
                &consent::Request {
                    contact_id,
                    changes: &changes,
                    method: consent::Method::Preferences,
                    send: None,
                    ip,
                    user_agent,
                    at: now,
                },
            )
            .await?;
            let mut changed = out.applied > 0;
            if !all && let Some(f) = field(&fields, "frequency") {
                let f = contact_requests::Frequency::parse(f)
                    .ok_or(TrackError::BadRequest("unknown frequency"))?;
                changed |= contact_requests::set_frequency(&s.app.store, &asked, f).await?;
            }
            if changed { "saved" } else { "nothing" }
        }
        "details" => {
            let text = |name: &str| -> Result<Option<String>, TrackError> {
                match field(&fields, name) {
                    None => Ok(None),
                    Some(v) if v.chars().count() > MAX_FIELD_CHARS => Err(TrackError::BadRequest(
                        "a field is longer than 200 characters",
                    )),
                    Some(v) if v.chars().any(|c| c.is_control()) => {
                        Err(TrackError::BadRequest("a field holds control characters"))
                    }
                    Some(v) => Ok(Some(v.to_string())),
                }
            };
            let mut c = contact_requests::Correction {
                first_name: text("first_name")?,
                last_name: text("last_name")?,
                attributes: Vec::new(),
            };
            // Only the attributes the project declared editable; any other
            // `attr.*` field is ignored.
            for name in &s.app.settings.editable_attributes {
                if let Some(v) = text(&format!("attr.{name}"))? {
                    c.attributes.push((name.clone(), v));
                }
            }
            if contact_requests::correct(&s.app.store, &asked, &c).await? {
                "details_saved"
            } else {
                "nothing"
            }
        }
        "export" => {
            let data = crate::store::compliance::export(&s.app.store, contact_id).await?;
            let body = serde_json::to_string_pretty(&data).unwrap_or_else(|_| "{}".into());
            return Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"my-data.json\"",
                    ),
                ],
                body,
            )
                .into_response());
        }
        "forget" => {
            if field(&fields, "confirm") != Some("yes") {
                "forget_needs_confirm"
            } else if contact_requests::request_erasure(&s.app.store, &asked).await? {
                "forget_recorded"
            } else {
                "forget_already"
            }
        }
        _ => return Err(TrackError::BadRequest("unknown action")),
    };
    preferences_view(&s, &token, contact_id, &headers, Some(notice)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.2.3.4, 203.0.113.7, 10.0.0.9".parse().unwrap(),
        );
        let proxy: SocketAddr = "10.0.0.1:5555".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:5555".parse().unwrap();
        // The client forged 1.2.3.4; the proxy appended 203.0.113.7.
        assert_eq!(
            forwarded_client(&trusted, proxy, &h),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(forwarded_client(&trusted, stranger, &h), stranger.ip());
        assert_eq!(forwarded_client(&[], proxy, &h), proxy.ip());
        assert_eq!(
            forwarded_client(&trusted, proxy, &HeaderMap::new()),
            proxy.ip()
        );
    }
}
