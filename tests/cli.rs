//! End-to-end tests of the `specsim` binary: the front door works, and bad input fails with one clear
//! line naming the file, line or key — never a panic.

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

fn quickstart() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/quickstart.toml"
    ))
    .unwrap()
}

#[test]
fn embedded_quickstart_runs_and_writes_the_result_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    let o = specsim(&[
        "run",
        "-q",
        "--steps",
        "--set",
        "trace.synthetic.requests=300",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for p in ["none", "static-3", "specserve"] {
        assert!(table.lines().any(|l| l.starts_with(p)), "{table}");
        for f in ["requests.csv", "summary.json", "steps.csv"] {
            assert!(out.join(p).join(f).is_file(), "{p}/{f}");
        }
    }
    let rows = std::fs::read_to_string(out.join("none/requests.csv")).unwrap();
    assert_eq!(rows.lines().count(), 301);
    assert!(rows.starts_with("id,arrival_s,prompt_tokens,output_tokens,first_token_s,finish_s,ttft_s,tpot_s,e2e_s,drafted,accepted,steps,slo_met,replica,policy"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("specserve/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["finished"], 300);
    assert!(out.join("comparison.csv").is_file());
}

#[test]
fn same_scenario_twice_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for o in [&a, &b] {
        let r = specsim(&[
            "run",
            "-q",
            "--set",
            "trace.synthetic.requests=200",
            "--out",
            o.to_str().unwrap(),
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
    }
    for p in ["none", "static-3", "specserve"] {
        for f in ["requests.csv", "summary.json"] {
            assert_eq!(
                std::fs::read(a.join(p).join(f)).unwrap(),
                std::fs::read(b.join(p).join(f)).unwrap(),
                "{p}/{f}"
            );
        }
    }
}

/// Runs a scenario text written to a temp file; returns (success, stderr).
fn run_text(text: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out");
    let mut args = vec![
        "run",
        "-q",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = specsim(&args);
    (o.status.success(), stderr(&o), path.display().to_string())
}

fn assert_one_clear_line(ok: bool, err: &str, must: &[&str]) {
    assert!(!ok, "should fail");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    for m in must {
        assert!(lines[0].contains(m), "`{m}` missing from: {}", lines[0]);
    }
}

#[test]
fn unknown_key_names_the_file_line_and_key() {
    let text = quickstart().replace("seed = 42", "seed = 42\nbogus_key = 1");
    let (ok, err, path) = run_text(&text, &[]);
    assert_one_clear_line(ok, &err, &[&format!("{path}:7"), "bogus_key"]);
}

#[test]
fn wrong_type_names_the_line() {
    let text = quickstart().replace("requests = 2000", "requests = \"many\"");
    let (ok, err, path) = run_text(&text, &[]);
    assert_one_clear_line(ok, &err, &[&format!("{path}:9"), "string"]);
}

#[test]
fn missing_trace_file_names_the_key_and_path() {
    let start = quickstart().find("[trace.synthetic]").unwrap();
    let end = quickstart().find("[slo]").unwrap();
    let text = format!(
        "{}[trace]\npath = \"missing.csv\"\n\n{}",
        &quickstart()[..start],
        &quickstart()[end..]
    );
    let (ok, err, _) = run_text(&text, &[]);
    assert_one_clear_line(ok, &err, &["missing.csv"]);
}

#[test]
fn request_longer_than_kv_capacity_is_an_impossible_config() {
    let (ok, err, _) = run_text(&quickstart(), &["--set", "engine.kv_blocks=4"]);
    assert_one_clear_line(ok, &err, &["KV", "kv_blocks"]);
}

#[test]
fn unknown_model_or_hardware_lists_the_catalog() {
    let (ok, err, _) = run_text(&quickstart(), &["--set", "models.hardware=B200"]);
    assert_one_clear_line(ok, &err, &["B200", "A100-80G"]);
    let (ok, err, _) = run_text(&quickstart(), &["--set", "models.target=Llama-3.3-70B"]);
    assert_one_clear_line(ok, &err, &["does not fit"]);
}

#[test]
fn missing_scenario_file_is_one_line() {
    let o = specsim(&["run", "/nonexistent/dir/s.toml"]);
    assert_one_clear_line(
        o.status.success(),
        &stderr(&o),
        &["/nonexistent/dir/s.toml"],
    );
    assert!(!Path::new("/nonexistent").exists());
}
