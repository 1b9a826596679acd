//! cartero: email campaigns kept as files in git, sent to a segment of a contact
//! database, with consent that can be proven.
//!
//! The modules read as the pipeline, and dependencies point downward through it:
//! `domain` knows nothing of ours; `store` knows `domain`; the stages know both;
//! `cli` sits on top. See docs/ARCHITECTURE.md for the map.

pub mod config;
pub mod domain;
pub mod private_files;
pub mod store;
pub mod tls;

pub mod campaign;
pub mod consent;
pub mod contacts;
pub mod feedback;
pub mod hygiene;
pub mod render;
pub mod report;
pub mod schedule;
pub mod segment;
pub mod send;
pub mod track;

pub mod app;

pub mod cli;
