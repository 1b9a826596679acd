//! Journey files: a trigger, then steps a contact walks through one by one
//! (wait, send, branch, tag, set an attribute, end), with exits that end the
//! walk early. A journey is a TOML file in `campaigns/` like a campaign,
//! told apart by its `[journey]` table; docs/JOURNEYS.md is the reference.
//!
//! Every error names the file, line and column, as for campaigns, and the
//! keys a journey shares with campaigns (`from`, `[tracking]`, `[utm]`,
//! `[headers]`, templates) are checked by the same functions. Each send
//! step becomes a `Campaign` of its own (id `JOURNEY.STEP`), so rendering
//! and delivery treat it as any other campaign. This module reads files
//! only: the engine that moves contacts is `schedule::journey`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Campaign, CampaignError, Location, SegmentSpec, Source, Tracking, check_attribution_days,
    check_headers, check_subject, check_utm, file_hash, mailbox, resolve_template, slug_of,
};
use crate::domain::time::Millis;
use crate::segment::{Segment, SegmentError};

/// The journey file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JourneyFile {
    name: Spanned<String>,
    id: Option<Spanned<String>>,
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    list: Spanned<String>,
    #[serde(default)]
    tracking: Tracking,
    #[serde(default)]
    utm: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<Spanned<String>, Spanned<String>>,
    attribution_days: Option<Spanned<i64>>,
    description: Option<String>,
    journey: Spanned<JourneyTable>,
    #[serde(rename = "step", default)]
    steps: Vec<Spanned<StepFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JourneyTable {
    trigger: Spanned<TriggerFile>,
    #[serde(default)]
    reentry: bool,
    #[serde(default)]
    exit: Vec<Spanned<String>>,
    conversion: Option<Spanned<String>>,
}

/// Every trigger's keys in one table: which ones a trigger takes is
/// checked by hand, so a key of another trigger is an error at its place
/// (a tagged enum would buffer the table and lose the spans).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerFile {
    on: Spanned<String>,
    list: Option<Spanned<String>>,
    event: Option<Spanned<String>>,
    attribute: Option<Spanned<String>>,
    offset: Option<Spanned<String>>,
    yearly: Option<Spanned<bool>>,
    segment: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
    days: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    id: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    wait_until: Option<Spanned<String>>,
    send: Option<Spanned<SendFile>>,
    branch: Option<Spanned<BranchFile>>,
    tag: Option<Spanned<String>>,
    untag: Option<Spanned<String>>,
    set: Option<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
    end: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendFile {
    subject: Spanned<String>,
    html: Spanned<String>,
    text: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    reply_to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchFile {
    #[serde(rename = "if")]
    condition: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
    segment: Option<Spanned<String>>,
    then: Option<Spanned<String>>,
    #[serde(rename = "else")]
    otherwise: Option<Spanned<String>>,
}

/// What enrols a contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A consent grant for the list (an import, a form, an operator).
    ListJoined { list: String },
    /// A double opt-in sign-up to the list was confirmed.
    SignupConfirmed { list: String },
    /// An event of this kind reached the events API (`purchase`, ...).
    Event { kind: String },
    /// The day a date attribute (`YYYY-MM-DD...`) falls on, moved by
    /// `offset_days` (`-7`: a week before); every year on the month and
    /// day when `yearly`.
    Date {
        attribute: String,
        offset_days: i64,
        yearly: bool,
    },
    /// The contact matches the segment (those matching when the journey
    /// starts are enrolled at its first tick).
    Segment(Segment),
    /// No open or click (nor sign-up) for this many days, after mail that
    /// could have seen one.
    NoEngagement { days: u32 },
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::ListJoined { .. } => "list_joined",
            Trigger::SignupConfirmed { .. } => "signup_confirmed",
            Trigger::Event { .. } => "event",
            Trigger::Date { .. } => "date",
            Trigger::Segment(_) => "segment",
            Trigger::NoEngagement { .. } => "no_engagement",
        }
    }
}

/// What a branch asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A human open of the contact's last message in this journey.
    Opened,
    /// A click in the contact's last message in this journey.
    Clicked,
    /// An event of the journey's `conversion` kind since the contact entered.
    Purchased,
    /// The contact matches the filter (the segment language), now.
    Matches(Segment),
}

