//! The simulated backend: step times from a [`CostModel`], draft confidences and acceptance from an
//! [`AcceptanceModel`], on a virtual clock (the engine adds the returned durations).

use crate::acceptance::{AcceptanceModel, DraftDraw};
use crate::cost::{BatchShape, CostModel};
use crate::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork,
};
use crate::rng::SimRng;
use crate::time::Nanos;
use crate::SimError;
use std::sync::Arc;

/// The shape of one draft forward over `items` when every sequence feeds one token (each at its
/// context plus the drafts already proposed): a drafter without a KV cache to keep in step, or a draft
/// model whose cache is in step. [`DraftKvMirror::draft_shape`] adds the catch-up of a draft model.
pub fn draft_shape(items: &[DraftItem]) -> BatchShape {
    items.iter().fold(BatchShape::default(), |shape, it| {
        shape.merge(BatchShape::one(
            it.context_tokens + it.position,
            1,
            false,
            1,
        ))
    })
}

/// The shape of one target forward over `items` (prefill chunks and verifications).
pub fn target_shape(items: &[TargetItem]) -> BatchShape {
    items.iter().fold(BatchShape::default(), |shape, it| {
        shape.merge(match it.work {
            TargetWork::Prefill { start, len, last } => {
                BatchShape::one(start, len, true, last as u32)
            }
            TargetWork::Verify { drafted } => {
                BatchShape::one(it.context_tokens, drafted + 1, false, drafted + 1)
            }
        })
    })
}

/// What `cost` predicts for a target forward over `items`: the simulated backend's step time, and the
/// yardstick the live engine's measured target forwards are compared with.
pub fn predicted_target_ns(cost: &dyn CostModel, items: &[TargetItem]) -> Nanos {
    cost.target_step(&target_shape(items))
}

/// How many tokens each sequence has in the draft model's KV cache, kept exactly as the runtime's live
/// backend keeps it, so that draft forwards have the live engine's shapes.
///
/// The draft model is lazy: it sees a sequence's tokens only when the sequence drafts. The first draft
/// position of a step feeds every token the draft has not seen yet — the whole prompt (and the first
/// token) the first time, then the one or two tokens the last verification emitted, or more after
/// steps in which the sequence did not draft (an adaptive policy's k = 0). Later positions feed the
/// previous draft token. Verification truncates the cache to the accepted drafts that were fed; a
/// release (finish, preemption) empties it. Sequence ids index a dense vector (workload ids are dense;
/// the live engine numbers requests from 0).
#[derive(Debug, Clone, Default)]
pub struct DraftKvMirror {
    /// Tokens in the draft KV cache, per sequence.
    kv: Vec<u32>,
    /// Draft tokens fed into the cache this step (every position after the first feeds one).
    fed: Vec<u32>,
}

impl DraftKvMirror {
    fn slot(&mut self, seq: SeqId) -> usize {
        let i = seq as usize;
        if i >= self.kv.len() {
            self.kv.resize(i + 1, 0);
            self.fed.resize(i + 1, 0);
        }
        i
    }

    /// The shape of the draft forward over `items`, catch-up included, and the caches advanced past it.
    pub fn draft_shape(&mut self, items: &[DraftItem]) -> BatchShape {
        let mut shape = BatchShape::default();
        for it in items {
            let i = self.slot(it.seq);
            let ctx = it.context_tokens;
            let part = if it.position == 0 {
                let seen = self.kv[i].min(ctx);
                self.kv[i] = ctx + 1;
                self.fed[i] = 0;
                BatchShape::one(seen, ctx + 1 - seen, false, 1)
            } else {
                self.kv[i] += 1;
                self.fed[i] += 1;
                BatchShape::one(ctx + it.position, 1, false, 1)
            };
            shape = shape.merge(part);
        }
        shape
    }

    /// A verification of a sequence at target context `context_tokens` accepted `accepted` drafts.
    pub fn verified(&mut self, seq: SeqId, context_tokens: u32, accepted: u32) {
        let i = self.slot(seq);
        let valid = context_tokens + 1 + accepted.min(self.fed[i]);
        self.kv[i] = self.kv[i].min(valid);
        self.fed[i] = 0;
    }

    /// The sequence's draft cache was dropped.
    pub fn release(&mut self, seq: SeqId) {
        if (seq as usize) < self.kv.len() {
            self.kv[seq as usize] = 0;
            self.fed[seq as usize] = 0;
        }
    }

    /// Tokens in the sequence's draft cache.
    pub fn cached(&self, seq: SeqId) -> u32 {
        self.kv.get(seq as usize).copied().unwrap_or(0)
    }
}

/// A backend whose forwards take the cost model's time and whose drafts are accepted by the
/// acceptance model's draws.
pub struct SimBackend {
    cost: Arc<dyn CostModel>,
    acceptance: Arc<dyn AcceptanceModel>,
    rng: SimRng,
    /// The draft model's KV cache per sequence, when a draft model is deployed (its forwards then
    /// include catching up on tokens it has not seen); `None` for drafters without one (n-gram).
    draft_kv: Option<DraftKvMirror>,
    /// Draws for the current step's draft positions, indexed by sequence id (workload ids are dense).
    /// Drawn lazily in position order, or ahead of time by [`Backend::lookahead`]; consumed by
    /// verification.
    pending: Vec<Vec<DraftDraw>>,
}

