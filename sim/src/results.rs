//! A result directory written while the simulation runs: `requests.csv` rows stream to disk as
//! requests finish (in id order, through a reorder buffer that holds only rows finished ahead of an
//! earlier request still in flight), `steps.csv` rows as steps end, and `summary.json` from a streaming
//! [`SummaryAcc`] at the end. Memory is bounded by what is in flight, not by the trace.
//!
//! While the run is going, the directory holds a file named [`INCOMPLETE`]; a run that completes removes
//! it. A run stopped early ([`ResultWriter::finish`] with a reason, e.g. SIGINT) keeps it, flushes every
//! finished row, and writes a summary whose `partial` field says why, so no file left behind can be
//! taken for a complete result.

use crate::metrics::{
    push_request_row, push_step_row, RequestRecord, SloConfig, StepRow, Summary, SummaryAcc,
    REQUESTS_HEADER, STEPS_HEADER,
};
use crate::SimError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Name of the marker file of a result directory that is being written or was interrupted.
pub const INCOMPLETE: &str = "INCOMPLETE";

/// Rows are written to disk in chunks of about this many bytes.
const FLUSH_BYTES: usize = 1 << 16;

/// Streams one policy's results into a directory.
pub struct ResultWriter {
    dir: PathBuf,
    policy: String,
    requests: BufWriter<File>,
    requests_path: PathBuf,
    steps: Option<(BufWriter<File>, PathBuf)>,
    next_id: u64,
    /// Rows that finished before a lower id did.
    ahead: BTreeMap<u64, RequestRecord>,
    /// Largest `ahead` seen (for the scale benchmark).
    peak_ahead: usize,
    buf: String,
    step_buf: String,
    acc: SummaryAcc,
}

impl ResultWriter {
    /// Creates `dir` (and parents), writes the [`INCOMPLETE`] marker and the headers. Rows get `policy`
    /// as their policy name; `exact_limit` values per latency are kept for exact percentiles.
    pub fn create(
        dir: &Path,
        policy: &str,
        slo: &SloConfig,
        exact_limit: usize,
        steps: bool,
    ) -> Result<Self, SimError> {
        std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
        let marker = dir.join(INCOMPLETE);
        std::fs::write(
            &marker,
            "this result directory is being written, or its run was interrupted: see summary.json\n",
        )
        .map_err(|e| SimError::io(&marker, e))?;
        let open = |name: &str| -> Result<(BufWriter<File>, PathBuf), SimError> {
            let p = dir.join(name);
            let f = File::create(&p).map_err(|e| SimError::io(&p, e))?;
            Ok((BufWriter::with_capacity(FLUSH_BYTES, f), p))
        };
        let (requests, requests_path) = open("requests.csv")?;
        // A summary from an earlier run in the same directory must not pass for this one's.
        let summary = dir.join("summary.json");
        if summary.exists() {
            std::fs::remove_file(&summary).map_err(|e| SimError::io(&summary, e))?;
        }
        let steps = if steps {
            Some(open("steps.csv")?)
        } else {
            None
        };
        let mut w = ResultWriter {
            dir: dir.to_path_buf(),
            policy: policy.to_string(),
            requests,
            requests_path,
            steps,
            next_id: 0,
            ahead: BTreeMap::new(),
            peak_ahead: 0,
            buf: String::with_capacity(FLUSH_BYTES + 256),
            step_buf: String::new(),
            acc: SummaryAcc::new(slo, exact_limit),
        };
        w.buf.push_str(REQUESTS_HEADER);
        w.buf.push('\n');
        if w.steps.is_some() {
            w.step_buf.push_str(STEPS_HEADER);
            w.step_buf.push('\n');
        }
        Ok(w)
    }

    fn flush_buf(&mut self, force: bool) -> Result<(), SimError> {
        if force || self.buf.len() >= FLUSH_BYTES {
            self.requests
                .write_all(self.buf.as_bytes())
                .map_err(|e| SimError::io(&self.requests_path, e))?;
            self.buf.clear();
        }
        if let Some((f, p)) = &mut self.steps {
            if force || self.step_buf.len() >= FLUSH_BYTES {
                f.write_all(self.step_buf.as_bytes())
                    .map_err(|e| SimError::io(p, e))?;
                self.step_buf.clear();
            }
        }
        Ok(())
    }

    /// Takes a finished request (any order; ids must be `0..n` without repeats).
    pub fn request(&mut self, mut r: RequestRecord) -> Result<(), SimError> {
        if r.policy != self.policy {
            r.policy.clone_from(&self.policy);
        }
        self.acc.add(&r);
        if r.id < self.next_id || self.ahead.contains_key(&r.id) {
            return Err(SimError::Backend(format!(
                "request {} finished twice",
                r.id
            )));
        }
        if r.id == self.next_id {
            push_request_row(&mut self.buf, &r);
            self.next_id += 1;
            while let Some(next) = self.ahead.remove(&self.next_id) {
                push_request_row(&mut self.buf, &next);
                self.next_id += 1;
            }
        } else {
            self.ahead.insert(r.id, r);
            self.peak_ahead = self.peak_ahead.max(self.ahead.len());
        }
        self.flush_buf(false)
    }

    /// Takes a step row (written only when the writer was created with `steps`).
    pub fn step(&mut self, row: &StepRow) -> Result<(), SimError> {
        if self.steps.is_some() {
            push_step_row(&mut self.step_buf, row);
        }
        Ok(())
    }

    /// Requests taken so far.
    pub fn finished(&self) -> usize {
        self.acc.finished()
    }

    /// The most rows ever held back waiting for an earlier request.
    pub fn peak_reorder(&self) -> usize {
        self.peak_ahead
    }

    /// Ends the directory: every row held back is written, `summary.json` is written, and the
    /// [`INCOMPLETE`] marker removed — unless `partial` gives a reason the run stopped early, which the
    /// summary then carries (and the marker stays). `requests` counts the whole workload.
    pub fn finish(
        mut self,
        requests: usize,
        decode_steps: u64,
        preemptions: u64,
        partial: Option<String>,
    ) -> Result<Summary, SimError> {
        if partial.is_none() && !self.ahead.is_empty() {
            return Err(SimError::Backend(format!(
                "request {} never finished",
                self.next_id
            )));
        }
        for r in std::mem::take(&mut self.ahead).into_values() {
            push_request_row(&mut self.buf, &r);
        }
        self.flush_buf(true)?;
        self.requests
            .flush()
            .map_err(|e| SimError::io(&self.requests_path, e))?;
        if let Some((f, p)) = &mut self.steps {
            f.flush().map_err(|e| SimError::io(p, e))?;
        }
        let mut summary = self
            .acc
            .summary(&self.policy, requests, 0, decode_steps, preemptions);
        summary.partial = partial;
        let p = self.dir.join("summary.json");
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n",
        )
        .map_err(|e| SimError::io(&p, e))?;
        if summary.partial.is_none() {
            let m = self.dir.join(INCOMPLETE);
            std::fs::remove_file(&m).map_err(|e| SimError::io(&m, e))?;
        }
        Ok(summary)
    }
}
