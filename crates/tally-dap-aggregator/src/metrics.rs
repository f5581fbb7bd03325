//! What an aggregator counts: accepted and refused uploads by reason, prepared and rejected
//! reports by DAP's prepare error, jobs, collections, problems answered. Served as Prometheus
//! text on `GET /metrics`. Counts only: no report ID, time, task parameter or client address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Counters by (name, label).
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    /// Adds `n` to the counter `name{reason="label"}` (no label when `label` is empty).
    pub fn add(&self, name: &'static str, label: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut counters = self.counters.lock().expect("metrics lock");
        *counters.entry((name, label.to_owned())).or_insert(0) += n;
    }

    /// Adds one.
    pub fn count(&self, name: &'static str, label: &str) {
        self.add(name, label, 1);
    }

    /// The current value of `name{reason="label"}`.
    pub fn get(&self, name: &str, label: &str) -> u64 {
        let counters = self.counters.lock().expect("metrics lock");
        counters
            .iter()
            .find(|((n, l), _)| *n == name && l == label)
            .map_or(0, |(_, v)| *v)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().expect("metrics lock");
        let mut out = String::new();
        let mut last = "";
        for ((name, label), value) in counters.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE tally_dap_{name} counter");
                last = name;
            }
            if label.is_empty() {
                let _ = writeln!(out, "tally_dap_{name} {value}");
            } else {
                let _ = writeln!(out, "tally_dap_{name}{{reason=\"{label}\"}} {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_test_support::dap::parse_metrics as parse;

    /// What tests and the benchmark read back (`tally_test_support::dap::metrics`) is what
    /// an aggregator counted.
    #[test]
    fn counters_render_and_parse_back() {
        let m = Metrics::default();
        m.count("uploads_rejected", "too_early");
        m.add("uploads_rejected", "too_early", 2);
        m.count("uploads_accepted", "");
        assert_eq!(m.get("uploads_rejected", "too_early"), 3);
        let parsed = parse(&m.render());
        assert_eq!(
            parsed["tally_dap_uploads_rejected{reason=\"too_early\"}"],
            3
        );
        assert_eq!(parsed["tally_dap_uploads_accepted"], 1);
    }
}
