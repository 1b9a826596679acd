//! The small HTML pages recipients see. Every value that comes from the
//! database or the request goes through [`esc`]; forms post to the page's
//! own URL (no `action`), so the pages work behind a reverse proxy under a
//! path prefix. No scripts, no external resources (the CSP forbids both).

use crate::store::track::ListConsent;

/// Escapes the characters that can change HTML structure or leave an
/// attribute value: the same escaping as the messages' templates.
pub use crate::render::escape_html as esc;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;\
         padding:0 1rem;line-height:1.5}}button{{font-size:1rem;padding:.5rem 1rem}}\
         label{{display:block;margin:.25rem 0}}</style></head><body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

/// GET /u/{token}: says what the button will do; changes nothing.
pub fn unsubscribe(email: &str, list: Option<&str>, subscribed: bool, prefs_href: &str) -> String {
    let what = match list {
        Some(l) => format!("the list <strong>{}</strong>", esc(l)),
        None => "every list".into(),
    };
    let form = if subscribed {
        format!(
            "<p>Unsubscribe <strong>{}</strong> from {what}?</p>\n\
             <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <input type=\"hidden\" name=\"via\" value=\"page\">\
             <button type=\"submit\">Unsubscribe</button></form>",
            esc(email)
        )
    } else {
        format!(
            "<p><strong>{}</strong> is not subscribed to {what}.</p>",
            esc(email)
        )
    };
    page(
        "Unsubscribe",
        &format!(
            "<h1>Unsubscribe</h1>\n{form}\n<p><a href=\"{}\">Manage all your subscriptions</a></p>",
            esc(prefs_href)
        ),
    )
}

/// The answer to the unsubscribe POST (RFC 8058 §3.2: no redirect).
pub fn unsubscribed(list: Option<&str>, already: bool, prefs_href: &str) -> String {
    let what = match list {
        Some(l) => format!("<strong>{}</strong>", esc(l)),
        None => "every list".into(),
    };
    let text = if already {
        format!("You were already unsubscribed from {what}.")
    } else {
        format!("You are unsubscribed from {what}. You will get no more messages from it.")
    };
    page(
        "Unsubscribed",
        &format!(
            "<h1>Unsubscribed</h1>\n<p>{text}</p>\n<p><a href=\"{}\">Manage all your subscriptions</a></p>",
            esc(prefs_href)
        ),
    )
}

/// GET and POST /p/{token}.
pub fn preferences(
    email: &str,
    lists: &[ListConsent],
    form_tag: &str,
    notice: Option<&str>,
) -> String {
    let mut items = String::new();
    for l in lists {
        items.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"list\" value=\"{}\"{}> {}</label>\n",
            l.list_id,
            if l.subscribed { " checked" } else { "" },
            esc(&l.name)
        ));
    }
    if lists.is_empty() {
        items.push_str("<p>You are on no list.</p>\n");
    }
    let notice = notice
        .map(|n| format!("<p role=\"status\"><strong>{}</strong></p>\n", esc(n)))
        .unwrap_or_default();
    page(
        "Your subscriptions",
        &format!(
            "<h1>Your subscriptions</h1>\n{notice}<p>For <strong>{}</strong>.</p>\n\
             <form method=\"post\"><input type=\"hidden\" name=\"form\" value=\"{}\">\n{items}\
             <p><button type=\"submit\" name=\"action\" value=\"save\">Save</button></p>\n\
             <p><button type=\"submit\" name=\"action\" value=\"all\">Unsubscribe from everything</button></p>\n\
             </form>",
            esc(email),
            esc(form_tag)
        ),
    )
}

pub fn error(title: &str, message: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>", esc(title), esc(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_escaped() {
        let lists = [ListConsent {
            list_id: 1,
            name: "<script>alert(1)</script>".into(),
            subscribed: true,
        }];
        let html = preferences("a\"><img src=x>@example.com", &lists, "t\"x", Some("<b>"));
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"t&quot;x\""));
        let html = unsubscribe("<x>@e.example", Some("<i>l</i>"), true, "../p/a\"b");
        assert!(!html.contains("<x>") && !html.contains("<i>l</i>") && !html.contains("a\"b"));
    }
}
