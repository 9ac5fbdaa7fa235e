//! SmartSpec (Liu et al., 2024): choose the speculation length that maximises predicted goodput —
//! expected emitted tokens per second — from a running estimate of the acceptance rate.
//!
//! `goodput(k) = Σ_i (1 − α^{k_i+1}) / (1 − α) / T(k)` with `k_i = min(k, cap_i)` and `T(k)` the predicted
//! step time (k draft forwards plus a verification of Σ(k_i+1) tokens). k = 0's goodput is multiplied by
//! `bias` (1.1: prefer not speculating unless speculation wins by 10%). The choice is made once, before
//! the first draft position, since SmartSpec does not look at confidences.

use super::{DraftView, SpeculationPolicy, StepOutcome};
use crate::acceptance::expected_emitted;

/// Weight of the prior `alpha0`, in pseudo-tokens, and per-step decay of the running counts: the
/// estimate follows changes in acceptance within a few hundred drafted tokens.
const PRIOR_TOKENS: f64 = 20.0;
const DECAY: f64 = 0.98;

/// SmartSpec goodput argmax.
#[derive(Debug)]
pub struct SmartSpec {
    k_max: u32,
    bias: f64,
    /// Decayed counts of accepted tokens and of rejections (a run ending early is one rejection).
    successes: f64,
    failures: f64,
    chosen: u32,
}

impl SmartSpec {
    /// SmartSpec with at most `k_max` drafts, initial acceptance `alpha0` and bias toward k = 0.
    pub fn new(k_max: u32, alpha0: f64, bias: f64) -> Self {
        SmartSpec {
            k_max,
            bias,
            successes: alpha0 * PRIOR_TOKENS,
            failures: (1.0 - alpha0) * PRIOR_TOKENS,
            chosen: 0,
        }
    }

    /// Current acceptance-rate estimate: the maximum-likelihood α of a truncated geometric run model.
    pub fn alpha(&self) -> f64 {
        self.successes / (self.successes + self.failures)
    }

    /// The goodput-maximising k for this view (with the k = 0 bias applied).
    pub fn choose(&self, view: &DraftView) -> u32 {
        let alpha = self.alpha();
        let mut best = (0u32, f64::MIN);
        let mut k_i = vec![0u32; view.seqs.len()];
        for k in 0..=self.k_max {
            for (i, s) in view.seqs.iter().enumerate() {
                k_i[i] = k.min(s.max_draft);
            }
            let tokens: f64 = k_i.iter().map(|&ki| expected_emitted(alpha, ki)).sum();
            let t = view.predict_step_ns(&k_i).max(1) as f64;
            let mut goodput = tokens / t;
            if k == 0 {
                goodput *= self.bias;
            }
            if goodput > best.1 {
                best = (k, goodput);
            }
        }
        best.0
    }
}

impl SpeculationPolicy for SmartSpec {
    fn name(&self) -> String {
        "smartspec".into()
    }
    fn k_max(&self) -> u32 {
        self.k_max
    }
    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
        if view.position == 0 {
            self.chosen = self.choose(view);
        }
        if view.position >= self.chosen {
            keep.fill(false);
        }
    }
    fn observe(&mut self, outcome: &StepOutcome) {
        let (mut s, mut f) = (0.0, 0.0);
        for o in outcome.seqs.iter().filter(|o| o.drafted > 0) {
            s += o.accepted as f64;
            if o.accepted < o.drafted {
                f += 1.0;
            }
        }
        if s + f > 0.0 {
            self.successes = self.successes * DECAY + s;
            self.failures = self.failures * DECAY + f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::SeqOutcome;
    use super::*;

    #[test]
    fn picks_the_hand_computed_goodput_argmax() {
        // One sequence, alpha = 0.7 (prior only), FixedCost: draft 1.1 ms per position (1 + 0.1·1),
        // target 10 + 0.5·(k+1) ms.
        //   k=0: 1/10.5 = 0.09524 (×1.1 = 0.10476)
        //   k=1: 1.7/(1.1+11.0) = 0.14050
        //   k=2: 2.19/(2.2+11.5) = 0.15985
        //   k=3: 2.533/(3.3+12.0) = 0.16556
        //   k=4: 2.7731/(4.4+12.5) = 0.16409
        // so k = 3.
        let p = SmartSpec::new(8, 0.7, 1.1);
        let s = seqs(1);
        let conf = vec![vec![]];
        let active = [true];
        assert_eq!(p.choose(&view(&s, &conf, &active, 0)), 3);
    }

    #[test]
    fn low_acceptance_and_bias_choose_no_speculation() {
        // alpha = 0.1: k=1 gives 1.1/12.1 = 0.0909 < 1.1 · 1/10.5 = 0.1048.
        let p = SmartSpec::new(8, 0.1, 1.1);
        let s = seqs(1);
        let conf = vec![vec![]];
        assert_eq!(p.choose(&view(&s, &conf, &[true], 0)), 0);
    }

    #[test]
    fn running_alpha_follows_observations() {
        let mut p = SmartSpec::new(8, 0.7, 1.1);
        for _ in 0..500 {
            // 4 drafted, 1 accepted then a rejection: alpha MLE = 1 / (1 + 1) = 0.5.
            p.observe(&StepOutcome {
                seqs: &[SeqOutcome {
                    drafted: 4,
                    accepted: 1,
                }],
                step_ns: 1,
            });
        }
        assert!((p.alpha() - 0.5).abs() < 1e-3, "{}", p.alpha());
    }
}
