//! Fleet-scale machinery against the in-memory reference: streamed result directories equal the
//! in-memory ones byte for byte; the streaming summary equals `Summary::from_records` exactly while
//! percentiles are exact, and the sketch stays within its stated error beyond; the parallel mode
//! reproduces the sequential run exactly for load-blind routers and within a stated bound for the
//! load-aware ones; a cancelled run leaves a directory that says it is partial.

use rand_distr::{Distribution, LogNormal};
use specsim_core::workload::Workload;
use specsim_sim::metrics::{
    percentile, requests_csv, LatencyAcc, RequestRecord, Summary, SummaryAcc, SKETCH_RELATIVE_ERROR,
};
use specsim_sim::results::INCOMPLETE;
use specsim_sim::scenario::{PolicyRun, RequestStream, Scenario, StreamOptions};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn quickstart(sets: &[&str]) -> Scenario {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/quickstart.toml"
    ))
    .unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Scenario::parse(&text, Path::new("quickstart.toml"), Path::new("."), &sets).unwrap()
}

fn in_memory(sc: &Scenario, w: &Workload, policy: usize) -> PolicyRun {
    sc.run_policy(w, &sc.file.policies[policy], false, None)
        .unwrap()
}

fn streamed(
    sc: &Scenario,
    w: &Arc<Workload>,
    policy: usize,
    dir: &Path,
    opts: &StreamOptions,
) -> specsim_sim::scenario::StreamRun {
    let p = &sc.file.policies[policy];
    let name = p.build().name();
    sc.run_policy_streaming(
        RequestStream::from_workload(Arc::clone(w)),
        p,
        &name,
        dir,
        opts,
    )
    .unwrap()
}

fn records_of(dir: &Path) -> Vec<RequestRecord> {
    let text = std::fs::read_to_string(dir.join("requests.csv")).unwrap();
    specsim_sim::metrics::parse_requests_csv(&text, "requests.csv").unwrap()
}

#[test]
fn streamed_directory_equals_the_in_memory_one_byte_for_byte() {
    // Two replicas behind least-outstanding (the router sees load, so event order matters), at a
    // load where requests overtake each other (finishing order differs from id order).
    let sc = quickstart(&[
        "trace.synthetic.requests=3000",
        "trace.synthetic.rate=70",
        "cluster.replicas=2",
        "cluster.router=least_outstanding",
    ]);
    let w = Arc::new(sc.builtin_workload().unwrap());
    let dir = tempfile::tempdir().unwrap();
    for policy in 0..sc.file.policies.len() {
        let mem = in_memory(&sc, &w, policy);
        let d = dir.path().join(&mem.name);
        let run = streamed(&sc, &w, policy, &d, &StreamOptions::default());
        let text = std::fs::read_to_string(d.join("requests.csv")).unwrap();
        assert_eq!(text, requests_csv(&mem.records), "{}", mem.name);
        assert_eq!(run.summary, mem.summary, "{}", mem.name);
        let json = std::fs::read_to_string(d.join("summary.json")).unwrap();
        assert_eq!(
            json,
            serde_json::to_string_pretty(&mem.summary).unwrap() + "\n"
        );
        assert!(!d.join(INCOMPLETE).exists());
        assert!(run.peak_reorder > 0, "rows finished out of id order");
        assert_eq!(run.stats.events, mem.events);
    }
}

#[test]
fn streaming_summary_equals_from_records_in_any_order() {
    let sc = quickstart(&["trace.synthetic.requests=2000", "trace.synthetic.rate=40"]);
    let w = sc.builtin_workload().unwrap();
    let run = in_memory(&sc, &w, 2);
    let mut rows = run.records.clone();
    // A fixed permutation (reverse, then interleave halves) stands for finishing order.
    rows.reverse();
    let (a, b) = rows.split_at(rows.len() / 2);
    let mixed: Vec<&RequestRecord> = a.iter().zip(b).flat_map(|(x, y)| [y, x]).collect();
    let mut acc = SummaryAcc::new(&sc.file.slo, 1_000_000);
    mixed.iter().for_each(|r| acc.add(r));
    let from_acc = acc.summary(&run.name, w.len(), 0, 0, run.summary.preemptions);
    let reference = Summary::from_records(
        &run.name,
        &run.records,
        w.len(),
        0,
        0,
        run.summary.preemptions,
        &sc.file.slo,
    );
    assert_eq!(from_acc, reference);
    assert!(from_acc.percentiles.is_none());
    // Beyond the exact limit the summary says so, and counts, maxima and attainment stay exact.
    let mut small = SummaryAcc::new(&sc.file.slo, 100);
    mixed.iter().for_each(|r| small.add(r));
    let s = small.summary(&run.name, w.len(), 0, 0, 0);
    assert!(s.percentiles.as_deref().unwrap().contains("ddsketch"));
    assert_eq!(s.finished, reference.finished);
    assert_eq!(s.slo_attainment, reference.slo_attainment);
    assert_eq!(s.ttft.max, reference.ttft.max);
    assert!((s.e2e.mean - reference.e2e.mean).abs() <= 1e-9 * reference.e2e.mean);
}

