//! `specsim figures`: regenerates the paper-style figures from the scenarios in `scenarios/paper/`.
//!
//! Each figure has a scenario file (`figN_*.toml`); sweeps run through `specsim_sim::sweep`, single
//! runs through `Scenario::run_policy`, and drawing through `specsim_plots`. A figure whose scenario
//! or data is missing is skipped with a message (figure 7 needs a `parity.csv` from `specsim
//! compare`).

use super::sweep::load_cell_workload;
use anyhow::{bail, Context, Result};
use clap::Args;
use specsim_plots::{cdf_points, render, Chart, Figure, Marker, Series, SeriesKind};
use specsim_sim::policy::{DraftView, SeqView};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{run_sweep, Grid, Shard, SweepOptions, SweepTable};
use std::path::{Path, PathBuf};

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
    /// parity.csv written by `specsim compare` (figure 7) [default: out/compare/parity.csv].
    #[arg(long)]
    pub parity: Option<PathBuf>,
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
            if !p.exists() {
                eprintln!(
                    "fig7 skipped: no {} (run `specsim compare PREDICTED MEASURED` or pass --parity)",
                    p.display()
                );
                continue;
            }
            fig7(&p)
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
                    1 => fig1(&sc),
                    2 => fig2(&sc, a.threads),
                    3 => fig3(&sc, a.threads),
                    4 => fig4(&sc),
                    5 => fig5(&sc),
                    6 => fig6(&sc, a.threads),
                    _ => fig8(&sc),
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

