//! Aggregate shares by time slot, and the bookkeeping DAP asks of a batch: how many reports it
//! holds and the checksum of their IDs (XOR of SHA-256 of each report ID), which leader and
//! helper compare before either releases its share.
//!
//! A slot is one time precision long; a batch (a collection's interval) is a run of slots.
//! What is stored of a slot is an aggregate share (a sum of output shares: alone, noise), a
//! count and a checksum, never a single report's share.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prio::vdaf::Aggregatable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tally_dap::draft::Vdaf;
use tally_dap::draft::messages::{
    Decode, Encode, Interval, ParameterizedDecode, ReportId, ReportIdChecksum,
};

use crate::task::{decode_hex32, hex};

/// The VDAF's aggregate share type.
pub type AggregateShare = <Vdaf as prio::vdaf::Vdaf>::AggregateShare;
/// The VDAF's output share type.
pub type OutputShare = <Vdaf as prio::vdaf::Vdaf>::OutputShare;

/// One slot's sum.
#[derive(Debug, Clone)]
pub struct SlotShare {
    /// The sum of the slot's output shares.
    pub share: AggregateShare,
    /// Reports summed.
    pub count: u64,
    /// XOR of SHA-256 of their IDs.
    pub checksum: [u8; 32],
}

/// Aggregate shares by slot start (seconds).
#[derive(Debug, Clone, Default)]
pub struct Shares {
    slots: BTreeMap<u64, SlotShare>,
}

/// SHA-256 of a report ID, the term of a batch checksum.
pub fn checksum_of(report_id: &ReportId) -> [u8; 32] {
    Sha256::digest(report_id.as_ref()).into()
}

