//! Profiles from measured GPU operator tables (aiconfigurator, vLLM 0.14.0 on A100/H100/H200), the
//! silicon check against measured serving runs, and acceptance from SpecDecode-Bench traces.
//!
//! - [`tables`]: the parquet tables read with polars (eager reader; only this crate links polars) into
//!   lookups over shape space; [`interp`]: exact on measured points, linear between neighbours,
//!   extrapolated with a note outside.
//! - [`compose`]: one forward step from GEMMs, attention, all-reduce and element-wise operations.
//! - [`profile_from_ops`]: the step tables of the profile format (`docs/PROFILE.md`) composed over a
//!   grid of batch × tokens per sequence × context, prefill lengths, and a draft model, with provenance.
//! - [`silicon`]: predicted vs measured TTFT/TPOT of `silicon_sample.csv`; [`specbench`]: acceptance
//!   traces and the speed-ups they imply.

pub mod compose;
pub mod interp;
pub mod silicon;
pub mod specbench;
pub mod tables;

use crate::{CalibrateError, Result};
use compose::{heads, Composer, OpSet};
use specsim_core::cost::catalog::{find_model, ModelSpec};
use specsim_core::cost::profile::{Overhead, Profile, Table1, Table2, Table3};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tables::{AllReduceTable, AttnTable, GemmTable, Heads, MemOps, MoeTable, Notes};

/// The vLLM version of the operator tables used (shared/gpu/SOURCES.md: the one closest to v0.15.1,
/// present for all three GPUs).
pub const VLLM_VERSION: &str = "0.14.0";

/// n-gram lookup's CPU time per step as a fraction of the verification, measured by SpecDecode-Bench
/// on H100 (`predictor_coefficients.toml`, `draft_ngram.fraction_of_verify_time`).
pub const NGRAM_FRACTION_OF_VERIFY: f64 = 0.005875;

/// What `specsim calibrate --from-ops` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsOptions {
    /// The aiconfigurator folder (or its `systems/` folder).
    pub dir: PathBuf,
    /// GPU (catalog or aiconfigurator name).
    pub gpu: String,
    /// Target model (catalog name).
    pub target: String,
    /// Drafter, if any: a catalog model, `eagle3` (an EAGLE-3 head on the target) or `ngram`.
    pub draft: Option<String>,
    /// Tensor-parallel degree of the target (and of the draft).
    pub tp: u32,
    /// GEMM dtype of the weights: `bf16` or `fp8`.
    pub dtype: String,
    /// KV-cache dtype as the attention tables name it.
    pub kv_dtype: String,
    /// Longest speculation length tabulated (verify tokens per sequence 1..=k_max+1).
    pub k_max: u32,
    /// Per-iteration overhead outside the forwards, nanoseconds (`overhead.step_ns`).
    pub step_overhead_ns: f64,
}

impl OpsOptions {
    /// Defaults for a GPU and target: bf16 weights and KV, k_max 7, no step overhead, TP 1.
    pub fn new(dir: &Path, gpu: &str, target: &str) -> OpsOptions {
        OpsOptions {
            dir: dir.to_path_buf(),
            gpu: gpu.to_string(),
            target: target.to_string(),
            draft: None,
            tp: 1,
            dtype: "bf16".into(),
            kv_dtype: "bfloat16".into(),
            k_max: 7,
            step_overhead_ns: 0.0,
        }
    }
}

/// The operator tables of one GPU type, located and opened for a model.
pub struct GpuTables {
    /// `systems/` folder.
    pub systems: PathBuf,
    /// GPU names.
    pub gpu: tables::GpuName,
}

