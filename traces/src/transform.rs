//! The `[trace]` transformations, applied in this order (each step reported in words):
//!
//! 1. **window** `start_s`, `duration_s`: keep arrivals in `[start, start + duration)`, times re-based
//!    to the window's start;
//! 2. **sample**: keep a seeded random subset of exactly `round(sample × n)` requests, in order
//!    (selection sampling, stream `trace.sample`);
//! 3. **limit**: keep the first `limit` requests;
//! 4. **rate scaling**: divide every arrival time by `rate_scale`, or by the factor that makes the mean
//!    rate (requests ÷ span) equal `target_rate`;
//! 5. **length clipping** `max_prompt`, `max_output`: each clipped on its own (counted);
//! 6. **context clipping** `max_context`: a request whose prompt + output exceeds it keeps its prompt
//!    up to `max_context − 1` tokens and its output up to what is left (counted);
//! 7. **categories**: each request gets a category drawn from the normalised weights (stream
//!    `trace.categories`; names in sorted order, so the draw does not depend on how the TOML was written).
//!
//! Nothing is bent silently: inter-arrival gaps are never capped, and every dropped or changed request
//! is counted in the report.

use crate::trace::Row;
use crate::TraceError;
use rand::RngExt;
use specsim_core::rng::{stream, SimRng};
use specsim_core::time::{ns_to_secs, secs_to_ns};
use specsim_sim::trace_config::TraceConfig;

/// What the transformations did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransformReport {
    /// One line per step that ran.
    pub steps: Vec<String>,
    /// Length clips applied by `max_prompt`, `max_output` and `max_context` (a request clipped by two of
    /// them counts twice).
    pub clipped: u64,
    /// Category names, indexed by `Row::category`, when a mix was attached.
    pub categories: Option<Vec<String>>,
}

/// Mean arrival rate of sorted rows: requests ÷ span (None when the span is 0).
pub fn mean_rate(rows: &[Row]) -> Option<f64> {
    mean_rate_of(rows.len(), rows.first()?.t_ns, rows.last()?.t_ns)
}

/// Mean arrival rate of `n` sorted requests from `first` to `last` ns (None when the span is 0).
pub(crate) fn mean_rate_of(n: usize, first: u64, last: u64) -> Option<f64> {
    let span = last.checked_sub(first)?;
    (span > 0).then(|| n as f64 / ns_to_secs(span))
}

/// Applies every transformation `cfg` asks for, in the order of the module doc, to rows sorted by
/// arrival. Errors on impossible settings and on a workload left empty.
pub fn apply(
    rows: &mut Vec<Row>,
    cfg: &TraceConfig,
    seed: u64,
) -> Result<TransformReport, TraceError> {
    let mut rep = TransformReport::default();
    window(rows, cfg, &mut rep)?;
    if let Some(f) = cfg.sample {
        sample(rows, f, seed, &mut rep)?;
    }
    if let Some(limit) = cfg.limit {
        if limit == 0 {
            return Err(TraceError::Config("limit must be at least 1".into()));
        }
        if rows.len() > limit {
            rep.steps.push(format!(
                "limit: kept the first {limit} of {} requests",
                rows.len()
            ));
            rows.truncate(limit);
        }
    }
    scale_rate(rows, cfg, &mut rep)?;
    type Length = fn(&mut Row) -> &mut u32;
    let lengths: [(&str, Option<u32>, Length); 2] = [
        ("max_prompt", cfg.max_prompt, |r| &mut r.prompt),
        ("max_output", cfg.max_output, |r| &mut r.output),
    ];
    for (what, max, length) in lengths {
        let Some(max) = max else { continue };
        if max == 0 {
            return Err(TraceError::Config(format!("{what} must be at least 1")));
        }
        let mut n = 0u64;
        for r in rows.iter_mut() {
            let len = length(r);
            if *len > max {
                *len = max;
                n += 1;
            }
        }
        if n > 0 {
            rep.clipped += n;
            rep.steps.push(format!(
                "{what} {max}: clipped {n} of {} requests",
                rows.len()
            ));
        }
    }
    if let Some(ctx) = cfg.max_context {
        let n = clip(rows, ctx)?;
        rep.clipped += n;
        if n > 0 {
            rep.steps.push(format!(
                "max_context {ctx}: clipped {} of {} requests (prompt to at most {}, output to what is left)",
                n,
                rows.len(),
                ctx.saturating_sub(1)
            ));
        }
    }
    if let Some(mix) = &cfg.categories {
        rep.categories = Some(categorize(rows, mix, seed)?);
        rep.steps
            .push(format!("categories: drew one of {} per request", mix.len()));
    }
    if rows.is_empty() {
        return Err(TraceError::Empty {
            what: "[trace] after its transformations".into(),
        });
    }
    Ok(rep)
}

