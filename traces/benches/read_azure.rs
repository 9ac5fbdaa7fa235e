//! Reading speed of the Azure reader: generates a 1M-row Azure-format CSV (7 fractional digits, like the
//! real files) in a temporary directory, then reads it several times and reports the best rows/s, for
//! `read_trace` alone and for the whole `load_workload` path (read, transform, build the workload).
//!
//! Run with `cargo bench -p specsim-traces --bench read_azure` (release profile). Aim: >= 2M rows/s.

use specsim_sim::trace_config::TraceConfig;
use specsim_traces::{load_workload, read_trace};
use std::fmt::Write as _;
use std::time::Instant;

const ROWS: usize = 1_000_000;
const RUNS: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("azure_1m.csv");
    let mut text = String::with_capacity(ROWS * 40);
    text.push_str("TIMESTAMP,ContextTokens,GeneratedTokens\n");
    // Deterministic pseudo-random gaps and lengths (an LCG), about 5 req/s from 2023-11-16 18:00.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut t_100ns: u64 = 0;
    for _ in 0..ROWS {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        t_100ns += (x >> 40) % 4_000_000; // mean gap 0.2 s in 100 ns ticks
        let secs = 18 * 3600 + t_100ns / 10_000_000;
        let frac = t_100ns % 10_000_000;
        let (d, h, m, s) = (
            16 + secs / 86_400,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
        );
        let prompt = 1 + (x >> 20) % 8000;
        let output = 1 + (x >> 8) % 1000;
        let _ = writeln!(
            text,
            "2023-11-{d:02} {h:02}:{m:02}:{s:02}.{frac:07},{prompt},{output}"
        );
    }
    std::fs::write(&path, &text).expect("writing the benchmark file");
    let mb = text.len() as f64 / 1e6;
    drop(text);

    let mut best_read = f64::INFINITY;
    let mut best_load = f64::INFINITY;
    for _ in 0..RUNS {
        let start = Instant::now();
        let t = read_trace(&path, None).expect("reading");
        best_read = best_read.min(start.elapsed().as_secs_f64());
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.rows.len(), ROWS);

        let cfg = TraceConfig {
            path: Some(path.clone()),
            ..Default::default()
        };
        let start = Instant::now();
        let w = load_workload(&cfg, dir.path(), 0).expect("loading");
        best_load = best_load.min(start.elapsed().as_secs_f64());
        assert_eq!(w.workload.len(), ROWS);
    }
    println!(
        "read_trace:    {ROWS} Azure rows ({mb:.1} MB) in {:.1} ms: {:.2} M rows/s ({:.0} MB/s), best of {RUNS}",
        best_read * 1e3,
        ROWS as f64 / best_read / 1e6,
        mb / best_read
    );
    println!(
        "load_workload: {ROWS} Azure rows in {:.1} ms: {:.2} M rows/s, best of {RUNS}",
        best_load * 1e3,
        ROWS as f64 / best_load / 1e6
    );
}
