//! Verification, ratchet, cache and fetch, with keys and signatures from the `minisign` crate
//! and a real HTTP server on loopback.

use std::time::{Duration, Instant};

use crate::support::{config_body, day};
use tally_config::{
    CacheState, ConfigUnavailable, Endpoint, FetchError, FetchOptions, PinnedKey, Ratchet,
    VerifyError, cache, current, fetch, refresh, verify_config,
};
use tally_test_support::collector::{FakeCollector, Reply, unreachable_url};
use tally_test_support::signing::KeyPair;

fn pinned(keys: &[&KeyPair]) -> Vec<PinnedKey> {
    keys.iter()
        .map(|k| PinnedKey::parse(&k.public_base64).unwrap())
        .collect()
}

/// Version 3 of the config, expiring on `expires`, signed by a fresh key: its body, its
/// signature, and that key pinned.
fn signed_config(expires: &str) -> (Vec<u8>, Vec<u8>, Vec<PinnedKey>) {
    let key = KeyPair::generate();
    let body = config_body(3, expires);
    let signature = key.signature(&body);
    (body, signature, pinned(&[&key]))
}

#[test]
fn a_signed_config_verifies_and_its_trusted_comment_is_read() {
    let key = KeyPair::generate();
    let body = config_body(3, "2027-01-31");
    let v = verify_config(
        &body,
        &key.signature(&body),
        &pinned(&[&key]),
        day("2026-11-24"),
    )
    .unwrap();
    assert_eq!(v.config.version, 3);
    assert_eq!(
        v.trusted_comment,
        tally_test_support::signing::TRUSTED_COMMENT
    );
    assert_eq!(v.key_id, pinned(&[&key])[0].key_id);
}

#[test]
fn every_single_byte_change_is_refused() {
    let (body, sig, keys) = signed_config("2027-01-31");
    for i in 0..body.len() {
        let mut tampered = body.clone();
        tampered[i] ^= 0x01;
        let err = verify_config(&tampered, &sig, &keys, day("2026-11-24")).unwrap_err();
        assert!(
            matches!(err, VerifyError::BadSignature { .. }),
            "byte {i}: {err}"
        );
    }
}

#[test]
fn another_key_is_refused_and_rotation_works() {
    let (old, new, stranger) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let body = config_body(3, "2027-01-31");
    let today = day("2026-11-24");
    let err =
        verify_config(&body, &stranger.signature(&body), &pinned(&[&old]), today).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err}");
    assert!(err.to_string().contains("tally on --endpoint"), "{err}");
    // Both pinned: configs signed by either verify.
    let both = pinned(&[&old, &new]);
    verify_config(&body, &old.signature(&body), &both, today).unwrap();
    verify_config(&body, &new.signature(&body), &both, today).unwrap();
}

