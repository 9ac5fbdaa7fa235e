//! End-to-end tests of `specsim sweep`, `merge`, `plan` and `figures`: shard outputs merge into the
//! bytes of an unsharded sweep whatever the thread count, the planner writes its table and plot, and
//! the figures command draws files from a tiny scenario.

use std::path::Path;
use std::process::{Command, Output};

fn specsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specsim"))
        .args(args)
        .output()
        .expect("run specsim")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const SWEEP: &str = r#"
seed = 5
[trace.synthetic]
requests = 120
rate = 8.0
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
"trace.synthetic.rate" = [4.0, 30.0]
policy = [{ kind = "none" }, { kind = "static", k = 3 }, { kind = "specserve" }]
"#;

#[test]
fn sharded_sweeps_merge_into_the_unsharded_table() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("s.toml");
    std::fs::write(&sc, SWEEP).unwrap();
    let p = |x: &str| dir.path().join(x).to_str().unwrap().to_string();
    let sc = sc.to_str().unwrap();
    ok(&specsim(&[
        "sweep",
        sc,
        "-q",
        "--threads",
        "1",
        "--out",
        &p("full"),
    ]));
    ok(&specsim(&[
        "sweep",
        sc,
        "-q",
        "--threads",
        "2",
        "--out",
        &p("full2"),
    ]));
    for i in 0..4 {
        ok(&specsim(&[
            "sweep",
            sc,
            "-q",
            "--shard",
            &format!("{i}/4"),
            "--out",
            &p(&format!("shard{i}")),
        ]));
    }
    let merged = specsim(&[
        "merge",
        &p("shard3"),
        &p("shard1"),
        &p("shard0"),
        &p("shard2"),
        "--out",
        &p("merged"),
    ]);
    ok(&merged);
    let read = |d: &str| std::fs::read_to_string(Path::new(&p(d)).join("results.csv")).unwrap();
    let full = read("full");
    assert_eq!(full.lines().count(), 3 + 6, "{full}");
    assert_eq!(full, read("full2"));
    assert_eq!(full, read("merged"));
    #[cfg(feature = "parquet")]
    {
        // results.parquet beside each CSV: the same table, typed, byte-identical across threads and
        // merged shards.
        use specsim_sim::sweep::parquet::{read_parquet, Value};
        use specsim_sim::sweep::SweepTable;
        let bytes = |d: &str| std::fs::read(Path::new(&p(d)).join("results.parquet")).unwrap();
        assert_eq!(bytes("full"), bytes("full2"));
        assert_eq!(bytes("full"), bytes("merged"));
        let csv = SweepTable::parse_csv(&full, "full").unwrap();
        let t = read_parquet(&Path::new(&p("merged")).join("results.parquet")).unwrap();
        assert_eq!((&t.columns, t.total_cells), (&csv.columns, 6));
        assert_eq!(t.rows.len(), csv.rows.len());
        for (typed, text) in t.rows.iter().zip(&csv.rows) {
            assert!(matches!(typed[0], Value::Int(_)), "cell: {:?}", typed[0]);
            assert!(matches!(typed[1], Value::Float(_)), "rate: {:?}", typed[1]);
            assert!(matches!(typed[2], Value::Text(_)), "policy: {:?}", typed[2]);
            for (v, s) in typed.iter().zip(text) {
                match v {
                    Value::Int(x) => assert_eq!(x.to_string(), *s),
                    Value::Float(x) => assert_eq!(x.to_bits(), s.parse::<f64>().unwrap().to_bits()),
                    Value::Bool(x) => assert_eq!(x.to_string(), *s),
                    Value::Text(x) => assert_eq!(x, s),
                }
            }
        }
    }
    // A missing shard is an error naming the gap.
    let partial = specsim(&["merge", &p("shard0"), "--out", &p("partial")]);
    assert!(!partial.status.success());
    assert!(String::from_utf8_lossy(&partial.stderr).contains("of 6 cells"));
    let bad = specsim(&["sweep", sc, "--shard", "4/4"]);
    assert!(!bad.status.success());
}

