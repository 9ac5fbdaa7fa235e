//! Built-in synthetic workloads: Poisson, Gamma (given CV) or evenly spaced arrivals with fixed, uniform
//! or lognormal lengths, so a scenario needs no external file. The `specsim-traces` crate adds bursty
//! and diurnal arrivals and empirical lengths.

use crate::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig};
use crate::SimError;
use rand::RngExt;
use rand_distr::{Distribution, Exp, Gamma, LogNormal};
use specsim_core::rng::{stream, SimRng};
use specsim_core::time::secs_to_ns;
use specsim_core::workload::Workload;

/// Draws inter-arrival gaps in seconds.
pub enum ArrivalSampler {
    /// Exponential gaps.
    Poisson(Exp<f64>),
    /// Gamma gaps.
    Gamma(Gamma<f64>),
    /// Constant gaps.
    Uniform(f64),
}

impl ArrivalSampler {
    /// A sampler for `rate` requests per second; only Poisson, Gamma and Uniform are built in.
    pub fn new(cfg: &ArrivalConfig, rate: f64) -> Result<Self, SimError> {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(SimError::Config(format!(
                "trace.synthetic.rate = {rate} must be positive"
            )));
        }
        Ok(match cfg {
            ArrivalConfig::Poisson => ArrivalSampler::Poisson(
                Exp::new(rate).map_err(|e| SimError::Config(e.to_string()))?,
            ),
            ArrivalConfig::Gamma { cv } => {
                if !(*cv > 0.0 && cv.is_finite()) {
                    return Err(SimError::Config(format!(
                        "trace.synthetic.arrival.cv = {cv} must be positive"
                    )));
                }
                // Gamma with shape 1/cv² and scale cv²/rate has mean 1/rate and CV cv.
                let shape = 1.0 / (cv * cv);
                ArrivalSampler::Gamma(
                    Gamma::new(shape, 1.0 / (rate * shape))
                        .map_err(|e| SimError::Config(e.to_string()))?,
                )
            }
            ArrivalConfig::Uniform => ArrivalSampler::Uniform(1.0 / rate),
            other => {
                return Err(SimError::Config(format!(
                    "arrival process {other:?} needs the specsim-traces crate"
                )))
            }
        })
    }

    /// The next gap, seconds.
    pub fn gap(&self, rng: &mut SimRng) -> f64 {
        match self {
            ArrivalSampler::Poisson(d) => d.sample(rng),
            ArrivalSampler::Gamma(d) => d.sample(rng),
            ArrivalSampler::Uniform(g) => *g,
        }
    }
}

/// Draws token lengths.
pub enum LengthSampler {
    /// Constant.
    Fixed(u32),
    /// Uniform on [min, max].
    Uniform(u32, u32),
    /// Lognormal, clamped to [min, max].
    Lognormal(LogNormal<f64>, u32, u32),
}

impl LengthSampler {
    /// A sampler for a parametric length distribution (`what` names it in errors).
    pub fn new(cfg: &LengthConfig, what: &str) -> Result<Self, SimError> {
        let bad = |m: String| SimError::Config(format!("trace.synthetic.{what}: {m}"));
        Ok(match cfg {
            LengthConfig::Fixed { value } if *value >= 1 => LengthSampler::Fixed(*value),
            LengthConfig::Fixed { .. } => return Err(bad("value must be at least 1".into())),
            LengthConfig::Uniform { min, max } if *min >= 1 && min <= max => {
                LengthSampler::Uniform(*min, *max)
            }
            LengthConfig::Uniform { .. } => return Err(bad("need 1 <= min <= max".into())),
            LengthConfig::Lognormal {
                mean,
                std,
                min,
                max,
            } => {
                if !(*mean > 0.0 && *std > 0.0) || *min < 1 || min > max {
                    return Err(bad("need mean > 0, std > 0, 1 <= min <= max".into()));
                }
                // Moments of the length -> parameters of its logarithm.
                let s2 = (1.0 + (std * std) / (mean * mean)).ln();
                let mu = mean.ln() - s2 / 2.0;
                LengthSampler::Lognormal(
                    LogNormal::new(mu, s2.sqrt()).map_err(|e| bad(e.to_string()))?,
                    *min,
                    *max,
                )
            }
            LengthConfig::Empirical { .. } => {
                return Err(bad("empirical lengths need the specsim-traces crate".into()))
            }
        })
    }

