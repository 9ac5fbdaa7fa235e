//! How noisy the machine was during a live run, recorded beside its results.
//!
//! Three signals: the CPU time the hypervisor stole and the time other processes used (both from
//! `/proc/stat`, the latter less this process's own time from `/proc/self/stat`), the 1-minute load
//! average (`/proc/loadavg`), and the drift of a fixed CPU probe timed before and after the run: the
//! median of [`ProbeSettings::reps`] repetitions of one kernel (two 256 × 256 matrix products, the
//! same work every time: ~30 ms in a dev build, ~6 ms in a release build on a 2-core VM). One short probe (5 ms) drifted −47 % to +58 % on a quiet
//! machine — a scheduler tick or a cache miss storm is a large part of 5 ms — so a single timing cannot
//! decide; the median of 15 longer ones can, and every repetition is recorded so a reader can see the
//! spread. The load average counts the engine's own threads, so it judges only where `/proc/stat`
//! is missing. A run past any threshold ([`NoiseThresholds`]) is flagged; the flags
//! travel with the results so a summary can set flagged runs apart rather than average them in.
//! On systems without `/proc` the counters are `None` and only the probe is recorded.
//!
//! **Where the engine kept a step log, its own forwards judge the machine's speed instead of the
//! probe** ([`forward_speed`], [`with_forward_speed`]). On the 2-core VM the probe's kernel ran in
//! one of two speeds for whole series (5.5–6.3 ms or 8.5–11 ms, 15 repetitions alike), so its
//! before/after medians drifted −43 % to +44 % between quiet runs and flagged 20 of 36 replicates,
//! 19 on the probe alone; the model's hundreds to thousands of forwards per run, each set against
//! the cost model's prediction for its batch, show the speed the run actually had. A run whose
//! median measured/predicted ratio moved by more than [`MAX_FORWARD_DRIFT`] between its first and
//! second half is flagged; the probe is still recorded, and judges only without a step log.

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Default: steal above this fraction of CPU time flags a run.
pub const MAX_STEAL: f64 = 0.02;
/// Default: CPU time used by other processes above this fraction of the machine flags a run.
pub const MAX_OTHER_BUSY: f64 = 0.10;
/// Default: the probe's median slower or faster by more than this fraction after the run than
/// before flags it.
pub const MAX_PROBE_DRIFT: f64 = 0.10;
/// Default: the run's own forwards, measured/predicted, slower or faster by more than this fraction
/// in its second half than in its first flags it.
pub const MAX_FORWARD_DRIFT: f64 = 0.10;
/// Default repetitions of the probe kernel, before and after.
pub const PROBE_REPS: usize = 15;

/// When a run is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseThresholds {
    /// Steal above this fraction of CPU time.
    pub max_steal: f64,
    /// Other processes' CPU time above this fraction of the machine.
    pub max_other_busy: f64,
    /// |after / before − 1| of the probe's medians above this.
    pub max_probe_drift: f64,
}

impl Default for NoiseThresholds {
    fn default() -> Self {
        NoiseThresholds {
            max_steal: MAX_STEAL,
            max_other_busy: MAX_OTHER_BUSY,
            max_probe_drift: MAX_PROBE_DRIFT,
        }
    }
}

/// How the probe runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSettings {
    /// Repetitions of the kernel, before and after (at least 1).
    pub reps: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings { reps: PROBE_REPS }
    }
}

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

