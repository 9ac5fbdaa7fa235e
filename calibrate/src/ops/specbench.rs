//! SpecDecode-Bench acceptance traces (Llama-3.1-8B-Instruct on H100 under vLLM; EAGLE-3 and n-gram
//! drafting) and the speed-ups they imply at batch 1 on a profile composed from the operator tables.
//!
//! Each JSONL line is one request: `prompt_token_ids`, `generated_token_ids`, and `acc_eagle.acc_len`,
//! `acc_ngram.acc_len` (per output position, the tokens a step starting there produces, ≤ 21: the runs
//! drafted k = 20). [`specsim_core::acceptance::trace`] walks them into per-step lengths.

use super::compose::Composer;
use crate::{CalibrateError, Result};
use serde::Deserialize;
use specsim_core::acceptance::trace::StepTrace;
use std::path::{Path, PathBuf};

/// The datasets of the shared folder (file stems after `combined_`).
pub const DATASETS: [&str; 4] = ["cnn", "gsm8k", "instructcoder", "sharegpt"];

#[derive(Deserialize)]
struct Accs {
    acc_len: Vec<u32>,
}

#[derive(Deserialize)]
struct Line {
    prompt_token_ids: Vec<u32>,
    generated_token_ids: Vec<u32>,
    acc_eagle: Accs,
    acc_ngram: Accs,
}

/// One dataset's traces.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Name (`gsm8k`).
    pub name: String,
    /// Per request: EAGLE-3 per-position accepted lengths.
    pub eagle: Vec<Vec<u32>>,
    /// Per request: n-gram per-position accepted lengths.
    pub ngram: Vec<Vec<u32>>,
    /// Mean prompt length.
    pub mean_prompt: f64,
    /// Mean generated length.
    pub mean_generated: f64,
}

/// The JSONL file of a dataset under `dir` (the shared `specdecode-bench/` folder or the folder
/// holding the files).
pub fn dataset_path(dir: &Path, name: &str) -> PathBuf {
    let file = format!("combined_{name}.jsonl");
    let deep = dir.join("data/llama3.1-8B").join(&file);
    if deep.is_file() {
        deep
    } else {
        dir.join(file)
    }
}

/// Reads one dataset; a malformed line is an error naming the file, line and field.
pub fn read_dataset(dir: &Path, name: &str) -> Result<Dataset> {
    let path = dataset_path(dir, name);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CalibrateError::table(path.display(), "file", e.to_string()))?;
    let mut d = Dataset {
        name: name.to_string(),
        eagle: Vec::new(),
        ngram: Vec::new(),
        mean_prompt: 0.0,
        mean_generated: 0.0,
    };
    let (mut p, mut g) = (0u64, 0u64);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line).map_err(|e| {
            CalibrateError::table(
                format!("{}:{}", path.display(), i + 1),
                "line",
                e.to_string(),
            )
        })?;
        for (field, acc) in [
            ("acc_eagle.acc_len", &l.acc_eagle.acc_len),
            ("acc_ngram.acc_len", &l.acc_ngram.acc_len),
        ] {
            if let Some(j) = acc.iter().position(|&x| x == 0) {
                return Err(CalibrateError::table(
                    format!("{}:{}", path.display(), i + 1),
                    field,
                    format!("position {j} is 0 (a step produces at least 1 token)"),
                ));
            }
        }
        p += l.prompt_token_ids.len() as u64;
        g += l.generated_token_ids.len() as u64;
        d.eagle.push(l.acc_eagle.acc_len);
        d.ngram.push(l.acc_ngram.acc_len);
    }
    let n = d.eagle.len();
    if n == 0 {
        return Err(CalibrateError::table(path.display(), "line", "no requests"));
    }
    d.mean_prompt = p as f64 / n as f64;
    d.mean_generated = g as f64 / n as f64;
    Ok(d)
}

/// Mean of every per-position entry (SOURCES.md's "mean acc_len" column).
pub fn mean_over_positions(acc: &[Vec<u32>]) -> f64 {
    let (s, n) = acc
        .iter()
        .flatten()
        .fold((0u64, 0u64), |(s, n), &x| (s + x as u64, n + 1));
    s as f64 / n.max(1) as f64
}

/// A drafting method's predicted speed-up at batch 1 with `k` drafts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speedup {
    /// Drafts per step.
    pub k: u32,
    /// Measured tokens per step walking the trace with at most `k` drafts.
    pub tokens_per_step: f64,
    /// Predicted step time, ns (drafting + verification).
    pub step_ns: f64,
    /// Predicted speed-up over plain decoding (tokens per second ratio).
    pub speedup: f64,
}

/// Step costs at batch 1 for the speed-up: plain decode, verify with `k` drafts, one EAGLE-head
/// forward (one decoder layer of the target's shape plus its fc over three hidden states and a
/// 32k-token LM head, as EAGLE-3 for Llama-3.1-8B), at context `ctx`.
pub struct StepCosts<'a> {
    /// The target.
    pub target: &'a Composer<'a>,
    /// The EAGLE head as a one-layer model (its vocab the draft vocab).
    pub head: &'a Composer<'a>,
    /// n-gram lookup's CPU time as a fraction of the verification (SpecDecode-Bench's measured
    /// `fraction_of_verify_time`, 0.005875).
    pub ngram_fraction: f64,
}

impl StepCosts<'_> {
    fn verify(&self, k: u32, ctx: f64) -> Result<f64> {
        let mut notes = Default::default();
        Ok(self
            .target
            .decode(1.0, (k + 1) as f64, ctx, &mut notes)?
            .total())
    }

    fn eagle_draft(&self, ctx: f64) -> Result<f64> {
        let mut notes = Default::default();
        let h = self.head.model.hidden as f64;
        let fc = self.head.ops.gemm.ns(1.0, h, 3.0 * h, &mut notes)?;
        Ok(self.head.decode(1.0, 1.0, ctx, &mut notes)?.total() + fc)
    }

    /// Speed-up of EAGLE (`eagle = true`) or n-gram drafting with `k` drafts on `steps`.
    pub fn speedup(&self, eagle: bool, k: u32, trace: &StepTrace, ctx: f64) -> Result<Speedup> {
        let base = self.verify(0, ctx)?;
        let verify = self.verify(k, ctx)?;
        let step = if eagle {
            verify + k as f64 * self.eagle_draft(ctx)?
        } else {
            verify * (1.0 + self.ngram_fraction)
        };
        let e = trace.mean_tokens_per_step();
        Ok(Speedup {
            k,
            tokens_per_step: e,
            step_ns: step,
            speedup: e * base / step,
        })
    }
}
