//! Generations and checkpoints: how servers sharing one store agree, and how one restarts, at a
//! cost that grows with the reports stored since the last checkpoint, not with all reports.
//!
//! Each calendar week's raw reports are written in numbered **generations**
//! (`reports/<monday>/<g>/…`). **Checkpoint** `n` (`merged/<monday>/<n>.json`) is the merge of
//! every report of generations below `n`, with the set of report ids (day of the week and `x`)
//! it holds; generation `n` is then the week's open generation. A server holds the newest
//! checkpoint it knows and, beside it, the reports it has seen in the open generation
//! ([`WeekState`]). Keeping in step with other servers is: one `GET` of the `latest` hint, one
//! `HEAD` of the open generation's seal, and one listing of the open generation, fetching only
//! reports it does not hold yet. A restart is the same from nothing: the newest checkpoint, then
//! the open generation.
//!
//! Making checkpoint `n + 1` (any server, [`crate::AppState::flush`]): write the **seal**
//! `reports/<monday>/<n>/sealed`, then list generation `n` and merge it into checkpoint `n`, then
//! write checkpoint `n + 1` create-if-absent. A writer, after writing a report into generation
//! `g`, looks for `g`'s seal; only when there is none is the upload answered, and otherwise it
//! writes the report again into `g + 1` (and so on). So every report answered 2xx was in its
//! generation before that generation's seal existed, hence before the listing that made the
//! checkpoint of it (the stores used, the local disk and S3, list what was written before the
//! listing began). That holds with any number of servers writing and checkpointing at once,
//! and for any server killed at any point: a half-made checkpoint is made again by the next
//! server that tries, and the checkpoint is written once (create-if-absent), so all servers
//! adopt the same one.
//!
//! A report may be stored twice: re-sent to a server that has not yet seen the first copy, or
//! written again into the next generation because its first generation was sealed meanwhile.
//! Merges therefore add a report only if its id is not in the set already, so every report is
//! counted once. The set costs 9 bytes a report in each checkpoint (about 12 MB, base64, for a
//! million reports): one object read at restart instead of a million.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::body::Bytes;
use base64::Engine;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tally_protocol::aggregate::bucket_week;
use tally_protocol::{Day, Report};

use crate::configs::Configs;
use crate::merge::MergedWeek;
use crate::store::{
    Created, MAX_CHECKPOINT_BYTES, MAX_HINT_BYTES, MAX_STORED_REPORT_BYTES, Store, checkpoint_key,
    latest_key, note_skipped, report_key, seal_key, x_of_key,
};

/// A report's identity within its calendar week: its week day and `x`, as the key names them.
/// Two uploads with the same id are the same report (the key is create-if-absent).
pub type ReportId = (u8, u64);

/// The id of a report of `week` with `x`.
pub fn report_id(week: Day, x: f64) -> ReportId {
    let offset = week.days_since(bucket_week(week)).clamp(0, 6) as u8;
    (offset, x.to_bits())
}

/// The id a report key names (`<week>_<x>.json`), `None` for any other key.
pub fn id_of_key(key: &Path) -> Option<ReportId> {
    let name = key.filename()?;
    let week: Day = name.split_once('_')?.0.parse().ok()?;
    Some(report_id(week, x_of_key(key)?))
}

/// Checkpoint `covers`: the merge of every report of generations below `covers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Generations below this one are merged here; it is the week's open generation.
    pub covers: u64,
    pub merged: MergedWeek,
    /// The id of every report in `merged`.
    pub ids: HashSet<ReportId>,
}

/// A checkpoint as stored: `ids` are sorted, 9 bytes each (day of the week, then the bits of
/// `x`, little-endian), base64.
#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    covers: u64,
    merged: MergedWeek,
    ids: String,
}