/// The window `[lo, hi)` in nanoseconds that `start_s`/`duration_s` ask for (checked), or `None`.
pub(crate) fn window_bounds(cfg: &TraceConfig) -> Result<Option<(u64, Option<u64>)>, TraceError> {
    if cfg.start_s.is_none() && cfg.duration_s.is_none() {
        return Ok(None);
    }
    let start = cfg.start_s.unwrap_or(0.0);
    if !start.is_finite() || start < 0.0 {
        return Err(TraceError::Config(format!(
            "start_s must be >= 0 (got {start})"
        )));
    }
    if let Some(d) = cfg.duration_s {
        if !d.is_finite() || d <= 0.0 {
            return Err(TraceError::Config(format!(
                "duration_s must be positive (got {d})"
            )));
        }
    }
    let lo = secs_to_ns(start);
    let hi = cfg.duration_s.map(|d| secs_to_ns(start + d));
    Ok(Some((lo, hi)))
}

fn window(
    rows: &mut Vec<Row>,
    cfg: &TraceConfig,
    rep: &mut TransformReport,
) -> Result<(), TraceError> {
    let Some((lo, hi)) = window_bounds(cfg)? else {
        return Ok(());
    };
    let start = cfg.start_s.unwrap_or(0.0);
    let before = rows.len();
    rows.retain(|r| r.t_ns >= lo && hi.is_none_or(|h| r.t_ns < h));
    for r in rows.iter_mut() {
        r.t_ns -= lo;
    }
    let end = cfg
        .duration_s
        .map_or("end".to_string(), |d| format!("{} s", start + d));
    rep.steps.push(format!(
        "window [{start} s, {end}): kept {} of {before} requests",
        rows.len()
    ));
    Ok(())
}

/// Knuth's selection sampling, one decision per row in order: of `n` rows, keeps exactly
/// `round(f × n)`, each subset of that size equally likely. Only the row count is needed up front, so
/// a stream (counted in a first pass) draws exactly what the loaded path draws.
pub(crate) struct Sampler {
    rng: SimRng,
    n: usize,
    seen: usize,
    needed: usize,
}

impl Sampler {
    /// Checks `f` and prepares to sample `n` rows.
    pub(crate) fn new(n: usize, f: f64, seed: u64) -> Result<Self, TraceError> {
        if !(f > 0.0 && f <= 1.0) {
            return Err(TraceError::Config(format!(
                "sample must lie in (0, 1] (got {f})"
            )));
        }
        let rng = stream(seed, "trace.sample", 0);
        Ok(Sampler {
            rng,
            n,
            seen: 0,
            needed: ((n as f64) * f).round() as usize,
        })
    }

    /// Rows that will be kept in all.
    pub(crate) fn kept(n: usize, f: f64) -> usize {
        ((n as f64) * f).round() as usize
    }

    /// Whether to keep the next row; `None` past the `n` rows announced.
    pub(crate) fn keep(&mut self) -> Option<bool> {
        let left = self.n.checked_sub(self.seen).filter(|&l| l > 0)?;
        self.seen += 1;
        let keep = self.needed > 0 && self.rng.random_range(0..left) < self.needed;
        if keep {
            self.needed -= 1;
        }
        Some(keep)
    }
}

fn sample(
    rows: &mut Vec<Row>,
    f: f64,
    seed: u64,
    rep: &mut TransformReport,
) -> Result<(), TraceError> {
    let n = rows.len();
    let mut sampler = Sampler::new(n, f, seed)?;
    rows.retain(|_| sampler.keep().unwrap_or(false));
    rep.steps.push(format!(
        "sample {f}: kept {} of {n} requests",
        Sampler::kept(n, f)
    ));
    Ok(())
}

fn scale_rate(
    rows: &mut [Row],
    cfg: &TraceConfig,
    rep: &mut TransformReport,
) -> Result<(), TraceError> {
    let Some(factor) = rate_factor(cfg, || mean_rate(rows))? else {
        return Ok(());
    };
    let before = mean_rate(rows);
    for r in rows.iter_mut() {
        r.t_ns = (r.t_ns as f64 / factor).round() as u64;
    }
    let after = mean_rate(rows);
    let fmt = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.3}"));
    rep.steps.push(format!(
        "rate ×{factor:.6}: mean rate {} → {} req/s",
        fmt(before),
        fmt(after)
    ));
    Ok(())
}

