//! SpecServe / AdaSpec (SoCC 2025): adaptive speculation length from draft confidence, load and SLOs.
//!
//! - **Efficiency model.** Expected emitted tokens of a step `E(k) = B + Σ_i Σ_{j≤k_i} c_ij` with
//!   `c_ij = Π_{m≤j} p_im` the draft's cumulative confidence; a position not drafted yet is extrapolated
//!   as `c_i,j+1 = c_ij · ᾱ` with ᾱ the running mean confidence (start 0.6). Step time `T(k)` comes from
//!   the cost model (k draft forwards plus verification of Σ(k_i+1) tokens). `Eff(k) = E(k) / T(k)`.
//! - **Adaptive drafter.** Before each further position, draft it only if the predicted efficiency rises;
//!   k = 0 (no speculation) when even one draft token does not beat plain decoding.
//! - **Confidence-prior verifier** (`elimination`). After drafting, drop the least-confident tail draft
//!   token (smallest `c_ij`) while doing so does not lower efficiency — drafting time is already spent,
//!   so this pays when a shorter verification is cheaper (compute-bound, or a smaller batch bucket).
//! - **SLO-aware** (`slo_aware`). Of two lengths, never take the longer one if it pushes the tightest
//!   running request's predicted per-token latency `T(k) / (1 + Σ_{j≤k_i} c_ij)` over its TPOT SLO while
//!   making it worse: the chosen k sits left of the efficiency optimum when that request is at risk.
//!   The tightest request is the one with the largest running TPOT / SLO *still within its SLO*:
//!   a request already over it misses whatever this step does, so it is not protected (at overload
//!   that would stop speculation for every step, for nothing). The stop binds only when a step long
//!   enough to break the SLO would still gain efficiency from another draft position; with
//!   Vicuna-7B + 68M on an A100 (figure 6) the longest such step is 37 ms, below the 50 ms TPOT SLO,
//!   so there it never binds.

use super::{DraftView, SpeculationPolicy};
use crate::cost::BatchShape;
use crate::shape::draft_tokens;
use crate::time::Nanos;

/// Starting running mean confidence, as in the paper.
pub const ALPHA_BAR_0: f64 = 0.6;
/// Weight of each new confidence in the running mean: follows drift over a few hundred tokens.
const ALPHA_BAR_WEIGHT: f64 = 0.01;

/// Incremental per-step state: the efficiency model is updated by one position at a time, so each
/// decision costs O(batch) instead of re-evaluating the whole plan.
#[derive(Debug, Default)]
struct StepState {
    /// Cumulative confidence of each sequence's last drafted token (1 before drafting).
    cum: Vec<f64>,
    /// Σ_j c_ij over the tokens drafted so far.
    sum_c: Vec<f64>,
    /// Draft tokens accounted for per sequence.
    drafted: Vec<u32>,
    /// Expected emitted tokens of the current plan, `B + Σ_i sum_c[i]`.
    expected: f64,
    /// Shape of the verification forward of the current plan.
    verify: BatchShape,
    /// Predicted time of the draft positions already decided.
    draft_ns: Nanos,
    /// Predicted time of the position just decided (added once its tokens show up).
    pending_draft_ns: Nanos,
    /// The request closest to its TPOT SLO (fixed for the step), once asked for: a position whose
    /// step fits within every SLO cannot be stopped by one, and most steps never ask.
    tightest: Option<Option<usize>>,
    /// The smallest TPOT SLO in the batch (`u64::MAX` without one).
    slo_floor: f64,
    /// The smallest confidence folded this step (compared with `<`, so NaNs are passed over).
    min_confidence: f64,
    /// The last verification shape predicted and its time (the next position usually asks again).
    verify_memo: Option<(BatchShape, Nanos)>,
    /// Scratch for elimination: each sequence's tail cumulative confidence.
    tails: Vec<f64>,
    /// Sequences kept at the last position decided to draft (0 once drafting stopped).
    kept_last: u32,
    /// Every position drafted so far was drafted by exactly the sequences kept for it, so
    /// `draft_ns` is the predicted drafting time of what was drafted (the engine may drop a kept
    /// sequence for want of KV or token budget, which clears it).
    plan_exact: bool,
}

/// The SpecServe adaptive policy.
#[derive(Debug)]
pub struct SpecServe {
    k_max: u32,
    elimination: bool,
    slo_aware: bool,
    alpha_bar: f64,
    step: StepState,
    /// Tests only: find the tightest request whenever a position would be drafted, as if its SLO
    /// could always bind (the reference for the shortcut).
    #[cfg(test)]
    always_find_tightest: bool,
}

