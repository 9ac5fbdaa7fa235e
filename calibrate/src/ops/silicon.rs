//! The silicon check: every vLLM row of aiconfigurator's `silicon_sample.csv` whose model, GPU and
//! parallelism the catalog and the operator tables can express, predicted by simulating a closed loop
//! at the row's concurrency with the row's input/output lengths on a profile composed from the tables.
//! Nothing is fitted to the rows.
//!
//! Simulated engine (vLLM V1 defaults): chunked prefill with an 8192-token budget, up to 1024
//! sequences, KV blocks of 16 tokens filling 90 % of GPU memory after the weights, no speculation.
//! Each row runs `10 × concurrency` requests (at least 20), the first `concurrency` phased evenly over
//! one request's expected life (a long run's steady state, not lockstep waves of simultaneous
//! prefills); TTFT and TPOT are means over requests as `vllm bench serve` reports them, without the
//! ramp-up and the drain (the first and last `concurrency` requests).

use super::tables::{find_gpu, systems_dir};
use super::{catalog_model, profile_from_ops, OpsGrid, OpsOptions};
use crate::{CalibrateError, Result};
use polars::prelude::*;
use specsim_core::acceptance::ConstantAcceptance;
use specsim_core::cost::catalog::find_hardware;
use specsim_core::cost::profile::ProfileCost;
use specsim_core::cost::{BatchShape, CostModel};
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_core::workload::Workload;
use specsim_sim::cluster::router::RouterKind;
use specsim_sim::cluster::{simulate, Replica, SimOptions};
use specsim_sim::metrics::SloConfig;
use specsim_sim::simulated::SimBackend;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Model paths of the CSV that the catalog expresses, with their catalog names.
pub const MODELS: [(&str, &str); 4] = [
    ("Qwen/Qwen3-32B", "Qwen3-32B"),
    ("meta-llama/Llama-3.1-70B", "Llama-3.1-70B"),
    ("nvidia/Llama-3.1-8B-Instruct-FP8", "Llama-3.1-8B"),
    ("meta-llama/Llama-3.1-8B", "Llama-3.1-8B"),
];

/// One expressible row of the CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct SiliconRow {
    /// The row's `id`.
    pub id: String,
    /// GPU folder name (`h100_sxm`).
    pub gpu: String,
    /// Catalog model.
    pub model: String,
    /// `bf16` or `fp8`.
    pub dtype: String,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Input length.
    pub isl: u32,
    /// Output length.
    pub osl: u32,
    /// Concurrency.
    pub concurrency: u32,
    /// Measured mean TTFT, ms.
    pub ttft_ms: f64,
    /// Measured mean TPOT, ms.
    pub tpot_ms: f64,
}

/// The `systems/silicon_sample.csv` under the aiconfigurator folder.
pub fn silicon_path(dir: &Path) -> Result<PathBuf> {
    Ok(systems_dir(dir)?.join("silicon_sample.csv"))
}

/// Reads the rows specsim can express: vLLM, aggregated serving, H100/H200, a catalog model, bf16 or
/// fp8 weights, pipeline and attention-DP size 1. Other rows are counted in the second value.
pub fn read_rows(path: &Path) -> Result<(Vec<SiliconRow>, usize)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CalibrateError::table(path.display(), "file", e.to_string()))?;
    let mut rdr = csv_rows(&text);
    let header = CsvHeader::read(path, &mut rdr)?;
    let col = |name: &str| header.col(name);
    let c = [
        "id",
        "backend",
        "model_path",
        "system",
        "mode",
        "gemm_quant_mode",
        "isl",
        "osl",
        "batch_size",
        "tp_size",
        "pp_size",
        "attention_dp_size",
        "silicon_ttft_ms",
        "silicon_tpot_ms",
    ]
    .iter()
    .map(|n| col(n))
    .collect::<Result<Vec<usize>>>()?;
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for (line, f) in rdr.enumerate() {
        let line = line + 2;
        let get = |i: usize| f.get(c[i]).map(String::as_str).unwrap_or("");
        let model = MODELS.iter().find(|m| m.0 == get(2)).map(|m| m.1);
        let dtype = match get(5) {
            "" | "bf16" | "float16" => Some("bf16"),
            "fp8" => Some("fp8"),
            _ => None,
        };
        let ok = get(1) == "vllm"
            && matches!(get(3), "h100_sxm" | "h200_sxm")
            && get(4) == "agg"
            && model.is_some()
            && dtype.is_some()
            && matches!(get(10), "" | "1")
            && matches!(get(11), "" | "1")
            && !get(9).is_empty();
        let (Some(model), Some(dtype), true) = (model, dtype, ok) else {
            skipped += 1;
            continue;
        };
        let num = |i: usize, name: &str| -> Result<f64> {
            get(i)
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| {
                    CalibrateError::table(
                        format!("{}:{line}", path.display()),
                        name,
                        format!("`{}` is not a positive number", get(i)),
                    )
                })
        };
        out.push(SiliconRow {
            id: get(0).to_string(),
            gpu: get(3).to_string(),
            model: model.to_string(),
            dtype: dtype.to_string(),
            tp: num(9, "tp_size")? as u32,
            isl: num(6, "isl")? as u32,
            osl: num(7, "osl")? as u32,
            concurrency: num(8, "batch_size")? as u32,
            ttft_ms: num(12, "silicon_ttft_ms")?,
            tpot_ms: num(13, "silicon_tpot_ms")?,
        });
    }
    Ok((out, skipped))
}

