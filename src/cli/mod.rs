//! Subcommand dispatch.

mod bench;
mod calibrate;
mod compare;
mod fidelity;
mod figures;
mod plan;
mod replay;
mod requantize;
mod run;
mod serve;
mod sweep;
mod trace;
mod validate;

use clap::{Parser, Subcommand};

/// Predict, then measure, whether speculative decoding meets your latency SLOs under real traffic.
#[derive(Parser)]
#[command(name = "specsim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a scenario: every policy on the same trace and seed, results side by side.
    Run(run::RunArgs),
    /// Scale benchmark: wall, CPU, peak RSS, requests/s and events/s from 1 replica to a fleet.
    Bench(bench::BenchArgs),
    /// Trace tools: statistics, format conversion, synthesis.
    Trace(trace::TraceArgs),
    /// Serve a draft/target GGUF pair with speculative decoding behind an OpenAI-compatible HTTP API.
    ///
    /// SIGTERM (Kubernetes, systemd, docker) and SIGINT (Ctrl-C) both drain: the server stops
    /// accepting, lets requests in flight finish within --shutdown-grace, ends the rest cleanly (an
    /// error event and [DONE] on a stream) and exits 0.
    Serve(serve::ServeArgs),
    /// Measure a live engine (OpenAI-compatible endpoint) on a scenario's workload, open loop.
    Replay(Box<replay::ReplayArgs>),
    /// Predicted vs measured: relative errors, MAPE, correlation and SLO attainment per policy.
    Compare(compare::CompareArgs),
    /// One cell of the fidelity study: replicates, intervals, verdicts and the error terms.
    Fidelity(fidelity::FidelityArgs),
    /// Run a scenario's [sweep] grid in parallel (optionally one shard of it) into one results table.
    Sweep(sweep::SweepArgs),
    /// Join `specsim sweep --shard` outputs into the table an unsharded sweep writes.
    Merge(sweep::MergeArgs),
    /// Capacity planning: the cheapest deployment meeting an SLO-attainment target.
    Plan(plan::PlanArgs),
    /// Regenerate the paper-style figures (SVG and PNG) from scenarios/paper/.
    Figures(figures::FiguresArgs),
    /// Profile a real draft/target pair on this machine and fit the simulator's cost and acceptance models.
    Calibrate(calibrate::CalibrateArgs),
    /// Predict measured vLLM runs (a ground-truth folder) and score the predictions.
    Validate(validate::ValidateArgs),
    /// Re-quantize a GGUF file's tensors (the draft's Q5_0 to Q8_0; used by scripts/fetch-models.sh).
    Requantize(requantize::RequantizeArgs),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Trace(a) => trace::run(a.command),
        Command::Serve(a) => serve::run(a),
        Command::Replay(a) => replay::run(*a),
        Command::Compare(a) => compare::run(a),
        Command::Fidelity(a) => fidelity::run(a),
        Command::Sweep(a) => sweep::sweep(a),
        Command::Merge(a) => sweep::merge(a),
        Command::Plan(a) => plan::run(a),
        Command::Figures(a) => figures::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Requantize(a) => requantize::run(a),
    }
}
