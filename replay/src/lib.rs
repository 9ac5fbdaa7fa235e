//! Measure a live engine on the trace the simulator predicted, and report the gap.
//!
//! `specsim run` predicts how a scenario's workload is served; this crate measures it:
//!
//! - [`replay`](driver::replay) is an open-loop load generator. It sends each request of the
//!   scenario's workload (after the scenario's trace transformations) at its arrival time to an
//!   [`Endpoint`], records when every output token came back, and produces rows in the simulator's
//!   own `requests.csv` / `summary.json` schema ([`output::write_replay_dir`]), so that a prediction
//!   and a measurement of the same scenario join by request id. Failures (refused connections,
//!   timeouts, 5xx, short outputs, an engine that dies) are rows too, never dropped.
//! - [`compare`](compare::compare_dirs) joins a predicted and a measured result directory and reports,
//!   for TTFT, TPOT and E2E, the relative error of the mean and of p50/p90/p99, request-level MAPE
//!   and Pearson correlation, and predicted versus measured SLO attainment in percentage points.
//! - [`fidelity`] puts replicated measurements together: bootstrap intervals, verdicts against the
//!   aims, attainment-versus-SLO curves, the error split into engine/queueing, cost, acceptance and
//!   workload terms, and the machine's noise during a run.
//!
//! Reading guide: [`endpoint`] (the seam: one request in, timed token arrivals out), [`driver`]
//! (when requests are sent and how a run is bounded), [`results`] (what was measured, as rows),
//! [`http`] (the OpenAI-compatible client),
//! [`prompts`] (text for a trace that only has lengths), [`compare`].
//!
//! Design choices:
//!
//! - **Latency is measured from the scheduled arrival**, as the simulator measures it, so client lag
//!   would count against the engine; the lag is reported (`replay.json`, `send_lag`) to show it is
//!   negligible.
//! - **The endpoint is a trait** ([`Endpoint`]) so the same driver runs an OpenAI-compatible server
//!   over HTTP ([`HttpEndpoint`]) or, with the `runtime` feature, the runtime's engine in process
//!   (`inprocess::InProcessEndpoint`, over the runtime's `Generator` seam: exact tokens per step,
//!   no HTTP in the measurement).
//! - **No TLS**: engines under test are on loopback or a private network, and a TLS stack would
//!   double this crate's build cost.

pub mod compare;
pub mod driver;
pub mod endpoint;
mod error;
pub mod fidelity;
pub mod http;
#[cfg(feature = "runtime")]
pub mod inprocess;
pub mod output;
pub mod prompts;
pub mod results;

pub use compare::{compare_dirs, write_comparison, Comparison};
pub use driver::{aborted_outcome, replay, Progress, ReplayConfig, ReplayOutcome};
pub use endpoint::{Chunk, Endpoint, EndpointRequest, Failure, Observation};
pub use error::ReplayError;
pub use http::HttpEndpoint;
pub use output::write_replay_dir;
pub use prompts::{Prompt, PromptMode, PromptSet};
pub use results::{ReplayStats, RequestResult};

/// Runs a future on a fresh multi-threaded tokio runtime (two worker threads: one drives the
/// timers and sends, one reads responses), for callers without a runtime of their own (the CLI).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ReplayError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ReplayError::Config(format!("cannot start the async runtime: {e}")))?;
    Ok(rt.block_on(f))
}