/// A CSV file's header, whose column lookups fail naming the file and the missing column.
pub(crate) struct CsvHeader<'a> {
    path: &'a Path,
    names: Vec<String>,
}

impl<'a> CsvHeader<'a> {
    /// Takes the first row of `rows` (read from `path`) as the header.
    pub(crate) fn read(
        path: &'a Path,
        rows: &mut impl Iterator<Item = Vec<String>>,
    ) -> Result<CsvHeader<'a>> {
        let names = rows
            .next()
            .ok_or_else(|| CalibrateError::table(path.display(), "header", "empty file"))?;
        Ok(CsvHeader { path, names })
    }

    /// Index of column `name`.
    pub(crate) fn col(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| CalibrateError::table(self.path.display(), name, "column missing"))
    }
}

/// Minimal CSV splitting with double-quoted fields (the file quotes fields holding commas).
pub(crate) fn csv_rows(text: &str) -> impl Iterator<Item = Vec<String>> + '_ {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = l.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(ch),
            }
        }
        fields.push(cur);
        fields
    })
}

/// Predicted mean TTFT and TPOT (ms) of a closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Mean TTFT, ms.
    pub ttft_ms: f64,
    /// Mean TPOT, ms.
    pub tpot_ms: f64,
    /// KV blocks of the simulated replica.
    pub kv_blocks: u32,
}

/// KV blocks of 16 tokens on `tp` GPUs: `memory × tp × util − weights` over the KV bytes of a block.
pub fn kv_blocks(
    memory_gb: f64,
    tp: u32,
    util: f64,
    weights_bytes: f64,
    kv_per_token: f64,
) -> Option<u32> {
    let free = memory_gb * 1e9 * tp as f64 * util - weights_bytes;
    let blocks = (free / (kv_per_token * 16.0)).floor();
    (blocks >= 1.0).then_some(blocks.min(u32::MAX as f64) as u32)
}

/// Simulates `requests` requests of `isl`/`osl` tokens at `concurrency` in flight on `cost`.
pub fn predict_closed_loop(
    cost: Arc<dyn CostModel>,
    kv_blocks: u32,
    isl: u32,
    osl: u32,
    concurrency: u32,
    requests: usize,
) -> Result<Prediction> {
    // The steady state of a closed loop: the first `concurrency` requests phased evenly over one
    // request's expected life (its prefill plus osl − 1 decode steps at this batch), so finishes, and
    // hence new prefills, are spread as in a long run rather than in lockstep waves.
    let life_ns = cost.target_step(&BatchShape::prefill(isl)) as f64
        + (osl.saturating_sub(1)) as f64
            * cost.target_step(&BatchShape::uniform(concurrency, 1, (isl + osl / 2) as u64)) as f64;
    let mut w = Workload::default();
    for i in 0..requests {
        let t = if i < concurrency as usize {
            (life_ns * i as f64 / concurrency as f64).round() as u64
        } else {
            life_ns.round() as u64
        };
        w.push(t, isl, osl, None);
    }
    let out = run_engine(cost, kv_blocks, &w, Some(concurrency))?;
    // Means over the steady part: without the ramp-up (the first `concurrency` requests) and the
    // drain (the last `concurrency`, which finish with fewer in flight).
    let c = concurrency as u64;
    let steady: Vec<_> = out
        .records
        .iter()
        .filter(|r| r.id >= c && r.id + c < requests as u64)
        .collect();
    let recs: Vec<_> = if steady.is_empty() {
        out.records.iter().collect()
    } else {
        steady
    };
    let n = recs.len().max(1) as f64;
    Ok(Prediction {
        ttft_ms: recs.iter().map(|r| r.ttft_s).sum::<f64>() / n * 1e3,
        tpot_ms: recs.iter().map(|r| r.tpot_s).sum::<f64>() / n * 1e3,
        kv_blocks,
    })
}

