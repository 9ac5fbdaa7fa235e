//! One calibration from model files to a profile file: checks, timings, fits, acceptance, writing.
//!
//! The profile is written to `<out>.partial` with `complete = false` after every phase (unmeasured
//! cells are `nan`), and renamed to `<out>` only once everything is measured and the file validates.
//! An interrupted run therefore leaves `<out>` untouched (an earlier profile stays usable) and a
//! partial file that the simulator refuses to load. A JSON report with every timing, fit and
//! acceptance statistic is written next to the profile as `<out stem>.report.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;
use specsim_core::cost::profile::{Fits, Overhead, Profile, ProfileCost, Table1, Table2, Table3};
use specsim_core::cost::CostModel;
use specsim_runtime::model::Model;
use specsim_runtime::tokenizer::GgufTokenizer;

use crate::acceptance::{
    fit_acceptance, measure_acceptance, AcceptanceFit, AcceptanceOptions, EncodedPrompt,
};
use crate::error::{CalibrateError, Result};
use crate::fit::{fit_with_report, FitPoint, FitReport, Terms};
use crate::latency::{
    draft_shape, scheduling_overhead, time_draft, time_prefill, time_verify, verify_shape,
    CachePool, DraftPoint, Grid, Timing, VerifyPoint,
};
use crate::prompt_set::{read_prompts, stratified, Encoder};
use crate::stats::{median, Summary};

/// Everything a calibration needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrateOptions {
    /// Draft model (GGUF).
    pub draft: PathBuf,
    /// Target model (GGUF).
    pub target: PathBuf,
    /// Profile to write.
    pub out: PathBuf,
    /// Prompt set (JSON lines; see [`crate::prompt_set`]).
    pub prompts: PathBuf,
    /// Latency grid.
    pub grid: Grid,
    /// Compute threads (recorded in the provenance; the caller configures the thread pool).
    pub threads: usize,
    /// How acceptance is measured (greedy; the sampled run uses the same settings).
    pub acceptance: AcceptanceOptions,
    /// Also measure sampled decoding at this temperature (reported, not written to the profile).
    pub sampled_temperature: Option<f32>,
    /// Prompts used (round-robin over categories).
    pub max_prompts: usize,
    /// Off-grid points timed to check the profile's predictions.
    pub held_out: usize,
}

/// A progress update: `done` of `total` work units, in `phase`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// What is being measured.
    pub phase: String,
    /// Units done.
    pub done: u64,
    /// Units in the whole calibration.
    pub total: u64,
}

/// One timed grid point of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointReport {
    /// `draft`, `verify`, `prefill` (target) or `draft_prefill`.
    pub kind: &'static str,
    /// Sequences.
    pub batch: u32,
    /// New tokens per sequence.
    pub tokens_per_seq: u32,
    /// KV length after the step.
    pub context: u32,
    /// Timing (nanoseconds).
    pub timing: Timing,
}

/// An off-grid point: measured against the profile's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOutReport {
    /// The point.
    pub point: PointReport,
    /// What the profile (tables, linear fit outside them) predicts, nanoseconds.
    pub predicted_ns: f64,
    /// What the linear fit alone predicts, nanoseconds.
    pub fit_ns: f64,
    /// |predicted − measured| / measured.
    pub abs_error: f64,
}

/// Everything a calibration measured and fitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationReport {
    /// The profile's provenance.
    pub provenance: BTreeMap<String, String>,
    /// The grid measured.
    pub grid: Grid,
    /// Every grid point.
    pub points: Vec<PointReport>,
    /// Engine scheduling time per iteration (nanoseconds).
    pub scheduling: Summary,
    /// Linear fits: draft, verify, prefill.
    pub fits: BTreeMap<String, FitReport>,
    /// Off-grid checks.
    pub held_out: Vec<HeldOutReport>,
    /// Median of the off-grid points' absolute relative error (NaN without points).
    pub held_out_median_abs_error: f64,
    /// Greedy acceptance (the profile's `[acceptance]`).
    pub acceptance_greedy: AcceptanceFit,
    /// Sampled acceptance, if measured.
    pub acceptance_sampled: Option<AcceptanceFit>,
    /// Median sampling/verification share of the draft and verify grid points (nanoseconds).
    pub sampling_median_ns: BTreeMap<String, f64>,
    /// Wall time of the calibration, seconds.
    pub elapsed_s: f64,
}