/// Runs a scenario's sweep and returns the grid and the table.
fn sweep(sc: &Scenario, threads: Option<usize>) -> Result<(Grid, SweepTable)> {
    let grid = Grid::from_scenario(sc)?;
    let table = run_sweep(
        sc,
        &load_cell_workload,
        &SweepOptions {
            shard: Shard::ALL,
            threads,
            progress: None,
        },
    )?;
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

/// Figure 1: efficiency against k at several batch sizes, from the cost model alone.
fn fig1(sc: &Scenario) -> Result<Figure> {
    let (cost, _) = sc.group_setup(0, true)?;
    let slo = sc.file.slo.tpot_s.unwrap_or(0.05);
    let (alpha, risky) = (0.6f64, 0.3f64);
    let ctx = 640;
    let mut eff_series = Vec::new();
    let mut lat_series = Vec::new();
    let mut markers = Vec::new();
    for (ci, &b) in [1u32, 16, 64, 128, 256].iter().enumerate() {
        let seqs = vec![
            SeqView {
                context_tokens: ctx,
                max_draft: 16,
                tokens_out: 10,
                decode_elapsed_ns: 0,
                tpot_slo_ns: None,
            };
            b as usize
        ];
        let conf: Vec<Vec<f32>> = vec![Vec::new(); b as usize];
        let active = vec![true; b as usize];
        let view = DraftView {
            now: 0,
            position: 0,
            seqs: &seqs,
            confidences: &conf,
            active: &active,
            cost: cost.as_ref(),
            lookahead: None,
        };
        let geo = |a: f64, k: u32| (0..=k).map(|j| a.powi(j as i32)).sum::<f64>();
        let mut eff = Vec::new();
        let mut lat = Vec::new();
        for k in 0..=8u32 {
            let t = view.predict_step_ns(&vec![k; b as usize]) as f64 / 1e9;
            let e = (b - 1) as f64 * geo(alpha, k) + geo(risky, k);
            eff.push((k as f64, e / t));
            lat.push((k as f64, t / geo(risky, k) * 1e3));
        }
        let best = eff
            .iter()
            .copied()
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap_or((0.0, 0.0));
        let slo_best = eff
            .iter()
            .zip(&lat)
            .filter(|(_, l)| l.1 <= slo * 1e3)
            .map(|(e, _)| *e)
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap_or(eff[0]);
        markers.push(Marker {
            x: best.0,
            y: best.1,
            label: String::new(),
            color: ci,
        });
        if slo_best != best {
            markers.push(Marker {
                x: slo_best.0,
                y: slo_best.1,
                label: String::new(),
                color: 7,
            });
        }
        eff_series.push(Series::new(format!("batch {b}"), eff, SeriesKind::LinePoints).color(ci));
        lat_series.push(Series::new(format!("batch {b}"), lat, SeriesKind::LinePoints).color(ci));
    }
    lat_series.push(
        Series::new(
            format!("TPOT SLO {:.0} ms", slo * 1e3),
            vec![(0.0, slo * 1e3), (8.0, slo * 1e3)],
            SeriesKind::Dashed,
        )
        .color(7),
    );
    Ok(Figure {
        name: "fig1_efficiency".into(),
        title: format!(
            "Efficiency vs speculation length ({}; mean confidence {alpha}, one request at {risky})",
            cost.describe().split('(').next().unwrap_or("cost model").trim()
        ),
        panels: vec![
            Chart {
                title: "efficiency E(k)/T(k); ▲ latency-optimal, black ▲ SLO-aware optimal".into(),
                x_label: "speculation length k (draft tokens per step)".into(),
                y_label: "efficiency (tokens/s)".into(),
                series: eff_series,
                markers,
                y_log: true,
                legend_lower_right: true,
                ..Chart::default()
            },
            Chart {
                title: "per-token latency of the at-risk request".into(),
                x_label: "speculation length k (draft tokens per step)".into(),
                y_label: "predicted TPOT (ms)".into(),
                series: lat_series,
                y_log: true,
                ..Chart::default()
            },
        ],
        cols: 2,
        panel_size: (720, 520),
    })
}

/// Short names of the model pairs and traces of figure 2 (from the axis values).
fn axis_names(grid: &Grid, key: &str) -> Vec<String> {
    let Some(a) = grid.axes.iter().find(|a| a.key == key) else {
        return Vec::new();
    };
    a.values
        .iter()
        .map(|v| match v {
            toml::Value::Table(t) if key == "models" => {
                let s = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
                let tp = t.get("tp").and_then(|x| x.as_integer()).unwrap_or(1);
                format!("{} + {} (TP{tp})", s("target"), s("draft"))
            }
            toml::Value::Table(t) => {
                let p = t.get("path").and_then(|x| x.as_str()).unwrap_or("?");
                let stem = p.rsplit('/').next().unwrap_or(p);
                match stem {
                    s if s.contains("conv") && s.contains("Azure") => "Azure conv".into(),
                    s if s.contains("code") => "Azure code".into(),
                    s if s.starts_with("conversation") => "Mooncake".into(),
                    s => s.to_string(),
                }
            }
            other => other.to_string(),
        })
        .collect()
}

/// Figure 2: mean and p99 TPOT and TTFT per policy, trace and model pair.
fn fig2(sc: &Scenario, threads: Option<usize>) -> Result<Figure> {
    let (grid, t) = sweep(sc, threads)?;
    let ai = |k: &str| grid.axes.iter().position(|a| a.key == k);
    let (Some(tr), Some(md), Some(po)) = (ai("trace"), ai("models"), ai("policy")) else {
        bail!("fig2 needs sweep axes `trace`, `models` and `policy`");
    };
    let traces = axis_names(&grid, "trace");
    let models = axis_names(&grid, "models");
    let policies: Vec<String> = (0..grid.axes[po].values.len())
        .map(|i| grid.label(po, i))
        .collect();
    let cells = coords(&grid, &t);
    let mut panels = Vec::new();
    for (metric, label, scale) in [
        ("tpot_mean_s", "mean TPOT (ms)", 1e3),
        ("tpot_p99_s", "p99 TPOT (ms)", 1e3),
        ("ttft_mean_s", "mean TTFT (s)", 1.0),
        ("ttft_p99_s", "p99 TTFT (s)", 1.0),
    ] {
        let vals = column(&t, metric)?;
        for (mi, m) in models.iter().enumerate() {
            let series = traces
                .iter()
                .enumerate()
                .map(|(ti, tn)| {
                    let mut pts: Vec<(f64, f64)> = cells
                        .iter()
                        .filter(|(c, _)| c[tr] == ti && c[md] == mi)
                        .map(|(c, i)| (c[po] as f64, vals[*i] * scale))
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Series::new(tn.clone(), pts, SeriesKind::LinePoints).color(ti)
                })
                .collect();
            panels.push(Chart {
                title: format!("{label} — {m}"),
                x_label: "policy".into(),
                y_label: label.into(),
                series,
                y_log: true,
                x_categories: Some(policies.clone()),
                ..Chart::default()
            });
        }
    }
    Ok(Figure {
        name: "fig2_latency".into(),
        title: "TPOT and TTFT per policy × trace × model pair (300-s trace windows)".into(),
        panels,
        cols: models.len().max(1),
        panel_size: (560, 380),
    })
}

/// Attainment and goodput (or another pair of columns) against rate, one series per policy.
fn rate_panels(grid: &Grid, t: &SweepTable, columns: &[(&str, &str, f64)]) -> Result<Vec<Chart>> {
    let ai = |k: &str| grid.axes.iter().position(|a| a.key == k);
    let (Some(ra), Some(po)) = (ai("trace.synthetic.rate"), ai("policy")) else {
        bail!("needs sweep axes `trace.synthetic.rate` and `policy`");
    };
    let rates: Vec<f64> = grid.axes[ra]
        .values
        .iter()
        .map(|v| {
            v.as_float()
                .or(v.as_integer().map(|i| i as f64))
                .unwrap_or(f64::NAN)
        })
        .collect();
    let cells = coords(grid, t);
    let mut panels = Vec::new();
    for (col, label, scale) in columns {
        let vals = column(t, col)?;
        let series = (0..grid.axes[po].values.len())
            .map(|p| {
                let name = grid.label(po, p);
                let mut pts: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|(c, _)| c[po] == p)
                    .map(|(c, i)| (rates[c[ra]], vals[*i] * scale))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let color = if grid.axes[po].values.len() <= 4 {
                    p
                } else {
                    policy_color(&name)
                };
                Series::new(name, pts, SeriesKind::LinePoints).color(color)
            })
            .collect();
        panels.push(Chart {
            title: format!("{label} vs request rate"),
            x_label: "request rate (req/s)".into(),
            y_label: (*label).into(),
            series,
            ..Chart::default()
        });
    }
    Ok(panels)
}

