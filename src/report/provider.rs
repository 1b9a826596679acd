//! Mailbox providers by recipient domain: the big ones each have their own
//! limits and filters, so deliverability is read per provider. The map is
//! by domain only: a company domain hosted by Google or Microsoft counts as
//! "Other" (its MX records would say; they are not consulted here).

/// The provider of a recipient domain.
pub fn of_domain(domain: &str) -> &'static str {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let base = |names: &[&str]| {
        names.iter().any(|n| {
            d == *n
                || d.starts_with(&format!("{n}.")) && {
                    // a public suffix: com, fr, co.uk, com.br
                    let rest: Vec<&str> = d[n.len() + 1..].split('.').collect();
                    rest.len() <= 2 && rest.iter().all(|l| !l.is_empty() && l.len() <= 3)
                }
        })
    };
    if base(&["gmail", "googlemail"]) || d == "google.com" {
        "Google"
    } else if base(&["outlook", "hotmail", "live", "msn", "windowslive"]) || d == "passport.com" {
        "Microsoft"
    } else if base(&["yahoo", "ymail", "rocketmail", "aol", "aim"]) {
        "Yahoo"
    } else if d == "icloud.com" || d == "me.com" || d == "mac.com" {
        "Apple"
    } else if base(&["gmx", "web"]) && (d.starts_with("gmx.") || d == "web.de") {
        "GMX/Web.de"
    } else if d == "orange.fr" || d == "wanadoo.fr" {
        "Orange"
    } else if base(&["mail", "yandex", "ya"])
        && (d == "mail.ru" || d.starts_with("yandex.") || d == "ya.ru")
    {
        "Yandex/Mail.ru"
    } else if d == "proton.me" || d == "protonmail.com" || d == "pm.me" {
        "Proton"
    } else if d == "comcast.net" {
        "Comcast"
    } else {
        "Other"
    }
}

#[cfg(test)]
mod tests {
    use super::of_domain;

    #[test]
    fn domains_map_to_their_provider() {
        for (d, p) in [
            ("gmail.com", "Google"),
            ("googlemail.com", "Google"),
            ("GMAIL.COM", "Google"),
            ("outlook.com", "Microsoft"),
            ("hotmail.co.uk", "Microsoft"),
            ("live.fr", "Microsoft"),
            ("yahoo.com", "Yahoo"),
            ("yahoo.co.jp", "Yahoo"),
            ("aol.com", "Yahoo"),
            ("icloud.com", "Apple"),
            ("example.org", "Other"),
            ("gmail.example.org", "Other"),
            ("notgmail.com", "Other"),
        ] {
            assert_eq!(of_domain(d), p, "{d}");
        }
    }
}
