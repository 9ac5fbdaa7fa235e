//! Prediction versus measurement: join two result directories by request id and report the gap.
//!
//! Either side may be a *policy directory* (holding `requests.csv`) or a *run directory* (holding one
//! policy directory per policy, as `specsim run --out` writes). Run directories are paired by policy
//! name; a policy directory is paired with the same-named policy of the other side (or with its only
//! policy). So all of these work:
//!
//! ```text
//! specsim compare out/pred out/meas                 # every policy both have
//! specsim compare out/pred/specserve out/meas/specserve-live
//! specsim compare out/pred out/meas/specserve       # picks pred/specserve
//! ```
//!
//! Definitions (all in `compare.json`; `compare.md` shows them as tables):
//!
//! - **Relative error** is `(predicted − measured) / measured`: positive when the simulator is
//!   pessimistic (predicts more latency than measured).
//! - For TTFT, TPOT and E2E: relative error of the mean and of the p50/p90/p99, each side's statistic
//!   taken over the *compared* requests (finished on both sides; for TPOT also more than one output
//!   token on both), so a request that failed in measurement does not shift the predicted
//!   distribution; request-level **MAPE** `mean |p − m| / m` (requests with `m > 0`); and the
//!   **Pearson correlation** of predicted and measured values over the compared requests.
//! - **SLO attainment** on each side: requests meeting every SLO (`slo_met`) over that side's
//!   requests, a failed request counting as missing; the difference is in percentage points
//!   (predicted − measured). TTFT-only and TPOT-only attainments are shown when the SLO is known
//!   (from the predicted side's `summary.json`).
//! - The report warns when the two sides do not look like the same workload: ids present on one side
//!   only, or arrivals that differ by more than a millisecond.

mod report;

use crate::ReplayError;
pub use report::{parity_csv, render_markdown, write_comparison};
use serde::{Deserialize, Serialize};
use specsim_sim::metrics::{parse_requests_csv, percentile, RequestRecord, SloConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Arrivals further apart than this (seconds) mean the two sides replayed different workloads.
const ARRIVAL_TOLERANCE_S: f64 = 1e-3;

/// Error statistics of one latency metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    /// `ttft`, `tpot` or `e2e`.
    pub metric: String,
    /// Requests compared.
    pub n: usize,
    /// Predicted mean, seconds.
    pub mean_predicted: f64,
    /// Measured mean, seconds.
    pub mean_measured: f64,
    /// Relative error of the mean.
    pub mean_rel_error: Option<f64>,
    /// Predicted p50, p90, p99, seconds.
    pub predicted_p: [f64; 3],
    /// Measured p50, p90, p99, seconds.
    pub measured_p: [f64; 3],
    /// Relative errors of p50, p90, p99.
    pub p_rel_error: [Option<f64>; 3],
    /// Request-level mean absolute percentage error (a fraction: 0.1 is 10%).
    pub mape: Option<f64>,
    /// Pearson correlation of predicted and measured values.
    pub pearson: Option<f64>,
}

/// Attainment of one objective on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Attainment {
    /// Predicted fraction.
    pub predicted: f64,
    /// Measured fraction.
    pub measured: f64,
    /// (predicted − measured) × 100, percentage points.
    pub diff_pp: f64,
}

impl Attainment {
    fn new(predicted: f64, measured: f64) -> Self {
        Attainment {
            predicted,
            measured,
            diff_pp: (predicted - measured) * 100.0,
        }
    }
}