/// Simulates `w` on one replica with vLLM V1 defaults (chunked prefill, 8192-token budget, up to 1024
/// sequences), no speculation; closed loop at `concurrency` when given.
pub fn run_engine(
    cost: Arc<dyn CostModel>,
    kv_blocks: u32,
    w: &Workload,
    concurrency: Option<u32>,
) -> Result<specsim_sim::cluster::SimOutput> {
    let cfg = EngineConfig {
        kv_blocks: Some(kv_blocks),
        max_num_seqs: 1024,
        max_batched_tokens: 8192,
        chunked_prefill: true,
        ..EngineConfig::default()
    };
    let policy = PolicyConfig::None;
    let engine = Engine::new(cfg, policy.build(), Arc::clone(&cost))?;
    let backend = SimBackend::new(
        Arc::clone(&cost),
        Arc::new(ConstantAcceptance { alpha: 0.0 }),
        stream(0, "acceptance", 0),
        false,
    );
    Ok(simulate(
        vec![Replica {
            engine,
            backend: Box::new(backend),
        }],
        RouterKind::default().build(),
        w,
        "none",
        &SloConfig::default(),
        &SimOptions {
            concurrency,
            ..Default::default()
        },
    )?)
}

/// The LLMServingSim H100 reference (`evaluation/figure_8`, single instance): Llama-3.1-70B on 4 H100s
/// serving `sharegpt_req300_rate10_llama.jsonl` open loop; measured vLLM 1,833.89 tok/s, mean TTFT
/// 61.5 ms, mean TPOT 26.72 ms (`SD_latency.tsv`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServingResult {
    /// Output tokens per second over the run (first arrival to last finish).
    pub output_tok_s: f64,
    /// Prompt + output tokens per second.
    pub total_tok_s: f64,
    /// Mean TTFT, ms.
    pub ttft_ms: f64,
    /// Mean TPOT, ms.
    pub tpot_ms: f64,
}

/// Reads LLMServingSim's workload JSONL (`input_toks`, `output_toks`, `arrival_time_ns`).
pub fn read_llmservingsim_workload(path: &Path) -> Result<Workload> {
    #[derive(serde::Deserialize)]
    struct Row {
        input_toks: u32,
        output_toks: u32,
        arrival_time_ns: u64,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CalibrateError::table(path.display(), "file", e.to_string()))?;
    let mut w = Workload::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: Row = serde_json::from_str(line).map_err(|e| {
            CalibrateError::table(
                format!("{}:{}", path.display(), i + 1),
                "line",
                e.to_string(),
            )
        })?;
        w.push(
            r.arrival_time_ns,
            r.input_toks.max(1),
            r.output_toks.max(1),
            None,
        );
    }
    w.sort_and_renumber();
    Ok(w)
}

/// Predicts the LLMServingSim reference run: Llama-3.1-70B bf16, TP 4, H100 tables under `dir`.
pub fn llmservingsim_reference(dir: &Path, workload: &Path) -> Result<ServingResult> {
    let mut o = OpsOptions::new(dir, "H100-SXM", "Llama-3.1-70B");
    o.tp = 4;
    let p = profile_from_ops(&o, &OpsGrid::default())?;
    let m = catalog_model("Llama-3.1-70B", "model")?;
    let blocks = kv_blocks(80.0, 4, 0.9, m.weight_bytes_total(), m.kv_bytes_per_token())
        .ok_or_else(|| CalibrateError::Config("Llama-3.1-70B does not fit on 4 × H100".into()))?;
    let w = read_llmservingsim_workload(workload)?;
    let out = run_engine(
        Arc::new(ProfileCost { profile: p.profile }),
        blocks,
        &w,
        None,
    )?;
    let r = &out.records;
    let n = r.len().max(1) as f64;
    let start = r.iter().map(|x| x.arrival_s).fold(f64::INFINITY, f64::min);
    let end = r.iter().map(|x| x.finish_s).fold(0.0, f64::max);
    let dur = (end - start).max(1e-9);
    let out_tok: f64 = r.iter().map(|x| x.output_tokens as f64).sum();
    let in_tok: f64 = r.iter().map(|x| x.prompt_tokens as f64).sum();
    Ok(ServingResult {
        output_tok_s: out_tok / dur,
        total_tok_s: (out_tok + in_tok) / dur,
        ttft_ms: r.iter().map(|x| x.ttft_s).sum::<f64>() / n * 1e3,
        tpot_ms: r.iter().map(|x| x.tpot_s).sum::<f64>() / n * 1e3,
    })
}

