//! Content-Transfer-Encoding of the text and HTML parts (RFC 2045 §6).
//!
//! The choice is lettre's own (`Body::new`): 7bit for ASCII whose lines fit
//! in 76 characters, quoted-printable when at most a third of the bytes need
//! escaping, base64 otherwise. It is made and carried out here in two passes
//! over the part instead of lettre's five (choose, count, CRLF insertion,
//! the quoted-printable crate's per-character encoder): a profile of a
//! 20,000-message send put lettre's body path at about 10% of the process's
//! CPU (docs/PERFORMANCE.md).
//!
//! Two guarantees beyond RFC 2045, free in the encoder: no quoted-printable
//! line starts with `.` (written `=2E`), so SMTP dot-stuffing (RFC 5321
//! §4.5.2) never touches the body, and none starts with `From ` (its `F`
//! written `=46`), so an mbox on the way cannot mangle it.

use base64::Engine;
use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// Longest encoded line, without its CRLF (RFC 2045 §6.7 rule 5, §6.8).
const MAX_LINE: usize = 76;

/// Encodes a rendered part for the wire. Line ends become CRLF.
pub fn encode(text: &str) -> Body {
    let bytes = text.as_bytes();
    let shape = Shape::of(bytes);
    if shape.seven_bit {
        return Body::dangerous_pre_encoded(crlf(bytes), ContentTransferEncoding::SevenBit);
    }
    if shape.escapes <= bytes.len() / 3 {
        let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + shape.escapes * 2);
        quoted_printable(bytes, &mut out);
        Body::dangerous_pre_encoded(out, ContentTransferEncoding::QuotedPrintable)
    } else {
        // Text is base64-encoded in its canonical form, CRLF line ends (RFC 2049 §3).
        Body::dangerous_pre_encoded(base64_lines(&crlf(bytes)), ContentTransferEncoding::Base64)
    }
}

/// What the passes over a part tell about the encodings it allows.
struct Shape {
    /// ASCII, no NUL, no bare CR, every line at most `MAX_LINE` characters.
    seven_bit: bool,
    /// Bytes quoted-printable must escape, by lettre's measure (everything
    /// but tab and printable ASCII); counted only when 7bit will not do.
    escapes: usize,
}

impl Shape {
    fn of(bytes: &[u8]) -> Self {
        // Each question is one vectorised scan; most parts fail the first.
        let seven_bit = bytes.is_ascii()
            && memchr::memchr(0, bytes).is_none()
            && memchr::memchr_iter(b'\r', bytes).all(|i| bytes.get(i + 1) == Some(&b'\n'))
            && longest_line(bytes) <= MAX_LINE;
        let escapes = if seven_bit {
            0
        } else {
            bytes
                .iter()
                .filter(|&&b| !(b == b'\t' || (b' '..=b'~').contains(&b)))
                .count()
        };
        Self { seven_bit, escapes }
    }
}

/// Length of the longest line, without its LF or CRLF.
fn longest_line(bytes: &[u8]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        let end = if i > start && bytes[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        longest = longest.max(end - start);
        start = i + 1;
    }
    longest.max(bytes.len() - start)
}

/// Copies `bytes` with every line end as CRLF.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        let end = if i > 0 && bytes[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        out.extend_from_slice(&bytes[start..end]);
        out.extend_from_slice(b"\r\n");
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes written as themselves anywhere but at the end of a line: printable
/// ASCII except `=`, space and tab.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        t[b as usize] = b != b'=';
        b += 1;
    }
    t[b'\t' as usize] = true;
    t
};

/// RFC 2045 §6.7: LF and CRLF are hard line breaks; lines longer than 76
/// characters get soft breaks (`=` CRLF) that never split an `=XX`; a space
/// or tab at the end of a line is escaped, since transports may strip it.
fn quoted_printable(bytes: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    loop {
        let newline = memchr::memchr(b'\n', &bytes[start..]).map(|p| start + p);
        let mut line = &bytes[start..newline.unwrap_or(bytes.len())];
        if newline.is_some() && line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        quoted_printable_line(line, out);
        match newline {
            Some(p) => {
                out.extend_from_slice(b"\r\n");
                start = p + 1;
            }
            None => break,
        }
    }
}

