//! Per-sequence outcomes of the live run (`steps.seqs.csv`, beside the step log), replayed in the
//! engine/queueing re-run.
//!
//! Without them the re-run draws acceptance from measured per-position rates, so a speculative
//! policy's re-run emits other token counts than the live run did, finishes requests at other steps
//! and leaves the live schedule. [`LoggedAcceptance`] wraps the re-run's backend and gives every
//! verification of a sequence the accepted count that sequence got at its same-numbered verification
//! live (at most what the re-run drafted); the inner backend still decides anything past the log.
//!
//! Live sequence ids are the engine's (assigned in submission order); the re-run's are replica-local
//! slots, reused once a request leaves. So a slot is given the next live id (in ascending order) when
//! it first shows up in a target forward, and is freed for the next one when it is released having
//! emitted all the tokens its live sequence did (a release before that is a preemption for
//! recompute: the slot keeps its sequence). Requests reach the engine in arrival order on both
//! sides, so the k-th live sequence is the k-th request. A request the live engine never saw
//! (refused) shifts that mapping; [`OutcomeStats`] counts what was replayed and what was drawn, so a
//! report can tell.

use crate::ReplayError;
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetResult, TargetWork,
};
use specsim_core::CoreError;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The header the runtime writes (`runtime::driver::step_log::SEQS_HEADER`).
pub const SEQS_HEADER: &str = "step,seq,work,drafted,accepted";

/// The per-sequence sibling of a step log: `DIR/NAME.csv` → `DIR/NAME.seqs.csv` (as the runtime
/// names it).
pub fn seqs_path(step_log: &Path) -> PathBuf {
    super::steps::sibling_path(step_log, "seqs")
}

/// One sequence's part of one logged target forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqOutcomeRow {
    /// Index of the target forward among the step log's target rows.
    pub step: u64,
    /// The live engine's sequence id.
    pub seq: u64,
    /// A verification (else a prefill chunk).
    pub verify: bool,
    /// Drafts verified.
    pub drafted: u32,
    /// Of them, accepted.
    pub accepted: u32,
}

/// Parses a per-sequence file; `origin` names it in errors.
pub fn parse_seq_log(text: &str, origin: &str) -> Result<Vec<SeqOutcomeRow>, ReplayError> {
    let mut rows = Vec::new();
    for (line, f) in super::steps::log_rows(text, origin, SEQS_HEADER, 5)? {
        let bad = |msg: String| ReplayError::Parse {
            origin: origin.to_string(),
            line,
            msg,
        };
        let int = |k: usize, name: &str| -> Result<u64, ReplayError> {
            f[k].parse::<u64>()
                .map_err(|_| bad(format!("field `{name}`: `{}` is not a count", f[k])))
        };
        let verify = match f[2] {
            "verify" => true,
            "prefill" => false,
            other => {
                return Err(bad(format!(
                    "field `work`: `{other}` is neither prefill nor verify"
                )))
            }
        };
        let drafted = u32::try_from(int(3, "drafted")?).map_err(|_| bad("drafted".into()))?;
        let accepted = u32::try_from(int(4, "accepted")?).map_err(|_| bad("accepted".into()))?;
        if accepted > drafted {
            return Err(bad(format!("accepted {accepted} > drafted {drafted}")));
        }
        rows.push(SeqOutcomeRow {
            step: int(0, "step")?,
            seq: int(1, "seq")?,
            verify,
            drafted,
            accepted,
        });
    }
    Ok(rows)
}

/// Reads a per-sequence file.
pub fn read_seq_log(path: &Path) -> Result<Vec<SeqOutcomeRow>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReplayError::io(path, e))?;
    parse_seq_log(&text, &path.display().to_string())
}

/// How many of the re-run's verifications took a logged outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutcomeStats {
    /// Verifications given the live accepted count.
    pub replayed: u64,
    /// Of them, where the re-run drafted fewer than were accepted live (capped).
    pub capped: u64,
    /// Verifications past the sequence's logged ones (the inner backend drew them).
    pub drawn: u64,
}

