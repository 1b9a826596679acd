//! Rendering: one personalised MIME message per recipient.
//!
//! Tera renders the subject, the HTML body (auto-escaped, so personal data
//! cannot inject markup) and the text body (generated from the HTML when the
//! campaign has no text template). Undefined variables are errors, never
//! blanks. Then links get UTM parameters, the message gets its headers
//! (Message-ID, List-Unsubscribe per RFC 8058, List-Id, Feedback-ID) and,
//! when a key is configured, a DKIM signature. Nothing here does network I/O
//! or touches the database.

pub mod attributes;
pub mod body;
pub mod dkim;
pub mod links;
pub mod mime;
pub mod sandbox;
pub mod text;
pub mod track;

use std::path::Path;

use serde::Serialize;
use tera::Tera;

use crate::campaign::{Campaign, Location};
use crate::store::contacts::Contact;

pub use dkim::{DkimError, DkimSigner};
pub use mime::{Envelope, MessageParts, OutgoingMessage, build_message};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: cannot read template: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A syntax error in a template; Tera's message carries line and column.
    #[error("{path}: template error: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {message}")]
    Render { path: String, message: String },
    #[error("cannot build the message: {0}")]
    Mime(String),
    #[error(transparent)]
    Dkim(#[from] DkimError),
}

const SUBJECT: &str = "subject";
const HTML: &str = "body.html";
const TEXT: &str = "body.txt";

/// Bytes a rendered subject may hold. RFC 5322 §2.1.1 limits a line to 998
/// characters; a subject is folded over several, but one much longer than a
/// screen is a template bug (a loop), not a message.
const MAX_SUBJECT: usize = 2_000;
/// Bytes a rendered HTML or text body may hold: far above any real message,
/// low enough that a runaway loop stops before it fills the memory.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// Width of the text part generated from HTML.
/// The compiled templates of one campaign.
pub struct Renderer {
    tera: Tera,
    has_text: bool,
    html_path: String,
    text_path: Option<String>,
    subject_at: Location,
    utm: Vec<(String, String)>,
}

/// What a template sees as `contact`.
#[derive(Debug, Serialize)]
struct ContactView<'a> {
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    name: String,
    locale: &'a str,
    timezone: &'a str,
    attributes: &'a serde_json::Value,
    tags: &'a [String],
}

/// Per-recipient values beside the contact.
#[derive(Debug, Clone)]
pub struct Personal {
    pub unsubscribe_url: String,
    /// This message in a browser (`cartero serve`'s `/v/`); empty without
    /// `[serve]`.
    pub view_url: String,
}

impl Personal {
    /// The footer link that withdraws the consent to track alone
    /// (`cartero serve`'s `/u/{token}/tracking`, docs/TRACKING.md): the
    /// unsubscribe link's page for it, so it needs no token of its own.
    /// Empty without `[serve]` (then `view_url` is empty too: nothing
    /// answers either) and where the unsubscribe URL is not a `/u/` link
    /// (the public archive's stand-in).
    pub fn tracking_optout_url(&self) -> String {
        // `BASE/u/TOKEN`, BASE possibly with a path of its own.
        let is_link = url::Url::parse(&self.unsubscribe_url).is_ok_and(|u| {
            let seg: Vec<&str> = u.path_segments().into_iter().flatten().collect();
            matches!(seg.as_slice(), [.., "u", token] if !token.is_empty())
        });
        if self.view_url.is_empty() || !is_link {
            String::new()
        } else {
            format!("{}/tracking", self.unsubscribe_url)
        }
    }
}