fn quoted_printable_line(line: &[u8], out: &mut Vec<u8>) {
    let n = line.len();
    let mut col = 0usize;
    let mut i = 0usize;
    while i < n {
        // Fast path: a run of plain bytes copied at once, while the line
        // has room for each and a soft break, never the line's last byte
        // and never at column 0 (where `.` and `From ` need care). The
        // byte-at-a-time rules below would write the same bytes.
        if col > 0 && col + 2 < MAX_LINE {
            let end = (n - 1).min(i + (MAX_LINE - 2 - col));
            let run = line[i..end]
                .iter()
                .take_while(|&&b| PLAIN[usize::from(b)])
                .count();
            if run > 0 {
                out.extend_from_slice(&line[i..i + run]);
                col += run;
                i += run;
                continue;
            }
        }
        let b = line[i];
        let last = i + 1 == n;
        let mut literal = PLAIN[usize::from(b)] && !(last && (b == b' ' || b == b'\t'));
        // Room for the character, and for a soft break after it unless the
        // line ends here.
        let room = if last { MAX_LINE } else { MAX_LINE - 1 };
        if col + if literal { 1 } else { 3 } > room {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if col == 0 && (b == b'.' || (b == b'F' && line[i..].starts_with(b"From "))) {
            literal = false;
        }
        if literal {
            out.push(b);
            col += 1;
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            col += 3;
        }
        i += 1;
    }
}

/// Base64 in lines of 76 characters (RFC 2045 §6.8).
fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / MAX_LINE * 2 + 2);
    for chunk in encoded.as_bytes().chunks(MAX_LINE) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(text: &str) -> (ContentTransferEncoding, String) {
        let body = encode(text);
        let enc = body.encoding();
        (
            enc,
            String::from_utf8(body.into_vec()).expect("ASCII output"),
        )
    }

    /// Decodes with mail-parser, an independent implementation, through a
    /// whole MIME part.
    fn decoded(text: &str) -> String {
        let (enc, body) = encoded(text);
        let enc = match enc {
            ContentTransferEncoding::SevenBit => "7bit",
            ContentTransferEncoding::QuotedPrintable => "quoted-printable",
            ContentTransferEncoding::Base64 => "base64",
            other => panic!("unexpected {other:?}"),
        };
        let raw = format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {enc}\r\n\r\n{body}"
        );
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parses");
        msg.body_text(0).expect("a text body").into_owned()
    }

    fn crlf_text(text: &str) -> String {
        text.replace("\r\n", "\n").replace('\n', "\r\n")
    }

    #[test]
    fn short_ascii_stays_7bit_with_crlf() {
        let (enc, body) = encoded("Hello Ana!\n\nSee you.\n");
        assert_eq!(enc, ContentTransferEncoding::SevenBit);
        assert_eq!(body, "Hello Ana!\r\n\r\nSee you.\r\n");
    }

    #[test]
    fn accents_and_long_lines_are_quoted_printable() {
        let text = format!("Hola Inés, {}\n", "x".repeat(200));
        let (enc, body) = encoded(&text);
        assert_eq!(enc, ContentTransferEncoding::QuotedPrintable);
        assert!(body.starts_with("Hola In=C3=A9s, "));
        assert!(body.lines().all(|l| l.len() <= MAX_LINE), "{body}");
        assert_eq!(decoded(&text), crlf_text(&text));
    }

    #[test]
    fn mostly_non_latin_text_is_base64() {
        let text = "こんにちは、世界。ニュースレターへようこそ。\n";
        let (enc, body) = encoded(text);
        assert_eq!(enc, ContentTransferEncoding::Base64);
        assert!(body.lines().all(|l| l.len() <= MAX_LINE));
        assert_eq!(decoded(text), crlf_text(text));
    }

    #[test]
    fn line_starts_never_need_dot_stuffing() {
        let text = format!("é\n.hidden\n{}.x\nFrom here\nFrom\n", "a".repeat(75));
        let (enc, body) = encoded(&text);
        assert_eq!(enc, ContentTransferEncoding::QuotedPrintable);
        for line in body.split("\r\n") {
            assert!(!line.starts_with('.'), "{line:?} in {body}");
            assert!(!line.starts_with("From "), "{line:?} in {body}");
        }
        assert!(body.contains("\r\n=2Ehidden\r\n"));
        assert!(body.contains("\r\n=46rom here\r\n"));
        assert!(body.contains("\r\nFrom\r\n"));
        assert_eq!(decoded(&text), crlf_text(&text));
    }

    #[test]
    fn trailing_whitespace_and_equals_signs_are_escaped() {
        let text = "a = b é \nc\t\n";
        let (_, body) = encoded(text);
        assert_eq!(body, "a =3D b =C3=A9=20\r\nc=09\r\n");
    }

    /// Every `=` starts an escape of two hex digits or is a soft break.
    fn escapes_whole(body: &str) -> bool {
        body.split("\r\n").all(|line| {
            let b = line.as_bytes();
            (0..b.len()).filter(|&i| b[i] == b'=').all(|i| {
                i + 1 == b.len()
                    || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            })
        })
    }

    #[test]
    fn soft_breaks_never_split_an_escape() {
        for pad in 0..4 {
            let text = format!("{}{}", "a".repeat(300 + pad), "é=".repeat(30));
            let (enc, body) = encoded(&text);
            assert_eq!(enc, ContentTransferEncoding::QuotedPrintable);
            assert!(escapes_whole(&body), "{body}");
            assert!(body.split("\r\n").all(|l| l.len() <= MAX_LINE));
            assert_eq!(decoded(&text), text);
        }
    }

    /// The rules one byte at a time, without the fast path: the encoder
    /// must write exactly this.
    fn quoted_printable_by_hand(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut lines = bytes.split(|&b| b == b'\n').peekable();
        while let Some(mut line) = lines.next() {
            let hard_break = lines.peek().is_some();
            if hard_break && line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let mut col = 0;
            for (i, &b) in line.iter().enumerate() {
                let last = i + 1 == line.len();
                let mut literal = match b {
                    b'=' => false,
                    b'!'..=b'~' => true,
                    b' ' | b'\t' => !last,
                    _ => false,
                };
                let room = if last { MAX_LINE } else { MAX_LINE - 1 };
                if col + if literal { 1 } else { 3 } > room {
                    out.extend_from_slice(b"=\r\n");
                    col = 0;
                }
                if col == 0 && (b == b'.' || line[i..].starts_with(b"From ")) {
                    literal = false;
                }
                if literal {
                    out.push(b);
                    col += 1;
                } else {
                    out.extend_from_slice(format!("={b:02X}").as_bytes());
                    col += 3;
                }
            }
            if hard_break {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    proptest! {
        #[test]
        fn fast_path_writes_what_the_rules_write(
            text in "([a-z]{0,90}|[ .=\t\r\n]|é|From ){0,40}"
        ) {
            let mut fast = Vec::new();
            quoted_printable(text.as_bytes(), &mut fast);
            prop_assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(quoted_printable_by_hand(text.as_bytes())).unwrap()
            );
        }

        #[test]
        fn any_text_round_trips_within_the_line_limit(
            text in "([a-zA-Z .=\t\r\nàé€😀]|From ){0,400}"
        ) {
            let (enc, body) = encoded(&text);
            for line in body.split("\r\n") {
                prop_assert!(line.len() <= MAX_LINE, "{:?}", line);
                prop_assert!(line.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)), "{:?}", line);
            }
            if enc == ContentTransferEncoding::QuotedPrintable {
                prop_assert!(escapes_whole(&body), "{:?}", body);
            }
            // mail-parser drops a body that is only whitespace; compare the
            // rest byte for byte, line ends as CRLF.
            if !text.trim().is_empty() && !text.contains('\r') {
                prop_assert_eq!(decoded(&text), crlf_text(&text));
            }
        }
    }
}
