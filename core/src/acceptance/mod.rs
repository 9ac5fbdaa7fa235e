//! Acceptance models: for each drafted token, the draft's confidence (what policies see) and whether the
//! target accepts it (what only the outcome reveals).
//!
//! A draw at draft position `j` is *conditional on every earlier token of the step being accepted*: the
//! accepted length of a step is the number of leading accepted draws. With a constant rate α and k
//! drafts the expected number of emitted tokens is `(1 − α^{k+1}) / (1 − α)`.

pub mod trace;

use crate::rng::SimRng;
use crate::workload::CategoryId;
use rand::{Rng, RngExt};
use rand_distr::Beta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One drafted token as the simulator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DraftDraw {
    /// The draft model's probability of its own token.
    pub confidence: f32,
    /// Whether the target accepts it (given all earlier tokens of the step were accepted).
    pub accepted: bool,
}

/// The draws of a category in which position does not matter and the target accepts a token with
/// the draft's own confidence (P(accept | p) = p: an identity calibration curve, no decay, no
/// per-position scale), the calibrated model's default: a confidence from the quantile table, then
/// the acceptance, two uniforms in that order (as [`AcceptanceModel::draw`]).
#[derive(Debug, Clone, Copy)]
pub struct PlainDraws<'a> {
    confidence: &'a QuantileTable,
}

impl PlainDraws<'_> {
    /// One draw.
    #[inline(always)]
    pub fn draw(&self, rng: &mut SimRng) -> DraftDraw {
        let conf = self.confidence.sample_bits(rng.next_u64());
        DraftDraw {
            confidence: conf as f32,
            accepted: rng.random::<f64>() < conf.clamp(0.0, 1.0),
        }
    }
}

/// Draws draft confidences and acceptance outcomes.
pub trait AcceptanceModel: Send + Sync {
    /// Draws the token at draft position `position` (0-based) of a request of `category`.
    fn draw(&self, position: u32, category: Option<CategoryId>, rng: &mut SimRng) -> DraftDraw;
    /// The draws of requests of `category` as a concrete sampler that the caller's loop inlines, where
    /// every draft position draws alike ([`PlainDraws`]); `None` otherwise, and the caller draws through
    /// [`AcceptanceModel::draw`]. Both give the same draws and leave the generator in the same state;
    /// the simulator asks once per run of one category in a draft forward, to skip a virtual call
    /// per drafted token.
    fn plain_draws(&self, _category: Option<CategoryId>) -> Option<PlainDraws<'_>> {
        None
    }
    /// [`AcceptanceModel::plain_draws`] when every category draws alike and plainly (a model
    /// without categories of its own), so a caller need not look at the items' categories.
    fn plain_draws_for_all(&self) -> Option<PlainDraws<'_>> {
        None
    }
    /// Probability of acceptance at `position` given all earlier accepted (averaged over confidences).
    fn acceptance_rate(&self, position: u32, category: Option<CategoryId>) -> f64;
    /// Short description for summaries.
    fn describe(&self) -> String;
}

/// Expected tokens emitted by one verification of `k` drafts with constant acceptance `alpha`:
/// `Σ_{j=0..k} α^j = (1 − α^{k+1}) / (1 − α)`.
pub fn expected_emitted(alpha: f64, k: u32) -> f64 {
    if (1.0 - alpha).abs() < 1e-12 {
        return (k + 1) as f64;
    }
    (1.0 - alpha.powi(k as i32 + 1)) / (1.0 - alpha)
}

/// Every token accepted with the same probability; confidence reported as that probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantAcceptance {
    /// Acceptance probability α.
    pub alpha: f64,
}

impl AcceptanceModel for ConstantAcceptance {
    fn draw(&self, _p: u32, _c: Option<CategoryId>, rng: &mut SimRng) -> DraftDraw {
        DraftDraw {
            confidence: self.alpha as f32,
            accepted: rng.random::<f64>() < self.alpha,
        }
    }
    fn acceptance_rate(&self, _p: u32, _c: Option<CategoryId>) -> f64 {
        self.alpha
    }
    fn describe(&self) -> String {
        format!("constant(alpha={})", self.alpha)
    }
}

