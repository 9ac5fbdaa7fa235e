//! `specsim`: predict, then measure, whether speculative decoding meets latency SLOs.
//!
//! A thin binary: parse arguments, build a validated scenario, call one library function per
//! subcommand, print errors once.

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
