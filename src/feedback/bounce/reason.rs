//! The bounce taxonomy: why a delivery failed, and whether that makes the
//! address dead (hard) or only the attempt (soft).
//!
//! A reason comes from three signals in order of trust: the error text the
//! receiving server wrote (a table of phrases, below), the RFC 3463 status
//! code, and the SMTP reply code. Names follow Sisimai's where they mean the
//! same, so figures can be compared with it. This module only maps text to
//! names; it does not find the text in a message (that is `dsn` and
//! `vendors`).

use std::fmt;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// Why a message came back. The names are Sisimai's reason names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    UserUnknown,
    HostUnknown,
    HasMoved,
    NotAccept,
    MailboxFull,
    Filtered,
    Rejected,
    Blocked,
    Expired,
    Suspend,
    NetworkError,
    PolicyViolation,
    AuthFailure,
    RequirePtr,
    SpamDetected,
    SystemError,
    SecurityError,
    MesgTooBig,
    ExceedLimit,
    TooManyConn,
    Speeding,
    NoRelaying,
    NotCompliantRfc,
    BadReputation,
    ContentError,
    VirusDetected,
    SyntaxError,
    SystemFull,
    MailerError,
    FailedStartTls,
    OnHold,
    Undefined,
    Suppressed,
    /// An ARF complaint (RFC 5965).
    Feedback,
    /// An automatic reply (RFC 3834).
    Vacation,
    /// A DSN that reports success (status 2.x.x).
    Delivered,
    /// A mail asking to be unsubscribed.
    Unsubscribe,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            UserUnknown => "userunknown",
            HostUnknown => "hostunknown",
            HasMoved => "hasmoved",
            NotAccept => "notaccept",
            MailboxFull => "mailboxfull",
            Filtered => "filtered",
            Rejected => "rejected",
            Blocked => "blocked",
            Expired => "expired",
            Suspend => "suspend",
            NetworkError => "networkerror",
            PolicyViolation => "policyviolation",
            AuthFailure => "authfailure",
            RequirePtr => "requireptr",
            SpamDetected => "spamdetected",
            SystemError => "systemerror",
            SecurityError => "securityerror",
            MesgTooBig => "mesgtoobig",
            ExceedLimit => "exceedlimit",
            TooManyConn => "toomanyconn",
            Speeding => "speeding",
            NoRelaying => "norelaying",
            NotCompliantRfc => "notcompliantrfc",
            BadReputation => "badreputation",
            ContentError => "contenterror",
            VirusDetected => "virusdetected",
            SyntaxError => "syntaxerror",
            SystemFull => "systemfull",
            MailerError => "mailererror",
            FailedStartTls => "failedstarttls",
            OnHold => "onhold",
            Undefined => "undefined",
            Suppressed => "suppressed",
            Feedback => "feedback",
            Vacation => "vacation",
            Delivered => "delivered",
            Unsubscribe => "unsubscribe",
        }
    }

    /// Whether the address itself is gone. Only these reasons say so; a
    /// refused sender IP or content (blocked, filtered, spam) leaves the
    /// address good. `notaccept` (null MX, RFC 7505) is hard when permanent.
    pub fn is_hard(self, permanent: bool) -> bool {
        match self {
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved => true,
            Reason::NotAccept => permanent,
            _ => false,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lower-case the text and fold runs of white space into one space, so a
/// phrase matches across folded lines and double spaces.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Join the lines of a multiline SMTP reply in folded text. RFC 5321
/// §4.2.1 has every line but the last start with the code and `-`, and
/// servers repeat the enhanced status too ("550-5.2.1 ... at a rate that
/// 550-5.2.1 prevents additional messages"); the repeats would cut phrases
/// in two. Every repeat of the first line's prefix goes.
pub fn join_reply_lines(folded: &str) -> String {
    let b = folded.as_bytes();
    let start = (0..b.len().saturating_sub(3)).find(|&i| {
        (i == 0 || b[i - 1] == b' ')
            && b[i..i + 3].iter().all(u8::is_ascii_digit)
            && matches!(b[i], b'4' | b'5')
            && b[i + 3] == b'-'
    });
    let Some(i) = start else {
        return folded.to_string();
    };
    let code = &folded[i..i + 3];
    let rest = &folded[i + 4..];
    let status = rest.split(' ').next().filter(|s| {
        s.len() >= 5
            && s.split('.').count() == 3
            && s.bytes().all(|c| c.is_ascii_digit() || c == b'.')
    });
    let (keep, tail) = folded.split_at(i + 4 + status.map_or(0, |s| s.len()));
    let mut tail = tail.to_string();
    let prefixes: Vec<String> = match status {
        Some(st) => vec![format!(" {code}-{st} "), format!(" {code} {st} ")],
        None => vec![format!(" {code}-"), format!(" {code} ")],
    };
    for p in &prefixes {
        tail = tail.replace(p.as_str(), " ");
    }
    format!("{keep}{tail}")
}

/// A phrase matches when its pieces (split at `*`) occur in order.
fn phrase_matches(text: &str, phrase: &str) -> bool {
    let mut rest = text;
    for piece in phrase.split('*') {
        if piece.is_empty() {
            continue;
        }
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Every phrase of every table in one Aho-Corasick automaton, so a text is
/// read once however many phrases there are. A phrase with gaps is a
/// candidate when all its pieces occur, and is then checked in order.
struct Matcher {
    automaton: AhoCorasick,
    /// For each table entry (in `ORDER`, then `LAST_RESORT`, then vacation):
    /// its reason and, per phrase, the automaton pattern ids of its pieces.
    tables: Vec<(Reason, Vec<CompiledPhrase>)>,
}

/// A phrase and the automaton ids of its pieces.
type CompiledPhrase = (&'static str, Vec<usize>);

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let mut pieces: Vec<&'static str> = Vec::new();
    let mut tables = Vec::new();
    let all = ORDER
        .iter()
        .chain(LAST_RESORT.iter())
        .chain(std::iter::once(&(Reason::Vacation, VACATION)));
    for (reason, phrases) in all {
        let mut entry = Vec::new();
        for phrase in phrases.iter() {
            let ids = phrase
                .split('*')
                .filter(|p| !p.is_empty())
                .map(|p| match pieces.iter().position(|q| *q == p) {
                    Some(i) => i,
                    None => {
                        pieces.push(p);
                        pieces.len() - 1
                    }
                })
                .collect();
            entry.push((*phrase, ids));
        }
        tables.push((*reason, entry));
    }
    // The tables are constants; a test builds the automaton.
    let automaton = AhoCorasick::new(&pieces).expect("the phrase tables build an automaton");
    Matcher { automaton, tables }
});

/// Which tables (by index) a folded text matches.
fn matching_tables(text: &str) -> Vec<usize> {
    let m = &*MATCHER;
    let mut present = vec![false; m.automaton.patterns_len()];
    let mut any_found = false;
    for hit in m.automaton.find_overlapping_iter(text) {
        present[hit.pattern().as_usize()] = true;
        any_found = true;
    }
    if !any_found {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, (_, phrases)) in m.tables.iter().enumerate() {
        let hit = phrases.iter().any(|(phrase, ids)| {
            !ids.is_empty()
                && ids.iter().all(|&id| present[id])
                && (ids.len() == 1 || phrase_matches(text, phrase))
        });
        if hit {
            out.push(i);
        }
    }
    out
}

// The phrase tables. Each is what receiving servers and relays write when
// they refuse for that reason, lower-cased; `*` stands for any text between
// two pieces. Collected from MTA documentation and real bounces; see
// docs/BOUNCES.md for where each family comes from.

const MAILBOX_FULL: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "mailbox quota",
    "mailbox over quota",
    "mailbox has exceeded",
    "mailbox size limit exceeded",
    "mailbox would exceed",
    "mailfolder is full",
    "maildir over quota",
    "maildir delivery failed: userdisk quota",
    "maildir delivery failed: domaindisk quota",
    "over quota",
    "over the quota",
    "over the allowed quota",
    "overquota",
    "quota exceeded",
    "quota exceed",
    "quota violation",
    "exceeded storage allocation",
    "exceeding its mailbox quota",
    "exceeds allowed size",
    "disk quota",
    "diskspace quota",
    "disc quota exceeded",
    "not enough disk space",
    "not enough storage space",
    "not sufficient disk space",
    "does not have enough space",
    "no space left on device",
    "full mailbox",
    "user's space has been used up",
    "too much mail data",
    "too many messages on the server",
    "mailbox exceeded the local limit",
    "recipient reached disk quota",
    "account is full",
    "inbox is full",
    "boite du destinataire pleine",
    "mail file size exceeds the maximum size allowed",
    "exceeding receiving limits",
    "user mailbox exceeds",
];

const MESG_TOO_BIG: &[&str] = &[
    "message too big",
    "message too large for this",
    "message size exceeds",
    "message length exceeds",
    "message file too big",
    "max message size exceeded",
    "maximum message size",
    "exceeded maximum inbound message size",
    "exceeded the maximum incoming message size",
    "message is too large",
    "message exceeds the maximum size",
    "size limit",
    "line limit exceeded",
    "taille limite du message atteinte",
    "mail size limit",
];

const EXCEED_LIMIT: &[&str] = &["message header size exceeds limit", "message too large"];

const SUSPEND: &[&str] = &[
    "is currently suspended",
    "has been suspended",
    "compte du destinataire est bloque",
    "account is blocked",
    "tried to reach is inactive",
    "account has been temporarily suspended",
    "user suspended",
    "account suspended",
    "account has been disabled",
    "account is disabled",
    "account disabled",
    "mailbox disabled",
    "mailbox is disabled",
    "mailbox currently suspended",
    "mailbox is frozen",
    "is a deactivated mailbox",
    "inactive account",
    "account is inactive",
    "account is locked",
    "temporary locked",
    "recipient suspend the service",
    "recipient rejected: temporarily inactive",
    "invalid/inactive user",
    "user is terminated",
    "user or domain is disabled",
    "archived recipient",
    "boite du destinataire archivee",
    "tried to reach is disabled",
    "account has been disabled or discontinued",
    "mailbox unavailable or access denied",
    "this mailbox is disabled",
];

const HAS_MOVED: &[&str] = &[
    " has been replaced by ",
    "mailbox has moved",
    "address has moved",
];

const NO_RELAYING: &[&str] = &[
    "relay access denied",
    "relaying denied",
    "relay denied",
    "relay not permitted",
    "relaying not permitted",
    "no relaying",
    "not allowed to relay",
    "unable to relay",
    "relaying mail to * is not allowed",
    "not permitted to relay",
    "not an open relay",
    "as a relay",
    "insecure mail relay",
    "is not configured to relay",
    "not a gateway",
    "we don't handle mail for",
    "requires authentication when attempting to send to a non-local",
    "not local host",
    "that domain isn't in my list of allowed rcpthost",
    "specified domain is not allowed",
    // Amazon SES refuses to send from an identity it has not verified.
    "email address is not verified.",
];

const AUTH_FAILURE: &[&str] = &[
    "dmarc policy",
    "fails to pass authentication",
    "does not have authentication information",
    "dmarc rejection",
    "dmarc verification",
    "fails dmarc",
    "failed dmarc",
    "dmarc check",
    "spf check: fail",
    "spf fail",
    "spf validation",
    "spf record",
    "spf settings",
    "sender policy framework",
    "bad spf",
    "spf.pobox.com",
    "dkim signature",
    "dkim check",
    "dkim validation",
    "failed dkim",
    "unauthenticated email",
    "unauthenticated mail",
    "not authenticated with spf or dkim",
    "is not allowed to send mail.",
    "is not allowed to send from <",
    "domain authentication fail",
    "domain of * does not designate",
    "does not designate * as permitted sender",
];

const REQUIRE_PTR: &[&str] = &[
    "ptr record",
    "reverse dns",
    "reverse lookup",
    "rdns",
    "cannot find your hostname",
    "cannot resolve your address",
    "ip name lookup failed",
    "client host rejected: cannot find your hostname",
    "unresolvable relay host name",
    "generic dns ptr",
    "dns ptr",
    "mismatches client ip",
    "forward dns entry does not point to the sending ip",
    "no reverse dns",
    "reverse dns required",
    "does not have a ptr",
    "unverifyable sending ips",
];

const USER_UNKNOWN: &[&str] = &[
    "user unknown",
    // Yahoo's refusal at RCPT.
    "this user doesn't have a * account",
    "unknown user",
    "unknown recipient",
    "recipient unknown",
    "unknown mailbox",
    "no such user",
    "no such recipient",
    "no such mailbox",
    "no such person",
    "no such address",
    "no mailbox",
    "no mail box",
    "no account by that name",
    "user not found",
    "user not known",
    "user not exist",
    "user not active",
    "user does not exist",
    "user doesn't exist",
    "user * does not exist",
    "user * was not found",
    "user (*) unknown",
    "recipient not found",
    "recipient not exist",
    "recipient does not exist",
    "recipient * was not found",
    "recipient is not local",
    "recipient is not accepted",
    "recipient not ok",
    "recipient refuses to accept your mail",
    "recipient address rejected: invalid user",
    "recipient address rejected: invalid-recipient",
    "recipient address rejected: unknown user",
    "recipient address rejected: user unknown",
    "recipient address rejected: userunknown",
    "recipient address rejected: user * does not exist",
    "recipient address rejected: access denied",
    "recipient address rejected. (in reply to rcpt to command)",
    "recipient name is not recognized",
    "invalid recipient",
    "invalid mailbox",
    "invalid address",
    "address invalid",
    "mailbox invalid",
    "address unknown",
    "address does not exist",
    "address doesn't exist",
    "address not present in directory",
    "address rejected.",
    "email address does not exist",
    "email address could not be found",
    "email address is wrong or no longer valid",
    "mailbox does not exist",
    "mailbox * does not exist",
    "mailbox not found",
    "mailbox not present",
    "mailbox is inactive",
    "mailbox is unavailable",
    "mailbox unavailable",
    "mailbox unavaiable",
    "is not a valid mailbox",
    "is not a known user",
    "not a valid recipient",
    "not a valid user",
    "not a local address",
    "not our customer",
    "is not an active address",
    "destination addresses were unknown",
    "destination server rejected recipients",
    "there is no one at this address",
    "this address no longer accepts mail",
    "does not exist.",
    "account * does not exist",
    "account that you tried to reach does not exist",
    "no valid recipients",
    "can't accept user",
    "badrcptto",
    "badrecipientto",
    "validrcptto",
    "envelope recipient has been denied",
    "envelope recipient is in my badrcptto",
    "resolver.adr.recipnotfound",
    "resolver.adr.recipientnotfound",
    "resolver.adr.recipient notfound",
    "recipnotfound",
    "user's email name is not found",
    "unknown e-mail address",
    "unknown email address",
    "unknown local part",
    "unknown local-part",
    "unrouteable address",
    "unroutable address",
    "non-existent user",
    "nonexistent user",
    "non existent user",
    "rcpt <* does not exist",
    "no * in name directory",
    "utilisateur inconnu",
    "nessun utente",
    "no existe dicha persona",
    "no existe ese usuario",
    "vdeliver: invalid or unknown virtual user",
    "invalid final delivery userid",
    "not listed in domino directory",
    "not listed in public name & address book",
    "no se encuentra en el directorio de domino",
    "dans l'annuaire domino",
    "domino ディレクトリには見つかりません",
    "user missing home directory",
    "this spectator does not exist",
    "that domain or user isn't in my list of allowed rcpthosts",
    "sorry, no mailbox here by that name",
    "the following recipients was undeliverable",
    "invalid-recipient",
    "bad destination mailbox address",
    "bad recipient",
    "bad address",
    "no thank you rejected: account unavailable",
    "mailbox * unavailable or access denied",
    "no longer available",
    "address not found",
    "non-existent address",
    "recipient address not found",
];

const HOST_UNKNOWN: &[&str] = &[
    "host unknown",
    "unknown host",
    "host or domain name not found",
    "domain does not exist",
    "domain doesn't exist",
    "domain not found",
    "no such domain",
    "unknown domain",
    "domain must exist",
    "domain is not reachable",
    "name or service not known",
    "mail domain mentioned in email address is unknown",
    "the account or domain may not exist",
    "host unreachable",
    "domain name not found",
    "unrouteable mail domain",
    "no mx for",
    "dns type 'mx' lookup of",
    "dns lookup failure: host",
];

const FILTERED: &[&str] = &[
    "message filtered",
    "user refuses to receive this mail",
    "refused due to recipient preferences",
    "message rejected due to user rules",
    "you have been blocked by the recipient",
    "is not accepting any mail",
    "only accepting mail from specific email addresses",
    "has restricted sms e-mail",
    "this account is protected by",
    "resolver.rst.notauthorized",
    "user reject",
    "bounced address",
    "refuse to receive mail",
    "due to extended inactivity new mail is not currently being accepted",
    "not found recipient account",
    "cannot route mail to user",
];

const NOT_COMPLIANT_RFC: &[&str] = &[
    "not rfc 5322 compliant",
    "not rfc5322 compliant",
    "rfcmessagenoncompliant",
    "duplicate header",
    "multiple * header",
    "not rfc 2822 compliant",
    "not rfc2822 compliant",
];

const BAD_REPUTATION: &[&str] = &[
    "poor email reputation",
    "poor reputation",
    "ip reputation",
    "domain reputation",
    "bad reputation",
    "low reputation",
    "sender reputation",
    "ip/domain reputation",
    "unexpected volume or user complaints",
];

const CONTENT_ERROR: &[&str] = &[
    "header size exceeds maximum permitted",
    "improper use of 8-bit data",
    "invalid mime headers",
    "improperly-formatted binary content",
    "unnecessary base64 encoding",
    "mime complexity exceeds",
    "recipient list, exceeds policy limit",
    "too many received: headers",
];

const SPAM_DETECTED: &[&str] = &[
    "spam detected",
    "detected as spam",
    "detected your message as spam",
    "identified as spam",
    "classified as spam",
    "considered spam",
    "considered as spam",
    "looks like spam",
    "looked like spam",
    "appears to be spam",
    "seems to be a spam",
    "similar to spam",
    "spam-like",
    "scored as spam",
    "probable spam",
    "probably spam",
    "high probability of spam",
    "percent probability of being spam",
    "spam score",
    "spam content",
    "spam message",
    "spam email",
    "spam filter",
    "spam not accepted",
    "spam refused",
    "spam rejection",
    "spam blocked",
    "rejected as spam",
    "rejected due to spam",
    "suspected spam",
    "spamassassin",
    "spambouncer",
    "antispam checks",
    "anti spam engine",
    "unsolicited",
    "bulk email",
    "bulk mail",
    "bulk.advertising",
    "content filter rejection",
    "message content rejected",
    "rejecting banned content",
    "rejecting mail content",
    "mail content denied",
    "unacceptable content",
    "blacklisted url",
    "uribl",
    "recurrent pattern detection",
    "spamprofiler",
    "we dont accept spam",
    "too much spam",
    "too many spam complaints",
    "no spam please",
    "block for spam",
    "your message has triggered a spam block",
    "your message has been temporarily blocked by our filter",
    "may contain the spam contents",
    "mail appears to be unsolicited",
    "spam points",
    "our system has detected that this message is",
    "message considered as spam or virus",
    "message contains spam or virus",
    "spam or virus",
    "5.7.1 message rejected as spam",
];

const VIRUS_DETECTED: &[&str] = &[
    "virus detected",
    "virus found",
    "infected with a virus",
    "contains a virus",
    "prohibited virus",
    "potentially executable attachment",
    "used by recent viruses",
    "malware",
    "virus phishing",
];

const SPEEDING: &[&str] = &[
    "temporarily rate limited",
    "please try again slower",
    "receiving mail at a rate that prevents additional messages",
    "rate limit exceeded",
    "rate that prevents",
    "too fast",
];

const TOO_MANY_CONN: &[&str] = &[
    "too many connections",
    "too many concurrent",
    "too many smtp sessions",
    "connection limit",
    "maximum connection limit",
    "too many errors from your ip",
    "too many recipients",
    "trop de connexions",
    "max emails per hour",
    "daily message quota exceeded",
    "maximum sending rate exceeded",
    "we have already made numerous attempts",
    "frequency limited",
    "has sent to too many recipients",
];

const POLICY_VIOLATION: &[&str] = &[
    "policy violation",
    "denied by policy",
    "for policy reasons",
    "local policy",
    "organization policy",
    "organizational settings",
    "security policies",
    "illegal attachment",
    "not accepting mail with attachments",
    "not accepting mail with ",
    "members-only list",
    "closed mailing list",
    "not subscribed to this group",
    "message given low priority",
    "messages with multiple addresses",
    "protocol violation",
    "header are not accepted",
    "header error",
    "mass mailer",
    "content presents a potential",
    "containing images or other attachments",
    "without solving a captcha",
];

const REJECTED: &[&str] = &[
    "sender rejected",
    "sender was rejected",
    "sender address rejected",
    "sender email address rejected",
    "sender verify failed",
    "sender verification failed",
    "sender not pre-approved",
    "sender is in my black list",
    "sender is spammer",
    "sender domain is empty",
    "sender address has been blacklisted",
    "invalid sender",
    "bogus mail from",
    "domain of sender address",
    "unroutable sender address",
    "null sender is not allowed",
    "empty envelope senders not allowed",
    "returned mail not accepted here",
    "no third-party dsns",
    "unsigned dsn",
    "batv",
    "backscatter",
    "fully qualified email address required",
    "mail from not owned by user",
    "email address is not verified",
    "administrative prohibition",
    "delivery not authorized, message refused",
    "access denied (in reply to mail from command)",
    "access denied (sender blacklisted)",
    "your email address has been blacklisted",
    "address that has been blacklisted",
    "this server does not accept mail from",
    "not allowed to post to this mailing list",
    "isn't on the recipient's list of senders",
    "spam reporting address",
    "senderfilterconfig",
    "emetteur invalide",
    "is not a registered gateway user",
    "can't determine purported responsible address",
    "from: domain is invalid",
    "syntax error: empty email address",
    "envelope blocked",
    "sending this from a different address or alias",
    "connections not accepted from servers without a valid sender domain",
    "permission to post",
    "not a member of this mailing list",
    "not member article from",
    "are not member",
    "group may not exist",
    "投稿する権限",
    // fml's refusals of a post (fml.org, as Sisimai's fml reader lists).
    "reject mail from",
    "reject spammers:",
    "spam mail from a spammer is rejected",
];

const SYNTAX_ERROR: &[&str] = &[
    "malformed address",
    "syntax error",
    "improper sequence of commands",
    "bad sequence of commands",
    "command unrecognized",
    "command not recognized",
    "unrecognized command",
    "invalid command",
];

const BLOCKED: &[&str] = &[
    "blocked using",
    "blacklisted by",
    "blacklisted",
    "black list",
    "blocklist",
    "block list",
    "listed in",
    "listed at",
    "is listed",
    "rbl",
    "dnsbl",
    "spamhaus",
    "spamcop",
    "barracudacentral",
    "abuseat.org",
    "sorbs",
    "client host rejected",
    "client host * blocked",
    "helo command rejected",
    "sender ip address rejected",
    "bad sender ip address",
    "banned sending ip",
    "your ip",
    "ip address",
    "dynamic ip",
    "dynamic/zombied",
    "open proxy",
    "not allowed to connect",
    "connection refused",
    "connection dropped",
    "connection reset by peer",
    "connection was dropped",
    "refused to talk to me",
    "esmtp not accepting connections",
    "not currently accepting mail from your ip",
    "go away",
    "service refused",
    "please use the smtp server of your isp",
    "part of their network is on our block list",
    "host network not allowed",
    "is blocked",
    "was blocked by",
    "email blocked by",
    "you are sending spam",
    "currently sending spam",
    "suspiciously like spammer",
    "too many spams from your ip",
    "too many unwanted messages",
    "confirm this mail server",
    "requires confirmation",
    "was not authenticated",
    "may not be mail exchanger",
    "no access from mail server",
    "server access forbidden",
    "rejected - multi-blacklist",
    "refused - see http",
    "blocked - see http",
    "has been rejected",
    "service not available, closing transmission channel",
    "smtp error from remote mail server after initial connection",
    "blocked by",
    "blocked -",
];

const NETWORK_ERROR: &[&str] = &[
    // connect(2)'s errors as strerror(3) words them (EHOSTUNREACH,
    // ENETUNREACH, ENETDOWN, EHOSTDOWN): MTAs that write the OS error as the
    // diagnostic (Courier: "<<< Network is down") report no reply at all.
    "no route to host",
    "host is unreachable",
    "network is unreachable",
    "network is down",
    "host is down",
    "host name lookup failure",
    "host not found, try again",
    "name server reply",
    "dns records for the destination computer could not be found",
    "unable to resolve route",
    "could not connect and send the mail",
    "too many hops",
    "hop count exceeded",
    "maximum hop count",
    "mail forwarding loop",
    "maximum forwarding loop count",
    "message looping",
    "routing loop",
    "mail loop",
    "temporary failure in name resolution",
];

const EXPIRED: &[&str] = &[
    "delivery time expired",
    "delivery expired",
    "message expired",
    "message timed out",
    "timed out",
    "time out",
    "timeout",
    "retry timeout exceeded",
    "retry time not reached",
    "giving up on",
    "gave up",
    "given up",
    "too long in the queue",
    "in the queue too long",
    "in queue for",
    "queue period",
    "have been failing for a long time",
    "has been delayed",
    "could not be delivered for",
    // Sendmail's queue-return texts (savemail.c, deliver.c).
    "cannot send message for",
    "could not send message for past",
    "was not reachable within",
    "unable to deliver message after multiple retries",
    "delivery attempts will continue",
    "it has not been collected after",
    "server did not respond",
    "did not accept our requests to connect",
    "could not find a gateway for",
    "failed to deliver to domain",
    "expired",
];

const SYSTEM_FULL: &[&str] = &[
    "mail system full",
    "insufficient disk space",
    "exceeded storage allocation",
    "system full",
];

const NOT_ACCEPT: &[&str] = &[
    "does not accept mail",
    "does not receive email",
    "doesn't receive email",
    "null mx",
    "nullmx",
    "mail receiving disabled",
    "no mx record found",
    "no route for current request",
    "smtp protocol returned a permanent error",
    "name server: .: host not found",
];

const FAILED_STARTTLS: &[&str] = &[
    "starttls is required",
    "starttls required",
    "tls required but not supported",
    "does not support tls",
    "must issue a starttls command first",
    "tls is required",
    "encryption required",
    "tls negotiation failed",
    "starttls failed",
];

const SECURITY_ERROR: &[&str] = &[
    "authentication required",
    "authentication failure",
    "authentication failed",
    "authentication credentials invalid",
    "authentication is required",
    "unauthenticated senders not allowed",
    "authentification",
    "verification failure",
    "not authorized to perform ses:",
    "account not subscribed to ses",
    "executable files are not allowed",
    "you don't authenticate",
    "is a dead domain",
    // fml's notice of a post its security checks refused.
    "security alert",
];

const SYSTEM_ERROR: &[&str] = &[
    "local configuration error",
    "configuration error",
    "config error",
    "system config",
    "local error in processing",
    "temporary local problem",
    "internal error",
    "server error",
    "interrupted system call",
    "queue file write error",
    "loops back to myself",
    "mail exchanger",
    "would create a mail loop",
    "forwarding loop broken",
    "can't create user output file",
    "service currently unavailable",
    "timeout waiting for input",
    "remote server is misconfigured",
    "encountered an error while being processed",
    "recipient deferred because there is no mdb",
    "could not load drd",
    "several matches found in domino directory",
    // fml's loop and duplicate guards.
    "has detected a loop condition",
    "duplicated message-id",
    "loop back warning",
    "loop alert:",
    "unix from loop",
    "fml system error message",
    // RFC 5321 §4.2.3: 554 "Transaction failed", with nothing more said.
    "554 transaction failed",
];

const MAILER_ERROR: &[&str] = &[
    "procmail",
    "maildrop",
    "command failed",
    "command died with status",
    "command output:",
    "mailer error",
    "pipe to |",
    "x-unix;",
    "|| exit",
];

const VACATION: &[&str] = &[
    "i am away on vacation",
    "i am away until",
    "i am out of the office",
    "i will be out of the office",
    "i'm out of the office",
    "out of office",
];

/// The reasons a phrase table can name, in the order they are tried: the
/// specific before the general (a "blocked" phrase often sits beside a
/// more telling one), and what the recipient did before what the sender did.
const ORDER: &[(Reason, &[&str])] = &[
    (Reason::MailboxFull, MAILBOX_FULL),
    (Reason::MesgTooBig, MESG_TOO_BIG),
    (Reason::ExceedLimit, EXCEED_LIMIT),
    (Reason::Suspend, SUSPEND),
    (Reason::HasMoved, HAS_MOVED),
    (Reason::NoRelaying, NO_RELAYING),
    (Reason::AuthFailure, AUTH_FAILURE),
    (Reason::RequirePtr, REQUIRE_PTR),
    (Reason::FailedStartTls, FAILED_STARTTLS),
    (Reason::NotAccept, NOT_ACCEPT),
    (Reason::UserUnknown, USER_UNKNOWN),
    (Reason::HostUnknown, HOST_UNKNOWN),
    (Reason::Filtered, FILTERED),
    (Reason::NotCompliantRfc, NOT_COMPLIANT_RFC),
    (Reason::BadReputation, BAD_REPUTATION),
    (Reason::ContentError, CONTENT_ERROR),
    (Reason::VirusDetected, VIRUS_DETECTED),
    (Reason::SpamDetected, SPAM_DETECTED),
    (Reason::Speeding, SPEEDING),
    (Reason::TooManyConn, TOO_MANY_CONN),
    (Reason::PolicyViolation, POLICY_VIOLATION),
    (Reason::Rejected, REJECTED),
    (Reason::SyntaxError, SYNTAX_ERROR),
    (Reason::NetworkError, NETWORK_ERROR),
    (Reason::SystemFull, SYSTEM_FULL),
    (Reason::SecurityError, SECURITY_ERROR),
    (Reason::MailerError, MAILER_ERROR),
    (Reason::Blocked, BLOCKED),
    (Reason::Expired, EXPIRED),
    (Reason::SystemError, SYSTEM_ERROR),
];

/// Phrases too vague to outrank any other, tried only when nothing else
/// matched: InterScan MSS and Trend Micro write only the first for an
/// unknown user; Google Groups refuses a post (in the poster's language) with
/// a link to its help centre.
const LAST_RESORT: &[(Reason, &[&str])] = &[
    (Reason::UserUnknown, &["unable to deliver message to <"]),
    (Reason::Rejected, &["groups.google.com/support"]),
];

/// The reason the error text names, if any. `text` must be folded.
pub fn from_text(text: &str) -> Option<Reason> {
    if text.is_empty() {
        return None;
    }
    let vacation = MATCHER.tables.len() - 1;
    matching_tables(text)
        .into_iter()
        .find(|&i| i != vacation)
        .map(|i| MATCHER.tables[i].0)
}

/// Every reason whose phrase table the text matches (the last-resort
/// phrases only when no table does). `text` must be folded.
pub fn matches(text: &str) -> Vec<Reason> {
    if text.is_empty() {
        return Vec::new();
    }
    let vacation = MATCHER.tables.len() - 1;
    let found: Vec<usize> = matching_tables(text)
        .into_iter()
        .filter(|&i| i != vacation)
        .collect();
    let main: Vec<Reason> = found
        .iter()
        .filter(|&&i| i < ORDER.len())
        .map(|&i| MATCHER.tables[i].0)
        .collect();
    if !main.is_empty() {
        return main;
    }
    found.into_iter().map(|i| MATCHER.tables[i].0).collect()
}

/// Whether the text says the recipient's account is switched off (RFC 3463
/// X.2.1 "mailbox disabled", RFC 3463bis X.7.13 "user account disabled") in
/// words no table lists: an account word and a state word within a few
/// words of each other, in either order ("this account has been
/// deactivated", "inactive mailbox"). `text` must be folded.
pub fn says_suspended(text: &str) -> bool {
    const SUBJECT: &[&str] = &[
        "account",
        "mailbox",
        "mail box",
        "inbox",
        "user",
        "recipient",
    ];
    const STATE: &[&str] = &[
        "disabled",
        "suspended",
        "deactivated",
        "de-activated",
        "inactive",
        "frozen",
        "locked",
        "terminated",
        "discontinued",
    ];
    // Few words apart: "account <name> has been temporarily suspended".
    const NEAR: usize = 48;
    for st in STATE {
        for (at, _) in text.match_indices(st) {
            // A word of its own: "locked" is not "blocked".
            if text[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
            {
                continue;
            }
            let mut start = at.saturating_sub(NEAR);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            let before = &text[start..at];
            let mut end = (at + st.len() + NEAR).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let after = &text[at + st.len()..end];
            // A sentence ends the link: "user unknown. the server is locked".
            let before = before
                .rsplit(". ")
                .next()
                .unwrap_or(before)
                .rsplit(';')
                .next()
                .unwrap_or(before);
            let after = after
                .split(". ")
                .next()
                .unwrap_or(after)
                .split(';')
                .next()
                .unwrap_or(after);
            if SUBJECT.iter().any(|w| before.contains(w))
                || after
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .take(2)
                    .any(|w| SUBJECT.iter().any(|s| w.starts_with(s)))
            {
                return true;
            }
        }
    }
    false
}

/// Whether the text is an out-of-office message. `text` must be folded.
pub fn is_vacation_text(text: &str) -> bool {
    let vacation = MATCHER.tables.len() - 1;
    matching_tables(text).contains(&vacation)
}

/// Whether the text names the reason. `text` must be folded.
pub fn text_says(text: &str, reason: Reason) -> bool {
    let vacation = MATCHER.tables.len() - 1;
    matching_tables(text)
        .into_iter()
        .any(|i| i != vacation && MATCHER.tables[i].0 == reason)
}

/// The reason an RFC 3463 enhanced status code stands for, where the code is
/// specific enough to say (RFC 3463 §3, RFC 7372, RFC 7505, RFC 8689).
/// Generic codes (x.0.0, 4.4.0, 5.7.1 "not authorised") give `None` so the
/// error text decides.
pub fn from_status(status: &str) -> Option<Reason> {
    let mut it = status.split('.');
    let class = it.next()?;
    let subject: u32 = it.next()?.parse().ok()?;
    let detail: u32 = it.next()?.parse().ok()?;
    let permanent = class == "5";
    use Reason::*;
    let r = match (subject, detail) {
        (1, 0) if permanent => UserUnknown,
        (1, 1) => UserUnknown,
        (1, 2) => HostUnknown,
        (1, 3) => UserUnknown,
        (1, 4) => Filtered,
        (1, 6) => HasMoved,
        (1, 7) | (1, 8) => Rejected,
        (1, 9) => SystemError,
        (1, 10) => NotAccept,
        (2, 0) | (2, 1) if permanent => Filtered,
        (2, 1) => Blocked,
        (2, 2) => MailboxFull,
        (2, 3) => ExceedLimit,
        (2, 4) => Filtered,
        (3, 0) if permanent => SystemError,
        (3, 1) => SystemFull,
        (3, 2) => NotAccept,
        (3, 3) | (3, 5) => SystemError,
        (3, 4) => MesgTooBig,
        (4, 0) if permanent => NetworkError,
        // 5.4.1 is what Exchange Online and others send for "recipient
        // address rejected: access denied" at RCPT; 4.4.1 is "no answer".
        (4, 1) if permanent => Rejected,
        (4, 1) | (4, 7) => Expired,
        (4, 2) | (4, 6) | (4, 8) => NetworkError,
        (4, 3) => SystemError,
        (4, 4) if permanent => HostUnknown,
        (4, 4) => NetworkError,
        (4, 5) => SystemFull,
        (5, 2) | (5, 6) => SyntaxError,
        (5, 3) => TooManyConn,
        (5, 4) | (5, 5) => SystemError,
        (6, _) => ContentError,
        (7, 1) if !permanent => Blocked,
        (7, 2) if !permanent => Blocked,
        (7, 0) | (7, 1) | (7, 2) | (7, 3) | (7, 4) => SecurityError,
        (7, 5..=12) | (7, 14) | (7, 15) | (7, 19) => SecurityError,
        (7, 13) => Suspend,
        (7, 16) => MesgTooBig,
        (7, 17) | (7, 18) => HasMoved,
        (7, 20..=24) | (7, 26) | (7, 29) => AuthFailure,
        (7, 25) => RequirePtr,
        (7, 27) => NotAccept,
        (7, 28) => SpamDetected,
        (7, 30) => FailedStartTls,
        // Vendors extend subject 1 (addressing) with their own details,
        // e.g. Microsoft's 5.1.351 "recipient not found".
        (1, _) if permanent => UserUnknown,
        _ => return None,
    };
    Some(r)
}

/// Reasons a status code can only suggest: the text is checked first and
/// wins over them.
pub fn status_is_weak(r: Reason) -> bool {
    matches!(
        r,
        Reason::SecurityError
            | Reason::SystemError
            | Reason::NetworkError
            | Reason::Expired
            | Reason::UserUnknown
            | Reason::HostUnknown
            | Reason::Blocked
            | Reason::SyntaxError
            | Reason::ContentError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_with_gaps_match_in_order_only() {
        assert!(phrase_matches(
            "user kijitora does not exist",
            "user * does not exist"
        ));
        assert!(!phrase_matches(
            "does not exist user",
            "user * does not exist"
        ));
    }

    #[test]
    fn provider_and_rfc_wordings_in_the_tables() {
        let t = |s: &str| matches(&fold(s));
        assert!(t("554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]").contains(&Reason::UserUnknown));
        assert!(t("554 Transaction failed").contains(&Reason::SystemError));
        assert!(t("554 Message rejected: Email address is not verified. The following identities failed the check").contains(&Reason::NoRelaying));
        // Bare "access denied" names no cause; the status code decides.
        assert!(!t("550 5.7.1 <a@example.org>... Access denied").contains(&Reason::Blocked));
    }

    #[test]
    fn text_decides_common_reasons() {
        let t = |s: &str| from_text(&fold(s));
        assert_eq!(
            t("550 5.1.1 <a@b>: Recipient address rejected: User unknown in local recipient table"),
            Some(Reason::UserUnknown)
        );
        assert_eq!(t("452 4.2.2 Mailbox full"), Some(Reason::MailboxFull));
        assert_eq!(
            t(
                "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"
            ),
            Some(Reason::Blocked)
        );
        assert_eq!(t("Connection timed out"), Some(Reason::Expired));
        assert_eq!(t("nothing to see"), None);
    }

    #[test]
    fn every_phrase_names_its_reason_or_an_earlier_one() {
        for (n, (reason, phrases)) in ORDER.iter().enumerate() {
            for p in phrases.iter() {
                let text = format!("a {} b", p.replace('*', " x "));
                let got = from_text(&fold(&text)).expect("a phrase matches itself");
                let at = ORDER.iter().position(|(r, _)| *r == got).expect("in ORDER");
                assert!(at <= n, "{p:?} ({reason}) read as {got}");
            }
        }
        assert!(is_vacation_text(&fold("I am out of the office")));
        assert!(!is_vacation_text(&fold("user unknown")));
    }

    #[test]
    fn status_codes_follow_rfc_3463() {
        assert_eq!(from_status("5.1.1"), Some(Reason::UserUnknown));
        assert_eq!(from_status("4.2.2"), Some(Reason::MailboxFull));
        assert_eq!(from_status("5.7.26"), Some(Reason::AuthFailure));
        assert_eq!(from_status("5.0.0"), None);
        assert_eq!(from_status("garbage"), None);
    }

    #[test]
    fn multiline_reply_prefixes_are_joined() {
        let t = fold(
            "550-5.2.1 The user is receiving mail at a rate that\n550-5.2.1 prevents additional messages. See\n550 5.2.1 https://support.example/x",
        );
        assert_eq!(
            join_reply_lines(&t),
            "550-5.2.1 the user is receiving mail at a rate that prevents additional messages. see https://support.example/x"
        );
        assert_eq!(
            join_reply_lines("550 5.1.1 user unknown"),
            "550 5.1.1 user unknown"
        );
        let bare = fold("421-mx.example busy\n421-try again\n421 later");
        assert_eq!(
            join_reply_lines(&bare),
            "421-mx.example busy try again later"
        );
    }

    #[test]
    fn switched_off_accounts_are_told_in_any_words() {
        let t = |s: &str| says_suspended(&fold(s));
        assert!(t(
            "550 5.1.1 This account has been deactivated by its owner"
        ));
        assert!(t("554 inactive mailbox: ana@example.org"));
        assert!(t("550 Mailbox ana@example.org temporarily disabled"));
        assert!(!t("550 5.7.1 Client host blocked using zen, user unknown"));
        assert!(!t("550 user unknown. the relay is locked down"));
        assert!(!t("550 5.1.1 user unknown"));
    }

    #[test]
    fn only_address_reasons_are_hard() {
        assert!(Reason::UserUnknown.is_hard(true));
        assert!(Reason::NotAccept.is_hard(true));
        assert!(!Reason::NotAccept.is_hard(false));
        assert!(!Reason::Blocked.is_hard(true));
    }
}
