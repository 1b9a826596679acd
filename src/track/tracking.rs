//! Consent to track: whether an open or a click is stored tied to the
//! person or only as a count per campaign and link.
//!
//! Each list chooses (`[lists.NAME] tracking`): `none` (its messages get
//! no pixel and no click redirects: `send::Composer`), `aggregate` (hits
//! are stored without contact and send) or `personal` (tied to the person
//! only while they consent to tracking: a grant of the ledger list
//! `tracking:NAME`, a purpose of its own beside the consent to receive
//! `NAME`). `DNT: 1` and `Sec-GPC: 1` make any hit aggregate: they stop
//! passive tracking, never an unsubscribe or a confirmation (those are
//! POSTs that never look at these headers). Lists without a `[lists.NAME]`
//! section keep cartero's earlier behaviour (per person).
//!
//! The writer (`events::write`) asks [`split`] once per batch; an
//! aggregate hit keeps its campaign, kind, time, link and classification,
//! and loses the contact, the send, the IP and the user agent.
//!
//! The footer link `/u/{token}/tracking` (a template's
//! `tracking_optout_url`) withdraws the consent to track alone: GET shows a
//! button and changes nothing, POST (with the page's form token) withdraws
//! `tracking:LIST` through the consent stage and leaves the consent to
//! receive `LIST` as it is. It reuses the message's unsubscribe token: the
//! holder of that link can already withdraw more (the list itself), so a
//! second token would add no protection, and the send stage needs no change.

use std::collections::{HashMap, HashSet};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::i18n::Lang;
use super::signup::Forms;
use super::{AppState, TrackError, consent};
use crate::config::TrackingMode;
use crate::domain::ConsentAction;
use crate::store::track::NewHit;
use crate::store::track::TRACKING_LIST_PREFIX;
use crate::store::{Result, Tx, tracking as repo};

/// The client asked not to be tracked: `DNT: 1` or Global Privacy Control
/// (`Sec-GPC: 1`).
pub fn do_not_track(headers: &HeaderMap) -> bool {
    ["dnt", "sec-gpc"].iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "1")
    })
}

/// Why a hit is stored without the person; `None`: stored per person.
pub fn aggregate_reason(
    mode: Option<TrackingMode>,
    consented: bool,
    do_not_track: bool,
) -> Option<&'static str> {
    if do_not_track {
        return Some("do-not-track");
    }
    match mode {
        None => None,
        Some(TrackingMode::None) => Some("list-tracks-nothing"),
        Some(TrackingMode::Aggregate) => Some("list-aggregate"),
        Some(TrackingMode::Personal) if consented => None,
        Some(TrackingMode::Personal) => Some("no-tracking-consent"),
    }
}

/// The data an aggregate hit keeps.
const KEPT: &[&str] = &["method", "class", "rule", "ruleset", "link", "url"];

/// Takes the hits that must be stored as aggregate out of `rows` (same
/// order as `private`) and returns them, their data stripped to [`KEPT`].
pub async fn split(
    tx: &mut Tx,
    forms: &Forms,
    rows: &mut Vec<NewHit>,
    private: &[bool],
) -> Result<Vec<NewHit>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut campaigns: Vec<i64> = rows.iter().map(|r| r.campaign_id).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    let lists: HashMap<i64, Option<String>> = repo::campaign_lists(tx, &campaigns).await?;
    let mode = |campaign: i64| {
        lists
            .get(&campaign)
            .and_then(|l| l.as_deref())
            .and_then(|l| forms.tracking(l))
    };
    let mut personal: Vec<i64> = rows
        .iter()
        .filter(|r| mode(r.campaign_id) == Some(TrackingMode::Personal))
        .map(|r| r.contact_id)
        .collect();
    personal.sort_unstable();
    personal.dedup();
    let consents: HashSet<(i64, String)> = if personal.is_empty() {
        HashSet::new()
    } else {
        repo::tracking_consents(tx, &personal, TRACKING_LIST_PREFIX).await?
    };
    let mut kept = Vec::with_capacity(rows.len());
    let mut aggregate = Vec::new();
    for (row, &dnt) in std::mem::take(rows).into_iter().zip(private) {
        let list = lists.get(&row.campaign_id).cloned().flatten();
        let consented = list.as_ref().is_some_and(|l| {
            consents.contains(&(row.contact_id, format!("{TRACKING_LIST_PREFIX}{l}")))
        });
        match aggregate_reason(mode(row.campaign_id), consented, dnt) {
            None => kept.push(row),
            Some(reason) => {
                let data: serde_json::Value =
                    serde_json::from_str(&row.data).unwrap_or_else(|_| serde_json::json!({}));
                let mut out = serde_json::Map::new();
                for k in KEPT {
                    if let Some(v) = data.get(*k) {
                        out.insert((*k).into(), v.clone());
                    }
                }
                out.insert("scope".into(), "aggregate".into());
                out.insert("why".into(), reason.into());
                aggregate.push(NewHit {
                    data: serde_json::Value::Object(out).to_string(),
                    ..row
                });
            }
        }
    }
    *rows = kept;
    Ok(aggregate)
}

