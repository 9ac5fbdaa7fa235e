//! Reads a ground-truth folder laid out like `../shared/gpu/blis`:
//!
//! - `experiments.csv`: one row per experiment (model, hardware, tp, dp, cpu_offload, gpu_mem_util,
//!   max_num_batched_tokens, training_run_twin);
//! - `workloads/<experiment>.json`: the workload (`shared_prefix`, `load_stages`) and the vLLM stack
//!   (`campaign_values.stack`: MAX_NUM_SEQS, MAX_MODEL_LEN);
//! - error-record CSVs anywhere under `sim-to-real-accuracy-validation/` (any file name): the measured
//!   value of each (experiment, stage, metric) in `actual`, and other simulators' `predicted`;
//! - optionally `training/default_args/<run>/` (profile.yaml, exp-config.yaml, results/*.json) and
//!   `training/replay_data/<run>.json` + `<run>_ground_truth.json` (per-request data). A training run
//!   that no experiment names as its twin is an experiment of its own, measured from its stage files.
//!
//! A bad experiment becomes one line in [`GroundTruth::failures`] naming the file and field; the others
//! are still read.

use super::metrics::{by_stage, Metric, Outcome, Stage};
use super::{Failure, Key};
use crate::ops::silicon::{csv_rows, CsvHeader};
use crate::{CalibrateError, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// inference-perf's `shared_prefix` data generator settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedPrefix {
    /// Unique system prompts.
    pub groups: u32,
    /// Users per system prompt.
    pub users_per_group: u32,
    /// System prompt tokens.
    pub system_len: u32,
    /// Question tokens.
    pub question_len: u32,
    /// Output tokens (`max_tokens` with `ignore_eos`).
    pub output_len: u32,
    /// Multi-turn chat.
    pub multi_turn: bool,
}

/// One experiment: what was served, on what, under which load, and what was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// Name (the experiments.csv `experiment` or the training run folder).
    pub name: String,
    /// Model as served (Hugging Face id).
    pub model: String,
    /// Hardware label (`H100`, `A100-80GB`, `L40S`).
    pub hardware: String,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Data-parallel replicas.
    pub dp: u32,
    /// `--cpu-offload-gb` was set.
    pub cpu_offload: bool,
    /// `--gpu-memory-utilization`.
    pub gpu_mem_util: f64,
    /// Weight precision label (`FP16`, `FP8`).
    pub precision: String,
    /// `--max-num-batched-tokens`.
    pub max_num_batched_tokens: u32,
    /// `--max-num-seqs`.
    pub max_num_seqs: u32,
    /// `--max-model-len`.
    pub max_model_len: u32,
    /// Data generator settings, if published.
    pub shared_prefix: Option<SharedPrefix>,
    /// Load stages, if published.
    pub stages: Vec<Stage>,
    /// Per-request data of the run (`training/replay_data/<run>.json`), if any.
    pub replay: Option<PathBuf>,
    /// Measured values, ms, by (stage, metric).
    pub measured: BTreeMap<(i32, Metric), f64>,
    /// Other simulators' published predictions and the measured value each was scored against (the
    /// same as `measured` except where that simulator was scored on another run), ms, by (simulator,
    /// stage, metric).
    pub published: BTreeMap<(String, i32, Metric), (f64, f64)>,
}

/// Everything read from a folder.
#[derive(Debug, Default)]
pub struct GroundTruth {
    /// The experiments that could be read.
    pub experiments: Vec<Experiment>,
    /// One line per experiment or file that could not.
    pub failures: Vec<Failure>,
    /// Simulators with published predictions, sorted.
    pub simulators: Vec<String>,
}

/// vLLM's defaults in this campaign (blis/README.md) for settings a row leaves blank.
const DEFAULT_MAX_NUM_SEQS: u32 = 128;
const DEFAULT_MAX_MODEL_LEN: u32 = 4096;
const DEFAULT_GPU_MEM_UTIL: f64 = 0.9;
const DEFAULT_MBT: u32 = 2048;