    /// Draws one length.
    pub fn sample(&self, rng: &mut SimRng) -> u32 {
        match self {
            LengthSampler::Fixed(v) => *v,
            LengthSampler::Uniform(a, b) => rng.random_range(*a..=*b),
            LengthSampler::Lognormal(d, lo, hi) => (d.sample(rng).round() as u32).clamp(*lo, *hi),
        }
    }
}

/// Generates a synthetic workload. Arrivals, prompt lengths and output lengths use separate streams.
pub fn generate(cfg: &SyntheticConfig, seed: u64) -> Result<Workload, SimError> {
    let arrivals = ArrivalSampler::new(&cfg.arrival, cfg.rate)?;
    let prompt = LengthSampler::new(&cfg.prompt, "prompt")?;
    let output = LengthSampler::new(&cfg.output, "output")?;
    let mut ra = stream(seed, "arrivals", 0);
    let mut rp = stream(seed, "prompt_lengths", 0);
    let mut ro = stream(seed, "output_lengths", 0);
    let mut w = Workload::default();
    w.requests.reserve(cfg.requests.min(1 << 20));
    let mut t = 0.0;
    for i in 0..cfg.requests {
        if i > 0 {
            t += arrivals.gap(&mut ra);
        }
        w.push(
            secs_to_ns(t),
            prompt.sample(&mut rp),
            output.sample(&mut ro),
            None,
        );
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cv_of_gaps(w: &Workload) -> (f64, f64) {
        let gaps: Vec<f64> = w
            .requests
            .windows(2)
            .map(|p| (p[1].arrival_ns - p[0].arrival_ns) as f64 / 1e9)
            .collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt() / mean)
    }

    fn cfg(arrival: ArrivalConfig) -> SyntheticConfig {
        SyntheticConfig {
            requests: 100_000,
            rate: 4.0,
            arrival,
            prompt: LengthConfig::Fixed { value: 10 },
            output: LengthConfig::Lognormal {
                mean: 200.0,
                std: 100.0,
                min: 1,
                max: 100_000,
            },
        }
    }

    #[test]
    fn poisson_gaps_have_mean_one_over_rate_and_cv_one() {
        let (mean, cv) = cv_of_gaps(&generate(&cfg(ArrivalConfig::Poisson), 1).unwrap());
        assert!((mean - 0.25).abs() / 0.25 < 0.01, "{mean}");
        assert!((cv - 1.0).abs() < 0.02, "{cv}");
    }

    #[test]
    fn gamma_gaps_have_the_requested_cv() {
        let (mean, cv) = cv_of_gaps(&generate(&cfg(ArrivalConfig::Gamma { cv: 3.0 }), 2).unwrap());
        assert!((mean - 0.25).abs() / 0.25 < 0.05, "{mean}");
        assert!((cv - 3.0).abs() / 3.0 < 0.05, "{cv}");
    }

    #[test]
    fn lognormal_lengths_have_the_requested_moments() {
        let w = generate(&cfg(ArrivalConfig::Uniform), 3).unwrap();
        let n = w.len() as f64;
        let mean = w
            .requests
            .iter()
            .map(|r| r.output_tokens as f64)
            .sum::<f64>()
            / n;
        let sd = (w
            .requests
            .iter()
            .map(|r| (r.output_tokens as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!((mean - 200.0).abs() < 2.0, "{mean}");
        assert!((sd - 100.0).abs() < 3.0, "{sd}");
        // Uniform arrivals: exactly 0.25 s apart.
        assert_eq!(w.requests[4].arrival_ns, 1_000_000_000);
    }

    #[test]
    fn same_seed_same_workload() {
        let c = cfg(ArrivalConfig::Poisson);
        assert_eq!(generate(&c, 9).unwrap(), generate(&c, 9).unwrap());
        assert_ne!(generate(&c, 9).unwrap(), generate(&c, 10).unwrap());
    }
}
