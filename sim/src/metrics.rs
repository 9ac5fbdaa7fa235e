//! Results: one row per request (`requests.csv`), a summary (`summary.json`), optionally one row per
//! engine step (`steps.csv`). `specsim run` and `specsim replay` write the same schema so that
//! `specsim compare` can join them by request id.

use crate::SimError;
use serde::{Deserialize, Serialize};
use specsim_core::engine::{FinishedRequest, StepKind, StepReport};
use specsim_core::time::{ns_to_secs, Nanos};
use std::fmt::Write as _;
use std::path::Path;

/// `[slo]`: latency objectives a request must meet to count toward goodput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Time to first token, seconds.
    pub ttft_s: Option<f64>,
    /// Time per output token after the first, seconds.
    pub tpot_s: Option<f64>,
    /// End-to-end latency, seconds.
    pub e2e_s: Option<f64>,
}

impl SloConfig {
    /// Whether latencies meet every objective that is set.
    pub fn met(&self, ttft: f64, tpot: f64, e2e: f64) -> bool {
        self.ttft_s.is_none_or(|s| ttft <= s)
            && self.tpot_s.is_none_or(|s| tpot <= s)
            && self.e2e_s.is_none_or(|s| e2e <= s)
    }
}

/// One row of `requests.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id (position in the workload).
    pub id: u64,
    /// Arrival, seconds from the start of the workload.
    pub arrival_s: f64,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Output tokens emitted.
    pub output_tokens: u32,
    /// First token time, seconds from start.
    pub first_token_s: f64,
    /// Last token time, seconds from start.
    pub finish_s: f64,
    /// Time to first token.
    pub ttft_s: f64,
    /// Time per output token after the first (0 for one-token outputs).
    pub tpot_s: f64,
    /// End-to-end latency.
    pub e2e_s: f64,
    /// Draft tokens proposed (verified, or eliminated by the policy before verification).
    pub drafted: u64,
    /// Draft tokens accepted.
    pub accepted: u64,
    /// Engine iterations the request took part in.
    pub steps: u32,
    /// Whether every SLO was met.
    pub slo_met: bool,
    /// Replica that served it.
    pub replica: u32,
    /// Policy name.
    pub policy: String,
    /// Why the request failed (replay only; `None` for every simulated request). Failed rows keep
    /// whatever was measured (NaN elsewhere) and are left out of [`Summary::from_records`]' statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Prompt tokens found in the prefix cache (vLLM's `num_cached_tokens`), for `summary.json`'s hit
    /// rate; `None` when the engine does not cache prefixes or the request carries no prefix identity.
    /// Not a `requests.csv` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
}

impl RequestRecord {
    /// Builds the row for a finished request.
    pub fn from_finished(f: &FinishedRequest, replica: u32, policy: &str, slo: &SloConfig) -> Self {
        let arrival = f.spec.arrival_ns;
        let ttft = ns_to_secs(f.first_token_ns - arrival);
        let e2e = ns_to_secs(f.finish_ns - arrival);
        let tpot = if f.output_tokens > 1 {
            ns_to_secs(f.finish_ns - f.first_token_ns) / (f.output_tokens - 1) as f64
        } else {
            0.0
        };
        RequestRecord {
            id: f.spec.id,
            arrival_s: ns_to_secs(arrival),
            prompt_tokens: f.spec.prompt_tokens,
            output_tokens: f.output_tokens,
            first_token_s: ns_to_secs(f.first_token_ns),
            finish_s: ns_to_secs(f.finish_ns),
            ttft_s: ttft,
            tpot_s: tpot,
            e2e_s: e2e,
            drafted: f.drafted,
            accepted: f.accepted,
            steps: f.steps,
            slo_met: slo.met(ttft, tpot, e2e),
            replica,
            policy: policy.to_string(),
            error: None,
            cached_tokens: f.cached_tokens,
        }
    }
}

/// Header of `requests.csv`.
pub const REQUESTS_HEADER: &str = "id,arrival_s,prompt_tokens,output_tokens,first_token_s,finish_s,ttft_s,tpot_s,e2e_s,drafted,accepted,steps,slo_met,replica,policy";

