//! Risk flags of a valid address: role account, disposable domain, likely
//! typo of a big provider's domain (with the suggested domain).
//!
//! Flags are advice for the operator and for `hygiene run`; they never make
//! an address invalid, and this module never touches the network (MX checks
//! live in `hygiene::mx`) or the database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::domain::EmailAddress;

/// Built-in disposable domains (CC0 list; source and commit in the header).
const DISPOSABLE_LIST: &str = include_str!("data/disposable_domains.txt");
/// Built-in role local parts (RFC 2142 and an MIT-licensed list; see header).
const ROLE_LIST: &str = include_str!("data/role_accounts.txt");

#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    #[error("cannot read the disposable-domain list {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {domain:?} is not a domain name")]
    BadDomain {
        path: PathBuf,
        line: usize,
        domain: String,
    },
}

/// The flags raised for one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// The local part names a role (`postmaster`, `sales`, ...), not a person.
    pub role: bool,
    /// The domain (or a parent of it) is a known throwaway-mail service.
    pub disposable: bool,
    /// The domain looks like a misspelling of this provider's domain.
    pub typo: Option<&'static str>,
}

impl Flags {
    /// The flags as the strings `address check` prints:
    /// `role`, `disposable`, `typo:<suggested domain>`.
    pub fn labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.role {
            out.push("role".to_string());
        }
        if self.disposable {
            out.push("disposable".to_string());
        }
        if let Some(s) = self.typo {
            out.push(format!("typo:{s}"));
        }
        out
    }
}

/// Checks addresses against the role list, the disposable list (built in,
/// plus an operator's file) and the provider typo rules.
#[derive(Debug, Clone)]
pub struct FlagChecker {
    roles: HashSet<&'static str>,
    disposable: HashSet<String>,
}

fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

impl Default for FlagChecker {
    fn default() -> Self {
        Self::builtin()
    }
}

