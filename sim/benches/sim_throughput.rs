//! Simulator throughput: simulated requests per second and events per second on one core, for a
//! 100k-request Poisson workload under the SpecServe policy (quickstart models on an A100 roofline).
//!
//!     cargo bench -p specsim-sim --bench sim_throughput
//!
//! Prints one line per policy; the number that matters is requests/s of `specserve`.

use specsim_sim::scenario::Scenario;
use std::path::Path;
use std::time::Instant;

fn main() {
    let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/quickstart.toml");
    let text = std::fs::read_to_string(quick).expect("quickstart scenario");
    let text = text.replace("requests = 2000", "requests = 100000");
    for (policy, rate) in [
        ("specserve", 20.0),
        ("none", 20.0),
        ("static", 20.0),
        ("specserve", 35.0),
    ] {
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
        // Best of 3 to damp noise from other processes.
        let mut best = f64::MAX;
        let mut events = 0;
        let mut steps = 0;
        for _ in 0..3 {
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
