//! The MIME message and its envelope.
//!
//! The envelope is separate from the headers: the VERP return path goes in
//! MAIL FROM only, and no Return-Path header is written (the receiving server
//! adds it, RFC 5321 §4.4).

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::{RenderError, Rendered};

/// SMTP envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM: the VERP return path.
    pub from: String,
    /// RCPT TO.
    pub to: String,
}

/// Everything beside the rendered text that goes into the headers.
#[derive(Debug, Clone)]
pub struct MessageParts<'a> {
    pub from: &'a Mailbox,
    pub reply_to: Option<&'a Mailbox>,
    /// Recipient address (SMTP form) and display name.
    pub to: &'a str,
    pub to_name: Option<&'a str>,
    /// Without angle brackets.
    pub message_id: &'a str,
    /// The one-click unsubscribe URL; empty when nothing answers it (no
    /// `cartero serve`): then List-Unsubscribe carries the mailto alone and
    /// List-Unsubscribe-Post is left out.
    pub unsubscribe_url: &'a str,
    pub unsubscribe_mailto: &'a str,
    pub list_id: &'a str,
    pub feedback_id: &'a str,
    pub extra_headers: &'a [(String, String)],
}

/// A message ready for the wire.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

fn header(name: &str, value: String) -> Result<HeaderValue, RenderError> {
    let name = HeaderName::new_from_ascii(name.to_string())
        .map_err(|_| RenderError::Mime(format!("invalid header name {name:?}")))?;
    Ok(HeaderValue::new(name, value))
}

/// Builds the multipart/alternative message (text first, then HTML, as
/// RFC 2046 §5.1.4 orders them: the last part is the preferred one).
///
/// The recipient's display name and the subject come from contact data:
/// they are cleaned to one header line (`domain::text::header_phrase`) and
/// lettre encodes them per RFC 2047 where they are not plain ASCII. A panic
/// inside the MIME writer fails this message alone, never the send.
pub fn build_message(r: &Rendered, p: &MessageParts<'_>) -> Result<Vec<u8>, RenderError> {
    std::panic::catch_unwind(|| build(r, p)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(RenderError::Mime(format!(
            "the MIME writer refused this message: {why}"
        )))
    })
}

fn build(r: &Rendered, p: &MessageParts<'_>) -> Result<Vec<u8>, RenderError> {
    let to_addr =
        p.to.parse()
            .map_err(|e| RenderError::Mime(format!("recipient {:?}: {e}", p.to)))?;
    let to_name = p
        .to_name
        .map(crate::domain::text::header_phrase)
        .filter(|n| !n.is_empty());
    let to = Mailbox::new(to_name, to_addr);
    let mut b = lettre::Message::builder()
        .from(p.from.clone())
        .to(to)
        .subject(crate::domain::text::header_phrase(&r.subject))
        .message_id(Some(format!("<{}>", p.message_id)))
        .date_now();
    if let Some(rt) = p.reply_to {
        b = b.reply_to(rt.clone());
    }
    // RFC 2369 / RFC 8058 §3.1: an HTTPS URI for one-click POST, and a mailto
    // for clients that only mail.
    if p.unsubscribe_url.is_empty() {
        b = b.raw_header(header(
            "List-Unsubscribe",
            format!("<mailto:{}>", p.unsubscribe_mailto),
        )?);
    } else {
        b = b.raw_header(header(
            "List-Unsubscribe",
            format!("<{}>, <mailto:{}>", p.unsubscribe_url, p.unsubscribe_mailto),
        )?);
        b = b.raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        )?);
    }
    b = b.raw_header(header("List-Id", p.list_id.to_string())?);
    b = b.raw_header(header("Feedback-ID", p.feedback_id.to_string())?);
    // Discourages auto-replies to bulk mail (RFC 3834 §2 notes the practice).
    b = b.raw_header(header("Precedence", "bulk".into())?);
    for (k, v) in p.extra_headers {
        b = b.raw_header(header(k, v.clone())?);
    }
    let body = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(super::body::encode(&r.text)),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(super::body::encode(&r.html)),
        );
    let msg = b
        .multipart(body)
        .map_err(|e| RenderError::Mime(e.to_string()))?;
    Ok(msg.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        from: &'a Mailbox,
        name: &'a str,
        headers: &'a [(String, String)],
    ) -> MessageParts<'a> {
        MessageParts {
            from,
            reply_to: None,
            to: "ana@example.com",
            to_name: Some(name),
            message_id: "x@shop.example",
            unsubscribe_url: "https://t.example/u/x",
            unsubscribe_mailto: "u+x@t.example",
            list_id: "L <l.t.example>",
            feedback_id: "c:l:cartero",
            extra_headers: headers,
        }
    }

    proptest::proptest! {
        /// Any display name or subject from contact data gives a message
        /// (never a panic, never an error) whose header block holds exactly
        /// the fields cartero writes.
        #[test]
        fn any_name_or_subject_gives_one_header_block(
            name in "\\PC{0,40}|[\\x00-\\x{9f}\\x{2028}:<>\"@a ]{0,40}",
            subject in "[\\x00-\\x{9f}\\x{2028}a ]{0,40}",
        ) {
            let from: Mailbox = "Shop <news@shop.example>".parse().unwrap();
            let r = Rendered { subject, html: "<p>x</p>".into(), text: "x".into() };
            let bytes = build_message(&r, &parts(&from, &name, &[])).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let head = text.split("\r\n\r\n").next().unwrap();
            let names: Vec<&str> = head
                .split("\r\n")
                .filter(|l| !l.starts_with([' ', '\t']))
                .map(|l| l.split(':').next().unwrap())
                .collect();
            proptest::prop_assert_eq!(
                names,
                vec!["From", "To", "Subject", "Message-ID", "Date", "List-Unsubscribe",
                     "List-Unsubscribe-Post", "List-Id", "Feedback-ID", "Precedence",
                     "MIME-Version", "Content-Type"]
            );
            proptest::prop_assert!(!head.bytes().any(|b| b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t'));
        }
    }
}
