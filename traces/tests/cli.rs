//! The `specsim trace` subcommands through their clap types and `run_trace_command`.

use clap::Parser;
use specsim_traces::{read_trace, run_trace_command, Format, TraceCommand};

/// Stands in for the binary's top level.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: TraceCommand,
}

fn parse(args: &[&str]) -> TraceCommand {
    Cli::try_parse_from(std::iter::once("trace").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

#[test]
fn clap_definitions_are_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn synth_then_convert_then_stats() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("w.csv");
    let vidur = dir.path().join("w_vidur.csv");
    let n = native.to_str().unwrap();
    run_trace_command(parse(&[
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
    ]))
    .unwrap();
    let t = read_trace(&native, None).unwrap();
    assert_eq!((t.format, t.rows.len()), (Format::Native, 500));
    assert!(t.rows.iter().all(|r| (10..=200).contains(&r.output)));

    run_trace_command(parse(&[
        "convert",
        n,
        "--to",
        "vidur",
        "--out",
        vidur.to_str().unwrap(),
    ]))
    .unwrap();
    let v = read_trace(&vidur, None).unwrap();
    assert_eq!(v.format, Format::Vidur);
    assert_eq!(v.rows, t.rows, "the Vidur file carries the same requests");

    run_trace_command(parse(&[
        "stats",
        vidur.to_str().unwrap(),
        "--json",
        "--window",
        "10",
    ]))
    .unwrap();
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    assert!(Cli::try_parse_from(["trace", "convert", "x.csv", "--to", "parquet"]).is_err());
    let e = run_trace_command(parse(&["stats", "/definitely/not/here.csv"])).unwrap_err();
    assert!(format!("{e:#}").contains("not/here.csv"), "{e:#}");
    let e = run_trace_command(parse(&[
        "synth",
        "--requests",
        "5",
        "--rate",
        "1",
        "--prompt",
        "zipf:1",
        "--output",
        "fixed:1",
    ]))
    .unwrap_err();
    assert!(format!("{e:#}").contains("--prompt"), "{e:#}");
}

#[test]
fn stats_of_a_scenario_describe_its_workload() {
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/quickstart.toml");
    run_trace_command(parse(&["stats", quickstart])).unwrap();
    // The same workload exported: 2,000 requests, as the quickstart synthesises.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.csv");
    run_trace_command(parse(&[
        "convert",
        quickstart,
        "--to",
        "native",
        "--out",
        out.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(read_trace(&out, None).unwrap().rows.len(), 2000);
}