impl SpecServe {
    /// SpecServe with at most `k_max` drafts; `elimination` and `slo_aware` switch the two refinements.
    pub fn new(k_max: u32, elimination: bool, slo_aware: bool) -> Self {
        SpecServe {
            k_max,
            elimination,
            slo_aware,
            alpha_bar: ALPHA_BAR_0,
            step: StepState::default(),
            #[cfg(test)]
            always_find_tightest: false,
        }
    }

    /// Starts the running mean confidence at `alpha0` instead of the paper's 0.6.
    pub fn with_alpha0(mut self, alpha0: f64) -> Self {
        self.alpha_bar = alpha0;
        self
    }

    /// The running mean confidence used to extrapolate undrafted positions.
    pub fn alpha_bar(&self) -> f64 {
        self.alpha_bar
    }

    /// Expected emitted tokens for per-sequence lengths `k` (drafted positions use real confidences,
    /// later ones are extrapolated with ᾱ).
    pub fn expected_tokens(&self, view: &DraftView, k: &[u32]) -> f64 {
        (0..k.len())
            .map(|i| 1.0 + self.seq_expected_drafts(view, i, k[i]))
            .sum()
    }

    /// `Σ_{j≤k} c_ij` for sequence `i`.
    fn seq_expected_drafts(&self, view: &DraftView, i: usize, k: u32) -> f64 {
        let conf = &view.confidences[i];
        let mut c = 1.0;
        let mut sum = 0.0;
        for j in 0..k as usize {
            c *= conf.get(j).map_or(self.alpha_bar, |&p| p as f64);
            sum += c;
        }
        sum
    }

