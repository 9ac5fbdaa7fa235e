//! Static speculation length (vLLM's `num_speculative_tokens`): draft exactly k tokens every step.

use super::{DraftView, SpeculationPolicy};

/// Drafts `k` tokens per sequence every step (fewer only where a sequence's cap is lower).
#[derive(Debug)]
pub struct StaticK {
    k: u32,
}

impl StaticK {
    /// A policy drafting `k` tokens.
    pub fn new(k: u32) -> Self {
        StaticK { k }
    }
}

impl SpeculationPolicy for StaticK {
    fn observes(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        format!("static-{}", self.k)
    }
    fn k_max(&self) -> u32 {
        self.k
    }
    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
        if view.position >= self.k {
            keep.fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn drafts_exactly_k_positions() {
        let s = seqs(2);
        let conf = vec![vec![]; 2];
        let active = [true; 2];
        let mut p = StaticK::new(3);
        for pos in 0..3 {
            let mut keep = [true; 2];
            p.draft_next(&view(&s, &conf, &active, pos), &mut keep);
            assert_eq!(keep, [true; 2], "position {pos}");
        }
        let mut keep = [true; 2];
        p.draft_next(&view(&s, &conf, &active, 3), &mut keep);
        assert_eq!(keep, [false; 2]);
    }
}
