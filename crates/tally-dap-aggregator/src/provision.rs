//! Setting up a task on both aggregators, and the keys around it.
//!
//! DAP expects the collector to hold its own HPKE key: `collector-keygen` makes the key pair
//! and the collector's token, writes the private credential (the JSON format Janus's collector
//! and Divvi Up's tools read), and a public file with only the HPKE config and the token's
//! digest, which is all the aggregators ever get. `provision` then makes the task: a fresh task
//! ID and VDAF verification key, a token for the leader to present to the helper, a task file in
//! each aggregator's store (or the helper's written to a file, for a helper run by another
//! organisation to install with `import-task`), and the config section the collector signs
//! into its upload config.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tally_dap::AggregationConfig;
use tally_dap::draft::messages::TaskId;
use tally_dap::draft::{self, HpkeKeypair, VERIFY_KEY_LEN, VdafParams};
use tally_dap::layout::Layout;

use crate::auth;
use crate::store::{Created, Durability, MAX_TASK_BYTES, Store};
use crate::task::{AggregatorRole, TaskFile, encode_hpke_config, hex, task_key};

/// What a collector hands the aggregators: its HPKE config and its token's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorPublic {
    /// DAP-encoded HPKE config, unpadded base64url.
    pub hpke_config: String,
    /// SHA-256 of the collector's bearer token, hex.
    pub token_sha256: String,
}

/// The collector's private credential, in the JSON shape of Janus's
/// `PrivateCollectorCredential`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectorCredential {
    pub id: u8,
    pub kem: String,
    pub kdf: String,
    pub aead: String,
    /// Unpadded base64url.
    pub public_key: String,
    /// Unpadded base64url. Secret.
    pub private_key: String,
    /// The bearer token the collector presents to the leader. Secret.
    pub token: String,
}

impl CollectorCredential {
    /// The key pair the credential holds.
    pub fn keypair(&self) -> anyhow::Result<HpkeKeypair> {
        if (self.kem.as_str(), self.kdf.as_str(), self.aead.as_str())
            != ("X25519HkdfSha256", "Sha256", "AesGcm128")
        {
            bail!(
                "the collector credential uses algorithms tally does not make: {}, {}, {}",
                self.kem,
                self.kdf,
                self.aead
            );
        }
        let decode = |what: &str, text: &str| {
            URL_SAFE_NO_PAD
                .decode(text)
                .with_context(|| format!("the credential's {what} is not base64url"))
        };
        use tally_dap::draft::messages::{
            HpkeAeadId, HpkeConfig, HpkeConfigId, HpkeKdfId, HpkeKemId, HpkePublicKey,
        };
        Ok(HpkeKeypair {
            config: HpkeConfig::new(
                HpkeConfigId::from(self.id),
                HpkeKemId::X25519HkdfSha256,
                HpkeKdfId::HkdfSha256,
                HpkeAeadId::Aes128Gcm,
                HpkePublicKey::from(decode("public_key", &self.public_key)?),
            ),
            private_key: decode("private_key", &self.private_key)?,
        })
    }
}

/// Makes a collector's key pair and token: `(private credential, public part)`.
pub fn collector_keygen() -> (CollectorCredential, CollectorPublic) {
    let keypair = HpkeKeypair::generate(rand::random());
    let token = auth::generate_token();
    let credential = CollectorCredential {
        id: u8::from(*keypair.config.id()),
        kem: "X25519HkdfSha256".into(),
        kdf: "Sha256".into(),
        aead: "AesGcm128".into(),
        public_key: URL_SAFE_NO_PAD.encode(keypair.config.public_key().as_ref()),
        private_key: URL_SAFE_NO_PAD.encode(&keypair.private_key),
        token: token.clone(),
    };
    let public = CollectorPublic {
        hpke_config: encode_hpke_config(&keypair.config),
        token_sha256: hex(&auth::token_hash(&token)),
    };
    (credential, public)
}

/// The task's parameters beyond the layout.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    pub leader_url: String,
    pub helper_url: String,
    pub time_precision: u64,
    pub min_batch_size: u64,
    pub report_expiry_age: u64,
    pub tolerable_clock_skew: u64,
}