impl GpuTables {
    /// Locates the GPU's tables under `dir`; an unknown GPU or a missing folder names what is wrong.
    pub fn locate(dir: &Path, gpu: &str) -> Result<GpuTables> {
        let systems = tables::systems_dir(dir)?;
        let g = tables::find_gpu(gpu).ok_or_else(|| {
            CalibrateError::table(
                systems.display(),
                "gpu",
                format!(
                    "unknown GPU {gpu}: the tables cover {}",
                    tables::GPUS
                        .iter()
                        .map(|g| g.catalog)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        Ok(GpuTables { systems, gpu: g })
    }

    fn data(&self) -> PathBuf {
        self.systems.join("data").join(self.gpu.folder)
    }

    /// Path of the GEMM table.
    pub fn gemm_path(&self) -> PathBuf {
        self.data()
            .join(format!("gemm/vllm/{VLLM_VERSION}/gemm_perf.parquet"))
    }
    /// Path of the context attention table.
    pub fn context_path(&self) -> PathBuf {
        self.data().join(format!(
            "attention/vllm/{VLLM_VERSION}/context_attention_perf.parquet"
        ))
    }
    /// Path of the generation attention table.
    pub fn generation_path(&self) -> PathBuf {
        self.data().join(format!(
            "attention/vllm/{VLLM_VERSION}/generation_attention_perf.parquet"
        ))
    }
    /// Path of the custom all-reduce table.
    pub fn allreduce_path(&self) -> PathBuf {
        self.data().join(format!(
            "comm/vllm/{VLLM_VERSION}/custom_allreduce_perf.parquet"
        ))
    }
    /// Path of the fused MoE layer table.
    pub fn moe_path(&self) -> PathBuf {
        self.data()
            .join(format!("moe/vllm/{VLLM_VERSION}/moe_perf.parquet"))
    }
    /// Path of the system yaml.
    pub fn yaml_path(&self) -> PathBuf {
        self.systems.join(format!("{}.yaml", self.gpu.folder))
    }

    /// Opens the tables `model` at `tp` needs.
    pub fn open(&self, model: &ModelSpec, tp: u32, dtype: &str, kv_dtype: &str) -> Result<OpSet> {
        let h = heads(model, tp);
        let allreduce = if tp > 1 {
            let p = self.allreduce_path();
            Some((
                AllReduceTable::read(&p, tp, "vllm_graph")?,
                AllReduceTable::read(&p, tp, "vllm_eager")?,
            ))
        } else {
            None
        };
        let mut notes = Vec::new();
        let mut attn = |path: PathBuf, col: &'static str| -> Result<AttnTable> {
            match AttnTable::read(&path, col, h, kv_dtype) {
                Ok(t) => Ok(t),
                Err(e) => {
                    // The tables measure head_dim 128 only: a layout of another head size is priced
                    // as the 128-wide layout with the same bytes and FLOPs (e.g. 32/8 heads of 64 as
                    // 16/4 of 128), when that is a whole number of heads.
                    let (q, kv) = (h.q * h.dim, h.kv * h.dim);
                    if h.dim == 128 || q % 128 != 0 || kv % 128 != 0 {
                        return Err(e);
                    }
                    let eq = Heads {
                        q: q / 128,
                        kv: kv / 128,
                        dim: 128,
                    };
                    let t = AttnTable::read(&path, col, eq, kv_dtype).map_err(|_| e)?;
                    notes.push(format!(
                        "{}: {} has {}/{} heads of {} per GPU, not measured: priced as {}/{} heads of 128 (same bytes and FLOPs)",
                        path.display(),
                        model.name,
                        h.q,
                        h.kv,
                        h.dim,
                        eq.q,
                        eq.kv
                    ));
                    Ok(t)
                }
            }
        };
        let context = attn(self.context_path(), "isl")?;
        let generation = attn(self.generation_path(), "step")?;
        let gemm = GemmTable::read(&self.gemm_path(), dtype)?;
        let gemm_head = if matches!(dtype, "bf16" | "bfloat16") {
            gemm.clone()
        } else {
            GemmTable::read(&self.gemm_path(), "bf16")?
        };
        let moe = match model.moe {
            Some(m) => {
                let dt = if matches!(dtype, "bf16" | "bfloat16") {
                    "bfloat16"
                } else {
                    dtype
                };
                let shape = (model.hidden, model.ffn, m.experts, m.top_k);
                Some(MoeTable::read(&self.moe_path(), shape, dt, tp)?)
            }
            None => None,
        };
        Ok(OpSet {
            gemm,
            gemm_head,
            context,
            generation,
            allreduce,
            moe,
            mem: MemOps::read(&self.yaml_path())?,
            notes,
        })
    }

    /// The files a profile of `tp` reads (for provenance).
    pub fn sources(&self, tp: u32) -> Vec<PathBuf> {
        let mut v = vec![
            self.gemm_path(),
            self.context_path(),
            self.generation_path(),
            self.yaml_path(),
        ];
        if tp > 1 {
            v.push(self.allreduce_path());
        }
        v
    }
}

/// A catalog model by name, as an error naming the flag when unknown.
pub fn catalog_model(name: &str, flag: &str) -> Result<ModelSpec> {
    find_model(name).ok_or_else(|| {
        CalibrateError::Config(format!(
            "{flag}: {name} is not in the model catalog (core/src/cost/catalog.rs)"
        ))
    })
}

/// Grid of the composed profile.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsGrid {
    /// Batch sizes.
    pub batch: Vec<f64>,
    /// Contexts.
    pub context: Vec<f64>,
    /// Prefill lengths.
    pub prefill: Vec<f64>,
}

impl Default for OpsGrid {
    fn default() -> Self {
        OpsGrid {
            batch: vec![
                1., 2., 4., 8., 16., 32., 48., 64., 96., 128., 192., 256., 384., 512.,
            ],
            context: vec![
                16., 64., 128., 256., 512., 1024., 2048., 3072., 4096., 6144., 8192., 12288.,
                16384., 32768.,
            ],
            prefill: vec![
                1., 16., 32., 64., 128., 256., 512., 1024., 2048., 3072., 4096., 6144., 8192.,
                12288., 16384.,
            ],
        }
    }
}

/// A profile composed from operator tables, and the notes of lookups outside the measured ranges.
pub struct OpsProfile {
    /// The profile (complete, validated).
    pub profile: Profile,
    /// Lookups outside a table's range, each saying by how far.
    pub notes: Vec<String>,
}

/// Composes the profile: `[verify]` over batch × tokens per sequence (1..=k_max+1) × context,
/// `[prefill]` over lengths, `[draft]`/`[draft_prefill]` from the drafter — a draft model, an EAGLE-3
/// head ([`compose::eagle3_head`] plus its fc), or n-gram lookup (no forward: a fraction of the
/// verification; without a drafter, a negligible 1 ns draft so the file stays valid for target-only
/// scenarios) — and `overhead.step_ns`.
pub fn profile_from_ops(o: &OpsOptions, grid: &OpsGrid) -> Result<OpsProfile> {
    if o.tp == 0 {
        return Err(CalibrateError::Config("--tp must be at least 1".into()));
    }
    let loc = GpuTables::locate(&o.dir, &o.gpu)?;
    let target = catalog_model(&o.target, "--target")?;
    let ops = loc.open(&target, o.tp, &o.dtype, &o.kv_dtype)?;
    let mut notes = Notes::new();
    for n in &ops.notes {
        notes.push_line(n.clone());
    }
    let t = Composer {
        model: &target,
        tp: o.tp,
        ops: &ops,
    };
    let tokens: Vec<f64> = (1..=o.k_max + 1).map(|x| x as f64).collect();
    let mut verify = Vec::with_capacity(grid.batch.len());
    for &b in &grid.batch {
        let mut plane = Vec::with_capacity(tokens.len());
        for &k in &tokens {
            let mut row = Vec::with_capacity(grid.context.len());
            for &c in &grid.context {
                row.push(t.decode(b, k, c, &mut notes)?.total());
            }
            plane.push(row);
        }
        verify.push(plane);
    }
    let prefill = grid
        .prefill
        .iter()
        .map(|&n| Ok(t.prefill(n, &mut notes)?.total()))
        .collect::<Result<Vec<f64>>>()?;
    let mut provenance = BTreeMap::new();
    let (draft, draft_prefill) = match o.draft.as_deref() {
        Some(name) if name.eq_ignore_ascii_case("ngram") || name.eq_ignore_ascii_case("n-gram") => {
            // n-gram lookup: no draft forward; its CPU time per step is SpecDecode-Bench's measured
            // fraction of the verification (0.5875 %), charged per draft position at the target's
            // decode time of the same batch and context.
            let ns = grid
                .batch
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    grid.context
                        .iter()
                        .enumerate()
                        .map(|(j, _)| verify[i][0][j] * NGRAM_FRACTION_OF_VERIFY)
                        .collect()
                })
                .collect();
            provenance.insert(
                "draft".into(),
                format!("n-gram lookup: {NGRAM_FRACTION_OF_VERIFY} x the target's decode step (SpecDecode-Bench predictor_coefficients.toml)"),
            );
            (
                Table2 {
                    batch: grid.batch.clone(),
                    context: grid.context.clone(),
                    ns,
                },
                Some(Table1 {
                    tokens: vec![1.0, 2.0],
                    ns: vec![0.0, 0.0],
                }),
            )
        }
        Some(name) => {
            let eagle = name.eq_ignore_ascii_case("eagle3") || name.eq_ignore_ascii_case("eagle-3");
            let dm = if eagle {
                compose::eagle3_head(&target)
            } else {
                catalog_model(name, "--draft")?
            };
            let dops = loc.open(&dm, o.tp, &o.dtype, &o.kv_dtype)?;
            for n in &dops.notes {
                notes.push_line(n.clone());
            }
            let d = Composer {
                model: &dm,
                tp: o.tp,
                ops: &dops,
            };
            // EAGLE-3's fc over three of the target's hidden states, per token.
            let fc = |m: f64, notes: &mut Notes| -> Result<f64> {
                if eagle {
                    let h = dm.hidden as f64;
                    dops.gemm.ns(m, h, 3.0 * h, notes)
                } else {
                    Ok(0.0)
                }
            };
            let mut ns = Vec::new();
            for &b in &grid.batch {
                let mut row = Vec::new();
                for &c in &grid.context {
                    row.push(d.decode(b, 1.0, c, &mut notes)?.total() + fc(b, &mut notes)?);
                }
                ns.push(row);
            }
            let dp = grid
                .prefill
                .iter()
                .map(|&n| Ok(d.prefill(n, &mut notes)?.total() + fc(n, &mut notes)?))
                .collect::<Result<Vec<f64>>>()?;
            provenance.insert("draft".into(), dm.name.clone());
            (
                Table2 {
                    batch: grid.batch.clone(),
                    context: grid.context.clone(),
                    ns,
                },
                Some(Table1 {
                    tokens: grid.prefill.clone(),
                    ns: dp,
                }),
            )
        }
        None => (
            Table2 {
                batch: vec![1.0],
                context: vec![1.0],
                ns: vec![vec![1.0]],
            },
            None,
        ),
    };
    provenance.insert("source".into(), "aiconfigurator operator tables".into());
    provenance.insert(
        "device".into(),
        format!("{} x{} (TP {})", loc.gpu.catalog, o.tp, o.tp),
    );
    provenance.insert("target".into(), target.name.clone());
    provenance.insert("tp".into(), o.tp.to_string());
    provenance.insert("engine".into(), format!("vLLM {VLLM_VERSION}"));
    provenance.insert(
        "tables_commit".into(),
        format!("ai-dynamo/aiconfigurator@{}", tables::AIC_COMMIT),
    );
    provenance.insert(
        "tables".into(),
        loc.sources(o.tp)
            .iter()
            .map(|p| {
                p.strip_prefix(&loc.systems)
                    .unwrap_or(p)
                    .display()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    provenance.insert(
        "dtype".into(),
        format!("weights {}, KV {}", o.dtype, o.kv_dtype),
    );
    provenance.insert(
        "method".into(),
        "per layer: QKV, O, gate+up, down GEMMs; context/generation attention; 2 all-reduces (TP>1); element-wise ops as bytes/(mem_bw x scaling) + constant (system yaml); LM head".into(),
    );
    // Paths in the notes relative to the systems folder, as in `tables`.
    let prefix = format!("{}/", loc.systems.display());
    let notes: Vec<String> = notes
        .lines()
        .into_iter()
        .map(|n| n.replace(&prefix, ""))
        .collect();
    if !notes.is_empty() {
        provenance.insert("extrapolated".into(), notes.join(" | "));
    }
    let profile = Profile {
        version: 1,
        provenance,
        draft,
        verify: Table3 {
            batch: grid.batch.clone(),
            tokens_per_seq: tokens,
            context: grid.context.clone(),
            ns: verify,
        },
        prefill: Table1 {
            tokens: grid.prefill.clone(),
            ns: prefill,
        },
        draft_prefill,
        overhead: Overhead {
            step_ns: o.step_overhead_ns,
        },
        fit: Default::default(),
        acceptance: None,
        complete: true,
    };
    profile
        .validate()
        .map_err(|m| CalibrateError::Config(format!("composed profile: {m}")))?;
    Ok(OpsProfile { profile, notes })
}

/// Writes a profile atomically: to `OUT.tmp`, then renamed, so a failure leaves nothing half written.
pub fn write_profile(profile: &Profile, out: &Path) -> Result<()> {
    let text = profile.to_toml();
    if text.is_empty() {
        return Err(CalibrateError::Config("profile did not serialise".into()));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CalibrateError::io(dir, e))?;
    }
    let tmp = out.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(|e| CalibrateError::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| CalibrateError::io(out, e))
}