/// Acceptance probability by draft position (the last value repeats for deeper positions).
#[derive(Debug, Clone, PartialEq)]
pub struct PerPositionAcceptance {
    /// α_j for j = 0, 1, ...
    pub alphas: Vec<f64>,
}

impl PerPositionAcceptance {
    fn at(&self, p: u32) -> f64 {
        let i = (p as usize).min(self.alphas.len().saturating_sub(1));
        self.alphas.get(i).copied().unwrap_or(0.0)
    }
}

impl AcceptanceModel for PerPositionAcceptance {
    fn draw(&self, p: u32, _c: Option<CategoryId>, rng: &mut SimRng) -> DraftDraw {
        let a = self.at(p);
        DraftDraw {
            confidence: a as f32,
            accepted: rng.random::<f64>() < a,
        }
    }
    fn acceptance_rate(&self, p: u32, _c: Option<CategoryId>) -> f64 {
        self.at(p)
    }
    fn describe(&self) -> String {
        format!("per_position({:?})", self.alphas)
    }
}

/// A piecewise-linear calibration curve `P(accept | confidence)` through points sorted by confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationCurve {
    points: Vec<(f64, f64)>,
    /// The points are exactly (0, 0), (1, 1): evaluation is a clamp (the simulator evaluates the curve
    /// once per draft token, so the check is made once here).
    identity: bool,
}

impl CalibrationCurve {
    /// The identity curve: a perfectly calibrated draft.
    pub fn identity() -> Self {
        CalibrationCurve {
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            identity: true,
        }
    }

    /// A curve through `points` (`[confidence, P(accept)]`), which must be ascending in confidence with
    /// values in [0, 1].
    pub fn new(points: &[[f64; 2]]) -> Result<Self, String> {
        if points.is_empty() {
            return Err("calibration curve has no points".into());
        }
        if points
            .iter()
            .any(|p| !(0.0..=1.0).contains(&p[0]) || !(0.0..=1.0).contains(&p[1]))
        {
            return Err("calibration points must lie in [0, 1] x [0, 1]".into());
        }
        if points.windows(2).any(|w| w[0][0] >= w[1][0]) {
            return Err("calibration points must be strictly ascending in confidence".into());
        }
        let points: Vec<(f64, f64)> = points.iter().map(|p| (p[0], p[1])).collect();
        let identity = points == [(0.0, 0.0), (1.0, 1.0)];
        Ok(CalibrationCurve { points, identity })
    }

    /// `P(accept | confidence)`, clamped at the ends.
    pub fn eval(&self, x: f64) -> f64 {
        if self.identity {
            return x.clamp(0.0, 1.0); // the common, perfectly calibrated case
        }
        let pts = &self.points;
        if x <= pts[0].0 {
            return pts[0].1;
        }
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if x <= x1 {
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
            }
        }
        pts[pts.len() - 1].1
    }
}

/// Points in a Beta quantile table: sampling by table lookup is ~20x faster than rand_distr's Beta
/// sampler (the simulator draws one confidence per draft token); the interpolation error of the
/// quantile function is below 1e-3 away from the tails.
const QUANTILE_POINTS: usize = 4096;

/// The inverse CDF of a distribution on [0, 1], tabulated, for fast sampling.
#[derive(Debug, Clone)]
pub struct QuantileTable {
    q: Table,
}

/// Beta quantile tables built so far, by the bits of (a, b): a sweep or a capacity search builds the
/// same acceptance model for every run, and tabulating costs ~130k `powf`.
type BetaTables = Vec<((u64, u64), Table)>;

/// A tabulated quantile function: `QUANTILE_POINTS + 1` values (the length in the type, so indexing
/// by a 12-bit index needs no bounds check).
type Table = std::sync::Arc<[f64; QUANTILE_POINTS + 1]>;
static BETA_TABLES: std::sync::Mutex<BetaTables> = std::sync::Mutex::new(Vec::new());

