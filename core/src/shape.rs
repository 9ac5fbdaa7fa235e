//! The one home of a forward's shape and its predicted cost.
//!
//! Every party that needs to know what a forward will look like asks here: the simulated backend
//! (to charge its time), the policies (to predict a step's time before choosing k), and the runtime's
//! live backend (to put the prediction beside the measured forward). Keeping one definition is what
//! makes "the simulator models exactly the runtime's engine" checkable.
//!
//! - [`draft_shape`] / [`target_shape`]: the [`BatchShape`] of a draft or target forward over the
//!   engine's work items.
//! - [`DraftKvMirror`]: the draft model's KV cache per sequence, kept as the runtime keeps it, so a draft
//!   forward's shape includes the catch-up on tokens the draft has not seen.
//! - [`predicted_target_ns`]: a target forward's time under a cost model.
//!
//! **What policies see.** A policy prices a step from [`crate::policy::DraftView`], which knows each
//! sequence's context and position but not the draft cache; policies therefore price every draft
//! position as one token per sequence (no catch-up). The simulated backend charges the catch-up. The
//! difference is one forward of the tokens the draft has not seen at a sequence's first draft position —
//! the prompt once, then 1-2 tokens per step — which the test
//! `policies_price_drafts_without_the_catch_up` below pins down.

use crate::cost::{BatchShape, CostModel};
use crate::engine::{DraftItem, SeqId, TargetItem, TargetWork};
use crate::time::Nanos;
use serde::{Deserialize, Serialize};

/// One sequence feeding the draft token at `position` (0-based within the step) on top of a target
/// context of `context_tokens`, with the draft cache in step: one new token.
pub fn draft_token(context_tokens: u32, position: u32) -> BatchShape {
    BatchShape::one(context_tokens + position, 1, false, 1)
}

/// `seqs` sequences each feeding the draft token at `position` (the sum of [`draft_token`] over them),
/// from their number and the sum of their target contexts: what a policy pricing a draft position
/// over many sequences needs, in O(1) once the sums are kept.
pub fn draft_tokens(seqs: u32, context_sum: u64, position: u32) -> BatchShape {
    let kv = context_sum + seqs as u64 * (position as u64 + 1);
    BatchShape {
        seqs,
        new_tokens: seqs,
        prefill_tokens: 0,
        context_tokens: kv,
        logit_positions: seqs,
        attended: kv,
    }
}

/// How the target scores a sequence's draft tokens in a verification forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// One multi-token query per sequence: its k + 1 positions read the sequence's KV once (vLLM V1's
    /// and this runtime's verification).
    #[default]
    MultiQuery,
    /// Batch expansion (vLLM 0.6's scorer whenever the target runs with CUDA graphs, so the one the
    /// SpecServe/AdaSpec fork ran): each of a sequence's k + 1 positions becomes its own row, a one-token
    /// decode at context + j that reads the sequence's KV again — (k + 1)× the KV traffic.
    BatchExpansion,
}

impl Scorer {
    /// One sequence verifying `drafted` drafts at a target context of `context_tokens`.
    pub fn verify_seq(self, context_tokens: u32, drafted: u32) -> BatchShape {
        match self {
            Scorer::MultiQuery => verify_seq(context_tokens, drafted),
            Scorer::BatchExpansion => (0..=drafted).fold(BatchShape::default(), |s, j| {
                s.merge(BatchShape::one(context_tokens + j, 1, false, 1))
            }),
        }
    }

    /// What verifying one more draft adds to a sequence's verification of `drafted` drafts
    /// (`verify_seq(ctx, drafted + 1)` minus `verify_seq(ctx, drafted)`).
    pub fn verify_one_more(self, context_tokens: u32, drafted: u32) -> BatchShape {
        match self {
            Scorer::MultiQuery => verify_one_more(context_tokens, drafted),
            Scorer::BatchExpansion => BatchShape::one(context_tokens + drafted + 1, 1, false, 1),
        }
    }