/// One predicted policy against one measured policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyComparison {
    /// Policy name (the predicted side's).
    pub policy: String,
    /// Predicted policy directory.
    pub predicted_dir: PathBuf,
    /// Measured policy directory.
    pub measured_dir: PathBuf,
    /// Rows on the predicted side.
    pub predicted_requests: usize,
    /// Rows on the measured side.
    pub measured_requests: usize,
    /// Measured rows that failed (`error` set).
    pub measured_failed: usize,
    /// Predicted rows without an error (the simulator finishes every request it is given).
    pub predicted_finished: usize,
    /// Ids finished on both sides (the compared requests).
    pub compared: usize,
    /// Ids on only one side.
    pub ids_only_predicted: usize,
    /// Ids on only the measured side.
    pub ids_only_measured: usize,
    /// Largest |arrival difference| over shared ids, seconds.
    pub max_arrival_diff_s: f64,
    /// Mean of (measured − predicted) / predicted prompt tokens over shared ids (the replay's prompt
    /// approximation).
    pub prompt_tokens_mean_rel_diff: f64,
    /// Every SLO.
    pub slo_attainment: Attainment,
    /// TTFT SLO alone, when the SLO is known and sets it.
    pub ttft_attainment: Option<Attainment>,
    /// TPOT SLO alone, when the SLO is known and sets it.
    pub tpot_attainment: Option<Attainment>,
    /// TTFT, TPOT, E2E.
    pub metrics: Vec<MetricComparison>,
    /// Warnings (different workloads, failures).
    pub warnings: Vec<String>,
    /// Per-request (id, metric, predicted, measured) for the parity plot.
    #[serde(skip)]
    pub points: Vec<(u64, &'static str, f64, f64)>,
}

/// A whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Predicted directory as given.
    pub predicted: PathBuf,
    /// Measured directory as given.
    pub measured: PathBuf,
    /// One entry per paired policy.
    pub policies: Vec<PolicyComparison>,
    /// Policies of the predicted side with no measured partner.
    pub unmatched_predicted: Vec<String>,
    /// Policies of the measured side with no predicted partner.
    pub unmatched_measured: Vec<String>,
}

/// The policy directories of a result directory: itself, or its subdirectories with `requests.csv`
/// (sorted by name).
pub fn policy_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, ReplayError> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| p.display().to_string())
    };
    if dir.join("requests.csv").is_file() {
        return Ok(vec![(name_of(dir), dir.to_path_buf())]);
    }
    let rd = std::fs::read_dir(dir).map_err(|e| ReplayError::io(dir, e))?;
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("requests.csv").is_file())
        .map(|p| (name_of(&p), p))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(ReplayError::Layout(format!(
            "{}: no requests.csv here or in any subdirectory (expected a result directory of `specsim run` or `specsim replay`)",
            dir.display()
        )));
    }
    Ok(out)
}

/// Paired policies `(name, predicted dir, measured dir)`, then the unpaired names of each side.
type Pairing = (Vec<(String, PathBuf, PathBuf)>, Vec<String>, Vec<String>);

