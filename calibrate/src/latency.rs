//! Latency profiling on the runtime's own forwards.
//!
//! Each grid point is timed on exactly the work the live backend (`specsim_runtime::live`) does for
//! that step, through the same functions:
//!
//! - **draft** `(batch, context)`: one ragged draft-model forward feeding one token per sequence
//!   (`LogitRows::Last`), then the drafter's token choice and confidence
//!   ([`specsim_runtime::drafter::model::choose`]) per sequence;
//! - **verify** `(batch, tokens_per_seq, context)`: one ragged target forward of `tokens_per_seq` new
//!   tokens per sequence with logits at every position (`LogitRows::All`), then greedy verification
//!   ([`specsim_runtime::verify::verify_greedy`]) per sequence (`tokens_per_seq = 1` is a plain decode);
//! - **prefill** `tokens`: one sequence's whole prompt from an empty cache, logits of the last token and
//!   its argmax.
//!
//! `context` is the KV length of every sequence *after* the step, as the simulator's
//! [`BatchShape::mean_context`] counts it. Caches are filled once per context level with fixed token
//! ids and **truncated back** after every repetition (the runtime's KV rollback), so each repetition
//! sees exactly the same shape. Each point runs `warmup` untimed repetitions, then `reps` timed ones;
//! the table holds the median, and the spread (10th–90th percentile) is reported.
//!
//! The sampling/verification share of each point is timed apart from the forward and reported
//! separately; the tables hold the sum, because that is what one backend call costs. The engine's
//! own scheduling time per iteration — outside every backend call — is measured by
//! [`scheduling_overhead`] with a backend that returns instantly, and becomes the profile's
//! `overhead.step_ns`.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use specsim_core::cost::{BatchShape, FixedCost};
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, Engine, EngineConfig, TargetItem, TargetOutcome, TargetResult,
    TargetWork,
};
use specsim_core::policy::PolicyConfig;
use specsim_core::workload::RequestSpec;
use specsim_runtime::drafter::model::choose;
use specsim_runtime::model::{ForwardItem, KvCache, LogitRows, Logits, Model};
use specsim_runtime::sampling::{argmax, Sampler, SamplingParams};
use specsim_runtime::verify::verify_greedy;

use crate::error::{CalibrateError, Result};
use crate::stats::Summary;

/// A draft grid point: `(batch, context)`.
pub type DraftPoint = (u32, u32);
/// A verification grid point: `(batch, tokens_per_seq, context)`.
pub type VerifyPoint = (u32, u32, u32);

/// The measurement grid and repetition counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    /// Draft batch sizes, ascending.
    pub draft_batch: Vec<u32>,
    /// Draft contexts (KV length after the step), ascending.
    pub draft_context: Vec<u32>,
    /// Verification batch sizes, ascending.
    pub verify_batch: Vec<u32>,
    /// New tokens per sequence in a verification (1 = plain decode, k + 1 = k drafts), ascending.
    pub tokens_per_seq: Vec<u32>,
    /// Verification contexts (KV length after the step), ascending.
    pub verify_context: Vec<u32>,
    /// Prefill lengths, ascending.
    pub prefill_tokens: Vec<u32>,
    /// Untimed repetitions before timing a point.
    pub warmup: usize,
    /// Timed repetitions per point.
    pub reps: usize,
}

fn tokens_axis(k_max: u32, quick: bool) -> Vec<u32> {
    let mut v: Vec<u32> = if quick {
        vec![1, 2, 3, k_max + 1]
    } else {
        (1..=k_max + 1).collect()
    };
    v.retain(|&t| t <= k_max + 1);
    v.sort_unstable();
    v.dedup();
    v
}

impl Grid {
    /// The small grid of `--quick` (a few minutes on two cores for a 0.5B/1.5B pair).
    pub fn quick(k_max: u32) -> Grid {
        Grid {
            draft_batch: vec![1, 2, 4],
            draft_context: vec![64, 256],
            verify_batch: vec![1, 2, 4],
            tokens_per_seq: tokens_axis(k_max, true),
            verify_context: vec![64, 256],
            // 128 as well: short-request workloads (the fidelity study's Azure prompts) sit there, and
            // a fourth point makes the prefill fit's leave-one-out check meaningful.
            prefill_tokens: vec![16, 64, 128, 256],
            warmup: 1,
            reps: 5,
        }
    }

    /// The full grid.
    pub fn full(k_max: u32) -> Grid {
        Grid {
            draft_batch: vec![1, 2, 4, 8],
            draft_context: vec![64, 256, 1024],
            verify_batch: vec![1, 2, 4, 8],
            tokens_per_seq: tokens_axis(k_max, false),
            verify_context: vec![64, 256, 1024],
            prefill_tokens: vec![16, 64, 128, 256, 512, 1024],
            warmup: 2,
            reps: 9,
        }
    }

