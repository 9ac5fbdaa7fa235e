//! `specsim run SCENARIO.toml`.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use specsim_core::workload::Workload;
use specsim_sim::metrics::{Summary, EXACT_PERCENTILE_LIMIT};
use specsim_sim::scenario::{unique_policy_names, RequestStream, Scenario, StreamOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Latency values per policy kept for exact percentiles; beyond, summary.json's percentiles come
    /// from a DDSketch (1 % relative error) and its `percentiles` field says so.
    #[arg(long, default_value_t = EXACT_PERCENTILE_LIMIT, value_name = "N")]
    pub exact_percentiles: usize,
    /// Replicas in parallel between synchronisation points: `auto` uses it only where it gives exactly
    /// the sequential results (a load-blind router: round_robin or hash; several replicas; 100k+
    /// requests; no --steps); `on` also for load-aware routers (which then see replica load as of the
    /// last synchronisation: see the README); `off` is the exact sequential event loop.
    #[arg(long, value_enum, default_value_t = Parallel::Auto)]
    pub parallel: Parallel,
    /// Synchronisation interval of the parallel mode, milliseconds of simulated time.
    #[arg(long, default_value_t = 100.0, value_name = "MS")]
    pub sync_ms: f64,
    /// Worker threads of the parallel mode [default, empty or 0: every core].
    #[arg(long, value_name = "N", value_parser = super::sweep::parse_threads)]
    pub threads: Option<usize>,
}

/// `--parallel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Parallel {
    /// Parallel only where it is exact.
    Auto,
    /// Always parallel.
    On,
    /// The sequential event loop.
    Off,
}

/// Below this many requests `--parallel auto` keeps the sequential loop (synchronisation would cost
/// more than it saves).
const AUTO_PARALLEL_MIN_REQUESTS: usize = 100_000;

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

/// Opens the scenario's workload as a stream, once per policy. Traces whose transformations allow it
/// stream from disk (or from the synthesiser); the others are loaded once and shared.
pub struct Source {
    sc: Scenario,
    memory: Option<Arc<Workload>>,
    /// Requests, when known before the run.
    pub len: Option<usize>,
}

impl Source {
    /// Prepares the scenario's workload (loading it now unless it can stream).
    pub fn new(sc: &Scenario, quiet: bool) -> Result<Source> {
        match specsim_traces::stream::plan_stream(&sc.file.trace, &sc.base_dir, sc.file.seed)
            .with_context(|| sc.path.display().to_string())?
        {
            Some(plan) => {
                if !quiet {
                    eprintln!("{}", plan.describe());
                }
                Ok(Source {
                    sc: sc.clone(),
                    memory: None,
                    len: plan.len,
                })
            }
            None => {
                let w = load_workload(sc, quiet)?;
                Ok(Source {
                    sc: sc.clone(),
                    len: Some(w.len()),
                    memory: Some(Arc::new(w)),
                })
            }
        }
    }

    /// A fresh stream over the workload.
    pub fn open(&self) -> Result<RequestStream> {
        match &self.memory {
            Some(w) => Ok(RequestStream::from_workload(Arc::clone(w))),
            None => {
                let sc = &self.sc;
                let s =
                    specsim_traces::stream::open_stream(&sc.file.trace, &sc.base_dir, sc.file.seed)
                        .with_context(|| sc.path.display().to_string())?;
                Ok(sc.checked_stream(s)?)
            }
        }
    }
}

/// How `run_policies` runs each policy.
pub struct RunOpts<'a> {
    /// Also write steps.csv.
    pub steps: bool,
    /// No progress bars.
    pub quiet: bool,
    /// See [`RunArgs::exact_percentiles`].
    pub exact_limit: usize,
    /// Parallel mode's interval, decided once for the run.
    pub sync_interval: Option<specsim_core::time::Nanos>,
    /// Set by SIGINT.
    pub cancel: Option<&'a AtomicBool>,
}

