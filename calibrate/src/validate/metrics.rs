//! The ground truth's metrics, defined as BLIS's validation computed them from inference-perf's
//! per-request records (derived and checked in docs/VALIDATION.md):
//!
//! - `e2e_*` and `ttft_*`: mean and percentiles (numpy's linear interpolation) over the successful
//!   requests of `request_latency` (send to last streamed event) and `time_to_first_token`;
//! - `itl_mean`: `(mean E2E − mean TTFT) / (mean output tokens − 1)` — a ratio of means over the
//!   requests, with inference-perf's own count of output tokens. That count is the client's re-count
//!   of the streamed text, not what the engine generated (`ignore_eos` at a fixed `max_tokens`), so
//!   it is lower where the detokenised text re-tokenises shorter (Llama-2-7B: 194 of 247).
//!
//! It is *not* inference-perf's `time_per_output_token` of the summary files: that is the mean gap
//! between streamed events, and vLLM's stream carries about two events per token, so it reads half the
//! decode time (3.6 ms for Llama-2-7B on H100, whose weights alone take 4.0 ms to read).
//!
//! Stages: a request belongs to the load stage during which it was sent; stage −1 is the whole run.
//! Values are in milliseconds.

use std::collections::BTreeMap;
use std::fmt;

/// One compared metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Mean end-to-end latency.
    E2eMean,
    /// 90th percentile end-to-end latency.
    E2eP90,
    /// 99th percentile end-to-end latency.
    E2eP99,
    /// Mean time to first token.
    TtftMean,
    /// 90th percentile time to first token.
    TtftP90,
    /// 99th percentile time to first token.
    TtftP99,
    /// Mean time per output token, ratio-of-means form (see the module notes).
    ItlMean,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 7] = [
        Metric::E2eMean,
        Metric::E2eP90,
        Metric::E2eP99,
        Metric::TtftMean,
        Metric::TtftP90,
        Metric::TtftP99,
        Metric::ItlMean,
    ];

    /// The name the error-record files use.
    pub fn name(self) -> &'static str {
        match self {
            Metric::E2eMean => "e2e_mean",
            Metric::E2eP90 => "e2e_p90",
            Metric::E2eP99 => "e2e_p99",
            Metric::TtftMean => "ttft_mean",
            Metric::TtftP90 => "ttft_p90",
            Metric::TtftP99 => "ttft_p99",
            Metric::ItlMean => "itl_mean",
        }
    }

    /// The metric of an error-record name, if it is one compared here.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the metrics need of one successful request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// When it was sent, seconds from the start of the run.
    pub arrival_s: f64,
    /// Time to first token, seconds.
    pub ttft_s: f64,
    /// End-to-end latency, seconds.
    pub e2e_s: f64,
    /// Output tokens as the metric counts them (see the module notes).
    pub output_tokens: f64,
}

/// A load stage: `rate_per_s` requests per second for `duration_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Requests per second.
    pub rate_per_s: f64,
    /// Seconds.
    pub duration_s: f64,
}

/// The stage during which a request sent at `arrival_s` was sent; the last stage for anything after.
pub fn stage_of(stages: &[Stage], arrival_s: f64) -> usize {
    let mut end = 0.0;
    for (i, s) in stages.iter().enumerate() {
        end += s.duration_s;
        if arrival_s < end {
            return i;
        }
    }
    stages.len().saturating_sub(1)
}

/// Percentile `p` (0..=100) of sorted values with numpy's default linear interpolation.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = p / 100.0 * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// The metrics of a set of requests, milliseconds; empty when there are none.
pub fn metrics(outcomes: &[&Outcome]) -> BTreeMap<Metric, f64> {
    let mut out = BTreeMap::new();
    if outcomes.is_empty() {
        return out;
    }
    let n = outcomes.len() as f64;
    let mut e2e: Vec<f64> = outcomes.iter().map(|o| o.e2e_s * 1e3).collect();
    let mut ttft: Vec<f64> = outcomes.iter().map(|o| o.ttft_s * 1e3).collect();
    e2e.sort_by(f64::total_cmp);
    ttft.sort_by(f64::total_cmp);
    let e2e_mean = e2e.iter().sum::<f64>() / n;
    let ttft_mean = ttft.iter().sum::<f64>() / n;
    let tokens_mean = outcomes.iter().map(|o| o.output_tokens).sum::<f64>() / n;
    out.insert(Metric::E2eMean, e2e_mean);
    out.insert(Metric::TtftMean, ttft_mean);
    for (m, v, p) in [
        (Metric::E2eP90, &e2e, 90.0),
        (Metric::E2eP99, &e2e, 99.0),
        (Metric::TtftP90, &ttft, 90.0),
        (Metric::TtftP99, &ttft, 99.0),
    ] {
        if let Some(x) = percentile(v, p) {
            out.insert(m, x);
        }
    }
    if tokens_mean > 1.0 {
        out.insert(
            Metric::ItlMean,
            (e2e_mean - ttft_mean) / (tokens_mean - 1.0),
        );
    }
    out
}

