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
    // Even without parameters, script links are neutralised.
    if find_ci(html, "<a").is_none() {
        return html.to_string();
    }
    let mut out = String::with_capacity(html.len() + html.len() / 8);
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
        out.push_str(&rewrite_tag(tag, params, untracked));
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

fn rewrite_tag(tag: &str, params: &[(String, String)], untracked: &dyn Fn(&str) -> bool) -> String {
    let Some(h) = find_ci(tag, "href") else {
        return tag.to_string();
    };
    let after = tag[h + 4..].trim_start();
    let Some(after_eq) = after.strip_prefix('=') else {
        return tag.to_string();
    };
    let value_start_rel = after_eq.len() - after_eq.trim_start().len();
    let v = after_eq.trim_start();
    let (quote, body) = match v.chars().next() {
        Some(q @ ('"' | '\'')) => (Some(q), &v[1..]),
        _ => (None, v),
    };
    let end = match quote {
        Some(q) => body.find(q),
        None => body
            .find(|c: char| c.is_ascii_whitespace())
            .or(Some(body.len())),
    };
    let Some(end) = end else {
        return tag.to_string();
    };
    let raw = &body[..end];
    let url = decode_references(raw);
    let new_url = match scheme(&url) {
        Some(s) if SCRIPT_SCHEMES.contains(&s.as_str()) => "#".to_string(),
        Some(s) if (s == "http" || s == "https") && !params.is_empty() && !untracked(&url) => {
            escape_attribute(&with_params(&url, params), quote)
        }
        _ => return tag.to_string(),
    };
    let prefix_len = tag.len() - after_eq.len() + value_start_rel + usize::from(quote.is_some());
    format!(
        "{}{}{}",
        &tag[..prefix_len],
        new_url,
        &tag[prefix_len + end..]
    )
}

/// The scheme of a URL as a browser reads it: leading C0 controls and
/// spaces skipped, tabs and line breaks inside removed (URL Standard §4.4),
/// lower-cased.
fn scheme(url: &str) -> Option<String> {
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
