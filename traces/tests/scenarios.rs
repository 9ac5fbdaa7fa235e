//! Every scenario in `scenarios/traces/` loads its real trace (or generates its workload) through `load_workload`, fits the
//! configured replicas' KV cache, and simulates under each of its policies (on its first 300 requests,
//! to keep the test quick; `specsim run` replays the whole trace). Skipped when the shared data is absent.

mod common;

use specsim_sim::scenario::Scenario;
use specsim_traces::load_workload;
use std::path::Path;

#[test]
fn every_trace_scenario_loads_and_simulates() {
    if common::shared_traces().is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/traces");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        7,
        "one scenario per real trace file, and the shared_prefix generator's: {files:?}"
    );
    for f in files {
        let sc = Scenario::load(&f, &["trace.limit=300".to_string()])
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let loaded = load_workload(&sc.file.trace, &sc.base_dir, sc.file.seed)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            loaded.workload.len(),
            300,
            "{}: {}",
            f.display(),
            loaded.report
        );
        sc.check_workload(&loaded.workload)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for p in &sc.file.policies {
            let run = sc
                .run_policy(&loaded.workload, p, false, None)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!(run.summary.finished, 300, "{} {}", f.display(), run.name);
        }
    }
}
