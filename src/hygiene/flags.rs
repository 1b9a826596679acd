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
    pub typo: Option<String>,
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
        if let Some(s) = &self.typo {
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
    tlds: HashSet<&'static str>,
    /// Provider domains and known real domains: never typos.
    known: HashSet<&'static str>,
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
            tlds: data_lines(TLD_LIST).map(|(_, l)| l).collect(),
            known: TYPO_TARGETS.iter().chain(KNOWN_DOMAINS).copied().collect(),
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
            typo: self.typo(address.domain()),
        }
    }

    /// The domain `domain` most likely misspells (see [`typo_suggestion`]).
    pub fn typo(&self, domain: &str) -> Option<String> {
        typo_suggestion(domain, &self.known, &self.tlds)
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
    "bellsouth.net",
    "ymail.com",
];

/// Real providers (and other large domains) that sit within a typo's
/// distance of a target: never flagged.
const KNOWN_DOMAINS: &[&str] = &[
    "126.com",
    "139.com",
    "163.com",
    "188.com",
    "21cn.com",
    "2980.com",
    "abv.bg",
    "aim.com",
    "alice.it",
    "aliyun.com",
    "aol.ca",
    "aol.co.uk",
    "aol.de",
    "aol.es",
    "aol.fr",
    "aol.it",
    "arcor.de",
    "atlas.cz",
    "att.com",
    "att.net",
    "azet.sk",
    "bell.net",
    "bigpond.net.au",
    "bk.ru",
    "bluewin.ch",
    "blueyonder.co.uk",
    "bol.com.br",
    "btopenworld.com",
    "cableone.net",
    "centrum.cz",
    "centurylink.net",
    "charter.com",
    "citromail.hu",
    "clix.pt",
    "comcast.com",
    "cox.net",
    "daum.net",
    "disroot.org",
    "email.com",
    "email.cz",
    "embarqmail.com",
    "excite.com",
    "facebook.com",
    "fastmail.com",
    "fastmail.fm",
    "foxmail.com",
    "free.fr",
    "freemail.hu",
    "freenet.de",
    "frontier.com",
    "frontiernet.net",
    "gmail.co.uk",
    "gmail.de",
    "gmx.at",
    "gmx.ch",
    "gmx.co.uk",
    "gmx.com",
    "gmx.es",
    "gmx.fr",
    "gmx.info",
    "gmx.it",
    "gmx.us",
    "google.com",
    "hanmail.net",
    "hey.com",
    "hotmail.be",
    "hotmail.ca",
    "hotmail.ch",
    "hotmail.co.in",
    "hotmail.co.jp",
    "hotmail.com.ar",
    "hotmail.com.br",
    "hotmail.com.mx",
    "hotmail.de",
    "hotmail.es",
    "hotmail.it",
    "hotmail.nl",
    "hotmail.se",
    "hushmail.com",
    "ig.com.br",
    "inbox.com",
    "inbox.lv",
    "inbox.ru",
    "interia.pl",
    "iol.pt",
    "juno.com",
    "kakao.com",
    "korea.com",
    "lavabit.com",
    "libero.net",
    "list.ru",
    "live.be",
    "live.ca",
    "live.co.uk",
    "live.com.au",
    "live.de",
    "live.fr",
    "live.it",
    "live.nl",
    "live.se",
    "lycos.com",
    "mac.com",
    "mail.com",
    "mail.de",
    "mail.ee",
    "mailbox.org",
    "mailfence.com",
    "me.com",
    "nate.com",
    "naver.com",
    "netcabo.pt",
    "netscape.net",
    "netzero.com",
    "netzero.net",
    "ntlworld.com",
    "o2.pl",
    "onet.pl",
    "optimum.net",
    "orange.net",
    "outlook.co.uk",
    "outlook.com.br",
    "outlook.de",
    "outlook.es",
    "outlook.fr",
    "outlook.in",
    "outlook.it",
    "outlook.jp",
    "pm.me",
    "post.cz",
    "posteo.de",
    "proton.me",
    "protonmail.ch",
    "q.com",
    "qq.com",
    "rambler.ru",
    "rcn.com",
    "rediff.com",
    "riseup.net",
    "roadrunner.com",
    "rogers.com",
    "rr.com",
    "runbox.com",
    "sapo.pt",
    "seznam.cz",
    "sfr.fr",
    "shaw.ca",
    "sina.cn",
    "sina.com",
    "sky.com",
    "sohu.com",
    "suddenlink.net",
    "sympatico.ca",
    "talktalk.net",
    "telenet.be",
    "telus.net",
    "terra.com.br",
    "tim.it",
    "tin.it",
    "tiscali.co.uk",
    "tiscali.it",
    "tom.com",
    "tuta.io",
    "tutanota.com",
    "tutanota.de",
    "uol.com.br",
    "verizon.com",
    "videotron.ca",
    "vipmail.hu",
    "virgilio.it",
    "virginmedia.com",
    "walla.co.il",
    "wanadoo.es",
    "web.com",
    "windowslive.com",
    "windstream.net",
    "wp.pl",
    "ya.ru",
    "yahoo.ca",
    "yahoo.co.id",
    "yahoo.co.in",
    "yahoo.co.jp",
    "yahoo.com.ar",
    "yahoo.com.au",
    "yahoo.com.br",
    "yahoo.com.mx",
    "yahoo.com.ph",
    "yahoo.com.sg",
    "yahoo.de",
    "yahoo.dk",
    "yahoo.es",
    "yahoo.gr",
    "yahoo.ie",
    "yahoo.in",
    "yahoo.it",
    "yahoo.no",
    "yahoo.se",
    "yandex.by",
    "yandex.com",
    "yandex.kz",
    "yandex.ua",
    "yeah.net",
    "zoho.com",
    "zoho.eu",
    "zohomail.com",
];

