//! Verification, ratchet, cache and fetch, with keys and signatures from the `minisign` crate
//! and a real HTTP server on loopback.

use std::time::{Duration, Instant};

use crate::common::{Key, Reply, Server, config_body, day};
use tally_config::{
    CacheState, ConfigUnavailable, Endpoint, FetchError, FetchOptions, PinnedKey, Ratchet,
    VerifyError, cache, current, fetch, refresh, verify_config,
};

fn pinned(keys: &[&Key]) -> Vec<PinnedKey> {
    keys.iter()
        .map(|k| PinnedKey::parse(&k.public).unwrap())
        .collect()
}

#[test]
fn a_signed_config_verifies_and_its_trusted_comment_is_read() {
    let key = Key::generate();
    let body = config_body(3, "2027-01-31");
    let v = verify_config(&body, &key.sign(&body), &pinned(&[&key]), day("2026-11-24")).unwrap();
    assert_eq!(v.config.version, 3);
    assert_eq!(v.trusted_comment, "collector test config");
    assert_eq!(v.key_id, pinned(&[&key])[0].key_id);
}

#[test]
fn every_single_byte_change_is_refused() {
    let key = Key::generate();
    let body = config_body(3, "2027-01-31");
    let sig = key.sign(&body);
    let keys = pinned(&[&key]);
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
    let (old, new, stranger) = (Key::generate(), Key::generate(), Key::generate());
    let body = config_body(3, "2027-01-31");
    let today = day("2026-11-24");
    let err = verify_config(&body, &stranger.sign(&body), &pinned(&[&old]), today).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err}");
    assert!(err.to_string().contains("tally on --endpoint"), "{err}");
    // Both pinned: configs signed by either verify.
    let both = pinned(&[&old, &new]);
    verify_config(&body, &old.sign(&body), &both, today).unwrap();
    verify_config(&body, &new.sign(&body), &both, today).unwrap();
}