/// Renders `requests.csv` (rows sorted by id; times with nanosecond precision). When any row has an
/// `error`, a trailing `error` column is added (commas and line breaks in messages become `;`).
pub fn requests_csv(rows: &[RequestRecord]) -> String {
    let mut s = String::with_capacity(rows.len() * 96 + 128);
    s.push_str(REQUESTS_HEADER);
    let with_error = rows.iter().any(|r| r.error.is_some());
    if with_error {
        s.push_str(",error");
    }
    s.push('\n');
    for r in rows {
        push_request_row(&mut s, r);
        if with_error {
            s.pop();
            let e = r.error.as_deref().unwrap_or("");
            let _ = writeln!(s, ",{}", e.replace([',', '\n', '\r'], ";"));
        }
    }
    s
}

/// Appends one `requests.csv` row (without the `error` column), newline included.
pub fn push_request_row(s: &mut String, r: &RequestRecord) {
    let _ = writeln!(
        s,
        "{},{:.9},{},{},{:.9},{:.9},{:.9},{:.9},{:.9},{},{},{},{},{},{}",
        r.id,
        r.arrival_s,
        r.prompt_tokens,
        r.output_tokens,
        r.first_token_s,
        r.finish_s,
        r.ttft_s,
        r.tpot_s,
        r.e2e_s,
        r.drafted,
        r.accepted,
        r.steps,
        r.slo_met,
        r.replica,
        r.policy
    );
}

/// Parses `requests.csv` (as written by [`requests_csv`]; the `error` column is optional); errors
/// name the line.
pub fn parse_requests_csv(text: &str, origin: &str) -> Result<Vec<RequestRecord>, SimError> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err(SimError::Parse {
            origin: origin.into(),
            line: 1,
            msg: "empty file".into(),
        });
    };
    let cols: Vec<&str> = header.split(',').collect();
    let want: Vec<&str> = REQUESTS_HEADER.split(',').collect();
    let idx: Vec<usize> = want
        .iter()
        .map(|w| {
            cols.iter()
                .position(|c| c.trim() == *w)
                .ok_or_else(|| SimError::Parse {
                    origin: origin.into(),
                    line: 1,
                    msg: format!("missing column `{w}`"),
                })
        })
        .collect::<Result<_, _>>()?;
    let error_col = cols.iter().position(|c| c.trim() == "error");
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let err = |m: String| SimError::Parse {
            origin: origin.into(),
            line: n + 1,
            msg: m,
        };
        let get = |i: usize| {
            f.get(idx[i])
                .map(|s| s.trim())
                .ok_or_else(|| err(format!("missing field `{}`", want[i])))
        };
        macro_rules! num {
            ($i:expr) => {
                get($i)?.parse().map_err(|_| {
                    err(format!(
                        "`{}` is not a valid {}",
                        f.get(idx[$i]).unwrap_or(&""),
                        want[$i]
                    ))
                })?
            };
        }
        out.push(RequestRecord {
            id: num!(0),
            arrival_s: num!(1),
            prompt_tokens: num!(2),
            output_tokens: num!(3),
            first_token_s: num!(4),
            finish_s: num!(5),
            ttft_s: num!(6),
            tpot_s: num!(7),
            e2e_s: num!(8),
            drafted: num!(9),
            accepted: num!(10),
            steps: num!(11),
            slo_met: num!(12),
            replica: num!(13),
            policy: get(14)?.to_string(),
            error: error_col
                .and_then(|i| f.get(i))
                .map(|e| e.trim())
                .filter(|e| !e.is_empty())
                .map(str::to_string),
            cached_tokens: None,
        });
    }
    Ok(out)
}

/// Mean and percentiles of one latency. With no values (nothing finished, or no request had a second
/// token for TPOT) every field is NaN, written as `null` in `summary.json`: there is no latency, and
/// 0.0 would read as a perfect one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Mean, seconds.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean: f64,
    /// Median.
    #[serde(deserialize_with = "null_as_nan")]
    pub p50: f64,
    /// 90th percentile.
    #[serde(deserialize_with = "null_as_nan")]
    pub p90: f64,
    /// 99th percentile.
    #[serde(deserialize_with = "null_as_nan")]
    pub p99: f64,
    /// Maximum.
    #[serde(deserialize_with = "null_as_nan")]
    pub max: f64,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            mean: f64::NAN,
            p50: f64::NAN,
            p90: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        }
    }
}

