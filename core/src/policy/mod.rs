//! Speculation policies: how many tokens to draft, decided one draft position at a time.
//!
//! The engine drafts sequentially — one draft forward per position for every sequence still drafting —
//! and consults the policy before each further position with a [`DraftView`]: the draft confidences
//! produced so far, the batch, the clock and a cost model for predicting step time. After drafting the
//! policy may trim tail tokens per sequence ([`SpeculationPolicy::finalize`]), and after verification it
//! observes the outcome. Policies see confidences, never acceptance outcomes, except the oracle, which
//! asks for [`DraftView::lookahead`].
//!
//! Policies keep no clock and no global state: times come in through the view, so the same policy runs
//! under the simulator's virtual clock and the live engine's wall clock.
//!
//! | policy | file | decision |
//! |---|---|---|
//! | `none` | [`none`] | never draft |
//! | `static` | [`static_k`] | draft exactly k |
//! | `batch_table` | [`batch_table`] | k from the batch size (vLLM dynamic speculative decoding) |
//! | `threshold` | [`threshold`] | stop when the batch-mean confidence drops below a threshold |
//! | `smartspec` | [`smartspec`] | argmax of predicted goodput with a running acceptance rate |
//! | `specserve` | [`specserve`] | adaptive: marginal efficiency from confidences, elimination, SLO-aware |
//! | `oracle` | [`oracle`] | knows the acceptance outcomes; an upper bound |

pub mod batch_table;
pub mod none;
pub mod oracle;
pub mod smartspec;
pub mod specserve;
pub mod static_k;
pub mod threshold;

use crate::cost::CostModel;
use crate::shape;
use crate::time::Nanos;
use serde::{Deserialize, Serialize};

/// What a policy sees of one sequence in the batch during a decode step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeqView {
    /// Tokens in the target's KV cache before this step.
    pub context_tokens: u32,
    /// Most draft tokens this sequence may take this step (remaining output − 1, KV room, engine cap).
    pub max_draft: u32,
    /// Output tokens emitted so far (≥ 1 in a decode step: prefill emitted the first).
    pub tokens_out: u32,
    /// Time since the request's first token.
    pub decode_elapsed_ns: Nanos,
    /// The request's TPOT SLO, if the scenario sets one.
    pub tpot_slo_ns: Option<Nanos>,
}

impl SeqView {
    /// The request's time per output token so far (None before a second token).
    pub fn running_tpot_ns(&self) -> Option<f64> {
        (self.tokens_out > 1).then(|| self.decode_elapsed_ns as f64 / (self.tokens_out - 1) as f64)
    }
}

/// The state of a decode step as a policy sees it before drafting position `position`.
pub struct DraftView<'a> {
    /// Time at the start of the step.
    pub now: Nanos,
    /// Draft tokens already produced this step by the sequences still drafting (the next position index).
    pub position: u32,
    /// Every sequence in the decode batch.
    pub seqs: &'a [SeqView],
    /// Per sequence, the draft's probability of each of its own drafted tokens so far this step.
    pub confidences: &'a [Vec<f32>],
    /// Whether each sequence is still drafting (false once stopped by the policy or its cap).
    pub active: &'a [bool],
    /// Step-time predictor (calibrated profile or roofline).
    pub cost: &'a dyn CostModel,
    /// How the target scores drafts (prices the verification forward).
    pub scorer: shape::Scorer,
    /// Oracle only: per sequence, how many of its next draft tokens the target would accept.
    pub lookahead: Option<&'a [u32]>,
}

