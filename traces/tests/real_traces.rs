//! The real traces in the shared folder read with the statistics their `SOURCES.md` states
//! (computed there independently of this crate). Skipped, with a message, when the folder is absent.

mod common;

use common::shared_traces;
use specsim_sim::trace_config::TraceConfig;
use specsim_traces::stats::LengthStats;
use specsim_traces::{load_workload, read_trace, Format, TraceStats};

/// SOURCES.md figures for one length column: mean / p50 / p99 [min, max].
struct Len(f64, f64, f64, u32, u32);

#[track_caller]
fn check_len(what: &str, s: &LengthStats, want: Len) {
    close(&format!("{what} mean"), s.mean, want.0, 0.05);
    // Percentiles are printed rounded to whole tokens in SOURCES.md.
    close(&format!("{what} p50"), s.p50, want.1, 0.5);
    close(&format!("{what} p99"), s.p99, want.2, 0.5);
    assert_eq!((s.min, s.max), (want.3, want.4), "{what} range");
}

struct Expect {
    file: &'static str,
    format: Format,
    rows: usize,
    /// Span in seconds and mean rate (req/s), as SOURCES.md rounds them.
    arrivals: Option<(f64, f64, f64)>,
    input: Len,
    output: Len,
}

fn check(e: Expect) {
    let Some(dir) = shared_traces() else { return };
    let t = read_trace(&dir.join(e.file), None).unwrap();
    assert_eq!(t.format, e.format, "{}", e.file);
    assert_eq!(t.rows.len(), e.rows, "{}", e.file);
    assert_eq!(
        t.rows_read as usize, e.rows,
        "{}: no row is skipped",
        e.file
    );
    assert!(t.warnings.is_empty(), "{}: {:?}", e.file, t.warnings);
    let s = TraceStats::of(&t.rows, t.has_arrivals(), 60.0);
    match (e.arrivals, &s.arrivals) {
        (Some((span, span_tol, rate)), Some(a)) => {
            close("span", a.span_s, span, span_tol);
            close("mean rate", a.mean_rate, rate, 0.005);
        }
        (None, None) => {}
        (want, got) => panic!("{}: arrivals {want:?} vs {got:?}", e.file),
    }
    check_len(&format!("{} input", e.file), &s.prompt, e.input);
    check_len(&format!("{} output", e.file), &s.output, e.output);
}

#[test]
fn azure_2023_code_trace_matches_its_published_statistics() {
    // 18:17:03.98 -> 19:14:19.93 is 3,435.95 s.
    check(Expect {
        file: "AzureLLMInferenceTrace_code.csv",
        format: Format::Azure,
        rows: 8_819,
        arrivals: Some((3_435.95, 0.01, 2.57)),
        input: Len(2_047.8, 1_469.0, 7_436.0, 3, 7_437),
        output: Len(27.9, 13.0, 251.0, 6, 1_899),
    });
}

#[test]
fn azure_2023_conv_trace_matches_its_published_statistics() {
    // 18:15:46.68 -> 19:14:08.40 is 3,501.72 s.
    check(Expect {
        file: "AzureLLMInferenceTrace_conv.csv",
        format: Format::Azure,
        rows: 19_366,
        arrivals: Some((3_501.72, 0.01, 5.53)),
        input: Len(1_154.7, 1_020.0, 4_142.0, 2, 14_050),
        output: Len(211.1, 129.0, 601.0, 7, 1_000),
    });
}

#[test]
fn mooncake_conversation_trace_matches_its_published_statistics() {
    check(Expect {
        file: "conversation_trace.jsonl",
        format: Format::Mooncake,
        rows: 12_031,
        arrivals: Some((3_536.999, 1e-6, 3.40)),
        input: Len(12_035.1, 6_909.0, 85_400.0, 891, 126_195),
        output: Len(342.6, 350.0, 1_119.0, 1, 2_000),
    });
}

#[test]
fn mooncake_synthetic_trace_matches_its_published_statistics() {
    check(Expect {
        file: "synthetic_trace.jsonl",
        format: Format::Mooncake,
        rows: 3_993,
        arrivals: Some((1_022.025, 1e-6, 3.91)),
        input: Len(15_325.5, 11_587.0, 66_456.0, 13, 191_378),
        output: Len(149.1, 69.0, 768.0, 1, 893),
    });
}

#[test]
fn sharegpt_length_statistics_read_as_a_length_distribution() {
    check(Expect {
        file: "sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
        format: Format::Lengths,
        rows: 30_731,
        arrivals: None,
        input: Len(2_340.0, 1_730.0, 7_434.0, 1, 8_141),
        output: Len(438.7, 415.0, 998.0, 2, 1_024),
    });
}

