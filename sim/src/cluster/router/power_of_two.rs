//! Power of two choices: sample two distinct replicas at random and take the one with fewer outstanding
//! requests (the first sampled on a tie). Near least-outstanding balance without global state.

use super::{ReplicaLoad, Routed, Router};
use rand::RngExt;
use specsim_core::rng::SimRng;
use specsim_core::workload::RequestSpec;

/// Two random choices.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl Router for PowerOfTwo {
    fn route(&mut self, _req: &RequestSpec, loads: &[ReplicaLoad], rng: &mut SimRng) -> Routed {
        let n = loads.len();
        if n == 1 {
            return Routed {
                replica: 0,
                reason: "only replica",
            };
        }
        let a = rng.random_range(0..n);
        let mut b = rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let pick = if loads[b].outstanding < loads[a].outstanding {
            b
        } else {
            a
        };
        Routed {
            replica: pick,
            reason: "less loaded of two random replicas",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use specsim_core::rng::stream;

    fn req() -> RequestSpec {
        RequestSpec {
            id: 0,
            arrival_ns: 0,
            prompt_tokens: 1,
            output_tokens: 1,
            category: None,
            prefix: None,
        }
    }

    #[test]
    fn routers_pick_as_documented() {
        let loads = [
            ReplicaLoad {
                outstanding: 3,
                outstanding_tokens: 10,
            },
            ReplicaLoad {
                outstanding: 1,
                outstanding_tokens: 900,
            },
            ReplicaLoad {
                outstanding: 1,
                outstanding_tokens: 50,
            },
        ];
        let mut rng = stream(0, "routing", 0);
        assert_eq!(
            LeastOutstanding.route(&req(), &loads, &mut rng).replica,
            1,
            "tie goes to the lowest index"
        );
        assert_eq!(LeastTokens.route(&req(), &loads, &mut rng).replica, 0);
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..4)
            .map(|_| rr.route(&req(), &loads, &mut rng).replica)
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0]);
        // Power of two never picks the most loaded replica when the other two are less loaded... unless
        // both samples are it, which cannot happen (distinct samples).
        let mut p2 = PowerOfTwo;
        for _ in 0..1000 {
            assert_ne!(p2.route(&req(), &loads, &mut rng).replica, 0);
        }
    }
}
