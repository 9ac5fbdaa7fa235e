//! Simulator throughput: simulated requests per second and events per second on one core, for a
//! 100k-request Poisson workload under the SpecServe policy (quickstart models on an A100 roofline).
//!
//!     cargo bench -p specsim-sim --bench sim_throughput
//!
//! Prints one line per policy; the number that matters is requests/s of `specserve`.
//!
//! For profiling (instruction counts under callgrind/cachegrind) the run can be narrowed:
//! `SIM_BENCH_ONLY=specserve@20` runs one (policy, rate) case, `SIM_BENCH_REQUESTS=20000` sets the
//! request count and `SIM_BENCH_REPEATS=1` the repeats (best of 3 by default), e.g.
//!
//!     SIM_BENCH_ONLY=specserve@20 SIM_BENCH_REPEATS=1 valgrind --tool=callgrind \
//!         --toggle-collect='*run_policy_until*' target/release/deps/sim_throughput-<hash>
//!
//! (`*run_policy*` also matches `run_policy_until`, which `run_policy` calls: the second match
//! toggles collection off again and the profile comes out nearly empty.)

use specsim_sim::scenario::Scenario;
use std::path::Path;
use std::time::Instant;

const CASES: [(&str, f64); 4] = [
    ("specserve", 20.0),
    ("none", 20.0),
    ("static", 20.0),
    ("specserve", 35.0),
];

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v} is not a valid value")),
        Err(_) => default,
    }
}

fn main() {
    let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/quickstart.toml");
    let text = std::fs::read_to_string(quick).expect("quickstart scenario");
    let requests: u64 = env_or("SIM_BENCH_REQUESTS", 100_000);
    let repeats: u32 = env_or("SIM_BENCH_REPEATS", 3);
    let only: String = env_or("SIM_BENCH_ONLY", String::new());
    let text = text.replace("requests = 2000", &format!("requests = {requests}"));
    for (policy, rate) in CASES {
        if !only.is_empty() && only != format!("{policy}@{rate}") {
            continue;
        }
        let sets = vec![format!("trace.synthetic.rate={rate}")];
        let sc = Scenario::parse(&text, Path::new(quick), Path::new("."), &sets).expect("scenario");
        let w = sc.builtin_workload().expect("workload");
        let p = sc
            .file
            .policies
            .iter()
            .find(|p| p.build().name().starts_with(policy))
            .expect("policy")
            .clone();
        // Best of `repeats` to damp noise from other processes.
        let mut best = f64::MAX;
        let mut events = 0;
        let mut steps = 0;
        for _ in 0..repeats {
            let t = Instant::now();
            let run = sc.run_policy(&w, &p, false, None).expect("run");
            best = best.min(t.elapsed().as_secs_f64());
            events = run.events;
            steps = run.summary.finished;
        }
        println!(
            "{:<10} rate {:>4.0}/s: {} requests in {:.3} s -> {:>9.0} requests/s, {:>10.0} events/s ({} events)",
            p.build().name(),
            rate,
            steps,
            best,
            w.len() as f64 / best,
            events as f64 / best,
            events
        );
    }
}
