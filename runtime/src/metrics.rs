//! Serving metrics in Prometheus text format (exposition format 0.0.4), written by hand: a few counters
//! and histograms do not need a metrics framework.
//!
//! The HTTP layer records request outcomes, token counts, TTFT and TPOT; the engine driver records each
//! verification step (batch size, k chosen per sequence, acceptance per draft position); KV use and queue
//! depth are read from [`Load`] when `/metrics` is scraped.

use crate::generate::Load;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Draft positions tracked individually; deeper positions are counted in the last bucket.
pub const MAX_TRACKED_POSITIONS: usize = 16;

const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const TPOT_BUCKETS: &[f64] = &[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// How a request ended, as counted by `specsim_requests_total{outcome=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Finished normally.
    Ok,
    /// The client went away before the end.
    Cancelled,
    /// Refused with a 4xx before generation (bad input, limits).
    Invalid,
    /// Refused because the queue was full.
    Rejected,
    /// The generator failed.
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cancelled => "cancelled",
            Outcome::Invalid => "invalid",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

/// Which model ran a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ForwardModel {
    /// The draft model (all draft positions of one step are separate forwards).
    Draft,
    /// The target model (prefill, decode, verification, or a mix).
    Target,
}

impl ForwardModel {
    /// `draft` or `target`.
    pub fn label(self) -> &'static str {
        match self {
            ForwardModel::Draft => "draft",
            ForwardModel::Target => "target",
        }
    }
}

/// Measured and predicted forward time of one model.
#[derive(Debug, Clone, Copy, Default)]
struct ForwardTotals {
    forwards: u64,
    measured_s: f64,
    predicted_s: f64,
}

/// Reads one counter of [`ForwardTotals`] as exposition text.
type ForwardValue = fn(&ForwardTotals) -> String;

