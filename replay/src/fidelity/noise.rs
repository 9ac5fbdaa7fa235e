//! How noisy the machine was during a live run, recorded beside its results.
//!
//! Three signals: the CPU time the hypervisor stole and the time other processes used (both from
//! `/proc/stat`, the latter less this process's own time from `/proc/self/stat`), the 1-minute load
//! average (`/proc/loadavg`), and the drift of a fixed CPU probe (a small matrix product, the same
//! work every time) timed before and after the run. A run past any threshold is flagged; the flags
//! travel with the results so a summary can set flagged runs apart rather than average them in.
//! On systems without `/proc` the counters are `None` and only the probe is recorded.

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Steal above this fraction of CPU time flags a run.
pub const MAX_STEAL: f64 = 0.02;
/// CPU time used by other processes above this fraction of the machine flags a run.
pub const MAX_OTHER_BUSY: f64 = 0.10;
/// The probe slower or faster by more than this fraction after the run than before flags it.
pub const MAX_PROBE_DRIFT: f64 = 0.10;

/// CPU counters of `/proc/stat`'s `cpu` line and this process's CPU time, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuSnapshot {
    /// All time.
    pub total: u64,
    /// Idle and I/O wait.
    pub idle: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// This process's user + system time.
    pub own: u64,
}

/// Parses `/proc/stat`'s aggregate `cpu` line (user nice system idle iowait irq softirq steal ...).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if v.len() < 8 {
        return None;
    }
    // guest and guest_nice (fields 9, 10) are already counted in user and nice.
    let total: u64 = v.iter().take(8).sum();
    Some((total, v[3] + v[4], v[7]))
}

/// Parses `/proc/self/stat`: utime + stime (fields 14 and 15, after the parenthesised name).
pub fn parse_self_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so fields 14 and 15 are indices 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The 1-minute load average of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The counters now (`None` without `/proc`).
pub fn cpu_snapshot() -> Option<CpuSnapshot> {
    let (total, idle, steal) = parse_proc_stat(&read("/proc/stat")?)?;
    let own = read("/proc/self/stat")
        .and_then(|t| parse_self_stat(&t))
        .unwrap_or(0);
    Some(CpuSnapshot {
        total,
        idle,
        steal,
        own,
    })
}

/// The fixed probe: a 96 × 96 matrix product, repeated; its median time over five runs, seconds.
pub fn probe() -> f64 {
    const N: usize = 96;
    let a: Vec<f64> = (0..N * N).map(|i| (i % 7) as f64 * 0.25).collect();
    let b: Vec<f64> = (0..N * N).map(|i| (i % 5) as f64 * 0.5).collect();
    let mut c = vec![0.0; N * N];
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..4 {
                for i in 0..N {
                    for k in 0..N {
                        let x = a[i * N + k];
                        for j in 0..N {
                            c[i * N + j] += x * b[k * N + j];
                        }
                    }
                }
            }
            std::hint::black_box(&c);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// What the monitor saw over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// Fraction of CPU time stolen by the hypervisor.
    pub steal: Option<f64>,
    /// Fraction of the machine's CPU time used by other processes than this one.
    pub other_busy: Option<f64>,
    /// The 1-minute load average at the start and at the end.
    pub load1: [Option<f64>; 2],
    /// Logical CPUs.
    pub cpus: usize,
    /// The probe's time before and after the run, seconds.
    pub probe_s: [f64; 2],
    /// after / before − 1.
    pub probe_drift: f64,
    /// Why the run is flagged (empty: quiet enough).
    pub flags: Vec<String>,
}

impl NoiseReport {
    /// Whether any threshold was passed.
    pub fn flagged(&self) -> bool {
        !self.flags.is_empty()
    }
}

/// A monitor started before a run.
#[derive(Debug, Clone)]
pub struct NoiseMonitor {
    start: Option<CpuSnapshot>,
    load1: Option<f64>,
    probe_s: f64,
}

impl NoiseMonitor {
    /// Takes the counters and runs the probe.
    pub fn start() -> Self {
        let probe_s = probe();
        NoiseMonitor {
            start: cpu_snapshot(),
            load1: read("/proc/loadavg").and_then(|t| parse_loadavg(&t)),
            probe_s,
        }
    }

