//! Neither aggregator's store nor log ever holds a measurement, or the aggregate, in the clear;
//! a batch smaller than the minimum is refused without being spent; a batch is collected once.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tally_dap::client::UploadOutcome;
use tally_dap::draft::messages::Time;

use crate::support::{Deployment, Options, deploy, deploy_min_batch, interval, layout, now, sum};
use crate::{assert_collection_refused, collect};

/// Every way a 0/1 vector could sit in a file in the clear: as the VDAF encodes it (16-byte
/// little-endian field elements), packed into bits (either order), as digits or a JSON array,
/// and base64 of the field encoding.
fn encodings(vector: &[u128]) -> Vec<(String, Vec<u8>)> {
    let field: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    let pack = |msb_first: bool| -> Vec<u8> {
        vector
            .chunks(8)
            .map(|c| {
                c.iter().enumerate().fold(0u8, |byte, (i, b)| {
                    let bit = if msb_first { 7 - i } else { i };
                    byte | (u8::from(*b != 0) << bit)
                })
            })
            .collect()
    };
    let digits: String = vector.iter().map(|v| v.to_string()).collect();
    let json = serde_json::to_string(vector).unwrap();
    vec![
        ("field elements".into(), field[..16 * 32].to_vec()),
        ("bits, lsb first".into(), pack(false)),
        ("bits, msb first".into(), pack(true)),
        ("digits".into(), digits.into_bytes()),
        ("json".into(), json.into_bytes()),
        (
            "base64url of field elements".into(),
            URL_SAFE_NO_PAD.encode(&field[..16 * 30]).into_bytes(),
        ),
        (
            "base64 of field elements".into(),
            STANDARD.encode(&field[..16 * 30]).into_bytes(),
        ),
    ]
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which encodings of `vector` appear in anything either aggregator wrote.
fn leaks(d: &Deployment, vector: &[u128]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, bytes) in d.everything_written() {
        for (what, needle) in encodings(vector) {
            if find(&bytes, &needle) {
                found.push(format!("{what} in {}", path.display()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_or_log_holds_a_measurement_or_the_aggregate_in_the_clear() {
    let d = deploy(Options {
        layout: layout(200),
        min_batch_size: 10,
        ..Options::default()
    });
    let precision = d.config.time_precision;
    let len = d.config.layout.len();
    let slot = d.slot_ago(2);
    // The marker: a random pattern no file has by chance, sent by every client.
    let marker: Vec<u128> = (0..len)
        .map(|_| u128::from(rand::random::<bool>()))
        .collect();

    // The detector finds the marker where it is in the clear.
    let planted = d.dir.path().join("leader/planted");
    std::fs::write(&planted, encodings(&marker)[0].1.clone()).unwrap();
    assert_eq!(
        leaks(&d, &marker).len(),
        1,
        "the detector must see a planted measurement"
    );
    std::fs::remove_file(&planted).unwrap();

    let agent = tally_dap::client::agent(Duration::from_secs(10));
    for _ in 0..6 {
        let report = d.report(&marker, slot);
        let outcome =
            tally_dap::client::upload(&agent, &d.config.leader, &d.task_id(), &report).unwrap();
        assert_eq!(outcome, UploadOutcome::Accepted);
    }
    let janus = d.janus_client().await;
    for _ in 0..4 {
        janus
            .upload_with_time(&marker, Time::from_seconds_since_epoch(slot))
            .await
            .unwrap();
    }
    d.wait_aggregated(10);
    // Before collection (shares at rest) and after (the aggregate computed and released).
    assert_eq!(leaks(&d, &marker), Vec::<String>::new());
    let collection = collect(&d, interval(slot, precision, 1)).await.unwrap();
    let aggregate = sum(&vec![marker.clone(); 10]);
    assert_eq!(collection.aggregate_result(), &aggregate);
    assert_eq!(leaks(&d, &marker), Vec::<String>::new());
    assert_eq!(leaks(&d, &aggregate), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_batch_is_refused_unspent_and_a_batch_is_collected_once() {
    let d = deploy_min_batch(5);
    let precision = d.config.time_precision;
    let len = d.config.layout.len();
    let slot = d.slot_ago(5);
    let one: Vec<u128> = vec![1; len];
    let agent = tally_dap::client::agent(Duration::from_secs(10));
    let upload = |n: usize, at: u64| {
        for _ in 0..n {
            let report = d.report(&one, at);
            assert_eq!(
                tally_dap::client::upload(&agent, &d.config.leader, &d.task_id(), &report).unwrap(),
                UploadOutcome::Accepted
            );
        }
    };
    upload(3, slot);
    d.wait_aggregated(3);
    let ours = d.our_collector();
    match ours.start(&rand::random(), interval(slot, precision, 1)) {
        Err(tally_dap::collector::CollectError::Refused {
            status: 400,
            problem: Some(p),
            ..
        }) => {
            assert!(p.ends_with(":invalidBatchSize"), "{p}")
        }
        other => panic!("{other:?}"),
    }
    assert_collection_refused(&d, interval(slot, precision, 1), "invalidBatchSize").await;
    assert_eq!(d.helper.metric("aggregate_shares_released", ""), 0);

    // Refusing did not spend the batch: with enough reports it is collected.
    upload(2, slot);
    d.wait_aggregated(5);
    let collection = collect(&d, interval(slot, precision, 1)).await.unwrap();
    assert_eq!(collection.report_count(), 5);
    assert_eq!(collection.aggregate_result(), &vec![5; len]);

    // Once only: the same batch again, an overlapping one, and uploads into it are refused.
    assert_collection_refused(&d, interval(slot, precision, 1), "batchQueriedTooManyTimes").await;
    assert_collection_refused(&d, interval(slot - precision, precision, 2), "batchOverlap").await;
    let late = d.report(&one, slot);
    match tally_dap::client::upload(&agent, &d.config.leader, &d.task_id(), &late).unwrap() {
        UploadOutcome::Refused {
            status: 400,
            problem: Some(p),
            ..
        } => {
            assert!(p.ends_with(":reportRejected"), "{p}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.helper.metric("aggregate_shares_released", ""), 1);
}

/// Sends `request` from the address 127.0.0.2 and returns the answer's status line.
async fn from_127_0_0_2(port: u16, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// No role records a client's address: a client at 127.0.0.2 fetches both HPKE configs and
/// uploads a report that is aggregated; after both aggregators stop, no file of either store
/// and no line of either log holds its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_aggregator_records_a_client_address() {
    use tally_dap::draft::messages::{Encode, Report};
    let mut d = deploy(Options::default());
    for port in [d.leader.port, d.helper.port] {
        let status = from_127_0_0_2(
            port,
            format!(
                "GET /hpke_config?task_id={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                d.task_id()
            )
            .as_bytes(),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    let len = d.config.layout.len();
    let report = d
        .report(&vec![1; len], now() - 2 * d.config.time_precision)
        .get_encoded()
        .unwrap();
    let mut request = format!(
        "PUT /tasks/{}/reports HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        d.task_id(),
        Report::MEDIA_TYPE,
        report.len()
    )
    .into_bytes();
    request.extend_from_slice(&report);
    let status = from_127_0_0_2(d.leader.port, &request).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    d.wait_aggregated(1);
    assert!(d.leader.stop().success());
    assert!(d.helper.stop().success());
    let written = d.everything_written();
    assert!(written.len() > 5, "{} files", written.len());
    for (path, bytes) in written {
        assert!(
            !find(&bytes, b"127.0.0.2"),
            "{} holds the client's address",
            path.display()
        );
    }
}