impl DraftView<'_> {
    /// Number of sequences in the decode batch.
    pub fn batch(&self) -> u32 {
        self.seqs.len() as u32
    }

    /// Predicted time of a whole decode step in which sequence `i` drafts `k[i]` tokens: one draft forward
    /// per position over the sequences drafting at that position, then one verification forward over
    /// Σ(k_i + 1) tokens.
    pub fn predict_step_ns(&self, k: &[u32]) -> Nanos {
        self.predict_drafts_ns(k) + self.predict_verify_ns(k)
    }

    /// Predicted time of the draft forwards alone for draft lengths `k` ([`shape::predicted_drafts_ns`]:
    /// no catch-up on tokens the draft model has not seen).
    pub fn predict_drafts_ns(&self, k: &[u32]) -> Nanos {
        shape::predicted_drafts_ns(self.cost, self.plan(k))
    }

    /// Predicted time of the verification forward alone for draft lengths `k`.
    pub fn predict_verify_ns(&self, k: &[u32]) -> Nanos {
        shape::predicted_verify_ns(self.cost, self.scorer, self.plan(k))
    }

    /// `(context, k)` per sequence, as the shape functions take a plan.
    fn plan<'k>(&'k self, k: &'k [u32]) -> impl Iterator<Item = (u32, u32)> + Clone + 'k {
        self.seqs
            .iter()
            .zip(k)
            .map(|(s, &ki)| (s.context_tokens, ki))
    }

    /// Cumulative confidence `c_ij = Π_{m≤j} p_im` of sequence `i` after `j` drafted tokens (1 for j = 0).
    pub fn cumulative_confidence(&self, i: usize, j: usize) -> f64 {
        self.confidences[i]
            .iter()
            .take(j)
            .map(|&p| p as f64)
            .product()
    }
}

/// What happened to one sequence in a verified step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqOutcome {
    /// Draft tokens verified.
    pub drafted: u32,
    /// Of those, accepted.
    pub accepted: u32,
}

/// The outcome of a decode step, for policies that learn (running acceptance rates).
pub struct StepOutcome<'a> {
    /// Per sequence in the batch.
    pub seqs: &'a [SeqOutcome],
    /// Duration of the whole step (drafting and verification).
    pub step_ns: Nanos,
}

/// A speculation policy. One instance per replica; see the module docs for the calling sequence.
pub trait SpeculationPolicy: Send {
    /// Short name, as written to results (`static-3`, `specserve`).
    fn name(&self) -> String;
    /// The most draft tokens this policy ever asks for in one step.
    fn k_max(&self) -> u32;
    /// Before drafting position `view.position`: set `keep[i] = false` for sequences that should stop
    /// drafting. On entry `keep[i] == view.active[i]`; drafting ends when no sequence is kept.
    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]);
    /// After drafting: may lower per-sequence draft lengths `k[i]`, dropping tail tokens before
    /// verification. The default keeps everything.
    fn finalize(&mut self, _view: &DraftView, _k: &mut [u32]) {}
    /// After verification: what was accepted.
    fn observe(&mut self, _outcome: &StepOutcome) {}
    /// Whether the policy needs [`DraftView::lookahead`] (only the oracle).
    fn needs_lookahead(&self) -> bool {
        false
    }
    /// Whether [`SpeculationPolicy::observe`] does anything: a policy that keeps the default no-op
    /// says false, and the engine then skips gathering the outcomes of every step.
    fn observes(&self) -> bool {
        true
    }
}