/// Figure 3: SLO attainment and goodput against request rate.
fn fig3(sc: &Scenario, threads: Option<usize>) -> Result<Figure> {
    let (grid, t) = sweep(sc, threads)?;
    let panels = rate_panels(
        &grid,
        &t,
        &[
            ("slo_attainment", "SLO attainment (%)", 100.0),
            ("goodput_rps", "goodput (req/s meeting SLOs)", 1.0),
            ("tpot_p99_s", "p99 TPOT (ms)", 1e3),
        ],
    )?;
    Ok(Figure {
        name: "fig3_load".into(),
        title: "SLO attainment, goodput and p99 TPOT vs load (Vicuna-7B + 68M on A100, Poisson)"
            .into(),
        panels,
        cols: 3,
        panel_size: (560, 440),
    })
}

/// Figure 4: SpecServe's chosen k and the batch size over time under bursty arrivals.
fn fig4(sc: &Scenario) -> Result<Figure> {
    let w = load_cell_workload(sc)?;
    sc.check_workload(&w)?;
    let policy = sc
        .file
        .policies
        .iter()
        .find(|p| p.build().name() == "specserve")
        .or(sc.file.policies.first())
        .context("no policy")?;
    let run = sc.run_policy(&w, policy, true, None)?;
    let bin = 0.5f64;
    let end = run.records.iter().map(|r| r.finish_s).fold(0.0, f64::max);
    let nb = (end / bin).ceil() as usize + 1;
    let (mut k_sum, mut b_sum, mut n) = (vec![0.0; nb], vec![0.0; nb], vec![0.0; nb]);
    for s in &run.steps {
        let r = &s.report;
        if r.batch == 0 || r.kind == specsim_sim::engine::StepKind::Prefill {
            continue;
        }
        let i = ((r.start_ns as f64 / 1e9) / bin) as usize;
        if i < nb {
            k_sum[i] += r.k_max as f64;
            b_sum[i] += r.batch as f64;
            n[i] += 1.0;
        }
    }
    let mut arrivals = vec![0.0; nb];
    for r in &w.requests {
        let i = ((r.arrival_ns as f64 / 1e9) / bin) as usize;
        if i < nb {
            arrivals[i] += 1.0 / bin;
        }
    }
    let pts = |v: &[f64]| -> Vec<(f64, f64)> {
        (0..nb)
            .filter(|&i| n[i] > 0.0)
            .map(|i| (i as f64 * bin, v[i] / n[i]))
            .collect()
    };
    let time = "time (s)";
    Ok(Figure {
        name: "fig4_bursty".into(),
        title: format!(
            "{} under bursty arrivals: load, batch and chosen speculation length ({bin} s bins)",
            run.name
        ),
        panels: vec![
            Chart {
                title: "arrival rate".into(),
                x_label: time.into(),
                y_label: "arrivals (req/s)".into(),
                series: vec![Series::new(
                    "",
                    (0..nb).map(|i| (i as f64 * bin, arrivals[i])).collect(),
                    SeriesKind::Line,
                )
                .color(8)],
                ..Chart::default()
            },
            Chart {
                title: "decode batch size".into(),
                x_label: time.into(),
                y_label: "mean batch (sequences)".into(),
                series: vec![Series::new("", pts(&b_sum), SeriesKind::Line).color(0)],
                ..Chart::default()
            },
            Chart {
                title: "chosen speculation length".into(),
                x_label: time.into(),
                y_label: "mean k per step (draft tokens)".into(),
                series: vec![Series::new("", pts(&k_sum), SeriesKind::Line).color(5)],
                ..Chart::default()
            },
        ],
        cols: 1,
        panel_size: (1100, 300),
    })
}