/// The factor arrival times are divided by (`rate_scale`, or what makes the mean rate `target_rate`
/// given the rows' `mean` rate), checked; `None` when neither is set.
pub(crate) fn rate_factor(
    cfg: &TraceConfig,
    mean: impl FnOnce() -> Option<f64>,
) -> Result<Option<f64>, TraceError> {
    let factor = match (cfg.rate_scale, cfg.target_rate) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(TraceError::Config(
                "set rate_scale or target_rate, not both".into(),
            ))
        }
        (Some(f), None) => {
            if !(f.is_finite() && f > 0.0) {
                return Err(TraceError::Config(format!(
                    "rate_scale must be positive (got {f})"
                )));
            }
            f
        }
        (None, Some(target)) => {
            if !(target.is_finite() && target > 0.0) {
                return Err(TraceError::Config(format!(
                    "target_rate must be positive (got {target})"
                )));
            }
            let now = mean().ok_or_else(|| {
                TraceError::Config(
                    "target_rate needs at least two requests at different times".into(),
                )
            })?;
            target / now
        }
    };
    Ok(Some(factor))
}

/// Clips each request to `ctx` tokens of context; returns how many were clipped.
pub fn clip(rows: &mut [Row], ctx: u32) -> Result<u64, TraceError> {
    if ctx < 2 {
        return Err(TraceError::Config(format!(
            "max_context must be at least 2 (got {ctx})"
        )));
    }
    let mut clipped = 0;
    for r in rows.iter_mut() {
        if r.prompt as u64 + r.output as u64 > ctx as u64 {
            r.prompt = r.prompt.min(ctx - 1);
            r.output = r.output.min(ctx - r.prompt);
            clipped += 1;
        }
    }
    Ok(clipped)
}

/// Draws one category per request, in order, from normalised weights (names sorted, stream
/// `trace.categories`): the same draws whether the rows are loaded or streamed.
pub(crate) struct CategoryDraw {
    names: Vec<String>,
    cum: Vec<f64>,
    rng: SimRng,
}

impl CategoryDraw {
    /// Checks the weights.
    pub(crate) fn new(
        mix: &std::collections::BTreeMap<String, f64>,
        seed: u64,
    ) -> Result<Self, TraceError> {
        if mix.is_empty() || mix.len() > u16::MAX as usize {
            return Err(TraceError::Config(
                "categories needs between 1 and 65,535 entries".into(),
            ));
        }
        if let Some((k, w)) = mix.iter().find(|(_, w)| !(w.is_finite() && **w >= 0.0)) {
            return Err(TraceError::Config(format!(
                "category `{k}` has weight {w}; weights must be >= 0"
            )));
        }
        let total: f64 = mix.values().sum();
        if total <= 0.0 {
            return Err(TraceError::Config("category weights sum to 0".into()));
        }
        let names: Vec<String> = mix.keys().cloned().collect();
        let mut cum = Vec::with_capacity(mix.len());
        let mut acc = 0.0;
        for w in mix.values() {
            acc += w / total;
            cum.push(acc);
        }
        Ok(CategoryDraw {
            names,
            cum,
            rng: stream(seed, "trace.categories", 0),
        })
    }

    /// The category names, indexed by what [`CategoryDraw::draw`] returns.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The next request's category.
    pub(crate) fn draw(&mut self) -> u16 {
        let u: f64 = self.rng.random();
        let i = self
            .cum
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.names.len() - 1);
        i as u16
    }
}