impl LatencyStats {
    /// Whether there were no values.
    pub fn is_empty(&self) -> bool {
        self.mean.is_nan()
    }
}

fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Exact percentile of sorted values by linear interpolation between order statistics
/// (`q` in [0, 1]; the definition NumPy uses by default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl LatencyStats {
    /// Statistics of `values` (any order).
    pub fn of(values: impl Iterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.collect();
        if v.is_empty() {
            return LatencyStats::default();
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        LatencyStats {
            mean,
            p50: percentile(&v, 0.5),
            p90: percentile(&v, 0.9),
            p99: percentile(&v, 0.99),
            max: v[v.len() - 1],
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Policy name.
    pub policy: String,
    /// Requests in the workload.
    pub requests: usize,
    /// Requests that finished.
    pub finished: usize,
    /// Requests that failed (replay only: timeouts, refused connections, errors).
    #[serde(default)]
    pub failed: usize,
    /// First arrival to last finish, seconds.
    pub duration_s: f64,
    /// Finished requests per second.
    pub throughput_rps: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Requests meeting every SLO, per second.
    pub goodput_rps: f64,
    /// Fraction of requests meeting every SLO (failed requests count as missing).
    pub slo_attainment: f64,
    /// Fraction meeting the TTFT SLO alone.
    pub ttft_attainment: f64,
    /// Fraction meeting the TPOT SLO alone.
    pub tpot_attainment: f64,
    /// Time to first token.
    pub ttft: LatencyStats,
    /// Time per output token.
    pub tpot: LatencyStats,
    /// End-to-end latency.
    pub e2e: LatencyStats,
    /// Draft tokens proposed (verified, or eliminated by the policy before verification).
    pub drafted: u64,
    /// Draft tokens accepted.
    pub accepted: u64,
    /// accepted / drafted.
    pub acceptance_rate: f64,
    /// Mean tokens emitted per sequence per decode step (1 without speculation).
    pub mean_accepted_length: f64,
    /// Requests preempted and recomputed (simulator only).
    #[serde(default)]
    pub preemptions: u64,
    /// The SLOs used.
    pub slo: SloConfig,
    /// How the percentiles were computed. Absent: exactly, from every value (the default up to
    /// [`EXACT_PERCENTILE_LIMIT`] values per latency); otherwise it names the quantile sketch and its
    /// relative error (means, maxima, counts and attainment stay exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<String>,
    /// Present when the run did not complete (interrupted): why. The statistics then cover the requests
    /// that finished before it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    /// Prefix caching, when the engine cached prefixes and the requests carried prefix identity
    /// (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache: Option<PrefixCacheStats>,
}

/// Prefix-cache hits over the finished requests that carried prefix identity, in tokens, as vLLM
/// counts `prefix_cache_hits` / `prefix_cache_queries` (each request once, at its first admission).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrefixCacheStats {
    /// Prompt tokens of those requests.
    pub prompt_tokens: u64,
    /// Of those, found cached (their prefill skipped).
    pub cached_tokens: u64,
    /// cached_tokens / prompt_tokens (0 with no prompt tokens).
    pub hit_rate: f64,
}

impl PrefixCacheStats {
    /// Totals of (prompt tokens, cached tokens) pairs; `None` when there are none.
    fn of(rows: impl Iterator<Item = (u32, u32)>) -> Option<Self> {
        let mut any = false;
        let (mut prompt, mut cached) = (0u64, 0u64);
        for (p, c) in rows {
            any = true;
            prompt += p as u64;
            cached += c as u64;
        }
        any.then(|| PrefixCacheStats::from_totals(prompt, cached))
    }

    fn from_totals(prompt_tokens: u64, cached_tokens: u64) -> Self {
        PrefixCacheStats {
            prompt_tokens,
            cached_tokens,
            hit_rate: if prompt_tokens > 0 {
                cached_tokens as f64 / prompt_tokens as f64
            } else {
                0.0
            },
        }
    }
}

impl Summary {
    /// Summarises request rows. `decode_steps` is Σ over requests of their decode iterations (for the
    /// mean accepted length); `requests` counts the whole workload so unfinished requests show.
    pub fn from_records(
        policy: &str,
        rows: &[RequestRecord],
        requests: usize,
        failed: usize,
        decode_steps: u64,
        preemptions: u64,
        slo: &SloConfig,
    ) -> Self {
        // Failed rows (replay) have no complete latencies: `failed` counts them.
        let finished: Vec<RequestRecord>;
        let rows = if rows.iter().any(|r| r.error.is_some()) {
            finished = rows.iter().filter(|r| r.error.is_none()).cloned().collect();
            &finished[..]
        } else {
            rows
        };
        let start = rows
            .iter()
            .map(|r| r.arrival_s)
            .fold(f64::INFINITY, f64::min);
        let end = rows
            .iter()
            .map(|r| r.finish_s)
            .fold(f64::NEG_INFINITY, f64::max);
        let duration = if rows.is_empty() {
            0.0
        } else {
            (end - start).max(0.0)
        };
        let per_s = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
        let denom = requests.max(1) as f64;
        let met = rows.iter().filter(|r| r.slo_met).count();
        let drafted: u64 = rows.iter().map(|r| r.drafted).sum();
        let accepted: u64 = rows.iter().map(|r| r.accepted).sum();
        let tokens: u64 = rows.iter().map(|r| r.output_tokens as u64).sum();
        Summary {
            policy: policy.to_string(),
            requests,
            finished: rows.len(),
            failed,
            duration_s: duration,
            throughput_rps: per_s(rows.len() as f64),
            output_tokens_per_s: per_s(tokens as f64),
            goodput_rps: per_s(met as f64),
            slo_attainment: met as f64 / denom,
            ttft_attainment: rows
                .iter()
                .filter(|r| slo.ttft_s.is_none_or(|s| r.ttft_s <= s))
                .count() as f64
                / denom,
            tpot_attainment: rows
                .iter()
                .filter(|r| slo.tpot_s.is_none_or(|s| r.tpot_s <= s))
                .count() as f64
                / denom,
            ttft: LatencyStats::of(rows.iter().map(|r| r.ttft_s)),
            tpot: LatencyStats::of(
                rows.iter()
                    .filter(|r| r.output_tokens > 1)
                    .map(|r| r.tpot_s),
            ),
            e2e: LatencyStats::of(rows.iter().map(|r| r.e2e_s)),
            drafted,
            accepted,
            acceptance_rate: if drafted > 0 {
                accepted as f64 / drafted as f64
            } else {
                0.0
            },
            mean_accepted_length: if decode_steps > 0 {
                (accepted + decode_steps) as f64 / decode_steps as f64
            } else {
                0.0
            },
            preemptions,
            slo: *slo,
            percentiles: None,
            partial: None,
            prefix_cache: PrefixCacheStats::of(
                rows.iter()
                    .filter_map(|r| Some((r.prompt_tokens, r.cached_tokens?))),
            ),
        }
    }
}

/// Latency values kept for exact percentiles, per latency, before a summary switches to the sketch.
pub const EXACT_PERCENTILE_LIMIT: usize = 1_000_000;

/// Relative error of sketched percentiles: DDSketch (`sketches-ddsketch`) with this α returns, for
/// quantile q of n values, a value within a factor 1 ± α of the order statistic of rank
/// ⌊q·(n − 1)⌋ (the exact, interpolated percentile lies between that order statistic and the next).
pub const SKETCH_RELATIVE_ERROR: f64 = 0.01;

/// Bins of the sketch: γ = (1 + α)/(1 − α) with α = 1 % covers 10⁻⁹ s to 10²⁴ s in under 4096 bins, so
/// it never collapses a bin on latencies.
const SKETCH_BINS: u32 = 4096;

/// `percentiles` of a summary whose percentiles come from the sketch.
pub fn sketch_description() -> String {
    format!(
        "ddsketch (relative error {} of the order statistic; exact up to {} values)",
        SKETCH_RELATIVE_ERROR, EXACT_PERCENTILE_LIMIT
    )
}

/// Fixed-point scale of [`LatencyAcc`]'s sum (2⁴⁰ per second: sub-picosecond steps, and an `i128`
/// holds 10²⁰ seconds of latency), which makes the sum, and so the mean, independent of the order the
/// values arrive in.
const SUM_SCALE: f64 = (1u64 << 40) as f64;

/// A streaming accumulator of one latency: exact [`LatencyStats`] while it holds at most `limit`
/// values (the same numbers [`LatencyStats::of`] gives), a DDSketch beyond (relative error
/// [`SKETCH_RELATIVE_ERROR`]); count, mean and maximum stay exact. Memory: `8 · limit` bytes at most,
/// then the sketch's bins (≤ 32 KiB).
#[derive(Clone)]
pub struct LatencyAcc {
    values: Vec<f64>,
    limit: usize,
    sketch: Option<sketches_ddsketch::DDSketch>,
    count: u64,
    sum: i128,
    max: f64,
}

impl LatencyAcc {
    /// An empty accumulator that keeps up to `limit` values exactly.
    pub fn new(limit: usize) -> Self {
        LatencyAcc {
            values: Vec::new(),
            limit,
            sketch: None,
            count: 0,
            sum: 0,
            max: f64::NEG_INFINITY,
        }
    }

    fn new_sketch() -> sketches_ddsketch::DDSketch {
        sketches_ddsketch::DDSketch::new(sketches_ddsketch::Config::new(
            SKETCH_RELATIVE_ERROR,
            SKETCH_BINS,
            1e-9,
        ))
    }

    /// Adds a value (seconds).
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += (v * SUM_SCALE).round() as i128;
        if v.total_cmp(&self.max).is_gt() {
            self.max = v;
        }
        match &mut self.sketch {
            Some(sk) => sk.add(v),
            None => {
                self.values.push(v);
                if self.values.len() > self.limit {
                    let mut sk = Self::new_sketch();
                    self.values.iter().for_each(|&x| sk.add(x));
                    self.values = Vec::new();
                    self.sketch = Some(sk);
                }
            }
        }
    }

    /// Adds everything `other` saw (the sketch is mergeable; exact values stay exact while the two
    /// together hold at most `limit`).
    pub fn merge(&mut self, other: &LatencyAcc) {
        match (&mut self.sketch, &other.sketch) {
            (None, None) if self.values.len() + other.values.len() <= self.limit => {
                self.values.extend_from_slice(&other.values);
            }
            _ => {
                let mut sk = self.sketch.take().unwrap_or_else(Self::new_sketch);
                self.values.iter().for_each(|&x| sk.add(x));
                other.values.iter().for_each(|&x| sk.add(x));
                if let Some(o) = &other.sketch {
                    // Both sketches share one configuration, the only case merge refuses.
                    let _ = sk.merge(o);
                }
                self.values = Vec::new();
                self.sketch = Some(sk);
            }
        }
        self.count += other.count;
        self.sum += other.sum;
        if other.max.total_cmp(&self.max).is_gt() {
            self.max = other.max;
        }
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the percentiles are exact (no more than `limit` values seen).
    pub fn is_exact(&self) -> bool {
        self.sketch.is_none()
    }

    /// The statistics: exactly [`LatencyStats::of`] the values while exact; otherwise the mean from the
    /// fixed-point sum, the exact maximum and the sketch's percentiles.
    pub fn stats(&self) -> LatencyStats {
        let Some(sk) = &self.sketch else {
            return LatencyStats::of(self.values.iter().copied());
        };
        let q = |p: f64| sk.quantile(p).ok().flatten().unwrap_or(0.0);
        LatencyStats {
            mean: self.sum as f64 / SUM_SCALE / self.count as f64,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: self.max,
        }
    }
}

/// A streaming [`Summary`]: feed it finished requests in any order; it holds three [`LatencyAcc`]s and
/// counters, and gives exactly [`Summary::from_records`]' result while every latency holds at most the
/// exact limit of values.
#[derive(Clone)]
pub struct SummaryAcc {
    slo: SloConfig,
    finished: usize,
    start: f64,
    end: f64,
    met: usize,
    ttft_met: usize,
    tpot_met: usize,
    drafted: u64,
    accepted: u64,
    tokens: u64,
    ttft: LatencyAcc,
    tpot: LatencyAcc,
    e2e: LatencyAcc,
    /// Prompt and cached tokens of rows with `cached_tokens`, if any.
    prefix: Option<(u64, u64)>,
}

impl SummaryAcc {
    /// An empty accumulator; `exact_limit` values per latency are kept for exact percentiles.
    pub fn new(slo: &SloConfig, exact_limit: usize) -> Self {
        SummaryAcc {
            slo: *slo,
            finished: 0,
            start: f64::INFINITY,
            end: f64::NEG_INFINITY,
            met: 0,
            ttft_met: 0,
            tpot_met: 0,
            drafted: 0,
            accepted: 0,
            tokens: 0,
            ttft: LatencyAcc::new(exact_limit),
            tpot: LatencyAcc::new(exact_limit),
            e2e: LatencyAcc::new(exact_limit),
            prefix: None,
        }
    }

    /// Adds a request row; failed rows (with an `error`) are left out, as in [`Summary::from_records`].
    pub fn add(&mut self, r: &RequestRecord) {
        if r.error.is_some() {
            return;
        }
        self.finished += 1;
        self.start = self.start.min(r.arrival_s);
        self.end = self.end.max(r.finish_s);
        self.met += usize::from(r.slo_met);
        self.ttft_met += usize::from(self.slo.ttft_s.is_none_or(|s| r.ttft_s <= s));
        self.tpot_met += usize::from(self.slo.tpot_s.is_none_or(|s| r.tpot_s <= s));
        self.drafted += r.drafted;
        self.accepted += r.accepted;
        self.tokens += r.output_tokens as u64;
        self.ttft.add(r.ttft_s);
        if r.output_tokens > 1 {
            self.tpot.add(r.tpot_s);
        }
        self.e2e.add(r.e2e_s);
        if let Some(c) = r.cached_tokens {
            let (p, h) = self.prefix.get_or_insert((0, 0));
            *p += r.prompt_tokens as u64;
            *h += c as u64;
        }
    }

    /// Requests added.
    pub fn finished(&self) -> usize {
        self.finished
    }

    /// The summary, with the arguments of [`Summary::from_records`].
    pub fn summary(
        &self,
        policy: &str,
        requests: usize,
        failed: usize,
        decode_steps: u64,
        preemptions: u64,
    ) -> Summary {
        let duration = if self.finished == 0 {
            0.0
        } else {
            (self.end - self.start).max(0.0)
        };
        let per_s = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
        let denom = requests.max(1) as f64;
        let exact = self.ttft.is_exact() && self.tpot.is_exact() && self.e2e.is_exact();
        Summary {
            policy: policy.to_string(),
            requests,
            finished: self.finished,
            failed,
            duration_s: duration,
            throughput_rps: per_s(self.finished as f64),
            output_tokens_per_s: per_s(self.tokens as f64),
            goodput_rps: per_s(self.met as f64),
            slo_attainment: self.met as f64 / denom,
            ttft_attainment: self.ttft_met as f64 / denom,
            tpot_attainment: self.tpot_met as f64 / denom,
            ttft: self.ttft.stats(),
            tpot: self.tpot.stats(),
            e2e: self.e2e.stats(),
            drafted: self.drafted,
            accepted: self.accepted,
            acceptance_rate: if self.drafted > 0 {
                self.accepted as f64 / self.drafted as f64
            } else {
                0.0
            },
            mean_accepted_length: if decode_steps > 0 {
                (self.accepted + decode_steps) as f64 / decode_steps as f64
            } else {
                0.0
            },
            preemptions,
            slo: self.slo,
            percentiles: (!exact).then(sketch_description),
            partial: None,
            prefix_cache: self
                .prefix
                .map(|(p, c)| PrefixCacheStats::from_totals(p, c)),
        }
    }
}

/// One row of `steps.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Replica index.
    pub replica: u32,
    /// The step.
    pub report: StepReport,
}

