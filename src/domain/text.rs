//! Text that came from outside (contact data, attacker-sent mail) on its way
//! into a mail header or onto the operator's terminal.
//!
//! Two places where a stray control character does harm: a header, where a
//! line break ends the field (RFC 5322 §2.2: a header field is one logical
//! line; unstructured text and phrases carry no raw controls, §3.2.5 and
//! §3.2.3), and a terminal, where ESC starts a sequence that can rewrite
//! the screen, set the window title or, on some emulators, answer back with
//! input. Nothing here does I/O.

/// True for characters that must never reach a header or a terminal raw:
/// C0 and C1 controls and DEL (`char::is_control`), the Unicode line and
/// paragraph separators, and the bidirectional embeddings, overrides and
/// isolates that reorder what the reader sees (Unicode TR #9; "Trojan
/// Source", CVE-2021-42574).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A display name or subject made fit for one header line: every control
/// or separator becomes a space, runs of white space shrink to one, and the
/// ends are trimmed. The result is still Unicode; the MIME writer encodes
/// it per RFC 2047 where it is not plain ASCII.
pub fn header_phrase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if is_unsafe(c) || c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Text made safe to print on a terminal, keeping line breaks and tabs:
/// every other control, separator or bidi control is shown as a visible
/// escape (`\x1b`, `\u{202e}`) so the operator sees that it was there.
pub fn for_terminal(s: &str) -> String {
    escape(s, true)
}

/// One line of a table or a message made safe to print: as [`for_terminal`],
/// and line breaks and tabs are escaped too, so a value cannot forge the
/// next row.
pub fn for_terminal_line(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, keep_lines: bool) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\t' if keep_lines => out.push(c),
            '\r' if keep_lines => {}
            c if is_unsafe(c) => {
                use std::fmt::Write;
                let n = c as u32;
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else {
                    write!(out, "\\u{{{n:04x}}}")
                };
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_phrase_removes_line_breaks_and_controls() {
        assert_eq!(
            header_phrase("Ana\r\nBcc: x@y.example"),
            "Ana Bcc: x@y.example"
        );
        assert_eq!(
            header_phrase("  A\u{7}\u{1b}[31mB\u{85}C \u{2028} "),
            "A [31mB C"
        );
        assert_eq!(header_phrase("Adrián\tGarcía"), "Adrián García");
        assert_eq!(header_phrase("\n\r\u{0}"), "");
    }

    #[test]
    fn terminal_text_shows_escapes_visibly() {
        assert_eq!(
            for_terminal("a\u{1b}]0;pwned\u{7}b\nc"),
            "a\\x1b]0;pwned\\x07b\nc"
        );
        assert_eq!(for_terminal_line("a\nb\u{202e}c"), "a\\x0ab\\u{202e}c");
        assert_eq!(for_terminal("plain"), "plain");
        assert_eq!(for_terminal("\u{9b}31m"), "\\x9b31m");
    }

    proptest::proptest! {
        #[test]
        fn nothing_unsafe_survives(s in "\\PC*|[\\x00-\\x{9f}\\x{2028}\\x{202e}a ]{0,40}") {
            let h = header_phrase(&s);
            proptest::prop_assert!(!h.chars().any(is_unsafe));
            proptest::prop_assert!(!h.starts_with(' ') && !h.ends_with(' '));
            let t = for_terminal(&s);
            proptest::prop_assert!(!t.chars().any(|c| is_unsafe(c) && c != '\n' && c != '\t'));
            proptest::prop_assert!(!for_terminal_line(&s).chars().any(is_unsafe));
        }
    }
}
