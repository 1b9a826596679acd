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
pub fn build_message(r: &Rendered, p: &MessageParts<'_>) -> Result<Vec<u8>, RenderError> {
    let to_addr =
        p.to.parse()
            .map_err(|e| RenderError::Mime(format!("recipient {:?}: {e}", p.to)))?;
    let to = Mailbox::new(p.to_name.map(str::to_string), to_addr);
    let mut b = lettre::Message::builder()
        .from(p.from.clone())
        .to(to)
        .subject(r.subject.clone())
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
