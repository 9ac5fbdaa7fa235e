//! The scenario file: the front door of `specsim run`.
//!
//! A scenario is TOML with the sections `[trace]`, `[slo]`, `[cluster]`, `[engine]`, `[models]`,
//! `[cost]`, `[acceptance]`, `[[policies]]`, `[sweep]` and a top-level `seed`. Unknown keys are errors
//! naming the key and the file; relative paths resolve against the scenario file's directory. `--set
//! key=value` overrides any key (dotted path; array elements by index, e.g. `policies.1.k=4`) before
//! validation. Nothing past [`Scenario`] sees raw strings.

use crate::cluster::router::RouterKind;
use crate::cluster::{simulate, simulate_into, Replica, SimOptions, SimSink, SimStats};
use crate::metrics::{RequestRecord, SloConfig, StepRow, Summary, EXACT_PERCENTILE_LIMIT};
use crate::results::ResultWriter;
use crate::simulated::SimBackend;
use crate::trace_config::TraceConfig;
use crate::SimError;
use serde::{Deserialize, Serialize};
use specsim_core::acceptance::{AcceptanceConfig, AcceptanceModel};
use specsim_core::cost::catalog::{find_hardware, find_model, HardwareSpec, ModelSpec};
use specsim_core::cost::linear::{LinearCoefficients, LinearCost};
use specsim_core::cost::profile::{Profile, ProfileCost};
use specsim_core::cost::roofline::{Deployment, GraphSizes, Roofline};
use specsim_core::cost::{CostModel, FixedCost};
use specsim_core::engine::kv::context_fits;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_core::time::ms_to_ns;
use specsim_core::workload::{RequestSpec, Workload};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The scenario file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Display name (defaults to the file stem).
    #[serde(default)]
    pub name: Option<String>,
    /// One line saying what the scenario shows.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of every random stream (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Where requests come from.
    pub trace: TraceConfig,
    /// Latency objectives.
    #[serde(default)]
    pub slo: SloConfig,
    /// Replicas and routing.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Scheduler limits of each replica.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Models and hardware (needed by the roofline cost model).
    #[serde(default)]
    pub models: Option<ModelsConfig>,
    /// Step-time model.
    pub cost: CostConfig,
    /// Draft acceptance model.
    pub acceptance: AcceptanceConfig,
    /// Policies to compare on the same trace and seed.
    pub policies: Vec<PolicyConfig>,
    /// Sweep grid (used by `specsim sweep`; see [`crate::sweep`]).
    #[serde(default)]
    pub sweep: Option<toml::Table>,
    /// Capacity-planning search space and prices (used by `specsim plan`; see [`crate::plan`]).
    #[serde(default)]
    pub plan: Option<toml::Table>,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Replicas of the `[models]` deployment (ignored when `groups` is given). Default 1.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Router.
    #[serde(default)]
    pub router: RouterKind,
    /// Heterogeneous replica groups.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            replicas: 1,
            router: RouterKind::default(),
            groups: Vec::new(),
        }
    }
}

fn one() -> u32 {
    1
}

/// One group of identical replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Replicas in the group.
    pub replicas: u32,
    /// Accelerator override (catalog name).
    #[serde(default)]
    pub hardware: Option<String>,
    /// Tensor-parallel degree override.
    #[serde(default)]
    pub tp: Option<u32>,
    /// KV blocks override.
    #[serde(default)]
    pub kv_blocks: Option<u32>,
}

/// `[models]`: which models on which accelerator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Target model (catalog name), unless `target_spec` is given.
    #[serde(default)]
    pub target: Option<String>,
    /// Draft model (catalog name), unless `draft_spec` is given.
    #[serde(default)]
    pub draft: Option<String>,
    /// Accelerator (catalog name), unless `hardware_spec` is given.
    #[serde(default)]
    pub hardware: Option<String>,
    /// Target tensor-parallel degree (default 1).
    #[serde(default = "one")]
    pub tp: u32,
    /// Draft tensor-parallel degree (default 1).
    #[serde(default = "one")]
    pub draft_tp: u32,
    /// A model not in the catalog.
    #[serde(default)]
    pub target_spec: Option<ModelSpec>,
    /// A draft not in the catalog.
    #[serde(default)]
    pub draft_spec: Option<ModelSpec>,
    /// An accelerator not in the catalog.
    #[serde(default)]
    pub hardware_spec: Option<HardwareSpec>,
}