/// Renders `steps.csv`.
pub fn steps_csv(rows: &[StepRow]) -> String {
    let mut s = String::from(STEPS_HEADER);
    s.push('\n');
    for r in rows {
        push_step_row(&mut s, r);
    }
    s
}

/// Header of `steps.csv`.
pub const STEPS_HEADER: &str =
    "time_s,replica,kind,batch,tokens,k,drafted,accepted,step_s,draft_s,preempted,finished,kv_used";

/// Appends one `steps.csv` row, newline included.
pub fn push_step_row(s: &mut String, r: &StepRow) {
    {
        let p = &r.report;
        let kind = match p.kind {
            StepKind::Prefill => "prefill",
            StepKind::Decode => "decode",
            StepKind::Mixed => "mixed",
        };
        let dur: Nanos = p.end_ns - p.start_ns;
        let _ = writeln!(
            s,
            "{:.9},{},{},{},{},{},{},{},{:.9},{:.9},{},{},{}",
            ns_to_secs(p.start_ns),
            r.replica,
            kind,
            p.batch,
            p.target_tokens,
            p.k_max,
            p.drafted,
            p.accepted,
            ns_to_secs(dur),
            ns_to_secs(p.draft_ns),
            p.preempted,
            p.finished,
            p.kv_used
        );
    }
}