const PLAN: &str = r#"
seed = 1
[trace.synthetic]
requests = 300
rate = 50.0
arrival = { kind = "uniform" }
prompt = { kind = "fixed", value = 1 }
output = { kind = "fixed", value = 1 }
[slo]
ttft_s = 0.015
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
tolerance = 0.05
[plan.prices]
X = 2.0
"#;

#[test]
fn plan_prints_the_pareto_table_and_writes_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("p.toml");
    std::fs::write(&sc, PLAN).unwrap();
    let out = dir.path().join("plan");
    let o = specsim(&[
        "plan",
        sc.to_str().unwrap(),
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    // One replica carries about 2× the trace, two about 4×: the planned 3× needs two ($4/hour).
    assert!(
        stdout.contains("cheapest meeting the target: 2 ×"),
        "{stdout}"
    );
    assert!(stdout.contains("$4.00/hour"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("plan.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    for f in ["plan.svg", "plan.png"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 1000, "{f}");
    }
}

#[test]
fn figures_draws_svg_and_png_from_a_tiny_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("paper");
    std::fs::create_dir_all(&scen).unwrap();
    let tiny = SWEEP.replace("requests = 120", "requests = 40");
    std::fs::write(scen.join("fig3_load.toml"), &tiny).unwrap();
    std::fs::write(
        scen.join("fig1_efficiency.toml"),
        tiny.split("[sweep]").next().unwrap(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = specsim(&[
        "figures",
        "--scenarios",
        scen.to_str().unwrap(),
        "--only",
        "1,3,7",
        "--parity",
        dir.path().join("none.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("fig7 skipped"));
    for f in [
        "fig1_efficiency.svg",
        "fig1_efficiency.png",
        "fig3_load.svg",
        "fig3_load.png",
    ] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 1000, "{f}");
    }
    let svg = std::fs::read_to_string(out.join("fig3_load.svg")).unwrap();
    assert!(svg.contains("request rate (req/s)") && svg.contains("specserve"));
    // The figure is drawn from the table the sweep wrote, which stays on disk.
    let table = std::fs::read_to_string(out.join("data/fig3_load-sweep/results.csv")).unwrap();
    assert!(table.starts_with("# cells="), "{table}");
    // A figure whose scenario is missing is an error when asked for by number.
    let missing = specsim(&[
        "figures",
        "--scenarios",
        scen.to_str().unwrap(),
        "--only",
        "6",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
}

/// Figure 7 without a parity.csv: drawn from a committed study's comparison JSONs (one point per cell,
/// policy, metric and percentile), and a malformed study file is an error naming it.
#[test]
fn figure_7_draws_a_committed_study() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    std::fs::create_dir_all(&study).unwrap();
    let cell = r#"{"policies": [{"policy": "specserve", "metrics": [
        {"metric": "ttft", "predicted_p": [1.0, 2.0, 3.0], "measured_p": [1.1, 2.2, 2.9]},
        {"metric": "tpot", "predicted_p": [0.1, 0.2, 0.3], "measured_p": [0.1, 0.25, 0.35]}]}]}"#;
    std::fs::write(study.join("cell-a.json"), cell).unwrap();
    let out = dir.path().join("out");
    let fig7 = |extra: &[&str]| {
        let mut a = vec!["figures", "--only", "7", "--out", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        specsim(&a)
    };
    let absent = dir.path().join("absent.csv");
    let study_arg = study.to_str().unwrap();
    // An explicit --parity that does not exist skips the figure rather than silently switching source.
    let o = fig7(&["--parity", absent.to_str().unwrap(), "--study", study_arg]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("fig7 skipped"));
    ok(&fig7(&["--study", study_arg]));
    let svg = std::fs::read_to_string(out.join("fig7_parity.svg")).unwrap();
    assert!(
        svg.contains("1 cells") && svg.contains("specserve"),
        "{svg:.300}"
    );
    std::fs::write(study.join("cell-b.json"), "{ not json").unwrap();
    let bad = fig7(&["--study", study_arg]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cell-b.json"));
}

/// Shards swept with different `--set` values are different experiments: merge refuses them and names
/// the key (issue 17), from the scenario.toml beside each table, or by fingerprint without it.
#[test]
fn merge_refuses_shards_of_different_experiments_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("s.toml");
    std::fs::write(&sc, SWEEP).unwrap();
    let p = |x: &str| dir.path().join(x).to_str().unwrap().to_string();
    let sc = sc.to_str().unwrap();
    for (i, n) in [(0, 400), (1, 300)] {
        ok(&specsim(&[
            "sweep",
            sc,
            "-q",
            "--shard",
            &format!("{i}/2"),
            "--set",
            &format!("trace.synthetic.requests={n}"),
            "--out",
            &p(&format!("shard{i}")),
        ]));
    }
    let m = specsim(&["merge", &p("shard0"), &p("shard1"), "--out", &p("merged")]);
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(!m.status.success(), "{err}");
    assert!(
        err.contains("trace.synthetic.requests = 400") && err.contains("300"),
        "{err}"
    );
    assert!(!Path::new(&p("merged")).join("results.csv").exists());
    // Only the CSVs: the fingerprints still differ.
    std::fs::remove_file(Path::new(&p("shard1")).join("scenario.toml")).unwrap();
    let m = specsim(&["merge", &p("shard0"), &p("shard1"), "--out", &p("merged")]);
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(!m.status.success() && err.contains("fingerprint"), "{err}");
    // The same experiment merges.
    ok(&specsim(&[
        "sweep",
        sc,
        "-q",
        "--shard",
        "1/2",
        "--set",
        "trace.synthetic.requests=400",
        "--out",
        &p("shard1"),
    ]));
    ok(&specsim(&[
        "merge",
        &p("shard0"),
        &p("shard1"),
        "--out",
        &p("merged"),
    ]));
    let merged = std::fs::read_to_string(Path::new(&p("merged")).join("results.csv")).unwrap();
    assert!(
        merged.lines().nth(1).unwrap().starts_with("# scenario="),
        "{merged}"
    );
}

/// A sweep killed into a folder holding an older table leaves no complete-looking table behind.
#[test]
fn a_killed_sweep_leaves_no_stale_table() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("s.toml");
    std::fs::write(&sc, SWEEP).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let old = "# cells=6\ncell,x\n0,old\n";
    std::fs::write(out.join("results.csv"), old).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_specsim"))
        .args([
            "sweep",
            sc.to_str().unwrap(),
            "-q",
            "--threads",
            "1",
            "--set",
            "trace.synthetic.requests=3000000",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while out.join("results.csv").exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sweep ended too soon"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("results.csv").exists(), "stale table left behind");
    assert!(!out.join("results.parquet").exists());
}

#[test]
fn figure_3_takes_a_rate_scale_axis_over_a_timestamp_trace() {
    // 21 arrivals over 10 s (2 req/s) from a timestamp-only file; the load axis is the trace's rate
    // scaled, as the paper-setting scenarios sweep the AdaSpec arrivals.
    let dir = tempfile::tempdir().unwrap();
    let scen = dir.path().join("paper");
    std::fs::create_dir_all(&scen).unwrap();
    let times: String = (0..=20).map(|i| format!("{}\n", i as f64 * 0.5)).collect();
    std::fs::write(scen.join("t.csv"), format!("Timestamp\n{times}")).unwrap();
    let text = SWEEP
        .replace(
            "[trace.synthetic]\nrequests = 120\nrate = 8.0\n",
            "[trace.timestamps]\npath = \"t.csv\"\n",
        )
        .replace(
            "\"trace.synthetic.rate\" = [4.0, 30.0]",
            "\"trace.rate_scale\" = [1.0, 3.0]",
        );
    std::fs::write(scen.join("fig3_load.toml"), &text).unwrap();
    let out = dir.path().join("out");
    let o = specsim(&[
        "figures",
        "--scenarios",
        scen.to_str().unwrap(),
        "--only",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let svg = std::fs::read_to_string(out.join("fig3_load.svg")).unwrap();
    assert!(svg.contains("t arrivals"), "the title names the arrivals");
    let table = std::fs::read_to_string(out.join("data/fig3_load-sweep/results.csv")).unwrap();
    assert!(table.contains("trace.rate_scale"), "{table}");
}
