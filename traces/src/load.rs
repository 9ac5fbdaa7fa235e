//! The front door: a scenario's `[trace]` section in, a validated workload and a report out.

use crate::read::read_trace;
use crate::trace::{rows_to_workload, PrefixBlocks, Skipped};
use crate::{paths, shared_prefix, synth, timestamps, transform, Format, TraceError};
use specsim_core::workload::Workload;
use specsim_sim::limits;
use specsim_sim::trace_config::{
    ArrivalConfig, LengthConfig, SharedPrefixConfig, StageLoad, SyntheticConfig, TraceConfig,
};
use std::fmt;
use std::path::{Path, PathBuf};

/// A workload ready to simulate, with what was done to produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedWorkload {
    /// Requests sorted by arrival, ids `0..n`, first arrival at 0 (or at its offset in a window).
    pub workload: Workload,
    /// Prefix-block hashes per request id (Mooncake traces), for a prefix-cache model.
    pub prefix: Option<PrefixBlocks>,
    /// How the workload was obtained.
    pub report: LoadReport,
}

/// How a workload was read or synthesised and shaped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadReport {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// Its format, or `None` for a synthetic workload.
    pub format: Option<Format>,
    /// The synthetic workload's description, when synthesised.
    pub synthetic: Option<String>,
    /// Data rows read from the file (or requests synthesised).
    pub rows_read: u64,
    /// Rows skipped while reading, by reason.
    pub skipped: Vec<Skipped>,
    /// Requests whose lengths were clipped to `max_context`.
    pub clipped: u64,
    /// Transformations applied, one line each.
    pub steps: Vec<String>,
    /// Repairs made (e.g. sorting unsorted rows).
    pub warnings: Vec<String>,
    /// Requests in the final workload.
    pub requests: usize,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.format, &self.synthetic) {
            (Some(p), Some(fmt), _) => writeln!(
                f,
                "trace {} ({fmt}): {} rows read",
                p.display(),
                self.rows_read
            )?,
            (_, _, Some(s)) => writeln!(f, "synthetic workload: {s}")?,
            _ => {}
        }
        for s in &self.skipped {
            writeln!(
                f,
                "  skipped {} rows: {} (first at line {})",
                s.rows, s.reason, s.first_line
            )?;
        }
        for s in &self.steps {
            writeln!(f, "  {s}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        write!(f, "  {} requests", self.requests)
    }
}

