//! Bounce, complaint and auto-reply classification of one raw message.
//!
//! `classify` is pure: bytes in, a `Classification` out, no I/O, no
//! database, no configuration. It reads, in order: ARF complaints (RFC 5965),
//! Amazon SES's JSON notifications, RFC 3464 delivery status reports, the
//! non-standard notices of MTAs that do not send them, automatic replies
//! (RFC 3834), and unsubscribe mails.
//! Each failed recipient becomes a `Record` with a kind (what to do) and a
//! reason from the taxonomy in `reason` (why). It must never panic on any
//! input; the property tests feed it arbitrary and mutated bytes.

mod address;
mod arf;
mod autoreply;
mod dsn;
mod message;
mod providers;
pub mod reason;
mod ses;
mod vendors;

pub use arf::{UNDISCLOSED_RECIPIENT, is_undisclosed};
pub use message::normalise_line_ends;
pub use reason::Reason;

use std::cell::OnceCell;

use message::{Mail, parse_headers};

/// What cartero does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The address is gone: stop mailing it.
    Hard,
    /// This attempt failed; the address may work later.
    Soft,
    /// The recipient reported the mail as abuse (ARF).
    Complaint,
    /// A vacation or other automatic reply; not a failure.
    AutoReply,
    /// A mail asking to be taken off the list.
    Unsubscribe,
    /// Nothing to act on (also a DSN reporting success).
    None,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Complaint => "complaint",
            Kind::AutoReply => "autoreply",
            Kind::Unsubscribe => "unsubscribe",
            Kind::None => "none",
        }
    }
}

/// One recipient's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub recipient: Option<String>,
    pub kind: Kind,
    pub reason: Reason,
    /// RFC 3463 enhanced status code, e.g. `5.1.1`.
    pub status: Option<String>,
    /// The remote server's words (Diagnostic-Code or the notice's text).
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    /// RFC 3464 Action: failed, delayed, delivered, relayed, expanded.
    pub action: Option<String>,
    /// RFC 5965 Feedback-Type for complaints.
    pub feedback_type: Option<String>,
    /// SMTP reply code (RFC 5321 §4.2), e.g. `550`.
    pub reply_code: Option<String>,
    /// The SMTP command the remote server refused (RCPT, DATA, ...).
    pub command: Option<String>,
}

impl Record {
    /// The recipient when the report names one: `None` also for the
    /// placeholder a complaint gets when the reporter withheld the address,
    /// so it is never looked up as a contact.
    pub fn named_recipient(&self) -> Option<&str> {
        self.recipient.as_deref().filter(|r| !is_undisclosed(r))
    }

    fn new(recipient: Option<String>, kind: Kind, reason: Reason) -> Record {
        Record {
            recipient,
            kind,
            reason,
            status: None,
            diagnostic: None,
            remote_mta: None,
            action: None,
            feedback_type: None,
            reply_code: None,
            command: None,
        }
    }
}

/// Everything one message says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Classification {
    pub records: Vec<Record>,
    /// Message-ID of the report itself (dedupe key for mailbox ingestion).
    pub message_id: Option<String>,
    /// TOKEN from an envelope recipient `<local>+TOKEN@domain` (VERP).
    pub verp_token: Option<String>,
    /// Message-ID of the original message quoted in the report.
    pub original_message_id: Option<String>,
    /// Selected headers of the returned original (X-Cartero-*, Message-ID,
    /// From, To, Subject, List-Id, Feedback-ID), in order.
    pub original_headers: Vec<(String, String)>,
    /// What the `Limits` left out.
    pub cut: Cut,
}

/// How much of one message classification reads (RFC 3464 reports are
/// small; anyone can mail the bounce address, so a crafted one must not
/// cost more than a real one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the raw message examined. A longer message is read as its
    /// first part and its last `max_bytes / 4` (where a report that puts its
    /// delivery-status part after the returned message keeps it), cut at
    /// line ends; the middle, which can only be the returned message's
    /// body, is skipped.
    pub max_bytes: usize,
    /// Failed recipients reported per message; further ones are dropped.
    pub max_recipients: usize,
}

impl Limits {
    /// The defaults: 16 MiB keeps every real report whole, including those
    /// that return a full message of a common 10 MB size limit (Postfix's
    /// `message_size_limit` default); 1,000 recipients is more than any
    /// report on mail cartero sent (one recipient per message, VERP).
    pub const DEFAULT: Limits = Limits {
        max_bytes: 16 * 1024 * 1024,
        max_recipients: 1000,
    };

    /// No limit (tests and benchmarks of the uncapped cost).
    pub const NONE: Limits = Limits {
        max_bytes: usize::MAX,
        max_recipients: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// What `Limits` left out of a classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cut {
    /// Bytes of the raw message not examined (0: all were).
    pub bytes: usize,
    /// Whether failed recipients beyond `Limits::max_recipients` were dropped.
    pub recipients: bool,
}

/// Classify one raw message (any line ends) within the default `Limits`.
pub fn classify(raw: &[u8]) -> Classification {
    classify_with(raw, &Limits::DEFAULT)
}

/// Classify one raw message (any line ends) within `limits`. Time and memory
/// are linear in the bytes examined, and the records at most
/// `limits.max_recipients`.
pub fn classify_with(raw: &[u8], limits: &Limits) -> Classification {
    let (examined, skipped) = examined_bytes(raw, limits.max_bytes);
    let mail = Mail::parse(&examined);
    let mut out = Classification {
        message_id: mail
            .header("message-id")
            .map(|v| v.trim().trim_matches(['<', '>']).to_string()),
        verp_token: verp_token(&mail),
        ..Classification::default()
    };
    out.cut.bytes = skipped;
    if let Some(orig) = &mail.original {
        let h = parse_headers(orig);
        out.original_message_id = message::header(&h, "message-id")
            .map(|v| v.trim().trim_matches(['<', '>']).to_string())
            .filter(|v| !v.is_empty());
        out.original_headers = h
            .into_iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n.starts_with("x-cartero")
                    || matches!(
                        n.as_str(),
                        "message-id" | "from" | "to" | "subject" | "list-id" | "feedback-id"
                    )
            })
            .collect();
    }
    // One more than the limit is read, to tell a report at the limit from
    // one beyond it.
    let max = limits.max_recipients.max(1);
    out.records = records(&mail, 0, max.saturating_add(1));
    if out.records.len() > max {
        out.records.truncate(max);
        out.cut.recipients = true;
    }
    if out.records.is_empty() {
        out.records
            .push(Record::new(None, Kind::None, Reason::Undefined));
    }
    out
}