/// The rendered text of one message, before MIME.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl Renderer {
    pub fn new(campaign: &Campaign) -> Result<Self, RenderError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| RenderError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let html_path = campaign.html_template.display().to_string();
        let text_path = campaign
            .text_template
            .as_ref()
            .map(|p| p.display().to_string());
        // No environment, no files, bounded loops (sandbox.rs).
        let mut tera = sandbox::tera();
        // Only the HTML body is escaped: the subject and text part are not
        // HTML, and escaping them would show &amp; to the reader.
        tera.autoescape_on(vec![HTML]);
        tera.set_escape_fn(escape_html);
        let syntax = |path: &str, e: tera::Error| RenderError::Syntax {
            path: path.to_string(),
            message: tera_message(&e),
        };
        let sandboxed = |tera: &Tera, name: &str, path: &str| {
            sandbox::check_template(tera, name).map_err(|message| RenderError::Syntax {
                path: path.to_string(),
                message,
            })
        };
        tera.add_raw_template(HTML, &read(&campaign.html_template)?)
            .map_err(|e| syntax(&html_path, e))?;
        sandboxed(&tera, HTML, &html_path)?;
        if let (Some(p), Some(tp)) = (&campaign.text_template, &text_path) {
            tera.add_raw_template(TEXT, &read(p)?)
                .map_err(|e| syntax(tp, e))?;
            sandboxed(&tera, TEXT, tp)?;
        }
        let subject_at = campaign.subject_at.clone();
        tera.add_raw_template(SUBJECT, &campaign.subject)
            .map_err(|e| RenderError::Syntax {
                path: format!("{}:{}:{}", subject_at.path, subject_at.line, subject_at.col),
                message: tera_message(&e),
            })?;
        sandboxed(
            &tera,
            SUBJECT,
            &format!("{}:{}:{}", subject_at.path, subject_at.line, subject_at.col),
        )?;
        Ok(Self {
            tera,
            has_text: campaign.text_template.is_some(),
            html_path,
            text_path,
            subject_at,
            utm: campaign.utm.clone(),
        })
    }

    pub fn render(
        &self,
        campaign: &Campaign,
        contact: &Contact,
        personal: &Personal,
    ) -> Result<Rendered, RenderError> {
        let mut ctx = tera::Context::new();
        let name = [contact.first_name.as_deref(), contact.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        ctx.insert(
            "contact",
            &ContactView {
                email: &contact.email,
                first_name: contact.first_name.as_deref().unwrap_or(""),
                last_name: contact.last_name.as_deref().unwrap_or(""),
                name,
                locale: contact.locale.as_deref().unwrap_or(""),
                timezone: contact.timezone.as_deref().unwrap_or(""),
                attributes: &contact.attributes,
                tags: &contact.tags,
            },
        );
        ctx.insert(
            "campaign",
            &serde_json::json!({ "name": campaign.name, "id": campaign.slug }),
        );
        ctx.insert("unsubscribe_url", &personal.unsubscribe_url);
        ctx.insert("view_url", &personal.view_url);
        let tracking_optout_url = personal.tracking_optout_url();
        ctx.insert("tracking_optout_url", &tracking_optout_url);

        let render_capped = |name: &str, path: &str, limit: usize| {
            let err = |message| RenderError::Render {
                path: path.to_string(),
                message,
            };
            let mut out = sandbox::Capped::new(limit);
            self.tera
                .render_to(name, &ctx, &mut out)
                .map_err(|e| err(tera_message(&e)))?;
            String::from_utf8(out.buf).map_err(|e| err(e.to_string()))
        };
        let render = |name: &str, path: &str| render_capped(name, path, MAX_BODY);
        let subject_path = format!(
            "{}:{}:{} (subject)",
            self.subject_at.path, self.subject_at.line, self.subject_at.col
        );
        // Header injection guard: a contact's data must not add header
        // lines or carry raw controls into the Subject (RFC 5322 §3.2.5).
        let subject = crate::domain::text::header_phrase(&render_capped(
            SUBJECT,
            &subject_path,
            MAX_SUBJECT,
        )?);
        // cartero's own links (today the unsubscribe URL; preference and
        // view-in-browser pages join it) never carry tracking parameters:
        // the message keeps one unsubscribe URL, its List-Unsubscribe's.
        let own = |url: &str| {
            url == personal.unsubscribe_url
                || (!url.is_empty() && (url == personal.view_url || url == tracking_optout_url))
        };
        let html = links::add_utm_except(&render(HTML, &self.html_path)?, &self.utm, &own);
        let text = if self.has_text {
            let path = self.text_path.as_deref().unwrap_or(TEXT);
            render(TEXT, path)?
        } else {
            html_to_text(&html)
        };
        Ok(Rendered {
            subject,
            html,
            text,
        })
    }
}

