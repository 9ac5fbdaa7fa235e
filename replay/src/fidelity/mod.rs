//! The fidelity study's statistics: replicated measurements, intervals, verdicts, and the split of a
//! prediction's error into terms that can each be checked on their own.
//!
//! - [`stats`]: nested-bootstrap intervals of a metric over replicates, the gap's interval and the
//!   verdict against an aim, attainment-versus-SLO curves.
//! - [`steps`]: the live engine's step log and the **cost** term (measured / predicted per forward).
//! - [`recorded`]: the **engine/queueing** term (the simulator re-run on the logged forward times).
//! - [`outcomes`]: the live run's per-sequence accepted counts, replayed in that re-run.
//! - [`served`]: the live engine's per-request times: the re-run's arrivals and idle spells, and the
//!   engine's own latencies (so the serving path is measured, not inferred).
//! - [`overhead`]: the **serving overhead** by difference (the same cell over HTTP and in process).
//! - [`terms`]: the **acceptance** and **workload** terms.
//! - [`speed`]: the prediction again at the live forwards' speed (how much of a gap is the cost's).
//! - [`noise`]: the machine's noise during a live run (CPU steal and load, a probe's drift).
//! - [`cell`]: one cell of the study (a workload, load and policy; N replicates a side) put together.

pub mod cell;
pub mod noise;
pub mod outcomes;
pub mod overhead;
pub mod recorded;
pub mod served;
pub mod speed;
pub mod stats;
pub mod steps;
pub mod terms;

use crate::ReplayError;
use outcomes::{LoggedAcceptance, SeqOutcomeRow};
use recorded::{MatchStats, RecordedTimes};
use served::{ServedMatch, ServedRequest};
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
    let spans: Vec<f64> = rows.iter().map(|r| r.measured_s).collect();
    let live = LiveLog {
        rows,
        outcomes,
        served: None,
        client: &[],
    };
    rerun(replica, &live, &spans, workload, policy, slo, seed)
}

/// What the live run left for the engine/queueing re-run.
#[derive(Debug, Clone, Copy)]
pub struct LiveLog<'a> {
    /// The step log.
    pub rows: &'a [StepRow],
    /// Its per-sequence outcomes (`steps.seqs.csv`), if kept.
    pub outcomes: Option<&'a [SeqOutcomeRow]>,
    /// Its per-request times (`steps.requests.csv`), if kept.
    pub served: Option<&'a [ServedRequest]>,
    /// The client's rows of the same run.
    pub client: &'a [RequestRecord],
}

/// A re-run of a live run.
#[derive(Debug, Clone)]
pub struct Rerun {
    /// Its rows under the client's ids. With the per-request log, latencies count from the engine's
    /// receipt of each request (as [`Rerun::engine_side`]'s do).
    pub records: Vec<RequestRecord>,
    /// With the per-request log: the live engine's own latencies, under the client's ids.
    pub engine_side: Option<Vec<RequestRecord>>,
    /// How well it followed the step log.
    pub matching: MatchStats,
    /// With the per-request log: how its requests were paired with the client's.
    pub served: Option<ServedMatch>,
}

/// Re-runs a live run on `replica`: with the per-request log, the workload the engine served (its
/// arrivals, lengths and idle spells, see [`served`]) and each forward timed from when the live
/// engine could start it; without it, `workload` and each forward's measured time.
pub fn resimulate_live(
    replica: Replica,
    live: &LiveLog,
    workload: &Workload,
    policy: &str,
    slo: &SloConfig,
    seed: u64,
) -> Result<Rerun, ReplayError> {
    let Some(served) = live.served else {
        let (records, matching) = resimulate_with_outcomes(
            replica,
            live.rows,
            live.outcomes,
            workload,
            policy,
            slo,
            seed,
        )?;
        return Ok(Rerun {
            records,
            engine_side: None,
            matching,
            served: None,
        });
    };
    let (pairs, paired) = served::pair_with_client(served, live.client);
    let boundaries = served::forward_boundaries(live.rows, served);
    let (w, clients) = served::served_workload(&pairs, live.rows, &boundaries, workload);
    let spans = served::forward_spans(live.rows, &boundaries);
    let (mut records, matching) = rerun(replica, live, &spans, &w, policy, slo, seed)?;
    for r in &mut records {
        let (id, received) = clients[r.id as usize];
        r.id = id;
        r.arrival_s = received;
        r.ttft_s = r.first_token_s - received;
        r.e2e_s = r.finish_s - received;
    }
    Ok(Rerun {
        records,
        engine_side: Some(served::engine_records(&pairs)),
        matching,
        served: Some(paired),
    })
}

/// The re-run itself on `live`'s step log and outcomes: `spans` (seconds, one per step log row) are
/// the forwards' times.
fn rerun(
    replica: Replica,
    live: &LiveLog,
    spans: &[f64],
    workload: &Workload,
    policy: &str,
    slo: &SloConfig,
    seed: u64,
) -> Result<(Vec<RequestRecord>, MatchStats), ReplayError> {
    let Replica { engine, backend } = replica;
    let (backend, outcome_stats): (Box<dyn specsim_core::engine::Backend + Send>, _) =
        match live.outcomes {
            Some(o) => {
                let (b, s) = LoggedAcceptance::new(backend, o);
                (Box::new(b), Some(s))
            }
            None => (backend, None),
        };
    let (wrapped, stats) = RecordedTimes::with_spans(backend, live.rows, spans);
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
