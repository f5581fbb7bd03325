//! [`Histogram`]: one counter per bucket, named by Go's convention: `<name>:<<bound>` for each
//! bound a value is under, `<name>:>=<last bound>` above them all (`greet/time:<0.1s`,
//! `greet/time:<1s`, …, `greet/time:>=60s`). The bounds are the tool's constants, so the bucket
//! names are a fixed vocabulary; the value observed is never stored, only which bucket it fell
//! in.

use std::sync::OnceLock;
use std::time::Duration;

use crate::counter::Slot;
use crate::session::SESSION;

/// The time buckets tally's own counters use (rustc's compile times), after Go's:
/// `<0.1s`, `<1s`, `<10s`, `<60s`, `>=60s`.
pub const TIME_BUCKETS: &[Duration] = &[
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(60),
];

#[derive(Debug, Clone, Copy)]
enum Bounds {
    Durations(&'static [Duration]),
    Values(&'static [u64]),
}

struct Bucket {
    name: Box<str>,
    slot: Slot,
}

/// Counts which bucket each observed value falls in.
///
/// ```
/// use std::time::Instant;
/// use tally_counter::{Histogram, histogram};
///
/// static TIME: Histogram = histogram!("greet/time");
///
/// let start = Instant::now();
/// // ... the work ...
/// TIME.observe(start.elapsed());
/// ```
pub struct Histogram {
    name: &'static str,
    bounds: Bounds,
    buckets: OnceLock<Box<[Bucket]>>,
}

impl Histogram {
    /// A histogram of durations with these bounds (strictly increasing, at least one; else
    /// every observation counts as `<program>/other`).
    pub const fn durations(name: &'static str, bounds: &'static [Duration]) -> Histogram {
        Histogram {
            name,
            bounds: Bounds::Durations(bounds),
            buckets: OnceLock::new(),
        }
    }

    /// A histogram of numbers with these bounds (strictly increasing, at least one).
    pub const fn values(name: &'static str, bounds: &'static [u64]) -> Histogram {
        Histogram {
            name,
            bounds: Bounds::Values(bounds),
            buckets: OnceLock::new(),
        }
    }

    /// The histogram's name as given.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Counts one duration (a histogram of [`durations`](Histogram::durations); on one of
    /// values, the duration's whole milliseconds).
    pub fn observe(&self, value: Duration) {
        let index = match self.bounds {
            Bounds::Durations(bounds) => bucket_index(bounds, &value),
            Bounds::Values(bounds) => bucket_index(
                bounds,
                &u64::try_from(value.as_millis()).unwrap_or(u64::MAX),
            ),
        };
        self.count(index);
    }

    /// Counts one number (a histogram of [`values`](Histogram::values); on one of durations,
    /// the number as milliseconds).
    pub fn observe_value(&self, value: u64) {
        let index = match self.bounds {
            Bounds::Durations(bounds) => bucket_index(bounds, &Duration::from_millis(value)),
            Bounds::Values(bounds) => bucket_index(bounds, &value),
        };
        self.count(index);
    }

    /// The bucket names, in order (the last is the `>=` one).
    pub fn bucket_names(&self) -> impl Iterator<Item = &str> {
        self.buckets().iter().map(|b| &*b.name)
    }

    fn count(&self, index: usize) {
        let buckets = self.buckets();
        // Bounds that are not strictly increasing have one bucket, `other`'s.
        let bucket = &buckets[index.min(buckets.len() - 1)];
        bucket.slot.add(&SESSION, &bucket.name, 1);
    }

    fn buckets(&self) -> &[Bucket] {
        self.buckets.get_or_init(|| {
            let labels: Option<Vec<String>> = match self.bounds {
                Bounds::Durations(b) => labels(b, |d| seconds_label(*d)),
                Bounds::Values(b) => labels(b, u64::to_string),
            };
            let names: Vec<String> = match labels {
                // A name with a `:` already breaks the rule once a bucket follows it, so it
                // counts as `other` like any other bad name.
                Some(labels) if !self.name.contains(':') => labels
                    .into_iter()
                    .map(|label| format!("{}:{label}", self.name))
                    .collect(),
                // Unusable bounds: one bucket whose name the rule refuses (`other`).
                _ => vec![String::new()],
            };
            names
                .into_iter()
                .map(|name| Bucket {
                    name: name.into_boxed_str(),
                    slot: Slot::new(),
                })
                .collect()
        })
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("name", &self.name)
            .field("bounds", &self.bounds)
            .finish()
    }
}

/// The first bound `value` is under, or `bounds.len()` (the `>=` bucket).
fn bucket_index<T: PartialOrd>(bounds: &[T], value: &T) -> usize {
    bounds
        .iter()
        .position(|bound| value < bound)
        .unwrap_or(bounds.len())
}

/// `<b1`, `<b2`, …, `>=bn`; `None` when the bounds are empty or not strictly increasing.
fn labels<T: PartialOrd>(bounds: &[T], show: impl Fn(&T) -> String) -> Option<Vec<String>> {
    if bounds.is_empty() || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    let mut out: Vec<String> = bounds.iter().map(|b| format!("<{}", show(b))).collect();
    out.push(format!(">={}", show(bounds.last()?)));
    Some(out)
}

/// A duration in seconds, as few digits as it takes: `0.1s`, `1s`, `2.5s`, `60s`.
fn seconds_label(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{}s", d.as_secs());
    }
    let fraction = format!("{nanos:09}");
    format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_go() {
        let h = Histogram::durations("greet/time", TIME_BUCKETS);
        let names: Vec<&str> = h.bucket_names().collect();
        assert_eq!(
            names,
            [
                "greet/time:<0.1s",
                "greet/time:<1s",
                "greet/time:<10s",
                "greet/time:<60s",
                "greet/time:>=60s"
            ]
        );
        for name in names {
            assert!(crate::is_counter_name(name), "{name}");
        }
        let h = Histogram::values("greet/size", &[10, 1000]);
        let names: Vec<&str> = h.bucket_names().collect();
        assert_eq!(
            names,
            ["greet/size:<10", "greet/size:<1000", "greet/size:>=1000"]
        );
        assert_eq!(seconds_label(Duration::from_millis(2500)), "2.5s");
        assert_eq!(seconds_label(Duration::from_micros(1)), "0.000001s");
    }

    #[test]
    fn values_fall_in_the_first_bucket_they_are_under() {
        let bounds = [10u64, 100];
        assert_eq!(bucket_index(&bounds, &0), 0);
        assert_eq!(bucket_index(&bounds, &9), 0);
        assert_eq!(bucket_index(&bounds, &10), 1);
        assert_eq!(bucket_index(&bounds, &99), 1);
        assert_eq!(bucket_index(&bounds, &100), 2);
        assert_eq!(bucket_index(&bounds, &u64::MAX), 2);
    }

    #[test]
    fn unusable_bounds_make_one_bucket_the_rule_refuses() {
        for h in [
            Histogram::values("greet/size", &[]),
            Histogram::values("greet/size", &[5, 5]),
            Histogram::values("greet/size", &[5, 1]),
            Histogram::values("greet/size:x", &[5]),
        ] {
            let names: Vec<&str> = h.bucket_names().collect();
            assert_eq!(names, [""]);
            assert!(!crate::is_counter_name(names[0]));
        }
    }
}
