//! What this crate's tests and its bench share: a data directory whose cached config is
//! signed by a pinned key, as `tally on` and a fetch leave it. The bench includes this file by
//! path (a bench cannot depend on a test binary).

use tally_config::Endpoint;
use tally_home::Home;
use tally_protocol::Day;
use tally_test_support::signing::KeyPair;

/// Pins a fresh key, and stores `config` signed by it as the verified cached config.
pub fn install_config(home: &Home, config: &str, today: Day) {
    let key = KeyPair::generate();
    let endpoint = Endpoint::new(
        "https://collector.example",
        std::slice::from_ref(&key.public_base64),
    )
    .unwrap();
    endpoint.save(&home.config_dir()).unwrap();
    tally_config::cache::accept_and_store(
        &endpoint,
        &home.config_dir(),
        config.as_bytes(),
        &key.signature(config.as_bytes()),
        today,
    )
    .unwrap();
}
