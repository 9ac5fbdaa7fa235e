//! `serve --step-log FILE`: one CSV row per model forward, its measured time beside the cost model's
//! prediction for the same batch. This is how a gap between `specsim run` and a live engine is put on
//! the cost term (step times) or elsewhere (queueing, acceptance): the ratio `measured_s / predicted_s`
//! by step kind and batch shape.
//!
//! Columns: `time_s` (end of the forward, seconds since the engine started), `model` (`draft` or
//! `target`), `seqs`, `new_tokens`, `prefill_tokens`, `context_tokens` (the batch shape the cost model
//! sees), `measured_s`, `predicted_s`. Rows are flushed every [`FLUSH_EVERY`] forwards, whenever the
//! engine runs out of work, and when it stops, so a killed server loses at most that many.
//!
//! A sibling file ([`seqs_path`]: `steps.csv` → `steps.seqs.csv`) has one row per sequence of every
//! target forward: `step` (the 0-based index of the target forward among the log's target rows),
//! `seq` (the engine's sequence id, assigned in submission order), `work` (`prefill` or `verify`),
//! `drafted` and `accepted`. The fidelity re-run replays each sequence's own accepted counts from it,
//! so a speculative policy's re-run follows the live schedule rather than drawing acceptance.
//!
//! A third file ([`requests_path`]: `steps.csv` → `steps.requests.csv`) has one row per request the
//! engine finished, on the same clock as `time_s`: `seq`, `received_s` (the server handed it to the
//! engine thread), `admitted_s` (the engine loop took it, between two steps), `woke` (1 when it ended
//! an idle wait), `first_token_s` and `finished_s` (its first ids and its end handed back to the
//! server; `first_token_s` is empty when it emitted nothing), `prompt_tokens`, `max_tokens`,
//! `emitted`. The re-run takes its arrivals and its idle spells from them, and the serving path's
//! own time is the client's latency minus the engine's.

use super::DriverError;
use crate::metrics::ForwardModel;
use specsim_core::cost::BatchShape;
use specsim_core::time::{ns_to_secs, Nanos};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Rows buffered between flushes.
pub const FLUSH_EVERY: u32 = 64;

/// A sibling of a step log: `DIR/NAME.csv` → `DIR/NAME.{kind}.csv`.
fn sibling(path: &Path, kind: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.{kind}.csv"))
}

/// The per-sequence sibling of a step log: `DIR/NAME.csv` → `DIR/NAME.seqs.csv`.
pub fn seqs_path(path: &Path) -> PathBuf {
    sibling(path, "seqs")
}

/// The per-request sibling of a step log: `DIR/NAME.csv` → `DIR/NAME.requests.csv`.
pub fn requests_path(path: &Path) -> PathBuf {
    sibling(path, "requests")
}

/// The per-request file's CSV header.
pub const REQUESTS_HEADER: &str =
    "seq,received_s,admitted_s,woke,first_token_s,finished_s,prompt_tokens,max_tokens,emitted";

/// A request's times on the engine's clock, for the per-request file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimes {
    /// The engine's sequence id.
    pub seq: u64,
    /// The server handed it to the engine thread.
    pub received_ns: Nanos,
    /// The engine loop took it (between two steps).
    pub admitted_ns: Nanos,
    /// It ended an idle wait of the engine loop.
    pub woke: bool,
    /// Its first ids were handed back to the server.
    pub first_token_ns: Option<Nanos>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Most tokens it could generate.
    pub max_tokens: u32,
}

/// The per-sequence file's CSV header.
pub const SEQS_HEADER: &str = "step,seq,work,drafted,accepted";

/// One sequence's part of a target forward, for the per-sequence file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqOutcome {
    /// The engine's sequence id.
    pub seq: u64,
    /// Whether this was a verification (else a prefill chunk).
    pub verify: bool,
    /// Draft tokens verified (0 for prefill).
    pub drafted: u32,
    /// Of them, accepted.
    pub accepted: u32,
}

/// The open log file.
pub struct StepLog {
    path: PathBuf,
    out: BufWriter<File>,
    seqs: BufWriter<File>,
    requests: BufWriter<File>,
    target_steps: u64,
    unflushed: u32,
    /// Set after the first write error, which is reported once; later rows are dropped.
    failed: bool,
}

/// The CSV header.
pub const HEADER: &str =
    "time_s,model,seqs,new_tokens,prefill_tokens,context_tokens,measured_s,predicted_s";

impl StepLog {
    /// Creates (truncates) the file and writes the header.
    pub fn create(path: &Path) -> Result<Self, DriverError> {
        let err =
            |e: std::io::Error| DriverError::Backend(format!("--step-log {}: {e}", path.display()));
        let mut out = BufWriter::new(File::create(path).map_err(err)?);
        writeln!(out, "{HEADER}").map_err(err)?;
        let sp = seqs_path(path);
        let err =
            |e: std::io::Error| DriverError::Backend(format!("--step-log {}: {e}", sp.display()));
        let mut seqs = BufWriter::new(File::create(&sp).map_err(err)?);
        writeln!(seqs, "{SEQS_HEADER}").map_err(err)?;
        let rp = requests_path(path);
        let err =
            |e: std::io::Error| DriverError::Backend(format!("--step-log {}: {e}", rp.display()));
        let mut requests = BufWriter::new(File::create(&rp).map_err(err)?);
        writeln!(requests, "{REQUESTS_HEADER}").map_err(err)?;
        Ok(StepLog {
            path: path.to_path_buf(),
            out,
            seqs,
            requests,
            target_steps: 0,
            unflushed: 0,
            failed: false,
        })
    }

