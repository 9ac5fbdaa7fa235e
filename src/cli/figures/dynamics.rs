//! Single runs: figure 4 (SpecServe's chosen k and the batch size over time under bursty arrivals) and
//! figure 5 (acceptance by draft position).

use super::super::sweep::load_cell_workload;
use anyhow::{bail, Context, Result};
use specsim_plots::{Chart, Figure, Series, SeriesKind};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{Grid, Shard};

/// Figure 4: SpecServe's chosen k and the batch size over time under bursty arrivals.
pub(super) fn fig4(sc: &Scenario) -> Result<Figure> {
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
        if r.batch == 0 || r.kind == specsim_core::engine::StepKind::Prefill {
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
pub(super) fn fig5(sc: &Scenario) -> Result<Figure> {
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
            toml::Value::Table(t) if t.contains_key("position_alphas") => {
                "SpecDecode-Bench ShareGPT fit, partly informative confidence".into()
            }
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
        let mut rng = specsim_core::rng::stream(sc.file.seed, "fig5", v as u64);
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