/// The temp file a calibration writes as it goes.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Where the JSON report goes.
pub fn report_path(out: &Path) -> PathBuf {
    out.with_extension("report.json")
}

fn load_model(role: &'static str, path: &Path, max_positions: usize) -> Result<Arc<Model>> {
    let err = |msg: String| CalibrateError::ModelFile {
        role,
        path: path.display().to_string(),
        msg,
    };
    if !path.is_file() {
        return Err(err(
            "not found (run scripts/fetch-models.sh for the Qwen pair)".into(),
        ));
    }
    // The draft is re-packed exactly as the runtime loads it (`Model::load_repacked`), so the profile
    // times the kernels the live engine runs.
    let loaded = if role == "draft" {
        Model::load_repacked(path, &Device::Cpu, Some(max_positions))
    } else {
        Model::load(path, &Device::Cpu, Some(max_positions))
    };
    loaded
        .map(Arc::new)
        .map_err(|e| err(crate::error::first_line(&e.to_string())))
}

/// Picks the prompt encoder: the shared tokenizer when both files carry the same one, bytes when
/// neither has one; a mismatch is an error.
fn encoder(draft: &Path, target: &Path, vocab: usize) -> Result<Encoder> {
    let mismatch = |msg: String| CalibrateError::Mismatch {
        draft: draft.display().to_string(),
        target: target.display().to_string(),
        msg,
    };
    match (
        GgufTokenizer::from_gguf_file(draft),
        GgufTokenizer::from_gguf_file(target),
    ) {
        (Ok(d), Ok(t)) => {
            let probe = "def f(x):\n    return x * 2  # größer 数字 <|im_end|>";
            let same = d.vocab_size() == t.vocab_size()
                && d.eos_ids() == t.eos_ids()
                && d.encode(probe).ok() == t.encode(probe).ok();
            if !same {
                return Err(mismatch(
                    "their tokenizers differ (vocabulary, end-of-sequence ids or encodings)".into(),
                ));
            }
            Ok(Encoder::Gguf(Box::new(t)))
        }
        (Err(_), Err(_)) => Ok(Encoder::Bytes { vocab }),
        (Ok(_), Err(e)) => Err(mismatch(format!(
            "the target has no usable tokenizer ({})",
            crate::error::first_line(&e.to_string())
        ))),
        (Err(e), Ok(_)) => Err(mismatch(format!(
            "the draft has no usable tokenizer ({})",
            crate::error::first_line(&e.to_string())
        ))),
    }
}

fn nan2(a: usize, b: usize) -> Vec<Vec<f64>> {
    vec![vec![f64::NAN; b]; a]
}

fn write_profile(path: &Path, p: &Profile) -> Result<()> {
    std::fs::write(path, p.to_toml()).map_err(|e| CalibrateError::io(path, e))
}

/// The loaded pair and the encoded prompt set a calibration runs on.
struct Loaded {
    target: Arc<Model>,
    draft: Arc<Model>,
    encoded: Vec<EncodedPrompt>,
}

