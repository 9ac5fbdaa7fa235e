//! Acceptance measurement on a prompt set, and the fit of the simulator's calibrated acceptance model.
//!
//! **Measuring.** Prompts run through the engine core with static speculation over the runtime's live
//! backend ([`LiveBackend`]) — the same engine and backend `specsim serve` runs — behind a recording
//! backend: prefill, then steps of up to `k` draft positions (one batched draft forward each) and one
//! batched verification, greedy or by rejection sampling. For every step and
//! sequence the draft's confidences and the number accepted are recorded. Like the simulator's
//! acceptance draws, a draft position counts as *verified* only when every earlier position of the step
//! was accepted: positions `0..accepted` are accepted, position `accepted` (if `< k`) is rejected, and
//! later ones were never really judged and are not recorded.
//!
//! **Fitting** (per category with enough records, and over all of them as the default):
//!
//! - the confidence's decay with draft position: a geometric fit `μ_j ≈ μ_0·δ^j` of the mean confidence
//!   at each position (δ clamped to [0.5, 1]);
//! - the confidence distribution: Beta by moments of the confidences divided by `δ^j`;
//! - the calibration curve `P(accept | confidence)`: acceptance rate in bins of equal count over the
//!   observed confidence, one point per bin at the bin's mean confidence.
//!
//! - **matching tokens per step**: the simulator draws each position independently, and its decay can
//!   only lower acceptance with position, but measured acceptance often *rises* with position (a step
//!   that got past a hard token tends to be on easy text: 0.71, 0.80, 0.86, 0.86 for the Qwen pair).
//!   The pooled fit then over-predicts tokens per step (3.39 against a measured 3.15 at k = 4). So the
//!   curve's probabilities are finally scaled by one factor `s` (bisection, each point capped at 1)
//!   until the model's expected tokens per step at the measured `k` equals the measured value; `s` and
//!   the unscaled prediction are reported. This is an in-sample match at that `k`, not a validation.
//!
//! That is exactly the simulator's `kind = "calibrated"` model: confidence `x·δ^j` with `x ~ Beta`,
//! accepted with probability `curve(x·δ^j)`. The mean accepted length the fitted model predicts for
//! the measured steps is computed with the simulator's own model and draws, so that it can be set
//! against the measured one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use specsim_core::acceptance::{AcceptanceConfig, CategoryAcceptanceConfig};
use specsim_core::cost::FixedCost;
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, Engine, EngineConfig, SeqId, TargetItem, TargetResult,
    TargetWork,
};
use specsim_core::policy::PolicyConfig;
use specsim_core::workload::{CategoryId, RequestSpec};
use specsim_core::CoreError;
use specsim_runtime::drafter::model::ModelDrafter;
use specsim_runtime::live::{DraftSource, LiveBackend};
use specsim_runtime::model::Model;
use specsim_runtime::sampling::SamplingParams;

use crate::error::{CalibrateError, Result};
use crate::stats::beta_by_moments;

/// How prompts are run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AcceptanceOptions {
    /// Draft tokens per step (static speculation length).
    pub k: u32,
    /// Output tokens per prompt (fewer when the model ends the answer).
    pub max_new_tokens: u32,
    /// Longest prompt in tokens (longer prompts keep their end).
    pub max_prompt_tokens: usize,
    /// Sequences decoded together.
    pub batch: usize,
    /// None for greedy decoding; else the sampling temperature (rejection sampling).
    pub temperature: Option<f32>,
    /// Seed of the per-request samplers.
    pub seed: u64,
}

/// One verified draft position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DraftRecord {
    /// Index into [`AcceptanceMeasurement::categories`].
    pub category: usize,
    /// Draft position within the step, 0-based.
    pub position: u32,
    /// The draft's probability of its token.
    pub confidence: f32,
    /// Whether the target accepted it.
    pub accepted: bool,
}

