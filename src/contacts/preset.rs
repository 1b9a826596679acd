//! What the columns of another tool's export mean: Mailchimp (subscribed,
//! unsubscribed and cleaned exports), listmonk, HubSpot, Brevo, and a
//! generic CSV. A preset names each column's role; `interpret` turns a
//! row's status and consent columns into what cartero does with the row:
//! subscribe it with the source's evidence, subscribe it on the importer's
//! word, import it without consent, or import it suppressed.
//!
//! The rule that matters: a row the source marks unsubscribed, cleaned,
//! blocklisted, bounced, complained or opted out is never granted consent.
//! Unknown status values reject the row rather than guess.

use serde_json::{Map, Value};

use crate::domain::ContactStatus;
use crate::domain::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Generic,
    Mailchimp,
    Listmonk,
    Hubspot,
    Brevo,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Mailchimp => "mailchimp",
            Self::Listmonk => "listmonk",
            Self::Hubspot => "hubspot",
            Self::Brevo => "brevo",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "generic" | "csv" => Ok(Self::Generic),
            "mailchimp" => Ok(Self::Mailchimp),
            "listmonk" => Ok(Self::Listmonk),
            "hubspot" => Ok(Self::Hubspot),
            "brevo" | "sendinblue" => Ok(Self::Brevo),
            other => Err(format!(
                "unknown source {other:?}: use mailchimp, listmonk, hubspot, brevo or generic"
            )),
        }
    }

    /// The tool whose export this header looks like, from columns only that
    /// tool writes.
    pub fn detect(headers: &[String]) -> Self {
        let has = |name: &str| headers.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
        if has("Email Address")
            && (has("MEMBER_RATING") || has("OPTIN_TIME") || has("LEID") || has("EUID"))
        {
            Self::Mailchimp
        } else if has("uuid") && has("email") && has("attributes") && has("status") {
            Self::Listmonk
        } else if has("Record ID")
            || has("Unsubscribed from all email")
            || has("Portal Unsubscribe")
            || has("Portal Bounce")
        {
            Self::Hubspot
        } else if has("EMAIL")
            && (has("EMAIL_BLACKLISTED") || has("DOUBLE_OPT-IN") || has("ADDED_TIME"))
        {
            Self::Brevo
        } else {
            Self::Generic
        }
    }
}

/// Which export of a Mailchimp audience a file is; the columns say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailchimpKind {
    Subscribed,
    Unsubscribed,
    Cleaned,
}

/// Where a withdrawal applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The import's list (an audience unsubscribe); every list without one.
    List,
    /// Every list ("unsubscribed from all email", a blocklist, a complaint).
    All,
}

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Email,
    FirstName,
    LastName,
    /// One name cell (listmonk): first word to first_name, the rest to last_name.
    FullName,
    Locale,
    Timezone,
    Tags,
    /// A JSON object merged into the attributes (listmonk's `attributes`).
    JsonAttributes,
    /// A status word (generic `status`, listmonk `status`).
    Status,
    /// Yes/no: the source holds consent for this row.
    OptIn,
    /// Yes/no: the consent was double opt-in (Brevo `DOUBLE_OPT-IN`).
    DoubleOptIn,
    OptInTime,
    OptInIp,
    ConfirmTime,
    ConfirmIp,
    /// Non-empty: unsubscribed at this time (Mailchimp `UNSUB_TIME`).
    UnsubTime,
    UnsubReason,
    /// Non-empty: cleaned (hard bounced) at this time (Mailchimp `CLEAN_TIME`).
    CleanTime,
    /// Yes/no: unsubscribed from everything.
    UnsubAll,
    /// Yes/no: unsubscribed from one subscription type (HubSpot).
    UnsubList,
    /// Yes or a non-empty reason: hard bounced.
    Bounced,
    /// Yes/no: reported as spam.
    Complained,
    /// Ignored (`--skip`).
    Skip,
    /// Kept as a typed attribute.
    Attribute,
}