/// Escapes the five characters that can change HTML structure. Tera's
/// default also escapes `/`, which turns every URL in an attribute into
/// `https:&#x2F;&#x2F;...`: valid, but unreadable in the source and mangled by
/// some mail clients' link scanners.
pub fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A readable text alternative of an HTML body (links kept whole, as
/// footnotes; `text`).
pub fn html_to_text(html: &str) -> String {
    text::html_to_text(html)
}

/// Tera nests the useful part of its message in the error's sources.
pub(crate) fn tera_message(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn campaign(html: &str, text: Option<&str>, subject: &str) -> (tempfile::TempDir, Campaign) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.html"), html).unwrap();
        let mut toml = format!(
            "name = \"T\"\nsubject = {subject:?}\nfrom = \"a@b.example\"\nlist = \"l\"\n[template]\nhtml = \"a.html\"\n"
        );
        if let Some(t) = text {
            std::fs::write(d.path().join("a.txt"), t).unwrap();
            toml.push_str("text = \"a.txt\"\n");
        }
        toml.push_str("[utm]\nsource = \"cartero\"\n");
        let c = Campaign::parse(&toml, Path::new("c.toml"), d.path()).unwrap();
        (d, c)
    }

    fn contact() -> Contact {
        Contact {
            id: 1,
            email: "ana@example.com".into(),
            first_name: Some("<script>alert(1)</script>".into()),
            last_name: Some("García".into()),
            locale: None,
            timezone: None,
            attributes: serde_json::json!({"country": "ES"}),
            status: "active".into(),
            tags: vec!["vip".into()],
        }
    }

    fn personal() -> Personal {
        Personal {
            unsubscribe_url: "https://t.example/u/abc".into(),
            view_url: String::new(),
        }
    }

    #[test]
    fn the_tracking_optout_link_is_the_unsubscribe_links_page_when_served() {
        let mut p = Personal {
            unsubscribe_url: "https://t.example/news/u/abc".into(),
            view_url: "https://t.example/news/v/def".into(),
        };
        assert_eq!(
            p.tracking_optout_url(),
            "https://t.example/news/u/abc/tracking"
        );
        // No `[serve]`: nothing answers, so no link.
        p.view_url.clear();
        assert_eq!(p.tracking_optout_url(), "");
        // The archive's stand-in: its unsubscribe URL is not a /u/ link.
        p.view_url = "https://t.example/archive/x".into();
        p.unsubscribe_url = "https://t.example/archive/x".into();
        assert_eq!(p.tracking_optout_url(), "");
    }

    #[test]
    fn escapes_personal_data_in_html_only() {
        let (_d, c) = campaign(
            "<p>Hi {{ contact.first_name }} from {{ contact.attributes.country }}</p><a href=\"https://shop.example/x\">x</a>",
            None,
            "Hi {{ contact.first_name }}",
        );
        let r = Renderer::new(&c)
            .unwrap()
            .render(&c, &contact(), &personal())
            .unwrap();
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert_eq!(r.subject, "Hi <script>alert(1)</script>");
        assert!(
            r.html.contains("https://shop.example/x?utm_source=cartero"),
            "{}",
            r.html
        );
        assert!(r.text.contains("from ES"), "{}", r.text);
    }

    #[test]
    fn undefined_variables_are_errors_naming_the_file() {
        let (_d, c) = campaign("<p>{{ contact.attributes.missing }}</p>", None, "x");
        let e = Renderer::new(&c)
            .unwrap()
            .render(&c, &contact(), &personal())
            .unwrap_err();
        assert!(e.to_string().contains("a.html"), "{e}");
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let (_d, c) = campaign("<p>{{ contact.first_name </p>", None, "x");
        let e = Renderer::new(&c).err().unwrap().to_string();
        assert!(e.contains("a.html") && e.contains("template error"), "{e}");
    }

    #[test]
    fn a_loop_in_the_subject_stops_at_the_bound() {
        let (_d, c) = campaign(
            "<p>x</p>",
            None,
            "{% for i in range(end=10000) %}{{ contact.first_name }}{% endfor %}",
        );
        let e = Renderer::new(&c)
            .unwrap()
            .render(&c, &contact(), &personal())
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:2:11 (subject)"), "{e}");
        assert!(e.contains("longer than 2000 bytes"), "{e}");
    }

    #[test]
    fn templates_cannot_read_the_environment_or_include() {
        let (_d, c) = campaign("<p>{{ get_env(name=\"PATH\") }}</p>", None, "x");
        let e = Renderer::new(&c)
            .unwrap()
            .render(&c, &contact(), &personal())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.html") && e.contains("cannot read the environment"),
            "{e}"
        );
        let (_d, c) = campaign("<p>{% include \"body.html\" %}</p>", None, "x");
        let e = Renderer::new(&c).err().unwrap().to_string();
        assert!(e.contains("a.html") && e.contains("include"), "{e}");
    }

    #[test]
    fn subject_newlines_from_data_are_flattened() {
        let (_d, c) = campaign(
            "<p>x</p>",
            Some("Hi {{ contact.first_name }}"),
            "{{ contact.attributes.country }}",
        );
        let mut ct = contact();
        ct.attributes = serde_json::json!({"country": "ES\r\nBcc: evil@x.example"});
        let r = Renderer::new(&c)
            .unwrap()
            .render(&c, &ct, &personal())
            .unwrap();
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
        assert_eq!(r.text, "Hi <script>alert(1)</script>");
    }
}
