//! Helpers shared by the integration tests. Each test binary includes this
//! with `mod common;` and uses what it needs.
#![allow(dead_code)]

pub mod browser;
pub mod db;
pub mod project;
pub mod serve;
pub mod servers;
