//! `EmailAddress`: an address that passed cartero's syntax policy, parsed
//! once at the edge (CLI argument, CSV row, form) and trusted everywhere after.
//!
//! The policy is the practical one of Python's email-validator (no
//! deliverability check, SMTPUTF8 allowed) plus the RFC 5321 §4.5.3.1.1 limit
//! of 64 octets for the local part: a dot-atom local part (RFC 5322 §3.2.3,
//! widened to UTF-8 by RFC 6531 §3.3), a host name domain (RFC 1123 §2.1)
//! that passes UTS-46 mapping and IDNA2008 (RFC 5891), and none of quoted
//! local parts, address literals, comments, folding white space, display
//! names, special-use domains (RFC 6761) or unsafe Unicode. See
//! docs/ADDRESSES.md. This module does no I/O and knows no other module of
//! cartero; risk flags (role, disposable, typo) live in `hygiene::flags`.

mod idna2008;

use std::borrow::Cow;
use std::fmt;

use icu_normalizer::uts46::Uts46MapperBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;
use unicode_normalization::UnicodeNormalization;

/// Why an address was rejected. The messages follow email-validator's so an
/// operator reading a rejects file sees the familiar wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("an email address must have an @-sign")]
    NoAt,
    #[error("the email address has a look-alike of the @-sign ({0}) instead of a regular @-sign")]
    LookalikeAt(char),
    #[error("there must be something before the @-sign")]
    EmptyLocal,
    #[error("there must be something after the @-sign")]
    EmptyDomain,
    #[error("quoting the part before the @-sign is not allowed")]
    Quoted,
    #[error("a display name and angle brackets around the email address are not allowed")]
    DisplayName,
    #[error("a bracketed IP address after the @-sign is not allowed")]
    DomainLiteral,
    #[error(
        "the part after the @-sign is a special-use or reserved name that cannot be used with email"
    )]
    SpecialUse,
    #[error("the email address contains unsafe characters: {0}")]
    Unsafe(String),
    #[error("the email address is too long {0}")]
    TooLong(String),
    #[error("invalid local part: {0}")]
    Local(String),
    #[error("invalid domain: {0}")]
    Domain(String),
}

/// A valid address: local part as written (NFC), domain lower-cased Unicode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    normalized: String,
    at: usize,
    ascii: Option<String>,
}

/// RFC 5321 §4.5.3.1.1.
const LOCAL_MAX_OCTETS: usize = 64;
/// RFC 5321 §4.5.3.1.3 with RFC 3696 errata 1690: a path of 256 octets
/// holds an address of at most 254.
const ADDRESS_MAX_OCTETS: usize = 254;
/// RFC 1035 §2.3.4, less the final dot and root label.
const DOMAIN_MAX_OCTETS: usize = 253;
/// RFC 1035 §2.3.1.
const LABEL_MAX_OCTETS: usize = 63;

/// RFC 2142 mailbox names, which are case-insensitive: the normalised form
/// lower-cases them (as email-validator does) so `PostMaster@` and
/// `postmaster@` are one contact.
const CASE_INSENSITIVE_MAILBOXES: [&str; 15] = [
    "info",
    "marketing",
    "sales",
    "support",
    "abuse",
    "noc",
    "security",
    "postmaster",
    "hostmaster",
    "usenet",
    "news",
    "webmaster",
    "www",
    "uucp",
    "ftp",
];

/// RFC 6761 and RFC 7686 special-use names (and `.arpa`, RFC 3172): mail to
/// them can never be delivered on the public Internet.
const SPECIAL_USE_DOMAINS: [&str; 6] = ["arpa", "invalid", "local", "localhost", "onion", "test"];