    /// Takes the counters again, runs the probe again, and judges the run. `other_busy` counts every
    /// process but this one: an HTTP replay's server is another process, so there it is an upper
    /// bound on the load that was not the engine's (in process, it is exact).
    pub fn finish(self) -> NoiseReport {
        let end = cpu_snapshot();
        let load_end = read("/proc/loadavg").and_then(|t| parse_loadavg(&t));
        let after = probe();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        judge(
            self.start,
            end,
            [self.load1, load_end],
            cpus,
            [self.probe_s, after],
        )
    }
}

/// The report of two snapshots and probe times (separate from the clock for tests).
pub fn judge(
    start: Option<CpuSnapshot>,
    end: Option<CpuSnapshot>,
    load1: [Option<f64>; 2],
    cpus: usize,
    probe_s: [f64; 2],
) -> NoiseReport {
    let (mut steal, mut other_busy) = (None, None);
    if let (Some(a), Some(b)) = (start, end) {
        let dt = b.total.saturating_sub(a.total) as f64;
        if dt > 0.0 {
            steal = Some(b.steal.saturating_sub(a.steal) as f64 / dt);
            let busy = dt - b.idle.saturating_sub(a.idle) as f64;
            let own = b.own.saturating_sub(a.own) as f64;
            other_busy = Some(((busy - own) / dt).max(0.0));
        }
    }
    let probe_drift = if probe_s[0] > 0.0 {
        probe_s[1] / probe_s[0] - 1.0
    } else {
        0.0
    };
    let mut flags = Vec::new();
    if let Some(s) = steal.filter(|s| *s > MAX_STEAL) {
        flags.push(format!(
            "steal {:.1} % > {:.0} %",
            s * 100.0,
            MAX_STEAL * 100.0
        ));
    }
    if let Some(o) = other_busy.filter(|o| *o > MAX_OTHER_BUSY) {
        flags.push(format!(
            "other processes used {:.0} % of the CPUs > {:.0} %",
            o * 100.0,
            MAX_OTHER_BUSY * 100.0
        ));
    }
    let max_load = load1.iter().flatten().copied().fold(0.0, f64::max);
    if max_load > cpus as f64 {
        flags.push(format!("load average {max_load:.1} > {cpus} CPUs"));
    }
    if probe_drift.abs() > MAX_PROBE_DRIFT {
        flags.push(format!(
            "probe drifted {:+.0} % > ±{:.0} %",
            probe_drift * 100.0,
            MAX_PROBE_DRIFT * 100.0
        ));
    }
    NoiseReport {
        steal,
        other_busy,
        load1,
        cpus,
        probe_s,
        probe_drift,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 5 50 800 20 1 2 22 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // total = 100+5+50+800+20+1+2+22 = 1000, idle 820, steal 22.
        assert_eq!(parse_proc_stat(stat), Some((1000, 820, 22)));
        assert_eq!(parse_proc_stat("cpu 1 2\n"), None);
        let me = "42 (spec sim) S 1 2 3 4 5 6 7 8 9 10 300 45 0 0";
        assert_eq!(parse_self_stat(me), Some(345));
        assert_eq!(parse_loadavg("3.52 2.10 1.00 4/512 999\n"), Some(3.52));
    }

    #[test]
    fn a_quiet_run_is_not_flagged_and_a_busy_one_is_for_each_reason() {
        let a = CpuSnapshot {
            total: 0,
            idle: 0,
            steal: 0,
            own: 0,
        };
        // 1000 ticks: 500 idle, 450 ours, 50 others (5 %), no steal; load 1.5 on 2 CPUs.
        let quiet = CpuSnapshot {
            total: 1000,
            idle: 500,
            steal: 0,
            own: 450,
        };
        let r = judge(
            Some(a),
            Some(quiet),
            [Some(1.5), Some(1.2)],
            2,
            [0.1, 0.105],
        );
        assert_eq!(r.flags, Vec::<String>::new(), "{r:?}");
        assert!((r.other_busy.unwrap() - 0.05).abs() < 1e-12);
        // Others take 40 %, 3 % stolen, load 6, the probe 30 % slower: four flags.
        let busy = CpuSnapshot {
            total: 1000,
            idle: 100,
            steal: 30,
            own: 500,
        };
        let r = judge(Some(a), Some(busy), [Some(6.0), None], 2, [0.1, 0.13]);
        assert_eq!(r.flags.len(), 4, "{:?}", r.flags);
        assert!(r.flagged());
        assert!((r.other_busy.unwrap() - 0.4).abs() < 1e-12);
        // No /proc: only the probe judges.
        let r = judge(None, None, [None, None], 2, [0.1, 0.1]);
        assert!(!r.flagged() && r.steal.is_none());
    }
}
