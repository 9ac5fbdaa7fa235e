//! The aiconfigurator operator tables (parquet, read with polars' eager reader) as lookups over shape
//! space: GEMM by (m, n, k), context and generation attention by (batch, length) for a head layout,
//! all-reduce by message size for a TP degree.
//!
//! Layout under the folder given (`--from-ops`): `aic-core/src/aiconfigurator_core/systems/` (or that
//! folder itself) holding `<gpu>.yaml` and `data/<gpu>/{gemm,attention,comm}/vllm/<version>/*.parquet`.
//! Latencies in the files are milliseconds; everything here is nanoseconds.

use super::interp::{bracket, reach_note, Curve, Reach};
use crate::{CalibrateError, Result};
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Commit of `ai-dynamo/aiconfigurator` the shared tables were copied from (shared/gpu/SOURCES.md).
pub const AIC_COMMIT: &str = "095f58a51c4ca8e61b66ec108d86f223f8d559ce";

/// A GPU of the tables: catalog name and folder name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuName {
    /// Name in specsim's hardware catalog.
    pub catalog: &'static str,
    /// Folder and yaml stem in aiconfigurator.
    pub folder: &'static str,
}

/// The GPUs the tables cover.
pub const GPUS: [GpuName; 3] = [
    GpuName {
        catalog: "H100-SXM",
        folder: "h100_sxm",
    },
    GpuName {
        catalog: "H200",
        folder: "h200_sxm",
    },
    GpuName {
        catalog: "A100-80G",
        folder: "a100_sxm",
    },
];

/// Finds a GPU by catalog or folder name (case-insensitive; `H200-SXM` and `A100-SXM` also accepted).
pub fn find_gpu(name: &str) -> Option<GpuName> {
    let n = name.to_ascii_lowercase().replace('-', "_");
    GPUS.into_iter().find(|g| {
        g.folder == n
            || g.catalog.eq_ignore_ascii_case(name)
            || n == g.folder.replace("_sxm", "")
            || (g.folder == "a100_sxm" && n == "a100_80g")
    })
}

/// The `systems/` folder under `dir` (accepts the shared `aiconfigurator/` folder or `systems/` itself).
pub fn systems_dir(dir: &Path) -> Result<PathBuf> {
    let deep = dir.join("aic-core/src/aiconfigurator_core/systems");
    for d in [deep, dir.to_path_buf()] {
        if d.join("data").is_dir() {
            return Ok(d);
        }
    }
    Err(CalibrateError::table(
        dir.display(),
        "data",
        "no aiconfigurator systems folder here (expected aic-core/src/aiconfigurator_core/systems/data or data/)",
    ))
}

/// Reads a parquet file into a data frame; a missing or unreadable file is an error naming it.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path)
        .map_err(|e| CalibrateError::table(path.display(), "file", e.to_string()))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| CalibrateError::table(path.display(), "parquet", e.to_string()))
}

