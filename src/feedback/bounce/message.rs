//! One raw message made readable for the classifiers: line ends normalised,
//! top-level headers unfolded, MIME parts decoded (mail-parser) into a flat
//! list of text segments, and the returned original message set apart.
//!
//! Nothing here decides what a message is; it only lays the text out. It
//! never fails: a message mail-parser cannot read becomes one plain segment.

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// A decoded MIME leaf: its lower-case `type/subtype` and its text.
#[derive(Debug, Clone)]
pub struct Segment {
    pub ctype: String,
    pub text: String,
}

impl Segment {
    /// Parts that carry the original message (RFC 3462 §2, RFC 6522 §3).
    pub fn is_original(&self) -> bool {
        self.ctype == "message/rfc822"
            || self.ctype == "text/rfc822-headers"
            || self.ctype == "message/rfc822-headers"
            || self.ctype == "message/global"
            || self.ctype == "message/global-headers"
    }
}

#[derive(Debug, Default)]
pub struct Mail {
    /// Top-level headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
    /// Decoded Subject.
    pub subject: String,
    /// Every decoded text leaf, in document order.
    pub segments: Vec<Segment>,
    /// The report prose and machine parts before the original message.
    pub notice: String,
    /// The header block of the returned original message, when present.
    pub original: Option<String>,
    /// The whole first attached message (`message/rfc822`), for reports
    /// that forward another report.
    pub attached: Option<Vec<u8>>,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn parse(raw: &[u8]) -> Mail {
        let mut data = normalise_line_ends(raw);
        // A message taken from an mbox may keep its "From " separator line
        // (RFC 4155); it is not a header.
        if data.starts_with(b"From ") {
            let end = data
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |n| n + 1);
            data.drain(..end);
        }
        let head_end = header_end(&data);
        let head_text = String::from_utf8_lossy(&data[..head_end]);
        let headers = parse_headers(&head_text);
        let mut mail = Mail {
            headers,
            ..Mail::default()
        };
        match MessageParser::default().parse(&data[..]) {
            Some(msg) => {
                mail.subject = msg.subject().unwrap_or_default().to_string();
                flatten(&msg, &mut mail.segments, &mut mail.attached);
                if mail.segments.is_empty() && head_end < data.len() {
                    // Broken MIME (a nested multipart whose boundary
                    // parameter sits on an unfolded line, as Verizon's
                    // gateway writes it) leaves no part to read: the body
                    // as written is the best text there is.
                    mail.segments.push(Segment {
                        ctype: "text/plain".into(),
                        text: String::from_utf8_lossy(&data[head_end..]).into_owned(),
                    });
                }
            }
            None => {
                mail.segments.push(Segment {
                    ctype: "text/plain".into(),
                    text: String::from_utf8_lossy(&data[head_end..]).into_owned(),
                });
            }
        }
        if mail.subject.is_empty()
            && let Some(s) = mail.header("subject")
        {
            mail.subject = s.to_string();
        }
        mail.split_notice();
        mail
    }

    /// Separate the notice from the original message: the first part that
    /// carries the original, else a marker line such as qmail's "--- Below
    /// this line is a copy of the message."
    fn split_notice(&mut self) {
        let mut notice = String::new();
        // Once the original has begun, further prose is the original's (or
        // a footer); machine-readable report parts still count wherever
        // they sit (Office 365 puts the delivery-status part last).
        let mut prose_done = false;
        for seg in &self.segments {
            if seg.is_original() {
                if self.original.is_none() {
                    self.original = Some(seg.text.clone());
                }
                prose_done = true;
                continue;
            }
            let machine = seg.ctype.starts_with("message/");
            if prose_done && !machine {
                continue;
            }
            let mut text = seg.text.as_str();
            if !machine && let Some((before, after)) = split_at_marker(text) {
                if self.original.is_none() {
                    self.original = Some(after.trim_start_matches('\n').to_string());
                }
                text = &text[..before];
                prose_done = true;
            }
            if !notice.is_empty() {
                notice.push('\n');
            }
            if machine {
                notice.push('\n');
            }
            notice.push_str(text);
        }
        self.notice = notice;
    }
}

