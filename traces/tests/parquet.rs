//! Parquet traces: a native CSV converted to Parquet loads and streams to exactly the requests the CSV
//! loads to (across row groups and read batches, with every transformation), and a bad file is an
//! error naming the file and what is wrong, never a panic.
#![cfg(feature = "parquet")]

use parquet::basic::{Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use specsim_sim::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig, TraceConfig};
use specsim_traces::convert::{write, write_parquet_stream, OutputFormat};
use specsim_traces::stream::open_stream;
use specsim_traces::{load_workload, read_trace, Format};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A native CSV of `n` gamma-arrival requests starting at 7 s, with a zero-output row (skipped by
/// every reader), and the same trace converted to Parquet in row groups of `group_rows`.
fn csv_and_parquet(dir: &Path, n: usize, group_rows: usize) -> (PathBuf, PathBuf) {
    let cfg = TraceConfig {
        synthetic: Some(SyntheticConfig {
            requests: n,
            rate: 40.0,
            arrival: ArrivalConfig::Gamma { cv: 2.0 },
            prompt: LengthConfig::Lognormal {
                mean: 400.0,
                std: 300.0,
                min: 1,
                max: 8000,
            },
            output: LengthConfig::Uniform { min: 1, max: 600 },
        }),
        ..Default::default()
    };
    let w = load_workload(&cfg, Path::new("."), 21).unwrap().workload;
    let text = write(&w, OutputFormat::Native);
    let mut lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return l.to_string();
            }
            let (t, rest) = l.split_once(',').unwrap();
            format!("{:.9},{rest}", t.parse::<f64>().unwrap() + 7.0)
        })
        .collect();
    let t = lines[5].split_once(',').unwrap().0.to_string();
    lines.insert(5, format!("{t},12,0,"));
    let csv = dir.join("t.csv");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    // As `specsim trace convert t.csv --to parquet` does: read, then write the workload.
    let (w, _) = read_trace(&csv, None).unwrap().to_workload();
    let pq = dir.join("t.parquet");
    let mut rows = w.requests.iter().cloned().map(Ok);
    let f = std::fs::File::create(&pq).unwrap();
    let written = write_parquet_stream(&mut rows, &w.categories, f, &pq, group_rows).unwrap();
    assert_eq!(written as usize, n);
    (csv, pq)
}

#[test]
fn csv_converted_to_parquet_loads_and_streams_like_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    // 70,000 rows in groups of 50,000: two row groups, and a read batch (2^15) boundary in each.
    let (csv, pq) = csv_and_parquet(dir.path(), 70_000, 50_000);
    let head = std::fs::read(&pq).unwrap();
    assert!(Format::is_parquet(&head));
    let t = read_trace(&pq, None).unwrap();
    assert_eq!(t.format, Format::Parquet);
    assert_eq!(t.rows.len(), 70_000);
    let mix: std::collections::BTreeMap<String, f64> =
        [("a".to_string(), 1.0), ("b".to_string(), 3.0)].into();
    let configs = [
        TraceConfig::default(),
        TraceConfig {
            rate_scale: Some(1.5),
            max_context: Some(2048),
            limit: Some(60_000),
            ..Default::default()
        },
        TraceConfig {
            start_s: Some(100.0),
            duration_s: Some(900.0),
            sample: Some(0.5),
            target_rate: Some(10.0),
            max_output: Some(300),
            categories: Some(mix),
            ..Default::default()
        },
    ];
    for cfg in configs {
        let with = |p: &PathBuf| TraceConfig {
            path: Some(p.clone()),
            ..cfg.clone()
        };
        let from_csv = load_workload(&with(&csv), dir.path(), 4).unwrap().workload;
        let from_pq = load_workload(&with(&pq), dir.path(), 4).unwrap().workload;
        assert_eq!(from_pq, from_csv, "{cfg:?}");
        let s = open_stream(&with(&pq), dir.path(), 4).unwrap();
        assert_eq!(s.categories, from_csv.categories);
        let streamed: Vec<_> = s.requests.collect::<Result<_, _>>().unwrap();
        assert!(streamed.len() > 1000, "{}", streamed.len());
        assert_eq!(streamed, from_csv.requests, "{cfg:?}");
    }
}

