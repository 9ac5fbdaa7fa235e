//! `requantize IN.gguf OUT.gguf [--from q5_0,q5_1,q4_1] [--to q8_0]`: converts a GGUF file's tensors of
//! the `--from` types to `--to` (see `specsim_runtime::requantize`). Used by `scripts/fetch-models.sh`.

use clap::Parser;
use specsim_runtime::requantize::{parse_dtype, requantize_file};
use std::path::PathBuf;

/// Re-quantize a GGUF file's tensors.
#[derive(Debug, Parser)]
#[command(name = "requantize")]
struct Args {
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

fn main() {
    let args = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let from = args
            .from
            .split(',')
            .map(|s| parse_dtype(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let to = parse_dtype(&args.to)?;
        let r = requantize_file(&args.input, &args.output, &from, to)?;
        eprintln!(
            "requantize: {} tensors converted to {:?}, {} copied unchanged",
            r.converted, to, r.copied
        );
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("requantize: error: {e}");
        std::process::exit(1);
    }
}