/// Figure 5: acceptance by draft position for each acceptance model of the sweep.
fn fig5(sc: &Scenario) -> Result<Figure> {
    let grid = Grid::from_scenario(sc)?;
    let Some(ax) = grid.axes.iter().position(|a| a.key == "acceptance") else {
        bail!("fig5 needs a sweep axis `acceptance`");
    };
    let draws = 200_000u32;
    let mut cond = Vec::new();
    let mut cum = Vec::new();
    for v in 0..grid.axes[ax].values.len() {
        let cell = grid
            .cells(Shard::ALL)
            .into_iter()
            .find(|c| c.coords[ax] == v)
            .context("empty grid")?;
        let csc = grid.scenario(sc, &cell)?;
        let model = csc.acceptance(&[])?;
        let label = match &grid.axes[ax].values[v] {
            toml::Value::Table(t) => match t.get("confidence_beta") {
                Some(b) => format!(
                    "confidence ~ Beta{}",
                    b.to_string().replace('[', "(").replace(']', ")")
                ),
                None => t
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("model")
                    .replace('_', "-"),
            },
            other => other.to_string(),
        };
        let mut rng = specsim_sim::rng::stream(sc.file.seed, "fig5", v as u64);
        let mut sampled = Vec::new();
        let mut model_pts = Vec::new();
        let mut reach = 1.0;
        let mut cum_pts = Vec::new();
        for pos in 0..8u32 {
            let acc = (0..draws)
                .filter(|_| model.draw(pos, None, &mut rng).accepted)
                .count() as f64
                / draws as f64;
            sampled.push(((pos + 1) as f64, acc));
            model_pts.push(((pos + 1) as f64, model.acceptance_rate(pos, None)));
            reach *= acc;
            cum_pts.push(((pos + 1) as f64, reach));
        }
        cond.push(Series::new(format!("{label} (sampled)"), sampled, SeriesKind::Points).color(v));
        cond.push(Series::new(String::new(), model_pts, SeriesKind::Dashed).color(v));
        cum.push(Series::new(label, cum_pts, SeriesKind::LinePoints).color(v));
    }
    Ok(Figure {
        name: "fig5_acceptance".into(),
        title: "Acceptance by draft position (200,000 draws per position; dashed: model rate)"
            .into(),
        panels: vec![
            Chart {
                title: "P(accept position j | positions < j accepted)".into(),
                x_label: "draft position j".into(),
                y_label: "conditional acceptance rate".into(),
                series: cond,
                y_range: Some((0.0, 1.0)),
                ..Chart::default()
            },
            Chart {
                title: "P(first j draft tokens all accepted)".into(),
                x_label: "draft position j".into(),
                y_label: "cumulative acceptance".into(),
                series: cum,
                y_range: Some((0.0, 1.0)),
                ..Chart::default()
            },
        ],
        cols: 2,
        panel_size: (640, 460),
    })
}

