//! One experiment through the engine core, as vLLM V1 serves it:
//!
//! - chunked prefill always on under `max_num_batched_tokens`, decodes first (the engine core's
//!   chunked mode), at most `max_num_seqs` sequences, one replica per data-parallel rank;
//! - KV blocks from `gpu_memory_utilization` as vLLM computes them ([`VllmMemory`]);
//! - step costs composed from the operator tables of the run's GPU at its TP (vLLM 0.14.0 tables for a
//!   v0.15.1 server), plus one global per-step engine overhead ([`RunOptions::step_overhead_ns`]);
//! - the workload from the published spec through inference-perf's `shared_prefix` generator (the
//!   traces crate): constant-load stages, every prompt the system prompt plus the question, every
//!   output exactly `output_len` tokens (`ignore_eos`) — or, with [`WorkloadSource::Replay`], the
//!   run's own send times and prompt lengths;
//! - one global client-visible front-end latency ([`RunOptions::frontend_s`]) added to every
//!   request's TTFT and E2E.
//!
//! Not modelled, and said so in the report: CPU offload (`--cpu-offload-gb`), prefix caching (the
//! engine core has none yet), client timeouts (the 4-rps reasoning runs lost requests to them).

use super::folder::{read_replay, Experiment, ReplayData, SharedPrefix};
use super::metrics::{by_stage, Outcome};
use super::{Failure, Key, Skipped};
use crate::ops::{catalog_model, profile_from_ops, OpsGrid, OpsOptions};
use crate::{CalibrateError, Result};
use specsim_core::acceptance::ConstantAcceptance;
use specsim_core::cost::catalog::ModelSpec;
use specsim_core::cost::profile::ProfileCost;
use specsim_core::cost::CostModel;
use specsim_core::engine::kv::VllmMemory;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_core::workload::Workload;
use specsim_sim::cluster::router::RouterKind;
use specsim_sim::cluster::{simulate, Replica, SimOptions};
use specsim_sim::metrics::RequestRecord;
use specsim_sim::metrics::SloConfig;
use specsim_sim::simulated::SimBackend;
use specsim_sim::trace_config::{LengthConfig, LoadStage, SharedPrefixConfig, StageLoad};
use specsim_traces::shared_prefix::shared_prefix_workload;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Served models (Hugging Face id) and their catalog names; `None` with the reason it is not run.
pub const MODELS: [(&str, std::result::Result<&str, &str>); 13] = [
    ("meta-llama/Llama-2-7b-hf", Ok("Llama-2-7B")),
    ("meta-llama/Llama-2-70b-hf", Ok("Llama-2-70B")),
    ("codellama/CodeLlama-34b-Instruct-hf", Ok("CodeLlama-34B")),
    ("meta-llama/Llama-3.1-8B-Instruct", Ok("Llama-3.1-8B")),
    ("meta-llama/Llama-3.1-70B-Instruct", Ok("Llama-3.1-70B")),
    ("Qwen/Qwen3-14B", Ok("Qwen3-14B")),
    ("Qwen/Qwen2.5-7B-Instruct", Ok("Qwen2.5-7B")),
    (
        "mistralai/Mistral-Nemo-Instruct-2407",
        Ok("Mistral-Nemo-12B"),
    ),
    ("01-ai/Yi-34B", Ok("Yi-34B")),
    ("mistralai/Mixtral-8x7B-v0.1", Ok("Mixtral-8x7B")),
    ("mistralai/Mixtral-8x22B-Instruct-v0.1", Ok("Mixtral-8x22B")),
    ("mistralai/Mixtral-8x22B-v0.1", Ok("Mixtral-8x22B")),
    (
        "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
        Err(MOE),
    ),
];

const MOE: &str = "Llama-4-Scout (16 experts top 1 plus a shared expert, MoE in alternate layers, \
                   FP8) is not in the catalog";

