//! `specsim bench`: the simulator's scale benchmark. Each point (replicas × requests × policy) runs the
//! quickstart deployment (Vicuna-7B + Vicuna-68M draft on A100 roofline replicas, Poisson arrivals at
//! 20 req/s per replica, lognormal lengths) through `specsim run`'s streaming path — results written
//! to disk as requests finish — in a child process of its own, so each point's peak RSS is its own.
//! Reports wall time, CPU time, peak RSS, simulated requests/s and events/s.

use super::run::QUICKSTART;
use anyhow::{bail, Context, Result};
use clap::Args;
use specsim_sim::metrics::EXACT_PERCENTILE_LIMIT;
use specsim_sim::scenario::{Scenario, StreamOptions, DEFAULT_SYNC_INTERVAL_NS};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `specsim bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Points as REPLICASxREQUESTS, comma-separated (requests may use e notation).
    #[arg(
        long,
        default_value = "1x1e6,16x1e6,64x3e6,256x1e7",
        value_name = "RxN,..."
    )]
    pub points: String,
    /// Policies to run at each point (scenario policy names of the quickstart: none, static-3,
    /// specserve).
    #[arg(long, default_value = "none,specserve")]
    pub policies: String,
    /// Mean arrival rate per replica, requests/s.
    #[arg(long, default_value_t = 20.0)]
    pub rate_per_replica: f64,
    /// Replicas in parallel between synchronisation points (`on`, the default here, is exact with the
    /// round-robin router the benchmark uses), or the sequential loop (`off`).
    #[arg(long, default_value = "on")]
    pub parallel: String,
    /// Where the points write their result directories [default: a temporary directory, removed].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the table as JSON lines here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: run one point (REPLICAS:REQUESTS:POLICY) in this process and print its JSON line.
    #[arg(long, hide = true)]
    pub point: Option<String>,
}

/// One measured point.
#[derive(serde::Serialize, serde::Deserialize)]
struct Point {
    replicas: u32,
    requests: usize,
    policy: String,
    parallel: bool,
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
    events: u64,
    requests_per_s: f64,
    events_per_s: f64,
    percentiles: String,
}

fn parse_count(s: &str) -> Result<usize> {
    let v: f64 = s
        .trim()
        .parse()
        .with_context(|| format!("`{s}` is not a number"))?;
    if !(v >= 1.0 && v.is_finite() && v.fract() == 0.0) {
        bail!("`{s}` must be a positive whole number");
    }
    Ok(v as usize)
}

/// Peak resident set (VmHWM) of this process, MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU seconds of this process (Linux clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn run_point(spec: &str, a: &BenchArgs) -> Result<()> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [r, n, policy] = parts[..] else {
        bail!("--point {spec}: expected REPLICAS:REQUESTS:POLICY");
    };
    let replicas = parse_count(r)? as u32;
    let requests = parse_count(n)?;
    let sets = vec![
        format!("trace.synthetic.requests={requests}"),
        format!(
            "trace.synthetic.rate={}",
            a.rate_per_replica * replicas as f64
        ),
        format!("cluster.replicas={replicas}"),
        "cluster.router=round_robin".to_string(),
    ];
    let sc = Scenario::parse(
        QUICKSTART,
        Path::new("quickstart.toml (embedded)"),
        Path::new("."),
        &sets,
    )?;
    let p = sc
        .file
        .policies
        .iter()
        .find(|p| p.build().name() == policy)
        .with_context(|| format!("the quickstart scenario has no policy `{policy}`"))?
        .clone();
    let out = a
        .out
        .clone()
        .context("internal: --point needs --out")?
        .join(format!("{replicas}x{requests}-{policy}"));
    let parallel = a.parallel == "on" && replicas > 1;
    let source = super::run::Source::new(&sc, true)?;
    let t = Instant::now();
    let run = sc.run_policy_streaming(
        source.open()?,
        &p,
        policy,
        &out,
        &StreamOptions {
            exact_limit: EXACT_PERCENTILE_LIMIT,
            sync_interval: parallel.then_some(DEFAULT_SYNC_INTERVAL_NS),
            ..Default::default()
        },
    )?;
    let wall = t.elapsed().as_secs_f64();
    let point = Point {
        replicas,
        requests,
        policy: policy.to_string(),
        parallel,
        wall_s: wall,
        cpu_s: cpu_seconds(),
        peak_rss_mib: peak_rss_mib(),
        events: run.stats.events,
        requests_per_s: run.stats.finished as f64 / wall,
        events_per_s: run.stats.events as f64 / wall,
        percentiles: run
            .summary
            .percentiles
            .clone()
            .map_or("exact".into(), |_| "ddsketch".into()),
    };
    println!("{}", serde_json::to_string(&point)?);
    Ok(())
}

/// `specsim bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    if !matches!(a.parallel.as_str(), "on" | "off") {
        bail!("--parallel {}: expected on or off", a.parallel);
    }
    if let Some(spec) = &a.point {
        return run_point(spec, &a);
    }
    let mut points = Vec::new();
    for p in a.points.split(',').filter(|p| !p.trim().is_empty()) {
        let (r, n) = p
            .trim()
            .split_once('x')
            .with_context(|| format!("--points: `{p}` is not REPLICASxREQUESTS"))?;
        points.push((parse_count(r)?, parse_count(n)?));
    }
    let policies: Vec<&str> = a.policies.split(',').map(str::trim).collect();
    let tmp;
    let out = match &a.out {
        Some(o) => o.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().context("locating the specsim binary")?;
    println!(
        "{:>8} {:>10} {:<10} {:>8} {:>8} {:>9} {:>12} {:>12} {:>9}",
        "replicas",
        "requests",
        "policy",
        "wall s",
        "CPU s",
        "RSS MiB",
        "requests/s",
        "events/s",
        "pctl"
    );
    let mut lines = String::new();
    for &(r, n) in &points {
        for policy in &policies {
            let o = std::process::Command::new(&exe)
                .arg("bench")
                .arg("--point")
                .arg(format!("{r}:{n}:{policy}"))
                .arg("--out")
                .arg(&out)
                .arg("--parallel")
                .arg(&a.parallel)
                .arg("--rate-per-replica")
                .arg(a.rate_per_replica.to_string())
                .output()
                .context("running a benchmark point")?;
            if !o.status.success() {
                bail!(
                    "point {r}x{n} {policy} failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text.lines().last().unwrap_or("").to_string();
            let p: Point = serde_json::from_str(&line)
                .with_context(|| format!("reading the point's report `{line}`"))?;
            println!(
                "{:>8} {:>10} {:<10} {:>8.1} {:>8.1} {:>9.0} {:>12.0} {:>12.0} {:>9}",
                p.replicas,
                p.requests,
                p.policy,
                p.wall_s,
                p.cpu_s,
                p.peak_rss_mib,
                p.requests_per_s,
                p.events_per_s,
                p.percentiles
            );
            lines += &line;
            lines.push('\n');
            if a.out.is_none() {
                let _ = std::fs::remove_dir_all(out.join(format!("{r}x{n}-{policy}")));
            }
        }
    }
    if let Some(j) = &a.json {
        std::fs::write(j, lines).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
