//! Round robin: replicas in turn, ignoring load.

use super::{ReplicaLoad, Routed, Router};
use specsim_core::rng::SimRng;
use specsim_core::workload::RequestSpec;

/// Cycles through replicas.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Router for RoundRobin {
    fn route(&mut self, _req: &RequestSpec, loads: &[ReplicaLoad], _rng: &mut SimRng) -> Routed {
        let r = self.next % loads.len();
        self.next = r + 1;
        Routed {
            replica: r,
            reason: "next in turn",
        }
    }

    fn stateless(&self) -> bool {
        true
    }
}
