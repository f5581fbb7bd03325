//! Wire formats shared by the tally client and `tally-server`.
//!
//! Two documents cross the network, and both are defined here so that the client and the
//! collector cannot disagree about them:
//!
//! - [`config::UploadConfig`]: what a collector asks for (programs, versions, counters, rates),
//!   signed with minisign by the collector and verified by the client (`tally-config`).
//! - [`report::Report`]: one installation-week of counts, as the client keeps it locally and,
//!   filtered by the config, as it uploads it.
//! - [`program`]: the rule every program name follows in both ([`is_program_name`]).
//!
//! Their JSON Schemas live in `config-schema/` at the repository root; tests in this crate check
//! that the schemas and these types cannot drift apart.
//!
//! This crate does no I/O. It promises: parsing never panics on any input, and every value a
//! parser accepts satisfies the invariants documented on its type.
//!
//! The documents and their JSON are behind the `wire` feature (on by default). Without it the
//! crate is only the vocabulary the client's hot path and the counter library share with them
//! ([`Day`], [`WEEK_DAYS`], [`version::canonical`], [`is_program_name`]), and pulls in no serde,
//! serde_json or semver: `tally-home` depends on it that way.

#![forbid(unsafe_code)]

#[cfg(feature = "wire")]
pub mod aggregate;
#[cfg(feature = "wire")]
pub mod config;
pub mod day;
pub mod program;
#[cfg(feature = "wire")]
pub mod report;
pub mod version;

#[cfg(all(test, feature = "wire"))]
mod schema_tests;

#[cfg(feature = "wire")]
pub use config::{CounterConfig, ProgramConfig, UploadConfig};
pub use day::Day;
pub use program::{MAX_PROGRAM_NAME_LEN, is_program_name};
#[cfg(feature = "wire")]
pub use report::{ProgramReport, Report, SectionKey};

/// Largest upload config body a client will download or verify (1 MiB).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Largest report body a client sends and a server accepts (100 KiB).
pub const MAX_REPORT_BYTES: usize = 100 * 1024;

/// Reports whose week began more than this many days ago are never sent, and are refused by
/// the server.
pub const MAX_REPORT_AGE_DAYS: i64 = 21;

/// Length of a tally week in days. Every report covers exactly one week.
pub const WEEK_DAYS: i64 = 7;
