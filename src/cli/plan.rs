//! `specsim plan SCENARIO.toml`: the cheapest deployment meeting the scenario's attainment target,
//! and each deployment's maximum sustainable rate. The search lives in `specsim_sim::plan`.

use super::sweep::cell_bar;
use anyhow::{Context, Result};
use clap::Args;
use specsim_plots::{Chart, Figure, Series, SeriesKind};
use specsim_sim::plan::{plan, PlanOptions, PlanResult};
use specsim_sim::scenario::Scenario;
use std::path::PathBuf;

/// Arguments of `specsim plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// Scenario file with a `[plan]` table (search space, GPU-hour prices, attainment target).
    pub scenario: PathBuf,
    /// Output directory [default: out/<scenario name>-plan]: plan.csv, plan.svg, plan.png.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads [default: one per core]. The answer does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Override a scenario key (repeatable), e.g. --set plan.target=0.95.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The cost-versus-capacity plot: every feasible configuration by policy, the Pareto front joined.
fn plan_figure(r: &PlanResult, name: &str) -> Figure {
    let mut policies: Vec<String> = Vec::new();
    for row in &r.rows {
        if !policies.contains(&row.policy_name) {
            policies.push(row.policy_name.clone());
        }
    }
    let mut series: Vec<Series> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Series::new(
                p.clone(),
                r.rows
                    .iter()
                    .filter(|x| &x.policy_name == p && x.infeasible.is_none() && x.max_scale > 0.0)
                    .map(|x| (x.cost_per_hour, x.max_rate_rps))
                    .collect(),
                SeriesKind::Points,
            )
            .color(i)
        })
        .collect();
    let mut front: Vec<(f64, f64)> = r
        .rows
        .iter()
        .filter(|x| x.pareto)
        .map(|x| (x.cost_per_hour, x.max_rate_rps))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    series.push(Series::new("Pareto front", front, SeriesKind::Line).color(7));
    let need = r.config.rate_scale * r.base_rate_rps;
    let xmax = r
        .rows
        .iter()
        .map(|x| x.cost_per_hour)
        .fold(0.0f64, f64::max);
    series.push(
        Series::new(
            format!("planned load {need:.2} req/s"),
            vec![(0.0, need), (xmax * 1.05, need)],
            SeriesKind::Dashed,
        )
        .color(8),
    );
    Figure {
        name: "plan".into(),
        title: format!(
            "{name}: capacity at {:.0}% SLO attainment",
            r.config.target * 100.0
        ),
        panels: vec![Chart {
            title: "maximum sustainable rate vs cost".into(),
            x_label: "cost ($ per hour)".into(),
            y_label: "max sustainable rate (req/s)".into(),
            series,
            ..Chart::default()
        }],
        cols: 1,
        panel_size: (900, 600),
    }
}

/// `specsim plan`.
pub fn run(a: PlanArgs) -> Result<()> {
    super::sweep::check_threads(a.threads)?;
    let sc = Scenario::load(&a.scenario, &a.sets)?;
    let w = super::run::load_workload(&sc, a.quiet)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("{}-plan", sc.name())));
    let cfg = specsim_sim::plan::PlanConfig::from_scenario(&sc)?;
    let total = cfg.configs(&sc).len();
    if !a.quiet {
        eprintln!(
            "{}: {} requests, {total} configurations, target {:.1}% at {}× the trace's rate",
            sc.name(),
            w.len(),
            cfg.target * 100.0,
            cfg.rate_scale
        );
    }
    let bar = cell_bar(total, "configurations", a.quiet);
    let tick = |done: usize, _: usize| bar.set_position(done as u64);
    let started = std::time::Instant::now();
    let r = plan(
        &sc,
        &w,
        &PlanOptions {
            threads: a.threads,
            progress: Some(&tick),
        },
    )?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let csv = out.join("plan.csv");
    specsim_sim::sweep::write_atomically(&csv, r.to_csv().as_bytes())?;
    specsim_plots::render(&plan_figure(&r, &sc.name()), &out)?;
    print!("{}", r.pareto_table());
    let runs: u32 = r.rows.iter().map(|x| x.runs).sum();
    let infeasible = r.rows.iter().filter(|x| x.infeasible.is_some()).count();
    match r.cheapest {
        Some(i) => {
            let x = &r.rows[i];
            println!(
                "cheapest meeting the target: {} × {} TP{} ({} GPUs), {}, max batch {}: ${:.2}/hour, up to {:.2} req/s",
                x.config.replicas,
                x.config.hardware,
                x.config.tp,
                x.gpus,
                x.policy_name,
                x.config.max_batch,
                x.cost_per_hour,
                x.max_rate_rps
            );
        }
        None => println!("no configuration in the search space meets the target"),
    }
    if !a.quiet {
        eprintln!(
            "{total} configurations ({infeasible} do not fit), {runs} simulations in {:.1} s; results in {}",
            started.elapsed().as_secs_f64(),
            out.display()
        );
    }
    Ok(())
}
