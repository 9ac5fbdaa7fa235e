//! The seam between the engine core and whatever executes forwards: the simulator's cost and acceptance
//! models, or real models on candle.
//!
//! The engine decides *what* runs (which sequences, how many draft tokens, which prefill chunks); the
//! backend runs it and says how long it took and what came out. Everything the engine knows about tokens
//! is counts; a live backend keeps the token ids itself, keyed by [`SeqId`].

use crate::time::Nanos;
use crate::workload::CategoryId;
use crate::CoreError;

/// Identifies a sequence to the backend: the request id.
pub type SeqId = u64;

/// One sequence's share of a draft forward: propose the token at draft position `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftItem {
    /// The sequence.
    pub seq: SeqId,
    /// Tokens in the target KV before this step (the draft may lag and catch up inside the backend).
    pub context_tokens: u32,
    /// Draft position within this step, 0-based.
    pub position: u32,
    /// The request's category, for category-specific acceptance.
    pub category: Option<CategoryId>,
}

/// Result of one draft forward.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DraftResult {
    /// Per item, the draft's probability of the token it proposed.
    pub confidences: Vec<f32>,
    /// How long the forward took.
    pub elapsed_ns: Nanos,
}

/// What a sequence contributes to a target forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetWork {
    /// Prompt (or recompute) prefill of tokens `start..start + len` of the sequence's token history
    /// (prompt followed by tokens generated before a preemption). The last chunk produces a token.
    Prefill {
        /// First position of the chunk.
        start: u32,
        /// Chunk length.
        len: u32,
        /// Whether this chunk completes the prefill (and so samples the next token).
        last: bool,
    },
    /// Decode: feed the last emitted token plus `drafted` draft tokens, verify the drafts.
    Verify {
        /// Draft tokens to verify (0 is a plain decode step).
        drafted: u32,
    },
}

/// One sequence's share of a target forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetItem {
    /// The sequence.
    pub seq: SeqId,
    /// Tokens in the target KV before this forward.
    pub context_tokens: u32,
    /// Prefill or verification.
    pub work: TargetWork,
    /// The request's category.
    pub category: Option<CategoryId>,
}

/// What a sequence got out of a target forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetOutcome {
    /// Draft tokens accepted (0 for prefill).
    pub accepted: u32,
    /// Tokens emitted: accepted + 1 for a verification, 1 for a last prefill chunk, 0 for other chunks.
    pub emitted: u32,
    /// The backend ended the sequence (end-of-sequence token, stop string); the simulator never does.
    pub stop: bool,
}

/// Result of one target forward.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetResult {
    /// Per item, in order.
    pub outcomes: Vec<TargetOutcome>,
    /// How long the forward took (including sampling and verification).
    pub elapsed_ns: Nanos,
}

/// Executes the engine's forwards. Implemented by the simulator's `SimBackend` and the runtime's live
/// backend. Calls for one step come in order: zero or more [`Backend::draft`] calls (one per draft
/// position), then one [`Backend::target`] call.
pub trait Backend {
    /// One draft forward: one token for each item.
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError>;
    /// One target forward over prefill chunks and verifications. `drafted` draft tokens of a verify item
    /// are the first `drafted` tokens the backend drafted for it this step (the engine may have trimmed
    /// the tail); the backend discards the rest.
    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError>;
    /// The sequence left the engine (finished, or preempted for recompute): drop its state.
    fn release(&mut self, seq: SeqId);
    /// Prefix caching: the engine found the first `tokens` tokens of sequence `seq`'s prompt in cached
    /// KV blocks and will not prefill them (its first prefill chunk starts at `tokens`). A backend that
    /// can reuse those blocks' KV takes them (target and draft KV live in the same blocks, as in vLLM
    /// V1); one that cannot refuses — the default — and the engine's step fails with that error, so no
    /// hit is ever booked that the backend did not take.
    fn reuse_prefix(&mut self, seq: SeqId, tokens: u32) -> Result<(), CoreError> {
        Err(CoreError::Config(format!(
            "engine.prefix_caching: this backend cannot reuse cached KV blocks (request {seq} would \
             skip {tokens} prompt tokens); set engine.prefix_caching = false"
        )))
    }
    /// Oracle support: how many of the next `k_max` draft tokens the target would accept for each
    /// sequence, without consuming anything. `None` where outcomes cannot be known in advance (live).
    fn lookahead(&mut self, _items: &[DraftItem], _k_max: u32) -> Option<Vec<u32>> {
        None
    }
}
