//! Intervals and verdicts: how sure a prediction-versus-measurement gap is.
//!
//! A cell of the fidelity study has several *replicates* on each side: the live run repeated (the
//! measured side) and the simulator re-run with other acceptance seeds (the predicted side). A metric
//! (attainment, p50 TPOT, p99 TTFT) is a statistic of the requests pooled over a side's replicates.
//! Its uncertainty has two sources — which requests happened to be slow, and the drift of the machine
//! between replicates — so the interval is a **two-level (nested) percentile bootstrap**: draw the
//! replicates with replacement, then each drawn replicate's requests with replacement, and compute the
//! statistic on the pooled draw. With one replicate it is the ordinary bootstrap.
//!
//! The **gap** is predicted − measured (percentage points for attainment, a relative error for
//! latencies); its interval comes from resampling both sides independently. The **verdict** compares
//! that interval with the aim `±aim`: inside → agrees; disjoint → disagrees (the gap is larger than
//! noise plus aim); overlapping the edge → indistinguishable (the aim lies inside the noise).

use rand::RngExt;
use serde::{Deserialize, Serialize};
use specsim_core::rng::{stream, SimRng};
use specsim_sim::metrics::percentile;

/// Bootstrap resamples per interval (the percentile interval's 2.5 % tail then holds 25 draws).
pub const RESAMPLES: usize = 999;

/// Coverage of every interval.
pub const LEVEL: f64 = 0.95;

/// A point estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on all the data.
    pub point: f64,
    /// Lower end of the 95 % interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// Half the interval's width.
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }

    /// Whether `x` is inside (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// A statistic of a sample (mean, a percentile, a fraction).
pub type Statistic = dyn Fn(&[f64]) -> f64 + Sync;

/// The mean (0 for no values).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The `q` quantile with linear interpolation, as the simulator's summaries take it.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, q)
}

/// The percentile interval of `draws` at [`LEVEL`], around `point`.
fn percentile_interval(point: f64, mut draws: Vec<f64>) -> Interval {
    draws.retain(|x| x.is_finite());
    if draws.is_empty() {
        return Interval {
            point,
            lo: point,
            hi: point,
        };
    }
    draws.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    Interval {
        point,
        lo: percentile(&draws, tail),
        hi: percentile(&draws, 1.0 - tail),
    }
}

/// One nested resample of `groups`, pooled into `out`.
fn resample_into(groups: &[Vec<f64>], rng: &mut SimRng, out: &mut Vec<f64>) {
    out.clear();
    for _ in 0..groups.len() {
        let g = &groups[rng.random_range(0..groups.len())];
        for _ in 0..g.len() {
            out.push(g[rng.random_range(0..g.len())]);
        }
    }
}

/// The draws of `stat` over [`RESAMPLES`] nested resamples of `groups` (empty groups dropped).
fn draws(groups: &[Vec<f64>], stat: &Statistic, rng: &mut SimRng) -> Vec<f64> {
    let groups: Vec<Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    if groups.is_empty() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    (0..RESAMPLES)
        .map(|_| {
            resample_into(&groups, rng, &mut buf);
            stat(&buf)
        })
        .collect()
}

/// `stat` on the pooled groups, with its nested-bootstrap 95 % interval (seeded: the same data and
/// seed give the same interval).
pub fn bootstrap(groups: &[Vec<f64>], stat: &Statistic, seed: u64) -> Interval {
    let pooled: Vec<f64> = groups.iter().flatten().copied().collect();
    let mut rng = stream(seed, "bootstrap", 0);
    percentile_interval(stat(&pooled), draws(groups, stat, &mut rng))
}

/// How a gap is expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// predicted − measured, ×100 (percentage points, for fractions).
    Points,
    /// (predicted − measured) / measured.
    Relative,
}

impl GapKind {
    /// The gap of `predicted` over `measured` (NaN when a relative gap has a zero base).
    pub fn gap(self, predicted: f64, measured: f64) -> f64 {
        match self {
            GapKind::Points => (predicted - measured) * 100.0,
            GapKind::Relative if measured != 0.0 => (predicted - measured) / measured,
            GapKind::Relative => f64::NAN,
        }
    }
}

/// The gap between the two sides' `stat` and its 95 % interval, each side resampled on its own
/// (nested bootstrap) with the same number of draws.
pub fn gap_interval(
    predicted: &[Vec<f64>],
    measured: &[Vec<f64>],
    stat: &Statistic,
    kind: GapKind,
    seed: u64,
) -> Interval {
    let pool = |g: &[Vec<f64>]| g.iter().flatten().copied().collect::<Vec<f64>>();
    let point = kind.gap(stat(&pool(predicted)), stat(&pool(measured)));
    let mut rp = stream(seed, "bootstrap-predicted", 0);
    let mut rm = stream(seed, "bootstrap-measured", 0);
    let dp = draws(predicted, stat, &mut rp);
    let dm = draws(measured, stat, &mut rm);
    let gaps = dp.iter().zip(&dm).map(|(p, m)| kind.gap(*p, *m)).collect();
    percentile_interval(point, gaps)
}

