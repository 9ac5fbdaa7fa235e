//! `specsim trace stats|convert|synth`: flags and dispatch; the work is `specsim_traces`'. Reports and warnings go to stderr, data and statistics to stdout (or `--out`).

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use specsim_sim::scenario::Scenario;
use specsim_sim::trace_config::{ArrivalConfig, SyntheticConfig, TraceConfig};
use specsim_traces::convert::{self, OutputFormat};
use specsim_traces::length_spec::parse_length;
use specsim_traces::stats::TraceStats;
use specsim_traces::{load_workload, paths, read_trace, Format};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `specsim trace ...`: trace tools.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TraceCommand,
}

/// The trace subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TraceCommand {
    /// Print count, span, mean and peak rate, inter-arrival CV and length percentiles of a trace.
    Stats(StatsArgs),
    /// Convert a trace (any readable format) or a scenario's workload to native or Vidur CSV.
    Convert(ConvertArgs),
    /// Generate a synthetic workload (seeded) as CSV.
    Synth(SynthArgs),
}

/// `specsim trace stats FILE`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// The trace file (`shared:traces/...` reads from the shared data folder), or a scenario
    /// (`.toml`): then the statistics are those of its workload after the `[trace]` transformations.
    pub file: PathBuf,
    /// Format, instead of detecting it from the header: native, azure, mooncake, burstgpt, vidur, lengths.
    #[arg(long)]
    pub format: Option<String>,
    /// Window for the peak rate, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub window: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `trace convert` and `trace synth` write: a CSV format, or Parquet (to a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Native or Vidur CSV.
    Text(OutputFormat),
    /// A Parquet trace (`arrival_ns,prompt_tokens,output_tokens,category`; needs `--out`).
    Parquet,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "parquet" => Ok(Target::Parquet),
            _ => s.parse::<OutputFormat>().map(Target::Text).map_err(|_| {
                format!("unknown output format `{s}`: expected native, vidur or parquet")
            }),
        }
    }
}

/// `specsim trace convert FILE --to native|vidur|parquet`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// The trace file (`shared:traces/...` reads from the shared data folder), or a scenario (`.toml`):
    /// then its workload after the `[trace]` transformations is written.
    pub file: PathBuf,
    /// Output format: native, vidur or parquet (parquet needs --out).
    #[arg(long)]
    pub to: Target,
    /// Input format, instead of detecting it from the header.
    #[arg(long)]
    pub format: Option<String>,
    /// Output file (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The arrival processes `trace synth` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalKind {
    /// Exponential gaps.
    Poisson,
    /// Gamma gaps with coefficient of variation `--cv`.
    Gamma,
    /// Evenly spaced.
    Uniform,
    /// On/off bursts (MMPP): `--burst-factor`, `--on-s`, `--off-s`.
    Bursty,
    /// Sinusoidal rate: `--amplitude`, `--period-s`.
    Diurnal,
}

/// `specsim trace synth`.
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Number of requests.
    #[arg(long)]
    pub requests: usize,
    /// Mean arrival rate, requests per second.
    #[arg(long)]
    pub rate: f64,
    /// Arrival process.
    #[arg(long, value_enum, default_value_t = ArrivalKind::Poisson)]
    pub arrival: ArrivalKind,
    /// Coefficient of variation of gaps (gamma).
    #[arg(long, default_value_t = 1.0)]
    pub cv: f64,
    /// Rate during bursts relative to between them (bursty).
    #[arg(long, default_value_t = 4.0)]
    pub burst_factor: f64,
    /// Mean burst length, seconds (bursty).
    #[arg(long, default_value_t = 10.0)]
    pub on_s: f64,
    /// Mean gap between bursts, seconds (bursty).
    #[arg(long, default_value_t = 30.0)]
    pub off_s: f64,
    /// Relative amplitude of the rate, in [0, 1] (diurnal).
    #[arg(long, default_value_t = 0.5)]
    pub amplitude: f64,
    /// Period of the rate, seconds (diurnal).
    #[arg(long, default_value_t = 86_400.0)]
    pub period_s: f64,
    /// Prompt lengths: `fixed:N`, `uniform:MIN,MAX`, `lognormal:MEAN,STD[,MIN,MAX]` or
    /// `empirical:FILE[#prompt|#output]` (any trace or length-statistics file).
    #[arg(long)]
    pub prompt: String,
    /// Output lengths, in the same notation as `--prompt`.
    #[arg(long)]
    pub output: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output format: native, vidur or parquet (parquet needs --out).
    #[arg(long, default_value = "native")]
    pub to: Target,
    /// Output file (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs one `specsim trace` subcommand.