/// One step's action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Wait this long (ms) from arriving at the step.
    Wait(Millis),
    /// Wait until the next time the clock shows this minute of the day at
    /// `offset_minutes` from UTC.
    WaitUntil {
        minute: u32,
        offset_minutes: i32,
    },
    /// Send the step's message: a campaign of its own.
    Send(Box<Campaign>),
    /// Go to `then` when the condition holds, else to `otherwise` (step
    /// indices; `steps.len()` is the end).
    Branch {
        condition: Condition,
        then: usize,
        otherwise: usize,
    },
    Tag(String),
    Untag(String),
    /// Set these attributes (JSON values) on the contact.
    Set(Vec<(String, serde_json::Value)>),
    /// Leave the journey, completed.
    End,
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Wait(_) => "wait",
            Action::WaitUntil { .. } => "wait_until",
            Action::Send(_) => "send",
            Action::Branch { .. } => "branch",
            Action::Tag(_) => "tag",
            Action::Untag(_) => "untag",
            Action::Set(_) => "set",
            Action::End => "end",
        }
    }

    fn waits(&self) -> bool {
        matches!(self, Action::Wait(_) | Action::WaitUntil { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Stable name of the step: a contact's position is stored by it, so
    /// an edited journey keeps its contacts where they were.
    pub id: String,
    pub action: Action,
    pub at: Location,
}

/// A journey, checked.
#[derive(Debug, Clone)]
pub struct Journey {
    pub path: PathBuf,
    pub slug: String,
    pub name: String,
    pub list: String,
    pub trigger: Trigger,
    /// A contact may enter again after leaving.
    pub reentry: bool,
    /// Leave when an event of the `conversion` kind arrives after entering.
    pub exit_on_conversion: bool,
    /// The event kind that counts as a purchase or a conversion.
    pub conversion: String,
    pub steps: Vec<Step>,
    pub description: Option<String>,
    pub file_hash: String,
}

/// Longest wait a step may name: a year and a day.
const MAX_WAIT: Millis = 366 * DAY;
const DAY: Millis = 24 * 3600 * 1000;
const STEP_ID_RULE: &str =
    "1 to 40 ASCII letters, digits, '-' or '_', starting with a letter or digit";

fn is_step_id(v: &str) -> bool {
    (1..=40).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether a campaign file is a journey (has a `[journey]` table).
pub fn is_journey(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Marker {
        journey: Option<toml::Value>,
    }
    matches!(
        toml::from_str::<Marker>(text),
        Ok(Marker { journey: Some(_) })
    )
}

impl Journey {
    pub fn load(path: &Path, templates_dir: &Path) -> Result<Self, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path, templates_dir)
    }

    /// The send step whose campaign id is `slug`.
    pub fn step_campaign(&self, slug: &str) -> Option<&Campaign> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::Send(c) if c.slug == slug => Some(&**c),
            _ => None,
        })
    }

    /// The index of the step called `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    pub fn parse(text: &str, path: &Path, templates_dir: &Path) -> Result<Self, CampaignError> {
        let src = Source::new(text, path);
        let at = |span: std::ops::Range<usize>| src.at(span);
        let file: JourneyFile = src.deserialize()?;
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
        let list = file.list.get_ref().trim().to_string();
        if list.is_empty() {
            return Err(at(file.list.span()).error("`list` is empty"));
        }
        let utm = check_utm(&at, &file.utm)?;
        let headers = check_headers(&at, &file.headers)?;
        let attribution_days = check_attribution_days(&at, file.attribution_days.as_ref())?;
        let hash = file_hash(text);
        let segments_file = path
            .parent()
            .unwrap_or(Path::new("."))
            .join("segments.toml");
        let filter = |name: &str, f: Option<&Spanned<String>>, named: Option<&Spanned<String>>| {
            filter_of(name, f, named, &segments_file, path, text, &at)
        };

        let table = file.journey.get_ref();
        let trigger = trigger_of(&table.trigger, &list, &at, &filter)?;
        let conversion = match &table.conversion {
            None => "purchase".to_string(),
            Some(c) => {
                let v = c.get_ref().trim();
                if v.is_empty() || v.len() > 64 {
                    return Err(at(c.span()).error(
                        "`conversion` is an event kind such as \"purchase\" (1 to 64 characters)",
                    ));
                }
                v.to_string()
            }
        };
        let mut exit_on_conversion = false;
        for e in &table.exit {
            match e.get_ref().as_str() {
                // Always an exit: a journey mails only contacts on its list.
                "unsubscribed" => {}
                "converted" => exit_on_conversion = true,
                other => {
                    return Err(at(e.span()).error(format!(
                        "unknown exit {other:?}: use \"unsubscribed\" or \"converted\""
                    )));
                }
            }
        }
        if table.reentry && matches!(trigger, Trigger::Segment(_)) {
            return Err(at(table.trigger.span()).error(
                "a segment trigger cannot allow re-entry: a contact who stays in the segment \
                 would enter again at every tick; use reentry = false",
            ));
        }

        if file.steps.is_empty() {
            return Err(at(file.journey.span()).error("a journey needs at least one [[step]]"));
        }
        // Ids first: branches name later steps.
        let mut ids: Vec<String> = Vec::with_capacity(file.steps.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, s) in file.steps.iter().enumerate() {
            let id = match &s.get_ref().id {
                Some(id) => {
                    let v = id.get_ref();
                    if !is_step_id(v) || v == "end" {
                        return Err(at(id.span()).error(format!(
                            "step id {v:?} is not valid: {STEP_ID_RULE}, and not \"end\""
                        )));
                    }
                    if let Some(first) = seen.get(v) {
                        return Err(at(id.span()).error(format!(
                            "step id {v:?} is used twice (first by step {})",
                            first + 1
                        )));
                    }
                    v.clone()
                }
                None => format!("step-{}", i + 1),
            };
            seen.insert(id.clone(), i);
            ids.push(id);
        }
        if seen.len() != ids.len() {
            // An explicit id equal to another step's default one.
            let dup = ids
                .iter()
                .enumerate()
                .find(|(i, id)| seen.get(*id) != Some(i))
                .map(|(i, _)| i)
                .unwrap_or(0);
            return Err(at(file.steps[dup].span()).error(format!(
                "step {} is called {:?}, as another step is: give it an `id`",
                dup + 1,
                ids[dup]
            )));
        }
        let target = |v: &Spanned<String>| -> Result<usize, CampaignError> {
            let name = v.get_ref();
            if name == "end" {
                return Ok(ids.len());
            }
            seen.get(name.as_str()).copied().ok_or_else(|| {
                at(v.span()).error(format!(
                    "no step called {name:?}: use a step's `id` or \"end\" (steps: {})",
                    ids.join(", ")
                ))
            })
        };

        let mut steps = Vec::with_capacity(file.steps.len());
        let mut sent_before = false;
        for (i, s) in file.steps.iter().enumerate() {
            let f = s.get_ref();
            let here = at(s.span());
            let mut given: Vec<(&str, std::ops::Range<usize>)> = [
                ("wait", f.wait.as_ref().map(|v| v.span())),
                ("wait_until", f.wait_until.as_ref().map(|v| v.span())),
                ("send", f.send.as_ref().map(|v| v.span())),
                ("branch", f.branch.as_ref().map(|v| v.span())),
                ("tag", f.tag.as_ref().map(|v| v.span())),
                ("untag", f.untag.as_ref().map(|v| v.span())),
                ("set", f.set.as_ref().map(|v| v.span())),
                ("end", f.end.as_ref().map(|v| v.span())),
            ]
            .into_iter()
            .filter_map(|(k, sp)| sp.map(|sp| (k, sp)))
            .collect();
            // In file order: the second action written is the one to point at.
            given.sort_by_key(|(_, sp)| sp.start);
            let id = ids[i].clone();
            let action = match given.as_slice() {
                [] => {
                    return Err(here.error(format!(
                        "step {} ({id}) does nothing: give it one of wait, wait_until, send, \
                         branch, tag, untag, set, end",
                        i + 1
                    )));
                }
                [_, (second, span), ..] => {
                    return Err(at(span.clone()).error(format!(
                        "a step does one thing: `{second}` here is a second action of step {id:?} \
                         (write it as a step of its own)"
                    )));
                }
                [(kind, _)] => match *kind {
                    "wait" => {
                        let v = f.wait.as_ref().expect("given");
                        Action::Wait(parse_duration(v.get_ref()).ok_or_else(|| {
                            at(v.span()).error(format!(
                                "`wait` {:?} is not a duration: a number and a unit, s, m, h, d or w \
                                 (\"3d\", \"1d12h\"), more than 0 and at most 366 days",
                                v.get_ref()
                            ))
                        })?)
                    }
                    "wait_until" => {
                        let v = f.wait_until.as_ref().expect("given");
                        let (minute, offset_minutes) =
                            parse_time_of_day(v.get_ref()).ok_or_else(|| {
                                at(v.span()).error(format!(
                                    "`wait_until` {:?} is not a time of day: \"HH:MM\" (UTC), or with \
                                     an offset, \"09:00+01:00\"",
                                    v.get_ref()
                                ))
                            })?;
                        Action::WaitUntil {
                            minute,
                            offset_minutes,
                        }
                    }
                    "send" => {
                        let v = f.send.as_ref().expect("given");
                        let send = v.get_ref();
                        let subject = check_subject(&at, &send.subject)?;
                        let step_from = match &send.from {
                            Some(x) => mailbox(&at, x, "from")?,
                            None => from.clone(),
                        };
                        let step_reply_to = match &send.reply_to {
                            Some(x) => Some(mailbox(&at, x, "reply_to")?),
                            None => reply_to.clone(),
                        };
                        let html_template = resolve_template(&at, templates_dir, &send.html)?;
                        let text_template = send
                            .text
                            .as_ref()
                            .map(|t| resolve_template(&at, templates_dir, t))
                            .transpose()?;
                        sent_before = true;
                        Action::Send(Box::new(Campaign {
                            path: path.to_path_buf(),
                            slug: format!("{slug}.{id}"),
                            name: format!("{}: {id}", file.name.get_ref().trim()),
                            subject,
                            subject_at: at(send.subject.span()),
                            from: step_from,
                            reply_to: step_reply_to,
                            list: list.clone(),
                            list_at: at(file.list.span()),
                            segment: SegmentSpec::All,
                            html_template,
                            html_at: at(send.html.span()),
                            text_template,
                            text_at: send.text.as_ref().map(|t| at(t.span())),
                            tracking: file.tracking,
                            utm: utm.clone(),
                            headers: headers.clone(),
                            file_hash: hash.clone(),
                            attribution_days,
                            public: false,
                            // A journey's mails count towards the frequency
                            // cap like any campaign's.
                            transactional: false,
                            // Journeys have their own waits.
                            delivery: None,
                            description: None,
                            // Sent by the journey's steps, never on a schedule
                            // of its own.
                            when: None,
                        }))
                    }
                    "branch" => {
                        let v = f.branch.as_ref().expect("given");
                        let b = v.get_ref();
                        let condition = match (&b.condition, &b.filter, &b.segment) {
                            (Some(c), None, None) => match c.get_ref().as_str() {
                                "opened" | "clicked" if !sent_before => {
                                    return Err(at(c.span()).error(format!(
                                        "`if = {:?}` asks about the previous message, and no send \
                                         step comes before this one",
                                        c.get_ref()
                                    )));
                                }
                                "opened" => Condition::Opened,
                                "clicked" => Condition::Clicked,
                                "purchased" => Condition::Purchased,
                                other => {
                                    return Err(at(c.span()).error(format!(
                                        "unknown condition {other:?}: use \"opened\", \"clicked\", \
                                         \"purchased\", or `filter = '...'` / `segment = \"NAME\"`"
                                    )));
                                }
                            },
                            (None, Some(_), None) | (None, None, Some(_)) => {
                                Condition::Matches(filter(
                                    &format!("{slug}.{id}"),
                                    b.filter.as_ref(),
                                    b.segment.as_ref(),
                                )?)
                            }
                            (None, None, None) => {
                                return Err(at(v.span()).error(
                                    "a branch needs a condition: `if = \"opened\"` (or \"clicked\", \
                                     \"purchased\"), `filter = '...'` or `segment = \"NAME\"`",
                                ));
                            }
                            _ => {
                                return Err(at(v.span()).error(
                                    "a branch takes one condition: `if`, `filter` or `segment`",
                                ));
                            }
                        };
                        let next = i + 1;
                        let then = b.then.as_ref().map(target).transpose()?.unwrap_or(next);
                        let otherwise = b
                            .otherwise
                            .as_ref()
                            .map(target)
                            .transpose()?
                            .unwrap_or(next);
                        Action::Branch {
                            condition,
                            then,
                            otherwise,
                        }
                    }
                    "tag" | "untag" => {
                        let v = if *kind == "tag" { &f.tag } else { &f.untag };
                        let v = v.as_ref().expect("given");
                        let t = v.get_ref().trim();
                        if t.is_empty()
                            || t.chars().count() > 100
                            || t.chars().any(char::is_control)
                        {
                            return Err(at(v.span()).error(format!(
                                "`{kind}` is a tag: 1 to 100 characters, no control characters"
                            )));
                        }
                        if *kind == "tag" {
                            Action::Tag(t.to_string())
                        } else {
                            Action::Untag(t.to_string())
                        }
                    }
                    "set" => {
                        let v = f.set.as_ref().expect("given");
                        if v.get_ref().is_empty() {
                            return Err(at(v.span()).error("`set` names no attribute"));
                        }
                        let mut out = Vec::new();
                        for (k, val) in v.get_ref() {
                            if k.is_empty()
                                || k.chars().count() > 100
                                || k.chars().any(|c| c.is_control() || c == '"' || c == '\\')
                            {
                                return Err(at(val.span()).error(format!(
                                    "attribute name {k:?}: 1 to 100 characters, no quotes, \
                                     backslashes or control characters"
                                )));
                            }
                            out.push((
                                k.clone(),
                                json_of(val.get_ref()).ok_or_else(|| {
                                    at(val.span()).error(format!(
                                    "attribute {k:?}: a string, number, boolean or a list of them"
                                ))
                                })?,
                            ));
                        }
                        Action::Set(out)
                    }
                    "end" => {
                        let v = f.end.as_ref().expect("given");
                        if !*v.get_ref() {
                            return Err(at(v.span()).error("`end = false` does nothing: remove it"));
                        }
                        Action::End
                    }
                    _ => unreachable!("the keys listed above"),
                },
            };
            steps.push(Step {
                id,
                action,
                at: here,
            });
        }
        check_cycles(&steps)?;

        Ok(Journey {
            path: path.to_path_buf(),
            slug,
            name: file.name.get_ref().trim().to_string(),
            list,
            trigger,
            reentry: table.reentry,
            exit_on_conversion,
            conversion,
            steps,
            description: file.description,
            file_hash: hash,
        })
    }
}

