//! Streamed workloads equal loaded ones: the same requests, request by request, for synthetic
//! workloads (every arrival process) and for native CSV and Mooncake files, with the row-local
//! transformations; what cannot stream says so.

use specsim_core::workload::{RequestSpec, Workload};
use specsim_sim::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig, TraceConfig};
use specsim_traces::convert::{write, write_stream, OutputFormat};
use specsim_traces::load_workload;
use specsim_traces::stream::{open_stream, plan_stream};
use std::path::Path;

fn collect(cfg: &TraceConfig, base: &Path, seed: u64) -> Vec<RequestSpec> {
    open_stream(cfg, base, seed)
        .unwrap()
        .requests
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn synthetic(arrival: ArrivalConfig, requests: usize) -> SyntheticConfig {
    SyntheticConfig {
        requests,
        rate: 6.0,
        arrival,
        prompt: LengthConfig::Lognormal {
            mean: 300.0,
            std: 200.0,
            min: 1,
            max: 4000,
        },
        output: LengthConfig::Uniform { min: 1, max: 900 },
    }
}

#[test]
fn synthetic_streams_equal_loaded_workloads() {
    let arrivals = [
        ArrivalConfig::Poisson,
        ArrivalConfig::Gamma { cv: 2.5 },
        ArrivalConfig::Uniform,
        ArrivalConfig::Bursty {
            burst_factor: 5.0,
            on_s: 3.0,
            off_s: 7.0,
        },
        ArrivalConfig::Diurnal {
            amplitude: 0.6,
            period_s: 60.0,
        },
    ];
    for arrival in arrivals {
        let cfg = TraceConfig {
            synthetic: Some(synthetic(arrival.clone(), 5000)),
            limit: Some(4000),
            rate_scale: Some(1.7),
            max_context: Some(1024),
            max_output: Some(700),
            ..Default::default()
        };
        let loaded = load_workload(&cfg, Path::new("."), 11).unwrap().workload;
        let plan = plan_stream(&cfg, Path::new("."), 11).unwrap().unwrap();
        assert_eq!(plan.len, Some(4000));
        let streamed = collect(&cfg, Path::new("."), 11);
        assert_eq!(streamed.len(), 4000);
        assert_eq!(streamed, loaded.requests, "{arrival:?}");
    }
}

#[test]
fn trace_synth_writer_equals_the_in_memory_conversion() {
    let cfg = TraceConfig {
        synthetic: Some(synthetic(ArrivalConfig::Poisson, 3000)),
        ..Default::default()
    };
    let loaded = load_workload(&cfg, Path::new("."), 4).unwrap().workload;
    for to in [OutputFormat::Native, OutputFormat::Vidur] {
        let mut s = open_stream(&cfg, Path::new("."), 4).unwrap();
        let mut out = Vec::new();
        let n = write_stream(&mut s.requests, &s.categories, to, &mut out).unwrap();
        assert_eq!(n, 3000);
        assert_eq!(String::from_utf8(out).unwrap(), write(&loaded, to));
    }
}

#[test]
fn native_and_mooncake_files_stream_like_they_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TraceConfig {
        synthetic: Some(synthetic(ArrivalConfig::Gamma { cv: 3.0 }, 2000)),
        ..Default::default()
    };
    let w = load_workload(&cfg, Path::new("."), 9).unwrap().workload;
    // Native CSV, with a zero-length row that both paths skip and an offset start that both re-base.
    let mut text = write(&w, OutputFormat::Native).replace(",\n", "\n");
    text = text.replace(
        "arrival_s,prompt_tokens,output_tokens,category\n",
        "arrival_s,prompt_tokens,output_tokens\n",
    );
    let shifted: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return format!("{l}\n");
            }
            let (t, rest) = l.split_once(',').unwrap();
            let t: f64 = t.parse().unwrap();
            let row = format!("{:.9},{rest}\n", t + 5.0);
            if i == 10 {
                format!("{:.9},0,5\n{row}", t + 5.0)
            } else {
                row
            }
        })
        .collect();
    let native = dir.path().join("t.csv");
    std::fs::write(&native, &shifted).unwrap();
    // Mooncake JSON lines (milliseconds), with hash ids.
    let moon = dir.path().join("t.jsonl");
    let lines: String = w
        .requests
        .iter()
        .map(|r| {
            format!(
                "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": [1, 2]}}\n",
                r.arrival_ns / 1_000_000 + 1000,
                r.prompt_tokens,
                r.output_tokens
            )
        })
        .collect();
    std::fs::write(&moon, lines).unwrap();
    for path in [&native, &moon] {
        let cfg = TraceConfig {
            path: Some(path.clone()),
            rate_scale: Some(0.5),
            max_prompt: Some(600),
            max_context: Some(2000),
            limit: Some(1500),
            ..Default::default()
        };
        let loaded: Workload = load_workload(&cfg, dir.path(), 0).unwrap().workload;
        let streamed = collect(&cfg, dir.path(), 0);
        assert_eq!(streamed.len(), 1500);
        assert_eq!(streamed, loaded.requests, "{}", path.display());
        // Small files load by default; streaming is for files past the threshold.
        assert!(plan_stream(&cfg, dir.path(), 0).unwrap().is_none());
    }
}