/// Reads `dir`. Fails only when the folder holds neither `experiments.csv` nor training runs.
pub fn read_folder(dir: &Path) -> Result<GroundTruth> {
    let mut gt = GroundTruth::default();
    let records = read_error_records(dir, &mut gt.failures);
    let csv_path = dir.join("experiments.csv");
    let mut twins = Vec::new();
    if csv_path.is_file() {
        read_experiments_csv(dir, &csv_path, &records, &mut gt, &mut twins)?;
    }
    read_training_runs(dir, &twins, &records, &mut gt);
    if gt.experiments.is_empty() && gt.failures.is_empty() {
        return Err(CalibrateError::table(
            dir.display(),
            "experiments.csv",
            "no experiments.csv and no training/default_args runs here",
        ));
    }
    let mut sims: Vec<String> = records.published.keys().map(|k| k.1.clone()).collect();
    sims.sort();
    sims.dedup();
    gt.simulators = sims;
    Ok(gt)
}

/// Measured and published values of every error-record file, by experiment name.
#[derive(Debug, Default)]
struct Records {
    /// Every `actual` given for a key, in file order. Files disagree where a simulator was scored on
    /// another run of the experiment (LLMServingSim's matched records); the measured value is the one
    /// most rows give.
    actual: BTreeMap<(String, i32, Metric), Vec<f64>>,
    /// (predicted, the actual it was scored against) per (experiment, simulator, stage, metric).
    published: BTreeMap<(String, String, i32, Metric), (f64, f64)>,
}

/// The value most entries agree on (to 1e-9 relative); the earliest among equals.
fn most_common(values: &[f64]) -> Option<f64> {
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    values
        .iter()
        .map(|&v| (v, values.iter().filter(|&&w| same(v, w)).count()))
        .fold(None, |best: Option<(f64, usize)>, (v, n)| match best {
            Some((_, bn)) if bn >= n => best,
            _ => Some((v, n)),
        })
        .map(|b| b.0)
}

fn csv_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            csv_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
}

/// Every CSV under `sim-to-real-accuracy-validation/` with the error-record columns. Files are read in
/// sorted path order and a later file only fills keys an earlier one left empty.
fn read_error_records(dir: &Path, failures: &mut Vec<Failure>) -> Records {
    let mut files = Vec::new();
    csv_files(&dir.join("sim-to-real-accuracy-validation"), &mut files);
    files.sort();
    let mut rec = Records::default();
    for f in files {
        if let Err(e) = read_error_record_file(&f, &mut rec) {
            failures.push(Failure {
                experiment: f.display().to_string(),
                message: e.to_string(),
            });
        }
    }
    rec
}

fn read_error_record_file(path: &Path, rec: &mut Records) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| CalibrateError::io(path, e))?;
    let mut rows = csv_rows(&text);
    let header = CsvHeader::read(path, &mut rows)?;
    let col = |name: &str| header.col(name);
    let c = [
        col("simulator")?,
        col("experiment_folder")?,
        col("stage_index")?,
        col("metric_name")?,
        col("predicted")?,
        col("actual")?,
    ];
    for (i, f) in rows.enumerate() {
        let get = |k: usize| f.get(c[k]).map(String::as_str).unwrap_or("");
        let Some(metric) = Metric::from_name(get(3)) else {
            continue;
        };
        let at = |field: &str| {
            CalibrateError::table(
                format!("{}:{}", path.display(), i + 2),
                field,
                "not a number",
            )
        };
        let stage = get(2).parse::<f64>().map_err(|_| at("stage_index"))? as i32;
        let exp = get(1).rsplit(['/', '\\']).next().unwrap_or("").to_string();
        let actual: f64 = get(5).parse().map_err(|_| at("actual"))?;
        let predicted: f64 = get(4).parse().map_err(|_| at("predicted"))?;
        rec.actual
            .entry((exp.clone(), stage, metric))
            .or_default()
            .push(actual);
        rec.published
            .entry((exp, get(0).to_string(), stage, metric))
            .or_insert((predicted, actual));
    }
    Ok(())
}

