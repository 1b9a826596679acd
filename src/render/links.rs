//! Link rewriting in HTML bodies: UTM parameters on outgoing http(s) links.
//!
//! A small scanner over `<a ... href="...">` rather than an HTML parser and
//! re-serialiser: the body must reach the reader byte for byte as the
//! designer wrote it, except for the href values we change.

/// Appends `params` to every absolute http(s) link in an `<a>` tag, leaving
/// alone links that already carry a parameter of the same name.
pub fn add_utm(html: &str, params: &[(String, String)]) -> String {
    add_utm_except(html, params, &|_| false)
}

/// As `add_utm`, except for the links `untracked` names: cartero's own
/// unsubscribe, preference and view-in-browser links never carry tracking
/// parameters, so a message has one unsubscribe URL, the one in its
/// List-Unsubscribe header (RFC 8058).
pub fn add_utm_except(
    html: &str,
    params: &[(String, String)],
    untracked: &dyn Fn(&str) -> bool,
) -> String {
    if params.is_empty() {
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
    let url = &body[..end];
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || untracked(url) {
        return tag.to_string();
    }
    let new_url = with_params(url, params);
    let prefix_len = tag.len() - after_eq.len() + value_start_rel + usize::from(quote.is_some());
    format!(
        "{}{}{}",
        &tag[..prefix_len],
        new_url,
        &tag[prefix_len + end..]
    )
}

fn with_params(url: &str, params: &[(String, String)]) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let existing: Vec<&str> = base
        .split_once('?')
        .map(|(_, q)| q.split("&amp;").flat_map(|p| p.split('&')).collect())
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
        assert!(out.contains(r#"href="https://a.example/x?y=1&utm_source=cartero&utm_campaign=spring%20sale#top""#), "{out}");
        assert!(
            out.contains("HREF='http://b.example?utm_source=cartero&utm_campaign=spring%20sale'"),
            "{out}"
        );
        assert!(out.contains(r#"href="mailto:x@y.example""#));
        assert!(out.contains("<abbr>z</abbr>"));
        assert!(
            out.contains("href=https://c.example/p?utm_source=cartero&utm_campaign=spring%20sale>"),
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
            r#"<a href="https://a.example/?utm_source=x&utm_campaign=spring%20sale">"#
        );
        assert_eq!(add_utm("<a href=\"https://x", &p()), "<a href=\"https://x");
        assert_eq!(add_utm("plain", &[]), "plain");
    }
}