#[test]
fn a_signature_from_another_key_with_a_forged_key_id_is_refused() {
    let (victim, attacker) = (Key::generate(), Key::generate());
    let body = config_body(3, "2027-01-31");
    let keys = pinned(&[&victim]);
    // Rewrite the key id inside the attacker's signature to the victim's.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = String::from_utf8(attacker.sign(&body)).unwrap();
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
    let key = Key::generate();
    let body = config_body(3, "2026-11-24");
    let sig = key.sign(&body);
    let keys = pinned(&[&key]);
    verify_config(&body, &sig, &keys, day("2026-11-24")).unwrap();
    let err = verify_config(&body, &sig, &keys, day("2026-11-25")).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

#[test]
fn an_oversized_body_is_refused_before_verification() {
    let key = Key::generate();
    let body = vec![b' '; tally_protocol::MAX_CONFIG_BYTES + 1];
    // Even with a signature that would verify.
    let err = verify_config(&body, &key.sign(&body), &pinned(&[&key]), day("2026-11-24"));
    assert!(matches!(err, Err(VerifyError::TooLarge(_))));
    let err = verify_config(&body, b"garbage", &[], day("2026-11-24"));
    assert!(matches!(err, Err(VerifyError::TooLarge(_))));
}

#[test]
fn garbage_signatures_and_no_keys_are_refused() {
    let key = Key::generate();
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
    let err = verify_config(&body, &key.sign(&body), &[], today).unwrap_err();
    assert!(matches!(err, VerifyError::NoPinnedKeys));
}

#[test]
fn a_signed_but_invalid_config_is_refused() {
    let key = Key::generate();
    let body = br#"{"version": 1}"#;
    let err = verify_config(body, &key.sign(body), &pinned(&[&key]), day("2026-11-24"));
    assert!(matches!(err, Err(VerifyError::Invalid(_))));
}

#[test]
fn the_ratchet_refuses_rollbacks_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Key::generate(), Key::generate());
    let keys = pinned(&[&a, &b]);
    let today = day("2026-11-24");
    let verified = |key: &Key, version| {
        let body = config_body(version, "2027-01-31");
        verify_config(&body, &key.sign(&body), &keys, today).unwrap()
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

fn endpoint_for(server: &Server, keys: &[&Key]) -> Endpoint {
    let keys: Vec<String> = keys.iter().map(|k| k.public.clone()).collect();
    Endpoint::new(&server.url, &keys).unwrap()
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
    let key = Key::generate();
    Endpoint::new("https://c.example", std::slice::from_ref(&key.public))
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
    let server = Server::start();
    let key = Key::generate();
    let body = config_body(4, "2027-01-31");
    server.publish(&body, &key.sign(&body));
    let endpoint = endpoint_for(&server, &[&key]);
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
    let server = Server::start();
    let (key, stranger) = (Key::generate(), Key::generate());
    let endpoint = endpoint_for(&server, &[&key]);
    endpoint.save(dir.path()).unwrap();
    let today = day("2026-11-24");
    let good = config_body(4, "2027-01-31");
    server.publish(&good, &key.sign(&good));
    fetch(&endpoint, dir.path(), today, &quick()).unwrap();

    let older = config_body(3, "2027-01-31");
    let expired = config_body(9, "2026-11-01");
    let mut tampered = config_body(5, "2027-01-31");
    let tampered_sig = key.sign(&tampered);
    tampered[30] ^= 1;
    let cases: [(&str, Vec<u8>, Vec<u8>); 4] = [
        ("rollback", older.clone(), key.sign(&older)),
        ("expired", expired.clone(), key.sign(&expired)),
        ("tampered", tampered, tampered_sig),
        ("another key", good.clone(), stranger.sign(&good)),
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
    let server = Server::start();
    let key = Key::generate();
    let body = config_body(4, "2027-01-31");
    server.publish(&body, &key.sign(&body));
    let endpoint = endpoint_for(&server, &[&key]);
    let today = day("2026-11-24");

    refresh(&endpoint, dir.path(), today, &quick()).unwrap();
    assert_eq!(server.requests(), 2);
    refresh(&endpoint, dir.path(), today, &quick()).unwrap();
    assert_eq!(server.requests(), 2, "fresh cache: no download");

    let newer = config_body(5, "2027-01-31");
    server.publish(&newer, &key.sign(&newer));
    let tomorrow = day("2026-11-25");
    assert_eq!(
        refresh(&endpoint, dir.path(), tomorrow, &quick())
            .unwrap()
            .config
            .version,
        5
    );
    assert_eq!(server.requests(), 4);

    // The collector breaks: the verified cache stands in, and the failure is on record.
    server.set("/config.json", Reply::Status(503));
    let day_after = day("2026-11-26");
    assert_eq!(
        refresh(&endpoint, dir.path(), day_after, &quick())
            .unwrap()
            .config
            .version,
        5
    );
    let state = CacheState::load(dir.path());
    assert!(state.last_error.as_deref().unwrap().contains("503"));
    assert_eq!(state.fetched_at, Some(tomorrow));
    assert!(state.is_stale(day_after));
}

#[test]
fn http_errors_oversized_and_slow_downloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let key = Key::generate();
    let endpoint = endpoint_for(&server, &[&key]);
    let today = day("2026-11-24");

    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );

    let huge = vec![b' '; tally_protocol::MAX_CONFIG_BYTES + 10];
    server.publish(&huge, &key.sign(&huge));
    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");

    server.set("/config.json", Reply::Hang);
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
    let key = Key::generate();
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = Endpoint::new(&format!("http://127.0.0.1:{port}"), &[key.public]).unwrap();
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
    let key = Key::generate();
    let body = config_body(3, "2026-12-31");
    let signature = key.sign(&body);
    let pinned = Server::start();
    let other = Server::start();
    other.publish(&body, &signature);
    for path in ["/config.json", "/config.json.minisig"] {
        pinned.set(path, Reply::Redirect(format!("{}{path}", other.url)));
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
    assert_eq!(other.requests(), 0, "the other origin was asked");
    assert!(!dir.path().join("config.json").exists());

    // Same origin, another path: followed.
    pinned.set("/v2/config.json", Reply::Ok(body.clone()));
    pinned.set("/v2/config.json.minisig", Reply::Ok(signature.clone()));
    pinned.set("/config.json", Reply::Redirect("/v2/config.json".into()));
    pinned.set(
        "/config.json.minisig",
        Reply::Redirect(format!("{}/v2/config.json.minisig", pinned.url)),
    );
    let verified = fetch(&endpoint, dir.path(), today, &quick()).unwrap();
    assert_eq!(verified.config.version, 3);

    // A loop within the origin ends.
    pinned.set("/config.json", Reply::Redirect("/config.json".into()));
    let err = fetch(&endpoint, dir.path(), today, &quick()).unwrap_err();
    assert!(matches!(err, FetchError::TooManyRedirects { .. }), "{err}");
}