impl QuantileTable {
    /// Tabulates the quantile function of Beta(a, b) by integrating its density on a fine grid
    /// (memoised per process: tables are immutable and shared).
    pub fn beta(a: f64, b: f64) -> Self {
        let key = (a.to_bits(), b.to_bits());
        let cached = |t: &BetaTables| t.iter().find(|(k, _)| *k == key).map(|(_, q)| q.clone());
        if let Some(q) = BETA_TABLES.lock().ok().as_deref().and_then(cached) {
            return QuantileTable { q };
        }
        let q: Box<[f64; QUANTILE_POINTS + 1]> = Self::tabulate_beta(a, b)
            .into_boxed_slice()
            .try_into()
            .expect("the table has QUANTILE_POINTS + 1 values");
        let q = Table::from(q);
        if let Ok(mut t) = BETA_TABLES.lock() {
            if t.len() < 64 {
                t.push((key, q.clone()));
            }
        }
        QuantileTable { q }
    }

    fn tabulate_beta(a: f64, b: f64) -> Vec<f64> {
        let grid = 1 << 16;
        let mut cdf = Vec::with_capacity(grid + 1);
        cdf.push(0.0);
        let mut acc = 0.0;
        for i in 0..grid {
            let x = (i as f64 + 0.5) / grid as f64;
            acc += x.powf(a - 1.0) * (1.0 - x).powf(b - 1.0);
            cdf.push(acc);
        }
        let total = acc;
        let mut q = Vec::with_capacity(QUANTILE_POINTS + 1);
        let mut j = 0;
        for k in 0..=QUANTILE_POINTS {
            let target = total * k as f64 / QUANTILE_POINTS as f64;
            while j < grid && cdf[j + 1] < target {
                j += 1;
            }
            // Linear inside grid cell j.
            let (c0, c1) = (cdf[j], cdf[(j + 1).min(grid)]);
            let t = if c1 > c0 {
                ((target - c0) / (c1 - c0)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            q.push((j as f64 + t) / grid as f64);
        }
        q
    }

    /// [`QuantileTable::sample_u`] of the uniform that rand's `random::<f64>()` makes of the 64 random
    /// bits `v` (`(v >> 11) · 2⁻⁵³`), by integer arithmetic: scaling by powers of two is exact, so the
    /// table index is the top 12 bits and the interpolation weight the next 41, bit for bit the
    /// floating-point result (a float-to-integer conversion saved per draft token).
    #[inline(always)]
    pub fn sample_bits(&self, v: u64) -> f64 {
        const INDEX_BITS: u32 = QUANTILE_POINTS.trailing_zeros();
        const WEIGHT_BITS: u32 = 53 - INDEX_BITS;
        let i = (v >> (64 - INDEX_BITS)) as usize;
        let t = ((v >> 11) & ((1 << WEIGHT_BITS) - 1)) as f64 / (1u64 << WEIGHT_BITS) as f64;
        let (q0, q1) = (self.q[i], self.q[i + 1]);
        q0 + (q1 - q0) * t
    }

    /// Maps a uniform draw `u` in [0, 1) to a sample.
    pub fn sample_u(&self, u: f64) -> f64 {
        let x = u * QUANTILE_POINTS as f64;
        let i = (x as usize).min(QUANTILE_POINTS - 1);
        let t = x - i as f64;
        self.q[i] + (self.q[i + 1] - self.q[i]) * t
    }
}

/// Confidence and calibration of one request category.
#[derive(Debug, Clone)]
pub struct CategoryAcceptance {
    /// Distribution of the draft's confidence in its own token (as a quantile table).
    pub confidence: QuantileTable,
    /// Its parameters (a, b).
    pub beta_params: (f64, f64),
    /// Mean of that distribution, a / (a + b).
    pub confidence_mean: f64,
    /// Calibration curve.
    pub curve: CalibrationCurve,
    /// Optional decay of confidence with draft position: confidence is multiplied by `decay^position`.
    pub position_decay: f64,
    /// Per draft position, the factor on `curve(confidence)` that gives the position its measured
    /// acceptance rate (empty: none; the last repeats). The reported confidence is not scaled, so the
    /// draft's calibration error varies by position, as a real draft's does.
    pub position_scale: Vec<f64>,
}

impl CategoryAcceptance {
    /// From Beta(a, b) confidences and a curve.
    pub fn new(
        a: f64,
        b: f64,
        curve: CalibrationCurve,
        position_decay: f64,
    ) -> Result<Self, String> {
        Beta::new(a, b).map_err(|e| format!("confidence_beta = [{a}, {b}]: {e}"))?;
        let confidence = QuantileTable::beta(a, b);
        if !(0.0..=1.0).contains(&position_decay) || position_decay == 0.0 {
            return Err(format!(
                "position_decay = {position_decay} must be in (0, 1]"
            ));
        }
        Ok(CategoryAcceptance {
            confidence,
            beta_params: (a, b),
            confidence_mean: a / (a + b),
            curve,
            position_decay,
            position_scale: Vec::new(),
        })
    }

    /// `P(accept)` of a token of confidence `conf` at draft position `p`.
    fn accept_probability(&self, conf: f64, p: u32) -> f64 {
        let base = self.curve.eval(conf);
        match self.position_scale.len() {
            0 => base,
            n => (base * self.position_scale[(p as usize).min(n - 1)]).min(1.0),
        }
    }

    /// `E[P(accept)]` at position `p` over the confidence distribution, by midpoint quadrature over the
    /// Beta density, with the confidence decayed to the position (`scale` on the curve, capped at 1).
    fn mean_acceptance(&self, p: u32, scale: f64) -> f64 {
        let n = 2000;
        let (a, b) = self.beta_params;
        let decay = self.position_decay.powi(p as i32);
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..n {
            let x = (i as f64 + 0.5) / n as f64;
            let w = x.powf(a - 1.0) * (1.0 - x).powf(b - 1.0);
            num += w * (self.curve.eval(x * decay) * scale).min(1.0);
            den += w;
        }
        num / den
    }

    /// Scales the curve per position so that position `j` is accepted at `alphas[j]` on average
    /// (bisection on the factor: the mean is continuous and non-decreasing in it). A rate the curve
    /// cannot reach (above the share of confidences it gives a non-zero probability) is an error.
    fn with_position_alphas(mut self, alphas: &[f64]) -> Result<Self, String> {
        let mut scale = Vec::with_capacity(alphas.len());
        for (j, &alpha) in alphas.iter().enumerate() {
            if !(0.0..=1.0).contains(&alpha) {
                return Err(format!(
                    "position_alphas[{j}] = {alpha} is not a probability"
                ));
            }
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            while self.mean_acceptance(j as u32, hi) < alpha {
                hi *= 2.0;
                if hi > 1e6 {
                    return Err(format!(
                        "position_alphas[{j}] = {alpha}: the calibration curve cannot reach it"
                    ));
                }
            }
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if self.mean_acceptance(j as u32, mid) < alpha {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            scale.push(0.5 * (lo + hi));
        }
        self.position_scale = scale;
        Ok(self)
    }
}

/// Confidence-calibrated acceptance: confidence `p` drawn from a Beta distribution (per category), then
/// acceptance drawn with probability `curve(p)`.
#[derive(Debug, Clone)]
pub struct CalibratedAcceptance {
    /// For requests without a category, or with one not listed.
    pub default: CategoryAcceptance,
    /// Indexed by the workload's category id.
    pub by_category: Vec<Option<CategoryAcceptance>>,
}

impl CalibratedAcceptance {
    fn for_category(&self, c: Option<CategoryId>) -> &CategoryAcceptance {
        c.and_then(|c| self.by_category.get(c as usize))
            .and_then(Option::as_ref)
            .unwrap_or(&self.default)
    }
}

/// `confidence · decay^position`. Kept out of line: inlined, the compiler evaluated `powi` on every
/// draw and discarded it when the decay is 1 (the default), a tenth of a draw's instructions.
#[inline(never)]
fn decayed(confidence: f64, decay: f64, position: u32) -> f64 {
    confidence * decay.powi(position as i32)
}

impl CategoryAcceptance {
    /// One draw at position `p`: a confidence, then whether the target accepts it (two uniforms, in
    /// that order).
    #[inline(always)]
    fn draw(&self, p: u32, rng: &mut SimRng) -> DraftDraw {
        // `sample_u(rng.random::<f64>())`, computed from the same 64 bits.
        let mut conf = self.confidence.sample_bits(rng.next_u64());
        if self.position_decay != 1.0 {
            conf = decayed(conf, self.position_decay, p);
        }
        DraftDraw {
            confidence: conf as f32,
            accepted: rng.random::<f64>() < self.accept_probability(conf, p),
        }
    }

    /// This category's draws as [`PlainDraws`], when it is plain.
    fn plain(&self) -> Option<PlainDraws<'_>> {
        let plain =
            self.curve.identity && self.position_scale.is_empty() && self.position_decay == 1.0;
        plain.then_some(PlainDraws {
            confidence: &self.confidence,
        })
    }
}

impl AcceptanceModel for CalibratedAcceptance {
    fn draw(&self, p: u32, c: Option<CategoryId>, rng: &mut SimRng) -> DraftDraw {
        self.for_category(c).draw(p, rng)
    }
    fn plain_draws(&self, category: Option<CategoryId>) -> Option<PlainDraws<'_>> {
        self.for_category(category).plain()
    }
    fn plain_draws_for_all(&self) -> Option<PlainDraws<'_>> {
        if self.by_category.iter().any(Option::is_some) {
            return None;
        }
        self.default.plain()
    }
    fn acceptance_rate(&self, p: u32, c: Option<CategoryId>) -> f64 {
        // E[curve(p·decay^j)] by midpoint quadrature over the Beta density (exact enough for reporting).
        let cat = self.for_category(c);
        let scale = match cat.position_scale.len() {
            0 => 1.0,
            n => cat.position_scale[(p as usize).min(n - 1)],
        };
        cat.mean_acceptance(p, scale)
    }
    fn describe(&self) -> String {
        format!(
            "calibrated(mean confidence {:.3}, {} categories)",
            self.default.confidence_mean,
            self.by_category.iter().filter(|c| c.is_some()).count()
        )
    }
}