// ------------------------------------------------------------ opt-out link

/// The consents to track that the link at `token` names: `tracking:LIST`
/// of the message's list, or every one for a contact-scoped token; with the
/// contact, their address and the list's name.
struct OptOut {
    contact_id: i64,
    email: String,
    list: Option<String>,
    send: Option<(i64, i64)>,
    /// (ledger list id, subscribed) of each consent to track in scope.
    consents: Vec<(i64, bool)>,
}

async fn optout_target(s: &AppState, token: &str) -> Result<OptOut, TrackError> {
    let t = super::unsubscribe_target(s, token).await?;
    let (_, _, lists) = crate::store::track::contact_consents(&s.app.store, t.contact_id)
        .await?
        .ok_or(TrackError::NotFound)?;
    let own = t
        .list_name
        .as_ref()
        .map(|l| format!("{TRACKING_LIST_PREFIX}{l}"));
    let consents = lists
        .iter()
        .filter(|l| match &own {
            Some(own) => l.name == *own,
            None => l.name.starts_with(TRACKING_LIST_PREFIX),
        })
        .map(|l| (l.list_id, l.subscribed))
        .collect();
    Ok(OptOut {
        contact_id: t.contact_id,
        email: t.email,
        list: t.list_name,
        send: t.send,
        consents,
    })
}

fn optout_view(s: &AppState, token: &str, o: &OptOut, lang: Lang, done: Option<bool>) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("title", lang.word("tracking_title"));
    ctx.insert("email", &o.email);
    ctx.insert("list", &o.list);
    ctx.insert("consented", &o.consents.iter().any(|c| c.1));
    ctx.insert("done", &done.is_some());
    ctx.insert("already", &(done == Some(false)));
    ctx.insert(
        "prefs_href",
        &format!("../{}", super::prefs_href(s, o.contact_id)),
    );
    ctx.insert("csrf", &super::form_token(s, &format!("t:{token}")));
    super::html(
        StatusCode::OK,
        s.app.settings.pages.render("tracking.html", lang, ctx),
    )
}

/// GET /u/{token}/tracking: what the consent to track is and a button to
/// withdraw it; changes nothing.
pub(super) async fn optout_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, TrackError> {
    let o = optout_target(&s, &token).await?;
    let lang = super::contact_lang(&s, o.contact_id, &headers).await;
    Ok(optout_view(&s, &token, &o, lang, None))
}

/// POST /u/{token}/tracking: withdraws the consent to track in scope
/// (ledger entries with evidence, method `tracking-link`); the consent to
/// receive mail is not touched. Repeating it changes nothing.
pub(super) async fn optout(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, TrackError> {
    let headers = req.headers().clone();
    let mut o = optout_target(&s, &token).await?;
    let fields = super::form_fields(&s, req).await?;
    super::check_form(&s, &headers, &fields, &format!("t:{token}"))?;
    let changes: Vec<consent::Change> = o
        .consents
        .iter()
        .filter(|c| c.1)
        .map(|c| consent::Change {
            list_id: Some(c.0),
            action: ConsentAction::Withdraw,
        })
        .collect();
    let out = consent::apply(
        &s.app.store,
        &consent::Request {
            contact_id: o.contact_id,
            changes: &changes,
            method: consent::Method::TrackingLink,
            send: o.send,
            ip: super::events::stored_ip(
                super::client_ip(&s, peer, &headers),
                s.app.settings.ip_storage,
            ),
            user_agent: super::header_text(&headers, "user-agent"),
            at: s.app.clock.now(),
        },
    )
    .await?;
    for c in o.consents.iter_mut() {
        c.1 = false;
    }
    let lang = super::contact_lang(&s, o.contact_id, &headers).await;
    Ok(optout_view(&s, &token, &o, lang, Some(out.applied > 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_choice_consent_and_dnt_decide() {
        use TrackingMode::{Aggregate, Personal};
        assert_eq!(aggregate_reason(None, false, false), None);
        assert_eq!(aggregate_reason(Some(Personal), true, false), None);
        assert_eq!(
            aggregate_reason(Some(Personal), false, false),
            Some("no-tracking-consent")
        );
        assert_eq!(
            aggregate_reason(Some(Aggregate), true, false),
            Some("list-aggregate")
        );
        assert_eq!(
            aggregate_reason(Some(Personal), true, true),
            Some("do-not-track")
        );
        assert_eq!(aggregate_reason(None, false, true), Some("do-not-track"));
        let mut h = HeaderMap::new();
        assert!(!do_not_track(&h));
        h.insert("sec-gpc", "1".parse().unwrap());
        assert!(do_not_track(&h));
        let mut h = HeaderMap::new();
        h.insert("dnt", "0".parse().unwrap());
        assert!(!do_not_track(&h));
    }
}
