//! `specsim trace stats|convert|synth` through the binary.

use specsim_traces::{read_trace, Format};
use std::process::Command;

/// Runs `specsim trace ARGS`; Ok(stdout) on success, Err(stderr) on failure.
fn trace(args: &[&str]) -> Result<String, String> {
    let o = Command::new(env!("CARGO_BIN_EXE_specsim"))
        .arg("trace")
        .args(args)
        .output()
        .expect("run specsim");
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn synth_then_convert_then_stats() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("w.csv");
    let vidur = dir.path().join("w_vidur.csv");
    let n = native.to_str().unwrap();
    trace(&[
        "synth",
        "--requests",
        "500",
        "--rate",
        "5",
        "--arrival",
        "bursty",
        "--burst-factor",
        "6",
        "--prompt",
        "lognormal:800,400",
        "--output",
        "uniform:10,200",
        "--seed",
        "3",
        "--out",
        n,
    ])
    .unwrap();
    let t = read_trace(&native, None).unwrap();
    assert_eq!((t.format, t.rows.len()), (Format::Native, 500));
    assert!(t.rows.iter().all(|r| (10..=200).contains(&r.output)));

    trace(&[
        "convert",
        n,
        "--to",
        "vidur",
        "--out",
        vidur.to_str().unwrap(),
    ])
    .unwrap();
    let v = read_trace(&vidur, None).unwrap();
    assert_eq!(v.format, Format::Vidur);
    assert_eq!(v.rows, t.rows, "the Vidur file carries the same requests");

    trace(&["stats", vidur.to_str().unwrap(), "--json", "--window", "10"]).unwrap();
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let e = trace(&["convert", "x.csv", "--to", "parquet"]).unwrap_err();
    assert!(e.contains("native or vidur"), "{e}");
    let e = trace(&["stats", "/definitely/not/here.csv"]).unwrap_err();
    assert!(e.contains("not/here.csv"), "{e}");
    let e = trace(&[
        "synth",
        "--requests",
        "5",
        "--rate",
        "1",
        "--prompt",
        "zipf:1",
        "--output",
        "fixed:1",
    ])
    .unwrap_err();
    assert!(e.contains("--prompt") && e.contains("zipf:1"), "{e}");
}

#[test]
fn stats_of_a_scenario_describe_its_workload() {
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.toml");
    trace(&["stats", quickstart]).unwrap();
    // The same workload exported: 2,000 requests, as the quickstart synthesises.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.csv");
    trace(&[
        "convert",
        quickstart,
        "--to",
        "native",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(read_trace(&out, None).unwrap().rows.len(), 2000);
}
