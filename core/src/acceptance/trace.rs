//! Acceptance measured on real speculative runs: per-step accepted lengths replayed from a trace, the
//! per-position model fitted to them, and the two per-position conventions in use.
//!
//! ## Conventions
//!
//! - **Conditional** (this crate's [`super::PerPositionAcceptance`], SpecServe's α_j): `c_j` is the
//!   probability that draft position `j` (0-based) is accepted *given* positions `0..j` were.
//! - **Unconditional** (vLLM's `spec_decode` per-position acceptance rates): `u_j` is the probability
//!   that the first `j + 1` drafts are *all* accepted, i.e. accepted drafts per step ≥ `j + 1`.
//!
//! They convert exactly: `u_j = Π_{m ≤ j} c_m` and `c_j = u_j / u_{j−1}` (`u_{−1} = 1`); see
//! [`conditional_to_unconditional`] and [`unconditional_to_conditional`]. Expected tokens per step with
//! `k` drafts is `1 + Σ_{j<k} u_j` in either.
//!
//! ## Traces
//!
//! A trace (SpecDecode-Bench's `acc_len` arrays, read by `specsim-calibrate`) gives, per request and per
//! output position `i`, the tokens one speculative step starting at `i` would produce (accepted
//! drafts plus one). A run walks it: a step at `i` produces `acc[i]` tokens and the next step starts at
//! `i + acc[i]` ([`StepTrace::from_positions`]). With fewer drafts `k` than the run had, a step produces
//! `min(acc[i], k + 1)` (the first `k` drafts are the same).

use crate::rng::SimRng;
use rand::RngExt;

/// Per-step emitted tokens (accepted drafts + 1) of every request of one dataset, as a run walks them.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTrace {
    /// Dataset (or category) name.
    pub name: String,
    /// Per request, the tokens each of its steps emitted (each ≥ 1).
    pub requests: Vec<Vec<u32>>,
}

impl StepTrace {
    /// Walks per-position arrays (`acc[i]` = tokens a step starting at output position `i` produces)
    /// with at most `k` drafts per step (`None`: as measured). Errors name the request and position of a
    /// zero entry (a step always emits at least one token).
    pub fn from_positions(
        name: &str,
        positions: &[Vec<u32>],
        k: Option<u32>,
    ) -> Result<StepTrace, String> {
        let cap = k.map_or(u32::MAX, |k| k.saturating_add(1));
        let mut requests = Vec::with_capacity(positions.len());
        for (r, acc) in positions.iter().enumerate() {
            let mut steps = Vec::new();
            let mut i = 0usize;
            while i < acc.len() {
                let l = acc[i];
                if l == 0 {
                    return Err(format!(
                        "{name}: request {r} position {i}: acc_len is 0 (a step emits at least 1 token)"
                    ));
                }
                let l = l.min(cap);
                steps.push(l);
                i += l as usize;
            }
            if !steps.is_empty() {
                requests.push(steps);
            }
        }
        if requests.is_empty() {
            return Err(format!("{name}: no request has a step"));
        }
        Ok(StepTrace {
            name: name.to_string(),
            requests,
        })
    }

    /// Steps over all requests.
    pub fn steps(&self) -> usize {
        self.requests.iter().map(Vec::len).sum()
    }

    /// Mean tokens per step over every step of every request (Σ tokens / Σ steps): the mean accepted
    /// length as a run of these requests measures it.
    pub fn mean_tokens_per_step(&self) -> f64 {
        let tokens: u64 = self.requests.iter().flatten().map(|&l| l as u64).sum();
        tokens as f64 / self.steps().max(1) as f64
    }

    /// Steps by accepted drafts: `hist[a]` steps accepted exactly `a` drafts (emitted `a + 1`).
    pub fn histogram(&self) -> Vec<u64> {
        let mut h = Vec::new();
        for &l in self.requests.iter().flatten() {
            let a = (l - 1) as usize;
            if h.len() <= a {
                h.resize(a + 1, 0);
            }
            h[a] += 1;
        }
        h
    }

    /// The per-position model fitted to the steps, conditional convention: `c_j = #(A ≥ j + 1) /
    /// #(A ≥ j)` over steps with `A` accepted drafts, for `j` up to the longest run seen. Drawing
    /// positions independently with these rates gives the trace's distribution of accepted drafts per
    /// step exactly (with as many drafts as the trace had), hence its mean.
    pub fn fit_conditional(&self) -> Vec<f64> {
        let h = self.histogram();
        let mut at_least: Vec<u64> = vec![0; h.len() + 1];
        for a in (0..h.len()).rev() {
            at_least[a] = at_least[a + 1] + h[a];
        }
        (0..h.len().saturating_sub(1))
            .map(|j| {
                if at_least[j] == 0 {
                    0.0
                } else {
                    at_least[j + 1] as f64 / at_least[j] as f64
                }
            })
            .collect()
    }

    /// A replay of this trace: whole requests in an order drawn by `rng` (every request once per pass,
    /// a fresh shuffle each pass), their steps in order. Drawing without replacement keeps the mix of
    /// long and short requests, so the replay's mean tokens per step converges on the trace's far
    /// faster than independent draws of whole requests.
    pub fn replay(&self, rng: SimRng) -> TraceReplay<'_> {
        TraceReplay {
            trace: self,
            rng,
            order: Vec::new(),
            next: 0,
            step: 0,
        }
    }
}

/// An endless sequence of per-step emitted tokens replayed from a [`StepTrace`].
pub struct TraceReplay<'a> {
    trace: &'a StepTrace,
    rng: SimRng,
    order: Vec<usize>,
    next: usize,
    step: usize,
}

