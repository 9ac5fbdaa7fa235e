//! Synthetic workloads: an arrival process and two length distributions, all seeded.
//!
//! Each purpose draws from its own stream of [`specsim_core::rng::stream`] (`arrivals`,
//! `prompt_lengths`, `output_lengths`, and `lengths` for joint draws), so changing the prompt
//! distribution never moves an arrival. Names and conventions are those of [`specsim_sim::synth`], whose
//! samplers this module reuses for what they cover: a scenario that `sim` can synthesise on its own
//! gives the same workload through this crate.
//!
//! Arrival processes (`rate` is always the long-run mean rate):
//!
//! - **Poisson**: exponential gaps of mean `1/rate`.
//! - **Gamma**: gamma gaps with shape `1/cv²` and mean `1/rate`, so their coefficient of variation is
//!   `cv` (cv > 1 is burstier than Poisson, cv < 1 more regular).
//! - **Uniform**: gaps of exactly `1/rate`.
//! - **Bursty** (two-state MMPP): exponential on and off periods of means `on_s` and `off_s`; Poisson
//!   arrivals at `burst_factor × λ` while on and `λ` while off, with `λ` chosen so the mean rate is `rate`:
//!   `λ = rate / (1 + p_on·(burst_factor − 1))`, `p_on = on_s / (on_s + off_s)`. The first state is drawn
//!   from the stationary distribution.
//! - **Diurnal**: a Poisson process of rate `rate·(1 + amplitude·sin(2πt/period_s))`, sampled by thinning.
//!
//! As with traces, the first request arrives at 0 (times are re-based to it).
//!
//! Lengths: fixed, uniform, lognormal (from the mean and standard deviation of the length itself,
//! rounded and clamped to `[min, max]`), or empirical: drawn uniformly from the rows of any trace or
//! length-statistics file. When both prompt and output are empirical from the same file (and their
//! default columns), whole rows are drawn, keeping the file's prompt/output correlation.

use crate::read::read_trace;
use crate::trace::Row;
use crate::{paths, TraceError};
use rand::RngExt;
use rand_distr::{Distribution, Exp};
use specsim_core::rng::{stream, SimRng};
use specsim_core::time::{secs_to_ns, Nanos};
use specsim_sim::synth::{ArrivalSampler, LengthSampler as SimLengthSampler};
use specsim_sim::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig};
use std::path::{Path, PathBuf};

/// Which length a distribution stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Prompt (input, prefill) tokens.
    Prompt,
    /// Output (generated, decode) tokens.
    Output,
}

impl Column {
    fn parse(s: Option<&str>, default: Column) -> Result<Column, TraceError> {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("prompt" | "input" | "prefill") => Ok(Column::Prompt),
            Some("output" | "decode" | "generated") => Ok(Column::Output),
            Some(other) => Err(TraceError::Config(format!(
                "empirical column `{other}`: expected `prompt` or `output`"
            ))),
        }
    }

    fn of(self, r: &Row) -> u32 {
        match self {
            Column::Prompt => r.prompt,
            Column::Output => r.output,
        }
    }
}

/// `n` arrival times (ns from the first) per `cfg` at mean `rate` req/s, seeded: [`ArrivalIter`]
/// collected.
pub fn arrivals(
    cfg: &ArrivalConfig,
    n: usize,
    rate: f64,
    seed: u64,
) -> Result<Vec<Nanos>, TraceError> {
    // A count sizes no allocation up front beyond a cap: the vector grows with what is drawn.
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for t in ArrivalIter::new(cfg, rate, seed)?.take(n) {
        out.push(t?);
    }
    Ok(out)
}

enum ArrivalState {
    Renewal(ArrivalSampler),
    Bursty {
        burst_factor: f64,
        on_s: f64,
        off_s: f64,
        base: f64,
        on: bool,
        left: f64,
    },
    Diurnal {
        amplitude: f64,
        w: f64,
        d: Exp<f64>,
    },
}

/// Arrival times (ns from the first) drawn one at a time, in constant memory: the same draws
/// [`arrivals`] returns, for a workload of any length.
pub struct ArrivalIter {
    state: ArrivalState,
    rng: SimRng,
    t: f64,
    t0: Option<f64>,
}

fn exp(r: f64) -> Result<Exp<f64>, TraceError> {
    Exp::new(r).map_err(|e| TraceError::Config(format!("rate {r}: {e}")))
}

