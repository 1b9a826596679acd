//! Instants are stored as milliseconds since the Unix epoch: they compare and
//! sort the same on SQLite and PostgreSQL, with no driver-specific date types.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_millis() as Millis
}

/// RFC 3339 rendering for reports and exports.
pub fn to_rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| ms.to_string()),
        Err(_) => ms.to_string(),
    }
}

/// An instant as a person types it: YYYY-MM-DD (UTC midnight), RFC 3339,
/// or a span back from `now` (`7d`, `24h`). `None` for anything else (the
/// caller names the flag or field).
pub fn parse_instant(s: &str, now: Millis) -> Option<Millis> {
    use ::time::format_description::well_known::Rfc3339;
    let s = s.trim();
    for (suffix, unit) in [("d", 24 * 3600 * 1000), ("h", 3600 * 1000)] {
        if let Some(n) = s.strip_suffix(suffix)
            && let Ok(n) = n.parse::<i64>()
        {
            return n.checked_mul(unit).and_then(|back| now.checked_sub(back));
        }
    }
    if let Ok(t) = ::time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    let fmt = ::time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = ::time::Date::parse(s, &fmt) {
        return Some((d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    None
}
