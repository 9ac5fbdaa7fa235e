//! # specsim-traces: the workloads a simulation serves
//!
//! A capacity plan is only as good as its traffic. This crate turns a scenario's `[trace]` section
//! ([`specsim_sim::trace_config::TraceConfig`]) into a [`specsim_core::workload::Workload`]: it reads
//! real production traces, shapes them (window, rate, sampling, context clipping, categories) and
//! synthesises workloads with controlled burstiness. One function does all of it:
//!
//! ```no_run
//! use specsim_sim::trace_config::TraceConfig;
//! # fn main() -> Result<(), specsim_traces::TraceError> {
//! let cfg = TraceConfig {
//!     path: Some("shared:traces/AzureLLMInferenceTrace_conv.csv".into()),
//!     target_rate: Some(10.0), // compress the hour to a mean of 10 req/s (it has 5.53)
//!     max_context: Some(8192),
//!     ..Default::default()
//! };
//! let loaded = specsim_traces::load_workload(&cfg, std::path::Path::new("scenarios"), 42)?;
//! eprintln!("{}", loaded.report); // format, rows read and skipped, each step, warnings
//! # Ok(()) }
//! ```
//!
//! ## Reading guide
//!
//! 1. [`read_trace`] ([`read`]): detects the [`Format`] from the first line (Parquet from its magic) and returns a [`RawTrace`]:
//!    rows sorted by arrival, times re-based to the first request, skipped rows counted by reason.
//! 2. [`transform`]: the `[trace]` transformations, in a fixed, documented order.
//! 3. [`synth`]: arrival processes (Poisson, Gamma with CV, MMPP bursts, diurnal) and length
//!    distributions (fixed, uniform, lognormal, empirical from any trace).
//! 4. [`shared_prefix`]: inference-perf's `shared_prefix` users and staged load, the traffic of the
//!    published vLLM benchmarks, with the prefix-block ids a prefix cache needs; [`timestamps`]:
//!    arrivals from a timestamp-only file with lengths drawn by seed.
//! 5. [`load_workload`] ([`load`]) ties them together; [`stats`], [`convert`] and [`length_spec`] serve
//!    `specsim trace stats|convert|synth`.
//!
//! ## Formats
//!
//! | format | first line | time | notes |
//! |---|---|---|---|
//! | `azure` (2023, 2024) | `TIMESTAMP,ContextTokens,GeneratedTokens` | calendar, 7 fractional digits | |
//! | `mooncake` | `{"timestamp": ...` (JSON lines) | ms | `hash_ids` kept as [`PrefixBlocks`] |
//! | `burstgpt` | `Timestamp,Model,Request tokens,Response tokens,...` | s | 0 response tokens = failed, skipped |
//! | `vidur` | `arrived_at,num_prefill_tokens,num_decode_tokens` | s | |
//! | `lengths` | `num_prefill_tokens,num_decode_tokens,...` | none | a length distribution only |
//! | `native` | `arrival_s,prompt_tokens,output_tokens[,category]` | s | |
//! | `parquet` | magic bytes `PAR1` | `arrival_ns` INT64 (or s, ms) | columns by name, see [`read`]'s `parquet` (feature `parquet`) |
//!
//! ## Design choices
//!
//! - **No dataframe library.** Every format is a few numeric columns read once, front to back; errors
//!   must name the file and line; and the Azure timestamps (7 fractional digits) need a hand parser
//!   anyway. A streaming reader over the `csv` crate reads 4–5 M Azure rows/s
//!   (`cargo bench -p specsim-traces`) and builds in seconds, where polars costs a 14-minute release
//!   build (shared `STACK.md`) that every CI run of the workspace would pay.
//! - **Repair only what is unambiguous, and say so.** Unsorted rows are sorted (stably) with a warning
//!   naming the first offending line; malformed values are errors with file and line; zero-length rows
//!   are skipped and counted by reason. Nothing is capped or bent silently.
//! - **One random stream per purpose** ([`specsim_core::rng::stream`]): arrivals, each length, sampling
//!   and categories draw independently, so changing one setting never moves another's draws.
//! - **`shared:` paths** resolve against the shared data folder ([`paths`]), so scenarios shipped in
//!   the repository can name the real traces without copying them.

pub mod convert;
mod error;
pub mod fields;
mod format;
pub mod length_spec;
pub mod load;
pub mod paths;
pub mod read;
pub mod shared_prefix;
pub mod stats;
pub mod stream;
pub mod synth;
pub mod timestamps;
pub mod trace;
pub mod transform;

pub use error::TraceError;
pub use format::Format;
pub use load::{load_workload, LoadReport, LoadedWorkload};
pub use read::{read_trace, read_trace_bytes};
pub use stats::TraceStats;
pub use trace::{prompt_prefix, PrefixBlocks, RawTrace, Row};
