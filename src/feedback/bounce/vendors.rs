//! Bounces that are not RFC 3464 reports: qmail ("Hi. This is the
//! qmail-send program"), Exim ("This message was created automatically by
//! mail delivery software"), Exchange ("did not reach the following
//! recipient(s)"), Gmail ("Delivery to the following recipient failed"),
//! Sendmail v5 transcripts, Yahoo, IMail, DragonFly and others.
//!
//! They all put each failed address on a line of the notice and the error
//! text on that line or the lines under it, before the returned message. So
//! one reader serves them: find the addresses in the notice that are not the
//! sender's or a mail system's, and take the lines from each address to the
//! next as its error text. Per-MTA knowledge is kept to the markers that say
//! a message is a bounce at all, and to vendor error codes (`coded_reason`).

use std::collections::{HashMap, HashSet};

use super::address;
use super::message::{self, Mail};
use super::reason::Reason;

/// A failed address and the text the notice gives for it.
#[derive(Debug, Clone)]
pub struct Found {
    pub recipient: String,
    pub text: String,
}

/// Phrases that only bounce notices use (the opening lines of each MTA's
/// template), lower-cased.
const BOUNCE_MARKERS: &[&str] = &[
    "this is the qmail-send program",
    "created automatically by mail delivery software",
    "could not be delivered to one or more",
    "delivery to the following recipient",
    "did not reach the following recipient",
    "delivery has failed to these recipients",
    "your message could not be delivered",
    "your message was not delivered",
    "message could not be delivered",
    "couldn't be delivered",
    "could not be delivered",
    "was not delivered",
    "wasn't delivered",
    "undeliverable",
    "undelivered mail",
    "unable to deliver",
    "failed to deliver",
    "delivery failed",
    "delivery failure",
    "delivery has failed",
    "permanent error",
    "permanent failure",
    "temporary failure",
    "transcript of session follows",
    "the following addresses had permanent fatal errors",
    "returned mail",
    "mail delivery failed",
    "i'm afraid i wasn't able to deliver",
    "there was an error delivering your mail",
    "sorry, we were unable to deliver",
    "error delivering",
    "original message follows",
    "could not deliver",
    "the error that the other server returned",
    "delivery status notification",
    "failure notice",
    "mail system error",
    "non-delivery",
    "nondeliverable",
    "bounce",
    "rejected",
    "user unknown",
];

/// Whether the message presents itself as a delivery failure: a mail
/// system sender, a failure subject, or the opening words of an MTA's
/// bounce template.
pub fn looks_like_bounce(mail: &Mail) -> bool {
    // RFC 3834 §4 sends automatic replies to the return path with a null
    // sender too, so an empty Return-Path alone is not enough.
    presents_as_bounce(mail) || mail.header("return-path").is_some_and(|v| v.trim() == "<>")
}

/// The message's own words say it is a delivery failure: a mail-system
/// sender, a failure subject, `X-Failed-Recipients`, or a template's opening.
pub fn presents_as_bounce(mail: &Mail) -> bool {
    let from = mail.header("from").unwrap_or("").to_ascii_lowercase();
    let subject = mail.subject.to_lowercase();
    if from.contains("mailer-daemon")
        || from.contains("postmaster")
        || from.contains("post_master")
        || from.contains("mail delivery")
        || from.contains("mailer_daemon")
        || mail.header("x-failed-recipients").is_some()
        || is_fml_admin(mail)
    {
        return true;
    }
    let subject_words = [
        "undeliver",
        "delivery",
        "returned",
        "failure",
        "failed",
        "not delivered",
        "bounce",
        "rejected",
        "could not",
        "error",
        "mail system",
        "non remis",
        "nicht zustellbar",
        "不達",
        "エラー",
    ];
    if subject_words.iter().any(|w| subject.contains(w)) {
        return true;
    }
    let notice = mail.notice.to_lowercase();
    BOUNCE_MARKERS.iter().any(|m| notice.contains(m))
}