/// What a gap's interval says about an aim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval is within ±aim.
    Agrees,
    /// The interval straddles an edge of ±aim: the noise is larger than what the aim asks to decide.
    Indistinguishable,
    /// The whole interval is outside ±aim: the gap exceeds noise plus aim.
    Disagrees,
    /// No interval (no data on one side).
    Undecided,
}

impl Verdict {
    /// The verdict of a gap interval against `±aim` (`aim` ≥ 0, in the gap's unit).
    pub fn of(gap: &Interval, aim: f64) -> Verdict {
        if !(gap.lo.is_finite() && gap.hi.is_finite() && gap.point.is_finite()) {
            return Verdict::Undecided;
        }
        if gap.lo >= -aim && gap.hi <= aim {
            Verdict::Agrees
        } else if gap.lo > aim || gap.hi < -aim {
            Verdict::Disagrees
        } else {
            Verdict::Indistinguishable
        }
    }

    /// Its name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::Indistinguishable => "indistinguishable",
            Verdict::Disagrees => "disagrees",
            Verdict::Undecided => "undecided",
        }
    }
}

/// Attainment against a range of single-metric SLOs: at each threshold, the fraction of requests
/// whose value is at most the threshold (a failed request, NaN, never is), on both sides with bands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttainmentCurve {
    /// `ttft` or `tpot`.
    pub metric: String,
    /// SLO thresholds, seconds.
    pub thresholds_s: Vec<f64>,
    /// Predicted attainment at each threshold, with its band.
    pub predicted: Vec<Interval>,
    /// Measured attainment at each threshold, with its band.
    pub measured: Vec<Interval>,
    /// Largest |predicted − measured| over the thresholds, percentage points.
    pub max_gap_pp: f64,
    /// Where it is, seconds.
    pub max_gap_at_s: f64,
}

/// The fraction of `v` at most `t` (NaN counts as above every threshold).
pub fn fraction_within(v: &[f64], t: f64) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().filter(|x| **x <= t).count() as f64 / v.len() as f64
    }
}