/// The part of `raw` that is examined: all of it when it fits in `max`,
/// else its head and its tail, each cut at a line end, and the number of
/// bytes left out between them.
fn examined_bytes(raw: &[u8], max: usize) -> (std::borrow::Cow<'_, [u8]>, usize) {
    if raw.len() <= max {
        return (std::borrow::Cow::Borrowed(raw), 0);
    }
    let tail_len = max / 4;
    let mut head_end = max - tail_len;
    // Back to just after a line end (LF or CR), so no line is cut.
    if let Some(n) = raw[..head_end]
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
    {
        head_end = n + 1;
    }
    let mut tail_start = raw.len() - tail_len;
    if let Some(n) = raw[tail_start..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
    {
        tail_start += n + 1;
    }
    let mut v = Vec::with_capacity(head_end + 1 + raw.len() - tail_start);
    v.extend_from_slice(&raw[..head_end]);
    v.extend_from_slice(b"\n");
    v.extend_from_slice(&raw[tail_start..]);
    (std::borrow::Cow::Owned(v), tail_start - head_end)
}

/// Whether the message asks to be unsubscribed (subject or first body line
/// "unsubscribe"). The caller checks that it was sent to the List-Unsubscribe
/// mailbox (RFC 2369 §3.2).
pub fn is_unsubscribe_request(raw: &[u8]) -> bool {
    let mail = Mail::parse(raw);
    autoreply::is_unsubscribe_request(&mail)
}

/// Classifies an SMTP server's refusal given during a send (a 5xx to RCPT
/// or DATA), with the same rules that read a bounce mail's
/// Diagnostic-Code: the reply is the diagnostic, for one recipient.
pub fn classify_reply(recipient: &str, code: Option<u16>, reply: &str) -> Record {
    let reply = reply.trim();
    // The code in front, as a Diagnostic-Code carries it ("smtp; 550 5.1.1
    // ..."), so the reply code and status are found standing alone.
    let diagnostic = match code {
        Some(c) if !reply.starts_with(&c.to_string()) => format!("{c} {reply}"),
        _ => reply.to_string(),
    };
    let mut rec = Record::new(
        Some(recipient.to_ascii_lowercase()),
        Kind::Soft,
        Reason::Undefined,
    );
    rec.action = Some("failed".into());
    rec.diagnostic = Some(diagnostic);
    let hints = Hints {
        agent: None,
        hosts: Vec::new(),
        vendor: None,
    };
    decide(&mut rec, None, "", &Notice::new(""), 1, false, &hints);
    rec
}

fn verp_token(mail: &Mail) -> Option<String> {
    for name in ["delivered-to", "x-original-to", "envelope-to", "to"] {
        for (n, v) in &mail.headers {
            if !n.eq_ignore_ascii_case(name) {
                continue;
            }
            for a in address::find_all(v) {
                let local = a.split('@').next().unwrap_or("");
                if let Some((_, token)) = local.split_once('+')
                    && !token.is_empty()
                {
                    return Some(token.to_string());
                }
            }
        }
    }
    None
}

fn dsn_like(mail: &Mail) -> bool {
    mail.header("content-type")
        .is_some_and(|v| v.to_ascii_lowercase().contains("report"))
}

fn records(mail: &Mail, depth: u8, max: usize) -> Vec<Record> {
    if let Some(c) = arf::parse(mail) {
        let rcpts: Vec<Option<String>> = if c.recipients.is_empty() {
            vec![None]
        } else {
            c.recipients.into_iter().take(max).map(Some).collect()
        };
        return rcpts
            .into_iter()
            .map(|r| {
                let mut rec = Record::new(r, Kind::Complaint, Reason::Feedback);
                rec.feedback_type = Some(c.feedback_type.clone());
                rec.remote_mta = c.reporting_mta.clone();
                rec
            })
            .collect();
    }

    if let Some(n) = ses::parse(&mail.notice) {
        return ses_records(n, max);
    }

    let dsn = dsn::parse(&mail.notice);
    let agent = vendors::agent(mail);
    let notice = Notice::new(&mail.notice);
    let mut out = Vec::new();
    if !dsn.recipients.is_empty() {
        // Exim's X-Failed-Recipients names the address when the DSN can
        // only name the file or pipe it failed to write.
        let failed: Vec<String> = mail
            .header("x-failed-recipients")
            .map(address::find_all)
            .unwrap_or_default();
        for r in dsn.recipients.iter().take(max) {
            let mut recipient = r.recipient().map(str::to_lowercase);
            if recipient.as_deref().is_some_and(|a| !a.contains('@')) && failed.len() == 1 {
                recipient = Some(failed[0].clone());
            }
            let about = recipient
                .as_deref()
                .map(|a| notice.mentions().about(a))
                .unwrap_or_default();
            let mut rec = Record::new(recipient, Kind::Soft, Reason::Undefined);
            rec.action = r.action.clone();
            rec.remote_mta = r.remote_mta.clone();
            rec.diagnostic = r.diagnostic.clone().filter(|d| !d.is_empty());
            let x_unix = r
                .diagnostic_type
                .as_deref()
                .is_some_and(|t| t.starts_with("x-unix"));
            let hints = Hints {
                agent,
                hosts: [r.remote_mta.as_deref(), dsn.reporting_mta.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect(),
                vendor: r
                    .bounce_category
                    .as_deref()
                    .and_then(vendors::powermta_category),
            };
            decide(
                &mut rec,
                r.status.as_deref(),
                &about,
                &notice,
                dsn.recipients.len(),
                x_unix,
                &hints,
            );
            out.push(rec);
        }
        return out;
    }

    // A mailing-list manager's notice to a poster about its post (refused:
    // not a subscriber, too big, an access rule; held for a moderator) is
    // no failure of any address we sent to: the list address works, and
    // the one address the notice names is the poster's. fml's notices keep
    // Sisimai's reading (they name the poster), which is never one of ours.
    if vendors::is_list_notice(mail) && vendors::fml_notice(mail, max).is_none() {
        return Vec::new();
    }

    // An automatic reply that does not present itself as a failure is read
    // as one before its prose is searched for addresses.
    if !vendors::presents_as_bounce(mail)
        && let Some(who) = autoreply::detect(mail)
    {
        return vec![Record::new(who, Kind::AutoReply, Reason::Vacation)];
    }

    if vendors::looks_like_bounce(mail) {
        let exclude = sender_addresses(mail);
        let mut found = Vec::new();
        if let Some(v) = mail.header("x-failed-recipients") {
            for a in address::find_all(v).into_iter().take(max) {
                let text = notice.mentions().about(&a);
                found.push(vendors::Found { recipient: a, text });
            }
        }
        if found.is_empty()
            && let Some(f) = vendors::fml_notice(mail, max)
        {
            found = f;
        }
        if found.is_empty() {
            found = vendors::scan(&mail.notice, &exclude, max);
        }
        if found.is_empty()
            && depth == 0
            && let Some(inner) = &mail.attached
        {
            // A report forwarded inside another (a gateway relaying the
            // bounce it received): read the inner one.
            let inner = Mail::parse(inner);
            if vendors::presents_as_bounce(&inner) || dsn_like(&inner) {
                let rs = records(&inner, depth + 1, max);
                if rs.iter().any(|r| r.recipient.is_some()) {
                    return rs;
                }
            }
        }
        if found.is_empty()
            && let Some(orig) = &mail.original
        {
            // The notice names nobody: the returned message's To is who it
            // was sent to (Google Groups, some Exchange templates).
            let h = parse_headers(orig);
            if let Some(to) = message::header(&h, "to") {
                let addrs: Vec<String> = address::find_all(to)
                    .into_iter()
                    .filter(|a| !exclude.contains(a))
                    .collect();
                if addrs.len() == 1 {
                    found.push(vendors::Found {
                        recipient: addrs[0].clone(),
                        text: String::new(),
                    });
                }
            }
        }
        let n = found.len();
        for f in found {
            let mut rec = Record::new(Some(f.recipient), Kind::Soft, Reason::Undefined);
            let diag = f.text.trim();
            rec.diagnostic = (!diag.is_empty()).then(|| squash(diag));
            // A prose notice has no Remote-MTA field; the hosts its error
            // text names tell which provider answered.
            let named = hosts_in(&f.text);
            let hints = Hints {
                agent,
                hosts: named.iter().map(String::as_str).collect(),
                vendor: None,
            };
            decide(&mut rec, None, &f.text, &notice, n, false, &hints);
            out.push(rec);
        }
        if !out.is_empty() {
            return out;
        }
    }

    if let Some(who) = autoreply::detect(mail) {
        return vec![Record::new(who, Kind::AutoReply, Reason::Vacation)];
    }
    if autoreply::is_unsubscribe_request(mail) {
        let who = mail.header("from").and_then(address::first_in);
        return vec![Record::new(who, Kind::Unsubscribe, Reason::Unsubscribe)];
    }
    Vec::new()
}

/// Records from an Amazon SES event notification: its own recipient lists,
/// each bounced one judged from its status and diagnostic like a DSN's.
fn ses_records(n: ses::Notification, max: usize) -> Vec<Record> {
    let none = Notice::new("");
    match n {
        ses::Notification::Bounce {
            reason,
            reporting_mta,
            mut recipients,
            ..
        } => {
            let count = recipients.len();
            recipients.truncate(max);
            recipients
                .into_iter()
                .map(|r| {
                    let mut rec = Record::new(Some(r.address), Kind::Soft, Reason::Undefined);
                    rec.action = r.action;
                    rec.diagnostic = r.diagnostic;
                    let hints = Hints {
                        agent: None,
                        hosts: reporting_mta.iter().map(String::as_str).collect(),
                        vendor: reason,
                    };
                    decide(
                        &mut rec,
                        r.status.as_deref(),
                        "",
                        &none,
                        count,
                        false,
                        &hints,
                    );
                    rec
                })
                .collect()
        }
        ses::Notification::Complaint {
            feedback_type,
            recipients,
        } => recipients
            .into_iter()
            .take(max)
            .map(|r| {
                let mut rec = Record::new(Some(r), Kind::Complaint, Reason::Feedback);
                rec.feedback_type = Some(feedback_type.clone());
                rec
            })
            .collect(),
        ses::Notification::Delivery { recipients } => recipients
            .into_iter()
            .take(max)
            .map(|r| Record::new(Some(r), Kind::None, Reason::Delivered))
            .collect(),
    }
}

/// The bounce's own addressee and the original sender: never the failed
/// recipient.
fn sender_addresses(mail: &Mail) -> Vec<String> {
    let mut v = Vec::new();
    for name in [
        "to",
        "from",
        "reply-to",
        "sender",
        "delivered-to",
        "x-original-to",
        "return-path",
    ] {
        if name == "x-original-to" || name == "delivered-to" {
            // Some agents (DragonFly) write the failed recipient here; only
            // exclude it when it equals To.
            continue;
        }
        if let Some(val) = mail.header(name) {
            v.extend(address::find_all(val));
        }
    }
    // The reporting system's postmaster (same domain as the report's
    // Message-ID or From) is a contact address, not a recipient; see
    // `vendors::candidates`.
    for name in ["message-id", "from", "return-path"] {
        if let Some(val) = mail.header(name) {
            for a in address::find_all(val) {
                if let Some((_, d)) = a.split_once('@') {
                    v.push(format!("postmaster@{}", registered_part(d)));
                }
            }
        }
    }
    if let Some(orig) = &mail.original {
        let h = parse_headers(orig);
        for name in ["from", "return-path", "sender", "reply-to"] {
            if let Some(val) = message::header(&h, name) {
                v.extend(address::find_all(val));
            }
        }
    }
    v
}

/// The last two labels of a domain: enough to tell the reporting system's
/// own addresses from a recipient's.
fn registered_part(domain: &str) -> String {
    let labels: Vec<&str> = domain.rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, name, ..] => format!("{name}.{tld}"),
        _ => domain.to_string(),
    }
}

