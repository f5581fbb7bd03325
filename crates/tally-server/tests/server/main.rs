//! The integration tests of `tally-server`, one binary (as ripgrep's `tests/`): one link step
//! for all of them, and the fixtures of `support` compiled once.
//!
//! - `app`: the HTTP surface through `app()`, without a socket;
//! - `socket`: the app on a real loopback socket through `serve::serve`;
//! - `checkpoints`: generations, seals, checkpoints and retention, several servers in-process;
//! - `replicas`: three `tally-server serve` on one store (local and moto), with SIGKILL;
//! - `cli`: the built binary (keygen, sign, plan, serve), crashes and shared stores;
//! - `s3`: the same server on an S3-compatible store (moto);
//! - `fuzz`: property tests of the upload parser and validator;
//! - `dashboard_browser`: the dashboard in a real headless Chromium;
//! - `governance`: `config generate`, `serve --charts` and the `/config` page;
//! - `open_data`: `/data/`, its files, a chart recomputed from them, and `export`;
//! - `planted`: FIFOs, sockets, links, stray files and refused reports planted in the store;
//! - `support`: the shared fixtures.

#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod app;
mod checkpoints;
mod cli;
mod dashboard_browser;
mod fuzz;
mod governance;
mod open_data;
mod planted;
mod replicas;
mod s3;
mod socket;
mod support;