#[test]
fn what_cannot_stream_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.csv");
    std::fs::write(
        &p,
        "arrival_s,prompt_tokens,output_tokens\n0.0,5,5\n2.0,5,5\n1.0,5,5\n",
    )
    .unwrap();
    let cfg = TraceConfig {
        path: Some(p.clone()),
        ..Default::default()
    };
    let e = open_stream(&cfg, dir.path(), 0)
        .unwrap()
        .requests
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("u.csv") && e.contains("4") && e.contains("sorted"),
        "{e}"
    );
    // A synthetic workload with a window loses its known length, so `run` loads it; it still streams
    // (an empty window is the loader's error).
    let windowed = TraceConfig {
        synthetic: Some(synthetic(ArrivalConfig::Poisson, 100)),
        duration_s: Some(5.0),
        ..Default::default()
    };
    assert!(plan_stream(&windowed, dir.path(), 0).unwrap().is_none());
    let loaded = load_workload(&windowed, dir.path(), 0).unwrap().workload;
    assert_eq!(collect(&windowed, dir.path(), 0), loaded.requests);
    let empty = TraceConfig {
        start_s: Some(1e6),
        ..windowed
    };
    assert!(load_workload(&empty, dir.path(), 0).is_err());
    let e = open_stream(&empty, dir.path(), 0)
        .unwrap()
        .requests
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no requests"), "{e}");
    // A category value in a file streams only when a `categories` mix replaces it.
    let c = dir.path().join("c.csv");
    std::fs::write(
        &c,
        "arrival_s,prompt_tokens,output_tokens,category\n0.0,5,5,\n1.0,5,5,chat\n",
    )
    .unwrap();
    let own = TraceConfig {
        path: Some(c.clone()),
        ..Default::default()
    };
    let e = open_stream(&own, dir.path(), 0)
        .unwrap()
        .requests
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.csv:3") && e.contains("category"), "{e}");
    let mixed = TraceConfig {
        categories: Some([("a".to_string(), 1.0), ("b".to_string(), 2.0)].into()),
        ..own
    };
    let loaded = load_workload(&mixed, dir.path(), 5).unwrap().workload;
    let s = open_stream(&mixed, dir.path(), 5).unwrap();
    assert_eq!(s.categories, loaded.categories);
    let streamed: Vec<_> = s.requests.collect::<Result<_, _>>().unwrap();
    assert_eq!(streamed, loaded.requests);
}

/// The whole-trace transformations, alone and together, each with settings that change the result.
fn whole_trace_configs(path: Option<std::path::PathBuf>) -> Vec<TraceConfig> {
    let base = TraceConfig {
        path,
        ..Default::default()
    };
    let mix: std::collections::BTreeMap<String, f64> = [
        ("chat".to_string(), 2.0),
        ("code".to_string(), 1.0),
        ("rag".to_string(), 0.5),
    ]
    .into();
    vec![
        TraceConfig {
            start_s: Some(20.0),
            duration_s: Some(90.0),
            ..base.clone()
        },
        TraceConfig {
            start_s: Some(33.3),
            ..base.clone()
        },
        TraceConfig {
            duration_s: Some(50.0),
            limit: Some(100),
            ..base.clone()
        },
        TraceConfig {
            sample: Some(0.37),
            ..base.clone()
        },
        TraceConfig {
            target_rate: Some(25.0),
            ..base.clone()
        },
        TraceConfig {
            categories: Some(mix.clone()),
            ..base.clone()
        },
        TraceConfig {
            start_s: Some(10.0),
            duration_s: Some(200.0),
            sample: Some(0.6),
            limit: Some(400),
            target_rate: Some(3.0),
            max_prompt: Some(500),
            max_context: Some(900),
            categories: Some(mix),
            ..base
        },
    ]
}

fn assert_streams_like_it_loads(cfg: &TraceConfig, base: &Path, seed: u64, what: &str) {
    let loaded = load_workload(cfg, base, seed).unwrap().workload;
    let s = open_stream(cfg, base, seed).unwrap();
    assert_eq!(s.categories, loaded.categories, "{what}: {cfg:?}");
    let streamed: Vec<_> = s.requests.collect::<Result<_, _>>().unwrap();
    assert!(streamed.len() > 10, "{what}: {} requests", streamed.len());
    assert_eq!(streamed, loaded.requests, "{what}: {cfg:?}");
}

#[test]
fn windows_sample_target_rate_and_categories_stream_like_they_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TraceConfig {
        synthetic: Some(synthetic(ArrivalConfig::Gamma { cv: 2.0 }, 2500)),
        ..Default::default()
    };
    let w = load_workload(&cfg, Path::new("."), 3).unwrap().workload;
    let native = dir.path().join("w.csv");
    std::fs::write(&native, write(&w, OutputFormat::Native)).unwrap();
    let moon = dir.path().join("w.jsonl");
    let lines: String = w
        .requests
        .iter()
        .map(|r| {
            format!(
                "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": [7, {}]}}\n",
                r.arrival_ns / 1_000_000,
                r.prompt_tokens,
                r.output_tokens,
                r.id % 5
            )
        })
        .collect();
    std::fs::write(&moon, lines).unwrap();
    for path in [&native, &moon] {
        for cfg in whole_trace_configs(Some(path.clone())) {
            assert_streams_like_it_loads(&cfg, dir.path(), 8, &path.display().to_string());
        }
    }
    // Synthetic sources take the same transformations.
    for mut cfg in whole_trace_configs(None) {
        cfg.synthetic = Some(synthetic(ArrivalConfig::Poisson, 1500));
        assert_streams_like_it_loads(&cfg, dir.path(), 2, "synthetic");
    }
}
