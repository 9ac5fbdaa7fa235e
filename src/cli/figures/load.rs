//! Metrics against request rate: figure 3 (attainment, goodput and p99 TPOT per policy) and figure 6
//! (the ablation of SpecServe's refinements).

use super::super::sweep::load_cell_workload;
use super::{column, coords, policy_color, sweep, SweepPlace};
use anyhow::{bail, Result};
use specsim_plots::{Chart, Figure, Series, SeriesKind};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{Grid, SweepTable};

/// The request rate a sweep's load axis stands for: `trace.synthetic.rate` itself, or
/// `trace.rate_scale` times the scenario's trace's own mean rate (requests over its span).
fn rate_axis(sc: &Scenario, grid: &Grid) -> Result<(usize, f64)> {
    let ai = |k: &str| grid.axes.iter().position(|a| a.key == k);
    if let Some(ra) = ai("trace.synthetic.rate") {
        return Ok((ra, 1.0));
    }
    let Some(ra) = ai("trace.rate_scale") else {
        bail!("needs a sweep axis `trace.synthetic.rate` or `trace.rate_scale`");
    };
    let w = load_cell_workload(sc)?;
    let (Some(first), Some(last)) = (w.requests.first(), w.requests.last()) else {
        bail!("{}: the trace has no requests", sc.name());
    };
    let span_s = (last.arrival_ns - first.arrival_ns) as f64 / 1e9;
    let scale_in_file = sc.file.trace.rate_scale.unwrap_or(1.0);
    Ok((
        ra,
        w.requests.len() as f64 / span_s.max(1e-9) / scale_in_file,
    ))
}

/// Attainment and goodput (or another pair of columns) against rate, one series per policy.
fn rate_panels(
    sc: &Scenario,
    grid: &Grid,
    t: &SweepTable,
    columns: &[(&str, &str, f64)],
) -> Result<Vec<Chart>> {
    let (ra, per_unit) = rate_axis(sc, grid)?;
    let Some(po) = grid.axes.iter().position(|a| a.key == "policy") else {
        bail!("needs a sweep axis `policy`");
    };
    let rates: Vec<f64> = grid.axes[ra]
        .values
        .iter()
        .map(|v| {
            v.as_float()
                .or(v.as_integer().map(|i| i as f64))
                .unwrap_or(f64::NAN)
                * per_unit
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

/// A figure title's description of a scenario: model pair, hardware and arrivals.
fn setting(sc: &Scenario) -> String {
    let name = |f: fn(&specsim_sim::scenario::ModelsConfig) -> &Option<String>| {
        sc.file
            .models
            .as_ref()
            .and_then(|m| f(m).clone())
            .unwrap_or_else(|| "?".into())
    };
    let arrivals = match (&sc.file.trace.timestamps, &sc.file.trace.synthetic) {
        (Some(ts), _) => format!(
            "{} arrivals",
            ts.path
                .file_stem()
                .map_or("trace".into(), |s| s.to_string_lossy().to_string())
        ),
        (None, Some(_)) => "synthetic arrivals".into(),
        (None, None) => "trace".into(),
    };
    format!(
        "{} + {} on {}, {arrivals}",
        name(|m| &m.target),
        name(|m| &m.draft),
        name(|m| &m.hardware)
    )
}

/// Figure 3: SLO attainment and goodput against request rate.
pub(super) fn fig3(sc: &Scenario, place: &SweepPlace) -> Result<Figure> {
    let (grid, t) = sweep(sc, place)?;
    let panels = rate_panels(
        sc,
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
        title: format!(
            "SLO attainment, goodput and p99 TPOT vs load ({})",
            setting(sc)
        ),
        panels,
        cols: 3,
        panel_size: (560, 440),
    })
}

/// Figure 6: ablation of SpecServe's refinements against load.
pub(super) fn fig6(sc: &Scenario, place: &SweepPlace) -> Result<Figure> {
    let (grid, t) = sweep(sc, place)?;
    let mut panels = rate_panels(
        sc,
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
        title: format!("SpecServe ablation ({})", setting(sc)),
        panels,
        cols: 3,
        panel_size: (560, 440),
    })
}
