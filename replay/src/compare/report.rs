//! The comparison's files: `compare.md` (tables for people), `compare.json` (everything, for tools)
//! and `parity.csv` (one row per request and metric: the data of a parity plot).

use super::Comparison;
use crate::ReplayError;
use std::fmt::Write as _;
use std::path::Path;

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:+.1}%", v * 100.0))
}

/// Renders `compare.md`.
pub fn render_markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Predicted vs measured\n\npredicted: `{}`  \nmeasured: `{}`\n\nRelative error = (predicted − measured) / measured; positive means the prediction is pessimistic.\n",
        c.predicted.display(),
        c.measured.display()
    );
    let _ = writeln!(
        s,
        "| policy | compared | SLO pred | SLO meas | Δ pp | p50 TPOT err | p99 TTFT err |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for p in &c.policies {
        let _ = writeln!(
            s,
            "| {} | {}/{} | {:.1}% | {:.1}% | {:+.1} | {} | {} |",
            p.policy,
            p.compared,
            p.predicted_requests,
            p.slo_attainment.predicted * 100.0,
            p.slo_attainment.measured * 100.0,
            p.slo_attainment.diff_pp,
            pct(p.metrics.get(1).and_then(|m| m.p_rel_error[0])),
            pct(p.metrics.first().and_then(|m| m.p_rel_error[2])),
        );
    }
    for p in &c.policies {
        let _ = writeln!(
            s,
            "\n## {}\n\npredicted `{}` ({} requests), measured `{}` ({} requests, {} failed); {} compared.\n",
            p.policy,
            p.predicted_dir.display(),
            p.predicted_requests,
            p.measured_dir.display(),
            p.measured_requests,
            p.measured_failed,
            p.compared
        );
        let _ = writeln!(
            s,
            "| attainment | predicted | measured | Δ pp |\n|---|---:|---:|---:|"
        );
        let rows = [
            ("every SLO", Some(p.slo_attainment)),
            ("TTFT SLO", p.ttft_attainment),
            ("TPOT SLO", p.tpot_attainment),
        ];
        for (name, a) in rows {
            if let Some(a) = a {
                let _ = writeln!(
                    s,
                    "| {name} | {:.2}% | {:.2}% | {:+.2} |",
                    a.predicted * 100.0,
                    a.measured * 100.0,
                    a.diff_pp
                );
            }
        }
        let _ = writeln!(
            s,
            "\n| metric | n | mean pred | mean meas | mean err | p50 err | p90 err | p99 err | MAPE | Pearson r |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for m in &p.metrics {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} s | {:.4} s | {} | {} | {} | {} | {} | {} |",
                m.metric,
                m.n,
                m.mean_predicted,
                m.mean_measured,
                pct(m.mean_rel_error),
                pct(m.p_rel_error[0]),
                pct(m.p_rel_error[1]),
                pct(m.p_rel_error[2]),
                m.mape.map_or("–".into(), |v| format!("{:.1}%", v * 100.0)),
                m.pearson.map_or("–".into(), |v| format!("{v:.3}")),
            );
        }
        let _ = writeln!(
            s,
            "\nPrompt tokens, measured vs predicted: {:+.1}% on average.",
            p.prompt_tokens_mean_rel_diff * 100.0
        );
        for w in &p.warnings {
            let _ = writeln!(s, "\n**warning:** {w}");
        }
    }
    if !c.unmatched_predicted.is_empty() || !c.unmatched_measured.is_empty() {
        let _ = writeln!(
            s,
            "\nNot compared: predicted [{}], measured [{}].",
            c.unmatched_predicted.join(", "),
            c.unmatched_measured.join(", ")
        );
    }
    s
}

/// Renders `parity.csv` (`policy,id,metric,predicted_s,measured_s`), the data of a parity plot.
pub fn parity_csv(c: &Comparison) -> String {
    let mut s = String::from("policy,id,metric,predicted_s,measured_s\n");
    for p in &c.policies {
        for (id, metric, pv, mv) in &p.points {
            let _ = writeln!(s, "{},{},{},{:.9},{:.9}", p.policy, id, metric, pv, mv);
        }
    }
    s
}

/// Writes `compare.md`, `compare.json` and `parity.csv` into `out`.
pub fn write_comparison(out: &Path, c: &Comparison) -> Result<(), ReplayError> {
    std::fs::create_dir_all(out).map_err(|e| ReplayError::io(out, e))?;
    let w = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| ReplayError::io(&p, e))
    };
    w("compare.md", render_markdown(c))?;
    w(
        "compare.json",
        serde_json::to_string_pretty(c).unwrap_or_default() + "\n",
    )?;
    w("parity.csv", parity_csv(c))
}