    /// The request closest to violating its TPOT SLO among those still inside it: largest running
    /// TPOT / SLO not above 1. Requests already over their SLO are lost for attainment and are not
    /// protected (at overload every request would be, and speculation would stop for nothing).
    fn tightest(view: &DraftView) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, s) in view.seqs.iter().enumerate() {
            let Some(slo) = s.tpot_slo_ns else { continue };
            let ratio = s.running_tpot_ns().unwrap_or(0.0) / slo as f64;
            if ratio <= 1.0 && best.is_none_or(|(_, r)| ratio > r) {
                best = Some((i, ratio));
            }
        }
        best.map(|b| b.0)
    }

    /// Whether no request's TPOT SLO can stop the position whose step would take `t_next`: each
    /// request's predicted per-token latency is `t_next` over `1 + Σ_j c_ij` plus its extrapolated
    /// next term, a divisor of at least 1 (or NaN, which compares as within) while no confidence
    /// folded this step is negative and ᾱ is not negative (nor NaN: then the request is found), so
    /// it is at most `t_next`, here within the smallest SLO of the batch. The tightest request then
    /// need not be found.
    fn slo_cannot_bind(&self, t_next: f64) -> bool {
        #[cfg(test)]
        if self.always_find_tightest {
            return false;
        }
        let st = &self.step;
        t_next <= st.slo_floor && st.min_confidence >= 0.0 && self.alpha_bar >= 0.0
    }

    /// Starts a step: nothing drafted, verification of one token per sequence.
    fn begin_step(&mut self, view: &DraftView) {
        let n = view.seqs.len();
        let st = &mut self.step;
        st.cum.clear();
        st.cum.resize(n, 1.0);
        st.sum_c.clear();
        st.sum_c.resize(n, 0.0);
        st.drafted.clear();
        st.drafted.resize(n, 0);
        st.expected = n as f64;
        // One token per sequence at its context: the shape `draft_tokens` gives from the sums (the
        // same counts as merging `BatchShape::one(ctx, 1, false, 1)` per sequence).
        // Without any SLO the floor stays at u64::MAX: no request is then the tightest either.
        let (mut context_sum, mut slo_floor) = (0u64, u64::MAX);
        for s in view.seqs {
            context_sum += s.context_tokens as u64;
            slo_floor = slo_floor.min(s.tpot_slo_ns.unwrap_or(u64::MAX));
        }
        st.slo_floor = slo_floor as f64;
        st.min_confidence = f64::INFINITY;
        st.verify = draft_tokens(n as u32, context_sum, 0);
        st.draft_ns = 0;
        st.pending_draft_ns = 0;
        st.verify_memo = None;
        st.kept_last = 0;
        st.plan_exact = true;
        st.tightest = None;
    }

    /// Folds the confidences drafted since the last call into the plan, and the running mean ᾱ.
    fn absorb_drafted(&mut self, view: &DraftView) {
        let st = &mut self.step;
        st.draft_ns += std::mem::take(&mut st.pending_draft_ns);
        let (mut added, mut ctx_sum, mut drafted_sum) = (0u32, 0u64, 0u64);
        // The running sums in locals over the loop (registers), not in `self` (a store per token).
        let mut min_confidence = st.min_confidence;
        let (mut alpha_bar, mut expected) = (self.alpha_bar, st.expected);
        let per_seq = view
            .confidences
            .iter()
            .zip(view.seqs)
            .zip(st.drafted.iter_mut())
            .zip(st.cum.iter_mut().zip(st.sum_c.iter_mut()));
        for (((conf, seq), drafted), (cum, sum_c)) in per_seq {
            // Usually none or one new confidence: a length test, not a slice iterator, per sequence.
            while let Some(&p) = conf.get(*drafted as usize) {
                let p = p as f64;
                if p < min_confidence {
                    min_confidence = p;
                }
                alpha_bar += ALPHA_BAR_WEIGHT * (p - alpha_bar);
                *cum *= p;
                *sum_c += *cum;
                expected += *cum;
                added += 1;
                ctx_sum += seq.context_tokens as u64;
                drafted_sum += *drafted as u64;
                *drafted += 1;
            }
        }
        st.min_confidence = min_confidence;
        (self.alpha_bar, st.expected) = (alpha_bar, expected);
        // Drafted sequences are kept ones: as many as were kept means exactly those.
        st.plan_exact &= added == st.kept_last;
        st.kept_last = 0;
        st.verify = st
            .verify
            .merge(view.scorer.verify_more(added, ctx_sum, drafted_sum));
    }

    /// Whether the step state holds exactly the plan `k`: every drafted confidence folded in, and
    /// each position drafted by the sequences kept for it (the engine's calling sequence, unless it
    /// dropped a sequence or drafting ended at the caps with no further decision).
    fn step_matches(&self, k: &[u32]) -> bool {
        let st = &self.step;
        st.plan_exact && st.drafted.len() == k.len() && st.drafted.iter().eq(k.iter())
    }

    /// [`Self::plan_from_view`] from the step state: the drafting time predicted position by position
    /// sums to the whole plan's, `cum` and `sum_c` were accumulated in the same order and the
    /// verification shape grown token by token sums to the same counts, so all are the same to
    /// the bit.
    fn plan_from_step(&mut self) -> (f64, f64, BatchShape) {
        let st = &mut self.step;
        st.tails.clone_from(&st.cum);
        let e = st.sum_c.iter().fold(0.0, |e, &sum| e + (1.0 + sum));
        (st.draft_ns as f64, e, st.verify)
    }

    /// Predicted drafting time of plan `k`, its expected tokens and verification shape, with each
    /// sequence's tail cumulative confidence left in `step.tails`.
    fn plan_from_view(&mut self, view: &DraftView, k: &[u32]) -> (f64, f64, BatchShape) {
        let draft_ns = view.predict_drafts_ns(k) as f64;
        // Per sequence, the cumulative confidence of its tail token and Σ_j c_ij.
        let tails = &mut self.step.tails;
        tails.clear();
        let mut e = 0.0;
        for (i, &ki) in k.iter().enumerate() {
            // As `expected_tokens` and `cumulative_confidence`, in one pass.
            let conf = &view.confidences[i];
            let (mut c, mut sum) = (1.0f64, 0.0f64);
            // Drafted positions with their confidences, then any beyond extrapolated with ᾱ.
            let drafted = (ki as usize).min(conf.len());
            for &p in &conf[..drafted] {
                c *= p as f64;
                sum += c;
            }
            for _ in drafted..ki as usize {
                c *= self.alpha_bar;
                sum += c;
            }
            tails.push(if ki as usize <= conf.len() {
                c
            } else {
                view.cumulative_confidence(i, ki as usize)
            });
            e += 1.0 + sum;
        }
        let verify = view
            .seqs
            .iter()
            .zip(k.iter())
            .fold(BatchShape::default(), |s, (q, &ki)| {
                s.merge(view.scorer.verify_seq(q.context_tokens, ki))
            });
        (draft_ns, e, verify)
    }
}

