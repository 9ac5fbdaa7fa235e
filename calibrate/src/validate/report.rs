//! The validation report: one row per (experiment, stage, metric) with the measured value, specsim's
//! prediction, its error and the published predictions of other simulators; and the median and mean
//! absolute percentage error per metric over experiments (whole-run values, stage −1), for specsim and
//! for each other simulator on the experiments both predicted.

use super::folder::Experiment;
use super::metrics::Metric;
use super::run::Prediction;
use super::{Failure, Skipped};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One compared value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Experiment.
    pub experiment: String,
    /// Load stage (−1: whole run).
    pub stage: i32,
    /// Metric.
    pub metric: Metric,
    /// Measured, ms.
    pub measured: f64,
    /// specsim, ms.
    pub specsim: f64,
    /// Other simulators' published predictions and the measured value each was scored against, ms.
    pub published: BTreeMap<String, (f64, f64)>,
    /// Which workload specsim simulated (`spec` or `replay`).
    pub source: &'static str,
}

impl Row {
    /// Signed error of specsim, % of measured.
    pub fn error_pct(&self) -> f64 {
        pct(self.specsim, self.measured)
    }
}

fn pct(pred: f64, actual: f64) -> f64 {
    (pred - actual) / actual.abs() * 100.0
}

/// The rows where both a measurement and a prediction exist.
pub fn rows(experiments: &[Experiment], predictions: &[Prediction]) -> Vec<Row> {
    let mut out = Vec::new();
    for p in predictions {
        let Some(e) = experiments.iter().find(|e| e.name == p.experiment) else {
            continue;
        };
        for (&(stage, metric), &measured) in &e.measured {
            let Some(&specsim) = p.predicted.get(&(stage, metric)) else {
                continue;
            };
            let published = e
                .published
                .iter()
                .filter(|(k, _)| k.1 == stage && k.2 == metric)
                .map(|(k, v)| (k.0.clone(), *v))
                .collect();
            out.push(Row {
                experiment: e.name.clone(),
                stage,
                metric,
                measured,
                specsim,
                published,
                source: p.source,
            });
        }
    }
    out
}

/// Median of values (None when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// APE summary of one simulator for one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// `specsim` or the other simulator's name.
    pub simulator: String,
    /// Metric.
    pub metric: Metric,
    /// Experiments counted.
    pub experiments: usize,
    /// Median APE, %.
    pub median_ape: f64,
    /// Mean APE, %.
    pub mean_ape: f64,
    /// specsim's median APE on the same experiments (equal to `median_ape` for specsim).
    pub specsim_median_ape: f64,
    /// specsim's mean APE on the same experiments.
    pub specsim_mean_ape: f64,
}

/// Per-metric APE over experiments, whole-run rows only: specsim's, then each other simulator's on the
/// experiments it predicted, beside specsim's on those same experiments.
pub fn aggregates(rows: &[Row], simulators: &[String]) -> Vec<Aggregate> {
    let mut out = Vec::new();
    for metric in Metric::ALL {
        let whole: Vec<&Row> = rows
            .iter()
            .filter(|r| r.stage == -1 && r.metric == metric)
            .collect();
        let ours: Vec<f64> = whole.iter().map(|r| r.error_pct().abs()).collect();
        if let (Some(md), Some(mn)) = (median(&ours), mean(&ours)) {
            out.push(Aggregate {
                simulator: "specsim".into(),
                metric,
                experiments: ours.len(),
                median_ape: md,
                mean_ape: mn,
                specsim_median_ape: md,
                specsim_mean_ape: mn,
            });
        }
        for sim in simulators {
            let both: Vec<(f64, f64)> = whole
                .iter()
                .filter_map(|r| {
                    let (p, actual) = r.published.get(sim)?;
                    Some((pct(*p, *actual).abs(), r.error_pct().abs()))
                })
                .collect();
            let theirs: Vec<f64> = both.iter().map(|b| b.0).collect();
            let ours: Vec<f64> = both.iter().map(|b| b.1).collect();
            if let (Some(md), Some(mn), Some(omd), Some(omn)) =
                (median(&theirs), mean(&theirs), median(&ours), mean(&ours))
            {
                out.push(Aggregate {
                    simulator: sim.clone(),
                    metric,
                    experiments: both.len(),
                    median_ape: md,
                    mean_ape: mn,
                    specsim_median_ape: omd,
                    specsim_mean_ape: omn,
                });
            }
        }
    }
    out
}

fn opt(x: Option<&(f64, f64)>) -> String {
    x.map(|v| format!("{:.3}", v.0)).unwrap_or_default()
}