#[derive(Debug)]
struct Inner {
    forwards: BTreeMap<ForwardModel, ForwardTotals>,
    requests: BTreeMap<(&'static str, Outcome), u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    ttft: Histogram,
    tpot: Histogram,
    batch: Histogram,
    steps: u64,
    chosen_k: BTreeMap<u32, u64>,
    drafted_at: [u64; MAX_TRACKED_POSITIONS],
    accepted_at: [u64; MAX_TRACKED_POSITIONS],
}

/// The server's metric registry; shared by the HTTP handlers and the engine driver.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                forwards: BTreeMap::new(),
                requests: BTreeMap::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                ttft: Histogram::new(TTFT_BUCKETS),
                tpot: Histogram::new(TPOT_BUCKETS),
                batch: Histogram::new(BATCH_BUCKETS),
                steps: 0,
                chosen_k: BTreeMap::new(),
                drafted_at: [0; MAX_TRACKED_POSITIONS],
                accepted_at: [0; MAX_TRACKED_POSITIONS],
            }),
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock cannot leave the counters inconsistent in a harmful way.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Counts a request on `endpoint` (`completions`, `chat`) that ended with `outcome`.
    pub fn request(&self, endpoint: &'static str, outcome: Outcome) {
        self.with(|m| *m.requests.entry((endpoint, outcome)).or_insert(0) += 1);
    }

    /// Records a finished request's token counts and latencies (TPOT only with two or more tokens).
    pub fn finished(
        &self,
        prompt_tokens: usize,
        completion_tokens: usize,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        self.with(|m| {
            m.prompt_tokens += prompt_tokens as u64;
            m.completion_tokens += completion_tokens as u64;
            if let Some(t) = ttft_s {
                m.ttft.observe(t);
            }
            if let Some(t) = tpot_s {
                m.tpot.observe(t);
            }
        });
    }

    /// Records one verification step: for each sequence in the batch, `(drafted, accepted)`.
    pub fn verify_step(&self, seqs: &[(u32, u32)]) {
        if seqs.is_empty() {
            return;
        }
        self.with(|m| {
            m.steps += 1;
            m.batch.observe(seqs.len() as f64);
            for &(drafted, accepted) in seqs {
                *m.chosen_k.entry(drafted).or_insert(0) += 1;
                for pos in 0..drafted as usize {
                    let slot = pos.min(MAX_TRACKED_POSITIONS - 1);
                    m.drafted_at[slot] += 1;
                    if (pos as u32) < accepted {
                        m.accepted_at[slot] += 1;
                    }
                }
            }
        });
    }

    /// Records one model forward: its measured time and what the cost model predicted for its batch.
    pub fn forward(&self, model: ForwardModel, measured_ns: u64, predicted_ns: u64) {
        self.with(|m| {
            let t = m.forwards.entry(model).or_default();
            t.forwards += 1;
            t.measured_s += measured_ns as f64 / 1e9;
            t.predicted_s += predicted_ns as f64 / 1e9;
        });
    }

    /// The Prometheus text exposition, with occupancy gauges from `load`.
    pub fn render(&self, load: &Load) -> String {
        let mut out = String::new();
        self.with(|m| {
            out.push_str("# HELP specsim_requests_total Requests by endpoint and outcome.\n# TYPE specsim_requests_total counter\n");
            for ((ep, oc), n) in &m.requests {
                let _ = writeln!(out, "specsim_requests_total{{endpoint=\"{ep}\",outcome=\"{}\"}} {n}", oc.label());
            }
            let _ = writeln!(out, "# HELP specsim_prompt_tokens_total Prompt tokens of finished requests.\n# TYPE specsim_prompt_tokens_total counter\nspecsim_prompt_tokens_total {}", m.prompt_tokens);
            let _ = writeln!(out, "# HELP specsim_generation_tokens_total Tokens generated for finished requests.\n# TYPE specsim_generation_tokens_total counter\nspecsim_generation_tokens_total {}", m.completion_tokens);
            m.ttft.write(&mut out, "specsim_time_to_first_token_seconds", "Time from request arrival to its first token.");
            m.tpot.write(&mut out, "specsim_time_per_output_token_seconds", "Mean time between output tokens after the first, per request.");
            m.batch.write(&mut out, "specsim_batch_size", "Sequences per verification step.");
            let _ = writeln!(out, "# HELP specsim_steps_total Verification steps.\n# TYPE specsim_steps_total counter\nspecsim_steps_total {}", m.steps);
            let forwards: [(&str, &str, ForwardValue); 3] = [
                ("specsim_forwards_total", "Model forwards.", |t| t.forwards.to_string()),
                ("specsim_forward_seconds_total", "Measured time in model forwards (sampling and verification included).", |t| format!("{:.6}", t.measured_s)),
                ("specsim_forward_predicted_seconds_total", "Time the cost model (serve --profile) predicts for the same forwards.", |t| format!("{:.6}", t.predicted_s)),
            ];
            for (name, help, value) in forwards {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (model, t) in &m.forwards {
                    let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", model.label(), value(t));
                }
            }
            out.push_str("# HELP specsim_chosen_k_total Sequences verified with k draft tokens, by k.\n# TYPE specsim_chosen_k_total counter\n");
            for (k, n) in &m.chosen_k {
                let _ = writeln!(out, "specsim_chosen_k_total{{k=\"{k}\"}} {n}");
            }
            out.push_str("# HELP specsim_draft_tokens_total Draft tokens verified, by draft position (0-based).\n# TYPE specsim_draft_tokens_total counter\n");
            for (p, n) in m.drafted_at.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(out, "specsim_draft_tokens_total{{position=\"{p}\"}} {n}");
            }
            out.push_str("# HELP specsim_draft_accepted_total Draft tokens accepted, by draft position (0-based).\n# TYPE specsim_draft_accepted_total counter\n");
            for (p, n) in m.accepted_at.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(out, "specsim_draft_accepted_total{{position=\"{p}\"}} {n}");
            }
        });
        let gauges = [
            (
                "specsim_requests_in_flight",
                "Requests accepted and not finished.",
                load.in_flight as u64,
            ),
            (
                "specsim_requests_running",
                "Requests in the running batch.",
                load.running as u64,
            ),
            (
                "specsim_kv_used_tokens",
                "KV cache in use, in tokens.",
                load.kv_used_tokens,
            ),
            (
                "specsim_kv_capacity_tokens",
                "KV cache capacity, in tokens.",
                load.kv_capacity_tokens,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 10.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 3, 4]);
        assert_eq!(h.count, 5);
        assert_eq!(h.sum, 16.0);
    }

    #[test]
    fn acceptance_is_counted_per_position() {
        let m = Metrics::default();
        // Three sequences: drafted 3 accepted 1; drafted 2 accepted 2; drafted 0.
        m.verify_step(&[(3, 1), (2, 2), (0, 0)]);
        let text = m.render(&Load::default());
        for line in [
            "specsim_draft_tokens_total{position=\"0\"} 2",
            "specsim_draft_tokens_total{position=\"1\"} 2",
            "specsim_draft_tokens_total{position=\"2\"} 1",
            "specsim_draft_accepted_total{position=\"0\"} 2",
            "specsim_draft_accepted_total{position=\"1\"} 1",
            "specsim_chosen_k_total{k=\"0\"} 1",
            "specsim_chosen_k_total{k=\"3\"} 1",
            "specsim_batch_size_bucket{le=\"2\"} 0",
            "specsim_batch_size_bucket{le=\"4\"} 1",
            "specsim_steps_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        assert!(!text.contains("specsim_draft_accepted_total{position=\"2\"}"));
    }

    #[test]
    fn forward_times_sum_per_model_beside_their_predictions() {
        let m = Metrics::default();
        m.forward(ForwardModel::Target, 120_000_000, 100_000_000);
        m.forward(ForwardModel::Target, 80_000_000, 100_000_000);
        m.forward(ForwardModel::Draft, 30_000_000, 25_000_000);
        let text = m.render(&Load::default());
        for line in [
            "specsim_forwards_total{model=\"draft\"} 1",
            "specsim_forwards_total{model=\"target\"} 2",
            "specsim_forward_seconds_total{model=\"target\"} 0.200000",
            "specsim_forward_predicted_seconds_total{model=\"target\"} 0.200000",
            "specsim_forward_seconds_total{model=\"draft\"} 0.030000",
            "specsim_forward_predicted_seconds_total{model=\"draft\"} 0.025000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
