//! Turning logits into a next-token distribution and drawing from it.
//!
//! A request's [`SamplingParams`] define a *warped* distribution over the vocabulary: softmax of the
//! logits divided by the temperature, restricted to the `top_k` most likely tokens, then to the smallest
//! set whose probability reaches `top_p`, renormalised. Temperature 0 is greedy: the distribution is
//! one-hot at the argmax (the lowest token id among ties).
//!
//! Speculative decoding needs the distribution itself, not just a sample from it: rejection sampling
//! compares the target's warped probabilities `p` with the draft's `q` ([`crate::verify`]). So
//! [`distribution`] returns the full vector, and [`sample`] draws from any vector by inverse CDF.
//!
//! Randomness is a per-request [`Sampler`] seeded from the request's seed (rand's `StdRng`), so a
//! request's output does not depend on what else is in the batch. No generator is ever passed to candle.

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::error::{Result, RuntimeError};

/// How a request samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (None: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Seed of the request's generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            seed: 0,
        }
    }

    /// Plain sampling at `temperature` with `seed`.
    pub fn with_temperature(temperature: f32, seed: u64) -> Self {
        Self {
            temperature,
            top_k: None,
            top_p: 1.0,
            seed,
        }
    }

    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == Some(1)
    }

    /// Checks ranges: temperature finite and ≥ 0, top_k ≥ 1, 0 < top_p ≤ 1.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(RuntimeError::InvalidInput(format!(
                "temperature {} must be finite and >= 0",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(RuntimeError::InvalidInput(
                "top_k must be at least 1".into(),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(RuntimeError::InvalidInput(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Index of the largest logit (the lowest index among ties; NaN never wins). None for an empty slice.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// Softmax of `logits / temperature` (temperature > 0), computed stably in f64.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = temperature as f64;
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits
        .iter()
        .map(|&x| {
            if x.is_nan() {
                0.0
            } else {
                ((x as f64 - max) / t).exp()
            }
        })
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| (e / sum) as f32).collect()
}

/// The warped distribution of `params` over the vocabulary (see the module docs).
pub fn distribution(logits: &[f32], params: &SamplingParams) -> Result<Vec<f32>> {
    let Some(best) = argmax(logits) else {
        return Err(RuntimeError::InvalidInput(
            "no finite logit to sample from".into(),
        ));
    };
    let mut p = vec![0.0f32; logits.len()];
    if params.is_greedy() {
        p[best as usize] = 1.0;
        return Ok(p);
    }
    let mut probs = softmax(logits, params.temperature);
    // Candidate order: most likely first, lower token id first among ties.
    let by_prob =
        |a: &usize, b: &usize, probs: &[f32]| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    let mut keep: Vec<usize> = (0..probs.len()).collect();
    if let Some(k) = params.top_k.filter(|&k| k < probs.len()) {
        keep.select_nth_unstable_by(k - 1, |a, b| by_prob(a, b, &probs));
        keep.truncate(k);
    }
    if params.top_p < 1.0 {
        keep.sort_unstable_by(|a, b| by_prob(a, b, &probs));
        let kept_mass: f64 = keep.iter().map(|&i| probs[i] as f64).sum();
        let target = params.top_p as f64 * kept_mass;
        let mut acc = 0.0f64;
        let mut n = 0;
        for &i in &keep {
            acc += probs[i] as f64;
            n += 1;
            if acc >= target {
                break;
            }
        }
        keep.truncate(n.max(1));
    }
    if keep.len() < probs.len() {
        let mass: f64 = keep.iter().map(|&i| probs[i] as f64).sum();
        for &i in &keep {
            p[i] = (probs[i] as f64 / mass) as f32;
        }
    } else {
        std::mem::swap(&mut p, &mut probs);
    }
    Ok(p)
}

/// Draws an index from the (not necessarily normalised) non-negative weights `probs` by inverse CDF.
/// Returns None when no weight is positive.
pub fn sample(probs: &[f32], rng: &mut impl Rng) -> Option<u32> {
    let total: f64 = probs.iter().filter(|p| **p > 0.0).map(|&p| p as f64).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let u = rng.random::<f64>() * total;
    let mut acc = 0.0f64;
    let mut last = None;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            acc += p as f64;
            last = Some(i as u32);
            if u < acc {
                return last;
            }
        }
    }
    last
}

/// A request's sampler: its parameters and its own seeded generator.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`. Fails on out-of-range parameters.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: StdRng::seed_from_u64(params.seed),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The request's generator (for rejection sampling).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// The warped distribution of these parameters.
    pub fn distribution(&self, logits: &[f32]) -> Result<Vec<f32>> {
        distribution(logits, &self.params)
    }

    /// Picks the next token from logits: the argmax when greedy, else a draw from the warped distribution.
    pub fn next(&mut self, logits: &[f32]) -> Result<u32> {
        if self.params.is_greedy() {
            return argmax(logits)
                .ok_or_else(|| RuntimeError::InvalidInput("no finite logit".into()));
        }
        let p = self.distribution(logits)?;
        sample(&p, &mut self.rng)
            .ok_or_else(|| RuntimeError::InvalidInput("empty distribution".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_one_hot_at_first_maximum() {
        let p = distribution(&[1.0, 3.0, 3.0, -1.0], &SamplingParams::greedy()).unwrap();
        assert_eq!(p, vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn temperature_one_is_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let p = distribution(&logits, &SamplingParams::with_temperature(1.0, 0)).unwrap();
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for (pi, &x) in p.iter().zip(&logits) {
            assert!((*pi as f64 - (x as f64).exp() / z).abs() < 1e-6);
        }
    }

    #[test]
    fn top_k_keeps_k_most_likely_renormalised() {
        let logits = [0.0f32, 3.0, 1.0, 2.0];
        let params = SamplingParams {
            top_k: Some(2),
            ..SamplingParams::with_temperature(1.0, 0)
        };
        let p = distribution(&logits, &params).unwrap();
        let (e3, e2) = (3.0f64.exp(), 2.0f64.exp());
        assert_eq!((p[0], p[2]), (0.0, 0.0));
        assert!((p[1] as f64 - e3 / (e3 + e2)).abs() < 1e-6);
        assert!((p[3] as f64 - e2 / (e3 + e2)).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_smallest_prefix_reaching_p() {
        // probabilities 0.5, 0.3, 0.2 (logits are their logs): top_p 0.7 keeps 0.5 and 0.3.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let params = SamplingParams {
            top_p: 0.7,
            ..SamplingParams::with_temperature(1.0, 0)
        };
        let p = distribution(&logits, &params).unwrap();
        assert!((p[0] - 0.625).abs() < 1e-6 && (p[1] - 0.375).abs() < 1e-6 && p[2] == 0.0);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(Sampler::new(SamplingParams {
            top_p: 0.0,
            ..SamplingParams::greedy()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            top_k: Some(0),
            ..SamplingParams::greedy()
        })
        .is_err());
        assert!(distribution(&[], &SamplingParams::greedy()).is_err());
    }

    #[test]
    fn same_seed_same_draws() {
        let logits = [0.1f32, 0.2, 0.3, 0.4, 0.5];
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams::with_temperature(1.0, seed)).unwrap();
            (0..20)
                .map(|_| s.next(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