#[test]
fn arxiv_length_statistics_read_as_a_length_distribution() {
    check(Expect {
        file: "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        format: Format::Lengths,
        rows: 28_257,
        arrivals: None,
        input: Len(2_588.1, 2_730.0, 3_933.0, 1, 4_054),
        output: Len(291.4, 167.0, 3_271.0, 5, 4_056),
    });
}

#[test]
fn mooncake_prefix_hashes_follow_their_requests() {
    let Some(dir) = shared_traces() else { return };
    for (file, mean, p50, p99) in [
        ("conversation_trace.jsonl", 24.0, 14.0, 167.0),
        ("synthetic_trace.jsonl", 30.5, 23.0, 130.0),
    ] {
        let cfg = TraceConfig {
            path: Some(dir.join(file)),
            ..Default::default()
        };
        let l = load_workload(&cfg, &dir, 0).unwrap();
        let p = l.prefix.expect("mooncake keeps hash_ids");
        assert_eq!(p.block_tokens, 512);
        assert_eq!(p.len(), l.workload.len());
        let counts: Vec<u32> = (0..p.len()).map(|i| p.blocks(i).len() as u32).collect();
        let s = LengthStats::of(&counts);
        close("hash_ids mean", s.mean, mean, 0.05);
        close("hash_ids p50", s.p50, p50, 0.5);
        close("hash_ids p99", s.p99, p99, 0.5);
        // A request's blocks cover its prompt: ceil(input / 512) blocks.
        for (r, i) in l.workload.requests.iter().zip(0..) {
            assert_eq!(
                p.blocks(i).len() as u32,
                r.prompt_tokens.div_ceil(512),
                "{file} request {i}"
            );
        }
    }
}

#[test]
fn rate_scale_2_halves_the_azure_span_exactly() {
    let Some(dir) = shared_traces() else { return };
    let path = dir.join("AzureLLMInferenceTrace_conv.csv");
    let plain = load_workload(
        &TraceConfig {
            path: Some(path.clone()),
            ..Default::default()
        },
        &dir,
        0,
    )
    .unwrap();
    let cfg = TraceConfig {
        path: Some(path),
        rate_scale: Some(2.0),
        ..Default::default()
    };
    let fast = load_workload(&cfg, &dir, 0).unwrap();
    assert_eq!(fast.workload.len(), plain.workload.len());
    // Azure timestamps have 100 ns resolution, so every time is even in ns and halves exactly.
    assert_eq!(fast.workload.span_ns() * 2, plain.workload.span_ns());
    for (a, b) in fast.workload.requests.iter().zip(&plain.workload.requests) {
        assert_eq!(a.arrival_ns * 2, b.arrival_ns);
    }
}

#[test]
fn shared_prefix_paths_resolve_from_any_scenario_directory() {
    let Some(dir) = shared_traces() else { return };
    let cfg = TraceConfig {
        path: Some("shared:traces/AzureLLMInferenceTrace_code.csv".into()),
        start_s: Some(600.0),
        duration_s: Some(600.0),
        target_rate: Some(4.0),
        max_context: Some(4096),
        categories: Some([("coding".to_string(), 1.0)].into_iter().collect()),
        ..Default::default()
    };
    let l = load_workload(&cfg, &dir, 0).unwrap();
    assert!(l.workload.len() > 1000, "{}", l.report);
    assert!(l.report.clipped > 0, "{}", l.report);
    assert!(l
        .workload
        .requests
        .iter()
        .all(|r| r.prompt_tokens + r.output_tokens <= 4096));
    assert_eq!(l.workload.categories, vec!["coding"]);
    let rate = l.workload.len() as f64
        / (l.workload.span_ns() - l.workload.requests[0].arrival_ns) as f64
        * 1e9;
    // target_rate counts requests over first-to-last span; the window keeps its offset from its start.
    assert!(rate >= 4.0 - 1e-6, "{rate}");
}

#[test]
fn a_length_file_as_path_explains_how_to_use_it() {
    let Some(dir) = shared_traces() else { return };
    let cfg = TraceConfig {
        path: Some(dir.join("sharegpt_8k_filtered_stats_llama2_tokenizer.csv")),
        ..Default::default()
    };
    let e = load_workload(&cfg, &dir, 0).unwrap_err().to_string();
    assert!(e.contains("length-only") && e.contains("empirical"), "{e}");
}

/// Asserts `got` is within `tol` of `want`, naming `what`.
#[track_caller]
pub fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} ± {tol}"
    );
}
