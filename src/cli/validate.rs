//! `specsim validate DIR --out OUT`: predict every experiment of a ground-truth folder (BLIS's layout:
//! experiments.csv, workloads/*.json, error-record CSVs, optional training/ data) and score the
//! predictions beside other simulators' published ones (see docs/VALIDATION.md).

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use specsim_calibrate::validate::folder::read_folder;
use specsim_calibrate::validate::metrics::Metric;
use specsim_calibrate::validate::report::{rows, to_csv, MarkdownReport, Row};
use specsim_calibrate::validate::run::{
    RunOptions, Validator, WorkloadSource, FRONTEND_MS_DEFAULT, STEP_OVERHEAD_MULTI_GPU_US_DEFAULT,
    STEP_OVERHEAD_US_DEFAULT,
};
use specsim_calibrate::validate::Failure;
use specsim_plots::{Chart, Figure, Series, SeriesKind};
use std::path::{Path, PathBuf};

/// Arguments of `specsim validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Ground-truth folder (e.g. ../shared/gpu/blis).
    pub dir: PathBuf,
    /// Folder for validation.csv, validation.md and the parity plot.
    #[arg(long)]
    pub out: PathBuf,
    /// aiconfigurator operator tables the step costs are composed from.
    #[arg(long, default_value = "../shared/gpu/aiconfigurator")]
    pub ops: PathBuf,
    /// Workload to simulate: `spec` (the published workload spec only, as for held-out experiments)
    /// or `replay` (the run's own send times and prompt lengths where the folder has per-request data).
    #[arg(long, value_enum, default_value_t = Source::Spec)]
    pub workload: Source,
    /// Turn the engine's automatic prefix caching off (it is on in vLLM V1 and in every BLIS run).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Client-visible front-end latency added to every request's TTFT and E2E, ms (HTTP, vLLM's API
    /// server and its IPC, tokenising, streaming the first event). The default is derived from the
    /// 14 training runs (docs/VALIDATION.md); 0 leaves it out.
    #[arg(long, default_value_t = FRONTEND_MS_DEFAULT, value_parser = non_negative)]
    pub frontend_ms: f64,
    /// Engine time per step outside the forwards (scheduler, sampling, Python), µs, added to every
    /// forward of a TP-1 run. The default is derived from the training runs (docs/VALIDATION.md);
    /// 0 leaves it out.
    #[arg(long, default_value_t = STEP_OVERHEAD_US_DEFAULT, value_parser = non_negative)]
    pub step_overhead_us: f64,
    /// The same for runs at TP ≥ 2, µs. Default 0: there the composed all-reduces already price every
    /// training run's decode step above the measured one (docs/VALIDATION.md).
    #[arg(long, default_value_t = STEP_OVERHEAD_MULTI_GPU_US_DEFAULT, value_parser = non_negative)]
    pub step_overhead_multi_gpu_us: f64,
}

/// A finite number ≥ 0 (a latency).
fn non_negative(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1e6).contains(&x) => Ok(x),
        _ => Err(format!("`{s}` is not a number in [0, 1000000]")),
    }
}

/// `--workload`.
#[derive(Clone, Copy, ValueEnum)]
pub enum Source {
    /// Published spec only.
    Spec,
    /// Per-request data where present.
    Replay,
}

/// Runs `specsim validate`.
pub fn run(a: ValidateArgs) -> Result<()> {
    let gt = read_folder(&a.dir).with_context(|| format!("reading {}", a.dir.display()))?;
    let opts = RunOptions {
        source: match a.workload {
            Source::Spec => WorkloadSource::Spec,
            Source::Replay => WorkloadSource::Replay,
        },
        prefix_caching: !a.no_prefix_cache,
        frontend_s: a.frontend_ms * 1e-3,
        step_overhead_ns: a.step_overhead_us * 1e3,
        step_overhead_multi_gpu_ns: a.step_overhead_multi_gpu_us * 1e3,
    };
    let mut validator = Validator::new(a.ops.clone());
    let mut failures = gt.failures.clone();
    let mut skipped = Vec::new();
    let mut predictions = Vec::new();
    let bar = ProgressBar::new(gt.experiments.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>40} [{bar:30}] {pos}/{len}  {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for e in &gt.experiments {
        bar.set_message(e.name.chars().take(40).collect::<String>());
        match Validator::check(e) {
            Err(f) => failures.push(f),
            Ok(Some(s)) => skipped.push(s),
            Ok(None) => match validator.run(e, opts) {
                Ok(p) => predictions.push(p),
                Err(err) => failures.push(Failure {
                    experiment: e.name.clone(),
                    message: err.to_string(),
                }),
            },
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rows = rows(&gt.experiments, &predictions);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let write = |name: &str, text: String| -> Result<()> {
        let p = a.out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write("validation.csv", to_csv(&rows, &gt.simulators))?;
    let md = MarkdownReport {
        rows: &rows,
        simulators: &gt.simulators,
        predictions: &predictions,
        skipped: &skipped,
        failures: &failures,
    };
    write("validation.md", md.render())?;
    specsim_plots::render(&parity_figure(&rows), &a.out).context("drawing the parity plot")?;
    print_summary(&a.out, &rows, predictions.len(), &skipped, &failures);
    Ok(())
}

fn print_summary(
    out: &Path,
    rows: &[Row],
    ran: usize,
    skipped: &[specsim_calibrate::validate::Skipped],
    failures: &[Failure],
) {
    println!(
        "{ran} experiments run, {} skipped, {} failed; {} rows in {}",
        skipped.len(),
        failures.len(),
        rows.len(),
        out.join("validation.csv").display()
    );
    for m in [Metric::E2eMean, Metric::TtftMean, Metric::ItlMean] {
        let apes: Vec<f64> = rows
            .iter()
            .filter(|r| r.stage == -1 && r.metric == m)
            .map(|r| r.error_pct().abs())
            .collect();
        if let Some(md) = specsim_calibrate::validate::report::median(&apes) {
            println!(
                "  {m}: median APE {md:.1} % over {} experiments",
                apes.len()
            );
        }
    }
    for f in failures {
        eprintln!("failed: {}: {}", f.experiment, f.message);
    }
}

/// Measured against predicted, log–log, one panel per mean metric, with y = x.
fn parity_figure(rows: &[Row]) -> Figure {
    let panel = |m: Metric, title: &str| {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.metric == m && r.measured > 0.0 && r.specsim > 0.0)
            .map(|r| (r.measured, r.specsim))
            .collect();
        let lo = pts
            .iter()
            .flat_map(|p| [p.0, p.1])
            .fold(f64::INFINITY, f64::min);
        let hi = pts.iter().flat_map(|p| [p.0, p.1]).fold(0.0, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo / 1.5, hi * 1.5)
        } else {
            (1.0, 10.0)
        };
        Chart {
            title: title.into(),
            x_label: "measured (ms)".into(),
            y_label: "specsim (ms)".into(),
            series: vec![
                Series::new("experiment × stage", pts, SeriesKind::Points),
                Series::new("y = x", vec![(lo, lo), (hi, hi)], SeriesKind::Dashed).color(7),
            ],
            x_log: true,
            y_log: true,
            x_range: Some((lo, hi)),
            y_range: Some((lo, hi)),
            ..Chart::default()
        }
    };
    Figure {
        name: "parity".into(),
        title: "specsim validate: predicted vs measured".into(),
        panels: vec![
            panel(Metric::E2eMean, "E2E mean"),
            panel(Metric::TtftMean, "TTFT mean"),
            panel(Metric::ItlMean, "ITL mean"),
        ],
        cols: 3,
        panel_size: (420, 380),
    }
}
