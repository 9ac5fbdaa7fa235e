//! The prediction at the live run's own forward speed: how much of a gap the cost term explains.
//!
//! The cost term says how far the live forwards were from the profile on average (Σ measured /
//! Σ predicted of the step log, by model). Near capacity a few percent decide the tail — queueing
//! delay grows as ρ / (1 − ρ), so at 90 % load forwards 5 % slower nearly double it — so a verdict
//! needs that number turned into latency: the simulator is run again on the same scenario with every
//! target forward's modelled time multiplied by the replicate's target ratio and every draft forward's
//! by its draft ratio ([`ScaledTimes`]), one run per replicate, and the cell compares those runs with
//! the measurement as it compares the plain prediction. A disagreement that becomes agreement at the
//! live speed is the cost term's; one that stays is something else's.

use super::steps::{ForwardKind, StepRow};
use crate::ReplayError;
use specsim_core::engine::{Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetResult};
use specsim_core::policy::PolicyConfig;
use specsim_core::workload::Workload;
use specsim_core::CoreError;
use specsim_sim::cluster::{simulate, Replica, SimOptions};
use specsim_sim::metrics::RequestRecord;
use specsim_sim::scenario::Scenario;

/// Σ measured / Σ predicted of a step log, (draft, target); 1 where a model has no predicted time.
pub fn speed_ratios(rows: &[StepRow]) -> (f64, f64) {
    let ratio = |draft: bool| {
        let (m, p) = rows
            .iter()
            .filter(|r| (r.kind == ForwardKind::Draft) == draft)
            .fold((0.0, 0.0), |(m, p), r| {
                (m + r.measured_s, p + r.predicted_s)
            });
        if p > 0.0 {
            m / p
        } else {
            1.0
        }
    };
    (ratio(true), ratio(false))
}

/// A backend whose forwards take a fixed multiple of the inner backend's modelled time.
pub struct ScaledTimes {
    inner: Box<dyn Backend + Send>,
    draft: f64,
    target: f64,
}

impl ScaledTimes {
    /// Wraps `inner`; draft forwards take `draft` times, target forwards `target` times its time.
    pub fn new(inner: Box<dyn Backend + Send>, draft: f64, target: f64) -> Self {
        ScaledTimes {
            inner,
            draft,
            target,
        }
    }
}

fn scaled(ns: u64, factor: f64) -> u64 {
    (ns as f64 * factor).round() as u64
}

impl Backend for ScaledTimes {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        let mut r = self.inner.draft(items)?;
        r.elapsed_ns = scaled(r.elapsed_ns, self.draft);
        Ok(r)
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        let mut r = self.inner.target(items)?;
        r.elapsed_ns = scaled(r.elapsed_ns, self.target);
        Ok(r)
    }

    fn release(&mut self, seq: SeqId) {
        self.inner.release(seq)
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        self.inner.lookahead(items, k_max)
    }
}

/// `scenario`'s prediction of `workload` under `policy` (as `Scenario::run_policy` makes it, same
/// seed, router and options) with every forward's time scaled by `(draft, target)`.
pub fn predict_at_speed(
    scenario: &Scenario,
    workload: &Workload,
    policy: &PolicyConfig,
    (draft, target): (f64, f64),
) -> Result<Vec<RequestRecord>, ReplayError> {
    let (replicas, name) = scenario.build_replicas(&workload.categories, policy)?;
    let replicas = replicas
        .into_iter()
        .map(|Replica { engine, backend }| Replica {
            engine,
            backend: Box::new(ScaledTimes::new(backend, draft, target)),
        })
        .collect();
    let opts = SimOptions {
        seed: scenario.file.seed,
        concurrency: scenario.file.trace.concurrency,
        ..Default::default()
    };
    let out = simulate(
        replicas,
        scenario.file.cluster.router.build(),
        workload,
        &name,
        &scenario.file.slo,
        &opts,
    )?;
    Ok(out.records)
}