/// RFC 5322 §3.2.3 atext, without the dot.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        // The first @ splits: neither part may hold another one unquoted,
        // and quoted local parts are refused anyway.
        let Some(at) = input.find('@') else {
            if input.contains('<') {
                return Err(AddressError::DisplayName);
            }
            for lookalike in ['＠', '﹫'] {
                if input.contains(lookalike) {
                    return Err(AddressError::LookalikeAt(lookalike));
                }
            }
            return Err(AddressError::NoAt);
        };
        let (local_in, domain_in) = (&input[..at], &input[at + 1..]);
        if local_in.starts_with('"') {
            return Err(AddressError::Quoted);
        }
        if local_in.contains('<') {
            return Err(AddressError::DisplayName);
        }

        let local = parse_local(local_in)?;
        let domain = parse_domain(domain_in)?;

        let local_ascii = local.is_ascii();
        let unicode_domain = domain.unicode.as_deref().unwrap_or(&domain.ascii);
        let mut normalized = String::with_capacity(local.len() + 1 + unicode_domain.len());
        normalized.push_str(&local);
        normalized.push('@');
        normalized.push_str(unicode_domain);
        let ascii = local_ascii.then(|| match &domain.unicode {
            None => normalized.clone(),
            Some(_) => format!("{local}@{}", domain.ascii),
        });

        // email-validator checks three forms of the address against the
        // 254-octet limit: the input, the normalised form and the form with
        // an IDNA ASCII domain (which an SMTP client without SMTPUTF8 sends).
        let ascii_len = local.len() + 1 + domain.ascii.len();
        for (len, what) in [
            (input.len(), ""),
            (normalized.len(), "after normalization "),
            (ascii_len, "when the domain is converted to IDNA ASCII "),
        ] {
            if len > ADDRESS_MAX_OCTETS {
                return Err(AddressError::TooLong(format!(
                    "{what}({} bytes too many)",
                    len - ADDRESS_MAX_OCTETS
                )));
            }
        }

        Ok(Self {
            at: local.len(),
            normalized,
            ascii,
        })
    }

    /// The normalised form: the key contacts are deduplicated by.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }
    pub fn local(&self) -> &str {
        &self.normalized[..self.at]
    }
    /// Lower-cased, Unicode form of the domain.
    pub fn domain(&self) -> &str {
        &self.normalized[self.at + 1..]
    }
    /// The all-ASCII form (domain in punycode); `None` when the local part
    /// needs SMTPUTF8 (RFC 6531).
    pub fn ascii(&self) -> Option<&str> {
        self.ascii.as_deref()
    }
    /// The domain as sent on the wire without SMTPUTF8: IDNA ASCII (punycode).
    pub fn ascii_domain(&self) -> Cow<'_, str> {
        match &self.ascii {
            Some(a) => Cow::Borrowed(&a[self.at + 1..]),
            None => {
                let d = self.domain();
                if d.is_ascii() {
                    Cow::Borrowed(d)
                } else {
                    // The domain passed IDNA when it was parsed, so this
                    // cannot fail; fall back to the Unicode form if it did.
                    Cow::Owned(
                        d.split('.')
                            .map(|l| {
                                if l.is_ascii() {
                                    l.to_string()
                                } else {
                                    idna::punycode::encode_str(l)
                                        .map(|p| format!("xn--{p}"))
                                        .unwrap_or_else(|| l.to_string())
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("."),
                    )
                }
            }
        }
    }
    pub fn requires_smtputf8(&self) -> bool {
        self.ascii.is_none()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How a character is shown in an error message: itself when printable,
/// else its code point.
fn show(c: char) -> String {
    if c.is_control() || c.is_whitespace() || !is_visible(c) {
        format!("U+{:04X}", c as u32)
    } else {
        format!("{c:?}")
    }
}

fn is_visible(c: char) -> bool {
    use GeneralCategory as G;
    !matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        G::Control
            | G::Format
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::NonspacingMark
            | G::EnclosingMark
            | G::SpacingMark
    )
}

fn list(chars: impl Iterator<Item = char>) -> String {
    let mut v: Vec<char> = chars.collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().map(show).collect::<Vec<_>>().join(", ")
}

/// The local part, NFC-normalised, or why not.
fn parse_local(local: &str) -> Result<Cow<'_, str>, AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    check_local_form(local)?;
    if local.len() > LOCAL_MAX_OCTETS {
        return Err(AddressError::Local(format!(
            "the part before the @-sign is too long ({} bytes, at most {LOCAL_MAX_OCTETS})",
            local.len()
        )));
    }
    let mut out = if local.is_ascii() {
        Cow::Borrowed(local)
    } else {
        // RFC 6532 §3.1: UTF-8 addresses should be in NFC. The normalised
        // form must itself be a valid local part.
        let nfc: String = local.nfc().collect();
        if nfc != local {
            check_local_form(&nfc)
                .map_err(|e| AddressError::Local(format!("after Unicode normalization: {e}")))?;
            if nfc.len() > LOCAL_MAX_OCTETS {
                return Err(AddressError::Local(format!(
                    "the part before the @-sign is too long after Unicode normalization ({} bytes, at most {LOCAL_MAX_OCTETS})",
                    nfc.len()
                )));
            }
        }
        Cow::Owned(nfc)
    };
    if out.len() <= 10
        && out.is_ascii()
        && CASE_INSENSITIVE_MAILBOXES
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&out))
    {
        out.to_mut().make_ascii_lowercase();
    }
    Ok(out)
}

