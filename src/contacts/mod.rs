//! Contacts: import of other tools' exports (reading the file, presets,
//! validation, dedupe, consent). Reading and checking rows happens here;
//! the SQL lives in `store::contacts`.

pub mod import;
pub mod preset;
pub mod source;

pub use import::{ImportError, ImportOptions, ImportSummary, import_csv};
