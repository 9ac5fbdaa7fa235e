//! Hand-made small files in each format, with expected values worked out by hand.

use specsim_sim::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig, TraceConfig};
use specsim_traces::{load_workload, read_trace, read_trace_bytes, Format, TraceStats};
use std::path::Path;

fn read(text: &str, name: &str) -> specsim_traces::RawTrace {
    read_trace_bytes(text.as_bytes(), Path::new(name), None).unwrap()
}

#[test]
fn burstgpt_failed_requests_are_skipped_and_counted() {
    let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                5,ChatGPT,472,18,490,Conversation log\n\
                45,ChatGPT,1087,0,1087,Conversation log\n\
                118,GPT-4,417,276,693,API log\n\
                130,ChatGPT,33,0,33,API log\n\
                131.5,ChatGPT,20,7,27,Conversation log\n";
    let t = read(text, "burst.csv");
    assert_eq!(t.format, Format::BurstGpt);
    assert_eq!(t.rows_read, 5);
    assert_eq!(t.rows.len(), 3);
    assert_eq!(t.skipped.len(), 1);
    assert_eq!(t.skipped[0].rows, 2);
    assert_eq!(t.skipped[0].first_line, 3);
    assert!(t.skipped[0].reason.contains("failed"));
    // Seconds from the first kept request (t = 5).
    let times: Vec<u64> = t.rows.iter().map(|r| r.t_ns).collect();
    assert_eq!(times, vec![0, 113_000_000_000, 126_500_000_000]);
    assert_eq!((t.rows[1].prompt, t.rows[1].output), (417, 276));
}

#[test]
fn vidur_csv_with_extra_columns_reads_its_three() {
    let text = "arrived_at,num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n\
                0.5,100,20,120,5.0\n\
                0.75,300,30,330,10.0\n\
                2.0,50,5,55,10.0\n";
    let t = read(text, "vidur.csv");
    assert_eq!(t.format, Format::Vidur);
    let (w, _) = t.to_workload();
    assert_eq!(w.len(), 3);
    assert_eq!(w.requests[1].arrival_ns, 250_000_000);
    assert_eq!(w.span_ns(), 1_500_000_000);
    let s = TraceStats::of(&t.rows, true, 1.0);
    let a = s.arrivals.unwrap();
    assert_eq!(a.mean_rate, 2.0); // 3 requests over 1.5 s
    assert_eq!(a.peak_rate, 2.0); // 0 and 0.25 s fall in the first 1 s window
    assert_eq!(s.prompt.p50, 100.0);
}

#[test]
fn native_csv_keeps_categories() {
    let text = "arrival_s,prompt_tokens,output_tokens,category\n0,10,5,coding\n0.5,20,1,\n1.25,7,3,writing\n";
    let t = read(text, "n.csv");
    assert_eq!(t.format, Format::Native);
    let (w, _) = t.to_workload();
    assert_eq!(w.category_name(&w.requests[0]), Some("coding"));
    assert_eq!(w.requests[1].category, None);
    assert_eq!(w.category_name(&w.requests[2]), Some("writing"));
}

#[test]
fn azure_2024_timestamps_with_zone_offsets() {
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                2024-05-10 00:00:00.0097330+00:00,100,10\n\
                2024-05-10 00:00:01.5097330+00:00,200,20\n\
                2024-05-10T01:00:02.0097330+01:00,300,30\n";
    let t = read(text, "azure24.csv");
    assert_eq!(t.format, Format::Azure);
    let times: Vec<u64> = t.rows.iter().map(|r| r.t_ns).collect();
    assert_eq!(times, vec![0, 1_500_000_000, 2_000_000_000]);
}