/// Cheap checks first (model files, prompt set, grid), then the models and the encoded prompts.
fn load(opts: &CalibrateOptions) -> Result<Loaded> {
    let g = &opts.grid;
    for (role, p) in [("draft", &opts.draft), ("target", &opts.target)] {
        if !p.is_file() {
            return Err(CalibrateError::ModelFile {
                role,
                path: p.display().to_string(),
                msg: "not found (run scripts/fetch-models.sh for the Qwen pair)".into(),
            });
        }
    }
    let all_prompts = read_prompts(&opts.prompts)?;
    let prompts = stratified(&all_prompts, opts.max_prompts);
    let a = &opts.acceptance;
    let needed = a.max_prompt_tokens + a.max_new_tokens as usize + a.k as usize + 2;
    let grid_max = g
        .draft_context
        .iter()
        .chain(&g.verify_context)
        .chain(&g.prefill_tokens)
        .copied()
        .max()
        .unwrap_or(0) as usize;
    let max_positions = needed.max(grid_max).max(64);
    let target = load_model("target", &opts.target, max_positions)?;
    let draft = load_model("draft", &opts.draft, max_positions)?;
    let (tv, dv) = (target.config().vocab, draft.config().vocab);
    if tv != dv {
        return Err(CalibrateError::Mismatch {
            draft: opts.draft.display().to_string(),
            target: opts.target.display().to_string(),
            msg: format!("draft vocabulary {dv} differs from target vocabulary {tv}"),
        });
    }
    let enc = encoder(&opts.draft, &opts.target, tv)?;
    let limit = target
        .config()
        .max_positions
        .min(draft.config().max_positions);
    g.validate(limit)?;
    let encoded = prompts
        .iter()
        .map(|p| {
            Ok(EncodedPrompt {
                category: p.category.clone(),
                tokens: enc.encode(&p.text, a.max_prompt_tokens)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Loaded {
        target,
        draft,
        encoded,
    })
}

/// A profile with the grid's axes and every cell unmeasured (`nan`), not yet complete.
fn empty_profile(g: &Grid, provenance: BTreeMap<String, String>) -> Profile {
    let axis = |v: &[u32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    Profile {
        version: 1,
        provenance,
        draft: Table2 {
            batch: axis(&g.draft_batch),
            context: axis(&g.draft_context),
            ns: nan2(g.draft_batch.len(), g.draft_context.len()),
        },
        verify: Table3 {
            batch: axis(&g.verify_batch),
            tokens_per_seq: axis(&g.tokens_per_seq),
            context: axis(&g.verify_context),
            ns: vec![nan2(g.tokens_per_seq.len(), g.verify_context.len()); g.verify_batch.len()],
        },
        prefill: Table1 {
            tokens: axis(&g.prefill_tokens),
            ns: vec![f64::NAN; g.prefill_tokens.len()],
        },
        draft_prefill: Some(Table1 {
            tokens: axis(&g.prefill_tokens),
            ns: vec![f64::NAN; g.prefill_tokens.len()],
        }),
        overhead: Overhead::default(),
        fit: Fits::default(),
        acceptance: None,
        complete: false,
    }
}

/// Counts units of work and reports each to the caller's progress callback.
struct Progress<'a> {
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(ProgressUpdate),
}

impl Progress<'_> {
    fn tick(&mut self, phase: &str) {
        self.done += 1;
        (self.report)(ProgressUpdate {
            phase: phase.to_string(),
            done: self.done,
            total: self.total,
        });
    }
}

/// The profile being measured, written to its `.partial` file after every phase.
struct Measuring<'a> {
    grid: &'a Grid,
    profile: Profile,
    partial: PathBuf,
    points: Vec<PointReport>,
}

impl Measuring<'_> {
    fn save(&self) -> Result<()> {
        write_profile(&self.partial, &self.profile)
    }

    fn point(&mut self, kind: &'static str, batch: u32, tokens: u32, context: u32, t: Timing) {
        self.points.push(PointReport {
            kind,
            batch,
            tokens_per_seq: tokens,
            context,
            timing: t,
        });
    }

    /// Draft table, context by context (caches are filled once per level).
    fn draft_table(&mut self, pool: &mut CachePool, progress: &mut Progress) -> Result<()> {
        let g = self.grid;
        for (ci, &c) in g.draft_context.iter().enumerate() {
            for (bi, &b) in g.draft_batch.iter().enumerate() {
                let t = time_draft(pool, b, c, g)?;
                self.profile.draft.ns[bi][ci] = t.total.median;
                self.point("draft", b, 1, c, t);
                progress.tick("draft forwards");
            }
        }
        self.save()
    }

    /// Verify table, saved after each context level.
    fn verify_table(&mut self, pool: &mut CachePool, progress: &mut Progress) -> Result<()> {
        let g = self.grid;
        for (ci, &c) in g.verify_context.iter().enumerate() {
            for (bi, &b) in g.verify_batch.iter().enumerate() {
                for (ti, &t) in g.tokens_per_seq.iter().enumerate() {
                    let tm = time_verify(pool, b, t, c, g)?;
                    self.profile.verify.ns[bi][ti][ci] = tm.total.median;
                    self.point("verify", b, t, c, tm);
                    progress.tick("verify forwards");
                }
            }
            self.save()?;
        }
        Ok(())
    }

    /// The target's prefill table, and the draft's, which prices the draft's catch-up on a prompt at a
    /// sequence's first draft.
    fn prefill_tables(&mut self, loaded: &Loaded, progress: &mut Progress) -> Result<()> {
        let g = self.grid;
        for (i, &n) in g.prefill_tokens.iter().enumerate() {
            let t = time_prefill(&loaded.target, n, g)?;
            self.profile.prefill.ns[i] = t.total.median;
            self.point("prefill", 1, n, n, t);
            progress.tick("prefill");
        }
        for (i, &n) in g.prefill_tokens.iter().enumerate() {
            let t = time_prefill(&loaded.draft, n, g)?;
            if let Some(dp) = self.profile.draft_prefill.as_mut() {
                dp.ns[i] = t.total.median;
            }
            self.point("draft_prefill", 1, n, n, t);
            progress.tick("draft prefill");
        }
        Ok(())
    }

    /// Engine scheduling outside the backend, per step.
    fn scheduling(&mut self, progress: &mut Progress) -> Result<Summary> {
        let g = self.grid;
        let k_mid = g
            .tokens_per_seq
            .last()
            .copied()
            .unwrap_or(1)
            .saturating_sub(1);
        let scheduling = scheduling_overhead(*g.verify_batch.last().unwrap_or(&1), k_mid, 200)?;
        self.profile.overhead.step_ns = scheduling.median;
        progress.tick("engine overhead");
        self.save()?;
        Ok(scheduling)
    }

    /// Linear fits of the timed points per role (the profile's `[fit.*]`), with their reports.
    fn fit(&mut self) -> BTreeMap<String, FitReport> {
        let pts = |kind: &str| -> Vec<FitPoint> {
            self.points
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| {
                    let shape = match p.kind {
                        "draft" => draft_shape(p.batch, p.context),
                        "verify" => verify_shape(p.batch, p.tokens_per_seq, p.context),
                        _ => specsim_core::cost::BatchShape::prefill(p.tokens_per_seq),
                    };
                    FitPoint::from_shape(&shape, p.timing.total.median)
                })
                .collect()
        };
        let df = fit_with_report(&pts("draft"), Terms::DRAFT, "draft").ok();
        let vf = fit_with_report(&pts("verify"), Terms::VERIFY, "verify").ok();
        let pf = fit_with_report(&pts("prefill"), Terms::PREFILL, "prefill").ok();
        self.profile.fit = Fits {
            draft: df.as_ref().map(|f| f.coefficients),
            verify: vf.as_ref().map(|f| f.coefficients),
            prefill: pf.as_ref().map(|f| f.coefficients),
        };
        [("draft", df), ("verify", vf), ("prefill", pf)]
            .into_iter()
            .filter_map(|(name, f)| Some((name.to_string(), f?)))
            .collect()
    }

    /// What the profile measured so far predicts (overhead excluded: it is not in the timed region),
    /// for the off-grid checks.
    fn predictor(&self) -> ProfileCost {
        let mut profile = self.profile.clone();
        profile.complete = true;
        profile.overhead.step_ns = 0.0;
        ProfileCost { profile }
    }

    /// Off-grid draft points against the profile's own prediction.
    fn held_out_draft(
        &self,
        pool: &mut CachePool,
        points: &[DraftPoint],
        progress: &mut Progress,
    ) -> Result<Vec<HeldOutReport>> {
        let cost = self.predictor();
        let mut out = Vec::new();
        for &(b, c) in points {
            let t = time_draft(pool, b, c, self.grid)?;
            let shape = draft_shape(b, c);
            let pred = cost.draft_step(&shape) as f64;
            let fit_ns = self.profile.fit.draft.map_or(f64::NAN, |f| f.eval(&shape));
            out.push(held_out_report("draft", b, 1, c, t, pred, fit_ns));
            progress.tick("held-out points");
        }
        Ok(out)
    }

    /// Off-grid verify points against the profile's own prediction.
    fn held_out_verify(
        &self,
        pool: &mut CachePool,
        points: &[VerifyPoint],
        progress: &mut Progress,
    ) -> Result<Vec<HeldOutReport>> {
        let cost = self.predictor();
        let mut out = Vec::new();
        for &(b, tk, c) in points {
            let t = time_verify(pool, b, tk, c, self.grid)?;
            let shape = verify_shape(b, tk, c);
            let pred = cost.target_step(&shape) as f64;
            let fit_ns = self.profile.fit.verify.map_or(f64::NAN, |f| f.eval(&shape));
            out.push(held_out_report("verify", b, tk, c, t, pred, fit_ns));
            progress.tick("held-out points");
        }
        Ok(out)
    }
}