fn field_err(file: &Path, field: &str, msg: impl Into<String>) -> CalibrateError {
    CalibrateError::table(file.display(), field, msg)
}

fn read_experiments_csv(
    dir: &Path,
    path: &Path,
    records: &Records,
    gt: &mut GroundTruth,
    twins: &mut Vec<String>,
) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| CalibrateError::io(path, e))?;
    let mut rows = csv_rows(&text);
    let header = rows
        .next()
        .ok_or_else(|| field_err(path, "header", "empty file"))?;
    for name in ["experiment", "model", "hardware", "tp"] {
        if !header.iter().any(|h| h == name) {
            return Err(field_err(path, name, "column missing"));
        }
    }
    for (i, row) in rows.enumerate() {
        let cell = |name: &str| -> String {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|c| row.get(c))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let name = cell("experiment");
        let twin = cell("training_run_twin");
        if !twin.is_empty() {
            twins.push(twin.clone());
        }
        let at = format!("{}:{} ({name})", path.display(), i + 2);
        match experiment_from_row(dir, &cell, &twin, records)
            .map_err(|(f, m)| format!("{at}: {f}: {m}"))
        {
            Ok(e) => gt.experiments.push(e),
            Err(message) => gt.failures.push(Failure {
                experiment: name,
                message,
            }),
        }
    }
    Ok(())
}

type RowErr = (String, String);

fn experiment_from_row(
    dir: &Path,
    cell: &dyn Fn(&str) -> String,
    twin: &str,
    records: &Records,
) -> std::result::Result<Experiment, RowErr> {
    let name = cell("experiment");
    let bad = |f: &str, m: String| (f.to_string(), m);
    let num = |f: &str, default: Option<f64>| -> std::result::Result<f64, RowErr> {
        let v = cell(f);
        if v.is_empty() {
            return default.ok_or_else(|| bad(f, "empty".into()));
        }
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| bad(f, format!("`{v}` is not a positive number")))
    };
    let model = cell("model");
    if model.is_empty() {
        return Err(bad("model", "empty".into()));
    }
    let mut e = Experiment {
        name: name.clone(),
        model,
        hardware: cell("hardware"),
        tp: num("tp", None)? as u32,
        dp: num("dp", Some(1.0))? as u32,
        cpu_offload: cell("cpu_offload").eq_ignore_ascii_case("true"),
        gpu_mem_util: num("gpu_mem_util", Some(DEFAULT_GPU_MEM_UTIL))?,
        precision: cell("precision"),
        max_num_batched_tokens: num("max_num_batched_tokens", Some(DEFAULT_MBT as f64))? as u32,
        max_num_seqs: DEFAULT_MAX_NUM_SEQS,
        max_model_len: DEFAULT_MAX_MODEL_LEN,
        shared_prefix: None,
        stages: Vec::new(),
        replay: None,
        measured: measured_of(&name, records),
        published: published_of(&name, records),
    };
    let wpath = dir.join("workloads").join(format!("{name}.json"));
    read_workload_json(&wpath, &mut e)
        .map_err(|(f, m)| (format!("{}: {f}", wpath.display()), m))?;
    if !twin.is_empty() {
        let r = dir
            .join("training/replay_data")
            .join(format!("{twin}.json"));
        e.replay = r.is_file().then_some(r);
    }
    if e.measured.is_empty() {
        return Err(bad(
            "measured metrics",
            "no error-record row gives an `actual` for this experiment".into(),
        ));
    }
    Ok(e)
}

fn measured_of(name: &str, r: &Records) -> BTreeMap<(i32, Metric), f64> {
    r.actual
        .iter()
        .filter(|(k, _)| k.0 == name)
        .filter_map(|(k, v)| Some(((k.1, k.2), most_common(v)?)))
        .collect()
}

