//! Hash: a fixed replica per request id (SplitMix64 of the id, modulo the replica count), ignoring
//! load — the stand-in for session- or prefix-affinity routing, where the same key always lands on
//! the same replica.

use super::{ReplicaLoad, Routed, Router};
use specsim_core::rng::SimRng;
use specsim_core::workload::RequestSpec;

/// Replica = hash(request id) mod replicas.
#[derive(Debug, Default)]
pub struct Hash;

/// SplitMix64's finaliser: a bijection of u64 that spreads consecutive ids evenly.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Router for Hash {
    fn route(&mut self, req: &RequestSpec, loads: &[ReplicaLoad], _rng: &mut SimRng) -> Routed {
        Routed {
            replica: (splitmix64(req.id) % loads.len() as u64) as usize,
            reason: "hash of the request id",
        }
    }

    fn stateless(&self) -> bool {
        true
    }
}
