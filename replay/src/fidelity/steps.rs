//! The live engine's step log (`specsim serve --step-log FILE`, or an in-process replay's): one row
//! per model forward, its measured time beside the cost model's prediction for the same batch.
//!
//! Two terms of the error split come from it: the **cost** term ([`cost_term`]: measured / predicted
//! per forward, by kind and batch size) and, fed back into the simulator as its step times, the
//! **engine/queueing** term ([`super::recorded`]).

use crate::ReplayError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The header the runtime writes (`runtime::driver::step_log::HEADER`).
pub const HEADER: &str =
    "time_s,model,seqs,new_tokens,prefill_tokens,context_tokens,measured_s,predicted_s";

/// Which model ran a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardKind {
    /// A draft-model forward (one draft position).
    Draft,
    /// A target forward with prompt tokens in it (prefill, alone or mixed with decoding).
    Prefill,
    /// A target forward of decoding or verification only.
    Decode,
}

impl ForwardKind {
    /// Its name in tables.
    pub fn label(self) -> &'static str {
        match self {
            ForwardKind::Draft => "draft",
            ForwardKind::Prefill => "prefill",
            ForwardKind::Decode => "decode/verify",
        }
    }

    /// Whether the target model ran it.
    pub fn is_target(self) -> bool {
        self != ForwardKind::Draft
    }
}

/// One logged forward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRow {
    /// End of the forward, seconds since the engine started.
    pub time_s: f64,
    /// What ran.
    pub kind: ForwardKind,
    /// Sequences in the batch.
    pub seqs: u32,
    /// New tokens processed.
    pub new_tokens: u32,
    /// Of them, prompt tokens.
    pub prefill_tokens: u32,
    /// Measured wall time, seconds.
    pub measured_s: f64,
    /// The cost model's prediction for the same batch, seconds.
    pub predicted_s: f64,
}

/// A sibling file of a step log, as the runtime names them: `DIR/NAME.csv` → `DIR/NAME.{kind}.csv`.
pub(crate) fn sibling_path(step_log: &std::path::Path, kind: &str) -> std::path::PathBuf {
    let stem = step_log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    step_log.with_file_name(format!("{stem}.{kind}.csv"))
}

/// The data rows of a comma-separated log whose first line must be `header`: each row's 1-based line
/// number and its `fields` trimmed fields (blank lines skipped). Errors name `origin` and the line.
pub(crate) fn log_rows<'a>(
    text: &'a str,
    origin: &str,
    header: &str,
    fields: usize,
) -> Result<Vec<(usize, Vec<&'a str>)>, ReplayError> {
    let bad = |line: usize, msg: String| ReplayError::Parse {
        origin: origin.to_string(),
        line,
        msg,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == header => {}
        other => {
            return Err(bad(
                1,
                format!(
                    "expected the header `{header}`, found `{}`",
                    other.map_or("", |(_, h)| h)
                ),
            ))
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != fields {
            return Err(bad(
                i + 1,
                format!("expected {fields} fields, found {}", f.len()),
            ));
        }
        rows.push((i + 1, f));
    }
    Ok(rows)
}

/// Parses a step log; errors name the file, line and field.
pub fn parse_step_log(text: &str, file: &str) -> Result<Vec<StepRow>, ReplayError> {
    let mut rows = Vec::new();
    for (line, f) in log_rows(text, file, HEADER, 8)? {
        let bad = |what: &str| ReplayError::Parse {
            origin: file.to_string(),
            line,
            msg: what.to_string(),
        };
        let num = |k: usize, name: &str| -> Result<f64, ReplayError> {
            f[k].parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(&format!("field `{name}`: `{}` is not a number ≥ 0", f[k])))
        };
        let int = |k: usize, name: &str| -> Result<u32, ReplayError> {
            f[k].parse::<u32>()
                .map_err(|_| bad(&format!("field `{name}`: `{}` is not a count", f[k])))
        };
        let prefill_tokens = int(4, "prefill_tokens")?;
        let kind = match f[1] {
            "draft" => ForwardKind::Draft,
            "target" if prefill_tokens > 0 => ForwardKind::Prefill,
            "target" => ForwardKind::Decode,
            other => {
                return Err(bad(&format!(
                    "field `model`: `{other}` is neither draft nor target"
                )))
            }
        };
        rows.push(StepRow {
            time_s: num(0, "time_s")?,
            kind,
            seqs: int(2, "seqs")?,
            new_tokens: int(3, "new_tokens")?,
            prefill_tokens,
            measured_s: num(6, "measured_s")?,
            predicted_s: num(7, "predicted_s")?,
        });
    }
    Ok(rows)
}

/// Reads and parses a step-log file.
pub fn read_step_log(path: &Path) -> Result<Vec<StepRow>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReplayError::io(path, e))?;
    parse_step_log(&text, &path.display().to_string())
}

