//! Private aggregation for tally: the client's half of DAP with Prio3, and what the client and
//! the aggregators share.
//!
//! A collector that chooses private aggregation never sees a report. The client splits each
//! week's measurement (a vector of 0/1 entries, [`layout`]) into two secret shares with Prio3,
//! seals one to each of two aggregators run by different operators, and uploads both to the
//! leader ([`client`]). The aggregators check a zero-knowledge proof that every entry is 0 or
//! 1 without learning it, and only sums over at least the minimum batch size ever exist in the
//! clear. The aggregators themselves are `tally-dap-aggregator`, which `tally-server dap` runs.
//!
//! Modules:
//!
//! - [`draft`]: everything particular to the DAP draft spoken (DAP-09, VDAF-08's Prio3, as
//!   Janus 0.7 speaks it): messages, HPKE labels, the VDAF. A newer draft is a change there.
//! - [`layout`]: how counters become the vector, and how a summed vector reads back
//!   (`tally_protocol::config::layout`, re-exported: it is part of the signed config).
//! - [`config`]: the signed config's private-aggregation section
//!   (`tally_protocol::config::aggregation`, re-exported).
//! - [`client`]: building a report and uploading it (blocking, ureq; no async runtime).
//! - [`collector`]: collecting a batch from the leader and opening the two aggregate shares.
//!
//! The design and its reasons, with report sizes: `docs/private-aggregation.md`.

#![forbid(unsafe_code)]

pub mod client;
pub mod collector;
pub mod draft;

pub use tally_protocol::config::aggregation as config;
pub use tally_protocol::config::layout;

pub use config::AggregationConfig;
pub use layout::Layout;