/// A hardware label's catalog GPU and the memory the driver reports (MiB), or why it cannot run.
type GpuEntry = (
    &'static str,
    std::result::Result<(&'static str, f64), &'static str>,
);

/// Hardware labels of the ground truth.
const GPUS: [GpuEntry; 3] = [
    ("H100", Ok(("H100-SXM", 81_559.0))),
    ("A100-80GB", Ok(("A100-80G", 81_920.0))),
    (
        "L40S",
        Err("no L40S operator tables in the aiconfigurator pack (A100, H100, H200 only)"),
    ),
];

/// Memory outside torch's allocator per GPU (CUDA context, cuBLAS workspaces, and at TP > 1 the NCCL
/// and custom all-reduce buffers), from vLLM's logged KV sizes of BLIS's 14 training runs
/// (`kv_blocks_total_gpu`): 0.70 GiB on one GPU (Llama-2-7B), 1.20 GiB at TP 2 and 4 (CodeLlama-34B
/// 1.23, Llama-2-70B 1.20, after the activation peak below). One constant per class, for every run.
fn non_torch_bytes(tp: u32) -> f64 {
    let gib = if tp <= 1 { 0.70 } else { 1.20 };
    gib * 1024.0 * 1024.0 * 1024.0
}

/// Activation peak of vLLM's profiling forward on one GPU: the MLP's gate/up output and its
/// activation (3 × ffn/tp wide, 2 bytes) for `max_num_batched_tokens` tokens, the largest transient.
fn activation_peak_bytes(m: &ModelSpec, tp: u32, mbt: u32) -> f64 {
    mbt as f64 * 3.0 * m.ffn as f64 / tp.max(1) as f64 * 2.0
}

/// vLLM's KV sizing for a model on `tp` GPUs with `gpu_memory_bytes` each.
pub fn vllm_memory(
    m: &ModelSpec,
    gpu_memory_bytes: f64,
    util: f64,
    tp: u32,
    mbt: u32,
) -> VllmMemory {
    VllmMemory {
        gpu_memory_bytes,
        utilization: util,
        tp,
        weight_bytes: m.weight_bytes_total(),
        kv_bytes_per_token: m.kv_bytes_per_token(),
        kv_heads: m.kv_heads,
        activation_peak_bytes: activation_peak_bytes(m, tp, mbt),
        non_torch_bytes: non_torch_bytes(tp),
        block_size: 16,
    }
}

/// Default [`RunOptions::frontend_s`], ms: derived from the 14 training runs (docs/VALIDATION.md).
pub const FRONTEND_MS_DEFAULT: f64 = 11.0;
/// Default per-step engine overhead at TP 1, µs: derived from the training runs (docs/VALIDATION.md).
pub const STEP_OVERHEAD_US_DEFAULT: f64 = 70.0;
/// Default per-step engine overhead at TP ≥ 2, µs: 0, because there the composed profile's all-reduces
/// (priced from the isolated all-reduce table, over-predicted as TP grows) already put every training
/// run's decode step above the measured one (docs/VALIDATION.md).
pub const STEP_OVERHEAD_MULTI_GPU_US_DEFAULT: f64 = 0.0;

/// How to run the experiments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOptions {
    /// Which workload to simulate.
    pub source: WorkloadSource,
    /// vLLM's automatic prefix caching in the engine core (on in vLLM V1 and in every BLIS run).
    pub prefix_caching: bool,
    /// Client-visible latency outside the engine core, seconds, added to every request's TTFT and
    /// E2E: HTTP, the API-server process and its IPC to the engine core, tokenising the prompt,
    /// detokenising and streaming the first event. One constant for every run.
    pub frontend_s: f64,
    /// Engine time per step outside the forwards (vLLM V1's scheduler, sampling, Python), ns, put in
    /// the composed profile (`overhead.step_ns`) of every TP-1 run.
    pub step_overhead_ns: f64,
    /// The same at TP ≥ 2 (see [`STEP_OVERHEAD_MULTI_GPU_US_DEFAULT`]).
    pub step_overhead_multi_gpu_ns: f64,
}

impl RunOptions {
    /// `source` and prefix caching with the derived front-end and step-overhead defaults.
    pub fn new(source: WorkloadSource, prefix_caching: bool) -> Self {
        RunOptions {
            source,
            prefix_caching,
            frontend_s: FRONTEND_MS_DEFAULT * 1e-3,
            step_overhead_ns: STEP_OVERHEAD_US_DEFAULT * 1e3,
            step_overhead_multi_gpu_ns: STEP_OVERHEAD_MULTI_GPU_US_DEFAULT * 1e3,
        }
    }

