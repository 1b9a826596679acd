//! Campaign files: parse and validate the TOML a marketer keeps in git.
//!
//! Every error names the file, line and column of the offending value. This
//! module reads files and checks their shape; it renders nothing and sends
//! nothing (that is `render` and `send`), and it never touches the database.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use crate::config::line_col;

pub mod delivery;
pub mod timing;
use crate::segment::{Segment, SegmentError};
pub use timing::{Missed, Timing, When};

pub mod journey;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("{path}:{line}:{col}: {message}")]
    At {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
}

/// `attribution_days` when the campaign file does not say.
pub const DEFAULT_ATTRIBUTION_DAYS: u32 = 7;

/// The campaign file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    name: Spanned<String>,
    /// Stable identifier; defaults to the file name without `.toml`.
    id: Option<Spanned<String>>,
    subject: Spanned<String>,
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    /// The list whose consent this campaign relies on.
    list: Spanned<String>,
    /// A named segment from segments.toml, or an inline `[segment]` table.
    segment: Option<Spanned<SegmentField>>,
    template: Spanned<TemplateFiles>,
    #[serde(default)]
    tracking: Tracking,
    #[serde(default)]
    utm: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Days after a click in which a conversion is credited to it.
    attribution_days: Option<Spanned<i64>>,
    /// Listed in `cartero serve`'s public archive.
    #[serde(default)]
    public: bool,
    /// Mail a contact expects whatever the frequency cap (a receipt, a
    /// password reset): neither capped nor counted.
    #[serde(default)]
    transactional: bool,
    /// Per-contact delivery time: local time, quiet hours, best hour.
    delivery: Option<Spanned<delivery::DeliveryFile>>,
    /// One sentence for the archive, its feed and search engines.
    description: Option<String>,
    /// A cron expression: the campaign sends by itself on each occurrence
    /// (`cartero serve`'s scheduler; `timing.rs`).
    schedule: Option<Spanned<String>>,
    /// The IANA time zone `schedule` (or a `send_at` without offset) is in.
    timezone: Option<Spanned<String>>,
    /// One instant: the campaign sends by itself then.
    send_at: Option<Spanned<toml::value::Datetime>>,
    /// "send" (default) or "skip": an occurrence missed while cartero was down.
    missed: Option<Spanned<String>>,
    missed_after_minutes: Option<Spanned<i64>>,
    /// Steps belong to journey files (docs/JOURNEYS.md): named here only
    /// to say so at their place.
    #[serde(rename = "step")]
    steps: Option<Spanned<toml::Value>>,
}

#[derive(Debug)]
enum SegmentField {
    Named(String),
    Inline(InlineSegment),
}

/// `segment = "name"` or a `[segment]` table. Written by hand rather than
/// `#[serde(untagged)]`: untagged enums buffer their input, which loses the
/// spans toml gives `Spanned` values, and so the file:line:col of errors.
impl<'de> Deserialize<'de> for SegmentField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SegmentField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a segment name, or a [segment] table with a `filter`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SegmentField, E> {
                Ok(SegmentField::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SegmentField, A::Error> {
                InlineSegment::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(SegmentField::Inline)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineSegment {
    filter: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFiles {
    html: Spanned<String>,
    text: Option<Spanned<String>>,
}

/// Tracking switches. Opens and clicks are recorded by `cartero serve`, so
/// they take effect only with `[serve]` configured (and its `track_opens`,
/// `track_clicks`); a campaign turns either off for itself. Both default to
/// on, which is what every campaign got before the campaign's switches were
/// honoured.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    #[serde(default = "on")]
    pub opens: bool,
    #[serde(default = "on")]
    pub clicks: bool,
}

fn on() -> bool {
    true
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            opens: true,
            clicks: true,
        }
    }
}

/// Which recipients a campaign goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentSpec {
    /// Every contact subscribed to the campaign's list.
    All,
    /// A segment named in `segments.toml`.
    Named { name: String, at: Location },
    /// A filter written in the campaign file itself, already checked.
    Inline(Segment),
}

/// A place in a file, for diagnostics about a value found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: String,
    pub line: usize,
    pub col: usize,
    /// Byte offset of the value's first character inside the file.
    pub offset: usize,
}

