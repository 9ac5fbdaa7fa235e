//! Figure 7: predicted against measured latency per request, from `specsim compare`'s parity.csv.

use super::policy_color;
use anyhow::{bail, Context, Result};
use specsim_plots::{Chart, Figure, Series, SeriesKind};
use std::path::Path;

/// One request's (policy, predicted, measured) latency in `parity.csv`.
type ParityPoint = (String, f64, f64);

/// Figure 7: predicted vs measured latencies per request (from `specsim compare`'s parity.csv).
pub(super) fn fig7(path: &Path) -> Result<Figure> {
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
