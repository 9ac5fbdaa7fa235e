//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use specsim_sim::scenario::{PolicyRun, Scenario};
use std::path::Path;

/// Parses a scenario from TOML text (relative paths against the crate directory).
pub fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, Path::new("test.toml"), Path::new("."), &[])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs every policy of a scenario on its built-in workload.
pub fn run_all(sc: &Scenario) -> Vec<PolicyRun> {
    let w = sc.builtin_workload().unwrap();
    sc.check_workload(&w).unwrap();
    sc.file
        .policies
        .iter()
        .map(|p| sc.run_policy(&w, p, true, None).unwrap())
        .collect()
}
