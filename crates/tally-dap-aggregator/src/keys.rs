//! An aggregator's HPKE keys, and their rotation.
//!
//! Each key is `keys/<config id>.json` in the aggregator's store (mode 0600: it holds the private
//! key). `GET /hpke_config` advertises the keys that are current, newest first (clients take the
//! first they support). Rotation adds a new current key and gives every older one an
//! `accept_until` time: until then, reports sealed to it still open (a client may have cached
//! the old config; Janus's client honours the `Cache-Control: max-age` of a day, so the grace
//! period must be at least twice that), and after it they are refused as `outdatedConfig` and
//! the key is deleted at the next rotation. A running server re-reads its keys periodically, so
//! a rotation needs no restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tally_dap::draft::HpkeKeypair;
use tally_dap::draft::messages::{HpkeConfig, HpkeConfigList};

use crate::store::{MAX_KEY_BYTES, Store};
use crate::task::{decode_hpke_config, encode_hpke_config};

/// How long `Cache-Control` lets a client keep an HPKE config list (seconds).
pub const CONFIG_MAX_AGE: u64 = 86_400;

/// The default grace period of a rotated-out key: a week, seven times the cache lifetime.
pub const DEFAULT_GRACE: u64 = 7 * 86_400;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    /// The public config, DAP-encoded, unpadded base64url.
    config: String,
    /// The private key, unpadded base64url. Secret.
    private_key: String,
    /// Unix seconds when the key was made.
    created: u64,
    /// Unix seconds after which reports sealed to this key are refused; none while it is
    /// current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accept_until: Option<u64>,
}

/// The keys an aggregator holds at one moment.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// Current keys, newest first: what `GET /hpke_config` serves.
    advertised: Vec<HpkeConfig>,
    /// Every key that still opens reports, by config id, with its `accept_until`.
    keys: BTreeMap<u8, (HpkeKeypair, Option<u64>)>,
}

impl KeySet {
    /// The advertised list.
    pub fn config_list(&self) -> HpkeConfigList {
        HpkeConfigList::new(self.advertised.clone())
    }

    /// The key pair with `id`, if reports sealed to it are accepted at `now`.
    pub fn accepted(&self, id: u8, now: u64) -> Option<&HpkeKeypair> {
        self.keys
            .get(&id)
            .filter(|(_, until)| until.is_none_or(|until| now <= until))
            .map(|(key, _)| key)
    }

    /// Whether any key is advertised.
    pub fn is_empty(&self) -> bool {
        self.advertised.is_empty()
    }
}

fn key_name(id: u8) -> String {
    format!("keys/{id}.json")
}

async fn read_all(store: &Store) -> anyhow::Result<Vec<(u8, StoredKey)>> {
    let mut keys = Vec::new();
    for name in store.list("keys").await? {
        let Some(id) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u8>().ok())
        else {
            continue;
        };
        let bytes = store
            .get(&key_name(id), MAX_KEY_BYTES)
            .await?
            .with_context(|| format!("key {id} vanished while reading"))?;
        let key: StoredKey = serde_json::from_slice(&bytes)
            .with_context(|| format!("keys/{name} in the store {store} is not a key file"))?;
        keys.push((id, key));
    }
    Ok(keys)
}

/// Loads the key set from the store.
pub async fn load(store: &Store) -> anyhow::Result<KeySet> {
    let mut set = KeySet::default();
    let mut current = Vec::new();
    for (id, stored) in read_all(store).await? {
        let config =
            decode_hpke_config(&stored.config).with_context(|| format!("key {id}: its config"))?;
        if u8::from(*config.id()) != id {
            anyhow::bail!("key file {id} holds config {}", u8::from(*config.id()));
        }
        let private_key = URL_SAFE_NO_PAD
            .decode(&stored.private_key)
            .with_context(|| format!("key {id}: private_key is not base64url"))?;
        if stored.accept_until.is_none() {
            current.push((stored.created, config.clone()));
        }
        set.keys.insert(
            id,
            (
                HpkeKeypair {
                    config,
                    private_key,
                },
                stored.accept_until,
            ),
        );
    }
    current.sort_by_key(|(created, config)| std::cmp::Reverse((*created, u8::from(*config.id()))));
    set.advertised = current.into_iter().map(|(_, c)| c).collect();
    Ok(set)
}

