//! The HTML pages recipients see, as Tera templates: the defaults in
//! `templates/pages/` are compiled into the binary, and a project's own
//! `templates/pages/NAME.html` (or `pages.css`) replaces the default of the
//! same name. Every page extends `base.html`, whose blocks (`title`, `head`,
//! `content`) other pages and other handlers reuse.
//!
//! Autoescaping is on for every template, with the messages' escaping
//! ([`crate::render::escape_html`]): personal data can never become markup.
//! Templates are loaded into the render sandbox (no environment, bounded
//! loops). No scripts and no external resources: the stylesheet is served
//! from this server (`/assets/pages.css`), and the CSP allows nothing else.
//! This module renders; it reads no database and decides nothing.

use std::path::Path;

use super::i18n::Lang;
use crate::render::escape_html;

/// The default templates, by name.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/pages/base.html")),
    (
        "unsubscribe.html",
        include_str!("../../templates/pages/unsubscribe.html"),
    ),
    (
        "unsubscribed.html",
        include_str!("../../templates/pages/unsubscribed.html"),
    ),
    (
        "preferences.html",
        include_str!("../../templates/pages/preferences.html"),
    ),
    (
        "error.html",
        include_str!("../../templates/pages/error.html"),
    ),
    (
        "message.html",
        include_str!("../../templates/pages/message.html"),
    ),
    (
        "confirm.html",
        include_str!("../../templates/pages/confirm.html"),
    ),
    (
        "confirmed.html",
        include_str!("../../templates/pages/confirmed.html"),
    ),
    (
        "signup.html",
        include_str!("../../templates/pages/signup.html"),
    ),
    (
        "tracking.html",
        include_str!("../../templates/pages/tracking.html"),
    ),
    (
        "archive.html",
        include_str!("../../templates/pages/archive.html"),
    ),
];

/// The default stylesheet.
pub const CSS: &str = include_str!("../../templates/pages/pages.css");

/// More template files than this in `templates/pages/` is a mistake.
const MAX_FILES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Template { path: String, message: String },
    #[error("{path}: more than {MAX_FILES} files")]
    TooMany { path: String },
}

/// The compiled pages and the stylesheet.
#[derive(Debug, Clone)]
pub struct Pages {
    tera: tera::Tera,
    css: String,
    /// The stylesheet's absolute path on this server (under the public
    /// base URL's path, so it works behind a path prefix).
    css_href: String,
}

impl Pages {
    /// The defaults, replaced by any file of the same name in `dir` (which
    /// need not exist); other `.html` files there are added (for example
    /// `404.html`, used before `error.html` for that status).
    pub fn load(dir: &Path, base_path: &str) -> Result<Self, PagesError> {
        let mut files: Vec<(String, String)> = DEFAULTS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let mut css = CSS.to_string();
        let shown = dir.display().to_string();
        if dir.is_dir() {
            let entries = std::fs::read_dir(dir).map_err(|source| PagesError::Read {
                path: shown.clone(),
                source,
            })?;
            let mut n = 0;
            for e in entries {
                let e = e.map_err(|source| PagesError::Read {
                    path: shown.clone(),
                    source,
                })?;
                let path = e.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
                    continue;
                };
                if !(name.ends_with(".html") || name == "pages.css") {
                    continue;
                }
                n += 1;
                if n > MAX_FILES {
                    return Err(PagesError::TooMany { path: shown });
                }
                let text = std::fs::read_to_string(&path).map_err(|source| PagesError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                if name == "pages.css" {
                    css = text;
                } else if let Some(slot) = files.iter_mut().find(|(n, _)| *n == name) {
                    slot.1 = text;
                } else {
                    files.push((name, text));
                }
            }
        }
        let mut tera = crate::render::sandbox::tera();
        tera.autoescape_on(vec![".html", ".xml"]);
        tera.set_escape_fn(escape_html);
        tera.add_raw_templates(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
            .map_err(|e| PagesError::Template {
                path: format!("{shown}/{}", failing_name(&e)),
                message: chain(&e),
            })?;
        for (name, _) in &files {
            check_page(&tera, name).map_err(|message| PagesError::Template {
                path: format!("{shown}/{name}"),
                message,
            })?;
        }
        let base = base_path.trim_end_matches('/');
        Ok(Self {
            tera,
            css,
            css_href: format!("{base}/assets/pages.css"),
        })
    }

    /// The built-in pages only (unit tests, and a project without overrides).
    pub fn defaults() -> Self {
        Self::load(Path::new("/nonexistent/cartero/pages"), "/")
            .expect("the default page templates compile")
    }

    pub fn css(&self) -> &str {
        &self.css
    }

    pub fn has(&self, name: &str) -> bool {
        self.tera.get_template_names().any(|n| n == name)
    }

    /// Renders `name` with `ctx` plus `lang`, `t` (the words) and `css`.
    /// A template that fails (an override naming a missing variable) is
    /// logged and answered with a bare page, never a panic.
    pub fn render(&self, name: &str, lang: Lang, mut ctx: tera::Context) -> String {
        ctx.insert("lang", lang.code());
        ctx.insert("t", &lang.words());
        ctx.insert("css", &self.css_href);
        let mut out = crate::render::sandbox::Capped::new(1024 * 1024);
        match self.tera.render_to(name, &ctx, &mut out) {
            Ok(()) => String::from_utf8_lossy(&out.buf).into_owned(),
            Err(e) => {
                tracing::error!("serve: page template {name}: {}", chain(&e));
                format!(
                    "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
                     <body><p>{}</p></body></html>\n",
                    lang.code(),
                    lang.word("error_title"),
                    lang.word("error_503_text")
                )
            }
        }
    }
}

/// Pages may `extends` (Tera refuses a circular chain when it builds the
/// inheritance), but not `include` or macros: a template that includes
/// itself, or a macro that calls itself, recurses until the stack overflows
/// and the whole server aborts.
fn check_page(tera: &tera::Tera, name: &str) -> Result<(), String> {
    use tera::ast::Node;
    fn walk(nodes: &[Node]) -> Option<&'static str> {
        nodes.iter().find_map(|n| match n {
            Node::Include(..) => Some("include"),
            Node::ImportMacro(..) => Some("import"),
            Node::MacroDefinition(..) => Some("macro"),
            Node::FilterSection(_, f, _) => walk(&f.body),
            Node::Block(_, b, _) => walk(&b.body),
            Node::Forloop(_, f, _) => {
                walk(&f.body).or_else(|| f.empty_body.as_deref().and_then(walk))
            }
            Node::If(i, _) => i
                .conditions
                .iter()
                .find_map(|(_, _, body)| walk(body))
                .or_else(|| i.otherwise.as_ref().and_then(|(_, body)| walk(body))),
            _ => None,
        })
    }
    let t = tera.get_template(name).map_err(|e| e.to_string())?;
    if !t.macros.is_empty() {
        return Err("`{% macro %}` is not available in pages".into());
    }
    match walk(&t.ast) {
        Some(tag) => Err(format!(
            "`{{% {tag} %}}` is not available in pages (`extends` is)"
        )),
        None => Ok(()),
    }
}