#[test]
fn a_signature_from_another_key_with_a_forged_key_id_is_refused() {
    let (victim, attacker) = (KeyPair::generate(), KeyPair::generate());
    let body = config_body(3, "2027-01-31");
    let keys = pinned(&[&victim]);
    // Rewrite the key id inside the attacker's signature to the victim's.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = String::from_utf8(attacker.signature(&body)).unwrap();
    let mut lines: Vec<String> = sig.lines().map(str::to_string).collect();
    let mut raw = b64.decode(&lines[1]).unwrap();
    raw[2..10].copy_from_slice(&keys[0].key_id.0);
    lines[1] = b64.encode(raw);
    let forged = lines.join("\n") + "\n";
    let err = verify_config(&body, forged.as_bytes(), &keys, day("2026-11-24")).unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn expiry_is_inclusive_of_the_last_day() {
    let (body, sig, keys) = signed_config("2026-11-24");
    verify_config(&body, &sig, &keys, day("2026-11-24")).unwrap();
    let err = verify_config(&body, &sig, &keys, day("2026-11-25")).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

#[test]
fn an_oversized_body_is_refused_before_verification() {
    let key = KeyPair::generate();
    let body = vec![b' '; tally_protocol::MAX_CONFIG_BYTES + 1];
    // Even with a signature that would verify.
    let err = verify_config(
        &body,
        &key.signature(&body),
        &pinned(&[&key]),
        day("2026-11-24"),
    );
    assert!(matches!(err, Err(VerifyError::TooLarge(_))));
    let err = verify_config(&body, b"garbage", &[], day("2026-11-24"));
    assert!(matches!(err, Err(VerifyError::TooLarge(_))));
}

#[test]
fn garbage_signatures_and_no_keys_are_refused() {
    let key = KeyPair::generate();
    let body = config_body(3, "2027-01-31");
    let keys = pinned(&[&key]);
    let today = day("2026-11-24");
    for sig in [
        &b""[..],
        b"untrusted comment: x\n",
        b"\xff\xfe",
        b"a\nb\nc\nd\n",
    ] {
        let err = verify_config(&body, sig, &keys, today).unwrap_err();
        assert!(matches!(err, VerifyError::MalformedSignature), "{err}");
    }
    let err = verify_config(&body, &key.signature(&body), &[], today).unwrap_err();
    assert!(matches!(err, VerifyError::NoPinnedKeys));
}

#[test]
fn a_signed_but_invalid_config_is_refused() {
    let key = KeyPair::generate();
    let body = br#"{"version": 1}"#;
    let err = verify_config(
        body,
        &key.signature(body),
        &pinned(&[&key]),
        day("2026-11-24"),
    );
    assert!(matches!(err, Err(VerifyError::Invalid(_))));
}

#[test]
fn the_ratchet_refuses_rollbacks_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (KeyPair::generate(), KeyPair::generate());
    let keys = pinned(&[&a, &b]);
    let today = day("2026-11-24");
    let verified = |key: &KeyPair, version| {
        let body = config_body(version, "2027-01-31");
        verify_config(&body, &key.signature(&body), &keys, today).unwrap()
    };
    Ratchet::accept(dir.path(), &verified(&a, 5)).unwrap();
    let err = Ratchet::accept(dir.path(), &verified(&a, 4)).unwrap_err();
    assert!(err.to_string().contains("rollback"), "{err}");
    Ratchet::accept(dir.path(), &verified(&a, 5)).unwrap(); // the same version again: fine
    Ratchet::accept(dir.path(), &verified(&b, 1)).unwrap(); // another key has its own ratchet
    Ratchet::accept(dir.path(), &verified(&a, 7)).unwrap();
    let ratchet = Ratchet::load(dir.path()).unwrap();
    assert_eq!(ratchet.highest(keys[0].key_id), Some(7));
    assert_eq!(ratchet.highest(keys[1].key_id), Some(1));
}

#[test]
fn a_corrupt_ratchet_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ratchet.json"), "{not json").unwrap();
    let err = Ratchet::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("ratchet.json"), "{err}");
}

fn endpoint_for(server: &FakeCollector, keys: &[&KeyPair]) -> Endpoint {
    let keys: Vec<String> = keys.iter().map(|k| k.public_base64.clone()).collect();
    Endpoint::new(&server.url, &keys).unwrap()
}

/// A collector serving `config_body(4, "2027-01-31")` signed by its key, and its endpoint.
struct Serving {
    server: FakeCollector,
    key: KeyPair,
    body: Vec<u8>,
    endpoint: Endpoint,
}

fn serving_version_4() -> Serving {
    let server = FakeCollector::start();
    let key = KeyPair::generate();
    let body = config_body(4, "2027-01-31");
    server.publish(&body, key.signature(&body));
    let endpoint = endpoint_for(&server, &[&key]);
    Serving {
        server,
        key,
        body,
        endpoint,
    }
}

fn quick() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(2),
    }
}

