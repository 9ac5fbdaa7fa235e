//! End-to-end tests of `specsim replay` and `specsim compare`: a dead engine gives failed rows and a
//! non-zero exit with one clear message (no hang), and a prediction compared with itself has no error.

use std::path::Path;
use std::process::{Command, Output};

fn specsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specsim"))
        .args(args)
        .output()
        .expect("run specsim")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Five requests at 50/s; the rest as the quickstart.
fn scenario(dir: &Path) -> String {
    let text = r#"
name = "tiny"
seed = 1
[trace.synthetic]
requests = 5
rate = 50.0
arrival = { kind = "poisson" }
prompt = { kind = "fixed", value = 16 }
output = { kind = "fixed", value = 8 }
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
kind = "constant"
alpha = 0.7
[[policies]]
kind = "none"
[[policies]]
kind = "specserve"
"#;
    let p = dir.join("tiny.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn replay_of_a_dead_engine_records_every_request_as_failed_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path());
    let out = dir.path().join("meas");
    let url = format!("http://127.0.0.1:{}", dead_port());
    let o = specsim(&[
        "replay",
        &sc,
        "--endpoint",
        &url,
        "--token-prompts",
        "--abort-after",
        "2",
        "--policy-label",
        "specserve",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("5 of 5 requests failed"), "{err}");
    assert!(err.contains("the engine stopped answering"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let csv = std::fs::read_to_string(out.join("specserve/requests.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].ends_with(",error"));
    assert!(lines[1].contains(",connect: "), "{}", lines[1]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("specserve/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["failed"], 5);
    assert_eq!(summary["finished"], 0);
    // Nothing finished: no latency, written as null rather than a perfect 0.0.
    for m in ["ttft", "tpot", "e2e"] {
        for q in ["mean", "p50", "p90", "p99", "max"] {
            assert!(summary[m][q].is_null(), "{m}.{q} = {}", summary[m][q]);
        }
    }
    // Bad input is one line, not a panic.
    let o = specsim(&["replay", &sc, "--endpoint", "https://example.invalid"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("https is not supported"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_prediction_compared_with_itself_has_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path());
    let pred = dir.path().join("pred");
    let o = specsim(&["run", &sc, "-q", "--out", pred.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cmp = dir.path().join("cmp");
    let p = pred.to_str().unwrap();
    let o = specsim(&["compare", p, p, "--out", cmp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("compare.json")).unwrap()).unwrap();
    let policies = json["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 2);
    for p in policies {
        assert_eq!(p["compared"], 5);
        assert_eq!(p["slo_attainment"]["diff_pp"], 0.0);
        for m in p["metrics"].as_array().unwrap() {
            assert_eq!(m["mean_rel_error"], 0.0, "{m}");
            assert_eq!(m["mape"], 0.0, "{m}");
        }
    }
    assert!(cmp.join("compare.md").is_file());
    assert_eq!(
        std::fs::read_to_string(cmp.join("parity.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + 2 * 5 * 3
    );
    // A directory without results: one clear line.
    let o = specsim(&["compare", dir.path().to_str().unwrap(), p]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no requests.csv"), "{}", stderr(&o));
}