fn held_out_report(
    kind: &'static str,
    batch: u32,
    tokens_per_seq: u32,
    context: u32,
    timing: Timing,
    predicted_ns: f64,
    fit_ns: f64,
) -> HeldOutReport {
    HeldOutReport {
        abs_error: (predicted_ns - timing.total.median).abs() / timing.total.median,
        point: PointReport {
            kind,
            batch,
            tokens_per_seq,
            context,
            timing,
        },
        predicted_ns,
        fit_ns,
    }
}

/// Acceptance, greedy (→ profile) and optionally sampled (→ report).
fn acceptances(
    opts: &CalibrateOptions,
    loaded: &Loaded,
    progress: &mut Progress,
) -> Result<(AcceptanceFit, Option<AcceptanceFit>)> {
    let a = &opts.acceptance;
    let run = |o: &AcceptanceOptions, phase: &str, progress: &mut Progress| {
        let m = measure_acceptance(
            Arc::clone(&loaded.target),
            Arc::clone(&loaded.draft),
            &loaded.encoded,
            o,
            &mut || progress.tick(phase),
        )?;
        fit_acceptance(&m, 200)
    };
    let greedy = run(a, "acceptance (greedy)", progress)?;
    let sampled = match opts.sampled_temperature {
        Some(t) => {
            let so = AcceptanceOptions {
                temperature: Some(t),
                ..*a
            };
            Some(run(&so, "acceptance (sampled)", progress)?)
        }
        None => None,
    };
    Ok((greedy, sampled))
}