type At<'a> = dyn Fn(std::ops::Range<usize>) -> Location + 'a;

/// Compiles a `filter = '...'` or looks up a `segment = "NAME"`.
type FilterOf<'a> = dyn Fn(&str, Option<&Spanned<String>>, Option<&Spanned<String>>) -> Result<Segment, CampaignError>
    + 'a;

/// A filter written in the file (`filter = '...'`) or named in the
/// segments file beside it (`segment = "NAME"`).
fn filter_of(
    name: &str,
    filter: Option<&Spanned<String>>,
    named: Option<&Spanned<String>>,
    segments_file: &Path,
    path: &Path,
    text: &str,
    at: &At<'_>,
) -> Result<Segment, CampaignError> {
    match (filter, named) {
        (Some(f), _) => Ok(Segment::parse_in_toml(name, f, path, text)?),
        (None, Some(n)) => match crate::segment::find(segments_file, n.get_ref()) {
            Ok(s) => Ok(s),
            Err(SegmentError::Unknown { known, .. }) => Err(at(n.span()).error(format!(
                "no segment {:?} in {} (it has: {})",
                n.get_ref(),
                segments_file.display(),
                known.join(", ")
            ))),
            Err(SegmentError::Read { source, .. }) => Err(at(n.span()).error(format!(
                "segment {:?}: cannot read {}: {source}",
                n.get_ref(),
                segments_file.display()
            ))),
            Err(e) => Err(e.into()),
        },
        (None, None) => unreachable!("called with one of them"),
    }
}

