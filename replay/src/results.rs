//! What a replay measured, per request and overall, and how it becomes `requests.csv` rows.
//!
//! A [`RequestResult`] keeps the raw observation (every output arrival, relative to the run start);
//! [`record_of`] turns it into the simulator's row with the simulator's definitions (TTFT and E2E
//! from the scheduled arrival, TPOT over the tokens after the first); [`ReplayStats`] sums up what
//! the simulator's schema has no room for (failure kinds, send lag, inter-token gaps, prompt-length
//! fidelity).

use crate::endpoint::Failure;
use crate::prompts::PromptMode;
use specsim_sim::metrics::{LatencyStats, RequestRecord, SloConfig};
use std::collections::BTreeMap;

/// One request's outcome, with timestamps relative to the run start.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestResult {
    /// Request id.
    pub id: u64,
    /// Scheduled arrival, seconds from start.
    pub arrival_s: f64,
    /// Prompt tokens the trace asked for.
    pub target_prompt_tokens: u32,
    /// Output tokens the trace asked for.
    pub target_output_tokens: u32,
    /// When it was sent, seconds from start (`None`: never sent).
    pub sent_s: Option<f64>,
    /// Output arrivals: (seconds from start, tokens).
    pub chunks: Vec<(f64, u32)>,
    /// What the engine reported.
    pub prompt_tokens: Option<u32>,
    /// Output tokens received.
    pub output_tokens: u32,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
}

/// Failure counts, send lag and prompt-length fidelity of a replay (written to `replay.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplayStats {
    /// The engine.
    pub endpoint: String,
    /// Requests in the workload.
    pub requests: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Failures by kind (`connect`, `timeout`, `http_503`, ...).
    pub failures: BTreeMap<String, usize>,
    /// Why the run was aborted, if it was.
    pub aborted: Option<String>,
    /// Start of the run to the last result, seconds.
    pub wall_s: f64,
    /// Send time minus scheduled arrival, seconds (client lag; includes concurrency-limit waits).
    pub send_lag: LatencyStats,
    /// Gaps between consecutive output arrivals of a request (every gap of every finished request).
    pub inter_token_gap: LatencyStats,
    /// Requests whose prompt tokens the engine reported.
    pub prompt_tokens_reported: usize,
    /// Mean of (reported − target) / target prompt tokens over those requests.
    pub prompt_tokens_mean_rel_error: f64,
    /// Mean of |reported − target| / target.
    pub prompt_tokens_mean_abs_rel_error: f64,
    /// How prompts were built (`text, 3.87 chars/token`, `token ids`).
    pub prompt_mode: String,
}

/// The `requests.csv` row of a result: latencies from the scheduled arrival, TPOT over the tokens
/// after the first (as the simulator defines it); NaN where a failed request has no value.
pub fn record_of(r: &RequestResult, policy: &str, slo: &SloConfig) -> RequestRecord {
    let first = r.chunks.iter().find(|c| c.1 > 0).or(r.chunks.first());
    let last = r.chunks.iter().rev().find(|c| c.1 > 0).or(r.chunks.last());
    let first_s = first.map_or(f64::NAN, |c| c.0);
    let finish_s = last.map_or(f64::NAN, |c| c.0);
    let ttft = first_s - r.arrival_s;
    let (tpot, e2e) = if r.failure.is_some() {
        (f64::NAN, f64::NAN)
    } else {
        let tpot = if r.output_tokens > 1 {
            (finish_s - first_s) / (r.output_tokens - 1) as f64
        } else {
            0.0
        };
        (tpot, finish_s - r.arrival_s)
    };
    let error = r
        .failure
        .as_ref()
        .map(|f| f.to_string().replace([',', '\n', '\r'], ";"));
    RequestRecord {
        id: r.id,
        arrival_s: r.arrival_s,
        prompt_tokens: r.prompt_tokens.unwrap_or(r.target_prompt_tokens),
        output_tokens: r.output_tokens,
        first_token_s: first_s,
        finish_s: if r.failure.is_some() {
            f64::NAN
        } else {
            finish_s
        },
        ttft_s: ttft,
        tpot_s: tpot,
        e2e_s: e2e,
        drafted: 0,
        accepted: 0,
        steps: 0,
        slo_met: error.is_none() && slo.met(ttft, tpot, e2e),
        replica: 0,
        policy: policy.to_string(),
        error,
        cached_tokens: None,
    }
}

pub(crate) fn stats_of(
    results: &[RequestResult],
    endpoint: String,
    aborted: Option<String>,
    wall_s: f64,
    prompts: &PromptMode,
) -> ReplayStats {
    let mut failures = BTreeMap::new();
    for f in results.iter().filter_map(|r| r.failure.as_ref()) {
        *failures.entry(f.kind()).or_insert(0) += 1;
    }
    let gaps = results
        .iter()
        .filter(|r| r.failure.is_none())
        .flat_map(|r| {
            let times: Vec<f64> = r.chunks.iter().filter(|c| c.1 > 0).map(|c| c.0).collect();
            (1..times.len())
                .map(|i| times[i] - times[i - 1])
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    let reported: Vec<(u32, u32)> = results
        .iter()
        .filter_map(|r| r.prompt_tokens.map(|p| (p, r.target_prompt_tokens)))
        .collect();
    let rel: Vec<f64> = reported
        .iter()
        .map(|&(p, t)| (p as f64 - t as f64) / t.max(1) as f64)
        .collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let abs_rel: Vec<f64> = rel.iter().map(|x| x.abs()).collect();
    ReplayStats {
        endpoint,
        requests: results.len(),
        failed: results.iter().filter(|r| r.failure.is_some()).count(),
        failures,
        aborted,
        wall_s,
        send_lag: LatencyStats::of(
            results
                .iter()
                .filter_map(|r| r.sent_s.map(|s| (s - r.arrival_s).max(0.0))),
        ),
        inter_token_gap: LatencyStats::of(gaps.into_iter()),
        prompt_tokens_reported: reported.len(),
        prompt_tokens_mean_rel_error: mean(&rel),
        prompt_tokens_mean_abs_rel_error: mean(&abs_rel),
        prompt_mode: match prompts {
            PromptMode::Text {
                chars_per_token, ..
            } => format!("text, {chars_per_token:.3} chars/token"),
            PromptMode::TokenIds => "token ids".into(),
            PromptMode::Fitted { chars, .. } => format!(
                "text, {} of {} fitted by the engine's tokenizer",
                chars.len(),
                results.len()
            ),
        },
    }
}