/// The method and its quality, as the profile's provenance records them.
fn record_method(
    provenance: &mut BTreeMap<String, String>,
    opts: &CalibrateOptions,
    prompts: usize,
    fits: &BTreeMap<String, FitReport>,
    held_out: &[HeldOutReport],
    held_out_median_abs_error: f64,
    greedy: &AcceptanceFit,
) {
    let (g, a) = (&opts.grid, &opts.acceptance);
    let fmt_fit = |f: Option<&FitReport>| {
        f.map_or("not fitted".to_string(), |f| {
            format!(
                "R2 {:.4}, leave-one-out MAPE {:.1}%",
                f.r2,
                100.0 * f.holdout_mape
            )
        })
    };
    provenance.insert(
        "method".into(),
        format!(
            "runtime forwards incl. sampling/verification; warm-up {}, {} reps, medians; overhead = engine scheduling per step",
            g.warmup, g.reps
        ),
    );
    provenance.insert("fit_draft".into(), fmt_fit(fits.get("draft")));
    provenance.insert("fit_verify".into(), fmt_fit(fits.get("verify")));
    provenance.insert("fit_prefill".into(), fmt_fit(fits.get("prefill")));
    provenance.insert(
        "held_out".into(),
        format!(
            "{} off-grid points, median abs error {:.1}%",
            held_out.len(),
            100.0 * held_out_median_abs_error
        ),
    );
    provenance.insert(
        "acceptance".into(),
        format!(
            "greedy, k = {}, {} prompts of {}, {} new tokens max; mean accepted length measured {:.3}, model {:.3}",
            a.k,
            prompts,
            opts.prompts.display(),
            a.max_new_tokens,
            greedy.measured_mean_accepted_length,
            greedy.predicted_mean_accepted_length
        ),
    );
    provenance.insert(
        "load_average_at_end".into(),
        crate::provenance::load_average(),
    );
}

