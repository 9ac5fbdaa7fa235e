//! Deciding which draft tokens the target accepts.
//!
//! The target's verification forward gives, for draft tokens `d_0..d_{k-1}`, its logits at `k + 1`
//! positions: the distribution of the token after the context, after `d_0`, …, after `d_{k-1}`. A
//! [`Verdict`] says how many drafts were accepted and which token comes after them, so a step emits
//! `accepted + 1` tokens.
//!
//! - **Greedy** ([`verify_greedy`]): accept while the draft equals the target's argmax; the next token is
//!   the target's argmax at the first mismatch (or after the last draft). The output is token for token
//!   what greedy decoding of the target alone produces.
//! - **Rejection sampling** ([`verify_rejection`], Leviathan et al. / Chen et al. 2023): with `p_i` the
//!   target's warped distribution at position `i` and `q_i` the distribution the draft token was drawn
//!   from, accept `d_i` with probability `min(1, p_i(d_i) / q_i(d_i))`. At the first rejection, draw the
//!   next token from the residual `max(0, p_i − q_i)` normalised; when every draft is accepted, draw a
//!   bonus token from `p_k`. Each emitted token is then distributed exactly as the target's `p`,
//!   whatever the draft. A deterministic proposal (n-gram lookup, a greedy draft) has a one-hot `q`
//!   ([`DraftDist::OneHot`]): acceptance probability `p_i(d_i)`, residual `p_i` without `d_i`.

use rand::{Rng, RngExt};

use crate::error::{Result, RuntimeError};
use crate::sampling::{argmax, sample};

/// The outcome of verifying one sequence's drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Drafts accepted (a prefix of the drafts).
    pub accepted: usize,
    /// The token emitted after the accepted drafts: the target's correction or bonus token.
    pub next: u32,
}

/// The distribution a draft token was drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DraftDist<'a> {
    /// The token was chosen deterministically: `q` is one-hot at it.
    OneHot,
    /// The token was drawn from these probabilities (the draft's warped distribution).
    Probs(&'a [f32]),
}

fn check_rows(drafts: usize, rows: usize) -> Result<()> {
    if rows != drafts + 1 {
        return Err(RuntimeError::InvalidInput(format!(
            "{drafts} drafts need {} target rows, got {rows}",
            drafts + 1
        )));
    }
    Ok(())
}

/// Greedy acceptance: `target_logits[i]` are the target's logits after the context and `drafts[..i]`.
pub fn verify_greedy(drafts: &[u32], target_logits: &[&[f32]]) -> Result<Verdict> {
    check_rows(drafts.len(), target_logits.len())?;
    for (i, row) in target_logits.iter().enumerate() {
        let best = argmax(row)
            .ok_or_else(|| RuntimeError::InvalidInput("target row has no finite logit".into()))?;
        if drafts.get(i) != Some(&best) {
            return Ok(Verdict {
                accepted: i,
                next: best,
            });
        }
    }
    // Unreachable: the last row has no draft to match, so the loop returns there.
    Err(RuntimeError::InvalidInput("no target rows".into()))
}

