//! The open-loop load generator: every request leaves at its arrival time, whatever the engine does.
//!
//! An open loop is what real users are: they do not wait for each other. So a slow engine shows up as
//! growing TTFT, exactly as in the simulator, instead of as a slower client (a closed loop would hide
//! the overload it should measure). All latencies are measured from the request's *scheduled* arrival
//! (`start + arrival_s`), like the simulator's; the time the client needed to actually send it is
//! reported separately as send lag, which should stay near zero.
//!
//! How a run is bounded:
//!
//! - each request has a timeout from the moment it is sent (`request_timeout`);
//! - the run has a deadline (`deadline`, by default the last arrival plus the request timeout plus
//!   10 s): requests still running then are cancelled, and requests not yet sent are not sent;
//! - when `abort_after` requests in a row fail to connect or lose their stream (the engine is gone),
//!   the run is aborted: in-flight requests are cancelled and the rest are not sent;
//! - whatever happens, every request of the workload comes back as a row, finished or failed.
//!
//! With a `concurrency_limit`, a request that arrives while that many are running waits for a slot;
//! the wait counts in its TTFT (the engine's admission queue has moved into the client).

use crate::endpoint::{Endpoint, EndpointRequest, Failure, Observation};
use crate::prompts::PromptMode;
use crate::results::{record_of, stats_of, ReplayStats, RequestResult};
use specsim_core::time::ns_to_secs;
use specsim_core::workload::Workload;
use specsim_sim::metrics::{RequestRecord, SloConfig, Summary};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// Extra time after the run deadline for cancelled requests to report back before the driver stops
/// waiting for them.
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Name of the policy subdirectory and of the `policy` column (e.g. `specserve-measured`).
    pub policy_label: String,
    /// SLOs each request is checked against (the scenario's `[slo]`).
    pub slo: SloConfig,
    /// Longest a request may run from when it is sent.
    pub request_timeout: Duration,
    /// Longest the whole run may take from its start; `None`: last arrival + timeout + 10 s.
    pub deadline: Option<Duration>,
    /// Most requests in flight at once; `None`: unlimited (pure open loop).
    pub concurrency_limit: Option<usize>,
    /// Consecutive connection failures that abort the run (0: never abort).
    pub abort_after: u32,
}

impl ReplayConfig {
    /// Defaults: 300 s request timeout, automatic deadline, no concurrency limit, abort after 10
    /// connection failures in a row.
    pub fn new(policy_label: impl Into<String>, slo: SloConfig) -> Self {
        ReplayConfig {
            policy_label: policy_label.into(),
            slo,
            request_timeout: Duration::from_secs(300),
            deadline: None,
            concurrency_limit: None,
            abort_after: 10,
        }
    }

    /// The deadline for a workload whose last arrival is `span`.
    pub fn deadline_for(&self, span: Duration) -> Duration {
        self.deadline
            .unwrap_or(span + self.request_timeout + Duration::from_secs(10))
    }

    /// Length of the probe text used to measure characters per token: 600 characters (about 150
    /// tokens) of the prompt set, long enough to average over words and short enough that a slow
    /// CPU engine prefills it in seconds.
    pub fn probe_chars_per_token() -> usize {
        600
    }
}

/// Counts shown while a replay runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Requests in the workload.
    pub total: usize,
    /// Requests that have a result (finished or failed).
    pub done: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Finished requests that met every SLO.
    pub slo_met: usize,
}

impl Progress {
    /// SLO attainment so far: met / done (failed requests count as missing).
    pub fn attainment(&self) -> f64 {
        if self.done == 0 {
            0.0
        } else {
            self.slo_met as f64 / self.done as f64
        }
    }
}

/// The result of a replay: rows in the simulator's schema, its summary, the raw arrivals and stats.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// One row per request (failed ones carry `error`), sorted by id.
    pub records: Vec<RequestRecord>,
    /// Summary in the simulator's schema (`failed` counts failures).
    pub summary: Summary,
    /// Per-request results with every output arrival.
    pub results: Vec<RequestResult>,
    /// Failure counts, lag and prompt fidelity.
    pub stats: ReplayStats,
}

struct Shared<E> {
    endpoint: Arc<E>,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    limit: Option<Arc<Semaphore>>,
    cancel: watch::Sender<Option<String>>,
    connect_failures: AtomicU32,
    abort_after: u32,
}

fn secs_since(start: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(start).as_secs_f64()
}