/// The probe kernel once: two 256 × 256 matrix products (~30 ms in a dev build, ~6 ms in a release
/// build on one core of the study's VM), seconds.
fn probe_kernel(a: &[f64], b: &[f64], c: &mut [f64]) -> f64 {
    const N: usize = PROBE_N;
    let t = Instant::now();
    for _ in 0..2 {
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
}

/// The probe's matrix side.
const PROBE_N: usize = 256;

/// How long the kernel runs, untimed, before the timed repetitions. On the study's VM the first
/// 50–150 ms of work after an idle spell ran at 1.5–2× the settled time (the virtual CPU speeding up),
/// in the before and the after series alike; timed cold, that ramp alone drifted the medians by
/// −10 % to −43 % between identical quiet runs.
pub const PROBE_WARM_UP_S: f64 = 0.3;

/// The fixed probe: `reps` timings of the kernel, seconds, in the order taken, after
/// [`PROBE_WARM_UP_S`] of untimed runs.
pub fn probe(reps: usize) -> Vec<f64> {
    let n = PROBE_N * PROBE_N;
    let a: Vec<f64> = (0..n).map(|i| (i % 7) as f64 * 0.25).collect();
    let b: Vec<f64> = (0..n).map(|i| (i % 5) as f64 * 0.5).collect();
    let mut c = vec![0.0; n];
    let mut warm = 0.0;
    while warm < PROBE_WARM_UP_S {
        warm += probe_kernel(&a, &b, &mut c);
    }
    (0..reps.max(1))
        .map(|_| probe_kernel(&a, &b, &mut c))
        .collect()
}

/// The median of some timings (0 for none).
pub fn median(times: &[f64]) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    let mut v = times.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
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
    /// The probe's median time before and after the run, seconds.
    pub probe_s: [f64; 2],
    /// Every repetition of the probe before and after the run, seconds, in the order taken.
    #[serde(default)]
    pub probe_reps_s: [Vec<f64>; 2],
    /// after / before − 1 of the medians.
    pub probe_drift: f64,
    /// The thresholds the run was judged by.
    #[serde(default)]
    pub thresholds: NoiseThresholds,
    /// Why the run is flagged (empty: quiet enough).
    pub flags: Vec<String>,
    /// The run's own target forwards against the cost model, when its step log was read
    /// ([`with_forward_speed`]); the probe then no longer judges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_speed: Option<ForwardSpeed>,
}

/// The speed a live run's target forwards had: medians of measured / predicted time per forward.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForwardSpeed {
    /// Target forwards with a prediction.
    pub forwards: usize,
    /// Median ratio over the run.
    pub ratio: f64,
    /// Median ratio over its first and second half (in log order).
    pub halves: [f64; 2],
    /// second / first − 1.
    pub drift: f64,
}

/// The speed of the target forwards of a step log; `None` under 20 forwards (too few to halve).
pub fn forward_speed(rows: &[super::steps::StepRow]) -> Option<ForwardSpeed> {
    let ratios = super::steps::target_ratios(rows);
    if ratios.len() < 20 {
        return None;
    }
    let (first, second) = ratios.split_at(ratios.len() / 2);
    let halves = [median(first), median(second)];
    Some(ForwardSpeed {
        forwards: ratios.len(),
        ratio: median(&ratios),
        halves,
        drift: halves[1] / halves[0] - 1.0,
    })
}

/// `report` judged again with the run's step log: the probe's drift no longer flags it, a drift of
/// its forwards' speed beyond `max_drift` does (see the module doc). Without enough logged forwards
/// the report is unchanged.
pub fn with_forward_speed(
    mut report: NoiseReport,
    rows: &[super::steps::StepRow],
    max_drift: f64,
) -> NoiseReport {
    let Some(speed) = forward_speed(rows) else {
        return report;
    };
    report.flags = report.interference_flags();
    if speed.drift.abs() > max_drift {
        report.flags.push(format!(
            "forwards' speed drifted {:+.0} % > ±{:.0} % (median measured/predicted {:.3} → {:.3})",
            speed.drift * 100.0,
            max_drift * 100.0,
            speed.halves[0],
            speed.halves[1]
        ));
    }
    report.forward_speed = Some(speed);
    report
}

impl NoiseReport {
    /// The flags of the other processes and the hypervisor (steal, other processes' CPU, the load
    /// average where that is missing), by the report's thresholds; not the probe's.
    pub fn interference_flags(&self) -> Vec<String> {
        let t = &self.thresholds;
        let mut flags = Vec::new();
        if let Some(s) = self.steal.filter(|s| *s > t.max_steal) {
            flags.push(format!(
                "steal {:.1} % > {:.0} %",
                s * 100.0,
                t.max_steal * 100.0
            ));
        }
        if let Some(o) = self.other_busy.filter(|o| *o > t.max_other_busy) {
            flags.push(format!(
                "other processes used {:.0} % of the CPUs > {:.0} %",
                o * 100.0,
                t.max_other_busy * 100.0
            ));
        }
        // The load average counts the engine's own threads too (an engine using every core alone
        // puts it above the CPU count), so it only judges when the exact count of other processes'
        // CPU time is missing.
        let max_load = self.load1.iter().flatten().copied().fold(0.0, f64::max);
        if self.other_busy.is_none() && max_load > self.cpus as f64 {
            flags.push(format!("load average {max_load:.1} > {} CPUs", self.cpus));
        }
        flags
    }

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
    probe_before: Vec<f64>,
    probe: ProbeSettings,
    thresholds: NoiseThresholds,
}