#[test]
fn current_explains_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let today = day("2026-11-24");
    assert!(matches!(
        current(dir.path(), today),
        Err(ConfigUnavailable::NoEndpoint)
    ));
    let key = KeyPair::generate();
    Endpoint::new(
        "https://c.example",
        std::slice::from_ref(&key.public_base64),
    )
    .unwrap()
    .save(dir.path())
    .unwrap();
    assert!(matches!(
        current(dir.path(), today),
        Err(ConfigUnavailable::NotFetched)
    ));
}

#[test]
fn fetch_stores_a_verified_config_which_current_then_reverifies() {
    let dir = tempfile::tempdir().unwrap();
    let Serving {
        server: _server,
        key: _key,
        body,
        endpoint,
    } = serving_version_4();
    endpoint.save(dir.path()).unwrap();
    let today = day("2026-11-24");

    let fetched = fetch(&endpoint, dir.path(), today, &quick()).unwrap();
    assert_eq!(fetched.config.version, 4);
    assert_eq!(std::fs::read(dir.path().join("config.json")).unwrap(), body);
    let state = CacheState::load(dir.path());
    assert_eq!(state.fetched_at, Some(today));
    assert_eq!(state.verified_version, Some(4));
    assert_eq!(state.last_error, None);
    assert_eq!(current(dir.path(), today).unwrap(), fetched);

    // The cache expires with the config.
    let later = day("2027-02-01");
    assert!(matches!(
        current(dir.path(), later),
        Err(ConfigUnavailable::Rejected(VerifyError::Expired { .. }))
    ));
    // A cached file edited on disk no longer verifies.
    let mut edited = body.clone();
    edited[20] ^= 1;
    std::fs::write(dir.path().join("config.json"), edited).unwrap();
    assert!(matches!(
        current(dir.path(), today),
        Err(ConfigUnavailable::Rejected(
            VerifyError::BadSignature { .. }
        ))
    ));
}

#[test]
fn refused_downloads_leave_the_cache_alone_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeCollector::start();
    let (key, stranger) = (KeyPair::generate(), KeyPair::generate());
    let endpoint = endpoint_for(&server, &[&key]);
    endpoint.save(dir.path()).unwrap();
    let today = day("2026-11-24");
    let good = config_body(4, "2027-01-31");
    server.publish(&good, key.signature(&good));
    fetch(&endpoint, dir.path(), today, &quick()).unwrap();

    let older = config_body(3, "2027-01-31");
    let expired = config_body(9, "2026-11-01");
    let mut tampered = config_body(5, "2027-01-31");
    let tampered_sig = key.signature(&tampered);
    tampered[30] ^= 1;
    let cases: [(&str, Vec<u8>, Vec<u8>); 4] = [
        ("rollback", older.clone(), key.signature(&older)),
        ("expired", expired.clone(), key.signature(&expired)),
        ("tampered", tampered, tampered_sig),
        ("another key", good.clone(), stranger.signature(&good)),
    ];
    for (why, body, sig) in cases {
        server.publish(&body, &sig);
        let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
        assert!(matches!(err, FetchError::Refused(_)), "{why}: {err}");
        assert!(!err.is_transport());
        assert_eq!(
            std::fs::read(dir.path().join("config.json")).unwrap(),
            good,
            "{why}"
        );
        let state = CacheState::load(dir.path());
        assert_eq!(state.last_error, Some(err.to_string()), "{why}");
        assert_eq!(state.verified_version, Some(4));
        // And refresh does not fall back to the cache when the download was refused.
        let tomorrow = day("2026-11-25");
        assert!(matches!(
            refresh(&endpoint, dir.path(), tomorrow, &quick()),
            Err(FetchError::Refused(_))
        ));
    }
}