/// Everything measured over a prompt set in one decoding mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AcceptanceMeasurement {
    /// Category names.
    pub categories: Vec<String>,
    /// Verified draft positions.
    pub records: Vec<DraftRecord>,
    /// Verification steps per category.
    pub steps: Vec<u64>,
    /// Draft tokens accepted per category.
    pub accepted: Vec<u64>,
    /// Prompts run.
    pub prompts: usize,
    /// Draft tokens per step.
    pub k: u32,
}

impl AcceptanceMeasurement {
    /// Mean tokens emitted per verification step, `(accepted + steps) / steps` (the simulator's
    /// `mean_accepted_length`), over all categories or one.
    pub fn mean_accepted_length(&self, category: Option<usize>) -> f64 {
        let (s, a) = match category {
            Some(c) => (
                self.steps.get(c).copied().unwrap_or(0),
                self.accepted.get(c).copied().unwrap_or(0),
            ),
            None => (self.steps.iter().sum(), self.accepted.iter().sum()),
        };
        if s == 0 {
            0.0
        } else {
            (a + s) as f64 / s as f64
        }
    }

    /// Acceptance rate by draft position (given every earlier position accepted), with record counts.
    pub fn per_position(&self, category: Option<usize>) -> Vec<(f64, usize)> {
        let mut acc = vec![(0usize, 0usize); self.k as usize];
        for r in self.records(category) {
            if let Some(e) = acc.get_mut(r.position as usize) {
                e.0 += usize::from(r.accepted);
                e.1 += 1;
            }
        }
        acc.into_iter()
            .map(|(a, n)| (if n > 0 { a as f64 / n as f64 } else { f64::NAN }, n))
            .collect()
    }

    fn records(&self, category: Option<usize>) -> impl Iterator<Item = &DraftRecord> {
        self.records
            .iter()
            .filter(move |r| category.is_none_or(|c| r.category == c))
    }
}

/// One prompt ready to run: its category and token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPrompt {
    /// Category name.
    pub category: String,
    /// Token ids (chat-rendered).
    pub tokens: Vec<u32>,
}

/// The live backend with a recorder in front: every draft confidence on the way out, and on each
/// verification the judged positions, steps and accepted tokens of the sequence's category. Categories
/// travel as the engine's category ids (indices into [`AcceptanceMeasurement::categories`]).
struct Recorder {
    inner: LiveBackend,
    /// Confidences drafted this step, per sequence id.
    drafted: HashMap<SeqId, Vec<f32>>,
    m: AcceptanceMeasurement,
}

impl Backend for Recorder {
    fn draft(&mut self, items: &[DraftItem]) -> std::result::Result<DraftResult, CoreError> {
        let res = Backend::draft(&mut self.inner, items)?;
        for (it, &c) in items.iter().zip(&res.confidences) {
            self.drafted.entry(it.seq).or_default().push(c);
        }
        Ok(res)
    }

    fn target(&mut self, items: &[TargetItem]) -> std::result::Result<TargetResult, CoreError> {
        let res = Backend::target(&mut self.inner, items)?;
        for (it, o) in items.iter().zip(&res.outcomes) {
            let TargetWork::Verify { drafted } = it.work else {
                continue;
            };
            let category = it.category.map_or(0, |c| c as usize);
            let conf = self.drafted.remove(&it.seq).unwrap_or_default();
            let a = o.accepted;
            self.m.steps[category] += 1;
            self.m.accepted[category] += a as u64;
            // Positions 0..a were accepted and position a rejected; later ones were never judged, and
            // an end-of-sequence cut leaves position a unjudged too.
            let judged = if o.stop { a } else { (a + 1).min(drafted) };
            for j in 0..judged {
                self.m.records.push(DraftRecord {
                    category,
                    position: j,
                    confidence: conf.get(j as usize).copied().unwrap_or(0.0),
                    accepted: j < a,
                });
            }
        }
        Ok(res)
    }