    /// The sum of [`Scorer::verify_one_more`] over `seqs` sequences, from their number, the sum of
    /// their contexts and the sum of their drafted counts (each term is affine in both).
    pub fn verify_more(self, seqs: u32, context_sum: u64, drafted_sum: u64) -> BatchShape {
        let attended = context_sum + drafted_sum + 2 * seqs as u64;
        match self {
            Scorer::MultiQuery => BatchShape {
                seqs: 0,
                new_tokens: seqs,
                prefill_tokens: 0,
                context_tokens: seqs as u64,
                logit_positions: seqs,
                attended,
            },
            Scorer::BatchExpansion => BatchShape {
                seqs,
                new_tokens: seqs,
                prefill_tokens: 0,
                context_tokens: attended,
                logit_positions: seqs,
                attended,
            },
        }
    }
}

/// One sequence verifying `drafted` draft tokens at a target context of `context_tokens` with the
/// multi-query scorer: the drafts plus the bonus position, all with logits.
pub fn verify_seq(context_tokens: u32, drafted: u32) -> BatchShape {
    BatchShape::one(context_tokens, drafted + 1, false, drafted + 1)
}

/// What verifying one more draft adds to a sequence's multi-query verification of `drafted` drafts
/// (`verify_seq(ctx, drafted + 1)` minus `verify_seq(ctx, drafted)`): one new token attending to
/// `context_tokens + drafted + 2` entries. Lets a policy grow a verification shape token by token.
pub fn verify_one_more(context_tokens: u32, drafted: u32) -> BatchShape {
    BatchShape {
        seqs: 0,
        new_tokens: 1,
        prefill_tokens: 0,
        context_tokens: 1,
        logit_positions: 1,
        attended: context_tokens as u64 + drafted as u64 + 2,
    }
}

/// The shape of one draft forward over `items` when every sequence feeds one token (each at its
/// context plus the drafts already proposed): a drafter without a KV cache to keep in step, or a draft
/// model whose cache is in step. [`DraftKvMirror::draft_shape`] adds the catch-up of a draft model.
pub fn draft_shape(items: &[DraftItem]) -> BatchShape {
    items.iter().fold(BatchShape::default(), |shape, it| {
        shape.merge(draft_token(it.context_tokens, it.position))
    })
}

/// The shape of one target forward over `items` (prefill chunks, and verifications scored by `scorer`).
pub fn target_shape(items: &[TargetItem], scorer: Scorer) -> BatchShape {
    items.iter().fold(BatchShape::default(), |shape, it| {
        shape.merge(match it.work {
            TargetWork::Prefill { start, len, last } => {
                BatchShape::one(start, len, true, last as u32)
            }
            TargetWork::Verify { drafted } => scorer.verify_seq(it.context_tokens, drafted),
        })
    })
}

/// Predicted time of the draft forwards of a step in which each sequence, at target context `ctx`,
/// drafts `k` tokens (`plan` yields `(ctx, k)` per sequence): one forward per position over the
/// sequences still drafting there, each feeding one token. This is what policies see: no catch-up on
/// tokens the draft model has not seen (see the module doc).
pub fn predicted_drafts_ns<I>(cost: &dyn CostModel, plan: I) -> Nanos
where
    I: Iterator<Item = (u32, u32)> + Clone,
{
    /// Draft lengths up to this are bucketed on the stack (a policy's `k_max` is a few tokens).
    const BUCKETED: usize = 32;
    let k_max = plan.clone().map(|(_, k)| k).max().unwrap_or(0);
    // The sequences drafting at `pos` are those with k > pos, summed as `draft_tokens` takes them.
    let at = |pos: u32| {
        plan.clone()
            .filter(|&(_, k)| k > pos)
            .fold((0u32, 0u64), |(n, sum), (ctx, _)| (n + 1, sum + ctx as u64))
    };
    if k_max as usize > BUCKETED {
        return (0..k_max)
            .map(|pos| {
                let (seqs, context_sum) = at(pos);
                cost.draft_step(&draft_tokens(seqs, context_sum, pos))
            })
            .sum();
    }
    // One pass: bucket by k, then walk positions from the top, adding the sequences whose k is
    // pos + 1 (those drafting at pos but not beyond).
    let mut seqs_with_k = [0u32; BUCKETED + 1];
    let mut ctx_with_k = [0u64; BUCKETED + 1];
    for (ctx, k) in plan {
        seqs_with_k[k as usize] += 1;
        ctx_with_k[k as usize] += ctx as u64;
    }
    let (mut seqs, mut context_sum, mut total) = (0u32, 0u64, 0);
    for pos in (0..k_max).rev() {
        seqs += seqs_with_k[pos as usize + 1];
        context_sum += ctx_with_k[pos as usize + 1];
        total += cost.draft_step(&draft_tokens(seqs, context_sum, pos));
    }
    total
}

