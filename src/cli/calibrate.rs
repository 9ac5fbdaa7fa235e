//! `specsim calibrate --draft D.gguf --target T.gguf --out P.toml`: profile a real pair, fit the models.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use specsim_calibrate::acceptance::AcceptanceOptions;
use specsim_calibrate::latency::Grid;
use specsim_calibrate::{calibrate, CalibrateOptions, CalibrationReport};
use std::path::PathBuf;

/// Arguments of `specsim calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Draft model (GGUF).
    #[arg(long)]
    pub draft: PathBuf,
    /// Target model (GGUF); must share the draft's vocabulary and tokenizer.
    #[arg(long)]
    pub target: PathBuf,
    /// Profile to write (written as OUT.partial with complete = false until the end).
    #[arg(long)]
    pub out: PathBuf,
    /// Small grid and prompt subset (minutes instead of an hour on two cores).
    #[arg(long)]
    pub quick: bool,
    /// Prompt set, JSON lines [default: prompts/spec-bench.jsonl in the shared data folder].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Compute threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Longest speculation length profiled (verify tokens per sequence 1..=k_max+1) and the k of the
    /// acceptance measurement.
    #[arg(long, default_value_t = 4)]
    pub k_max: u32,
    /// Prompts used for acceptance, round-robin over categories [default: 26 with --quick, else 130].
    #[arg(long)]
    pub max_prompts: Option<usize>,
    /// Output tokens per prompt [default: 48 with --quick, else 128].
    #[arg(long)]
    pub max_new_tokens: Option<u32>,
    /// Leave grid contexts and prefill lengths above this many tokens out of the grid (the fit still
    /// extrapolates beyond it): a profile for short requests in a fraction of the time.
    #[arg(long, value_name = "TOKENS")]
    pub max_context: Option<u32>,
    /// Temperature of the sampled acceptance run (0 skips it).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
}

/// Runs `specsim calibrate`.
pub fn run(a: CalibrateArgs) -> Result<()> {
    // Counts that size the grid and the runs have ranges.
    let max_tok = specsim_sim::limits::MAX_TOKENS as u64;
    for (flag, v, lo, hi) in [
        (
            "--k-max",
            Some(a.k_max as u64),
            1,
            specsim_sim::limits::MAX_DRAFT,
        ),
        (
            "--max-prompts",
            a.max_prompts.map(|n| n as u64),
            1,
            1_000_000,
        ),
        (
            "--max-new-tokens",
            a.max_new_tokens.map(u64::from),
            1,
            max_tok,
        ),
        ("--max-context", a.max_context.map(u64::from), 1, max_tok),
        ("--threads", a.threads.map(|n| n as u64), 1, 1024),
    ] {
        if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
            anyhow::bail!("{flag} = {v} is out of range: must be in [{lo}, {hi}]");
        }
    }
    let threads = match a.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // candle's matmuls run on rayon's global pool, sized from this variable when first used.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let prompts = match a.prompts {
        Some(p) => p,
        None => {
            let cwd = std::env::current_dir().context("current directory")?;
            specsim_traces::paths::shared_dir(&cwd)
                .map(|d| d.join("prompts").join("spec-bench.jsonl"))
                .context("no shared data folder found for the default prompt set: pass --prompts FILE or set SPECSIM_SHARED")?
        }
    };
    let opts = CalibrateOptions {
        draft: a.draft,
        target: a.target,
        out: a.out.clone(),
        prompts,
        grid: {
            let mut g = if a.quick {
                Grid::quick(a.k_max)
            } else {
                Grid::full(a.k_max)
            };
            if let Some(m) = a.max_context {
                for axis in [
                    &mut g.draft_context,
                    &mut g.verify_context,
                    &mut g.prefill_tokens,
                ] {
                    axis.retain(|&c| c <= m);
                    if axis.is_empty() {
                        anyhow::bail!(
                            "--max-context {m} leaves a grid axis empty (the smallest context profiled is 16 tokens for prefill, 64 for steps)"
                        );
                    }
                }
            }
            g
        },
        threads,
        acceptance: AcceptanceOptions {
            k: a.k_max.max(1),
            max_new_tokens: a.max_new_tokens.unwrap_or(if a.quick { 48 } else { 128 }),
            max_prompt_tokens: 384,
            batch: 4,
            temperature: None,
            seed: 1,
        },
        sampled_temperature: (a.temperature > 0.0).then_some(a.temperature),
        max_prompts: a.max_prompts.unwrap_or(if a.quick { 26 } else { 130 }),
        held_out: 12,
    };
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>22} [{bar:30}] {pos}/{len}  {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    // Without a terminal (a log file, CI) the bar is hidden: print one line per phase instead.
    let to_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_phase = String::new();
    let report = calibrate(&opts, &mut |u| {
        bar.set_length(u.total);
        bar.set_position(u.done);
        if !to_terminal && u.phase != last_phase {
            eprintln!(
                "calibrate: {} ({}/{} done, {:.0} s)",
                u.phase,
                u.done,
                u.total,
                bar.elapsed().as_secs_f64()
            );
            last_phase = u.phase.clone();
        }
        bar.set_message(u.phase);
    });
    bar.finish_and_clear();
    let report = report?;
    print_summary(&report, &a.out);
    Ok(())
}

fn print_summary(r: &CalibrationReport, out: &std::path::Path) {
    println!("wrote {} ({:.0} s)", out.display(), r.elapsed_s);
    for (name, f) in &r.fits {
        println!(
            "fit {name:<8} R2 {:.4}  leave-one-out MAPE {:5.1}%  ({} points)",
            f.r2,
            100.0 * f.holdout_mape,
            f.points
        );
    }
    println!(
        "held-out off-grid points: {}, median abs error of the profile {:.1}%",
        r.held_out.len(),
        100.0 * r.held_out_median_abs_error
    );
    println!(
        "engine scheduling {:.0} us/step; sampling+verification median: draft {:.0} us, verify {:.0} us",
        r.scheduling.median / 1e3,
        r.sampling_median_ns.get("draft").copied().unwrap_or(f64::NAN) / 1e3,
        r.sampling_median_ns.get("verify").copied().unwrap_or(f64::NAN) / 1e3
    );
    let g = &r.acceptance_greedy;
    println!(
        "acceptance (greedy): mean accepted length measured {:.3}, model {:.3}; by position {:?}",
        g.measured_mean_accepted_length,
        g.predicted_mean_accepted_length,
        g.overall
            .per_position
            .iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    if let Some(s) = &r.acceptance_sampled {
        println!(
            "acceptance (sampled): mean accepted length measured {:.3}, model {:.3}",
            s.measured_mean_accepted_length, s.predicted_mean_accepted_length
        );
    }
}