impl Location {
    pub fn error(&self, message: impl Into<String>) -> CampaignError {
        CampaignError::At {
            path: self.path.clone(),
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

/// A campaign, checked for shape; templates and segments are resolved by
/// the stages that use them, with the locations kept here for their errors.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub path: PathBuf,
    pub slug: String,
    pub name: String,
    pub subject: String,
    pub subject_at: Location,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub list: String,
    pub list_at: Location,
    pub segment: SegmentSpec,
    pub html_template: PathBuf,
    pub html_at: Location,
    pub text_template: Option<PathBuf>,
    pub text_at: Option<Location>,
    pub tracking: Tracking,
    pub utm: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// SHA-256 of the file, to notice edits between runs.
    pub file_hash: String,
    /// A conversion is credited to the contact's last click of this
    /// campaign when it came at most this many days after it (default 7).
    pub attribution_days: u32,
    /// `public = true`: shown in the public archive, rendered for a
    /// stand-in contact (docs/SERVE.md).
    pub public: bool,
    /// `transactional = true`: outside the frequency cap.
    pub transactional: bool,
    /// `[delivery]`: when each contact's message goes out, if not at once.
    pub delivery: Option<delivery::Delivery>,
    pub description: Option<String>,
    /// `schedule` or `send_at`: when the campaign sends by itself; `None`
    /// for a campaign sent only by `cartero campaign send`.
    pub when: Option<When>,
}

/// Headers cartero writes itself; a campaign may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "return-path",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "dkim-signature",
    "feedback-id",
    // Written by cartero too (RFC 3834 §2 practice).
    "precedence",
    // Trace and authentication fields belong to the servers on the way
    // (RFC 5321 §4.4, RFC 8601 §5); a sender that forges them misleads the
    // receiver's filters.
    "received",
    "authentication-results",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
];

/// Headers a campaign may not set, by prefix: the Resent-* block is for
/// resending a message (RFC 5322 §3.6.6), never for a campaign.
const RESERVED_PREFIXES: &[&str] = &["resent-"];

/// Extra headers one campaign may set: far more than any real use, few
/// enough that checking and rendering stay instant.
const MAX_HEADERS: usize = 100;

/// RFC 5322 §2.1.1: a line is at most 998 characters without its CRLF.
const MAX_LINE: usize = 998;

const SLUG_RULE: &str = "1 to 100 ASCII letters, digits, '-', '_' or '.', starting with a letter \
                         or digit, without \"..\"";

/// A campaign id names a folder under the outbox and goes into the
/// Feedback-ID header, so it must not be able to name a path elsewhere
/// (`..`, `/`) or break a header.
fn is_safe_slug(v: &str) -> bool {
    (1..=100).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !v.contains("..")
}

impl Campaign {
    /// Reads and checks a campaign file. `templates_dir` is where template
    /// names resolve.
    pub fn load(path: &Path, templates_dir: &Path) -> Result<Self, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path, templates_dir)
    }

    /// The campaign with id `slug` in the file at `path`: the file's own
    /// campaign, or a journey's send step (`JOURNEY.STEP`). For readers that
    /// know a send's campaign by its stored id and file (view in browser).
    pub fn load_slug(path: &Path, templates_dir: &Path, slug: &str) -> Result<Self, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if !journey::is_journey(&text) {
            return Self::parse(&text, path, templates_dir);
        }
        let j = journey::Journey::parse(&text, path, templates_dir)?;
        j.step_campaign(slug).cloned().ok_or_else(|| {
            Source::new(&text, path).at(0..0).error(format!(
                "journey {:?} has no send step with the campaign id {slug:?}",
                j.slug
            ))
        })
    }

    pub fn parse(text: &str, path: &Path, templates_dir: &Path) -> Result<Self, CampaignError> {
        let src = Source::new(text, path);
        let at = |span: Range<usize>| src.at(span);
        // A journey file's own keys are checked by `journey`; before the
        // campaign's required keys, so a journey is not told it lacks `subject`.
        if let Ok(JourneyMarker { journey: Some(j) }) = toml::from_str::<JourneyMarker>(text) {
            return Err(at(j.span()).error(
                "this is a journey file ([journey]): check it with `cartero journey check`; \
                 it is sent by its steps, not as a campaign",
            ));
        }
        let file: CampaignFile = src.deserialize()?;
        if let Some(j) = &file.steps {
            return Err(at(j.span()).error(
                "`[[step]]` belongs to a journey file, which needs a [journey] table (docs/JOURNEYS.md)",
            ));
        }

        let slug = slug_of(&at, file.id.as_ref(), path)?;
        if file.name.get_ref().trim().is_empty() {
            return Err(at(file.name.span()).error("`name` is empty"));
        }
        let from = mailbox(&at, &file.from, "from")?;
        let reply_to = file
            .reply_to
            .as_ref()
            .map(|r| mailbox(&at, r, "reply_to"))
            .transpose()?;
        if file.list.get_ref().trim().is_empty() {
            return Err(at(file.list.span()).error("`list` is empty"));
        }
        let subject = check_subject(&at, &file.subject)?;

        let segment = match &file.segment {
            None => SegmentSpec::All,
            Some(s) => match s.get_ref() {
                SegmentField::Named(name) => SegmentSpec::Named {
                    name: name.clone(),
                    at: at(s.span()),
                },
                SegmentField::Inline(inline) => SegmentSpec::Inline(Segment::parse_in_toml(
                    &format!("{slug} (inline)"),
                    &inline.filter,
                    path,
                    text,
                )?),
            },
        };

        let template = file.template.get_ref();
        let html_template = resolve_template(&at, templates_dir, &template.html)?;
        let text_template = template
            .text
            .as_ref()
            .map(|t| resolve_template(&at, templates_dir, t))
            .transpose()?;
        let utm = check_utm(&at, &file.utm)?;
        let headers = check_headers(&at, &file.headers)?;
        let attribution_days = check_attribution_days(&at, file.attribution_days.as_ref())?;
        let delivery = file
            .delivery
            .as_ref()
            .map(|d| delivery::parse(d.get_ref(), at, at(d.span())))
            .transpose()?;
        let when = timing::parse(timing::Keys {
            schedule: file
                .schedule
                .as_ref()
                .map(|v| (v.get_ref().as_str(), at(v.span()))),
            timezone: file
                .timezone
                .as_ref()
                .map(|v| (v.get_ref().as_str(), at(v.span()))),
            send_at: file.send_at.as_ref().map(|v| (v.get_ref(), at(v.span()))),
            missed: file
                .missed
                .as_ref()
                .map(|v| (v.get_ref().as_str(), at(v.span()))),
            missed_after_minutes: file
                .missed_after_minutes
                .as_ref()
                .map(|v| (*v.get_ref(), at(v.span()))),
        })?;

        Ok(Campaign {
            path: path.to_path_buf(),
            slug,
            name: file.name.into_inner(),
            subject,
            subject_at: at(file.subject.span()),
            from,
            reply_to,
            list: file.list.get_ref().trim().to_string(),
            list_at: at(file.list.span()),
            segment,
            html_at: at(template.html.span()),
            html_template,
            text_at: template.text.as_ref().map(|t| at(t.span())),
            text_template,
            tracking: file.tracking,
            utm,
            headers,
            file_hash: file_hash(text),
            attribution_days,
            public: file.public,
            transactional: file.transactional,
            delivery,
            description: file.description,
            when,
        })
    }
}