/// `[cost]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CostConfig {
    /// Analytical roofline from `[models]`.
    Roofline {
        /// Fraction of peak FLOP/s reached (default 0.5).
        #[serde(default = "ce")]
        compute_efficiency: f64,
        /// Fraction of peak bandwidth reached (default 0.85).
        #[serde(default = "me")]
        memory_efficiency: f64,
        /// Fixed time per target forward, ms (default 1.0).
        #[serde(default = "tov")]
        target_overhead_ms: f64,
        /// Fixed time per draft forward, ms (default 0.3).
        #[serde(default = "dov")]
        draft_overhead_ms: f64,
        /// Pad decode and verification forwards to vLLM's CUDA-graph capture sizes (1, 2, 4, 8, 16,
        /// 24, ..., 256 tokens), as vLLM pads decode batches: draft steps, and verification when its
        /// batch-expansion scorer runs it as a decode batch (default false).
        #[serde(default)]
        cuda_graphs: bool,
        /// Which capture sizes with `cuda_graphs`: `vllm` (default; 1, 2, 4, multiples of 8 to 256)
        /// or `adaspec` (the SpecServe/AdaSpec fork: powers of two to 32, then multiples of 32).
        #[serde(default)]
        cuda_graph_sizes: GraphSizes,
    },
    /// A measured profile (from `specsim calibrate`).
    Profile {
        /// The profile file.
        path: PathBuf,
    },
    /// A fitted linear model.
    Linear {
        /// Draft forward coefficients (ns).
        draft: LinearCoefficients,
        /// Target forward coefficients (ns).
        target: LinearCoefficients,
        /// Separate prefill coefficients (ns).
        #[serde(default)]
        prefill: Option<LinearCoefficients>,
    },
    /// Fixed times, for closed-form checks: target `target_ms + target_per_token_ms · tokens`, draft
    /// `draft_ms + draft_per_seq_ms · seqs`.
    Fixed {
        /// Target forward constant, ms.
        target_ms: f64,
        /// Target time per new token, ms.
        #[serde(default)]
        target_per_token_ms: f64,
        /// Draft forward constant, ms.
        #[serde(default)]
        draft_ms: f64,
        /// Draft time per sequence, ms.
        #[serde(default)]
        draft_per_seq_ms: f64,
    },
}

fn ce() -> f64 {
    0.5
}
fn me() -> f64 {
    0.85
}
fn tov() -> f64 {
    1.0
}
fn dov() -> f64 {
    0.3
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The parsed file (after `--set` overrides).
    pub file: ScenarioFile,
    /// Path of the scenario file (or a label for in-memory scenarios).
    pub path: PathBuf,
    /// Directory relative paths resolve against.
    pub base_dir: PathBuf,
    /// The TOML table after overrides (for sweeps).
    pub raw: toml::Table,
}

/// One policy's results.
pub struct PolicyRun {
    /// Policy name (directory name under the output directory).
    pub name: String,
    /// One row per request.
    pub records: Vec<RequestRecord>,
    /// One row per step, if recorded.
    pub steps: Vec<StepRow>,
    /// Summary.
    pub summary: Summary,
    /// Events processed.
    pub events: u64,
    /// The largest running batch an admission check saw with a request waiting (see
    /// [`specsim_core::engine::Engine::admission_peak`]).
    pub admission_peak: u32,
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Condenses a TOML deserialisation error to one line, with the line number when known.
fn toml_error(file: &str, text: Option<&str>, e: &toml::de::Error) -> SimError {
    let msg = e.message().replace('\n', " ");
    let msg = msg.trim().to_string();
    match (text, e.span()) {
        (Some(t), Some(span)) => SimError::Scenario {
            file: format!("{file}:{}", line_of(t, span.start)),
            msg,
        },
        _ => SimError::Scenario {
            file: file.to_string(),
            msg,
        },
    }
}

/// Sets `path` (dotted; numeric segments index arrays) to `value` in a TOML table.
pub fn set_key(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), String> {
    let mut root = toml::Value::Table(std::mem::take(table));
    let res = set_in(&mut root, path, value);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    res
}

fn set_in(root: &mut toml::Value, path: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("bad key `{path}`"));
    }
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    t.insert(part.to_string(), value);
                    return Ok(());
                }
                t.entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(a) => {
                let idx: usize = part
                    .parse()
                    .map_err(|_| format!("`{path}`: `{part}` must be an array index"))?;
                let len = a.len();
                let slot = a.get_mut(idx).ok_or_else(|| {
                    format!("`{path}`: index {idx} out of range (array has {len})")
                })?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => {
                return Err(format!(
                    "`{path}`: `{}` is not a table",
                    parts[..i].join(".")
                ))
            }
        };
    }
    Ok(())
}

