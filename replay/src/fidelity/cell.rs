//! One cell of the fidelity study — a workload at a load under a policy — with N replicates a side:
//! per metric the two sides' values with intervals, the gap's interval and the verdict against the
//! aim; attainment-versus-SLO curves; the error terms; the noise of each live replicate; and the
//! replicates left out, with why.
//!
//! A live replicate is **left out** (listed in [`CellReport::excluded`], never averaged in) when its
//! replay was aborted (the server went down mid-run) or any of its requests failed, or when no rows
//! could be read. Replicates flagged by the noise monitor are kept but counted
//! ([`CellReport::noisy_replicates`]): on a shared machine every run may be noisy, and dropping them
//! all would leave nothing; the flag says how far the cell can be trusted.

use super::noise::NoiseReport;
use super::recorded::EngineTerm;
use super::stats::{
    attainment_curve, bootstrap, gap_interval, mean, quantile, AttainmentCurve, GapKind, Interval,
    Verdict,
};
use super::steps::{cost_term, CostGroup, StepRow};
use super::terms::{
    acceptance_term, workload_term, AcceptanceCounts, AcceptanceTerm, WorkloadTerm,
};
use serde::{Deserialize, Serialize};
use specsim_sim::metrics::{RequestRecord, SloConfig};

/// The aims of issue 6: attainment within 3 pp, p50 TPOT within 5 %, p99 TTFT within 15 %.
pub const AIM_ATTAINMENT_PP: f64 = 3.0;
/// p50 TPOT aim (relative).
pub const AIM_P50_TPOT: f64 = 0.05;
/// p99 TTFT aim (relative).
pub const AIM_P99_TTFT: f64 = 0.15;

/// Points of each attainment-versus-SLO curve.
pub const CURVE_POINTS: usize = 16;

/// One live replicate's inputs.
#[derive(Debug, Clone, Default)]
pub struct MeasuredReplicate {
    /// A name (its directory).
    pub name: String,
    /// Its `requests.csv` rows.
    pub records: Vec<RequestRecord>,
    /// Why the replay was aborted, if it was (`replay.json`).
    pub aborted: Option<String>,
    /// The engine's step log, if kept.
    pub steps: Option<Vec<StepRow>>,
    /// The step log's per-sequence outcomes (`steps.seqs.csv`), if kept.
    pub outcomes: Option<Vec<super::outcomes::SeqOutcomeRow>>,
    /// The step log's per-request times (`steps.requests.csv`), if kept.
    pub served: Option<Vec<super::served::ServedRequest>>,
    /// The engine's acceptance counters, if its `/metrics` were saved.
    pub acceptance: Option<AcceptanceCounts>,
    /// The noise monitor's report, if one ran.
    pub noise: Option<NoiseReport>,
    /// The simulator re-run on this replicate's step log against its rows.
    pub engine: Option<EngineTerm>,
}

/// One metric of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricVerdict {
    /// `attainment`, `p50_tpot`, `p99_ttft`.
    pub metric: String,
    /// The aim, in the gap's unit.
    pub aim: f64,
    /// How the gap is expressed.
    pub gap_kind: GapKind,
    /// The metric over the predicted replicates (seeds), with its interval.
    pub predicted: Interval,
    /// The metric over the measured replicates, with its interval.
    pub measured: Interval,
    /// The metric of each measured replicate alone (the replicate band).
    pub measured_replicates: Vec<f64>,
    /// The metric of each predicted replicate alone.
    pub predicted_replicates: Vec<f64>,
    /// predicted − measured and its interval.
    pub gap: Interval,
    /// The gap's interval against the aim.
    pub verdict: Verdict,
}