/// Only whether a file has a `[journey]` table, and where.
#[derive(Deserialize)]
struct JourneyMarker {
    journey: Option<Spanned<toml::Value>>,
}

/// A file's text and name, for locations of its values. Campaign and
/// journey files share it, so both report file:line:col the same way.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub path: String,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str, path: &Path) -> Self {
        Source {
            text,
            path: path.display().to_string(),
        }
    }

    pub fn at(&self, span: Range<usize>) -> Location {
        let (line, col) = line_col(self.text, span.start);
        Location {
            path: self.path.clone(),
            line,
            col,
            offset: span.start,
        }
    }

    /// The file as `T`; a TOML error (syntax, unknown key, wrong type) at
    /// its place.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, CampaignError> {
        toml::from_str(self.text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| line_col(self.text, s.start))
                .unwrap_or((1, 1));
            CampaignError::At {
                path: self.path.clone(),
                line,
                col,
                message: e.message().trim().to_string(),
            }
        })
    }
}

type At<'a> = dyn Fn(Range<usize>) -> Location + 'a;

/// The campaign's id: `id` when given, else the file name without `.toml`.
pub(crate) fn slug_of(
    at: &At<'_>,
    id: Option<&Spanned<String>>,
    path: &Path,
) -> Result<String, CampaignError> {
    match id {
        Some(id) => {
            let v = id.get_ref();
            if !is_safe_slug(v) {
                return Err(at(id.span())
                    .error(format!("`id` {v:?} is not a safe identifier: {SLUG_RULE}")));
            }
            Ok(v.clone())
        }
        None => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "campaign".into());
            if !is_safe_slug(&stem) {
                return Err(at(0..0).error(format!(
                    "the file name {stem:?} cannot be the campaign's id ({SLUG_RULE}); \
                     set `id` in the file"
                )));
            }
            Ok(stem)
        }
    }
}