impl Role {
    /// `--map "E-Mail=email"`: the targets a column can be mapped to.
    pub fn parse_target(s: &str) -> Option<Self> {
        Some(match normalise(s).as_str() {
            "email" => Self::Email,
            "first_name" => Self::FirstName,
            "last_name" => Self::LastName,
            "name" => Self::FullName,
            "locale" => Self::Locale,
            "timezone" => Self::Timezone,
            "tags" => Self::Tags,
            "attributes" => Self::JsonAttributes,
            "status" => Self::Status,
            "opt_in" => Self::OptIn,
            "double_opt_in" => Self::DoubleOptIn,
            "optin_time" => Self::OptInTime,
            "optin_ip" => Self::OptInIp,
            "confirm_time" => Self::ConfirmTime,
            "confirm_ip" => Self::ConfirmIp,
            "unsub_time" => Self::UnsubTime,
            "unsub_reason" => Self::UnsubReason,
            "clean_time" => Self::CleanTime,
            "unsubscribed" => Self::UnsubAll,
            "bounced" => Self::Bounced,
            "complained" => Self::Complained,
            _ => return None,
        })
    }

    /// Roles a file may hold once at most.
    pub fn is_unique(&self) -> bool {
        !matches!(
            self,
            Self::Attribute
                | Self::Skip
                | Self::UnsubList
                | Self::Bounced
                | Self::Complained
                | Self::UnsubAll
        )
    }

    /// Columns that decide a row's status or consent evidence, whose cells
    /// are not also kept as attributes.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            Self::Status
                | Self::OptIn
                | Self::DoubleOptIn
                | Self::OptInTime
                | Self::OptInIp
                | Self::ConfirmTime
                | Self::ConfirmIp
                | Self::UnsubTime
                | Self::UnsubReason
                | Self::CleanTime
                | Self::UnsubAll
                | Self::UnsubList
                | Self::Bounced
                | Self::Complained
        )
    }
}

/// Header spelling normalised for matching: lower case, spaces and hyphens as `_`.
pub fn normalise(h: &str) -> String {
    h.trim().to_ascii_lowercase().replace([' ', '-'], "_")
}

/// The role of a column under a preset.
pub fn role_of(preset: Preset, header: &str) -> Role {
    let n = normalise(header);
    let specific = match preset {
        Preset::Mailchimp => match n.as_str() {
            "email_address" => Some(Role::Email),
            "optin_time" => Some(Role::OptInTime),
            "optin_ip" => Some(Role::OptInIp),
            "confirm_time" => Some(Role::ConfirmTime),
            "confirm_ip" => Some(Role::ConfirmIp),
            "unsub_time" => Some(Role::UnsubTime),
            "unsub_reason" => Some(Role::UnsubReason),
            "clean_time" => Some(Role::CleanTime),
            "timezone" => Some(Role::Timezone),
            "tags" => Some(Role::Tags),
            // Mailchimp's own ids of the member: of no use once moved.
            "leid" | "euid" => Some(Role::Skip),
            _ => None,
        },
        Preset::Listmonk => match n.as_str() {
            "name" => Some(Role::FullName),
            "attributes" => Some(Role::JsonAttributes),
            "status" => Some(Role::Status),
            _ => None,
        },
        Preset::Hubspot => match n.as_str() {
            "unsubscribed_from_all_email" | "portal_unsubscribe" => Some(Role::UnsubAll),
            "email_hard_bounce_reason" | "portal_bounce" | "global_bounce" => Some(Role::Bounced),
            "portal_spam_report" | "marked_as_spam" => Some(Role::Complained),
            "marketing_information" => Some(Role::UnsubList),
            _ if n.starts_with("opted_out_of_email") => Some(Role::UnsubList),
            _ => None,
        },
        Preset::Brevo => match n.as_str() {
            "email_blacklisted" => Some(Role::UnsubAll),
            "double_opt_in" => Some(Role::DoubleOptIn),
            "opt_in" => Some(Role::OptIn),
            "firstname" => Some(Role::FirstName),
            "lastname" => Some(Role::LastName),
            _ => None,
        },
        Preset::Generic => None,
    };
    if let Some(r) = specific {
        return r;
    }
    match n.as_str() {
        "email" | "email_address" | "e_mail" => Role::Email,
        "first_name" | "firstname" | "given_name" | "fname" => Role::FirstName,
        "last_name" | "lastname" | "surname" | "family_name" | "lname" => Role::LastName,
        "locale" | "language" => Role::Locale,
        "timezone" | "time_zone" | "tz" => Role::Timezone,
        "tags" => Role::Tags,
        // The generic spellings of consent and status columns.
        "status" | "subscription_status" | "email_status" if preset == Preset::Generic => {
            Role::Status
        }
        "opt_in" | "optin" | "consent" if preset == Preset::Generic => Role::OptIn,
        "optin_time" | "opt_in_time" | "consent_time" | "consent_date" | "subscribed_at"
            if preset == Preset::Generic =>
        {
            Role::OptInTime
        }
        "optin_ip" | "opt_in_ip" | "consent_ip" | "signup_ip" if preset == Preset::Generic => {
            Role::OptInIp
        }
        "confirm_time" | "confirmed_at" if preset == Preset::Generic => Role::ConfirmTime,
        "confirm_ip" | "confirmed_ip" if preset == Preset::Generic => Role::ConfirmIp,
        "unsub_time" | "unsubscribed_at" if preset == Preset::Generic => Role::UnsubTime,
        "unsub_reason" | "unsubscribe_reason" if preset == Preset::Generic => Role::UnsubReason,
        _ => Role::Attribute,
    }
}

