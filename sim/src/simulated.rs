//! The simulated backend: step times from a [`CostModel`], draft confidences and acceptance from an
//! [`AcceptanceModel`], on a virtual clock (the engine adds the returned durations).

use crate::SimError;
use specsim_core::acceptance::{AcceptanceModel, DraftDraw};
use specsim_core::cost::CostModel;
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork,
};
use specsim_core::rng::SimRng;
use specsim_core::shape::{
    draft_shape, predicted_target_ns, DraftForwardShape, MirroredSeq, Scorer,
};
use std::sync::Arc;

/// A backend whose forwards take the cost model's time and whose drafts are accepted by the
/// acceptance model's draws.
pub struct SimBackend {
    cost: Arc<dyn CostModel>,
    acceptance: Arc<dyn AcceptanceModel>,
    rng: SimRng,
    /// A draft model is deployed: its forwards include catching up on the tokens it has not seen
    /// (each sequence's `draft_kv`); false for drafters without one (n-gram).
    has_draft: bool,
    /// Per sequence, indexed by sequence id (workload ids are dense).
    seqs: Vec<SimSeq>,
    /// How verification forwards are shaped (and so priced).
    scorer: Scorer,
}

/// One sequence as the simulated backend keeps it: one record, so that a draft item finds
/// everything of its sequence in one place.
#[derive(Debug, Clone, Default)]
struct SimSeq {
    /// Draws for the current step's draft positions: drawn lazily in position order, or ahead of
    /// time by [`Backend::lookahead`]; consumed by verification.
    draws: Vec<DraftDraw>,
    /// Its draft model's KV cache, booked as the runtime's live backend keeps it (when
    /// `has_draft`).
    draft_kv: MirroredSeq,
}

impl SimBackend {
    /// A simulated replica. `has_draft`: a draft model is deployed, whose forwards catch up on the
    /// tokens it has not seen (the prompt, at a sequence's first draft; see
    /// [`specsim_core::shape::DraftKvMirror`]).
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
            seqs: Vec::new(),
            scorer: Scorer::default(),
        }
    }

    /// Verification forwards shaped by `scorer` (default multi-query).
    pub fn with_scorer(mut self, scorer: Scorer) -> Self {
        self.scorer = scorer;
        self
    }
}

/// Sequence `seq`'s record (a fresh one the first time it is seen).
#[inline]
fn seq_record(seqs: &mut Vec<SimSeq>, seq: SeqId) -> &mut SimSeq {
    let i = seq as usize;
    if i >= seqs.len() {
        seqs.resize_with(i + 1, SimSeq::default);
    }
    &mut seqs[i]
}

/// What one draft forward's pass over its items writes to.
struct DraftPass<'a> {
    seqs: &'a mut Vec<SimSeq>,
    has_draft: bool,
    confidences: &'a mut Vec<f32>,
    forward: &'a mut DraftForwardShape,
    acceptance: &'a dyn AcceptanceModel,
    rng: &'a mut SimRng,
}

impl DraftPass<'_> {
    /// Each item draws its position with `draw_next` when that is its sequence's next undrawn one
    /// (the engine's order), else through the model position by position ([`draw_up_to`]).
    #[inline(always)]
    fn run(
        &mut self,
        items: &[DraftItem],
        mut draw_next: impl FnMut(&DraftItem, &mut SimRng) -> DraftDraw,
    ) {
        // The generator in a local whose address never leaves the loop (the slow path draws with
        // a copy), so that it can stay in registers.
        let mut rng = self.rng.clone();
        for it in items {
            let seq = seq_record(self.seqs, it.seq);
            let p = it.position as usize;
            let confidence = if seq.draws.len() == p {
                let d = draw_next(it, &mut rng);
                seq.draws.push(d);
                d.confidence
            } else {
                let mut slow = rng.clone();
                let d = draw_up_to(&mut seq.draws, self.acceptance, it, p + 1, &mut slow)[p];
                rng = slow;
                d.confidence
            };
            self.confidences.push(confidence);
            if self.has_draft {
                seq.draft_kv.feed(it, self.forward);
            }
        }
        *self.rng = rng;
    }
}