impl SimBackend {
    /// A simulated replica. `has_draft`: a draft model is deployed, whose forwards catch up on the
    /// tokens it has not seen (the prompt, at a sequence's first draft; see [`DraftKvMirror`]).
    pub fn new(
        cost: Arc<dyn CostModel>,
        acceptance: Arc<dyn AcceptanceModel>,
        rng: SimRng,
        has_draft: bool,
    ) -> Self {
        SimBackend {
            cost,
            acceptance,
            rng,
            draft_kv: has_draft.then(DraftKvMirror::default),
            pending: Vec::new(),
        }
    }

    fn draws_for(&mut self, seq: SeqId) -> &mut Vec<DraftDraw> {
        let i = seq as usize;
        if i >= self.pending.len() {
            self.pending.resize_with(i + 1, Vec::new);
        }
        &mut self.pending[i]
    }

    fn draw_up_to(&mut self, item: &DraftItem, len: usize) -> &[DraftDraw] {
        let i = item.seq as usize;
        self.draws_for(item.seq);
        let v = &mut self.pending[i];
        while v.len() < len {
            v.push(
                self.acceptance
                    .draw(v.len() as u32, item.category, &mut self.rng),
            );
        }
        v
    }
}

impl Backend for SimBackend {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, SimError> {
        let mut confidences = Vec::with_capacity(items.len());
        for it in items {
            let p = it.position as usize;
            confidences.push(self.draw_up_to(it, p + 1)[p].confidence);
        }
        let shape = match self.draft_kv.as_mut() {
            Some(m) => m.draft_shape(items),
            None => draft_shape(items),
        };
        Ok(DraftResult {
            confidences,
            elapsed_ns: self.cost.draft_step(&shape),
        })
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, SimError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for it in items {
            match it.work {
                TargetWork::Prefill { last, .. } => {
                    outcomes.push(TargetOutcome {
                        accepted: 0,
                        emitted: last as u32,
                        stop: false,
                    });
                }
                TargetWork::Verify { drafted } => {
                    let draws = self.draws_for(it.seq);
                    let accepted = draws
                        .iter()
                        .take(drafted as usize)
                        .take_while(|d| d.accepted)
                        .count() as u32;
                    draws.clear();
                    if let Some(m) = self.draft_kv.as_mut() {
                        m.verified(it.seq, it.context_tokens, accepted);
                    }
                    outcomes.push(TargetOutcome {
                        accepted,
                        emitted: accepted + 1,
                        stop: false,
                    });
                }
            }
        }
        Ok(TargetResult {
            outcomes,
            elapsed_ns: predicted_target_ns(self.cost.as_ref(), items),
        })
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(v) = self.pending.get_mut(seq as usize) {
            *v = Vec::new();
        }
        if let Some(m) = self.draft_kv.as_mut() {
            m.release(seq);
        }
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        let mut runs = Vec::with_capacity(items.len());
        for it in items {
            let k = k_max as usize;
            runs.push(
                self.draw_up_to(it, k)
                    .iter()
                    .take(k)
                    .take_while(|d| d.accepted)
                    .count() as u32,
            );
        }
        Some(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: SeqId, context_tokens: u32, position: u32) -> DraftItem {
        DraftItem {
            seq,
            context_tokens,
            position,
            category: None,
        }
    }

    #[test]
    fn the_draft_cache_catches_up_as_the_live_backend_feeds_it() {
        let mut m = DraftKvMirror::default();
        // Prompt of 10 tokens prefilled by the target, which emitted one: context 10, history 11. The
        // draft has seen nothing: position 0 feeds all 11 tokens.
        let s = m.draft_shape(&[item(0, 10, 0)]);
        assert_eq!((s.new_tokens, s.context_tokens), (11, 11));
        // Positions 1 and 2 feed the previous draft token each.
        assert_eq!(m.draft_shape(&[item(0, 10, 1)]).new_tokens, 1);
        assert_eq!(m.draft_shape(&[item(0, 10, 2)]).context_tokens, 13);
        assert_eq!(m.cached(0), 13);
        // 1 of 3 drafts accepted: the cache keeps the 11 tokens plus the accepted, fed draft (12);
        // the target context becomes 10 + 1 + 1 = 12, history 13: next step feeds 1 token.
        m.verified(0, 10, 1);
        assert_eq!(m.cached(0), 12);
        assert_eq!(m.draft_shape(&[item(0, 12, 0)]).new_tokens, 1);
        m.draft_shape(&[item(0, 12, 1)]);
        // Both drafts accepted: the last one was never fed, and the bonus token is new: 2 to feed.
        m.verified(0, 12, 2);
        assert_eq!(m.cached(0), 14);
        assert_eq!(m.draft_shape(&[item(0, 15, 0)]).new_tokens, 2);
        m.verified(0, 15, 0);
        // Three steps without drafting (k = 0): contexts 16, 17, 18; then 3 + 1 tokens to feed.
        for ctx in 16..19 {
            m.verified(0, ctx, 0);
        }
        assert_eq!(m.draft_shape(&[item(0, 19, 0)]).new_tokens, 4);
        // A release (preemption) empties the cache: the whole history again.
        m.release(0);
        let s = m.draft_shape(&[item(0, 19, 0), item(3, 5, 0)]);
        assert_eq!((s.seqs, s.new_tokens), (2, 20 + 6));
    }
}