impl ArrivalIter {
    /// The arrival process `cfg` at mean `rate` req/s, seeded.
    pub fn new(cfg: &ArrivalConfig, rate: f64, seed: u64) -> Result<Self, TraceError> {
        positive("synthetic.rate", rate)?;
        let mut rng = stream(seed, "arrivals", 0);
        let state = match *cfg {
            ArrivalConfig::Poisson | ArrivalConfig::Gamma { .. } | ArrivalConfig::Uniform => {
                ArrivalState::Renewal(ArrivalSampler::new(cfg, rate)?)
            }
            ArrivalConfig::Bursty {
                burst_factor,
                on_s,
                off_s,
            } => {
                positive("arrival.burst_factor", burst_factor)?;
                positive("arrival.on_s", on_s)?;
                positive("arrival.off_s", off_s)?;
                let p_on = on_s / (on_s + off_s);
                let base = rate / (1.0 + p_on * (burst_factor - 1.0));
                let on = rng.random::<f64>() < p_on;
                let left = exp(1.0 / if on { on_s } else { off_s })?.sample(&mut rng);
                ArrivalState::Bursty {
                    burst_factor,
                    on_s,
                    off_s,
                    base,
                    on,
                    left,
                }
            }
            ArrivalConfig::Diurnal {
                amplitude,
                period_s,
            } => {
                if !(0.0..=1.0).contains(&amplitude) {
                    return Err(TraceError::Config(format!(
                        "arrival.amplitude must lie in [0, 1] (got {amplitude})"
                    )));
                }
                positive("arrival.period_s", period_s)?;
                ArrivalState::Diurnal {
                    amplitude,
                    w: 2.0 * std::f64::consts::PI / period_s,
                    d: exp(rate * (1.0 + amplitude))?,
                }
            }
        };
        Ok(ArrivalIter {
            state,
            rng,
            t: 0.0,
            t0: None,
        })
    }

    fn next_secs(&mut self) -> Result<f64, TraceError> {
        let rng = &mut self.rng;
        match &mut self.state {
            ArrivalState::Renewal(sampler) => {
                if self.t0.is_some() {
                    self.t += sampler.gap(rng);
                }
            }
            ArrivalState::Bursty {
                burst_factor,
                on_s,
                off_s,
                base,
                on,
                left,
            } => loop {
                let gap = exp(if *on { *base * *burst_factor } else { *base })?.sample(rng);
                if gap < *left {
                    self.t += gap;
                    *left -= gap;
                    break;
                }
                // Memoryless: jump to the switch and draw afresh in the new state.
                self.t += *left;
                *on = !*on;
                *left = exp(1.0 / if *on { *on_s } else { *off_s })?.sample(rng);
            },
            ArrivalState::Diurnal { amplitude, w, d } => loop {
                self.t += d.sample(rng);
                let accept = (1.0 + *amplitude * (*w * self.t).sin()) / (1.0 + *amplitude);
                if rng.random::<f64>() < accept {
                    break;
                }
            },
        }
        Ok(self.t)
    }
}

impl Iterator for ArrivalIter {
    type Item = Result<Nanos, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_secs().map(|t| {
            let t0 = *self.t0.get_or_insert(t);
            secs_to_ns(t - t0)
        }))
    }
}

/// A length distribution ready to sample.
pub enum LengthSampler {
    /// Fixed, uniform or lognormal: the simulator's own sampler.
    Parametric(SimLengthSampler),
    /// One of these lengths, uniformly.
    Empirical(Vec<u32>),
}

impl LengthSampler {
    /// Builds the sampler for `cfg`, standing for `column`; empirical files resolve against `base_dir`.
    pub fn new(cfg: &LengthConfig, column: Column, base_dir: &Path) -> Result<Self, TraceError> {
        match cfg {
            LengthConfig::Empirical { path, column: col } => {
                let col = Column::parse(col.as_deref(), column)?;
                let rows = empirical_rows(path, base_dir)?.1;
                Ok(LengthSampler::Empirical(
                    rows.iter().map(|r| col.of(r)).collect(),
                ))
            }
            parametric => {
                let name = match column {
                    Column::Prompt => "prompt",
                    Column::Output => "output",
                };
                Ok(LengthSampler::Parametric(SimLengthSampler::new(
                    parametric, name,
                )?))
            }
        }
    }

    /// Draws one length.
    pub fn sample(&self, rng: &mut SimRng) -> u32 {
        match self {
            LengthSampler::Parametric(s) => s.sample(rng),
            LengthSampler::Empirical(v) => v[rng.random_range(0..v.len())],
        }
    }
}

fn empirical_rows(path: &Path, base_dir: &Path) -> Result<(PathBuf, Vec<Row>), TraceError> {
    let p = paths::resolve(path, base_dir)?;
    let t = read_trace(&p, None)?;
    Ok((p, t.rows))
}

