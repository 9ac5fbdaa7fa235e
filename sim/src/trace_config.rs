//! The scenario's `[trace]` section: where requests come from and how they are shaped.
//!
//! `sim` interprets the native CSV format and the built-in synthetic generators
//! ([`crate::synth`]); the `specsim-traces` crate reads every other format and applies the
//! transformations (window, rate scaling, limits, sampling, clipping, categories). The struct lives here
//! so that a scenario is validated in one place, with unknown keys rejected.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[trace]`: a file or a synthetic workload, plus transformations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// A trace file (relative paths resolve against the scenario's directory; `shared:REL` resolves
    /// against `$SPECSIM_SHARED` or the `shared/` folder beside the repository).
    pub path: Option<PathBuf>,
    /// File format; detected from the header when absent: `native`, `azure` (2023 and 2024), `mooncake`,
    /// `burstgpt`, `vidur`, `lengths` (a length-only statistics CSV: usable only as an `empirical`
    /// length distribution, since it has no arrival times).
    pub format: Option<String>,
    /// A synthetic workload, used when `path` is absent (its lengths may come from any trace or
    /// length-only file through `empirical`).
    pub synthetic: Option<SyntheticConfig>,
    /// Arrival times from a file that holds only them, with lengths drawn by seed (instead of `path`
    /// or `synthetic`).
    pub timestamps: Option<TimestampsConfig>,
    /// inference-perf's `shared_prefix` workload under staged load (instead of `path` or `synthetic`).
    pub shared_prefix: Option<SharedPrefixConfig>,
    /// Keep only requests arriving in `[start_s, start_s + duration_s)`, times re-based to `start_s`.
    pub start_s: Option<f64>,
    /// Window length in seconds.
    pub duration_s: Option<f64>,
    /// Multiply the arrival rate by this factor (divides inter-arrival times).
    pub rate_scale: Option<f64>,
    /// Scale arrivals so the mean rate is this many requests per second.
    pub target_rate: Option<f64>,
    /// Keep at most the first this many requests (after the window and sampling).
    pub limit: Option<usize>,
    /// Keep a seeded random fraction of the requests (exactly `round(sample × n)`, order kept).
    pub sample: Option<f64>,
    /// Clip each prompt to at most this many tokens (clipped count reported). With `max_output`, scales a
    /// production trace's lengths down to a small engine while keeping its arrivals.
    pub max_prompt: Option<u32>,
    /// Clip each output to at most this many tokens (clipped count reported).
    pub max_output: Option<u32>,
    /// Clip prompt + output to this context length (clipped count reported).
    pub max_context: Option<u32>,
    /// Attach categories by a seeded mix: `{ coding = 0.5, writing = 0.5 }`.
    pub categories: Option<std::collections::BTreeMap<String, f64>>,
    /// Closed-loop load: keep this many requests in flight (as `vllm bench serve --max-concurrency`,
    /// aiperf). The first `concurrency` requests arrive at their own times (the ramp-up) and each later
    /// one (in trace order) when an earlier one finishes, whatever its own time. Absent: open loop.
    pub concurrency: Option<u32>,
}

/// `[trace.synthetic]`: arrivals and lengths drawn from distributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of requests.
    pub requests: usize,
    /// Mean arrival rate, requests per second.
    pub rate: f64,
    /// Arrival process.
    #[serde(default)]
    pub arrival: ArrivalConfig,
    /// Prompt length distribution.
    pub prompt: LengthConfig,
    /// Output length distribution.
    pub output: LengthConfig,
}

/// `[trace.timestamps]`: every arrival time of a timestamp-only file (a column of seconds, e.g. the
/// SpecServe/AdaSpec evaluation's `Timestamp` traces), each request's lengths drawn by seed from
/// distributions — a length-statistics or trace file through `empirical`, as the paper paired its
/// arrivals with a dataset's prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampsConfig {
    /// The file (CSV with a header; relative and `shared:` paths as for `path`).
    pub path: PathBuf,
    /// The column holding arrival times in seconds (default `Timestamp`).
    #[serde(default = "default_timestamp_column")]
    pub column: String,
    /// Prompt length distribution.
    pub prompt: LengthConfig,
    /// Output length distribution.
    pub output: LengthConfig,
}

