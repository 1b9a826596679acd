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

use std::collections::{HashMap, HashSet};

use axum::http::HeaderMap;

use super::signup::{Forms, TRACKING_PREFIX};
use crate::config::TrackingMode;
use crate::store::track::NewHit;
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
        repo::tracking_consents(tx, &personal, TRACKING_PREFIX).await?
    };
    let mut kept = Vec::with_capacity(rows.len());
    let mut aggregate = Vec::new();
    for (row, &dnt) in std::mem::take(rows).into_iter().zip(private) {
        let list = lists.get(&row.campaign_id).cloned().flatten();
        let consented = list
            .as_ref()
            .is_some_and(|l| consents.contains(&(row.contact_id, format!("{TRACKING_PREFIX}{l}"))));
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
