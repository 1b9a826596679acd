//! RFC 3464 delivery status fields, read wherever they appear in the notice:
//! the `message/delivery-status` part of a multipart/report, or the same
//! fields pasted into a text part by MTAs that do not build the MIME report.
//!
//! It returns the fields as written; it does not judge hard or soft.

use super::address;

/// One per-recipient block (RFC 3464 §2.3).
#[derive(Debug, Default, Clone)]
pub struct DsnRecipient {
    pub final_recipient: Option<String>,
    pub original_recipient: Option<String>,
    /// Some MTAs (Sendmail, Postfix aliases) name the mailbox they tried.
    pub actual_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// The type before the `;` of Diagnostic-Code: `smtp`, `x-unix`, ...
    pub diagnostic_type: Option<String>,
    pub remote_mta: Option<String>,
    /// PowerMTA's own classification of the failure
    /// (`X-PowerMTA-BounceCategory: bad-mailbox`), when the report has one.
    pub bounce_category: Option<String>,
}

impl DsnRecipient {
    /// The address that bounced: RFC 3464 §2.3.2 makes Final-Recipient the
    /// mailbox the reporting MTA tried; Original-Recipient is what the sender
    /// wrote (before aliases) and is used when Final-Recipient has no address.
    pub fn recipient(&self) -> Option<&str> {
        let fields = [
            self.final_recipient.as_deref(),
            self.original_recipient.as_deref(),
            self.actual_recipient.as_deref(),
        ];
        // A Final-Recipient that is a file or program (Exim writes the
        // mailbox path) is not an address; prefer one that is.
        fields
            .iter()
            .flatten()
            .find(|a| a.contains('@'))
            .or(fields.iter().flatten().next())
            .copied()
    }

    fn has_per_recipient_fields(&self) -> bool {
        self.action.is_some() || self.status.is_some() || self.diagnostic.is_some()
    }
}

#[derive(Debug, Default)]
pub struct Dsn {
    pub reporting_mta: Option<String>,
    pub recipients: Vec<DsnRecipient>,
}

/// Read the DSN fields from `text`. Header-style continuation lines (leading
/// white space) belong to the field above them (RFC 3464 §2.1 uses RFC 822
/// folding).
pub fn parse(text: &str) -> Dsn {
    let mut dsn = Dsn::default();
    let mut cur = DsnRecipient::default();
    let mut last_field: Option<&'static str> = None;
    for line in text.lines() {
        if (line.starts_with(' ') || line.starts_with('\t')) && last_field.is_some() {
            let more = line.trim();
            if more.is_empty() {
                continue;
            }
            match last_field {
                Some("diagnostic") => append(&mut cur.diagnostic, more),
                Some("status") => {}
                _ => {}
            }
            continue;
        }
        last_field = None;
        // RFC 3464 §2.1: per-recipient groups are separated by blank lines;
        // within a group the fields may come in any order.
        if line.trim().is_empty() {
            if cur.recipient().is_some() {
                push(&mut dsn, std::mem::take(&mut cur));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "reporting-mta" => dsn.reporting_mta = Some(strip_type(value).to_string()),
            "final-recipient" => {
                // Some MTAs write groups without blank lines between them: a
                // second recipient field starts the next group.
                if cur.final_recipient.is_some() {
                    push(&mut dsn, std::mem::take(&mut cur));
                }
                cur.final_recipient = address::from_typed(value);
            }
            "original-recipient" => {
                if cur.original_recipient.is_some()
                    || (cur.final_recipient.is_some() && cur.has_per_recipient_fields())
                {
                    push(&mut dsn, std::mem::take(&mut cur));
                }
                cur.original_recipient = address::from_typed(value);
            }
            "x-actual-recipient" => cur.actual_recipient = address::from_typed(value),
            "action" => {
                cur.action = Some(value.to_ascii_lowercase());
            }
            "status" => {
                if let Some(code) = find_status(value) {
                    cur.status = Some(code);
                }
                last_field = Some("status");
            }
            "remote-mta" => cur.remote_mta = Some(strip_type(value).to_string()),
            "x-powermta-bouncecategory" => {
                cur.bounce_category = Some(value.to_ascii_lowercase());
            }
            "diagnostic-code" => {
                let (kind, rest) = match value.split_once(';') {
                    Some((k, r)) if k.len() < 20 && !k.contains(' ') => {
                        (Some(k.trim().to_ascii_lowercase()), r.trim())
                    }
                    _ => (None, value),
                };
                cur.diagnostic_type = kind;
                cur.diagnostic = Some(rest.to_string());
                last_field = Some("diagnostic");
            }
            _ => {}
        }
    }
    push(&mut dsn, cur);
    dsn
}

fn push(dsn: &mut Dsn, r: DsnRecipient) {
    if r.recipient().is_some() || r.has_per_recipient_fields() {
        dsn.recipients.push(r);
    }
}

fn append(field: &mut Option<String>, more: &str) {
    match field {
        Some(s) => {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(more);
        }
        None => *field = Some(more.to_string()),
    }
}

fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((_, rest)) => rest.trim(),
        None => value.trim(),
    }
}

