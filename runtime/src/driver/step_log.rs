//! `serve --step-log FILE`: one CSV row per model forward, its measured time beside the cost model's
//! prediction for the same batch. This is how a gap between `specsim run` and a live engine is put on
//! the cost term (step times) or elsewhere (queueing, acceptance): the ratio `measured_s / predicted_s`
//! by step kind and batch shape.
//!
//! Columns: `time_s` (end of the forward, seconds since the engine started), `model` (`draft` or
//! `target`), `seqs`, `new_tokens`, `prefill_tokens`, `context_tokens` (the batch shape the cost model
//! sees), `measured_s`, `predicted_s`. Rows are flushed every [`FLUSH_EVERY`] forwards, whenever the
//! engine runs out of work, and when it stops, so a killed server loses at most that many.

use super::DriverError;
use crate::metrics::ForwardModel;
use specsim_core::cost::BatchShape;
use specsim_core::time::{ns_to_secs, Nanos};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Rows buffered between flushes.
pub const FLUSH_EVERY: u32 = 64;

/// The open log file.
pub struct StepLog {
    path: PathBuf,
    out: BufWriter<File>,
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
        Ok(StepLog {
            path: path.to_path_buf(),
            out,
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
            res = self.out.flush();
        }
        if let Err(e) = res {
            self.fail(e);
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
            if let Err(e) = self.out.flush() {
                self.fail(e);
            }
        }
    }
}

impl Drop for StepLog {
    fn drop(&mut self) {
        if !self.failed {
            let _ = self.out.flush();
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
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "1.500000,target,2,6,0,36,0.120000,0.100000");
        assert_eq!(lines.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
