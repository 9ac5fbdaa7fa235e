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

/// Extreme values fail with one line naming the key (issue 17): no capacity-overflow panic, no giant
/// allocation, no absurd clock, no silent clamping, no wrapped counts.
#[test]
fn out_of_range_values_name_their_key() {
    let cases: &[(&str, &str)] = &[
        (
            "trace.synthetic.requests=9223372036854775807",
            "trace.synthetic.requests",
        ),
        ("cluster.replicas=100000000", "cluster.replicas"),
        ("trace.synthetic.rate=1e-308", "trace.synthetic.rate"),
        ("trace.synthetic.rate=-3", "trace.synthetic.rate"),
        ("models.tp=0", "models.tp"),
        ("models.draft_tp=1000", "models.draft_tp"),
        ("cluster.groups=[]", "cluster.groups"),
        ("cluster.groups=[{replicas=1, tp=0}]", "cluster.groups.0.tp"),
        ("engine.block_size=0", "engine.block_size"),
        ("engine.max_num_seqs=0", "engine.max_num_seqs"),
        ("engine.max_batched_tokens=0", "engine.max_batched_tokens"),
        ("engine.kv_blocks=0", "engine.kv_blocks"),
        (
            "engine.gpu_memory_utilization=1.5",
            "engine.gpu_memory_utilization",
        ),
        ("policies.1.k=100000", "policies.1.k"),
        ("policies.2.k_max=4294967295", "policies.2.k_max"),
        ("slo.ttft_s=inf", "slo.ttft_s"),
        ("slo.tpot_s=nan", "slo.tpot_s"),
        (
            "trace.synthetic.prompt.max=4294967295",
            "trace.synthetic.prompt.max",
        ),
        (
            "trace.synthetic.output.mean=0",
            "trace.synthetic.output.mean",
        ),
        (
            "acceptance.confidence_beta=[0.0, 2.0]",
            "acceptance.confidence_beta.0",
        ),
        ("cost.target_overhead_ms=-1", "cost.target_overhead_ms"),
        ("seed=-1", "seed"),
    ];
    for (set, key) in cases {
        let (ok, err, path) = run_text(
            &quickstart(),
            &["--set", "trace.synthetic.requests=50", "--set", set],
        );
        assert_one_clear_line(ok, &err, &[&path, key]);
    }
    // A rate that is in range but spreads the requests over more than the clock's span.
    let (ok, err, _) = run_text(&quickstart(), &["--set", "trace.synthetic.rate=0.000001"]);
    assert_one_clear_line(ok, &err, &["trace.synthetic.rate", "spans"]);
}

#[test]
fn set_type_errors_name_the_key() {
    let (ok, err, path) = run_text(&quickstart(), &["--set", "trace.synthetic.rate=abc"]);
    assert_one_clear_line(ok, &err, &[&path, "trace.synthetic.rate", "abc"]);
    let (ok, err, _) = run_text(&quickstart(), &["--set", "engine.chunked_prefill=7"]);
    assert_one_clear_line(ok, &err, &["engine.chunked_prefill"]);
}

/// A scenario `name` becomes `out/<name>`: one that would leave the output folder is refused, and
/// nothing is written anywhere.
#[test]
fn path_escaping_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let scen = work.join("s.toml");
    let abs = dir.path().join("abs");
    for name in [
        "../../escaped".to_string(),
        "..".to_string(),
        abs.display().to_string(),
        "a/b".to_string(),
        ".hidden".to_string(),
    ] {
        let text = quickstart().replace("name = \"quickstart\"", &format!("name = {:?}", name));
        std::fs::write(&scen, text).unwrap();
        for cmd in ["run", "sweep"] {
            let o = Command::new(env!("CARGO_BIN_EXE_specsim"))
                .current_dir(&work)
                .args([cmd, "-q", "s.toml", "--set", "trace.synthetic.requests=20"])
                .output()
                .unwrap();
            assert_one_clear_line(o.status.success(), &stderr(&o), &["name"]);
        }
    }
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, vec![std::ffi::OsString::from("work")]);
    assert!(!work.join("out").exists());
}

/// Errors quote input files only as a short, escaped excerpt: a binary trace does not flood the
/// terminal, and a `[cost] path` that is not a profile is not echoed.
#[test]
fn foreign_and_binary_files_are_quoted_as_short_escaped_excerpts() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"arrival_s,prompt_tokens,output_tokens\n".to_vec();
    let mut x: u32 = 12345;
    for _ in 0..5000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        bytes.push((x >> 16) as u8);
    }
    let garbage = dir.path().join("garbage.csv");
    std::fs::write(&garbage, &bytes).unwrap();
    let headless = dir.path().join("headless.csv");
    std::fs::write(&headless, &bytes[38..]).unwrap();
    for f in [&garbage, &headless] {
        let o = specsim(&["trace", "stats", f.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(!o.status.success());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.len() < 400, "{} bytes: {err}", err.len());
        assert!(
            !err.trim_end()
                .chars()
                .any(|c| c.is_control() || c == '\u{FFFD}'),
            "{err:?}"
        );
    }
    let secret = dir.path().join("secrets");
    std::fs::write(
        &secret,
        "root:x:0:0:root:/root:/bin/bash\nalice:SECRET-LINE-TWO\nbob:SECRET-LINE-THREE\n",
    )
    .unwrap();
    let (ok, err, _) = run_text(
        &quickstart(),
        &[
            "--set",
            "cost.kind=\"profile\"",
            "--set",
            &format!("cost.path={:?}", secret.display().to_string()),
            "--set",
            "engine.kv_blocks=1000",
        ],
    );
    assert_one_clear_line(ok, &err, &["secrets"]);
    assert!(!err.contains("SECRET"), "{err}");
    assert!(err.len() < 400, "{err}");
}
