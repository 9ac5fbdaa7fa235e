//! `specsim run SCENARIO.toml`.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use specsim_core::workload::Workload;
use specsim_sim::metrics::write_result_dir;
use specsim_sim::scenario::{unique_policy_names, PolicyRun, Scenario};
use std::path::{Path, PathBuf};

/// The quickstart scenario, embedded so that `specsim run` works from any directory.
pub const QUICKSTART: &str = include_str!("../../scenarios/quickstart.toml");

/// Arguments of `specsim run`.
#[derive(Args)]
pub struct RunArgs {
    /// Scenario file (TOML). Without it, the embedded quickstart scenario runs (no downloads needed;
    /// the same text as scenarios/quickstart.toml).
    pub scenario: Option<PathBuf>,
    /// Output directory [default: out/<scenario name>]. One subdirectory per policy holds
    /// requests.csv, summary.json (and steps.csv with --steps); comparison.csv sums them up.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override a scenario key before validation, e.g. --set trace.synthetic.rate=8 or
    /// --set policies.1.k=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Also write steps.csv (one row per engine step: batch, tokens, k, step time).
    #[arg(long)]
    pub steps: bool,
    /// Print the summary table only (no progress bars).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Loads the scenario's workload (any trace format, after the scenario's transformations) and prints
/// what was read, skipped, repaired or clipped.
pub fn load_workload(sc: &Scenario, quiet: bool) -> Result<Workload> {
    let loaded = specsim_traces::load_workload(&sc.file.trace, &sc.base_dir, sc.file.seed)
        .with_context(|| sc.path.display().to_string())?;
    if !quiet {
        eprintln!("{}", loaded.report);
    }
    sc.check_workload(&loaded.workload)?;
    Ok(loaded.workload)
}

/// Runs every policy of a validated scenario in parallel (one thread per policy), with progress bars.
pub fn run_policies(
    sc: &Scenario,
    w: &Workload,
    steps: bool,
    quiet: bool,
) -> Result<Vec<PolicyRun>> {
    let names = unique_policy_names(&sc.file.policies);
    let multi = MultiProgress::new();
    if quiet {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} requests  {elapsed_precise} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let results: Vec<Result<PolicyRun>> = std::thread::scope(|s| {
        let handles: Vec<_> = sc
            .file
            .policies
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                let bar = multi.add(ProgressBar::new(w.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                s.spawn(move || {
                    let tick = |done: usize, _total: usize| bar.set_position(done as u64);
                    let mut run = sc
                        .run_policy(w, p, steps, Some(&tick))
                        .with_context(|| format!("policy {name}"))?;
                    bar.finish();
                    if &run.name != name {
                        run.name = name.clone();
                        run.summary.policy = name.clone();
                        run.records.iter_mut().for_each(|r| r.policy = name.clone());
                    }
                    Ok(run)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("simulation thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// The side-by-side table printed after a run.
pub fn comparison_table(runs: &[PolicyRun]) -> String {
    let mut s = format!(
        "{:<20} {:>8} {:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
        "policy",
        "finished",
        "tok/s",
        "goodput",
        "SLO %",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "TPOT p99",
        "acc.len"
    );
    for r in runs {
        let m = &r.summary;
        s += &format!(
            "{:<20} {:>8} {:>10.1} {:>9.3} {:>7.2} {:>8.3}s {:>8.3}s {:>7.1}ms {:>7.1}ms {:>6.2}\n",
            r.name,
            m.finished,
            m.output_tokens_per_s,
            m.goodput_rps,
            m.slo_attainment * 100.0,
            m.ttft.p50,
            m.ttft.p99,
            m.tpot.p50 * 1e3,
            m.tpot.p99 * 1e3,
            m.mean_accepted_length
        );
    }
    s
}

/// `comparison.csv`: one row per policy.
fn comparison_csv(runs: &[PolicyRun]) -> String {
    let mut s = String::from("policy,requests,finished,throughput_rps,output_tokens_per_s,goodput_rps,slo_attainment,ttft_mean_s,ttft_p50_s,ttft_p99_s,tpot_mean_s,tpot_p50_s,tpot_p99_s,e2e_mean_s,e2e_p99_s,acceptance_rate,mean_accepted_length,preemptions\n");
    for r in runs {
        let m = &r.summary;
        s += &format!(
            "{},{},{},{:.6},{:.3},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{}\n",
            r.name, m.requests, m.finished, m.throughput_rps, m.output_tokens_per_s, m.goodput_rps, m.slo_attainment, m.ttft.mean, m.ttft.p50, m.ttft.p99,
            m.tpot.mean, m.tpot.p50, m.tpot.p99, m.e2e.mean, m.e2e.p99, m.acceptance_rate, m.mean_accepted_length, m.preemptions
        );
    }
    s
}

/// Writes every policy's result directory and the comparison file.
pub fn write_runs(out: &Path, runs: &[PolicyRun], steps: bool) -> Result<()> {
    for r in runs {
        write_result_dir(
            &out.join(&r.name),
            &r.records,
            &r.summary,
            steps.then_some(r.steps.as_slice()),
        )?;
    }
    let p = out.join("comparison.csv");
    specsim_sim::sweep::write_atomically(&p, comparison_csv(runs).as_bytes())?;
    Ok(())
}

/// `specsim run`.
pub fn run(a: RunArgs) -> Result<()> {
    let sc = match &a.scenario {
        Some(p) => Scenario::load(p, &a.sets)?,
        None => Scenario::parse(
            QUICKSTART,
            Path::new("quickstart.toml (embedded)"),
            Path::new("."),
            &a.sets,
        )?,
    };
    let w = load_workload(&sc, a.quiet)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(sc.name()));
    if !a.quiet {
        eprintln!(
            "{}: {} requests over {:.1} s, {} policies",
            sc.name(),
            w.len(),
            w.span_ns() as f64 / 1e9,
            sc.file.policies.len()
        );
    }
    // Results of an earlier run in the same folder would look complete if this one were killed.
    specsim_sim::metrics::remove_stale(&out, &["comparison.csv"])?;
    for name in unique_policy_names(&sc.file.policies) {
        specsim_sim::metrics::remove_stale(
            &out.join(name),
            &["summary.json", "requests.csv", "steps.csv"],
        )?;
    }
    let runs = run_policies(&sc, &w, a.steps, a.quiet)?;
    write_runs(&out, &runs, a.steps)?;
    print!("{}", comparison_table(&runs));
    if !a.quiet {
        eprintln!("results in {}", out.display());
    }
    Ok(())
}
