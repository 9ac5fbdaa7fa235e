//! Capacity planning: the cheapest deployment that meets an SLO-attainment target, and the maximum
//! sustainable request rate of every deployment searched.
//!
//! ## The `[plan]` table
//!
//! ```toml
//! [plan]
//! target = 0.99                 # fraction of requests that must meet every SLO
//! rate_scale = 1.0              # the load to carry, as a multiple of the trace's rate
//! hardware = ["A100-80G", "H100-SXM"]
//! tp = [1, 2]
//! replicas = [1, 2, 4]
//! max_batch = [64, 256]         # engine.max_num_seqs
//! policies = [{ kind = "none" }, { kind = "specserve" }]
//! tolerance = 0.1               # bisection stops when hi / lo <= 1 + tolerance
//! max_rate_scale = 64.0         # search no higher
//! coarse_requests = 2000        # locate each threshold on a prefix of the trace first (0: off)
//! [plan.prices]                 # dollars per GPU-hour, one per hardware
//! "A100-80G" = 1.8
//! "H100-SXM" = 3.0
//! ```
//!
//! Every omitted axis keeps the scenario's own value. A configuration costs
//! `replicas × tp × price(hardware)` per hour.
//!
//! ## How the search stays fast
//!
//! The maximum sustainable rate of a configuration is the largest rate scale `s` (arrival times divided
//! by `s`) at which the attainment target holds, found by [`bisect_max`] on `s` assuming attainment
//! falls as load rises. Four things keep it cheap:
//!
//! 1. **Early stop.** A run may miss at most `⌊(1 − target)·N⌋` requests; it stops as soon as one more
//!    is certain to miss ([`crate::cluster::SimOptions::stop_after_misses`]: finished misses plus
//!    requests still waiting for a first token past the TTFT SLO), so overloaded runs end early
//!    instead of queueing the whole trace, with the verdict the full run would give.
//! 2. **Coarse to fine.** The threshold is first bracketed on the first `coarse_requests` requests,
//!    and the full trace only confirms and narrows that bracket (usually two or three full runs).
//! 3. **Warm starts.** Configurations that share hardware, TP and policy are searched in order of
//!    (max batch, replicas): one with the replica count of an earlier one starts from its bracket, one
//!    with more replicas from the earlier rate times the replica ratio and one tolerance step; groups
//!    run in parallel (rayon), longest first.
//! 4. **Reuse across max batch.** Each run records the largest batch an admission check saw with a
//!    request waiting ([`specsim_core::engine::Engine::admission_peak`]). When that is below the run's
//!    `max_num_seqs` the limit never bound, so every configuration of the group with the same
//!    replicas and a limit above the peak would simulate exactly the same run: its verdict is taken
//!    from the cache instead (warm starts make the scales coincide). On the example Azure plan this
//!    skips 147 of 763 runs; a limit of 64 binds in most runs near the threshold, 128 less often.
//!
//! Results are deterministic: each run is a seeded simulation and the search order within a group is
//! fixed, so thread counts do not change the answer.