/// Host names an error text names (`host mx1.example.mimecast.com
/// [192.0.2.1] said`, `by gmail-smtp-in.l.google.com.`): dotted names of
/// three labels or more that are not addresses, at most eight.
fn hosts_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let tokens = text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@')));
    for tok in tokens {
        let t = tok.trim_matches(['.', '-']);
        if t.contains('@')
            || t.matches('.').count() < 2
            || t.split('.').any(str::is_empty)
            || !t.bytes().any(|b| b.is_ascii_alphabetic())
        {
            continue;
        }
        let t = t.to_ascii_lowercase();
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() >= 8 {
            break;
        }
    }
    out
}

/// The enhanced status code (RFC 3463) a server wrote right after its reply
/// code in `diag` ("550 5.1.1 ...", "552-5.3.4 ..."), if specific (not X.0.0).
fn server_status(diag: &str) -> Option<String> {
    let reply = dsn::find_reply_code(diag)?;
    diag.match_indices(reply.as_str()).find_map(|(at, _)| {
        let rest = diag[at + 3..].trim_start_matches([' ', '-']);
        let code = dsn::all_statuses(rest).into_iter().next()?;
        (rest.starts_with(code.as_str()) && !code.ends_with(".0.0")).then_some(code)
    })
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The notice of one report, with what is derived from all of it computed
/// once, on first use, however many recipients it names.
struct Notice<'a> {
    text: &'a str,
    folded: OnceCell<String>,
    mentions: OnceCell<vendors::Mentions<'a>>,
}

impl<'a> Notice<'a> {
    fn new(text: &'a str) -> Notice<'a> {
        Notice {
            text,
            folded: OnceCell::new(),
            mentions: OnceCell::new(),
        }
    }

    /// The whole notice folded (`reason::fold`).
    fn folded(&self) -> &str {
        self.folded.get_or_init(|| reason::fold(self.text))
    }

    fn mentions(&self) -> &vendors::Mentions<'a> {
        self.mentions
            .get_or_init(|| vendors::Mentions::new(self.text))
    }
}