/// Predicted time of the verification forward of a step in which each sequence, at target context
/// `ctx`, verifies `k` drafts (`plan` yields `(ctx, k)`) with `scorer`.
pub fn predicted_verify_ns(
    cost: &dyn CostModel,
    scorer: Scorer,
    plan: impl Iterator<Item = (u32, u32)>,
) -> Nanos {
    let shape = plan.fold(BatchShape::default(), |s, (ctx, k)| {
        s.merge(scorer.verify_seq(ctx, k))
    });
    cost.target_step(&shape)
}

/// What `cost` predicts for a target forward over `items` verified by `scorer`: the simulated backend's
/// step time, and the yardstick the live engine's measured target forwards are compared with.
pub fn predicted_target_ns(cost: &dyn CostModel, items: &[TargetItem], scorer: Scorer) -> Nanos {
    cost.target_step(&target_shape(items, scorer))
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
    /// Per sequence, its draft cache (one entry, so the per-token update touches one place).
    seqs: Vec<MirroredSeq>,
}

/// A draft forward's shape as [`MirroredSeq::feed`] books its items.
#[derive(Debug, Clone, Copy, Default)]
pub struct DraftForwardShape {
    /// Items at position 0, each feeding what its draft cache has not seen (its own shape).
    catch_up: BatchShape,
    /// Items past position 0 feed one token each (`draft_token`): summed as `draft_tokens` takes
    /// them, with each one's position folded into its context.
    one_token: u32,
    one_token_ctx: u64,
}

impl DraftForwardShape {
    /// The whole forward's shape.
    pub fn shape(&self) -> BatchShape {
        self.catch_up
            .merge(draft_tokens(self.one_token, self.one_token_ctx, 0))
    }
}

/// One sequence's draft cache as the mirror books it ([`DraftKvMirror`] keeps one per sequence; a
/// caller that keeps its own per-sequence records can hold one in each).
#[derive(Debug, Clone, Copy, Default)]
pub struct MirroredSeq {
    /// Tokens in the draft KV cache.
    kv: u32,
    /// Draft tokens fed into the cache this step (every position after the first feeds one).
    fed: u32,
}

impl MirroredSeq {
    /// One draft item of this sequence: the cache advanced past it and its share added to
    /// `forward`.
    #[inline]
    pub fn feed(&mut self, it: &DraftItem, forward: &mut DraftForwardShape) {
        let ctx = it.context_tokens;
        if it.position == 0 {
            let seen = self.kv.min(ctx);
            self.kv = ctx + 1;
            self.fed = 0;
            forward.catch_up =
                forward
                    .catch_up
                    .merge(BatchShape::one(seen, ctx + 1 - seen, false, 1));
        } else {
            self.kv += 1;
            self.fed += 1;
            forward.one_token += 1;
            forward.one_token_ctx += ctx as u64 + it.position as u64;
        }
    }

    /// A new sequence starts with its first `tokens` tokens in the draft cache: a prefix-cache hit,
    /// whose blocks hold the draft model's KV beside the target's (one block table for both, as vLLM V1
    /// allocates them), so the draft's catch-up starts after them.
    pub fn prefix_cached(&mut self, tokens: u32) {
        self.kv = self.kv.max(tokens);
    }

    /// A verification at target context `context_tokens` accepted `accepted` drafts.
    #[inline]
    pub fn verified(&mut self, context_tokens: u32, accepted: u32) {
        let valid = context_tokens + 1 + accepted.min(self.fed);
        self.kv = self.kv.min(valid);
        self.fed = 0;
    }

    /// Tokens in the draft cache.
    pub fn cached(&self) -> u32 {
        self.kv
    }
}

impl DraftKvMirror {
    #[inline]
    fn slot(&mut self, seq: SeqId) -> &mut MirroredSeq {
        let i = seq as usize;
        if i >= self.seqs.len() {
            self.seqs.resize(i + 1, MirroredSeq::default());
        }
        &mut self.seqs[i]
    }