/// Header-style lines in a notice whose addresses are never the failed
/// recipient: message identifiers and the sender's own fields.
fn is_id_line(line: &str) -> bool {
    let l = line.trim_start().to_ascii_lowercase();
    [
        "message-id:",
        "in-reply-to:",
        "references:",
        "received:",
        "return-path:",
        "from:",
        "to:",
        "cc:",
        "bcc:",
        "subject:",
        "date:",
        "sender:",
        "reply-to:",
        "dkim-signature:",
        "x-",
        "id <",
        "(envelope-from",
        "envelope-from",
        "reporting-mta:",
        "x-postfix-sender:",
        "errors-to:",
        "list-",
        "resent-",
    ]
    .iter()
    .any(|p| l.starts_with(p))
        || l.contains("message-id")
        || l.contains("http://")
        || l.contains("https://")
}

/// Lines that point the reader at a help address ("For further assistance,
/// please contact <support@...>"), not at a failed recipient.
fn is_help_line(line: &str) -> bool {
    let l = line.to_lowercase();
    [
        "contact",
        "assistance",
        "send mail to",
        "questions",
        "helpdesk",
        "help desk",
        // Japanese templates (OCN and others): "<support@...> へご連絡ください".
        "ご連絡",
        "連絡先",
        "問い合わせ",
    ]
    .iter()
    .any(|w| l.contains(w))
}

