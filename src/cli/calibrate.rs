//! `specsim calibrate --draft D.gguf --target T.gguf --out P.toml`: profile a real pair, fit the models.
//! `specsim calibrate --from-ops DIR --gpu G --target MODEL [--draft MODEL] --tp N --out P.toml`: the
//! same profile format composed from measured GPU operator tables; with `--silicon-check` or
//! `--specbench DIR`, the checks against measured GPU runs instead (see docs/GPU.md).

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
    /// Draft model (GGUF; with --from-ops optional: a catalog name, `eagle3` for an EAGLE-3 head on
    /// the target, or `ngram` for n-gram lookup).
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Target model (GGUF, sharing the draft's vocabulary and tokenizer; with --from-ops a catalog name).
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Profile to write (written as OUT.partial with complete = false until the end); with
    /// --silicon-check a folder for the tables.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compose the profile from measured GPU operator tables in this folder (aiconfigurator's, e.g.
    /// ../shared/gpu/aiconfigurator) instead of timing local models.
    #[arg(long, value_name = "DIR")]
    pub from_ops: Option<PathBuf>,
    /// GPU of the operator tables: H100-SXM, H200 or A100-80G.
    #[arg(long, default_value = "H100-SXM")]
    pub gpu: String,
    /// Tensor-parallel degree (with --from-ops).
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// Weight dtype of the GEMM tables (with --from-ops): bf16 or fp8.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Per-iteration overhead outside the forwards written to the profile (with --from-ops), µs.
    #[arg(long, default_value_t = 0.0)]
    pub step_overhead_us: f64,
    /// With --from-ops: predict every expressible vLLM row of the tables' silicon_sample.csv
    /// (closed loop at its concurrency) and write the comparison to the --out folder.
    #[arg(long)]
    pub silicon_check: bool,
    /// With --silicon-check: also predict the LLMServingSim H100 reference run (Llama-3.1-70B TP 4,
    /// ShareGPT 300 requests at 10 req/s) from its workload JSONL.
    #[arg(long, value_name = "FILE")]
    pub llmservingsim: Option<PathBuf>,
    /// With --from-ops: SpecDecode-Bench acceptance traces in this folder: print both per-position
    /// conventions and the predicted EAGLE-3 and n-gram speed-ups (--target, --gpu) per dataset.
    #[arg(long, value_name = "DIR")]
    pub specbench: Option<PathBuf>,
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
    if let Some(dir) = a.from_ops.clone() {
        return run_from_ops(&a, &dir);
    }
    let (Some(draft), Some(target), Some(out)) = (a.draft.clone(), a.target.clone(), a.out.clone())
    else {
        anyhow::bail!(
            "--draft, --target and --out are required (GGUF models), unless --from-ops DIR"
        );
    };
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
        draft,
        target,
        out: out.clone(),
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
    print_summary(&report, &out);
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

/// `--from-ops`: a profile composed from operator tables, or the silicon / SpecDecode-Bench checks.
fn run_from_ops(a: &CalibrateArgs, dir: &std::path::Path) -> Result<()> {
    use specsim_calibrate::ops::{self, silicon, OpsGrid, OpsOptions};
    if !matches!(a.dtype.as_str(), "bf16" | "fp8") {
        anyhow::bail!("--dtype must be bf16 or fp8 (got {})", a.dtype);
    }
    if !(a.step_overhead_us.is_finite() && a.step_overhead_us >= 0.0) {
        anyhow::bail!("--step-overhead-us must be a non-negative number");
    }
    let overhead_ns = a.step_overhead_us * 1e3;
    if a.silicon_check {
        let out = a
            .out
            .clone()
            .context("--silicon-check needs --out DIR for its tables")?;
        let path = silicon::silicon_path(dir)?;
        let (rows, skipped) = silicon::read_rows(&path)?;
        let bar = ProgressBar::new(rows.len() as u64);
        let check = silicon::run_check(dir, &rows, skipped, overhead_ns, &|i, _| {
            bar.set_position(i as u64)
        })?;
        bar.finish_and_clear();
        std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
        let write = |name: &str, text: String| -> Result<()> {
            let p = out.join(name);
            std::fs::write(&p, text).with_context(|| p.display().to_string())
        };
        write("silicon.csv", silicon::to_csv(&check.rows)?)?;
        write("silicon_mape.csv", silicon::to_csv(&check.mape)?)?;
        write(
            "silicon.md",
            format!(
                "{}\n{}",
                silicon::to_markdown(&check.mape)?,
                silicon::to_markdown(&check.rows)?
            ),
        )?;
        for n in &check.notes {
            eprintln!("warning: {n}");
        }
        println!(
            "{} rows predicted ({} rows of {} not expressible); wrote {}",
            check.rows.height(),
            check.skipped,
            path.display(),
            out.display()
        );
        print!("{}", silicon::to_markdown(&check.mape)?);
        if let Some(w) = &a.llmservingsim {
            let r = silicon::llmservingsim_reference(dir, w)?;
            println!(
                "LLMServingSim H100 reference (Llama-3.1-70B bf16 TP4, {}): predicted {:.0} output tok/s ({:.0} with prompts), mean TTFT {:.1} ms, mean TPOT {:.2} ms; measured vLLM 1833.89 tok/s, 61.5 ms, 26.72 ms",
                w.display(),
                r.output_tok_s,
                r.total_tok_s,
                r.ttft_ms,
                r.tpot_ms
            );
        }
        return Ok(());
    }
    let target = a
        .target
        .as_ref()
        .context("--target MODEL (a catalog name) is required with --from-ops")?
        .to_string_lossy()
        .into_owned();
    if let Some(sb) = &a.specbench {
        return run_specbench(a, dir, sb, &target);
    }
    let out = a
        .out
        .clone()
        .context("--out P.toml is required with --from-ops")?;
    let mut o = OpsOptions::new(dir, &a.gpu, &target);
    o.draft = a.draft.as_ref().map(|d| d.to_string_lossy().into_owned());
    o.tp = a.tp;
    o.dtype = a.dtype.clone();
    o.k_max = a.k_max;
    o.step_overhead_ns = overhead_ns;
    let p = ops::profile_from_ops(&o, &OpsGrid::default())?;
    for n in &p.notes {
        eprintln!("warning: {n}");
    }
    ops::write_profile(&p.profile, &out)?;
    let v = &p.profile.verify;
    println!(
        "wrote {}: decode at batch 1, context {}: {:.3} ms; prefill of {} tokens: {:.3} ms",
        out.display(),
        v.context[0],
        v.ns[0][0][0] / 1e6,
        p.profile.prefill.tokens[p.profile.prefill.tokens.len() / 2],
        p.profile.prefill.ns[p.profile.prefill.tokens.len() / 2] / 1e6
    );
    Ok(())
}

/// `--specbench DIR`: per dataset, the measured accepted lengths, both per-position conventions, and
/// the predicted batch-1 speed-ups of EAGLE-3 and n-gram drafting.
fn run_specbench(
    a: &CalibrateArgs,
    dir: &std::path::Path,
    sb: &std::path::Path,
    target: &str,
) -> Result<()> {
    use specsim_calibrate::ops::compose::Composer;
    use specsim_calibrate::ops::{catalog_model, specbench, GpuTables};
    use specsim_core::acceptance::trace::{conditional_to_unconditional, StepTrace};
    let loc = GpuTables::locate(dir, &a.gpu)?;
    let tm = catalog_model(target, "--target")?;
    let ops_t = loc.open(&tm, a.tp, &a.dtype, "bfloat16")?;
    let head_model = specsim_calibrate::ops::compose::eagle3_head(&tm);
    let t = Composer {
        model: &tm,
        tp: a.tp,
        ops: &ops_t,
    };
    let h = Composer {
        model: &head_model,
        tp: a.tp,
        ops: &ops_t,
    };
    let costs = specbench::StepCosts {
        target: &t,
        head: &h,
        ngram_fraction: specsim_calibrate::ops::NGRAM_FRACTION_OF_VERIFY,
    };
    let round = |v: &[f64]| {
        v.iter()
            .take(6)
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| dataset | method | acc_len mean (positions) | tokens/step walked, k=20 | conditional c_0..5 | unconditional (vLLM) u_0..5 | speed-up k=1 | k=3 | k=5 | k=7 | best k |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for name in specbench::DATASETS {
        let d = specbench::read_dataset(sb, name)?;
        let ctx = d.mean_prompt + d.mean_generated / 2.0;
        for (method, acc, eagle) in [("EAGLE-3", &d.eagle, true), ("n-gram", &d.ngram, false)] {
            let full = StepTrace::from_positions(name, acc, None).map_err(anyhow::Error::msg)?;
            let c = full.fit_conditional();
            let u = conditional_to_unconditional(&c);
            let mut cells = Vec::new();
            let mut best = (0u32, 1.0f64);
            for k in 1..=10u32 {
                let tr =
                    StepTrace::from_positions(name, acc, Some(k)).map_err(anyhow::Error::msg)?;
                let s = costs.speedup(eagle, k, &tr, ctx)?;
                if matches!(k, 1 | 3 | 5 | 7) {
                    cells.push(format!("{:.2}x ({:.2} tok)", s.speedup, s.tokens_per_step));
                }
                if s.speedup > best.1 {
                    best = (k, s.speedup);
                }
            }
            println!(
                "| {name} | {method} | {:.2} | {:.2} | {} | {} | {} | k={} {:.2}x |",
                specbench::mean_over_positions(acc),
                full.mean_tokens_per_step(),
                round(&c),
                round(&u),
                cells.join(" | "),
                best.0,
                best.1
            );
        }
    }
    Ok(())
}
