//! A contact's own requests from the preference centre that are not a
//! change of consent: how often they want mail, corrections of their own
//! data, and asking to be forgotten. Each is one transaction that changes
//! the contact (when it changes anything) and records a `contact_requests`
//! row with the old value, the new one and the evidence (GDPR Art. 5(2):
//! the controller must be able to show what happened and why).
//!
//! An erasure request erases nothing: it is recorded `open` for the officer,
//! who runs `cartero compliance erase` (an erasure is irreversible and the
//! officer checks exemptions first, Art. 17(3)).

use crate::domain::time::Millis;
use crate::store::requests::{self, NewRequest, RequestKind};
use crate::store::{Result, Store, StoreError};

/// How often the contact wants mail. Stored as the contact attribute
/// `frequency` (so segments can filter on it) and recorded as a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    All,
    Weekly,
    Monthly,
}

impl Frequency {
    pub const ALL: [Frequency; 3] = [Self::All, Self::Weekly, Self::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The contact's current choice; `All` when none was made.
    pub fn of(attributes: &serde_json::Value) -> Self {
        attributes
            .get(FREQUENCY_ATTRIBUTE)
            .and_then(|v| v.as_str())
            .and_then(Self::parse)
            .unwrap_or(Self::All)
    }
}

/// The contact attribute that holds the frequency choice.
pub const FREQUENCY_ATTRIBUTE: &str = "frequency";

/// Who asked, and how: kept with each row.
#[derive(Debug, Clone)]
pub struct Asked {
    pub contact_id: i64,
    /// As stored under `serve.ip_storage`.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub at: Millis,
}

impl Asked {
    fn evidence(&self) -> serde_json::Value {
        serde_json::json!({
            "method": "preferences",
            "source": "preference centre",
            "ip": self.ip,
            "user_agent": self.user_agent,
        })
    }
}

/// A correction: new values for the name and for attributes. `None` leaves
/// a field alone; an empty string clears it.
#[derive(Debug, Clone, Default)]
pub struct Correction {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub attributes: Vec<(String, String)>,
}

/// Sets the frequency; returns whether anything changed (a repeat does not).
pub async fn set_frequency(store: &Store, who: &Asked, f: Frequency) -> Result<bool> {
    let mut tx = store.begin().await?;
    let (first, last, mut attrs) = requests::contact_fields(&mut tx, who.contact_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("contact {} is gone", who.contact_id)))?;
    let old = Frequency::of(&attrs);
    if old == f {
        return Ok(false);
    }
    if let Some(map) = attrs.as_object_mut() {
        map.insert(FREQUENCY_ATTRIBUTE.into(), f.as_str().into());
    }
    requests::set_contact_fields(
        &mut tx,
        who.contact_id,
        first.as_deref(),
        last.as_deref(),
        &attrs,
        who.at,
    )
    .await?;
    requests::insert(
        &mut tx,
        &NewRequest {
            contact_id: who.contact_id,
            kind: RequestKind::Frequency,
            open: false,
            old_value: Some(old.as_str().into()),
            new_value: Some(f.as_str().into()),
            evidence: who.evidence(),
            at: who.at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Applies a correction; only the fields that differ are changed and
/// recorded. Returns whether anything changed.
pub async fn correct(store: &Store, who: &Asked, c: &Correction) -> Result<bool> {
    let mut tx = store.begin().await?;
    let (first, last, mut attrs) = requests::contact_fields(&mut tx, who.contact_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("contact {} is gone", who.contact_id)))?;
    let mut old = serde_json::Map::new();
    let mut new = serde_json::Map::new();
    let norm = |v: &str| {
        let t = v.trim();
        (!t.is_empty()).then(|| t.to_string())
    };
    let mut first_out = first.clone();
    let mut last_out = last.clone();
    if let Some(v) = &c.first_name
        && norm(v) != first
    {
        old.insert("first_name".into(), first.clone().into());
        first_out = norm(v);
        new.insert("first_name".into(), first_out.clone().into());
    }
    if let Some(v) = &c.last_name
        && norm(v) != last
    {
        old.insert("last_name".into(), last.clone().into());
        last_out = norm(v);
        new.insert("last_name".into(), last_out.clone().into());
    }
    if let Some(map) = attrs.as_object_mut() {
        for (k, v) in &c.attributes {
            let want = norm(v);
            let have = map.get(k).cloned();
            let have_text = have.as_ref().map(|h| match h {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            if want == have_text {
                continue;
            }
            old.insert(k.clone(), have.unwrap_or(serde_json::Value::Null));
            match &want {
                Some(w) => map.insert(k.clone(), w.clone().into()),
                None => map.remove(k),
            };
            new.insert(k.clone(), want.into());
        }
    }
    if new.is_empty() {
        return Ok(false);
    }
    requests::set_contact_fields(
        &mut tx,
        who.contact_id,
        first_out.as_deref(),
        last_out.as_deref(),
        &attrs,
        who.at,
    )
    .await?;
    requests::insert(
        &mut tx,
        &NewRequest {
            contact_id: who.contact_id,
            kind: RequestKind::Correction,
            open: false,
            old_value: Some(old.into()),
            new_value: Some(new.into()),
            evidence: who.evidence(),
            at: who.at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Records a request to be forgotten for the officer. Returns false when
/// one is already open (asking twice is one request).
pub async fn request_erasure(store: &Store, who: &Asked) -> Result<bool> {
    if requests::open_count(store, who.contact_id, RequestKind::Erasure).await? > 0 {
        return Ok(false);
    }
    let mut tx = store.begin().await?;
    requests::insert(
        &mut tx,
        &NewRequest {
            contact_id: who.contact_id,
            kind: RequestKind::Erasure,
            open: true,
            old_value: None,
            new_value: None,
            evidence: who.evidence(),
            at: who.at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