use crate::scenario::{set_key, Scenario, ScenarioFile};
use crate::SimError;
use serde::{Deserialize, Serialize};
use specsim_core::policy::PolicyConfig;
use specsim_core::workload::Workload;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `[plan]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Fraction of requests that must meet every SLO (default 0.99).
    #[serde(default = "default_target")]
    pub target: f64,
    /// The load to carry, as a multiple of the trace's rate (default 1).
    #[serde(default = "one_f")]
    pub rate_scale: f64,
    /// Accelerators to try (default: the scenario's).
    #[serde(default)]
    pub hardware: Vec<String>,
    /// Target tensor-parallel degrees (default: the scenario's).
    #[serde(default)]
    pub tp: Vec<u32>,
    /// Replica counts (default: the scenario's).
    #[serde(default)]
    pub replicas: Vec<u32>,
    /// `engine.max_num_seqs` values (default: the scenario's).
    #[serde(default)]
    pub max_batch: Vec<u32>,
    /// Policies (default: the scenario's `[[policies]]`).
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// Dollars per GPU-hour by hardware name.
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    /// Relative width at which bisection stops (default 0.1: rates within 10%).
    #[serde(default = "default_tol")]
    pub tolerance: f64,
    /// Highest rate scale searched (default 64).
    #[serde(default = "default_max_scale")]
    pub max_rate_scale: f64,
    /// Requests in the coarse phase's prefix (default 2000; 0 disables the coarse phase).
    #[serde(default = "default_coarse")]
    pub coarse_requests: usize,
}

fn default_target() -> f64 {
    0.99
}
fn one_f() -> f64 {
    1.0
}
fn default_tol() -> f64 {
    0.1
}
fn default_max_scale() -> f64 {
    64.0
}
fn default_coarse() -> usize {
    2000
}

/// One deployment of the search space.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Accelerator name.
    pub hardware: String,
    /// Target tensor parallelism.
    pub tp: u32,
    /// Replicas.
    pub replicas: u32,
    /// `engine.max_num_seqs`.
    pub max_batch: u32,
    /// Speculation policy.
    pub policy: PolicyConfig,
}

/// The result for one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    /// The configuration.
    pub config: Config,
    /// Policy name as in results (`static-3`).
    pub policy_name: String,
    /// GPUs (replicas × tp).
    pub gpus: u32,
    /// Dollars per hour.
    pub cost_per_hour: f64,
    /// Why the configuration cannot run at all (model does not fit, …); None if it ran.
    pub infeasible: Option<String>,
    /// Largest rate scale known to meet the target (0 if none does).
    pub max_scale: f64,
    /// Smallest rate scale known to miss it (∞ if the search hit `max_rate_scale`).
    pub fail_scale: f64,
    /// `max_scale` in requests per second.
    pub max_rate_rps: f64,
    /// Whether it carries the planned load (`max_scale >= plan.rate_scale`).
    pub meets: bool,
    /// On the Pareto front of (cost ↓, max rate ↑).
    pub pareto: bool,
    /// Simulations run for this configuration (coarse and full; verdicts reused from a run of the same
    /// group at another max batch are not counted).
    pub runs: u32,
}

/// The planner's answer.
#[derive(Debug, Clone)]
pub struct PlanResult {
    /// One row per configuration, in search-space order.
    pub rows: Vec<PlanRow>,
    /// The trace's mean rate at scale 1, requests per second.
    pub base_rate_rps: f64,
    /// The plan's settings.
    pub config: PlanConfig,
    /// Index into `rows` of the cheapest configuration that meets the target.
    pub cheapest: Option<usize>,
}

/// What [`bisect_max`] found: `lo` passes (or is 0), `hi` fails (or is ∞).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bracket {
    /// Largest value known to pass (0 if none passed).
    pub lo: f64,
    /// Smallest value known to fail (∞ if `max` passed).
    pub hi: f64,
    /// Predicate evaluations.
    pub evaluations: u32,
}

/// Finds the largest `x` in `(min, max]` with `pass(x)`, assuming `pass` is true below a threshold and
/// false above it. Starts from the guess bracket `[guess_lo, guess_hi]`, widens it by dividing or
/// multiplying by `grow` (> 1; 2 when the guess is rough, less when it is good) until it holds a pass
/// and a fail, then bisects geometrically until `hi / lo <= 1 + tol`. Errors from `pass` stop the
/// search.
pub fn bisect_max<E>(
    mut pass: impl FnMut(f64) -> Result<bool, E>,
    (guess_lo, guess_hi): (f64, f64),
    (min, max): (f64, f64),
    tol: f64,
    grow: f64,
) -> Result<Bracket, E> {
    let grow = if grow > 1.0 { grow } else { 2.0 };
    let mut n = 0u32;
    let mut eval = |x: f64, n: &mut u32| {
        *n += 1;
        pass(x)
    };
    let mut lo = guess_lo.clamp(min, max);
    let mut hi = guess_hi.clamp(lo, max);
    // Find a passing lower end.
    if !eval(lo, &mut n)? {
        hi = lo;
        loop {
            lo /= grow;
            if lo < min {
                return Ok(Bracket {
                    lo: 0.0,
                    hi,
                    evaluations: n,
                });
            }
            if eval(lo, &mut n)? {
                break;
            }
            hi = lo;
        }
    } else {
        // Find a failing upper end.
        if hi <= lo {
            hi = (lo * grow).min(max);
        }
        loop {
            if hi <= lo {
                return Ok(Bracket {
                    lo,
                    hi: f64::INFINITY,
                    evaluations: n,
                });
            }
            if !eval(hi, &mut n)? {
                break;
            }
            lo = hi;
            hi = (hi * grow).min(max);
        }
    }
    while hi / lo > 1.0 + tol {
        let mid = (lo * hi).sqrt();
        if eval(mid, &mut n)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Bracket {
        lo,
        hi,
        evaluations: n,
    })
}

/// The workload with arrivals compressed by `scale` (the rate multiplied by it).
pub fn scale_arrivals(w: &Workload, scale: f64) -> Workload {
    let mut out = w.clone();
    for r in &mut out.requests {
        r.arrival_ns = (r.arrival_ns as f64 / scale).floor() as u64;
    }
    out
}

/// The first `n` requests of a workload.
fn prefix(w: &Workload, n: usize) -> Workload {
    Workload {
        requests: w.requests.iter().take(n).cloned().collect(),
        categories: w.categories.clone(),
    }
}

impl PlanConfig {
    /// Reads `[plan]` from a scenario (defaults when the section is absent).
    pub fn from_scenario(sc: &Scenario) -> Result<PlanConfig, SimError> {
        let err = |msg: String| SimError::Scenario {
            file: sc.path.display().to_string(),
            msg,
        };
        let t = sc.file.plan.clone().unwrap_or_default();
        let cfg = PlanConfig::deserialize(toml::Value::Table(t))
            .map_err(|e| err(format!("[plan]: {}", e.message().trim())))?;
        if !(cfg.target > 0.0 && cfg.target <= 1.0) {
            return Err(err(format!(
                "plan.target = {} must be in (0, 1]",
                cfg.target
            )));
        }
        if cfg.tolerance.is_nan() || cfg.tolerance <= 0.0 {
            return Err(err("plan.tolerance must be positive".into()));
        }
        if !(cfg.rate_scale > 0.0 && cfg.max_rate_scale >= cfg.rate_scale) {
            return Err(err(
                "plan: need 0 < rate_scale <= max_rate_scale".to_string()
            ));
        }
        for (i, p) in cfg.policies.iter().enumerate() {
            p.validate()
                .map_err(|m| err(format!("plan.policies[{i}]: {m}")))?;
        }
        if cfg.tp.contains(&0) || cfg.replicas.contains(&0) || cfg.max_batch.contains(&0) {
            return Err(err(
                "plan: tp, replicas and max_batch must be at least 1".into()
            ));
        }
        Ok(cfg)
    }

    /// The search space in order (hardware, tp, policy, max batch, then replicas fastest).
    pub fn configs(&self, sc: &Scenario) -> Vec<Config> {
        let m = sc.file.models.as_ref();
        let or = |v: &Vec<u32>, d: u32| if v.is_empty() { vec![d] } else { v.clone() };
        let hardware = if self.hardware.is_empty() {
            vec![m.and_then(|m| m.hardware.clone()).unwrap_or_default()]
        } else {
            self.hardware.clone()
        };
        let tps = or(&self.tp, m.map_or(1, |m| m.tp));
        let reps = or(&self.replicas, sc.file.cluster.replicas);
        let batches = or(&self.max_batch, sc.file.engine.max_num_seqs);
        let policies = if self.policies.is_empty() {
            sc.file.policies.clone()
        } else {
            self.policies.clone()
        };
        let mut out = Vec::new();
        for h in &hardware {
            for &tp in &tps {
                for p in &policies {
                    for &b in &batches {
                        for &r in &reps {
                            out.push(Config {
                                hardware: h.clone(),
                                tp,
                                replicas: r,
                                max_batch: b,
                                policy: p.clone(),
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// The scenario of one configuration.
pub fn config_scenario(base: &Scenario, c: &Config) -> Result<Scenario, SimError> {
    let mut raw = base.raw.clone();
    let set = |raw: &mut toml::Table, k: &str, v: toml::Value| {
        set_key(raw, k, v).map_err(|m| SimError::Config(format!("plan: {m}")))
    };
    if !c.hardware.is_empty() {
        set(
            &mut raw,
            "models.hardware",
            toml::Value::String(c.hardware.clone()),
        )?;
    }
    set(&mut raw, "models.tp", toml::Value::Integer(c.tp.into()))?;
    set(
        &mut raw,
        "cluster.replicas",
        toml::Value::Integer(c.replicas.into()),
    )?;
    set(
        &mut raw,
        "engine.max_num_seqs",
        toml::Value::Integer(c.max_batch.into()),
    )?;
    let policy = toml::Value::try_from(&c.policy)
        .map_err(|e| SimError::Config(format!("plan: policy: {e}")))?;
    raw.insert("policies".into(), toml::Value::Array(vec![policy]));
    if let Some(toml::Value::Table(cl)) = raw.get_mut("cluster") {
        cl.remove("groups");
    }
    let file = ScenarioFile::deserialize(toml::Value::Table(raw.clone())).map_err(|e| {
        SimError::Scenario {
            file: base.path.display().to_string(),
            msg: e.message().trim().to_string(),
        }
    })?;
    let sc = Scenario {
        file,
        path: base.path.clone(),
        base_dir: base.base_dir.clone(),
        raw,
    };
    sc.validate()?;
    Ok(sc)
}

/// One simulation the planner ran, kept for reuse by configurations of the same group.
#[derive(Debug, Clone, Copy)]
struct DoneRun {
    /// `engine.max_num_seqs` it ran with.
    max_batch: u32,
    /// Its [`crate::scenario::PolicyRun::admission_peak`].
    peak: u32,
    /// Whether it met the target.
    pass: bool,
}

/// The runs of one group (configurations that differ only in replicas and max batch), by (replicas,
/// requests in the workload, rate scale). A run whose batch limit never bound (admission peak below
/// it) is exactly the run of every larger limit, and of every smaller one still above the peak, so
/// its verdict is reused instead of simulating again.
#[derive(Debug, Default)]
struct RunCache {
    runs: BTreeMap<(u32, usize, u64), Vec<DoneRun>>,
}

impl RunCache {
    fn get(&self, key: (u32, usize, u64), max_batch: u32) -> Option<bool> {
        self.runs
            .get(&key)?
            .iter()
            .find_map(|r| (r.peak < r.max_batch.min(max_batch)).then_some(r.pass))
    }
}

/// Whether configuration `c` (scenario `sc`) meets `target` on `w` at rate scale `scale`: from the
/// cache when an earlier run of the group decides it, else by a simulation with the early stop
/// (counted in `runs`).
fn passes(
    sc: &Scenario,
    c: &Config,
    w: &Workload,
    scale: f64,
    target: f64,
    cache: &mut RunCache,
    runs: &mut u32,
) -> Result<bool, SimError> {
    let key = (c.replicas, w.len(), scale.to_bits());
    if let Some(pass) = cache.get(key, c.max_batch) {
        return Ok(pass);
    }
    let ws = scale_arrivals(w, scale);
    let n = ws.len();
    let allowed = ((1.0 - target) * n as f64 + 1e-9).floor() as usize;
    let (run, stopped) =
        sc.run_policy_until(&ws, &sc.file.policies[0], false, None, Some(allowed + 1))?;
    *runs += 1;
    let pass = !stopped && n - run.records.iter().filter(|r| r.slo_met).count() <= allowed;
    cache.runs.entry(key).or_default().push(DoneRun {
        max_batch: c.max_batch,
        peak: run.admission_peak,
        pass,
    });
    Ok(pass)
}

/// Options of [`plan`].
pub struct PlanOptions<'a> {
    /// Worker threads (None: one per core).
    pub threads: Option<usize>,
    /// Called with (configurations done, total).
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

/// Searches the scenario's `[plan]` space on `workload` (the scenario's trace at scale 1).
pub fn plan(
    base: &Scenario,
    workload: &Workload,
    opts: &PlanOptions,
) -> Result<PlanResult, SimError> {
    let cfg = PlanConfig::from_scenario(base)?;
    let configs = cfg.configs(base);
    for c in &configs {
        if !c.hardware.is_empty() && !cfg.prices.contains_key(&c.hardware) {
            return Err(SimError::Scenario {
                file: base.path.display().to_string(),
                msg: format!("plan.prices: no price for `{}`", c.hardware),
            });
        }
    }
    let span_s = workload.span_ns() as f64 / 1e9;
    let base_rate = if span_s > 0.0 {
        workload.len() as f64 / span_s
    } else {
        0.0
    };
    // Group configurations that differ only in replicas, in replica order.
    let mut groups: BTreeMap<(usize, usize, usize), Vec<usize>> = BTreeMap::new();
    let key_of = |v: &[String], s: &str| v.iter().position(|x| x == s).unwrap_or(0);
    let hw: Vec<String> = configs.iter().map(|c| c.hardware.clone()).collect();
    let pol: Vec<String> = configs.iter().map(|c| format!("{:?}", c.policy)).collect();
    for (i, c) in configs.iter().enumerate() {
        groups
            .entry((
                key_of(&hw, &c.hardware),
                c.tp as usize,
                key_of(&pol, &pol[i]),
            ))
            .or_default()
            .push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    for g in &mut groups {
        g.sort_by_key(|&i| (configs[i].max_batch, configs[i].replicas, i));
    }
    let coarse = (cfg.coarse_requests > 0 && cfg.coarse_requests < workload.len())
        .then(|| prefix(workload, cfg.coarse_requests));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| SimError::Config(format!("thread pool: {e}")))?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = configs.len();
    let search_group = |g: &[usize]| -> Result<Vec<(usize, PlanRow)>, SimError> {
        let mut out = Vec::new();
        // (max batch, replicas, passing scale, failing scale) of the configurations done.
        let mut seen: Vec<(u32, u32, f64, f64)> = Vec::new();
        let mut cache = RunCache::default();
        for &i in g {
            let c = &configs[i];
            let warm = warm_start(&seen, c, cfg.tolerance);
            let row = search_one(
                base,
                c,
                &cfg,
                (workload, coarse.as_ref()),
                warm,
                base_rate,
                &mut cache,
            )?;
            if row.infeasible.is_none() && row.max_scale > 0.0 {
                seen.push((c.max_batch, c.replicas, row.max_scale, row.fail_scale));
            }
            out.push((i, row));
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Some(p) = opts.progress {
                p(n, total);
            }
        }
        Ok(out)
    };
    // Longest groups first, each worker taking the next group when it is free, so the last group to
    // finish is a short one (speculative policies cost about twice as much per run as `none`).
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| std::cmp::Reverse(group_weight(&configs[groups[g][0]])));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<GroupResult>>> =
        std::sync::Mutex::new((0..groups.len()).map(|_| None).collect());
    pool.scope(|s| {
        for _ in 0..pool.current_num_threads() {
            s.spawn(|_| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&g) = order.get(k) else { break };
                let r = search_group(&groups[g]);
                let failed = r.is_err();
                if let Ok(mut res) = results.lock() {
                    res[g] = Some(r);
                }
                if failed {
                    // Stop handing out groups; the first error in group order is reported.
                    next.store(order.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| SimError::Config("plan: a worker panicked".into()))?;
    let mut searched = Vec::new();
    for r in results.into_iter().flatten() {
        searched.push(r?);
    }
    let mut rows: Vec<Option<PlanRow>> = vec![None; configs.len()];
    for (i, r) in searched.into_iter().flatten() {
        rows[i] = Some(r);
    }
    let mut rows: Vec<PlanRow> = rows.into_iter().flatten().collect();
    mark_pareto(&mut rows);
    let cheapest = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.meets)
        .min_by(|(ia, a), (ib, b)| {
            a.cost_per_hour
                .total_cmp(&b.cost_per_hour)
                .then(b.max_scale.total_cmp(&a.max_scale))
                .then(ia.cmp(ib))
        })
        .map(|(i, _)| i);
    Ok(PlanResult {
        rows,
        base_rate_rps: base_rate,
        config: cfg,
        cheapest,
    })
}

/// The rows of one group's configurations, by configuration index.
type GroupResult = Result<Vec<(usize, PlanRow)>, SimError>;

/// Relative cost of searching a configuration's group: runs of a speculative policy draft and verify
/// several tokens per step and take about twice as long as plain decoding.
fn group_weight(c: &Config) -> u32 {
    if c.policy.build().k_max() > 0 {
        2
    } else {
        1
    }
}

/// The starting bracket of a configuration from those already searched in its group (same hardware,
/// TP and policy): the same replica count at another max batch gives its bracket as is (batch limits
/// move the threshold little); a smaller replica count at the same max batch gives its rate times the
/// replica ratio and one tolerance step more, since routing across more replicas pools their queues
/// and does a little better than linear (on the Azure conversation trace 2 replicas carry 2.2–2.6×
/// what one carries). A guess that lands in the bracket costs one passing and one failing run.
fn warm_start(seen: &[(u32, u32, f64, f64)], c: &Config, tol: f64) -> Option<(f64, f64)> {
    if let Some(&(_, _, lo, hi)) = seen.iter().rev().find(|x| x.1 == c.replicas) {
        return Some((lo, if hi.is_finite() { hi } else { lo * (1.0 + tol) }));
    }
    seen.iter()
        .rev()
        .find(|x| x.0 == c.max_batch && x.1 < c.replicas)
        .map(|&(_, r0, lo, _)| {
            let g = lo * c.replicas as f64 / r0 as f64 * (1.0 + tol);
            (g, g * (1.0 + tol))
        })
}

fn search_one(
    base: &Scenario,
    c: &Config,
    cfg: &PlanConfig,
    (full, coarse): (&Workload, Option<&Workload>),
    warm: Option<(f64, f64)>,
    base_rate: f64,
    cache: &mut RunCache,
) -> Result<PlanRow, SimError> {
    let gpus = c.replicas * c.tp;
    let price = cfg.prices.get(&c.hardware).copied().unwrap_or(0.0);
    let mut row = PlanRow {
        config: c.clone(),
        policy_name: c.policy.build().name(),
        gpus,
        cost_per_hour: price * gpus as f64,
        infeasible: None,
        max_scale: 0.0,
        fail_scale: f64::INFINITY,
        max_rate_rps: 0.0,
        meets: false,
        pareto: false,
        runs: 0,
    };
    let sc = match config_scenario(base, c).and_then(|sc| sc.check_workload(full).map(|_| sc)) {
        Ok(sc) => sc,
        Err(e) => {
            row.infeasible = Some(match e {
                SimError::Scenario { msg, .. } => msg,
                other => other.to_string(),
            });
            return Ok(row);
        }
    };
    let min = cfg.max_rate_scale / 4096.0;
    let range = (min, cfg.max_rate_scale);
    let tol = cfg.tolerance;
    let mut runs = 0;
    // The starting bracket, from the best information at hand: the previous replica count's rate
    // scaled by the replica ratio; else a coarse search on a prefix of the trace; else a rough guess.
    let (guess, grow) = match (warm, coarse) {
        (Some(g), _) => (g, 1.0 + 2.0 * tol),
        (None, Some(cw)) => {
            let b = bisect_max(
                |s| passes(&sc, c, cw, s, cfg.target, cache, &mut runs),
                (cfg.rate_scale, cfg.rate_scale * 2.0),
                range,
                tol,
                2.0,
            )?;
            if b.lo > 0.0 {
                ((b.lo, b.hi.min(cfg.max_rate_scale)), 1.0 + 2.0 * tol)
            } else {
                ((b.hi / 2.0, b.hi), 2.0)
            }
        }
        (None, None) => ((cfg.rate_scale, cfg.rate_scale * 2.0), 2.0),
    };
    let b = bisect_max(
        |s| passes(&sc, c, full, s, cfg.target, cache, &mut runs),
        guess,
        range,
        tol,
        grow,
    )?;
    row.runs = runs;
    row.max_scale = b.lo;
    row.fail_scale = b.hi;
    row.max_rate_rps = b.lo * base_rate;
    row.meets = b.lo >= cfg.rate_scale;
    Ok(row)
}

/// Marks rows on the Pareto front: no other feasible row is at most as costly and carries at least
/// as much, with one of the two strictly better.
fn mark_pareto(rows: &mut [PlanRow]) {
    let pts: Vec<(f64, f64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.cost_per_hour,
                r.max_scale,
                r.infeasible.is_none() && r.max_scale > 0.0,
            )
        })
        .collect();
    for (i, r) in rows.iter_mut().enumerate() {
        let (c, s, ok) = pts[i];
        r.pareto = ok
            && !pts.iter().enumerate().any(|(j, &(c2, s2, ok2))| {
                j != i && ok2 && c2 <= c && s2 >= s && (c2 < c || s2 > s)
            });
    }
    // Among exact ties keep only the first.
    for i in 0..rows.len() {
        if rows[i].pareto
            && rows[..i].iter().any(|r| {
                r.pareto
                    && r.cost_per_hour == rows[i].cost_per_hour
                    && r.max_scale == rows[i].max_scale
            })
        {
            rows[i].pareto = false;
        }
    }
}

/// Header of `plan.csv`.
pub const PLAN_HEADER: &str = "hardware,tp,replicas,max_batch,policy,gpus,cost_per_hour,max_rate_scale,fail_rate_scale,max_rate_rps,cost_per_rps_hour,meets_target,pareto,cheapest,runs,infeasible";

impl PlanResult {
    /// `plan.csv`: one row per configuration.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(PLAN_HEADER);
        s.push('\n');
        for (i, r) in self.rows.iter().enumerate() {
            let c = &r.config;
            let per = if r.max_rate_rps > 0.0 {
                format!("{:.6}", r.cost_per_hour / r.max_rate_rps)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{:.4},{:.6},{},{:.6},{},{},{},{},{},{}",
                c.hardware,
                c.tp,
                c.replicas,
                c.max_batch,
                r.policy_name,
                r.gpus,
                r.cost_per_hour,
                r.max_scale,
                if r.fail_scale.is_finite() {
                    format!("{:.6}", r.fail_scale)
                } else {
                    "inf".into()
                },
                r.max_rate_rps,
                per,
                r.meets,
                r.pareto,
                self.cheapest == Some(i),
                r.runs,
                r.infeasible
                    .as_deref()
                    .map(|m| format!("\"{}\"", m.replace('"', "'")))
                    .unwrap_or_default()
            );
        }
        s
    }

    /// The Pareto table, cheapest first, as printed by `specsim plan`.
    pub fn pareto_table(&self) -> String {
        let mut s = format!(
            "{:<10} {:>3} {:>4} {:>6} {:<14} {:>5} {:>9} {:>10} {:>10} {:>5}\n",
            "hardware",
            "tp",
            "reps",
            "batch",
            "policy",
            "GPUs",
            "$/hour",
            "max scale",
            "max req/s",
            "meets"
        );
        let mut idx: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].pareto)
            .collect();
        idx.sort_by(|&a, &b| {
            self.rows[a]
                .cost_per_hour
                .total_cmp(&self.rows[b].cost_per_hour)
                .then(a.cmp(&b))
        });
        for i in idx {
            let r = &self.rows[i];
            let c = &r.config;
            let _ = writeln!(
                s,
                "{:<10} {:>3} {:>4} {:>6} {:<14} {:>5} {:>9.2} {:>10.3} {:>10.2} {:>5}{}",
                c.hardware,
                c.tp,
                c.replicas,
                c.max_batch,
                r.policy_name,
                r.gpus,
                r.cost_per_hour,
                r.max_scale,
                r.max_rate_rps,
                if r.meets { "yes" } else { "no" },
                if self.cheapest == Some(i) {
                    "  <- cheapest meeting the target"
                } else {
                    ""
                }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_brackets_a_known_threshold_within_tolerance() {
        for (threshold, g_lo, g_hi) in [(3.7, 1.0, 2.0), (0.013, 1.0, 2.0), (40.0, 50.0, 60.0)] {
            let b = bisect_max(
                |x| Ok::<_, ()>(x <= threshold),
                (g_lo, g_hi),
                (1e-3, 64.0),
                0.02,
                2.0,
            )
            .unwrap();
            assert!(b.lo <= threshold && threshold < b.hi, "{threshold}: {b:?}");
            assert!(b.hi / b.lo <= 1.02 + 1e-12, "{threshold}: {b:?}");
        }
    }

    /// Bursty arrivals on one A100 with a small batch limit: overloaded runs queue (requests wait past
    /// their TTFT SLO) and slow down (TPOT misses).
    const SMALL: &str = r#"
seed = 11
[trace.synthetic]
requests = 600
rate = 30.0
arrival = { kind = "gamma", cv = 3.0 }
prompt = { kind = "lognormal", mean = 256, std = 128, max = 2048 }
output = { kind = "lognormal", mean = 128, std = 64, max = 512 }
[slo]
ttft_s = 0.5
tpot_s = 0.03
[cluster]
replicas = 2
router = "least_outstanding"
[engine]
max_num_seqs = 24
[models]
target = "Vicuna-7B"
draft = "Vicuna-68M"
hardware = "A100-80G"
[cost]
kind = "roofline"
[acceptance]
kind = "calibrated"
confidence_beta = [3.0, 2.0]
[[policies]]
kind = "specserve"
"#;

    fn small() -> (Scenario, Workload) {
        let sc = Scenario::parse(
            SMALL,
            std::path::Path::new("small.toml"),
            std::path::Path::new("."),
            &[],
        )
        .unwrap();
        let w = sc.builtin_workload().unwrap();
        (sc, w)
    }

    fn config_of(sc: &Scenario) -> Config {
        Config {
            hardware: "A100-80G".into(),
            tp: 1,
            replicas: sc.file.cluster.replicas,
            max_batch: sc.file.engine.max_num_seqs,
            policy: sc.file.policies[0].clone(),
        }
    }

    #[test]
    fn early_stopped_verdicts_equal_those_of_full_runs() {
        // The early stop (finished misses plus requests still waiting past their TTFT SLO) must give
        // the verdict of the run to completion, on both sides of the threshold.
        let (sc, w) = small();
        let c = config_of(&sc);
        let target = 0.9;
        let allowed = ((1.0 - target) * w.len() as f64 + 1e-9).floor() as usize;
        let (mut verdicts, mut stopped_by_waiting) = (Vec::new(), 0);
        for scale in [0.5, 1.0, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5, 2.0, 5.0] {
            let mut runs = 0;
            let early = passes(
                &sc,
                &c,
                &w,
                scale,
                target,
                &mut RunCache::default(),
                &mut runs,
            )
            .unwrap();
            assert_eq!(runs, 1);
            let ws = scale_arrivals(&w, scale);
            let full = sc.run_policy(&ws, &c.policy, false, None).unwrap();
            let misses = full.records.iter().filter(|r| !r.slo_met).count();
            assert_eq!(full.records.len(), w.len());
            assert_eq!(early, misses <= allowed, "scale {scale}: {misses} misses");
            let (part, stopped) = sc
                .run_policy_until(&ws, &c.policy, false, None, Some(allowed + 1))
                .unwrap();
            let finished_misses = part.records.iter().filter(|r| !r.slo_met).count();
            if stopped {
                assert!(part.records.len() < w.len());
                stopped_by_waiting += usize::from(finished_misses <= allowed);
            }
            verdicts.push(early);
        }
        assert!(
            verdicts.contains(&true) && verdicts.contains(&false),
            "{verdicts:?}"
        );
        assert!(
            stopped_by_waiting > 0,
            "no run was stopped by requests waiting past their TTFT SLO"
        );
    }

    #[test]
    fn a_batch_limit_above_the_admission_peak_gives_the_same_run() {
        // What the run cache relies on: when `max_num_seqs` never bound, any limit above the peak the
        // admission checks saw simulates exactly the same run.
        let (mut sc, w) = small();
        sc.file.engine.max_num_seqs = 256;
        let ws = scale_arrivals(&w, 0.8);
        let policy = sc.file.policies[0].clone();
        let run = sc.run_policy(&ws, &policy, false, None).unwrap();
        let peak = run.admission_peak;
        assert!(peak > 1 && peak < 256, "peak {peak}");
        let csv = crate::metrics::requests_csv(&run.records);
        for limit in [peak + 1, peak + 7, 100_000] {
            sc.file.engine.max_num_seqs = limit;
            let again = sc.run_policy(&ws, &policy, false, None).unwrap();
            assert_eq!(again.admission_peak, peak);
            assert!(
                crate::metrics::requests_csv(&again.records) == csv,
                "limit {limit}"
            );
        }
        // At the peak itself the limit binds (and the cache would not reuse the run).
        sc.file.engine.max_num_seqs = peak;
        let bound = sc.run_policy(&ws, &policy, false, None).unwrap();
        assert!(bound.admission_peak >= peak);
        // And the cache only hands out verdicts of runs whose limit did not bind.
        let mut cache = RunCache::default();
        let key = (2, w.len(), 0.8f64.to_bits());
        cache.runs.insert(
            key,
            vec![DoneRun {
                max_batch: 256,
                peak,
                pass: true,
            }],
        );
        assert_eq!(cache.get(key, peak + 1), Some(true));
        assert_eq!(cache.get(key, peak), None);
        cache.runs.insert(
            key,
            vec![DoneRun {
                max_batch: peak,
                peak,
                pass: false,
            }],
        );
        assert_eq!(cache.get(key, 256), None);
    }

    #[test]
    fn plans_are_identical_across_thread_counts() {
        let (_, w) = small();
        let text = format!(
            "{SMALL}[plan]\ntarget = 0.9\nhardware = [\"A100-80G\", \"H100-SXM\"]\nreplicas = [1, 2]\nmax_batch = [16, 64]\npolicies = [{{ kind = \"none\" }}, {{ kind = \"static\", k = 3 }}]\ncoarse_requests = 200\n[plan.prices]\n\"A100-80G\" = 1.8\n\"H100-SXM\" = 2.9\n"
        );
        let sc2 = Scenario::parse(
            &text,
            std::path::Path::new("p.toml"),
            std::path::Path::new("."),
            &[],
        )
        .unwrap();
        let run = |threads| {
            plan(
                &sc2,
                &w,
                &PlanOptions {
                    threads: Some(threads),
                    progress: None,
                },
            )
            .unwrap()
            .to_csv()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        assert_eq!(one.lines().count(), 1 + 2 * 2 * 2 * 2);
    }

    #[test]
    fn bisection_reports_the_ends_of_the_range() {
        let all = bisect_max(|_| Ok::<_, ()>(true), (1.0, 2.0), (0.01, 8.0), 0.05, 1.5).unwrap();
        assert_eq!((all.lo, all.hi), (8.0, f64::INFINITY));
        let none = bisect_max(|_| Ok::<_, ()>(false), (1.0, 2.0), (0.01, 8.0), 0.05, 1.5).unwrap();
        assert_eq!(none.lo, 0.0);
    }
}
