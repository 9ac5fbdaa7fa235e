//! A draft model: one ragged forward proposes the next token of every drafting sequence.
//!
//! Each sequence brings its draft-model KV cache and the tokens the draft has not seen yet: at the first
//! draft position of a step these are the tokens emitted since the draft last ran (one or two in steady
//! state, the whole prompt the first time: the draft's prefill happens lazily, inside the draft
//! forward), later only the previous draft token. The forward returns the last row of each sequence, from
//! which the token is chosen with the request's sampler.

use crate::error::{Result, RuntimeError};
use crate::model::{ForwardItem, KvCache, LogitRows, Model};
use crate::sampling::{argmax, sample, Sampler};

use super::DraftToken;

/// One sequence's input to a draft forward.
#[derive(Debug)]
pub struct DraftInput<'a> {
    /// The sequence's draft-model cache.
    pub cache: &'a mut KvCache,
    /// Tokens not yet in the cache, ending with the token to continue from (at least one).
    pub feed: &'a [u32],
    /// The request's sampler (greedy or sampling, with its own generator).
    pub sampler: &'a mut Sampler,
}

/// A draft model.
#[derive(Debug, Clone)]
pub struct ModelDrafter {
    model: std::sync::Arc<Model>,
}

impl ModelDrafter {
    /// Wraps a loaded model.
    pub fn new(model: std::sync::Arc<Model>) -> Self {
        Self { model }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Proposes one token for every input in one forward.
    pub fn propose(&self, inputs: &mut [DraftInput]) -> Result<Vec<DraftToken>> {
        let logits = {
            let mut items: Vec<ForwardItem> = inputs
                .iter_mut()
                .map(|i| ForwardItem {
                    cache: &mut *i.cache,
                    tokens: i.feed,
                    logits: LogitRows::Last,
                })
                .collect();
            self.model.forward(&mut items)?
        };
        let mut out = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter_mut().enumerate() {
            let row = logits.last(i).ok_or_else(|| {
                RuntimeError::InvalidInput("draft forward returned no row".into())
            })?;
            out.push(choose(row, input.sampler)?);
        }
        Ok(out)
    }
}

/// Picks a draft token from draft logits with the request's sampler.
pub fn choose(row: &[f32], sampler: &mut Sampler) -> Result<DraftToken> {
    if sampler.params().is_greedy() {
        let token = argmax(row)
            .ok_or_else(|| RuntimeError::InvalidInput("draft row has no finite logit".into()))?;
        // softmax(row)[token] = 1 / Σ exp(row − row[token]) when token is the argmax.
        let top = row[token as usize] as f64;
        let z: f64 = row
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| (x as f64 - top).exp())
            .sum();
        let confidence = (1.0 / z) as f32;
        return Ok(DraftToken {
            token,
            confidence,
            dist: None,
        });
    }
    let q = sampler.distribution(row)?;
    let token = sample(&q, sampler.rng())
        .ok_or_else(|| RuntimeError::InvalidInput("empty draft distribution".into()))?;
    Ok(DraftToken {
        token,
        confidence: q[token as usize],
        dist: Some(q),
    })
}