/// Waits until the run is aborted; returns the reason.
async fn aborted(mut rx: watch::Receiver<Option<String>>) -> String {
    let why = rx
        .wait_for(Option::is_some)
        .await
        .map(|r| r.clone().unwrap_or_default());
    match why {
        Ok(why) => why,
        // The sender lives as long as the run; if it is gone, nothing will abort.
        Err(_) => std::future::pending().await,
    }
}

/// Runs one request: waits for a slot, sends, bounds it by its timeout, the deadline and an abort.
async fn run_one<E: Endpoint>(
    sh: Arc<Shared<E>>,
    req: EndpointRequest,
    arrival_s: f64,
    target_prompt: u32,
) -> RequestResult {
    let mut res = RequestResult {
        id: req.id,
        arrival_s,
        target_prompt_tokens: target_prompt,
        target_output_tokens: req.max_tokens,
        sent_s: None,
        chunks: Vec::new(),
        prompt_tokens: None,
        output_tokens: 0,
        failure: None,
    };
    let _permit = match &sh.limit {
        None => None,
        Some(sem) => {
            tokio::select! {
                p = sem.clone().acquire_owned() => p.ok(),
                _ = tokio::time::sleep_until(sh.deadline) => {
                    res.failure = Some(Failure::Deadline);
                    return res;
                }
                why = aborted(sh.cancel.subscribe()) => {
                    res.failure = Some(Failure::Aborted(why));
                    return res;
                }
            }
        }
    };
    let sent = Instant::now();
    res.sent_s = Some(secs_since(sh.start, sent));
    let timeout_at = (sent + sh.timeout).min(sh.deadline);
    let mut obs = Observation::default();
    let outcome = tokio::select! {
        r = sh.endpoint.generate(&req, &mut obs) => r,
        _ = tokio::time::sleep_until(timeout_at) => Err(if timeout_at < sh.deadline {
            Failure::Timeout(sh.timeout.as_secs_f64())
        } else {
            Failure::Deadline
        }),
        why = aborted(sh.cancel.subscribe()) => Err(Failure::Aborted(why)),
    };
    let start_std = sh.start.into_std();
    res.chunks = obs
        .chunks
        .iter()
        .map(|c| {
            (
                c.at.saturating_duration_since(start_std).as_secs_f64(),
                c.tokens,
            )
        })
        .collect();
    res.prompt_tokens = obs.prompt_tokens;
    res.output_tokens = obs.output_tokens(req.max_tokens);
    res.failure = match outcome {
        Ok(()) if res.output_tokens < req.max_tokens || obs.chunks.is_empty() => {
            Some(Failure::ShortOutput {
                got: res.output_tokens,
                want: req.max_tokens,
            })
        }
        Ok(()) => None,
        Err(f) => Some(f),
    };
    match &res.failure {
        Some(f) if f.is_connection() => {
            let n = sh.connect_failures.fetch_add(1, Ordering::SeqCst) + 1;
            if sh.abort_after > 0 && n >= sh.abort_after {
                sh.cancel.send_if_modified(|v| {
                    if v.is_some() {
                        return false;
                    }
                    *v = Some(format!(
                        "the engine stopped answering ({n} requests in a row could not connect or lost their stream; last: {f})"
                    ));
                    true
                });
            }
        }
        None => sh.connect_failures.store(0, Ordering::SeqCst),
        Some(_) => {}
    }
    res
}

/// The result of a request that was never sent, or that never reported back.
fn unsent(id: u64, arrival_s: f64, prompt: u32, output: u32, failure: Failure) -> RequestResult {
    RequestResult {
        id,
        arrival_s,
        target_prompt_tokens: prompt,
        target_output_tokens: output,
        sent_s: None,
        chunks: Vec::new(),
        prompt_tokens: None,
        output_tokens: 0,
        failure: Some(failure),
    }
}

/// The outcome of a replay that never started (its set-up failed or used up the deadline): every
/// request is a failed row with `why`, none was sent, so the result directory still records the
/// attempt and why it ended.
pub fn aborted_outcome(
    workload: &Workload,
    cfg: &ReplayConfig,
    endpoint: String,
    why: &str,
) -> ReplayOutcome {
    let results: Vec<RequestResult> = workload
        .requests
        .iter()
        .map(|r| {
            unsent(
                r.id,
                ns_to_secs(r.arrival_ns),
                r.prompt_tokens,
                r.output_tokens,
                Failure::Aborted(why.to_string()),
            )
        })
        .collect();
    let records: Vec<RequestRecord> = results
        .iter()
        .map(|r| record_of(r, &cfg.policy_label, &cfg.slo))
        .collect();
    let total = results.len();
    let summary = Summary::from_records(&cfg.policy_label, &records, total, total, 0, 0, &cfg.slo);
    let stats = stats_of(
        &results,
        endpoint,
        Some(why.to_string()),
        0.0,
        &PromptMode::TokenIds,
    );
    ReplayOutcome {
        records,
        summary,
        results,
        stats,
    }
}

