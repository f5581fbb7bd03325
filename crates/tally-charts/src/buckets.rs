//! Histogram buckets named by Go's convention: a bucket is named by its upper bound (`<0.1s`,
//! `<1s`, `<10s`), the last by its lower bound (`>=60s`). Charts order buckets by their bound,
//! not by name (`<10s` sorts before `<1s` as text).

use std::cmp::Ordering;

/// The bound of a histogram bucket name, for ordering: `x/time:<0.1s` is `(0.1, false)` (below
/// 0.1 s), `x/time:>=60s` is `(60, true)` (at or above, after `<60s`). `None` if the part after
/// the last `:` is not of that shape. Units: `ms`, `s`, `m`, `h`, or none (a plain number).
pub fn bucket_bound(name: &str) -> Option<(f64, bool)> {
    let bucket = name.rsplit_once(':').map_or(name, |(_, b)| b);
    let (at_or_above, rest) = match bucket.strip_prefix(">=") {
        Some(rest) => (true, rest),
        None => (false, bucket.strip_prefix('<')?),
    };
    let digits = rest.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale = match &rest[digits.len()..] {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let value: f64 = digits.parse().ok()?;
    value.is_finite().then_some((value * scale, at_or_above))
}

/// Orders bucket names by their bound (`<0.1s` < `<1s` < `<60s` < `>=60s`); names that are
/// not buckets go last, by name.
pub fn bucket_order(a: &str, b: &str) -> Ordering {
    match (bucket_bound(a), bucket_bound(b)) {
        (Some((x, xa)), Some((y, ya))) => x.total_cmp(&y).then(xa.cmp(&ya)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Whether every name is a histogram bucket (and there are at least two).
pub fn is_histogram<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    let mut count = 0;
    for name in names {
        if bucket_bound(name).is_none() {
            return false;
        }
        count += 1;
    }
    count >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_order_by_their_bound() {
        let mut names = vec![
            "rustc/time:>=60s",
            "rustc/time:<10s",
            "rustc/time:<0.1s",
            "rustc/time:<60s",
            "rustc/time:<1s",
        ];
        names.sort_by(|a, b| bucket_order(a, b));
        assert_eq!(
            names,
            [
                "rustc/time:<0.1s",
                "rustc/time:<1s",
                "rustc/time:<10s",
                "rustc/time:<60s",
                "rustc/time:>=60s"
            ]
        );
        assert_eq!(bucket_bound("x:<500ms"), Some((0.5, false)));
        assert_eq!(bucket_bound("x:build"), None);
        assert!(is_histogram(["a:<1s", "a:>=1s"]));
        assert!(!is_histogram(["a:<1s", "a:other"]));
        assert!(!is_histogram(["a:<1s"]));
    }
}