fn trigger_of(
    t: &Spanned<TriggerFile>,
    list: &str,
    at: &At<'_>,
    filter: &FilterOf<'_>,
) -> Result<Trigger, CampaignError> {
    let f = t.get_ref();
    let on = f.on.get_ref().as_str();
    let allowed: &[&str] = match on {
        "list_joined" | "signup_confirmed" => &["list"],
        "event" => &["event"],
        "date" => &["attribute", "offset", "yearly"],
        "segment" => &["segment", "filter"],
        "no_engagement" => &["days"],
        other => {
            return Err(at(f.on.span()).error(format!(
                "unknown trigger {other:?}: use list_joined, signup_confirmed, event, date, \
                 segment or no_engagement"
            )));
        }
    };
    for (key, span) in [
        ("list", f.list.as_ref().map(|v| v.span())),
        ("event", f.event.as_ref().map(|v| v.span())),
        ("attribute", f.attribute.as_ref().map(|v| v.span())),
        ("offset", f.offset.as_ref().map(|v| v.span())),
        ("yearly", f.yearly.as_ref().map(|v| v.span())),
        ("segment", f.segment.as_ref().map(|v| v.span())),
        ("filter", f.filter.as_ref().map(|v| v.span())),
        ("days", f.days.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            return Err(at(span).error(format!(
                "`{key}` does not apply to the {on} trigger (it takes: {})",
                if allowed.is_empty() {
                    "nothing".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    let required = |v: Option<&Spanned<String>>, key: &str| -> Result<String, CampaignError> {
        match v {
            Some(v) if !v.get_ref().trim().is_empty() => Ok(v.get_ref().trim().to_string()),
            Some(v) => Err(at(v.span()).error(format!("`{key}` is empty"))),
            None => Err(at(t.span()).error(format!("the {on} trigger needs `{key}`"))),
        }
    };
    Ok(match on {
        "list_joined" | "signup_confirmed" => {
            let list = match &f.list {
                Some(l) => required(Some(l), "list")?,
                None => list.to_string(),
            };
            if on == "list_joined" {
                Trigger::ListJoined { list }
            } else {
                Trigger::SignupConfirmed { list }
            }
        }
        "event" => Trigger::Event {
            kind: required(f.event.as_ref(), "event")?,
        },
        "date" => {
            let attribute = required(f.attribute.as_ref(), "attribute")?;
            if attribute
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
            {
                let a = f.attribute.as_ref().expect("required");
                return Err(at(a.span()).error(
                    "`attribute` is an attribute's name: no quotes, backslashes or control characters",
                ));
            }
            let offset_days = match &f.offset {
                None => 0,
                Some(o) => parse_day_offset(o.get_ref()).ok_or_else(|| {
                    at(o.span()).error(format!(
                        "`offset` {:?} is not a number of days or weeks (\"-7d\", \"1w\", \"0d\"), \
                         at most a year either way",
                        o.get_ref()
                    ))
                })?,
            };
            Trigger::Date {
                attribute,
                offset_days,
                yearly: f.yearly.as_ref().is_some_and(|y| *y.get_ref()),
            }
        }
        "segment" => match (&f.segment, &f.filter) {
            (Some(_), Some(b)) => {
                return Err(
                    at(b.span()).error("a segment trigger takes `segment` or `filter`, not both")
                );
            }
            (None, None) => {
                return Err(at(t.span())
                    .error("the segment trigger needs `segment = \"NAME\"` or `filter = '...'`"));
            }
            _ => Trigger::Segment(filter("trigger", f.filter.as_ref(), f.segment.as_ref())?),
        },
        "no_engagement" => {
            let d = f
                .days
                .as_ref()
                .ok_or_else(|| at(t.span()).error("the no_engagement trigger needs `days`"))?;
            match u32::try_from(*d.get_ref()) {
                Ok(v) if (1..=3650).contains(&v) => Trigger::NoEngagement { days: v },
                _ => {
                    return Err(at(d.span()).error(format!(
                        "`days` must be a whole number from 1 to 3650, not {}",
                        d.get_ref()
                    )));
                }
            }
        }
        _ => unreachable!("checked above"),
    })
}

/// A loop of steps with no wait in it would run for ever in one tick (and
/// mail a contact as fast as the engine can): every cycle must wait.
fn check_cycles(steps: &[Step]) -> Result<(), CampaignError> {
    let n = steps.len();
    let next = |i: usize| -> Vec<usize> {
        match &steps[i].action {
            Action::End => vec![],
            Action::Branch {
                then, otherwise, ..
            } => vec![*then, *otherwise],
            _ => vec![i + 1],
        }
    };
    // 0 unvisited, 1 on the path, 2 done; waits end a path.
    let mut mark = vec![0u8; n];
    fn visit(
        i: usize,
        steps: &[Step],
        next: &dyn Fn(usize) -> Vec<usize>,
        mark: &mut [u8],
    ) -> Result<(), CampaignError> {
        mark[i] = 1;
        for j in next(i) {
            if j >= steps.len() || steps[j].action.waits() {
                continue;
            }
            match mark[j] {
                1 => {
                    return Err(steps[i].at.error(format!(
                        "step {:?} goes back to {:?} with no wait on the way: every loop needs a \
                         `wait` or `wait_until` step",
                        steps[i].id, steps[j].id
                    )));
                }
                0 => visit(j, steps, next, mark)?,
                _ => {}
            }
        }
        mark[i] = 2;
        Ok(())
    }
    for i in 0..n {
        if mark[i] == 0 {
            visit(i, steps, &next, &mut mark)?;
        }
    }
    Ok(())
}

/// `90s`, `30m`, `12h`, `3d`, `2w`, and sums of them (`1d12h`), in ms:
/// more than zero and at most `MAX_WAIT`.
pub fn parse_duration(s: &str) -> Option<Millis> {
    let s = s.trim();
    let mut total: Millis = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: Millis = match c {
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => DAY,
            'w' => 7 * DAY,
            _ => return None,
        };
        if num.is_empty() || num.len() > 6 {
            return None;
        }
        total = total.checked_add(num.parse::<Millis>().ok()?.checked_mul(unit)?)?;
        num.clear();
        any = true;
    }
    (any && num.is_empty() && total > 0 && total <= MAX_WAIT).then_some(total)
}

/// `-7d`, `+3d`, `0d`, `1w`: whole days, at most a year either way.
fn parse_day_offset(s: &str) -> Option<i64> {
    let s = s.trim();
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let (n, unit) = if let Some(n) = rest.strip_suffix('d') {
        (n, 1)
    } else if let Some(n) = rest.strip_suffix('w') {
        (n, 7)
    } else {
        return None;
    };
    if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let days = n.parse::<i64>().ok()? * unit;
    (days <= 366).then_some(sign * days)
}

/// `HH:MM` (UTC), `HH:MMZ`, or `HH:MM+hh:mm` / `HH:MM-hh:mm`: the minute of
/// the day and the offset from UTC in minutes.
fn parse_time_of_day(s: &str) -> Option<(u32, i32)> {
    let s = s.trim();
    let two = |t: &str| -> Option<u32> {
        (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (time, offset) = match s.get(5..) {
        Some("") | Some("Z") => (s.get(..5)?, 0),
        Some(o) if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let (h, m) = (two(&o[1..3])?, two(&o[4..6])?);
            if &o[3..4] != ":" || h > 14 || m > 59 {
                return None;
            }
            let v = (h * 60 + m) as i32;
            (s.get(..5)?, if o.starts_with('-') { -v } else { v })
        }
        _ => return None,
    };
    let (h, m) = (two(&time[..2])?, two(&time[3..])?);
    if &time[2..3] != ":" || h > 23 || m > 59 {
        return None;
    }
    Some((h * 60 + m, offset))
}

/// The first instant at or after `from` at which the clock at
/// `offset_minutes` from UTC shows `minute` of the day.
pub fn next_time_of_day(from: Millis, minute: u32, offset_minutes: i32) -> Millis {
    let offset = Millis::from(offset_minutes) * 60_000;
    let local = from + offset;
    let day_start = local.div_euclid(DAY) * DAY;
    let mut t = day_start + Millis::from(minute) * 60_000;
    if t < local {
        t += DAY;
    }
    t - offset
}

fn json_of(v: &toml::Value) -> Option<serde_json::Value> {
    Some(match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number)?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(json_of).collect::<Option<Vec<_>>>()?)
        }
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Table(_) => return None,
    })
}

/// Every journey in `dir` (`*.toml` files with a `[journey]` table), in
/// file-name order, each loaded on its own: a broken journey is reported
/// and the others still run.
pub fn load_dir(
    dir: &Path,
    templates_dir: &Path,
) -> Result<Vec<Result<Journey, CampaignError>>, CampaignError> {
    let read_err = |source| CampaignError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            out.push(Journey::load(&f, templates_dir));
            continue;
        };
        if is_journey(&text) {
            out.push(Journey::parse(&text, &f, templates_dir));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.html"), "<p>Hi</p>").unwrap();
        std::fs::write(d.path().join("b.html"), "<p>Again</p>").unwrap();
        d
    }

    const GOOD: &str = r#"name = "Welcome series"
from = "Shop <news@shop.example>"
list = "newsletter"

[journey]
reentry = false
exit = ["unsubscribed", "converted"]

[journey.trigger]
on = "signup_confirmed"

[[step]]
id = "hello"
send = { subject = "Welcome", html = "a.html" }

[[step]]
wait = "2d"

[[step]]
branch = { if = "opened", then = "end", else = "again" }

[[step]]
id = "again"
send = { subject = "Did you see?", html = "b.html" }

[[step]]
tag = "welcomed"
"#;

    fn parse(text: &str) -> Result<Journey, String> {
        let d = dir();
        Journey::parse(text, Path::new("campaigns/welcome.toml"), d.path())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_a_journey() {
        let j = parse(GOOD).unwrap();
        assert_eq!(j.slug, "welcome");
        assert_eq!(
            j.trigger,
            Trigger::SignupConfirmed {
                list: "newsletter".into()
            }
        );
        assert!(j.exit_on_conversion);
        assert_eq!(j.steps.len(), 5);
        assert_eq!(j.steps[1].id, "step-2");
        assert!(matches!(j.steps[1].action, Action::Wait(ms) if ms == 2 * DAY));
        assert!(matches!(
            j.steps[2].action,
            Action::Branch {
                condition: Condition::Opened,
                then: 5,
                otherwise: 3
            }
        ));
        let c = j.step_campaign("welcome.again").unwrap();
        assert_eq!(c.subject, "Did you see?");
        assert_eq!(c.from.email.to_string(), "news@shop.example");
        assert_eq!(c.list, "newsletter");
    }

    #[test]
    fn a_send_step_is_found_by_its_campaign_id() {
        let d = dir();
        let f = d.path().join("welcome.toml");
        std::fs::write(&f, GOOD).unwrap();
        let c = Campaign::load_slug(&f, d.path(), "welcome.again").unwrap();
        assert_eq!(c.subject, "Did you see?");
        let e = Campaign::load_slug(&f, d.path(), "welcome.nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no send step"), "{e}");
    }

    #[test]
    fn a_journey_is_not_a_campaign() {
        let d = dir();
        let e = Campaign::parse(GOOD, Path::new("w.toml"), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("w.toml:5:1:"), "{e}");
        assert!(e.contains("journey check"), "{e}");
        assert!(is_journey(GOOD));
        assert!(!is_journey("name = \"x\"\n"));
    }

    /// Each mistake is reported at its own line and column.
    #[test]
    fn errors_point_at_their_place() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "on = \"signup_confirmed\"",
                "on = \"signed_up\"",
                "campaigns/welcome.toml:10:6:",
            ),
            (
                "on = \"signup_confirmed\"",
                "on = \"signup_confirmed\"\ndays = 3",
                "campaigns/welcome.toml:11:8:",
            ),
            (
                "wait = \"2d\"",
                "wait = \"2 days\"",
                "campaigns/welcome.toml:17:8:",
            ),
            (
                "wait = \"2d\"",
                "wait = \"0d\"",
                "campaigns/welcome.toml:17:8:",
            ),
            (
                "else = \"again\"",
                "else = \"agian\"",
                "campaigns/welcome.toml:20:",
            ),
            ("\"a.html\"", "\"nope.html\"", "campaigns/welcome.toml:14:"),
            (
                "tag = \"welcomed\"",
                "tag = \"welcomed\"\nwait = \"1d\"",
                "campaigns/welcome.toml:28:8:",
            ),
            (
                "exit = [\"unsubscribed\", \"converted\"]",
                "exit = [\"bored\"]",
                "campaigns/welcome.toml:7:9:",
            ),
            (
                "id = \"again\"",
                "id = \"hello\"",
                "campaigns/welcome.toml:23:6:",
            ),
            (
                "id = \"again\"",
                "id = \"a b\"",
                "campaigns/welcome.toml:23:6:",
            ),
            (
                "reentry = false",
                "reentry = false\ncolour = 1",
                "campaigns/welcome.toml:7:1:",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with(want), "{to:?}: {e}");
        }
    }

    #[test]
    fn branches_need_a_message_before_opened_and_a_wait_in_every_loop() {
        let text = GOOD.replace(
            "id = \"hello\"\nsend = { subject = \"Welcome\", html = \"a.html\" }",
            "tag = \"x\"",
        );
        let e = parse(&text).unwrap_err();
        assert!(e.contains("no send step comes before"), "{e}");
        // A loop back to a step past the wait: no wait inside it.
        let text = GOOD.replace("then = \"end\"", "then = \"again\"").replace(
            "tag = \"welcomed\"",
            "branch = { if = \"purchased\", then = \"end\", else = \"again\" }",
        );
        let e = parse(&text).unwrap_err();
        assert!(e.contains("no wait on the way"), "{e}");
        assert!(e.starts_with("campaigns/welcome.toml:26:1:"), "{e}");
        // The same loop through the wait is fine.
        let text = GOOD.replace(
            "tag = \"welcomed\"",
            "branch = { if = \"purchased\", then = \"end\", else = \"step-2\" }",
        );
        parse(&text).unwrap();
    }

    #[test]
    fn triggers_take_their_own_keys() {
        let with = |t: &str| GOOD.replace("on = \"signup_confirmed\"", t);
        assert_eq!(
            parse(&with(
                "on = \"date\"\nattribute = \"birthday\"\noffset = \"-7d\"\nyearly = true"
            ))
            .unwrap()
            .trigger,
            Trigger::Date {
                attribute: "birthday".into(),
                offset_days: -7,
                yearly: true
            }
        );
        assert_eq!(
            parse(&with("on = \"event\"\nevent = \"purchase\""))
                .unwrap()
                .trigger,
            Trigger::Event {
                kind: "purchase".into()
            }
        );
        assert_eq!(
            parse(&with("on = \"no_engagement\"\ndays = 90"))
                .unwrap()
                .trigger,
            Trigger::NoEngagement { days: 90 }
        );
        assert!(matches!(
            parse(&with("on = \"segment\"\nfilter = '\"vip\" in tags'"))
                .unwrap()
                .trigger,
            Trigger::Segment(_)
        ));
        let e = parse(&with("on = \"segment\"\nfilter = 'nosuch > 3'")).unwrap_err();
        assert!(e.starts_with("campaigns/welcome.toml:11:"), "{e}");
        let e = parse(&with("on = \"event\"")).unwrap_err();
        assert!(e.contains("needs `event`"), "{e}");
        let e = parse(&with("on = \"no_engagement\"\ndays = 0")).unwrap_err();
        assert!(e.starts_with("campaigns/welcome.toml:11:8:"), "{e}");
        let e = parse(
            &with("on = \"segment\"\nfilter = 'open_count > 1'")
                .replace("reentry = false", "reentry = true"),
        )
        .unwrap_err();
        assert!(e.contains("re-entry"), "{e}");
    }

    #[test]
    fn durations_and_times_of_day() {
        assert_eq!(parse_duration("1d12h"), Some(DAY + DAY / 2));
        assert_eq!(parse_duration("90s"), Some(90_000));
        for bad in ["", "d", "3", "3x", "-1d", "400d", "0s", "1.5d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_time_of_day("09:30"), Some((570, 0)));
        assert_eq!(parse_time_of_day("09:30+01:00"), Some((570, 60)));
        assert_eq!(parse_time_of_day("09:30-05:30"), Some((570, -330)));
        for bad in ["9:30", "24:00", "09:60", "09:30+1", "09:30+15:00", "ab:cd"] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
        // 2026-12-04T10:00Z: 09:00 UTC is tomorrow, 12:00 UTC today, and
        // 09:00 at UTC-05:00 (14:00Z) today.
        let t = 1_796_378_400_000;
        assert_eq!(next_time_of_day(t, 540, 0), t + 23 * 3_600_000);
        assert_eq!(next_time_of_day(t, 720, 0), t + 2 * 3_600_000);
        assert_eq!(next_time_of_day(t, 540, -300), t + 4 * 3_600_000);
        assert_eq!(next_time_of_day(t, 600, 0), t, "at the minute itself: now");
        assert_eq!(parse_day_offset("-1w"), Some(-7));
        assert_eq!(parse_day_offset("0d"), Some(0));
        assert_eq!(parse_day_offset("7"), None);
    }

    proptest::proptest! {
        /// Journey files come from people's editors: any small edit of a
        /// good file gives a journey or an error naming the file, never a panic.
        #[test]
        fn any_edit_parses_or_names_the_file(
            edits in proptest::collection::vec((0usize..600, 0u8..4, proptest::char::any()), 0..6),
        ) {
            let d = dir();
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
            if let Err(e) = Journey::parse(&text, Path::new("campaigns/welcome.toml"), d.path()) {
                let msg = e.to_string();
                proptest::prop_assert!(msg.contains("welcome.toml"), "{}", msg);
            }
        }
    }
}