pub(crate) fn mailbox(
    at: &At<'_>,
    v: &Spanned<String>,
    key: &str,
) -> Result<Mailbox, CampaignError> {
    v.get_ref().parse::<Mailbox>().map_err(|e| {
        at(v.span()).error(format!(
            "`{key}` is not a valid address ({e}): {:?}",
            v.get_ref()
        ))
    })
}

pub(crate) fn check_subject(at: &At<'_>, v: &Spanned<String>) -> Result<String, CampaignError> {
    let subject = v.get_ref();
    if subject.trim().is_empty() {
        return Err(at(v.span()).error("`subject` is empty"));
    }
    if subject.contains(['\r', '\n']) {
        return Err(at(v.span()).error("`subject` must be one line"));
    }
    Ok(subject.clone())
}

/// A template name, resolved inside `templates_dir`.
pub(crate) fn resolve_template(
    at: &At<'_>,
    templates_dir: &Path,
    v: &Spanned<String>,
) -> Result<PathBuf, CampaignError> {
    let name = v.get_ref();
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(at(v.span()).error(format!(
            "template {name:?} must be a path inside the templates folder"
        )));
    }
    let full = templates_dir.join(rel);
    if !full.is_file() {
        return Err(at(v.span()).error(format!(
            "template {name:?} not found (looked for {})",
            full.display()
        )));
    }
    // A symbolic link (of the file or of a folder on the way) is
    // followed only to a file inside the templates folder: a link
    // to /etc/passwd must not be mailed. The resolved path is what
    // the renderer reads.
    let real = std::fs::canonicalize(&full)
        .and_then(|f| Ok((f, std::fs::canonicalize(templates_dir)?)))
        .map_err(|e| at(v.span()).error(format!("template {name:?}: {e}")))?;
    if !real.0.starts_with(&real.1) {
        return Err(at(v.span()).error(format!(
            "template {name:?} is a link to {}, outside the templates folder {}",
            real.0.display(),
            real.1.display()
        )));
    }
    Ok(real.0)
}

pub(crate) fn check_utm(
    at: &At<'_>,
    utm: &BTreeMap<String, Spanned<String>>,
) -> Result<Vec<(String, String)>, CampaignError> {
    let mut out = Vec::new();
    for (k, v) in utm {
        let key = match k.as_str() {
            "source" | "medium" | "campaign" | "term" | "content" => format!("utm_{k}"),
            other => {
                return Err(at(v.span()).error(format!(
                    "unknown UTM parameter {other:?}: use source, medium, campaign, term or content"
                )));
            }
        };
        out.push((key, v.get_ref().clone()));
    }
    Ok(out)
}

