//! Uploading weekly reports: config fetch, the HTTP POST, the pending/sent/refused
//! bookkeeping, the run lock and the detached background run.
//!
//! Promises:
//! - Nothing is sent unless the effective mode is `on`, the config verified against a pinned
//!   key and has not expired, and the report's week began after the consent date and less
//!   than [`tally_protocol::MAX_REPORT_AGE_DAYS`] days ago.
//! - Exactly the bytes in `reports/pending/<week>.json` are sent (what `tally preview` shows);
//!   or, when the verified config asks for private aggregation, only the layout's vector of
//!   that report, secret-shared between two aggregators ([`dap`]), and nothing in the plain.
//! - 2xx moves a report to `reports/sent/`; 4xx to `reports/refused/` with a `.reason`, never
//!   retried; 5xx or no network leaves it pending for a later run.
//! - One run at a time per data directory (`upload.lock`).
//! - `TALLY_DEBUG_UPLOAD` set (non-empty): print what would be sent, send nothing.

#![forbid(unsafe_code)]

pub mod dap;
pub mod http;
pub mod lock;
pub mod outbox;
pub mod run;
pub mod state;

pub use run::{Options, RunError, Summary, debug_upload, run};
