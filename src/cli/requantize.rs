//! `specsim requantize IN.gguf OUT.gguf [--from q5_0,q5_1,q4_1] [--to q8_0]`: converts a GGUF file's
//! tensors of the `--from` types to `--to` (see `specsim_runtime::requantize`). Used by
//! `scripts/fetch-models.sh`.

use anyhow::Context;
use clap::Args;
use specsim_runtime::requantize::{parse_dtype, requantize_file};
use std::path::PathBuf;

/// Flags of `specsim requantize`.
#[derive(Debug, Args)]
pub struct RequantizeArgs {
    /// Source GGUF file.
    input: PathBuf,
    /// Output GGUF file (overwritten).
    output: PathBuf,
    /// Comma-separated tensor types to convert.
    #[arg(long, default_value = "q5_0,q5_1,q4_1")]
    from: String,
    /// Type to convert them to.
    #[arg(long, default_value = "q8_0")]
    to: String,
}

/// Runs `specsim requantize`.
pub fn run(args: RequantizeArgs) -> anyhow::Result<()> {
    let from = args
        .from
        .split(',')
        .map(|s| parse_dtype(s.trim()))
        .collect::<Result<Vec<_>, _>>()
        .context("--from")?;
    let to = parse_dtype(&args.to).context("--to")?;
    let r = requantize_file(&args.input, &args.output, &from, to)
        .with_context(|| format!("re-quantizing {}", args.input.display()))?;
    eprintln!(
        "requantize: {} tensors converted to {:?}, {} copied unchanged",
        r.converted, to, r.copied
    );
    Ok(())
}
