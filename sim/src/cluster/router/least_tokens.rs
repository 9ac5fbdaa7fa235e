//! Least outstanding tokens: like least-outstanding, but weighs requests by prompt + output length, so
//! one long request counts like many short ones.

use super::{argmin, ReplicaLoad, Routed, Router};
use specsim_core::rng::SimRng;
use specsim_core::workload::RequestSpec;

/// Fewest outstanding tokens.
#[derive(Debug, Default)]
pub struct LeastTokens;

impl Router for LeastTokens {
    fn route(&mut self, _req: &RequestSpec, loads: &[ReplicaLoad], _rng: &mut SimRng) -> Routed {
        Routed {
            replica: argmin(loads, |l| l.outstanding_tokens),
            reason: "fewest outstanding tokens",
        }
    }
}