    /// The per-step overhead of a run at `tp`, ns.
    pub fn step_overhead_ns_at(&self, tp: u32) -> f64 {
        if tp <= 1 {
            self.step_overhead_ns
        } else {
            self.step_overhead_multi_gpu_ns
        }
    }
}

/// Where the simulated requests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadSource {
    /// The published workload spec only (what a held-out experiment has).
    Spec,
    /// The run's per-request send times and prompt lengths where the folder has them, else the spec.
    Replay,
}

/// specsim's prediction of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The experiment.
    pub experiment: String,
    /// `spec` or `replay`: which workload was simulated.
    pub source: &'static str,
    /// Predicted values, ms, by (stage, metric).
    pub predicted: BTreeMap<Key, f64>,
    /// KV blocks of one replica.
    pub kv_blocks: u32,
    /// What is not modelled for this run.
    pub notes: Vec<String>,
}

/// GPU, model, TP, dtype and the step overhead's bits: what a composed profile depends on.
type CostKey = (String, String, u32, String, u64);

/// A validation run: composed profiles are shared between experiments on the same GPU, model and TP.
pub struct Validator {
    tables: PathBuf,
    costs: BTreeMap<CostKey, Arc<dyn CostModel>>,
}

/// What an experiment runs on, once the catalog can express it.
struct Target {
    model: ModelSpec,
    gpu: &'static str,
    gpu_memory_bytes: f64,
    dtype: &'static str,
}

impl Validator {
    /// Validation with the aiconfigurator operator tables under `tables`.
    pub fn new(tables: PathBuf) -> Self {
        Validator {
            tables,
            costs: BTreeMap::new(),
        }
    }

    fn target(e: &Experiment) -> std::result::Result<Target, String> {
        let catalog = match MODELS.iter().find(|m| m.0.eq_ignore_ascii_case(&e.model)) {
            Some((_, Ok(name))) => *name,
            Some((_, Err(why))) => return Err((*why).to_string()),
            None => return Err(format!("model {} is not in the catalog", e.model)),
        };
        let (gpu, mib) = match GPUS.iter().find(|g| g.0.eq_ignore_ascii_case(&e.hardware)) {
            Some((_, Ok(g))) => *g,
            Some((_, Err(why))) => return Err((*why).to_string()),
            None => return Err(format!("hardware {} is not in the catalog", e.hardware)),
        };
        let dtype = if e.precision.eq_ignore_ascii_case("fp8") {
            "fp8"
        } else {
            "bf16"
        };
        let mut model = catalog_model(catalog, "model").map_err(|x| x.to_string())?;
        model.weight_bytes = if dtype == "fp8" { 1.0 } else { 2.0 };
        Ok(Target {
            model,
            gpu,
            gpu_memory_bytes: mib * 1024.0 * 1024.0,
            dtype,
        })
    }

    /// Whether `e` can run: `Ok(None)` when it can, `Ok(Some(..))` when the catalog knows the model
    /// or GPU but cannot express it (mixture of experts, no operator tables) or the load is not
    /// published, `Err` when the experiment names a model or GPU nobody knows.
    pub fn check(e: &Experiment) -> std::result::Result<Option<Skipped>, Failure> {
        let known_model = MODELS.iter().any(|m| m.0.eq_ignore_ascii_case(&e.model));
        let known_gpu = GPUS.iter().any(|g| g.0.eq_ignore_ascii_case(&e.hardware));
        if !known_model || !known_gpu {
            let (field, value) = if known_model {
                ("hardware", &e.hardware)
            } else {
                ("model", &e.model)
            };
            return Err(Failure {
                experiment: e.name.clone(),
                message: format!(
                    "experiments.csv: {field}: `{value}` is not one specsim knows (calibrate/src/validate/run.rs)"
                ),
            });
        }
        let reason = match Self::target(e) {
            Err(r) => Some(r),
            Ok(_) if e.shared_prefix.is_none() => Some("workload spec not published".into()),
            Ok(_) if e.stages.is_empty() => Some(
                "load stages not published (a `-lite` rerun: rates and durations unknown)".into(),
            ),
            Ok(_) => None,
        };
        Ok(reason.map(|reason| Skipped {
            experiment: e.name.clone(),
            reason,
        }))
    }