/// Measured against predicted time of one group of forwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostGroup {
    /// What ran.
    pub kind: ForwardKind,
    /// Batch size (sequences), or `None` for all batch sizes of the kind.
    pub seqs: Option<u32>,
    /// Forwards.
    pub forwards: usize,
    /// Σ measured, seconds.
    pub measured_s: f64,
    /// Σ predicted, seconds.
    pub predicted_s: f64,
    /// Σ measured / Σ predicted (1 is a right cost model; `None` without a prediction).
    pub ratio: Option<f64>,
    /// Coefficient of variation of the per-forward ratio: the forward-time jitter the machine added.
    pub jitter_cv: Option<f64>,
}

/// Each target forward's measured / predicted time, in log order (forwards without a prediction
/// left out): the run's speed against the cost model, forward by forward.
pub fn target_ratios(rows: &[StepRow]) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.kind.is_target() && r.predicted_s > 0.0)
        .map(|r| r.measured_s / r.predicted_s)
        .collect()
}

/// The cost term: measured / predicted per kind (all batch sizes), then per kind and batch size.
pub fn cost_term(rows: &[StepRow]) -> Vec<CostGroup> {
    let mut groups: BTreeMap<(ForwardKind, Option<u32>), Vec<&StepRow>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.kind, None)).or_default().push(r);
        groups.entry((r.kind, Some(r.seqs))).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((kind, seqs), rs)| {
            let measured_s: f64 = rs.iter().map(|r| r.measured_s).sum();
            let predicted_s: f64 = rs.iter().map(|r| r.predicted_s).sum();
            let ratios: Vec<f64> = rs
                .iter()
                .filter(|r| r.predicted_s > 0.0)
                .map(|r| r.measured_s / r.predicted_s)
                .collect();
            CostGroup {
                kind,
                seqs,
                forwards: rs.len(),
                measured_s,
                predicted_s,
                ratio: (predicted_s > 0.0).then(|| measured_s / predicted_s),
                jitter_cv: coefficient_of_variation(&ratios),
            }
        })
        .collect()
}

/// Standard deviation over mean (`None` for fewer than two values or a zero mean).
pub fn coefficient_of_variation(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m != 0.0).then(|| var.sqrt() / m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str =
        "time_s,model,seqs,new_tokens,prefill_tokens,context_tokens,measured_s,predicted_s
0.5,target,1,40,40,40,0.600000,0.500000
0.6,draft,1,1,0,41,0.010000,0.010000
0.8,target,1,2,0,42,0.200000,0.250000
1.0,target,2,42,40,84,0.800000,0.800000
";

    #[test]
    fn rows_are_classified_and_grouped_by_kind_and_batch() {
        let rows = parse_step_log(LOG, "steps.csv").unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].kind, ForwardKind::Prefill);
        assert_eq!(rows[1].kind, ForwardKind::Draft);
        assert_eq!(rows[2].kind, ForwardKind::Decode);
        // A mixed batch with prompt tokens counts as prefill.
        assert_eq!(rows[3].kind, ForwardKind::Prefill);
        let g = cost_term(&rows);
        let find = |k, s| g.iter().find(|x| x.kind == k && x.seqs == s).unwrap();
        // Prefill, all batches: (0.6 + 0.8) / (0.5 + 0.8).
        let all = find(ForwardKind::Prefill, None);
        assert_eq!(all.forwards, 2);
        assert!((all.ratio.unwrap() - 1.4 / 1.3).abs() < 1e-12);
        // Per-forward ratios 1.2 and 1.0: mean 1.1, sd √0.02.
        assert!((all.jitter_cv.unwrap() - 0.02f64.sqrt() / 1.1).abs() < 1e-12);
        assert!((find(ForwardKind::Prefill, Some(1)).ratio.unwrap() - 1.2).abs() < 1e-12);
        assert!((find(ForwardKind::Decode, Some(1)).ratio.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(find(ForwardKind::Draft, None).jitter_cv, None);
    }

    #[test]
    fn bad_rows_name_the_line_and_field() {
        let e = parse_step_log("nope\n", "s.csv").unwrap_err().to_string();
        assert!(e.contains("s.csv:1"), "{e}");
        let bad = LOG.replace("0.200000,0.250000", "x,0.25");
        let e = parse_step_log(&bad, "s.csv").unwrap_err().to_string();
        assert!(e.contains("s.csv:4") && e.contains("measured_s"), "{e}");
        let bad = LOG.replace("0.6,draft", "0.6,drafty");
        let e = parse_step_log(&bad, "s.csv").unwrap_err().to_string();
        assert!(e.contains("s.csv:3") && e.contains("model"), "{e}");
    }
}