/// The check's result: a polars frame with one row per CSV row (`id, gpu, model, tp, isl, osl,
/// concurrency, ttft_measured_ms, ttft_predicted_ms, ttft_error_pct, tpot_measured_ms,
/// tpot_predicted_ms, tpot_error_pct`) and the MAPE per GPU and model.
pub struct SiliconCheck {
    /// Row table.
    pub rows: DataFrame,
    /// `gpu, model, rows, ttft_mape_pct, tpot_mape_pct`, plus one `all` row per GPU.
    pub mape: DataFrame,
    /// Rows of the CSV that specsim cannot express (other engines, MoE models, disaggregated).
    pub skipped: usize,
    /// Notes from composing the profiles (extrapolations).
    pub notes: Vec<String>,
}

/// (GPU, model, dtype, TP) of a composed profile.
type ProfileKey = (String, String, String, u32);

fn pl(e: PolarsError) -> CalibrateError {
    CalibrateError::Config(format!("polars: {e}"))
}

/// Runs the check over `rows` with the operator tables under `dir`. `step_overhead_ns` is the
/// per-iteration overhead put in every profile (documented; not fitted to the rows).
pub fn run_check(
    dir: &Path,
    rows: &[SiliconRow],
    skipped: usize,
    step_overhead_ns: f64,
    progress: &dyn Fn(usize, usize),
) -> Result<SiliconCheck> {
    let mut costs: BTreeMap<ProfileKey, (Arc<dyn CostModel>, u32)> = BTreeMap::new();
    let mut notes = Vec::new();
    let mut preds = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        progress(i, rows.len());
        let key = (r.gpu.clone(), r.model.clone(), r.dtype.clone(), r.tp);
        if !costs.contains_key(&key) {
            let gpu = find_gpu(&r.gpu).ok_or_else(|| {
                CalibrateError::table(&r.id, "system", format!("unknown GPU {}", r.gpu))
            })?;
            let mut o = OpsOptions::new(dir, gpu.catalog, &r.model);
            o.tp = r.tp;
            o.dtype = r.dtype.clone();
            o.step_overhead_ns = step_overhead_ns;
            let p = profile_from_ops(&o, &OpsGrid::default())?;
            notes.extend(
                p.notes
                    .iter()
                    .map(|n| format!("{}/{}/TP{}: {n}", r.gpu, r.model, r.tp)),
            );
            let mut m = catalog_model(&r.model, "model")?;
            m.weight_bytes = if r.dtype == "fp8" { 1.0 } else { 2.0 };
            let hw = find_hardware(gpu.catalog).ok_or_else(|| {
                CalibrateError::Config(format!("{} is not in the hardware catalog", gpu.catalog))
            })?;
            let blocks = kv_blocks(
                hw.memory_gb,
                r.tp,
                0.9,
                m.weight_bytes_total(),
                m.kv_bytes_per_token(),
            )
            .ok_or_else(|| {
                CalibrateError::table(
                    &r.id,
                    "tp_size",
                    format!("{} does not fit on {} × {}", r.model, r.tp, gpu.catalog),
                )
            })?;
            costs.insert(
                key.clone(),
                (Arc::new(ProfileCost { profile: p.profile }), blocks),
            );
        }
        let (cost, blocks) = &costs[&key];
        let n = (10 * r.concurrency as usize).max(20);
        preds.push(predict_closed_loop(
            Arc::clone(cost),
            *blocks,
            r.isl,
            r.osl,
            r.concurrency,
            n,
        )?);
    }
    progress(rows.len(), rows.len());
    let err = |p: f64, m: f64| (p - m) / m * 100.0;
    let rows_df = df!(
        "id" => rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        "gpu" => rows.iter().map(|r| r.gpu.clone()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|r| format!("{} {}", r.model, r.dtype)).collect::<Vec<_>>(),
        "tp" => rows.iter().map(|r| r.tp).collect::<Vec<_>>(),
        "isl" => rows.iter().map(|r| r.isl).collect::<Vec<_>>(),
        "osl" => rows.iter().map(|r| r.osl).collect::<Vec<_>>(),
        "concurrency" => rows.iter().map(|r| r.concurrency).collect::<Vec<_>>(),
        "ttft_measured_ms" => rows.iter().map(|r| r.ttft_ms).collect::<Vec<_>>(),
        "ttft_predicted_ms" => preds.iter().map(|p| p.ttft_ms).collect::<Vec<_>>(),
        "ttft_error_pct" => rows.iter().zip(&preds).map(|(r, p)| err(p.ttft_ms, r.ttft_ms)).collect::<Vec<_>>(),
        "tpot_measured_ms" => rows.iter().map(|r| r.tpot_ms).collect::<Vec<_>>(),
        "tpot_predicted_ms" => preds.iter().map(|p| p.tpot_ms).collect::<Vec<_>>(),
        "tpot_error_pct" => rows.iter().zip(&preds).map(|(r, p)| err(p.tpot_ms, r.tpot_ms)).collect::<Vec<_>>(),
    )
    .map_err(pl)?;
    let mape = mape_table(&rows_df)?;
    Ok(SiliconCheck {
        rows: rows_df,
        mape,
        skipped,
        notes,
    })
}