impl NoiseMonitor {
    /// Runs the probe and takes the counters.
    pub fn start(probe_settings: ProbeSettings, thresholds: NoiseThresholds) -> Self {
        let probe_before = probe(probe_settings.reps);
        NoiseMonitor {
            start: cpu_snapshot(),
            load1: read("/proc/loadavg").and_then(|t| parse_loadavg(&t)),
            probe_before,
            probe: probe_settings,
            thresholds,
        }
    }

    /// Takes the counters again, runs the probe again, and judges the run. `other_busy` counts every
    /// process but this one: an HTTP replay's server is another process, so there it is an upper
    /// bound on the load that was not the engine's (in process, it is exact).
    pub fn finish(self) -> NoiseReport {
        let end = cpu_snapshot();
        let load_end = read("/proc/loadavg").and_then(|t| parse_loadavg(&t));
        let after = probe(self.probe.reps);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        judge(
            self.start,
            end,
            [self.load1, load_end],
            cpus,
            [self.probe_before, after],
            &self.thresholds,
        )
    }
}

/// The report of two snapshots and the probe's repetitions before and after (separate from the clock
/// for tests).
pub fn judge(
    start: Option<CpuSnapshot>,
    end: Option<CpuSnapshot>,
    load1: [Option<f64>; 2],
    cpus: usize,
    probe_reps_s: [Vec<f64>; 2],
    t: &NoiseThresholds,
) -> NoiseReport {
    let probe_s = [median(&probe_reps_s[0]), median(&probe_reps_s[1])];
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
    let mut report = NoiseReport {
        steal,
        other_busy,
        load1,
        cpus,
        probe_s,
        probe_reps_s,
        probe_drift,
        thresholds: *t,
        flags: Vec::new(),
        forward_speed: None,
    };
    report.flags = report.interference_flags();
    if probe_drift.abs() > t.max_probe_drift {
        report.flags.push(format!(
            "probe median drifted {:+.0} % > ±{:.0} %",
            probe_drift * 100.0,
            t.max_probe_drift * 100.0
        ));
    }
    report
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
        let t = NoiseThresholds::default();
        let r = judge(
            Some(a),
            Some(quiet),
            [Some(1.5), Some(1.2)],
            2,
            [vec![0.1], vec![0.105]],
            &t,
        );
        assert_eq!(r.flags, Vec::<String>::new(), "{r:?}");
        assert!((r.other_busy.unwrap() - 0.05).abs() < 1e-12);
        // Others take 40 %, 3 % stolen, the probe 30 % slower: three flags (the load of 6 is not
        // judged when the other processes' share is known).
        let busy = CpuSnapshot {
            total: 1000,
            idle: 100,
            steal: 30,
            own: 500,
        };
        let r = judge(
            Some(a),
            Some(busy),
            [Some(6.0), None],
            2,
            [vec![0.1], vec![0.13]],
            &t,
        );
        assert_eq!(r.flags.len(), 3, "{:?}", r.flags);
        assert!(r.flagged());
        assert!((r.other_busy.unwrap() - 0.4).abs() < 1e-12);
        // No /proc: only the probe judges.
        let r = judge(None, None, [None, None], 2, [vec![0.1], vec![0.1]], &t);
        assert!(!r.flagged() && r.steal.is_none());
        // No /proc/stat but a load average of 6 on 2 CPUs: the load judges.
        let r = judge(None, None, [Some(6.0), None], 2, [vec![0.1], vec![0.1]], &t);
        assert_eq!(r.flags.len(), 1, "{:?}", r.flags);
        assert!(r.flags[0].starts_with("load average 6.0 > 2 CPUs"));
        // An engine on every core (load 2.9 on 2 CPUs, 45 % ours, 5 % others) is not flagged.
        let r = judge(
            Some(a),
            Some(quiet),
            [Some(2.9), Some(2.4)],
            2,
            [vec![0.1], vec![0.1]],
            &t,
        );
        assert!(!r.flagged(), "{:?}", r.flags);
        // Looser thresholds let the busy run through.
        let loose = NoiseThresholds {
            max_steal: 0.05,
            max_other_busy: 0.5,
            max_probe_drift: 0.35,
        };
        let r = judge(
            Some(a),
            Some(busy),
            [Some(6.0), None],
            2,
            [vec![0.1], vec![0.13]],
            &loose,
        );
        assert!(!r.flagged(), "{:?}", r.flags);
        assert_eq!(r.thresholds, loose);
    }

    #[test]
    fn the_probe_is_judged_on_medians_so_outlying_repetitions_do_not_flag() {
        let t = NoiseThresholds::default();
        // Before: 15 repetitions around 30 ms with two outliers (a tick, a migration), one of them
        // +58 %; after: around 31 ms with one −47 % outlier. Medians 30 and 31 ms: drift +3.3 %,
        // under 10 %, although single repetitions differ by −47 % to +58 %.
        let mut before = vec![0.030; 13];
        before.extend([0.0474, 0.045]);
        let mut after = vec![0.031; 14];
        after.push(0.0159);
        let r = judge(None, None, [None, None], 2, [before.clone(), after], &t);
        assert!(!r.flagged(), "{:?}", r.flags);
        assert!((r.probe_s[0] - 0.030).abs() < 1e-12 && (r.probe_s[1] - 0.031).abs() < 1e-12);
        assert!((r.probe_drift - (0.031 / 0.030 - 1.0)).abs() < 1e-12);
        assert_eq!(r.probe_reps_s[0].len(), 15);
        // A real slowdown moves the median: after at 36 ms on most repetitions (+20 %) flags it.
        let mut slow = vec![0.036; 10];
        slow.extend([0.030; 5]);
        let r = judge(None, None, [None, None], 2, [before, slow], &t);
        assert_eq!(r.flags.len(), 1, "{:?}", r.flags);
        assert!(r.flags[0].contains("+20 %"), "{:?}", r.flags);
    }

    #[test]
    fn median_of_odd_even_and_no_timings() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    fn row(
        kind: crate::fidelity::steps::ForwardKind,
        measured: f64,
    ) -> crate::fidelity::steps::StepRow {
        crate::fidelity::steps::StepRow {
            time_s: 0.0,
            kind,
            seqs: 1,
            new_tokens: 1,
            prefill_tokens: 0,
            measured_s: measured,
            predicted_s: 0.010,
        }
    }

    #[test]
    fn the_runs_own_forwards_judge_its_speed_instead_of_the_probe() {
        use crate::fidelity::steps::ForwardKind::{Decode, Draft};
        // A report flagged on the probe (+40 %) and on 3 % steal.
        let a = CpuSnapshot {
            total: 0,
            idle: 0,
            steal: 0,
            own: 0,
        };
        let b = CpuSnapshot {
            total: 1000,
            idle: 500,
            steal: 30,
            own: 450,
        };
        let t = NoiseThresholds::default();
        let report = judge(
            Some(a),
            Some(b),
            [None, None],
            2,
            [vec![0.005], vec![0.007]],
            &t,
        );
        assert_eq!(report.flags.len(), 2, "{:?}", report.flags);
        // 40 decode forwards predicted at 10 ms: the first 20 take 10 ms, the next 20 take 11.5 ms
        // (+15 %); drafts (ignored) take anything.
        let mut rows: Vec<_> = (0..40)
            .map(|i| row(Decode, if i < 20 { 0.010 } else { 0.0115 }))
            .collect();
        rows.insert(5, row(Draft, 1.0));
        let judged = with_forward_speed(report.clone(), &rows, MAX_FORWARD_DRIFT);
        let speed = judged.forward_speed.unwrap();
        assert_eq!(speed.forwards, 40);
        assert!((speed.halves[0] - 1.0).abs() < 1e-12 && (speed.halves[1] - 1.15).abs() < 1e-12);
        assert!((speed.drift - 0.15).abs() < 1e-12);
        // The probe's flag is gone, steal's stays, the forwards' drift is added.
        assert_eq!(judged.flags.len(), 2, "{:?}", judged.flags);
        assert!(judged.flags[0].starts_with("steal 3.0 %"));
        assert!(judged.flags[1].contains("+15 %"), "{:?}", judged.flags);
        // Steady forwards: only steal is left.
        let steady: Vec<_> = (0..40).map(|_| row(Decode, 0.012)).collect();
        let judged = with_forward_speed(report.clone(), &steady, MAX_FORWARD_DRIFT);
        assert_eq!(judged.flags.len(), 1, "{:?}", judged.flags);
        assert!((judged.forward_speed.unwrap().ratio - 1.2).abs() < 1e-12);
        // Under 20 forwards: the probe still judges.
        assert_eq!(with_forward_speed(report.clone(), &rows[..15], 0.1), report);
    }
}