/// Yes/no cells as the tools write them.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "x" | "oui" | "sí" | "si" | "ja" => Some(true),
        "false" | "no" | "n" | "0" | "" | "non" | "nein" => Some(false),
        _ => None,
    }
}

/// Timestamps as the tools export them: RFC 3339 (listmonk, Brevo),
/// `YYYY-MM-DD HH:MM:SS` (Mailchimp, in UTC), with optional fractions and
/// offset, `YYYY-MM-DD HH:MM`, or a date alone (midnight UTC).
pub fn parse_instant(v: &str) -> Option<Millis> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let to_ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as Millis;
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some(to_ms(t));
    }
    let with_t = v.replacen(' ', "T", 1);
    if let Ok(t) = time::OffsetDateTime::parse(&with_t, &Rfc3339) {
        return Some(to_ms(t));
    }
    // PostgreSQL's text form (listmonk): "2021-03-04 10:11:12.123456+01" or "+05:30".
    if let Ok(t) = time::OffsetDateTime::parse(
        v,
        format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory][optional [:[offset_minute]]]"
        ),
    ) {
        return Some(to_ms(t));
    }
    let naive = [
        format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
        format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    for f in naive {
        if let Ok(t) = time::PrimitiveDateTime::parse(v, f) {
            return Some(to_ms(t.assume_utc()));
        }
    }
    if let Ok(d) = time::Date::parse(v, format_description!("[year]-[month]-[day]")) {
        return Some(to_ms(d.midnight().assume_utc()));
    }
    None
}

/// Why a row is suppressed, from its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub status: ContactStatus,
    /// A withdrawal for the ledger, when the source says the person withdrew.
    pub withdraw: Option<Scope>,
    /// e.g. `mailchimp:unsubscribed`, the rule of the status change.
    pub rule: String,
    /// Human words: the source's reason and time.
    pub reason: String,
    pub at: Option<Millis>,
}

/// What a row's source says about consent.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConsent {
    /// The source carries evidence: opt-in/confirmation time or IP.
    Evidence {
        at: Option<Millis>,
        ip: Option<String>,
        details: Map<String, Value>,
    },
    /// Nothing in the file but the importer's word.
    Asserted,
    /// The source says there is no consent (opt-in "No", unconfirmed).
    Refused { why: String },
}

/// The status and consent cells of one row, by role.
#[derive(Debug, Default)]
pub struct RowSignals<'a> {
    pub status: Option<&'a str>,
    pub opt_in: Option<&'a str>,
    pub double_opt_in: Option<&'a str>,
    pub optin_time: Option<&'a str>,
    pub optin_ip: Option<&'a str>,
    pub confirm_time: Option<&'a str>,
    pub confirm_ip: Option<&'a str>,
    pub unsub_time: Option<&'a str>,
    pub unsub_reason: Option<&'a str>,
    pub clean_time: Option<&'a str>,
    /// (column header, cell)
    pub unsub_all: Vec<(&'a str, &'a str)>,
    pub unsub_list: Vec<(&'a str, &'a str)>,
    pub bounced: Vec<(&'a str, &'a str)>,
    pub complained: Vec<(&'a str, &'a str)>,
}