/// Everything a cell reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    /// The policy.
    pub policy: String,
    /// Requests left out at the start of each replicate (warm-up).
    pub warmup: usize,
    /// Predicted replicates (simulator seeds).
    pub predicted_replicates: usize,
    /// Measured replicates used.
    pub measured_replicates: usize,
    /// Measured replicates left out, with why.
    pub excluded: Vec<(String, String)>,
    /// Measured replicates the noise monitor flagged, with its flags.
    pub noisy_replicates: Vec<(String, Vec<String>)>,
    /// Attainment, p50 TPOT, p99 TTFT.
    pub metrics: Vec<MetricVerdict>,
    /// Attainment versus a TTFT SLO and versus a TPOT SLO.
    pub curves: Vec<AttainmentCurve>,
    /// The engine/queueing term of each used replicate that had a step log.
    pub engine: Vec<EngineTerm>,
    /// The cost term over the used replicates' step logs.
    pub cost: Vec<CostGroup>,
    /// The acceptance term over the used replicates' counters (summed).
    pub acceptance: Option<AcceptanceTerm>,
    /// The workload term over the used replicates.
    pub workload: WorkloadTerm,
    /// HTTP − in-process per request, when the cell was also run in process.
    #[serde(default)]
    pub serving_overhead: Option<super::overhead::ServingOverhead>,
    /// The prediction again at each replicate's own forward speed ([`super::speed`]), when step logs
    /// were kept.
    #[serde(default)]
    pub at_live_speed: Option<AtLiveSpeed>,
}

/// The cell's metrics with the prediction run at the live forwards' speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtLiveSpeed {
    /// Each used replicate's speed, the factors of its run.
    pub factors: Vec<super::speed::Speed>,
    /// The three metrics, the prediction side being one run per replicate at its speed.
    pub metrics: Vec<MetricVerdict>,
}

/// [`AtLiveSpeed`] from `(replicate, its prediction at its speed, the factors)`; replicates the cell
/// leaves out (failed, aborted) are left out here too. `None` when none is left.
pub fn at_live_speed(
    runs: &[(&MeasuredReplicate, Vec<RequestRecord>, super::speed::Speed)],
    warmup: usize,
    seed: u64,
) -> Option<AtLiveSpeed> {
    let used: Vec<_> = runs
        .iter()
        .filter(|(r, _, _)| exclusion(r).is_none())
        .collect();
    if used.is_empty() {
        return None;
    }
    let pred: Vec<Vec<RequestRecord>> = used.iter().map(|(_, p, _)| trimmed(p, warmup)).collect();
    let meas: Vec<Vec<RequestRecord>> = used
        .iter()
        .map(|(r, _, _)| trimmed(&r.records, warmup))
        .collect();
    Some(AtLiveSpeed {
        factors: used.iter().map(|(_, _, f)| *f).collect(),
        metrics: metric_verdicts(&pred, &meas, seed),
    })
}

/// Rows after the warm-up: the `warmup` earliest arrivals dropped.
fn trimmed(rows: &[RequestRecord], warmup: usize) -> Vec<RequestRecord> {
    let mut v = rows.to_vec();
    v.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s).then(a.id.cmp(&b.id)));
    v.into_iter().skip(warmup).collect()
}

/// Why a live replicate cannot be used, if it cannot.
fn exclusion(r: &MeasuredReplicate) -> Option<String> {
    if let Some(a) = &r.aborted {
        return Some(format!("aborted: {a}"));
    }
    if r.records.is_empty() {
        return Some("no rows".into());
    }
    let failed = r.records.iter().filter(|x| x.error.is_some()).count();
    (failed > 0).then(|| format!("{failed} of {} requests failed", r.records.len()))
}

/// Per-request values of one metric.
type Extract = fn(&RequestRecord) -> Option<f64>;

fn met(r: &RequestRecord) -> Option<f64> {
    Some(f64::from(u8::from(r.error.is_none() && r.slo_met)))
}
fn tpot(r: &RequestRecord) -> Option<f64> {
    (r.error.is_none() && r.output_tokens > 1 && r.tpot_s.is_finite()).then_some(r.tpot_s)
}
fn ttft(r: &RequestRecord) -> Option<f64> {
    (r.error.is_none() && r.ttft_s.is_finite()).then_some(r.ttft_s)
}
/// For attainment curves: a failed request is NaN (never attains).
fn ttft_or_nan(r: &RequestRecord) -> Option<f64> {
    Some(ttft(r).unwrap_or(f64::NAN))
}
fn tpot_or_nan(r: &RequestRecord) -> Option<f64> {
    if r.error.is_some() {
        return Some(f64::NAN);
    }
    Some(if r.output_tokens > 1 { r.tpot_s } else { 0.0 })
}

fn values(sides: &[Vec<RequestRecord>], f: Extract) -> Vec<Vec<f64>> {
    sides
        .iter()
        .map(|rs| rs.iter().filter_map(f).collect())
        .collect()
}