    fn release(&mut self, seq: SeqId) {
        self.drafted.remove(&seq);
        self.inner.release(seq);
    }
}

/// Runs every prompt through the engine core with static speculation of `opts.k` over the live backend
/// (the same engine and backend `specsim serve` runs), recording what each verification judged; `tick`
/// is called once per finished prompt. As in serving, a sequence drafts at most one token fewer than it
/// still owes, so its last steps may draft fewer than `k`.
pub fn measure_acceptance(
    target: Arc<Model>,
    draft: Arc<Model>,
    prompts: &[EncodedPrompt],
    opts: &AcceptanceOptions,
    tick: &mut dyn FnMut(),
) -> Result<AcceptanceMeasurement> {
    if opts.k == 0 || opts.batch == 0 || opts.max_new_tokens == 0 {
        return Err(CalibrateError::Config(
            "acceptance: k, batch and max_new_tokens must be at least 1".into(),
        ));
    }
    let limit = target
        .config()
        .max_positions
        .min(draft.config().max_positions);
    let longest = prompts.iter().map(|p| p.tokens.len()).max().unwrap_or(0);
    if longest + opts.max_new_tokens as usize + opts.k as usize + 2 > limit {
        return Err(CalibrateError::Config(format!(
            "a prompt of {longest} tokens plus {} new tokens and {} drafts exceeds the models' {limit} positions",
            opts.max_new_tokens, opts.k
        )));
    }
    let mut categories: Vec<String> = Vec::new();
    for p in prompts {
        if !categories.contains(&p.category) {
            categories.push(p.category.clone());
        }
    }
    let n_cat = categories.len();
    let mut backend = Recorder {
        inner: LiveBackend::new(target, DraftSource::Model(ModelDrafter::new(draft)))?,
        drafted: HashMap::new(),
        m: AcceptanceMeasurement {
            categories,
            steps: vec![0; n_cat],
            accepted: vec![0; n_cat],
            k: opts.k,
            prompts: prompts.len(),
            ..Default::default()
        },
    };
    let mut engine = acceptance_engine(opts, longest)?;
    for (i, p) in prompts.iter().enumerate() {
        if p.tokens.is_empty() {
            tick();
            continue;
        }
        let id = i as u64;
        let params = match opts.temperature {
            None => SamplingParams::greedy(),
            Some(t) => SamplingParams::with_temperature(t, opts.seed.wrapping_add(id)),
        };
        backend
            .inner
            .register(id, p.tokens.clone(), params, false)?;
        let category = backend.m.categories.iter().position(|c| *c == p.category);
        engine.add_request(RequestSpec {
            id,
            arrival_ns: 0,
            prompt_tokens: p.tokens.len() as u32,
            output_tokens: opts.max_new_tokens,
            category: category.map(|c| c as CategoryId),
            prefix: None,
        })?;
    }
    let mut now = 0;
    while engine.has_work() {
        let Some(report) = engine.step(now, &mut backend)? else {
            return Err(CalibrateError::Config(
                "acceptance: the engine has work but made no step".into(),
            ));
        };
        now = report.end_ns;
        for f in engine.drain_finished() {
            backend.inner.remove(f.spec.id);
            tick();
        }
    }
    Ok(backend.m)
}

/// An engine that runs `opts.batch` sequences at a time with static k, KV for all of them at the longest
/// prompt, and a token budget that prefills any admitted prompt whole.
fn acceptance_engine(opts: &AcceptanceOptions, longest: usize) -> Result<Engine> {
    let block_size = 16u32;
    let per_seq = (longest as u32 + opts.max_new_tokens + opts.k + 2).div_ceil(block_size) + 1;
    let config = EngineConfig {
        block_size,
        kv_blocks: Some(per_seq * opts.batch as u32),
        max_num_seqs: opts.batch as u32,
        max_batched_tokens: (longest as u32).max(1) * opts.batch as u32,
        ..EngineConfig::default()
    };
    // The step-time predictor only matters to adaptive policies; static k never consults it.
    let predictor = Arc::new(FixedCost {
        draft_base: 1,
        draft_per_seq: 0,
        target_base: 1,
        target_per_token: 0,
    });
    Ok(Engine::new(
        config,
        PolicyConfig::Static { k: opts.k }.build(),
        predictor,
    )?)
}

