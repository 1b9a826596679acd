//! The text part generated from the HTML body: prose wrapped for reading,
//! links never broken.
//!
//! html2text wraps at a fixed width and cuts any word longer than the line,
//! URLs included, so a reader's client saw half a link (the UTM and
//! unsubscribe links are the longest). Here html2text lays the text out
//! without wrapping, and each line is then wrapped at spaces only: a word
//! (a URL has no spaces) is never split; one that does not fit goes to the
//! next line, on its own when it is longer than the width.

/// Width the prose is wrapped at (RFC 5322 §2.1.1 recommends lines of at
/// most 78 characters).
pub const WIDTH: usize = 78;

/// Wide enough that html2text itself never wraps a line.
const UNWRAPPED: usize = 100_000;

/// A readable text alternative of an HTML body; links are kept whole, as
/// footnotes.
pub fn html_to_text(html: &str) -> String {
    let flat = html2text::from_read(html.as_bytes(), UNWRAPPED);
    let mut out = String::with_capacity(flat.len() + flat.len() / 16);
    for line in flat.lines() {
        wrap_line(line.trim_end(), WIDTH, &mut out);
    }
    out
}

/// Appends `line` wrapped at `width` at spaces only. Continuation lines keep
/// the line's indentation, quote markers (`> `) and the width of a list
/// marker (`* `, `12. `), so a wrapped item still reads as one.
fn wrap_line(line: &str, width: usize, out: &mut String) {
    if line.chars().count() <= width || is_footnote(line) {
        out.push_str(line);
        out.push('\n');
        return;
    }
    let (lead, body) = split_lead(line);
    let cont: String = continuation(lead);
    let mut current = String::from(lead);
    let mut current_len = lead.chars().count();
    let mut has_word = false;
    for word in body.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if has_word && current_len + 1 + len > width {
            out.push_str(&current);
            out.push('\n');
            current.clone_from(&cont);
            current_len = cont.chars().count();
            has_word = false;
        }
        if has_word {
            current.push(' ');
            current_len += 1;
        }
        current.push_str(word);
        current_len += len;
        has_word = true;
    }
    out.push_str(&current);
    out.push('\n');
}

/// A link footnote, `[3]: URL`: kept on one line whatever its length, so
/// the URL stays beside its number.
fn is_footnote(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|r| r.split_once("]: "))
        .is_some_and(|(n, url)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !url.contains(' ')
        })
}

/// The line's leading indentation, quote markers and list marker, and the
/// rest.
fn split_lead(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && matches!(bytes[i], b' ' | b'>') {
        i += 1;
    }
    let rest = &line[i..];
    let marker = if rest.starts_with("* ") || rest.starts_with("- ") {
        2
    } else {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(". ") {
            digits + 2
        } else {
            0
        }
    };
    line.split_at(i + marker)
}

/// What continuation lines start with: the quote markers kept, a list
/// marker turned into spaces of its width.
fn continuation(lead: &str) -> String {
    let quotes_end = lead.bytes().rposition(|b| b == b'>').map_or(0, |p| p + 1);
    let (quotes, rest) = lead.split_at(quotes_end);
    let mut s = String::from(quotes);
    s.extend(std::iter::repeat_n(' ', rest.chars().count()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_URL: &str = "https://shop.example/spring/collection/with/a/very/long/path?utm_source=cartero&utm_medium=email&utm_campaign=spring-sale-2026";

    #[test]
    fn long_links_stay_whole_on_their_own_line() {
        let html = format!(
            "<p>Our spring collection is here, with more colours and sizes than ever before, and free returns for thirty days.</p>\
             <p>See <a href=\"{LONG_URL}\">the collection</a> today.</p>"
        );
        let text = html_to_text(&html);
        assert!(
            text.lines().any(|l| l.contains(LONG_URL)),
            "the URL is on one line: {text}"
        );
        for line in text.lines() {
            assert!(
                line.chars().count() <= WIDTH || !line.trim().contains(' ') || is_footnote(line),
                "only an unbreakable word may pass the width: {line:?}"
            );
        }
        assert!(text.contains("Our spring collection is here"), "{text}");
    }

    #[test]
    fn prose_wraps_at_spaces_keeping_list_and_quote_prefixes() {
        let mut out = String::new();
        wrap_line("* one two three four", 10, &mut out);
        assert_eq!(out, "* one two\n  three\n  four\n");
        let mut out = String::new();
        wrap_line("> alpha beta gamma", 12, &mut out);
        assert_eq!(out, "> alpha beta\n> gamma\n");
        let mut out = String::new();
        wrap_line(&format!("[1]: {LONG_URL}"), 78, &mut out);
        assert_eq!(out, format!("[1]: {LONG_URL}\n"), "a footnote stays whole");
        let mut out = String::new();
        wrap_line(&format!("Visit {LONG_URL} now"), 78, &mut out);
        assert_eq!(
            out,
            format!("Visit\n{LONG_URL}\nnow\n"),
            "a long URL in prose"
        );
    }
}
