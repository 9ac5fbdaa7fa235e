//! `specsim sweep SCENARIO.toml` and `specsim merge DIR...`: a scenario's `[sweep]` grid, run in
//! parallel (optionally one shard of it), and the join of shard outputs. The grid logic lives in
//! `specsim_sim::sweep`.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{
    clear_results, merge_tables, run_sweep, write_table, Grid, Shard, SweepOptions, SweepTable,
    SCENARIO_FILE,
};
use specsim_sim::SimError;
use std::path::{Path, PathBuf};

/// Arguments of `specsim sweep`.
#[derive(Args)]
pub struct SweepArgs {
    /// Scenario file with a `[sweep]` table (each key a scenario key, each value an array; `policy`
    /// is an array of policy tables).
    pub scenario: PathBuf,
    /// Run only shard I of N (0-based): the cells numbered I mod N. Join shard outputs with
    /// `specsim merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Output directory [default: out/<scenario name>-sweep]; results.csv and results.parquet are
    /// written there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads [default: one per core; an empty value or 0 also means one per core, so
    /// `--threads ${SLURM_CPUS_PER_TASK}` works without `--cpus-per-task`]. Results do not depend on it.
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Override a scenario key before the grid is expanded (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `specsim merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// Shard output directories (each holding results.csv) or results CSV files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory for the merged results.csv and results.parquet.
    #[arg(long, default_value = "out/merged")]
    pub out: PathBuf,
    /// Write the table even if some cells are missing.
    #[arg(long)]
    pub allow_partial: bool,
}

/// A progress bar counting cells (hidden when quiet).
pub fn cell_bar(total: usize, what: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(&format!(
        "[{{bar:30}}] {{pos}}/{{len}} {what}  {{elapsed_precise}} eta {{eta}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Loads a cell's workload through the traces crate (every trace format, the scenario's transformations).
pub fn load_cell_workload(sc: &Scenario) -> Result<specsim_core::workload::Workload, SimError> {
    specsim_traces::load_workload(&sc.file.trace, &sc.base_dir, sc.file.seed)
        .map(|l| l.workload)
        .map_err(|e| SimError::Config(format!("{}: trace: {e}", sc.path.display())))
}

/// `specsim sweep`.
pub fn sweep(a: SweepArgs) -> Result<()> {
    check_threads(a.threads)?;
    let sc = Scenario::load(&a.scenario, &a.sets)?;
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::ALL,
    };
    let grid = Grid::from_scenario(&sc)?;
    let todo = grid.cells(shard).len();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("{}-sweep", sc.name())));
    if !a.quiet {
        let axes: Vec<String> = grid
            .axes
            .iter()
            .map(|x| format!("{} ({})", x.key, x.values.len()))
            .collect();
        eprintln!(
            "{}: {} cells over {}; this shard ({}/{}) runs {todo}",
            sc.name(),
            grid.len(),
            axes.join(" × "),
            shard.index,
            shard.count
        );
    }
    let table = sweep_to_dir(&sc, shard, &out, a.threads, a.quiet)?;
    if !a.quiet {
        eprintln!("{} rows in {}", table.rows.len(), written(&out));
    }
    Ok(())
}

/// Runs one shard of `sc`'s sweep grid and writes results.csv (and results.parquet) into `out`: the one
/// code path behind `specsim sweep` and the paper figures, which then read the files back.
pub fn sweep_to_dir(
    sc: &Scenario,
    shard: Shard,
    out: &Path,
    threads: Option<usize>,
    quiet: bool,
) -> Result<SweepTable> {
    let grid = Grid::from_scenario(sc)?;
    // An older table in the output folder would look complete if this sweep were killed: remove it
    // first; the new one is written under a temporary name and renamed once complete.
    clear_results(out)?;
    let bar = cell_bar(grid.cells(shard).len(), "cells", quiet);
    let tick = |done: usize, _: usize| bar.set_position(done as u64);
    let table = run_sweep(
        sc,
        &load_cell_workload,
        &SweepOptions {
            shard,
            // An empty or zero --threads (e.g. an unset Slurm variable) means one per core.
            threads: threads.filter(|&t| t > 0),
            progress: Some(&tick),
        },
    )?;
    bar.finish_and_clear();
    write_table(out, &table)?;
    Ok(table)
}

/// `--threads` at most 1024 (0, or an empty value, means one per core: see [`parse_threads`]).
pub fn check_threads(t: Option<usize>) -> Result<()> {
    if t.is_some_and(|n| n > 1024) {
        anyhow::bail!("--threads must be at most 1024 (0 or empty: one per core)");
    }
    Ok(())
}

/// The result files `write_table` wrote into `dir`, for messages.
fn written(dir: &Path) -> String {
    let csv = dir.join("results.csv").display().to_string();
    if cfg!(feature = "parquet") {
        format!("{csv} and results.parquet")
    } else {
        csv
    }
}

/// Reads a results table from a sweep's output directory or a results CSV; returns its name too.
pub fn read_table(p: &Path) -> Result<(String, SweepTable)> {
    let file = if p.is_dir() {
        p.join("results.csv")
    } else {
        p.to_path_buf()
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let mut t = SweepTable::parse_csv(&text, &name)?;
    // The resolved scenario beside it, when there, names the key that differs in a refused merge.
    let sc = file.with_file_name(SCENARIO_FILE);
    if let Ok(text) = std::fs::read_to_string(&sc) {
        t.scenario = toml::from_str(&text).ok();
    }
    Ok((name, t))
}

/// `specsim merge`.
pub fn merge(a: MergeArgs) -> Result<()> {
    let tables = a
        .inputs
        .iter()
        .map(|p| read_table(p))
        .collect::<Result<Vec<_>>>()?;
    let merged = merge_tables(tables, !a.allow_partial)?;
    clear_results(&a.out)?;
    write_table(&a.out, &merged)?;
    eprintln!(
        "{} of {} cells in {}",
        merged.rows.len(),
        merged.total_cells,
        written(&a.out)
    );
    Ok(())
}

/// `--threads`: a count, or empty / 0 for one per core (returned as 0).
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    s.parse().map_err(|_| {
        format!("`{s}` is not a thread count (a whole number; empty or 0 for every core)")
    })
}
