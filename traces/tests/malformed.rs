//! Malformed input gives an error naming the file and line (or a stated repair), never a panic.

use specsim_sim::trace_config::TraceConfig;
use specsim_traces::{load_workload, read_trace_bytes, Format, TraceError};
use std::path::Path;

fn err(text: &str, format: Option<Format>) -> String {
    match read_trace_bytes(text.as_bytes(), Path::new("bad.csv"), format) {
        Ok(t) => panic!("expected an error, read {} rows", t.rows.len()),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn says(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{msg}` should mention `{p}`");
    }
}

const AZ: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,10,5\n";

#[test]
fn bad_timestamp_names_file_line_and_value() {
    let e = err(&format!("{AZ}2023-11-16 25:00:00.0000000,10,5\n"), None);
    says(&e, &["bad.csv:3", "bad timestamp", "25:00:00"]);
    let e = err(&format!("{AZ}yesterday,10,5\n"), None);
    says(&e, &["bad.csv:3", "yesterday"]);
    let e = err(
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\nsoon,1,1\n",
        None,
    );
    says(&e, &["bad.csv:3", "arrived_at", "soon", "not a number"]);
}

#[test]
fn negative_or_non_numeric_lengths_name_the_column() {
    says(
        &err(&format!("{AZ}2023-11-16 18:17:04.0,-4,5\n"), None),
        &["bad.csv:3", "ContextTokens", "negative"],
    );
    says(
        &err(&format!("{AZ}2023-11-16 18:17:04.0,10,many\n"), None),
        &["bad.csv:3", "GeneratedTokens", "many"],
    );
    says(
        &err(&format!("{AZ}2023-11-16 18:17:04.0,2.5,1\n"), None),
        &["bad.csv:3", "whole number"],
    );
    let jsonl = "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n\
                 {\"timestamp\": 1, \"input_length\": -5, \"output_length\": 1}\n";
    says(
        &err(jsonl, None),
        &["bad.csv:2", "input_length", "negative"],
    );
    let jsonl = "{\"timestamp\": 0, \"input_length\": \"five\", \"output_length\": 1}\n";
    says(&err(jsonl, None), &["bad.csv:1", "bad JSON"]);
}

#[test]
fn missing_columns_and_fields_are_named() {
    let e = err(
        "TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.9799600,10\n",
        Some(Format::Azure),
    );
    says(
        &e,
        &["bad.csv:1", "missing column `GeneratedTokens`", "azure"],
    );
    let e = err(&format!("{AZ}2023-11-16 18:17:04.0,10\n"), None);
    says(&e, &["bad.csv:3", "missing field `GeneratedTokens`"]);
    let e = err("{\"timestamp\": 0, \"input_length\": 5}\n", None);
    says(&e, &["bad.csv:1", "output_length"]);
    let e = err("when,how_long\n1,2\n", None);
    says(
        &e,
        &[
            "bad.csv:1",
            "cannot tell the trace format",
            "when,how_long",
            "azure",
        ],
    );
}

#[test]
fn unsorted_rows_are_sorted_with_a_warning_naming_the_first_line() {
    let text = "arrival_s,prompt_tokens,output_tokens\n0,1,1\n5,2,2\n3,3,3\n4,4,4\n6,5,5\n";
    let t = read_trace_bytes(text.as_bytes(), Path::new("u.csv"), None).unwrap();
    assert_eq!(t.warnings.len(), 1);
    says(&t.warnings[0], &["u.csv", "not sorted", "line 4", "1 rows"]);
    let prompts: Vec<u32> = t.rows.iter().map(|r| r.prompt).collect();
    assert_eq!(prompts, vec![1, 3, 4, 2, 5]);
    let (w, _) = t.to_workload();
    assert!(w.validate().is_ok());
}

#[test]
fn empty_files_and_header_only_files_are_errors() {
    says(&err("", None), &["bad.csv", "no requests"]);
    says(
        &err("TIMESTAMP,ContextTokens,GeneratedTokens\n", None),
        &["bad.csv", "no requests"],
    );
    // Every row skipped leaves nothing to simulate.
    let burst = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,ChatGPT,5,0,5,API log\n";
    says(&err(burst, None), &["bad.csv", "no requests"]);
}

#[test]
fn garbage_bytes_never_panic() {
    // A few adversarial inputs: binary, unbalanced quotes, huge numbers, a lone BOM.
    let inputs: [&[u8]; 6] = [
        b"\xff\xfe\x00\x01garbage\n\x00\x00",
        b"\xef\xbb\xbf",
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n\"2023-11-16 18:17:03,1,1\n",
        b"arrival_s,prompt_tokens,output_tokens\n1e308,1,1\n",
        b"arrival_s,prompt_tokens,output_tokens\n0,99999999999999999999,1\n",
        b"{\"timestamp\": 1e300, \"input_length\": 1, \"output_length\": 1}\n",
    ];
    for bytes in inputs {
        let r = read_trace_bytes(bytes, Path::new("g"), None);
        assert!(r.is_err(), "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn impossible_trace_settings_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.csv"),
        "arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,1,1\n",
    )
    .unwrap();
    let base = TraceConfig {
        path: Some("t.csv".into()),
        ..Default::default()
    };
    let cases = [
        TraceConfig {
            rate_scale: Some(0.0),
            ..base.clone()
        },
        TraceConfig {
            rate_scale: Some(2.0),
            target_rate: Some(1.0),
            ..base.clone()
        },
        TraceConfig {
            sample: Some(1.5),
            ..base.clone()
        },
        TraceConfig {
            duration_s: Some(-1.0),
            ..base.clone()
        },
        TraceConfig {
            start_s: Some(100.0),
            ..base.clone()
        },
        TraceConfig {
            limit: Some(0),
            ..base.clone()
        },
        TraceConfig {
            max_context: Some(1),
            ..base.clone()
        },
        TraceConfig {
            format: Some("xlsx".into()),
            ..base.clone()
        },
        TraceConfig {
            categories: Some([("a".to_string(), -1.0)].into_iter().collect()),
            ..base.clone()
        },
        TraceConfig {
            path: None,
            ..base.clone()
        },
        TraceConfig {
            path: Some("missing.csv".into()),
            ..base.clone()
        },
    ];
    for c in cases {
        let e = load_workload(&c, dir.path(), 0).unwrap_err();
        assert!(
            matches!(
                e,
                TraceError::Config(_) | TraceError::Empty { .. } | TraceError::Io { .. }
            ),
            "{c:?}: {e}"
        );
    }
    // A CSV read as Parquet: an error naming the file, whether or not Parquet support is built in.
    let forced = TraceConfig {
        format: Some("parquet".into()),
        ..base
    };
    let e = load_workload(&forced, dir.path(), 0).unwrap_err();
    assert!(
        matches!(e, TraceError::Parquet { .. } | TraceError::Config(_))
            && e.to_string().contains("t.csv"),
        "{e}"
    );
}
