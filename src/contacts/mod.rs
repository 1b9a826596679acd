//! Contacts: CSV import (validation, dedupe, consent). Reading and checking
//! rows happens here; the SQL lives in `store::contacts`.

pub mod import;

pub use import::{ImportError, ImportOptions, ImportSummary, import_csv};
