//! Confidence threshold: keep drafting while the draft is confident, batch-wide. Before each further
//! draft position the mean confidence of the last drafted token over the sequences still drafting is
//! compared with the threshold; below it, the whole batch stops.

use super::{DraftView, SpeculationPolicy};

/// Stops drafting when the batch-mean confidence of the last drafted token falls below `confidence`.
#[derive(Debug)]
pub struct ConfidenceThreshold {
    confidence: f64,
    k_max: u32,
}

impl ConfidenceThreshold {
    /// A threshold policy drafting at most `k_max` tokens.
    pub fn new(confidence: f64, k_max: u32) -> Self {
        ConfidenceThreshold { confidence, k_max }
    }
}

impl SpeculationPolicy for ConfidenceThreshold {
    fn name(&self) -> String {
        format!("threshold-{}", self.confidence)
    }
    fn k_max(&self) -> u32 {
        self.k_max
    }
    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
        if view.position >= self.k_max {
            keep.fill(false);
            return;
        }
        if view.position == 0 {
            return; // nothing drafted yet: the first position is always tried
        }
        let (mut sum, mut n) = (0.0, 0usize);
        for (i, c) in view.confidences.iter().enumerate() {
            if view.active[i] {
                if let Some(&p) = c.last() {
                    sum += p as f64;
                    n += 1;
                }
            }
        }
        if n == 0 || sum / (n as f64) < self.confidence {
            keep.fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn stops_when_batch_mean_drops_below_threshold() {
        let s = seqs(2);
        let mut p = ConfidenceThreshold::new(0.6, 8);
        let active = [true, true];
        // Mean of (0.9, 0.4) = 0.65 >= 0.6: continue.
        let conf = vec![vec![0.9f32], vec![0.4]];
        let mut keep = [true; 2];
        p.draft_next(&view(&s, &conf, &active, 1), &mut keep);
        assert_eq!(keep, [true, true]);
        // Mean of (0.7, 0.45) = 0.575 < 0.6: stop.
        let conf = vec![vec![0.9f32, 0.7], vec![0.4, 0.45]];
        p.draft_next(&view(&s, &conf, &active, 2), &mut keep);
        assert_eq!(keep, [false, false]);
    }

    #[test]
    fn inactive_sequences_do_not_count() {
        let s = seqs(2);
        let mut p = ConfidenceThreshold::new(0.6, 8);
        let conf = vec![vec![0.9f32], vec![0.1]];
        let active = [true, false];
        let mut keep = [true, false];
        p.draft_next(&view(&s, &conf, &active, 1), &mut keep);
        assert_eq!(keep, [true, false]);
    }
}