/// `[trace.shared_prefix]`: inference-perf's `shared_prefix` data generator under its staged load, as
/// the BLIS, llm-d and Gateway API inference benchmarks drive vLLM. `system_prompts` groups of
/// `users_per_system_prompt` users; each user's prompt is its group's system prompt followed by its own
/// question, and it asks the same question every time its turn comes round (single-turn), or carries its
/// conversation so far (`multi_turn`). Requests take users in a seeded order, cycling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefixConfig {
    /// Distinct system prompts (inference-perf's `num_unique_system_prompts` / `num_groups`).
    pub system_prompts: u32,
    /// Users per system prompt (`num_users_per_system_prompt` / `num_prompts_per_group`).
    pub users_per_system_prompt: u32,
    /// System prompt length, tokens.
    pub system_prompt_len: u32,
    /// Question length per user, drawn once per user.
    pub question_len: LengthConfig,
    /// Output length per user, drawn once per user (the client sends `ignore_eos`).
    pub output_len: LengthConfig,
    /// Each turn's prompt carries the user's conversation so far (`enable_multi_turn_chat`).
    #[serde(default)]
    pub multi_turn: bool,
    /// vLLM's `--max-model-len`: with `multi_turn`, the oldest turns are dropped until prompt + output +
    /// 200 tokens fit, as inference-perf trims history. Required with `multi_turn`.
    pub max_model_len: Option<u32>,
    /// Tokens per prefix block id written for the prefix cache (vLLM's default block size).
    #[serde(default = "default_block_tokens")]
    pub block_tokens: u32,
    /// How arrivals are spread within a stage.
    #[serde(default)]
    pub load: StageLoad,
    /// The load stages, run one after another.
    pub stages: Vec<LoadStage>,
    /// Idle time between stages, seconds (inference-perf's `interval`).
    #[serde(default)]
    pub stage_gap_s: f64,
}

fn default_block_tokens() -> u32 {
    16
}

/// One load stage: `rate` requests per second for `duration_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStage {
    /// Requests per second.
    pub rate: f64,
    /// Stage length, seconds.
    pub duration_s: f64,
}

/// inference-perf's load types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StageLoad {
    /// Exactly `⌊rate × duration⌋` requests, exponential gaps scaled to sum to the duration.
    #[default]
    Constant,
    /// A Poisson count each second, spread over the second as `constant` spreads a stage.
    Poisson,
}

fn default_timestamp_column() -> String {
    "Timestamp".into()
}

/// Arrival process of a synthetic workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ArrivalConfig {
    /// Exponential inter-arrival times.
    #[default]
    Poisson,
    /// Gamma inter-arrival times with coefficient of variation `cv` (cv = 1 is Poisson).
    Gamma {
        /// Coefficient of variation of inter-arrival times.
        cv: f64,
    },
    /// Evenly spaced arrivals (deterministic), for closed-form checks.
    Uniform,
    /// On/off bursts (two-state MMPP): `burst_factor` × rate while on.
    Bursty {
        /// Rate during bursts relative to the rate between bursts; the mean rate stays `rate`.
        burst_factor: f64,
        /// Mean burst duration, seconds.
        on_s: f64,
        /// Mean gap between bursts, seconds.
        off_s: f64,
    },
    /// Sinusoidal daily pattern: rate × (1 + amplitude·sin(2πt/period)).
    Diurnal {
        /// Relative amplitude in [0, 1).
        amplitude: f64,
        /// Period, seconds.
        period_s: f64,
    },
}

/// A token-length distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LengthConfig {
    /// Always `value`.
    Fixed {
        /// The length.
        value: u32,
    },
    /// Uniform on `[min, max]`.
    Uniform {
        /// Smallest.
        min: u32,
        /// Largest.
        max: u32,
    },
    /// Lognormal with the given mean and standard deviation (of the length, not its log), clamped.
    Lognormal {
        /// Mean length.
        mean: f64,
        /// Standard deviation.
        std: f64,
        /// Smallest length (default 1).
        #[serde(default = "one")]
        min: u32,
        /// Largest length (default 32768).
        #[serde(default = "max_len")]
        max: u32,
    },
    /// Drawn from the lengths in a trace or statistics file (the `specsim-traces` crate reads it). When
    /// prompt and output name the same file (default columns), whole rows are drawn, keeping their
    /// correlation.
    Empirical {
        /// The file.
        path: PathBuf,
        /// Which column: `prompt` or `output` (defaults to the one this distribution stands for).
        column: Option<String>,
    },
}

fn one() -> u32 {
    1
}
fn max_len() -> u32 {
    32768
}