/// A backend that replays each sequence's logged accepted counts (see the module doc).
pub struct LoggedAcceptance {
    inner: Box<dyn Backend + Send>,
    /// Per live sequence id, its accepted counts in verification order.
    accepted: HashMap<u64, VecDeque<u32>>,
    /// Per live sequence id, the tokens it emitted (1 from prefill, accepted + 1 per verification).
    live_tokens: HashMap<u64, u32>,
    /// Live ids not yet given to a re-run sequence, ascending.
    unassigned: VecDeque<u64>,
    /// Per re-run slot in use: its live id and the tokens it has emitted in the re-run.
    slots: HashMap<SeqId, (u64, u32)>,
    stats: Arc<Mutex<OutcomeStats>>,
}

impl LoggedAcceptance {
    /// Wraps `inner`. `rows` is the live per-sequence log.
    pub fn new(
        inner: Box<dyn Backend + Send>,
        rows: &[SeqOutcomeRow],
    ) -> (Self, Arc<Mutex<OutcomeStats>>) {
        let live_ids: BTreeSet<u64> = rows.iter().map(|r| r.seq).collect();
        let mut accepted: HashMap<u64, VecDeque<u32>> = HashMap::new();
        let mut live_tokens: HashMap<u64, u32> = HashMap::new();
        for r in rows {
            // A prefill row is a chunk; only the sequence's first token comes from prefill.
            let tokens = live_tokens.entry(r.seq).or_insert(1);
            if r.verify {
                accepted.entry(r.seq).or_default().push_back(r.accepted);
                *tokens += r.accepted + 1;
            }
        }
        let stats = Arc::new(Mutex::new(OutcomeStats::default()));
        let me = LoggedAcceptance {
            inner,
            accepted,
            live_tokens,
            unassigned: live_ids.into_iter().collect(),
            slots: HashMap::new(),
            stats: stats.clone(),
        };
        (me, stats)
    }

    /// The live id of re-run slot `seq`, assigning the next one if the slot is new.
    fn live_id(&mut self, seq: SeqId) -> Option<u64> {
        if let Some((id, _)) = self.slots.get(&seq) {
            return Some(*id);
        }
        let id = self.unassigned.pop_front()?;
        self.slots.insert(seq, (id, 0));
        Some(id)
    }
}

