//! `tally-server import`: reports written into a store directly, as the server would store
//! them, without the upload path's checks of the served config and of the report's age.
//!
//! For operators (moving reports between stores, restoring a backup) and for `tally demo`,
//! which fills a store with weeks of simulated installations before its server starts; with
//! `--simulated`, the store is marked as holding simulated reports (`open_data::SIMULATED_KEY`)
//! and every page and download of a server on it says so.
//!
//! Promises: every imported report parses as a [`Report`] and is stored in its canonical form
//! under its week and `x`, as an upload would be, once (a report already stored is left as it
//! is); a file that does not parse is an error naming it, and nothing after it is imported.
//! A running server picks imported reports up on its next re-read of the store; one started
//! afterwards merges them at start-up.

use std::path::PathBuf;

use anyhow::{Context, bail};
use axum::body::Bytes;
use tally_protocol::{MAX_REPORT_BYTES, Report};

use crate::open_data::SIMULATED_KEY;
use crate::store::{Store, seal_key};
use tally_protocol::aggregate::bucket_week;

/// `tally-server import`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Storage: a directory, or s3://bucket/prefix (as for `serve`).
    #[arg(long)]
    pub store: String,
    /// Mark the store as holding simulated reports; the text says how they were made and is
    /// shown on every page.
    #[arg(long)]
    pub simulated: Option<String>,
    /// Report files (`.json`), or directories of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `tally-server import`: prints how many reports were stored and how many were there.
pub fn import_command(args: &ImportArgs) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let store = Store::open(&args.store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stored, present) = runtime.block_on(async {
        if let Some(how) = &args.simulated {
            store
                .put(
                    &object_store::path::Path::from(SIMULATED_KEY),
                    Bytes::from(how.clone()),
                    None,
                )
                .await?;
        }
        let (mut stored, mut present) = (0u64, 0u64);
        let mut open = std::collections::BTreeMap::new();
        for file in &files {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            if bytes.len() > MAX_REPORT_BYTES {
                bail!(
                    "{} is {} bytes, over the {MAX_REPORT_BYTES} byte report limit",
                    file.display(),
                    bytes.len()
                );
            }
            let report = Report::parse(&bytes)
                .with_context(|| format!("{} is not a report", file.display()))?;
            let canonical = Bytes::from(report.to_canonical_json());
            // As an upload is stored (`AppState::accept_upload`): into the week's first
            // generation not yet sealed, and into the next one if a seal came after the write,
            // so the next checkpoint holds it whatever servers run meanwhile (merges count a
            // report stored twice once).
            let monday = bucket_week(report.week);
            let generation = open.entry(monday).or_insert(0);
            while store.exists(&seal_key(monday, *generation)).await? {
                *generation += 1;
            }
            let (created, held_in) =
                crate::checkpoint::store_report(&store, &report, canonical, *generation).await?;
            *generation = held_in;
            if created {
                stored += 1;
            } else {
                present += 1;
            }
        }
        anyhow::Ok((stored, present))
    })?;
    println!("imported {stored} report(s); {present} already stored");
    Ok(())
}
