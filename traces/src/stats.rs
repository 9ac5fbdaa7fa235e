//! Summary statistics of a trace: what `specsim trace stats` prints.
//!
//! Definitions (chosen to match the figures in the shared `SOURCES.md`):
//!
//! - span: last arrival − first arrival; mean rate: requests ÷ span;
//! - peak rate: the most requests in one fixed window `[k·w, (k+1)·w)` from the first arrival, ÷ w;
//! - inter-arrival CV: population standard deviation of the gaps ÷ their mean;
//! - percentiles: linear interpolation between order statistics (`numpy.percentile`'s default):
//!   `p(q) = x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋+1] − x[⌊h⌋])`, `h = q·(n − 1)`.

use crate::trace::Row;
use serde::Serialize;
use specsim_core::workload::Workload;
use std::fmt;

/// Mean, percentiles and range of one length column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthStats {
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest.
    pub min: u32,
    /// Largest.
    pub max: u32,
}

impl LengthStats {
    /// Statistics of `values` (all zero for an empty slice).
    pub fn of(values: &[u32]) -> LengthStats {
        let mut v = values.to_vec();
        v.sort_unstable();
        let n = v.len();
        if n == 0 {
            return LengthStats {
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                min: 0,
                max: 0,
            };
        }
        LengthStats {
            mean: v.iter().map(|&x| x as f64).sum::<f64>() / n as f64,
            p50: percentile(&v, 0.50),
            p90: percentile(&v, 0.90),
            p99: percentile(&v, 0.99),
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// Percentile `q` in [0, 1] of sorted, non-empty `v` by linear interpolation.
pub fn percentile(v: &[u32], q: f64) -> f64 {
    let h = q * (v.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] as f64 + (h - lo as f64) * (v[hi] as f64 - v[lo] as f64)
}

/// Arrival statistics (absent for length-only files).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrivalStats {
    /// Last arrival − first arrival, seconds.
    pub span_s: f64,
    /// Requests ÷ span, per second.
    pub mean_rate: f64,
    /// Window length used for the peak rate, seconds.
    pub window_s: f64,
    /// Most requests in one window ÷ window length, per second.
    pub peak_rate: f64,
    /// Start of that window, seconds from the first arrival.
    pub peak_at_s: f64,
    /// Coefficient of variation of inter-arrival gaps.
    pub interarrival_cv: f64,
}

/// Everything `trace stats` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceStats {
    /// Number of requests.
    pub count: usize,
    /// Arrival statistics, when the rows have times.
    pub arrivals: Option<ArrivalStats>,
    /// Prompt lengths.
    pub prompt: LengthStats,
    /// Output lengths.
    pub output: LengthStats,
}

impl TraceStats {
    /// Statistics of rows sorted by arrival; `window_s` is the peak-rate window.
    pub fn of(rows: &[Row], has_arrivals: bool, window_s: f64) -> TraceStats {
        let prompt = LengthStats::of(&rows.iter().map(|r| r.prompt).collect::<Vec<_>>());
        let output = LengthStats::of(&rows.iter().map(|r| r.output).collect::<Vec<_>>());
        let arrivals = if has_arrivals && rows.len() >= 2 {
            arrival_stats(rows, window_s)
        } else {
            None
        };
        TraceStats {
            count: rows.len(),
            arrivals,
            prompt,
            output,
        }
    }
}

impl TraceStats {
    /// Statistics of a workload (sorted by arrival, as workloads are).
    pub fn of_workload(w: &Workload, window_s: f64) -> TraceStats {
        let rows: Vec<Row> = w
            .requests
            .iter()
            .map(|r| Row {
                t_ns: r.arrival_ns,
                prompt: r.prompt_tokens,
                output: r.output_tokens,
                category: r.category,
                src: 0,
            })
            .collect();
        TraceStats::of(&rows, true, window_s)
    }
}

fn arrival_stats(rows: &[Row], window_s: f64) -> Option<ArrivalStats> {
    let t0 = rows.first()?.t_ns;
    let secs: Vec<f64> = rows.iter().map(|r| (r.t_ns - t0) as f64 / 1e9).collect();
    let span_s = *secs.last()?;
    let gaps: Vec<f64> = secs.windows(2).map(|w| w[1] - w[0]).collect();
    let mean_gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean_gap).powi(2)).sum::<f64>() / gaps.len() as f64;
    let window_s = if window_s.is_finite() && window_s > 0.0 {
        window_s
    } else {
        60.0
    };
    let (mut best, mut best_k, mut cur, mut cur_k) = (0usize, 0u64, 0usize, 0u64);
    for &s in &secs {
        let k = (s / window_s).floor() as u64;
        if k != cur_k {
            cur_k = k;
            cur = 0;
        }
        cur += 1;
        if cur > best {
            best = cur;
            best_k = k;
        }
    }
    Some(ArrivalStats {
        span_s,
        mean_rate: if span_s > 0.0 {
            rows.len() as f64 / span_s
        } else {
            f64::INFINITY
        },
        window_s,
        peak_rate: best as f64 / window_s,
        peak_at_s: best_k as f64 * window_s,
        interarrival_cv: if mean_gap > 0.0 {
            var.sqrt() / mean_gap
        } else {
            0.0
        },
    })
}

impl fmt::Display for TraceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "requests          {}", self.count)?;
        match &self.arrivals {
            Some(a) => {
                writeln!(f, "span              {:.3} s", a.span_s)?;
                writeln!(f, "mean rate         {:.3} req/s", a.mean_rate)?;
                writeln!(
                    f,
                    "peak rate         {:.3} req/s ({} s window at {} s)",
                    a.peak_rate, a.window_s, a.peak_at_s
                )?;
                writeln!(f, "inter-arrival CV  {:.3}", a.interarrival_cv)?;
            }
            None => writeln!(f, "arrivals          none (length-only file)")?,
        }
        writeln!(
            f,
            "{:<8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "tokens", "mean", "p50", "p90", "p99", "min", "max"
        )?;
        for (name, s) in [("input", &self.prompt), ("output", &self.output)] {
            writeln!(
                f,
                "{:<8} {:>10.1} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>8}",
                name, s.mean, s.p50, s.p90, s.p99, s.min, s.max
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 90]) == [2.5, 3.7]
        let v = [1, 2, 3, 4];
        assert!((percentile(&v, 0.5) - 2.5).abs() < 1e-12);
        assert!((percentile(&v, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&[7], 0.99), 7.0);
    }

    #[test]
    fn hand_computed_arrival_stats() {
        // Arrivals at 0, 1, 2, 3, 10 s: span 10, rate 0.5, gaps 1,1,1,7 (mean 2.5, sd 2.598).
        let rows: Vec<Row> = [0u64, 1, 2, 3, 10]
            .iter()
            .enumerate()
            .map(|(i, &s)| Row {
                t_ns: s * 1_000_000_000,
                prompt: 10,
                output: 5,
                category: None,
                src: i as u32,
            })
            .collect();
        let s = TraceStats::of(&rows, true, 5.0);
        let a = s.arrivals.unwrap();
        assert_eq!(a.span_s, 10.0);
        assert_eq!(a.mean_rate, 0.5);
        assert_eq!(a.peak_rate, 4.0 / 5.0);
        assert!((a.interarrival_cv - 2.598_076_211 / 2.5).abs() < 1e-6);
    }
}
