//! Every config version served from a store (`configs/<version>.json`), read once each: what
//! uploads, stored reports and imports are checked against.
//!
//! Promises: a report read back from the store is counted only if it passes the checks an
//! upload passed ([`crate::validate::check_against_config`]) against the config version it
//! names, and a merge (checkpoint, merged copy) is used only if everything in it is collected
//! by some served config ([`crate::validate::check_merged`]), so a report or merge planted in
//! the store, or written by an older collector that checked less, is never published; the store is asked for a version only when it is not known here (another server
//! sharing the store may have served it since).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tally_protocol::{Report, UploadConfig};

use crate::merge::MergedWeek;
use crate::store::{MAX_CONFIG_BYTES, Read, Store, config_keys};

/// What the store holds of one config version.
#[derive(Debug, Clone)]
pub enum Served {
    /// The version was served: here it is.
    Config(Arc<UploadConfig>),
    /// No server ever served it from this store.
    Never,
    /// Its record is there but cannot be used (not a regular file, too big, does not parse):
    /// the reason, naming the key.
    Unusable(String),
}

/// The config versions served from one store, cached. Cheap to clone.
#[derive(Clone)]
pub struct Configs {
    store: Store,
    known: Arc<RwLock<HashMap<u64, Arc<UploadConfig>>>>,
}

impl Configs {
    pub fn new(store: Store) -> Configs {
        Configs {
            store,
            known: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Records `config` as served (this server serves it, and has written it to the store).
    pub fn insert(&self, config: Arc<UploadConfig>) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(config.version, config);
    }

    /// The config of `version`, from memory or else from the store. `Err` only when the store
    /// could not be read (worth a retry).
    pub async fn lookup(&self, version: u64) -> anyhow::Result<Served> {
        if let Some(config) = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version)
        {
            return Ok(Served::Config(config.clone()));
        }
        let (key, _) = config_keys(version);
        let bytes = match self.store.read(&key, MAX_CONFIG_BYTES).await? {
            Read::Found(bytes) => bytes,
            Read::Missing => return Ok(Served::Never),
            Read::Skipped(why) => return Ok(Served::Unusable(why)),
        };
        let config = match UploadConfig::parse(&bytes) {
            Ok(config) => Arc::new(config),
            Err(e) => return Ok(Served::Unusable(format!("{key} does not parse: {e}"))),
        };
        if config.version != version {
            return Ok(Served::Unusable(format!(
                "{key} holds config version {}",
                config.version
            )));
        }
        self.insert(config.clone());
        Ok(Served::Config(config))
    }

    /// Checks a report read back from the store as its upload was checked, except for its age
    /// (it was uploaded when it was recent): `Ok(Err(reason))` when it is not to be counted,
    /// `Err` when the store could not be read.
    pub async fn check_stored(&self, report: &Report) -> anyhow::Result<Result<(), String>> {
        let Some(version) = report.config_version else {
            return Ok(Err(
                "it names no config_version (a local copy, never an upload)".into(),
            ));
        };
        Ok(match self.lookup(version).await? {
            Served::Config(config) => crate::validate::check_against_config(report, &config),
            Served::Never => Err(format!(
                "it names config version {version}, never served from this store"
            )),
            Served::Unusable(why) => Err(format!(
                "it names config version {version}, whose record cannot be used: {why}"
            )),
        })
    }

    /// Checks a week's merge read back from the store ([`crate::validate::check_merged`])
    /// against the configs known here, and, if it fails, against every config the store holds
    /// (another server may have served one since): `Ok(Err(reason))` when it is not to be
    /// used, `Err` when the store could not be read.
    pub async fn check_merged(&self, merged: &MergedWeek) -> anyhow::Result<Result<(), String>> {
        let known: Vec<Arc<UploadConfig>> = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        if crate::validate::check_merged(merged, &known).is_ok() {
            return Ok(Ok(()));
        }
        Ok(crate::validate::check_merged(merged, &self.all().await?))
    }

    /// Every config version served from the store (those whose record cannot be used named in
    /// the log and left out), lowest first.
    pub async fn all(&self) -> anyhow::Result<Vec<Arc<UploadConfig>>> {
        let (keys, _) = self.store.list_dir("configs").await?;
        let mut configs = Vec::new();
        for version in keys
            .iter()
            .filter_map(|key| key.filename()?.strip_suffix(".json")?.parse::<u64>().ok())
        {
            match self
                .lookup(version)
                .await
                .with_context(|| format!("reading config version {version}"))?
            {
                Served::Config(config) => configs.push(config),
                Served::Never => {}
                Served::Unusable(why) => crate::store::note_skipped(
                    config_keys(version).0.as_ref(),
                    &format!("{why}; reports naming config version {version} are not counted"),
                ),
            }
        }
        configs.sort_by_key(|config| config.version);
        Ok(configs)
    }
}
