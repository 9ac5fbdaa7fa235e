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

/// A loopback server that runs `serve` on every connection (each on its own thread) until the test
/// drops it; returns its URL.
struct BadServer {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BadServer {
    fn start(serve: fn(std::net::TcpStream)) -> BadServer {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            // Bounded: the test ends it, and it stops by itself after two minutes.
            let t0 = std::time::Instant::now();
            while !s.load(std::sync::atomic::Ordering::Relaxed) && t0.elapsed().as_secs() < 120 {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || serve(c));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        BadServer { url, stop }
    }
}

impl Drop for BadServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accepts and never answers (reads the request, holds the connection for a while).
fn black_hole(mut c: std::net::TcpStream) {
    use std::io::Read;
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs() < 60 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Answers with headers that promise a body, then stalls.
fn header_then_stall(mut c: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 4096];
    let _ = c.read(&mut buf);
    let _ = c.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"data\": [",
    );
    let _ = c.flush();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// Replay against a server that never answers, or stalls after its headers: the set-up requests
/// (model name, /tokenize, the characters-per-token probe) are bounded by --timeout and --deadline, so
/// the command ends within the deadline plus a small margin, exits non-zero, and leaves a record.
#[test]
fn replay_against_a_black_hole_or_stalling_server_ends_by_its_deadline_with_a_record() {
    for (name, serve) in [
        ("black-hole", black_hole as fn(std::net::TcpStream)),
        ("header-then-stall", header_then_stall),
    ] {
        let server = BadServer::start(serve);
        let dir = tempfile::tempdir().unwrap();
        let sc = scenario(dir.path());
        let prompts = dir.path().join("prompts.jsonl");
        std::fs::write(
            &prompts,
            "{\"category\": \"writing\", \"turns\": [\"Write a short story about a lighthouse keeper who finds a message in a bottle, and what it says.\"]}\n",
        )
        .unwrap();
        let out = dir.path().join("meas");
        let t0 = std::time::Instant::now();
        let o = specsim(&[
            "replay",
            &sc,
            "--endpoint",
            &server.url,
            "--prompts",
            prompts.to_str().unwrap(),
            "--timeout",
            "2",
            "--deadline",
            "6",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ]);
        let took = t0.elapsed().as_secs_f64();
        let err = stderr(&o);
        assert!(!o.status.success(), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(took < 6.0 + 8.0, "{name}: took {took:.1} s: {err}");
        // A record: every request is a failed row, and replay.json says why.
        let csv = std::fs::read_to_string(out.join("measured/requests.csv"))
            .unwrap_or_else(|e| panic!("{name}: no record ({e}): {err}"));
        assert_eq!(csv.lines().count(), 6, "{name}: {csv}");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("measured/summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["failed"], 5, "{name}");
        assert!(out.join("measured/replay.json").is_file(), "{name}");
    }
}

#[test]
fn in_process_replicates_make_a_fidelity_cell_and_a_dead_one_is_left_out() {
    // Two replicates of the scripted engine served in process (10 ms forwards), then one cell from
    // them plus a replicate whose directory holds nothing (a server that never came up).
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path());
    let out = dir.path().join("meas");
    for rep in ["r1", "r2"] {
        let o = specsim(&[
            "replay",
            &sc,
            "--in-process",
            "--fake",
            "--fake-step-ms",
            "10",
            "--policy",
            "none",
            "--token-prompts",
            "--policy-label",
            "none",
            "--noise",
            "--noise-probe-reps",
            "3",
            "-q",
            "--out",
            out.join(rep).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = out.join(rep).join("none");
        for f in [
            "requests.csv",
            "replay.json",
            "steps.csv",
            "metrics.txt",
            "noise.json",
        ] {
            assert!(got.join(f).is_file(), "{rep}: no {f}");
        }
        // Every probe repetition is recorded, before and after.
        let noise: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(got.join("noise.json")).unwrap())
                .unwrap();
        for side in 0..2 {
            assert_eq!(noise["probe_reps_s"][side].as_array().unwrap().len(), 3);
        }
    }
    let dead = out.join("r3").join("none");
    std::fs::create_dir_all(&dead).unwrap();
    let cell = dir.path().join("cell");
    let o = specsim(&[
        "fidelity",
        &sc,
        "--policy",
        "none",
        "--measured",
        out.join("r1/none").to_str().unwrap(),
        out.join("r2/none").to_str().unwrap(),
        dead.to_str().unwrap(),
        "--seeds",
        "2",
        "--warmup",
        "1",
        "--out",
        cell.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cell.join("cell.json")).unwrap()).unwrap();
    assert_eq!(report["measured_replicates"], 2);
    assert_eq!(report["predicted_replicates"], 2);
    let excluded = report["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 1, "{report}");
    assert!(excluded[0][0].as_str().unwrap().contains("r3"));
    // Every metric has a verdict; both replicates had a step log, so both have an engine term.
    assert_eq!(report["metrics"].as_array().unwrap().len(), 3);
    let engine = report["engine"].as_array().unwrap();
    assert_eq!(engine.len(), 2);
    for e in engine {
        assert_eq!(e["requests"], 5, "{e}");
    }
    assert!(std::fs::read_to_string(cell.join("cell.md"))
        .unwrap()
        .contains("left out"));
}