/// `n` synthetic requests per `cfg` (arrivals and lengths), seeded: [`SynthIter`] collected.
pub fn synthesize(
    cfg: &SyntheticConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<Vec<Row>, TraceError> {
    let mut rows = Vec::with_capacity(cfg.requests);
    for r in SynthIter::new(cfg, base_dir, seed)? {
        rows.push(r?);
    }
    Ok(rows)
}

/// Request lengths drawn one request at a time, each kind from its own seeded stream.
pub enum Lengths {
    /// Whole rows of one file (prompt and output drawn together).
    Joint(Vec<(u32, u32)>, SimRng),
    /// Independent draws.
    Separate(LengthSampler, SimRng, LengthSampler, SimRng),
}

/// Synthetic requests drawn one at a time in constant memory (but for an empirical length table):
/// arrivals, prompt and output lengths each from their own stream, so the rows are exactly
/// [`synthesize`]'s.
pub struct SynthIter {
    arrivals: ArrivalIter,
    lengths: Lengths,
    i: usize,
    n: usize,
}

impl SynthIter {
    /// The workload `cfg` describes; empirical length files resolve against `base_dir`.
    pub fn new(cfg: &SyntheticConfig, base_dir: &Path, seed: u64) -> Result<Self, TraceError> {
        if cfg.requests == 0 {
            return Err(TraceError::Config(
                "synthetic.requests must be at least 1".into(),
            ));
        }
        Ok(SynthIter {
            arrivals: ArrivalIter::new(&cfg.arrival, cfg.rate, seed)?,
            lengths: Lengths::new(&cfg.prompt, &cfg.output, base_dir, seed)?,
            i: 0,
            n: cfg.requests,
        })
    }
}

impl Lengths {
    /// Prompt and output length draws for `prompt` and `output`: whole rows of one file when both
    /// name the same file's default columns (stream `lengths`), else independent draws (streams
    /// `prompt_lengths` and `output_lengths`). Empirical files resolve against `base_dir`.
    pub fn new(
        prompt: &LengthConfig,
        output: &LengthConfig,
        base_dir: &Path,
        seed: u64,
    ) -> Result<Self, TraceError> {
        if let (
            LengthConfig::Empirical {
                path: pp,
                column: pc,
            },
            LengthConfig::Empirical {
                path: op,
                column: oc,
            },
        ) = (prompt, output)
        {
            let same_cols = Column::parse(pc.as_deref(), Column::Prompt)? == Column::Prompt
                && Column::parse(oc.as_deref(), Column::Output)? == Column::Output;
            if pp == op && same_cols {
                let (_, rows) = empirical_rows(pp, base_dir)?;
                let pairs = rows.iter().map(|r| (r.prompt, r.output)).collect();
                return Ok(Lengths::Joint(pairs, stream(seed, "lengths", 0)));
            }
        }
        Ok(Lengths::Separate(
            LengthSampler::new(prompt, Column::Prompt, base_dir)?,
            stream(seed, "prompt_lengths", 0),
            LengthSampler::new(output, Column::Output, base_dir)?,
            stream(seed, "output_lengths", 0),
        ))
    }

    /// The next request's (prompt, output) lengths.
    pub fn draw(&mut self) -> (u32, u32) {
        match self {
            Lengths::Joint(pairs, rng) => pairs[rng.random_range(0..pairs.len())],
            Lengths::Separate(p, rp, o, ro) => (p.sample(rp), o.sample(ro)),
        }
    }
}

impl Iterator for SynthIter {
    type Item = Result<Row, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.i >= self.n {
            return None;
        }
        let t_ns = match self.arrivals.next()? {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let (prompt, output) = self.lengths.draw();
        let src = self.i as u32;
        self.i += 1;
        Some(Ok(Row {
            t_ns,
            prompt,
            output,
            category: None,
            src,
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.n - self.i;
        (left, Some(left))
    }
}

fn positive(name: &str, v: f64) -> Result<(), TraceError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(TraceError::Config(format!(
            "{name} must be a positive number (got {v})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps_cv(t: &[Nanos]) -> (f64, f64) {
        let g: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
        let m = g.iter().sum::<f64>() / g.len() as f64;
        let v = g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64;
        (m, v.sqrt() / m)
    }

    #[test]
    fn gamma_cv_3_measures_within_5_percent_on_100k_arrivals() {
        let t = arrivals(&ArrivalConfig::Gamma { cv: 3.0 }, 100_000, 10.0, 42).unwrap();
        let (mean, cv) = gaps_cv(&t);
        assert!((cv - 3.0).abs() / 3.0 < 0.05, "cv {cv}");
        // Mean gap 0.1 s; the standard error of the mean of 1e5 gaps with cv 3 is about 1%.
        assert!((mean - 0.1).abs() / 0.1 < 0.05, "mean {mean}");
    }

    #[test]
    fn poisson_gaps_have_cv_1_and_the_asked_rate() {
        let t = arrivals(&ArrivalConfig::Poisson, 50_000, 4.0, 7).unwrap();
        let (mean, cv) = gaps_cv(&t);
        assert!((cv - 1.0).abs() < 0.03, "cv {cv}");
        assert!((mean - 0.25).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn uniform_arrivals_are_evenly_spaced_from_zero() {
        let t = arrivals(&ArrivalConfig::Uniform, 5, 2.0, 0).unwrap();
        assert_eq!(
            t,
            vec![0, 500_000_000, 1_000_000_000, 1_500_000_000, 2_000_000_000]
        );
    }

    #[test]
    fn bursty_arrivals_keep_the_mean_rate_and_are_burstier_than_poisson() {
        let cfg = ArrivalConfig::Bursty {
            burst_factor: 8.0,
            on_s: 5.0,
            off_s: 20.0,
        };
        let t = arrivals(&cfg, 100_000, 10.0, 3).unwrap();
        let (mean, cv) = gaps_cv(&t);
        // Over ~10,000 s there are ~400 on/off cycles, so the mean rate is within a few percent.
        assert!((mean - 0.1).abs() / 0.1 < 0.06, "mean gap {mean}");
        assert!(cv > 1.2, "cv {cv}");
    }

    #[test]
    fn diurnal_rate_follows_the_sine() {
        let cfg = ArrivalConfig::Diurnal {
            amplitude: 0.8,
            period_s: 100.0,
        };
        let t = arrivals(&cfg, 100_000, 10.0, 5).unwrap();
        // Rate in the rising quarter-period around the peak (t mod 100 in [0, 50)) vs the trough half:
        // integral of 1 + 0.8 sin over each half is 50 ± 0.8·100/π, so the ratio is (50+25.46)/(50-25.46).
        let (mut hi, mut lo) = (0f64, 0f64);
        for &x in &t {
            if (x as f64 / 1e9) % 100.0 < 50.0 {
                hi += 1.0;
            } else {
                lo += 1.0;
            }
        }
        let want = (50.0 + 80.0 / std::f64::consts::PI) / (50.0 - 80.0 / std::f64::consts::PI);
        assert!(
            (hi / lo - want).abs() / want < 0.05,
            "ratio {} want {want}",
            hi / lo
        );
    }

    #[test]
    fn same_seed_same_arrivals_other_seed_other_arrivals() {
        let a = arrivals(&ArrivalConfig::Poisson, 100, 1.0, 1).unwrap();
        assert_eq!(a, arrivals(&ArrivalConfig::Poisson, 100, 1.0, 1).unwrap());
        assert_ne!(a, arrivals(&ArrivalConfig::Poisson, 100, 1.0, 2).unwrap());
    }

    #[test]
    fn lognormal_lengths_have_the_asked_mean() {
        let cfg = LengthConfig::Lognormal {
            mean: 500.0,
            std: 300.0,
            min: 1,
            max: 1_000_000,
        };
        let s = LengthSampler::new(&cfg, Column::Prompt, Path::new(".")).unwrap();
        let mut rng = stream(1, "t", 0);
        let n = 200_000;
        let mean = (0..n).map(|_| s.sample(&mut rng) as f64).sum::<f64>() / n as f64;
        assert!((mean - 500.0).abs() < 5.0, "mean {mean}");
    }

    #[test]
    fn impossible_parameters_are_config_errors() {
        assert!(arrivals(&ArrivalConfig::Poisson, 10, 0.0, 0).is_err());
        assert!(arrivals(&ArrivalConfig::Gamma { cv: 0.0 }, 10, 1.0, 0).is_err());
        assert!(arrivals(
            &ArrivalConfig::Diurnal {
                amplitude: 1.5,
                period_s: 10.0
            },
            10,
            1.0,
            0
        )
        .is_err());
        let base = Path::new(".");
        assert!(
            LengthSampler::new(&LengthConfig::Fixed { value: 0 }, Column::Prompt, base).is_err()
        );
        assert!(LengthSampler::new(
            &LengthConfig::Empirical {
                path: "x".into(),
                column: Some("z".into())
            },
            Column::Prompt,
            base
        )
        .is_err());
        assert!(LengthSampler::new(
            &LengthConfig::Uniform { min: 5, max: 2 },
            Column::Prompt,
            base
        )
        .is_err());
    }
}