/// RFC 5322 lines end in CRLF; files on disk may have LF, CRLF or CR only.
/// Everything downstream reads LF.
///
/// A run of CRs before an LF is one line end: it is what a CRLF line becomes
/// when a file that already had some CRLF lines is converted to CRLF again
/// (`\r\r\n`), and a bare CR at the end of a line carries nothing. So the
/// same message reads the same whichever convention it was stored in.
pub fn normalise_line_ends(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                let mut j = i + 1;
                while raw.get(j) == Some(&b'\r') {
                    j += 1;
                }
                if raw.get(j) == Some(&b'\n') {
                    out.push(b'\n');
                    i = j;
                } else {
                    out.push(b'\n');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Offset of the blank line that ends the header block (or the end).
fn header_end(data: &[u8]) -> usize {
    let mut i = 0;
    // A leading mbox "From " line is not a header.
    if data.starts_with(b"From ")
        && let Some(n) = data.iter().position(|&b| b == b'\n')
    {
        i = n + 1;
    }
    let start = i;
    while i < data.len() {
        if data[i] == b'\n' && (i == start || data.get(i.wrapping_sub(1)) == Some(&b'\n')) {
            return i;
        }
        if data[i] == b'\n' && data.get(i + 1) == Some(&b'\n') {
            return i + 1;
        }
        i += 1;
    }
    data.len()
}

/// Unfold a header block (RFC 5322 §2.2.3) into name/value pairs. Lines
/// that are neither a field nor a continuation are skipped.
pub fn parse_headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some((name, value)) = line.split_once(':')
            && !name.is_empty()
            && name.len() < 80
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            out.push((name.to_string(), value.trim().to_string()));
        }
    }
    out
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn flatten(msg: &mail_parser::Message<'_>, out: &mut Vec<Segment>, attached: &mut Option<Vec<u8>>) {
    for part in &msg.parts {
        let ctype = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
                None => ct.ctype().to_ascii_lowercase(),
            })
            .unwrap_or_else(|| "text/plain".to_string());
        let text = match &part.body {
            PartType::Multipart(_) => continue,
            PartType::Text(t) => t.to_string(),
            PartType::Html(h) => strip_html(h),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if ctype.starts_with("text/") || ctype.starts_with("message/") {
                    String::from_utf8_lossy(b).into_owned()
                } else {
                    continue;
                }
            }
            PartType::Message(inner) => {
                let raw = inner.raw_message();
                if attached.is_none() {
                    *attached = Some(raw.to_vec());
                }
                let end = (inner.root_part().offset_body as usize).min(raw.len());
                let ctype = if ctype.starts_with("message/") {
                    ctype
                } else {
                    "message/rfc822".to_string()
                };
                out.push(Segment {
                    ctype,
                    text: String::from_utf8_lossy(&raw[..end]).into_owned(),
                });
                continue;
            }
        };
        out.push(Segment { ctype, text });
    }
}

/// Tags out, entities that matter in error text decoded, block ends kept as
/// line breaks so per-line scanning still works.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        if in_tag {
            if c == '>' {
                in_tag = false;
                let t = tag.to_ascii_lowercase();
                let name = t
                    .trim_start_matches('/')
                    .split([' ', '/'])
                    .next()
                    .unwrap_or("");
                if matches!(
                    name,
                    "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "table"
                ) {
                    out.push('\n');
                }
                tag.clear();
            } else {
                tag.push(c);
            }
        } else if c == '<' {
            in_tag = true;
        } else {
            out.push(c);
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Lines that MTAs put between their report and the returned message.
/// Matched on the line lower-cased with dashes, equals signs and spaces
/// trimmed.
const ORIGINAL_MARKERS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "this is a copy of your message",
    "original message follows",
    "original message ---",
    "original message",
    "original message header",
    "original message headers",
    "returned message",
    "returned mail",
    "message headers follow",
    "unsent message follows",
    "undelivered message follows",
    "the header of the original message is following",
    "the original message headers are included as attachment",
    "original mail header",
    "headers of the original message",
    "copy of the original message",
    "message header follows",
    "returned content",
    "the original message was",
    "your message reads (in part)",
    "original message follows.",
    "original mail as follows",
    "the attachment contains the original mail headers",
];

fn split_at_marker(notice: &str) -> Option<(usize, &str)> {
    let mut offset = 0;
    for line in notice.split_inclusive('\n') {
        let t = line
            .trim()
            .trim_matches(|c: char| {
                c == '-' || c == '=' || c == '*' || c == ' ' || c == '_' || c == '[' || c == ']'
            })
            .to_ascii_lowercase();
        let dashed = line.trim_start().starts_with("--") || line.trim_start().starts_with("==");
        let hit = ORIGINAL_MARKERS.iter().any(|m| {
            if t == *m || t.trim_end_matches(['.', ':']) == *m {
                return true;
            }
            dashed && t.starts_with(m)
        }) || t.starts_with("content-type: message/rfc822")
            || t.starts_with("content-type: text/rfc822-headers");
        if hit {
            return Some((offset, &notice[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_lf() {
        assert_eq!(normalise_line_ends(b"a\r\nb\rc\n"), b"a\nb\nc\n");
        // CRLF converted to CRLF again, and CR-only blank lines.
        assert_eq!(normalise_line_ends(b"a\r\r\nb\r\rc"), b"a\nb\n\nc");
    }

    #[test]
    fn headers_unfold() {
        let h = parse_headers("Subject: a\n b\nTo: x@y\n");
        assert_eq!(header(&h, "subject"), Some("a b"));
        assert_eq!(header(&h, "TO"), Some("x@y"));
    }

    #[test]
    fn unreadable_multipart_falls_back_to_the_body() {
        // The inner multipart's boundary parameter is not folded (no
        // leading white space), so no part can be found.
        let raw = b"From: post_master@gw.example\nTo: a@sender.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"OUT\"\n\n--OUT\nContent-Type: multipart/alternative;\nboundary=\"IN\"\n\n--IN\nContent-Type: text/plain\n\nError: Invalid user address\n  RCPT TO: b@gw.example\n\n--IN--\n\n--OUT--\n";
        let m = Mail::parse(raw);
        assert!(m.notice.contains("RCPT TO: b@gw.example"));
    }

    #[test]
    fn qmail_marker_splits_notice() {
        let raw = b"From: MAILER-DAEMON@a\nSubject: failure notice\n\nHi.\n<x@y>:\nno mailbox here\n\n--- Below this line is a copy of the message.\n\nTo: x@y\nMessage-ID: <1@a>\n\nbody\n";
        let m = Mail::parse(raw);
        assert!(m.notice.contains("no mailbox"));
        assert!(!m.notice.contains("Message-ID"));
        assert!(m.original.unwrap_or_default().contains("Message-ID: <1@a>"));
    }
}
