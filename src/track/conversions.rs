//! Conversions: `POST /api/events` (a shop's server reports a purchase
//! with an API key) and `GET /api/events/postback` (a signed URL for shops
//! that can only fire a URL). Each conversion is stored once per order id
//! (a unique constraint, so a retry or a second node agrees) and credited
//! to the contact's last click within that campaign's attribution window.
//!
//! Amounts are decimal strings turned into minor units by integer
//! arithmetic (no floating point). Every refusal is a 4xx JSON object
//! naming the field, and changes nothing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::Mac;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::domain::EmailAddress;
use crate::domain::time::Millis;
use crate::store::conversions::{self as repo, ApiKey, KeyRole, NewConversion};

/// A refusal: status, the field at fault, what is wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    field: &'static str,
    message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        field,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(
            self.status,
            &serde_json::json!({ "error": self.message, "field": self.field }),
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!("events API: database error: {e}");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            field: "database",
            message: "the event could not be recorded just now; retry later".into(),
        }
    }
}

/// A JSON answer, never cached.
pub(super) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

// ------------------------------------------------------------ keys

/// A new key: what to hand to the shop once (`ck_<prefix>_<secret>`) and
/// what is stored (the prefix and the SHA-256 of the whole key).
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

pub fn new_key() -> NewKey {
    use rand::RngCore;
    let mut p = [0u8; 6];
    let mut s = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut p);
    rand::rngs::OsRng.fill_bytes(&mut s);
    let prefix: String = p.iter().map(|b| format!("{b:02x}")).collect();
    let secret: String = s.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("ck_{prefix}_{secret}");
    let hash = hash_key(&key);
    NewKey { key, prefix, hash }
}

pub(super) fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret a shop signs postback URLs with: derived from the signing
/// secret (`sender.secret`) and the key's prefix, so the server needs to
/// store nothing more and revoking the key revokes its postbacks.
pub fn postback_secret(signing_secret: &[u8], prefix: &str) -> String {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(signing_secret).expect("any key length");
    m.update(b"cartero postback v1\0");
    m.update(prefix.as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `sig` of a postback query (everything before `&sig=`).
pub fn postback_sig(postback_secret: &str, query: &str) -> String {
    let mut m =
        hmac::Hmac::<Sha256>::new_from_slice(postback_secret.as_bytes()).expect("any key length");
    m.update(query.as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn key_for(s: &AppState, prefix: &str) -> Result<ApiKey, ApiError> {
    let unauthorized = || ApiError {
        status: StatusCode::UNAUTHORIZED,
        field: "authorization",
        message: "unknown or revoked API key".into(),
    };
    if prefix.len() != 12 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unauthorized());
    }
    let k = repo::key_by_prefix(&s.app.store, prefix)
        .await?
        .ok_or_else(unauthorized)?;
    // An admin key opens the admin pages only: it records no conversion.
    if k.revoked_at.is_some() || k.role()? != KeyRole::Conversions {
        return Err(unauthorized());
    }
    Ok(k)
}

async fn authorize(s: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let missing = || ApiError {
        status: StatusCode::UNAUTHORIZED,
        field: "authorization",
        message: "send the API key as `Authorization: Bearer KEY`".into(),
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let key = value.strip_prefix("Bearer ").ok_or_else(missing)?.trim();
    let prefix = key
        .strip_prefix("ck_")
        .and_then(|r| r.split_once('_'))
        .map(|(p, _)| p)
        .ok_or_else(missing)?;
    let k = key_for(s, prefix).await?;
    if !ct_eq(hash_key(key).as_bytes(), k.secret_hash.as_bytes()) {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            field: "authorization",
            message: "unknown or revoked API key".into(),
        });
    }
    Ok(k)
}

// ------------------------------------------------------------ input

/// A conversion as received, before checking.
#[derive(Debug, Default)]
struct Input {
    kind: Option<String>,
    contact: Option<String>,
    order_id: Option<String>,
    value: Option<String>,
    currency: Option<String>,
    time: Option<String>,
}

/// A checked conversion.
#[derive(Debug, PartialEq, Eq)]
struct Checked {
    kind: String,
    contact_id: Option<i64>,
    email: Option<EmailAddress>,
    order_id: String,
    value_minor: i64,
    currency: String,
    at: Option<Millis>,
}

/// ISO 4217 codes in use, with their minor units (2 unless listed in
/// `MINOR_UNITS`).
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP \
GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW \
KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN \
NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS \
SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD \
XOF XPF YER ZAR ZMW ZWL";

const MINOR_UNITS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

fn minor_units(currency: &str) -> Option<u32> {
    if currency.len() != 3 || !CURRENCIES.split_whitespace().any(|c| c == currency) {
        return None;
    }
    Some(
        MINOR_UNITS
            .iter()
            .find(|(c, _)| *c == currency)
            .map_or(2, |(_, u)| *u),
    )
}

/// "12.30" in EUR → 1230. Digits, one optional point, at most the
/// currency's minor units after it; no sign, no exponent, no float.
fn to_minor(value: &str, units: u32, currency: &str) -> Result<i64, ApiError> {
    if value.starts_with('-') {
        return Err(bad("value", "must not be negative"));
    }
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if int.is_empty()
        || int.len() > 15
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (value.contains('.') && frac.is_empty())
    {
        return Err(bad(
            "value",
            format!("{value:?} is not a decimal amount such as \"12.30\""),
        ));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() as u32 > units {
        return Err(bad(
            "value",
            format!("{value:?} has more decimals than {currency} has ({units})"),
        ));
    }
    let mut minor: i64 = int.parse().map_err(|_| bad("value", "is too large"))?;
    for _ in 0..units {
        minor = minor
            .checked_mul(10)
            .ok_or_else(|| bad("value", "is too large"))?;
    }
    let mut f: i64 = 0;
    for (i, d) in frac.bytes().enumerate() {
        f += i64::from(d - b'0') * 10i64.pow(units - 1 - i as u32);
    }
    minor
        .checked_add(f)
        .ok_or_else(|| bad("value", "is too large"))
}

fn check(i: Input) -> Result<Checked, ApiError> {
    let kind = i.kind.ok_or_else(|| bad("type", "is missing"))?;
    if kind.is_empty()
        || kind.len() > 64
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(bad(
            "type",
            "must be 1-64 of a-z, 0-9, _ and - (e.g. purchase)",
        ));
    }
    let order_id = i.order_id.ok_or_else(|| bad("order_id", "is missing"))?;
    if order_id.trim().is_empty() || order_id.len() > 200 || order_id.chars().any(char::is_control)
    {
        return Err(bad(
            "order_id",
            "must be 1-200 characters without control characters",
        ));
    }
    let currency = i.currency.ok_or_else(|| bad("currency", "is missing"))?;
    let units = minor_units(&currency).ok_or_else(|| {
        bad(
            "currency",
            format!("{currency:?} is not an ISO 4217 code in use (upper case, e.g. EUR)"),
        )
    })?;
    let value = i.value.ok_or_else(|| bad("value", "is missing"))?;
    let value_minor = to_minor(value.trim(), units, &currency)?;
    let contact = i
        .contact
        .ok_or_else(|| bad("contact", "is missing (a contact id or address)"))?;
    let (contact_id, email) = if contact.contains('@') {
        (
            None,
            Some(EmailAddress::parse(&contact).map_err(|e| bad("contact", e.to_string()))?),
        )
    } else {
        (
            Some(
                contact
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| bad("contact", "is neither a contact id nor an address"))?,
            ),
            None,
        )
    };
    let at = match i.time {
        None => None,
        Some(t) => {
            let dt =
                ::time::OffsetDateTime::parse(&t, &::time::format_description::well_known::Rfc3339)
                    .map_err(|_| bad("time", format!("{t:?} is not an RFC 3339 time")))?;
            Some((dt.unix_timestamp_nanos() / 1_000_000) as Millis)
        }
    };
    Ok(Checked {
        kind,
        contact_id,
        email,
        order_id,
        value_minor,
        currency,
        at,
    })
}

