//! What every role of `tally-server` runs on: the collector (`tally-server serve`) and the DAP
//! leader and helper of private aggregation (`tally-server dap leader|helper`).
//!
//! - [`store`]: one object store, a local directory or S3, in which nothing is followed or
//!   waited on, every read is bounded by what its kind of object can be, and writes are durable
//!   when they return;
//! - [`lease`]: one process per store, for a role that keeps state in memory between writes;
//! - [`serve`]: an `axum::Router` on a TCP listener with every resource bounded (connections,
//!   header, body, write and stall timeouts), the peer address dropped on accept.
//!
//! The roles themselves (their keys in the store, their routes) live in their own crates:
//! `tally-server` and `tally-dap-aggregator`.

#![forbid(unsafe_code)]

pub mod lease;
pub mod serve;
pub mod store;

pub use store::{Created, Durability, Read, Store};
