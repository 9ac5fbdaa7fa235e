//! `specsim figures`: regenerates the paper-style figures from the scenarios in `scenarios/paper/`.
//!
//! Each figure has a scenario file (`figN_*.toml`). Sweeps run exactly as `specsim sweep` runs them and
//! write their tables to `OUT/data/<name>-sweep/results.csv`, from which the figure is drawn (so a
//! user's sweep and a paper figure share one code path and the data behind every plot is on disk);
//! single runs go through `Scenario::run_policy`, and drawing through `specsim_plots`. A figure whose scenario
//! or data is missing is skipped with a message (figure 7 reads a `parity.csv` from `specsim compare`,
//! or the committed fidelity study in `docs/fidelity`).
//!
//! One file per figure group: [`efficiency`] (1), [`latency`] (2, 8), [`load`] (3, 6), [`dynamics`]
//! (4, 5), [`parity`] (7); shared sweep helpers here.

mod dynamics;
mod efficiency;
mod latency;
mod load;
mod parity;

use super::sweep::{read_table, sweep_to_dir};
use anyhow::{bail, Context, Result};
use clap::Args;
use specsim_plots::render;
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{Grid, Shard, SweepTable};
use std::path::PathBuf;

/// Arguments of `specsim figures`.
#[derive(Args)]
pub struct FiguresArgs {
    /// Output directory for the SVG and PNG files.
    #[arg(long, default_value = "plots/out")]
    pub out: PathBuf,
    /// Directory holding the figure scenarios (fig1_efficiency.toml, ...).
    #[arg(long, default_value = "scenarios/paper")]
    pub scenarios: PathBuf,
    /// Only these figures (comma-separated numbers, e.g. 1,3).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<u32>,
    /// parity.csv written by `specsim compare` (figure 7, per request) [default: out/compare/parity.csv
    /// if it exists, else the committed study in --study].
    #[arg(long)]
    pub parity: Option<PathBuf>,
    /// A fidelity study's folder of comparison JSONs, for figure 7 when there is no parity.csv.
    #[arg(long, default_value = "docs/fidelity")]
    pub study: PathBuf,
    /// Worker threads for the sweeps [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Scenario file of each figure that has one.
const FILES: &[(u32, &str)] = &[
    (1, "fig1_efficiency.toml"),
    (2, "fig2_latency.toml"),
    (3, "fig3_load.toml"),
    (4, "fig4_bursty.toml"),
    (5, "fig5_acceptance.toml"),
    (6, "fig6_ablation.toml"),
    (8, "fig8_cdf.toml"),
];

/// `specsim figures`.
pub fn run(a: FiguresArgs) -> Result<()> {
    let wanted = |n: u32| a.only.is_empty() || a.only.contains(&n);
    let place = SweepPlace {
        threads: a.threads,
        data: a.out.join("data"),
    };
    let started = std::time::Instant::now();
    let mut written = 0;
    let mut failed = Vec::new();
    for n in 1..=8u32 {
        if !wanted(n) {
            continue;
        }
        let t0 = std::time::Instant::now();
        let fig = if n == 7 {
            let p = a
                .parity
                .clone()
                .unwrap_or_else(|| PathBuf::from("out/compare/parity.csv"));
            if p.exists() {
                parity::fig7(&p)
            } else if a.parity.is_none() && a.study.is_dir() {
                parity::fig7_study(&a.study)
            } else {
                eprintln!(
                    "fig7 skipped: no {} and no study folder {} (run `specsim compare PREDICTED MEASURED` or pass --parity/--study)",
                    p.display(),
                    a.study.display()
                );
                continue;
            }
        } else {
            let Some((_, file)) = FILES.iter().find(|(k, _)| *k == n) else {
                continue;
            };
            let path = a.scenarios.join(file);
            if !path.exists() {
                if a.only.is_empty() {
                    eprintln!("fig{n} skipped: no {}", path.display());
                    continue;
                }
                bail!("fig{n}: no {}", path.display());
            }
            Scenario::load(&path, &[])
                .map_err(anyhow::Error::from)
                .and_then(|sc| match n {
                    1 => efficiency::fig1(&sc),
                    2 => fig2_extra(&a.scenarios)
                        .and_then(|extra| latency::fig2(&sc, &extra, &place)),
                    3 => load::fig3(&sc, &place),
                    4 => dynamics::fig4(&sc),
                    5 => dynamics::fig5(&sc),
                    6 => load::fig6(&sc, &place),
                    _ => latency::fig8(&sc),
                })
        };
        match fig.and_then(|f| render(&f, &a.out).map_err(anyhow::Error::from)) {
            Ok(files) => {
                written += files.len();
                eprintln!(
                    "fig{n}: {} ({:.1} s)",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    t0.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                eprintln!("fig{n} failed: {e:#}");
                failed.push(n);
            }
        }
    }
    eprintln!(
        "{written} files in {} ({:.1} s)",
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("figures {failed:?} failed (see above)");
    }
    Ok(())
}

/// Figure 2's further sweeps beside `fig2_latency.toml`: traces under their own SLOs
/// (`fig2_code.toml`, code at the paper's 40 ms TPOT), when present.
fn fig2_extra(dir: &std::path::Path) -> Result<Vec<Scenario>> {
    let path = dir.join("fig2_code.toml");
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(vec![Scenario::load(&path, &[])?])
}

/// The seven policies of figures 2, 3 and 8, with fixed colours.
fn policy_color(name: &str) -> usize {
    match name {
        "none" => 8,
        "static-1" => 4,
        "static-3" => 0,
        "static-5" => 3,
        "threshold" => 2,
        "smartspec" => 1,
        "specserve" => 5,
        _ => 7,
    }
}

/// Where figure sweeps write their result tables, and their worker threads.
pub(super) struct SweepPlace {
    /// Worker threads (None: one per core).
    threads: Option<usize>,
    /// Folder under which each figure's sweep writes `<scenario name>-sweep/results.csv`.
    data: PathBuf,
}

/// Runs a scenario's sweep as `specsim sweep` does, into `<data>/<name>-sweep/`, and reads the table
/// back from the file it wrote: a paper figure is drawn from the same result files a user's sweep makes.
fn sweep(sc: &Scenario, place: &SweepPlace) -> Result<(Grid, SweepTable)> {
    let grid = Grid::from_scenario(sc)?;
    let dir = place.data.join(format!("{}-sweep", sc.name()));
    sweep_to_dir(sc, Shard::ALL, &dir, place.threads, true)?;
    let (_, table) = read_table(&dir)?;
    Ok((grid, table))
}

/// Rows of a sweep table as (axis coordinates, row index).
fn coords(grid: &Grid, t: &SweepTable) -> Vec<(Vec<usize>, usize)> {
    (0..t.rows.len())
        .map(|i| (grid.cell(t.cell_of(i)).coords, i))
        .collect()
}

fn column(t: &SweepTable, name: &str) -> Result<Vec<f64>> {
    t.numbers(name)
        .with_context(|| format!("results have no column `{name}`"))
}
