//! Subcommand dispatch.

mod calibrate;
mod compare;
mod replay;
mod run;

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
    /// Trace tools: statistics, format conversion, synthesis.
    Trace(specsim_traces::TraceArgs),
    /// Measure a live engine (OpenAI-compatible endpoint) on a scenario's workload, open loop.
    Replay(replay::ReplayArgs),
    /// Predicted vs measured: relative errors, MAPE, correlation and SLO attainment per policy.
    Compare(compare::CompareArgs),
    /// Profile a real draft/target pair on this machine and fit the simulator's cost and acceptance models.
    Calibrate(calibrate::CalibrateArgs),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Trace(a) => specsim_traces::run_trace_command(a.command),
        Command::Replay(a) => replay::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Calibrate(a) => calibrate::run(a),
    }
}