/// Median sampling/verification share of the draft, verify and prefill points.
fn sampling_medians(points: &[PointReport]) -> BTreeMap<String, f64> {
    ["draft", "verify", "prefill"]
        .into_iter()
        .map(|kind| {
            let v: Vec<f64> = points
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.timing.sampling_median)
                .collect();
            (kind.to_string(), median(&v))
        })
        .collect()
}

/// Runs a whole calibration; see the module docs. `progress` is called after every unit of work.
///
/// Phases: load and check; the timed tables (draft, verify, prefill, scheduling), each saved to the
/// partial profile; linear fits; off-grid checks; acceptance; provenance; validate, report, rename.
pub fn calibrate(
    opts: &CalibrateOptions,
    progress: &mut dyn FnMut(ProgressUpdate),
) -> Result<CalibrationReport> {
    let started = Instant::now();
    let g = &opts.grid;
    let loaded = load(opts)?;
    let mut provenance = crate::provenance::collect(&opts.draft, &opts.target, opts.threads)?;
    let mut m = Measuring {
        grid: g,
        profile: empty_profile(g, provenance.clone()),
        partial: partial_path(&opts.out),
        points: Vec::new(),
    };
    // Draft and target KV caches, filled once per context level and reused by the held-out points.
    let mut draft_pool = CachePool::new(
        Arc::clone(&loaded.draft),
        *g.draft_batch.last().unwrap_or(&1) as usize,
    );
    let mut target_pool = CachePool::new(
        Arc::clone(&loaded.target),
        *g.verify_batch.last().unwrap_or(&1) as usize,
    );
    m.save()?;
    let (held_draft, held_verify) = g.held_out(opts.held_out);
    let sampled_runs = usize::from(opts.sampled_temperature.is_some());
    let mut progress = Progress {
        done: 0,
        total: (g.points() + held_draft.len() + held_verify.len() + 1) as u64
            + (loaded.encoded.len() * (1 + sampled_runs)) as u64,
        report: progress,
    };
    m.draft_table(&mut draft_pool, &mut progress)?;
    m.verify_table(&mut target_pool, &mut progress)?;
    m.prefill_tables(&loaded, &mut progress)?;
    let scheduling = m.scheduling(&mut progress)?;
    let fits = m.fit();
    let mut held_out = m.held_out_draft(&mut draft_pool, &held_draft, &mut progress)?;
    drop(draft_pool);
    held_out.extend(m.held_out_verify(&mut target_pool, &held_verify, &mut progress)?);
    drop(target_pool);
    let held_out_median_abs_error =
        median(&held_out.iter().map(|h| h.abs_error).collect::<Vec<_>>());
    let (acceptance_greedy, acceptance_sampled) = acceptances(opts, &loaded, &mut progress)?;
    m.profile.acceptance = Some(acceptance_greedy.config.clone());
    m.save()?;
    record_method(
        &mut provenance,
        opts,
        loaded.encoded.len(),
        &fits,
        &held_out,
        held_out_median_abs_error,
        &acceptance_greedy,
    );
    let mut profile = m.profile;
    profile.provenance = provenance.clone();
    profile.complete = true;
    profile
        .validate()
        .map_err(|msg| CalibrateError::Config(format!("measured profile is invalid: {msg}")))?;
    let report = CalibrationReport {
        provenance,
        grid: g.clone(),
        sampling_median_ns: sampling_medians(&m.points),
        points: m.points,
        scheduling,
        fits,
        held_out,
        held_out_median_abs_error,
        acceptance_greedy,
        acceptance_sampled,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let rp = report_path(&opts.out);
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&rp, json).map_err(|e| CalibrateError::io(&rp, e))?;
    write_profile(&m.partial, &profile)?;
    std::fs::rename(&m.partial, &opts.out).map_err(|e| CalibrateError::io(&opts.out, e))?;
    Ok(report)
}