#[test]
fn mooncake_lines_keep_their_hash_ids_through_sorting() {
    let text = "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [1, 2]}\n\
                {\"timestamp\": 2000, \"input_length\": 100, \"output_length\": 4, \"hash_ids\": [7]}\n\
                {\"timestamp\": 1000, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [1, 2, 3]}\n";
    let t = read(text, "mc.jsonl");
    assert_eq!(t.warnings.len(), 1, "sorted with a warning");
    let (w, p) = t.to_workload();
    let p = p.unwrap();
    assert_eq!(w.requests[1].prompt_tokens, 1100);
    assert_eq!(p.blocks(1), &[1, 2, 3]);
    assert_eq!(p.blocks(2), &[7]);
}

#[test]
fn empirical_lengths_from_one_file_draw_whole_rows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lens.csv"),
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n10,1,11,10\n20,2,22,10\n30,3,33,10\n",
    )
    .unwrap();
    let empirical = |col: Option<&str>| LengthConfig::Empirical {
        path: "lens.csv".into(),
        column: col.map(Into::into),
    };
    let synthetic = SyntheticConfig {
        requests: 1000,
        rate: 10.0,
        arrival: ArrivalConfig::Poisson,
        prompt: empirical(None),
        output: empirical(None),
    };
    let cfg = TraceConfig {
        synthetic: Some(synthetic.clone()),
        ..Default::default()
    };
    let l = load_workload(&cfg, dir.path(), 3).unwrap();
    assert!(l
        .workload
        .requests
        .iter()
        .all(|r| r.prompt_tokens == 10 * r.output_tokens));
    let seen: std::collections::BTreeSet<u32> = l
        .workload
        .requests
        .iter()
        .map(|r| r.prompt_tokens)
        .collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![10, 20, 30]);
    // Independent draws when the columns differ from the defaults: pairs decouple.
    let cfg = TraceConfig {
        synthetic: Some(SyntheticConfig {
            output: empirical(Some("prompt")),
            ..synthetic
        }),
        ..Default::default()
    };
    let l = load_workload(&cfg, dir.path(), 3).unwrap();
    assert!(l
        .workload
        .requests
        .iter()
        .any(|r| r.prompt_tokens != r.output_tokens));
    assert!(l
        .workload
        .requests
        .iter()
        .all(|r| [10, 20, 30].contains(&r.output_tokens)));
}

#[test]
fn synthesis_matches_the_simulators_own_generator() {
    let s = SyntheticConfig {
        requests: 2000,
        rate: 3.0,
        arrival: ArrivalConfig::Gamma { cv: 2.0 },
        prompt: LengthConfig::Lognormal {
            mean: 800.0,
            std: 400.0,
            min: 1,
            max: 8192,
        },
        output: LengthConfig::Uniform { min: 10, max: 300 },
    };
    let cfg = TraceConfig {
        synthetic: Some(s.clone()),
        ..Default::default()
    };
    let ours = load_workload(&cfg, Path::new("."), 11).unwrap();
    let sims = specsim_sim::synth::generate(&s, 11).unwrap();
    assert_eq!(ours.workload, sims);
}

#[test]
fn read_trace_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.csv");
    std::fs::write(
        &p,
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n",
    )
    .unwrap();
    assert_eq!(read_trace(&p, None).unwrap().rows.len(), 1);
    let e = read_trace(&dir.path().join("nope.csv"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.csv"), "{e}");
}

#[test]
fn crlf_line_ends_quotes_and_blank_lines_are_tolerated() {
    let text = "\u{feff}TIMESTAMP,ContextTokens,GeneratedTokens\r\n\
                \"2023-11-16 18:17:03.9799600\",\"10\",\"5\"\r\n\
                \r\n\
                2023-11-16 18:17:04.4799600 , 20 , 6 \r\n";
    let t = read(text, "crlf.csv");
    assert_eq!(t.format, Format::Azure);
    assert_eq!(t.rows.len(), 2);
    assert_eq!(t.rows[1].t_ns, 500_000_000);
    assert_eq!((t.rows[1].prompt, t.rows[1].output), (20, 6));
}