pub(crate) fn check_headers(
    at: &At<'_>,
    headers: &BTreeMap<Spanned<String>, Spanned<String>>,
) -> Result<Vec<(String, String)>, CampaignError> {
    let mut out = Vec::new();
    if headers.len() > MAX_HEADERS {
        let (k, _) = headers.iter().nth(MAX_HEADERS).expect("counted");
        return Err(at(k.span()).error(format!("a campaign may set at most {MAX_HEADERS} headers")));
    }
    for (k, v) in headers {
        let name = k.get_ref();
        let valid_name = !name.is_empty()
            && name.len() <= 76
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name {
            return Err(at(k.span()).error(format!("{name:?} is not a valid header name")));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(at(k.span()).error(format!(
                "header {name:?} is written by cartero or the servers on the way, and cannot be set here"
            )));
        }
        if RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
            return Err(at(k.span()).error(format!(
                "header {name:?}: Resent-* fields are for resending, not for a campaign"
            )));
        }
        let value = v.get_ref();
        if value.contains(['\r', '\n']) {
            return Err(at(v.span()).error(format!("header {name:?} must be one line")));
        }
        if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(at(v.span()).error(format!(
                "header {name:?} holds the control character {:?}",
                c
            )));
        }
        // "Name: value" on one line; cartero does not fold custom values.
        if name.len() + 2 + value.len() > MAX_LINE {
            return Err(at(v.span()).error(format!(
                "header {name:?} is longer than {MAX_LINE} characters on its line (RFC 5322 §2.1.1)"
            )));
        }
        out.push((name.clone(), v.get_ref().clone()));
    }
    Ok(out)
}

pub(crate) fn check_attribution_days(
    at: &At<'_>,
    d: Option<&Spanned<i64>>,
) -> Result<u32, CampaignError> {
    match d {
        None => Ok(DEFAULT_ATTRIBUTION_DAYS),
        Some(d) => match u32::try_from(*d.get_ref()) {
            Ok(v) if (1..=365).contains(&v) => Ok(v),
            _ => Err(at(d.span()).error(format!(
                "`attribution_days` must be a whole number of days from 1 to 365, not {}",
                d.get_ref()
            ))),
        },
    }
}

/// SHA-256 of a file's text, to notice edits between runs.
pub(crate) fn file_hash(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_templates() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("a.html"),
            "<p>Hi {{ contact.first_name }}</p>",
        )
        .unwrap();
        d
    }

    const GOOD: &str = r#"name = "Spring"
subject = "Hello {{ contact.first_name }}"
from = "Shop <news@shop.example>"
list = "newsletter"
segment = "spain"

[template]
html = "a.html"

[utm]
source = "cartero"

