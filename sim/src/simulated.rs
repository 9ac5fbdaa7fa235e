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
    /// Reused buffer of one draft forward's batched draws.
    drawn: Vec<DraftDraw>,
    /// [`Backend::lookahead`] drew this step's draft positions ahead (until its verification).
    drawn_ahead: bool,
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
            drawn: Vec::new(),
            drawn_ahead: false,
        }
    }

    /// Verification forwards shaped by `scorer` (default multi-query).
    pub fn with_scorer(mut self, scorer: Scorer) -> Self {
        self.scorer = scorer;
        self
    }

    #[inline]
    fn draws_for(&mut self, seq: SeqId) -> &mut Vec<DraftDraw> {
        let i = seq as usize;
        if i >= self.pending.len() {
            self.pending.resize_with(i + 1, Vec::new);
        }
        &mut self.pending[i]
    }

    /// The draft forward's draws in one call to the acceptance model, when every item is at its
    /// sequence's next undrawn position (the engine's calling sequence: no lookahead drew ahead, no
    /// sequence twice in a forward). Returns false, with every draw undone, otherwise.
    fn draw_batch(&mut self, items: &[DraftItem], out: &mut DraftResult) -> bool {
        if self.drawn_ahead {
            // The lookahead drew this step's positions already: they are read, not drawn.
            return false;
        }
        // Drawn first and checked while stored (a separate check before drawing was a second pass
        // over the batch for a case the engine never produces); a mismatch undoes the batch.
        let before = self.rng.clone();
        self.drawn.clear();
        self.acceptance
            .draw_batch(items, &mut self.rng, &mut self.drawn);
        for (n, (it, d)) in items.iter().zip(&self.drawn).enumerate() {
            let i = it.seq as usize;
            if i >= self.pending.len() {
                self.pending.resize_with(i + 1, Vec::new);
            }
            let draws = &mut self.pending[i];
            if draws.len() != it.position as usize {
                // Not the next position (a sequence twice in one forward, or one skipping a
                // position): undo, so drawing one at a time gives its draws.
                for it in &items[..n] {
                    self.pending[it.seq as usize].pop();
                }
                out.confidences.clear();
                self.rng = before;
                return false;
            }
            draws.push(*d);
            out.confidences.push(d.confidence);
        }
        true
    }

    /// The draws of a draft forward one at a time, in item order: each item's sequence draws up to
    /// its position (earlier positions first, none if drawn ahead) and reports that position's draw.
    fn draw_one_by_one(&mut self, items: &[DraftItem], out: &mut DraftResult) {
        for it in items {
            let p = it.position as usize;
            let confidence = self.draw_up_to(it, p + 1)[p].confidence;
            out.confidences.push(confidence);
        }
    }

    #[inline]
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
        let mut out = DraftResult::default();
        self.draft_into(items, &mut out)?;
        Ok(out)
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, SimError> {
        let mut out = TargetResult::default();
        self.target_into(items, &mut out)?;
        Ok(out)
    }

    fn draft_into(&mut self, items: &[DraftItem], out: &mut DraftResult) -> Result<(), SimError> {
        out.confidences.clear();
        out.confidences.reserve(items.len());
        if !self.draw_batch(items, out) {
            self.draw_one_by_one(items, out);
        }
        let shape = match self.draft_kv.as_mut() {
            Some(m) => m.draft_shape(items),
            None => draft_shape(items),
        };
        out.elapsed_ns = self.cost.draft_step(&shape);
        Ok(())
    }

    fn target_into(
        &mut self,
        items: &[TargetItem],
        out: &mut TargetResult,
    ) -> Result<(), SimError> {
        out.outcomes.clear();
        self.drawn_ahead = false;
        for it in items {
            match it.work {
                TargetWork::Prefill { last, .. } => {
                    out.outcomes.push(TargetOutcome {
                        accepted: 0,
                        emitted: last as u32,
                        stop: false,
                    });
                }
                TargetWork::Verify { drafted } => {
                    let draws = self.draws_for(it.seq);
                    // The run of accepted draws among the first `drafted` (a plain slice scan).
                    let verified = &draws[..(drafted as usize).min(draws.len())];
                    let accepted = verified
                        .iter()
                        .position(|d| !d.accepted)
                        .unwrap_or(verified.len()) as u32;
                    draws.clear();
                    if let Some(m) = self.draft_kv.as_mut() {
                        m.verified(it.seq, it.context_tokens, accepted);
                    }
                    out.outcomes.push(TargetOutcome {
                        accepted,
                        emitted: accepted + 1,
                        stop: false,
                    });
                }
            }
        }
        out.elapsed_ns = predicted_target_ns(self.cost.as_ref(), items, self.scorer);
        Ok(())
    }

    fn release(&mut self, seq: SeqId) {
        // Emptied, its buffer kept: sequence ids are replica-local slots that the next request reuses.
        if let Some(v) = self.pending.get_mut(seq as usize) {
            v.clear();
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
        self.drawn_ahead = true;
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
    use specsim_core::acceptance::AcceptanceConfig;
    use specsim_core::cost::FixedCost;
    use specsim_core::rng::stream;

    fn backend(seed: u64) -> SimBackend {
        let cost = FixedCost {
            draft_base: 1,
            draft_per_seq: 0,
            target_base: 1,
            target_per_token: 0,
        };
        let acceptance = AcceptanceConfig::Calibrated {
            confidence_beta: [3.0, 2.0],
            curve: None,
            position_decay: 1.0,
            categories: Default::default(),
            position_alphas: None,
        };
        let acceptance: Arc<dyn AcceptanceModel> = acceptance.build(&[]).unwrap().into();
        SimBackend::new(
            Arc::new(cost),
            acceptance,
            stream(seed, "acceptance", 0),
            true,
        )
    }

    fn item(seq: SeqId, position: u32) -> DraftItem {
        DraftItem {
            seq,
            context_tokens: 50,
            position,
            category: None,
        }
    }

    /// Confidences reported for `forwards`, and the draws each sequence then holds.
    fn run(
        b: &mut SimBackend,
        forwards: &[Vec<DraftItem>],
    ) -> (Vec<Vec<f32>>, Vec<Vec<DraftDraw>>) {
        let mut reported = Vec::new();
        for items in forwards {
            reported.push(b.draft(items).unwrap().confidences);
        }
        (reported, b.pending.clone())
    }

    #[test]
    fn batched_draws_match_drawing_one_token_at_a_time() {
        // Forwards the fast path takes (positions in order), one with a sequence twice (it must fall
        // back, undoing the batch), one skipping a position and one re-reading a drawn position.
        let forwards = vec![
            vec![item(0, 0), item(3, 0), item(1, 0)],
            vec![item(0, 1), item(1, 1)],
            vec![item(0, 2), item(3, 1), item(0, 2), item(1, 2)],
            vec![item(3, 3), item(1, 1)],
            vec![item(1, 3), item(3, 4), item(2, 0)],
        ];
        let (fast, fast_draws) = run(&mut backend(9), &forwards);
        let mut slow_backend = backend(9);
        let mut slow = Vec::new();
        for items in &forwards {
            let mut out = DraftResult::default();
            slow_backend.draw_one_by_one(items, &mut out);
            slow.push(out.confidences);
        }
        assert_eq!(fast, slow);
        assert_eq!(fast_draws[..], slow_backend.pending[..]);
        // Each sequence drew every position up to the deepest asked, once.
        let depth: Vec<usize> = fast_draws.iter().map(Vec::len).collect();
        assert_eq!(depth, [3, 4, 1, 5]);
    }
}