/// A numeric column as f64; a missing column or a null/non-finite cell names the row.
pub fn f64_col(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<f64>> {
    let c = df
        .column(name)
        .map_err(|_| CalibrateError::table(path.display(), name, "column missing"))?;
    let c = c
        .cast(&DataType::Float64)
        .map_err(|e| CalibrateError::table(path.display(), name, format!("not numeric: {e}")))?;
    let ca = c
        .f64()
        .map_err(|e| CalibrateError::table(path.display(), name, e.to_string()))?;
    ca.iter()
        .enumerate()
        .map(|(i, v)| {
            v.filter(|x| x.is_finite()).ok_or_else(|| {
                CalibrateError::table(
                    path.display(),
                    name,
                    format!("row {i}: missing or not a finite number"),
                )
            })
        })
        .collect()
}

/// A column as strings (numbers formatted); a missing column is an error, a null cell is "".
pub fn str_col(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<String>> {
    let c = df
        .column(name)
        .map_err(|_| CalibrateError::table(path.display(), name, "column missing"))?;
    let c = c
        .cast(&DataType::String)
        .map_err(|e| CalibrateError::table(path.display(), name, e.to_string()))?;
    let ca = c
        .str()
        .map_err(|e| CalibrateError::table(path.display(), name, e.to_string()))?;
    Ok(ca.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

/// Notes on lookups outside the measured ranges: per file and axis, how many and the farthest.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    by_axis: BTreeMap<(String, String), (usize, f64, String)>,
    other: BTreeSet<String>,
}

impl Notes {
    /// No notes.
    pub fn new() -> Notes {
        Notes::default()
    }

    /// True when every lookup was inside its table.
    pub fn is_empty(&self) -> bool {
        self.by_axis.is_empty() && self.other.is_empty()
    }

    /// Records a lookup of `what = x` in `file` that fell at `reach` (nothing when inside); `ctx` says
    /// which curve (e.g. the batch size).
    pub fn add(&mut self, file: &Path, what: &str, x: f64, reach: Reach, ctx: &str) {
        let Some(sentence) = reach_note(what, x, reach) else {
            return;
        };
        let edge = match reach {
            Reach::Below(e) | Reach::Above(e) => e,
            Reach::Inside => return,
        };
        let far = if x > edge {
            x / edge
        } else {
            edge / x.max(1e-300)
        };
        let e = self
            .by_axis
            .entry((file.display().to_string(), what.to_string()))
            .or_insert((0, 0.0, String::new()));
        e.0 += 1;
        if far > e.1 {
            e.1 = far;
            e.2 = format!("{sentence}{ctx}");
        }
    }

    /// Records a free-form note.
    pub fn push_line(&mut self, line: String) {
        self.other.insert(line);
    }

    /// Adds every note of `o`.
    pub fn merge(&mut self, o: &Notes) {
        for (k, v) in &o.by_axis {
            let e = self
                .by_axis
                .entry(k.clone())
                .or_insert((0, 0.0, String::new()));
            e.0 += v.0;
            if v.1 > e.1 {
                e.1 = v.1;
                e.2 = v.2.clone();
            }
        }
        self.other.extend(o.other.iter().cloned());
    }

    /// One line per file and axis, then the free-form notes.
    pub fn lines(&self) -> Vec<String> {
        self.by_axis
            .iter()
            .map(|((file, what), (n, _, worst))| {
                format!("{file}: {what}: {n} lookup(s) outside the measured range; the farthest: {worst}")
            })
            .chain(self.other.iter().cloned())
            .collect()
    }

    /// The lines, as an iterator.
    pub fn iter(&self) -> impl Iterator<Item = String> {
        self.lines().into_iter()
    }
}

/// GEMM latency by (m, n, k) for one dtype.
#[derive(Debug, Clone)]
pub struct GemmTable {
    /// The file.
    pub path: PathBuf,
    by_nk: BTreeMap<(u64, u64), Curve>,
    ns: Vec<f64>,
    ks: Vec<f64>,
}

impl GemmTable {
    /// Reads `gemm_perf.parquet`, keeping rows of `dtype` (`bf16` or `bfloat16`, `fp8`, `fp8_block`).
    pub fn read(path: &Path, dtype: &str) -> Result<GemmTable> {
        let dtype = if dtype == "bf16" { "bfloat16" } else { dtype };
        let df = read_parquet(path)?;
        let dt = str_col(&df, path, "gemm_dtype")?;
        let (m, n, k) = (
            f64_col(&df, path, "m")?,
            f64_col(&df, path, "n")?,
            f64_col(&df, path, "k")?,
        );
        let lat = f64_col(&df, path, "latency")?;
        let mut pts: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
        for i in 0..lat.len() {
            if dt[i] == dtype {
                pts.entry((n[i] as u64, k[i] as u64))
                    .or_default()
                    .push((m[i], lat[i] * 1e6));
            }
        }
        if pts.is_empty() {
            let have: BTreeSet<&String> = dt.iter().collect();
            return Err(CalibrateError::table(
                path.display(),
                "gemm_dtype",
                format!("no rows of dtype {dtype} (the file has {have:?})"),
            ));
        }
        let ns: BTreeSet<u64> = pts.keys().map(|p| p.0).collect();
        let ks: BTreeSet<u64> = pts.keys().map(|p| p.1).collect();
        Ok(GemmTable {
            path: path.to_path_buf(),
            by_nk: pts
                .into_iter()
                .filter_map(|(key, v)| Curve::new(v).map(|c| (key, c)))
                .collect(),
            ns: ns.into_iter().map(|x| x as f64).collect(),
            ks: ks.into_iter().map(|x| x as f64).collect(),
        })
    }

    /// The measured (n, k) pairs.
    pub fn shapes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_nk.keys().copied()
    }

    /// Nanoseconds of an (m × k) · (k × n) product: exact on a measured (m, n, k), multilinear between
    /// measured neighbours (m along each measured (n, k) curve, then n and k), linear outside (noted).
    pub fn ns(&self, m: f64, n: f64, k: f64, notes: &mut Notes) -> Result<f64> {
        let curve_at = |nn: f64, kk: f64, notes: &mut Notes| -> Result<f64> {
            let c = self.by_nk.get(&(nn as u64, kk as u64)).ok_or_else(|| {
                CalibrateError::table(
                    self.path.display(),
                    "n,k",
                    format!("no measured GEMM with n = {nn}, k = {kk} to interpolate (n,k) = ({n}, {k}) from"),
                )
            })?;
            let (y, reach) = c.eval(m);
            notes.add(
                &self.path,
                "gemm m",
                m,
                reach,
                &format!(" (n = {nn}, k = {kk})"),
            );
            Ok(y)
        };
        if self.by_nk.contains_key(&(n as u64, k as u64)) && n.fract() == 0.0 && k.fract() == 0.0 {
            return curve_at(n, k, notes);
        }
        let (n0, n1, tn) = bracket(&self.ns, n)
            .ok_or_else(|| CalibrateError::table(self.path.display(), "n", "empty"))?;
        let (k0, k1, tk) = bracket(&self.ks, k)
            .ok_or_else(|| CalibrateError::table(self.path.display(), "k", "empty"))?;
        for (what, x, t, lo, hi) in [("gemm n", n, tn, n0, n1), ("gemm k", k, tk, k0, k1)] {
            let reach = if t < 0.0 {
                Reach::Below(lo)
            } else if t > 1.0 {
                Reach::Above(hi)
            } else {
                Reach::Inside
            };
            notes.add(&self.path, what, x, reach, "");
        }
        let at = curve_at;
        let lo = lerp(at(n0, k0, notes)?, at(n0, k1, notes)?, tk);
        let hi = lerp(at(n1, k0, notes)?, at(n1, k1, notes)?, tk);
        Ok(lerp(lo, hi, tn).max(0.0))
    }
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    if t == 0.0 {
        a
    } else {
        a + (b - a) * t
    }
}

/// Attention latency by (batch, length) for one head layout: per batch size a curve over length,
/// interpolated linearly across batch sizes.
#[derive(Debug, Clone)]
pub struct AttnTable {
    /// The file.
    pub path: PathBuf,
    /// The length column (`isl` for context, `step` for generation).
    pub length_col: &'static str,
    by_batch: BTreeMap<u64, Curve>,
    batches: Vec<f64>,
    /// Sequences of the measured layout that one sequence of the asked layout counts as (1 unless
    /// the layout was not measured; see [`AttnTable::read`]).
    batch_factor: f64,
}

/// Most sequences of a narrower measured multi-head layout one sequence may be priced as.
const MAX_HEAD_GROUPS: u64 = 8;

/// A head layout of the attention tables (per GPU, after tensor parallelism).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Heads {
    /// Query heads per GPU.
    pub q: u64,
    /// Key/value heads per GPU.
    pub kv: u64,
    /// Head dimension.
    pub dim: u64,
}

impl AttnTable {
    /// Reads a context (`isl`) or generation (`step`) attention table for one head layout and KV dtype.
    pub fn read(
        path: &Path,
        length_col: &'static str,
        heads: Heads,
        kv_dtype: &str,
    ) -> Result<AttnTable> {
        let df = read_parquet(path)?;
        let b = f64_col(&df, path, "batch_size")?;
        let len = f64_col(&df, path, length_col)?;
        let hq = f64_col(&df, path, "num_heads")?;
        let hkv = f64_col(&df, path, "num_key_value_heads")?;
        let dim = f64_col(&df, path, "head_dim")?;
        let kvd = str_col(&df, path, "kv_cache_dtype")?;
        let lat = f64_col(&df, path, "latency")?;
        let mut layouts = BTreeSet::new();
        for i in 0..lat.len() {
            layouts.insert((hq[i] as u64, hkv[i] as u64, dim[i] as u64, kvd[i].clone()));
        }
        // Multi-head attention wider than the tables (Llama-2-7B: 32 query and 32 KV heads per GPU)
        // is measured only up to a few heads: price g = q/q' sequences of the widest measured q'/q'
        // layout dividing it — the same KV bytes and FLOPs, the kernel's grid is batch × heads — as
        // long as that layout is not much narrower (at most MAX_HEAD_GROUPS sequences per sequence).
        let (mut want, mut batch_factor) = (heads, 1.0);
        let exact = layouts.contains(&(heads.q, heads.kv, heads.dim, kv_dtype.to_string()));
        if !exact && heads.q == heads.kv {
            if let Some(l) = layouts
                .iter()
                .filter(|l| {
                    l.0 == l.1
                        && l.2 == heads.dim
                        && l.3 == kv_dtype
                        && heads.q.is_multiple_of(l.0)
                        && heads.q / l.0 <= MAX_HEAD_GROUPS
                })
                .max_by_key(|l| l.0)
            {
                batch_factor = (heads.q / l.0) as f64;
                want = Heads {
                    q: l.0,
                    kv: l.1,
                    dim: l.2,
                };
            }
        } else if !exact {
            // Grouped-query layouts between the measured ones (Mixtral-8x22B at TP 8: 6 query heads
            // over 1 KV head) take the nearest measured layout with the same KV heads and no fewer
            // query heads: the same KV bytes read, at most the FLOPs of the wider group.
            if let Some(l) = layouts
                .iter()
                .filter(|l| {
                    l.1 == heads.kv && l.0 >= heads.q && l.2 == heads.dim && l.3 == kv_dtype
                })
                .min_by_key(|l| l.0)
            {
                want = Heads {
                    q: l.0,
                    kv: l.1,
                    dim: l.2,
                };
            }
        }
        let mut pts: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
        for i in 0..lat.len() {
            if hq[i] as u64 == want.q
                && hkv[i] as u64 == want.kv
                && dim[i] as u64 == want.dim
                && kvd[i] == kv_dtype
            {
                pts.entry(b[i] as u64)
                    .or_default()
                    .push((len[i], lat[i] * 1e6));
            }
        }
        if pts.is_empty() {
            let near: Vec<String> = layouts
                .iter()
                .filter(|l| l.2 == heads.dim)
                .take(12)
                .map(|l| format!("{}/{}/{} {}", l.0, l.1, l.2, l.3))
                .collect();
            return Err(CalibrateError::table(
                path.display(),
                "num_heads,num_key_value_heads,head_dim,kv_cache_dtype",
                format!(
                    "no rows for {} query / {} KV heads of dim {} with KV {kv_dtype} (some measured: {})",
                    heads.q,
                    heads.kv,
                    heads.dim,
                    near.join(", ")
                ),
            ));
        }
        let batches = pts.keys().map(|&x| x as f64).collect();
        Ok(AttnTable {
            path: path.to_path_buf(),
            length_col,
            by_batch: pts
                .into_iter()
                .filter_map(|(key, v)| Curve::new(v).map(|c| (key, c)))
                .collect(),
            batches,
            batch_factor,
        })
    }

    /// Nanoseconds of one layer's attention for `batch` sequences of `length` tokens.
    pub fn ns(&self, batch: f64, length: f64, notes: &mut Notes) -> Result<f64> {
        let batch = batch * self.batch_factor;
        let (b0, b1, t) = bracket(&self.batches, batch)
            .ok_or_else(|| CalibrateError::table(self.path.display(), "batch_size", "empty"))?;
        let reach = if t < 0.0 {
            Reach::Below(b0)
        } else if t > 1.0 {
            Reach::Above(b1)
        } else {
            Reach::Inside
        };
        notes.add(&self.path, "attention batch_size", batch, reach, "");
        let mut at = |b: f64| -> Result<f64> {
            let c = self.by_batch.get(&(b as u64)).ok_or_else(|| {
                CalibrateError::table(
                    self.path.display(),
                    "batch_size",
                    format!("no curve for batch {b}"),
                )
            })?;
            let (y, reach) = c.eval(length);
            notes.add(
                &self.path,
                self.length_col,
                length,
                reach,
                &format!(" (batch {b})"),
            );
            Ok(y)
        };
        let (y0, y1) = (at(b0)?, if t == 0.0 { 0.0 } else { at(b1)? });
        Ok(lerp(y0, y1, t).max(0.0))
    }
}

/// Fused MoE layer latency by tokens for one model shape (`moe_perf.parquet`: vLLM's fused MoE kernel,
/// balanced routing where measured, else the flattest power-law routing).
#[derive(Debug, Clone)]
pub struct MoeTable {
    /// The file.
    pub path: PathBuf,
    curve: Curve,
    /// Factor on the measured latency: 1/TP where only the unsharded layer was measured (each GPU holds
    /// ffn/TP of every expert: 1/TP of the weights read and of the FLOPs), else 1.
    scale: f64,
}

impl MoeTable {
    /// Reads the rows of a layer with `hidden`, expert width `inter`, `experts` routed `top_k` each,
    /// `dtype` (`bfloat16`, `fp8`), sharded over `tp` GPUs; the unsharded rows scaled by 1/TP when the
    /// table has none at that TP.
    pub fn read(
        path: &Path,
        shape: (u32, u32, u32, u32),
        dtype: &str,
        tp: u32,
    ) -> Result<MoeTable> {
        let (hidden, inter, experts, top_k) = shape;
        let df = read_parquet(path)?;
        let col = |n: &str| f64_col(&df, path, n);
        let (tok, h, f, k, e) = (
            col("num_tokens")?,
            col("hidden_size")?,
            col("inter_size")?,
            col("topk")?,
            col("num_experts")?,
        );
        let (mtp, mep, lat) = (col("moe_tp_size")?, col("moe_ep_size")?, col("latency")?);
        let (dt, dist) = (
            str_col(&df, path, "moe_dtype")?,
            str_col(&df, path, "distribution")?,
        );
        let rows_at = |want_tp: u32, want_ep: u32, want_dist: &str| -> Vec<(f64, f64)> {
            (0..lat.len())
                .filter(|&i| {
                    h[i] as u32 == hidden
                        && f[i] as u32 == inter
                        && k[i] as u32 == top_k
                        && e[i] as u32 == experts
                        && mtp[i] as u32 == want_tp
                        && mep[i] as u32 == want_ep
                        && dt[i] == dtype
                        && dist[i] == want_dist
                })
                .map(|i| (tok[i], lat[i] * 1e6))
                .collect()
        };
        let tp = tp.max(1);
        // The layer sharded over `tp` GPUs as measured; else the unsharded layer at 1/TP; else the
        // experts spread over `tp` GPUs (expert parallelism: the same per-GPU work with balanced
        // routing, all-to-all included in the measurement).
        // Balanced routing where measured; the A100 table has Mixtral's layer only under power-law
        // routing, of which the flatter (exponent 1.01) is the nearer.
        let (pts, scale) = ["balanced", "power_law_1.01", "power_law_1.2"]
            .into_iter()
            .flat_map(|d| {
                [(tp, 1, 1.0), (1, 1, 1.0 / tp as f64), (1, tp, 1.0)]
                    .map(|(t, ep, sc)| (t, ep, sc, d))
            })
            .map(|(t, ep, scale, d)| (rows_at(t, ep, d), scale))
            .find(|(p, _)| !p.is_empty())
            .unwrap_or_default();
        let curve = Curve::new(pts).ok_or_else(|| {
            CalibrateError::table(
                path.display(),
                "hidden_size,inter_size,topk,num_experts,moe_tp_size,moe_ep_size,moe_dtype",
                format!(
                    "no rows for {hidden}×{inter}, {experts} experts top {top_k}, {dtype} at TP {tp}, TP 1 or EP {tp}"
                ),
            )
        })?;
        Ok(MoeTable {
            path: path.to_path_buf(),
            curve,
            scale,
        })
    }

    /// Nanoseconds of one MoE layer over `tokens` tokens.
    pub fn ns(&self, tokens: f64, notes: &mut Notes) -> f64 {
        let (y, reach) = self.curve.eval(tokens);
        notes.add(&self.path, "moe num_tokens", tokens, reach, "");
        y.max(0.0) * self.scale
    }
}

/// All-reduce latency by message size (elements) for one TP degree.
#[derive(Debug, Clone)]
pub struct AllReduceTable {
    /// The file.
    pub path: PathBuf,
    curve: Curve,
}

impl AllReduceTable {
    /// Reads vLLM's custom all-reduce table for `gpus` GPUs and `backend` (`vllm_graph` or
    /// `vllm_eager`).
    pub fn read(path: &Path, gpus: u32, backend: &str) -> Result<AllReduceTable> {
        let df = read_parquet(path)?;
        let n = f64_col(&df, path, "num_gpus")?;
        let size = f64_col(&df, path, "message_size")?;
        let be = str_col(&df, path, "backend")?;
        let lat = f64_col(&df, path, "latency")?;
        let pts: Vec<(f64, f64)> = (0..lat.len())
            .filter(|&i| n[i] as u32 == gpus && be[i] == backend)
            .map(|i| (size[i], lat[i] * 1e6))
            .collect();
        let curve = Curve::new(pts).ok_or_else(|| {
            CalibrateError::table(
                path.display(),
                "num_gpus,backend",
                format!("no rows for {gpus} GPUs with backend {backend}"),
            )
        })?;
        Ok(AllReduceTable {
            path: path.to_path_buf(),
            curve,
        })
    }

    /// Nanoseconds of one all-reduce of `elements` bf16 values.
    pub fn ns(&self, elements: f64, notes: &mut Notes) -> f64 {
        let (y, reach) = self.curve.eval(elements);
        notes.add(&self.path, "all-reduce message_size", elements, reach, "");
        y
    }
}

/// Memory-bound element-wise operations as aiconfigurator prices them, from the system yaml: bytes /
/// (bandwidth × empirical scaling) + a constant latency per operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemOps {
    /// Datasheet bandwidth, bytes/s (`gpu.mem_bw`).
    pub bandwidth: f64,
    /// `gpu.mem_bw_empirical_scaling_factor`.
    pub scaling: f64,
    /// `gpu.mem_empirical_constant_latency`, seconds.
    pub constant_s: f64,
}

impl MemOps {
    /// Reads the three keys from `<gpu>.yaml` (plain `key: value` lines; no YAML library needed).
    pub fn read(path: &Path) -> Result<MemOps> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CalibrateError::table(path.display(), "file", e.to_string()))?;
        let get = |key: &str| -> Result<f64> {
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .ok_or_else(|| CalibrateError::table(path.display(), key, "key missing"))?
                .trim()
                .parse::<f64>()
                .map_err(|e| {
                    CalibrateError::table(path.display(), key, format!("not a number: {e}"))
                })
        };
        Ok(MemOps {
            bandwidth: get("mem_bw")?,
            scaling: get("mem_bw_empirical_scaling_factor")?,
            constant_s: get("mem_empirical_constant_latency")?,
        })
    }

    /// Nanoseconds of one operation moving `bytes`.
    pub fn ns(&self, bytes: f64) -> f64 {
        (bytes / (self.bandwidth * self.scaling) + self.constant_s) * 1e9
    }
}
