//! Step costs composed from the real aiconfigurator operator tables (shared/gpu), checked against the
//! tables' own rows and against a bandwidth floor derived independently. Skipped with a message when
//! the shared folder is absent.

use polars::prelude::*;
use specsim_calibrate::ops::compose::Composer;
use specsim_calibrate::ops::tables::{read_parquet, GemmTable, Notes};
use specsim_calibrate::ops::{profile_from_ops, GpuTables, OpsGrid, OpsOptions};
use specsim_core::cost::catalog::find_model;
use std::path::{Path, PathBuf};

mod common;

fn aic_dir() -> Option<PathBuf> {
    common::shared_gpu("aiconfigurator")
}

macro_rules! need_tables {
    () => {
        match aic_dir() {
            Some(d) => d,
            None => {
                eprintln!("skipped: shared/gpu/aiconfigurator not found (set SPECSIM_SHARED)");
                return;
            }
        }
    };
}

/// The raw bf16 rows of the H100 GEMM table: (m, n, k, latency ns).
fn raw_gemm(path: &Path) -> Vec<(f64, f64, f64, f64)> {
    let df = read_parquet(path).unwrap();
    let col = |n: &str| -> Vec<f64> {
        df.column(n)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect()
    };
    let dt: Vec<String> = df
        .column("gemm_dtype")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect();
    let (m, n, k, l) = (col("m"), col("n"), col("k"), col("latency"));
    (0..m.len())
        .filter(|&i| dt[i] == "bfloat16")
        .map(|i| (m[i], n[i], k[i], l[i] * 1e6))
        .collect()
}

#[test]
fn a_measured_gemm_comes_back_exactly_and_an_unmeasured_one_lies_between_its_neighbours() {
    let dir = need_tables!();
    let loc = GpuTables::locate(&dir, "H100-SXM").unwrap();
    let path = loc.gemm_path();
    let raw = raw_gemm(&path);
    let table = GemmTable::read(&path, "bf16").unwrap();
    let mut notes = Notes::new();
    // A slice of the table: every 997th bf16 row. The table's value for a measured (m, n, k) is the
    // fastest of the rows measuring it.
    for &(m, n, k, _) in raw.iter().step_by(997) {
        let want = raw
            .iter()
            .filter(|r| r.0 == m && r.1 == n && r.2 == k)
            .map(|r| r.3)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(
            table.ns(m, n, k, &mut notes).unwrap(),
            want,
            "m={m} n={n} k={k}"
        );
    }
    assert!(notes.is_empty(), "{notes:?}");
    // Between two measured m of one (n, k): strictly between their latencies' range.
    let (_, n, k, _) = raw[raw.len() / 2];
    let mut ms: Vec<(f64, f64)> = raw
        .iter()
        .filter(|r| r.1 == n && r.2 == k)
        .map(|r| (r.0, r.3))
        .collect();
    ms.sort_by(|a, b| a.0.total_cmp(&b.0));
    ms.dedup_by(|b, a| a.0 == b.0);
    let w = ms
        .windows(2)
        .find(|w| w[1].0 - w[0].0 >= 2.0)
        .expect("two m values at least 2 apart");
    let mid = ((w[0].0 + w[1].0) / 2.0).floor();
    let got = table.ns(mid, n, k, &mut notes).unwrap();
    let (lo, hi) = (w[0].1.min(w[1].1), w[0].1.max(w[1].1));
    assert!(lo <= got && got <= hi, "m={mid}: {got} not in [{lo}, {hi}]");
    // An unmeasured n between two measured ones (same k, measured m): between the corners.
    let mut n_at_k: Vec<f64> = raw.iter().filter(|r| r.2 == k).map(|r| r.1).collect();
    n_at_k.sort_by(f64::total_cmp);
    n_at_k.dedup();
    let pair = n_at_k.windows(2).find(|p| p[1] - p[0] >= 2.0).unwrap();
    let n_mid = (pair[0] + pair[1]) / 2.0;
    let m0 = ms[0].0;
    let corner = |nn: f64| table.ns(m0, nn, k, &mut Notes::new()).unwrap();
    let got = table.ns(m0, n_mid, k, &mut notes).unwrap();
    let (a, b) = (corner(pair[0]), corner(pair[1]));
    assert!(
        a.min(b) <= got && got <= a.max(b),
        "n={n_mid}: {got} not between {a} and {b}"
    );
    // Beyond the largest m: extrapolated, with a note saying by how far.
    let m_max = ms.last().unwrap().0;
    let mut far = Notes::new();
    let y = table.ns(m_max * 2.0, n, k, &mut far).unwrap();
    assert!(y >= ms.last().unwrap().1);
    assert!(
        far.iter()
            .any(|s| s.contains("2.00×") && s.contains("gemm_perf.parquet")),
        "{far:?}"
    );
}

