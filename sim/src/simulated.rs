//! The simulated backend: step times from a [`CostModel`], draft confidences and acceptance from an
//! [`AcceptanceModel`], on a virtual clock (the engine adds the returned durations).

use crate::SimError;
use specsim_core::acceptance::{AcceptanceModel, DraftDraw};
use specsim_core::cost::CostModel;
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork,
};
use specsim_core::rng::SimRng;
use specsim_core::shape::{draft_shape, predicted_target_ns, DraftKvMirror, Scorer};
use std::sync::Arc;

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
    /// How verification forwards are shaped (and so priced).
    scorer: Scorer,
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
            scorer: Scorer::default(),
        }
    }

    /// Verification forwards shaped by `scorer` (default multi-query).
    pub fn with_scorer(mut self, scorer: Scorer) -> Self {
        self.scorer = scorer;
        self
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
            elapsed_ns: predicted_target_ns(self.cost.as_ref(), items, self.scorer),
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

    fn reuse_prefix(&mut self, seq: SeqId, tokens: u32) -> Result<(), SimError> {
        // The target's cached KV needs nothing here: the prefill item starts after it and its
        // attention reads it as context. The draft's share of the blocks spares its catch-up.
        if let Some(m) = self.draft_kv.as_mut() {
            m.prefix_cached(seq, tokens);
        }
        Ok(())
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
