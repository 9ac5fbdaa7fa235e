//! The engine/queueing term: the simulator re-run with the live run's own forward times.
//!
//! The simulator runs the runtime's own engine core; only step times (the cost model) and acceptance
//! (the acceptance model) are modelled. [`RecordedTimes`] wraps a replica's simulated backend and
//! replaces each forward's modelled time with the measured time of the corresponding forward in the
//! live run's step log, in order (draft and target forwards each in their own order). If the engine
//! and its queueing are reproduced, the re-run's per-request TTFT and TPOT equal the measured ones;
//! what remains is what the simulator does not see at all — the serving path (HTTP, SSE, threads,
//! the client) and the engine loop's own time between forwards.
//!
//! A re-run can leave the live run's schedule (an arrival that landed just before a step boundary live
//! and just after it in the re-run, or other acceptance outcomes): the wrapper then notices that the
//! logged batch size differs from the one it is asked for, looks a few rows ahead for the matching
//! one, and counts the divergence ([`MatchStats`]) so a report can say how far to trust the term.

use super::steps::{ForwardKind, StepRow};
use specsim_core::engine::{Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetResult};
use specsim_core::time::secs_to_ns;
use specsim_core::CoreError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Rows looked ahead for a forward of the right batch size before giving up on realigning.
const LOOKAHEAD: usize = 8;

/// How well the re-run followed the logged forwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MatchStats {
    /// Forwards whose logged batch size matched.
    pub matched: u64,
    /// Forwards whose logged batch size differed (the logged time was used anyway).
    pub mismatched: u64,
    /// Logged rows skipped to realign.
    pub skipped: u64,
    /// Forwards past the end of the log (the simulated backend's own time was used).
    pub beyond_log: u64,
    /// Logged rows the re-run never used.
    pub unused: u64,
    /// With the live per-sequence log: verifications replayed from it and drawn past it.
    pub outcomes: Option<super::outcomes::OutcomeStats>,
}

impl MatchStats {
    /// Fraction of the re-run's forwards that matched a logged forward of the same batch size.
    pub fn match_fraction(&self) -> f64 {
        let n = self.matched + self.mismatched + self.beyond_log;
        if n == 0 {
            1.0
        } else {
            self.matched as f64 / n as f64
        }
    }
}

/// A logged forward with the time it takes in the re-run, seconds.
type Timed = (StepRow, f64);

/// A backend whose forwards take the logged times (see the module doc).
pub struct RecordedTimes {
    inner: Box<dyn Backend + Send>,
    draft: VecDeque<Timed>,
    target: VecDeque<Timed>,
    stats: Arc<Mutex<MatchStats>>,
}

impl RecordedTimes {
    /// Wraps `inner`, which keeps deciding acceptance; `rows` is the live run's step log. The
    /// returned handle reads the match statistics after the run.
    pub fn new(inner: Box<dyn Backend + Send>, rows: &[StepRow]) -> (Self, Arc<Mutex<MatchStats>>) {
        let spans: Vec<f64> = rows.iter().map(|r| r.measured_s).collect();
        Self::with_spans(inner, rows, &spans)
    }

    /// [`RecordedTimes::new`], each forward taking its entry of `spans` (seconds, one per row)
    /// instead of its measured time: with the live per-request log, the time from the moment the
    /// engine could start it (`super::served::forward_spans`).
    pub fn with_spans(
        inner: Box<dyn Backend + Send>,
        rows: &[StepRow],
        spans: &[f64],
    ) -> (Self, Arc<Mutex<MatchStats>>) {
        let stats = Arc::new(Mutex::new(MatchStats::default()));
        let (draft, target): (Vec<Timed>, Vec<Timed>) = rows
            .iter()
            .copied()
            .zip(spans.iter().copied())
            .partition(|(r, _)| r.kind == ForwardKind::Draft);
        let (draft, target) = (draft.into(), target.into());
        let me = RecordedTimes {
            inner,
            draft,
            target,
            stats: stats.clone(),
        };
        me.note(|s| s.unused = (me.draft.len() + me.target.len()) as u64);
        (me, stats)
    }

