//! Oracle: knows, before drafting, how many draft tokens each sequence would have accepted, drafts
//! exactly those (never a rejected token), and picks the batch-wide cap K that maximises tokens per
//! second under the cost model. No real system can do this; it bounds what any policy could achieve.

use super::{DraftView, SpeculationPolicy};

/// The outcome-aware upper bound.
#[derive(Debug)]
pub struct Oracle {
    k_max: u32,
    plan: Vec<u32>,
}

impl Oracle {
    /// An oracle drafting at most `k_max` tokens.
    pub fn new(k_max: u32) -> Self {
        Oracle {
            k_max,
            plan: Vec::new(),
        }
    }

    /// Per-sequence draft lengths: `min(run_i, K, cap_i)` for the K maximising emitted tokens per second.
    pub fn plan(&self, view: &DraftView, runs: &[u32]) -> Vec<u32> {
        let mut best: (f64, Vec<u32>) = (f64::MIN, vec![0; view.seqs.len()]);
        for cap in 0..=self.k_max {
            let k: Vec<u32> = view
                .seqs
                .iter()
                .zip(runs)
                .map(|(s, &r)| r.min(cap).min(s.max_draft))
                .collect();
            let emitted: u32 = k.iter().map(|&ki| ki + 1).sum();
            let rate = emitted as f64 / view.predict_step_ns(&k).max(1) as f64;
            if rate > best.0 {
                best = (rate, k);
            }
        }
        best.1
    }
}

impl SpeculationPolicy for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }
    fn k_max(&self) -> u32 {
        self.k_max
    }
    fn needs_lookahead(&self) -> bool {
        true
    }
    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
        if view.position == 0 {
            self.plan = match view.lookahead {
                Some(runs) => self.plan(view, runs),
                None => vec![0; view.seqs.len()],
            };
        }
        for (i, k) in keep.iter_mut().enumerate() {
            *k = *k && self.plan.get(i).is_some_and(|&p| view.position < p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn drafts_only_tokens_that_will_be_accepted() {
        // Runs (3, 0): with FixedCost the best cap is 3 for sequence 0; sequence 1 drafts nothing.
        // cap 0: 2 tokens / (10 + 0.5·2) ms = 0.182; cap 1: 3 / (1.1 + 11.5) = 0.238;
        // cap 2: 4 / (2.2 + 12) = 0.282; cap 3: 5 / (3.3 + 12.5) = 0.316; caps above 3 change nothing.
        let o = Oracle::new(8);
        let s = seqs(2);
        let conf = vec![vec![]; 2];
        let v = view(&s, &conf, &[true, true], 0);
        assert_eq!(o.plan(&v, &[3, 0]), vec![3, 0]);
    }
}