/// A line that continues a Japanese "please contact <address>" sentence:
/// it starts with the particle that follows the address.
fn is_help_continuation(line: &str) -> bool {
    let t = line.trim_start();
    [
        "へご連絡",
        "までご連絡",
        "にご連絡",
        "へお問い合わせ",
        "までお問い合わせ",
        "にお問い合わせ",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// `postmaster@` of a domain the exclusions name as the reporter's own.
fn is_own_postmaster(addr: &str, exclude: &[String]) -> bool {
    let Some(domain) = addr.strip_prefix("postmaster@") else {
        return false;
    };
    exclude.iter().any(|e| {
        e.strip_prefix("postmaster@")
            .is_some_and(|d| domain == d || domain.ends_with(&format!(".{d}")))
    })
}

fn candidates(line: &str, exclude: &[String]) -> Vec<String> {
    if is_id_line(line) || is_help_line(line) {
        return Vec::new();
    }
    address::mailboxes(line)
        .into_iter()
        .filter(|a| {
            !exclude.contains(a) && !address::is_system(a) && !is_own_postmaster(a, exclude)
        })
        .collect()
}

/// Most text kept for one recipient's error (a block of the notice, or the
/// lines that mention it): real errors are a few lines; a crafted notice
/// must not make every recipient carry a copy of the whole text.
pub const MAX_TEXT: usize = 8 * 1024;

/// Append a line to a recipient's text while it is under `MAX_TEXT`.
fn push_line(text: &mut String, line: &str) {
    if text.len() >= MAX_TEXT {
        return;
    }
    if !text.is_empty() {
        text.push('\n');
    }
    let room = MAX_TEXT - text.len();
    let mut end = line.len().min(room);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    text.push_str(&line[..end]);
}

/// The failed addresses of a notice with their error text, at most `max`
/// of them. `exclude` holds the sender's addresses (the bounce's To, the
/// original From).
pub fn scan(notice: &str, exclude: &[String], max: usize) -> Vec<Found> {
    let lines: Vec<&str> = notice.lines().collect();
    let mut found: Vec<Found> = Vec::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut i = 0;
    // Lines before this one belong to an earlier block.
    let mut consumed = 0;
    while i < lines.len() && found.len() < max {
        // A Japanese help sentence may wrap right after the address, with
        // the "contact" particle starting the next line.
        let help_follows = lines.get(i + 1).is_some_and(|n| is_help_continuation(n));
        let cands = if help_follows {
            Vec::new()
        } else {
            candidates(lines[i], exclude)
        };
        let fresh: Vec<String> = cands.into_iter().filter(|a| !known.contains(a)).collect();
        if fresh.is_empty() {
            i += 1;
            continue;
        }
        // The block runs to the next line naming a different address, or to
        // two blank lines in a row.
        let mut text = String::new();
        if is_sendmail_error(lines[i]) {
            // A Sendmail transcript gives the server's reply (`<<<`) to the
            // command it sent (`>>>`) above the error line that names the
            // recipients it cost: that reply is their error.
            let mut k = i;
            while k > consumed
                && is_transcript_line(lines[k - 1])
                && candidates(lines[k - 1], exclude)
                    .iter()
                    .all(|a| fresh.contains(a))
            {
                k -= 1;
            }
            for l in &lines[k..i] {
                push_line(&mut text, l);
            }
        }
        push_line(&mut text, lines[i]);
        let mut j = i + 1;
        let mut blanks = 0;
        while j < lines.len() && j < i + 20 {
            let l = lines[j];
            if l.trim().is_empty() {
                blanks += 1;
                if blanks >= 2 {
                    break;
                }
                j += 1;
                continue;
            }
            let next = candidates(l, exclude);
            if next
                .iter()
                .any(|a| !fresh.contains(a) && !known.contains(a))
            {
                break;
            }
            // Each Sendmail error line (`550 host (mailer)... Host unknown`)
            // is an error of its own; one that names none of this block's
            // addresses is not theirs.
            if is_sendmail_error(l) && !address::find_all(l).iter().any(|a| fresh.contains(a)) {
                break;
            }
            blanks = 0;
            push_line(&mut text, l);
            j += 1;
        }
        for a in fresh {
            if found.len() >= max {
                break;
            }
            known.insert(a.clone());
            found.push(Found {
                recipient: a,
                text: text.clone(),
            });
        }
        i = j.max(i + 1);
        consumed = i;
    }
    found
}

/// The notices of fml (fml.org), the Japanese mailing-list manager, about
/// a post it refused or a loop it stopped: sent from the list's `-admin`
/// address with an `X-MLServer: fml` header, they name the address
/// concerned in angle brackets ("You are not a member of this mailing list
/// <a@example.org>."), which is the poster, so the original's sender is not
/// excluded here. The subject is added to each text: fml often states the
/// error only there.
pub fn fml_notice(mail: &Mail, max: usize) -> Option<Vec<Found>> {
    if !is_fml_admin(mail) {
        return None;
    }
    // The list's own addresses (`-ctl`, `-admin`) share the domain of the
    // notice's sender; the poster's is elsewhere.
    let list_domain = mail
        .header("from")
        .and_then(address::first_in)
        .and_then(|a| a.split_once('@').map(|(_, d)| d.to_string()))
        .unwrap_or_default();
    let mut found: Vec<Found> = Vec::new();
    for line in mail.notice.lines() {
        if found.len() >= max {
            break;
        }
        let (Some(p1), Some(p2)) = (line.find('<'), line.rfind('>')) else {
            continue;
        };
        if p1 >= p2 {
            continue;
        }
        let Some(a) = address::first_in(&line[p1 + 1..p2]) else {
            continue;
        };
        if address::is_system(&a)
            || a.ends_with(&format!("@{list_domain}"))
            || found.iter().any(|f| f.recipient == a)
        {
            continue;
        }
        found.push(Found {
            recipient: a,
            text: format!("{line}\n{}", mail.subject),
        });
    }
    (!found.is_empty()).then_some(found)
}

/// A mailing-list manager's own notice about a post, not a delivery
/// report: it comes from the list's administrative address (`L+owner`,
/// `L-owner`, `owner-L`, `L-request`, `L-admin`, `L-bounces`, `L+bounces-*`:
/// mlmmj's as seen in a real run, the others as Mailman, Majordomo and fml
/// document theirs) and returns
/// a message that was addressed to the list `L` itself, at the same domain.
/// A bounce relayed by a list is a DSN and never reaches this test.
pub fn is_list_notice(mail: &Mail) -> bool {
    let Some(from) = mail.header("from").and_then(address::first_in) else {
        return false;
    };
    let Some((from_local, from_domain)) = from.split_once('@') else {
        return false;
    };
    let Some(orig) = &mail.original else {
        return false;
    };
    let h = message::parse_headers(orig);
    ["to", "cc"]
        .iter()
        .filter_map(|n| message::header(&h, n))
        .flat_map(address::find_all)
        .any(|a| {
            let Some((list, domain)) = a.split_once('@') else {
                return false;
            };
            domain.eq_ignore_ascii_case(from_domain)
                && !list.is_empty()
                && is_list_admin(&from_local.to_ascii_lowercase(), &list.to_ascii_lowercase())
        })
}

/// Whether `local` is one of the administrative local parts of list `list`.
fn is_list_admin(local: &str, list: &str) -> bool {
    if local.strip_prefix("owner-") == Some(list) {
        return true;
    }
    let Some(rest) = local.strip_prefix(list) else {
        return false;
    };
    matches!(
        rest,
        "+owner" | "-owner" | "-request" | "-admin" | "-bounces" | "+bounces"
    ) || rest.starts_with("+bounces-")
        || rest.starts_with("-bounces+")
}

/// A notice from an fml list's administrative address.
fn is_fml_admin(mail: &Mail) -> bool {
    mail.header("x-mlserver")
        .is_some_and(|v| v.to_ascii_lowercase().contains("fml"))
        && mail
            .header("from")
            .is_some_and(|v| v.to_ascii_lowercase().contains("-admin@"))
}

/// A Sendmail error line: a reply code, then `who... what` (sendmail's
/// `usrerr` format, e.g. `554 <a@example.org>... Remote protocol error`).
fn is_sendmail_error(line: &str) -> bool {
    let t = line.trim_start().as_bytes();
    t.len() > 4
        && t[..3].iter().all(u8::is_ascii_digit)
        && matches!(t[0], b'4' | b'5')
        && t[3] == b' '
        && line.contains("... ")
}

/// A line of an SMTP transcript: what was sent (`>>>`) or answered (`<<<`).
fn is_transcript_line(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with(">>>") || t.starts_with("<<<")
}

/// Where each address is mentioned in a notice, read once: the prose a
/// DSN's text part gives for each recipient its machine part lists.
///
/// Built in one pass over the notice so that looking up every recipient of
/// a report costs the notice's length once, not once per recipient.
pub struct Mentions<'a> {
    lines: Vec<&'a str>,
    /// Address → the lines (indices) that name it, in order.
    by_address: HashMap<String, Vec<usize>>,
}

impl<'a> Mentions<'a> {
    pub fn new(notice: &'a str) -> Mentions<'a> {
        let lines: Vec<&str> = notice.lines().collect();
        let mut by_address: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, l) in lines.iter().enumerate() {
            if is_recipient_field(l) || !l.contains('@') {
                continue;
            }
            for a in address::find_all(l) {
                by_address.entry(a).or_default().push(i);
            }
        }
        Mentions { lines, by_address }
    }

    /// The lines that mention `recipient`, each with the lines under it up
    /// to a blank line or the next DSN field group, at most `MAX_TEXT`.
    pub fn about(&self, recipient: &str) -> String {
        let needle = recipient.to_lowercase();
        let Some(at) = self.by_address.get(&needle) else {
            return String::new();
        };
        let mut out = String::new();
        let mut next = 0;
        for &i in at {
            if i < next || out.len() >= MAX_TEXT {
                continue;
            }
            push_line(&mut out, self.lines[i]);
            let mut j = i + 1;
            while j < self.lines.len() && j < i + 12 && !self.lines[j].trim().is_empty() {
                let t = self.lines[j].trim_start().to_ascii_lowercase();
                if t.starts_with("final-recipient")
                    || t.starts_with("reporting-mta")
                    || t.starts_with("original-recipient")
                {
                    break;
                }
                push_line(&mut out, self.lines[j]);
                j += 1;
            }
            next = j;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// A DSN recipient field (RFC 3464 §2.3.1-2): it names the recipient, but
/// says nothing about the failure.
fn is_recipient_field(line: &str) -> bool {
    let t = line.trim_start();
    let t = t.get(..t.len().min(20)).unwrap_or("").to_ascii_lowercase();
    t.starts_with("final-recipient")
        || t.starts_with("original-recipient")
        || t.starts_with("x-actual-recipient")
}

/// A mail system whose notice has fixed wording: there, a phrase means one
/// thing, whatever it would mean from an unknown sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Trend Micro InterScan Messaging Security Suite.
    InterScan,
    /// Verizon Wireless's mail-to-SMS gateways (vtext.com, vzwpix.com).
    Verizon,
    /// OpenSMTPD's MAILER-DAEMON reports.
    OpenSmtpd,
    /// Ipswitch (now Progress) IMail Server, whose mailer is `SMTP32`.
    IMail,
    /// Exim's bounce template (deliver.c).
    Exim,
}

/// Which known mail system wrote the notice, from its sender and the
/// opening words of its template.
pub fn agent(mail: &Mail) -> Option<Agent> {
    let from = mail.header("from").unwrap_or("").to_ascii_lowercase();
    let notice = mail.notice.to_ascii_lowercase();
    let subject = mail.subject.as_str();
    if from.trim_start().starts_with("\"interscan")
        || notice.contains("message from interscan messaging security suite")
        || ["メッセージを配信できません。", "メール配信に失敗しました"]
            .iter()
            .any(|t| subject.contains(t))
    {
        return Some(Agent::InterScan);
    }
    if address::find_all(&from).iter().any(|a| {
        a == "post_master@vtext.com" || (a.starts_with("sysadmin@") && a.ends_with(".vzwpix.com"))
    }) {
        return Some(Agent::Verizon);
    }
    if mail
        .header("x-mailer")
        .is_some_and(|v| v.trim_start().starts_with("<SMTP32 v"))
    {
        return Some(Agent::IMail);
    }
    // OpenSMTPD's bounce template ("... to this email", "this e-mail" in
    // older releases).
    if notice.contains("this is the mailer-daemon, please do not reply to this") {
        return Some(Agent::OpenSmtpd);
    }
    // Exim's template, whatever the configuration's wording of the rest.
    if notice.contains("this message was created automatically by mail delivery software") {
        return Some(Agent::Exim);
    }
    None
}

/// A reason a known mail system's own wording settles, and whether it
/// settles permanence too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub reason: Reason,
    /// `Some(true)`: the failure is final whatever status the report gave.
    pub permanent: Option<bool>,
}

/// What a known mail system means by its own words. `folded` is the
/// recipient's error text, `notice` the whole notice (both folded).
pub fn agent_reason(agent: Agent, folded: &str, notice: &str) -> Option<Verdict> {
    let said = |table: &[(&str, Reason)], text: &str| {
        table
            .iter()
            .find(|(p, _)| text.contains(p))
            .map(|(_, r)| Verdict {
                reason: *r,
                permanent: None,
            })
    };
    match agent {
        // InterScan names the recipient the next hop refused with this one
        // sentence and nothing else.
        Agent::InterScan => said(
            &[("unable to deliver message to <", Reason::UserUnknown)],
            folded,
        ),
        // Verizon writes the error above the message details that name the
        // recipient, so the whole notice is read; these are its two
        // templates' texts for an unknown number.
        Agent::Verizon => said(
            &[
                (
                    "requested action not taken: no such user here",
                    Reason::UserUnknown,
                ),
                ("no valid recipients for this mm", Reason::UserUnknown),
            ],
            notice,
        ),
        // IMail's own texts; "Delivery failed 20 attempts" is how it says
        // it gave up retrying.
        Agent::IMail => {
            let gave_up = folded
                .match_indices("delivery failed ")
                .any(|(i, m)| folded[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
            if gave_up {
                return Some(Verdict {
                    reason: Reason::Expired,
                    permanent: None,
                });
            }
            said(
                &[
                    ("unknown host", Reason::HostUnknown),
                    ("unknown user", Reason::UserUnknown),
                    ("invalid final delivery userid", Reason::UserUnknown),
                    ("user mailbox exceeds allowed size", Reason::MailboxFull),
                    (
                        "requested action not taken: virus detected",
                        Reason::VirusDetected,
                    ),
                    ("blacklisted url in message", Reason::SpamDetected),
                ],
                folded,
            )
        }
        // Exim's own errors, written where no server replied: no router
        // took the address ("Unrouteable address": a domain that does not
        // resolve, or a local part no router accepts; either way nothing
        // will deliver to it), or its hosts do not exist.
        Agent::Exim => said(
            &[
                ("unrouteable address", Reason::HostUnknown),
                ("unrouteable mail domain", Reason::HostUnknown),
                (
                    "all relevant mx records point to non-existent hosts",
                    Reason::HostUnknown,
                ),
                (
                    "all host address lookups failed permanently",
                    Reason::HostUnknown,
                ),
            ],
            folded,
        ),
        // OpenSMTPD's mta.c error strings. A domain with neither MX nor
        // address records will not have them on the next try either, even
        // though OpenSMTPD keeps the message queued and calls it delayed.
        Agent::OpenSmtpd => {
            const NOT_ACCEPT: &[&str] = &[
                "destination seem to reject all mails",
                "no mx found for domain",
                "no mx found for destination",
            ];
            if NOT_ACCEPT.iter().any(|p| folded.contains(p)) {
                return Some(Verdict {
                    reason: Reason::NotAccept,
                    permanent: Some(true),
                });
            }
            // Its report gives each recipient the remote reply and never
            // the SMTP stage (`rcpt: 550 No such user here`), so the stage
            // cannot tell a refused mailbox from a content filter's
            // answer: an unknown-user reply with no filter words is the
            // mailbox (a real OpenSMTPD 6.8 bounce, tests/fixtures).
            if super::reason::text_says(folded, Reason::UserUnknown)
                && !super::reason::text_says(folded, Reason::Filtered)
            {
                return Some(Verdict {
                    reason: Reason::UserUnknown,
                    permanent: None,
                });
            }
            said(
                &[
                    ("envelope expired", Reason::Expired),
                    ("could not retrieve credentials", Reason::SecurityError),
                    ("invalid domain name", Reason::HostUnknown),
                    ("domain does not exist", Reason::HostUnknown),
                    (
                        "address family mismatch on destination mxs",
                        Reason::NetworkError,
                    ),
                    ("all routes to destination blocked", Reason::NetworkError),
                    ("bad dns lookup error code", Reason::NetworkError),
                    ("could not retrieve source address", Reason::NetworkError),
                    ("loop detected", Reason::NetworkError),
                    ("network error on destination mxs", Reason::NetworkError),
                    ("no valid route to remote mx", Reason::NetworkError),
                    ("no valid route to destination", Reason::NetworkError),
                    ("temporary failure in mx lookup", Reason::NetworkError),
                ],
                folded,
            )
        }
    }
}

/// PowerMTA's bounce categories (`X-PowerMTA-BounceCategory`), which it
/// assigns from the remote reply with its own pattern set; the ones that
/// name a cause.
pub fn powermta_category(category: &str) -> Option<Reason> {
    Some(match category.trim() {
        "bad-domain" => Reason::HostUnknown,
        "bad-mailbox" => Reason::UserUnknown,
        "inactive-mailbox" => Reason::Suspend,
        "message-expired" => Reason::Expired,
        "no-answer-from-host" => Reason::NetworkError,
        "policy-related" => Reason::PolicyViolation,
        "quota-issues" => Reason::MailboxFull,
        "routing-errors" => Reason::SystemError,
        "spam-related" => Reason::SpamDetected,
        _ => return None,
    })
}

/// Reasons from vendor error codes that the notice quotes. Exchange 2000/2003
/// notices end each recipient's text with `MSEXCH:...(code)`; the codes are
/// Microsoft's documented non-delivery codes.
pub fn coded_reason(folded: &str) -> Option<Reason> {
    const MSEXCH: &[(&str, Reason)] = &[
        ("000c05a6", Reason::UserUnknown),   // unknown recipient
        ("000c0595", Reason::Filtered),      // ambiguous recipient
        ("00010256", Reason::SystemError),   // too many recipients
        ("000d06b5", Reason::SystemError),   // no proxy for recipient
        ("00120270", Reason::NetworkError),  // too many hops
        ("00050311", Reason::ContentError),  // conversion to Internet format failed
        ("000502cc", Reason::ContentError),  // conversion to Internet format failed
        ("000b0981", Reason::SecurityError), // server does not support AUTH
    ];
    if !folded.contains("msexch:") {
        return None;
    }
    MSEXCH
        .iter()
        .find(|(code, _)| folded.contains(&format!("({code})")))
        .map(|(_, r)| *r)
}

/// The SMTP command the remote server answered, when the text says
/// (Postfix "in reply to RCPT TO command", Exim "after RCPT TO", Sendmail
/// ">>> RCPT To:", DragonFly "did not like our RCPT TO").
pub fn command(folded: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("in reply to rcpt to", "RCPT"),
        ("after rcpt command", "RCPT"),
        ("after rcpt to", "RCPT"),
        (">>> rcpt to", "RCPT"),
        ("our rcpt to", "RCPT"),
        ("in reply to mail from", "MAIL"),
        ("after mail from", "MAIL"),
        (">>> mail from", "MAIL"),
        ("our mail from", "MAIL"),
        ("in reply to end of data", "DATA"),
        ("in reply to data", "DATA"),
        ("after end of data", "DATA"),
        ("after data", "DATA"),
        (">>> data", "DATA"),
        ("final data", "DATA"),
        ("after initial connection", "CONN"),
        // Local delivery agents answer after the message was accepted, for
        // a mailbox they know does not exist.
        ("mail.local:", "LOCAL"),
        ("local delivery failed", "LOCAL"),
        ("vdeliver:", "LOCAL"),
        ("vdelivermail:", "LOCAL"),
        ("invalid final delivery userid", "LOCAL"),
        // qmail-remote's own sentences (qmail-remote.c): which step of the
        // session the remote host refused.
        ("does not like recipient", "RCPT"),
        ("but sender was rejected", "MAIL"),
        ("failed on data command", "DATA"),
        ("failed after i sent the message", "DATA"),
        ("but greeting failed", "CONN"),
        ("but my name was rejected", "HELO"),
        ("in reply to ehlo", "EHLO"),
        ("in reply to helo", "HELO"),
        ("after ehlo", "EHLO"),
        ("after helo", "HELO"),
    ];
    TABLE
        .iter()
        .find(|(p, _)| folded.contains(p))
        .map(|(_, c)| *c)
        .or_else(|| gmail_state(folded))
}

/// Gmail's notices end the remote server's reply with the step of its SMTP
/// client that failed, "(state 14)": 13 is the greeting, 14 RCPT TO, 15, 17
/// and 18 the message (the numbering Sisimai's Gmail reader documents).
fn gmail_state(folded: &str) -> Option<&'static str> {
    let at = folded.find("(state ")?;
    let n: String = folded[at + 7..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match n.as_str() {
        "6" => Some("MAIL"),
        "13" => Some("EHLO"),
        "14" => Some("RCPT"),
        "15" | "17" | "18" => Some("DATA"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_admin_addresses_are_the_list_managers_forms() {
        for (local, list) in [
            ("team+owner", "team"),
            ("team-owner", "team"),
            ("owner-team", "team"),
            ("team-request", "team"),
            ("team-admin", "team"),
            ("team-bounces", "team"),
            ("team+bounces-help", "team"),
            ("team-bounces+news=news.example.com", "team"),
        ] {
            assert!(is_list_admin(local, list), "{local} of {list}");
        }
        for (local, list) in [
            ("team", "team"),
            ("teamx+owner", "team"),
            ("reader", "team"),
            ("postmaster", "team"),
            ("mailer-daemon", "team"),
        ] {
            assert!(!is_list_admin(local, list), "{local} of {list}");
        }
    }

    #[test]
    fn exim_block_gives_each_address_its_error() {
        let notice = "This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n  a@example.org\n    SMTP error from remote mail server after RCPT TO:<a@example.org>:\n    550 5.1.1 User unknown\n\n  b@example.net\n    retry timeout exceeded\n";
        let f = scan(notice, &["sender@example.jp".to_string()], 100);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].recipient, "a@example.org");
        assert!(f[0].text.contains("User unknown"));
        assert!(!f[0].text.contains("retry"));
        assert!(f[1].text.contains("retry timeout"));
    }

    #[test]
    fn sendmail_transcript_reply_belongs_to_the_error_line_below_it() {
        // Sendmail v5: the server's reply to MAIL FROM is the error of the
        // recipient line under it; the host error line after is not.
        let notice = "   ----- Transcript of session follows -----\nWhile talking to mx.example.org:\n>>> MAIL From:<me@example.jp>\n<<< 501 <me@example.jp>... Sender refused by policy\n554 <a@example.org>... Service unavailable\n550 example.org (smtp)... 550 Host unknown\n554 <b@example.org>... 550 Host unknown (Authoritative answer from name server)\n";
        let f = scan(notice, &["me@example.jp".to_string()], 100);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].recipient, "a@example.org");
        assert!(f[0].text.contains(">>> MAIL From"));
        assert!(f[0].text.contains("Sender refused by policy"));
        assert!(!f[0].text.contains("Host unknown"));
        assert_eq!(f[1].recipient, "b@example.org");
        assert!(f[1].text.contains("Host unknown"));
        assert!(!f[1].text.contains("Sender refused"));
    }

    #[test]
    fn known_agents_are_told_by_sender_and_template() {
        let interscan = Mail::parse(b"From: \"InterScan MSS\" <postmaster@gw.example>\nSubject: Mail could not be delivered\n\nThe following mail could not be delivered.\n");
        assert_eq!(agent(&interscan), Some(Agent::InterScan));
        let verizon = Mail::parse(
            b"From: post_master@vtext.com\nSubject: Re: hi\n\nError: Invalid user address\n",
        );
        assert_eq!(agent(&verizon), Some(Agent::Verizon));
        let opensmtpd = Mail::parse(b"From: Mailer Daemon <MAILER-DAEMON@mx.example>\nSubject: Delivery status notification: error\n\n    Hi!\n\n    This is the MAILER-DAEMON, please DO NOT REPLY to this email.\n");
        assert_eq!(agent(&opensmtpd), Some(Agent::OpenSmtpd));
        let imail = Mail::parse(b"From: \"Postmaster\" <postmaster@mx.example>\nSubject: Undeliverable Mail\nX-Mailer: <SMTP32 v8.22>\n\nDelivery failed 20 attempts: a@example.org\n");
        assert_eq!(agent(&imail), Some(Agent::IMail));
        let other = Mail::parse(b"From: MAILER-DAEMON@mx.example\nSubject: failure notice\n\nHi. This is the qmail-send program\n");
        assert_eq!(agent(&other), None);
    }

    #[test]
    fn agent_wording_settles_the_reason() {
        let v = |a, t: &str, n: &str| agent_reason(a, t, n).map(|v| (v.reason, v.permanent));
        assert_eq!(
            v(
                Agent::InterScan,
                "reason: unable to deliver message to <a@example.org>.",
                ""
            ),
            Some((Reason::UserUnknown, None))
        );
        assert_eq!(
            v(
                Agent::Verizon,
                "rcpt to: 5550100@vtext.com",
                "error: invalid user address 550 - requested action not taken: no such user here"
            ),
            Some((Reason::UserUnknown, None))
        );
        // OpenSMTPD reports a domain without mail hosts as delayed; it is
        // final all the same.
        assert_eq!(
            v(
                Agent::OpenSmtpd,
                "a@example.org: no mx found for domain",
                ""
            ),
            Some((Reason::NotAccept, Some(true)))
        );
        assert_eq!(
            v(Agent::OpenSmtpd, "a@example.org: envelope expired", ""),
            Some((Reason::Expired, None))
        );
        assert_eq!(v(Agent::OpenSmtpd, "a@example.org: mailbox full", ""), None);
        assert_eq!(
            v(
                Agent::IMail,
                "delivery failed 20 attempts: a@example.org",
                ""
            ),
            Some((Reason::Expired, None))
        );
        assert_eq!(
            v(Agent::IMail, "unknown user: a@example.org", ""),
            Some((Reason::UserUnknown, None))
        );
    }

    #[test]
    fn powermta_categories_that_name_a_cause() {
        assert_eq!(powermta_category("bad-mailbox"), Some(Reason::UserUnknown));
        assert_eq!(powermta_category("bad-domain"), Some(Reason::HostUnknown));
        assert_eq!(powermta_category("quota-issues"), Some(Reason::MailboxFull));
        assert_eq!(powermta_category("other"), None);
    }

    #[test]
    fn sender_and_mail_system_addresses_are_not_recipients() {
        let notice = "Your message to you@example.org from me@example.jp\nwas rejected. Contact postmaster@example.org\n";
        let f = scan(notice, &["me@example.jp".to_string()], 100);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].recipient, "you@example.org");
        // A help line in Japanese ("please contact <...>"), wrapped after
        // the address.
        let notice = "<you@example.org>: host mx.example.org said: 550 User unknown\n\n\n解決できない場合は、<support@isp.example>\nへご連絡ください。\n";
        let f = scan(notice, &["me@example.jp".to_string()], 100);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].recipient, "you@example.org");
    }
}
