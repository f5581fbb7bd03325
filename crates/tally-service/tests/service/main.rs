//! The integration tests of `tally-service`, one binary: the listener on real loopback sockets
//! (`serve`), and the store and its lease on a real S3-compatible server, moto (`s3`).

#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod s3;
mod serve;