impl SpeculationPolicy for SpecServe {
    fn observes(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        match (self.elimination, self.slo_aware) {
            (true, true) => "specserve".into(),
            (false, true) => "specserve-no-elim".into(),
            (true, false) => "specserve-no-slo".into(),
            (false, false) => "specserve-basic".into(),
        }
    }
    fn k_max(&self) -> u32 {
        self.k_max
    }

    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
        let fresh = view.position == 0 || self.step.drafted.len() != view.seqs.len();
        if fresh {
            self.begin_step(view);
        }
        if view.position > 0 {
            // At position 0 nothing is drafted yet this step: nothing to fold.
            self.absorb_drafted(view);
        }
        if fresh && view.position > 0 {
            // Joined mid-step (not in the engine's calling sequence, but cheap to support): the drafting
            // already done is predicted from the plan.
            let k = self.step.drafted.clone();
            self.step.draft_ns = view.predict_drafts_ns(&k);
            self.step.plan_exact = false;
        }
        if view.position >= self.k_max || !keep.iter().any(|&k| k) {
            keep.fill(false);
            return;
        }
        let verify_now = self.step.verify;
        let t_verify_now = match self.step.verify_memo {
            Some((shape, t)) if shape == verify_now => t,
            _ => view.cost.target_step(&verify_now),
        };
        let st = &self.step;
        // Shapes from running sums (`draft_tokens`, `verify_more`): this loop runs once per sequence
        // and draft position, and only the expected tokens need each sequence's own term, in order.
        let (mut kept, mut ctx_sum, mut drafted_sum) = (0u32, 0u64, 0u64);
        let (mut expected_next, alpha_bar) = (st.expected, self.alpha_bar);
        let per_seq = keep.iter().zip(view.seqs).zip(&st.cum).zip(&st.drafted);
        for (((&k, seq), &cum), &drafted) in per_seq {
            if k {
                kept += 1;
                ctx_sum += seq.context_tokens as u64;
                drafted_sum += drafted as u64;
                expected_next += cum * alpha_bar;
            }
        }
        let draft_shape = draft_tokens(kept, ctx_sum, view.position);
        let verify_next = st
            .verify
            .merge(view.scorer.verify_more(kept, ctx_sum, drafted_sum));
        let t_draft = view.cost.draft_step(&draft_shape);
        let t_verify_next = view.cost.target_step(&verify_next);
        let t_now = (st.draft_ns + t_verify_now).max(1) as f64;
        let t_next = (st.draft_ns + t_draft + t_verify_next).max(1) as f64;
        let mut go = expected_next / t_next > st.expected / t_now;
        if go && self.slo_aware && !self.slo_cannot_bind(t_next) {
            let st = &mut self.step;
            if let Some(i) = *st.tightest.get_or_insert_with(|| Self::tightest(view)) {
                // Per-token latency of the tightest request now and with one more draft position.
                let slo = view.seqs[i].tpot_slo_ns.unwrap_or(u64::MAX) as f64;
                let l_now = t_now / (1.0 + st.sum_c[i]);
                let extra = if keep[i] {
                    st.cum[i] * self.alpha_bar
                } else {
                    0.0
                };
                let l_next = t_next / (1.0 + st.sum_c[i] + extra);
                if l_next > slo && l_next > l_now {
                    go = false;
                }
            }
        }
        self.step.verify_memo = Some((verify_next, t_verify_next));
        if go {
            self.step.pending_draft_ns = t_draft;
            self.step.kept_last = kept;
        } else {
            keep.fill(false);
        }
    }

    fn finalize(&mut self, view: &DraftView, k: &mut [u32]) {
        if !self.elimination {
            return;
        }
        // Predicted drafting time (fixed: already spent), each sequence's tail cumulative confidence
        // and the expected tokens of the plan, and the plan's verification shape, kept as tail
        // tokens are dropped (each drop takes away what verifying that one more draft added): a
        // shape per candidate instead of a pass over the batch.
        let (draft_ns, mut e, mut verify) = if self.step_matches(k) {
            self.plan_from_step()
        } else {
            self.plan_from_view(view, k)
        };
        let tails = &mut self.step.tails;
        let mut eff = e / (draft_ns + view.cost.target_step(&verify) as f64).max(1.0);
        loop {
            // The least-confident tail token over all sequences.
            let Some((i, c)) = least_tail(k, tails) else {
                return;
            };
            k[i] -= 1;
            let e2 = e - c;
            let shorter = verify.without(
                view.scorer
                    .verify_one_more(view.seqs[i].context_tokens, k[i]),
            );
            let eff2 = e2 / (draft_ns + view.cost.target_step(&shorter) as f64).max(1.0);
            if eff2 >= eff {
                e = e2;
                eff = eff2;
                verify = shorter;
                tails[i] = view.cumulative_confidence(i, k[i] as usize);
            } else {
                k[i] += 1;
                return;
            }
        }
    }
}

/// The sequence whose tail draft token is the least confident, among those with a draft, and that
/// tail's cumulative confidence: the first smallest under [`f64::total_cmp`], as `min_by` with
/// `total_cmp` picks it, but with the running minimum's order key kept instead of recomputed at
/// each comparison.
fn least_tail(k: &[u32], tails: &[f64]) -> Option<(usize, f64)> {
    let mut least: Option<(usize, i64)> = None;
    for (i, (&ki, &tail)) in k.iter().zip(tails).enumerate() {
        let key = total_order_key(tail);
        if ki > 0 && least.is_none_or(|(_, l)| key < l) {
            least = Some((i, key));
        }
    }
    least.map(|(i, _)| (i, tails[i]))
}