/// Dot-atom (RFC 5322 §3.2.3) over atext widened by RFC 6531 §3.3 to any
/// non-ASCII character, then email-validator's unsafe-Unicode rule.
fn check_local_form(local: &str) -> Result<(), AddressError> {
    let bytes = local.as_bytes();
    let ascii_ok = bytes.iter().all(|&b| b == b'.' || is_atext(b) || b >= 0x80);
    if !ascii_ok {
        let bad = list(
            local
                .chars()
                .filter(|&c| c.is_ascii() && c != '.' && !is_atext(c as u8)),
        );
        return Err(AddressError::Local(format!(
            "the email address contains invalid characters before the @-sign: {bad}"
        )));
    }
    if local.starts_with('.') {
        return Err(AddressError::Local(
            "an email address cannot start with a period".into(),
        ));
    }
    if local.ends_with('.') {
        return Err(AddressError::Local(
            "an email address cannot have a period immediately before the @-sign".into(),
        ));
    }
    if local.contains("..") {
        return Err(AddressError::Local(
            "an email address cannot have two periods in a row".into(),
        ));
    }
    if !local.is_ascii() {
        check_unsafe(local)?;
    }
    Ok(())
}

/// email-validator's unsafe-character rule: letters, marks (not first),
/// numbers, punctuation and symbols only. Spaces, line and paragraph
/// separators, controls, format characters (bidi overrides among them),
/// private-use, surrogates and unassigned code points could make the address
/// display as another one, or mean nothing.
fn check_unsafe(s: &str) -> Result<(), AddressError> {
    use GeneralCategory as G;
    let gc = CodePointMapData::<GeneralCategory>::new();
    let mut bad = Vec::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii() && !c.is_ascii_control() && c != ' ' {
            continue;
        }
        match gc.get(c) {
            // A mark first would combine with whatever precedes the address.
            G::NonspacingMark | G::SpacingMark | G::EnclosingMark if i == 0 => bad.push(c),
            G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::Control
            | G::Format
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned => bad.push(c),
            _ => {}
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(AddressError::Unsafe(list(bad.into_iter())))
    }
}

struct Domain {
    /// Lower-case Unicode (U-labels), the normalised form, when it differs
    /// from the ASCII form.
    unicode: Option<String>,
    /// IDNA ASCII (A-labels).
    ascii: String,
}

fn domain_err(msg: impl Into<String>) -> AddressError {
    AddressError::Domain(msg.into())
}