impl Backend for LoggedAcceptance {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        self.inner.draft(items)
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        let mut res = self.inner.target(items)?;
        let stats = self.stats.clone();
        let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
        for (item, out) in items.iter().zip(res.outcomes.iter_mut()) {
            let live = self.live_id(item.seq);
            if let TargetWork::Verify { drafted } = item.work {
                let logged = live
                    .and_then(|id| self.accepted.get_mut(&id))
                    .and_then(VecDeque::pop_front);
                match logged {
                    Some(a) => {
                        s.replayed += 1;
                        if a > drafted {
                            s.capped += 1;
                        }
                        out.accepted = a.min(drafted);
                        out.emitted = out.accepted + 1;
                    }
                    None => s.drawn += 1,
                }
            }
            if let Some((_, emitted)) = self.slots.get_mut(&item.seq) {
                *emitted += out.emitted;
            }
        }
        Ok(res)
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(&(id, emitted)) = self.slots.get(&seq) {
            // Released with all its live tokens (or more): finished; the slot is free for the next
            // request. Fewer: preempted, and it comes back as the same sequence.
            if emitted >= self.live_tokens.get(&id).copied().unwrap_or(0) {
                self.slots.remove(&seq);
            }
        }
        self.inner.release(seq)
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        self.inner.lookahead(items, k_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use specsim_core::engine::TargetOutcome;

    /// Accepts every draft; a last prefill chunk emits one token.
    struct AcceptAll;

    impl Backend for AcceptAll {
        fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
            Ok(DraftResult {
                confidences: vec![1.0; items.len()],
                elapsed_ns: 1,
            })
        }
        fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
            let outcomes = items
                .iter()
                .map(|it| match it.work {
                    TargetWork::Verify { drafted } => TargetOutcome {
                        accepted: drafted,
                        emitted: drafted + 1,
                        stop: false,
                    },
                    TargetWork::Prefill { last, .. } => TargetOutcome {
                        accepted: 0,
                        emitted: u32::from(last),
                        stop: false,
                    },
                })
                .collect();
            Ok(TargetResult {
                outcomes,
                elapsed_ns: 1,
            })
        }
        fn release(&mut self, _seq: SeqId) {}
    }

    fn item(seq: SeqId, work: TargetWork) -> TargetItem {
        TargetItem {
            seq,
            context_tokens: 0,
            work,
            category: None,
        }
    }

    const PREFILL: TargetWork = TargetWork::Prefill {
        start: 0,
        len: 8,
        last: true,
    };
    const VERIFY3: TargetWork = TargetWork::Verify { drafted: 3 };

    #[test]
    fn a_reused_slot_takes_the_next_live_sequence_and_a_preempted_one_keeps_its_own() {
        // Live: sequence 10 verified twice (2, then 1 accepted: 1 + 3 + 2 = 6 tokens), sequence 11
        // once (0 accepted).
        let log = format!(
            "{SEQS_HEADER}\n0,10,prefill,0,0\n1,10,verify,3,2\n2,10,verify,3,1\n3,11,prefill,0,0\n4,11,verify,3,0\n"
        );
        let rows = parse_seq_log(&log, "s").unwrap();
        let (mut b, stats) = LoggedAcceptance::new(Box::new(AcceptAll), &rows);
        let accepted = |b: &mut LoggedAcceptance, w| b.target(&[item(0, w)]).unwrap().outcomes[0];
        // Slot 0 is live sequence 10: prefill, then 2 accepted.
        accepted(&mut b, PREFILL);
        assert_eq!(accepted(&mut b, VERIFY3).accepted, 2);
        // Released after 4 of its 6 tokens: a preemption; it comes back as sequence 10 (recompute
        // prefill), and its next verification is 10's second (1 accepted).
        b.release(0);
        accepted(&mut b, PREFILL);
        let o = accepted(&mut b, VERIFY3);
        assert_eq!((o.accepted, o.emitted), (1, 2));
        // Released with all its tokens: the slot's next request is live sequence 11.
        b.release(0);
        accepted(&mut b, PREFILL);
        assert_eq!(accepted(&mut b, VERIFY3).accepted, 0);
        // Past sequence 11's log, the inner backend draws (accepts all 3).
        assert_eq!(accepted(&mut b, VERIFY3).accepted, 3);
        let s = *stats.lock().unwrap();
        assert_eq!((s.replayed, s.drawn, s.capped), (3, 1, 0));
    }

    #[test]
    fn the_log_parses_and_bad_rows_name_their_line() {
        let text = format!("{SEQS_HEADER}\n0,5,prefill,0,0\n1,5,verify,4,2\n");
        let rows = parse_seq_log(&text, "s.csv").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1],
            SeqOutcomeRow {
                step: 1,
                seq: 5,
                verify: true,
                drafted: 4,
                accepted: 2
            }
        );
        let e = parse_seq_log(&format!("{SEQS_HEADER}\n0,5,verify,2,3\n"), "s.csv").unwrap_err();
        assert!(
            e.to_string().contains("s.csv") && e.to_string().contains('2'),
            "{e}"
        );
        assert!(parse_seq_log("step,seq\n", "s.csv").is_err());
        assert_eq!(
            seqs_path(Path::new("/a/b/steps.csv")),
            PathBuf::from("/a/b/steps.seqs.csv")
        );
    }
}