fn cell(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

/// A yes/no column, or a reason whose presence means yes (HubSpot's
/// "Email hard bounce reason", "Portal Bounce").
fn flag(header: &str, v: &str, reason_means_yes: bool) -> Result<bool, String> {
    match parse_bool(v) {
        Some(b) => Ok(b),
        None if reason_means_yes => Ok(true),
        None => Err(format!("column {header:?}: {v:?} is neither yes nor no")),
    }
}

/// Decides a row: its suppression (if any) and its consent.
pub fn interpret(
    preset: Preset,
    kind: Option<MailchimpKind>,
    s: &RowSignals<'_>,
) -> Result<(Option<Suppression>, SourceConsent), String> {
    let tool = preset.as_str();
    let mut found: Vec<Suppression> = Vec::new();
    let mut refused: Option<String> = None;
    let mut suppress = |status, withdraw, what: &str, reason: String, at| {
        found.push(Suppression {
            status,
            withdraw,
            rule: format!("{tool}:{what}"),
            reason,
            at,
        })
    };
    let unsub_at = cell(s.unsub_time).and_then(parse_instant);
    let unsub_words = |at_text: Option<&str>| {
        let mut r = format!("unsubscribed in {tool}");
        if let Some(t) = at_text {
            r.push_str(&format!(" at {t}"));
        }
        if let Some(why) = cell(s.unsub_reason) {
            r.push_str(&format!(" ({why})"));
        }
        r
    };
    if kind == Some(MailchimpKind::Unsubscribed) || cell(s.unsub_time).is_some() {
        suppress(
            ContactStatus::Unsubscribed,
            Some(Scope::List),
            "unsubscribed",
            unsub_words(cell(s.unsub_time)),
            unsub_at,
        );
    }
    if kind == Some(MailchimpKind::Cleaned) || cell(s.clean_time).is_some() {
        let t = cell(s.clean_time);
        suppress(
            ContactStatus::Bounced,
            None,
            "cleaned",
            format!(
                "cleaned in {tool} (hard bounce){}",
                t.map(|t| format!(" at {t}")).unwrap_or_default()
            ),
            t.and_then(parse_instant),
        );
    }
    for (h, v) in &s.unsub_all {
        if flag(h, v, false)? {
            suppress(
                ContactStatus::Unsubscribed,
                Some(Scope::All),
                "unsubscribed-all",
                format!("{h}: {} in {tool}", v.trim()),
                unsub_at,
            );
        }
    }
    for (h, v) in &s.unsub_list {
        if flag(h, v, false)? {
            suppress(
                ContactStatus::Unsubscribed,
                Some(Scope::List),
                "opted-out",
                format!("{h}: {} in {tool}", v.trim()),
                unsub_at,
            );
        }
    }
    for (h, v) in &s.bounced {
        if flag(h, v, true)? {
            suppress(
                ContactStatus::Bounced,
                None,
                "bounced",
                format!("{h}: {} in {tool}", v.trim()),
                None,
            );
        }
    }
    for (h, v) in &s.complained {
        if flag(h, v, false)? {
            // A spam report objects to all mail from the sender.
            suppress(
                ContactStatus::Complained,
                Some(Scope::All),
                "complained",
                format!("{h}: {} in {tool}", v.trim()),
                None,
            );
        }
    }
    if let Some(st) = cell(s.status) {
        let word = st.to_ascii_lowercase().replace([' ', '-'], "_");
        match word.as_str() {
            "active" | "subscribed" | "enabled" | "confirmed" | "opted_in" | "optin"
            | "single_opt_in" | "double_opt_in" => {}
            "unconfirmed" | "pending" | "non_subscribed" | "transactional" => {
                refused = Some(format!("status {st:?} in {tool}: no confirmed consent"));
            }
            "blocklisted" | "blacklisted" | "blocked" => suppress(
                ContactStatus::Unsubscribed,
                Some(Scope::All),
                "blocklisted",
                format!("{st} in {tool}"),
                unsub_at,
            ),
            "unsubscribed" | "opted_out" | "optout" | "opt_out" => suppress(
                ContactStatus::Unsubscribed,
                Some(Scope::List),
                "unsubscribed",
                unsub_words(cell(s.unsub_time)),
                unsub_at,
            ),
            // listmonk: "disabled" subscribers get no campaigns; no withdrawal recorded.
            "disabled" => suppress(
                ContactStatus::Unsubscribed,
                None,
                "disabled",
                format!("disabled in {tool}"),
                None,
            ),
            "cleaned" | "bounced" | "hard_bounce" | "hard_bounced" | "invalid" => suppress(
                ContactStatus::Bounced,
                None,
                "bounced",
                format!("{st} in {tool}"),
                None,
            ),
            "complained" | "spam" | "spam_report" | "abuse" => suppress(
                ContactStatus::Complained,
                Some(Scope::All),
                "complained",
                format!("{st} in {tool}"),
                None,
            ),
            _ => {
                return Err(format!(
                    "unknown status {st:?}: expected subscribed, unsubscribed, unconfirmed, \
                     bounced, cleaned, complained or blocklisted"
                ));
            }
        }
    }
    if let Some(v) = cell(s.opt_in) {
        match parse_bool(v) {
            Some(true) => {}
            Some(false) => refused = Some(format!("opt-in column says {v:?}")),
            None => return Err(format!("opt-in {v:?} is neither yes nor no")),
        }
    }
    // The strongest suppression decides the status (a complaint over an
    // unsubscribe over a bounce); the widest withdrawal is recorded.
    let rank = |st: ContactStatus| match st {
        ContactStatus::Complained => 3,
        ContactStatus::Unsubscribed => 2,
        _ => 1,
    };
    let withdraw = found.iter().filter_map(|f| f.withdraw).max();
    let suppression = found
        .into_iter()
        .max_by_key(|f| rank(f.status))
        .map(|mut f| {
            f.withdraw = withdraw;
            f
        });

    let consent = if let Some(why) = refused {
        SourceConsent::Refused { why }
    } else {
        let optin_at = cell(s.optin_time).and_then(parse_instant);
        let confirm_at = cell(s.confirm_time).and_then(parse_instant);
        let optin_ip = cell(s.optin_ip).map(str::to_string);
        let confirm_ip = cell(s.confirm_ip).map(str::to_string);
        let double = cell(s.double_opt_in).and_then(parse_bool);
        if optin_at.is_some() || confirm_at.is_some() || optin_ip.is_some() || confirm_ip.is_some()
        {
            let mut d = Map::new();
            let mut put = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    d.insert(k.into(), Value::from(v));
                }
            };
            put("optin_time", cell(s.optin_time));
            put("optin_ip", cell(s.optin_ip));
            put("confirm_time", cell(s.confirm_time));
            put("confirm_ip", cell(s.confirm_ip));
            let method = if confirm_at.is_some() || confirm_ip.is_some() || double == Some(true) {
                "double-opt-in"
            } else {
                "opt-in"
            };
            d.insert("source_method".into(), Value::from(method));
            SourceConsent::Evidence {
                at: confirm_at.or(optin_at),
                ip: confirm_ip.or(optin_ip),
                details: d,
            }
        } else {
            SourceConsent::Asserted
        }
    };
    Ok((suppression, consent))
}