/// The metrics per stage (0, 1, …) and for the whole run (−1).
pub fn by_stage(outcomes: &[Outcome], stages: &[Stage]) -> BTreeMap<(i32, Metric), f64> {
    let mut out = BTreeMap::new();
    let all: Vec<&Outcome> = outcomes.iter().collect();
    for (m, v) in metrics(&all) {
        out.insert((-1, m), v);
    }
    for s in 0..stages.len() {
        let part: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| stage_of(stages, o.arrival_s) == s)
            .collect();
        for (m, v) in metrics(&part) {
            out.insert((s as i32, m), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(arrival_s: f64, ttft_s: f64, e2e_s: f64, output_tokens: f64) -> Outcome {
        Outcome {
            arrival_s,
            ttft_s,
            e2e_s,
            output_tokens,
        }
    }

    #[test]
    fn hand_worked_metrics_of_four_requests() {
        // Stage 0 is [0, 10) s, stage 1 [10, 30) s.
        let stages = [
            Stage {
                rate_per_s: 1.0,
                duration_s: 10.0,
            },
            Stage {
                rate_per_s: 2.0,
                duration_s: 20.0,
            },
        ];
        let reqs = [
            o(0.0, 0.010, 1.010, 101.0),
            o(5.0, 0.030, 2.030, 201.0),
            o(12.0, 0.020, 1.520, 51.0),
            o(29.9, 0.040, 3.040, 1.0),
        ];
        let m = by_stage(&reqs, &stages);
        // Whole run: E2E mean (1010 + 2030 + 1520 + 3040)/4 = 1900 ms; TTFT mean 25 ms; tokens mean
        // (101 + 201 + 51 + 1)/4 = 88.5, so ITL = (1900 − 25)/87.5 = 21.428571 ms.
        assert!((m[&(-1, Metric::E2eMean)] - 1900.0).abs() < 1e-9);
        assert!((m[&(-1, Metric::TtftMean)] - 25.0).abs() < 1e-9);
        assert!((m[&(-1, Metric::ItlMean)] - 1875.0 / 87.5).abs() < 1e-9);
        // p90 of sorted E2E [1010, 1520, 2030, 3040]: rank 0.9 × 3 = 2.7 → 2030 + 0.7 × 1010 = 2737.
        assert!((m[&(-1, Metric::E2eP90)] - 2737.0).abs() < 1e-9);
        // p99 of TTFT [10, 20, 30, 40]: rank 2.97 → 30 + 0.97 × 10 = 39.7.
        assert!((m[&(-1, Metric::TtftP99)] - 39.7).abs() < 1e-9);
        // Stage 0 holds the first two: E2E mean 1520, ITL (1520 − 20)/(151 − 1) = 10 ms.
        assert!((m[&(0, Metric::E2eMean)] - 1520.0).abs() < 1e-9);
        assert!((m[&(0, Metric::ItlMean)] - 10.0).abs() < 1e-9);
        // Stage 1: the last two, ITL (2280 − 30)/(26 − 1) = 90 ms — a request counted at one token
        // drags the mean count down, as a short client re-count does in the real data.
        assert!((m[&(1, Metric::ItlMean)] - 90.0).abs() < 1e-9);
    }

    #[test]
    fn stages_split_at_their_boundaries() {
        let s = [
            Stage {
                rate_per_s: 5.0,
                duration_s: 600.0,
            },
            Stage {
                rate_per_s: 10.0,
                duration_s: 600.0,
            },
        ];
        assert_eq!(stage_of(&s, 0.0), 0);
        assert_eq!(stage_of(&s, 599.999), 0);
        assert_eq!(stage_of(&s, 600.0), 1);
        assert_eq!(
            stage_of(&s, 5000.0),
            1,
            "late sends count in the last stage"
        );
        assert!(percentile(&[], 50.0).is_none());
        assert!(metrics(&[]).is_empty());
    }
}