    /// Appends one forward.
    pub fn row(
        &mut self,
        at: Nanos,
        model: ForwardModel,
        shape: &BatchShape,
        measured: Nanos,
        predicted: Nanos,
    ) {
        if self.failed {
            return;
        }
        let mut res = writeln!(
            self.out,
            "{:.6},{},{},{},{},{},{:.6},{:.6}",
            ns_to_secs(at),
            model.label(),
            shape.seqs,
            shape.new_tokens,
            shape.prefill_tokens,
            shape.context_tokens,
            ns_to_secs(measured),
            ns_to_secs(predicted)
        );
        self.unflushed += 1;
        if res.is_ok() && self.unflushed >= FLUSH_EVERY {
            self.unflushed = 0;
            res = self.flush_all();
        }
        if let Err(e) = res {
            self.fail(e);
        }
    }

    /// Appends a request that left the engine at `finished` having emitted `emitted` ids.
    pub fn request(&mut self, r: &RequestTimes, finished: Nanos, emitted: u32) {
        if self.failed {
            return;
        }
        let first = r
            .first_token_ns
            .map(|t| format!("{:.6}", ns_to_secs(t)))
            .unwrap_or_default();
        if let Err(e) = writeln!(
            self.requests,
            "{},{:.6},{:.6},{},{first},{:.6},{},{},{emitted}",
            r.seq,
            ns_to_secs(r.received_ns),
            ns_to_secs(r.admitted_ns),
            u8::from(r.woke),
            ns_to_secs(finished),
            r.prompt_tokens,
            r.max_tokens,
        ) {
            self.fail(e);
        }
    }

    fn flush_all(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.seqs.flush()?;
        self.requests.flush()
    }

    /// Appends each sequence's outcome of the target forward just logged with [`StepLog::row`].
    pub fn target_outcomes(&mut self, outcomes: &[SeqOutcome]) {
        let step = self.target_steps;
        self.target_steps += 1;
        if self.failed {
            return;
        }
        for o in outcomes {
            let work = if o.verify { "verify" } else { "prefill" };
            if let Err(e) = writeln!(
                self.seqs,
                "{step},{},{work},{},{}",
                o.seq, o.drafted, o.accepted
            ) {
                self.fail(e);
                return;
            }
        }
    }

    /// Reports a write error once and stops writing: the engine keeps serving, the log is a
    /// diagnostic.
    fn fail(&mut self, e: std::io::Error) {
        eprintln!(
            "warning: --step-log {}: {e}; no more rows are written",
            self.path.display()
        );
        self.failed = true;
    }

    /// Writes buffered rows out (the engine calls this when it runs out of work).
    pub fn flush(&mut self) {
        if self.unflushed > 0 && !self.failed {
            self.unflushed = 0;
            if let Err(e) = self.flush_all() {
                self.fail(e);
            }
        }
    }
}

impl Drop for StepLog {
    fn drop(&mut self) {
        if !self.failed {
            let _ = self.flush_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_the_shape_and_both_times() {
        let dir = std::env::temp_dir().join(format!("specsim-steplog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("steps.csv");
        {
            let mut log = StepLog::create(&path).unwrap();
            // Two sequences at contexts 10 and 20, verifying 3 tokens each: 6 new tokens, context
            // 10 + 3 + 20 + 3 = 36 after the forward.
            let shape = BatchShape::one(10, 3, false, 3).merge(BatchShape::one(20, 3, false, 3));
            log.row(
                1_500_000_000,
                ForwardModel::Target,
                &shape,
                120_000_000,
                100_000_000,
            );
            log.target_outcomes(&[
                SeqOutcome {
                    seq: 4,
                    verify: true,
                    drafted: 3,
                    accepted: 2,
                },
                SeqOutcome {
                    seq: 7,
                    verify: false,
                    drafted: 0,
                    accepted: 0,
                },
            ]);
            log.request(
                &RequestTimes {
                    seq: 4,
                    received_ns: 1_000_250_000,
                    admitted_ns: 1_001_000_000,
                    woke: true,
                    first_token_ns: Some(1_500_100_000),
                    prompt_tokens: 10,
                    max_tokens: 5,
                },
                2_000_000_000,
                5,
            );
            log.request(
                &RequestTimes {
                    seq: 7,
                    received_ns: 1_200_000_000,
                    admitted_ns: 1_380_000_000,
                    woke: false,
                    first_token_ns: None,
                    prompt_tokens: 20,
                    max_tokens: 3,
                },
                1_600_000_000,
                0,
            );
        }
        let requests = std::fs::read_to_string(requests_path(&path)).unwrap();
        assert_eq!(
            requests,
            format!(
                "{REQUESTS_HEADER}\n4,1.000250,1.001000,1,1.500100,2.000000,10,5,5\n\
                 7,1.200000,1.380000,0,,1.600000,20,3,0\n"
            )
        );
        assert_eq!(requests_path(&path), dir.join("steps.requests.csv"));
        let seqs = std::fs::read_to_string(seqs_path(&path)).unwrap();
        assert_eq!(
            seqs,
            format!("{SEQS_HEADER}\n0,4,verify,3,2\n0,7,prefill,0,0\n")
        );
        assert_eq!(seqs_path(&path), dir.join("steps.seqs.csv"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "1.500000,target,2,6,0,36,0.120000,0.100000");
        assert_eq!(lines.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
