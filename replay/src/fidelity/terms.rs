//! The acceptance and workload terms of the error split.
//!
//! - **Acceptance**: the live engine's `/metrics` count, per draft position `i`, the draft tokens
//!   verified there and those accepted (position `i` is accepted only if every earlier one was). Their
//!   ratio is the probability that a drafted prefix reaches `i + 1` accepted tokens, which the
//!   acceptance model predicts as `Π_{j ≤ i} α_j` (its conditional rates). Accepted tokens per
//!   verification compare the engine's count with the prediction's `requests.csv`.
//! - **Workload**: the prompt and output lengths the engine reports having served, against the
//!   trace's (the predicted rows carry the trace's lengths).

use serde::{Deserialize, Serialize};
use specsim_sim::metrics::RequestRecord;
use std::collections::BTreeMap;

/// The counters of a `/metrics` text the acceptance term needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcceptanceCounts {
    /// Draft tokens verified, by position.
    pub drafted_at: BTreeMap<u32, f64>,
    /// Draft tokens accepted, by position.
    pub accepted_at: BTreeMap<u32, f64>,
    /// Sequence verifications, by the k they were verified with (0 included).
    pub chosen_k: BTreeMap<u32, f64>,
}

impl AcceptanceCounts {
    /// The measured conditional acceptance rate per position (`α_i`: accepted at `i` given accepted
    /// up to `i − 1`), from position 0 up to the last one the engine drafted at; `None` if it never
    /// drafted. Position `i`'s reach `r_i = accepted_i / drafted_i` is `Π_{j ≤ i} α_j`, so
    /// `α_i = r_i / r_{i−1}`.
    pub fn conditional_rates(&self) -> Option<Vec<f64>> {
        let mut rates = Vec::new();
        let mut prev = 1.0;
        for (&i, &d) in &self.drafted_at {
            if i as usize != rates.len() || d <= 0.0 {
                break;
            }
            let reach = self.accepted_at.get(&i).copied().unwrap_or(0.0) / d;
            rates.push(if prev > 0.0 {
                (reach / prev).clamp(0.0, 1.0)
            } else {
                0.0
            });
            prev = reach;
        }
        (!rates.is_empty()).then_some(rates)
    }
}

/// The value of label `key` in a Prometheus sample's `{...}` part.
fn label(labels: &str, key: &str) -> Option<u32> {
    labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().trim_matches('"').parse().ok())
}

/// Reads the acceptance counters from a `/metrics` text (other lines are ignored).
pub fn parse_acceptance_metrics(text: &str) -> AcceptanceCounts {
    let mut c = AcceptanceCounts::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = head.split_once('{') else {
            continue;
        };
        let labels = labels.trim_end_matches('}');
        let (map, key) = match name {
            "specsim_draft_tokens_total" => (&mut c.drafted_at, "position"),
            "specsim_draft_accepted_total" => (&mut c.accepted_at, "position"),
            "specsim_chosen_k_total" => (&mut c.chosen_k, "k"),
            _ => continue,
        };
        if let Some(i) = label(labels, key) {
            *map.entry(i).or_default() += value;
        }
    }
    c
}

/// Predicted against measured acceptance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceTerm {
    /// Per position `i`: (predicted, measured) probability that a drafted prefix reaches `i + 1`
    /// accepted tokens; measured only where the engine drafted at `i`.
    pub reach: Vec<(u32, f64, Option<f64>)>,
    /// Predicted accepted draft tokens per decode step (Σ accepted / Σ steps after the first).
    pub accepted_per_step_predicted: f64,
    /// Measured accepted draft tokens per sequence verification.
    pub accepted_per_step_measured: Option<f64>,
}

/// The acceptance term: `rate(j)` is the acceptance model's conditional rate at position `j`.
pub fn acceptance_term(
    predicted: &[RequestRecord],
    measured: &AcceptanceCounts,
    rate: &dyn Fn(u32) -> f64,
) -> AcceptanceTerm {
    let positions = measured.drafted_at.keys().max().map_or(0, |m| m + 1);
    let mut cum = 1.0;
    let reach = (0..positions)
        .map(|i| {
            cum *= rate(i);
            let m = match measured.drafted_at.get(&i) {
                Some(&d) if d > 0.0 => {
                    Some(measured.accepted_at.get(&i).copied().unwrap_or(0.0) / d)
                }
                _ => None,
            };
            (i, cum, m)
        })
        .collect();
    let accepted: u64 = predicted.iter().map(|r| r.accepted).sum();
    let steps: u64 = predicted
        .iter()
        .map(|r| u64::from(r.steps.saturating_sub(1)))
        .sum();
    let verifications: f64 = measured.chosen_k.values().sum();
    // `+ 0.0`: an empty float sum is −0.0, which reports print as "-0.00".
    let accepted_m: f64 = measured.accepted_at.values().sum::<f64>() + 0.0;
    AcceptanceTerm {
        reach,
        accepted_per_step_predicted: if steps == 0 {
            0.0
        } else {
            accepted as f64 / steps as f64
        },
        accepted_per_step_measured: (verifications > 0.0).then(|| accepted_m / verifications),
    }
}

