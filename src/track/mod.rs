//! The recipients' HTTP endpoint of `cartero serve`: one-click unsubscribe
//! (RFC 8058), the open pixel, the click redirect, the preference centre,
//! `/healthz` and `/metrics`. Every request is treated as hostile: tokens are
//! verified before anything is read, GET and HEAD never change state, a
//! click redirects only to a URL whose MAC the token carries, bodies and
//! request times are bounded, pages escape every value and carry a strict
//! CSP and `Referrer-Policy: no-referrer` (the URL holds the token).
//!
//! Handlers are thin: they verify, call `consent::apply` or queue a hit,
//! and answer; errors become status codes in one place ([`TrackError`]).

pub mod consent;
pub mod events;
pub mod machine;
pub mod ops;
pub mod pages;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Path, RawQuery, Request, State,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::app::App;
use crate::domain::ConsentAction;
use crate::domain::token::{Purpose, Subject, TokenError};
use crate::store::{StoreError, track as repo};
use events::{EventQueue, Hit, HitKind};

/// Counters for `/metrics` (Prometheus text format).
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_queued: AtomicU64,
    pub events_written: AtomicU64,
    /// The queue was full: the hit was answered but not recorded.
    pub events_dropped: AtomicU64,
    /// The send named by a valid token no longer exists.
    pub events_orphaned: AtomicU64,
    /// The database refused a batch after retries.
    pub events_lost: AtomicU64,
    pub unsubscribes: AtomicU64,
    /// Reads of the bounce mailbox by serve's feedback poller.
    pub feedback_polls: AtomicU64,
    /// Requests by route and status, and their latency.
    pub http: ops::HttpMetrics,
}

#[derive(Clone)]
struct AppState {
    app: App,
    queue: EventQueue,
    metrics: Arc<Metrics>,
}

/// The 43-byte transparent 1×1 GIF.
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// No scripts, no external resources, forms only to this origin, never
/// framed (clickjacking an unsubscribe button).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(app: App, queue: EventQueue, metrics: Arc<Metrics>) -> Router {
    let max_body = app.settings.max_body_bytes;
    let timeout = app.settings.request_timeout;
    let state = AppState {
        app,
        queue,
        metrics,
    };
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
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/o/{file}", get(open))
        .route("/c/{token}", get(click))
        .route("/p/{token}", get(preferences_page).post(preferences))
        .fallback(|| async { TrackError::NotFound })
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
        .layer(h("content-security-policy", CSP))
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

impl IntoResponse for TrackError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            // A token that does not parse is a bad request; one that parses
            // but is not ours (or no longer) names nothing we know.
            TrackError::Token(TokenError::Encoding | TokenError::Length | TokenError::Version) => (
                StatusCode::BAD_REQUEST,
                "Bad link",
                "This link is damaged: check that it was copied whole.",
            ),
            TrackError::Token(_) | TrackError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "This link is not valid, or no longer.",
            ),
            TrackError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", *m),
            TrackError::Forbidden(m) => (StatusCode::FORBIDDEN, "Forbidden", *m),
            TrackError::UnsupportedMedia(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported", *m)
            }
            TrackError::Store(e) => {
                tracing::error!("serve: database error: {e}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again later",
                    "We could not record this just now. Please try again in a minute.",
                )
            }
        };
        html(status, pages::error(title, message))
    }
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
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(512).collect())
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