/// Decoding one token of Llama-3.1-8B at batch 1 reads every weight once: the time cannot beat
/// weight bytes / HBM bandwidth (REFERENCE.md: H100-SXM 3.35 TB/s), and measured kernels reach most
/// of it.
#[test]
fn llama_8b_decode_at_batch_one_is_above_the_weight_bandwidth_floor_and_within_1_5x() {
    let dir = need_tables!();
    let m = find_model("Llama-3.1-8B").unwrap();
    // Bytes read per forward, by hand from config.json: per layer q,o 4096² + k,v 4096·1024 + MLP
    // 3·4096·14336; 32 layers; LM head 128256·4096; bf16.
    let per_layer = 2.0 * 4096.0 * 4096.0 + 2.0 * 4096.0 * 1024.0 + 3.0 * 4096.0 * 14336.0;
    let bytes = 2.0 * (32.0 * per_layer + 128256.0 * 4096.0);
    assert!(((m.layer_params() + m.head_params()) * 2.0 - bytes).abs() < 1.0);
    let floor_ns = bytes / 3.35e12 * 1e9;
    let loc = GpuTables::locate(&dir, "H100-SXM").unwrap();
    let ops = loc.open(&m, 1, "bf16", "bfloat16").unwrap();
    let c = Composer {
        model: &m,
        tp: 1,
        ops: &ops,
    };
    let mut notes = Notes::new();
    let step = c.decode(1.0, 1.0, 128.0, &mut notes).unwrap();
    let t = step.total();
    eprintln!(
        "Llama-3.1-8B decode, batch 1, context 128, H100: {:.3} ms (floor {:.3} ms, {:.3}x): {step:?}",
        t / 1e6,
        floor_ns / 1e6,
        t / floor_ns
    );
    assert!(t >= floor_ns, "{t} ns below the floor {floor_ns} ns");
    assert!(
        t <= 1.5 * floor_ns,
        "{t} ns above 1.5x the floor {floor_ns} ns"
    );
}

#[test]
fn the_composed_profile_is_valid_and_grows_with_batch_context_and_prompt() {
    let dir = need_tables!();
    let mut o = OpsOptions::new(&dir, "H100-SXM", "Llama-3.1-8B");
    o.draft = Some("Llama-3.2-1B".into());
    let p = profile_from_ops(&o, &OpsGrid::default()).unwrap().profile;
    p.validate().unwrap();
    let v = &p.verify;
    // Monotone in context at batch 64 and in batch at context 4096, decode, up to the measured
    // kernels' own non-monotonicity (the m = 1 GEMMs run 2 % slower than m = 2 on H100).
    let bi = v.batch.iter().position(|&b| b == 64.0).unwrap();
    let ci = v.context.iter().position(|&c| c == 4096.0).unwrap();
    assert!(
        v.ns[bi][0].windows(2).all(|w| w[0] <= w[1]),
        "{:?}",
        v.ns[bi][0]
    );
    let by_batch: Vec<f64> = v.ns.iter().map(|plane| plane[0][ci]).collect();
    assert!(
        by_batch.windows(2).all(|w| w[1] >= 0.95 * w[0]),
        "{by_batch:?}"
    );
    assert!(by_batch[by_batch.len() - 1] > 5.0 * by_batch[0]);
    assert!(
        p.prefill.ns.windows(2).all(|w| w[1] >= 0.95 * w[0]),
        "{:?}",
        p.prefill.ns
    );
    // The 1B draft is cheaper than the 8B target at every cell.
    for (i, row) in p.draft.ns.iter().enumerate() {
        for (j, d) in row.iter().enumerate() {
            assert!(*d < v.ns[i][0][j]);
        }
    }
    assert_eq!(p.provenance["engine"], "vLLM 0.14.0");
    assert!(p.provenance["tables_commit"].contains("095f58a51c4ca8e61b66ec108d86f223f8d559ce"));
    assert!(p.provenance["tables"].contains("gemm_perf.parquet"));
}