impl FlagChecker {
    /// The lists shipped with the binary.
    pub fn builtin() -> Self {
        Self {
            roles: data_lines(ROLE_LIST).map(|(_, l)| l).collect(),
            disposable: data_lines(DISPOSABLE_LIST)
                .map(|(_, l)| l.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The built-in lists plus the domains of `path` (config
    /// `hygiene.disposable_list`: one domain a line, `#` comments), so a
    /// fresher copy of the list needs no rebuild.
    pub fn with_disposable_file(path: &Path) -> Result<Self, FlagsError> {
        let text = std::fs::read_to_string(path).map_err(|source| FlagsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut checker = Self::builtin();
        checker.add_disposable(&text, path)?;
        Ok(checker)
    }

    fn add_disposable(&mut self, text: &str, path: &Path) -> Result<(), FlagsError> {
        for (line, domain) in data_lines(text) {
            // Parse through the address parser so the list is held in the
            // same normalised (lower-case Unicode) form as addresses.
            let parsed =
                EmailAddress::parse(&format!("x@{domain}")).map_err(|_| FlagsError::BadDomain {
                    path: path.to_path_buf(),
                    line,
                    domain: domain.to_string(),
                })?;
            self.disposable.insert(parsed.domain().to_string());
        }
        Ok(())
    }

    pub fn check(&self, address: &EmailAddress) -> Flags {
        Flags {
            role: self.is_role(address.local()),
            disposable: self.is_disposable(address.domain()),
            typo: typo_suggestion(address.domain()),
        }
    }

    /// The whole local part, lower-cased and without a `+tag` (RFC 5233
    /// subaddress), is a role name. Matching whole names only keeps
    /// `admiral.ackbar@` or `salesforce.fan@` personal.
    pub fn is_role(&self, local: &str) -> bool {
        let base = local.split('+').next().unwrap_or(local);
        if base.len() > 40 || base.is_empty() {
            return false;
        }
        if base.bytes().any(|b| b.is_ascii_uppercase()) {
            self.roles.contains(base.to_ascii_lowercase().as_str())
        } else {
            self.roles.contains(base)
        }
    }

    /// The domain or any parent domain below the public suffix is listed:
    /// throwaway services hand out subdomains (`x.mailinator.com`).
    pub fn is_disposable(&self, domain: &str) -> bool {
        let mut d = domain;
        loop {
            if self.disposable.contains(d) {
                return true;
            }
            match d.split_once('.') {
                Some((_, rest)) if rest.contains('.') => d = rest,
                _ => return false,
            }
        }
    }
}

/// Domains of big mailbox providers that typos are measured against: the
/// ones people mistype into sign-up forms most often.
const TYPO_TARGETS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "live.com",
    "msn.com",
    "comcast.net",
    "verizon.net",
    "sbcglobal.net",
    "protonmail.com",
    "yandex.ru",
    "mail.ru",
    "hotmail.co.uk",
    "yahoo.co.uk",
    "hotmail.fr",
    "yahoo.fr",
    "orange.fr",
    "wanadoo.fr",
    "laposte.net",
    "gmx.de",
    "gmx.net",
    "web.de",
    "t-online.de",
    "libero.it",
    "btinternet.com",
    "bigpond.com",
    "rediffmail.com",
    "rocketmail.com",
    "earthlink.net",
    "charter.net",
    "optonline.net",
    "cox.net",
    "bellsouth.net",
    "ymail.com",
    "mac.com",
    "me.com",
    "qq.com",
    "163.com",
    "naver.com",
];

/// Real providers (and other large domains) that sit within a typo's
/// distance of a target: never flagged.
const KNOWN_DOMAINS: &[&str] = &[
    "126.com",
    "139.com",
    "163.com",
    "aim.com",
    "alice.it",
    "aol.co.uk",
    "aol.de",
    "aol.fr",
    "arcor.de",
    "att.net",
    "bell.net",
    "bk.ru",
    "bluewin.ch",
    "blueyonder.co.uk",
    "bol.com.br",
    "centurylink.net",
    "daum.net",
    "email.com",
    "facebook.com",
    "fastmail.com",
    "fastmail.fm",
    "free.fr",
    "freenet.de",
    "frontier.com",
    "gmail.co.uk",
    "gmx.at",
    "gmx.ch",
    "gmx.com",
    "gmx.fr",
    "gmx.us",
    "google.com",
    "hanmail.net",
    "hey.com",
    "hotmail.be",
    "hotmail.ca",
    "hotmail.com.ar",
    "hotmail.com.br",
    "hotmail.com.mx",
    "hotmail.de",
    "hotmail.es",
    "hotmail.it",
    "hotmail.nl",
    "hotmail.se",
    "icloud.com",
    "inbox.com",
    "inbox.ru",
    "juno.com",
    "list.ru",
    "live.ca",
    "live.co.uk",
    "live.de",
    "live.fr",
    "live.it",
    "live.nl",
    "mail.com",
    "mail.de",
    "me.com",
    "msn.com",
    "netzero.net",
    "ntlworld.com",
    "o2.pl",
    "onet.pl",
    "outlook.de",
    "outlook.es",
    "outlook.fr",
    "outlook.it",
    "pm.me",
    "proton.me",
    "protonmail.ch",
    "rambler.ru",
    "rogers.com",
    "seznam.cz",
    "shaw.ca",
    "sky.com",
    "sympatico.ca",
    "talktalk.net",
    "telenet.be",
    "terra.com.br",
    "tiscali.it",
    "tutanota.com",
    "uol.com.br",
    "videotron.ca",
    "virgilio.it",
    "virginmedia.com",
    "walla.co.il",
    "windstream.net",
    "wp.pl",
    "yahoo.ca",
    "yahoo.co.in",
    "yahoo.co.jp",
    "yahoo.com.ar",
    "yahoo.com.au",
    "yahoo.com.br",
    "yahoo.com.mx",
    "yahoo.de",
    "yahoo.es",
    "yahoo.in",
    "yahoo.it",
    "yandex.com",
    "yandex.ua",
    "ya.ru",
    "zoho.com",
    "zohomail.com",
];

/// Top-level domains people type for `com` and `net`.
const TLD_TYPOS: &[(&str, &str)] = &[
    ("con", "com"),
    ("cmo", "com"),
    ("ocm", "com"),
    ("cpm", "com"),
    ("vom", "com"),
    ("xom", "com"),
    ("comm", "com"),
    ("coom", "com"),
    ("c0m", "com"),
    ("om", "com"),
    ("cm", "com"),
    ("co", "com"),
    ("cim", "com"),
    ("clm", "com"),
    ("nte", "net"),
    ("ent", "net"),
    ("ne", "net"),
    ("met", "net"),
    ("nett", "net"),
    ("bet", "net"),
];

/// The provider domain this one most likely misspells, if any.
///
/// A domain is a typo when it is not a known domain, its top-level domain is
/// the target's (or a common slip of it: `con`, `cmo` for `com`), and its
/// name is the target's name or within one edit of it (two for names of ten
/// letters or more), counting a swap of neighbours as one edit. A name of
/// four letters or fewer must match exactly: one edit from `aol` or `msn` is
/// too often another real company, and a country variant of a provider
/// (`hotmail.ch`) is never a typo.
pub fn typo_suggestion(domain: &str) -> Option<&'static str> {
    if domain.len() > 60 || !domain.is_ascii() {
        return None;
    }
    if TYPO_TARGETS.contains(&domain) || KNOWN_DOMAINS.contains(&domain) {
        return None;
    }
    let (name, tld) = domain.rsplit_once('.')?;
    let fixed_tld = TLD_TYPOS
        .iter()
        .find(|(t, _)| *t == tld)
        .map_or(tld, |&(_, f)| f);
    let mut best: Option<(usize, &'static str)> = None;
    for &target in TYPO_TARGETS {
        let Some((t_name, t_tld)) = target.rsplit_once('.') else {
            continue;
        };
        if t_tld != fixed_tld {
            continue;
        }
        let allowed = match t_name.len() {
            0..=4 => 0,
            5..=9 => 1,
            _ => 2,
        };
        if name.len().abs_diff(t_name.len()) > allowed {
            continue;
        }
        let d = osa_distance(name.as_bytes(), t_name.as_bytes(), allowed);
        if d == 0 && tld == t_tld {
            // The domain is the target itself.
            return None;
        }
        if d <= allowed && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, target));
        }
    }
    best.map(|(_, t)| t)
}

/// Optimal-string-alignment distance (Levenshtein plus transposition of
/// neighbours), giving up once every path exceeds `limit`.
fn osa_distance(a: &[u8], b: &[u8], limit: usize) -> usize {
    let n = b.len();
    let mut prev2 = vec![0usize; n + 1];
    let mut prev: Vec<usize> = (0..=n).collect();
    let mut cur = vec![0usize; n + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=n {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > limit {
            return limit + 1;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(a: &str) -> Flags {
        FlagChecker::builtin().check(&EmailAddress::parse(a).expect("valid address"))
    }

    #[test]
    fn roles_match_whole_local_part_case_and_tag_insensitively() {
        assert!(flags("postmaster@example.org").role);
        assert!(flags("Sales+eu@example.org").role);
        assert!(!flags("admiral.ackbar@example.org").role);
        assert!(!flags("maria.garcia@example.org").role);
    }

    #[test]
    fn disposable_domains_and_their_subdomains() {
        assert!(flags("x@mailinator.com").disposable);
        assert!(flags("x@foo.mailinator.com").disposable);
        assert!(!flags("x@gmail.com").disposable);
    }

    #[test]
    fn typos_of_big_providers() {
        assert_eq!(typo_suggestion("gmial.com"), Some("gmail.com"));
        assert_eq!(typo_suggestion("gmai.com"), Some("gmail.com"));
        assert_eq!(typo_suggestion("hotmail.con"), Some("hotmail.com"));
        assert_eq!(typo_suggestion("yahooo.cmo"), Some("yahoo.com"));
        assert_eq!(typo_suggestion("gmail.co"), Some("gmail.com"));
        assert_eq!(typo_suggestion("outlok.com"), Some("outlook.com"));
    }

    #[test]
    fn real_providers_are_not_typos() {
        for d in [
            "ymail.com",
            "gmx.de",
            "me.com",
            "mac.com",
            "msn.com",
            "googlemail.com",
            "hotmail.fr",
            "att.net",
            "qq.com",
            "free.fr",
            "live.com",
            "aol.com",
            "example.com",
            "gmx.com",
        ] {
            assert_eq!(typo_suggestion(d), None, "{d}");
        }
    }

    #[test]
    fn distance() {
        assert_eq!(osa_distance(b"gmial.com", b"gmail.com", 2), 1);
        assert_eq!(osa_distance(b"abc", b"xyz", 1), 2);
        assert_eq!(osa_distance(b"", b"ab", 5), 2);
    }
}
