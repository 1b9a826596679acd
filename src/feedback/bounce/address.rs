//! Mail addresses as bounces write them: `rfc822; <a@b>`, `<a@b>:`,
//! `"a@b"`, `mailto:a@b`, bare in prose. Finds and cleans them; it does not
//! validate them (that is `domain::EmailAddress`, applied by the caller).

use std::collections::HashSet;

/// The address in a DSN address field (RFC 3464 §2.3.1: `address-type ;
/// generic-address`), without brackets or quotes.
pub fn from_typed(value: &str) -> Option<String> {
    let v = match value.split_once(';') {
        Some((t, rest)) if !t.contains('@') => rest,
        _ => value,
    };
    if let Some(a) = find_all(v).into_iter().next() {
        return Some(a);
    }
    let v = clean(v);
    (!v.is_empty() && !v.contains(' ')).then_some(v)
}

fn clean(v: &str) -> String {
    v.trim()
        .trim_matches(|c: char| {
            matches!(
                c,
                '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '.' | ' '
            )
        })
        .to_string()
}

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
}

fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// Every address-looking token in the text, lower-cased, in order, without
/// duplicates. A token must have a local part and a dotted domain.
///
/// Linear in the text: each `@` looks back over its local part and forward
/// over its domain, and neither run can cross another `@`.
pub fn find_all(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (at, _) in text.match_indices('@') {
        let before = &text[..at];
        let mut start = at;
        if before.ends_with('"') && at > 1 {
            // A quoted local part (RFC 5321 §4.1.2 Quoted-string), e.g.
            // "john..doe"@example.org: keep the quotes, they are part of it.
            let inner = &before[..before.len() - 1];
            let window: usize = inner
                .char_indices()
                .rev()
                .take(65)
                .last()
                .map_or(inner.len(), |(i, _)| i);
            if let Some(q) = inner[window..].rfind('"').map(|q| q + window)
                && !inner[q + 1..].contains(['\n', '<', '>'])
            {
                start = q;
            }
        } else {
            for (i, c) in before.char_indices().rev() {
                if !is_local_char(c) {
                    break;
                }
                start = i;
            }
        }
        let after = &text[at + 1..];
        let dlen = after
            .char_indices()
            .find(|&(_, c)| !is_domain_char(c))
            .map_or(after.len(), |(i, _)| i);
        if start == at || dlen == 0 {
            continue;
        }
        let local = &text[start..at];
        let domain = &after[..dlen];
        // An RFC 2047 encoded word written as a local part (some clients
        // put one there) is kept whole, its `=` included; elsewhere a
        // leading `=`, `.`, `'` or `/` is debris of the text around it.
        let encoded_word = local.starts_with("=?") && local.ends_with("?=") && local.len() > 4;
        let local = if local.starts_with('"') || encoded_word {
            local
        } else {
            local.trim_start_matches(['.', '\'', '=', '/'])
        };
        let domain = domain.trim_end_matches(['.', '-', '_']);
        if local.is_empty() || !domain.contains('.') || domain.starts_with('.') {
            continue;
        }
        // `mailto:` and `rfc822;` prefixes are not part of the local part
        // but the scan stops at `:` and `;` already.
        let addr = format!("{local}@{domain}").to_lowercase();
        if seen.insert(addr.clone()) {
            out.push(addr);
        }
    }
    out
}

/// The addresses of the mailboxes the text names: like `find_all`, but an
/// address written as the display name of another (`a@example.com
/// <b@example.net>`, RFC 5322 §3.4 `name-addr`) is only a name; the
/// angle-bracketed address is the mailbox.
pub fn mailboxes(text: &str) -> Vec<String> {
    let all = find_all(text);
    // A name-addr pairs two addresses; a line listing many is a list, and
    // checking each against the others would cost their count squared.
    if all.len() < 2 || all.len() > 16 {
        return all;
    }
    let low = text.to_lowercase();
    all.into_iter()
        .filter(|a| {
            !["", "\"", "'"].iter().any(|q| {
                low.match_indices(&format!("{a}{q} <")).any(|(i, m)| {
                    find_all(&low[i + m.len()..]).first().is_some_and(|next| {
                        next != a && low[i + m.len()..].starts_with(next.as_str())
                    })
                })
            })
        })
        .collect()
}

/// The address of a From/To style header value (`Name <a@b>` or `a@b`).
pub fn first_in(value: &str) -> Option<String> {
    find_all(value).into_iter().next()
}

/// Local parts that belong to mail systems, never to a bounced person.
/// (`postmaster` can bounce like any mailbox; the caller excludes the
/// reporting system's own postmaster.)
pub fn is_system(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("");
    matches!(
        local,
        "mailer-daemon" | "mail-daemon" | "maildaemon" | "mailerdaemon" | "mailer_daemon"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_lose_their_type_and_brackets() {
        assert_eq!(
            from_typed("rfc822; <Kijitora@Example.jp>"),
            Some("kijitora@example.jp".into())
        );
        assert_eq!(
            from_typed("rfc822;neko@example.org"),
            Some("neko@example.org".into())
        );
        assert_eq!(from_typed("rfc822; localonly"), Some("localonly".into()));
        assert_eq!(from_typed(""), None);
    }

    #[test]
    fn quoted_and_percent_local_parts_are_kept() {
        assert_eq!(
            find_all("550 5.1.1 <\"neko..nyaan\"@example.org>... User Unknown"),
            vec!["\"neko..nyaan\"@example.org".to_string()]
        );
        assert_eq!(
            find_all("for <a%b.example@relay.example>;"),
            vec!["a%b.example@relay.example".to_string()]
        );
    }

    #[test]
    fn an_address_as_display_name_is_not_the_mailbox() {
        assert_eq!(
            mailboxes("kijitora@example.com <neko@example.net>: malformed address"),
            vec!["neko@example.net".to_string()]
        );
        assert_eq!(
            mailboxes("\"a@example.com\" <b@example.net>, c@example.org"),
            vec!["b@example.net".to_string(), "c@example.org".to_string()]
        );
        assert_eq!(
            mailboxes("a@example.com and b@example.net"),
            vec!["a@example.com".to_string(), "b@example.net".to_string()]
        );
    }

    #[test]
    fn an_encoded_word_local_part_keeps_its_equals_signs() {
        assert_eq!(
            find_all("Final-Recipient: rfc822; =?utf-8?B?44Gt44GT?=@example.jp"),
            vec!["=?utf-8?b?44gt44gt?=@example.jp".to_string()]
        );
        assert_eq!(
            find_all("<=kijitora@example.jp>"),
            vec!["kijitora@example.jp".to_string()]
        );
    }

    #[test]
    fn source_routes_and_percent_hacks_give_the_mailbox() {
        // RFC 5321 §4.1.2 source route: the mailbox follows the colon.
        assert_eq!(
            find_all("<@relay.example.net:kijitora@example.jp>"),
            vec!["kijitora@example.jp".to_string()]
        );
        assert_eq!(
            from_typed("rfc822; @relay1.example,@relay2.example:neko@example.org"),
            Some("neko@example.org".into())
        );
    }

    #[test]
    fn prose_addresses_are_found() {
        assert_eq!(
            find_all("<a@example.org>: host mx said: mailto:b@example.net, c@localhost."),
            vec!["a@example.org".to_string(), "b@example.net".to_string()]
        );
    }
}