/// Writes a one-row-group Parquet file with INT64 columns `ints` and BYTE_ARRAY columns `texts`
/// (all REQUIRED), each given its values.
fn hand_made(path: &Path, ints: &[(&str, Vec<i64>)], texts: &[(&str, Vec<&str>)]) {
    let mut fields = Vec::new();
    for (name, _) in ints {
        fields.push(Arc::new(
            Type::primitive_type_builder(name, PhysicalType::INT64)
                .with_repetition(Repetition::REQUIRED)
                .build()
                .unwrap(),
        ));
    }
    for (name, _) in texts {
        fields.push(Arc::new(
            Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                .with_repetition(Repetition::REQUIRED)
                .build()
                .unwrap(),
        ));
    }
    let schema = Type::group_type_builder("t")
        .with_fields(fields)
        .build()
        .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let props = Arc::new(WriterProperties::builder().build());
    let mut w = SerializedFileWriter::new(f, Arc::new(schema), props).unwrap();
    let mut g = w.next_row_group().unwrap();
    for (_, v) in ints {
        let mut c = g.next_column().unwrap().unwrap();
        c.typed::<Int64Type>().write_batch(v, None, None).unwrap();
        c.close().unwrap();
    }
    for (_, v) in texts {
        let mut c = g.next_column().unwrap().unwrap();
        let v: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(*s)).collect();
        c.typed::<ByteArrayType>()
            .write_batch(&v, None, None)
            .unwrap();
        c.close().unwrap();
    }
    g.close().unwrap();
    w.close().unwrap();
}

fn load_error(path: &Path) -> String {
    let cfg = TraceConfig {
        path: Some(path.to_path_buf()),
        ..Default::default()
    };
    let loaded = load_workload(&cfg, Path::new("."), 0)
        .unwrap_err()
        .to_string();
    let streamed = match open_stream(&cfg, Path::new("."), 0) {
        Err(e) => e.to_string(),
        Ok(s) => s
            .requests
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err()
            .to_string(),
    };
    // Both paths report the same problem (the stream's error is wrapped as a trace error).
    assert!(streamed.ends_with(&loaded), "{streamed} vs {loaded}");
    loaded
}

#[test]
fn bad_parquet_files_are_errors_naming_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // No arrival column.
    hand_made(
        &p("cols.parquet"),
        &[
            ("time", vec![0, 1]),
            ("prompt_tokens", vec![5, 5]),
            ("output_tokens", vec![5, 5]),
        ],
        &[],
    );
    let e = load_error(&p("cols.parquet"));
    assert!(
        e.contains("cols.parquet") && e.contains("no arrival column") && e.contains("time,"),
        "{e}"
    );
    // A length column of the wrong type.
    hand_made(
        &p("types.parquet"),
        &[("arrival_ns", vec![0, 1]), ("output_tokens", vec![5, 5])],
        &[("prompt_tokens", vec!["5", "5"])],
    );
    let e = load_error(&p("types.parquet"));
    assert!(
        e.contains("types.parquet") && e.contains("`prompt_tokens` is BYTE_ARRAY"),
        "{e}"
    );
    // A negative length, named by its row.
    hand_made(
        &p("neg.parquet"),
        &[
            ("arrival_ns", vec![0, 1, 2]),
            ("prompt_tokens", vec![5, 5, -4]),
            ("output_tokens", vec![5, 5, 5]),
        ],
        &[],
    );
    let e = load_error(&p("neg.parquet"));
    assert!(
        e.contains("neg.parquet") && e.contains("row 3") && e.contains("-4"),
        "{e}"
    );
    // Truncated: the footer is gone.
    let (_, good) = csv_and_parquet(dir.path(), 3000, 1000);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(p("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_error(&p("cut.parquet"));
    assert!(e.contains("cut.parquet") && e.contains("parquet"), "{e}");
    // Footer intact, data pages overwritten: an error naming the row group and column.
    let mut garbled = bytes.clone();
    for b in &mut garbled[4..bytes.len() / 3] {
        *b = 0xA5;
    }
    std::fs::write(p("garbled.parquet"), &garbled).unwrap();
    let e = load_error(&p("garbled.parquet"));
    assert!(
        e.contains("garbled.parquet") && e.contains("row group 0, column `arrival_ns`"),
        "{e}"
    );
}