/// `item`'s sequence's draws, drawn up to `len` (earlier positions first; none if drawn ahead).
fn draw_up_to<'a>(
    draws: &'a mut Vec<DraftDraw>,
    acceptance: &dyn AcceptanceModel,
    item: &DraftItem,
    len: usize,
    rng: &mut SimRng,
) -> &'a [DraftDraw] {
    while draws.len() < len {
        draws.push(acceptance.draw(draws.len() as u32, item.category, rng));
    }
    draws
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

    /// One pass over the items: each draws its position (or reads it, when [`Backend::lookahead`]
    /// drew ahead), reports its confidence and books its draft cache. The draws are those of drawing
    /// item by item through [`AcceptanceModel::draw`]; plain categories
    /// ([`AcceptanceModel::plain_draws`]) draw inline.
    fn draft_into(&mut self, items: &[DraftItem], out: &mut DraftResult) -> Result<(), SimError> {
        out.confidences.clear();
        out.confidences.reserve(items.len());
        let acceptance = self.acceptance.as_ref();
        let mut forward = DraftForwardShape::default();
        let mut pass = DraftPass {
            seqs: &mut self.seqs,
            has_draft: self.has_draft,
            confidences: &mut out.confidences,
            forward: &mut forward,
            acceptance,
            rng: &mut self.rng,
        };
        if let Some(plain) = acceptance.plain_draws_for_all() {
            pass.run(items, |_, rng| plain.draw(rng));
        } else {
            // The sampler of the current run of items of one category.
            let mut run = None;
            pass.run(items, |it, rng| {
                let plain = match run {
                    Some((category, plain)) if category == it.category => plain,
                    _ => {
                        run.insert((it.category, acceptance.plain_draws(it.category)))
                            .1
                    }
                };
                match plain {
                    Some(plain) => plain.draw(rng),
                    None => acceptance.draw(it.position, it.category, rng),
                }
            });
        }
        let shape = if self.has_draft {
            forward.shape()
        } else {
            draft_shape(items)
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
                    let seq = seq_record(&mut self.seqs, it.seq);
                    // The run of accepted draws among the first `drafted` (a plain slice scan).
                    let verified = &seq.draws[..(drafted as usize).min(seq.draws.len())];
                    let accepted = verified
                        .iter()
                        .position(|d| !d.accepted)
                        .unwrap_or(verified.len()) as u32;
                    seq.draws.clear();
                    if self.has_draft {
                        seq.draft_kv.verified(it.context_tokens, accepted);
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
        if let Some(s) = self.seqs.get_mut(seq as usize) {
            s.draws.clear();
            s.draft_kv = MirroredSeq::default();
        }
    }

    fn reuse_prefix(&mut self, seq: SeqId, tokens: u32) -> Result<(), SimError> {
        // The target's cached KV needs nothing here: the prefill item starts after it and its
        // attention reads it as context. The draft's share of the blocks spares its catch-up.
        if self.has_draft {
            seq_record(&mut self.seqs, seq)
                .draft_kv
                .prefix_cached(tokens);
        }
        Ok(())
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        let mut runs = Vec::with_capacity(items.len());
        for it in items {
            let k = k_max as usize;
            let draws = &mut seq_record(&mut self.seqs, it.seq).draws;
            runs.push(
                draw_up_to(draws, self.acceptance.as_ref(), it, k, &mut self.rng)
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
    use specsim_core::acceptance::{AcceptanceConfig, CategoryAcceptanceConfig};
    use specsim_core::cost::FixedCost;
    use specsim_core::rng::stream;

    /// Plain Beta(3, 2) confidences, with a "coding" category (id 0) drawing from `coding`.
    fn acceptance(coding: Option<CategoryAcceptanceConfig>) -> Arc<dyn AcceptanceModel> {
        let categories = coding
            .into_iter()
            .map(|c| ("coding".to_string(), c))
            .collect();
        let config = AcceptanceConfig::Calibrated {
            confidence_beta: [3.0, 2.0],
            curve: None,
            position_decay: 1.0,
            categories,
            position_alphas: None,
        };
        config.build(&["coding".into()]).unwrap().into()
    }

    fn backend_with(seed: u64, acceptance: Arc<dyn AcceptanceModel>) -> SimBackend {
        let cost = FixedCost {
            draft_base: 1,
            draft_per_seq: 0,
            target_base: 1,
            target_per_token: 0,
        };
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
        (reported, b.seqs.iter().map(|s| s.draws.clone()).collect())
    }

    /// Forwards in the engine's order (positions in turn), and forwards out of it: one with a
    /// sequence twice, one skipping a position and one re-reading a drawn position; items of
    /// category 0 (sequence 1) and of none.
    fn forwards() -> Vec<Vec<DraftItem>> {
        let coded = |seq, position| DraftItem {
            category: (seq == 1).then_some(0),
            ..item(seq, position)
        };
        [
            vec![(0, 0), (3, 0), (1, 0)],
            vec![(0, 1), (1, 1)],
            vec![(0, 2), (3, 1), (0, 2), (1, 2)],
            vec![(3, 3), (1, 1)],
            vec![(1, 3), (3, 4), (2, 0)],
        ]
        .iter()
        .map(|f| f.iter().map(|&(s, p)| coded(s, p)).collect())
        .collect()
    }

    #[test]
    fn draws_in_one_pass_match_drawing_position_by_position_through_the_model() {
        // One plain sampler for all; a plain category of its own (a sampler per run of a
        // category); a category that is not plain (drawn through the model).
        let plain_coding = CategoryAcceptanceConfig {
            confidence_beta: [9.0, 1.0],
            curve: None,
            position_decay: 1.0,
        };
        let decaying_coding = CategoryAcceptanceConfig {
            position_decay: 0.8,
            ..plain_coding.clone()
        };
        for coding in [None, Some(plain_coding), Some(decaying_coding)] {
            let model = acceptance(coding.clone());
            let (fast, fast_draws) = run(&mut backend_with(9, model.clone()), &forwards());
            // By hand: each item's sequence draws through `AcceptanceModel::draw` every position
            // up to the item's that it has not drawn yet, and the item reports its own position's
            // draw.
            let mut rng = stream(9, "acceptance", 0);
            let mut drawn: Vec<Vec<DraftDraw>> = vec![Vec::new(); 4];
            let mut slow = Vec::new();
            for items in &forwards() {
                let mut reported = Vec::new();
                for it in items {
                    let draws = &mut drawn[it.seq as usize];
                    while draws.len() <= it.position as usize {
                        draws.push(model.draw(draws.len() as u32, it.category, &mut rng));
                    }
                    reported.push(draws[it.position as usize].confidence);
                }
                slow.push(reported);
            }
            assert_eq!(fast, slow, "{coding:?}");
            assert_eq!(fast_draws[..], drawn[..], "{coding:?}");
            // Each sequence drew every position up to the deepest asked, once.
            let depth: Vec<usize> = fast_draws.iter().map(Vec::len).collect();
            assert_eq!(depth, [3, 4, 1, 5]);
        }
    }
}