/// What the fit found for one category (or overall), for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryFit {
    /// Category name ("all" for the default).
    pub name: String,
    /// Verified draft positions used.
    pub records: usize,
    /// Beta(a, b) of the (decay-corrected) confidence.
    pub confidence_beta: [f64; 2],
    /// Confidence decay per position.
    pub position_decay: f64,
    /// Calibration curve points `[confidence, P(accept)]`.
    pub curve: Vec<[f64; 2]>,
    /// Measured acceptance rate by position.
    pub per_position: Vec<f64>,
    /// Measured mean accepted length (tokens per step).
    pub measured_mean_accepted_length: f64,
    /// Mean accepted length the fitted model predicts for the same steps (simulator draws).
    pub predicted_mean_accepted_length: f64,
    /// Factor applied to the curve's probabilities to match the measured tokens per step.
    pub curve_scale: f64,
    /// Expected tokens per step of the model before that scaling.
    pub unscaled_mean_accepted_length: f64,
}

/// The fitted acceptance model plus what went into it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptanceFit {
    /// The profile's `[acceptance]` table.
    #[serde(skip)]
    pub config: AcceptanceConfig,
    /// Overall fit.
    pub overall: CategoryFit,
    /// Per-category fits (categories with at least `min_records` records).
    pub categories: Vec<CategoryFit>,
    /// Mean accepted length the full model (with categories) predicts, weighted by measured steps.
    pub predicted_mean_accepted_length: f64,
    /// Measured mean accepted length over every step.
    pub measured_mean_accepted_length: f64,
}

/// Bins of equal count over the confidence; one curve point per bin.
fn calibration_curve(recs: &[&DraftRecord], max_bins: usize) -> Vec<[f64; 2]> {
    let mut v: Vec<(f64, bool)> = recs
        .iter()
        .map(|r| ((r.confidence as f64).clamp(0.0, 1.0), r.accepted))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bins = max_bins.min(v.len() / 30).max(1);
    let mut pts: Vec<[f64; 2]> = Vec::new();
    for b in 0..bins {
        let (lo, hi) = (b * v.len() / bins, (b + 1) * v.len() / bins);
        let chunk = &v[lo..hi];
        if chunk.is_empty() {
            continue;
        }
        let x = chunk.iter().map(|c| c.0).sum::<f64>() / chunk.len() as f64;
        let y = chunk.iter().filter(|c| c.1).count() as f64 / chunk.len() as f64;
        match pts.last_mut() {
            // Equal confidences (e.g. many exact 1.0s) merge into the previous point.
            Some(last) if x <= last[0] + 1e-9 => last[1] = (last[1] + y) / 2.0,
            _ => pts.push([x, y]),
        }
    }
    if pts.is_empty() {
        pts.push([0.5, 0.5]);
    }
    pts
}

/// Geometric decay of the mean confidence with position (positions with at least 20 records).
fn position_decay(recs: &[&DraftRecord], k: u32) -> f64 {
    let mut sum = vec![(0.0f64, 0usize); k as usize];
    for r in recs {
        if let Some(e) = sum.get_mut(r.position as usize) {
            e.0 += r.confidence as f64;
            e.1 += 1;
        }
    }
    let pts: Vec<(f64, f64, f64)> = sum
        .iter()
        .enumerate()
        .filter(|(_, (s, n))| *n >= 20 && *s > 0.0)
        .map(|(j, (s, n))| (j as f64, (s / *n as f64).ln(), *n as f64))
        .collect();
    if pts.len() < 2 {
        return 1.0;
    }
    // Weighted least-squares slope of ln(mean confidence) on position.
    let w: f64 = pts.iter().map(|p| p.2).sum();
    let mx = pts.iter().map(|p| p.0 * p.2).sum::<f64>() / w;
    let my = pts.iter().map(|p| p.1 * p.2).sum::<f64>() / w;
    let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return 1.0;
    }
    (sxy / sxx).exp().clamp(0.5, 1.0)
}

