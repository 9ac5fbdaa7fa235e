//! Figure 1: SpecServe's efficiency model E(k)/T(k) against the speculation length, from the cost
//! model alone, with the latency-optimal and SLO-aware-optimal lengths.

use anyhow::Result;
use specsim_core::policy::{DraftView, SeqView};
use specsim_plots::{Chart, Figure, Marker, Series, SeriesKind};
use specsim_sim::scenario::Scenario;

/// Figure 1: efficiency against k at several batch sizes, from the cost model alone.
pub(super) fn fig1(sc: &Scenario) -> Result<Figure> {
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
            scorer: sc.file.engine.verify_scorer,
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