fn published_of(name: &str, r: &Records) -> BTreeMap<(String, i32, Metric), (f64, f64)> {
    r.published
        .iter()
        .filter(|(k, _)| k.0 == name)
        .map(|(k, v)| ((k.1.clone(), k.2, k.3), *v))
        .collect()
}

fn as_u32(v: &Value, field: &str) -> std::result::Result<u32, RowErr> {
    v.as_f64()
        .filter(|x| *x >= 0.0 && x.fract() == 0.0)
        .map(|x| x as u32)
        .ok_or_else(|| (field.to_string(), format!("`{v}` is not a whole number")))
}

/// `shared_prefix` in inference-perf's field names (workload JSON and profile.yaml alike).
fn shared_prefix_of(v: &Value) -> std::result::Result<SharedPrefix, RowErr> {
    let get = |k: &str| -> std::result::Result<u32, RowErr> {
        as_u32(&v[k], &format!("shared_prefix.{k}"))
    };
    Ok(SharedPrefix {
        groups: get("num_unique_system_prompts")?,
        users_per_group: get("num_users_per_system_prompt")?,
        system_len: get("system_prompt_len")?,
        question_len: get("question_len")?,
        output_len: get("output_len")?,
        multi_turn: v["enable_multi_turn_chat"].as_bool().unwrap_or(false),
    })
}

fn stages_of(v: &Value, field: &str) -> std::result::Result<Vec<Stage>, RowErr> {
    let Some(list) = v.as_array() else {
        return Err((field.to_string(), "not a list".into()));
    };
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let f = |k: &str| {
                s[k].as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| {
                        (
                            format!("{field}[{i}].{k}"),
                            format!("`{}` is not a positive number", s[k]),
                        )
                    })
            };
            Ok(Stage {
                rate_per_s: f("rate")?,
                duration_s: f("duration")?,
            })
        })
        .collect()
}