impl Checkpoint {
    /// Checkpoint 0 of the week of `monday`: nothing merged. It is never stored.
    pub fn empty(monday: Day) -> Checkpoint {
        Checkpoint {
            covers: 0,
            merged: MergedWeek::new(monday),
            ids: HashSet::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut ids: Vec<_> = self.ids.iter().copied().collect();
        ids.sort_unstable();
        let mut raw = Vec::with_capacity(ids.len() * 9);
        for (day, bits) in ids {
            raw.push(day);
            raw.extend_from_slice(&bits.to_le_bytes());
        }
        let file = CheckpointFile {
            covers: self.covers,
            merged: self.merged.clone(),
            ids: base64::engine::general_purpose::STANDARD.encode(raw),
        };
        serde_json::to_vec(&file).expect("a checkpoint serializes")
    }

    /// Reads checkpoint `n` of the week of `monday`, refusing one that is not what its key says
    /// or whose ids do not match its report count.
    pub fn parse(bytes: &[u8], monday: Day, n: u64) -> anyhow::Result<Checkpoint> {
        let file: CheckpointFile = serde_json::from_slice(bytes).context("not a checkpoint")?;
        if file.covers != n || file.merged.week != monday {
            bail!(
                "it says it is checkpoint {} of the week of {}",
                file.covers,
                file.merged.week
            );
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(file.ids.as_bytes())
            .context("its report ids are not base64")?;
        if raw.len() % 9 != 0 {
            bail!("its report ids are cut off");
        }
        let ids: HashSet<ReportId> = raw
            .chunks_exact(9)
            .map(|c| {
                (
                    c[0],
                    u64::from_le_bytes(c[1..].try_into().expect("8 bytes")),
                )
            })
            .collect();
        if ids.len() as u64 != file.merged.reports {
            bail!(
                "it holds {} report ids for {} reports",
                ids.len(),
                file.merged.reports
            );
        }
        Ok(Checkpoint {
            covers: n,
            merged: file.merged,
            ids,
        })
    }
}

/// What one server holds of a calendar week: the newest checkpoint it has adopted, and the
/// reports it has seen since (in the open generation, or later ones).
#[derive(Debug)]
pub struct WeekState {
    base: Arc<Checkpoint>,
    /// Reports not in `base`: id → (generation it was found in, report).
    pending: HashMap<ReportId, (u64, Report)>,
    /// `base` plus `pending`: what is published.
    live: MergedWeek,
}

impl WeekState {
    pub fn new(monday: Day) -> WeekState {
        WeekState {
            base: Arc::new(Checkpoint::empty(monday)),
            pending: HashMap::new(),
            live: MergedWeek::new(monday),
        }
    }

    /// The generation uploads are written to.
    pub fn open_generation(&self) -> u64 {
        self.base.covers
    }

    pub fn base(&self) -> &Arc<Checkpoint> {
        &self.base
    }

    /// Whether the report is counted here.
    pub fn contains(&self, id: ReportId) -> bool {
        self.base.ids.contains(&id) || self.pending.contains_key(&id)
    }

    /// The pending copy of a report, if any.
    pub fn pending_report(&self, id: ReportId) -> Option<&Report> {
        self.pending.get(&id).map(|(_, report)| report)
    }

    /// Reports counted beyond the checkpoint.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counts `report`, found in `generation`, unless it is counted already. The caller
    /// guarantees it is of this week.
    pub fn add(&mut self, generation: u64, report: &Report) -> bool {
        let id = report_id(report.week, report.x);
        if self.contains(id) {
            return false;
        }
        self.live.add(report);
        self.pending.insert(id, (generation, report.clone()));
        true
    }

    /// Replaces the base by `checkpoint` if it is newer. Pending reports it holds leave the
    /// pending set, and so do those found in a generation it covers: a report answered 2xx is
    /// in the checkpoint of its generation, so one that is not was a copy left behind in a
    /// sealed generation, counted in the generation after it, or never answered 2xx.
    pub fn adopt(&mut self, checkpoint: Arc<Checkpoint>) -> bool {
        if checkpoint.covers <= self.base.covers {
            return false;
        }
        self.pending.retain(|id, (generation, _)| {
            *generation >= checkpoint.covers && !checkpoint.ids.contains(id)
        });
        let mut live = checkpoint.merged.clone();
        for (_, report) in self.pending.values() {
            live.add(report);
        }
        self.live = live;
        self.base = checkpoint;
        true
    }

    /// Everything counted: the checkpoint and the reports since.
    pub fn live(&self) -> &MergedWeek {
        &self.live
    }
}

/// Writes the mark that closes `generation` of the week of `monday` to writes.
pub async fn seal(store: &Store, monday: Day, generation: u64) -> anyhow::Result<()> {
    store
        .create(&seal_key(monday, generation), Bytes::new(), monday)
        .await?;
    Ok(())
}

/// Most generations one write moves on when it finds the one it wrote to sealed (each step is a
/// checkpoint made by some server during this one write).
const MAX_GENERATION_STEPS: usize = 64;

/// Stores `canonical` as `report`'s raw copy, starting in `generation`: written, then kept if
/// that generation was not sealed after the write, else written again into the next. So the
/// next checkpoint holds it whoever checkpoints meanwhile (a copy left in a sealed generation
/// counts once: merges skip ids they hold). Returns whether any write was new, and the
/// generation that holds it.
pub async fn store_report(
    store: &Store,
    report: &Report,
    canonical: Bytes,
    mut generation: u64,
) -> anyhow::Result<(bool, u64)> {
    let monday = bucket_week(report.week);
    let mut created = false;
    for _ in 0..MAX_GENERATION_STEPS {
        let key = report_key(report.week, report.x, generation);
        if store.create(&key, canonical.clone(), report.week).await? == Created::New {
            created = true;
        }
        if !store.exists(&seal_key(monday, generation)).await? {
            return Ok((created, generation));
        }
        generation += 1;
    }
    bail!("the week of {monday} had {MAX_GENERATION_STEPS} generations sealed during one write")
}

/// The newest checkpoint of the week of `monday` above checkpoint `have`, if there is one:
/// from the `latest` hint (or `have`), past every sealed generation, then down to the newest
/// checkpoint that exists. A corrupt checkpoint, or one holding what no served config collects
/// ([`Configs::check_merged`]), is reported and the one below it tried.
pub async fn find_newer(
    store: &Store,
    configs: &Configs,
    monday: Day,
    have: u64,
) -> anyhow::Result<Option<Checkpoint>> {
    let hint = match store.get(&latest_key(monday), MAX_HINT_BYTES).await? {
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0),
        None => 0,
    };
    let mut unsealed = have.max(hint);
    while store.exists(&seal_key(monday, unsealed)).await? {
        unsealed += 1;
    }
    // Checkpoint `unsealed` exists unless one is being made (or its maker died); then the one
    // below it does. Older ones may have been deleted, so a few tries are enough.
    for n in (have + 1..=unsealed).rev().take(4) {
        let key = checkpoint_key(monday, n);
        let Some(bytes) = store.get(&key, MAX_CHECKPOINT_BYTES).await? else {
            continue;
        };
        match Checkpoint::parse(&bytes, monday, n) {
            Ok(checkpoint) => match configs.check_merged(&checkpoint.merged).await? {
                Ok(()) => return Ok(Some(checkpoint)),
                Err(why) => note_skipped(
                    key.as_ref(),
                    &format!("checkpoint {key} holds what no upload could have brought: {why}"),
                ),
            },
            Err(e) => note_skipped(
                key.as_ref(),
                &format!("checkpoint {key} is unreadable: {e:#}"),
            ),
        }
    }
    Ok(None)
}

/// The report keys in `generation` of the week of `monday` (for generation 0 also those
/// stored before generations existed, directly under the week).
pub async fn list_generation(
    store: &Store,
    monday: Day,
    generation: u64,
) -> anyhow::Result<Vec<Path>> {
    let (mut keys, _) = store
        .list_dir(&format!("reports/{monday}/{generation}"))
        .await?;
    if generation == 0 {
        let (flat, _) = store.list_dir(&format!("reports/{monday}")).await?;
        keys.extend(flat);
    }
    keys.retain(|key| id_of_key(key).is_some());
    Ok(keys)
}

/// Reads the reports at `keys` (16 at a time), skipping with a message any that is gone, not a
/// regular file or too big (`Store::get`), unreadable, of another week, not under the key its
/// `x` gives, or refused by the checks its upload passed ([`Configs::check_stored`]).
pub async fn fetch(
    store: &Store,
    configs: &Configs,
    monday: Day,
    keys: Vec<Path>,
) -> anyhow::Result<Vec<Report>> {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(16).max(1)) {
        let (store, configs) = (store.clone(), configs.clone());
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            let mut reports = Vec::with_capacity(chunk.len());
            for key in chunk {
                let Some(bytes) = store.get(&key, MAX_STORED_REPORT_BYTES).await? else {
                    continue;
                };
                let report = match Report::parse(&bytes) {
                    Ok(report)
                        if bucket_week(report.week) == monday
                            && id_of_key(&key) == Some(report_id(report.week, report.x)) =>
                    {
                        report
                    }
                    _ => {
                        note_skipped(
                            key.as_ref(),
                            &format!("{key} is not a report of the week and x its key names"),
                        );
                        continue;
                    }
                };
                match configs.check_stored(&report).await? {
                    Ok(()) => reports.push(report),
                    Err(why) => note_skipped(
                        key.as_ref(),
                        &format!("{key} is a report its upload would have been refused: {why}"),
                    ),
                }
            }
            anyhow::Ok(reports)
        });
    }
    let mut reports = Vec::with_capacity(keys.len());
    while let Some(joined) = tasks.join_next().await {
        reports.extend(joined.context("a task reading reports failed")??);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::ProgramReport;

    fn report(week: &str, x: f64) -> Report {
        Report {
            week: week.parse().unwrap(),
            x,
            config_version: Some(1),
            programs: vec![ProgramReport {
                program: "cargo".into(),
                version: "1.95.0".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                counters: [("cargo/invocations".to_string(), 1)].into(),
            }],
        }
    }

    fn monday() -> Day {
        "2026-11-16".parse().unwrap()
    }

    /// The reports whose stored form grows most beside their upload: many short counters in
    /// one section, and many small sections. Each is made as large as an upload may be
    /// (compact JSON), and its stored form must still be read back.
    #[test]
    fn every_report_an_upload_may_hold_is_read_back_when_stored() {
        let compact = |r: &Report| serde_json::to_vec(r).unwrap().len();
        let mut counters = report("2026-11-16", 0.5);
        for i in 0.. {
            counters.programs[0]
                .counters
                .insert(format!("cargo/{i:x}"), 1);
            if compact(&counters) > tally_protocol::MAX_REPORT_BYTES - 16 {
                break;
            }
        }
        let mut sections = report("2026-11-16", 0.5);
        let one = sections.programs[0].clone();
        for patch in 0.. {
            sections.programs.push(ProgramReport {
                version: format!("1.0.{patch}"),
                counters: [("cargo/a".to_string(), 1)].into(),
                ..one.clone()
            });
            if compact(&sections) > tally_protocol::MAX_REPORT_BYTES - 128 {
                break;
            }
        }
        for r in [counters, sections] {
            assert!(compact(&r) <= tally_protocol::MAX_REPORT_BYTES);
            let stored = r.to_canonical_json().len();
            assert!(
                stored > tally_protocol::MAX_REPORT_BYTES,
                "the case is meant to grow past the upload limit: {stored}"
            );
            assert!(
                stored <= crate::store::MAX_STORED_REPORT_BYTES,
                "stored form of {} bytes is not read back",
                stored
            );
        }
    }

    #[test]
    fn checkpoints_round_trip_and_refuse_what_they_are_not() {
        let mut checkpoint = Checkpoint::empty(monday());
        checkpoint.covers = 3;
        for (i, day) in ["2026-11-16", "2026-11-22", "2026-11-18"]
            .iter()
            .enumerate()
        {
            let r = report(day, 0.1 + i as f64 / 10.0);
            checkpoint.merged.add(&r);
            checkpoint.ids.insert(report_id(r.week, r.x));
        }
        let bytes = checkpoint.to_bytes();
        assert_eq!(Checkpoint::parse(&bytes, monday(), 3).unwrap(), checkpoint);
        assert!(Checkpoint::parse(&bytes, monday(), 4).is_err());
        assert!(Checkpoint::parse(&bytes, "2026-11-23".parse().unwrap(), 3).is_err());
        assert!(Checkpoint::parse(b"garbage", monday(), 3).is_err());
        checkpoint
            .ids
            .remove(&report_id("2026-11-16".parse().unwrap(), 0.1));
        assert!(Checkpoint::parse(&checkpoint.to_bytes(), monday(), 3).is_err());
    }

    #[test]
    fn ids_tell_days_and_xs_apart() {
        let key = crate::store::report_key("2026-11-18".parse().unwrap(), 1e-300, 7);
        assert_eq!(
            id_of_key(&key),
            Some(report_id("2026-11-18".parse().unwrap(), 1e-300))
        );
        assert_ne!(
            report_id("2026-11-18".parse().unwrap(), 0.5),
            report_id("2026-11-19".parse().unwrap(), 0.5)
        );
        assert_eq!(id_of_key(&seal_key(monday(), 7)), None);
    }

    /// A report counted while pending and then found in a checkpoint is counted once; one left
    /// behind in a generation the checkpoint covers is dropped; one in the open generation
    /// stays counted.
    #[test]
    fn adopting_a_checkpoint_counts_every_report_once() {
        let mut state = WeekState::new(monday());
        let (a, b, c) = (
            report("2026-11-17", 0.1),
            report("2026-11-17", 0.2),
            report("2026-11-17", 0.3),
        );
        assert!(state.add(0, &a));
        assert!(!state.add(1, &a), "the same report twice");
        assert!(state.add(0, &b));
        assert!(state.add(1, &c));
        assert_eq!(state.live().reports, 3);
        let mut checkpoint = Checkpoint::empty(monday());
        checkpoint.covers = 1;
        checkpoint.merged.add(&a);
        checkpoint.ids.insert(report_id(a.week, a.x));
        assert!(state.adopt(Arc::new(checkpoint.clone())));
        assert!(!state.adopt(Arc::new(checkpoint)), "not newer");
        // a from the checkpoint, c pending in generation 1; b (generation 0, not in the
        // checkpoint) was never answered 2xx and is not counted.
        assert_eq!(state.live().reports, 2);
        assert_eq!(state.pending(), 1);
        assert!(state.contains(report_id(a.week, a.x)));
        assert!(!state.contains(report_id(b.week, b.x)));
        assert!(!state.add(1, &a), "a report the checkpoint holds");
        assert_eq!(state.live().reports, 2);
        assert_eq!(state.open_generation(), 1);
    }
}
