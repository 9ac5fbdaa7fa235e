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
    let e = trace(&["convert", "x.csv", "--to", "xlsx"]).unwrap_err();
    assert!(e.contains("native, vidur or parquet"), "{e}");
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

#[cfg(feature = "parquet")]
#[test]
fn parquet_from_synth_and_convert_is_the_same_trace_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let synth = |to: &str, out: &str| {
        trace(&[
            "synth",
            "--requests",
            "3000",
            "--rate",
            "9",
            "--arrival",
            "gamma",
            "--cv",
            "2",
            "--prompt",
            "lognormal:600,300",
            "--output",
            "uniform:1,300",
            "--seed",
            "5",
            "--to",
            to,
            "--out",
            out,
        ])
    };
    synth("native", &p("w.csv")).unwrap();
    synth("parquet", &p("direct.parquet")).unwrap();
    trace(&[
        "convert",
        &p("w.csv"),
        "--to",
        "parquet",
        "--out",
        &p("conv.parquet"),
    ])
    .unwrap();
    // Streamed from the synthesiser or converted from its CSV: the same bytes.
    assert_eq!(
        std::fs::read(p("direct.parquet")).unwrap(),
        std::fs::read(p("conv.parquet")).unwrap()
    );
    // Statistics and a conversion back to CSV read the Parquet file exactly as the CSV.
    let stats = |f: &str| trace(&["stats", f, "--json"]).unwrap();
    assert_eq!(stats(&p("conv.parquet")), stats(&p("w.csv")));
    trace(&[
        "convert",
        &p("conv.parquet"),
        "--to",
        "native",
        "--out",
        &p("back.csv"),
    ])
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(p("back.csv")).unwrap(),
        std::fs::read_to_string(p("w.csv")).unwrap()
    );
    let t = read_trace(std::path::Path::new(&p("conv.parquet")), None).unwrap();
    assert_eq!((t.format, t.rows.len()), (Format::Parquet, 3000));
    // Parquet's footer comes last: stdout is refused with a message, not a panic.
    let e = synth("parquet", "").unwrap_err();
    assert!(e.contains("--out") || e.contains("writing"), "{e}");
    let e = trace(&["convert", &p("w.csv"), "--to", "parquet"]).unwrap_err();
    assert!(e.contains("--out FILE.parquet"), "{e}");
}