/// Reads or synthesises the workload a `[trace]` section describes and applies its transformations.
///
/// - `base_dir` is the scenario file's directory: relative paths resolve against it, and `shared:`
///   paths against the shared data folder (see [`crate::paths`]).
/// - `seed` is the scenario seed; synthesis, sampling and category draws use their own streams of it.
///
/// A length-only file cannot be `path` (it has no arrivals): use it as an empirical length
/// distribution in `[trace.synthetic]` instead; the error says so.
pub fn load_workload(
    cfg: &TraceConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<LoadedWorkload, TraceError> {
    check_limits(cfg)?;
    let mut report = LoadReport::default();
    if cfg.timestamps.is_some()
        && (cfg.path.is_some() || cfg.synthetic.is_some() || cfg.format.is_some())
    {
        return Err(TraceError::Config(
            "`[trace.timestamps]` brings its own arrivals and lengths: set it without `path`, \
             `format` or `[trace.synthetic]`"
                .into(),
        ));
    }
    if cfg.shared_prefix.is_some()
        && (cfg.path.is_some()
            || cfg.synthetic.is_some()
            || cfg.format.is_some()
            || cfg.timestamps.is_some())
    {
        return Err(TraceError::Config(
            "`[trace.shared_prefix]` brings its own arrivals and lengths: set it without `path`, \
             `format`, `[trace.synthetic]` or `[trace.timestamps]`"
                .into(),
        ));
    }
    let (mut rows, mut categories, prefix) = match (&cfg.path, &cfg.synthetic) {
        (None, None) if cfg.shared_prefix.is_some() => {
            let sp = cfg.shared_prefix.as_ref().expect("checked");
            let g = shared_prefix::generate(sp, base_dir, seed)?;
            report.rows_read = g.rows.len() as u64;
            report.synthetic = Some(describe_shared_prefix(sp));
            (g.rows, Vec::new(), Some(g.prefix))
        }
        (None, None) if cfg.timestamps.is_some() => {
            let ts = cfg.timestamps.as_ref().expect("checked");
            let (rows, path, warnings) = timestamps::timestamp_rows(ts, base_dir, seed)?;
            report.rows_read = rows.len() as u64;
            report.warnings = warnings;
            report.synthetic = Some(format!(
                "arrivals from column `{}` of {}, prompt {}, output {}",
                ts.column,
                path.display(),
                length_label(&ts.prompt),
                length_label(&ts.output)
            ));
            (rows, Vec::new(), None)
        }
        (Some(_), Some(_)) => {
            return Err(TraceError::Config(
                "set either `path` (a trace file) or `[trace.synthetic]`, not both; to draw lengths from a \
                 file, use `prompt = { kind = \"empirical\", path = \"...\" }` in `[trace.synthetic]`"
                    .into(),
            ))
        }
        (None, None) => return Err(TraceError::Config("needs `path` or `[trace.synthetic]`".into())),
        (Some(p), None) => {
            let path = paths::resolve(p, base_dir)?;
            let format = cfg.format.as_deref().map(str::parse::<Format>).transpose()?;
            let t = read_trace(&path, format)?;
            if !t.has_arrivals() {
                return Err(TraceError::Config(format!(
                    "{} is a length-only file (no arrival times); use it as a length distribution: \
                     [trace.synthetic] with prompt = {{ kind = \"empirical\", path = \"{}\" }} and output \
                     likewise (the same file for both draws whole rows)",
                    path.display(),
                    p.display()
                )));
            }
            report.path = Some(path);
            report.format = Some(t.format);
            report.rows_read = t.rows_read;
            report.skipped = t.skipped;
            report.warnings = t.warnings;
            (t.rows, t.categories, t.prefix)
        }
        (None, Some(s)) => {
            if cfg.format.is_some() {
                return Err(TraceError::Config("`format` applies to `path`, which is not set".into()));
            }
            let rows = synth::synthesize(s, base_dir, seed)?;
            report.synthetic = Some(describe(s));
            report.rows_read = rows.len() as u64;
            (rows, Vec::new(), None)
        }
    };
    let tr = transform::apply(&mut rows, cfg, seed)?;
    if let Some(names) = tr.categories {
        categories = names;
    }
    report.clipped = tr.clipped;
    report.steps = tr.steps;
    report.requests = rows.len();
    let (workload, prefix) = rows_to_workload(&rows, &categories, prefix.as_ref());
    workload.validate()?;
    let span = workload.span_ns() as f64 / 1e9;
    if span > limits::MAX_SPAN_S {
        return Err(TraceError::Config(format!(
            "the workload spans {span:.3e} s, more than the {:.0e} s allowed (check rate_scale, target_rate or the trace's times)",
            limits::MAX_SPAN_S
        )));
    }
    Ok(LoadedWorkload {
        workload,
        prefix,
        report,
    })
}

/// Every number of the `[trace]` table in its documented range ([`specsim_sim::limits`]), and a
/// synthetic workload's span inside the clock's, before anything is read or allocated.
fn check_limits(cfg: &TraceConfig) -> Result<(), TraceError> {
    let v = toml::Value::try_from(cfg).map_err(|e| TraceError::Config(e.to_string()))?;
    let mut t = toml::Table::new();
    t.insert("trace".into(), v);
    limits::check_ranges(&t).map_err(TraceError::Config)?;
    if let Some(s) = &cfg.synthetic {
        let span = s.requests.saturating_sub(1) as f64 / s.rate;
        if span > limits::MAX_SPAN_S {
            return Err(TraceError::Config(format!(
                "trace.synthetic.rate = {} with {} requests spans about {span:.3e} s, more than the {:.0e} s a workload may span",
                s.rate,
                s.requests,
                limits::MAX_SPAN_S
            )));
        }
    }
    Ok(())
}

/// One line describing a synthetic workload.
pub fn describe(s: &SyntheticConfig) -> String {
    let arrival = match &s.arrival {
        ArrivalConfig::Poisson => "poisson".to_string(),
        ArrivalConfig::Gamma { cv } => format!("gamma cv {cv}"),
        ArrivalConfig::Uniform => "uniform".to_string(),
        ArrivalConfig::Bursty {
            burst_factor,
            on_s,
            off_s,
        } => {
            format!("bursty ×{burst_factor} (on {on_s} s, off {off_s} s)")
        }
        ArrivalConfig::Diurnal {
            amplitude,
            period_s,
        } => format!("diurnal ±{amplitude} over {period_s} s"),
    };
    let len = length_label;
    format!(
        "{} requests, {arrival} arrivals at {} req/s, prompt {}, output {}",
        s.requests,
        s.rate,
        len(&s.prompt),
        len(&s.output)
    )
}

/// One line describing a shared-prefix workload.
pub fn describe_shared_prefix(s: &SharedPrefixConfig) -> String {
    let stages: Vec<String> = s
        .stages
        .iter()
        .map(|st| format!("{} req/s × {} s", st.rate, st.duration_s))
        .collect();
    let load = match s.load {
        StageLoad::Constant => "constant",
        StageLoad::Poisson => "poisson",
    };
    format!(
        "shared prefix: {} system prompts × {} users, system {} / question {} / output {} tokens{}, {load} load {}",
        s.system_prompts,
        s.users_per_system_prompt,
        s.system_prompt_len,
        length_label(&s.question_len),
        length_label(&s.output_len),
        if s.multi_turn { ", multi-turn" } else { "" },
        stages.join(", then ")
    )
}

/// One phrase describing a length distribution.
fn length_label(l: &LengthConfig) -> String {
    match l {
        LengthConfig::Fixed { value } => format!("{value}"),
        LengthConfig::Uniform { min, max } => format!("uniform [{min}, {max}]"),
        LengthConfig::Lognormal { mean, std, .. } => format!("lognormal mean {mean} sd {std}"),
        LengthConfig::Empirical { path, .. } => format!("from {}", path.display()),
    }
}
