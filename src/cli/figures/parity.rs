//! Figure 7: predicted against measured latency — per request from `specsim compare`'s parity.csv, or
//! per cell from a committed fidelity study's comparison JSONs (`docs/fidelity`).

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
    Ok(parity_figure(
        &by_metric,
        format!("Simulator fidelity ({})", path.display()),
    ))
}

/// Figure 7 from a committed fidelity study: every `*.json` comparison (`specsim compare`'s
/// `compare.json`) in `dir`; each cell and policy gives its p50, p90 and p99 of TTFT, TPOT and E2E as
/// predicted against measured points.
pub(super) fn fig7_study(dir: &Path) -> Result<Figure> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut by_metric: Vec<(String, Vec<ParityPoint>)> = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a comparison JSON", f.display()))?;
        let Some(policies) = v["policies"].as_array() else {
            bail!("{}: no `policies` array", f.display());
        };
        for pol in policies {
            let name = pol["policy"].as_str().unwrap_or("?").to_string();
            for m in pol["metrics"].as_array().into_iter().flatten() {
                let metric = m["metric"].as_str().unwrap_or("?").to_string();
                let nums = |k: &str| -> Vec<f64> {
                    m[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_f64())
                        .collect()
                };
                let points = nums("predicted_p")
                    .into_iter()
                    .zip(nums("measured_p"))
                    .map(|(p, x)| (name.clone(), p, x));
                match by_metric.iter_mut().find(|(k, _)| *k == metric) {
                    Some((_, v)) => v.extend(points),
                    None => by_metric.push((metric, points.collect())),
                }
            }
        }
    }
    if by_metric.is_empty() {
        bail!("{}: no comparison with metrics", dir.display());
    }
    Ok(parity_figure(
        &by_metric,
        format!(
            "Simulator fidelity: {} cells of {} (p50/p90/p99 per cell)",
            files.len(),
            dir.display()
        ),
    ))
}

/// One predicted-vs-measured panel per metric, a series per policy, and the y = x line.
fn parity_figure(by_metric: &[(String, Vec<ParityPoint>)], title: String) -> Figure {
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
    Figure {
        name: "fig7_parity".into(),
        title,
        cols: panels.len().min(3),
        panels,
        panel_size: (520, 480),
    }
}
