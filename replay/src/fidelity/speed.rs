//! The prediction at the live run's own forward speed: how much of a gap the cost term explains.
//!
//! The cost term says how far the live forwards were from the profile on average (Σ measured /
//! Σ predicted of the step log, by kind of forward). Near capacity a few percent decide the tail — queueing
//! delay grows as ρ / (1 − ρ), so at 90 % load forwards 5 % slower nearly double it — so a verdict
//! needs that number turned into latency: the simulator is run again on the same scenario with every
//! forward's modelled time multiplied by the replicate's ratio for its kind — prefill (any prompt
//! tokens in the batch), decode/verify, draft ([`ScaledTimes`]) — one run per replicate, and the cell
//! compares those runs with
//! the measurement as it compares the plain prediction. A disagreement that becomes agreement at the
//! live speed is the cost term's; one that stays is something else's.
//!
//! The live forwards also vary around their level (the per-forward ratio's coefficient of variation
//! was 11–25 % on the 2-core VM), and variable service times lengthen queues (the Pollaczek–Khinchine
//! mean wait grows with 1 + CV²). So each target forward's time is also multiplied by an independent
//! log-normal factor of mean 1 and the replicate's CV ([`Speed::jitter_cv`]), drawn from a stream of
//! its own (so acceptance draws are untouched). This treats all of the ratio's variation — the
//! machine's jitter, its slower and faster spells, and the profile's error by batch shape — as
//! independent per forward: an approximation, stated as one.

use super::steps::{coefficient_of_variation, cost_term, target_ratios, ForwardKind, StepRow};
use crate::ReplayError;
use rand_distr::{Distribution, LogNormal};
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetResult, TargetWork,
};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::{stream, SimRng};
use specsim_core::workload::Workload;
use specsim_core::CoreError;
use specsim_sim::cluster::{simulate, Replica, SimOptions};
use specsim_sim::metrics::RequestRecord;
use specsim_sim::scenario::Scenario;

/// How fast, and how unevenly, a live run's forwards went against the cost model: Σ measured /
/// Σ predicted per kind of forward, as the cost term groups them (1 for a kind without forwards).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Speed {
    /// Draft-model forwards.
    pub draft: f64,
    /// Target forwards with prompt tokens in them (prefill, alone or with decoding).
    pub prefill: f64,
    /// Target forwards of decoding or verification only.
    pub decode: f64,
    /// Coefficient of variation of the target forwards' measured / predicted ratio (0 under two).
    pub jitter_cv: f64,
}

impl Speed {
    /// The cost model's own speed: every factor 1, no jitter.
    pub const MODEL: Speed = Speed {
        draft: 1.0,
        prefill: 1.0,
        decode: 1.0,
        jitter_cv: 0.0,
    };

    /// The speed of a step log's forwards: the cost term's ratio per kind ([`cost_term`]) and the
    /// spread of the target forwards' ratios.
    pub fn of(rows: &[StepRow]) -> Speed {
        let groups = cost_term(rows);
        let ratio = |kind| {
            groups
                .iter()
                .find(|g| g.kind == kind && g.seqs.is_none())
                .and_then(|g| g.ratio)
                .unwrap_or(1.0)
        };
        Speed {
            draft: ratio(ForwardKind::Draft),
            prefill: ratio(ForwardKind::Prefill),
            decode: ratio(ForwardKind::Decode),
            jitter_cv: coefficient_of_variation(&target_ratios(rows)).unwrap_or(0.0),
        }
    }
}

/// A backend whose forwards take a multiple of the inner backend's modelled time: a fixed one per
/// model, and for target forwards an independent log-normal jitter of mean 1 (see the module doc).
pub struct ScaledTimes {
    inner: Box<dyn Backend + Send>,
    speed: Speed,
    jitter: Option<(LogNormal<f64>, SimRng)>,
}

impl ScaledTimes {
    /// Wraps `inner` at `speed`; the jitter (when `speed.jitter_cv > 0`) draws from `rng`.
    pub fn new(inner: Box<dyn Backend + Send>, speed: Speed, rng: SimRng) -> Self {
        // Mean 1 and CV c: σ² = ln(1 + c²), μ = −σ²/2.
        let jitter = (speed.jitter_cv > 0.0).then(|| {
            let var = (1.0 + speed.jitter_cv * speed.jitter_cv).ln();
            let dist = LogNormal::new(-var / 2.0, var.sqrt()).expect("a finite σ ≥ 0");
            (dist, rng)
        });
        ScaledTimes {
            inner,
            speed,
            jitter,
        }
    }
}

fn scaled(ns: u64, factor: f64) -> u64 {
    (ns as f64 * factor).round() as u64
}

impl Backend for ScaledTimes {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        let mut r = self.inner.draft(items)?;
        r.elapsed_ns = scaled(r.elapsed_ns, self.speed.draft);
        Ok(r)
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        let mut r = self.inner.target(items)?;
        // Classed as the step log classes a forward: any prompt tokens make it a prefill.
        let prefill = items
            .iter()
            .any(|i| matches!(i.work, TargetWork::Prefill { .. }));
        let level = if prefill {
            self.speed.prefill
        } else {
            self.speed.decode
        };
        let noise = match &mut self.jitter {
            Some((dist, rng)) => dist.sample(rng),
            None => 1.0,
        };
        r.elapsed_ns = scaled(r.elapsed_ns, level * noise);
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
/// seed, router and options) with every forward's time at `speed`.
pub fn predict_at_speed(
    scenario: &Scenario,
    workload: &Workload,
    policy: &PolicyConfig,
    speed: Speed,
) -> Result<Vec<RequestRecord>, ReplayError> {
    let (replicas, name) = scenario.build_replicas(&workload.categories, policy)?;
    let replicas = replicas
        .into_iter()
        .enumerate()
        .map(|(i, Replica { engine, backend })| {
            let rng = stream(scenario.file.seed, "forward-jitter", i as u64);
            Replica {
                engine,
                backend: Box::new(ScaledTimes::new(backend, speed, rng)) as Box<dyn Backend + Send>,
            }
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