    fn cost(&mut self, t: &Target, tp: u32, step_overhead_ns: f64) -> Result<Arc<dyn CostModel>> {
        let key = (
            t.gpu.to_string(),
            t.model.name.clone(),
            tp,
            t.dtype.to_string(),
            step_overhead_ns.to_bits(),
        );
        if let Some(c) = self.costs.get(&key) {
            return Ok(Arc::clone(c));
        }
        let mut o = OpsOptions::new(&self.tables, t.gpu, &t.model.name);
        o.tp = tp;
        o.dtype = t.dtype.to_string();
        o.step_overhead_ns = step_overhead_ns;
        let p = profile_from_ops(&o, &OpsGrid::default())?;
        let c: Arc<dyn CostModel> = Arc::new(ProfileCost { profile: p.profile });
        self.costs.insert(key, Arc::clone(&c));
        Ok(c)
    }

    /// Simulates `e` and computes its metrics. Call [`Validator::check`] first.
    pub fn run(&mut self, e: &Experiment, opts: RunOptions) -> Result<Prediction> {
        let t = Self::target(e).map_err(|m| CalibrateError::table(&e.name, "model", m))?;
        let sp = e
            .shared_prefix
            .ok_or_else(|| CalibrateError::table(&e.name, "shared_prefix", "not published"))?;
        let mem = vllm_memory(
            &t.model,
            t.gpu_memory_bytes,
            e.gpu_mem_util,
            e.tp,
            e.max_num_batched_tokens,
        );
        let kv_blocks = mem.kv_blocks().ok_or_else(|| {
            CalibrateError::table(
                &e.name,
                "tp",
                format!("{} does not fit on {} × {}", t.model.name, e.tp, t.gpu),
            )
        })?;
        let replay = match (opts.source, &e.replay) {
            (WorkloadSource::Replay, Some(p)) => Some(read_replay(p)?),
            _ => None,
        };
        // The output-token count each request's metrics use, by request id (None: failed, not counted).
        let (w, counted) = match &replay {
            Some(r) => replay_workload(r, &sp),
            None => {
                let w = spec_workload(e, &sp)?;
                let counted = vec![Some(sp.output_len as f64); w.len()];
                (w, counted)
            }
        };
        let mut notes = Vec::new();
        let cost = self.cost(&t, e.tp, opts.step_overhead_ns_at(e.tp))?;
        let cfg = engine_config(kv_blocks, e, opts.prefix_caching);
        let out = simulate_vllm(cost, &cfg, e.dp, &w)?;
        let outcomes: Vec<Outcome> = out
            .records
            .iter()
            .filter_map(|r| {
                let counted = (*counted.get(r.id as usize)?)?;
                Some(client_outcome(r, counted, opts.frontend_s))
            })
            .collect();
        if e.cpu_offload {
            notes.push("CPU offload (--cpu-offload-gb 4) not modelled".to_string());
        }
        let prompt: u64 = out.records.iter().map(|r| r.prompt_tokens as u64).sum();
        let cached: u64 = out
            .records
            .iter()
            .filter_map(|r| r.cached_tokens)
            .map(u64::from)
            .sum();
        if cached > 0 && prompt > 0 {
            notes.push(format!(
                "prefix-cache hits {:.1} % of prompt tokens",
                cached as f64 / prompt as f64 * 100.0
            ));
        }
        if out.preemptions > 0 {
            notes.push(format!("{} preemptions (KV full)", out.preemptions));
        }
        Ok(Prediction {
            experiment: e.name.clone(),
            source: if replay.is_some() { "replay" } else { "spec" },
            predicted: by_stage(&outcomes, &e.stages),
            kv_blocks,
            notes,
        })
    }
}