    /// Checks axes are non-empty, ascending and positive, and that contexts fit `max_positions`.
    pub fn validate(&self, max_positions: usize) -> Result<()> {
        let axes: [(&str, &Vec<u32>); 6] = [
            ("draft batch", &self.draft_batch),
            ("draft context", &self.draft_context),
            ("verify batch", &self.verify_batch),
            ("tokens per sequence", &self.tokens_per_seq),
            ("verify context", &self.verify_context),
            ("prefill tokens", &self.prefill_tokens),
        ];
        for (name, a) in axes {
            if a.is_empty() || a[0] == 0 || a.windows(2).any(|w| w[0] >= w[1]) {
                return Err(CalibrateError::Config(format!(
                    "{name} axis {a:?} must be non-empty, positive and strictly ascending"
                )));
            }
        }
        if self.reps == 0 {
            return Err(CalibrateError::Config("reps must be at least 1".into()));
        }
        let t_max = self.tokens_per_seq.last().copied().unwrap_or(1);
        for &c in self.draft_context.iter().chain(&self.verify_context) {
            if c < t_max.max(2) {
                return Err(CalibrateError::Config(format!(
                    "context {c} is shorter than {t_max} new tokens plus one"
                )));
            }
        }
        let longest = self
            .draft_context
            .iter()
            .chain(&self.verify_context)
            .chain(&self.prefill_tokens)
            .copied()
            .max()
            .unwrap_or(0) as usize;
        if longest > max_positions {
            return Err(CalibrateError::Config(format!(
                "grid context {longest} exceeds the models' {max_positions} positions"
            )));
        }
        Ok(())
    }

    /// Off-grid points to check the profile's predictions on: every combination of grid values and
    /// midpoints between them that is not itself a grid point, thinned evenly to at most `max`. Returned
    /// as `(batch, context)` for drafts and `(batch, tokens_per_seq, context)` for verification.
    pub fn held_out(&self, max: usize) -> (Vec<DraftPoint>, Vec<VerifyPoint>) {
        let with_mids = |a: &[u32]| -> Vec<u32> {
            let mut v = a.to_vec();
            v.extend(
                a.windows(2)
                    .filter(|w| w[1] - w[0] >= 2)
                    .map(|w| (w[0] + w[1]) / 2),
            );
            v.sort_unstable();
            v
        };
        let mut draft = Vec::new();
        for &b in &with_mids(&self.draft_batch) {
            for &c in &with_mids(&self.draft_context) {
                if !(self.draft_batch.contains(&b) && self.draft_context.contains(&c)) {
                    draft.push((b, c));
                }
            }
        }
        let mut verify = Vec::new();
        for &b in &with_mids(&self.verify_batch) {
            for &t in &with_mids(&self.tokens_per_seq) {
                for &c in &with_mids(&self.verify_context) {
                    if !(self.verify_batch.contains(&b)
                        && self.tokens_per_seq.contains(&t)
                        && self.verify_context.contains(&c))
                    {
                        verify.push((b, t, c));
                    }
                }
            }
        }
        (thin(draft, max / 2), thin(verify, max))
    }

    /// Timed points in the grid (draft + verify + target and draft prefill), for progress totals.
    pub fn points(&self) -> usize {
        self.draft_batch.len() * self.draft_context.len()
            + self.verify_batch.len() * self.tokens_per_seq.len() * self.verify_context.len()
            + 2 * self.prefill_tokens.len()
    }
}

/// At most `max` elements of `v`, evenly spaced.
fn thin<T: Copy>(v: Vec<T>, max: usize) -> Vec<T> {
    if v.len() <= max {
        return v;
    }
    (0..max).map(|i| v[i * v.len() / max]).collect()
}

/// One measured point: total time (the table value), and the sampling/verification part of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    /// Forward plus sampling/verification, nanoseconds.
    pub total: Summary,
    /// Median of the sampling/verification part alone, nanoseconds.
    pub sampling_median: f64,
}

/// Times `f` (which returns `(forward_ns, sampling_ns)`) after `warmup` untimed calls.
fn measure(
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<(f64, f64)>,
) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut totals = Vec::with_capacity(reps);
    let mut samp = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (a, b) = f()?;
        totals.push(a + b);
        samp.push(b);
    }
    let total = Summary::of(&totals)
        .ok_or_else(|| CalibrateError::Config("no timed repetitions".into()))?;
    Ok(Timing {
        total,
        sampling_median: crate::stats::median(&samp),
    })
}

fn ns_since(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64
}

/// Fixed, non-special token ids used to fill caches and feed forwards.
fn filler(vocab: usize, n: usize, salt: usize) -> Vec<u32> {
    let span = vocab.clamp(1, 1000);
    (0..n)
        .map(|i| ((i * 31 + salt * 7 + 11) % span) as u32)
        .collect()
}

