//! Fitted linear step-time model: `t = a + b·tokens + c·kv_tokens + d·batch` (nanoseconds), one set of
//! coefficients per model role. `calibrate` fits the coefficients; the simulator only evaluates them.

use super::{BatchShape, CostModel};
use crate::time::Nanos;
use serde::{Deserialize, Serialize};

/// Coefficients of one linear step-time model (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinearCoefficients {
    /// Constant term.
    pub a: f64,
    /// Per new token.
    pub b: f64,
    /// Per KV token attended (context summed over sequences).
    pub c: f64,
    /// Per sequence.
    pub d: f64,
}

impl LinearCoefficients {
    /// Evaluates at a shape; never negative.
    pub fn eval(&self, s: &BatchShape) -> f64 {
        (self.a
            + self.b * s.new_tokens as f64
            + self.c * s.context_tokens as f64
            + self.d * s.seqs as f64)
            .max(0.0)
    }
}

/// Linear cost for draft and target forwards (and optionally a separate prefill fit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearCost {
    /// Draft forward.
    pub draft: LinearCoefficients,
    /// Target forward (decode and verification).
    pub target: LinearCoefficients,
    /// Target prefill tokens, when fitted separately (else the target coefficients apply).
    #[serde(default)]
    pub prefill: Option<LinearCoefficients>,
}

impl CostModel for LinearCost {
    fn draft_step(&self, s: &BatchShape) -> Nanos {
        self.draft.eval(s).round() as Nanos
    }
    fn target_step(&self, s: &BatchShape) -> Nanos {
        match self.prefill {
            Some(p) if s.prefill_tokens > 0 => {
                let pre = BatchShape {
                    new_tokens: s.prefill_tokens,
                    ..*s
                };
                let dec = BatchShape {
                    new_tokens: s.new_tokens - s.prefill_tokens,
                    ..*s
                };
                (p.eval(&pre)
                    + if dec.new_tokens > 0 {
                        self.target.eval(&dec) - self.target.a.max(0.0)
                    } else {
                        0.0
                    })
                .max(0.0)
                .round() as Nanos
            }
            _ => self.target.eval(s).round() as Nanos,
        }
    }
    fn describe(&self) -> String {
        format!(
            "linear(target a={:.0} b={:.1} c={:.3} d={:.1} ns)",
            self.target.a, self.target.b, self.target.c, self.target.d
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_the_linear_form() {
        let c = LinearCoefficients {
            a: 1000.0,
            b: 10.0,
            c: 0.5,
            d: 100.0,
        };
        // 1000 + 10·8 + 0.5·400 + 100·2 = 1480.
        assert_eq!(c.eval(&BatchShape::uniform(2, 4, 200)), 1480.0);
        let m = LinearCost {
            draft: c,
            target: c,
            prefill: None,
        };
        assert_eq!(m.target_step(&BatchShape::uniform(2, 4, 200)), 1480);
    }
}
