//! `EmailAddress`: an address that passed cartero's syntax policy.
//!
//! PROVISIONAL: a minimal parser so the pipeline can be built; the full RFC
//! 5321/5322 + SMTPUTF8 + IDNA parser replaces the body of `parse`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("there must be exactly one @")]
    NoAt,
    #[error("invalid local part: {0}")]
    Local(String),
    #[error("invalid domain: {0}")]
    Domain(String),
}

/// A valid address: local part as written (NFC), domain lower-cased Unicode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    normalized: String,
    at: usize,
    ascii: Option<String>,
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(AddressError::NoAt)?;
        if local.is_empty() || local.len() > 64 || local.contains(['@', ' ', '"', '\\']) {
            return Err(AddressError::Local(local.to_string()));
        }
        let domain = domain.to_lowercase();
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(AddressError::Domain(domain));
        }
        let ascii_domain =
            idna::domain_to_ascii(&domain).map_err(|_| AddressError::Domain(domain.clone()))?;
        let ascii = local.is_ascii().then(|| format!("{local}@{ascii_domain}"));
        Ok(Self {
            normalized: format!("{local}@{domain}"),
            at: local.len(),
            ascii,
        })
    }

    /// The normalised form: the key contacts are deduplicated by.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }
    pub fn local(&self) -> &str {
        &self.normalized[..self.at]
    }
    /// Lower-cased, Unicode form of the domain.
    pub fn domain(&self) -> &str {
        &self.normalized[self.at + 1..]
    }
    /// The all-ASCII form (domain in punycode); `None` when the local part
    /// needs SMTPUTF8 (RFC 6531).
    pub fn ascii(&self) -> Option<&str> {
        self.ascii.as_deref()
    }
    pub fn requires_smtputf8(&self) -> bool {
        self.ascii.is_none()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
