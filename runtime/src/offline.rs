//! Offline generation: run a fixed set of requests through the engine core and the live backend to
//! completion, on the wall clock. Used by the real-model tests, the benchmark and calibration.
//!
//! All requests arrive at once; the engine's `max_num_seqs` is the concurrency (how many run in the batch
//! at a time, the rest wait in FCFS order). The engine is stepped with `now` read from a monotonic clock,
//! so its request records (first token, finish) are real latencies.

use std::collections::HashMap;
use std::time::Instant;

use specsim_core::engine::{Engine, FinishedRequest};
use specsim_core::workload::RequestSpec;
use specsim_core::CoreError;

use crate::live::LiveBackend;
use crate::sampling::SamplingParams;

/// One request.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct OfflineRun {
    /// Output tokens per request, in request order.
    pub outputs: Vec<Vec<u32>>,
    /// The engine's record per request, in request order.
    pub records: Vec<FinishedRequest>,
    /// Wall time of the whole run.
    pub wall_ns: u64,
    /// Engine iterations.
    pub steps: u64,
}

impl OfflineRun {
    /// Output tokens over all requests.
    pub fn output_tokens(&self) -> u64 {
        self.outputs.iter().map(|o| o.len() as u64).sum()
    }

    /// Output tokens per second of wall time.
    pub fn tokens_per_s(&self) -> f64 {
        self.output_tokens() as f64 / (self.wall_ns.max(1) as f64 * 1e-9)
    }

    /// Accepted over drafted tokens (0 when nothing was drafted).
    pub fn acceptance(&self) -> f64 {
        let drafted: u64 = self.records.iter().map(|r| r.drafted).sum();
        let accepted: u64 = self.records.iter().map(|r| r.accepted).sum();
        if drafted == 0 {
            0.0
        } else {
            accepted as f64 / drafted as f64
        }
    }

    /// Mean tokens emitted per verification step (1 without speculation).
    pub fn tokens_per_verify(&self) -> f64 {
        let steps: u64 = self.records.iter().map(|r| r.verify_steps as u64).sum();
        // The first token of each request comes from prefill, not verification.
        let tokens: u64 = self
            .output_tokens()
            .saturating_sub(self.records.len() as u64);
        tokens as f64 / steps.max(1) as f64
    }
}

/// Runs `requests` (ids `first_id..`) to completion. The backend must not hold those ids already.
pub fn run_offline(
    engine: &mut Engine,
    backend: &mut LiveBackend,
    requests: &[OfflineRequest],
    first_id: u64,
) -> Result<OfflineRun, CoreError> {
    let start = Instant::now();
    let err = |e: crate::RuntimeError| CoreError::Backend(e.to_string());
    for (i, r) in requests.iter().enumerate() {
        let id = first_id + i as u64;
        backend
            .register(id, r.prompt.clone(), r.sampling, r.ignore_eos)
            .map_err(err)?;
        let spec = RequestSpec {
            id,
            arrival_ns: 0,
            prompt_tokens: r.prompt.len() as u32,
            output_tokens: r.max_tokens,
            category: None,
            prefix: None,
        };
        engine.add_request(spec)?;
    }
    let mut records = HashMap::new();
    let mut steps = 0;
    while engine.has_work() {
        let now = start.elapsed().as_nanos() as u64;
        if engine.step(now, backend)?.is_none() {
            return Err(CoreError::Backend(
                "engine has work but made no step".into(),
            ));
        }
        steps += 1;
        for f in engine.drain_finished() {
            records.insert(f.spec.id, f);
        }
    }
    let wall_ns = start.elapsed().as_nanos() as u64;
    let mut outputs = Vec::with_capacity(requests.len());
    let mut recs = Vec::with_capacity(requests.len());
    for i in 0..requests.len() as u64 {
        let id = first_id + i;
        outputs.push(backend.remove(id).unwrap_or_default());
        recs.push(
            records
                .remove(&id)
                .ok_or_else(|| CoreError::Backend(format!("request {id} never finished")))?,
        );
    }
    Ok(OfflineRun {
        outputs,
        records: recs,
        wall_ns,
        steps,
    })
}

