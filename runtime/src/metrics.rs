//! Serving metrics for `/metrics`, kept in a [`prometheus_client`] registry and encoded by it in the
//! Prometheus text format (0.0.4).
//!
//! The HTTP layer records request outcomes, token counts, TTFT and TPOT; the engine driver records each
//! verification step (batch size, k chosen per sequence, acceptance per draft position) and each model
//! forward; KV use and queue depth are read from [`Load`] when `/metrics` is scraped.
//!
//! Besides specsim's own names (`specsim_*`), the speculative-decoding counters are also offered under
//! vLLM's names, with vLLM's `model_name` and `engine` labels, so a dashboard built for vLLM reads this
//! engine unchanged:
//!
//! | vLLM name | meaning |
//! |---|---|
//! | `vllm:spec_decode_num_drafts_total` | draft proposals: sequences verified with at least one draft token |
//! | `vllm:spec_decode_num_draft_tokens_total` | draft tokens verified |
//! | `vllm:spec_decode_num_accepted_tokens_total` | draft tokens accepted |
//! | `vllm:spec_decode_num_accepted_tokens_per_pos_total{position}` | accepted draft tokens by 0-based draft position |

use crate::generate::Load;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Draft positions tracked individually; deeper positions are counted in the last bucket.
pub const MAX_TRACKED_POSITIONS: usize = 16;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const TPOT_BUCKETS: &[f64] = &[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How a request ended, as counted by `specsim_requests_total{outcome=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Finished normally.
    Ok,
    /// The client went away before the end.
    Cancelled,
    /// Refused with a 4xx before generation (bad input, limits).
    Invalid,
    /// Refused because the queue was full (or the server was draining).
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

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];
type SecondsCounter = Counter<f64, AtomicU64>;

/// The server's metric registry; shared by the HTTP handlers and the engine driver.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// vLLM's labels: `model_name`, `engine`.
    vllm_labels: Labels2,
    requests: Family<Labels2, Counter>,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    ttft: Histogram,
    tpot: Histogram,
    batch: Histogram,
    steps: Counter,
    forwards: Family<Labels1, Counter>,
    forward_seconds: Family<Labels1, SecondsCounter>,
    forward_predicted: Family<Labels1, SecondsCounter>,
    chosen_k: Family<Labels1, Counter>,
    drafted_at: Family<Labels1, Counter>,
    accepted_at: Family<Labels1, Counter>,
    vllm_drafts: Family<Labels2, Counter>,
    vllm_draft_tokens: Family<Labels2, Counter>,
    vllm_accepted: Family<Labels2, Counter>,
    vllm_accepted_per_pos: Family<Labels3, Counter>,
    in_flight: Gauge,
    running: Gauge,
    kv_used: Gauge,
    kv_capacity: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("specsim")
    }
}

impl Metrics {
    /// A registry whose vLLM-named counters carry `model_name = model` (the served model's name).
    pub fn new(model: &str) -> Self {
        let mut r = Registry::default();
        fn reg<M: prometheus_client::registry::Metric + Clone>(
            r: &mut Registry,
            name: &str,
            help: &str,
            m: M,
        ) -> M {
            r.register(name, help, m.clone());
            m
        }
        let hist = |b: &[f64]| Histogram::new(b.iter().copied());
        let m = Metrics {
            vllm_labels: [
                ("model_name", model.to_string()),
                ("engine", "0".to_string()),
            ],
            requests: reg(
                &mut r,
                "specsim_requests",
                "Requests by endpoint and outcome",
                Family::default(),
            ),
            prompt_tokens: reg(
                &mut r,
                "specsim_prompt_tokens",
                "Prompt tokens of finished requests",
                Counter::default(),
            ),
            completion_tokens: reg(
                &mut r,
                "specsim_generation_tokens",
                "Tokens generated for finished requests",
                Counter::default(),
            ),
            ttft: reg(
                &mut r,
                "specsim_time_to_first_token_seconds",
                "Time from request arrival to its first token",
                hist(TTFT_BUCKETS),
            ),
            tpot: reg(
                &mut r,
                "specsim_time_per_output_token_seconds",
                "Mean time between output tokens after the first, per request",
                hist(TPOT_BUCKETS),
            ),
            batch: reg(
                &mut r,
                "specsim_batch_size",
                "Sequences per verification step",
                hist(BATCH_BUCKETS),
            ),
            steps: reg(
                &mut r,
                "specsim_steps",
                "Verification steps",
                Counter::default(),
            ),
            forwards: reg(
                &mut r,
                "specsim_forwards",
                "Model forwards",
                Family::default(),
            ),
            forward_seconds: reg(
                &mut r,
                "specsim_forward_seconds",
                "Measured time in model forwards (sampling and verification included)",
                Family::default(),
            ),
            forward_predicted: reg(
                &mut r,
                "specsim_forward_predicted_seconds",
                "Time the cost model (serve --profile) predicts for the same forwards",
                Family::default(),
            ),
            chosen_k: reg(
                &mut r,
                "specsim_chosen_k",
                "Sequences verified with k draft tokens, by k",
                Family::default(),
            ),
            drafted_at: reg(
                &mut r,
                "specsim_draft_tokens",
                "Draft tokens verified, by draft position (0-based)",
                Family::default(),
            ),
            accepted_at: reg(
                &mut r,
                "specsim_draft_accepted",
                "Draft tokens accepted, by draft position (0-based)",
                Family::default(),
            ),
            vllm_drafts: reg(
                &mut r,
                "vllm:spec_decode_num_drafts",
                "Number of spec decoding drafts",
                Family::default(),
            ),
            vllm_draft_tokens: reg(
                &mut r,
                "vllm:spec_decode_num_draft_tokens",
                "Number of draft tokens",
                Family::default(),
            ),
            vllm_accepted: reg(
                &mut r,
                "vllm:spec_decode_num_accepted_tokens",
                "Number of accepted tokens",
                Family::default(),
            ),
            vllm_accepted_per_pos: reg(
                &mut r,
                "vllm:spec_decode_num_accepted_tokens_per_pos",
                "Accepted tokens per draft position",
                Family::default(),
            ),
            in_flight: reg(
                &mut r,
                "specsim_requests_in_flight",
                "Requests accepted and not finished",
                Gauge::default(),
            ),
            running: reg(
                &mut r,
                "specsim_requests_running",
                "Requests in the running batch",
                Gauge::default(),
            ),
            kv_used: reg(
                &mut r,
                "specsim_kv_used_tokens",
                "KV cache in use, in tokens",
                Gauge::default(),
            ),
            kv_capacity: reg(
                &mut r,
                "specsim_kv_capacity_tokens",
                "KV cache capacity, in tokens",
                Gauge::default(),
            ),
            registry: r,
        };
        // vLLM's counters exist (at 0) from the start, as vLLM's do.
        for f in [&m.vllm_drafts, &m.vllm_draft_tokens, &m.vllm_accepted] {
            let _ = f.get_or_create(&m.vllm_labels);
        }
        m
    }

    /// Counts a request on `endpoint` (`completions`, `chat`) that ended with `outcome`.
    pub fn request(&self, endpoint: &'static str, outcome: Outcome) {
        self.requests
            .get_or_create(&[
                ("endpoint", endpoint.to_string()),
                ("outcome", outcome.label().to_string()),
            ])
            .inc();
    }

    /// Records a finished request's token counts and latencies (TPOT only with two or more tokens).
    pub fn finished(
        &self,
        prompt_tokens: usize,
        completion_tokens: usize,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        self.prompt_tokens.inc_by(prompt_tokens as u64);
        self.completion_tokens.inc_by(completion_tokens as u64);
        if let Some(t) = ttft_s.filter(|t| t.is_finite()) {
            self.ttft.observe(t);
        }
        if let Some(t) = tpot_s.filter(|t| t.is_finite()) {
            self.tpot.observe(t);
        }
    }

    /// Records one verification step: for each sequence in the batch, `(drafted, accepted)`.
    pub fn verify_step(&self, seqs: &[(u32, u32)]) {
        if seqs.is_empty() {
            return;
        }
        self.steps.inc();
        self.batch.observe(seqs.len() as f64);
        let (mut drafts, mut drafted, mut accepted) = (0u64, 0u64, 0u64);
        for &(d, a) in seqs {
            self.chosen_k.get_or_create(&[("k", d.to_string())]).inc();
            if d > 0 {
                drafts += 1;
            }
            drafted += d as u64;
            accepted += a.min(d) as u64;
            for pos in 0..d as usize {
                let slot = pos.min(MAX_TRACKED_POSITIONS - 1).to_string();
                self.drafted_at
                    .get_or_create(&[("position", slot.clone())])
                    .inc();
                if (pos as u32) < a {
                    self.accepted_at
                        .get_or_create(&[("position", slot.clone())])
                        .inc();
                    let [m, e] = self.vllm_labels.clone();
                    self.vllm_accepted_per_pos
                        .get_or_create(&[m, e, ("position", slot)])
                        .inc();
                }
            }
        }
        self.vllm_drafts
            .get_or_create(&self.vllm_labels)
            .inc_by(drafts);
        self.vllm_draft_tokens
            .get_or_create(&self.vllm_labels)
            .inc_by(drafted);
        self.vllm_accepted
            .get_or_create(&self.vllm_labels)
            .inc_by(accepted);
    }

    /// Records one model forward: its measured time and what the cost model predicted for its batch.
    pub fn forward(&self, model: ForwardModel, measured_ns: u64, predicted_ns: u64) {
        let l = [("model", model.label().to_string())];
        self.forwards.get_or_create(&l).inc();
        self.forward_seconds
            .get_or_create(&l)
            .inc_by(measured_ns as f64 / 1e9);
        self.forward_predicted
            .get_or_create(&l)
            .inc_by(predicted_ns as f64 / 1e9);
    }

    /// The Prometheus text exposition, with occupancy gauges from `load`.
    pub fn render(&self, load: &Load) -> String {
        let g = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        self.in_flight.set(g(load.in_flight as u64));
        self.running.set(g(load.running as u64));
        self.kv_used.set(g(load.kv_used_tokens));
        self.kv_capacity.set(g(load.kv_capacity_tokens));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "vllm:spec_decode_num_drafts_total{model_name=\"specsim\",engine=\"0\"} 2",
            "vllm:spec_decode_num_draft_tokens_total{model_name=\"specsim\",engine=\"0\"} 5",
            "vllm:spec_decode_num_accepted_tokens_total{model_name=\"specsim\",engine=\"0\"} 3",
            "vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"specsim\",engine=\"0\",position=\"0\"} 2",
            "vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"specsim\",engine=\"0\",position=\"1\"} 1",
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
            "specsim_forward_seconds_total{model=\"target\"} 0.2",
            "specsim_forward_predicted_seconds_total{model=\"target\"} 0.2",
            "specsim_forward_seconds_total{model=\"draft\"} 0.03",
            "specsim_forward_predicted_seconds_total{model=\"draft\"} 0.025",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