/// Each aim's metric on both sides (rows already trimmed of the warm-up), its gap and verdict.
fn metric_verdicts(
    pred: &[Vec<RequestRecord>],
    meas: &[Vec<RequestRecord>],
    seed: u64,
) -> Vec<MetricVerdict> {
    let stat_mean: &super::stats::Statistic = &mean;
    let p50 = |v: &[f64]| quantile(v, 0.5);
    let p99 = |v: &[f64]| quantile(v, 0.99);
    let specs: [(&str, Extract, &super::stats::Statistic, GapKind, f64); 3] = [
        (
            "attainment",
            met,
            stat_mean,
            GapKind::Points,
            AIM_ATTAINMENT_PP,
        ),
        ("p50_tpot", tpot, &p50, GapKind::Relative, AIM_P50_TPOT),
        ("p99_ttft", ttft, &p99, GapKind::Relative, AIM_P99_TTFT),
    ];
    specs
        .iter()
        .map(|(name, f, stat, kind, aim)| {
            let (pv, mv) = (values(pred, *f), values(meas, *f));
            let gap = if pv.iter().all(Vec::is_empty) || mv.iter().all(Vec::is_empty) {
                Interval {
                    point: f64::NAN,
                    lo: f64::NAN,
                    hi: f64::NAN,
                }
            } else {
                gap_interval(&pv, &mv, *stat, *kind, seed)
            };
            MetricVerdict {
                metric: name.to_string(),
                aim: *aim,
                gap_kind: *kind,
                predicted: bootstrap(&pv, *stat, seed),
                measured: bootstrap(&mv, *stat, seed),
                measured_replicates: mv.iter().map(|v| stat(v)).collect(),
                predicted_replicates: pv.iter().map(|v| stat(v)).collect(),
                verdict: Verdict::of(&gap, *aim),
                gap,
            }
        })
        .collect()
}

/// Builds a cell's report. `predicted`: one row set per simulator seed; `rate(j)`: the acceptance
/// model's conditional rate at draft position `j`; `seed` seeds every bootstrap.
pub fn cell_report(
    policy: &str,
    predicted: &[Vec<RequestRecord>],
    measured: &[MeasuredReplicate],
    slo: &SloConfig,
    warmup: usize,
    rate: &dyn Fn(u32) -> f64,
    seed: u64,
) -> CellReport {
    let mut excluded = Vec::new();
    let mut used: Vec<&MeasuredReplicate> = Vec::new();
    for r in measured {
        match exclusion(r) {
            Some(why) => excluded.push((r.name.clone(), why)),
            None => used.push(r),
        }
    }
    let pred: Vec<Vec<RequestRecord>> = predicted.iter().map(|p| trimmed(p, warmup)).collect();
    let meas: Vec<Vec<RequestRecord>> = used.iter().map(|r| trimmed(&r.records, warmup)).collect();
    let metrics = metric_verdicts(&pred, &meas, seed);
    let mut curves = Vec::new();
    for (name, slo_s, f) in [
        ("ttft", slo.ttft_s, ttft_or_nan as Extract),
        ("tpot", slo.tpot_s, tpot_or_nan as Extract),
    ] {
        if let Some(s) = slo_s {
            curves.push(attainment_curve(
                name,
                s,
                CURVE_POINTS,
                &values(&pred, f),
                &values(&meas, f),
                seed,
            ));
        }
    }
    let all_steps: Vec<StepRow> = used
        .iter()
        .filter_map(|r| r.steps.as_ref())
        .flatten()
        .copied()
        .collect();
    let mut counts: Option<AcceptanceCounts> = None;
    for c in used.iter().filter_map(|r| r.acceptance.as_ref()) {
        let acc = counts.get_or_insert_with(AcceptanceCounts::default);
        for (dst, src) in [
            (&mut acc.drafted_at, &c.drafted_at),
            (&mut acc.accepted_at, &c.accepted_at),
            (&mut acc.chosen_k, &c.chosen_k),
        ] {
            for (k, v) in src {
                *dst.entry(*k).or_default() += v;
            }
        }
    }
    let pred_all: Vec<RequestRecord> = pred.iter().flatten().cloned().collect();
    let first_pred = predicted.first().cloned().unwrap_or_default();
    let meas_all: Vec<RequestRecord> = used.iter().flat_map(|r| r.records.clone()).collect();
    CellReport {
        policy: policy.to_string(),
        warmup,
        predicted_replicates: predicted.len(),
        measured_replicates: used.len(),
        noisy_replicates: used
            .iter()
            .filter_map(|r| {
                r.noise
                    .as_ref()
                    .filter(|n| n.flagged())
                    .map(|n| (r.name.clone(), n.flags.clone()))
            })
            .collect(),
        excluded,
        metrics,
        curves,
        engine: used.iter().filter_map(|r| r.engine.clone()).collect(),
        cost: cost_term(&all_steps),
        acceptance: counts.map(|c| acceptance_term(&pred_all, &c, rate)),
        workload: workload_term(&first_pred, &meas_all),
        serving_overhead: None,
        at_live_speed: None,
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", x * 100.0)
    } else {
        "—".into()
    }
}