[headers]
X-Campaign = "spring"
"#;

    proptest::proptest! {
        /// Campaign files come from people's editors: any text, and any
        /// small edit of a good file, gives a campaign or an error that
        /// names the file, never a panic.
        #[test]
        fn any_edit_of_a_campaign_file_parses_or_names_the_file(
            edits in proptest::collection::vec((0usize..400, 0u8..4, proptest::char::any()), 0..6),
            junk in "\\PC{0,80}",
        ) {
            let d = dir_with_templates();
            let mut text: Vec<char> = GOOD.chars().collect();
            for (at, kind, ch) in edits {
                let at = at % (text.len() + 1);
                match kind {
                    0 => text.insert(at, ch),
                    1 if at < text.len() => { text.remove(at); }
                    2 if at < text.len() => text[at] = ch,
                    _ => text.insert(at, ['"', '[', ']', '=', '\n', '{', '}'][at % 7]),
                }
            }
            let text: String = text.into_iter().collect();
            for input in [text.as_str(), junk.as_str()] {
                if let Err(e) = Campaign::parse(input, Path::new("campaigns/spring.toml"), d.path()) {
                    let msg = e.to_string();
                    proptest::prop_assert!(msg.contains("spring.toml"), "{}", msg);
                }
            }
        }
    }

    #[test]
    fn parses_a_campaign() {
        let d = dir_with_templates();
        let c = Campaign::parse(GOOD, Path::new("campaigns/spring.toml"), d.path()).unwrap();
        assert_eq!(c.slug, "spring");
        assert_eq!(c.from.email.to_string(), "news@shop.example");
        assert_eq!(c.utm, vec![("utm_source".into(), "cartero".into())]);
        assert!(matches!(c.segment, SegmentSpec::Named { ref name, .. } if name == "spain"));
        assert_eq!(
            c.headers,
            vec![("X-Campaign".to_string(), "spring".to_string())]
        );
    }

    #[test]
    fn inline_segment_errors_point_into_the_file() {
        let d = dir_with_templates();
        let text = GOOD.replace(
            "segment = \"spain\"\n",
            "[segment]\nfilter = 'attributes.country == \"ES\" and nosuchfield > 3'\n",
        );
        let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:6:"), "{e}");
        assert!(e.contains("nosuchfield"), "{e}");
        let ok = GOOD.replace(
            "segment = \"spain\"\n",
            "[segment]\nfilter = 'attributes.country == \"ES\"'\n",
        );
        let c = Campaign::parse(&ok, Path::new("c.toml"), d.path()).unwrap();
        assert!(matches!(c.segment, SegmentSpec::Inline(_)));
    }

    #[test]
    fn unknown_key_points_at_it() {
        let d = dir_with_templates();
        let text = GOOD.replace("list = ", "lsit = \"x\"\nlist = ");
        let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:4:1:"), "{e}");
        assert!(e.contains("lsit"), "{e}");
    }

    #[test]
    fn missing_template_points_at_the_value() {
        let d = dir_with_templates();
        let text = GOOD.replace("\"a.html\"", "\"nope.html\"");
        let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:8:8:"), "{e}");
        assert!(e.contains("nope.html"), "{e}");
    }

    #[test]
    fn ids_that_could_name_a_path_are_refused_at_their_place() {
        let d = dir_with_templates();
        for bad in ["..", ".", "../x", "a/b", ".hidden", "a..b", "", "x y"] {
            let text = format!("id = {bad:?}\n{GOOD}");
            let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("c.toml:1:6:"), "{bad:?}: {e}");
            assert!(e.contains("not a safe identifier"), "{e}");
        }
        let c = Campaign::parse(
            &format!("id = \"spring-2027.v2\"\n{GOOD}"),
            Path::new("c.toml"),
            d.path(),
        )
        .unwrap();
        assert_eq!(c.slug, "spring-2027.v2");
        let e = Campaign::parse(GOOD, Path::new("campaigns/..toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("set `id`"), "{e}");
    }

    #[test]
    fn template_links_must_stay_inside_the_templates_folder() {
        let d = dir_with_templates();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "root:x:0:0").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("evil.html"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a.html"), d.path().join("alias.html")).unwrap();
        for name in ["evil.html", "dir/secret"] {
            let text = GOOD.replace("a.html", name);
            let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("c.toml:8:8:"), "{e}");
            assert!(e.contains("outside the templates folder"), "{e}");
        }
        // A link that stays inside is fine, and resolved.
        let text = GOOD.replace("a.html", "alias.html");
        let c = Campaign::parse(&text, Path::new("c.toml"), d.path()).unwrap();
        assert!(c.html_template.ends_with("a.html"));
    }

    #[test]
    fn reserved_headers_and_bad_addresses_are_refused() {
        let d = dir_with_templates();
        let text = GOOD.replace("X-Campaign", "List-Unsubscribe");
        let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("written by cartero"), "{e}");
        for (name, value) in [
            ("Precedence", "list"),
            ("Resent-From", "x@y.example"),
            ("Authentication-Results", "mx; dkim=pass"),
            ("Received", "from x"),
            ("DKIM-Signature", "v=1"),
            ("Return-Path", "<x@y.example>"),
        ] {
            let text = GOOD.replace("X-Campaign = \"spring\"", &format!("{name} = {value:?}"));
            let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("c.toml:14:1:"), "{name}: {e}");
        }
        // TOML escapes, written into the file as text.
        for value in [
            "\"a\\u001B[2Jb\"".to_string(),
            "\"a\\u0000b\"".into(),
            format!("\"{}\"", "x".repeat(990)),
        ] {
            let text = GOOD.replace("\"spring\"", &value);
            let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("c.toml:14:14:"), "{e}");
        }
        let many: String = (0..101).map(|i| format!("X-H{i:03} = \"v\"\n")).collect();
        let text = GOOD.replace("X-Campaign = \"spring\"\n", &many);
        let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 100 headers"), "{e}");
        let text = GOOD.replace("news@shop.example", "not an address");
        let e = Campaign::parse(&text, Path::new("c.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:3:8:"), "{e}");
        let text = GOOD.replace("a.html", "../a.html");
        assert!(Campaign::parse(&text, Path::new("c.toml"), d.path()).is_err());
    }
}