/// Expected tokens per step with `k` drafts under one category's model, by quadrature.
pub fn expected_length(c: &CategoryAcceptanceConfig, k: u32) -> Result<f64> {
    let built = AcceptanceConfig::Calibrated {
        confidence_beta: c.confidence_beta,
        curve: c.curve.clone(),
        position_decay: c.position_decay,
        categories: BTreeMap::new(),
        position_alphas: None,
    }
    .build(&[])
    .map_err(|msg| CalibrateError::Fit {
        what: "acceptance".into(),
        msg,
    })?;
    let (mut e, mut p) = (1.0, 1.0);
    for j in 0..k {
        p *= built.acceptance_rate(j, None);
        e += p;
    }
    Ok(e)
}

fn scaled(c: &CategoryAcceptanceConfig, s: f64) -> CategoryAcceptanceConfig {
    CategoryAcceptanceConfig {
        curve: c.curve.as_ref().map(|pts| {
            pts.iter()
                .map(|p| [p[0], (p[1] * s).clamp(0.0, 1.0)])
                .collect()
        }),
        ..c.clone()
    }
}

/// Scales the curve's probabilities by one factor so that the expected tokens per step at `k` equals
/// `measured` (see the module docs). Returns the scaled model, the factor and the unscaled length.
pub fn match_length(
    c: &CategoryAcceptanceConfig,
    measured: f64,
    k: u32,
) -> Result<(CategoryAcceptanceConfig, f64, f64)> {
    let unscaled = expected_length(c, k)?;
    if !(measured.is_finite() && measured >= 1.0) {
        return Ok((c.clone(), 1.0, unscaled));
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    // Grow the bracket until the scaled model reaches the measured length (or saturates).
    while expected_length(&scaled(c, hi), k)? < measured && hi < 1e3 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if expected_length(&scaled(c, mid), k)? < measured {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let s = 0.5 * (lo + hi);
    Ok((scaled(c, s), s, unscaled))
}

fn fit_one(name: &str, recs: &[&DraftRecord], k: u32) -> CategoryAcceptanceConfig {
    let decay = position_decay(recs, k);
    let xs: Vec<f64> = recs
        .iter()
        .map(|r| (r.confidence as f64 / decay.powi(r.position as i32)).min(1.0))
        .collect();
    let _ = name;
    CategoryAcceptanceConfig {
        confidence_beta: beta_by_moments(&xs).unwrap_or([1.0, 1.0]),
        curve: Some(calibration_curve(recs, 12)),
        position_decay: decay,
    }
}

/// Mean tokens per step with `k` drafts under a built acceptance model, by the simulator's own draws.
fn predicted_length(
    model: &dyn specsim_core::acceptance::AcceptanceModel,
    category: Option<specsim_core::workload::CategoryId>,
    k: u32,
    draws: usize,
    seed: u64,
) -> f64 {
    let mut rng = specsim_core::rng::stream(
        seed,
        "calibrate-acceptance",
        category.map_or(0, |c| c as u64 + 1),
    );
    let mut total = 0u64;
    for _ in 0..draws {
        let mut run = 0;
        while run < k && model.draw(run, category, &mut rng).accepted {
            run += 1;
        }
        total += run as u64 + 1;
    }
    total as f64 / draws.max(1) as f64
}

/// Fits the calibrated acceptance model (see the module docs). Categories with fewer than
/// `min_records` verified positions fall back to the overall fit.
pub fn fit_acceptance(m: &AcceptanceMeasurement, min_records: usize) -> Result<AcceptanceFit> {
    let all: Vec<&DraftRecord> = m.records.iter().collect();
    if all.is_empty() {
        return Err(CalibrateError::Fit {
            what: "acceptance".into(),
            msg: "no draft token was verified (prompts ended at once?)".into(),
        });
    }
    let (overall, overall_scale, overall_unscaled) = match_length(
        &fit_one("all", &all, m.k),
        m.mean_accepted_length(None),
        m.k,
    )?;
    let mut cats = BTreeMap::new();
    let mut scales = BTreeMap::new();
    for (ci, name) in m.categories.iter().enumerate() {
        let recs: Vec<&DraftRecord> = m.records(Some(ci)).collect();
        if recs.len() >= min_records {
            let (c, s, u) = match_length(
                &fit_one(name, &recs, m.k),
                m.mean_accepted_length(Some(ci)),
                m.k,
            )?;
            cats.insert(name.clone(), c);
            scales.insert(name.clone(), (s, u));
        }
    }
    let config = AcceptanceConfig::Calibrated {
        confidence_beta: overall.confidence_beta,
        curve: overall.curve.clone(),
        position_decay: overall.position_decay,
        categories: cats.clone(),
        position_alphas: None,
    };
    let built = config
        .build(&m.categories)
        .map_err(|msg| CalibrateError::Fit {
            what: "acceptance".into(),
            msg,
        })?;
    let default_only = AcceptanceConfig::Calibrated {
        confidence_beta: overall.confidence_beta,
        curve: overall.curve.clone(),
        position_decay: overall.position_decay,
        categories: BTreeMap::new(),
        position_alphas: None,
    }
    .build(&[])
    .map_err(|msg| CalibrateError::Fit {
        what: "acceptance".into(),
        msg,
    })?;
    let draws = 40_000;
    let report = |name: &str,
                  c: &CategoryAcceptanceConfig,
                  cat: Option<usize>,
                  pred: f64,
                  (curve_scale, unscaled): (f64, f64)| CategoryFit {
        name: name.to_string(),
        records: m.records(cat).count(),
        confidence_beta: c.confidence_beta,
        position_decay: c.position_decay,
        curve: c.curve.clone().unwrap_or_default(),
        per_position: m.per_position(cat).into_iter().map(|x| x.0).collect(),
        measured_mean_accepted_length: m.mean_accepted_length(cat),
        predicted_mean_accepted_length: pred,
        curve_scale,
        unscaled_mean_accepted_length: unscaled,
    };
    let mut categories = Vec::new();
    let mut weighted = 0.0;
    let total_steps: u64 = m.steps.iter().sum();
    for (ci, name) in m.categories.iter().enumerate() {
        let pred = predicted_length(
            built.as_ref(),
            Some(ci as specsim_core::workload::CategoryId),
            m.k,
            draws,
            7,
        );
        weighted += pred * m.steps[ci] as f64;
        if let Some(c) = cats.get(name) {
            let su = scales.get(name).copied().unwrap_or((1.0, f64::NAN));
            categories.push(report(name, c, Some(ci), pred, su));
        }
    }
    let overall_pred = predicted_length(default_only.as_ref(), None, m.k, draws, 7);
    Ok(AcceptanceFit {
        config,
        overall: report(
            "all",
            &overall,
            None,
            overall_pred,
            (overall_scale, overall_unscaled),
        ),
        categories,
        predicted_mean_accepted_length: if total_steps > 0 {
            weighted / total_steps as f64
        } else {
            overall_pred
        },
        measured_mean_accepted_length: m.mean_accepted_length(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records drawn from a known model: confidence uniform on a grid, accepted iff confidence > 0.5,
    /// so the fitted curve must step from 0 to 1 around 0.5.
    #[test]
    fn curve_and_lengths_from_synthetic_records() {
        let mut m = AcceptanceMeasurement {
            categories: vec!["a".into()],
            steps: vec![0],
            accepted: vec![0],
            k: 1,
            prompts: 1,
            ..Default::default()
        };
        for i in 0..1000 {
            let c = (i as f32 + 0.5) / 1000.0;
            let acc = c > 0.5;
            m.records.push(DraftRecord {
                category: 0,
                position: 0,
                confidence: c,
                accepted: acc,
            });
            m.steps[0] += 1;
            m.accepted[0] += u64::from(acc);
        }
        // k = 1: half the steps accept their one draft → 1.5 tokens per step.
        assert!((m.mean_accepted_length(None) - 1.5).abs() < 1e-12);
        let fit = fit_acceptance(&m, 100).unwrap();
        let curve = &fit.overall.curve;
        assert!(curve.first().unwrap()[1] < 0.01 && curve.last().unwrap()[1] > 0.99);
        // Uniform(0, 1) confidences: Beta(1, 1) by moments.
        let [a, b] = fit.overall.confidence_beta;
        assert!((a - 1.0).abs() < 0.05 && (b - 1.0).abs() < 0.05, "{a} {b}");
        // The model reproduces the measured length (curve is a step at 0.5, Beta(1,1) → P = 0.5).
        assert!((fit.predicted_mean_accepted_length - 1.5).abs() < 0.03);
    }

    #[test]
    fn rising_acceptance_by_position_is_matched_in_tokens_per_step() {
        // k = 2. Every step: position 0 accepted with confidence-independent rate 0.6 (records at
        // confidences spread over [0.5, 1)); position 1 (after an accepted 0) accepted at rate 0.9.
        // Measured tokens per step = 1 + 0.6 + 0.6·0.9 = 2.14; the pooled model alone would say more.
        let mut m = AcceptanceMeasurement {
            categories: vec!["a".into()],
            steps: vec![0],
            accepted: vec![0],
            k: 2,
            prompts: 1,
            ..Default::default()
        };
        for i in 0..1000usize {
            let conf = 0.5 + 0.5 * ((i * 37) % 1000) as f32 / 1000.0;
            let a0 = i % 10 < 6;
            m.records.push(DraftRecord {
                category: 0,
                position: 0,
                confidence: conf,
                accepted: a0,
            });
            let mut acc = u64::from(a0);
            if a0 {
                let a1 = (i / 10) % 10 < 9;
                m.records.push(DraftRecord {
                    category: 0,
                    position: 1,
                    confidence: conf,
                    accepted: a1,
                });
                acc += u64::from(a1);
            }
            m.steps[0] += 1;
            m.accepted[0] += acc;
        }
        let measured = m.mean_accepted_length(None);
        assert!((measured - 2.14).abs() < 0.01, "{measured}");
        let fit = fit_acceptance(&m, 100).unwrap();
        assert!(fit.overall.unscaled_mean_accepted_length > measured + 0.03);
        assert!(fit.overall.curve_scale < 1.0);
        let pred = fit.predicted_mean_accepted_length;
        assert!(
            (pred - measured).abs() / measured < 0.01,
            "{pred} vs {measured}"
        );
    }

    #[test]
    fn decay_follows_geometric_means() {
        // Mean confidence 0.8 at position 0 and 0.8·0.9^j after: δ = 0.9.
        let recs: Vec<DraftRecord> = (0..3)
            .flat_map(|j| {
                (0..50).map(move |_| DraftRecord {
                    category: 0,
                    position: j,
                    confidence: 0.8 * 0.9f32.powi(j as i32),
                    accepted: true,
                })
            })
            .collect();
        let refs: Vec<&DraftRecord> = recs.iter().collect();
        assert!((position_decay(&refs, 3) - 0.9).abs() < 1e-4);
    }
}