/// Figure 6: ablation of SpecServe's refinements against load.
fn fig6(sc: &Scenario, threads: Option<usize>) -> Result<Figure> {
    let (grid, t) = sweep(sc, threads)?;
    let mut panels = rate_panels(
        &grid,
        &t,
        &[
            ("slo_attainment", "SLO attainment (%)", 100.0),
            ("tpot_p99_s", "p99 TPOT (ms)", 1e3),
            ("output_tokens_per_s", "throughput (tokens/s)", 1.0),
        ],
    )?;
    // Name the variants by what they leave out (series i is policy value i).
    if let Some(po) = grid.axes.iter().position(|a| a.key == "policy") {
        let names: Vec<String> = grid.axes[po]
            .values
            .iter()
            .map(|v| {
                let off = |k: &str| v.get(k).and_then(|x| x.as_bool()) == Some(false);
                match (off("elimination"), off("slo_aware")) {
                    (false, false) => "specserve (full)",
                    (true, false) => "w/o elimination",
                    (false, true) => "w/o SLO awareness",
                    (true, true) => "w/o both",
                }
                .to_string()
            })
            .collect();
        for c in &mut panels {
            for (s, n) in c.series.iter_mut().zip(&names) {
                s.name = n.clone();
            }
        }
    }
    Ok(Figure {
        name: "fig6_ablation".into(),
        title: "Ablation: SpecServe without elimination / SLO awareness (elimination cuts p99 TPOT near \
                saturation; the SLO-aware stop never binds: steps that still gain from drafting stay \
                under the TPOT SLO)"
            .into(),
        panels,
        cols: 3,
        panel_size: (560, 440),
    })
}

/// One request's (policy, predicted, measured) latency in `parity.csv`.
type ParityPoint = (String, f64, f64);