/// A metric's value as the tables show it (attainment in %, latencies in seconds).
fn value(kind: GapKind, x: f64) -> String {
    match kind {
        GapKind::Points => pct(x),
        GapKind::Relative => format!("{x:.3} s"),
    }
}

/// A gap as the tables show it.
fn gap(kind: GapKind, x: f64) -> String {
    match kind {
        GapKind::Points => format!("{x:+.1} pp"),
        GapKind::Relative if x.is_finite() => format!("{:+.1}%", x * 100.0),
        GapKind::Relative => "—".into(),
    }
}

/// `cell.md`: the metrics with their intervals and verdicts, then the terms.
pub fn render_markdown(c: &CellReport) -> String {
    let mut s = format!(
        "# Cell: {}\n\n{} predicted replicates (simulator seeds), {} measured replicates used, {} left out; warm-up {} requests.\n\n",
        c.policy,
        c.predicted_replicates,
        c.measured_replicates,
        c.excluded.len(),
        c.warmup
    );
    s += "| metric | predicted [95 % CI] | measured [95 % CI] | measured replicates | gap [95 % CI] | aim | verdict |\n|---|---|---|---|---|---|---|\n";
    for m in &c.metrics {
        let k = m.gap_kind;
        let reps: Vec<String> = m.measured_replicates.iter().map(|x| value(k, *x)).collect();
        s += &format!(
            "| {} | {} [{}, {}] | {} [{}, {}] | {} | {} [{}, {}] | ±{} | {} |\n",
            m.metric,
            value(k, m.predicted.point),
            value(k, m.predicted.lo),
            value(k, m.predicted.hi),
            value(k, m.measured.point),
            value(k, m.measured.lo),
            value(k, m.measured.hi),
            reps.join(", "),
            gap(k, m.gap.point),
            gap(k, m.gap.lo),
            gap(k, m.gap.hi),
            match k {
                GapKind::Points => format!("{} pp", m.aim),
                GapKind::Relative => pct(m.aim),
            },
            m.verdict.label()
        );
    }
    for cu in &c.curves {
        s += &format!(
            "\nAttainment versus {} SLO: largest gap {:.1} pp at {:.3} s.\n",
            cu.metric, cu.max_gap_pp, cu.max_gap_at_s
        );
    }
    s += "\n## Terms\n\n";
    for (i, e) in c.engine.iter().enumerate() {
        let against = if e.against == "engine" {
            "the engine's own latencies"
        } else {
            "the client's latencies"
        };
        s += &format!(
            "- engine/queueing (replicate {}, against {against}): median |error| TTFT {}, TPOT {} (max {}, {}); {:.1} ms per first token left outside; {:.0}% of forwards matched the log\n",
            i + 1,
            pct(e.ttft_median_abs_rel),
            pct(e.tpot_median_abs_rel),
            pct(e.ttft_max_abs_rel),
            pct(e.tpot_max_abs_rel),
            e.ttft_mean_overhead_s * 1e3,
            e.matching.match_fraction() * 100.0
        );
        if let Some(p) = &e.serving_path {
            s += &format!(
                "  - serving path (client − engine, {} requests): TTFT median {:.2} ms, p90 {:.2} ms; TPOT median {:.3} ms, p90 {:.3} ms\n",
                p.requests,
                p.ttft_median_s * 1e3,
                p.ttft_p90_s * 1e3,
                p.tpot_median_s * 1e3,
                p.tpot_p90_s * 1e3
            );
        }
        if let Some(m) = &e.served {
            if m.prompt_mismatched + m.unpaired > 0 {
                s += &format!(
                    "  - pairing engine and client requests: {} paired, {} with other prompt lengths, {} unpaired\n",
                    m.paired, m.prompt_mismatched, m.unpaired
                );
            }
        }
        if let Some(o) = e.matching.outcomes {
            s += &format!(
                "  - acceptance replayed per sequence: {} verifications replayed, {} drawn past the log, {} capped\n",
                o.replayed, o.drawn, o.capped
            );
        }
    }
    if let Some(o) = &c.serving_overhead {
        s += &format!(
            "- serving overhead (HTTP − in process, {} requests over {} replicate pairs): TTFT median {:.2} ms, p90 {:.2} ms; TPOT median {:.3} ms, p90 {:.3} ms\n",
            o.requests,
            o.replicate_pairs,
            o.ttft_median_s * 1e3,
            o.ttft_p90_s * 1e3,
            o.tpot_median_s * 1e3,
            o.tpot_p90_s * 1e3
        );
    }
    for g in c.cost.iter().filter(|g| g.seqs.is_none()) {
        s += &format!(
            "- cost, {}: {} forwards, measured/predicted {}, per-forward jitter (CV) {}\n",
            g.kind.label(),
            g.forwards,
            g.ratio.map_or("—".into(), |r| format!("{r:.3}")),
            g.jitter_cv.map_or("—".into(), pct)
        );
    }
    if let Some(a) = &c.at_live_speed {
        let targets: Vec<String> = a
            .factors
            .iter()
            .map(|f| {
                format!(
                    "{:.3}/{:.3} (CV {:.0} %)",
                    f.prefill,
                    f.decode,
                    f.jitter_cv * 100.0
                )
            })
            .collect();
        let gaps: Vec<String> = a
            .metrics
            .iter()
            .map(|m| {
                let k = m.gap_kind;
                format!(
                    "{} {} [{}, {}] {}",
                    m.metric,
                    gap(k, m.gap.point),
                    gap(k, m.gap.lo),
                    gap(k, m.gap.hi),
                    m.verdict.label()
                )
            })
            .collect();
        s += &format!(
            "- predicted at the live forwards' speed and jitter (prefill/decode × {} per replicate): {}\n",
            targets.join(", "),
            gaps.join("; ")
        );
    }
    if let Some(a) = &c.acceptance {
        let reach: Vec<String> = a
            .reach
            .iter()
            .map(|(i, p, m)| {
                format!(
                    "{i}: {:.2}/{}",
                    p,
                    m.map_or("—".into(), |m| format!("{m:.2}"))
                )
            })
            .collect();
        s += &format!(
            "- acceptance: accepted per step predicted {:.2}, measured {}; reach by position (predicted/measured) {}\n",
            a.accepted_per_step_predicted,
            a.accepted_per_step_measured.map_or("—".into(), |m| format!("{m:.2}")),
            reach.join(", ")
        );
    }
    let w = &c.workload;
    s += &format!(
        "- workload: prompts {:+.2}% ({} exact), outputs {:+.2}% ({} exact) over {} requests\n",
        w.prompt_mean_rel * 100.0,
        pct(w.prompt_exact),
        w.output_mean_rel * 100.0,
        pct(w.output_exact),
        w.requests
    );
    if !c.excluded.is_empty() || !c.noisy_replicates.is_empty() {
        s += "\n## Bad inputs\n\n";
        for (n, why) in &c.excluded {
            s += &format!("- left out: {n}: {why}\n");
        }
        for (n, flags) in &c.noisy_replicates {
            s += &format!("- noisy (kept, flagged): {n}: {}\n", flags.join("; "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, ttft: f64, tpot: f64, met: bool) -> RequestRecord {
        RequestRecord {
            id,
            arrival_s: id as f64,
            prompt_tokens: 10,
            output_tokens: 5,
            first_token_s: 0.0,
            finish_s: 0.0,
            ttft_s: ttft,
            tpot_s: tpot,
            e2e_s: ttft + 4.0 * tpot,
            drafted: 0,
            accepted: 0,
            steps: 5,
            slo_met: met,
            replica: 0,
            policy: "p".into(),
            error: None,
            cached_tokens: None,
        }
    }

    fn side(n: u64, scale: f64, met_every: u64) -> Vec<RequestRecord> {
        (0..n)
            .map(|i| {
                // A narrow spread (±0.5 %) so identical sides are decidable at the aims.
                let x = 1.0 + (i % 10) as f64 / 1000.0;
                row(i, x * scale, 0.1 * x * scale, i % met_every != 0)
            })
            .collect()
    }

    /// Only request 0 misses its SLO (and the warm-up drops it).
    const NEVER: u64 = 1_000_000;

    fn replicate(name: &str, records: Vec<RequestRecord>) -> MeasuredReplicate {
        MeasuredReplicate {
            name: name.into(),
            records,
            ..Default::default()
        }
    }

    #[test]
    fn identical_sides_agree_and_a_failed_or_aborted_replicate_is_left_out() {
        let slo = SloConfig {
            ttft_s: Some(1.5),
            tpot_s: Some(0.15),
            e2e_s: None,
        };
        let data = side(300, 1.0, NEVER);
        let mut failed = data.clone();
        failed[7].error = Some("connect".into());
        let meas = vec![
            replicate("r1", data.clone()),
            replicate("r2", data.clone()),
            replicate("down", failed),
            MeasuredReplicate {
                aborted: Some("server gone".into()),
                ..replicate("aborted", data.clone())
            },
        ];
        let c = cell_report("p", &[data.clone(), data], &meas, &slo, 10, &|_| 0.5, 1);
        assert_eq!(c.measured_replicates, 2);
        assert_eq!(c.excluded.len(), 2);
        assert!(c.excluded[0].1.contains("1 of 300 requests failed"));
        assert!(c.excluded[1].1.contains("server gone"));
        for m in &c.metrics {
            assert_eq!(m.gap.point, 0.0, "{m:?}");
            assert_eq!(m.verdict, Verdict::Agrees, "{m:?}");
        }
        assert_eq!(c.curves.len(), 2);
        assert_eq!(c.curves[0].max_gap_pp, 0.0);
    }

    #[test]
    fn a_prediction_30_percent_fast_disagrees_on_latency() {
        let slo = SloConfig {
            ttft_s: Some(1.5),
            tpot_s: Some(0.15),
            e2e_s: None,
        };
        let meas = vec![
            replicate("r1", side(300, 1.0, NEVER)),
            replicate("r2", side(300, 1.0, NEVER)),
        ];
        let c = cell_report("p", &[side(300, 0.7, NEVER)], &meas, &slo, 0, &|_| 0.5, 1);
        let v = |n: &str| c.metrics.iter().find(|m| m.metric == n).unwrap();
        assert!((v("p50_tpot").gap.point + 0.3).abs() < 1e-9);
        assert_eq!(v("p50_tpot").verdict, Verdict::Disagrees);
        assert_eq!(v("p99_ttft").verdict, Verdict::Disagrees);
        // Attainment (slo_met as given) is identical on both sides.
        assert_eq!(v("attainment").verdict, Verdict::Agrees);
        // TPOT curve: 0.7× faster moves attainment at the SLO a lot.
        assert!(c.curves[1].max_gap_pp > 20.0);
    }

    #[test]
    fn at_live_speed_pairs_each_replicate_with_its_own_run_and_leaves_out_failed_ones() {
        // The plain prediction is 30 % fast; the runs at each replicate's speed are exact. A failed
        // replicate (with a wildly wrong run) is left out, as the cell leaves it out.
        let data = side(300, 1.0, NEVER);
        let fast = side(300, 0.7, NEVER);
        let mut failed = data.clone();
        failed[3].error = Some("reset".into());
        let meas = vec![
            replicate("r1", data.clone()),
            replicate("r2", data.clone()),
            replicate("down", failed),
        ];
        let c = cell_report(
            "p",
            &[fast.clone(), fast],
            &meas,
            &SloConfig::default(),
            10,
            &|_| 0.5,
            1,
        );
        assert!(c.metrics.iter().any(|m| m.verdict == Verdict::Disagrees));
        let speed = |decode| crate::fidelity::speed::Speed {
            decode,
            ..crate::fidelity::speed::Speed::MODEL
        };
        let runs = vec![
            (&meas[0], data.clone(), speed(1.3)),
            (&meas[1], data.clone(), speed(1.4)),
            (&meas[2], side(300, 5.0, NEVER), speed(9.0)),
        ];
        let a = at_live_speed(&runs, 10, 1).unwrap();
        assert_eq!(a.factors, vec![speed(1.3), speed(1.4)]);
        for m in &a.metrics {
            assert_eq!(m.gap.point, 0.0, "{m:?}");
            assert_eq!(m.verdict, Verdict::Agrees, "{m:?}");
        }
        assert!(at_live_speed(&runs[2..], 10, 1).is_none());
    }
}
