//! Least outstanding requests (vLLM production stack, Vidur's LOR): the replica with the fewest
//! unfinished requests; ties to the lowest index.

use super::{argmin, ReplicaLoad, Routed, Router};
use specsim_core::rng::SimRng;
use specsim_core::workload::RequestSpec;

/// Fewest outstanding requests.
#[derive(Debug, Default)]
pub struct LeastOutstanding;

impl Router for LeastOutstanding {
    fn route(&mut self, _req: &RequestSpec, loads: &[ReplicaLoad], _rng: &mut SimRng) -> Routed {
        Routed {
            replica: argmin(loads, |l| l.outstanding as u64),
            reason: "fewest outstanding requests",
        }
    }
}