/// A policy as written in a scenario's `[[policies]]` table (`kind = "..."` plus its parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyConfig {
    /// No speculation.
    None,
    /// Always draft `k` tokens.
    Static {
        /// Draft length.
        k: u32,
    },
    /// vLLM dynamic speculative decoding: `k` from the batch size.
    BatchTable {
        /// `[[max_batch, k], ...]` ascending by `max_batch`; batches above the last row use k = 0.
        table: Vec<[u32; 2]>,
    },
    /// Stop drafting when the batch-mean confidence of the last drafted token falls below `confidence`.
    Threshold {
        /// Confidence threshold (default 0.6).
        #[serde(default = "default_threshold")]
        confidence: f64,
        /// Most draft tokens (default 8).
        #[serde(default = "default_kmax")]
        k_max: u32,
    },
    /// SmartSpec: argmax of predicted goodput with a running acceptance rate.
    Smartspec {
        /// Most draft tokens (default 8).
        #[serde(default = "default_kmax")]
        k_max: u32,
        /// Initial acceptance rate (default 0.7).
        #[serde(default = "default_alpha0")]
        alpha0: f64,
        /// Multiplier on k = 0's goodput: a bias toward not speculating (default 1.1).
        #[serde(default = "default_bias")]
        bias: f64,
    },
    /// SpecServe / AdaSpec adaptive speculation.
    Specserve {
        /// Most draft tokens (default 8).
        #[serde(default = "default_kmax")]
        k_max: u32,
        /// Confidence-prior elimination of tail draft tokens (default true).
        #[serde(default = "default_true")]
        elimination: bool,
        /// SLO-aware choice of k (default true).
        #[serde(default = "default_true")]
        slo_aware: bool,
        /// Prior running mean draft confidence ᾱ, used before any token is drafted. Unset, it is the
        /// acceptance model's mean draft confidence where that is known (a calibrated profile), else the
        /// paper's 0.6: with too low a prior the policy can decide never to draft, and then never learns
        /// better.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpha0: Option<f64>,
    },
    /// Knows the outcomes: an upper bound.
    Oracle {
        /// Most draft tokens (default 8).
        #[serde(default = "default_kmax")]
        k_max: u32,
    },
}

fn default_threshold() -> f64 {
    0.6
}
fn default_kmax() -> u32 {
    8
}
fn default_alpha0() -> f64 {
    0.7
}
fn default_bias() -> f64 {
    1.1
}
fn default_true() -> bool {
    true
}

impl PolicyConfig {
    /// Builds a fresh policy instance (one per replica).
    pub fn build(&self) -> Box<dyn SpeculationPolicy> {
        match self {
            PolicyConfig::None => Box::new(none::NoSpeculation),
            PolicyConfig::Static { k } => Box::new(static_k::StaticK::new(*k)),
            PolicyConfig::BatchTable { table } => {
                Box::new(batch_table::BatchTable::new(table.clone()))
            }
            PolicyConfig::Threshold { confidence, k_max } => {
                Box::new(threshold::ConfidenceThreshold::new(*confidence, *k_max))
            }
            PolicyConfig::Smartspec {
                k_max,
                alpha0,
                bias,
            } => Box::new(smartspec::SmartSpec::new(*k_max, *alpha0, *bias)),
            PolicyConfig::Specserve {
                k_max,
                elimination,
                slo_aware,
                alpha0,
            } => Box::new(
                specserve::SpecServe::new(*k_max, *elimination, *slo_aware)
                    .with_alpha0(alpha0.unwrap_or(specserve::ALPHA_BAR_0)),
            ),
            PolicyConfig::Oracle { k_max } => Box::new(oracle::Oracle::new(*k_max)),
        }
    }