/// `n` KV caches of one model, grown on demand with filler tokens.
pub struct CachePool {
    model: Arc<Model>,
    caches: Vec<KvCache>,
}

impl CachePool {
    /// `n` empty caches for `model`.
    pub fn new(model: Arc<Model>, n: usize) -> Self {
        let caches = (0..n).map(|_| model.new_cache()).collect();
        CachePool { model, caches }
    }

    /// Makes the first `n` caches exactly `len` tokens long (truncating or extending with filler in
    /// chunks of 256 tokens per sequence).
    pub fn set_len(&mut self, n: usize, len: usize) -> Result<()> {
        let vocab = self.model.config().vocab;
        for c in self.caches.iter_mut().take(n) {
            if c.len() > len {
                c.truncate(len)?;
            }
        }
        loop {
            let feeds: Vec<Vec<u32>> = self
                .caches
                .iter()
                .take(n)
                .enumerate()
                .map(|(i, c)| filler(vocab, (len - c.len().min(len)).min(256), c.len() + i))
                .collect();
            if feeds.iter().all(Vec::is_empty) {
                return Ok(());
            }
            let mut items: Vec<ForwardItem> = self
                .caches
                .iter_mut()
                .zip(&feeds)
                .filter(|(_, f)| !f.is_empty())
                .map(|(cache, f)| ForwardItem {
                    cache,
                    tokens: f,
                    logits: LogitRows::None,
                })
                .collect();
            self.model.forward(&mut items)?;
        }
    }
}

/// One ragged forward feeding `feeds[i]` to `caches[i]` (as many sequences as there are feeds).
fn forward_feeds(
    model: &Model,
    caches: &mut [KvCache],
    feeds: &[Vec<u32>],
    rows: LogitRows,
) -> Result<Logits> {
    let mut items: Vec<ForwardItem> = caches
        .iter_mut()
        .zip(feeds)
        .map(|(cache, f)| ForwardItem {
            cache,
            tokens: f,
            logits: rows,
        })
        .collect();
    Ok(model.forward(&mut items)?)
}

/// Times one draft step of `batch` sequences at `context` (see the module docs).
pub fn time_draft(pool: &mut CachePool, batch: u32, context: u32, grid: &Grid) -> Result<Timing> {
    let (b, c) = (batch as usize, context as usize);
    pool.set_len(b, c - 1)?;
    let vocab = pool.model.config().vocab;
    let feeds: Vec<Vec<u32>> = (0..b).map(|i| filler(vocab, 1, c + i)).collect();
    let mut sampler = Sampler::new(SamplingParams::greedy())?;
    let model = Arc::clone(&pool.model);
    measure(grid.warmup, grid.reps, || {
        let t0 = Instant::now();
        let logits = forward_feeds(&model, &mut pool.caches, &feeds, LogitRows::Last)?;
        let fwd = ns_since(t0);
        let t1 = Instant::now();
        for i in 0..b {
            if let Some(row) = logits.last(i) {
                std::hint::black_box(choose(row, &mut sampler)?);
            }
        }
        let samp = ns_since(t1);
        for cache in pool.caches.iter_mut().take(b) {
            cache.truncate(c - 1)?;
        }
        Ok((fwd, samp))
    })
}

/// Times one verification of `batch` sequences with `tokens` new tokens each at `context`.
pub fn time_verify(
    pool: &mut CachePool,
    batch: u32,
    tokens: u32,
    context: u32,
    grid: &Grid,
) -> Result<Timing> {
    let (b, t, c) = (batch as usize, tokens as usize, context as usize);
    pool.set_len(b, c - t)?;
    let vocab = pool.model.config().vocab;
    let feeds: Vec<Vec<u32>> = (0..b).map(|i| filler(vocab, t, c + 3 * i)).collect();
    let model = Arc::clone(&pool.model);
    measure(grid.warmup, grid.reps, || {
        let t0 = Instant::now();
        let logits = forward_feeds(&model, &mut pool.caches, &feeds, LogitRows::All)?;
        let fwd = ns_since(t0);
        let t1 = Instant::now();
        for (i, feed) in feeds.iter().enumerate() {
            let rows: Vec<&[f32]> = (0..t).filter_map(|j| logits.row(i, j)).collect();
            std::hint::black_box(verify_greedy(&feed[1..], &rows)?);
        }
        let samp = ns_since(t1);
        for cache in pool.caches.iter_mut().take(b) {
            cache.truncate(c - t)?;
        }
        Ok((fwd, samp))
    })
}

