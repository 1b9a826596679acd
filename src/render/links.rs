//! Link rewriting in HTML bodies: UTM parameters on outgoing http(s) links,
//! and script links neutralised.
//!
//! A small scanner over `<a ... href="...">` rather than an HTML parser and
//! re-serialiser: the body must reach the reader byte for byte as the
//! designer wrote it, except for the href values we change. An href is
//! worked on decoded (its character references resolved, as a browser
//! does: HTML §13.1.2.3), then escaped again, so a link whose query holds
//! `&#x27;` keeps it whole instead of being cut at its `#`.

/// Schemes that run code or carry a document instead of pointing at one:
/// a link with one of them, written by the template or taken from contact
/// data, becomes `#`.
const SCRIPT_SCHEMES: &[&str] = &["javascript", "vbscript", "data"];

/// Appends `params` to every absolute http(s) link in an `<a>` tag, leaving
/// alone links that already carry a parameter of the same name, and
/// neutralises `javascript:`, `vbscript:` and `data:` links.
pub fn add_utm(html: &str, params: &[(String, String)]) -> String {
    add_utm_except(html, params, &|_| false)
}

/// As `add_utm`, except for the links `untracked` names (compared with the
/// href decoded): cartero's own
/// unsubscribe, preference and view-in-browser links never carry tracking
/// parameters, so a message has one unsubscribe URL, the one in its
/// List-Unsubscribe header (RFC 8058).
pub fn add_utm_except(
    html: &str,
    params: &[(String, String)],
    untracked: &dyn Fn(&str) -> bool,
) -> String {
    map_hrefs(html, &mut |url| match scheme(url) {
        // Even without parameters, script links are neutralised.
        Some(s) if SCRIPT_SCHEMES.contains(&s.as_str()) => Some("#".to_string()),
        Some(s) if (s == "http" || s == "https") && !params.is_empty() && !untracked(url) => {
            Some(with_params(url, params))
        }
        _ => None,
    })
}

/// Calls `f` with the decoded URL of every `<a>` tag's href, in order, and
/// puts what it returns in its place, escaped for the attribute's quoting;
/// `None` leaves the tag as written. Everything else of the body is copied
/// byte for byte. The one scanner of links, for UTM parameters and click
/// tracking (`render::track`).
pub(super) fn map_hrefs(html: &str, f: &mut dyn FnMut(&str) -> Option<String>) -> String {
    if find_ci(html, "<a").is_none() {
        return html.to_string();
    }
    let mut out = String::with_capacity(html.len() + html.len() / 4);
    let mut rest = html;
    while let Some(open) = find_ci(rest, "<a") {
        let after = &rest[open + 2..];
        // `<a` must be a whole tag name: `<abbr>` is not a link.
        if !after.starts_with(|c: char| c.is_ascii_whitespace()) {
            out.push_str(&rest[..open + 2]);
            rest = after;
            continue;
        }
        let Some(close) = after.find('>') else { break };
        let tag = &after[..close];
        out.push_str(&rest[..open + 2]);
        match href_span(tag) {
            Some((start, end, quote)) => match f(&decode_references(&tag[start..end])) {
                Some(new) => {
                    out.push_str(&tag[..start]);
                    out.push_str(&escape_attribute(&new, quote));
                    out.push_str(&tag[end..]);
                }
                None => out.push_str(tag),
            },
            None => out.push_str(tag),
        }
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Byte range of the href value inside a tag's text (after `<a`), and the
/// quote around it. `href` must be an attribute of its own: the value of a
/// `data-href` before it is not the link.
fn href_span(tag: &str) -> Option<(usize, usize, Option<char>)> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    loop {
        let h = lower[from..].find("href")? + from;
        from = h + 4;
        if h > 0 && !tag.as_bytes()[h - 1].is_ascii_whitespace() {
            continue;
        }
        let Some(v) = tag[h + 4..].trim_start().strip_prefix('=') else {
            continue;
        };
        let v = v.trim_start();
        let start = tag.len() - v.len();
        return match v.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let end = v[1..].find(q)?;
                Some((start + 1, start + 1 + end, Some(q)))
            }
            Some(_) => {
                let end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
                Some((start, start + end, None))
            }
            None => None,
        };
    }
}

