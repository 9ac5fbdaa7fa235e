//! `specsim fidelity SCENARIO --policy P --measured DIR...`: one cell of the fidelity study.
//!
//! Predicts the cell with several simulator seeds (the workload stays the scenario's: only the
//! acceptance and routing streams change), reads each live replicate's directory (`requests.csv`,
//! `replay.json`, and when present `steps.csv` with its siblings `steps.seqs.csv` and
//! `steps.requests.csv`, `metrics.txt`, `noise.json`), re-runs the simulator on each replicate's
//! logs for the engine/queueing term (`specsim_replay::fidelity::resimulate_live`), predicts the cell
//! again at each replicate's measured forward speed (`specsim_replay::fidelity::speed`), judges each
//! replicate's noise by its forwards' speed, and writes `cell.json` and `cell.md`
//! (see `specsim_replay::fidelity::cell`).

use anyhow::{bail, Context, Result};
use clap::Args;
use specsim_core::acceptance::AcceptanceConfig;
use specsim_replay::fidelity::cell::{
    at_live_speed, cell_report, render_markdown, MeasuredReplicate,
};
use specsim_replay::fidelity::noise::{with_forward_speed, NoiseReport};
use specsim_replay::fidelity::outcomes::{read_seq_log, seqs_path};
use specsim_replay::fidelity::overhead::serving_overhead;
use specsim_replay::fidelity::recorded::engine_term;
use specsim_replay::fidelity::recorded::EngineTerm;
use specsim_replay::fidelity::served::read_served;
use specsim_replay::fidelity::speed::{predict_at_speed, Speed};
use specsim_replay::fidelity::steps::read_step_log;
use specsim_replay::fidelity::terms::parse_acceptance_metrics;
use specsim_replay::fidelity::{resimulate_live, LiveLog};
use specsim_replay::ReplayStats;
use specsim_sim::metrics::parse_requests_csv;
use specsim_sim::scenario::{unique_policy_names, Scenario};
use std::path::{Path, PathBuf};

/// Arguments of `specsim fidelity`.
#[derive(Args)]
pub struct FidelityArgs {
    /// Scenario file the live replicates replayed (with the same --set overrides).
    pub scenario: PathBuf,
    /// Override a scenario key before validation (repeatable), as in `specsim run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// The policy, by its name in the scenario (`none`, `static-4`, `specserve`).
    #[arg(long)]
    pub policy: String,
    /// A live replicate's policy directory (`specsim replay --out R --policy-label P` writes R/P);
    /// repeat for each replicate. A step log is read from DIR/steps.csv (with DIR/steps.seqs.csv, each
    /// sequence's accepted counts, and DIR/steps.requests.csv, each request's times on the engine's
    /// clock), the engine's /metrics from DIR/metrics.txt, the noise monitor's report from
    /// DIR/noise.json.
    #[arg(long, required = true, num_args = 1..)]
    pub measured: Vec<PathBuf>,
    /// The same cell's replicates run in process (`specsim replay --in-process`), in the order of
    /// --measured: the serving overhead is reported per request as --measured (over HTTP) minus
    /// these.
    #[arg(long, num_args = 1..)]
    pub in_process: Vec<PathBuf>,
    /// Simulator seeds for the prediction's interval.
    #[arg(long, default_value_t = 5)]
    pub seeds: u32,
    /// Requests left out at the start of every replicate (warm-up), on both sides.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Output directory (cell.json, cell.md).
    #[arg(long)]
    pub out: PathBuf,
    /// Flag a replicate whose target forwards (measured / predicted, median) ran faster or slower by
    /// more than this fraction in its second half than in its first. Where a step log was kept this
    /// judges the machine's speed instead of the noise probe's before/after drift.
    #[arg(long, default_value_t = specsim_replay::fidelity::noise::MAX_FORWARD_DRIFT)]
    pub max_forward_drift: f64,
}

