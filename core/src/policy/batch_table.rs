//! vLLM dynamic speculative decoding (DSD): the speculation length is looked up from the batch size,
//! shrinking as the batch grows because verification gets more expensive.

use super::{DraftView, SpeculationPolicy};

/// `k` by batch-size thresholds: the first row whose `max_batch` is at least the batch size gives k;
/// batches larger than every row do not speculate.
#[derive(Debug)]
pub struct BatchTable {
    table: Vec<[u32; 2]>,
}

impl BatchTable {
    /// A table of `[max_batch, k]` rows, ascending by `max_batch`.
    pub fn new(table: Vec<[u32; 2]>) -> Self {
        BatchTable { table }
    }

    /// The speculation length for a batch of `batch` sequences.
    pub fn k_for(&self, batch: u32) -> u32 {
        self.table
            .iter()
            .find(|r| batch <= r[0])
            .map_or(0, |r| r[1])
    }
}

impl SpeculationPolicy for BatchTable {
    fn name(&self) -> String {
        "batch_table".into()
    }
    fn k_max(&self) -> u32 {
        self.table.iter().map(|r| r[1]).max().unwrap_or(0)
    }
    fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
        if view.position >= self.k_for(view.batch()) {
            keep.fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn looks_up_k_by_batch_size() {
        let t = BatchTable::new(vec![[4, 5], [16, 3], [64, 1]]);
        assert_eq!(t.k_for(1), 5);
        assert_eq!(t.k_for(4), 5);
        assert_eq!(t.k_for(5), 3);
        assert_eq!(t.k_for(64), 1);
        assert_eq!(t.k_for(65), 0);
    }

    #[test]
    fn stops_at_the_table_k() {
        let mut t = BatchTable::new(vec![[2, 2], [8, 1]]);
        let s = seqs(5);
        let conf = vec![vec![]; 5];
        let active = [true; 5];
        let mut keep = [true; 5];
        t.draft_next(&view(&s, &conf, &active, 0), &mut keep);
        assert!(keep.iter().all(|&k| k));
        t.draft_next(&view(&s, &conf, &active, 1), &mut keep);
        assert!(keep.iter().all(|&k| !k));
    }
}