#[test]
fn bad_inputs_name_the_file_and_field() {
    let dir = need_tables!();
    let err = |o: &OpsOptions| {
        profile_from_ops(o, &OpsGrid::default())
            .err()
            .unwrap()
            .to_string()
    };
    // Unknown GPU.
    let e = err(&OpsOptions::new(&dir, "B300", "Llama-3.1-8B"));
    assert!(e.contains("gpu") && e.contains("B300"), "{e}");
    // A model whose head layout no attention table covers (Vicuna-33B: 52 heads of 128).
    let e = err(&OpsOptions::new(&dir, "H100-SXM", "Vicuna-33B"));
    assert!(
        e.contains("attention_perf.parquet") && e.contains("num_heads"),
        "{e}"
    );
    // A missing table: a copy of the folder layout without the GEMM file.
    let tmp = tempfile::tempdir().unwrap();
    let src = GpuTables::locate(&dir, "H100-SXM").unwrap();
    let dst = tmp.path().join("data/h100_sxm");
    for p in [src.context_path(), src.generation_path()] {
        let rel = p.strip_prefix(src.systems.join("data/h100_sxm")).unwrap();
        std::fs::create_dir_all(dst.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&p, dst.join(rel)).unwrap();
    }
    std::fs::copy(src.yaml_path(), tmp.path().join("h100_sxm.yaml")).unwrap();
    let e = err(&OpsOptions::new(tmp.path(), "H100-SXM", "Llama-3.1-8B"));
    assert!(e.contains("gemm_perf.parquet") && e.contains("file"), "{e}");
    // A malformed row: a GEMM table whose latency has a null.
    let gemm = tmp
        .path()
        .join("data/h100_sxm/gemm/vllm/0.14.0/gemm_perf.parquet");
    std::fs::create_dir_all(gemm.parent().unwrap()).unwrap();
    let mut df = df!(
        "gemm_dtype" => ["bf16", "bf16"],
        "m" => [1i64, 2],
        "n" => [4096i64, 4096],
        "k" => [4096i64, 4096],
        "latency" => [Some(0.01f64), None],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&gemm).unwrap())
        .finish(&mut df)
        .unwrap();
    let e = err(&OpsOptions::new(tmp.path(), "H100-SXM", "Llama-3.1-8B"));
    assert!(
        e.contains("gemm_perf.parquet") && e.contains("latency") && e.contains("row 1"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
}

/// Drafters as the field uses them: an EAGLE-3 head costs one layer plus its fc and a 32k LM head
/// (bounded below by reading those weights once), n-gram lookup a fixed fraction of verification.
#[test]
fn eagle3_and_ngram_drafters_are_priced_from_the_tables() {
    let dir = need_tables!();
    let mut o = OpsOptions::new(&dir, "H100-SXM", "Llama-3.1-8B");
    o.draft = Some("eagle3".into());
    let p = profile_from_ops(&o, &OpsGrid::default()).unwrap().profile;
    // Weights an EAGLE-3 head reads per forward, by hand: one Llama-3.1-8B layer, fc 3·4096 → 4096,
    // LM head 32000 × 4096; bf16, at 3.35 TB/s.
    let layer = 2.0 * 4096.0 * 4096.0 + 2.0 * 4096.0 * 1024.0 + 3.0 * 4096.0 * 14336.0;
    let bytes = 2.0 * (layer + 3.0 * 4096.0 * 4096.0 + 32000.0 * 4096.0);
    let floor = bytes / 3.35e12 * 1e9;
    let head = p.draft.ns[0][0];
    eprintln!(
        "EAGLE-3 head, batch 1: {:.3} ms (floor {:.3} ms)",
        head / 1e6,
        floor / 1e6
    );
    assert!(
        head >= floor && head <= 3.0 * floor,
        "{head} vs floor {floor}"
    );
    assert!(head < p.verify.ns[0][0][0] / 5.0);
    o.draft = Some("ngram".into());
    let p = profile_from_ops(&o, &OpsGrid::default()).unwrap().profile;
    for (i, row) in p.draft.ns.iter().enumerate() {
        for (j, d) in row.iter().enumerate() {
            assert_eq!(*d, p.verify.ns[i][0][j] * 0.005875);
        }
    }
}
