//! View in browser (`/v/{token}`) and the public archive (`/archive`, its
//! RSS feed and `/sitemap.xml`).
//!
//! Both re-render the message from the campaign's files (the path the send
//! recorded in `campaigns.file_path`, resolved against the project folder)
//! rather than storing every rendered body: one body per send would grow
//! the database by the size of every message sent, and the files are the
//! project's record of what was sent. The price, documented in
//! docs/SERVE.md: `/v/` shows the contact's data as it is now, and a
//! campaign file edited after the send shows the edit. No tracking pixel
//! and no click redirect are added, so viewing is never an open.
//!
//! The archive renders a campaign marked `public = true` for a stand-in
//! contact (no name, `subscriber@example.com`), never for a real one, so no
//! personal data can reach a public page.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, Lang, TrackError, html};
use crate::campaign::Campaign;
use crate::domain::time::Millis;
use crate::domain::token::{Purpose, Subject};
use crate::render::{Personal, Renderer, escape_html};
use crate::store::archive as repo;
use crate::store::contacts::Contact;

/// A message's own HTML may use inline styles and remote images (mail is
/// written that way); it still gets no script, no form, no frame, and the
/// images get no referrer (the URL holds the token).
const MESSAGE_CSP: &str = "default-src 'none'; img-src https: http: data:; \
                           style-src 'unsafe-inline' https:; font-src https: data:; \
                           form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Campaigns read for the archive page and the feed.
const ARCHIVE_LIMIT: i64 = 500;

fn campaign_path(s: &AppState, file_path: &str) -> PathBuf {
    let p = PathBuf::from(file_path);
    if p.is_absolute() {
        p
    } else {
        s.app.settings.project_dir.join(p)
    }
}

fn load(s: &AppState, file_path: &str, slug: &str) -> Option<Campaign> {
    // A journey's send step is a campaign inside the journey file.
    match Campaign::load_slug(
        &campaign_path(s, file_path),
        &s.app.settings.templates_dir,
        slug,
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("serve: campaign {file_path} cannot be read: {e}");
            None
        }
    }
}

fn render(
    c: &Campaign,
    contact: &Contact,
    unsubscribe_url: String,
    view_url: String,
) -> Option<(String, String)> {
    let personal = Personal {
        unsubscribe_url,
        view_url,
    };
    let r = Renderer::new(c).and_then(|r| r.render(c, contact, &personal));
    match r {
        Ok(m) => Some((m.subject, m.html)),
        Err(e) => {
            tracing::warn!("serve: campaign {} cannot be rendered: {e}", c.slug);
            None
        }
    }
}

fn message(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(MESSAGE_CSP),
            ),
        ],
        body,
    )
        .into_response()
}