fn xor(into: &mut [u8; 32], other: &[u8; 32]) {
    for (a, b) in into.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// What a batch sums to.
#[derive(Debug, Clone)]
pub struct BatchTotal {
    /// The summed share, `None` for an empty batch.
    pub share: Option<AggregateShare>,
    pub count: u64,
    pub checksum: ReportIdChecksum,
    /// The smallest interval of whole slots holding every summed report (what the leader's
    /// `Collection` message names); `None` for an empty batch.
    pub spanned: Option<(u64, u64)>,
}

impl Shares {
    /// Adds one report's output share to its slot.
    pub fn add(&mut self, slot: u64, output: &OutputShare, report_id: &ReportId) {
        let term = checksum_of(report_id);
        match self.slots.get_mut(&slot) {
            Some(s) => {
                s.share
                    .accumulate(output)
                    .expect("output shares of one task have one length");
                s.count += 1;
                xor(&mut s.checksum, &term);
            }
            None => {
                self.slots.insert(
                    slot,
                    SlotShare {
                        share: AggregateShare::from(output.clone()),
                        count: 1,
                        checksum: term,
                    },
                );
            }
        }
    }

    /// Adds another set of slot sums.
    pub fn merge(&mut self, other: &Shares) {
        for (slot, theirs) in &other.slots {
            match self.slots.get_mut(slot) {
                Some(mine) => {
                    mine.share
                        .merge(&theirs.share)
                        .expect("aggregate shares of one task have one length");
                    mine.count += theirs.count;
                    xor(&mut mine.checksum, &theirs.checksum);
                }
                None => {
                    self.slots.insert(*slot, theirs.clone());
                }
            }
        }
    }

    /// Drops the sums of slots that start before `start`; how many were dropped.
    pub fn forget_before(&mut self, start: u64) -> usize {
        let kept = self.slots.split_off(&start);
        let dropped = self.slots.len();
        self.slots = kept;
        dropped
    }

    /// The end of the newest slot summed (its start plus `time_precision`), if any.
    pub fn newest_end(&self, time_precision: u64) -> Option<u64> {
        self.slots
            .keys()
            .next_back()
            .map(|slot| slot.saturating_add(time_precision))
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Reports summed in slots within `[start, end)`.
    pub fn count_in(&self, start: u64, end: u64) -> u64 {
        self.slots.range(start..end).map(|(_, s)| s.count).sum()
    }

    /// The sum over the slots of `interval`, with `time_precision` the slot length.
    pub fn total(&self, interval: &Interval, time_precision: u64) -> BatchTotal {
        let start = interval.start().as_seconds_since_epoch();
        let end = start.saturating_add(interval.duration().as_seconds());
        let mut share: Option<AggregateShare> = None;
        let mut count = 0;
        let mut checksum = [0u8; 32];
        let mut spanned: Option<(u64, u64)> = None;
        for (slot, s) in self.slots.range(start..end) {
            match &mut share {
                Some(sum) => sum
                    .merge(&s.share)
                    .expect("aggregate shares of one task have one length"),
                None => share = Some(s.share.clone()),
            }
            count += s.count;
            xor(&mut checksum, &s.checksum);
            let slot_end = slot + time_precision;
            spanned = Some(match spanned {
                None => (*slot, slot_end),
                Some((lo, hi)) => (lo.min(*slot), hi.max(slot_end)),
            });
        }
        BatchTotal {
            share,
            count,
            checksum: ReportIdChecksum::from(checksum),
            spanned,
        }
    }

    /// The stored form.
    pub fn to_stored(&self) -> Vec<StoredSlot> {
        self.slots
            .iter()
            .map(|(slot, s)| StoredSlot {
                slot: *slot,
                count: s.count,
                checksum: hex(&s.checksum),
                share: URL_SAFE_NO_PAD.encode(s.share.get_encoded().expect("a share encodes")),
            })
            .collect()
    }

    /// Reads the stored form back.
    pub fn from_stored(vdaf: &Vdaf, stored: &[StoredSlot]) -> anyhow::Result<Shares> {
        let mut shares = Shares::default();
        for s in stored {
            let bytes = URL_SAFE_NO_PAD
                .decode(&s.share)
                .map_err(|_| anyhow::anyhow!("slot {}: share is not base64url", s.slot))?;
            let share = AggregateShare::get_decoded_with_param(&(vdaf, &()), &bytes)
                .map_err(|e| anyhow::anyhow!("slot {}: share does not decode: {e}", s.slot))?;
            let checksum = decode_hex32(&s.checksum)
                .ok_or_else(|| anyhow::anyhow!("slot {}: checksum is not 64 hex digits", s.slot))?;
            shares.merge(&Shares {
                slots: BTreeMap::from([(
                    s.slot,
                    SlotShare {
                        share,
                        count: s.count,
                        checksum,
                    },
                )]),
            });
        }
        Ok(shares)
    }
}

/// A slot's sum as records store it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSlot {
    pub slot: u64,
    pub count: u64,
    /// Hex.
    pub checksum: String,
    /// The encoded aggregate share, unpadded base64url.
    pub share: String,
}

/// The key naming a batch interval in the store: `<start>-<duration>`.
pub fn interval_name(interval: &Interval) -> String {
    format!(
        "{}-{}",
        interval.start().as_seconds_since_epoch(),
        interval.duration().as_seconds()
    )
}

/// `[start, end)` of an interval, in seconds.
pub fn bounds(interval: &Interval) -> (u64, u64) {
    let start = interval.start().as_seconds_since_epoch();
    (
        start,
        start.saturating_add(interval.duration().as_seconds()),
    )
}

/// Whether two `[start, end)` ranges overlap.
pub fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Whether `time` falls in one of `batches` (start → end, none overlapping).
pub fn is_in_batch(batches: &BTreeMap<u64, u64>, time: u64) -> bool {
    batches
        .range(..=time)
        .next_back()
        .is_some_and(|(_, end)| time < *end)
}

/// Takes one report of `slot` off a count by slot (reports in flight), dropping the slot at 0.
pub fn release_one(counts: &mut BTreeMap<u64, u64>, slot: u64) {
    if let Some(n) = counts.get_mut(&slot) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&slot);
        }
    }
}

/// A report ID as records store it: unpadded base64url.
pub fn report_id_text(id: &ReportId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_ref())
}

/// A report ID from its stored text ([`report_id_text`]).
pub fn report_id_from_text(text: &str) -> anyhow::Result<ReportId> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| anyhow::anyhow!("a report ID is not base64url"))?;
    ReportId::try_from(bytes.as_slice()).map_err(|_| anyhow::anyhow!("a report ID is not 16 bytes"))
}

/// The empty aggregation parameter of Prio3, encoded, as requests must carry it.
pub fn check_empty_agg_param(bytes: &[u8]) -> bool {
    <() as Decode>::get_decoded(bytes).is_ok()
}
