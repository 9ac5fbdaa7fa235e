//! The fidelity study's statistics: replicated measurements, intervals, verdicts, and the split of a
//! prediction's error into terms that can each be checked on their own.
//!
//! - [`stats`]: nested-bootstrap intervals of a metric over replicates, the gap's interval and the
//!   verdict against an aim, attainment-versus-SLO curves.
//! - [`steps`]: the live engine's step log and the **cost** term (measured / predicted per forward).
//! - [`recorded`]: the **engine/queueing** term (the simulator re-run on the logged forward times).
//! - [`outcomes`]: the live run's per-sequence accepted counts, replayed in that re-run.
//! - [`overhead`]: the **serving overhead** by difference (the same cell over HTTP and in process).
//! - [`terms`]: the **acceptance** and **workload** terms.
//! - [`noise`]: the machine's noise during a live run (CPU steal and load, a probe's drift).
//! - [`cell`]: one cell of the study (a workload, load and policy; N replicates a side) put together.

pub mod cell;
pub mod noise;
pub mod outcomes;
pub mod overhead;
pub mod recorded;
pub mod stats;
pub mod steps;
pub mod terms;

use crate::ReplayError;
use outcomes::{LoggedAcceptance, SeqOutcomeRow};
use recorded::{MatchStats, RecordedTimes};
use specsim_core::workload::Workload;
use specsim_sim::cluster::{simulate, Replica, SimOptions};
use specsim_sim::metrics::{RequestRecord, SloConfig};
use steps::StepRow;

/// Re-runs `workload` on `replica` (one engine, as one live server is) with each forward taking the
/// logged time of the live run's matching forward; returns the rows and how well the log was followed.
pub fn resimulate(
    replica: Replica,
    rows: &[StepRow],
    workload: &Workload,
    policy: &str,
    slo: &SloConfig,
    seed: u64,
) -> Result<(Vec<RequestRecord>, MatchStats), ReplayError> {
    resimulate_with_outcomes(replica, rows, None, workload, policy, slo, seed)
}

/// [`resimulate`], and with `outcomes` (the live per-sequence log) each sequence's verifications
/// take the live accepted counts instead of the replica's drawn ones; the match statistics then
/// carry how many were replayed.
pub fn resimulate_with_outcomes(
    replica: Replica,
    rows: &[StepRow],
    outcomes: Option<&[SeqOutcomeRow]>,
    workload: &Workload,
    policy: &str,
    slo: &SloConfig,
    seed: u64,
) -> Result<(Vec<RequestRecord>, MatchStats), ReplayError> {
    let Replica { engine, backend } = replica;
    let (backend, outcome_stats): (Box<dyn specsim_core::engine::Backend + Send>, _) =
        match outcomes {
            Some(o) => {
                let (b, s) = LoggedAcceptance::new(backend, o);
                (Box::new(b), Some(s))
            }
            None => (backend, None),
        };
    let (wrapped, stats) = RecordedTimes::new(backend, rows);
    let replicas = vec![Replica {
        engine,
        backend: Box::new(wrapped),
    }];
    let opts = SimOptions {
        seed,
        ..Default::default()
    };
    let out = simulate(
        replicas,
        specsim_sim::cluster::router::RouterKind::default().build(),
        workload,
        policy,
        slo,
        &opts,
    )?;
    let mut matching = *stats.lock().unwrap_or_else(|e| e.into_inner());
    matching.outcomes = outcome_stats.map(|s| *s.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((out.records, matching))
}
