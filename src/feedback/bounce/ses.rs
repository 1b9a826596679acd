//! Amazon SES event notifications: the JSON document SES publishes for a
//! bounce, complaint or delivery, mailed by an SNS e-mail subscription
//! either as it is or inside SNS's own envelope (`"Message"`, a string
//! holding the same JSON).
//!
//! Reads the notification's own recipient lists, so the sender's identity
//! (`mail.source`, `sourceArn`) and the SNS footer are never taken for a
//! recipient. It does not choose reasons (the caller does, from the status
//! and diagnostic given per recipient).

use serde_json::Value;

use super::reason::Reason;

/// One recipient of a notification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SesRecipient {
    pub address: String,
    pub status: Option<String>,
    pub action: Option<String>,
    /// `diagnosticCode` without its `smtp;` type.
    pub diagnostic: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    Bounce {
        /// `Permanent`, `Transient` or `Undetermined`.
        bounce_type: String,
        /// What `bounceSubType` says, when it names a cause.
        reason: Option<Reason>,
        reporting_mta: Option<String>,
        recipients: Vec<SesRecipient>,
    },
    Complaint {
        feedback_type: String,
        recipients: Vec<String>,
    },
    Delivery {
        recipients: Vec<String>,
    },
}

/// The notification in `text`, if it holds one.
pub fn parse(text: &str) -> Option<Notification> {
    if !text.contains("notificationType") {
        return None;
    }
    // SNS wraps long lines of the e-mail with "!" and a continuation.
    let text = text.replace("!\n ", "");
    let doc = text
        .match_indices('{')
        .filter_map(|(i, _)| first_value(&text[i..]))
        .find_map(|v| notification_object(&v))?;
    read(&doc)
}

fn first_value(text: &str) -> Option<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .next()?
        .ok()
        .filter(Value::is_object)
}

/// The SES notification itself, or the one inside an SNS envelope.
fn notification_object(v: &Value) -> Option<Value> {
    if v.get("notificationType").is_some_and(Value::is_string) {
        return Some(v.clone());
    }
    let inner: Value = serde_json::from_str(v.get("Message")?.as_str()?).ok()?;
    inner
        .get("notificationType")
        .is_some_and(Value::is_string)
        .then_some(inner)
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn read(doc: &Value) -> Option<Notification> {
    match doc.get("notificationType")?.as_str()? {
        "Bounce" => {
            let b = doc.get("bounce")?;
            let recipients = b
                .get("bouncedRecipients")?
                .as_array()?
                .iter()
                .filter_map(|r| {
                    Some(SesRecipient {
                        address: string(r, "emailAddress")?.to_lowercase(),
                        status: string(r, "status"),
                        action: string(r, "action").map(|a| a.to_ascii_lowercase()),
                        diagnostic: string(r, "diagnosticCode").map(|d| match d.split_once(';') {
                            Some((t, rest)) if t.len() < 20 && !t.contains(' ') => {
                                rest.trim().to_string()
                            }
                            _ => d,
                        }),
                    })
                })
                .collect();
            Some(Notification::Bounce {
                bounce_type: string(b, "bounceType").unwrap_or_default(),
                reason: string(b, "bounceSubType").and_then(|s| subtype_reason(&s)),
                reporting_mta: string(b, "reportingMTA")
                    .map(|m| m.rsplit(';').next().unwrap_or("").trim().to_string()),
                recipients,
            })
        }
        "Complaint" => {
            let c = doc.get("complaint")?;
            let recipients = c
                .get("complainedRecipients")?
                .as_array()?
                .iter()
                .filter_map(|r| string(r, "emailAddress").map(|a| a.to_lowercase()))
                .collect();
            Some(Notification::Complaint {
                feedback_type: string(c, "complaintFeedbackType").unwrap_or_else(|| "abuse".into()),
                recipients,
            })
        }
        "Delivery" => {
            let d = doc.get("delivery")?;
            let recipients = d
                .get("recipients")?
                .as_array()?
                .iter()
                .filter_map(|r| r.as_str().map(|a| a.trim().to_lowercase()))
                .collect();
            Some(Notification::Delivery { recipients })
        }
        _ => None,
    }
}

/// SES's bounce subtypes that name a cause
/// (docs.aws.amazon.com/ses/latest/dg/notification-contents.html).
/// `General` and `NoEmail` leave it to the recipient's status and text.
fn subtype_reason(subtype: &str) -> Option<Reason> {
    Some(match subtype {
        "Suppressed" | "OnAccountSuppressionList" => Reason::Suppressed,
        "MailboxFull" => Reason::MailboxFull,
        "MessageTooLarge" => Reason::MesgTooBig,
        "ContentRejected" => Reason::ContentError,
        "AttachmentRejected" => Reason::SecurityError,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNCE: &str = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"gone@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a1.smtp-out.example.com"},"mail":{"source":"me@sender.example","sourceArn":"arn:aws:ses:us-west-2:1:identity/me@sender.example","destination":["gone@example.org"]}}"#;

    #[test]
    fn bounce_names_only_the_bounced_recipients() {
        let text = format!(
            "{BOUNCE}\n\n--\nIf you wish to stop receiving notifications, visit https://sns.example/unsubscribe?Endpoint=me@sender.example\n"
        );
        let Some(Notification::Bounce {
            bounce_type,
            reason,
            reporting_mta,
            recipients,
        }) = parse(&text)
        else {
            panic!("a bounce notification");
        };
        assert_eq!(bounce_type, "Permanent");
        assert_eq!(reason, None);
        assert_eq!(reporting_mta.as_deref(), Some("a1.smtp-out.example.com"));
        assert_eq!(recipients.len(), 1);
        assert_eq!(recipients[0].address, "gone@example.org");
        assert_eq!(recipients[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(
            recipients[0].diagnostic.as_deref(),
            Some("550 5.1.1 user unknown")
        );
    }

    #[test]
    fn sns_envelope_and_wrapped_lines_are_read() {
        let inner = BOUNCE.replace('"', "\\\"");
        let text = format!(
            "{{\"Type\":\"Notification\",\"MessageId\":\"1\",\"Message\":\"{}\"}}",
            inner.replace("user unknown", "user un!\n known")
        );
        assert!(matches!(parse(&text), Some(Notification::Bounce { .. })));
    }

    #[test]
    fn complaint_and_delivery() {
        let c = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"Who@Example.org"}],"complaintFeedbackType":"abuse"},"mail":{"source":"me@sender.example"}}"#;
        assert_eq!(
            parse(c),
            Some(Notification::Complaint {
                feedback_type: "abuse".into(),
                recipients: vec!["who@example.org".into()],
            })
        );
        let d = r#"{"notificationType":"Delivery","delivery":{"recipients":["ok@example.org"],"smtpResponse":"250 2.6.0 Message received"},"mail":{}}"#;
        assert_eq!(
            parse(d),
            Some(Notification::Delivery {
                recipients: vec!["ok@example.org".into()],
            })
        );
        assert_eq!(parse("just text {not json} notificationType"), None);
    }
}