fn categorize(
    rows: &mut [Row],
    mix: &std::collections::BTreeMap<String, f64>,
    seed: u64,
) -> Result<Vec<String>, TraceError> {
    let mut draw = CategoryDraw::new(mix, seed)?;
    for r in rows.iter_mut() {
        r.category = Some(draw.draw());
    }
    Ok(draw.names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(times_s: &[f64]) -> Vec<Row> {
        times_s
            .iter()
            .enumerate()
            .map(|(i, &t)| Row {
                t_ns: secs_to_ns(t),
                prompt: 100,
                output: 50,
                category: None,
                src: i as u32,
            })
            .collect()
    }

    #[test]
    fn window_keeps_half_open_interval_and_rebases() {
        let mut r = rows(&[0.0, 1.0, 2.0, 3.0, 4.0]);
        let cfg = TraceConfig {
            start_s: Some(1.0),
            duration_s: Some(2.0),
            ..Default::default()
        };
        apply(&mut r, &cfg, 0).unwrap();
        assert_eq!(
            r.iter().map(|r| r.t_ns).collect::<Vec<_>>(),
            vec![0, 1_000_000_000]
        );
    }

    #[test]
    fn max_prompt_and_max_output_clip_each_length_on_its_own() {
        // rows() gives every request output 50; prompts set by hand: 10 and 300.
        let mut r = rows(&[0.0, 1.0]);
        r[0].prompt = 10;
        r[1].prompt = 300;
        let cfg = TraceConfig {
            max_prompt: Some(128),
            max_output: Some(32),
            ..Default::default()
        };
        let rep = apply(&mut r, &cfg, 0).unwrap();
        assert_eq!((r[0].prompt, r[0].output), (10, 32));
        assert_eq!((r[1].prompt, r[1].output), (128, 32));
        // One prompt clip and two output clips.
        assert_eq!(rep.clipped, 3);
        let zero = TraceConfig {
            max_output: Some(0),
            ..Default::default()
        };
        assert!(apply(&mut r, &zero, 0).is_err());
    }

    #[test]
    fn rate_scale_2_halves_every_time() {
        let mut r = rows(&[0.0, 1.0, 3.0, 10.0]);
        let cfg = TraceConfig {
            rate_scale: Some(2.0),
            ..Default::default()
        };
        apply(&mut r, &cfg, 0).unwrap();
        assert_eq!(r.last().unwrap().t_ns, 5_000_000_000);
        assert_eq!(r[2].t_ns, 1_500_000_000);
    }

    #[test]
    fn target_rate_sets_requests_over_span() {
        let mut r = rows(&[0.0, 1.0, 2.0, 4.0]); // 4 requests over 4 s: 1 req/s
        let cfg = TraceConfig {
            target_rate: Some(4.0),
            ..Default::default()
        };
        apply(&mut r, &cfg, 0).unwrap();
        assert!((mean_rate(&r).unwrap() - 4.0).abs() < 1e-9);
        let both = TraceConfig {
            target_rate: Some(4.0),
            rate_scale: Some(2.0),
            ..Default::default()
        };
        assert!(apply(&mut rows(&[0.0, 1.0]), &both, 0).is_err());
    }

    #[test]
    fn sample_keeps_exactly_the_rounded_fraction_in_order() {
        let mut r = rows(&(0..1000).map(|i| i as f64).collect::<Vec<_>>());
        let cfg = TraceConfig {
            sample: Some(0.25),
            ..Default::default()
        };
        apply(&mut r, &cfg, 9).unwrap();
        assert_eq!(r.len(), 250);
        assert!(r.windows(2).all(|w| w[0].t_ns < w[1].t_ns));
    }

    #[test]
    fn clipping_keeps_at_least_one_output_token_and_counts() {
        let mut r = vec![
            Row {
                t_ns: 0,
                prompt: 5000,
                output: 10,
                category: None,
                src: 0,
            },
            Row {
                t_ns: 1,
                prompt: 100,
                output: 3000,
                category: None,
                src: 1,
            },
            Row {
                t_ns: 2,
                prompt: 10,
                output: 10,
                category: None,
                src: 2,
            },
        ];
        assert_eq!(clip(&mut r, 2048).unwrap(), 2);
        assert_eq!((r[0].prompt, r[0].output), (2047, 1));
        assert_eq!((r[1].prompt, r[1].output), (100, 1948));
        assert_eq!((r[2].prompt, r[2].output), (10, 10));
    }

    #[test]
    fn category_mix_follows_the_weights() {
        let mut r = rows(&(0..20_000).map(|i| i as f64).collect::<Vec<_>>());
        let mix = [("coding".to_string(), 3.0), ("writing".to_string(), 1.0)]
            .into_iter()
            .collect();
        let cfg = TraceConfig {
            categories: Some(mix),
            ..Default::default()
        };
        let rep = apply(&mut r, &cfg, 1).unwrap();
        assert_eq!(rep.categories.unwrap(), vec!["coding", "writing"]);
        let coding = r.iter().filter(|r| r.category == Some(0)).count() as f64 / r.len() as f64;
        assert!((coding - 0.75).abs() < 0.015, "{coding}");
    }
}
