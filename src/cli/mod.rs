//! Subcommand dispatch.

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
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run::run(a),
    }
}