fn parse_domain(domain: &str) -> Result<Domain, AddressError> {
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.starts_with('[') && domain.ends_with(']') {
        return Err(AddressError::DomainLiteral);
    }
    let chars = domain.chars().count();
    if chars > DOMAIN_MAX_OCTETS {
        return Err(AddressError::TooLong(format!(
            "after the @-sign ({} characters too many)",
            chars - DOMAIN_MAX_OCTETS
        )));
    }
    check_host_chars(domain, "")?;

    let ascii: String;
    if domain.is_ascii() {
        // UTS-46 maps ASCII by lower-casing only.
        ascii = domain.to_ascii_lowercase();
        check_host_dots(&ascii)?;
    } else {
        check_unsafe(domain)?;
        let bad: Vec<char> = domain.chars().filter(|&c| !uts46_valid_char(c)).collect();
        if !bad.is_empty() {
            return Err(domain_err(format!(
                "the part after the @-sign contains invalid characters: {}",
                list(bad.into_iter())
            )));
        }
        // UTS #46 §4 steps 1-2 (map, normalise), non-transitional, without
        // the STD3 ASCII rules: the host name rules below are stricter.
        let mapped: String = Uts46MapperBorrowed::new()
            .map_normalize(domain.chars())
            .collect();
        if mapped.contains('\u{FFFD}') {
            return Err(domain_err(
                "the part after the @-sign contains characters that IDNA does not allow",
            ));
        }
        check_host_chars(&mapped, " after Unicode normalization")?;
        check_host_dots(&mapped)?;
        let mut out = String::with_capacity(mapped.len() + 8);
        for (i, label) in mapped.split('.').enumerate() {
            if i > 0 {
                out.push('.');
            }
            if label.is_ascii() {
                check_a_label(label)?;
                out.push_str(label);
            } else {
                idna2008::check_label(label).map_err(|e| {
                    domain_err(format!("the part after the @-sign is invalid ({e})"))
                })?;
                let puny = idna::punycode::encode_str(label).ok_or_else(|| {
                    domain_err("the part after the @-sign cannot be converted to IDNA ASCII")
                })?;
                out.push_str("xn--");
                out.push_str(&puny);
            }
        }
        ascii = out;
    }

    if ascii.len() > DOMAIN_MAX_OCTETS {
        return Err(AddressError::TooLong(format!(
            "after the @-sign ({} bytes too many after IDNA encoding)",
            ascii.len() - DOMAIN_MAX_OCTETS
        )));
    }
    if let Some(label) = ascii.split('.').find(|l| l.len() > LABEL_MAX_OCTETS) {
        return Err(domain_err(format!(
            "after the @-sign, periods cannot be separated by so many characters ({} too many)",
            label.len() - LABEL_MAX_OCTETS
        )));
    }
    // ICANN forbids dotless domains for new gTLDs (2013), and every TLD
    // ends with a letter.
    if !ascii.contains('.') {
        return Err(domain_err(
            "the part after the @-sign is not valid: it should have a period",
        ));
    }
    if !ascii.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(domain_err(
            "the part after the @-sign is not valid: it is not within a valid top-level domain",
        ));
    }
    for special in SPECIAL_USE_DOMAINS {
        if ascii == special
            || (ascii.ends_with(special) && ascii[..ascii.len() - special.len()].ends_with('.'))
        {
            return Err(AddressError::SpecialUse);
        }
    }

    if !ascii.contains("xn--") {
        return Ok(Domain {
            unicode: None,
            ascii,
        });
    }
    // A-labels in the input (or produced above): decode to the canonical
    // Unicode form, which must itself be a valid IDNA2008 domain.
    let mut unicode = String::with_capacity(ascii.len());
    for (i, label) in ascii.split('.').enumerate() {
        if i > 0 {
            unicode.push('.');
        }
        unicode.push_str(&u_label(label)?);
    }
    check_host_chars(&unicode, " after IDNA decoding")?;
    check_unsafe(&unicode)?;
    // RFC 5893 §1.4: once one label holds right-to-left text, the Bidi Rule
    // applies to every label of the domain.
    if idna2008::has_rtl(&unicode) {
        for label in unicode.split('.') {
            let chars: Vec<char> = label.chars().collect();
            idna2008::check_bidi(&chars, true).map_err(|e| {
                domain_err(format!("the part after the @-sign is not valid IDNA ({e})"))
            })?;
        }
    }
    Ok(Domain {
        unicode: Some(unicode),
        ascii,
    })
}

/// RFC 1123 §2.1 letters, digits, hyphens and dots, plus any non-ASCII
/// character (RFC 6531 §3.3), which IDNA judges later.
fn check_host_chars(domain: &str, when: &str) -> Result<(), AddressError> {
    let ok = domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b >= 0x80);
    if ok {
        return Ok(());
    }
    let bad = list(
        domain
            .chars()
            .filter(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-' || c == '.')),
    );
    Err(domain_err(format!(
        "the part after the @-sign contains invalid characters{when}: {bad}"
    )))
}

/// Dots and hyphens of a host name (RFC 952, RFC 1123 §2.1), and RFC 5890
/// §2.3.1: a label with `--` in the 3rd and 4th positions is reserved unless
/// it is an `xn--` A-label.
fn check_host_dots(domain: &str) -> Result<(), AddressError> {
    if domain.starts_with('.') {
        return Err(domain_err(
            "an email address cannot have a period immediately after the @-sign",
        ));
    }
    if domain.ends_with('.') {
        return Err(domain_err("an email address cannot end with a period"));
    }
    if domain.contains("..") {
        return Err(domain_err(
            "an email address cannot have two periods in a row",
        ));
    }
    if domain.starts_with('-') {
        return Err(domain_err(
            "an email address cannot have a hyphen immediately after the @-sign",
        ));
    }
    if domain.ends_with('-') {
        return Err(domain_err("an email address cannot end with a hyphen"));
    }
    if domain.contains(".-") || domain.contains("-.") {
        return Err(domain_err(
            "an email address cannot have a period and a hyphen next to each other",
        ));
    }
    for label in domain.split('.') {
        let mut cs = label.chars();
        let (a, b, c, d) = (cs.next(), cs.next(), cs.next(), cs.next());
        if c == Some('-')
            && d == Some('-')
            && !(matches!(a, Some('x' | 'X')) && matches!(b, Some('n' | 'N')))
        {
            return Err(domain_err(
                "an email address cannot have two letters followed by two dashes immediately after the @-sign or after a period, except Punycode",
            ));
        }
    }
    Ok(())
}