/// GET /v/{token}: the message this send's contact received, re-rendered.
pub(super) async fn view(
    State(s): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let v = s
        .app
        .settings
        .keys
        .verify(Purpose::View, &token, s.app.clock.now())?;
    let Subject::Send(send_id) = v.subject else {
        return Err(TrackError::NotFound);
    };
    let sv = repo::send_view(&s.app.store, send_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let contact = crate::store::contacts::find_by_id(&s.app.store, sv.contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    if contact.status == "erased" {
        return Err(TrackError::NotFound);
    }
    let c = load(&s, &sv.file_path, &sv.slug).ok_or(TrackError::NotFound)?;
    let b = base(&s);
    let unsub = format!(
        "{b}/u/{}",
        s.app
            .settings
            .keys
            .sign(Purpose::Unsubscribe, Subject::Send(send_id))
    );
    let (_, body) =
        render(&c, &contact, unsub, format!("{b}/v/{token}")).ok_or(TrackError::NotFound)?;
    Ok(message(body))
}

/// The stand-in the archive renders for: no personal data at all. Its
/// attributes are the keys a real recipient has, every value blank, so a
/// template that prints `contact.attributes.city` renders (Tera refuses an
/// undefined name) and prints nothing.
async fn stand_in(s: &AppState, slug: &str) -> Result<Contact, TrackError> {
    let keys = repo::recipient_attributes(&s.app.store, slug).await?;
    let mut attributes = serde_json::Map::new();
    if let Some(serde_json::Value::Object(m)) =
        keys.and_then(|k| serde_json::from_str::<serde_json::Value>(&k).ok())
    {
        for k in m.keys() {
            attributes.insert(k.clone(), "".into());
        }
    }
    Ok(Contact {
        id: 0,
        email: "subscriber@example.com".into(),
        first_name: None,
        last_name: None,
        locale: None,
        timezone: None,
        attributes: serde_json::Value::Object(attributes),
        status: "active".into(),
        tags: Vec::new(),
    })
}

struct Published {
    slug: String,
    title: String,
    description: String,
    sent_at: Millis,
    html: String,
}

fn base(s: &AppState) -> String {
    s.app
        .settings
        .base_url
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

async fn publish(s: &AppState, row: &repo::SentCampaign) -> Result<Option<Published>, TrackError> {
    let Some(c) = load(s, &row.file_path, &row.slug) else {
        return Ok(None);
    };
    if !c.public {
        return Ok(None);
    }
    let who = stand_in(s, &row.slug).await?;
    let Some((subject, html)) = render(
        &c,
        &who,
        format!("{}/archive", base(s)),
        format!("{}/archive/{}", base(s), c.slug),
    ) else {
        return Ok(None);
    };
    Ok(Some(Published {
        slug: c.slug.clone(),
        title: if subject.trim().is_empty() {
            c.name.clone()
        } else {
            subject
        },
        description: c.description.clone().unwrap_or_default(),
        sent_at: row.sent_at,
        html,
    }))
}

async fn published(s: &AppState) -> Result<Vec<Published>, TrackError> {
    let rows = repo::sent_campaigns(&s.app.store, ARCHIVE_LIMIT).await?;
    let mut out = Vec::new();
    for r in &rows {
        if let Some(p) = publish(s, r).await? {
            out.push(p);
        }
    }
    Ok(out)
}

fn date(ms: Millis) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn ymd(ms: Millis) -> String {
    date(ms)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
}

/// GET /archive: every public campaign, newest first.
pub(super) async fn archive(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, TrackError> {
    let lang = Lang::choose(None, &headers);
    let list = published(&s).await?;
    let b = base(&s);
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("archive_title"));
    ctx.insert("description", lang.word("archive_title"));
    ctx.insert("canonical", &format!("{b}/archive"));
    ctx.insert("feed", &format!("{b}/archive/feed.xml"));
    ctx.insert(
        "campaigns",
        &list
            .iter()
            .map(|p| {
                serde_json::json!({
                    "href": format!("archive/{}", p.slug),
                    "title": p.title,
                    "description": p.description,
                    "date": ymd(p.sent_at),
                })
            })
            .collect::<Vec<_>>(),
    );
    let mut r = html(
        StatusCode::OK,
        s.app.settings.pages.render("archive.html", lang, ctx),
    );
    // Public and the same for everyone: caches may keep it a while.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}

/// GET /archive/{slug}: one public campaign, with its canonical URL and
/// Open Graph tags put into the message's `<head>`.
pub(super) async fn archived(
    State(s): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Response, TrackError> {
    let row = repo::sent_campaign(&s.app.store, &slug)
        .await?
        .ok_or(TrackError::NotFound)?;
    let p = publish(&s, &row).await?.ok_or(TrackError::NotFound)?;
    let canonical = format!("{}/archive/{}", base(&s), p.slug);
    let tags = format!(
        "\n<link rel=\"canonical\" href=\"{c}\">\n<meta name=\"description\" content=\"{d}\">\n\
         <meta property=\"og:type\" content=\"article\">\n<meta property=\"og:title\" content=\"{t}\">\n\
         <meta property=\"og:description\" content=\"{d}\">\n<meta property=\"og:url\" content=\"{c}\">\n",
        c = escape_html(&canonical),
        d = escape_html(&p.description),
        t = escape_html(&p.title),
    );
    let body = insert_in_head(&p.html, &tags, &p.title);
    let mut r = message(body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}

/// Puts `tags` at the start of the document's `<head>`; a body without one
/// gets a head (with a title) in front.
fn insert_in_head(html: &str, tags: &str, title: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("<head") {
        let at = from + i;
        let next = lower.as_bytes().get(at + 5).copied();
        if matches!(next, Some(b'>' | b' ' | b'\t' | b'\n' | b'\r'))
            && let Some(end) = lower[at..].find('>')
        {
            let cut = at + end + 1;
            return format!("{}{tags}{}", &html[..cut], &html[cut..]);
        }
        from = at + 5;
    }
    let head = format!(
        "<head><meta charset=\"utf-8\"><title>{}</title>{tags}</head>",
        escape_html(title)
    );
    // After the `<html ...>` start tag when there is one.
    if let Some(at) = lower.find("<html")
        && matches!(
            lower.as_bytes().get(at + 5),
            Some(b'>' | b' ' | b'\t' | b'\n' | b'\r')
        )
        && let Some(end) = lower[at..].find('>')
    {
        let cut = at + end + 1;
        return format!("{}{head}{}", &html[..cut], &html[cut..]);
    }
    format!("<!doctype html>\n<html>{head}\n{html}</html>")
}

fn xml(body: String, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// GET /archive/feed.xml: RSS 2.0.
pub(super) async fn feed(State(s): State<AppState>) -> Result<Response, TrackError> {
    let list = published(&s).await?;
    let b = base(&s);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\"><channel>\n",
    );
    out.push_str(&format!(
        "<title>{}</title>\n<link>{}/archive</link>\n<description>{}</description>\n",
        escape_html(Lang::En.word("archive_title")),
        escape_html(&b),
        escape_html(Lang::En.word("archive_title")),
    ));
    for p in &list {
        let link = escape_html(&format!("{b}/archive/{}", p.slug));
        let when = date(p.sent_at)
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc2822)
                    .ok()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "<item><title>{}</title><link>{link}</link><guid isPermaLink=\"true\">{link}</guid>\
             <pubDate>{when}</pubDate><description>{}</description></item>\n",
            escape_html(&p.title),
            escape_html(&p.description),
        ));
    }
    out.push_str("</channel></rss>\n");
    Ok(xml(out, "application/rss+xml; charset=utf-8"))
}

/// GET /sitemap.xml: the archive and every public campaign (sitemaps.org).
pub(super) async fn sitemap(State(s): State<AppState>) -> Result<Response, TrackError> {
    let list = published(&s).await?;
    let b = base(&s);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    out.push_str(&format!(
        "<url><loc>{}</loc></url>\n",
        escape_html(&format!("{b}/archive"))
    ));
    for p in &list {
        out.push_str(&format!(
            "<url><loc>{}</loc><lastmod>{}</lastmod></url>\n",
            escape_html(&format!("{b}/archive/{}", p.slug)),
            ymd(p.sent_at)
        ));
    }
    out.push_str("</urlset>\n");
    Ok(xml(out, "application/xml; charset=utf-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tags_go_inside_the_head() {
        assert_eq!(
            insert_in_head("<html><HEAD><title>x</title></HEAD>", "T", "x"),
            "<html><HEAD>T<title>x</title></HEAD>"
        );
        assert_eq!(
            insert_in_head("<header>a</header>", "T", "<x>"),
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>&lt;x&gt;</title>T</head>\n<header>a</header></html>"
        );
        assert_eq!(
            insert_in_head("<HTML lang=es><body>b</body></HTML>", "T", "x"),
            "<HTML lang=es><head><meta charset=\"utf-8\"><title>x</title>T</head><body>b</body></HTML>"
        );
    }
}