/// Pairs the policies of two result directories (see the module doc).
fn pair(pred: &Path, meas: &Path) -> Result<Pairing, ReplayError> {
    let p = policy_dirs(pred)?;
    let m = policy_dirs(meas)?;
    let p_single = pred.join("requests.csv").is_file();
    let m_single = meas.join("requests.csv").is_file();
    let one = |a: &(String, PathBuf), b: &(String, PathBuf)| {
        vec![(a.0.clone(), a.1.clone(), b.1.clone())]
    };
    let pairs: Vec<(String, PathBuf, PathBuf)> = if p_single && m_single {
        one(&p[0], &m[0])
    } else {
        let common: Vec<(String, PathBuf, PathBuf)> = p
            .iter()
            .filter_map(|(n, pd)| {
                m.iter()
                    .find(|(mn, _)| mn == n)
                    .map(|(_, md)| (n.clone(), pd.clone(), md.clone()))
            })
            .collect();
        if !common.is_empty() {
            common
        } else if p.len() == 1 && m.len() == 1 {
            one(&p[0], &m[0])
        } else {
            let names = |v: &[(String, PathBuf)]| {
                v.iter()
                    .map(|x| x.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(ReplayError::Layout(format!(
                "no policy to pair: predicted has [{}], measured has [{}] (name the measured replay with --policy-label, or pass two policy directories)",
                names(&p),
                names(&m)
            )));
        }
    };
    let unmatched_p = p
        .iter()
        .filter(|(n, d)| !pairs.iter().any(|x| &x.0 == n || &x.1 == d))
        .map(|x| x.0.clone())
        .collect();
    let unmatched_m = m
        .iter()
        .filter(|(_, d)| !pairs.iter().any(|x| &x.2 == d))
        .map(|x| x.0.clone())
        .collect();
    Ok((pairs, unmatched_p, unmatched_m))
}

fn read_records(dir: &Path) -> Result<Vec<RequestRecord>, ReplayError> {
    let p = dir.join("requests.csv");
    let text = std::fs::read_to_string(&p).map_err(|e| ReplayError::io(&p, e))?;
    Ok(parse_requests_csv(&text, &p.display().to_string())?)
}

/// The `slo` of a policy directory's `summary.json`, if it has one.
fn read_slo(dir: &Path) -> Option<SloConfig> {
    #[derive(Deserialize)]
    struct SloOnly {
        slo: SloConfig,
    }
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str::<SloOnly>(&text).ok().map(|s| s.slo)
}

/// Compares two result directories.
pub fn compare_dirs(predicted: &Path, measured: &Path) -> Result<Comparison, ReplayError> {
    let (pairs, unmatched_predicted, unmatched_measured) = pair(predicted, measured)?;
    let mut policies = Vec::new();
    for (name, pd, md) in pairs {
        let p = read_records(&pd)?;
        let m = read_records(&md)?;
        let slo = read_slo(&pd).or_else(|| read_slo(&md));
        let mut c = compare_records(&name, &p, &m, slo.as_ref());
        c.predicted_dir = pd;
        c.measured_dir = md;
        policies.push(c);
    }
    Ok(Comparison {
        predicted: predicted.to_path_buf(),
        measured: measured.to_path_buf(),
        policies,
        unmatched_predicted,
        unmatched_measured,
    })
}

fn rel(p: f64, m: f64) -> Option<f64> {
    (m != 0.0 && p.is_finite() && m.is_finite()).then(|| (p - m) / m)
}

/// Pearson correlation; `None` for fewer than two points or a constant side.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn metric(name: &str, pairs: &[(f64, f64)]) -> MetricComparison {
    let p: Vec<f64> = pairs.iter().map(|x| x.0).collect();
    let m: Vec<f64> = pairs.iter().map(|x| x.1).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let pcts = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        [
            percentile(&s, 0.5),
            percentile(&s, 0.9),
            percentile(&s, 0.99),
        ]
    };
    let (pp, mp) = (pcts(&p), pcts(&m));
    let ape: Vec<f64> = pairs
        .iter()
        .filter(|x| x.1 > 0.0)
        .map(|x| ((x.0 - x.1) / x.1).abs())
        .collect();
    let (mean_p, mean_m) = (mean(&p), mean(&m));
    MetricComparison {
        metric: name.to_string(),
        n: pairs.len(),
        mean_predicted: mean_p,
        mean_measured: mean_m,
        mean_rel_error: if pairs.is_empty() {
            None
        } else {
            rel(mean_p, mean_m)
        },
        predicted_p: pp,
        measured_p: mp,
        p_rel_error: if pairs.is_empty() {
            [None; 3]
        } else {
            [rel(pp[0], mp[0]), rel(pp[1], mp[1]), rel(pp[2], mp[2])]
        },
        mape: (!ape.is_empty()).then(|| mean(&ape)),
        pearson: pearson(&p, &m),
    }
}