/// `[acceptance]` as written in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AcceptanceConfig {
    /// Constant α.
    Constant {
        /// Acceptance probability.
        alpha: f64,
    },
    /// α by draft position.
    PerPosition {
        /// α_0, α_1, ... (the last repeats).
        alphas: Vec<f64>,
    },
    /// Confidence drawn from Beta(a, b), accepted with probability curve(confidence).
    Calibrated {
        /// `[a, b]` of the confidence distribution.
        confidence_beta: [f64; 2],
        /// Calibration curve points `[[confidence, P(accept)], ...]` (default: identity).
        #[serde(default)]
        curve: Option<Vec<[f64; 2]>>,
        /// Confidence multiplier per draft position (default 1: no decay).
        #[serde(default = "one_f")]
        position_decay: f64,
        /// Per-category overrides.
        #[serde(default)]
        categories: BTreeMap<String, CategoryAcceptanceConfig>,
        /// Measured acceptance by draft position (conditional convention, the last repeats; e.g. the
        /// SpecDecode-Bench fit): the default category's curve is scaled per position to these rates
        /// while the confidences the draft reports stay as drawn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position_alphas: Option<Vec<f64>>,
    },
    /// The acceptance measured by `specsim calibrate`, read from a profile file's `[acceptance]` table.
    Profile {
        /// The profile file (relative to the scenario).
        path: std::path::PathBuf,
    },
}