/// Tags from a cell: Mailchimp writes `"Customer","2021 Webinar"` (a CSV
/// record inside the cell), others a plain list separated by `,` `;` or `|`.
pub fn split_tags(v: &str) -> Vec<String> {
    let v = v.trim();
    let mut tags: Vec<String> = if v.starts_with('"') {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(v.as_bytes());
        let mut rec = csv::StringRecord::new();
        match rdr.read_record(&mut rec) {
            Ok(true) => rec.iter().map(|t| t.trim().to_string()).collect(),
            _ => vec![v.trim_matches('"').to_string()],
        }
    } else {
        v.split([',', ';', '|'])
            .map(|t| t.trim().to_string())
            .collect()
    };
    tags.retain(|t| !t.is_empty());
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_detected_from_their_headers() {
        let h = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            Preset::detect(&h("Email Address,First Name,MEMBER_RATING,OPTIN_TIME")),
            Preset::Mailchimp
        );
        assert_eq!(
            Preset::detect(&h("uuid,email,name,attributes,status,created_at")),
            Preset::Listmonk
        );
        assert_eq!(
            Preset::detect(&h("Record ID,First Name,Email,Unsubscribed from all email")),
            Preset::Hubspot
        );
        assert_eq!(
            Preset::detect(&h("EMAIL,FIRSTNAME,EMAIL_BLACKLISTED")),
            Preset::Brevo
        );
        assert_eq!(Preset::detect(&h("email,first_name")), Preset::Generic);
    }

    #[test]
    fn mailchimp_tags_split_at_their_quotes() {
        assert_eq!(
            split_tags(r#""Customer","2021 Webinar, Spring""#),
            vec!["2021 Webinar, Spring", "Customer"]
        );
        assert_eq!(split_tags("vip, b2b;vip|  "), vec!["b2b", "vip"]);
        assert!(split_tags("").is_empty());
    }

    #[test]
    fn instants_in_each_tools_format() {
        let t = parse_instant("2021-03-04 10:11:12").unwrap();
        assert_eq!(t, 1614852672000);
        assert_eq!(parse_instant("2021-03-04T10:11:12Z"), Some(t));
        assert_eq!(parse_instant("2021-03-04T11:11:12+01:00"), Some(t));
        assert_eq!(parse_instant("2021-03-04 11:11:12.000000+01"), Some(t));
        assert_eq!(parse_instant("2021-03-04 10:11"), Some(t - 12_000));
        assert!(parse_instant("2021-03-04").is_some());
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn suppressed_rows_are_never_consent() {
        let s = RowSignals {
            status: Some("blocklisted"),
            ..Default::default()
        };
        let (sup, _) = interpret(Preset::Listmonk, None, &s).unwrap();
        let sup = sup.unwrap();
        assert_eq!(sup.status, ContactStatus::Unsubscribed);
        assert_eq!(sup.withdraw, Some(Scope::All));

        let s = RowSignals {
            unsub_time: Some("2021-03-04 10:11:12"),
            unsub_reason: Some("No longer interested"),
            ..Default::default()
        };
        let (sup, _) = interpret(Preset::Mailchimp, Some(MailchimpKind::Unsubscribed), &s).unwrap();
        let sup = sup.unwrap();
        assert_eq!(sup.at, Some(1614852672000));
        assert!(
            sup.reason.contains("No longer interested"),
            "{}",
            sup.reason
        );

        let s = RowSignals {
            status: Some("sort of"),
            ..Default::default()
        };
        assert!(interpret(Preset::Generic, None, &s).is_err());

        let s = RowSignals {
            opt_in: Some("No"),
            ..Default::default()
        };
        let (sup, consent) = interpret(Preset::Brevo, None, &s).unwrap();
        assert!(sup.is_none());
        assert!(matches!(consent, SourceConsent::Refused { .. }));
    }

    #[test]
    fn evidence_comes_from_the_confirmation_first() {
        let s = RowSignals {
            optin_time: Some("2021-03-04 10:00:00"),
            optin_ip: Some("192.0.2.1"),
            confirm_time: Some("2021-03-04 10:11:12"),
            confirm_ip: Some("192.0.2.2"),
            ..Default::default()
        };
        let (_, c) = interpret(Preset::Mailchimp, Some(MailchimpKind::Subscribed), &s).unwrap();
        let SourceConsent::Evidence { at, ip, details } = c else {
            panic!("evidence expected")
        };
        assert_eq!(at, Some(1614852672000));
        assert_eq!(ip.as_deref(), Some("192.0.2.2"));
        assert_eq!(details["source_method"], "double-opt-in");
    }
}
