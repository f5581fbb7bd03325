//! `tally-server import`: reports written into a store directly, as the server would store
//! them, without the upload path's checks of the served config and of the report's age.
//!
//! For operators (moving reports between stores, restoring a backup) and for `tally demo`,
//! which fills a store with weeks of simulated installations before its server starts; with
//! `--simulated`, the store is marked as holding simulated reports (`open_data::SIMULATED_KEY`)
//! and every page and download of a server on it says so.
//!
//! Promises: every imported report is checked as an upload is, except for its age: against the
//! config version it names when the store has served it, and otherwise against what every
//! config implies (`validate::check_without_config`; a server on the store later counts it
//! only if that config allows it). It is stored in its canonical form under its week and `x`,
//! as an upload would be, once (a report already stored is left as it is). A file that is not
//! a regular file (named on the command line, links are followed; found in a directory, they
//! are not) is refused at once, never waited on. Every file is read and checked before any is
//! stored: a file refused is an error naming it, and nothing is imported. A running server
//! picks imported reports up on its next re-read of the store; one started afterwards merges
//! them at start-up.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use axum::body::Bytes;
use tally_protocol::{MAX_REPORT_BYTES, Report};
use tally_sys::safe_open;

use crate::configs::{Configs, Served};
use crate::open_data::SIMULATED_KEY;
use crate::store::{Store, seal_key};
use crate::validate;
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
    // (path, named on the command line: a link there is followed)
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            found.sort();
            files.extend(found.into_iter().map(|p| (p, false)));
        } else {
            files.push((path.clone(), true));
        }
    }
    let store = Store::open(&args.store)?;
    let configs = Configs::new(store.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stored, present, unchecked) = runtime.block_on(async {
        let mut unchecked = BTreeSet::new();
        // Every file checked first (and kept only as long as it takes), so that a refused one
        // leaves the store as it was.
        for (file, named) in &files {
            checked_report(file, *named, &configs, &mut unchecked).await?;
        }
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
        for (file, named) in &files {
            let report = checked_report(file, *named, &configs, &mut unchecked).await?;
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
        anyhow::Ok((stored, present, unchecked))
    })?;
    println!("imported {stored} report(s); {present} already stored");
    if !unchecked.is_empty() {
        let versions: Vec<String> = unchecked.iter().map(u64::to_string).collect();
        println!(
            "some name config version {}, which this store has not served: they were not checked \
             against it, only against what every config implies; a server on this store counts \
             each only if that config allows it",
            versions.join(", ")
        );
    }
    Ok(())
}

/// The report in `file`, checked as an upload is (see the module docs); the config versions
/// it could not be checked against, because the store has not served them, go to `unchecked`.
async fn checked_report(
    file: &Path,
    named: bool,
    configs: &Configs,
    unchecked: &mut BTreeSet<u64>,
) -> anyhow::Result<Report> {
    let bytes = read_report_file(file, named)?;
    let report =
        Report::parse(&bytes).with_context(|| format!("{} is not a report", file.display()))?;
    let checked = match report.config_version {
        Some(version) => match configs.lookup(version).await? {
            Served::Config(config) => validate::check_against_config(&report, &config),
            Served::Never | Served::Unusable(_) => {
                unchecked.insert(version);
                validate::check_without_config(&report)
            }
        },
        None => validate::check_without_config(&report),
    };
    match checked {
        Ok(()) => Ok(report),
        Err(why) => bail!(
            "{} is not a report an upload could store: {why}; nothing was imported",
            file.display()
        ),
    }
}

/// The bytes of a report file: a regular file of at most [`MAX_REPORT_BYTES`], opened without
/// waiting (a FIFO is refused at once, not read). A link is followed only if the user `named`
/// the file; one found in a directory is refused.
fn read_report_file(file: &Path, named: bool) -> anyhow::Result<Vec<u8>> {
    let opened: std::io::Result<File> = if named {
        OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(file)
            .and_then(|f| safe_open::check_regular(&f).map(|()| f))
    } else {
        safe_open::open_read(file)
    };
    let opened = opened.map_err(|e| match safe_open::not_regular(&e) {
        Some(found) => anyhow::anyhow!(
            "{} is {}, not a regular file: import reads report files only{}",
            file.display(),
            found.what,
            if named {
                ""
            } else {
                " (and follows no link found in a directory)"
            }
        ),
        None => anyhow::Error::new(e).context(format!("cannot read {}", file.display())),
    })?;
    let mut bytes = Vec::new();
    opened
        .take(MAX_REPORT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if bytes.len() > MAX_REPORT_BYTES {
        bail!(
            "{} is over the {MAX_REPORT_BYTES} byte report limit",
            file.display()
        );
    }
    Ok(bytes)
}