/// Top-level domains of the root zone (A-labels; source in the header).
const TLD_LIST: &str = include_str!("data/tlds.txt");

/// Real top-level domains that are also common slips for `com` and `net`:
/// only a typo when the name is a big provider's (`gmail.co`).
const REAL_TLD_SLIPS: &[(&str, &str)] =
    &[("co", "com"), ("om", "com"), ("cm", "com"), ("ne", "net")];

/// Where a top-level domain that does not exist most likely meant to go.
const COMMON_TLDS: &[&str] = &["com", "net", "org", "info", "edu"];

/// The domain this one most likely misspells, if any.
///
/// - A big provider's name (one edit off at most; two for names of ten
///   letters or more; exact for two-letter names), counting a swap of
///   neighbours as one edit, under the provider's top-level domain or a slip
///   of it: `gmial.com`, `yahooo.cmo`, `gmail.co`, `comcast.nry`.
/// - Any name under a top-level domain that does not exist but is one edit
///   from `com`, `net`, `org`, `info` or `edu`: `shop.con` → `shop.com`
///   (a domain directly under the top level only: with more labels it is
///   unclear which part is wrong).
///
/// Known real domains (providers near popular ones: `ymail.com`, `gmx.de`,
/// `me.com`) are never typos, and neither is a provider's country variant
/// (`hotmail.ch` is not `hotmail.fr`).
fn typo_suggestion(
    domain: &str,
    known: &HashSet<&'static str>,
    tlds: &HashSet<&'static str>,
) -> Option<String> {
    if domain.len() > 80 || !domain.is_ascii() || known.contains(domain) {
        return None;
    }
    let (name, tld) = domain.rsplit_once('.')?;
    let tld_exists = tlds.contains(tld);
    let tld_fix: Option<&str> = if tld_exists {
        REAL_TLD_SLIPS
            .iter()
            .find(|(t, _)| *t == tld)
            .map(|&(_, f)| f)
    } else {
        COMMON_TLDS
            .iter()
            .copied()
            .find(|c| osa_distance(tld.as_bytes(), c.as_bytes(), 1) <= 1)
    };

    let mut best: Option<(usize, &'static str)> = None;
    for &target in TYPO_TARGETS {
        let Some((t_name, t_tld)) = target.rsplit_once('.') else {
            continue;
        };
        let tld_ok = t_tld == tld || tld_fix == Some(t_tld);
        if !tld_ok && tld_exists {
            continue;
        }
        let allowed = match t_name.len() {
            0..=2 => 0,
            3..=9 => 1,
            _ => 2,
        };
        if name.len().abs_diff(t_name.len()) > allowed {
            continue;
        }
        let d = osa_distance(name.as_bytes(), t_name.as_bytes(), allowed);
        if d > allowed {
            continue;
        }
        // With a top-level domain that does not exist, the provider's exact
        // name is enough whatever the slip (`comcast.nry`).
        if !(tld_ok || (d == 0 && !tld_exists)) {
            continue;
        }
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, target));
        }
    }
    if let Some((_, t)) = best {
        return Some(t.to_string());
    }
    match tld_fix {
        Some(fixed) if !tld_exists && !name.contains('.') => Some(format!("{name}.{fixed}")),
        _ => None,
    }
}

