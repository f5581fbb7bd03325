//! tally-server: the collector.
//!
//! It serves the collector's signed upload config byte for byte, accepts weekly reports that
//! the config allows (and refuses everything else with a one-line 400), stores each accepted
//! report once in an [`object_store`] (local directory or S3), merges them per calendar week and
//! program, and publishes the merged aggregates (JSON API and dashboard) with every count seen in
//! fewer than `threshold` distinct reports withheld.
//!
//! [`app`] is the whole HTTP surface as an `axum::Router`, usable without a socket;
//! [`serve::serve`] runs it on a listener with bounded connections, read and write timeouts and
//! shedding of stalled connections; the binary (`src/main.rs`) adds the command line. Promises
//! kept here (`docs/reliability.md` lists the tests that hold each):
//!
//! - a report answered 2xx is durable in the store and counted exactly once, across restarts
//!   and crashes, also with several servers on one store writing at once; keeping servers in
//!   step and restarting cost what was stored since the last checkpoint, not all reports
//!   ([`checkpoint`]);
//! - raw reports are deleted `retention_weeks` weeks after their week is merged; the merged
//!   aggregates stay;
//! - a report is stored under exactly the `x` it was sent with, and any report that passes
//!   validation can be stored: what the server refuses it refuses with a 4xx and a reason, and
//!   a 5xx means only that the store failed (the client retries);
//! - the server never sees client addresses: the accept loop drops them and nothing logs them;
//! - nothing under the publication threshold appears in any public output;
//! - nothing in the store is followed or waited on: on the local disk only regular files are
//!   read, through directories only, never through a link, and a FIFO is never opened; on any
//!   store an object is read only up to the size its kind can have; whatever is skipped is named
//!   in the log and the server goes on ([`store`]);
//! - what is read back from the store is checked again: a stored report as its upload was, a
//!   checkpoint or merged copy against every served config ([`configs`]).
//!
//! Modules, by responsibility: `state` (the shared [`AppState`]: open, accept an upload,
//! publish), [`configs`] (every config served from the store, what uploads and stored reports are
//! checked against), `routes` ([`app`] and its handlers), `background` (every week's merge, kept
//! in step with the store: re-reads, checkpoints, retention, the timer), [`checkpoint`]
//! (generations, seals and checkpoints: the protocol replicas share), [`serve`] (the listener,
//! from `tally-service`), [`store`] (the collector's keys in the object store of
//! `tally-service`), [`validate`] (what an upload may hold), [`merge`]
//! (one week's merge and its thresholded publication), [`dashboard`] (the pages), [`signing`]
//! (keys and config signatures), [`clock`] (today, or `TALLY_NOW`), [`plan`] (the sample rate a
//! wanted precision needs), [`charts_config`] (the chart config: what is collected and why, and
//! the upload config generated from it), [`config_page`] (the public `/config` page and the
//! [`config_page::Site`] the pages share), [`open_data`] (`/data/` downloads and `export`), [`import`] (reports written into a
//! store directly: restores, and `tally demo`'s simulated weeks), [`dap_week`] (a week
//! collected by private aggregation: its collection job, recorded once, and its merge),
//! [`dap_collect`] (the loop that collects every ended week in private-aggregation mode).

#![forbid(unsafe_code)]

mod background;
pub mod charts_config;
pub mod checkpoint;
pub mod clock;
pub mod config_page;
pub mod configs;
pub mod dap_collect;
pub mod dap_week;
pub mod dashboard;
pub mod import;
pub mod merge;
pub mod open_data;
pub mod plan;
mod routes;
pub mod signing;
mod state;
pub mod store;
pub mod validate;

/// The listener (bounded connections, header, body, write and stall timeouts), shared with the
/// DAP aggregators: `tally_service::serve`.
pub use tally_service::serve;

pub use background::raw_deleted_on;
pub use routes::{app, app_with};
pub use state::{
    AppState, DEFAULT_RETENTION_WEEKS, DEFAULT_THRESHOLD, Options, SignedConfig, Status, WeekStatus,
};
