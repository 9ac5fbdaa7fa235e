//! Writing a replay's result directory: the simulator's schema plus two replay-only files.
//!
//! `DIR/` gets `requests.csv` and `summary.json` exactly as `specsim run` writes them (failed requests
//! are rows with an `error`, counted in `summary.failed`), so `specsim compare` joins the two by id.
//! Beside them:
//!
//! - `chunks.csv`: every output arrival of every request, `id,index,time_s,gap_s,tokens`
//!   (`time_s` from the run start, `gap_s` since the request's previous arrival, or since its
//!   scheduled arrival for the first one, i.e. its TTFT);
//! - `replay.json`: [`crate::ReplayStats`]: failures by kind, send lag, inter-token gaps, how far
//!   the engine's prompt token counts were from the trace's.

use crate::driver::ReplayOutcome;
use crate::ReplayError;
use specsim_sim::metrics::write_result_dir;
use std::fmt::Write as _;
use std::path::Path;

/// Renders `chunks.csv`.
pub fn chunks_csv(outcome: &ReplayOutcome) -> String {
    let mut s = String::from("id,index,time_s,gap_s,tokens\n");
    for r in &outcome.results {
        let mut prev = r.arrival_s;
        for (i, &(t, n)) in r.chunks.iter().enumerate() {
            let _ = writeln!(s, "{},{},{:.9},{:.9},{}", r.id, i, t, t - prev, n);
            prev = t;
        }
    }
    s
}

/// Writes `requests.csv`, `summary.json`, `chunks.csv` and `replay.json` into `dir`.
pub fn write_replay_dir(dir: &Path, outcome: &ReplayOutcome) -> Result<(), ReplayError> {
    write_result_dir(dir, &outcome.records, &outcome.summary, None)?;
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        specsim_sim::sweep::write_atomically(&p, text.as_bytes()).map_err(ReplayError::from)
    };
    w("chunks.csv", chunks_csv(outcome))?;
    w(
        "replay.json",
        serde_json::to_string_pretty(&outcome.stats).unwrap_or_default() + "\n",
    )
}