/// A JSON scalar as text: strings as they are, numbers in the digits they
/// were written with (integers exactly; serde_json prints a decimal in the
/// shortest form that reads back, which is what was sent for any amount
/// with up to 15 digits; strings are the documented form).
fn scalar(v: &serde_json::Value, field: &'static str) -> Result<Option<String>, ApiError> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(bad(field, "must be a string or a number")),
    }
}

fn from_json(body: &[u8]) -> Result<Input, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("body", "is not UTF-8"))?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad("body", format!("is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("body", "must be a JSON object"))?;
    let get = |k: &'static str| -> Result<Option<String>, ApiError> {
        obj.get(k).map_or(Ok(None), |v| scalar(v, k))
    };
    Ok(Input {
        kind: get("type")?,
        contact: get("contact")?,
        order_id: get("order_id")?,
        value: get("value")?,
        currency: get("currency")?,
        time: get("time")?,
    })
}

async fn record(
    s: &AppState,
    key: &ApiKey,
    c: Checked,
    via: &'static str,
) -> Result<Response, ApiError> {
    let now = s.app.clock.now();
    let at = c.at.unwrap_or(now);
    let contact_id = repo::contact_id(&s.app.store, c.contact_id, c.email.as_ref()).await?;
    let attribution = match contact_id {
        Some(id) => {
            repo::last_click(
                &s.app.store,
                id,
                at,
                crate::campaign::DEFAULT_ATTRIBUTION_DAYS,
            )
            .await?
        }
        None => None,
    };
    let inserted = repo::insert(
        &s.app.store,
        &NewConversion {
            order_id: &c.order_id,
            kind: &c.kind,
            contact_id,
            value_minor: c.value_minor,
            currency: &c.currency,
            occurred_at: at,
            received_at: now,
            api_key_id: key.id,
            via,
            attribution: attribution.clone(),
        },
    )
    .await?;
    repo::touch_key(&s.app.store, key.id, now).await?;
    let body = match inserted {
        None => {
            s.metrics
                .conversions_duplicate
                .fetch_add(1, Ordering::Relaxed);
            serde_json::json!({ "status": "duplicate", "order_id": c.order_id })
        }
        Some(id) => {
            s.metrics
                .conversions_recorded
                .fetch_add(1, Ordering::Relaxed);
            serde_json::json!({
                "status": "recorded",
                "id": id,
                "contact_found": contact_id.is_some(),
                "campaign_id": attribution.as_ref().map(|a| a.campaign_id),
                "link": attribution.as_ref().and_then(|a| a.link.clone()),
            })
        }
    };
    Ok(json(StatusCode::OK, &body))
}