/// Replays `workload` against `endpoint` (see the module doc). `progress` is called after each
/// result. Never fails: every request comes back as a finished or failed row.
pub async fn replay<E: Endpoint>(
    endpoint: Arc<E>,
    workload: &Workload,
    prompts: &PromptMode,
    cfg: &ReplayConfig,
    progress: &(dyn Fn(&Progress) + Send + Sync),
) -> ReplayOutcome {
    let total = workload.len();
    let start = Instant::now();
    let span = Duration::from_nanos(workload.span_ns());
    let deadline = start + cfg.deadline_for(span);
    let (cancel, _) = watch::channel(None);
    let sh = Arc::new(Shared {
        endpoint: endpoint.clone(),
        start,
        deadline,
        timeout: cfg.request_timeout,
        limit: cfg
            .concurrency_limit
            .map(|n| Arc::new(Semaphore::new(n.max(1)))),
        cancel,
        connect_failures: AtomicU32::new(0),
        abort_after: cfg.abort_after,
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<RequestResult>();
    // The spawner: one task per request, spawned at its arrival time. Requests whose arrival falls
    // after the deadline or an abort are reported without being sent.
    let jobs: Vec<(EndpointRequest, f64, u32, Instant)> = workload
        .requests
        .iter()
        .map(|r| {
            let req = EndpointRequest {
                id: r.id,
                prompt: prompts.build(r.id, workload.category_name(r), r.prompt_tokens),
                max_tokens: r.output_tokens,
            };
            (
                req,
                ns_to_secs(r.arrival_ns),
                r.prompt_tokens,
                start + Duration::from_nanos(r.arrival_ns),
            )
        })
        .collect();
    let spawner = {
        let sh = sh.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stop: Option<Failure> = None;
            for (req, arrival_s, target_prompt, at) in jobs {
                if stop.is_none() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.min(sh.deadline)) => {
                            if at >= sh.deadline {
                                stop = Some(Failure::Deadline);
                            }
                        }
                        why = aborted(sh.cancel.subscribe()) => stop = Some(Failure::Aborted(why)),
                    }
                }
                if let Some(f) = &stop {
                    let r = unsent(req.id, arrival_s, target_prompt, req.max_tokens, f.clone());
                    let _ = tx.send(r);
                    continue;
                }
                let sh = sh.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let r = run_one(sh, req, arrival_s, target_prompt).await;
                    let _ = tx.send(r);
                });
            }
        })
    };
    drop(tx);
    let mut results: Vec<Option<RequestResult>> = vec![None; total];
    let mut p = Progress {
        total,
        ..Default::default()
    };
    let hard_stop = deadline + REPORT_GRACE;
    let mut last = start;
    // One iteration per result; the loop ends when every request has reported, when every sender is
    // gone, or at the hard stop.
    while p.done < total {
        let r = tokio::select! {
            r = rx.recv() => r,
            _ = tokio::time::sleep_until(hard_stop) => None,
        };
        let Some(r) = r else { break };
        let Some(slot) = results.get_mut(r.id as usize) else {
            continue;
        };
        if slot.is_some() {
            continue;
        }
        last = Instant::now();
        p.done += 1;
        if r.failure.is_some() {
            p.failed += 1;
        } else if record_of(&r, &cfg.policy_label, &cfg.slo).slo_met {
            p.slo_met += 1;
        }
        *slot = Some(r);
        progress(&p);
    }
    spawner.abort();
    let aborted_reason = sh.cancel.borrow().clone();
    // Anything still missing ran past the hard stop.
    let results: Vec<RequestResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let spec = &workload.requests[i];
                unsent(
                    spec.id,
                    ns_to_secs(spec.arrival_ns),
                    spec.prompt_tokens,
                    spec.output_tokens,
                    Failure::Aborted("no result before the run deadline and grace period".into()),
                )
            })
        })
        .collect();
    let records: Vec<RequestRecord> = results
        .iter()
        .map(|r| record_of(r, &cfg.policy_label, &cfg.slo))
        .collect();
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let summary = Summary::from_records(&cfg.policy_label, &records, total, failed, 0, 0, &cfg.slo);
    let stats = stats_of(
        &results,
        endpoint.describe(),
        aborted_reason,
        secs_since(start, last),
        prompts,
    );
    ReplayOutcome {
        records,
        summary,
        results,
        stats,
    }
}
