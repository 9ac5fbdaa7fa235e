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

/// The shape of one draft forward over `items` (one new token per sequence, each at its context plus
/// the drafts already proposed).
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

/// The shapes of one target forward over `items`: the whole forward, and its prefill part alone.
pub fn target_shapes(items: &[TargetItem]) -> (BatchShape, BatchShape) {
    let mut shape = BatchShape::default();
    let mut prefill = BatchShape::default();
    for it in items {
        match it.work {
            TargetWork::Prefill { start, len, last } => {
                let part = BatchShape::one(start, len, true, last as u32);
                shape = shape.merge(part);
                prefill = prefill.merge(part);
            }
            TargetWork::Verify { drafted } => {
                shape = shape.merge(BatchShape::one(
                    it.context_tokens,
                    drafted + 1,
                    false,
                    drafted + 1,
                ));
            }
        }
    }
    (shape, prefill)
}

/// What `cost` predicts for a draft forward over `items`: the simulated backend's step time, and the
/// yardstick the live engine's measured draft forwards are compared with.
pub fn predicted_draft_ns(cost: &dyn CostModel, items: &[DraftItem]) -> Nanos {
    cost.draft_step(&draft_shape(items))
}

/// What `cost` predicts for a target forward over `items`, with the draft model's prefill of the
/// prompt chunks in it when a draft model is deployed (`has_draft`).
pub fn predicted_target_ns(cost: &dyn CostModel, items: &[TargetItem], has_draft: bool) -> Nanos {
    let (shape, prefill) = target_shapes(items);
    let mut t = cost.target_step(&shape);
    if has_draft && prefill.seqs > 0 {
        t += cost.draft_prefill(&prefill);
    }
    t
}

/// A backend whose forwards take the cost model's time and whose drafts are accepted by the
/// acceptance model's draws.
pub struct SimBackend {
    cost: Arc<dyn CostModel>,
    acceptance: Arc<dyn AcceptanceModel>,
    rng: SimRng,
    /// Whether a draft model is deployed (it then prefills prompts too).
    has_draft: bool,
    /// Draws for the current step's draft positions, indexed by sequence id (workload ids are dense).
    /// Drawn lazily in position order, or ahead of time by [`Backend::lookahead`]; consumed by
    /// verification.
    pending: Vec<Vec<DraftDraw>>,
}

impl SimBackend {
    /// A simulated replica. `has_draft` adds the draft model's prefill to prompt processing.
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
            has_draft,
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
        Ok(DraftResult {
            confidences,
            elapsed_ns: predicted_draft_ns(self.cost.as_ref(), items),
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
            elapsed_ns: predicted_target_ns(self.cost.as_ref(), items, self.has_draft),
        })
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(v) = self.pending.get_mut(seq as usize) {
            *v = Vec::new();
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
