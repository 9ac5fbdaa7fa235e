//! Sweeps are deterministic across threads and shards; the planner matches a closed form.

use specsim_core::workload::Workload;
use specsim_sim::plan::{plan, PlanOptions};
use specsim_sim::scenario::Scenario;
use specsim_sim::sweep::{merge_tables, run_sweep, Grid, Shard, SweepOptions, SweepTable};
use specsim_sim::SimError;
use std::path::Path;

const SWEEP: &str = r#"
seed = 11
[trace.synthetic]
requests = 150
rate = 10.0
prompt = { kind = "lognormal", mean = 128, std = 64, max = 1024 }
output = { kind = "lognormal", mean = 64, std = 32, max = 256 }
[slo]
ttft_s = 1.0
tpot_s = 0.05
[models]
target = "Vicuna-7B"
draft = "Vicuna-68M"
hardware = "A100-80G"
[cost]
kind = "roofline"
[acceptance]
kind = "calibrated"
confidence_beta = [3.0, 2.0]
[[policies]]
kind = "none"
[sweep]
"trace.synthetic.rate" = [5.0, 40.0]
"models.hardware" = ["A100-80G", "H100-SXM"]
policy = [{ kind = "none" }, { kind = "static", k = 3 }, { kind = "specserve" }]
"#;

fn builtin(sc: &Scenario) -> Result<Workload, SimError> {
    sc.builtin_workload()
}

fn sweep(sc: &Scenario, shard: Shard, threads: usize) -> SweepTable {
    run_sweep(
        sc,
        &builtin,
        &SweepOptions {
            shard,
            threads: Some(threads),
            progress: None,
        },
    )
    .unwrap()
}

#[test]
fn grid_numbers_cells_row_major_with_policy_last() {
    let sc = Scenario::parse(SWEEP, Path::new("s.toml"), Path::new("."), &[]).unwrap();
    let g = Grid::from_scenario(&sc).unwrap();
    let keys: Vec<&str> = g.axes.iter().map(|a| a.key.as_str()).collect();
    // Keys sort alphabetically; the policy axis is always last (fastest).
    assert_eq!(keys, ["models.hardware", "trace.synthetic.rate", "policy"]);
    assert_eq!(g.len(), 12);
    assert_eq!(g.cell(7).coords, vec![1, 0, 1]); // 7 = 1·6 + 0·3 + 1
    let c = g.scenario(&sc, &g.cell(7)).unwrap();
    assert_eq!(c.file.models.unwrap().hardware.as_deref(), Some("H100-SXM"));
    assert_eq!(c.file.policies.len(), 1);
    assert_eq!(g.label(2, 1), "static-3");
}

#[test]
fn sweep_results_are_identical_across_thread_counts_and_merged_shards() {
    let sc = Scenario::parse(SWEEP, Path::new("s.toml"), Path::new("."), &[]).unwrap();
    let one = sweep(&sc, Shard::ALL, 1);
    let three = sweep(&sc, Shard::ALL, 3);
    assert_eq!(one.rows.len(), 12);
    assert_eq!(one.to_csv(), three.to_csv());
    for n in [2usize, 5] {
        let parts: Vec<(String, SweepTable)> = (0..n)
            .map(|i| {
                let t = sweep(&sc, Shard { index: i, count: n }, 2);
                // Round-trip through the CSV, as `specsim merge` does.
                let back = SweepTable::parse_csv(&t.to_csv(), "shard").unwrap();
                (format!("shard {i}"), back)
            })
            .rev()
            .collect();
        let merged = merge_tables(parts, true).unwrap();
        assert_eq!(merged.to_csv(), one.to_csv(), "{n} shards");
    }
    // Cell 4 is (A100, 40 req/s, static-3), as the numbering says.
    assert_eq!(one.rows[4][1..4], ["A100-80G", "40.0", "static-3"]);
    assert!(one.numbers("slo_attainment").unwrap()[0] > 0.99);
}

#[test]
fn merge_rejects_duplicates_and_missing_cells() {
    let sc = Scenario::parse(SWEEP, Path::new("s.toml"), Path::new("."), &[])
        .unwrap()
        .clone();
    let mut small = sc.clone();
    small.file.trace.synthetic.as_mut().unwrap().requests = 20;
    let s0 = sweep(&sc, Shard { index: 0, count: 2 }, 1);
    let err = merge_tables(
        vec![("a".into(), s0.clone()), ("b".into(), s0.clone())],
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("appears in both"), "{err}");
    let err = merge_tables(vec![("a".into(), s0.clone())], true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 of 12 cells"), "{err}");
    assert_eq!(
        merge_tables(vec![("a".into(), s0)], false)
            .unwrap()
            .rows
            .len(),
        6
    );
}

/// One-token requests on a fixed-cost engine with batch 1: each replica is a D/D/1 queue.
const PLAN: &str = r#"
seed = 1
[trace.synthetic]
requests = 400
rate = 50.0
arrival = { kind = "uniform" }
prompt = { kind = "fixed", value = 1 }
output = { kind = "fixed", value = 1 }
[slo]
ttft_s = 0.015
[cluster]
router = "round_robin"
[engine]
kv_blocks = 1000
max_num_seqs = 1
[cost]
kind = "fixed"
target_ms = 10.0
[acceptance]
kind = "constant"
alpha = 0.5
[[policies]]
kind = "none"
[plan]
target = 1.0
rate_scale = 3.0
hardware = ["X"]
replicas = [1, 2, 3]
tolerance = 0.02
coarse_requests = 100
[plan.prices]
X = 1.5
"#;

#[test]
fn planner_matches_the_closed_form_of_deterministic_single_server_queues() {
    // Arrivals every g = 20 ms / s at rate scale s; replica c of n serves every n-th request, each for
    // D = 10 ms. Below capacity every TTFT is D; above it the j-th request on a replica waits
    // j·(D − n·g). All m = N/n requests meet the 15 ms TTFT SLO iff (m − 1)(D − n·g) <= 5 ms, so the
    // largest rate scale is s* = 20·n / (10 − 5/(m − 1)).
    let sc = Scenario::parse(PLAN, Path::new("p.toml"), Path::new("."), &[]).unwrap();
    let w = sc.builtin_workload().unwrap();
    let r = plan(
        &sc,
        &w,
        &PlanOptions {
            threads: Some(2),
            progress: None,
        },
    )
    .unwrap();
    assert_eq!(r.rows.len(), 3);
    for row in &r.rows {
        let n = row.config.replicas as f64;
        let m = 400.0 / n;
        let s_star = 20.0 * n / (10.0 - 5.0 / (m - 1.0));
        assert!(
            row.max_scale <= s_star * (1.0 + 1e-6) && s_star < row.fail_scale,
            "{n} replicas: s* = {s_star}, bracket [{}, {}]",
            row.max_scale,
            row.fail_scale
        );
        assert!(row.fail_scale / row.max_scale <= 1.02 + 1e-9);
        assert_eq!(row.cost_per_hour, 1.5 * n);
    }
    // The planned load (3× the trace) needs two replicas: one carries ~2.0×, two ~4.0×.
    let best = &r.rows[r.cheapest.unwrap()];
    assert_eq!(best.config.replicas, 2);
    assert!(
        r.rows.iter().all(|x| x.pareto),
        "more replicas cost more and carry more"
    );
}
