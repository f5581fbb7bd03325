//! tally's DAP-09 aggregators: the leader and the helper of private aggregation with Prio3.
//!
//! Two processes, run by two organisations, each with its own store and its own HPKE keys:
//!
//! - the **leader** ([`leader`]) takes clients' uploads (`PUT /tasks/{t}/reports`), drives
//!   aggregation with the helper in the background, and answers the collector
//!   (`PUT`/`POST`/`DELETE /tasks/{t}/collection_jobs/{c}`);
//! - the **helper** ([`helper`]) prepares the leader's aggregation jobs
//!   (`PUT /tasks/{t}/aggregation_jobs/{j}`) and releases its share of a batch once
//!   (`POST /tasks/{t}/aggregate_shares`).
//!
//! Both serve `GET /hpke_config` and `GET /metrics`. Neither can read a report: each holds one
//! share of it, sealed to its own key, and only the sum of at least `min_batch_size` reports is
//! ever released, encrypted to the collector. The wire format is the draft's, through
//! `tally_dap::draft` (Janus's `janus_messages` and `prio`), and the upstream `janus_client`
//! and `janus_collector` interoperate with these servers (`tests/dap`).
//!
//! This is a library: the `tally-server` binary runs it (`tally-server dap leader|helper|
//! provision|…`, [`cli`]), so that a collector installs one package.
//!
//! Modules: [`cli`] (the commands), [`server`] (running one), [`common`] (what both roles
//! share: state, clock, `GET /hpke_config` and `/metrics`), [`request`] (checking a request and
//! answering one, alike for both roles), [`store`] (the
//! aggregator's keys in `tally_service`'s store: local disk or S3, one process per store),
//! [`task`], [`keys`] (HPKE keys and rotation), [`auth`], [`batch`] (sums by time slot),
//! [`prep`] (opening a share), [`problem`] (DAP's error answers), [`metrics`], [`provision`]
//! (tasks and collector keys). The design: `docs/private-aggregation.md`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod batch;
pub mod cli;
pub mod common;
pub mod helper;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod prep;
pub mod problem;
pub mod provision;
pub mod request;
pub mod server;
pub mod store;
pub mod task;
