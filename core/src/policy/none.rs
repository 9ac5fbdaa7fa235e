//! No speculation: every decode step is a plain target forward.

use super::{DraftView, SpeculationPolicy};

/// Never drafts.
#[derive(Debug, Default)]
pub struct NoSpeculation;

impl SpeculationPolicy for NoSpeculation {
    fn observes(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        "none".into()
    }
    fn k_max(&self) -> u32 {
        0
    }
    fn draft_next(&mut self, _view: &DraftView, keep: &mut [bool]) {
        keep.fill(false);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn never_drafts() {
        let s = seqs(3);
        let conf = vec![vec![]; 3];
        let active = [true; 3];
        let mut keep = [true; 3];
        NoSpeculation.draft_next(&view(&s, &conf, &active, 0), &mut keep);
        assert_eq!(keep, [false; 3]);
    }
}