/// The workload of the published spec: inference-perf's `shared_prefix` generator (the traces
/// crate) with every prompt's prefix-block ids, constant load stages, seed 0.
///
/// Single-turn although the profiles say `enable_multi_turn_chat: true`: the runs used the
/// `completion` API, and their recorded prompt lengths do not grow over a run (Llama-2-7B codegen:
/// 580–604 tokens over 9,000 requests), so no conversation history was sent.
fn spec_workload(e: &Experiment, sp: &SharedPrefix) -> Result<Workload> {
    let cfg = SharedPrefixConfig {
        system_prompts: sp.groups,
        users_per_system_prompt: sp.users_per_group,
        system_prompt_len: sp.system_len,
        question_len: LengthConfig::Fixed {
            value: sp.question_len,
        },
        output_len: LengthConfig::Fixed {
            value: sp.output_len,
        },
        multi_turn: false,
        max_model_len: Some(e.max_model_len),
        block_tokens: 16,
        load: StageLoad::Constant,
        stages: e
            .stages
            .iter()
            .map(|s| LoadStage {
                rate: s.rate_per_s,
                duration_s: s.duration_s,
            })
            .collect(),
        stage_gap_s: 0.0,
    };
    shared_prefix_workload(&cfg, Path::new("."), 0)
        .map_err(|err| CalibrateError::table(&e.name, "shared_prefix", err.to_string()))
}

/// The run's own requests: send times and prompt lengths as recorded (a failed request, recorded
/// with 0 prompt tokens, gets the spec's), every output `output_len` tokens (`ignore_eos`); metrics
/// count the client's recorded output tokens, as the ground truth does.
fn replay_workload(r: &ReplayData, sp: &SharedPrefix) -> (Workload, Vec<Option<f64>>) {
    let mut ok = r.outcomes.iter();
    let mut reqs: Vec<(f64, u32, Option<f64>)> = r
        .requests
        .iter()
        .map(|&(t, p, failed)| {
            let counted = if failed {
                None
            } else {
                ok.next().map(|o| o.output_tokens)
            };
            let prompt = if p == 0 {
                sp.system_len + sp.question_len
            } else {
                p
            };
            (t, prompt, counted)
        })
        .collect();
    reqs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut w = Workload::default();
    for &(t, p, _) in &reqs {
        w.push((t * 1e9).round() as u64, p, sp.output_len, None);
    }
    (w, reqs.into_iter().map(|r| r.2).collect())
}

/// What the client sees of a simulated request: the engine's TTFT and E2E plus the front-end latency
/// (the request reaches the engine core `frontend_s` after it is sent; its first and last streamed
/// events reach the client that much later than the engine's tokens, counted once), so the decode
/// time E2E − TTFT is unchanged.
fn client_outcome(r: &RequestRecord, output_tokens: f64, frontend_s: f64) -> Outcome {
    Outcome {
        arrival_s: r.arrival_s,
        ttft_s: r.ttft_s + frontend_s,
        e2e_s: r.e2e_s + frontend_s,
        output_tokens,
    }
}

/// vLLM V1's engine core for `e`: chunked prefill under `max_num_batched_tokens`, decodes first.
fn engine_config(kv_blocks: u32, e: &Experiment, prefix_caching: bool) -> EngineConfig {
    EngineConfig {
        kv_blocks: Some(kv_blocks),
        max_num_seqs: e.max_num_seqs,
        max_batched_tokens: e.max_num_batched_tokens,
        chunked_prefill: true,
        gpu_memory_utilization: e.gpu_mem_util,
        prefix_caching,
        ..EngineConfig::default()
    }
}

