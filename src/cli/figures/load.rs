//! Metrics against request rate: figure 3 (attainment, goodput and p99 TPOT per policy) and figure 6
//! (the ablation of SpecServe's refinements).

use super::{column, coords, policy_color, sweep, SweepPlace};
use anyhow::{bail, Result};
use specsim_plots::{Chart, Figure, Series, SeriesKind};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{Grid, SweepTable};

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
pub(super) fn fig3(sc: &Scenario, place: &SweepPlace) -> Result<Figure> {
    let (grid, t) = sweep(sc, place)?;
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

/// Figure 6: ablation of SpecServe's refinements against load.
pub(super) fn fig6(sc: &Scenario, place: &SweepPlace) -> Result<Figure> {
    let (grid, t) = sweep(sc, place)?;
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
        title: "SpecServe ablation: elimination cuts p99 TPOT near saturation; the SLO-aware stop never \
                binds here (w/o SLO awareness = full)"
            .into(),
        panels,
        cols: 3,
        panel_size: (560, 440),
    })
}
