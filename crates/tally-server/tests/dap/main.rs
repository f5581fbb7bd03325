//! The aggregators as real processes of the built `tally-server` (`dap leader`, `dap helper`)
//! on loopback, against the unmodified upstream client and collector (Divvi Up's
//! `janus_client` and `janus_collector` 0.7), tally's own client, and hand-made bad input; their
//! stores on the local disk or on moto (S3).
//!
//! - `interop`, `privacy`, `bad_input`, `keys`, `crash`: the protocol, what is kept secret,
//!   what is refused, key rotation, kill -9;
//! - `store`: one process per store, local and S3; `compaction`: the replay horizon;
//!   `limits`: the shared listener's bounds; `charts`: from a chart config to a served config;
//!   `collect`: `serve` collecting each ended week itself and publishing the aggregate;
//! - `support`: the deployment (provisioning, processes, raw requests).

mod bad_input;
mod charts;
mod collect;
mod compaction;
mod crash;
mod interop;
mod keys;
mod limits;
mod privacy;
mod store;
mod support;

use std::time::Duration;

use janus_collector::{Collection, Collector, ExponentialBackoff, PrivateCollectorCredential};
use tally_dap::draft::messages::{Interval, Query, TimeInterval};

use support::Deployment;

fn fast_backoff() -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(500),
        multiplier: 1.5,
        max_elapsed_time: Some(Duration::from_secs(120)),
        ..Default::default()
    }
}

/// The upstream collector, with the credential `collector-keygen` wrote.
pub fn collector(d: &Deployment) -> Collector<tally_dap::draft::Vdaf> {
    let credential: PrivateCollectorCredential =
        serde_json::from_slice(&std::fs::read(&d.credential_path).unwrap()).unwrap();
    Collector::builder(
        d.task_id(),
        url::Url::parse(&d.config.leader).unwrap(),
        credential.authentication_token(),
        credential.hpke_keypair(),
        tally_dap::draft::vdaf(&d.config.vdaf).unwrap(),
    )
    .with_collect_poll_backoff(fast_backoff())
    .with_http_request_backoff(fast_backoff())
    .build()
    .unwrap()
}

/// Collects `interval` with the upstream collector.
pub async fn collect(
    d: &Deployment,
    interval: Interval,
) -> Result<Collection<Vec<u128>, TimeInterval>, janus_collector::Error> {
    collector(d)
        .collect(Query::new_time_interval(interval), &())
        .await
}

/// The DAP problem type of a collector error, if it is one.
pub fn problem_of(e: &janus_collector::Error) -> Option<String> {
    match e {
        janus_collector::Error::Http(response) => response
            .dap_problem_type()
            .map(|p| p.type_uri().rsplit(':').next().unwrap().to_owned()),
        _ => None,
    }
}

/// Asserts that the leader refuses to collect `interval`, with the DAP problem type `problem`.
pub async fn assert_collection_refused(d: &Deployment, interval: Interval, problem: &str) {
    let refused = collect(d, interval).await.unwrap_err();
    assert_eq!(problem_of(&refused).as_deref(), Some(problem), "{refused}");
}