/// `points` thresholds spread evenly between 0.5× and 2× `slo_s` (the range where an SLO near the
/// knee decides attainment), and both sides' attainment curves over them.
pub fn attainment_curve(
    metric: &str,
    slo_s: f64,
    points: usize,
    predicted: &[Vec<f64>],
    measured: &[Vec<f64>],
    seed: u64,
) -> AttainmentCurve {
    let points = points.max(2);
    let thresholds_s: Vec<f64> = (0..points)
        .map(|i| slo_s * (0.5 + 1.5 * i as f64 / (points - 1) as f64))
        .collect();
    let band = |g: &[Vec<f64>], t: f64| bootstrap(g, &move |v: &[f64]| fraction_within(v, t), seed);
    let pred: Vec<Interval> = thresholds_s.iter().map(|t| band(predicted, *t)).collect();
    let meas: Vec<Interval> = thresholds_s.iter().map(|t| band(measured, *t)).collect();
    let (mut max_gap_pp, mut max_gap_at_s) = (0.0, thresholds_s[0]);
    for (i, t) in thresholds_s.iter().enumerate() {
        let g = ((pred[i].point - meas[i].point) * 100.0).abs();
        // Ties (up to rounding) keep the smallest threshold.
        if g > max_gap_pp + 1e-9 {
            (max_gap_pp, max_gap_at_s) = (g, *t);
        }
    }
    AttainmentCurve {
        metric: metric.to_string(),
        thresholds_s,
        predicted: pred,
        measured: meas,
        max_gap_pp,
        max_gap_at_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standard normal draw (Box–Muller), from two uniforms in (0, 1].
    fn normal(rng: &mut SimRng) -> f64 {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    #[test]
    fn bootstrap_interval_of_the_mean_covers_the_true_mean_95_percent_of_the_time() {
        // 1,000 seeded samples of 100 draws from N(5, 2²); the percentile bootstrap of the mean is
        // asymptotically exact, so its 95 % interval must cover 5 in 95 % ± 2 pp of them (the
        // binomial standard error of a 1,000-trial coverage is 0.7 pp).
        let trials = 1000;
        let mut covered = 0;
        for t in 0..trials {
            let mut rng = stream(t, "coverage-data", 0);
            let sample: Vec<f64> = (0..100).map(|_| 5.0 + 2.0 * normal(&mut rng)).collect();
            let ci = bootstrap(&[sample], &mean, 1_000 + t);
            covered += usize::from(ci.contains(5.0));
        }
        let coverage = covered as f64 / trials as f64;
        assert!(
            (coverage - 0.95).abs() <= 0.02,
            "coverage {coverage} is not 95 % ± 2 pp"
        );
    }

    #[test]
    fn nested_bootstrap_widens_with_replicate_drift() {
        // The same 3 × 100 requests, once with the replicates drifting apart (means 1, 2, 3) and once
        // not: the interval of the pooled mean must be much wider with drift, as the replicates
        // disagree beyond what their requests' spread explains.
        let mut rng = stream(3, "drift", 0);
        let base: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..100).map(|_| normal(&mut rng) * 0.1).collect())
            .collect();
        let steady: Vec<Vec<f64>> = base
            .iter()
            .map(|g| g.iter().map(|x| x + 2.0).collect())
            .collect();
        let drifting: Vec<Vec<f64>> = base
            .iter()
            .enumerate()
            .map(|(i, g)| g.iter().map(|x| x + 1.0 + i as f64).collect())
            .collect();
        let a = bootstrap(&steady, &mean, 1);
        let b = bootstrap(&drifting, &mean, 1);
        assert!((a.point - 2.0).abs() < 0.05 && (b.point - 2.0).abs() < 0.05);
        assert!(a.half_width() < 0.05, "{a:?}");
        assert!(b.half_width() > 0.3, "{b:?}");
    }

    #[test]
    fn same_data_and_seed_give_the_same_interval() {
        let g = vec![vec![1.0, 2.0, 3.0, 10.0], vec![2.0, 2.5]];
        assert_eq!(bootstrap(&g, &mean, 9), bootstrap(&g, &mean, 9));
    }

    #[test]
    fn verdicts_on_hand_made_intervals() {
        let iv = |point, lo, hi| Interval { point, lo, hi };
        // Aim ±3 pp.
        assert_eq!(Verdict::of(&iv(1.0, -1.0, 2.5), 3.0), Verdict::Agrees);
        assert_eq!(Verdict::of(&iv(0.0, -3.0, 3.0), 3.0), Verdict::Agrees);
        // Straddles +3: the aim is inside the noise.
        assert_eq!(
            Verdict::of(&iv(2.0, -1.0, 5.0), 3.0),
            Verdict::Indistinguishable
        );
        // Centred but wider than the aim on both sides.
        assert_eq!(
            Verdict::of(&iv(0.0, -8.0, 8.0), 3.0),
            Verdict::Indistinguishable
        );
        // The gap exceeds aim plus noise on either side.
        assert_eq!(Verdict::of(&iv(10.0, 4.0, 16.0), 3.0), Verdict::Disagrees);
        assert_eq!(
            Verdict::of(&iv(-0.2, -0.3, -0.06), 0.05),
            Verdict::Disagrees
        );
        assert_eq!(
            Verdict::of(&iv(f64::NAN, 0.0, 0.0), 3.0),
            Verdict::Undecided
        );
    }

    #[test]
    fn gap_interval_of_identical_sides_is_centred_on_zero_and_of_shifted_sides_on_the_shift() {
        let mut rng = stream(5, "gap", 0);
        let m: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..200).map(|_| 1.0 + 0.1 * normal(&mut rng)).collect())
            .collect();
        let same = gap_interval(&m, &m, &mean, GapKind::Relative, 2);
        assert_eq!(same.point, 0.0);
        assert!(same.lo < 0.0 && same.hi > 0.0, "{same:?}");
        // Prediction 20 % slower: the relative gap's interval holds 0.2 and not 0.
        let p: Vec<Vec<f64>> = m
            .iter()
            .map(|g| g.iter().map(|x| x * 1.2).collect())
            .collect();
        let shifted = gap_interval(&p, &m, &mean, GapKind::Relative, 2);
        assert!((shifted.point - 0.2).abs() < 1e-9);
        assert!(
            shifted.contains(0.2) && !shifted.contains(0.0),
            "{shifted:?}"
        );
        assert_eq!(Verdict::of(&shifted, 0.05), Verdict::Disagrees);
    }

    #[test]
    fn attainment_curve_finds_the_largest_vertical_gap() {
        // Measured TPOTs 0.1..1.0 s (ten values); predicted all 0.1 s faster (less a hair, so that ties fall inside). At threshold t the
        // measured attainment is ⌊10t⌋/10 and the predicted ⌊10t + 1⌋/10 (capped at 1): a 10 pp gap
        // from t = 0.2 to 0.9, 0 at t ≥ 1.0. SLO 0.5 s: thresholds 0.25, 0.5, ..., 1.0.
        let meas = vec![(1..=10).map(|i| i as f64 / 10.0).collect::<Vec<f64>>()];
        let pred = vec![meas[0].iter().map(|x| x - 0.1 - 1e-9).collect::<Vec<f64>>()];
        let c = attainment_curve("tpot", 0.5, 4, &pred, &meas, 1);
        assert_eq!(c.thresholds_s, vec![0.25, 0.5, 0.75, 1.0]);
        let m: Vec<f64> = c.measured.iter().map(|i| i.point).collect();
        let p: Vec<f64> = c.predicted.iter().map(|i| i.point).collect();
        assert_eq!(m, vec![0.2, 0.5, 0.7, 1.0]);
        assert_eq!(p, vec![0.3, 0.6, 0.8, 1.0]);
        assert!((c.max_gap_pp - 10.0).abs() < 1e-9);
        assert_eq!(c.max_gap_at_s, 0.25);
        // A failed request (NaN) never attains.
        assert_eq!(fraction_within(&[0.1, f64::NAN], 1.0), 0.5);
    }
}