/// Compares the rows of one predicted and one measured policy (see the module doc).
pub fn compare_records(
    policy: &str,
    predicted: &[RequestRecord],
    measured: &[RequestRecord],
    slo: Option<&SloConfig>,
) -> PolicyComparison {
    let by_id: HashMap<u64, &RequestRecord> = measured.iter().map(|r| (r.id, r)).collect();
    let pred_ids: std::collections::HashSet<u64> = predicted.iter().map(|r| r.id).collect();
    let ok = |r: &RequestRecord| r.error.is_none() && r.ttft_s.is_finite() && r.e2e_s.is_finite();
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut e2e = Vec::new();
    let mut points = Vec::new();
    let mut max_arrival_diff: f64 = 0.0;
    let mut prompt_rel = Vec::new();
    let mut shared = 0;
    for p in predicted {
        let Some(m) = by_id.get(&p.id) else { continue };
        shared += 1;
        max_arrival_diff = max_arrival_diff.max((p.arrival_s - m.arrival_s).abs());
        if p.prompt_tokens > 0 {
            prompt_rel
                .push((m.prompt_tokens as f64 - p.prompt_tokens as f64) / p.prompt_tokens as f64);
        }
        if !(ok(p) && ok(m)) {
            continue;
        }
        ttft.push((p.ttft_s, m.ttft_s));
        e2e.push((p.e2e_s, m.e2e_s));
        points.push((p.id, "ttft", p.ttft_s, m.ttft_s));
        if p.output_tokens > 1
            && m.output_tokens > 1
            && p.tpot_s.is_finite()
            && m.tpot_s.is_finite()
        {
            tpot.push((p.tpot_s, m.tpot_s));
            points.push((p.id, "tpot", p.tpot_s, m.tpot_s));
        }
        points.push((p.id, "e2e", p.e2e_s, m.e2e_s));
    }
    let frac = |rows: &[RequestRecord], f: &dyn Fn(&RequestRecord) -> bool| {
        if rows.is_empty() {
            0.0
        } else {
            rows.iter().filter(|r| r.error.is_none() && f(r)).count() as f64 / rows.len() as f64
        }
    };
    let att =
        |f: &dyn Fn(&RequestRecord) -> bool| Attainment::new(frac(predicted, f), frac(measured, f));
    let measured_failed = measured.iter().filter(|r| r.error.is_some()).count();
    let ids_only_measured = measured
        .iter()
        .filter(|r| !pred_ids.contains(&r.id))
        .count();
    let mut warnings = Vec::new();
    if shared < predicted.len() || ids_only_measured > 0 {
        warnings.push(format!(
            "different request sets: {} ids only predicted, {} only measured",
            predicted.len() - shared,
            ids_only_measured
        ));
    }
    if max_arrival_diff > ARRIVAL_TOLERANCE_S {
        warnings.push(format!(
            "arrivals differ by up to {max_arrival_diff:.3} s: the two sides did not run the same workload"
        ));
    }
    if measured_failed > 0 {
        warnings.push(format!(
            "{measured_failed} measured requests failed (counted as missing their SLOs, left out of the latency errors)"
        ));
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let slo = slo.copied();
    PolicyComparison {
        policy: policy.to_string(),
        predicted_dir: PathBuf::new(),
        measured_dir: PathBuf::new(),
        predicted_requests: predicted.len(),
        measured_requests: measured.len(),
        measured_failed,
        predicted_finished: predicted.iter().filter(|r| r.error.is_none()).count(),
        compared: ttft.len(),
        ids_only_predicted: predicted.len() - shared,
        ids_only_measured,
        max_arrival_diff_s: max_arrival_diff,
        prompt_tokens_mean_rel_diff: mean(&prompt_rel),
        slo_attainment: att(&|r| r.slo_met),
        ttft_attainment: slo.and_then(|s| s.ttft_s).map(|t| att(&|r| r.ttft_s <= t)),
        tpot_attainment: slo.and_then(|s| s.tpot_s).map(|t| att(&|r| r.tpot_s <= t)),
        metrics: vec![
            metric("ttft", &ttft),
            metric("tpot", &tpot),
            metric("e2e", &e2e),
        ],
        warnings,
        points,
    }
}
