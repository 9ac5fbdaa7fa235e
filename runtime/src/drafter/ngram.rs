//! N-gram prompt lookup: propose the token that followed the latest earlier occurrence of the
//! sequence's own suffix (Saxena 2023, "prompt lookup decoding").
//!
//! For `n` from `max_n` down to `min_n`, take the last `n` tokens of the sequence (prompt, output and the
//! drafts of this step so far) and look for earlier occurrences of that n-gram. The first `n` with at
//! least one occurrence decides: among the tokens that followed its occurrences, propose the most
//! frequent (the most recent among equally frequent), with confidence = its share of the occurrences.
//! No occurrence of any size proposes nothing. Code, retrieval-style prompts and edits of given text
//! repeat long spans, which is where this drafter shines; it costs a scan of the sequence and no forward.

use std::collections::HashMap;

/// Configuration of n-gram lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgramDrafter {
    /// Longest suffix tried (default 3).
    pub max_n: usize,
    /// Shortest suffix tried (default 1).
    pub min_n: usize,
}

impl Default for NgramDrafter {
    fn default() -> Self {
        Self { max_n: 3, min_n: 1 }
    }
}

impl NgramDrafter {
    /// Proposes the next token of `tokens` and its confidence, if some suffix occurred before.
    pub fn propose(&self, tokens: &[u32]) -> Option<(u32, f32)> {
        let len = tokens.len();
        let min_n = self.min_n.max(1);
        for n in (min_n..=self.max_n.min(len.saturating_sub(1))).rev() {
            let suffix = &tokens[len - n..];
            // Occurrences ending before the last token, so that a follower exists: start + n < len.
            let mut counts: HashMap<u32, (u32, usize)> = HashMap::new();
            let mut total = 0u32;
            for start in 0..len - n {
                if &tokens[start..start + n] == suffix {
                    let next = tokens[start + n];
                    let e = counts.entry(next).or_insert((0, 0));
                    e.0 += 1;
                    e.1 = start; // later starts overwrite: the most recent occurrence
                    total += 1;
                }
            }
            if total > 0 {
                let (&token, &(count, _)) =
                    counts.iter().max_by_key(|(_, &(c, last))| (c, last))?;
                return Some((token, count as f32 / total as f32));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_the_latest_repeated_span() {
        let d = NgramDrafter::default();
        // "1 2 3 4 ... 1 2 3" → 4 follows the only earlier "1 2 3".
        assert_eq!(d.propose(&[1, 2, 3, 4, 9, 1, 2, 3]), Some((4, 1.0)));
    }

    #[test]
    fn confidence_is_share_of_followers() {
        let d = NgramDrafter { max_n: 1, min_n: 1 };
        // 7 was followed by 1, 2, 1: propose 1 with confidence 2/3.
        let (t, c) = d.propose(&[7, 1, 7, 2, 7, 1, 7]).unwrap();
        assert_eq!(t, 1);
        assert!((c - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn longer_match_wins_and_nothing_without_match() {
        let d = NgramDrafter::default();
        // suffix "5 6": its earlier occurrence is followed by 8 (the 1-gram "6" alone would be ambiguous).
        assert_eq!(d.propose(&[6, 0, 5, 6, 8, 6, 5, 6]), Some((8, 1.0)));
        assert_eq!(d.propose(&[1, 2, 3]), None);
        assert_eq!(d.propose(&[]), None);
        assert_eq!(d.propose(&[5]), None);
    }
}