/// Where the helper's task file goes.
#[derive(Debug, Clone)]
pub enum HelperTarget {
    /// Into the helper's store (a directory or `s3://…`: both aggregators' stores are
    /// reachable from here, as in the local demo and tests).
    Store(String),
    /// Into a file, for the helper's operator to `import-task`.
    File(PathBuf),
}

/// What `provision` made.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub task_id: TaskId,
    /// The config section for the signed upload config.
    pub config: AggregationConfig,
}

/// Creates a task on both sides and returns the config section.
pub async fn provision(
    leader_store: &str,
    helper: &HelperTarget,
    collector: &CollectorPublic,
    layout: Layout,
    settings: &TaskSettings,
) -> anyhow::Result<Provisioned> {
    layout.validate().context("the layout")?;
    let collector_config = crate::task::decode_hpke_config(&collector.hpke_config)
        .context("the collector's hpke_config")?;
    if !draft::is_supported(&collector_config) {
        bail!("the collector's HPKE config uses an algorithm this build lacks");
    }
    crate::task::decode_hex32(&collector.token_sha256)
        .context("the collector's token_sha256 is not 64 hex digits")?;
    let task_id: TaskId = rand::random();
    let vdaf = VdafParams::sum_vec(u32::try_from(layout.len()).context("the layout is too long")?);
    let config = AggregationConfig {
        protocol: draft::PROTOCOL.into(),
        leader: tally_dap::client::with_slash(&settings.leader_url),
        helper: tally_dap::client::with_slash(&settings.helper_url),
        task_id: task_id.to_string(),
        vdaf,
        time_precision: settings.time_precision,
        min_batch_size: settings.min_batch_size,
        layout,
    };
    config.validate()?;
    if settings.report_expiry_age < settings.time_precision {
        bail!("the report expiry age must be at least the time precision");
    }
    let verify_key = URL_SAFE_NO_PAD.encode(rand::random::<[u8; VERIFY_KEY_LEN]>());
    let leader_token = auth::generate_token();
    let common = |role| TaskFile {
        task_id: task_id.to_string(),
        role,
        vdaf,
        verify_key: verify_key.clone(),
        time_precision: settings.time_precision,
        min_batch_size: settings.min_batch_size,
        report_expiry_age: settings.report_expiry_age,
        tolerable_clock_skew: settings.tolerable_clock_skew,
        collector_hpke_config: collector.hpke_config.clone(),
        helper_url: None,
        helper_token: None,
        collector_token_sha256: None,
        leader_token_sha256: None,
    };
    let leader_file = TaskFile {
        helper_url: Some(config.helper.clone()),
        helper_token: Some(leader_token.clone()),
        collector_token_sha256: Some(collector.token_sha256.clone()),
        ..common(AggregatorRole::Leader)
    };
    let helper_file = TaskFile {
        leader_token_sha256: Some(hex(&auth::token_hash(&leader_token))),
        ..common(AggregatorRole::Helper)
    };
    leader_file.clone().parse()?;
    helper_file.clone().parse()?;
    install(leader_store, &leader_file).await?;
    match helper {
        HelperTarget::Store(dir) => install(dir, &helper_file).await?,
        HelperTarget::File(path) => write_private(path, &serde_json::to_vec_pretty(&helper_file)?)?,
    }
    Ok(Provisioned { task_id, config })
}

/// Writes a task file into a store (refusing to replace one: task parameters never change).
pub async fn install(store_spec: &str, file: &TaskFile) -> anyhow::Result<()> {
    let task = file.clone().parse()?;
    let store = Store::open(store_spec, Durability::Disk)?;
    for other in store.list_dirs("tasks").await? {
        let key = format!("tasks/{other}/task.json");
        if let Some(bytes) = store.get(&key, MAX_TASK_BYTES).await?
            && let Ok(existing) = serde_json::from_slice::<TaskFile>(&bytes)
            && existing.role != file.role
        {
            bail!(
                "{store} holds {} tasks; give the {} its own store",
                existing.role,
                file.role
            );
        }
    }
    match store
        .create(&task_key(&task.id), serde_json::to_vec_pretty(file)?)
        .await?
    {
        Created::New => Ok(()),
        Created::AlreadyThere => bail!(
            "{store} already has task {}; task parameters never change (make a new task)",
            task.id
        ),
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