    /// The shape of the draft forward over `items`, catch-up included, and the caches advanced past it.
    pub fn draft_shape(&mut self, items: &[DraftItem]) -> BatchShape {
        let mut forward = DraftForwardShape::default();
        for it in items {
            self.slot(it.seq).feed(it, &mut forward);
        }
        forward.shape()
    }

    /// See [`MirroredSeq::verified`].
    pub fn verified(&mut self, seq: SeqId, context_tokens: u32, accepted: u32) {
        self.slot(seq).verified(context_tokens, accepted);
    }

    /// The sequence's draft cache was dropped.
    pub fn release(&mut self, seq: SeqId) {
        if let Some(m) = self.seqs.get_mut(seq as usize) {
            *m = MirroredSeq::default();
        }
    }

    /// Tokens in the sequence's draft cache.
    pub fn cached(&self, seq: SeqId) -> u32 {
        self.seqs.get(seq as usize).map_or(0, MirroredSeq::cached)
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

    /// Charges 1 µs per new token on either model, so a shape's cost counts its tokens.
    struct PerToken;
    impl CostModel for PerToken {
        fn draft_step(&self, s: &BatchShape) -> Nanos {
            1_000 * s.new_tokens as Nanos
        }
        fn target_step(&self, s: &BatchShape) -> Nanos {
            1_000 * s.new_tokens as Nanos
        }
        fn describe(&self) -> String {
            "per-token".into()
        }
    }

    #[test]
    fn one_more_verify_token_is_the_difference_of_two_verifications() {
        for (ctx, d) in [(0, 0), (10, 0), (10, 3), (4095, 7)] {
            let (a, b) = (verify_seq(ctx, d), verify_seq(ctx, d + 1));
            let more = verify_one_more(ctx, d);
            assert_eq!(a.merge(more).new_tokens, b.new_tokens);
            assert_eq!(a.merge(more).context_tokens, b.context_tokens);
            assert_eq!(a.merge(more).logit_positions, b.logit_positions);
            assert_eq!(a.merge(more).attended, b.attended);
            // Hand-worked: the (d+2)-th new token sees the context, the d+1 earlier new tokens, itself.
            assert_eq!(more.attended, ctx as u64 + d as u64 + 2);
        }
    }

    /// Charges each draft forward by its exact shape, so any difference in a shape shows.
    struct ShapeHash;
    impl CostModel for ShapeHash {
        fn draft_step(&self, s: &BatchShape) -> Nanos {
            s.seqs as Nanos * 1_000_003
                + s.context_tokens * 7
                + s.attended * 13
                + s.new_tokens as Nanos
        }
        fn target_step(&self, s: &BatchShape) -> Nanos {
            self.draft_step(s)
        }
        fn describe(&self) -> String {
            "shape hash".into()
        }
    }

    #[test]
    fn predicted_drafts_price_each_position_over_the_sequences_still_drafting() {
        // Hand-folded: position p over the sequences with k > p, one draft token each.
        let by_hand = |plan: &[(u32, u32)]| -> Nanos {
            let k_max = plan.iter().map(|&(_, k)| k).max().unwrap_or(0);
            (0..k_max)
                .map(|p| {
                    let shape = plan
                        .iter()
                        .filter(|&&(_, k)| k > p)
                        .fold(BatchShape::default(), |s, &(c, _)| {
                            s.merge(draft_token(c, p))
                        });
                    ShapeHash.draft_step(&shape)
                })
                .sum()
        };
        // Bucketed lengths, one above the bucket limit (the per-position path), none drafting.
        for plan in [
            vec![(10u32, 2u32), (20, 1), (300, 5), (7, 0), (41, 5)],
            vec![(10, 40), (20, 1), (5, 33)],
            vec![(10, 0), (20, 0)],
            vec![],
        ] {
            let got = predicted_drafts_ns(&ShapeHash, plan.iter().copied());
            assert_eq!(got, by_hand(&plan), "{plan:?}");
        }
    }

    #[test]
    fn summed_shapes_equal_the_sum_of_their_terms() {
        // Contexts and drafted counts of a batch, including a context near the u32 range.
        let seqs = [(0u32, 0u32), (17, 3), (4095, 7), (u32::MAX - 64, 5), (1, 1)];
        let (m, ctx_sum, d_sum) = seqs
            .iter()
            .fold((0u32, 0u64, 0u64), |(m, c, d), &(ctx, k)| {
                (m + 1, c + ctx as u64, d + k as u64)
            });
        for position in [0u32, 1, 7] {
            let folded = seqs.iter().fold(BatchShape::default(), |s, &(ctx, _)| {
                s.merge(draft_token(ctx, position))
            });
            assert_eq!(
                draft_tokens(m, ctx_sum, position),
                folded,
                "position {position}"
            );
        }
        for scorer in [Scorer::MultiQuery, Scorer::BatchExpansion] {
            let folded = seqs.iter().fold(BatchShape::default(), |s, &(ctx, k)| {
                s.merge(scorer.verify_one_more(ctx, k))
            });
            assert_eq!(scorer.verify_more(m, ctx_sum, d_sum), folded, "{scorer:?}");
            // Dropping a sequence's last draft takes away exactly what verifying it added.
            for &(ctx, k) in seqs.iter().filter(|&&(_, k)| k > 0) {
                let shorter = scorer
                    .verify_seq(ctx, k)
                    .without(scorer.verify_one_more(ctx, k - 1));
                assert_eq!(
                    shorter,
                    scorer.verify_seq(ctx, k - 1),
                    "{scorer:?} {ctx} {k}"
                );
            }
        }
        assert_eq!(draft_tokens(0, 0, 3), BatchShape::default());
    }

    #[test]
    fn batch_expansion_reads_the_kv_once_per_verified_position() {
        // A sequence at context 1000 verifying k = 3 drafts. Multi-query: one row of 4 new tokens
        // whose attention reads the KV once: 1004 KV entries after the step.
        let mq = Scorer::MultiQuery.verify_seq(1000, 3);
        assert_eq!((mq.seqs, mq.new_tokens, mq.context_tokens), (1, 4, 1004));
        // Batch expansion: 4 one-token rows at contexts 1000..=1003, each reading its prefix:
        // 1001 + 1002 + 1003 + 1004 = 4010 entries, (k + 1)x the multi-query read less the triangle.
        let be = Scorer::BatchExpansion.verify_seq(1000, 3);
        assert_eq!((be.seqs, be.new_tokens, be.context_tokens), (4, 4, 4010));
        assert_eq!(be.logit_positions, 4);
        // Attention work per token is the same either way: token j attends to 1000 + j + 1 entries.
        assert_eq!(be.attended, mq.attended);
        // Growing by one more draft under expansion adds a row at context 1003 reading 1004 entries.
        let grown = be.merge(Scorer::BatchExpansion.verify_one_more(1000, 3));
        assert_eq!(grown, Scorer::BatchExpansion.verify_seq(1000, 4));
    }

    #[test]
    fn policies_price_drafts_without_the_catch_up() {
        // Two sequences at contexts 10 and 20 (prompts just prefilled, first tokens emitted), drafting
        // k = 2 and 1. A policy predicts one token per drafting sequence and position: 2 + 1 = 3 tokens.
        let plan = [(10u32, 2u32), (20, 1)];
        let predicted = predicted_drafts_ns(&PerToken, plan.iter().copied());
        assert_eq!(predicted, 3_000);
        // The simulated backend with a draft model charges the catch-up at position 0: each sequence's
        // whole history (context + first token) instead of one token: (11 + 21) + 1 = 33 tokens.
        let mut mirror = DraftKvMirror::default();
        let pos0 = mirror.draft_shape(&[item(0, 10, 0), item(1, 20, 0)]);
        let pos1 = mirror.draft_shape(&[item(0, 10, 1)]);
        let charged = PerToken.draft_step(&pos0) + PerToken.draft_step(&pos1);
        assert_eq!(charged, 33_000);
        // The gap is exactly the tokens the draft had not seen beyond the one each position feeds.
        assert_eq!(charged - predicted, 1_000 * (10 + 20));
        // Without a draft cache to keep in step (n-gram, or a cache in step), backend and policy agree.
        let plain = PerToken.draft_step(&draft_shape(&[item(0, 10, 0), item(1, 20, 0)]))
            + PerToken.draft_step(&draft_shape(&[item(0, 10, 1)]));
        assert_eq!(plain, predicted);
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