/// One category's confidence distribution and calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryAcceptanceConfig {
    /// `[a, b]` of the confidence distribution.
    pub confidence_beta: [f64; 2],
    /// Calibration curve (default: identity).
    #[serde(default)]
    pub curve: Option<Vec<[f64; 2]>>,
    /// Confidence multiplier per draft position (default 1).
    #[serde(default = "one_f")]
    pub position_decay: f64,
}

fn one_f() -> f64 {
    1.0
}

fn curve_of(points: &Option<Vec<[f64; 2]>>) -> Result<CalibrationCurve, String> {
    match points {
        Some(p) => CalibrationCurve::new(p),
        None => Ok(CalibrationCurve::identity()),
    }
}

impl AcceptanceConfig {
    /// Builds the model; `categories` are the workload's category names (ids index them).
    /// The mean draft confidence the model reports, where it says: the mean of the confidence Beta of
    /// a calibrated model (the default category's). SpecServe starts its running mean ᾱ there.
    pub fn mean_confidence(&self) -> Option<f64> {
        match self {
            AcceptanceConfig::Calibrated {
                confidence_beta: [a, b],
                ..
            } if a + b > 0.0 => Some(a / (a + b)),
            _ => None,
        }
    }

    /// Builds the model for a workload with these category names.
    pub fn build(&self, categories: &[String]) -> Result<Box<dyn AcceptanceModel>, String> {
        let prob = |a: f64, what: &str| {
            if (0.0..=1.0).contains(&a) {
                Ok(())
            } else {
                Err(format!("{what} = {a} is not a probability"))
            }
        };
        Ok(match self {
            AcceptanceConfig::Constant { alpha } => {
                prob(*alpha, "alpha")?;
                Box::new(ConstantAcceptance { alpha: *alpha })
            }
            AcceptanceConfig::PerPosition { alphas } => {
                if alphas.is_empty() {
                    return Err("alphas is empty".into());
                }
                for a in alphas {
                    prob(*a, "alphas[..]")?;
                }
                Box::new(PerPositionAcceptance {
                    alphas: alphas.clone(),
                })
            }
            AcceptanceConfig::Calibrated {
                confidence_beta,
                curve,
                position_decay,
                categories: cats,
                position_alphas,
            } => {
                let mut default = CategoryAcceptance::new(
                    confidence_beta[0],
                    confidence_beta[1],
                    curve_of(curve)?,
                    *position_decay,
                )?;
                if let Some(alphas) = position_alphas {
                    if alphas.is_empty() {
                        return Err("position_alphas is empty".into());
                    }
                    default = default.with_position_alphas(alphas)?;
                }
                let mut by_category = vec![None; categories.len()];
                for (name, c) in cats {
                    let built = CategoryAcceptance::new(
                        c.confidence_beta[0],
                        c.confidence_beta[1],
                        curve_of(&c.curve)?,
                        c.position_decay,
                    )
                    .map_err(|e| format!("categories.{name}: {e}"))?;
                    if let Some(i) = categories.iter().position(|n| n == name) {
                        by_category[i] = Some(built);
                    }
                }
                Box::new(CalibratedAcceptance {
                    default,
                    by_category,
                })
            }
            AcceptanceConfig::Profile { path } => {
                return Err(format!(
                    "acceptance from profile {} must be resolved by the scenario loader",
                    path.display()
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    /// Mean accepted run length with k drafts, by simulation.
    fn mean_emitted(m: &dyn AcceptanceModel, k: u32, n: usize) -> f64 {
        let mut rng = stream(1, "t", 0);
        let mut total = 0u64;
        for _ in 0..n {
            let mut run = 0;
            while run < k && m.draw(run, None, &mut rng).accepted {
                run += 1;
            }
            total += run as u64 + 1;
        }
        total as f64 / n as f64
    }

    #[test]
    fn closed_form_expected_emitted() {
        assert!((expected_emitted(0.5, 2) - 1.75).abs() < 1e-12);
        assert_eq!(expected_emitted(1.0, 3), 4.0);
        assert_eq!(expected_emitted(0.0, 5), 1.0);
    }

    #[test]
    fn constant_model_matches_geometric_closed_form() {
        let m = ConstantAcceptance { alpha: 0.7 };
        let got = mean_emitted(&m, 4, 200_000);
        let want = expected_emitted(0.7, 4);
        assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
    }

    #[test]
    fn per_position_model_matches_product_form() {
        let m = PerPositionAcceptance {
            alphas: vec![0.9, 0.5],
        };
        // E = 1 + 0.9 + 0.9·0.5 + 0.9·0.5² for k = 3.
        let want = 1.0 + 0.9 + 0.45 + 0.225;
        let got = mean_emitted(&m, 3, 200_000);
        assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
    }

    #[test]
    fn calibrated_identity_accepts_at_mean_confidence() {
        // Beta(6, 4) has mean 0.6; with the identity curve P(accept) = E[p] = 0.6.
        let cfg = AcceptanceConfig::Calibrated {
            confidence_beta: [6.0, 4.0],
            curve: None,
            position_decay: 1.0,
            categories: BTreeMap::new(),
            position_alphas: None,
        };
        let m = cfg.build(&[]).unwrap();
        assert!((m.acceptance_rate(0, None) - 0.6).abs() < 1e-3);
        let mut rng = stream(3, "t", 0);
        let n = 100_000;
        let acc = (0..n)
            .filter(|_| m.draw(0, None, &mut rng).accepted)
            .count();
        assert!((acc as f64 / n as f64 - 0.6).abs() < 0.01);
    }

    #[test]
    fn position_alphas_scale_the_curve_to_each_positions_rate() {
        // Beta(3, 2) confidences (density 12x²(1 − x), mean 0.6), identity curve. Position 0 at 0.3:
        // scale 0.5 (0.5·x never reaches 1, so E = 0.5 · 0.6). Position 1 at 0.75 needs a scale s > 1
        // capped at 1 above x = c = 1/s: E = 1 − c³ + 0.6c⁴ (integrating by hand), = 0.75 at
        // c = 0.776410, s = 1.287979. Deeper positions repeat the last.
        let cfg = AcceptanceConfig::Calibrated {
            confidence_beta: [3.0, 2.0],
            curve: None,
            position_decay: 1.0,
            categories: BTreeMap::new(),
            position_alphas: Some(vec![0.3, 0.75]),
        };
        let by_hand = CategoryAcceptance::new(3.0, 2.0, CalibrationCurve::identity(), 1.0)
            .and_then(|c| c.with_position_alphas(&[0.3, 0.75]))
            .unwrap();
        assert!((by_hand.position_scale[0] - 0.5).abs() < 1e-6);
        assert!((by_hand.position_scale[1] - 1.287979).abs() < 1e-4);
        let m = cfg.build(&[]).unwrap();
        for (p, want) in [(0, 0.3), (1, 0.75), (5, 0.75)] {
            assert!((m.acceptance_rate(p, None) - want).abs() < 1e-6, "{p}");
        }
        // Sampled: each position accepted at its rate, while the reported confidence keeps mean 0.6
        // at every position (what makes the draft miscalibrated by position).
        let mut rng = stream(4, "t", 0);
        let n = 100_000;
        for (p, want) in [(0, 0.3), (1, 0.75)] {
            let draws: Vec<DraftDraw> = (0..n).map(|_| m.draw(p, None, &mut rng)).collect();
            let acc = draws.iter().filter(|d| d.accepted).count() as f64 / n as f64;
            let conf = draws.iter().map(|d| d.confidence as f64).sum::<f64>() / n as f64;
            assert!((acc - want).abs() < 0.01, "position {p}: {acc}");
            assert!((conf - 0.6).abs() < 0.01, "position {p}: {conf}");
        }
        // A curve that gives confidences below 0.5 no chance can reach at most P(x > 0.5) = 0.6875.
        let flat_low = |alpha: f64| AcceptanceConfig::Calibrated {
            confidence_beta: [3.0, 2.0],
            curve: Some(vec![[0.0, 0.0], [0.5, 0.0], [1.0, 1.0]]),
            position_decay: 1.0,
            categories: BTreeMap::new(),
            position_alphas: Some(vec![alpha]),
        };
        assert!(flat_low(0.68).build(&[]).is_ok());
        let e = flat_low(0.7).build(&[]).err().unwrap();
        assert!(e.contains("position_alphas[0] = 0.7"), "{e}");
    }

    #[test]
    fn beta_quantile_table_has_the_beta_moments() {
        // Beta(2, 5): mean 2/7, variance 2·5 / (7² · 8) = 0.025510.
        let t = QuantileTable::beta(2.0, 5.0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n)
            .map(|i| t.sample_u((i as f64 + 0.5) / n as f64))
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 2.0 / 7.0).abs() < 1e-3, "{mean}");
        assert!((var - 0.025510).abs() < 1e-3, "{var}");
    }

    #[test]
    fn categories_override_the_default() {
        let mut cats = BTreeMap::new();
        cats.insert(
            "coding".to_string(),
            CategoryAcceptanceConfig {
                confidence_beta: [9.0, 1.0],
                curve: None,
                position_decay: 1.0,
            },
        );
        let cfg = AcceptanceConfig::Calibrated {
            confidence_beta: [1.0, 1.0],
            curve: None,
            position_decay: 1.0,
            categories: cats,
            position_alphas: None,
        };
        let m = cfg.build(&["writing".into(), "coding".into()]).unwrap();
        assert!((m.acceptance_rate(0, Some(1)) - 0.9).abs() < 1e-3);
        assert!((m.acceptance_rate(0, Some(0)) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn curve_interpolates_and_rejects_bad_points() {
        let c = CalibrationCurve::new(&[[0.0, 0.1], [0.5, 0.5], [1.0, 0.9]]).unwrap();
        assert!((c.eval(0.25) - 0.3).abs() < 1e-12);
        assert!((c.eval(0.75) - 0.7).abs() < 1e-12);
        assert!(CalibrationCurve::new(&[[0.5, 0.1], [0.2, 0.3]]).is_err());
        assert!(AcceptanceConfig::Constant { alpha: 1.5 }
            .build(&[])
            .is_err());
    }

    #[test]
    fn table_sample_from_bits_equals_sample_of_the_uniform() {
        // rand's f64 from 64 bits is (v >> 11) · 2^-53; the integer path must give the same bits.
        let table = QuantileTable::beta(3.0, 2.0);
        let mut rng = stream(3, "bits", 0);
        let edges = [
            0,
            1,
            u64::MAX,
            1 << 52,
            (1 << 52) - 1,
            0xfff0_0000_0000_0000,
        ];
        let randoms = (0..100_000).map(|_| rng.next_u64());
        for v in edges.into_iter().chain(randoms) {
            let u = (v >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            assert_eq!(
                table.sample_bits(v).to_bits(),
                table.sample_u(u).to_bits(),
                "v = {v:#x}"
            );
        }
    }

    #[test]
    fn plain_draws_are_the_models_draws_where_offered() {
        // Categories with a decaying confidence, a scaled curve or per-position rates are not plain.
        let mut cats = BTreeMap::new();
        cats.insert(
            "coding".to_string(),
            CategoryAcceptanceConfig {
                confidence_beta: [9.0, 1.0],
                curve: Some(vec![[0.0, 0.1], [0.5, 0.4], [1.0, 0.9]]),
                position_decay: 0.9,
            },
        );
        let cfg = AcceptanceConfig::Calibrated {
            confidence_beta: [3.0, 2.0],
            curve: None,
            position_decay: 1.0,
            categories: cats,
            position_alphas: Some(vec![0.7, 0.5]),
        };
        // The plain case: identity curve, no decay, no scale.
        let plain = AcceptanceConfig::Calibrated {
            confidence_beta: [3.0, 2.0],
            curve: None,
            position_decay: 1.0,
            categories: BTreeMap::new(),
            position_alphas: None,
        };
        let models: Vec<Box<dyn AcceptanceModel>> = vec![
            cfg.build(&["writing".into(), "coding".into()]).unwrap(),
            plain.build(&["writing".into(), "coding".into()]).unwrap(),
            Box::new(ConstantAcceptance { alpha: 0.6 }),
            Box::new(PerPositionAcceptance {
                alphas: vec![0.8, 0.6, 0.4],
            }),
        ];
        let categories = [None, Some(0), Some(1)];
        let offered = |m: &dyn AcceptanceModel| {
            categories
                .iter()
                .map(|&c| m.plain_draws(c).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(offered(&*models[0]), [false; 3]);
        assert_eq!(offered(&*models[1]), [true; 3]);
        assert_eq!(offered(&*models[2]), [false; 3]);
        assert_eq!(offered(&*models[3]), [false; 3]);
        // Only the plain model without categories offers one sampler for all.
        let for_all: Vec<bool> = models
            .iter()
            .map(|m| m.plain_draws_for_all().is_some())
            .collect();
        assert_eq!(for_all, [false, true, false, false]);
        let (mut a, mut b) = (stream(6, "acc", 0), stream(6, "acc", 0));
        let plain = models[1].plain_draws_for_all().unwrap();
        for n in 0..100u32 {
            assert_eq!(plain.draw(&mut a), models[1].draw(n % 5, Some(1), &mut b));
        }
        for m in &models {
            for c in categories {
                let Some(plain) = m.plain_draws(c) else {
                    continue;
                };
                let (mut a, mut b) = (stream(5, "acc", 0), stream(5, "acc", 0));
                for n in 0..200u32 {
                    assert_eq!(plain.draw(&mut a), m.draw(n % 5, c, &mut b), "draw {n}");
                }
                assert_eq!(a.next_u64(), b.next_u64(), "generator state");
            }
        }
    }
}