/// `validation.csv`: experiment, stage, metric, measured_ms, specsim_ms, error_pct, then one
/// `<simulator>_ms` column per other simulator (its published prediction), then the workload specsim
/// simulated.
pub fn to_csv(rows: &[Row], simulators: &[String]) -> String {
    let mut s = String::from("experiment,stage,metric,measured_ms,specsim_ms,error_pct");
    for sim in simulators {
        let _ = write!(s, ",{sim}_ms");
    }
    s.push_str(",workload\n");
    for r in rows {
        let _ = write!(
            s,
            "{},{},{},{:.3},{:.3},{:.2}",
            r.experiment,
            r.stage,
            r.metric,
            r.measured,
            r.specsim,
            r.error_pct()
        );
        for sim in simulators {
            let _ = write!(s, ",{}", opt(r.published.get(sim)));
        }
        let _ = writeln!(s, ",{}", r.source);
    }
    s
}

/// Everything `validation.md` says.
pub struct MarkdownReport<'a> {
    /// Rows.
    pub rows: &'a [Row],
    /// Other simulators.
    pub simulators: &'a [String],
    /// Predictions (for KV sizes and notes).
    pub predictions: &'a [Prediction],
    /// Experiments not run.
    pub skipped: &'a [Skipped],
    /// Experiments or files that failed.
    pub failures: &'a [Failure],
}

impl MarkdownReport<'_> {
    /// The Markdown text.
    pub fn render(&self) -> String {
        let mut s = String::from("# specsim validate\n\n## APE over experiments (whole run)\n\n");
        s.push_str("| simulator | metric | experiments | median APE % | mean APE % | specsim median APE % (same experiments) | specsim mean APE % |\n|---|---|---|---|---|---|---|\n");
        for a in aggregates(self.rows, self.simulators) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                a.simulator,
                a.metric,
                a.experiments,
                a.median_ape,
                a.mean_ape,
                a.specsim_median_ape,
                a.specsim_mean_ape
            );
        }
        let _ = write!(s, "\n## Experiments run ({})\n\n| experiment | workload | KV blocks | notes |\n|---|---|---|---|\n", self.predictions.len());
        for p in self.predictions {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                p.experiment,
                p.source,
                p.kv_blocks,
                p.notes.join("; ")
            );
        }
        let _ = write!(s, "\n## Skipped ({})\n\n", self.skipped.len());
        for k in self.skipped {
            let _ = writeln!(s, "- {}: {}", k.experiment, k.reason);
        }
        let _ = write!(s, "\n## Failed ({})\n\n", self.failures.len());
        for f in self.failures {
            let _ = writeln!(s, "- {}: {}", f.experiment, f.message);
        }
        s.push_str(
            "\n## Rows\n\n| experiment | stage | metric | measured ms | specsim ms | error % |",
        );
        for sim in self.simulators {
            let _ = write!(s, " {sim} ms |");
        }
        s.push_str("\n|---|---|---|---|---|---|");
        s.push_str(&"---|".repeat(self.simulators.len()));
        s.push('\n');
        for r in self.rows {
            let _ = write!(
                s,
                "| {} | {} | {} | {:.2} | {:.2} | {:+.1} |",
                r.experiment,
                r.stage,
                r.metric,
                r.measured,
                r.specsim,
                r.error_pct()
            );
            for sim in self.simulators {
                let _ = write!(s, " {} |", opt(r.published.get(sim)));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_compare_on_the_same_experiments() {
        let row = |e: &str, measured: f64, specsim: f64, blis: Option<f64>| Row {
            experiment: e.into(),
            stage: -1,
            metric: Metric::E2eMean,
            measured,
            specsim,
            published: blis
                .map(|b| ("blis".to_string(), (b, measured)))
                .into_iter()
                .collect(),
            source: "spec",
        };
        // specsim errors 10 %, 20 %, 40 %; BLIS predicted only the first two, at 5 % and 50 %.
        let rows = [
            row("a", 100.0, 110.0, Some(105.0)),
            row("b", 100.0, 80.0, Some(150.0)),
            row("c", 100.0, 140.0, None),
        ];
        let a = aggregates(&rows, &["blis".to_string()]);
        let ours = &a[0];
        assert_eq!((ours.simulator.as_str(), ours.experiments), ("specsim", 3));
        assert!((ours.median_ape - 20.0).abs() < 1e-9);
        assert!((ours.mean_ape - 70.0 / 3.0).abs() < 1e-9);
        let blis = &a[1];
        assert_eq!(blis.experiments, 2);
        assert!((blis.median_ape - 27.5).abs() < 1e-9);
        assert!((blis.specsim_median_ape - 15.0).abs() < 1e-9);
    }
}
