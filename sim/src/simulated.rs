//! The simulated backend: step times from a [`CostModel`], draft confidences and acceptance from an
//! [`AcceptanceModel`], on a virtual clock (the engine adds the returned durations).

use crate::acceptance::{AcceptanceModel, DraftDraw};
use crate::cost::{BatchShape, CostModel};
use crate::engine::{Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork};
use crate::rng::SimRng;
use crate::SimError;
use std::collections::HashMap;
use std::sync::Arc;

/// A backend whose forwards take the cost model's time and whose drafts are accepted by the
/// acceptance model's draws.
pub struct SimBackend {
    cost: Arc<dyn CostModel>,
    acceptance: Arc<dyn AcceptanceModel>,
    rng: SimRng,
    /// Whether a draft model is deployed (it then prefills prompts too).
    has_draft: bool,
    /// Draws for the current step's draft positions, per sequence. Drawn lazily in position order, or
    /// ahead of time by [`Backend::lookahead`]; consumed by verification.
    pending: HashMap<SeqId, Vec<DraftDraw>>,
    spare: Vec<Vec<DraftDraw>>,
}

impl SimBackend {
    /// A simulated replica. `has_draft` adds the draft model's prefill to prompt processing.
    pub fn new(cost: Arc<dyn CostModel>, acceptance: Arc<dyn AcceptanceModel>, rng: SimRng, has_draft: bool) -> Self {
        SimBackend { cost, acceptance, rng, has_draft, pending: HashMap::new(), spare: Vec::new() }
    }

    fn draws_for(&mut self, seq: SeqId) -> &mut Vec<DraftDraw> {
        let spare = &mut self.spare;
        self.pending.entry(seq).or_insert_with(|| spare.pop().unwrap_or_default())
    }

    fn draw_up_to(&mut self, item: &DraftItem, len: usize) {
        let acceptance = Arc::clone(&self.acceptance);
        // Split the borrow: take the vector out, fill it, put it back.
        let mut v = std::mem::take(self.draws_for(item.seq));
        while v.len() < len {
            v.push(acceptance.draw(v.len() as u32, item.category, &mut self.rng));
        }
        *self.draws_for(item.seq) = v;
    }
}

impl Backend for SimBackend {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, SimError> {
        let mut shape = BatchShape::default();
        let mut confidences = Vec::with_capacity(items.len());
        for it in items {
            self.draw_up_to(it, it.position as usize + 1);
            confidences.push(self.pending[&it.seq][it.position as usize].confidence);
            shape = shape.merge(BatchShape::one(it.context_tokens + it.position, 1, false, 1));
        }
        Ok(DraftResult { confidences, elapsed_ns: self.cost.draft_step(&shape) })
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, SimError> {
        let mut shape = BatchShape::default();
        let mut prefill = BatchShape::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for it in items {
            match it.work {
                TargetWork::Prefill { start, len, last } => {
                    let part = BatchShape::one(start, len, true, last as u32);
                    shape = shape.merge(part);
                    prefill = prefill.merge(part);
                    outcomes.push(TargetOutcome { accepted: 0, emitted: last as u32, stop: false });
                }
                TargetWork::Verify { drafted } => {
                    shape = shape.merge(BatchShape::one(it.context_tokens, drafted + 1, false, drafted + 1));
                    let accepted = match self.pending.get_mut(&it.seq) {
                        Some(draws) => {
                            let a = draws.iter().take(drafted as usize).take_while(|d| d.accepted).count() as u32;
                            draws.clear();
                            a
                        }
                        None => 0,
                    };
                    if let Some(v) = self.pending.remove(&it.seq) {
                        self.spare.push(v);
                    }
                    outcomes.push(TargetOutcome { accepted, emitted: accepted + 1, stop: false });
                }
            }
        }
        let mut elapsed = self.cost.target_step(&shape);
        if self.has_draft && prefill.seqs > 0 {
            elapsed += self.cost.draft_prefill(&prefill);
        }
        Ok(TargetResult { outcomes, elapsed_ns: elapsed })
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(mut v) = self.pending.remove(&seq) {
            v.clear();
            self.spare.push(v);
        }
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        let mut runs = Vec::with_capacity(items.len());
        for it in items {
            self.draw_up_to(it, k_max as usize);
            runs.push(self.pending[&it.seq].iter().take(k_max as usize).take_while(|d| d.accepted).count() as u32);
        }
        Some(runs)
    }
}