/// An ASCII label inside an internationalised domain: an A-label must decode
/// to a valid U-label; any other label is plain LDH, already checked.
fn check_a_label(label: &str) -> Result<(), AddressError> {
    if label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--") {
        u_label(label)?;
    }
    Ok(())
}

/// Decodes one ASCII label: an `xn--` A-label to its U-label (RFC 5891
/// §5.4 checks applied), anything else lower-cased as is.
fn u_label(label: &str) -> Result<String, AddressError> {
    let lower = label.to_ascii_lowercase();
    let Some(puny) = lower.strip_prefix("xn--") else {
        return Ok(lower);
    };
    if puny.is_empty() {
        return Err(domain_err(
            "the part after the @-sign is not valid IDNA (malformed A-label, no Punycode eligible content found)",
        ));
    }
    if puny.ends_with('-') {
        return Err(domain_err(
            "the part after the @-sign is not valid IDNA (an A-label must not end with a hyphen)",
        ));
    }
    // RFC 3492 §6.2 copies the code points before the last delimiter; a
    // delimiter with none before it is redundant, and other decoders
    // (email-validator's among them) accept it.
    let puny = match puny.strip_prefix('-') {
        Some(rest) if !rest.contains('-') => rest,
        _ => puny,
    };
    let decoded = idna::punycode::decode_to_string(puny).ok_or_else(|| {
        domain_err("the part after the @-sign is not valid IDNA (invalid A-label)")
    })?;
    idna2008::check_label(&decoded)
        .map_err(|e| domain_err(format!("the part after the @-sign is not valid IDNA ({e})")))?;
    Ok(decoded)
}