/// MAPE of TTFT and TPOT per (gpu, model) and per gpu (`model = all`), from the row table.
pub fn mape_table(rows: &DataFrame) -> Result<DataFrame> {
    let gpus = rows.column("gpu").map_err(pl)?.str().map_err(pl)?.clone();
    let models = rows.column("model").map_err(pl)?.str().map_err(pl)?.clone();
    let mut groups: Vec<(String, String)> = Vec::new();
    for (g, m) in gpus.iter().zip(models.iter()) {
        let (g, m) = (g.unwrap_or("").to_string(), m.unwrap_or("").to_string());
        for key in [(g.clone(), m), (g, "all".to_string())] {
            if !groups.contains(&key) {
                groups.push(key);
            }
        }
    }
    groups.sort();
    let (mut gcol, mut mcol, mut ncol, mut tt, mut tp) = (vec![], vec![], vec![], vec![], vec![]);
    for (g, m) in &groups {
        let mut mask = gpus.equal(g.as_str());
        if m != "all" {
            mask = mask & models.equal(m.as_str());
        }
        let sub = rows.filter(&mask).map_err(pl)?;
        let mean_abs = |c: &str| -> Result<f64> {
            let s = sub.column(c).map_err(pl)?.f64().map_err(pl)?.clone();
            Ok(s.apply_values(f64::abs).mean().unwrap_or(f64::NAN))
        };
        gcol.push(g.clone());
        mcol.push(m.clone());
        ncol.push(sub.height() as u32);
        tt.push(mean_abs("ttft_error_pct")?);
        tp.push(mean_abs("tpot_error_pct")?);
    }
    df!(
        "gpu" => gcol,
        "model" => mcol,
        "rows" => ncol,
        "ttft_mape_pct" => tt,
        "tpot_mape_pct" => tp,
    )
    .map_err(pl)
}

/// A frame as CSV text (plain formatting; the polars CSV writer would need another feature).
pub fn to_csv(df: &DataFrame) -> Result<String> {
    let mut s = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for i in 0..df.height() {
        let row = df.get(i).unwrap_or_default();
        let cells: Vec<String> = row.iter().map(cell).collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    Ok(s)
}

/// A frame as a Markdown table.
pub fn to_markdown(df: &DataFrame) -> Result<String> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut s = format!(
        "| {} |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for i in 0..df.height() {
        let row = df.get(i).unwrap_or_default();
        let cells: Vec<String> = row.iter().map(cell).collect();
        s.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    Ok(s)
}

fn cell(v: &AnyValue) -> String {
    match v {
        AnyValue::Float64(x) => format!("{x:.2}"),
        AnyValue::String(x) => x.to_string(),
        AnyValue::StringOwned(x) => x.to_string(),
        AnyValue::Null => String::new(),
        other => other.to_string(),
    }
}
