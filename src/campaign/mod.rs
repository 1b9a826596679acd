//! Campaign files: parse and validate TOML, reporting file:line:col.