/// The integer `f64::total_cmp` compares: `a.total_cmp(&b) == key(a).cmp(&key(b))` (negative
/// numbers have their magnitude bits flipped so that their order reverses).
fn total_order_key(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::SeqView;
    use super::*;
    use crate::cost::CostModel;

    #[test]
    fn stops_where_the_hand_computed_marginal_efficiency_falls() {
        // One sequence, FixedCost (draft 1.1 ms/position, target 10 + 0.5·tokens ms). Confidences drafted
        // so far: 0.9, 0.8, 0.5.
        //   k=0: E=1,           T=10.5        -> 0.09524
        //   k=1: E=1.9,         T=1.1+11.0    -> 0.15702
        //   k=2: E=2.62,        T=2.2+11.5    -> 0.19124
        //   k=3: E=2.98,        T=3.3+12.0    -> 0.19477
        //   k=4: E=2.98+0.36·ᾱ(0.6)=3.196, T=4.4+12.5 -> 0.18911  (falls: stop before position 4)
        let mut p = SpecServe::new(8, false, false);
        let s = seqs(1);
        let conf_at = [vec![], vec![0.9f32], vec![0.9, 0.8], vec![0.9, 0.8, 0.5]];
        for (pos, conf) in conf_at.iter().enumerate() {
            let c = vec![conf.clone()];
            let mut keep = [true];
            p.draft_next(&view(&s, &c, &[true], pos as u32), &mut keep);
            assert_eq!(keep[0], pos < 3, "position {pos}");
        }
    }

    /// A draft forward of a fixed `.0` ns; a target forward of 10 ms + 0.5 ms per token.
    struct FixedDraft(Nanos);
    impl CostModel for FixedDraft {
        fn draft_step(&self, _: &BatchShape) -> Nanos {
            self.0
        }
        fn target_step(&self, s: &BatchShape) -> Nanos {
            10_000_000 + 500_000 * s.new_tokens as Nanos
        }
        fn describe(&self) -> String {
            "fixed draft".into()
        }
    }

    /// Whether `policy` drafts the first position of a one-sequence step under `cost`.
    fn drafts_first_position(policy: &mut dyn SpeculationPolicy, cost: &dyn CostModel) -> bool {
        let s = seqs(1);
        let c = vec![vec![]];
        let v = DraftView {
            now: 0,
            position: 0,
            seqs: &s,
            confidences: &c,
            active: &[true],
            cost,
            scorer: Default::default(),
            lookahead: None,
        };
        let mut keep = [true];
        policy.draft_next(&v, &mut keep);
        keep[0]
    }

    #[test]
    fn no_speculation_when_one_token_does_not_pay() {
        // With confidence extrapolated at 0.6 and a draft forward as expensive as the target's fixed part,
        // k=1 gives 1.6/(11 + 11) < 1/10.5: k = 0.
        let mut p = SpecServe::new(8, true, true);
        assert!(!drafts_first_position(&mut p, &FixedDraft(11_000_000)));
    }

    #[test]
    fn the_prior_confidence_decides_the_first_draft() {
        // One sequence, draft 7 ms, target 10 + 0.5·tokens ms: k = 0 gives 1 / 10.5 ms = 0.0952/ms; k = 1
        // gives (1 + ᾱ) / (7 + 11) ms, i.e. 0.0889 at the paper's ᾱ = 0.6 (no draft) and 0.1056 at a
        // calibrated ᾱ = 0.9 (draft). Through the config: an unset alpha0 takes the acceptance model's mean
        // confidence, Beta(9, 1) → 0.9; an explicit one is kept.
        let cost = FixedDraft(7_000_000);
        let decide =
            |p: &crate::policy::PolicyConfig| drafts_first_position(&mut *p.build(), &cost);
        let unset = crate::policy::PolicyConfig::Specserve {
            k_max: 8,
            elimination: true,
            slo_aware: true,
            alpha0: None,
        };
        assert!(!decide(&unset));
        let calibrated = crate::acceptance::AcceptanceConfig::Calibrated {
            confidence_beta: [9.0, 1.0],
            curve: None,
            position_decay: 1.0,
            categories: Default::default(),
            position_alphas: None,
        };
        let mean = calibrated.mean_confidence();
        assert!((mean.unwrap() - 0.9).abs() < 1e-12);
        assert!(decide(&unset.with_prior_confidence(mean)));
        let explicit = crate::policy::PolicyConfig::Specserve {
            k_max: 8,
            elimination: true,
            slo_aware: true,
            alpha0: Some(0.6),
        };
        assert!(!decide(&explicit.with_prior_confidence(mean)));
    }

    #[test]
    fn elimination_drops_tail_tokens_only_when_efficiency_does_not_fall() {
        // A verify cost with a bucket edge: up to 4 tokens cost 10 ms, 5..8 cost 20 ms.
        struct Bucketed;
        impl CostModel for Bucketed {
            fn draft_step(&self, _: &BatchShape) -> Nanos {
                1_000_000
            }
            fn target_step(&self, s: &BatchShape) -> Nanos {
                if s.new_tokens <= 4 {
                    10_000_000
                } else {
                    20_000_000
                }
            }
            fn describe(&self) -> String {
                "bucketed".into()
            }
        }
        // Two sequences drafted 2 tokens each (verify 6 tokens, 20 ms + 2 ms drafting).
        // Seq 1's tail has cumulative confidence 0.9·0.1 = 0.09 (least). Dropping it: 5 tokens, still
        // 20 ms, E falls -> keep. So nothing is dropped with these confidences...
        let s = seqs(2);
        let conf = vec![vec![0.9f32, 0.9], vec![0.9, 0.1]];
        let v = DraftView {
            now: 0,
            position: 2,
            seqs: &s,
            confidences: &conf,
            active: &[true, true],
            cost: &Bucketed,
            scorer: Default::default(),
            lookahead: None,
        };
        let mut k = [2u32, 2];
        SpecServe::new(8, true, false).finalize(&v, &mut k);
        // E = 2 + (0.9 + 0.81) + (0.9 + 0.09) = 4.7, T = 22 -> 0.2136. Drop 0.09: E 4.61, verify 5 tok
        // = 20 ms -> 0.2095 < 0.2136: stop, nothing dropped.
        assert_eq!(k, [2, 2]);
        // ...but with one sequence drafting 3 (verify 4+2... ) we cross the bucket edge:
        // k = (3, 1): verify 4 + 2 = 6 tokens -> 20 ms, drafting 3 ms. E = 2 + (0.9+0.81+0.729) + 0.9 = 5.339
        // -> 0.2321. Drop seq 1's only token (c = 0.9)? The least is seq 0's tail 0.729: E 4.61, verify 5
        // tokens = 20 ms -> 0.2004: worse, stop.
        let conf = vec![vec![0.9f32, 0.9, 0.9], vec![0.9]];
        let v = DraftView {
            now: 0,
            position: 3,
            seqs: &s,
            confidences: &conf,
            active: &[true, true],
            cost: &Bucketed,
            scorer: Default::default(),
            lookahead: None,
        };
        let mut k = [3u32, 1];
        SpecServe::new(8, true, false).finalize(&v, &mut k);
        assert_eq!(k, [3, 1]);
        // Low-confidence tails: k = (1, 1) with confidences 0.05 each: verify 4 tokens = 10 ms.
        // Here with k = (2, 1), confidences (0.9, 0.05), (0.3): verify 5 tokens = 20 ms, drafting 2 ms,
        // E = 2 + 0.9 + 0.045 + 0.3 = 3.245 -> 0.1475. Dropping the 0.045 tail: verify 4 tokens = 10 ms,
        // E = 3.2 -> 3.2 / 12 = 0.2667 >= 0.1475: dropped. Next least is 0.3 (seq 1): E 2.9, verify 3
        // tokens = 10 ms -> 0.2417 < 0.2667: stop.
        let conf = vec![vec![0.9f32, 0.05], vec![0.3]];
        let v = DraftView {
            now: 0,
            position: 2,
            seqs: &s,
            confidences: &conf,
            active: &[true, true],
            cost: &Bucketed,
            scorer: Default::default(),
            lookahead: None,
        };
        let mut k = [2u32, 1];
        SpecServe::new(8, true, false).finalize(&v, &mut k);
        assert_eq!(k, [1, 1]);
    }

    /// Keeps after position 1 of two sequences with FixedCost: A drafted 0.95, B (the only one
    /// with a TPOT SLO, `slo_ns`, 10 tokens out in `elapsed_ns`) drafted `b_confidence`.
    fn two_sequence_slo_case(
        slo_ns: Nanos,
        elapsed_ns: Nanos,
        b_confidence: f32,
        slo_aware: bool,
    ) -> [bool; 2] {
        let mut s = seqs(2);
        s[1] = SeqView {
            tpot_slo_ns: Some(slo_ns),
            tokens_out: 11,
            decode_elapsed_ns: elapsed_ns,
            ..s[1]
        };
        let c = vec![vec![0.95f32], vec![b_confidence]];
        let mut keep = [true, true];
        SpecServe::new(8, false, slo_aware).draft_next(&view(&s, &c, &[true, true], 1), &mut keep);
        keep
    }

    #[test]
    fn slo_awareness_stops_short_of_the_efficiency_optimum_for_a_request_at_risk() {
        // Two sequences at position 1 with FixedCost (draft 1 + 0.1·n ms, target 10 + 0.5·tokens ms):
        // A drafted 0.95, B (the only one with an SLO, 12.5 ms) drafted 0.1. Going from k = (1,1) to (2,2):
        //   T: 1.2 + 12 = 13.2 ms -> 2.4 + 13 = 15.4 ms
        //   E: 2 + 0.95 + 0.1 = 3.05 -> 3.05 + 0.6·(0.95 + 0.1) = 3.68; Eff 0.2311 -> 0.2390 (rises)
        //   B's per-token latency: 13.2 / 1.1 = 12.0 ms -> 15.4 / 1.16 = 13.28 ms (> 12.5 and worse)
        // so the plain adaptive drafter continues and the SLO-aware one stops.
        let case = |slo_aware| two_sequence_slo_case(12_500_000, 110_000_000, 0.1, slo_aware);
        assert_eq!(case(false), [true, true]);
        assert_eq!(case(true), [false, false]);
    }

    #[test]
    fn slo_awareness_does_not_protect_a_request_already_over_its_slo() {
        // The case above, but B has already run at 20 ms per token against its 12.5 ms SLO: it misses
        // whatever this step does, so it is not the tightest request still inside its SLO and the
        // SLO-aware drafter continues like the plain one.
        assert_eq!(
            two_sequence_slo_case(12_500_000, 200_000_000, 0.1, true),
            [true, true]
        );
    }
    /// Drafts under the engine's calling sequence (a draft confidence per kept sequence and
    /// position, a sequence stopping at its cap) and returns the policy and the confidences; with
    /// `drop_at`, the engine fails to draft sequence 0 at that position (as for want of KV).
    fn draft_like_the_engine(drop_at: Option<u32>) -> (SpecServe, Vec<SeqView>, Vec<Vec<f32>>) {
        let mut s = seqs(3);
        s[1].context_tokens = 700;
        s[2].context_tokens = 40;
        let caps = [8usize, 8, 2];
        let confidence = |i: usize, pos: usize| 0.95 - 0.07 * i as f32 - 0.01 * pos as f32;
        // A high prior ᾱ, so that drafting goes on for several positions.
        let mut p = SpecServe::new(8, true, false).with_alpha0(0.95);
        let mut conf = vec![Vec::new(); 3];
        let mut active = vec![true; 3];
        for pos in 0..8u32 {
            let mut keep = active.clone();
            p.draft_next(&view(&s, &conf, &active, pos), &mut keep);
            for i in 0..3 {
                active[i] = keep[i] && !(i == 0 && drop_at == Some(pos));
                if active[i] {
                    conf[i].push(confidence(i, pos as usize));
                    active[i] = conf[i].len() < caps[i];
                }
            }
            if !keep.iter().any(|&k| k) {
                break;
            }
        }
        (p, s, conf)
    }

    #[test]
    fn the_plan_kept_through_the_step_is_the_plan_recomputed_from_the_view() {
        let (mut p, s, conf) = draft_like_the_engine(None);
        let k: Vec<u32> = conf.iter().map(|c| c.len() as u32).collect();
        // Several positions drafted, one sequence stopped early at its cap.
        assert!(k[0] >= 3 && k[2] == 2, "{k:?}");
        assert!(p.step_matches(&k));
        let v = view(&s, &conf, &[false; 3], k[0]);
        let (draft_a, e_a, verify_a) = p.plan_from_step();
        let tails_a = p.step.tails.clone();
        let (draft_b, e_b, verify_b) = p.plan_from_view(&v, &k);
        assert_eq!(draft_a.to_bits(), draft_b.to_bits());
        assert_eq!(e_a.to_bits(), e_b.to_bits());
        assert_eq!(verify_a, verify_b);
        let bits = |t: &[f64]| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&tails_a), bits(&p.step.tails));
        // A plan other than the one drafted is not taken from the step.
        assert!(!p.step_matches(&[k[0] - 1, k[1], k[2]]));
    }

    #[test]
    fn finding_the_tightest_request_only_when_its_slo_can_bind_changes_no_decision() {
        // Random batches drafted under the engine's calling sequence by the policy and by one that
        // finds the tightest request for every position it would draft: the same keeps and the
        // same final lengths. Some confidences and priors are negative (the shortcut's condition
        // fails) and some SLOs are shorter than a step (it binds).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let (mut skipped, mut found, mut positions) = (0, 0, 0);
        for trial in 0..800 {
            let n = 1 + next(8) as usize;
            let mut s = seqs(n);
            for q in &mut s {
                q.context_tokens = 10 + next(2000) as u32;
                q.tokens_out = 1 + next(40) as u32;
                q.decode_elapsed_ns = next(30_000_000) * (q.tokens_out - 1) as u64;
                q.tpot_slo_ns = (next(4) > 0).then(|| 3_000_000 + next(30_000_000));
            }
            let alpha0 = if trial % 5 == 0 {
                -0.3
            } else {
                0.3 + next(70) as f64 / 100.0
            };
            let negative = trial % 3 == 0;
            let mut fast = SpecServe::new(8, true, true).with_alpha0(alpha0);
            let mut reference = SpecServe::new(8, true, true).with_alpha0(alpha0);
            reference.always_find_tightest = true;
            let mut conf = vec![Vec::new(); n];
            let mut active = vec![true; n];
            for pos in 0..8u32 {
                let v = view(&s, &conf, &active, pos);
                let (mut keep_fast, mut keep_ref) = (active.clone(), active.clone());
                fast.draft_next(&v, &mut keep_fast);
                reference.draft_next(&v, &mut keep_ref);
                assert_eq!(keep_fast, keep_ref, "trial {trial} position {pos}");
                positions += 1;
                if !keep_ref.iter().any(|&k| k) {
                    break;
                }
                for i in 0..n {
                    active[i] = keep_ref[i];
                    if active[i] {
                        let p = next(1000) as f32 / 1000.0;
                        conf[i].push(if negative && next(3) == 0 { -p } else { p });
                    }
                }
            }
            let mut k_fast: Vec<u32> = conf.iter().map(|c| c.len() as u32).collect();
            let mut k_ref = k_fast.clone();
            let v = view(
                &s,
                &conf,
                &active,
                k_fast.iter().max().copied().unwrap_or(0),
            );
            fast.finalize(&v, &mut k_fast);
            reference.finalize(&v, &mut k_ref);
            assert_eq!(k_fast, k_ref, "trial {trial}");
            let asked = reference.step.tightest.flatten().is_some();
            skipped += usize::from(asked && fast.step.tightest.is_none());
            found += usize::from(fast.step.tightest.flatten().is_some());
        }
        // Both ways were taken: steps where the shortcut skipped a request the reference found,
        // and steps where the policy had to find it.
        assert!(
            positions > 1000 && skipped > 20 && found > 20,
            "{positions} positions, {skipped} skipped, {found} found"
        );
    }

    #[test]
    fn a_negative_confidence_makes_the_policy_find_the_tightest_request() {
        // The case of `slo_awareness_stops_short...` with B's confidence -0.1 and SLO 16 ms. From
        // k = (1,1) to (2,2): T 13.2 -> 15.4 ms, within B's SLO; E 2.85 -> 2.85 + ᾱ·(0.95 - 0.1)
        // with ᾱ = 0.596465: 3.3570, Eff 0.2159 -> 0.2180 (rises). B's per-token latency: 13.2 / 0.9
        // = 14.67 ms -> 15.4 / (0.9 - 0.0596) = 18.32 ms, over 16 ms and worse: a divisor below 1
        // puts it over the SLO although the step is within it, so drafting stops.
        let case = |slo_aware| two_sequence_slo_case(16_000_000, 100_000_000, -0.1, slo_aware);
        assert_eq!(case(false), [true, true]);
        assert_eq!(case(true), [false, false]);
    }

    #[test]
    fn least_tail_picks_what_min_by_total_cmp_picks() {
        let min_by = |k: &[u32], tails: &[f64]| {
            (0..k.len())
                .filter(|&i| k[i] > 0)
                .map(|i| (i, tails[i]))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        let bits = |x: Option<(usize, f64)>| x.map(|(i, c)| (i, c.to_bits()));
        // By hand: the first of equal tails; -0 before +0; only sequences with a draft count.
        assert_eq!(
            bits(least_tail(&[1, 1], &[0.5, 0.5])),
            Some((0, 0.5f64.to_bits()))
        );
        assert_eq!(
            bits(least_tail(&[1, 1], &[0.0, -0.0])),
            Some((1, (-0.0f64).to_bits()))
        );
        assert_eq!(
            bits(least_tail(&[0, 2], &[0.1, 0.3])),
            Some((1, 0.3f64.to_bits()))
        );
        assert_eq!(least_tail(&[0, 0], &[0.1, 0.3]), None);
        // Against `min_by` on mixes of ties, signed zeros, NaNs, infinities, subnormals and
        // arbitrary bit patterns.
        let special = [
            0.0,
            -0.0,
            0.5,
            0.09,
            0.729,
            1.0,
            -0.25,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for trial in 0..4000 {
            let n = 1 + trial % 13;
            let (mut k, mut tails) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let r = next();
                k.push((r % 3) as u32);
                tails.push(if trial % 2 == 0 {
                    special[(r >> 8) as usize % special.len()]
                } else {
                    f64::from_bits(next())
                });
            }
            assert_eq!(
                bits(least_tail(&k, &tails)),
                bits(min_by(&k, &tails)),
                "{k:?} {tails:?}"
            );
        }
    }

    #[test]
    fn a_sequence_the_engine_did_not_draft_sends_finalize_back_to_the_view() {
        let (p, _, conf) = draft_like_the_engine(Some(1));
        let k: Vec<u32> = conf.iter().map(|c| c.len() as u32).collect();
        assert_eq!(k[0], 1, "sequence 0 stops where the engine dropped it");
        assert!(!p.step_matches(&k));
    }
}
