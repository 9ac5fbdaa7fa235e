//! Routers: which replica serves an arriving request. Each router is one small file; ties are broken
//! toward the lowest replica index unless the router says otherwise.

mod hash;
mod least_outstanding;
mod least_tokens;
mod power_of_two;
mod round_robin;

pub use hash::Hash;
pub use least_outstanding::LeastOutstanding;
pub use least_tokens::LeastTokens;
pub use power_of_two::PowerOfTwo;
pub use round_robin::RoundRobin;

use serde::{Deserialize, Serialize};
use specsim_core::rng::SimRng;
use specsim_core::workload::RequestSpec;

/// What a router sees of a replica: work routed to it and not yet finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaLoad {
    /// Requests routed and not finished.
    pub outstanding: u32,
    /// Prompt + output tokens of those requests.
    pub outstanding_tokens: u64,
}

/// A routing decision with its reason (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// Chosen replica index.
    pub replica: usize,
    /// Why.
    pub reason: &'static str,
}

/// Picks a replica for each arriving request.
pub trait Router: Send {
    /// Chooses among `loads` (one per replica, never empty).
    fn route(&mut self, req: &RequestSpec, loads: &[ReplicaLoad], rng: &mut SimRng) -> Routed;

    /// Whether decisions ignore `loads` (and so the parallel mode routes exactly as the sequential
    /// one). Default false.
    fn stateless(&self) -> bool {
        false
    }
}

/// `router = "..."` in `[cluster]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RouterKind {
    /// Cycle through replicas.
    #[default]
    RoundRobin,
    /// Fewest outstanding requests.
    LeastOutstanding,
    /// Fewest outstanding tokens.
    LeastTokens,
    /// Two random replicas, the less loaded one.
    PowerOfTwo,
    /// A fixed replica per request id (hash), ignoring load.
    Hash,
}

impl RouterKind {
    /// A fresh router.
    pub fn build(self) -> Box<dyn Router> {
        match self {
            RouterKind::RoundRobin => Box::new(RoundRobin::default()),
            RouterKind::LeastOutstanding => Box::new(LeastOutstanding),
            RouterKind::LeastTokens => Box::new(LeastTokens),
            RouterKind::PowerOfTwo => Box::new(PowerOfTwo),
            RouterKind::Hash => Box::new(Hash),
        }
    }

    /// Whether the router ignores replica load (see [`Router::stateless`]).
    pub fn stateless(self) -> bool {
        self.build().stateless()
    }
}

/// Index of the minimum of `key` over replicas, lowest index on ties.
fn argmin(loads: &[ReplicaLoad], key: impl Fn(&ReplicaLoad) -> u64) -> usize {
    let mut best = 0;
    for (i, l) in loads.iter().enumerate().skip(1) {
        if key(l) < key(&loads[best]) {
            best = i;
        }
    }
    best
}