/// Characters email-validator refuses before UTS-46 mapping, with its own
/// message rather than the IDNA library's: C1 controls, format, unassigned,
/// private-use and surrogate code points, spaces and separators (except the
/// punctuation and joiners UTS-46 maps or IDNA2008 judges in context), and
/// anything that decomposes to a sequence holding a full stop (`⒈` would
/// otherwise become `1.` and split a label).
fn uts46_valid_char(c: char) -> bool {
    use GeneralCategory as G;
    let cp = c as u32;
    if (0x80..=0x9F).contains(&cp) {
        return false;
    }
    if ((0x2010..=0x2060).contains(&cp)
        && !(0x2024..=0x2026).contains(&cp)
        && !(0x2028..=0x202E).contains(&cp))
        || matches!(cp, 0x00AD | 0x2064 | 0xFF0E)
        || (0x200B..=0x200D).contains(&cp)
        || (0x1BCA0..=0x1BCA3).contains(&cp)
    {
        return true;
    }
    if matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        G::Format
            | G::Unassigned
            | G::PrivateUse
            | G::Surrogate
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
    ) {
        return false;
    }
    // ASCII has no decompositions.
    c.is_ascii() || !std::iter::once(c).nfkd().any(|d| d == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap_or_else(|e| panic!("{s:?} should be valid: {e}"))
    }
    fn bad(s: &str) -> AddressError {
        match EmailAddress::parse(s) {
            Ok(a) => panic!("{s:?} should be invalid, got {a}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_address_keeps_local_case_and_lowers_domain() {
        let a = ok("Maria.Garcia+news@Example.COM");
        assert_eq!(a.as_str(), "Maria.Garcia+news@example.com");
        assert_eq!(a.local(), "Maria.Garcia+news");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.ascii(), Some("Maria.Garcia+news@example.com"));
        assert!(!a.requires_smtputf8());
    }

    #[test]
    fn rfc2142_names_are_lower_cased() {
        assert_eq!(
            ok("PostMaster@example.com").as_str(),
            "postmaster@example.com"
        );
        assert_eq!(ok("Info@example.com").local(), "info");
        assert_eq!(ok("Admin@example.com").local(), "Admin");
    }

    #[test]
    fn international_forms() {
        let a = ok("用户@例子.广告");
        assert!(a.requires_smtputf8());
        assert_eq!(a.ascii(), None);
        assert_eq!(a.ascii_domain(), "xn--fsqu00a.xn--4rr70v");
        let b = ok("user@XN--BCHER-KVA.example");
        assert_eq!(b.domain(), "bücher.example");
        assert_eq!(b.ascii(), Some("user@xn--bcher-kva.example"));
        let c = ok("user@BÜCHER.example");
        assert_eq!(c.as_str(), "user@bücher.example");
        // NFC: e + combining acute becomes é.
        assert_eq!(ok("jose\u{301}@example.com").local(), "josé");
    }

    #[test]
    fn practical_policy_rejections() {
        assert_eq!(bad(""), AddressError::Empty);
        assert_eq!(bad("example.com"), AddressError::NoAt);
        assert_eq!(bad("@example.com"), AddressError::EmptyLocal);
        assert_eq!(bad("user@"), AddressError::EmptyDomain);
        assert_eq!(bad("\"john doe\"@example.com"), AddressError::Quoted);
        assert_eq!(bad("user@[192.0.2.1]"), AddressError::DomainLiteral);
        assert_eq!(bad("John <john@example.com>"), AddressError::DisplayName);
        assert_eq!(bad("user@mail.test"), AddressError::SpecialUse);
        assert_eq!(
            bad("user@localhost"),
            AddressError::Domain(
                "the part after the @-sign is not valid: it should have a period".into()
            )
        );
        assert!(matches!(
            bad("john..doe@example.com"),
            AddressError::Local(_)
        ));
        assert!(matches!(bad(" user@example.com"), AddressError::Local(_)));
        assert!(matches!(bad("user@example.com "), AddressError::Domain(_)));
        assert!(matches!(
            bad("user(comment)@example.com"),
            AddressError::Local(_)
        ));
        assert!(matches!(bad("user@-example.com"), AddressError::Domain(_)));
        assert!(matches!(bad("user@ab--cd.com"), AddressError::Domain(_)));
        assert!(matches!(bad("user@example.123"), AddressError::Domain(_)));
        assert!(matches!(
            bad("user\u{202E}@example.com"),
            AddressError::Unsafe(_)
        ));
        assert!(matches!(bad("user@☃.net"), AddressError::Domain(_)));
        assert!(matches!(bad("user@xn--abc.com"), AddressError::Domain(_)));
    }

    #[test]
    fn length_limits() {
        let local64 = "a".repeat(64);
        ok(&format!("{local64}@example.com"));
        assert!(matches!(
            bad(&format!("a{local64}@example.com")),
            AddressError::Local(_)
        ));
        let label63 = "b".repeat(63);
        ok(&format!("x@{label63}.com"));
        assert!(matches!(
            bad(&format!("x@b{label63}.com")),
            AddressError::Domain(_)
        ));
        // 254 octets in all is the most (RFC 5321 §4.5.3.1.3, errata 1690).
        let l = "c".repeat(63);
        let dom = format!("{l}.{l}.{l}.{}.com", "d".repeat(50));
        let addr = format!("{}@{dom}", "e".repeat(254 - 1 - dom.len()));
        assert_eq!(addr.len(), 254);
        ok(&addr);
        assert!(EmailAddress::parse(&format!("e{addr}")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_normalized_is_a_fixed_point(s in "\\PC*") {
            if let Ok(a) = EmailAddress::parse(&s) {
                let again = EmailAddress::parse(a.as_str()).expect("normalized form re-parses");
                proptest::prop_assert_eq!(&again, &a);
                if let Some(ascii) = a.ascii() {
                    let b = EmailAddress::parse(ascii).expect("ascii form re-parses");
                    proptest::prop_assert_eq!(b.as_str(), a.as_str());
                }
            }
        }

        #[test]
        fn address_shaped_strings(local in "[a-zA-Z0-9.+_\\-\u{e0}-\u{ff}\u{300}\u{4e00}]{0,70}",
                                  domain in "[a-zA-Z0-9.\\-\u{e0}-\u{ff}\u{3002}\u{ff0e}]{0,70}") {
            let s = format!("{local}@{domain}");
            if let Ok(a) = EmailAddress::parse(&s) {
                let again = EmailAddress::parse(a.as_str()).expect("normalized form re-parses");
                proptest::prop_assert_eq!(&again, &a);
                proptest::prop_assert!(a.local().len() <= 64);
                proptest::prop_assert!(a.as_str().len() <= 254);
            }
        }

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = EmailAddress::parse(&s);
        }
    }
}