/// Optimal-string-alignment distance (Levenshtein plus transposition of
/// neighbours), giving up once every path exceeds `limit`. Rows live on the
/// stack: `b` is a provider's name or a top-level domain, always short.
fn osa_distance(a: &[u8], b: &[u8], limit: usize) -> usize {
    const MAX: usize = 31;
    let n = b.len();
    if n > MAX || a.len().abs_diff(n) > limit {
        return limit + 1;
    }
    let mut prev2 = [0usize; MAX + 1];
    let mut prev = [0usize; MAX + 1];
    let mut cur = [0usize; MAX + 1];
    for (j, p) in prev.iter_mut().enumerate().take(n + 1) {
        *p = j;
    }
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
        prev2 = prev;
        prev = cur;
    }
    prev[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    static CHECKER: std::sync::LazyLock<FlagChecker> =
        std::sync::LazyLock::new(FlagChecker::builtin);

    fn flags(a: &str) -> Flags {
        CHECKER.check(&EmailAddress::parse(a).expect("valid address"))
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

    fn typo(d: &str) -> Option<String> {
        CHECKER.typo(d)
    }

    #[test]
    fn typos_of_big_providers() {
        for (typed, meant) in [
            ("gmial.com", "gmail.com"),
            ("gmai.com", "gmail.com"),
            ("gnail.con", "gmail.com"),
            ("gmailc.om", "gmail.com"),
            ("hotmail.con", "hotmail.com"),
            ("homail.con", "hotmail.com"),
            ("yahooo.cmo", "yahoo.com"),
            ("yajoo.com", "yahoo.com"),
            ("gmail.co", "gmail.com"),
            ("outlok.com", "outlook.com"),
            ("outllok.com", "outlook.com"),
            ("hotmial.co.uk", "hotmail.co.uk"),
            ("comcast.nry", "comcast.net"),
            ("livr.com", "live.com"),
            ("gmsn.com", "msn.com"),
        ] {
            assert_eq!(typo(typed).as_deref(), Some(meant), "{typed}");
        }
    }

    #[test]
    fn top_level_domains_that_do_not_exist() {
        assert_eq!(
            typo("randomsmallcompany.cmo").as_deref(),
            Some("randomsmallcompany.com")
        );
        assert_eq!(typo("con-artists.con").as_deref(), Some("con-artists.com"));
        assert_eq!(typo("example.ogr").as_deref(), Some("example.org"));
        // Unclear which label is wrong, and real top-level domains stay.
        assert_eq!(typo("mail.randomsmallcompany.cmo"), None);
        assert_eq!(typo("emaildomain.co"), None);
        assert_eq!(typo("company.om"), None);
    }

    #[test]
    fn real_providers_are_not_typos() {
        for d in [
            "ymail.com",
            "gmx.de",
            "gmx.fr",
            "me.com",
            "mac.com",
            "msn.com",
            "googlemail.com",
            "hotmail.fr",
            "hotmail.ch",
            "att.net",
            "qq.com",
            "q.com",
            "free.fr",
            "live.com",
            "aol.com",
            "aim.com",
            "example.com",
            "gmx.com",
            "mail.com",
            "email.com",
            "yahoo.co.uk",
            "kicksend.com",
            "gmail.com",
        ] {
            assert_eq!(typo(d), None, "{d}");
        }
    }

    #[test]
    fn distance() {
        assert_eq!(osa_distance(b"gmial.com", b"gmail.com", 2), 1);
        assert_eq!(osa_distance(b"abc", b"xyz", 1), 2);
        assert_eq!(osa_distance(b"", b"ab", 5), 2);
    }
}

/// UTS #39 §5.1 mixed-script detection over each label of a domain: true
/// when no one script covers the label (Common and Inherited characters
/// fit any script; Han, Hiragana, Katakana, Hangul and Bopomofo are joined
/// as the Japanese, Korean and Chinese writing systems join them, so
/// `日本語のドメイン` is single-script). A label such as `pаypal` with a
/// Cyrillic `а` is the homoglyph a phisher registers. Pure: `address check`
/// prints it as the `mixed-script` flag.
pub fn is_mixed_script(domain: &str) -> bool {
    use icu_properties::props::Script;
    use icu_properties::script::ScriptWithExtensions;
    #[derive(Clone, Copy, PartialEq)]
    enum Key {
        S(Script),
        Jpan,
        Kore,
        Hanb,
    }
    let swe = ScriptWithExtensions::new();
    domain.split('.').any(|label| {
        let mut resolved: Option<Vec<Key>> = None;
        for ch in label.chars() {
            let scripts: Vec<Script> = swe.get_script_extensions_val(ch).iter().collect();
            if scripts
                .iter()
                .any(|s| *s == Script::Common || *s == Script::Inherited)
            {
                continue;
            }
            // UTS #39 §5.1: the augmented script set.
            let mut keys: Vec<Key> = scripts.iter().map(|s| Key::S(*s)).collect();
            for s in &scripts {
                let extra: &[Key] = match *s {
                    Script::Han => &[Key::Jpan, Key::Kore, Key::Hanb],
                    Script::Hiragana | Script::Katakana => &[Key::Jpan],
                    Script::Hangul => &[Key::Kore],
                    Script::Bopomofo => &[Key::Hanb],
                    _ => &[],
                };
                keys.extend_from_slice(extra);
            }
            let next = match resolved.take() {
                None => keys,
                Some(r) => r.into_iter().filter(|k| keys.contains(k)).collect(),
            };
            if next.is_empty() {
                return true;
            }
            resolved = Some(next);
        }
        false
    })
}

#[cfg(test)]
mod mixed_script_tests {
    use super::is_mixed_script;

    #[test]
    fn homoglyph_labels_are_mixed_script() {
        for mixed in [
            "pаypal.com",
            "gmаil.com",
            "xn--ok.gοogle.com",
            "аpple1.com",
            "ｇmail.com",
        ] {
            // Fullwidth Latin is Latin: only the first four are mixed.
            if mixed.starts_with('ｇ') {
                assert!(!is_mixed_script(mixed), "{mixed}");
            } else {
                assert!(is_mixed_script(mixed), "{mixed}");
            }
        }
        for single in [
            "gmail.com",
            "correo-1.es",
            "пример.рф",
            "пример.com",
            "日本語のドメイン.jp",
            "한국어도메인.kr",
            "müller.de",
            "ελληνικά.gr",
        ] {
            assert!(!is_mixed_script(single), "{single}");
        }
    }
}