/// Lengths served against the trace's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadTerm {
    /// Requests compared (on both sides, the measured one finished).
    pub requests: usize,
    /// Mean of (served − trace) / trace prompt tokens.
    pub prompt_mean_rel: f64,
    /// Fraction of prompts of exactly the trace's length.
    pub prompt_exact: f64,
    /// Mean of (served − trace) / trace output tokens.
    pub output_mean_rel: f64,
    /// Fraction of outputs of exactly the trace's length.
    pub output_exact: f64,
}

/// The workload term over the ids both sides have.
pub fn workload_term(predicted: &[RequestRecord], measured: &[RequestRecord]) -> WorkloadTerm {
    let by_id: std::collections::HashMap<u64, &RequestRecord> =
        predicted.iter().map(|r| (r.id, r)).collect();
    let (mut pr, mut pe, mut or, mut oe, mut n) = (0.0, 0usize, 0.0, 0usize, 0usize);
    for m in measured.iter().filter(|m| m.error.is_none()) {
        let Some(p) = by_id.get(&m.id) else { continue };
        if p.prompt_tokens == 0 || p.output_tokens == 0 {
            continue;
        }
        n += 1;
        pr += (m.prompt_tokens as f64 - p.prompt_tokens as f64) / p.prompt_tokens as f64;
        or += (m.output_tokens as f64 - p.output_tokens as f64) / p.output_tokens as f64;
        pe += usize::from(m.prompt_tokens == p.prompt_tokens);
        oe += usize::from(m.output_tokens == p.output_tokens);
    }
    let per = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    WorkloadTerm {
        requests: n,
        prompt_mean_rel: per(pr),
        prompt_exact: per(pe as f64),
        output_mean_rel: per(or),
        output_exact: per(oe as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, prompt: u32, output: u32, accepted: u64, steps: u32) -> RequestRecord {
        RequestRecord {
            id,
            arrival_s: 0.0,
            prompt_tokens: prompt,
            output_tokens: output,
            first_token_s: 0.0,
            finish_s: 0.0,
            ttft_s: 0.0,
            tpot_s: 0.0,
            e2e_s: 0.0,
            drafted: 0,
            accepted,
            steps,
            slo_met: true,
            replica: 0,
            policy: "p".into(),
            error: None,
            cached_tokens: None,
        }
    }

    #[test]
    fn acceptance_reach_is_the_product_of_conditional_rates() {
        // Engine: 10 verifications with k = 2, 20 drafted at each of positions 0 and 1... as the
        // runtime renders them; 8 accepted at 0, 4 at 1.
        let text = "# HELP x\nspecsim_draft_tokens_total{position=\"0\"} 10\nspecsim_draft_tokens_total{position=\"1\"} 10\nspecsim_draft_accepted_total{position=\"0\"} 8\nspecsim_draft_accepted_total{position=\"1\"} 4\nspecsim_chosen_k_total{k=\"2\"} 10\nspecsim_steps_total 10\n";
        let m = parse_acceptance_metrics(text);
        assert_eq!(m.drafted_at.len(), 2);
        // Model: α = 0.8 then 0.5 → reach 0.8, 0.4: exactly what was measured.
        let pred = vec![row(0, 10, 10, 12, 11)];
        let t = acceptance_term(&pred, &m, &|j| if j == 0 { 0.8 } else { 0.5 });
        assert_eq!(t.reach.len(), 2);
        assert!((t.reach[0].1 - 0.8).abs() < 1e-12 && t.reach[0].2 == Some(0.8));
        assert!((t.reach[1].1 - 0.4).abs() < 1e-12 && t.reach[1].2 == Some(0.4));
        // Conditional rates back from the counts: 0.8, then 0.4 / 0.8.
        assert_eq!(m.conditional_rates(), Some(vec![0.8, 0.5]));
        assert_eq!(AcceptanceCounts::default().conditional_rates(), None);
        // Predicted: 12 accepted over 10 decode steps; measured 12 over 10 verifications.
        assert!((t.accepted_per_step_predicted - 1.2).abs() < 1e-12);
        assert_eq!(t.accepted_per_step_measured, Some(1.2));
        // An engine that verified without drafting reports exactly 0 accepted per step.
        let none = parse_acceptance_metrics("specsim_chosen_k_total{k=\"0\"} 7\n");
        let t = acceptance_term(&pred, &none, &|_| 0.5);
        assert!(t.accepted_per_step_measured.unwrap().is_sign_positive());
    }

    #[test]
    fn workload_term_compares_lengths_by_id() {
        let pred = vec![row(0, 100, 32, 0, 0), row(1, 50, 32, 0, 0)];
        let mut meas = vec![
            row(0, 110, 32, 0, 0),
            row(1, 50, 16, 0, 0),
            row(2, 9, 9, 0, 0),
        ];
        meas[1].error = None;
        let w = workload_term(&pred, &meas);
        assert_eq!(w.requests, 2);
        assert!((w.prompt_mean_rel - 0.05).abs() < 1e-12);
        assert_eq!(w.prompt_exact, 0.5);
        assert!((w.output_mean_rel + 0.25).abs() < 1e-12);
        assert_eq!(w.output_exact, 0.5);
    }
}
