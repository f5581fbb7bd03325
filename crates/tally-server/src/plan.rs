//! `tally-server plan`: the sample rate a collector needs for a wanted precision.
//!
//! The unit is the report, and "share of reports with counter > 0" is a binomial proportion.
//! Its margin of error at confidence `c` with `n` reports is at most `z * sqrt(p(1-p)/n)`,
//! largest at `p = 0.5`; solving for `n` gives `n = z² p(1-p) / e²`. Collecting more reports than
//! that buys little precision and costs privacy, so the rate is `min(1, n / expected reports)`.

use anyhow::bail;

/// A computed plan, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub margin: f64,
    pub confidence: f64,
    pub expected_reports: u64,
    /// Two-sided normal quantile for `confidence`.
    pub z: f64,
    /// Reports needed per week (rounded up).
    pub needed_reports: u64,
    /// The sample rate to put in the config.
    pub sample_rate: f64,
}

/// Computes the plan; refuses values outside their meaningful ranges.
pub fn plan(margin: f64, confidence: f64, expected_reports: u64) -> anyhow::Result<Plan> {
    if !(margin > 0.0 && margin < 0.5) {
        bail!("--margin {margin} must be in (0, 0.5), e.g. 0.02 for plus or minus 2 points");
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        bail!("--confidence {confidence} must be in (0, 1), e.g. 0.95");
    }
    if expected_reports == 0 {
        bail!("--expected-reports must be at least 1 (reports expected per week at rate 1)");
    }
    let z = normal_quantile(0.5 + confidence / 2.0);
    let p = 0.5;
    let needed = (z * z * p * (1.0 - p) / (margin * margin)).ceil();
    let sample_rate = (needed / expected_reports as f64).min(1.0);
    Ok(Plan {
        margin,
        confidence,
        expected_reports,
        z,
        needed_reports: needed as u64,
        sample_rate,
    })
}

impl Plan {
    /// The explanation `plan` prints.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Goal: every published share within ±{:.4} at {:.1}% confidence.\n",
            self.margin,
            self.confidence * 100.0
        ));
        out.push_str(&format!(
            "The normal quantile for {:.1}% two-sided confidence is z = {:.4}.\n",
            self.confidence * 100.0,
            self.z
        ));
        out.push_str(
            "A share's margin is at most z·sqrt(p(1-p)/n), worst at p = 0.5, so the reports needed per week are\n",
        );
        out.push_str(&format!(
            "  n = z²·p(1-p)/e² = {:.4}² × 0.25 / {:.4}² = {} reports.\n",
            self.z, self.margin, self.needed_reports
        ));
        if self.sample_rate >= 1.0 {
            out.push_str(&format!(
                "You expect {} reports per week, which is not more than {}: collect everything.\n",
                self.expected_reports, self.needed_reports
            ));
            out.push_str("sample_rate = 1 (the margin will be wider than asked until more installations opt in)\n");
        } else {
            out.push_str(&format!(
                "You expect {} reports per week, so sample_rate = n / expected = {} / {} = {:.6}.\n",
                self.expected_reports, self.needed_reports, self.expected_reports, self.sample_rate
            ));
            out.push_str(&format!(
                "Put \"sample_rate\": {:.6} in the config; counters for a sub-population need proportionally more.\n",
                self.sample_rate
            ));
        }
        out
    }
}

/// Inverse of the standard normal CDF (Acklam's rational approximation with one Halley
/// refinement step; relative error below 1e-9 over (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    const LOW: f64 = 0.02425;
    let x = if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step against erfc-based CDF.
    let e = 0.5 * erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Complementary error function (Numerical Recipes' erfcc, fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_textbook_sample_sizes() {
        // ±1% at 95%: 9,604 reports (z = 1.96); ±5%: 385.
        let p = plan(0.01, 0.95, 1_000_000).unwrap();
        assert!((p.z - 1.959964).abs() < 1e-5, "{}", p.z);
        assert_eq!(p.needed_reports, 9604);
        assert!((p.sample_rate - 0.009604).abs() < 1e-9);
        assert_eq!(plan(0.05, 0.95, 100).unwrap().needed_reports, 385);
        assert_eq!(plan(0.05, 0.95, 100).unwrap().sample_rate, 1.0);
        assert!((normal_quantile(0.995) - 2.575829).abs() < 1e-5);
    }

    #[test]
    fn refuses_meaningless_inputs() {
        assert!(plan(0.0, 0.95, 10).is_err());
        assert!(plan(0.02, 1.0, 10).is_err());
        assert!(plan(0.02, 0.95, 0).is_err());
        assert!(plan(f64::NAN, 0.95, 10).is_err());
    }
}