/// Rejection sampling: `target_probs[i]` is the target's warped distribution after the context and
/// `drafts[..i]`; `draft_dists[i]` is what `drafts[i]` was drawn from.
pub fn verify_rejection(
    drafts: &[u32],
    draft_dists: &[DraftDist],
    target_probs: &[&[f32]],
    rng: &mut impl Rng,
) -> Result<Verdict> {
    check_rows(drafts.len(), target_probs.len())?;
    if draft_dists.len() != drafts.len() {
        return Err(RuntimeError::InvalidInput(format!(
            "{} drafts but {} draft distributions",
            drafts.len(),
            draft_dists.len()
        )));
    }
    for (i, (&d, q)) in drafts.iter().zip(draft_dists).enumerate() {
        let p = target_probs[i];
        let x = d as usize;
        if x >= p.len() {
            return Err(RuntimeError::InvalidInput(format!(
                "draft token {d} outside the vocabulary of {}",
                p.len()
            )));
        }
        let qx = match q {
            DraftDist::OneHot => 1.0,
            DraftDist::Probs(q) => q.get(x).copied().unwrap_or(0.0),
        };
        let px = p[x];
        // Accept with probability min(1, px / qx); a token the draft could not have drawn (qx = 0) is
        // accepted exactly when the target can produce it.
        let accept = if qx <= 0.0 {
            px > 0.0
        } else {
            px >= qx || (rng.random::<f64>() * qx as f64) < px as f64
        };
        if accept {
            continue;
        }
        let residual: Vec<f32> = match q {
            DraftDist::OneHot => p
                .iter()
                .enumerate()
                .map(|(j, &pj)| if j == x { 0.0 } else { pj })
                .collect(),
            DraftDist::Probs(q) => p
                .iter()
                .zip(q.iter())
                .map(|(&pj, &qj)| (pj - qj).max(0.0))
                .collect(),
        };
        // The residual is empty only if p ≤ q everywhere, i.e. p = q, where rejection cannot happen;
        // fall back to p against rounding.
        let next = sample(&residual, rng).or_else(|| sample(p, rng));
        let next =
            next.ok_or_else(|| RuntimeError::InvalidInput("target distribution is empty".into()))?;
        return Ok(Verdict { accepted: i, next });
    }
    let p = target_probs[drafts.len()];
    let next = sample(p, rng)
        .ok_or_else(|| RuntimeError::InvalidInput("target distribution is empty".into()))?;
    Ok(Verdict {
        accepted: drafts.len(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use statrs::distribution::{ChiSquared, ContinuousCDF};

    #[test]
    fn greedy_accepts_matching_prefix_and_corrects() {
        let rows: [&[f32]; 4] = [
            &[0.0, 1.0, 0.0],
            &[2.0, 0.0, 0.0],
            &[0.0, 0.0, 5.0],
            &[1.0, 0.0, 0.0],
        ];
        assert_eq!(
            verify_greedy(&[1, 0, 1], &rows).unwrap(),
            Verdict {
                accepted: 2,
                next: 2
            }
        );
        assert_eq!(
            verify_greedy(&[1, 0, 2], &rows).unwrap(),
            Verdict {
                accepted: 3,
                next: 0
            }
        );
        assert_eq!(
            verify_greedy(&[2, 0, 2], &rows).unwrap(),
            Verdict {
                accepted: 0,
                next: 1
            }
        );
        assert_eq!(
            verify_greedy(&[], &rows[..1]).unwrap(),
            Verdict {
                accepted: 0,
                next: 1
            }
        );
        assert!(verify_greedy(&[1], &rows[..1]).is_err());
    }

    /// Pearson's statistic of `counts` against probabilities `expected` (cells with zero probability
    /// must be empty), and the 99.9% quantile of the chi-square distribution with cells − 1 degrees of
    /// freedom.
    fn chi_square(counts: &[u64], expected: &[f64]) -> (f64, f64) {
        let n: u64 = counts.iter().sum();
        let mut stat = 0.0;
        let mut cells = 0;
        for (&c, &e) in counts.iter().zip(expected) {
            if e == 0.0 {
                assert_eq!(c, 0, "a token of probability 0 was emitted");
                continue;
            }
            let e = e * n as f64;
            stat += (c as f64 - e).powi(2) / e;
            cells += 1;
        }
        let q = ChiSquared::new((cells - 1) as f64)
            .unwrap()
            .inverse_cdf(0.999);
        (stat, q)
    }

    const V: usize = 5;
    /// Target distributions at absolute positions 0, 1, 2, 3 (context-free: they do not depend on the
    /// earlier tokens), deliberately different from the draft's.
    const P: [[f32; V]; 4] = [
        [0.40, 0.25, 0.20, 0.10, 0.05],
        [0.05, 0.10, 0.15, 0.30, 0.40],
        [0.20, 0.20, 0.20, 0.20, 0.20],
        [0.70, 0.00, 0.10, 0.10, 0.10],
    ];
    const Q: [[f32; V]; 4] = [
        [0.10, 0.10, 0.10, 0.30, 0.40],
        [0.50, 0.20, 0.10, 0.10, 0.10],
        [0.05, 0.05, 0.10, 0.30, 0.50],
        [0.20, 0.40, 0.20, 0.10, 0.10],
    ];

    /// Generates the first two tokens with speculative steps of `k` drafts drawn from `Q` and verified
    /// against `P` at their absolute positions.
    fn generate_pair(k: usize, rng: &mut StdRng) -> (usize, usize) {
        let mut out = Vec::new();
        while out.len() < 2 {
            let pos = out.len();
            let drafts: Vec<u32> = (0..k).map(|j| sample(&Q[pos + j], rng).unwrap()).collect();
            let dists: Vec<DraftDist> = (0..k).map(|j| DraftDist::Probs(&Q[pos + j])).collect();
            let rows: Vec<&[f32]> = (0..=k).map(|j| &P[pos + j][..]).collect();
            let v = verify_rejection(&drafts, &dists, &rows, rng).unwrap();
            out.extend(drafts[..v.accepted].iter().map(|&t| t as usize));
            out.push(v.next as usize);
        }
        (out[0], out[1])
    }

    /// The joint distribution of the first two emitted tokens is P₀ × P₁, for k = 1 (exercises the bonus
    /// token after a full acceptance) and k = 2 (exercises acceptance of two drafts in a row).
    #[test]
    fn rejection_sampling_reproduces_target_distribution() {
        let expected: Vec<f64> = (0..V * V)
            .map(|c| P[0][c / V] as f64 * P[1][c % V] as f64)
            .collect();
        for k in [1, 2] {
            let mut rng = StdRng::seed_from_u64(20261129 + k as u64);
            let mut counts = vec![0u64; V * V];
            for _ in 0..60_000 {
                let (a, b) = generate_pair(k, &mut rng);
                counts[a * V + b] += 1;
            }
            let (stat, q999) = chi_square(&counts, &expected);
            assert!(
                stat < q999,
                "k = {k}: chi-square {stat:.1} above the 99.9% quantile {q999:.1}"
            );
        }
    }

    /// The same test has power: the draft's own tokens (what accepting everything would emit) fail it.
    #[test]
    fn chi_square_test_rejects_the_draft_distribution() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u64; V];
        for _ in 0..60_000 {
            counts[sample(&Q[0], &mut rng).unwrap() as usize] += 1;
        }
        let expected: Vec<f64> = P[0].iter().map(|&p| p as f64).collect();
        let (stat, q999) = chi_square(&counts, &expected);
        assert!(stat > q999);
    }

    /// A one-hot proposal (n-gram lookup) keeps the output distribution too, including a target
    /// distribution with a zero (P₃ never emits token 1).
    #[test]
    fn deterministic_proposal_reproduces_target_distribution() {
        let mut rng = StdRng::seed_from_u64(11);
        for pos in [0, 3] {
            let mut counts = vec![0u64; V];
            for i in 0..50_000u32 {
                let draft = i % V as u32; // every token proposed in turn, including impossible ones
                let v =
                    verify_rejection(&[draft], &[DraftDist::OneHot], &[&P[pos], &P[2]], &mut rng)
                        .unwrap();
                let first = if v.accepted == 1 { draft } else { v.next };
                counts[first as usize] += 1;
            }
            let expected: Vec<f64> = P[pos].iter().map(|&p| p as f64).collect();
            let (stat, q999) = chi_square(&counts, &expected);
            assert!(
                stat < q999,
                "position {pos}: chi-square {stat:.1} above {q999:.1}"
            );
        }
    }

    #[test]
    fn mismatched_lengths_are_errors() {
        let mut rng = StdRng::seed_from_u64(0);
        assert!(verify_rejection(&[0], &[], &[&P[0], &P[1]], &mut rng).is_err());
        assert!(verify_rejection(&[0], &[DraftDist::OneHot], &[&P[0]], &mut rng).is_err());
        assert!(verify_rejection(&[9], &[DraftDist::OneHot], &[&P[0], &P[1]], &mut rng).is_err());
    }
}