/// Writes a result directory: `requests.csv`, `summary.json`, and `steps.csv` when steps are given.
pub fn write_result_dir(
    dir: &Path,
    rows: &[RequestRecord],
    summary: &Summary,
    steps: Option<&[StepRow]>,
) -> Result<(), SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
    // Each file under a temporary name, renamed when complete; summary.json last, so a directory
    // with a summary is a complete one.
    let w =
        |name: &str, text: String| crate::sweep::write_atomically(&dir.join(name), text.as_bytes());
    w("requests.csv", requests_csv(rows))?;
    if let Some(steps) = steps {
        w("steps.csv", steps_csv(steps))?;
    }
    w(
        "summary.json",
        serde_json::to_string_pretty(summary).unwrap_or_default() + "\n",
    )?;
    Ok(())
}

/// Removes the result files `names` of an earlier run from `dir` (missing ones are fine), before a new
/// run starts: a run that is then killed leaves no complete-looking results from the old one.
pub fn remove_stale(dir: &Path, names: &[&str]) -> Result<(), SimError> {
    for name in names {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SimError::io(&p, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert!((percentile(&v, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn slo_checks_each_set_objective() {
        let slo = SloConfig {
            ttft_s: Some(1.0),
            tpot_s: Some(0.1),
            e2e_s: None,
        };
        assert!(slo.met(1.0, 0.1, 100.0));
        assert!(!slo.met(1.01, 0.05, 1.0));
        assert!(!slo.met(0.5, 0.11, 1.0));
        assert!(SloConfig::default().met(1e9, 1e9, 1e9));
    }

    #[test]
    fn requests_csv_round_trips() {
        let r = RequestRecord {
            id: 3,
            arrival_s: 0.5,
            prompt_tokens: 10,
            output_tokens: 4,
            first_token_s: 0.75,
            finish_s: 1.05,
            ttft_s: 0.25,
            tpot_s: 0.1,
            e2e_s: 0.55,
            drafted: 6,
            accepted: 2,
            steps: 3,
            slo_met: true,
            replica: 1,
            policy: "static-3".into(),
            error: None,
            cached_tokens: None,
        };
        let text = requests_csv(std::slice::from_ref(&r));
        assert!(!text.contains("error"));
        let back = parse_requests_csv(&text, "x").unwrap();
        assert_eq!(back, vec![r.clone()]);
        // A failed row (replay) adds the error column; the message loses its commas.
        let failed = RequestRecord {
            id: 4,
            error: Some("http 503: busy, retry".into()),
            ..r.clone()
        };
        let text = requests_csv(&[r.clone(), failed]);
        let back = parse_requests_csv(&text, "x").unwrap();
        assert_eq!(back[0], r);
        assert_eq!(back[1].error.as_deref(), Some("http 503: busy; retry"));
        let s = Summary::from_records("p", &back, 2, 1, 0, 0, &SloConfig::default());
        assert_eq!((s.finished, s.failed), (1, 1));
        assert_eq!(s.ttft.max, 0.25);
        assert!(parse_requests_csv("id,arrival_s\n1,2\n", "y")
            .unwrap_err()
            .to_string()
            .contains("missing column"));
    }
}