fn simulate_vllm(
    cost: Arc<dyn CostModel>,
    cfg: &EngineConfig,
    dp: u32,
    w: &Workload,
) -> Result<specsim_sim::cluster::SimOutput> {
    let mut replicas = Vec::new();
    for r in 0..dp.max(1) {
        let engine = Engine::new(cfg.clone(), PolicyConfig::None.build(), Arc::clone(&cost))?;
        let backend = SimBackend::new(
            Arc::clone(&cost),
            Arc::new(ConstantAcceptance { alpha: 0.0 }),
            stream(0, "acceptance", r as u64),
            false,
        );
        replicas.push(Replica {
            engine,
            backend: Box::new(backend),
        });
    }
    Ok(simulate(
        replicas,
        RouterKind::default().build(),
        w,
        "none",
        &SloConfig::default(),
        &SimOptions::default(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::metrics::{Metric, Stage};
    use specsim_core::cost::profile::{Fits, Overhead, Profile, Table1, Table2, Table3};

    /// A profile whose every decode step takes 10 ms and every prefill 1 ms, whatever the shape.
    fn flat_profile(step_ns: f64) -> Profile {
        Profile {
            version: 1,
            provenance: BTreeMap::new(),
            draft: Table2 {
                batch: vec![1.0, 256.0],
                context: vec![1.0, 8192.0],
                ns: vec![vec![1e6, 1e6], vec![1e6, 1e6]],
            },
            verify: Table3 {
                batch: vec![1.0, 256.0],
                tokens_per_seq: vec![1.0, 8.0],
                context: vec![1.0, 8192.0],
                ns: vec![vec![vec![10e6, 10e6]; 2]; 2],
            },
            prefill: Table1 {
                tokens: vec![1.0, 8192.0],
                ns: vec![1e6, 1e6],
            },
            draft_prefill: None,
            overhead: Overhead { step_ns },
            fit: Fits::default(),
            acceptance: None,
            complete: true,
        }
    }

    /// One 100-token prompt with 5 output tokens, alone on one replica, seen by the client.
    fn one_request(opts: &RunOptions, tp: u32) -> BTreeMap<Key, f64> {
        let cost: Arc<dyn CostModel> = Arc::new(ProfileCost {
            profile: flat_profile(opts.step_overhead_ns_at(tp)),
        });
        let cfg = EngineConfig {
            kv_blocks: Some(1000),
            chunked_prefill: true,
            prefix_caching: false,
            ..EngineConfig::default()
        };
        let mut w = Workload::default();
        w.push(0, 100, 5, None);
        let out = simulate_vllm(cost, &cfg, 1, &w).unwrap();
        let outcomes: Vec<Outcome> = out
            .records
            .iter()
            .map(|r| client_outcome(r, 5.0, opts.frontend_s))
            .collect();
        let stages = [Stage {
            rate_per_s: 1.0,
            duration_s: 600.0,
        }];
        by_stage(&outcomes, &stages)
    }

    #[test]
    fn frontend_latency_and_step_overhead_add_as_hand_computed() {
        let zero = RunOptions {
            source: WorkloadSource::Spec,
            prefix_caching: false,
            frontend_s: 0.0,
            step_overhead_ns: 0.0,
            step_overhead_multi_gpu_ns: 0.0,
        };
        let both = RunOptions {
            frontend_s: 0.011,
            step_overhead_ns: 70_000.0,
            step_overhead_multi_gpu_ns: 0.0,
            ..zero
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        // Without either term: TTFT is the prefill step (1 ms), E2E that plus 4 decode steps (10 ms).
        let z = one_request(&zero, 1);
        assert!(close(z[&(-1, Metric::TtftMean)], 1.0), "{z:?}");
        assert!(close(z[&(-1, Metric::E2eMean)], 41.0), "{z:?}");
        // Each of the 5 steps takes 0.07 ms more, and the client sees both ends 11 ms later:
        // TTFT 11 + 1.07 = 12.07 ms, E2E 11 + 1.07 + 4 × 10.07 = 52.35 ms, ITL (52.35 − 12.07) / 4.
        let b = one_request(&both, 1);
        assert!(close(b[&(-1, Metric::TtftMean)], 12.07), "{b:?}");
        assert!(close(b[&(-1, Metric::E2eMean)], 52.35), "{b:?}");
        assert!(close(b[&(-1, Metric::ItlMean)], 10.07), "{b:?}");
        // At TP 2 the TP-1 overhead does not apply (its own default is 0): only the front-end shifts.
        let t2 = one_request(&both, 2);
        assert!(close(t2[&(-1, Metric::TtftMean)], 12.0), "{t2:?}");
        assert!(close(t2[&(-1, Metric::E2eMean)], 52.0), "{t2:?}");
        assert!(close(t2[&(-1, Metric::ItlMean)], 10.0), "{t2:?}");
    }

    #[test]
    fn defaults_are_the_documented_derived_values() {
        let o = RunOptions::new(WorkloadSource::Spec, true);
        // docs/VALIDATION.md: 11.0 ms front end, 70 µs per step at TP 1, 0 at TP ≥ 2.
        assert_eq!(o.frontend_s, 0.011);
        assert_eq!(o.step_overhead_ns_at(1), 70_000.0);
        assert_eq!(o.step_overhead_ns_at(4), 0.0);
    }
}