/// What is known about one failure when its reason is chosen.
struct Evidence<'a> {
    /// The reason the status code stands for (RFC 3463), if specific.
    status: Option<Reason>,
    /// Every reason whose phrase table the error text matches.
    says: Vec<Reason>,
    /// The SMTP command the server refused, when the notice says.
    command: Option<&'a str>,
    /// Whether the status code is an addressing one (RFC 3463 X.1.x).
    address_status: bool,
    /// Whether the text reports a null MX (RFC 7505): the domain exists and
    /// publishes that it takes no mail.
    null_mx: bool,
}

/// Choose the reason from the status code and the error text.
///
/// First pass, from the most specific reason to the most general: a reason
/// is chosen when the status code names it or the text does, with three
/// reasons needing more than a phrase. `userunknown` needs the status, or a
/// user-unknown phrase said at RCPT TO (in prose notices that do not say the
/// command, the phrase is trusted); after DATA such a phrase is a content
/// filter (`filtered`). A rejected *sender* needs the MAIL FROM stage or a
/// status that says nothing more. A host-unknown status that the text shows
/// to be a DNS failure is not `hostunknown`.
///
/// Second pass: the reasons only text can tell (spam, policy, network, ...),
/// then whatever the status code says.
fn choose(e: &Evidence<'_>) -> Option<Reason> {
    use Reason::*;
    let says = |r: Reason| e.says.contains(&r);
    let st = e.status;
    const FIRST: [Reason; 19] = [
        MailboxFull,
        MesgTooBig,
        ExceedLimit,
        Suspend,
        HasMoved,
        NoRelaying,
        AuthFailure,
        UserUnknown,
        Filtered,
        RequirePtr,
        NotCompliantRfc,
        BadReputation,
        ContentError,
        Rejected,
        HostUnknown,
        SpamDetected,
        Speeding,
        TooManyConn,
        Blocked,
    ];
    let before_data = matches!(e.command, Some("CONN" | "EHLO" | "HELO" | "MAIL" | "RCPT"));
    // The queue lifetime ran out (RFC 3463 X.4.7) and the text says so
    // ("Message could not be delivered for 5 days"): the last attempt's
    // error quoted beside it is history.
    if st == Some(Expired) && says(Expired) {
        return Some(Expired);
    }
    for r in FIRST {
        let hit = match r {
            UserUnknown => {
                if st == Some(UserUnknown) {
                    // X.1.1 is also what servers send for refusals at RCPT
                    // that have nothing to do with the mailbox ("sender
                    // rejected", "too many recipients this hour"); when the
                    // text names another cause and not this one, the text wins.
                    says(UserUnknown) || e.says.is_empty()
                } else {
                    // A user-unknown phrase means what it says at RCPT TO,
                    // from a local delivery agent, or with an addressing
                    // status (RFC 3463 X.1.x, e.g. Microsoft's 5.1.10).
                    // Without the command it stays ambiguous: content
                    // filters answer after DATA with the same words.
                    says(UserUnknown)
                        && (matches!(e.command, Some("RCPT" | "LOCAL")) || e.address_status)
                }
            }
            Filtered => match st {
                Some(Suspend) => false,
                Some(Filtered) => says(UserUnknown) || says(Filtered),
                _ => !before_data && (says(Filtered) || says(UserUnknown)),
            },
            Rejected => {
                st == Some(Rejected)
                    || (says(Rejected)
                        && match e.command {
                            Some("MAIL") => true,
                            Some("DATA") => st != Some(UserUnknown),
                            _ => matches!(st, None | Some(SecurityError) | Some(SystemError)),
                        })
            }
            // A null MX (RFC 7505) answers for a domain that exists.
            HostUnknown if e.null_mx => false,
            HostUnknown => {
                if st == Some(HostUnknown) {
                    !says(NetworkError)
                } else {
                    says(HostUnknown)
                }
            }
            // RFC 3463 5.2.3 "message length exceeds administrative
            // limit" is its own reason, whatever words come with it.
            MesgTooBig => st != Some(ExceedLimit) && (st == Some(r) || says(r)),
            // A content status (X.6.x) says how, not why: spam or policy
            // text is more telling, so only the text counts here and the
            // status is the last resort.
            ContentError => says(r),
            _ => st == Some(r) || says(r),
        };
        if hit {
            return Some(r);
        }
    }
    const SECOND: [Reason; 19] = [
        MailboxFull,
        AuthFailure,
        BadReputation,
        Speeding,
        SpamDetected,
        VirusDetected,
        PolicyViolation,
        NoRelaying,
        SystemError,
        // A null MX (RFC 7505) or "does not accept mail" is the DNS answer
        // itself, more telling than the "DNS error" words around it.
        NotAccept,
        NetworkError,
        Suspend,
        ContentError,
        SystemFull,
        Expired,
        FailedStartTls,
        SecurityError,
        MailerError,
        SyntaxError,
    ];
    SECOND
        .into_iter()
        .find(|r| says(*r))
        .or_else(|| {
            // An X.1.x status the text contradicts (see above) yields to the
            // text's own first reason.
            (st == Some(UserUnknown) && !says(UserUnknown))
                .then(|| e.says.first().copied())
                .flatten()
        })
        .or(st)
}

/// Choose the status code: the DSN's Status field unless it is vaguer than
/// the code the remote server wrote in its reply. Subject 0 (RFC 3463 §3.1,
/// "other or undefined") and the catch-alls 4.4.7 (queue timeout) and 4.7.0
/// give way to a specific code; a code whose class disagrees with the SMTP
/// reply code gives way to one that agrees.
fn prefer_status(
    dsn: Option<&str>,
    diag: &[String],
    about: &[String],
    reply: Option<&str>,
) -> Option<String> {
    let specific = |v: &[String]| {
        v.iter()
            .rev()
            .find(|c| !c.ends_with(".0.0"))
            .or_else(|| v.last())
            .cloned()
    };
    let said = specific(diag).or_else(|| specific(about));
    let Some(dsn) = dsn else {
        return said;
    };
    let Some(said) = said else {
        return Some(dsn.to_string());
    };
    if let Some(r) = reply {
        let rc = &r[..1];
        if !dsn.starts_with(rc) && said.starts_with(rc) {
            return Some(said);
        }
        if dsn.starts_with(rc) && !said.starts_with(rc) {
            return Some(dsn.to_string());
        }
    }
    // 5.1.1 and 5.1.3 are what some MTAs write for any RCPT refusal; a
    // security code from the server itself is more telling.
    if matches!(dsn, "5.1.1" | "5.1.3") && said.starts_with("5.7.") {
        return Some(said);
    }
    let vague = dsn.contains(".0.") || matches!(dsn, "4.4.7" | "4.7.0") || dsn.starts_with("5.3.");
    let protocol = [".5.1", ".5.2", ".5.4", ".5.5"]
        .iter()
        .any(|p| dsn[1..].starts_with(p));
    if (vague || protocol) && !said.ends_with(".0.0") {
        return Some(said);
    }
    Some(dsn.to_string())
}