    /// Parses a policy's command-line name (`specsim serve --policy`): `none`, `static-K`, `threshold`,
    /// `smartspec`, `specserve`, or `NAME-K` to cap an adaptive policy's k (`specserve-6`). Every other
    /// parameter takes the scenario file's default — the same serde defaults — so a live engine and a
    /// scenario that name the same policy run the same policy.
    pub fn from_name(s: &str) -> Result<PolicyConfig, String> {
        let bad = || {
            format!(
                "unknown policy `{s}` (expected none, static-K, threshold, smartspec, specserve)"
            )
        };
        let (name, k) = match s.rsplit_once('-') {
            Some((n, k)) => (n, Some(k.parse::<u32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let table = match (name, k) {
            ("none", None) => "kind = \"none\"".to_string(),
            ("static", Some(k)) => format!("kind = \"static\"\nk = {k}"),
            ("threshold" | "smartspec" | "specserve", None) => format!("kind = \"{name}\""),
            ("threshold" | "smartspec" | "specserve", Some(k)) => {
                format!("kind = \"{name}\"\nk_max = {k}")
            }
            _ => return Err(bad()),
        };
        let p: PolicyConfig = toml::from_str(&table).map_err(|_| bad())?;
        p.validate().map_err(|_| bad())?;
        Ok(p)
    }

    /// Fills an unset SpecServe prior ᾱ with `mean_confidence` (the acceptance model's mean draft
    /// confidence, where known); every other policy is returned unchanged.
    pub fn with_prior_confidence(&self, mean_confidence: Option<f64>) -> PolicyConfig {
        let mut p = self.clone();
        if let PolicyConfig::Specserve { alpha0, .. } = &mut p {
            if alpha0.is_none() {
                *alpha0 = mean_confidence;
            }
        }
        p
    }

    /// Checks parameter ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            PolicyConfig::Static { k } if *k > 64 => {
                Err(format!("static: k = {k} is larger than 64"))
            }
            PolicyConfig::BatchTable { table } => {
                if table.is_empty() {
                    return Err("batch_table: table is empty".into());
                }
                if table.windows(2).any(|w| w[0][0] >= w[1][0]) {
                    return Err("batch_table: table rows must be ascending by max_batch".into());
                }
                Ok(())
            }
            PolicyConfig::Threshold { confidence, .. } if !(0.0..=1.0).contains(confidence) => Err(
                format!("threshold: confidence = {confidence} is outside [0, 1]"),
            ),
            PolicyConfig::Smartspec { alpha0, bias, .. }
                if !(0.0..1.0).contains(alpha0) || *bias <= 0.0 =>
            {
                Err(format!(
                    "smartspec: need 0 <= alpha0 < 1 and bias > 0 (got {alpha0}, {bias})"
                ))
            }
            PolicyConfig::Specserve {
                alpha0: Some(a), ..
            } if !(0.0..=1.0).contains(a) => {
                Err(format!("specserve: alpha0 = {a} is outside [0, 1]"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A hand-checkable view builder for policy tests.
    use super::*;
    use crate::cost::FixedCost;

    /// Fixed cost: draft 1 ms + 0.1 ms/seq, target 10 ms + 0.5 ms/token.
    pub const COST: FixedCost = FixedCost {
        draft_base: 1_000_000,
        draft_per_seq: 100_000,
        target_base: 10_000_000,
        target_per_token: 500_000,
    };

    pub fn seqs(n: usize) -> Vec<SeqView> {
        vec![
            SeqView {
                context_tokens: 100,
                max_draft: 16,
                tokens_out: 10,
                decode_elapsed_ns: 0,
                tpot_slo_ns: None
            };
            n
        ]
    }

    pub fn view<'a>(
        seqs: &'a [SeqView],
        conf: &'a [Vec<f32>],
        active: &'a [bool],
        position: u32,
    ) -> DraftView<'a> {
        DraftView {
            now: 0,
            position,
            seqs,
            confidences: conf,
            active,
            cost: &COST,
            scorer: Default::default(),
            lookahead: None,
        }
    }
}

#[cfg(test)]
mod name_tests {
    use super::PolicyConfig;

    #[test]
    fn policy_names_parse_with_the_scenario_defaults() {
        assert_eq!(PolicyConfig::from_name("none").unwrap(), PolicyConfig::None);
        assert_eq!(
            PolicyConfig::from_name("static-4").unwrap(),
            PolicyConfig::Static { k: 4 }
        );
        assert_eq!(
            PolicyConfig::from_name("specserve").unwrap(),
            PolicyConfig::Specserve {
                k_max: 8,
                elimination: true,
                slo_aware: true,
                alpha0: None
            }
        );
        assert_eq!(
            PolicyConfig::from_name("smartspec-5").unwrap(),
            PolicyConfig::Smartspec {
                k_max: 5,
                alpha0: 0.7,
                bias: 1.1
            }
        );
        for bad in ["static", "static-x", "none-3", "magic", "static-1000"] {
            assert!(PolicyConfig::from_name(bad).is_err(), "{bad}");
        }
    }
}
