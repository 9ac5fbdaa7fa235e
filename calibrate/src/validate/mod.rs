//! `specsim validate`: predict measured vLLM runs (BLIS's ground truth, or a user's folder in its
//! layout) and score the predictions beside other simulators' published ones.
//!
//! - [`folder`]: reading experiments, workloads, error records and per-request data;
//! - [`metrics`]: the metrics as the ground truth defines them;
//! - [`run`]: one experiment through the engine core with vLLM V1 semantics, on a profile composed from
//!   the operator tables;
//! - [`report`]: the rows, their errors and the per-metric APE summary.
//!
//! Nothing is fitted to any single experiment: the cost comes from the operator tables, the KV capacity
//! from vLLM's memory rule, the workload from the published spec (or the run's own per-request
//! arrivals); a front-end latency and a per-step overhead are two global constants derived from the
//! training runs (docs/VALIDATION.md).

pub mod folder;
pub mod metrics;
pub mod report;
pub mod run;

use metrics::Metric;

/// (stage, metric): stage −1 is the whole run.
pub type Key = (i32, Metric);

/// An experiment or file that could not be read or run, with one line saying why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The experiment (or file).
    pub experiment: String,
    /// File, field and what is wrong.
    pub message: String,
}

/// An experiment not run, and why (a model or GPU the catalog cannot express, load not published).
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The experiment.
    pub experiment: String,
    /// Why.
    pub reason: String,
}