/// Makes a new current key; older current keys are accepted for `grace` more seconds; keys
/// whose grace ended are deleted. Returns the new key's config id.
pub async fn rotate(store: &Store, now: u64, grace: u64) -> anyhow::Result<u8> {
    let existing = read_all(store).await?;
    for (id, key) in &existing {
        if key.accept_until.is_some_and(|until| until < now) {
            store.delete(&key_name(*id)).await?;
        }
    }
    let used: Vec<u8> = existing
        .iter()
        .filter(|(_, k)| k.accept_until.is_none_or(|until| until >= now))
        .map(|(id, _)| *id)
        .collect();
    let id = (0..=u8::MAX)
        .find(|id| !used.contains(id))
        .context("all 256 HPKE config ids are in use; wait for rotated keys to expire")?;
    let keypair = HpkeKeypair::generate(id);
    let stored = StoredKey {
        config: encode_hpke_config(&keypair.config),
        private_key: URL_SAFE_NO_PAD.encode(&keypair.private_key),
        created: now,
        accept_until: None,
    };
    store
        .put(&key_name(id), serde_json::to_vec_pretty(&stored)?)
        .await?;
    for (old, mut key) in existing {
        if key.accept_until.is_none() && old != id {
            key.accept_until = Some(now.saturating_add(grace));
            store
                .put(&key_name(old), serde_json::to_vec_pretty(&key)?)
                .await?;
        }
    }
    Ok(id)
}

/// Loads the keys, making the first one if the store has none.
pub async fn load_or_init(store: &Store, now: u64) -> anyhow::Result<KeySet> {
    let set = load(store).await?;
    if !set.is_empty() {
        return Ok(set);
    }
    rotate(store, now, DEFAULT_GRACE).await?;
    load(store).await
}

/// A key set shared by request handlers and replaced wholesale when re-read.
pub type SharedKeys = Arc<std::sync::RwLock<Arc<KeySet>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Durability;

    #[tokio::test]
    async fn rotation_advertises_the_new_key_and_accepts_the_old_one_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), Durability::ProcessCrash).unwrap();
        let first = load_or_init(&store, 1_000).await.unwrap();
        assert_eq!(first.config_list().hpke_configs().len(), 1);
        let first_id = u8::from(*first.config_list().hpke_configs()[0].id());
        let second_id = rotate(&store, 2_000, 500).await.unwrap();
        assert_ne!(first_id, second_id);
        let keys = load(&store).await.unwrap();
        let advertised: Vec<u8> = keys
            .config_list()
            .hpke_configs()
            .iter()
            .map(|c| u8::from(*c.id()))
            .collect();
        assert_eq!(advertised, [second_id]);
        assert!(keys.accepted(first_id, 2_500).is_some());
        assert!(keys.accepted(first_id, 2_501).is_none());
        assert!(keys.accepted(second_id, u64::MAX).is_some());
        // The next rotation after the grace period deletes the old key and may reuse its id.
        let third_id = rotate(&store, 3_000, 500).await.unwrap();
        assert_eq!(third_id, first_id);
        let keys = load(&store).await.unwrap();
        assert!(keys.accepted(second_id, 3_500).is_some());
        assert_eq!(
            u8::from(*keys.config_list().hpke_configs()[0].id()),
            third_id
        );
        assert_ne!(
            keys.accepted(third_id, 3_000).unwrap().private_key,
            first.accepted(first_id, 1_000).unwrap().private_key
        );
    }
}
