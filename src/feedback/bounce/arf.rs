//! Feedback-loop complaints: the Abuse Reporting Format (RFC 5965), plus the
//! older "forwarded as attachment" reports some providers still send.
//!
//! Finds the complaining recipient and the feedback type; it does not act on
//! them (the policy unsubscribes and suppresses).

use super::address;
use super::message::{Mail, header, parse_headers};

#[derive(Debug, Default)]
pub struct Complaint {
    pub recipients: Vec<String>,
    pub feedback_type: String,
    pub source_ip: Option<String>,
    pub reporting_mta: Option<String>,
}

/// A complaint when the message is an ARF report (RFC 5965 §2: a
/// multipart/report with report-type=feedback-report and a
/// message/feedback-report part), or carries a provider's complaint header.
pub fn parse(mail: &Mail) -> Option<Complaint> {
    let report = mail
        .segments
        .iter()
        .find(|s| s.ctype == "message/feedback-report");
    let top_ct = mail
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_arf_type = top_ct.contains("feedback-report");
    // Microsoft's JMRP reports are not ARF: the complainant is in an
    // X-HmXmrOriginalRecipient header, on the report or on the attached copy.
    let microsoft = mail
        .header("x-hmxmroriginalrecipient")
        .map(str::to_string)
        .or_else(|| {
            mail.original.as_deref().and_then(|o| {
                header(&parse_headers(o), "x-hmxmroriginalrecipient").map(str::to_string)
            })
        });
    if report.is_none() && !is_arf_type && microsoft.is_none() {
        return None;
    }
    let mut c = Complaint::default();
    if let Some(seg) = report {
        // mail-auth reads the standard fields (RFC 5965 §3.1); its typed
        // feedback type is used when it parses, our own field scan otherwise.
        let bytes = seg.text.replace('\n', "\r\n");
        if let Some(fb) = mail_auth::report::Feedback::parse_arf(bytes.as_bytes()) {
            c.feedback_type = feedback_type_name(fb.feedback_type()).to_string();
            if let Some(r) = fb.original_rcpt_to().and_then(address::first_in) {
                c.recipients.push(r);
            }
            c.reporting_mta = fb.reporting_mta().map(str::to_string);
            c.source_ip = fb.source_ip().map(|ip| ip.to_string());
        }
        let fields = parse_headers(&seg.text);
        for (name, value) in &fields {
            let n = name.to_ascii_lowercase();
            match n.as_str() {
                "feedback-type" if c.feedback_type.is_empty() => {
                    c.feedback_type = value.trim().to_ascii_lowercase()
                }
                "original-rcpt-to" | "removal-recipient" => {
                    if let Some(a) = address::first_in(value)
                        && !c.recipients.contains(&a)
                    {
                        c.recipients.push(a);
                    }
                }
                "source-ip" if c.source_ip.is_none() => {
                    c.source_ip = Some(value.trim().to_string())
                }
                "reporting-mta" if c.reporting_mta.is_none() => {
                    c.reporting_mta =
                        Some(value.rsplit(';').next().unwrap_or("").trim().to_string())
                }
                _ => {}
            }
        }
    }
    if let Some(r) = microsoft.as_deref().and_then(address::first_in)
        && !c.recipients.contains(&r)
    {
        c.recipients.push(r);
    }
    if c.feedback_type.is_empty() {
        c.feedback_type = "abuse".into();
    }
    if c.recipients.is_empty() {
        // RFC 5965 §2 (c): the third part is the reported message; its To is
        // who received it, unless the reporter removed it.
        if let Some(orig) = &mail.original {
            let h = parse_headers(orig);
            for name in ["to", "delivered-to", "x-original-to"] {
                if let Some(v) = header(&h, name) {
                    c.recipients.extend(address::find_all(v));
                    if !c.recipients.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    if c.recipients.is_empty() {
        // The reporter withheld every address (RFC 6650 §4 allows redaction;
        // "To: Undisclosed Recipients"). Name the record as Sisimai does, so
        // results compare with it; the address can never be a contact's.
        c.recipients.push(UNDISCLOSED_RECIPIENT.to_string());
    }
    Some(c)
}

/// The recipient of a complaint whose report names nobody: Sisimai's
/// placeholder (`Sisimai::Address->undisclosed('r')`), in the `.invalid`
/// top-level domain, which RFC 2606 §2 and RFC 6761 §6.4 reserve so that it
/// never resolves and never belongs to anyone.
pub const UNDISCLOSED_RECIPIENT: &str = "undisclosed-recipient-in-headers@libsisimai.org.invalid";

/// Whether a record's recipient is the placeholder for "nobody named".
pub fn is_undisclosed(address: &str) -> bool {
    address.eq_ignore_ascii_case(UNDISCLOSED_RECIPIENT)
}

fn feedback_type_name(t: mail_auth::report::FeedbackType) -> &'static str {
    use mail_auth::report::FeedbackType::*;
    match t {
        Abuse => "abuse",
        AuthFailure => "auth-failure",
        Fraud => "fraud",
        NotSpam => "not-spam",
        Virus => "virus",
        Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARF: &str = "From: fbl@isp.example\nTo: fbl@sender.example\nSubject: Abuse report\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nA complaint.\n\n--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: Test/1.0\nVersion: 1\nOriginal-Rcpt-To: <user@isp.example>\nSource-IP: 192.0.2.1\n\n--b\nContent-Type: message/rfc822\n\nFrom: news@sender.example\nTo: user@isp.example\nMessage-ID: <m1@sender.example>\nSubject: hi\n\nbody\n--b--\n";

    #[test]
    fn arf_gives_recipient_and_type() {
        let m = Mail::parse(ARF.as_bytes());
        let c = parse(&m).expect("an ARF report");
        assert_eq!(c.recipients, vec!["user@isp.example".to_string()]);
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.source_ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn report_without_any_address_names_the_placeholder() {
        let raw = ARF
            .replace("Original-Rcpt-To: <user@isp.example>\n", "")
            .replace("To: user@isp.example\n", "To: <Undisclosed Recipients>\n");
        let m = Mail::parse(raw.as_bytes());
        let c = parse(&m).expect("an ARF report");
        assert_eq!(c.recipients, vec![UNDISCLOSED_RECIPIENT.to_string()]);
        assert!(is_undisclosed(&c.recipients[0]));
        assert!(c.recipients[0].ends_with(".invalid"));
    }

    #[test]
    fn plain_mail_is_not_a_complaint() {
        let m = Mail::parse(b"From: a@b.example\nTo: c@d.example\nSubject: hi\n\nhello\n");
        assert!(parse(&m).is_none());
    }
}