/// Median wall time of a forward of `batch` sequences, each with `context` cached tokens and `new`
/// new tokens (logits at every new token, as a verification asks), over `reps` repetitions after one
/// warm-up.
pub fn time_forward(
    model: &crate::model::Model,
    batch: usize,
    context: usize,
    new: usize,
    reps: usize,
) -> crate::Result<u64> {
    use crate::model::{ForwardItem, LogitRows};
    let vocab = model.config().vocab as u32;
    let tokens: Vec<u32> = (0..context.max(new) as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let mut caches: Vec<_> = (0..batch).map(|_| model.new_cache()).collect();
    if context > 0 {
        let mut items: Vec<ForwardItem> = caches
            .iter_mut()
            .map(|cache| ForwardItem {
                cache,
                tokens: &tokens[..context],
                logits: LogitRows::None,
            })
            .collect();
        model.forward(&mut items)?;
    }
    let mut times = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t = Instant::now();
        let mut items: Vec<ForwardItem> = caches
            .iter_mut()
            .map(|cache| ForwardItem {
                cache,
                tokens: &tokens[..new],
                logits: LogitRows::All,
            })
            .collect();
        model.forward(&mut items)?;
        if rep > 0 {
            times.push(t.elapsed().as_nanos() as u64);
        }
        for c in caches.iter_mut() {
            c.truncate(context)?;
        }
    }
    times.sort_unstable();
    Ok(times.get(times.len() / 2).copied().unwrap_or(0))
}

/// A linear cost model measured on the spot, for policies that predict step times when no calibrated
/// profile is at hand: target time = base + per token (from 1- and 5-token forwards at `context`),
/// draft time = base + per sequence (from 1- and 4-sequence single-token forwards).
pub fn measure_linear_cost(
    target: &crate::model::Model,
    draft: Option<&crate::model::Model>,
    context: usize,
    reps: usize,
) -> crate::Result<specsim_core::cost::FixedCost> {
    let mut timer = ContextTimer::new(target, context)?;
    timer.time(1)?;
    let (mut t1s, mut t5s) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        t1s.push(timer.time(1)?);
        t5s.push(timer.time(5)?);
    }
    t1s.sort_unstable();
    t5s.sort_unstable();
    let (t1, t5) = (t1s[t1s.len() / 2], t5s[t5s.len() / 2]);
    let per_token = t5.saturating_sub(t1) / 4;
    let (draft_base, draft_per_seq) = match draft {
        Some(d) => {
            let d1 = time_forward(d, 1, context, 1, reps)?;
            let d4 = time_forward(d, 4, context, 1, reps)?;
            let per_seq = d4.saturating_sub(d1) / 3;
            (d1.saturating_sub(per_seq), per_seq)
        }
        None => (0, 0),
    };
    Ok(specsim_core::cost::FixedCost {
        draft_base,
        draft_per_seq,
        target_base: t1.saturating_sub(per_token),
        target_per_token: per_token,
    })
}

/// Times forwards of a few new tokens on one sequence whose context is prefilled once, so that many
/// timings (e.g. alternating 1- and (k+1)-token forwards) do not each pay for a prefill.
pub struct ContextTimer<'m> {
    model: &'m crate::model::Model,
    cache: crate::model::KvCache,
    context: usize,
    tokens: Vec<u32>,
}

impl<'m> ContextTimer<'m> {
    /// Prefills `context` synthetic tokens.
    pub fn new(model: &'m crate::model::Model, context: usize) -> crate::Result<Self> {
        use crate::model::{ForwardItem, LogitRows};
        let vocab = model.config().vocab as u32;
        let tokens: Vec<u32> = (0..context.max(64) as u32)
            .map(|i| (i * 7919 + 13) % vocab)
            .collect();
        let mut cache = model.new_cache();
        if context > 0 {
            let item = ForwardItem {
                cache: &mut cache,
                tokens: &tokens[..context],
                logits: LogitRows::None,
            };
            model.forward(&mut [item])?;
        }
        Ok(Self {
            model,
            cache,
            context,
            tokens,
        })
    }

    /// Wall time of one forward of `new` tokens (logits at every one), after which the cache is rolled
    /// back to the context.
    pub fn time(&mut self, new: usize) -> crate::Result<u64> {
        use crate::model::{ForwardItem, LogitRows};
        let new = new.clamp(1, self.tokens.len());
        let t = Instant::now();
        let item = ForwardItem {
            cache: &mut self.cache,
            tokens: &self.tokens[..new],
            logits: LogitRows::All,
        };
        self.model.forward(&mut [item])?;
        let ns = t.elapsed().as_nanos() as u64;
        self.cache.truncate(self.context)?;
        Ok(ns)
    }
}