#[test]
fn refresh_fetches_at_most_daily_and_survives_a_network_outage() {
    let dir = tempfile::tempdir().unwrap();
    let Serving {
        server,
        key,
        body: _body,
        endpoint,
    } = serving_version_4();
    let today = day("2026-11-24");
    // The version of the config `refresh` hands back on the day `on`.
    let version_on = |on| {
        refresh(&endpoint, dir.path(), on, &quick())
            .unwrap()
            .config
            .version
    };

    assert_eq!(version_on(today), 4);
    assert_eq!(server.request_count(), 2);
    assert_eq!(version_on(today), 4);
    assert_eq!(server.request_count(), 2, "fresh cache: no download");

    let newer = config_body(5, "2027-01-31");
    server.publish(&newer, key.signature(&newer));
    let tomorrow = day("2026-11-25");
    assert_eq!(version_on(tomorrow), 5);
    assert_eq!(server.request_count(), 4);

    // The collector breaks: the verified cache stands in, and the failure is on record.
    server.reply("/config.json", Reply::Status(503));
    let day_after = day("2026-11-26");
    assert_eq!(version_on(day_after), 5);
    let state = CacheState::load(dir.path());
    assert!(state.last_error.as_deref().unwrap().contains("503"));
    assert_eq!(state.fetched_at, Some(tomorrow));
    assert!(state.is_stale(day_after));
}

#[test]
fn http_errors_oversized_and_slow_downloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeCollector::start();
    let key = KeyPair::generate();
    let endpoint = endpoint_for(&server, &[&key]);
    let today = day("2026-11-24");

    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );

    let huge = vec![b' '; tally_protocol::MAX_CONFIG_BYTES + 10];
    server.publish(&huge, key.signature(&huge));
    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");

    server.reply("/config.json", Reply::Hang);
    let started = Instant::now();
    let err = fetch(
        &endpoint,
        dir.path(),
        today,
        &FetchOptions {
            timeout: Duration::from_millis(500),
        },
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    // Generous bound: only that the total budget is enforced at all, not how fast.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!dir.path().join("config.json").exists());
    assert!(matches!(
        cache::current_for(&endpoint, dir.path(), today),
        Err(ConfigUnavailable::NotFetched)
    ));
}

#[test]
fn an_unreachable_collector_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate();
    let endpoint = Endpoint::new(&unreachable_url(), &[key.public_base64]).unwrap();
    let err = fetch(&endpoint, dir.path(), day("2026-11-24"), &quick()).unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
    assert!(err.to_string().contains("check the network"), "{err}");
}

/// A redirect to another origin (here another port on loopback, serving a config validly
/// signed by the pinned key) is refused before anything is read from there; a redirect within
/// the endpoint's origin is followed.
#[test]
fn redirects_to_another_origin_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let today = day("2026-11-24");
    let key = KeyPair::generate();
    let body = config_body(3, "2026-12-31");
    let signature = key.signature(&body);
    let pinned = FakeCollector::start();
    let other = FakeCollector::start();
    other.publish(&body, &signature);
    for path in ["/config.json", "/config.json.minisig"] {
        pinned.reply(path, Reply::Redirect(format!("{}{path}", other.url)));
    }
    let endpoint = endpoint_for(&pinned, &[&key]);
    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(
        matches!(&err, FetchError::CrossOriginRedirect { to, .. } if to.starts_with(&other.url)),
        "{err}"
    );
    assert!(
        err.to_string().contains("not the collector's own origin"),
        "{err}"
    );
    assert_eq!(other.request_count(), 0, "the other origin was asked");
    assert!(!dir.path().join("config.json").exists());

    // Same origin, another path: followed.
    pinned.reply("/v2/config.json", Reply::Ok(body.clone()));
    pinned.reply("/v2/config.json.minisig", Reply::Ok(signature.clone()));
    pinned.reply("/config.json", Reply::Redirect("/v2/config.json".into()));
    pinned.reply(
        "/config.json.minisig",
        Reply::Redirect(format!("{}/v2/config.json.minisig", pinned.url)),
    );
    let verified = fetch(&endpoint, dir.path(), today, &quick()).unwrap();
    assert_eq!(verified.config.version, 3);

    // A loop within the origin ends.
    pinned.reply("/config.json", Reply::Redirect("/config.json".into()));
    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(matches!(err, FetchError::TooManyRedirects { .. }), "{err}");
}