/// Figure 7: predicted vs measured latencies per request (from `specsim compare`'s parity.csv).
fn fig7(path: &Path) -> Result<Figure> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| h.trim() == n)
            .with_context(|| format!("{}: no column `{n}`", path.display()))
    };
    let (cm, cp, cmeas, cpol) = (
        col("metric")?,
        col("predicted_s")?,
        col("measured_s")?,
        col("policy")?,
    );
    let mut by_metric: Vec<(String, Vec<ParityPoint>)> = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let (Some(m), Some(p), Some(x), Some(pol)) =
            (f.get(cm), f.get(cp), f.get(cmeas), f.get(cpol))
        else {
            continue;
        };
        let (Ok(p), Ok(x)) = (p.parse::<f64>(), x.parse::<f64>()) else {
            continue;
        };
        match by_metric.iter_mut().find(|(k, _)| k == m) {
            Some((_, v)) => v.push((pol.to_string(), p, x)),
            None => by_metric.push((m.to_string(), vec![(pol.to_string(), p, x)])),
        }
    }
    if by_metric.is_empty() {
        bail!("{}: no rows", path.display());
    }
    let panels = by_metric
        .iter()
        .map(|(m, v)| {
            let mut pols: Vec<String> = Vec::new();
            for (p, _, _) in v {
                if !pols.contains(p) {
                    pols.push(p.clone());
                }
            }
            let hi = v.iter().map(|x| x.1.max(x.2)).fold(0.0, f64::max) * 1.05;
            let mut series: Vec<Series> = pols
                .iter()
                .map(|p| {
                    Series::new(
                        p.clone(),
                        v.iter().filter(|x| &x.0 == p).map(|x| (x.2, x.1)).collect(),
                        SeriesKind::Points,
                    )
                    .color(policy_color(p))
                })
                .collect();
            series.push(
                Series::new("y = x", vec![(0.0, 0.0), (hi, hi)], SeriesKind::Dashed).color(7),
            );
            Chart {
                title: format!("{m}: predicted vs measured"),
                x_label: format!("measured {m} (s)"),
                y_label: format!("predicted {m} (s)"),
                series,
                ..Chart::default()
            }
        })
        .collect::<Vec<_>>();
    Ok(Figure {
        name: "fig7_parity".into(),
        title: format!("Simulator fidelity ({})", path.display()),
        cols: panels.len().min(3),
        panels,
        panel_size: (520, 480),
    })
}

/// Figure 8: TTFT and TPOT CDFs per policy.
fn fig8(sc: &Scenario) -> Result<Figure> {
    let w = load_cell_workload(sc)?;
    sc.check_workload(&w)?;
    let names = specsim_sim::scenario::unique_policy_names(&sc.file.policies);
    let runs = std::thread::scope(|s| {
        let hs: Vec<_> = sc
            .file
            .policies
            .iter()
            .map(|p| s.spawn(|| sc.run_policy(&w, p, false, None)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(specsim_sim::SimError::Backend("panicked".into())))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    for (r, name) in runs.iter().zip(&names) {
        let c = policy_color(name);
        let tt: Vec<f64> = r.records.iter().map(|x| x.ttft_s).collect();
        let tp: Vec<f64> = r
            .records
            .iter()
            .filter(|x| x.output_tokens > 1)
            .map(|x| x.tpot_s * 1e3)
            .collect();
        ttft.push(Series::new(name.clone(), cdf_points(&tt, 400), SeriesKind::Line).color(c));
        tpot.push(Series::new(name.clone(), cdf_points(&tp, 400), SeriesKind::Line).color(c));
    }
    let rate = sc
        .file
        .trace
        .synthetic
        .as_ref()
        .map(|s| format!("{} req/s", s.rate))
        .unwrap_or_else(|| "trace".into());
    Ok(Figure {
        name: "fig8_cdf".into(),
        title: format!("Latency distributions per policy ({rate})"),
        panels: vec![
            Chart {
                title: "TTFT CDF".into(),
                x_label: "time to first token (s)".into(),
                y_label: "fraction of requests".into(),
                series: ttft,
                x_log: true,
                legend_lower_right: true,
                y_range: Some((0.0, 1.02)),
                ..Chart::default()
            },
            Chart {
                title: "TPOT CDF".into(),
                x_label: "time per output token (ms)".into(),
                y_label: "fraction of requests".into(),
                series: tpot,
                legend_lower_right: true,
                y_range: Some((0.0, 1.02)),
                ..Chart::default()
            },
        ],
        cols: 2,
        panel_size: (640, 480),
    })
}