/// POST /api/events
pub(super) async fn post_event(
    State(s): State<AppState>,
    ConnectInfo(_peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let key = authorize(&s, &headers).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("application/json") {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: "content-type",
            message: "send application/json".into(),
        });
    }
    let body = Bytes::from_request(req, &s).await.map_err(|_| ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        field: "body",
        message: format!(
            "is larger than {} bytes (serve.max_body_bytes) or cannot be read",
            s.app.settings.max_body_bytes
        ),
    })?;
    let checked = check(from_json(&body)?)?;
    record(&s, &key, checked, "api").await
}

/// GET /api/events/postback?key=PREFIX&type=...&order_id=...&value=...&currency=...&contact=...[&time=...]&sig=HEX
///
/// A GET that changes state, on purpose and only this one: shops that can
/// only fire a URL cannot POST. It is safe because the URL is not a link
/// anyone follows by accident: `sig` is an HMAC-SHA256 of everything before
/// `&sig=` under the key's postback secret, so only the shop can make one,
/// a scanner replaying it changes nothing (the order id is recorded once),
/// and an altered parameter fails the signature.
pub(super) async fn postback(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.ok_or_else(|| bad("key", "is missing"))?;
    let (signed, sig) = query
        .rsplit_once("&sig=")
        .ok_or_else(|| bad("sig", "is missing (it must be the last parameter)"))?;
    let mut input = Input::default();
    let mut prefix = None;
    for (k, v) in form_urlencoded::parse(signed.as_bytes()) {
        let v = Some(v.into_owned());
        match k.as_ref() {
            "key" => prefix = v,
            "type" => input.kind = v,
            "contact" => input.contact = v,
            "order_id" => input.order_id = v,
            "value" => input.value = v,
            "currency" => input.currency = v,
            "time" => input.time = v,
            _ => return Err(bad("query", format!("unknown parameter {k:?}"))),
        }
    }
    let prefix = prefix.ok_or_else(|| bad("key", "is missing"))?;
    let key = key_for(&s, &prefix).await?;
    let expected = postback_sig(
        &postback_secret(s.app.settings.keys.current_secret(), &prefix),
        signed,
    );
    if !ct_eq(expected.as_bytes(), sig.to_ascii_lowercase().as_bytes()) {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            field: "sig",
            message: "the signature does not match the parameters".into(),
        });
    }
    let checked = check(input)?;
    record(&s, &key, checked, "postback").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_minor_units_without_floats() {
        assert_eq!(to_minor("12.30", 2, "EUR").unwrap(), 1230);
        assert_eq!(to_minor("0.1", 2, "EUR").unwrap(), 10);
        assert_eq!(to_minor("19.99", 2, "EUR").unwrap(), 1999);
        assert_eq!(to_minor("1500", 0, "JPY").unwrap(), 1500);
        assert_eq!(to_minor("1.234", 3, "KWD").unwrap(), 1234);
        assert_eq!(to_minor("5.000", 0, "JPY").unwrap(), 5);
        assert!(to_minor("1.5", 0, "JPY").is_err());
        assert!(to_minor("1.234", 2, "EUR").is_err());
        assert!(to_minor("-1", 2, "EUR").is_err());
        assert!(to_minor("1e3", 2, "EUR").is_err());
        assert!(to_minor("1.", 2, "EUR").is_err());
        assert!(to_minor(".5", 2, "EUR").is_err());
        assert!(to_minor("99999999999999999", 2, "EUR").is_err());
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert_eq!(minor_units("EUR"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("eur"), None);
        assert_eq!(minor_units("XYZ"), None);
        assert_eq!(minor_units("EURO"), None);
    }

    #[test]
    fn keys_hash_and_postbacks_sign() {
        let k = new_key();
        assert!(k.key.starts_with(&format!("ck_{}_", k.prefix)));
        assert_eq!(hash_key(&k.key), k.hash);
        assert_eq!(k.prefix.len(), 12);
        let secret = postback_secret(b"s", &k.prefix);
        let sig = postback_sig(&secret, "key=x&order_id=1");
        assert_ne!(sig, postback_sig(&secret, "key=x&order_id=2"));
    }
}