fn read_workload_json(path: &Path, e: &mut Experiment) -> std::result::Result<(), RowErr> {
    let text =
        std::fs::read_to_string(path).map_err(|err| ("file".to_string(), err.to_string()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|err| ("json".to_string(), err.to_string()))?;
    if !v["shared_prefix"].is_null() {
        e.shared_prefix = Some(shared_prefix_of(&v["shared_prefix"])?);
    }
    if !v["load_stages"].is_null() {
        e.stages = stages_of(&v["load_stages"], "load_stages")?;
    } else if v["workload_exact"].as_bool() != Some(false) {
        // No transcribed stages: the campaign's own profile, unless the file says the run's load
        // differed from it (the `-lite` reruns).
        let template = &v["campaign_values"]["workload_profileTemplate"]["load"]["stages"];
        if !template.is_null() {
            e.stages = stages_of(
                template,
                "campaign_values.workload_profileTemplate.load.stages",
            )?;
        }
    }
    let stack = &v["campaign_values"]["stack"];
    if !stack["MAX_NUM_SEQS"].is_null() {
        e.max_num_seqs = as_u32(&stack["MAX_NUM_SEQS"], "campaign_values.stack.MAX_NUM_SEQS")?;
    }
    if !stack["MAX_MODEL_LEN"].is_null() {
        e.max_model_len = as_u32(
            &stack["MAX_MODEL_LEN"],
            "campaign_values.stack.MAX_MODEL_LEN",
        )?;
    }
    Ok(())
}

/// Training runs no experiment names as its twin, each read as an experiment measured from its own
/// stage files.
fn read_training_runs(dir: &Path, twins: &[String], records: &Records, gt: &mut GroundTruth) {
    let root = dir.join("training/default_args");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    let mut runs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    for run in runs {
        let name = run
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if twins.contains(&name) {
            continue;
        }
        match read_training_run(dir, &run, &name, records) {
            Ok(e) => gt.experiments.push(e),
            Err(message) => gt.failures.push(Failure {
                experiment: name,
                message,
            }),
        }
    }
}

fn read_training_run(
    dir: &Path,
    run: &Path,
    name: &str,
    records: &Records,
) -> std::result::Result<Experiment, String> {
    let in_file = |p: &Path, (f, m): RowErr| format!("{}: {f}: {m}", p.display());
    let cfg_path = run.join("exp-config.yaml");
    let cfg = read_simple_yaml(&cfg_path).map_err(|x| in_file(&cfg_path, x))?;
    let cfg_num = |k: &str, default: Option<u32>| -> std::result::Result<u32, String> {
        match cfg.get(k) {
            Some(v) => v.parse().map_err(|_| {
                in_file(
                    &cfg_path,
                    (k.into(), format!("`{v}` is not a whole number")),
                )
            }),
            None => default.ok_or_else(|| in_file(&cfg_path, (k.into(), "missing".into()))),
        }
    };
    let profile_path = run.join("profile.yaml");
    let profile: Value = std::fs::read_to_string(&profile_path)
        .map_err(|e| in_file(&profile_path, ("file".into(), e.to_string())))
        .and_then(|t| {
            serde_json::from_str(&t)
                .map_err(|e| in_file(&profile_path, ("json".into(), e.to_string())))
        })?;
    let shared = shared_prefix_of(&profile["data"]["shared_prefix"])
        .map_err(|x| in_file(&profile_path, x))?;
    let stages = stages_of(&profile["load"]["stages"], "load.stages")
        .map_err(|x| in_file(&profile_path, x))?;
    let measured = measured_from_stage_files(&run.join("results"), stages.len())?;
    let replay = dir
        .join("training/replay_data")
        .join(format!("{name}.json"));
    Ok(Experiment {
        name: name.to_string(),
        model: cfg
            .get("model")
            .cloned()
            .ok_or_else(|| in_file(&cfg_path, ("model".into(), "missing".into())))?,
        // The training runs were all on H100 (blis/README.md).
        hardware: "H100".into(),
        tp: cfg_num("tensor_parallelism", None)?,
        dp: 1,
        cpu_offload: false,
        gpu_mem_util: DEFAULT_GPU_MEM_UTIL,
        precision: "FP16".into(),
        max_num_batched_tokens: cfg_num("max_num_batched_tokens", Some(DEFAULT_MBT))?,
        max_num_seqs: cfg_num("max_num_seqs", Some(DEFAULT_MAX_NUM_SEQS))?,
        max_model_len: cfg_num("max_model_len", Some(DEFAULT_MAX_MODEL_LEN))?,
        shared_prefix: Some(shared),
        stages,
        replay: replay.is_file().then_some(replay),
        measured,
        published: published_of(name, records),
    })
}

/// `key: value` lines (exp-config.yaml is flat).
fn read_simple_yaml(path: &Path) -> std::result::Result<BTreeMap<String, String>, RowErr> {
    let text = std::fs::read_to_string(path).map_err(|e| ("file".to_string(), e.to_string()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Measured metrics from `summary_lifecycle_metrics.json` (stage −1) and `stage_N_…` files, with
/// `itl_mean` formed as the error records form it (see [`super::metrics`]).
fn measured_from_stage_files(
    results: &Path,
    stages: usize,
) -> std::result::Result<BTreeMap<(i32, Metric), f64>, String> {
    let mut out = BTreeMap::new();
    let mut files = vec![(-1, results.join("summary_lifecycle_metrics.json"))];
    files.extend((0..stages).map(|s| {
        (
            s as i32,
            results.join(format!("stage_{s}_lifecycle_metrics.json")),
        )
    }));
    for (stage, path) in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: file: {e}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: json: {e}", path.display()))?;
        let lat = &v["successes"]["latency"];
        let get = |a: &Value, f: &str, k: &str| -> std::result::Result<f64, String> {
            a[k].as_f64()
                .ok_or_else(|| format!("{}: {f}.{k}: missing or not a number", path.display()))
        };
        let e2e = &lat["request_latency"];
        let ttft = &lat["time_to_first_token"];
        let pairs = [
            (Metric::E2eMean, get(e2e, "request_latency", "mean")?),
            (Metric::E2eP90, get(e2e, "request_latency", "p90")?),
            (Metric::E2eP99, get(e2e, "request_latency", "p99")?),
            (Metric::TtftMean, get(ttft, "time_to_first_token", "mean")?),
            (Metric::TtftP90, get(ttft, "time_to_first_token", "p90")?),
            (Metric::TtftP99, get(ttft, "time_to_first_token", "p99")?),
        ];
        for (m, x) in pairs {
            out.insert((stage, m), x * 1e3);
        }
        let tokens = get(
            &v["successes"]["output_len"],
            "successes.output_len",
            "mean",
        )?;
        if tokens > 1.0 {
            let itl =
                (out[&(stage, Metric::E2eMean)] - out[&(stage, Metric::TtftMean)]) / (tokens - 1.0);
            out.insert((stage, Metric::ItlMean), itl);
        }
    }
    Ok(out)
}

/// The per-request data of a run: every request's send time and prompt length (errored ones too: they
/// loaded the server until they failed), and the outcomes of the successful ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayData {
    /// (send time s, prompt tokens, failed) of every request, in file order.
    pub requests: Vec<(f64, u32, bool)>,
    /// The successful requests' measured outcomes (client-counted output tokens).
    pub outcomes: Vec<Outcome>,
}

/// Reads `<run>.json` and `<run>_ground_truth.json`.
pub fn read_replay(path: &Path) -> Result<ReplayData> {
    let read = |p: &Path| -> Result<Value> {
        let t = std::fs::read_to_string(p).map_err(|e| CalibrateError::io(p, e))?;
        serde_json::from_str(&t).map_err(|e| field_err(p, "json", e.to_string()))
    };
    let data = read(path)?;
    let gt_path = path.with_file_name(format!(
        "{}_ground_truth.json",
        path.file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    let truth = read(&gt_path)?;
    let reqs = data["requests"]
        .as_array()
        .ok_or_else(|| field_err(path, "requests", "not a list"))?;
    let truth = truth
        .as_array()
        .ok_or_else(|| field_err(&gt_path, "(top level)", "not a list"))?;
    if truth.len() != reqs.len() {
        return Err(field_err(
            &gt_path,
            "(top level)",
            format!("{} entries for {} requests", truth.len(), reqs.len()),
        ));
    }
    let mut out = ReplayData {
        requests: Vec::with_capacity(reqs.len()),
        outcomes: Vec::new(),
    };
    for (i, (r, t)) in reqs.iter().zip(truth).enumerate() {
        let num = |v: &Value, f: &str, p: &Path| -> Result<f64> {
            v[f].as_f64().ok_or_else(|| {
                field_err(p, &format!("requests[{i}].{f}"), "missing or not a number")
            })
        };
        let arrival_s = num(r, "arrival_time_us", path)? / 1e6;
        let failed = r["has_error"].as_bool().unwrap_or(false);
        out.requests
            .push((arrival_s, num(r, "input_tokens", path)? as u32, failed));
        if !failed {
            out.outcomes.push(Outcome {
                arrival_s,
                ttft_s: num(t, "ttft_s", &gt_path)?,
                e2e_s: num(t, "e2e_s", &gt_path)?,
                output_tokens: num(r, "output_tokens", path)?,
            });
        }
    }
    Ok(out)
}

/// The metrics the per-request data gives, by (stage, metric): the same numbers as the error records'
/// `actual` when the definitions in [`super::metrics`] are right.
pub fn replay_metrics(data: &ReplayData, stages: &[Stage]) -> BTreeMap<Key, f64> {
    by_stage(&data.outcomes, stages)
}