/// GET /u/{token}: a page with a button; never changes anything (link
/// scanners and prefetchers follow GET links).
async fn unsubscribe_page(
    State(s): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let t = unsubscribe_target(&s, &token).await?;
    let (_, _, lists) = repo::contact_consents(&s.app.store, t.contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let subscribed = lists
        .iter()
        .any(|l| l.subscribed && t.list_id.is_none_or(|id| id == l.list_id));
    Ok(html(
        StatusCode::OK,
        pages::unsubscribe(
            &t.email,
            t.list_name.as_deref(),
            subscribed,
            &prefs_href(&s, t.contact_id),
        ),
    ))
}

/// POST /u/{token}: RFC 8058 one-click (or the page's button). The body
/// must carry `List-Unsubscribe=One-Click`, as multipart/form-data (the
/// RFC's SHOULD) or x-www-form-urlencoded (its MAY). The withdrawal is
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
    let method = if fields.iter().any(|(k, v)| k == "via" && v == "page") {
        consent::Method::Page
    } else {
        consent::Method::OneClick
    };
    let ip = client_ip(&s, peer, &headers);
    let changes = [consent::Change {
        list_id: t.list_id,
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
    Ok(html(
        StatusCode::OK,
        pages::unsubscribed(
            t.list_name.as_deref(),
            out.applied == 0,
            &prefs_href(&s, t.contact_id),
        ),
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
    method: Method,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, TrackError> {
    let token = file.strip_suffix(".gif").ok_or(TrackError::NotFound)?;
    let now = s.app.clock.now();
    let v = s.app.settings.keys.verify(Purpose::Open, token, now)?;
    let Subject::Send(send_id) = v.subject else {
        return Err(TrackError::NotFound);
    };
    s.queue.push(Hit {
        kind: HitKind::Open,
        send_id,
        link: None,
        at: now,
        head: method == Method::HEAD,
        ip: Some(client_ip(&s, peer, &headers)),
        user_agent: header_text(&headers, "user-agent"),
        purpose: header_text(&headers, "sec-purpose").or_else(|| header_text(&headers, "purpose")),
    });
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

/// GET /c/{token}?u=URL: 302 to URL only when the token's MAC covers that
/// exact URL (so only links cartero put in that message) and it is http(s).
/// Anything else is a 400 or 404, never a redirect.
async fn click(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, TrackError> {
    let query = query.ok_or(TrackError::BadRequest("the link has no target"))?;
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
    s.queue.push(Hit {
        kind: HitKind::Click,
        send_id,
        link: Some((link, url.into_owned())),
        at: now,
        head: method == Method::HEAD,
        ip: Some(client_ip(&s, peer, &headers)),
        user_agent: header_text(&headers, "user-agent"),
        purpose: header_text(&headers, "sec-purpose").or_else(|| header_text(&headers, "purpose")),
    });
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

/// GET /p/{token}: the contact's lists and their consent; read-only.
async fn preferences_page(
    State(s): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let contact_id = preference_contact(&s, &token).await?;
    let (email, _, lists) = repo::contact_consents(&s.app.store, contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let tag = s.app.settings.keys.form_tag(&token);
    Ok(html(
        StatusCode::OK,
        pages::preferences(&email, &lists, &tag, None),
    ))
}

/// POST /p/{token}: applies the form. CSRF: the form carries a MAC of the
/// page's token (only someone who had the page can post it), and a
/// browser's cross-site POST is refused by `Sec-Fetch-Site`/`Origin`. No
/// cookies are set anywhere, so there is no session to ride.
async fn preferences(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let headers = req.headers().clone();
    if header_text(&headers, "sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return Err(TrackError::Forbidden(
            "the form was posted from another site",
        ));
    }
    if let Some(origin) = header_text(&headers, "origin") {
        let ours = s.app.settings.base_url.origin().ascii_serialization();
        if origin != ours {
            return Err(TrackError::Forbidden(
                "the form was posted from another site",
            ));
        }
    }
    let contact_id = preference_contact(&s, &token).await?;
    let fields = form_fields(&s, req).await?;
    let tag = fields
        .iter()
        .find(|(k, _)| k == "form")
        .map(|(_, v)| v.as_str());
    if !tag.is_some_and(|t| s.app.settings.keys.check_form_tag(&token, t)) {
        return Err(TrackError::Forbidden(
            "the form is not this page's; reload the page",
        ));
    }
    let all = fields.iter().any(|(k, v)| k == "action" && v == "all");
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
    let ip = client_ip(&s, peer, &headers);
    let out = consent::apply(
        &s.app.store,
        &consent::Request {
            contact_id,
            changes: &changes,
            method: consent::Method::Preferences,
            send: None,
            ip: events::stored_ip(ip, s.app.settings.ip_storage),
            user_agent: header_text(&headers, "user-agent"),
            at: s.app.clock.now(),
        },
    )
    .await?;
    let (email, _, lists) = repo::contact_consents(&s.app.store, contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let notice = if out.applied == 0 {
        "Nothing to change."
    } else {
        "Your choices are saved."
    };
    let tag = s.app.settings.keys.form_tag(&token);
    Ok(html(
        StatusCode::OK,
        pages::preferences(&email, &lists, &tag, Some(notice)),
    ))
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