#[test]
fn sketch_percentiles_are_within_the_stated_error_on_a_million_lognormal_values() {
    let mut rng = specsim_core::rng::stream(7, "sketch-test", 0);
    let d = LogNormal::new(-1.0, 1.2).unwrap();
    let values: Vec<f64> = (0..1_000_000).map(|_| d.sample(&mut rng)).collect();
    let mut acc = LatencyAcc::new(1000);
    // Merge two halves, as partial accumulators would be.
    let mut other = LatencyAcc::new(1000);
    let (a, b) = values.split_at(400_000);
    a.iter().for_each(|&v| acc.add(v));
    b.iter().for_each(|&v| other.add(v));
    acc.merge(&other);
    assert!(!acc.is_exact());
    assert_eq!(acc.count(), 1_000_000);
    let s = acc.stats();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    for (q, got) in [(0.5, s.p50), (0.9, s.p90), (0.99, s.p99)] {
        // The sketch's guarantee: within α of the order statistic of rank ⌊q(n−1)⌋.
        let rank = (q * (n - 1) as f64) as usize;
        let order = sorted[rank];
        assert!(
            (got - order).abs() <= SKETCH_RELATIVE_ERROR * order,
            "p{q}: {got} vs order statistic {order}"
        );
        // And so within α plus the gap to the next order statistic of the interpolated percentile.
        let exact = percentile(&sorted, q);
        let gap = (sorted[rank + 1] - order) / order;
        assert!((got - exact).abs() <= (SKETCH_RELATIVE_ERROR + gap) * exact * 1.000_001);
    }
    assert_eq!(s.max, sorted[n - 1]);
    let mean = values.iter().sum::<f64>() / n as f64;
    assert!((s.mean - mean).abs() <= 1e-9 * mean);
}

fn compare_parallel(router: &str) -> (Vec<RequestRecord>, Vec<RequestRecord>, Summary, Summary) {
    let sc = quickstart(&[
        "trace.synthetic.requests=12000",
        "trace.synthetic.rate=180",
        "cluster.replicas=8",
        &format!("cluster.router={router}"),
    ]);
    let w = Arc::new(sc.builtin_workload().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let seq = streamed(
        &sc,
        &w,
        2,
        &dir.path().join("seq"),
        &StreamOptions::default(),
    );
    let par = streamed(
        &sc,
        &w,
        2,
        &dir.path().join("par"),
        &StreamOptions {
            sync_interval: Some(100_000_000),
            ..Default::default()
        },
    );
    assert!(par.stats.windows > 100, "{} windows", par.stats.windows);
    assert_eq!(seq.stats.windows, 0);
    (
        records_of(&dir.path().join("seq")),
        records_of(&dir.path().join("par")),
        seq.summary,
        par.summary,
    )
}

#[test]
fn parallel_mode_is_exact_for_load_blind_routers() {
    for router in ["round_robin", "hash"] {
        let (seq, par, s, p) = compare_parallel(router);
        assert_eq!(seq.len(), 12000);
        assert_eq!(seq, par, "{router}");
        assert_eq!(s, p, "{router}");
    }
}

/// The stated bound for load-aware routers (README, "Parallel mode"): with 100 ms synchronisation on
/// this 8-replica cluster, mean and p99 of TPOT and end-to-end latency within 3 %, of TTFT (about
/// 20 ms here, so a step boundary more or less is a large fraction) within 15 %, SLO attainment within
/// one point. Measured: TPOT and E2E within 2.1 %, TTFT within 13 % (least_tokens p99).
#[test]
fn parallel_mode_stays_within_the_stated_bound_for_load_aware_routers() {
    for router in ["least_outstanding", "least_tokens", "power_of_two"] {
        let (seq, par, s, p) = compare_parallel(router);
        assert_eq!(seq.len(), par.len());
        let close = |a: f64, b: f64, tol: f64, what: &str| {
            assert!(
                (a - b).abs() <= tol * a.abs(),
                "{router} {what}: sequential {a} vs parallel {b}"
            );
        };
        for (what, x, y, tol) in [
            ("ttft", s.ttft, p.ttft, 0.15),
            ("tpot", s.tpot, p.tpot, 0.03),
            ("e2e", s.e2e, p.e2e, 0.03),
        ] {
            close(x.mean, y.mean, tol, &format!("{what} mean"));
            close(x.p99, y.p99, tol, &format!("{what} p99"));
        }
        assert!((s.slo_attainment - p.slo_attainment).abs() <= 0.01);
        // Every request still finishes once.
        assert!(par.iter().enumerate().all(|(i, r)| r.id == i as u64));
    }
}

#[test]
fn cancelled_run_leaves_a_directory_that_says_it_is_partial() {
    let sc = quickstart(&["trace.synthetic.requests=5000", "trace.synthetic.rate=40"]);
    let w = Arc::new(sc.builtin_workload().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    // Cancel from the progress callback once 1000 requests have finished (a signal handler does
    // the same from outside).
    let tick = |done: usize, _: usize| {
        if done >= 1000 {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    for (sub, sync) in [("seq", None), ("par", Some(100_000_000))] {
        cancel.store(false, std::sync::atomic::Ordering::Relaxed);
        let d = dir.path().join(sub);
        let run = streamed(
            &sc,
            &w,
            0,
            &d,
            &StreamOptions {
                progress: Some(&tick),
                cancel: Some(&cancel),
                sync_interval: sync,
                ..Default::default()
            },
        );
        assert!(run.stats.interrupted);
        assert!(d.join(INCOMPLETE).exists());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                .unwrap();
        assert!(json["partial"].as_str().unwrap().contains("interrupted"));
        assert_eq!(json["requests"], 5000);
        let rows = records_of(&d);
        assert_eq!(rows.len(), run.stats.finished);
        assert!(rows.len() >= 1000 && rows.len() < 5000, "{}", rows.len());
    }
}