/// What is known about the mail system behind a report, beyond its text.
struct Hints<'a> {
    /// The known mail system that wrote the notice.
    agent: Option<vendors::Agent>,
    /// Remote and reporting MTA host names, in that order.
    hosts: Vec<&'a str>,
    /// The reason the reporting system filed this recipient under
    /// (PowerMTA's bounce category, Amazon SES's bounce subtype).
    vendor: Option<Reason>,
}

/// Settle status, reply code, command, reason and kind for one record.
/// `about` is the notice's prose for this recipient; `notice` the whole
/// notice, used for the reason only when it speaks of one recipient.
fn decide(
    rec: &mut Record,
    dsn_status: Option<&str>,
    about: &str,
    notice: &Notice<'_>,
    recipients: usize,
    x_unix: bool,
    hints: &Hints<'_>,
) {
    let diag = rec.diagnostic.clone().unwrap_or_default();
    let text = format!("{diag}\n{about}");
    let folded = reason::join_reply_lines(&reason::fold(&text));

    let reply = dsn::find_reply_code(&text);
    let said = [dsn::all_statuses(&diag), dsn::all_statuses(about)];
    let status = prefer_status(dsn_status, &said[0], &said[1], reply.as_deref());
    // The server itself wrote "other or undefined status" (RFC 3463 §3.1,
    // X.0.0): it chose not to call the failure an addressing one.
    let undefined_said = said
        .iter()
        .flatten()
        .next()
        .is_some_and(|c| c.ends_with(".0.0"))
        && said.iter().flatten().all(|c| c.ends_with(".0.0"));
    rec.reply_code = reply;
    rec.command = vendors::command(&folded)
        .or_else(|| {
            if recipients == 1 {
                vendors::command(notice.folded())
            } else {
                None
            }
        })
        .map(str::to_string);
    rec.status = status.clone();

    let action = rec.action.as_deref().unwrap_or("");
    if matches!(action, "delivered" | "relayed" | "expanded")
        || status.as_deref().is_some_and(|s| s.starts_with("2."))
    {
        rec.kind = Kind::None;
        rec.reason = Reason::Delivered;
        return;
    }

    // The reason's status evidence is the remote server's own code where
    // it wrote one right after its reply code ("552 5.3.4 Message size
    // exceeds ..."): a reporting MTA that derives its Status field from the
    // reply code alone (Sendmail turns any 552 into 5.2.2, Exim writes
    // 5.0.0) says less than the server did. The record keeps the chosen
    // Status; only the reason is read from the server's code.
    let server_code = server_status(&diag).filter(|c| {
        status
            .as_deref()
            .is_some_and(|s| s.as_bytes()[0] == c.as_bytes()[0] && s != c)
    });
    let from_status = server_code
        .as_deref()
        .or(status.as_deref())
        .and_then(reason::from_status);
    // The server's own words first (RFC 3464 Diagnostic-Code, or the prose
    // block of a non-DSN notice); the report's prose about the recipient
    // only when they say nothing, since MTAs add their own generic gloss
    // ("550 5.1.1 User unknown" under a 5.7.1 refusal); the whole notice
    // when it is about one recipient.
    let mut says = reason::matches(&reason::join_reply_lines(&reason::fold(&diag)));
    if says.is_empty() {
        says = reason::matches(&folded);
    }
    if says.is_empty() && recipients == 1 {
        says = reason::matches(notice.folded());
    }
    // An account switched off in words no table lists is a suspension, not
    // an unknown user (the X.1.1 such servers often send with it).
    if !says.contains(&Reason::Suspend)
        && !says.contains(&Reason::UserUnknown)
        && reason::says_suspended(&folded)
    {
        says.insert(0, Reason::Suspend);
    }
    let evidence = Evidence {
        status: from_status,
        says,
        command: rec.command.as_deref(),
        address_status: status.as_deref().is_some_and(|s| s[1..].starts_with(".1.")),
        null_mx: [
            "null mx",
            "nullmx",
            "doesn't receive email",
            "does not receive email",
        ]
        .iter()
        .any(|p| folded.contains(p)),
    };
    // What the reporting system itself says it means comes before the
    // generic reading: its own category for the failure, a known template's wording, a
    // provider's documented reply text.
    let verdict = hints
        .vendor
        .map(|reason| vendors::Verdict {
            reason,
            permanent: None,
        })
        .or_else(|| {
            hints
                .agent
                .and_then(|a| vendors::agent_reason(a, &folded, notice.folded()))
        })
        .or_else(|| {
            let facts = providers::Facts {
                hosts: &hints.hosts,
                recipient: rec.recipient.as_deref().unwrap_or(""),
                text: &folded,
                status: status.as_deref(),
                reply_code: rec.reply_code.as_deref(),
                command: rec.command.as_deref(),
            };
            providers::reason(&facts).map(|reason| vendors::Verdict {
                reason,
                permanent: None,
            })
        });
    let chosen = vendors::coded_reason(&folded)
        .or(verdict.map(|v| v.reason))
        .or_else(|| choose(&evidence));
    let mut why = match chosen {
        Some(r) => r,
        None => {
            let code = rec.reply_code.as_deref().unwrap_or("");
            let class = status
                .as_deref()
                .or(rec.reply_code.as_deref())
                .and_then(|c| c.bytes().next());
            if x_unix {
                Reason::MailerError
            } else if matches!(code, "500" | "501" | "502" | "503" | "504") {
                // RFC 5321 §4.2.2: 50x are syntax and sequence errors.
                Reason::SyntaxError
            } else if action == "delayed" {
                Reason::Expired
            } else if class == Some(b'4') {
                // A report of failure whose error is temporary (RFC 3463
                // class 4, or a 4xx reply): the MTA gave up retrying, and
                // the queue lifetime is why it stopped.
                Reason::Expired
            } else if class == Some(b'5')
                && rec.command.as_deref() == Some("RCPT")
                && !undefined_said
            {
                // A permanent refusal of the recipient (RFC 5321 §3.3: RCPT
                // names the mailbox) in words no table knows: the mailbox.
                // A content filter cannot answer at RCPT; it has not seen
                // the message yet.
                Reason::UserUnknown
            } else if !diag.is_empty() || !about.trim().is_empty() {
                Reason::OnHold
            } else {
                Reason::Undefined
            }
        }
    };
    if why == Reason::Undefined && action == "delayed" {
        why = Reason::Expired;
    }
    // A local delivery agent's failure (Diagnostic-Code type X-Unix, RFC
    // 3464 §2.3.6) is the mailer's, whatever status it was given.
    if x_unix && reason::text_says(&folded, Reason::MailerError) {
        why = Reason::MailerError;
    }
    let permanent = verdict.and_then(|v| v.permanent).unwrap_or_else(|| {
        match (status.as_deref(), rec.reply_code.as_deref()) {
            (Some(s), _) => s.starts_with('5'),
            (None, Some(c)) => c.starts_with('5'),
            (None, None) => action != "delayed",
        }
    });
    // A domain that "does not exist" for now is a DNS failure to retry.
    if why == Reason::HostUnknown && !permanent {
        why = Reason::NetworkError;
    }
    rec.reason = why;

    rec.kind = if why.is_hard(permanent) {
        Kind::Hard
    } else {
        Kind::Soft
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_code_follows_its_reply_code() {
        let s = |t: &str| server_status(t);
        assert_eq!(
            s("552 5.3.4 Message size exceeds").as_deref(),
            Some("5.3.4")
        );
        assert_eq!(
            s("550-5.2.1 The account is disabled").as_deref(),
            Some("5.2.1")
        );
        // The first 550 is part of an address; the reply's is the one.
        assert_eq!(
            s("<u550x@a.example> 550 5.1.1 gone").as_deref(),
            Some("5.1.1")
        );
        // No code after the reply code, or only "other or undefined".
        assert_eq!(s("550 No such user here"), None);
        assert_eq!(s("550 5.0.0 rejected"), None);
        assert_eq!(s("mailbox is full: retry timeout exceeded"), None);
    }

    const POSTFIX_DSN: &str = "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\nTo: bounces+s42@sender.example\nDelivered-To: bounces+s42@sender.example\nSubject: Undelivered Mail Returned to Sender\nMessage-Id: <r1@mx.example.org>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n<nobody@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n    <nobody@example.org>: Recipient address rejected: User unknown in local\n    recipient table (in reply to RCPT TO command)\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; nobody@example.org\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.org\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\n    rejected: User unknown in local recipient table\n\n--B\nContent-Type: message/rfc822\n\nFrom: news@sender.example\nTo: nobody@example.org\nMessage-ID: <orig1@sender.example>\nX-Cartero-Send: 42\nSubject: hi\n\nhello\n--B--\n";

    #[test]
    fn postfix_dsn_is_a_hard_userunknown() {
        let c = classify(POSTFIX_DSN.as_bytes());
        assert_eq!(c.records.len(), 1);
        let r = &c.records[0];
        assert_eq!(r.recipient.as_deref(), Some("nobody@example.org"));
        assert_eq!(r.kind, Kind::Hard);
        assert_eq!(r.reason, Reason::UserUnknown);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(r.command.as_deref(), Some("RCPT"));
        assert_eq!(c.verp_token.as_deref(), Some("s42"));
        assert_eq!(c.message_id.as_deref(), Some("r1@mx.example.org"));
        assert_eq!(
            c.original_message_id.as_deref(),
            Some("orig1@sender.example")
        );
        assert!(
            c.original_headers
                .iter()
                .any(|(n, v)| n == "X-Cartero-Send" && v == "42")
        );
    }

    #[test]
    fn line_endings_do_not_change_the_result() {
        let lf = classify(POSTFIX_DSN.as_bytes());
        let crlf = classify(POSTFIX_DSN.replace('\n', "\r\n").as_bytes());
        let cr = classify(POSTFIX_DSN.replace('\n', "\r").as_bytes());
        assert_eq!(lf, crlf);
        assert_eq!(lf, cr);
    }

    #[test]
    fn delayed_mailbox_full_is_soft() {
        let raw = POSTFIX_DSN
            .replace("Status: 5.1.1", "Status: 4.2.2")
            .replace("Action: failed", "Action: delayed")
            .replace("User unknown in local", "Mailbox full for")
            .replace("550 5.1.1", "452 4.2.2");
        let c = classify(raw.as_bytes());
        assert_eq!(c.records[0].kind, Kind::Soft);
        assert_eq!(c.records[0].reason, Reason::MailboxFull);
    }

    #[test]
    fn powermta_category_names_the_reason() {
        let raw = POSTFIX_DSN
            .replace("Status: 5.1.1", "Status: 5.0.0 (undefined status)\nX-PowerMTA-BounceCategory: bad-mailbox")
            .replace("Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\n    rejected: User unknown in local recipient table", "Diagnostic-Code: smtp;554 delivery error: dd Sorry, this account is not here")
            .replace("<nobody@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n    <nobody@example.org>: Recipient address rejected: User unknown in local\n    recipient table (in reply to RCPT TO command)", "<nobody@example.org> delivery failed; will not continue trying");
        let c = classify(raw.as_bytes());
        assert_eq!(c.records[0].reason, Reason::UserUnknown);
        assert_eq!(c.records[0].kind, Kind::Hard);
    }

    #[test]
    fn opensmtpd_no_mx_is_final_though_delayed() {
        let raw = "From: Mailer Daemon <MAILER-DAEMON@mx.example.jp>\nTo: me@example.jp\nSubject: Delivery status notification: delayed\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n    Hi!\n\n    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\n\n    A message is delayed for more than 4 hours for the following\n    list of recipients:\n\nyou@example.org: No MX found for domain\n\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.jp\n\nFinal-Recipient: rfc822; you@example.org\nAction: delayed\nStatus: 4.0.0\n\n--B--\n";
        let c = classify(raw.as_bytes());
        assert_eq!(c.records[0].recipient.as_deref(), Some("you@example.org"));
        assert_eq!(c.records[0].reason, Reason::NotAccept);
        assert_eq!(c.records[0].kind, Kind::Hard);
    }

    #[test]
    fn complaint_naming_nobody_gets_the_placeholder() {
        let raw = "From: fbl@isp.example\nTo: fbl@sender.example\nSubject: report\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nabuse report\n\n--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\n\n--b\nContent-Type: message/rfc822\n\nFrom: news@sender.example\nTo: \"undisclosed\"\nSubject: hi\n\nbody\n--b--\n";
        let c = classify(raw.as_bytes());
        let r = &c.records[0];
        assert_eq!(r.kind, Kind::Complaint);
        assert_eq!(r.recipient.as_deref(), Some(UNDISCLOSED_RECIPIENT));
        assert_eq!(r.named_recipient(), None);
    }

    /// POSTFIX_DSN with another status and server reply.
    fn postfix_with(status: &str, action: &str, diag: &str) -> Classification {
        let raw = POSTFIX_DSN
            .replace("Status: 5.1.1", &format!("Status: {status}"))
            .replace("Action: failed", &format!("Action: {action}"))
            .replace(
                "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\n    rejected: User unknown in local recipient table",
                &format!("Diagnostic-Code: smtp; {diag}"),
            )
            .replace(
                "<nobody@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n    <nobody@example.org>: Recipient address rejected: User unknown in local\n    recipient table (in reply to RCPT TO command)",
                "<nobody@example.org>: see below",
            );
        classify(raw.as_bytes())
    }

    #[test]
    fn null_mx_is_notaccept_not_a_missing_host() {
        let c = postfix_with(
            "4.0.0",
            "failed",
            "DNS Error: DNS type 'mx' lookup of example.org responded with code NOERROR The domain example.org doesn't receive email according to the administrator: returned Null MX",
        );
        assert_eq!(c.records[0].reason, Reason::NotAccept);
        assert_eq!(c.records[0].kind, Kind::Soft);
    }

    #[test]
    fn queue_lifetime_beats_the_last_attempt_error() {
        let c = postfix_with(
            "4.4.7",
            "failed",
            "Deferred: Connection refused by mx.example.org. Message could not be delivered for 5 days",
        );
        assert_eq!(c.records[0].reason, Reason::Expired);
    }

    #[test]
    fn multiline_reply_is_read_as_one_sentence() {
        // Google's text cut by its own continuation prefixes.
        let c = postfix_with(
            "5.2.1",
            "failed",
            "550-5.2.1 The user you are trying to contact is receiving mail at a rate that\n    550-5.2.1 prevents additional messages from being delivered.\n    550 5.2.1 https://support.google.com/mail/?p=ReceivingRatePerm - gsmtp",
        );
        assert_eq!(c.records[0].reason, Reason::Speeding);
        assert_eq!(c.records[0].kind, Kind::Soft);
    }

    #[test]
    fn provider_tables_apply_through_the_remote_mta() {
        let raw = POSTFIX_DSN
            .replace("Remote-MTA: dns; mx.example.org", "Remote-MTA: dns; smtp.secureserver.net")
            .replace("Status: 5.1.1", "Status: 5.0.0")
            .replace(
                "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\n    rejected: User unknown in local recipient table",
                "Diagnostic-Code: smtp; 550 192.0.2.1 has sent to too many recipients this hour. IB607",
            );
        let c = classify(raw.as_bytes());
        assert_eq!(c.records[0].reason, Reason::Speeding);
    }

    #[test]
    fn ses_notification_names_only_its_bounced_recipients() {
        let raw = "From: no-reply@sns.amazonaws.com\nTo: me@sender.example\nSubject: AWS Notification Message\n\n{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\",\"bounceSubType\":\"General\",\"bouncedRecipients\":[{\"emailAddress\":\"gone@example.org\",\"action\":\"failed\",\"status\":\"5.1.1\",\"diagnosticCode\":\"smtp; 550 5.1.1 user unknown\"}]},\"mail\":{\"source\":\"me@sender.example\",\"sourceArn\":\"arn:aws:ses:us-west-2:1:identity/me@sender.example\"}}\n\n--\nTo unsubscribe visit https://sns.example/?Endpoint=me@sender.example\n";
        let c = classify(raw.as_bytes());
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].recipient.as_deref(), Some("gone@example.org"));
        assert_eq!(c.records[0].kind, Kind::Hard);
        assert_eq!(c.records[0].reason, Reason::UserUnknown);
    }

    #[test]
    fn plain_mail_gives_one_none_record() {
        let c = classify(b"From: a@b.example\nTo: c@d.example\nSubject: lunch\n\nsee you\n");
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].kind, Kind::None);
        assert_eq!(c.records[0].recipient, None);
    }

    /// A Postfix-style report naming `n` recipients, each unknown.
    fn report_naming(n: usize) -> String {
        let mut prose = String::new();
        let mut groups = String::new();
        for i in 0..n {
            prose.push_str(&format!(
                "<u{i}@example.org>: host mx.example.org said: 550 5.1.1 User unknown (in reply to RCPT TO command)\n\n"
            ));
            groups.push_str(&format!(
                "Final-Recipient: rfc822; u{i}@example.org\nAction: failed\nStatus: 5.1.1\n\n"
            ));
        }
        POSTFIX_DSN
            .replace(
                "<nobody@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n    <nobody@example.org>: Recipient address rejected: User unknown in local\n    recipient table (in reply to RCPT TO command)\n",
                &prose,
            )
            .replace(
                "Final-Recipient: rfc822; nobody@example.org\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.org\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\n    rejected: User unknown in local recipient table\n",
                &groups,
            )
    }

    #[test]
    fn an_unknown_permanent_refusal_at_rcpt_is_the_mailbox() {
        // No table knows the words and there is no enhanced code: at RCPT
        // TO a 5xx can only be about the recipient (RFC 5321 §3.3).
        let c = postfix_with(
            "5.0.0",
            "failed",
            "550 Kein Postfach mit diesem Namen (in reply to RCPT TO command)",
        );
        assert_eq!(c.records[0].command.as_deref(), Some("RCPT"));
        assert_eq!(c.records[0].reason, Reason::UserUnknown);
        assert_eq!(c.records[0].kind, Kind::Hard);
        // The same words after DATA are not evidence about the mailbox.
        let c = postfix_with(
            "5.0.0",
            "failed",
            "550 Kein Postfach mit diesem Namen (in reply to end of DATA command)",
        );
        assert_eq!(c.records[0].kind, Kind::Soft);
        // Nor when the server itself said "undefined" (X.0.0).
        let c = postfix_with(
            "5.0.0",
            "failed",
            "550 5.0.0 Kein Postfach mit diesem Namen (in reply to RCPT TO command)",
        );
        assert_eq!(c.records[0].reason, Reason::OnHold);
    }

    #[test]
    fn a_temporary_error_in_a_final_report_is_expiry() {
        let c = postfix_with("4.0.0", "failed", "451 Bitte spaeter nochmal");
        assert_eq!(c.records[0].reason, Reason::Expired);
        assert_eq!(c.records[0].kind, Kind::Soft);
    }

    #[test]
    fn mta_templates_name_the_refused_command() {
        // qmail-remote and Gmail word the step their own way.
        assert_eq!(
            vendors::command(&reason::fold(
                "192.0.2.1 does not like recipient. Remote host said: 550 sorry"
            )),
            Some("RCPT")
        );
        assert_eq!(
            vendors::command(&reason::fold(
                "550 550 Unknown user a@example.org (state 18)."
            )),
            Some("DATA")
        );
        assert_eq!(
            vendors::command(&reason::fold("550 550 <a@example.org>: nope (state 14).")),
            Some("RCPT")
        );
    }

    #[test]
    fn a_switched_off_account_is_a_suspension_whatever_the_code() {
        let c = postfix_with(
            "5.1.1",
            "failed",
            "550 5.1.1 <nobody@example.org>: this account has been deactivated",
        );
        assert_eq!(c.records[0].reason, Reason::Suspend);
        assert_eq!(c.records[0].kind, Kind::Soft);
    }

    #[test]
    fn fml_notices_name_the_refused_poster() {
        let raw = "From: elena-admin@ml.example.jp\nTo: neko@example.org\nSubject: NOT MEMBER article from neko@example.org (elena ML)\nMessage-ID: <200601010000.FMLAAA01@ml.example.jp>\nX-MLServer: fml [fml 4.0.3 release (20040609)]\nX-ML-Name: elena\n\nYou are not a member of this mailing list <neko@example.org>.\n\nIf you know the general guide of this list, please send mail with\nthe mail body\n\tguide\nto the address\n\t<elena-ctl@ml.example.jp>\n\nOriginal mail as follows:\n\nFrom: neko@example.org\nTo: elena@ml.example.jp\nSubject: hi\n\nhello\n";
        let c = classify(raw.as_bytes());
        assert_eq!(c.records.len(), 1, "{:?}", c.records);
        assert_eq!(c.records[0].recipient.as_deref(), Some("neko@example.org"));
        assert_eq!(c.records[0].reason, Reason::Rejected);
        assert_eq!(c.records[0].kind, Kind::Soft);
    }

    #[test]
    fn a_list_managers_notice_about_a_post_names_nobody() {
        // mlmmj's refusal of a post by a non-subscriber, as it really sent
        // it: no recipient of ours failed, so no record, and neither a null
        // return path, an Auto-Submitted header nor a failure subject makes
        // it an automatic reply or a bounce of the list or its owner.
        let real = include_str!("../../../tests/fixtures/bounces/mlmmj-real-not-subscribed.eml");
        let variants = [
            real.to_string(),
            format!("Return-Path: <>\nAuto-Submitted: auto-replied\n{real}"),
            real.replace(
                "Subject: =?utf-8?q?Post_to_team=40lists.example.org_denied:_weekly_news?=",
                "Subject: Undelivered Mail Returned to Sender",
            ),
        ];
        for v in &variants {
            let c = classify(v.as_bytes());
            assert!(
                c.records
                    .iter()
                    .all(|r| r.kind == Kind::None && r.recipient.is_none()),
                "{:?}",
                c.records
            );
        }
        // The same notice about a post to another list is not the list's
        // own: its prose is read as before.
        let other = real.replace("To: team@lists.example.org", "To: other@lists.example.org");
        assert!(!vendors::is_list_notice(&Mail::parse(other.as_bytes())));
        assert!(vendors::is_list_notice(&Mail::parse(real.as_bytes())));
    }

    #[test]
    fn a_prose_notice_names_the_provider_through_its_hosts() {
        // No Remote-MTA field and no command: the Mimecast host in the text
        // brings Mimecast's documented meaning of its words.
        let raw = "From: postmaster@outlook.example\nTo: me@sender.example\nSubject: Undeliverable: hi\n\nDelivery has failed to these recipients or groups:\n\nana@example.org\nRemote Server at eu-smtp-inbound-1.mimecast.com returned '550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550'\n";
        let c = classify(raw.as_bytes());
        assert_eq!(c.records[0].recipient.as_deref(), Some("ana@example.org"));
        assert_eq!(c.records[0].reason, Reason::UserUnknown);
        assert_eq!(c.records[0].kind, Kind::Hard);
        assert_eq!(
            hosts_in("host mx1.example.org[192.0.2.1] said: a@b.example.org"),
            vec!["mx1.example.org".to_string()]
        );
    }

    #[test]
    fn recipients_per_report_are_bounded() {
        let raw = report_naming(50);
        let all = classify(raw.as_bytes());
        assert_eq!(all.records.len(), 50);
        assert!(!all.cut.recipients);
        assert!(all.records.iter().all(|r| r.kind == Kind::Hard));
        let limits = Limits {
            max_recipients: 10,
            ..Limits::DEFAULT
        };
        let some = classify_with(raw.as_bytes(), &limits);
        assert_eq!(some.records.len(), 10);
        assert!(some.cut.recipients);
        assert_eq!(some.records[..], all.records[..10]);
        // Exactly at the limit is not cut.
        let exact = Limits {
            max_recipients: 50,
            ..Limits::DEFAULT
        };
        assert!(!classify_with(raw.as_bytes(), &exact).cut.recipients);
        // The same bound holds for a notice with no DSN part.
        let prose = format!(
            "From: MAILER-DAEMON@mx.example.org\nTo: me@sender.example\nSubject: Mail delivery failed\n\nThis message was created automatically by mail delivery software.\n\n{}",
            (0..50)
                .map(|i| format!("  u{i}@example.org\n    550 5.1.1 User unknown\n\n"))
                .collect::<String>()
        );
        let some = classify_with(prose.as_bytes(), &limits);
        assert_eq!(some.records.len(), 10);
        assert!(some.cut.recipients);
    }

    #[test]
    fn an_oversized_report_is_read_head_and_tail() {
        // The delivery-status part after a 3 MB returned message, as Office
        // 365 orders its parts: the tail keeps it.
        let raw = format!(
            "From: postmaster@outlook.example\nTo: me@sender.example\nSubject: Undeliverable: hi\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nDelivery has failed to these recipients or groups.\n\n--B\nContent-Type: message/rfc822\n\nFrom: me@sender.example\nTo: gone@example.org\nSubject: hi\n\n{}\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; outlook.example\n\nFinal-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 RESOLVER.ADR.RecipNotFound; not found\n\n--B--\n",
            "filler text of the returned message\n".repeat(90_000)
        );
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::DEFAULT
        };
        let c = classify_with(raw.as_bytes(), &limits);
        assert!(c.cut.bytes > 2_000_000, "{:?}", c.cut);
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].recipient.as_deref(), Some("gone@example.org"));
        assert_eq!(c.records[0].kind, Kind::Hard);
        // Whole, it reads the same.
        let whole = classify_with(raw.as_bytes(), &Limits::NONE);
        assert_eq!(whole.cut, Cut::default());
        assert_eq!(whole.records, c.records);
    }

    #[test]
    fn a_huge_hostile_message_finishes_within_the_limits() {
        // 24 MB of address-like tokens after a bounce's opening words: every
        // token is a candidate recipient. Not timed; it must end, within the
        // recipient bound, having examined at most `max_bytes`.
        let mut raw = String::from(
            "From: MAILER-DAEMON@mx.example.org\nTo: me@sender.example\nSubject: Mail delivery failed\n\nYour message could not be delivered.\n",
        );
        let mut n = 0;
        while raw.len() < 24_000_000 {
            raw.push_str(&format!("a{n}@b{n}.example 550 a{n}@b{n}.example\n"));
            n += 1;
        }
        let c = classify(raw.as_bytes());
        assert!(c.records.len() <= Limits::DEFAULT.max_recipients);
        assert!(c.cut.recipients);
        assert!(c.cut.bytes >= raw.len() - Limits::DEFAULT.max_bytes);
    }

    #[test]
    fn empty_and_garbage_input_give_none() {
        assert_eq!(classify(b"").records[0].kind, Kind::None);
        assert_eq!(
            classify(&[0xff, 0xfe, 0x00, b'\r']).records[0].kind,
            Kind::None
        );
    }
}