/// The scheme of a URL as a browser reads it: leading C0 controls and
/// spaces skipped, tabs and line breaks inside removed (URL Standard §4.4),
/// lower-cased.
pub(super) fn scheme(url: &str) -> Option<String> {
    let cleaned: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .take(32)
        .collect();
    let (s, _) = cleaned.split_once(':')?;
    (!s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
    .then(|| s.to_ascii_lowercase())
}

/// Resolves the character references a URL attribute may hold: the named
/// ones a URL needs and every numeric one. Others stay as written.
fn decode_references(v: &str) -> String {
    if !v.contains('&') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let n = name.strip_prefix('#')?;
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes a URL for an attribute value: `&` always, and the quote that
/// delimits it (or, unquoted, what would end it).
fn escape_attribute(url: &str, quote: Option<char>) -> String {
    let mut out = String::with_capacity(url.len() + 8);
    for c in url.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' if quote != Some('\'') => out.push_str("&quot;"),
            '\'' if quote != Some('"') => out.push_str("&#x27;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if quote.is_none() && c.is_ascii_whitespace() => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

fn with_params(url: &str, params: &[(String, String)]) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let existing: Vec<&str> = base
        .split_once('?')
        .map(|(_, q)| q.split('&').collect())
        .unwrap_or_default();
    let mut out = base.to_string();
    for (k, v) in params {
        if existing
            .iter()
            .any(|p| p.split('=').next() == Some(k.as_str()))
        {
            continue;
        }
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(k);
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out.push_str(fragment);
    out
}

fn percent_encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Vec<(String, String)> {
        vec![
            ("utm_source".into(), "cartero".into()),
            ("utm_campaign".into(), "spring sale".into()),
        ]
    }

    #[test]
    fn adds_parameters_to_http_links_only() {
        let html = r#"<p><a href="https://a.example/x?y=1#top">a</a> <A class=b HREF='http://b.example'>b</A> <a href="mailto:x@y.example">m</a> <abbr>z</abbr> <a href=https://c.example/p>c</a></p>"#;
        let out = add_utm(html, &p());
        assert!(out.contains(r#"href="https://a.example/x?y=1&amp;utm_source=cartero&amp;utm_campaign=spring%20sale#top""#), "{out}");
        assert!(
            out.contains(
                "HREF='http://b.example?utm_source=cartero&amp;utm_campaign=spring%20sale'"
            ),
            "{out}"
        );
        assert!(out.contains(r#"href="mailto:x@y.example""#));
        assert!(out.contains("<abbr>z</abbr>"));
        assert!(
            out.contains(
                "href=https://c.example/p?utm_source=cartero&amp;utm_campaign=spring%20sale>"
            ),
            "{out}"
        );
    }

    #[test]
    fn untracked_links_are_left_alone() {
        let html =
            r#"<a href="https://news.example/u/TOKEN">u</a> <a href="https://shop.example/">s</a>"#;
        let out = add_utm_except(html, &p(), &|u| u.starts_with("https://news.example/"));
        assert!(
            out.contains(r#"href="https://news.example/u/TOKEN""#),
            "{out}"
        );
        assert!(
            out.contains("https://shop.example/?utm_source=cartero"),
            "{out}"
        );
    }

    #[test]
    fn the_href_is_its_own_attribute_and_references_are_decoded() {
        // A `data-href` before the real one is not the link.
        let out = add_utm(
            r#"<a data-href="https://d.example/" href='https://a.example/'>"#,
            &p(),
        );
        assert_eq!(
            out,
            r#"<a data-href="https://d.example/" href='https://a.example/?utm_source=cartero&amp;utm_campaign=spring%20sale'>"#
        );
        assert_eq!(
            decode_references("a&amp;b&#x27;c&#39;&nbsp;&"),
            "a&b'c'&nbsp;&"
        );
    }

    #[test]
    fn keeps_existing_parameters_and_unclosed_tags() {
        let out = add_utm(r#"<a href="https://a.example/?utm_source=x">"#, &p());
        assert_eq!(
            out,
            r#"<a href="https://a.example/?utm_source=x&amp;utm_campaign=spring%20sale">"#
        );
        assert_eq!(add_utm("<a href=\"https://x", &p()), "<a href=\"https://x");
        assert_eq!(add_utm("plain", &[]), "plain");
    }

    #[test]
    fn escaped_characters_in_links_survive() {
        // What Tera's escape makes of `?ref=O'Brien` from contact data.
        let out = add_utm(
            r#"<a href="https://shop.example/x?ref=O&#x27;Brien&amp;a=1#top">x</a>"#,
            &p(),
        );
        assert_eq!(
            out,
            r#"<a href="https://shop.example/x?ref=O'Brien&amp;a=1&amp;utm_source=cartero&amp;utm_campaign=spring%20sale#top">x</a>"#
        );
        let out = add_utm(r#"<a href='https://s.example/?q="a"'>x</a>"#, &p());
        assert!(
            out.starts_with(r#"<a href='https://s.example/?q="a"&amp;utm_source"#),
            "{out}"
        );
    }

    #[test]
    fn script_links_are_neutralised() {
        for href in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "java&#x09;script:alert(1)",
            "java\tscript:alert(1)",
            "&#106;avascript:alert(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "vbscript:msgbox",
        ] {
            for params in [p(), vec![]] {
                let out = add_utm(&format!("<a href=\"{href}\">x</a>"), &params);
                assert_eq!(out, "<a href=\"#\">x</a>", "{href:?}");
            }
        }
        let ok = r#"<a href="mailto:a@b.example">m</a>"#;
        assert_eq!(add_utm(ok, &[]), ok);
    }
}
