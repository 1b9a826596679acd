//! Risk flags of an address: role account, disposable domain, likely typo.
