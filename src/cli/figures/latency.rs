//! Latency per policy: figure 2 (mean and p99 TPOT and TTFT per policy, trace and model pair) and
//! figure 8 (TTFT and TPOT CDFs).

use super::super::sweep::load_cell_workload;
use super::{column, coords, policy_color, sweep, SweepPlace};
use anyhow::{bail, Result};
use specsim_plots::{cdf_points, Chart, Figure, Series, SeriesKind};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::Grid;

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
                // A trace file, or the arrivals file of `[trace.timestamps]`.
                let p = t
                    .get("path")
                    .or_else(|| t.get("timestamps").and_then(|x| x.get("path")))
                    .and_then(|x| x.as_str())
                    .unwrap_or("?");
                let stem = p.rsplit('/').next().unwrap_or(p);
                match stem {
                    s if p.contains("adaspec/") => {
                        format!("AdaSpec {}", s.trim_end_matches(".csv"))
                    }
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

/// One figure-2 sweep's values: per trace name, model index and policy index, the table row.
struct Fig2Part {
    traces: Vec<String>,
    models: Vec<String>,
    policies: Vec<String>,
    /// (trace index, model index, policy index, row).
    cells: Vec<(usize, usize, usize, usize)>,
    table: specsim_sim::sweep::SweepTable,
}

fn fig2_part(sc: &Scenario, place: &SweepPlace) -> Result<Fig2Part> {
    let (grid, t) = sweep(sc, place)?;
    let ai = |k: &str| grid.axes.iter().position(|a| a.key == k);
    let (Some(tr), Some(md), Some(po)) = (ai("trace"), ai("models"), ai("policy")) else {
        bail!("fig2 needs sweep axes `trace`, `models` and `policy`");
    };
    let policies = (0..grid.axes[po].values.len())
        .map(|i| grid.label(po, i))
        .collect();
    let cells = coords(&grid, &t)
        .into_iter()
        .map(|(c, i)| (c[tr], c[md], c[po], i))
        .collect();
    Ok(Fig2Part {
        traces: axis_names(&grid, "trace"),
        models: axis_names(&grid, "models"),
        policies,
        cells,
        table: t,
    })
}

/// Figure 2: mean and p99 TPOT and TTFT per policy, trace and model pair. `extra` are sweeps of other
/// traces over the same model pairs and policies under their own SLOs (code's 40 ms TPOT SLO, which
/// one sweep cannot give a single trace, since its axes cross).
pub(super) fn fig2(sc: &Scenario, extra: &[Scenario], place: &SweepPlace) -> Result<Figure> {
    let mut parts = vec![fig2_part(sc, place)?];
    for e in extra {
        let p = fig2_part(e, place)?;
        if p.models != parts[0].models || p.policies != parts[0].policies {
            bail!(
                "fig2: {} sweeps other model pairs or policies than {}",
                e.name(),
                sc.name()
            );
        }
        parts.push(p);
    }
    let models = parts[0].models.clone();
    let policies = parts[0].policies.clone();
    let mut panels = Vec::new();
    for (metric, label, scale) in [
        ("tpot_mean_s", "mean TPOT (ms)", 1e3),
        ("tpot_p99_s", "p99 TPOT (ms)", 1e3),
        ("ttft_mean_s", "mean TTFT (s)", 1.0),
        ("ttft_p99_s", "p99 TTFT (s)", 1.0),
    ] {
        for (mi, m) in models.iter().enumerate() {
            let mut series = Vec::new();
            for part in &parts {
                let vals = column(&part.table, metric)?;
                for (ti, tn) in part.traces.iter().enumerate() {
                    let mut pts: Vec<(f64, f64)> = part
                        .cells
                        .iter()
                        .filter(|c| c.0 == ti && c.1 == mi)
                        .map(|c| (c.2 as f64, vals[c.3] * scale))
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let color = series.len();
                    series.push(Series::new(tn.clone(), pts, SeriesKind::LinePoints).color(color));
                }
            }
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
        title: "TPOT and TTFT per policy × trace × model pair (AdaSpec arrivals, ShareGPT lengths)"
            .into(),
        panels,
        cols: models.len().max(1),
        panel_size: (560, 380),
    })
}

/// Figure 8: TTFT and TPOT CDFs per policy.
pub(super) fn fig8(sc: &Scenario) -> Result<Figure> {
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