impl TraceReplay<'_> {
    /// Requests of the current pass still to come, then a fresh shuffled pass.
    fn advance_request(&mut self) {
        self.next += 1;
        self.step = 0;
        if self.next >= self.order.len() {
            let n = self.trace.requests.len();
            self.order = (0..n).collect();
            for i in (1..n).rev() {
                let j = self.rng.random_range(0..=i);
                self.order.swap(i, j);
            }
            self.next = 0;
        }
    }
}

impl Iterator for TraceReplay<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.trace.requests.is_empty() {
            return None;
        }
        loop {
            if let Some(&r) = self.order.get(self.next) {
                if let Some(&l) = self.trace.requests[r].get(self.step) {
                    self.step += 1;
                    return Some(l);
                }
            }
            self.advance_request();
        }
    }
}

/// Conditional per-position rates to vLLM's unconditional ones: `u_j = Π_{m ≤ j} c_m`.
pub fn conditional_to_unconditional(c: &[f64]) -> Vec<f64> {
    let mut p = 1.0;
    c.iter()
        .map(|&x| {
            p *= x;
            p
        })
        .collect()
}

/// vLLM's unconditional per-position rates to conditional ones: `c_j = u_j / u_{j−1}` (`u_{−1} = 1`).
/// The rates must be probabilities that do not increase with position; after a zero the conditional
/// rate is undefined and given as 0.
pub fn unconditional_to_conditional(u: &[f64]) -> Result<Vec<f64>, String> {
    let mut prev = 1.0;
    let mut out = Vec::with_capacity(u.len());
    for (j, &x) in u.iter().enumerate() {
        if !(0.0..=1.0).contains(&x) {
            return Err(format!("position {j}: {x} is not a probability"));
        }
        if x > prev {
            return Err(format!(
                "position {j}: {x} exceeds the rate of position {} ({prev}); unconditional rates cannot rise",
                j.saturating_sub(1)
            ));
        }
        out.push(if prev > 0.0 { x / prev } else { 0.0 });
        prev = x;
    }
    Ok(out)
}

/// Expected tokens per step with `k` drafts under conditional rates `c` (the last repeats beyond its
/// end): `1 + Σ_{j<k} Π_{m≤j} c_m`.
pub fn expected_tokens_per_step(c: &[f64], k: u32) -> f64 {
    let mut p = 1.0;
    let mut e = 1.0;
    for j in 0..k as usize {
        let x = c.get(j).or(c.last()).copied().unwrap_or(0.0);
        p *= x;
        e += p;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn the_two_conventions_convert_both_ways_exactly_on_a_hand_worked_vector() {
        // Conditional: 3/4 accept the first draft; of those, half the second; of those, a quarter the
        // third. Unconditional: 3/4, 3/4·1/2 = 3/8, 3/8·1/4 = 3/32 (dyadic, so exact in binary).
        let c = [0.75, 0.5, 0.25];
        let u = [0.75, 0.375, 0.09375];
        assert_eq!(conditional_to_unconditional(&c), u.to_vec());
        assert_eq!(unconditional_to_conditional(&u).unwrap(), c.to_vec());
        // Expected tokens with 3 drafts: 1 + 3/4 + 3/8 + 3/32 = 2.21875, in either convention.
        assert_eq!(expected_tokens_per_step(&c, 3), 2.21875);
        assert_eq!(1.0 + u.iter().sum::<f64>(), 2.21875);
        assert!(unconditional_to_conditional(&[0.5, 0.6]).is_err());
        assert!(unconditional_to_conditional(&[1.5]).is_err());
    }

    #[test]
    fn walking_positions_follows_the_step_lengths_and_caps_at_k_plus_one() {
        // Positions: a step at 0 emits 3 (next at 3), at 3 emits 1 (next at 4), at 4 emits 2 (ends).
        let acc = vec![vec![3, 9, 9, 1, 2, 9]];
        let t = StepTrace::from_positions("t", &acc, None).unwrap();
        assert_eq!(t.requests, vec![vec![3, 1, 2]]);
        assert_eq!(t.mean_tokens_per_step(), 2.0);
        // k = 1: at most 2 per step: 0 → 2 (at 2, emits min(9, 2) = 2) → 4 → 6.
        let t1 = StepTrace::from_positions("t", &acc, Some(1)).unwrap();
        assert_eq!(t1.requests, vec![vec![2, 2, 2]]);
        assert!(StepTrace::from_positions("t", &[vec![1, 0]], None)
            .unwrap_err()
            .contains("request 0 position 1"));
    }

    #[test]
    fn the_fitted_model_gives_the_trace_mean_exactly_and_the_replay_within_one_percent() {
        // A small synthetic trace with uneven requests (a long one dominates the steps).
        let mut positions = Vec::new();
        for r in 0..40u32 {
            let len = 20 + (r * 37 % 300) as usize;
            positions.push((0..len).map(|i| 1 + ((i as u32 * 7 + r) % 5)).collect());
        }
        let t = StepTrace::from_positions("synthetic", &positions, None).unwrap();
        let mean = t.mean_tokens_per_step();
        let c = t.fit_conditional();
        let k = c.len() as u32;
        assert!((expected_tokens_per_step(&c, k) - mean).abs() < 1e-12);
        let mut replay = t.replay(stream(1, "trace", 0));
        let n = 100_000;
        let got = (0..n).map(|_| replay.next().unwrap() as f64).sum::<f64>() / n as f64;
        assert!((got - mean).abs() / mean < 0.01, "{got} vs {mean}");
    }
}