/// Parses a `--set` value: TOML syntax when it parses (`3`, `0.5`, `true`, `"x"`, `[1, 2]`), otherwise
/// a bare string.
pub fn parse_set_value(v: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.to_string())),
        Err(_) => toml::Value::String(v.to_string()),
    }
}

impl Scenario {
    /// Reads a scenario file and applies `--set key=value` overrides.
    pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &base, sets)
    }

    /// Parses scenario text; `path` labels errors and `base_dir` anchors relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        base_dir: &Path,
        sets: &[String],
    ) -> Result<Scenario, SimError> {
        let label = path.display().to_string();
        let mut raw: toml::Table =
            toml::from_str(text).map_err(|e| toml_error(&label, Some(text), &e))?;
        for s in sets {
            let (k, v) = s.split_once('=').ok_or_else(|| SimError::Scenario {
                file: label.clone(),
                msg: format!("--set `{s}`: expected key=value"),
            })?;
            set_key(&mut raw, k.trim(), parse_set_value(v.trim())).map_err(|msg| {
                SimError::Scenario {
                    file: label.clone(),
                    msg: format!("--set {msg}"),
                }
            })?;
        }
        crate::limits::check_ranges(&raw).map_err(|msg| SimError::Scenario {
            file: label.clone(),
            msg,
        })?;
        let file: ScenarioFile = if sets.is_empty() {
            toml::from_str(text).map_err(|e| toml_error(&label, Some(text), &e))?
        } else {
            match ScenarioFile::deserialize(toml::Value::Table(raw.clone())) {
                Ok(f) => f,
                Err(e) => return Err(Self::blame_set(text, &label, sets, &e)),
            }
        };
        crate::limits::check_no_stray_numbers(&raw).map_err(|msg| SimError::Scenario {
            file: label.clone(),
            msg,
        })?;
        let sc = Scenario {
            file,
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            raw,
        };
        sc.validate()?;
        Ok(sc)
    }

    /// A deserialisation error after `--set` overrides, blamed on the first `--set` that causes it
    /// (so the message names its key), or on the file's line when the file alone fails.
    fn blame_set(text: &str, label: &str, sets: &[String], e: &toml::de::Error) -> SimError {
        if let Err(e) = toml::from_str::<ScenarioFile>(text) {
            return toml_error(label, Some(text), &e);
        }
        let Ok(mut raw) = toml::from_str::<toml::Table>(text) else {
            return toml_error(label, None, e);
        };
        for s in sets {
            let Some((k, v)) = s.split_once('=') else {
                continue;
            };
            if set_key(&mut raw, k.trim(), parse_set_value(v.trim())).is_err() {
                break;
            }
            if let Err(e) = ScenarioFile::deserialize(toml::Value::Table(raw.clone())) {
                let msg = e.message().replace('\n', " ");
                return SimError::Scenario {
                    file: label.to_string(),
                    msg: format!(
                        "--set {}={}: {}",
                        k.trim(),
                        crate::limits::short(v.trim(), 60),
                        msg.trim()
                    ),
                };
            }
        }
        toml_error(label, None, e)
    }

    /// The scenario's display name.
    pub fn name(&self) -> String {
        self.file.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
        })
    }

    /// Resolves a path from the scenario against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn err(&self, msg: impl Into<String>) -> SimError {
        SimError::Scenario {
            file: self.path.display().to_string(),
            msg: msg.into(),
        }
    }

    /// Checks everything that can be checked without the workload.
    pub fn validate(&self) -> Result<(), SimError> {
        let f = &self.file;
        crate::limits::check_ranges(&self.raw).map_err(|m| self.err(m))?;
        if let Some(n) = &f.name {
            crate::limits::check_path_name("name", n).map_err(|m| self.err(m))?;
        }
        let explicit_groups = matches!(
            self.raw.get("cluster").and_then(|c| c.get("groups")),
            Some(toml::Value::Array(a)) if a.is_empty()
        );
        if explicit_groups {
            return Err(self.err(
                "cluster.groups = [] has no replica group: give at least one group, or drop the key and use cluster.replicas",
            ));
        }
        let total: u64 = self.groups().iter().map(|g| g.replicas as u64).sum();
        if total > crate::limits::MAX_REPLICAS {
            return Err(self.err(format!(
                "cluster: {total} replicas in all; at most {} are allowed",
                crate::limits::MAX_REPLICAS
            )));
        }
        if let Some(m) = &f.models {
            for (what, spec) in [
                ("target_spec", &m.target_spec),
                ("draft_spec", &m.draft_spec),
            ] {
                if let Some(s) = spec {
                    if s.kv_heads > s.heads {
                        return Err(self.err(format!(
                            "models.{what}.kv_heads = {} must not exceed heads = {}",
                            s.kv_heads, s.heads
                        )));
                    }
                }
            }
        }
        if let Some(syn) = &f.trace.synthetic {
            let span = syn.requests.saturating_sub(1) as f64 / syn.rate;
            if span > crate::limits::MAX_SPAN_S {
                return Err(self.err(format!(
                    "trace.synthetic.rate = {} with {} requests spans about {span:.3e} s, more than the {:.0e} s a workload may span: raise the rate or lower trace.synthetic.requests",
                    syn.rate,
                    syn.requests,
                    crate::limits::MAX_SPAN_S
                )));
            }
        }
        if f.policies.is_empty() {
            return Err(self.err("[[policies]]: at least one policy is required"));
        }
        for (i, p) in f.policies.iter().enumerate() {
            p.validate()
                .map_err(|m| self.err(format!("policies[{i}]: {m}")))?;
        }
        if f.trace.path.is_none()
            && f.trace.synthetic.is_none()
            && f.trace.timestamps.is_none()
            && f.trace.shared_prefix.is_none()
        {
            return Err(self.err(
                "[trace]: set `path` (a trace file), `[trace.synthetic]`, `[trace.timestamps]` or `[trace.shared_prefix]`",
            ));
        }
        if f.cluster.groups.is_empty() && f.cluster.replicas == 0
            || f.cluster.groups.iter().any(|g| g.replicas == 0)
        {
            return Err(self.err("cluster: replicas must be at least 1"));
        }
        for (name, v) in [
            ("slo.ttft_s", f.slo.ttft_s),
            ("slo.tpot_s", f.slo.tpot_s),
            ("slo.e2e_s", f.slo.e2e_s),
        ] {
            if v.is_some_and(|x| x.is_nan() || x <= 0.0) {
                return Err(self.err(format!("{name} must be positive")));
            }
        }
        // Build every group's cost model and KV size once, so errors surface before any run.
        for g in 0..self.groups().len() {
            self.group_setup(g, true)?;
        }
        self.acceptance(&[])?;
        Ok(())
    }

    /// Replica groups (a single group from `cluster.replicas` when `groups` is empty).
    pub fn groups(&self) -> Vec<GroupConfig> {
        if self.file.cluster.groups.is_empty() {
            vec![GroupConfig {
                replicas: self.file.cluster.replicas,
                hardware: None,
                tp: None,
                kv_blocks: None,
            }]
        } else {
            self.file.cluster.groups.clone()
        }
    }

    fn model(
        &self,
        name: &Option<String>,
        spec: &Option<ModelSpec>,
        what: &str,
    ) -> Result<Option<ModelSpec>, SimError> {
        if let Some(s) = spec {
            return Ok(Some(s.clone()));
        }
        match name {
            None => Ok(None),
            Some(n) => find_model(n).map(Some).ok_or_else(|| {
                let known: Vec<String> = specsim_core::cost::catalog::models()
                    .into_iter()
                    .map(|m| m.name)
                    .collect();
                self.err(format!(
                    "models.{what}: unknown model `{n}` (known: {})",
                    known.join(", ")
                ))
            }),
        }
    }

    /// The cost model and KV blocks of replica group `g`; `with_draft` counts the draft's memory.
    pub fn group_setup(
        &self,
        g: usize,
        with_draft: bool,
    ) -> Result<(Arc<dyn CostModel>, u32), SimError> {
        let group = &self.groups()[g];
        let engine = &self.file.engine;
        let kv_given = group.kv_blocks.or(engine.kv_blocks);
        let need_kv = |kv: Option<u32>| {
            kv.ok_or_else(|| {
                self.err(
                    "engine.kv_blocks is required unless [cost] kind = \"roofline\" derives it",
                )
            })
        };
        match &self.file.cost {
            CostConfig::Roofline {
                compute_efficiency,
                memory_efficiency,
                target_overhead_ms,
                draft_overhead_ms,
                cuda_graphs,
                cuda_graph_sizes,
            } => {
                let m =
                    self.file.models.as_ref().ok_or_else(|| {
                        self.err("[models] is required by the roofline cost model")
                    })?;
                let target = self
                    .model(&m.target, &m.target_spec, "target")?
                    .ok_or_else(|| self.err("models.target is required"))?;
                let draft = self.model(&m.draft, &m.draft_spec, "draft")?;
                let hw_name = group.hardware.clone().or_else(|| m.hardware.clone());
                let hardware = match (&m.hardware_spec, hw_name) {
                    (Some(h), None) => h.clone(),
                    (_, Some(n)) => find_hardware(&n).ok_or_else(|| {
                        let known: Vec<String> = specsim_core::cost::catalog::hardware()
                            .into_iter()
                            .map(|h| h.name)
                            .collect();
                        self.err(format!(
                            "models.hardware: unknown accelerator `{n}` (known: {})",
                            known.join(", ")
                        ))
                    })?,
                    (None, None) => return Err(self.err("models.hardware is required")),
                };
                for (k, v) in [
                    ("cost.compute_efficiency", *compute_efficiency),
                    ("cost.memory_efficiency", *memory_efficiency),
                ] {
                    if !(v > 0.0 && v <= 1.0) {
                        return Err(self.err(format!("{k} = {v} must be in (0, 1]")));
                    }
                }
                let tp = group.tp.unwrap_or(m.tp).max(1);
                let roof = Roofline {
                    hardware,
                    target: Deployment {
                        model: target,
                        tp,
                        overhead_s: target_overhead_ms / 1e3,
                    },
                    draft: draft.map(|d| Deployment {
                        model: d,
                        tp: m.draft_tp.max(1),
                        overhead_s: draft_overhead_ms / 1e3,
                    }),
                    compute_efficiency: *compute_efficiency,
                    memory_efficiency: *memory_efficiency,
                    cuda_graphs: *cuda_graphs,
                    graph_sizes: *cuda_graph_sizes,
                };
                let kv = match kv_given {
                    Some(k) => k,
                    None => {
                        let sized = Roofline {
                            draft: if with_draft { roof.draft.clone() } else { None },
                            ..roof.clone()
                        };
                        sized
                            .kv_blocks(engine.block_size, engine.gpu_memory_utilization)
                            .map_err(|m| self.err(format!("cluster group {g}: {m}")))?
                    }
                };
                Ok((Arc::new(roof), kv))
            }
            CostConfig::Profile { path } => {
                let p = Profile::load(&self.resolve(path))?;
                Ok((Arc::new(ProfileCost { profile: p }), need_kv(kv_given)?))
            }
            CostConfig::Linear {
                draft,
                target,
                prefill,
            } => Ok((
                Arc::new(LinearCost {
                    draft: *draft,
                    target: *target,
                    prefill: *prefill,
                }),
                need_kv(kv_given)?,
            )),
            CostConfig::Fixed {
                target_ms,
                target_per_token_ms,
                draft_ms,
                draft_per_seq_ms,
            } => Ok((
                Arc::new(FixedCost {
                    target_base: ms_to_ns(*target_ms),
                    target_per_token: ms_to_ns(*target_per_token_ms),
                    draft_base: ms_to_ns(*draft_ms),
                    draft_per_seq: ms_to_ns(*draft_per_seq_ms),
                }),
                need_kv(kv_given)?,
            )),
        }
    }

    /// The acceptance model for a workload with these category names.
    pub fn acceptance(&self, categories: &[String]) -> Result<Arc<dyn AcceptanceModel>, SimError> {
        self.acceptance_config()?
            .build(categories)
            .map(Arc::from)
            .map_err(|m| self.err(format!("acceptance: {m}")))
    }

    /// The acceptance model's configuration, with a `profile` acceptance read from its file.
    pub fn acceptance_config(&self) -> Result<AcceptanceConfig, SimError> {
        Ok(match &self.file.acceptance {
            AcceptanceConfig::Profile { path } => {
                let p = Profile::load(&self.resolve(path))?;
                p.acceptance.ok_or_else(|| {
                    self.err(format!(
                        "acceptance: profile {} has no [acceptance] table",
                        path.display()
                    ))
                })?
            }
            other => other.clone(),
        })
    }

    /// The workload when the trace is built in (synthetic, or a native CSV). Other formats are read by
    /// the `specsim-traces` crate.
    pub fn builtin_workload(&self) -> Result<Workload, SimError> {
        let t = &self.file.trace;
        match (&t.path, &t.synthetic) {
            (Some(p), _) if t.format.as_deref().is_none_or(|f| f == "native") => {
                Workload::read_native_csv(&self.resolve(p)).map_err(|e| match e {
                    SimError::Io { .. } => self.err(format!("trace.path: {e}")),
                    other => other,
                })
            }
            (None, Some(s)) => crate::synth::generate(s, self.file.seed),
            _ => Err(self.err("trace: this format needs the specsim-traces crate")),
        }
    }

    /// Fails if some request can never fit in a replica's KV cache.
    pub fn check_workload(&self, w: &Workload) -> Result<(), SimError> {
        w.validate()?;
        if w.span_ns() as f64 / 1e9 > crate::limits::MAX_SPAN_S {
            return Err(self.err(format!(
                "the workload spans {:.3e} s, more than the {:.0e} s allowed (check trace.rate_scale, trace.target_rate or the trace's arrival times)",
                w.span_ns() as f64 / 1e9,
                crate::limits::MAX_SPAN_S
            )));
        }
        let max = crate::limits::MAX_TOKENS;
        if let Some(r) = w
            .requests
            .iter()
            .find(|r| r.prompt_tokens > max || r.output_tokens > max)
        {
            return Err(self.err(format!(
                "request {} has {} prompt and {} output tokens; at most {max} each are allowed (clip with trace.max_prompt / trace.max_output)",
                r.id, r.prompt_tokens, r.output_tokens
            )));
        }
        for g in 0..self.groups().len() {
            let spec = self.file.policies.iter().any(|p| p.build().k_max() > 0);
            let (_, kv) = self.group_setup(g, spec)?;
            let cap = kv as u64 * self.file.engine.block_size as u64;
            if let Some(r) = w.requests.iter().find(|r| {
                let tokens = r.prompt_tokens as u64 + r.output_tokens as u64;
                !context_fits(tokens, kv, self.file.engine.block_size)
            }) {
                return Err(self.err(format!(
                    "request {} needs {} + {} tokens of KV but a replica of group {g} holds {cap} tokens ({kv} blocks): raise engine.kv_blocks, clip lengths (trace.max_context) or use a larger accelerator",
                    r.id, r.prompt_tokens, r.output_tokens
                )));
            }
        }
        Ok(())
    }

    /// Simulates one policy on `workload`.
    pub fn run_policy(
        &self,
        workload: &Workload,
        policy: &PolicyConfig,
        record_steps: bool,
        progress: Option<&(dyn Fn(usize, usize) + Sync)>,
    ) -> Result<PolicyRun, SimError> {
        self.run_policy_until(workload, policy, record_steps, progress, None)
            .map(|(run, _)| run)
    }

    /// [`Scenario::run_policy`] with an early stop: the run ends once `stop_after_misses` finished
    /// requests have missed an SLO, and the flag returned says whether it did (the summary then covers
    /// the requests finished so far, and attainment counts the rest as misses).
    pub fn run_policy_until(
        &self,
        workload: &Workload,
        policy: &PolicyConfig,
        record_steps: bool,
        progress: Option<&(dyn Fn(usize, usize) + Sync)>,
        stop_after_misses: Option<usize>,
    ) -> Result<(PolicyRun, bool), SimError> {
        let (replicas, name) = self.build_replicas(&workload.categories, policy)?;
        let opts = SimOptions {
            record_steps,
            progress,
            seed: self.file.seed,
            stop_after_misses,
            concurrency: self.file.trace.concurrency,
            ..Default::default()
        };
        let out = simulate(
            replicas,
            self.file.cluster.router.build(),
            workload,
            &name,
            &self.file.slo,
            &opts,
        )?;
        let summary = Summary::from_records(
            &name,
            &out.records,
            workload.len(),
            0,
            out.decode_steps,
            out.preemptions,
            &self.file.slo,
        );
        Ok((
            PolicyRun {
                name,
                records: out.records,
                steps: out.steps,
                summary,
                events: out.events,
                admission_peak: out.admission_peak,
            },
            out.stopped_early,
        ))
    }

    /// The replicas of the cluster for `policy` (engines, simulated backends, one acceptance stream
    /// each), and the policy's name.
    pub fn build_replicas(
        &self,
        categories: &[String],
        policy: &PolicyConfig,
    ) -> Result<(Vec<Replica>, String), SimError> {
        let acceptance = self.acceptance(categories)?;
        let policy = &policy.with_prior_confidence(self.acceptance_config()?.mean_confidence());
        let name = policy.build().name();
        let mut replicas = Vec::new();
        for (g, group) in self.groups().iter().enumerate() {
            let speculates = policy.build().k_max() > 0;
            let (cost, kv) = self.group_setup(g, speculates)?;
            for _ in 0..group.replicas {
                let idx = replicas.len() as u64;
                let mut cfg = self.file.engine.clone();
                cfg.kv_blocks = Some(kv);
                let mut engine = Engine::new(cfg, policy.build(), Arc::clone(&cost))?;
                engine.set_tpot_slo(self.file.slo.tpot_s.map(specsim_core::time::secs_to_ns));
                let backend = SimBackend::new(
                    Arc::clone(&cost),
                    Arc::clone(&acceptance),
                    stream(self.file.seed, "acceptance", idx),
                    speculates,
                )
                .with_scorer(self.file.engine.verify_scorer);
                replicas.push(Replica {
                    engine,
                    backend: Box::new(backend),
                });
            }
        }
        Ok((replicas, name))
    }

    /// The smallest KV capacity (tokens) over the replica groups, for checking requests as they stream
    /// by ([`Scenario::check_workload`] checks a whole workload).
    pub fn kv_capacity(&self) -> Result<(u64, usize, u32), SimError> {
        let spec = self.file.policies.iter().any(|p| p.build().k_max() > 0);
        let mut best: Option<(u64, usize, u32)> = None;
        for g in 0..self.groups().len() {
            let (_, kv) = self.group_setup(g, spec)?;
            let cap = kv as u64 * self.file.engine.block_size as u64;
            if best.is_none_or(|b| cap < b.0) {
                best = Some((cap, g, kv));
            }
        }
        best.ok_or_else(|| self.err("cluster has no replica groups"))
    }

    /// Wraps a request stream with [`Scenario::check_workload`]'s KV check, request by request.
    pub fn checked_stream(&self, s: RequestStream) -> Result<RequestStream, SimError> {
        let (cap, g, kv) = self.kv_capacity()?;
        let file = self.path.display().to_string();
        let RequestStream {
            requests,
            categories,
            len,
        } = s;
        Ok(RequestStream {
            requests: Box::new(requests.map(move |r| {
                let r = r?;
                if (r.prompt_tokens + r.output_tokens) as u64 > cap {
                    return Err(SimError::Scenario {
                        file: file.clone(),
                        msg: format!(
                            "request {} needs {} + {} tokens of KV but a replica of group {g} holds {cap} tokens ({kv} blocks): raise engine.kv_blocks, clip lengths (trace.max_context) or use a larger accelerator",
                            r.id, r.prompt_tokens, r.output_tokens
                        ),
                    });
                }
                Ok(r)
            })),
            categories,
            len,
        })
    }

    /// Simulates one policy on a request stream, streaming its results into `dir` (`requests.csv` as
    /// requests finish, `summary.json` at the end; see [`crate::results`]). Memory is bounded by what
    /// is in flight. `name` is the policy's name in the rows (unique among the scenario's policies).
    pub fn run_policy_streaming(
        &self,
        s: RequestStream,
        policy: &PolicyConfig,
        name: &str,
        dir: &Path,
        opts: &StreamOptions,
    ) -> Result<StreamRun, SimError> {
        let (replicas, _) = self.build_replicas(&s.categories, policy)?;
        let mut writer = ResultWriter::create(
            dir,
            name,
            &self.file.slo,
            opts.exact_limit,
            opts.record_steps,
        )?;
        let sim_opts = SimOptions {
            record_steps: opts.record_steps,
            progress: opts.progress,
            seed: self.file.seed,
            stop_after_misses: None,
            cancel: opts.cancel,
            sync_interval: opts.sync_interval,
            concurrency: self.file.trace.concurrency,
        };
        struct Sink<'w>(&'w mut ResultWriter);
        impl SimSink for Sink<'_> {
            fn request(&mut self, rec: RequestRecord) -> Result<(), SimError> {
                self.0.request(rec)
            }
            fn step(&mut self, row: StepRow) -> Result<(), SimError> {
                self.0.step(&row)
            }
        }
        let mut requests = s.requests;
        let stats = simulate_into(
            replicas,
            self.file.cluster.router.build(),
            &mut requests,
            s.len.unwrap_or(0),
            name,
            &self.file.slo,
            &sim_opts,
            &mut Sink(&mut writer),
        )?;
        let peak_reorder = writer.peak_reorder();
        let partial = stats.interrupted.then(|| {
            format!(
                "interrupted: {} of {} requests that arrived had finished (requests.csv holds them; the rest of the workload was not simulated)",
                stats.finished, stats.arrived
            )
        });
        let total = if stats.interrupted {
            s.len.unwrap_or(stats.arrived).max(stats.arrived)
        } else {
            stats.arrived
        };
        let summary = writer.finish(total, stats.decode_steps, stats.preemptions, partial)?;
        Ok(StreamRun {
            name: name.to_string(),
            summary,
            stats,
            peak_reorder,
        })
    }

    /// The synchronisation interval [`StreamOptions::sync_interval`] gets by default: the parallel mode
    /// when it gives exactly the sequential run's records (a router that ignores load, more than one
    /// replica, no `steps.csv`, whose row order would change) and the workload is large enough to pay
    /// for it (at least `min_requests`); otherwise the sequential loop.
    pub fn auto_sync_interval(
        &self,
        requests: Option<usize>,
        steps: bool,
        min_requests: usize,
    ) -> Option<specsim_core::time::Nanos> {
        let replicas: u32 = self.groups().iter().map(|g| g.replicas).sum();
        (self.file.cluster.router.stateless()
            && replicas > 1
            && !steps
            && requests.is_some_and(|n| n >= min_requests))
        .then_some(DEFAULT_SYNC_INTERVAL_NS)
    }
}