/// Times one prefill of `tokens` prompt tokens from an empty cache.
pub fn time_prefill(model: &Arc<Model>, tokens: u32, grid: &Grid) -> Result<Timing> {
    let feed = filler(model.config().vocab, tokens as usize, 5);
    let mut cache = model.new_cache();
    // Prefill is long: fewer repetitions for long prompts keep the grid's cost flat.
    let reps = if tokens >= 512 {
        grid.reps.div_ceil(2)
    } else {
        grid.reps
    };
    measure(grid.warmup.min(1), reps, || {
        cache.clear();
        let t0 = Instant::now();
        let logits = model.forward(&mut [ForwardItem {
            cache: &mut cache,
            tokens: &feed,
            logits: LogitRows::Last,
        }])?;
        let fwd = ns_since(t0);
        let t1 = Instant::now();
        std::hint::black_box(logits.last(0).and_then(argmax));
        Ok((fwd, ns_since(t1)))
    })
}

/// A backend that does no work: every draft is accepted at once. Timing the engine against it leaves
/// only the engine core's own per-iteration cost (admission, KV accounting, policy calls).
struct NullBackend;

impl Backend for NullBackend {
    fn draft(
        &mut self,
        items: &[DraftItem],
    ) -> std::result::Result<DraftResult, specsim_core::CoreError> {
        Ok(DraftResult {
            confidences: vec![0.9; items.len()],
            elapsed_ns: 0,
        })
    }
    fn target(
        &mut self,
        items: &[TargetItem],
    ) -> std::result::Result<TargetResult, specsim_core::CoreError> {
        let outcomes = items
            .iter()
            .map(|i| match i.work {
                TargetWork::Prefill { last, .. } => TargetOutcome {
                    accepted: 0,
                    emitted: u32::from(last),
                    stop: false,
                },
                TargetWork::Verify { drafted } => TargetOutcome {
                    accepted: drafted,
                    emitted: drafted + 1,
                    stop: false,
                },
            })
            .collect();
        Ok(TargetResult {
            outcomes,
            elapsed_ns: 0,
        })
    }
    fn release(&mut self, _seq: u64) {}
}

/// Median wall time of one engine iteration outside the backend (nanoseconds): `batch` requests decode
/// with a static speculation length `k` against a backend that returns instantly.
pub fn scheduling_overhead(batch: u32, k: u32, steps: usize) -> Result<Summary> {
    let cfg = EngineConfig {
        kv_blocks: Some(1 << 18),
        ..EngineConfig::default()
    };
    let cost = Arc::new(FixedCost {
        draft_base: 1,
        draft_per_seq: 0,
        target_base: 1,
        target_per_token: 0,
    });
    let mut engine = Engine::new(cfg, PolicyConfig::Static { k }.build(), cost)?;
    for id in 0..batch as u64 {
        engine.add_request(RequestSpec {
            id,
            arrival_ns: 0,
            prompt_tokens: 16,
            output_tokens: 1 << 18,
            category: None,
            prefix: None,
        })?;
    }
    let mut backend = NullBackend;
    let mut times = Vec::with_capacity(steps);
    for i in 0..steps + 10 {
        let t0 = Instant::now();
        engine.step(0, &mut backend)?;
        if i >= 10 {
            times.push(ns_since(t0));
        }
    }
    Summary::of(&times).ok_or_else(|| CalibrateError::Config("no engine steps timed".into()))
}

/// The batch shape of a draft grid point (for fits and predictions).
pub fn draft_shape(batch: u32, context: u32) -> BatchShape {
    BatchShape::uniform(batch, 1, context as u64)
}

/// The batch shape of a verification grid point.
pub fn verify_shape(batch: u32, tokens: u32, context: u32) -> BatchShape {
    BatchShape::uniform(batch, tokens, context as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_grid_validates_and_has_off_grid_held_out_points() {
        let g = Grid::quick(4);
        assert_eq!(g.tokens_per_seq, vec![1, 2, 3, 5]);
        g.validate(512).unwrap();
        assert!(g.validate(128).is_err());
        // Off-grid draft points: batch 3 (between 2 and 4) at every context, and context 160 (between 64
        // and 256) at every batch: 4 × 3 combinations minus the 6 grid points.
        let (d, v) = g.held_out(100);
        assert_eq!(d.len(), 6);
        assert!(d.contains(&(3, 64)) && d.contains(&(1, 160)) && !d.contains(&(2, 64)));
        // Verify: 4 batches × 5 token counts × 3 contexts − 3 × 4 × 2 grid points.
        assert_eq!(v.len(), 60 - 24);
        assert_eq!(g.held_out(8).1.len(), 8);
    }

    #[test]
    fn engine_overhead_is_measured_without_panicking() {
        let s = scheduling_overhead(4, 3, 20).unwrap();
        assert_eq!(s.n, 20);
        assert!(s.median >= 0.0);
    }
}