pub fn run(cmd: TraceCommand) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("current directory")?;
    match cmd {
        TraceCommand::Stats(a) => {
            let path = paths::resolve(&a.file, &cwd)?;
            let stats = if is_scenario(&path) {
                // A scenario: statistics of its workload after every [trace] transformation.
                let sc = Scenario::load(&path, &[])?;
                let loaded = load_workload(&sc.file.trace, &sc.base_dir, sc.file.seed)?;
                eprintln!("{}", loaded.report);
                TraceStats::of_workload(&loaded.workload, a.window)
            } else {
                let format = a.format.as_deref().map(str::parse::<Format>).transpose()?;
                let t = read_trace(&path, format)?;
                eprintln!(
                    "{} ({}): {} rows read, {} kept",
                    path.display(),
                    t.format,
                    t.rows_read,
                    t.rows.len()
                );
                for s in &t.skipped {
                    eprintln!(
                        "  skipped {} rows: {} (first at line {})",
                        s.rows, s.reason, s.first_line
                    );
                }
                for w in &t.warnings {
                    eprintln!("  warning: {w}");
                }
                TraceStats::of(&t.rows, t.has_arrivals(), a.window)
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
        }
        TraceCommand::Convert(a) => {
            let path = paths::resolve(&a.file, &cwd)?;
            let (w, prefix) = if is_scenario(&path) {
                // A scenario: export the workload the simulator sees, after [trace] transformations.
                let sc = Scenario::load(&path, &[])?;
                let loaded = load_workload(&sc.file.trace, &sc.base_dir, sc.file.seed)?;
                eprintln!("{}", loaded.report);
                (loaded.workload, loaded.prefix)
            } else {
                let format = a.format.as_deref().map(str::parse::<Format>).transpose()?;
                let t = read_trace(&path, format)?;
                if !t.has_arrivals() {
                    bail!(
                        "{}: a length-only file has no arrivals to convert",
                        path.display()
                    );
                }
                for w in &t.warnings {
                    eprintln!("warning: {w}");
                }
                t.to_workload()
            };
            if prefix.as_ref().is_some_and(|p| !p.is_empty()) {
                let to = match a.to {
                    Target::Text(t) => format!("{t:?}"),
                    Target::Parquet => "Parquet".to_string(),
                };
                eprintln!(
                    "note: prefix-block hashes (hash_ids) are not part of the {to} format and are dropped"
                );
            }
            match a.to {
                Target::Text(to) => emit(&convert::write(&w, to), a.out.as_deref())?,
                Target::Parquet => {
                    let mut rows = w.requests.iter().cloned().map(Ok);
                    write_parquet(&mut rows, &w.categories, a.out.as_deref())?;
                }
            }
            eprintln!("{} requests written", w.len());
        }
        TraceCommand::Synth(a) => {
            let arrival = match a.arrival {
                ArrivalKind::Poisson => ArrivalConfig::Poisson,
                ArrivalKind::Gamma => ArrivalConfig::Gamma { cv: a.cv },
                ArrivalKind::Uniform => ArrivalConfig::Uniform,
                ArrivalKind::Bursty => ArrivalConfig::Bursty {
                    burst_factor: a.burst_factor,
                    on_s: a.on_s,
                    off_s: a.off_s,
                },
                ArrivalKind::Diurnal => ArrivalConfig::Diurnal {
                    amplitude: a.amplitude,
                    period_s: a.period_s,
                },
            };
            let synthetic = SyntheticConfig {
                requests: a.requests,
                rate: a.rate,
                arrival,
                prompt: parse_length(&a.prompt).context("--prompt")?,
                output: parse_length(&a.output).context("--output")?,
            };
            let cfg = TraceConfig {
                synthetic: Some(synthetic),
                ..Default::default()
            };
            // Streams: one row at a time from the synthesiser to the output, whatever --requests is.
            let mut stream = specsim_traces::stream::open_stream(&cfg, &cwd, a.seed)?;
            let n = match (a.to, a.out.as_deref()) {
                (Target::Parquet, out) => {
                    write_parquet(&mut stream.requests, &stream.categories, out)?
                }
                (Target::Text(to), Some(p)) => {
                    let f = std::fs::File::create(p)
                        .with_context(|| format!("writing {}", p.display()))?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
                    convert::write_stream(&mut stream.requests, &stream.categories, to, &mut w)
                        .with_context(|| format!("writing {}", p.display()))?
                }
                (Target::Text(to), None) => {
                    let mut so = std::io::stdout().lock();
                    convert::write_stream(&mut stream.requests, &stream.categories, to, &mut so)
                        .context("writing to stdout")?
                }
            };
            if let Some(s) = &cfg.synthetic {
                eprintln!("synthetic workload: {}", specsim_traces::load::describe(s));
            }
            eprintln!("  {n} requests");
        }
    }
    Ok(())
}

/// Writes requests as a Parquet trace to `out` (a file: Parquet's footer is written last, so stdout
/// will not do). Returns the requests written.
#[cfg(feature = "parquet")]
fn write_parquet(
    requests: &mut dyn Iterator<
        Item = Result<specsim_core::workload::RequestSpec, specsim_sim::SimError>,
    >,
    categories: &[String],
    out: Option<&Path>,
) -> anyhow::Result<u64> {
    let Some(p) = out else {
        bail!("--to parquet writes a file: give --out FILE.parquet");
    };
    let f = std::fs::File::create(p).with_context(|| format!("writing {}", p.display()))?;
    let w = std::io::BufWriter::with_capacity(1 << 16, f);
    Ok(convert::write_parquet_stream(
        requests,
        categories,
        w,
        p,
        convert::PARQUET_GROUP_ROWS,
    )?)
}

#[cfg(not(feature = "parquet"))]
fn write_parquet(
    _requests: &mut dyn Iterator<
        Item = Result<specsim_core::workload::RequestSpec, specsim_sim::SimError>,
    >,
    _categories: &[String],
    _out: Option<&Path>,
) -> anyhow::Result<u64> {
    bail!("--to parquet needs specsim built with the `parquet` feature (on by default)")
}

fn is_scenario(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

fn emit(text: &str, out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(text.as_bytes()).context("writing to stdout")?;
            so.flush().context("writing to stdout")
        }
    }
}
