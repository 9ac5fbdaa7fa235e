//! Robust summaries of repeated timings, and moment fits of confidence distributions.
//!
//! Timings on shared CPUs swing by ±40% between runs, so a grid point is summarised by its **median**
//! over repetitions (after warm-up), with the 10th and 90th percentiles as its spread. A mean would
//! follow the occasional descheduled repetition.

use serde::Serialize;

/// Median and spread of one grid point's repetitions (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Repetitions.
    pub n: usize,
}

impl Summary {
    /// Summarises samples; None when there are none (or any is not finite).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            median: quantile(&v, 0.5),
            p10: quantile(&v, 0.1),
            p90: quantile(&v, 0.9),
            n: v.len(),
        })
    }

    /// Relative spread `(p90 − p10) / median`.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.p90 - self.p10) / self.median
        } else {
            0.0
        }
    }
}

/// Linear-interpolated quantile of sorted values (`q` in [0, 1]).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = x.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + (sorted[j] - sorted[i]) * (x - i as f64)
}

/// Median of unsorted values (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// Beta(a, b) with the sample's mean and variance (method of moments).
///
/// Values are clamped into [1e-4, 1 − 1e-4] first (greedy confidences of exactly 1.0 happen). When the
/// sample has no variance, or more than a Beta with that mean can have, the variance is taken as half of
/// its maximum `m(1 − m)` instead, i.e. `a + b = 1`. None for an empty sample.
pub fn beta_by_moments(xs: &[f64]) -> Option<[f64; 2]> {
    let v: Vec<f64> = xs
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| x.clamp(1e-4, 1.0 - 1e-4))
        .collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let max = m * (1.0 - m);
    let var = if var > 0.0 && var < max {
        var
    } else {
        max / 2.0
    };
    let common = max / var - 1.0;
    Some([m * common, (1.0 - m) * common])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles_of_a_known_sample() {
        // 1..=11: median 6, p10 at index 1.0 → 2, p90 at index 9.0 → 10.
        let xs: Vec<f64> = (1..=11).map(f64::from).collect();
        let s = Summary::of(&xs).unwrap();
        assert_eq!((s.median, s.p10, s.p90, s.n), (6.0, 2.0, 10.0, 11));
        assert!((s.spread() - 8.0 / 6.0).abs() < 1e-12);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn beta_moments_recover_the_parameters_of_a_tabulated_beta() {
        // Quantiles of Beta(2, 5) at 20k evenly spaced probabilities: the sample has the Beta's moments.
        let t = specsim_core::acceptance::QuantileTable::beta(2.0, 5.0);
        let xs: Vec<f64> = (0..20_000)
            .map(|i| t.sample_u((i as f64 + 0.5) / 20_000.0))
            .collect();
        let [a, b] = beta_by_moments(&xs).unwrap();
        assert!((a - 2.0).abs() < 0.05 && (b - 5.0).abs() < 0.1, "{a} {b}");
    }

    #[test]
    fn degenerate_samples_still_give_a_valid_beta() {
        let [a, b] = beta_by_moments(&[1.0, 1.0, 1.0]).unwrap();
        assert!(a > 0.0 && b > 0.0 && a / (a + b) > 0.99);
        assert!(beta_by_moments(&[]).is_none());
    }
}
