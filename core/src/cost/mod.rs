//! Cost models: how long one draft forward or one target forward takes for a batch of a given shape.
//!
//! A cost model only *evaluates* (the calibrate crate fits); it is consulted both by the simulated backend
//! (as the truth of the simulated hardware) and by policies (as their prediction of step time). Three
//! implementations: [`roofline::Roofline`] from model and hardware specifications, [`profile::ProfileCost`]
//! interpolating a measured table, and [`linear::LinearCost`] (`a + b·tokens + c·kv_tokens + d·batch`).

pub mod catalog;
pub mod linear;
pub mod profile;
pub mod roofline;

use crate::time::Nanos;

/// The shape of one forward pass over a batch of sequences, which is all a cost model sees.
///
/// A forward processes `new_tokens` tokens in total over `seqs` sequences, each attending to its own
/// past; `context_tokens` is the sum over sequences of their context length *after* the step (the KV
/// the attention reads). `prefill_tokens` of the new tokens belong to prompt prefill (chunks), the rest
/// to decode/verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// Sequences in the forward.
    pub seqs: u32,
    /// New tokens processed (Σ per-sequence new tokens).
    pub new_tokens: u32,
    /// Of `new_tokens`, how many are prompt prefill.
    pub prefill_tokens: u32,
    /// Σ over sequences of the KV length attended (context after the step).
    pub context_tokens: u64,
    /// Positions whose logits are needed (verification needs all; prefill only the last).
    pub logit_positions: u32,
    /// Σ over new tokens of the number of KV entries each attends to (attention work).
    pub attended: u64,
}

impl BatchShape {
    /// A decode/verify forward: `seqs` sequences with `tokens_per_seq` new tokens each and mean context
    /// `mean_context` (after the step).
    pub fn uniform(seqs: u32, tokens_per_seq: u32, mean_context: u64) -> Self {
        let n = tokens_per_seq as u64;
        let past = mean_context.saturating_sub(n);
        BatchShape {
            seqs,
            new_tokens: seqs * tokens_per_seq,
            prefill_tokens: 0,
            context_tokens: seqs as u64 * mean_context,
            logit_positions: seqs * tokens_per_seq,
            attended: seqs as u64 * (n * past + n * (n + 1) / 2),
        }
    }

    /// One sequence with `past` tokens already in KV processing `new` tokens (causally), `logits` of
    /// which need output logits; `prefill` marks the new tokens as prompt prefill.
    pub fn one(past: u32, new: u32, prefill: bool, logits: u32) -> Self {
        let (p, n) = (past as u64, new as u64);
        BatchShape {
            seqs: 1,
            new_tokens: new,
            prefill_tokens: if prefill { new } else { 0 },
            context_tokens: p + n,
            logit_positions: logits,
            attended: n * p + n * (n + 1) / 2,
        }
    }

    /// A prefill of one prompt of `tokens` tokens.
    pub fn prefill(tokens: u32) -> Self {
        Self::one(0, tokens, true, 1)
    }

    /// Adds another part (e.g. prefill chunks mixed into a verification batch).
    pub fn merge(self, o: BatchShape) -> Self {
        BatchShape {
            seqs: self.seqs + o.seqs,
            new_tokens: self.new_tokens + o.new_tokens,
            prefill_tokens: self.prefill_tokens + o.prefill_tokens,
            context_tokens: self.context_tokens + o.context_tokens,
            logit_positions: self.logit_positions + o.logit_positions,
            attended: self.attended + o.attended,
        }
    }

    /// Takes away a part that was merged in (the inverse of [`BatchShape::merge`]; every field is a
    /// count, so `a.merge(b).without(b) == a` exactly).
    pub fn without(self, o: BatchShape) -> Self {
        BatchShape {
            seqs: self.seqs - o.seqs,
            new_tokens: self.new_tokens - o.new_tokens,
            prefill_tokens: self.prefill_tokens - o.prefill_tokens,
            context_tokens: self.context_tokens - o.context_tokens,
            logit_positions: self.logit_positions - o.logit_positions,
            attended: self.attended - o.attended,
        }
    }

    /// Mean context length per sequence (0 for an empty batch).
    pub fn mean_context(&self) -> f64 {
        if self.seqs == 0 {
            0.0
        } else {
            self.context_tokens as f64 / self.seqs as f64
        }
    }
}

/// Step-time model of a serving replica: a draft model and a target model.
///
/// Both methods include the fixed per-forward overhead (launch, scheduling, sampling) of that model, so
/// a speculative step of `k` draft positions costs `Σ draft_step + target_step`.
pub trait CostModel: Send + Sync {
    /// Time of one draft-model forward (one draft position for the sequences in `shape`).
    fn draft_step(&self, shape: &BatchShape) -> Nanos;
    /// Time of one target-model forward: verification, plain decode, prefill or a mix.
    fn target_step(&self, shape: &BatchShape) -> Nanos;
    /// A short human-readable description (kind and key parameters), written to summaries.
    fn describe(&self) -> String;
}

/// A cost model for tests and hand-worked cases: constant plus per-token and per-sequence terms.
///
/// `draft = d0 + d_seq·seqs`, `target = t0 + t_tok·new_tokens`. Independent of context, so closed forms
/// (M/D/1 waiting, hand-worked timelines) are easy to derive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedCost {
    /// Draft forward fixed time.
    pub draft_base: Nanos,
    /// Draft forward time per sequence.
    pub draft_per_seq: Nanos,
    /// Target forward fixed time.
    pub target_base: Nanos,
    /// Target forward time per new token.
    pub target_per_token: Nanos,
}

impl CostModel for FixedCost {
    fn draft_step(&self, s: &BatchShape) -> Nanos {
        self.draft_base + self.draft_per_seq * s.seqs as Nanos
    }
    fn target_step(&self, s: &BatchShape) -> Nanos {
        self.target_base + self.target_per_token * s.new_tokens as Nanos
    }
    fn describe(&self) -> String {
        format!(
            "fixed(target {}+{}/tok ns, draft {}+{}/seq ns)",
            self.target_base, self.target_per_token, self.draft_base, self.draft_per_seq
        )
    }
}