/// Default synchronisation interval of the parallel mode: 100 ms of simulated time.
pub const DEFAULT_SYNC_INTERVAL_NS: specsim_core::time::Nanos = 100_000_000;

/// A workload as a stream: requests in arrival order with ids `0..n`, and the category names they
/// index. Sources that know their length say so (for progress bars).
pub struct RequestStream {
    /// The requests.
    pub requests: Box<dyn Iterator<Item = Result<RequestSpec, SimError>> + Send>,
    /// Category names.
    pub categories: Vec<String>,
    /// Number of requests, when known in advance.
    pub len: Option<usize>,
}

impl RequestStream {
    /// A stream over an in-memory workload (shared, so several policies can read it at once).
    pub fn from_workload(w: Arc<Workload>) -> Self {
        let categories = w.categories.clone();
        let len = w.len();
        let mut i = 0;
        RequestStream {
            requests: Box::new(std::iter::from_fn(move || {
                let r = w.requests.get(i).cloned();
                i += 1;
                r.map(Ok)
            })),
            categories,
            len: Some(len),
        }
    }
}

/// Options of [`Scenario::run_policy_streaming`].
pub struct StreamOptions<'a> {
    /// Also write `steps.csv`.
    pub record_steps: bool,
    /// Called with (finished, total) as requests finish (total 0 when unknown).
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// Values per latency kept for exact percentiles before the summary switches to the sketch.
    pub exact_limit: usize,
    /// Parallel mode's synchronisation interval (`None`: the exact sequential loop).
    pub sync_interval: Option<specsim_core::time::Nanos>,
    /// Stops the run when set (a SIGINT handler sets it); the directory then says it is partial.
    pub cancel: Option<&'a AtomicBool>,
}

impl Default for StreamOptions<'_> {
    fn default() -> Self {
        StreamOptions {
            record_steps: false,
            progress: None,
            exact_limit: EXACT_PERCENTILE_LIMIT,
            sync_interval: None,
            cancel: None,
        }
    }
}

/// What [`Scenario::run_policy_streaming`] returns (the rows are on disk).
pub struct StreamRun {
    /// Policy name.
    pub name: String,
    /// The summary written to `summary.json`.
    pub summary: Summary,
    /// Totals of the simulation.
    pub stats: SimStats,
    /// The most rows `requests.csv` ever held back for an earlier request still in flight.
    pub peak_reorder: usize,
}

/// Policy names made unique (a suffix `-2`, `-3` on repeats), in scenario order.
pub fn unique_policy_names(policies: &[PolicyConfig]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    policies
        .iter()
        .map(|p| {
            let base = p.build().name();
            let mut name = base.clone();
            let mut i = 2;
            while seen.contains(&name) {
                name = format!("{base}-{i}");
                i += 1;
            }
            seen.push(name.clone());
            name
        })
        .collect()
}