fn failing_name(e: &tera::Error) -> String {
    let m = e.to_string();
    // Tera says "Failed to parse 'NAME'" for syntax errors.
    m.split('\'').nth(1).unwrap_or("").to_string()
}

fn chain(e: &tera::Error) -> String {
    let mut m = e.to_string();
    let mut s = std::error::Error::source(e);
    while let Some(x) = s {
        m.push_str(": ");
        m.push_str(&x.to_string());
        s = x.source();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_escaped_and_words_follow_the_language() {
        let p = Pages::defaults();
        let mut ctx = tera::Context::new();
        ctx.insert("title", "t");
        ctx.insert("email", "a\"><img src=x>@example.com");
        ctx.insert(
            "lists",
            &serde_json::json!([{"list_id": 1, "name": "<script>alert(1)</script>", "subscribed": true}]),
        );
        ctx.insert("csrf", "t\"x");
        ctx.insert("notice", "<b>");
        ctx.insert("frequencies", &serde_json::json!([]));
        ctx.insert("frequency", "all");
        ctx.insert("first_name", "<i>");
        ctx.insert("last_name", "");
        ctx.insert(
            "attributes",
            &serde_json::json!([{"name": "c\"", "value": "<u>"}]),
        );
        let html = p.render("preferences.html", Lang::En, ctx.clone());
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x>"), "{html}");
        assert!(!html.contains("<i>") && !html.contains("<u>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"t&quot;x\""));
        assert!(html.contains("Your subscriptions"));
        assert!(html.contains("<html lang=\"en\">"));
        let es = p.render("preferences.html", Lang::Es, ctx);
        assert!(es.contains("Sus suscripciones") && es.contains("<html lang=\"es\">"));
        // No script anywhere, no resource from another host.
        for (name, text) in DEFAULTS {
            assert!(!text.contains("<script"), "{name}");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_project_file_replaces_a_default_and_a_broken_one_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("error.html"),
            "{% extends \"base.html\" %}{% block content %}OURS {{ title }}{% endblock content %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("pages.css"), "body{}").unwrap();
        let p = Pages::load(dir.path(), "/news/").unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("title", "<x>");
        let html = p.render("error.html", Lang::En, ctx);
        assert!(html.contains("OURS &lt;x&gt;"), "{html}");
        assert!(html.contains("href=\"/news/assets/pages.css\""), "{html}");
        assert_eq!(p.css(), "body{}");
        std::fs::write(dir.path().join("x.html"), "{% include \"x.html\" %}").unwrap();
        let e = Pages::load(dir.path(), "/").unwrap_err().to_string();
        assert!(e.contains("x.html") && e.contains("include"), "{e}");
        std::fs::remove_file(dir.path().join("x.html")).unwrap();
        std::fs::write(dir.path().join("unsubscribe.html"), "{% if %}").unwrap();
        let e = Pages::load(dir.path(), "/").unwrap_err().to_string();
        assert!(e.contains("unsubscribe.html"), "{e}");
    }
}
