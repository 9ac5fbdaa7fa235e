//! `specsim compare PREDICTED_DIR MEASURED_DIR`: the fidelity report.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `specsim compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Predicted results: a policy directory (with requests.csv) or a run directory of `specsim run`.
    pub predicted: PathBuf,
    /// Measured results: a policy directory or a run directory of `specsim replay`; policies pair by
    /// name.
    pub measured: PathBuf,
    /// Where compare.md, compare.json and parity.csv go [default: MEASURED_DIR/compare].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `specsim compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    let c = specsim_replay::compare_dirs(&a.predicted, &a.measured)?;
    let out = a.out.unwrap_or_else(|| a.measured.join("compare"));
    specsim_replay::write_comparison(&out, &c)
        .with_context(|| format!("writing {}", out.display()))?;
    print!("{}", specsim_replay::compare::render_markdown(&c));
    eprintln!("report in {}", out.display());
    Ok(())
}