    fn note(&self, f: impl FnOnce(&mut MatchStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// The logged time of the next forward of `seqs` sequences from `queue`, or `None` past its end.
    fn next_time(&mut self, draft: bool, seqs: u32) -> Option<u64> {
        let queue = if draft {
            &mut self.draft
        } else {
            &mut self.target
        };
        let ahead = queue
            .iter()
            .take(LOOKAHEAD)
            .position(|(r, _)| r.seqs == seqs);
        let (row, skipped, matched) = match ahead {
            Some(i) => {
                let row = queue.drain(..=i).next_back();
                (row, i as u64, true)
            }
            None => (queue.pop_front(), 0, false),
        };
        let left = (self.draft.len() + self.target.len()) as u64;
        self.note(|s| {
            s.unused = left;
            s.skipped += skipped;
            match (&row, matched) {
                (None, _) => s.beyond_log += 1,
                (Some(_), true) => s.matched += 1,
                (Some(_), false) => s.mismatched += 1,
            }
        });
        row.map(|(_, span)| secs_to_ns(span))
    }
}

impl Backend for RecordedTimes {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        let mut r = self.inner.draft(items)?;
        if let Some(t) = self.next_time(true, items.len() as u32) {
            r.elapsed_ns = t;
        }
        Ok(r)
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        let mut r = self.inner.target(items)?;
        if let Some(t) = self.next_time(false, items.len() as u32) {
            r.elapsed_ns = t;
        }
        Ok(r)
    }

    fn release(&mut self, seq: SeqId) {
        self.inner.release(seq)
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        self.inner.lookahead(items, k_max)
    }
}

/// Per-request gap of a re-run against the measurement.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineTerm {
    /// Requests compared (finished on both sides).
    pub requests: usize,
    /// Median over requests of |re-run − measured| / measured TTFT.
    pub ttft_median_abs_rel: f64,
    /// Largest such TTFT error.
    pub ttft_max_abs_rel: f64,
    /// Median over requests of |re-run − measured| / measured TPOT (requests with more than one
    /// output token).
    pub tpot_median_abs_rel: f64,
    /// Largest such TPOT error.
    pub tpot_max_abs_rel: f64,
    /// Mean of (measured − re-run) TTFT, seconds: the serving overhead per request's first token
    /// (what the comparison leaves outside the engine; ~0 when it is against the engine's own times).
    pub ttft_mean_overhead_s: f64,
    /// How well the re-run followed the log.
    pub matching: MatchStats,
    /// `engine`: compared with the live engine's own latencies (`steps.requests.csv`); `client`:
    /// with the client's (older logs), so the serving path is inside the term.
    #[serde(default)]
    pub against: String,
    /// With the engine's latencies: the serving path's own time, client − engine per request.
    #[serde(default)]
    pub serving_path: Option<super::overhead::ServingOverhead>,
    /// With the engine's latencies: how its requests were paired with the client's.
    #[serde(default)]
    pub served: Option<super::served::ServedMatch>,
}

/// Compares re-run and measured rows by id.
pub fn engine_term(
    rerun: &[specsim_sim::metrics::RequestRecord],
    measured: &[specsim_sim::metrics::RequestRecord],
    matching: MatchStats,
) -> EngineTerm {
    let by_id: std::collections::HashMap<u64, _> = rerun.iter().map(|r| (r.id, r)).collect();
    let (mut ttft, mut tpot, mut over) = (Vec::new(), Vec::new(), Vec::new());
    for m in measured.iter().filter(|m| m.error.is_none()) {
        let Some(p) = by_id.get(&m.id) else { continue };
        if m.ttft_s > 0.0 && m.ttft_s.is_finite() && p.ttft_s.is_finite() {
            ttft.push(((p.ttft_s - m.ttft_s) / m.ttft_s).abs());
            over.push(m.ttft_s - p.ttft_s);
        }
        if m.output_tokens > 1 && m.tpot_s > 0.0 && p.tpot_s.is_finite() {
            tpot.push(((p.tpot_s - m.tpot_s) / m.tpot_s).abs());
        }
    }
    let med = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            super::stats::quantile(v, 0.5)
        }
    };
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    EngineTerm {
        requests: ttft.len(),
        ttft_median_abs_rel: med(&ttft),
        ttft_max_abs_rel: max(&ttft),
        tpot_median_abs_rel: med(&tpot),
        tpot_max_abs_rel: max(&tpot),
        ttft_mean_overhead_s: super::stats::mean(&over),
        matching,
        against: "client".into(),
        serving_path: None,
        served: None,
    }
}