/// Reads one live replicate; a directory that cannot be read becomes a replicate with no rows, which
/// the report lists as left out rather than failing the cell.
fn read_replicate(dir: &Path, max_forward_drift: f64) -> MeasuredReplicate {
    let name = dir.display().to_string();
    let requests = dir.join("requests.csv");
    let records = match std::fs::read_to_string(&requests)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            parse_requests_csv(&t, &requests.display().to_string()).map_err(|e| e.to_string())
        }) {
        Ok(r) => r,
        Err(e) => {
            return MeasuredReplicate {
                name,
                aborted: Some(format!("unreadable: {e}")),
                ..Default::default()
            }
        }
    };
    let aborted = std::fs::read_to_string(dir.join("replay.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<ReplayStats>(&t).ok())
        .and_then(|s| s.aborted);
    let steps_path = dir.join("steps.csv");
    let steps = steps_path
        .is_file()
        .then(|| read_step_log(&steps_path))
        .transpose()
        .unwrap_or_else(|e| {
            eprintln!("warning: {e}; no cost or engine term from this replicate");
            None
        });
    let seqs = seqs_path(&steps_path);
    let outcomes = seqs
        .is_file()
        .then(|| read_seq_log(&seqs))
        .transpose()
        .unwrap_or_else(|e| {
            eprintln!("warning: {e}; the engine term draws acceptance instead of replaying it");
            None
        });
    let served = read_served(&steps_path).unwrap_or_else(|e| {
        eprintln!("warning: {e}; the engine term re-runs the trace's arrivals instead");
        None
    });
    let noise = std::fs::read_to_string(dir.join("noise.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<NoiseReport>(&t).ok())
        .map(|n| match &steps {
            Some(rows) => with_forward_speed(n, rows, max_forward_drift),
            None => n,
        });
    MeasuredReplicate {
        name,
        records,
        served,
        aborted,
        steps,
        outcomes,
        acceptance: std::fs::read_to_string(dir.join("metrics.txt"))
            .ok()
            .map(|t| parse_acceptance_metrics(&t)),
        noise,
        engine: None,
    }
}

/// `specsim fidelity`.
pub fn run(a: FidelityArgs) -> Result<()> {
    let sc = Scenario::load(&a.scenario, &a.sets)?;
    let w = super::run::load_workload(&sc, true)?;
    let names = unique_policy_names(&sc.file.policies);
    let Some(idx) = names.iter().position(|n| n == &a.policy) else {
        bail!(
            "--policy {}: the scenario's policies are {}",
            a.policy,
            names.join(", ")
        );
    };
    let policy = &sc.file.policies[idx];
    if !(1..=1000).contains(&a.seeds) {
        bail!("--seeds must be in [1, 1000]");
    }
    let mut predicted = Vec::new();
    for s in 0..a.seeds {
        let mut seeded = sc.clone();
        seeded.file.seed = sc.file.seed.wrapping_add(u64::from(s));
        predicted.push(seeded.run_policy(&w, policy, false, None)?.records);
    }
    let mut measured = Vec::new();
    for dir in &a.measured {
        let mut r = read_replicate(dir, a.max_forward_drift);
        if let (Some(rows), None) = (&r.steps, &r.aborted) {
            // The re-run isolates the engine and its queueing: it takes the live forward times, each
            // sequence's live accepted counts where the per-sequence log was kept, and otherwise
            // draws from the live acceptance rates per position where the engine's counters were
            // saved.
            let mut live = sc.clone();
            if let Some(alphas) = r.acceptance.as_ref().and_then(|c| c.conditional_rates()) {
                live.file.acceptance = AcceptanceConfig::PerPosition { alphas };
            }
            let (replicas, name) = live.build_replicas(&w.categories, policy)?;
            if replicas.len() != 1 {
                bail!("the engine/queueing term needs a scenario of one replica (a step log is one engine's)");
            }
            let replica = replicas.into_iter().next().context("no replica")?;
            let live_log = LiveLog {
                rows,
                outcomes: r.outcomes.as_deref(),
                served: r.served.as_deref(),
                client: &r.records,
            };
            let rerun = resimulate_live(replica, &live_log, &w, &name, &sc.file.slo, sc.file.seed)?;
            r.engine = Some(match &rerun.engine_side {
                Some(engine) => EngineTerm {
                    against: "engine".into(),
                    serving_path: Some(serving_overhead(&[(&r.records, engine)], 0)),
                    served: rerun.served,
                    ..engine_term(&rerun.records, engine, rerun.matching)
                },
                None => engine_term(&rerun.records, &r.records, rerun.matching),
            });
        }
        measured.push(r);
    }
    // The prediction again at each replicate's own forward speed: how much of a gap is the cost's.
    let mut at_speed = Vec::new();
    for (i, r) in measured.iter().enumerate() {
        if let Some(rows) = &r.steps {
            let factors = Speed::of(rows);
            let mut seeded = sc.clone();
            seeded.file.seed = sc.file.seed.wrapping_add(i as u64);
            at_speed.push((r, predict_at_speed(&seeded, &w, policy, factors)?, factors));
        }
    }
    let acceptance = sc.acceptance(&w.categories)?;
    let rate = move |j: u32| acceptance.acceptance_rate(j, None);
    let mut report = cell_report(
        &a.policy,
        &predicted,
        &measured,
        &sc.file.slo,
        a.warmup,
        &rate,
        sc.file.seed,
    );
    report.at_live_speed = at_live_speed(&at_speed, a.warmup, sc.file.seed);
    if !a.in_process.is_empty() {
        report.serving_overhead = Some(overhead_of(
            &measured,
            &a.in_process,
            a.warmup,
            a.max_forward_drift,
        )?);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let json = a.out.join("cell.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let md = a.out.join("cell.md");
    std::fs::write(&md, render_markdown(&report))
        .with_context(|| format!("writing {}", md.display()))?;
    for m in &report.metrics {
        println!(
            "{:<12} predicted {:>9.4} [{:.4}, {:.4}]  measured {:>9.4} [{:.4}, {:.4}]  gap {:+.4} [{:+.4}, {:+.4}]  {}",
            m.metric,
            m.predicted.point,
            m.predicted.lo,
            m.predicted.hi,
            m.measured.point,
            m.measured.lo,
            m.measured.hi,
            m.gap.point,
            m.gap.lo,
            m.gap.hi,
            m.verdict.label()
        );
    }
    if let Some(o) = &report.serving_overhead {
        println!(
            "serving overhead (HTTP - in process, {} requests): TTFT median {:.2} ms p90 {:.2} ms  TPOT median {:.3} ms p90 {:.3} ms",
            o.requests,
            o.ttft_median_s * 1e3,
            o.ttft_p90_s * 1e3,
            o.tpot_median_s * 1e3,
            o.tpot_p90_s * 1e3
        );
    }
    for (name, why) in &report.excluded {
        eprintln!("left out: {name}: {why}");
    }
    eprintln!("results in {}", a.out.display());
    Ok(())
}

/// The serving overhead of the HTTP replicates against the in-process ones, pair by pair; a pair
/// either of whose sides failed or was aborted is left out (and said so).
fn overhead_of(
    http: &[MeasuredReplicate],
    in_process: &[PathBuf],
    warmup: usize,
    max_forward_drift: f64,
) -> Result<specsim_replay::fidelity::overhead::ServingOverhead> {
    if in_process.len() != http.len() {
        bail!(
            "--in-process: {} directories for {} --measured ones (one in-process run per replicate)",
            in_process.len(),
            http.len()
        );
    }
    let local: Vec<MeasuredReplicate> = in_process
        .iter()
        .map(|d| read_replicate(d, max_forward_drift))
        .collect();
    let mut pairs = Vec::new();
    for (h, l) in http.iter().zip(&local) {
        if h.records.is_empty()
            || l.records.is_empty()
            || h.aborted.is_some()
            || l.aborted.is_some()
        {
            eprintln!(
                "warning: serving overhead: pair {} / {} left out (a side has no rows or was aborted)",
                h.name, l.name
            );
            continue;
        }
        pairs.push((h.records.as_slice(), l.records.as_slice()));
    }
    Ok(specsim_replay::fidelity::overhead::serving_overhead(
        &pairs, warmup,
    ))
}
