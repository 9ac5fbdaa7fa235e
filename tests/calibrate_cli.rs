//! `specsim calibrate` fails on bad input with one line naming the file, and writes nothing. (The
//! calibration itself is tested end to end on tiny generated models in `calibrate/tests`.)

use std::process::{Command, Output};

fn specsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specsim"))
        .args(args)
        .output()
        .expect("run specsim")
}

fn one_error_line(o: &Output) -> String {
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

#[test]
fn missing_model_and_unreadable_prompt_set_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"category\": \"x\", \"turns\": [\"hi\"]}\n").unwrap();
    let out = dir.path().join("p.toml");
    let (p, o) = (prompts.to_str().unwrap(), out.to_str().unwrap());

    let missing = dir.path().join("nope.gguf");
    let m = missing.to_str().unwrap();
    let line = one_error_line(&specsim(&[
        "calibrate",
        "--draft",
        m,
        "--target",
        m,
        "--out",
        o,
        "--prompts",
        p,
    ]));
    assert!(
        line.contains("draft model") && line.contains("nope.gguf") && line.contains("not found")
    );

    // The model check comes first, so give existing (if useless) files to reach the prompt set.
    let fake = dir.path().join("fake.gguf");
    std::fs::write(&fake, b"not a gguf").unwrap();
    let f = fake.to_str().unwrap();
    let bad = dir.path().join("missing.jsonl");
    let line = one_error_line(&specsim(&[
        "calibrate",
        "--draft",
        f,
        "--target",
        f,
        "--out",
        o,
        "--prompts",
        bad.to_str().unwrap(),
    ]));
    assert!(
        line.contains("prompt set") && line.contains("missing.jsonl"),
        "{line}"
    );

    // A file that is not GGUF is named as the target model.
    let line = one_error_line(&specsim(&[
        "calibrate",
        "--draft",
        f,
        "--target",
        f,
        "--out",
        o,
        "--prompts",
        p,
    ]));
    assert!(
        line.contains("target model") && line.contains("fake.gguf"),
        "{line}"
    );
    assert!(!out.exists());
}

/// `--from-ops` with bad input: one line naming the folder/file and the field, and no profile written.
#[test]
fn from_ops_bad_inputs_are_one_line_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.toml");
    let o = out.to_str().unwrap();
    // A folder that holds no operator tables.
    let d = dir.path().to_str().unwrap();
    let line = one_error_line(&specsim(&[
        "calibrate",
        "--from-ops",
        d,
        "--gpu",
        "H100-SXM",
        "--target",
        "Llama-3.1-8B",
        "--out",
        o,
    ]));
    assert!(line.contains(d) && line.contains("data"), "{line}");
    // Tables present but an unknown GPU, or a model not in the catalog (needs shared/gpu).
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/gpu/aiconfigurator"))
        .find(|p| p.is_dir());
    if let Some(aic) = shared {
        let a = aic.to_str().unwrap();
        let line = one_error_line(&specsim(&[
            "calibrate",
            "--from-ops",
            a,
            "--gpu",
            "B300",
            "--target",
            "Llama-3.1-8B",
            "--out",
            o,
        ]));
        assert!(line.contains("gpu") && line.contains("B300"), "{line}");
        let line = one_error_line(&specsim(&[
            "calibrate",
            "--from-ops",
            a,
            "--gpu",
            "H100-SXM",
            "--target",
            "Nope-9B",
            "--out",
            o,
        ]));
        assert!(
            line.contains("--target") && line.contains("Nope-9B"),
            "{line}"
        );
    } else {
        eprintln!("skipped the table-backed half: shared/gpu/aiconfigurator not found");
    }
    assert!(!out.exists());
}