/// The first RFC 3463 code (`class.subject.detail`) in the text.
pub fn find_status(text: &str) -> Option<String> {
    all_statuses(text).into_iter().next()
}

/// Every RFC 3463 code in the text, in order.
pub fn all_statuses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.');
        if boundary && matches!(c, b'2' | b'4' | b'5') && b.get(i + 1) == Some(&b'.') {
            let mut j = i + 2;
            let s1 = j;
            while j < b.len() && b[j].is_ascii_digit() && j - s1 < 3 {
                j += 1;
            }
            if j > s1 && b.get(j) == Some(&b'.') {
                let s2 = j + 1;
                let mut k = s2;
                while k < b.len() && b[k].is_ascii_digit() && k - s2 < 3 {
                    k += 1;
                }
                let after_ok = k == b.len()
                    || !(b[k].is_ascii_digit()
                        || (b[k] == b'.' && b.get(k + 1).is_some_and(u8::is_ascii_digit)));
                if k > s2 && after_ok {
                    out.push(text[i..k].to_string());
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// The first SMTP reply code (RFC 5321 §4.2) in the text: three digits
/// starting 2, 4 or 5, standing alone or followed by `-`.
pub fn find_reply_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        let boundary = i == 0
            || matches!(
                b[i - 1],
                b' ' | b'\t' | b'(' | b'#' | b'[' | b'"' | b'\'' | b':' | b'<'
            );
        if boundary
            && matches!(b[i], b'4' | b'5')
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && matches!(
                b.get(i + 3),
                None | Some(b' ') | Some(b'-') | Some(b')') | Some(b':') | Some(b'\n')
            )
            && matches!(b[i + 1], b'0'..=b'5')
        {
            return Some(text[i..i + 3].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_recipients_split_into_two_blocks() {
        let d = parse(
            "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no such\n    user here\n\nOriginal-Recipient: rfc822;b@x.example\nFinal-Recipient: rfc822; <b@example.org>\nAction: delayed\nStatus: 4.2.2\n",
        );
        assert_eq!(d.reporting_mta.as_deref(), Some("mx.example"));
        assert_eq!(d.recipients.len(), 2);
        assert_eq!(d.recipients[0].recipient(), Some("a@example.org"));
        assert_eq!(
            d.recipients[0].diagnostic.as_deref(),
            Some("550 5.1.1 no such user here")
        );
        assert_eq!(d.recipients[1].recipient(), Some("b@example.org"));
        assert_eq!(
            d.recipients[1].original_recipient.as_deref(),
            Some("b@x.example")
        );
        assert_eq!(d.recipients[1].status.as_deref(), Some("4.2.2"));
    }

    #[test]
    fn powermta_bounce_category_is_kept() {
        let d = parse(
            "Reporting-MTA: dns;mta.example\nX-PowerMTA-VirtualMTA: pool1\n\nFinal-Recipient: rfc822;a@example.org\nAction: failed\nStatus: 5.0.0 (undefined status)\nX-PowerMTA-BounceCategory: Bad-Mailbox\n",
        );
        assert_eq!(d.recipients.len(), 1);
        assert_eq!(
            d.recipients[0].bounce_category.as_deref(),
            Some("bad-mailbox")
        );
    }

    #[test]
    fn fields_may_come_in_any_order_within_a_group() {
        let d = parse(
            "Action: failed\nFinal-Recipient: rfc822; a@example.org\nStatus: 5.0.0\n\nAction: delayed\nFinal-Recipient: rfc822; b@example.org\n",
        );
        assert_eq!(d.recipients.len(), 2);
        assert_eq!(d.recipients[0].action.as_deref(), Some("failed"));
        assert_eq!(d.recipients[1].recipient(), Some("b@example.org"));
        assert_eq!(d.recipients[1].action.as_deref(), Some("delayed"));
    }

    #[test]
    fn codes_are_found_only_standing_alone() {
        assert_eq!(find_status("said: 550 5.7.1 no"), Some("5.7.1".into()));
        assert_eq!(find_status("ip 192.5.1.1 here"), None);
        assert_eq!(find_status("#5.1.1"), Some("5.1.1".into()));
        assert_eq!(find_reply_code("host said: 550-5.1.1"), Some("550".into()));
        assert_eq!(find_reply_code("192.0.2.250 x"), None);
        // Exchange quotes the remote reply: "returned '550 5.1.1 ...'".
        assert_eq!(
            find_reply_code("returned '550 Invalid'"),
            Some("550".into())
        );
    }
}