/// Runs every policy of a validated scenario in parallel (one thread per policy), with progress bars,
/// streaming each policy's results into `out/<policy>/`. Returns (name, summary) per policy.
pub fn run_policies(
    sc: &Scenario,
    source: &Source,
    out: &Path,
    o: &RunOpts,
) -> Result<Vec<(String, Summary)>> {
    let names = unique_policy_names(&sc.file.policies);
    let multi = MultiProgress::new();
    if o.quiet {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} requests  {elapsed_precise} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let results: Vec<Result<(String, Summary)>> = std::thread::scope(|s| {
        let handles: Vec<_> = sc
            .file
            .policies
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                let bar = multi.add(ProgressBar::new(source.len.unwrap_or(0) as u64));
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                s.spawn(move || {
                    let tick = |done: usize, _total: usize| bar.set_position(done as u64);
                    let stream = source.open()?;
                    let opts = StreamOptions {
                        record_steps: o.steps,
                        progress: Some(&tick),
                        exact_limit: o.exact_limit,
                        sync_interval: o.sync_interval,
                        cancel: o.cancel,
                    };
                    let run = sc
                        .run_policy_streaming(stream, p, name, &out.join(name), &opts)
                        .with_context(|| format!("policy {name}"))?;
                    bar.finish();
                    Ok((run.name, run.summary))
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
pub fn comparison_table(runs: &[(String, Summary)]) -> String {
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
    for (name, m) in runs {
        s += &format!(
            "{:<20} {:>8} {:>10.1} {:>9.3} {:>7.2} {:>8.3}s {:>8.3}s {:>7.1}ms {:>7.1}ms {:>6.2}\n",
            name,
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
    for (name, m) in runs {
        if let Some(p) = &m.prefix_cache {
            s += &format!(
                "{name}: prefix cache hit rate {:.2} % ({} of {} prompt tokens cached)\n",
                p.hit_rate * 100.0,
                p.cached_tokens,
                p.prompt_tokens
            );
        }
    }
    s
}

/// `comparison.csv`: one row per policy.
fn comparison_csv(runs: &[(String, Summary)]) -> String {
    let mut s = String::from("policy,requests,finished,throughput_rps,output_tokens_per_s,goodput_rps,slo_attainment,ttft_mean_s,ttft_p50_s,ttft_p99_s,tpot_mean_s,tpot_p50_s,tpot_p99_s,e2e_mean_s,e2e_p99_s,acceptance_rate,mean_accepted_length,preemptions\n");
    for (name, m) in runs {
        s += &format!(
            "{},{},{},{:.6},{:.3},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{}\n",
            name, m.requests, m.finished, m.throughput_rps, m.output_tokens_per_s, m.goodput_rps, m.slo_attainment, m.ttft.mean, m.ttft.p50, m.ttft.p99,
            m.tpot.mean, m.tpot.p50, m.tpot.p99, m.e2e.mean, m.e2e.p99, m.acceptance_rate, m.mean_accepted_length, m.preemptions
        );
    }
    s
}

/// Writes the comparison file (each policy's directory was written as it ran).
pub fn write_comparison(out: &Path, runs: &[(String, Summary)]) -> Result<()> {
    let p = out.join("comparison.csv");
    specsim_sim::sweep::write_atomically(&p, comparison_csv(runs).as_bytes())?;
    Ok(())
}

/// A flag that the first SIGINT (Ctrl-C) sets; a second one ends the process at once.
pub fn sigint_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&flag),
    )
    .context("installing the SIGINT handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&flag))
        .context("installing the SIGINT handler")?;
    Ok(flag)
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
    let source = Source::new(&sc, a.quiet)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(sc.name()));
    if !a.quiet {
        eprintln!(
            "{}: {} requests, {} policies",
            sc.name(),
            source
                .len
                .map_or_else(|| "a stream of".to_string(), |n| n.to_string()),
            sc.file.policies.len()
        );
    }
    if !(a.sync_ms > 0.0 && a.sync_ms.is_finite()) {
        bail!("--sync-ms {} must be positive", a.sync_ms);
    }
    let sync_interval = match a.parallel {
        Parallel::Off => None,
        Parallel::On => Some(specsim_core::time::ms_to_ns(a.sync_ms)),
        Parallel::Auto => sc
            .auto_sync_interval(source.len, a.steps, AUTO_PARALLEL_MIN_REQUESTS)
            .map(|_| specsim_core::time::ms_to_ns(a.sync_ms)),
    };
    if let Some(t) = a.threads.filter(|&t| t > 0) {
        // Only fails if the pool was already built, which nothing here does.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    // Results of an earlier run in the same folder would look complete if this one were killed.
    specsim_sim::metrics::remove_stale(&out, &["comparison.csv"])?;
    for name in unique_policy_names(&sc.file.policies) {
        specsim_sim::metrics::remove_stale(
            &out.join(name),
            &["summary.json", "requests.csv", "steps.csv", "INCOMPLETE"],
        )?;
    }
    let cancel = sigint_flag()?;
    let runs = run_policies(
        &sc,
        &source,
        &out,
        &RunOpts {
            steps: a.steps,
            quiet: a.quiet,
            exact_limit: a.exact_percentiles,
            sync_interval,
            cancel: Some(&cancel),
        },
    )?;
    if cancel.load(Ordering::Relaxed) {
        print!("{}", comparison_table(&runs));
        bail!(
            "interrupted: the results in {} are partial (each policy's summary.json says so, and an INCOMPLETE file marks its directory)",
            out.display()
        );
    }
    write_comparison(&out, &runs)?;
    print!("{}", comparison_table(&runs));
    if !a.quiet {
        eprintln!("results in {}", out.display());
    }
    Ok(())
}
