//! A scripted backend: no model, the real engine. Output token `i` of a sequence is
//! `prompt[i mod prompt.len()]`, every draft token is accepted with a fixed confidence, and a token in the
//! sequence's stop ids ends it. It lets the server, the engine thread and the engine core be tested end to
//! end (and `specsim serve --fake` be driven by replays) without loading weights.

use super::{SeqParams, TokenStreams};
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, SeqId, TargetItem, TargetOutcome, TargetResult, TargetWork,
};
use specsim_core::CoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The wall time since `t0`, as a forward's measured duration (the step log and /metrics report it,
/// and the fidelity study feeds it back into the simulator, so it must be the real time).
fn elapsed_since(t0: std::time::Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct EchoSeq {
    prompt: Vec<u32>,
    params: SeqParams,
    generated: u32,
    pending: Vec<u32>,
    /// Verifications done, to index the acceptance pattern.
    verifies: u32,
}

impl EchoSeq {
    fn token(&self, i: u32) -> u32 {
        self.prompt[i as usize % self.prompt.len()]
    }

    /// Emits up to `n` tokens, stopping after a stop id; returns (emitted, stopped).
    fn emit(&mut self, n: u32) -> (u32, bool) {
        let n = n.min(self.params.max_tokens.saturating_sub(self.generated));
        for j in 0..n {
            let t = self.token(self.generated);
            self.generated += 1;
            self.pending.push(t);
            if self.params.stop_ids.contains(&t) {
                return (j + 1, true);
            }
        }
        (n, false)
    }
}

/// Lets a test hold the engine between target forwards: each forward takes one permit, waiting for it.
#[derive(Debug, Default)]
pub struct StepGate {
    permits: Mutex<u64>,
    cv: Condvar,
}

impl StepGate {
    /// A gate that lets `permits` forwards through.
    pub fn new(permits: u64) -> Arc<Self> {
        Arc::new(StepGate {
            permits: Mutex::new(permits),
            cv: Condvar::new(),
        })
    }

    /// Lets `n` more forwards through.
    pub fn release(&self, n: u64) {
        let mut p = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        *p += n;
        self.cv.notify_all();
    }

    fn acquire(&self) {
        let mut p = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        while *p == 0 {
            p = self.cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        *p -= 1;
    }
}

/// The scripted backend. `live_sequences()` counts sequences registered and not yet removed.
#[derive(Debug)]
pub struct EchoBackend {
    seqs: HashMap<SeqId, EchoSeq>,
    confidence: f32,
    live: Arc<AtomicUsize>,
    gate: Option<Arc<StepGate>>,
    step_delay: std::time::Duration,
    /// Accepted drafts per verification, cycled (see [`EchoBackend::with_accept_pattern`]).
    accept_pattern: Vec<u32>,
}

impl EchoBackend {
    /// A backend whose drafts all report `confidence` (and are all accepted).
    pub fn new(confidence: f32) -> Self {
        EchoBackend {
            seqs: HashMap::new(),
            confidence,
            live: Arc::new(AtomicUsize::new(0)),
            gate: None,
            step_delay: std::time::Duration::ZERO,
            accept_pattern: Vec::new(),
        }
    }

    /// The same, with scripted rejections: the `n`-th verification of sequence `s` accepts
    /// `pattern[(s + n) mod len]` drafts (at most those drafted). Empty: every draft is accepted.
    /// Sequences then differ from each other and from step to step, as under a real model, which is
    /// what a test of replaying per-sequence outcomes needs.
    pub fn with_accept_pattern(mut self, pattern: Vec<u32>) -> Self {
        self.accept_pattern = pattern;
        self
    }

    /// The same, with every target forward taking `delay` of wall time (so streams last a while, as
    /// with a model: `specsim serve --fake --fake-step-ms N`).
    pub fn with_step_delay(mut self, delay: std::time::Duration) -> Self {
        self.step_delay = delay;
        self
    }

    /// The same, with every target forward waiting for a permit from `gate`.
    pub fn gated(confidence: f32, gate: Arc<StepGate>) -> Self {
        EchoBackend {
            gate: Some(gate),
            ..Self::new(confidence)
        }
    }

    /// A counter of registered, not yet removed sequences, readable from other threads.
    pub fn live_sequences(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }

    fn seq(&mut self, id: SeqId) -> Result<&mut EchoSeq, CoreError> {
        self.seqs
            .get_mut(&id)
            .ok_or_else(|| CoreError::Config(format!("echo backend: unknown sequence {id}")))
    }
}

impl Backend for EchoBackend {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        let t0 = std::time::Instant::now();
        for it in items {
            self.seq(it.seq)?;
        }
        Ok(DraftResult {
            confidences: vec![self.confidence; items.len()],
            elapsed_ns: elapsed_since(t0),
        })
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        if let Some(g) = &self.gate {
            g.acquire();
        }
        // Timed after the gate: a test holding the engine is not a slow forward.
        let t0 = std::time::Instant::now();
        if !self.step_delay.is_zero() {
            std::thread::sleep(self.step_delay);
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let pattern = self.accept_pattern.clone();
        for it in items {
            let seq = self.seq(it.seq)?;
            let out = match it.work {
                TargetWork::Prefill { last: false, .. } => TargetOutcome::default(),
                TargetWork::Prefill { last: true, .. } => {
                    let (emitted, stop) = seq.emit(1);
                    TargetOutcome {
                        accepted: 0,
                        emitted,
                        stop,
                    }
                }
                TargetWork::Verify { drafted } => {
                    let accept = if pattern.is_empty() {
                        drafted
                    } else {
                        let n = it.seq.wrapping_add(u64::from(seq.verifies));
                        pattern[(n % pattern.len() as u64) as usize].min(drafted)
                    };
                    seq.verifies += 1;
                    let (emitted, stop) = seq.emit(accept + 1);
                    TargetOutcome {
                        accepted: emitted.saturating_sub(1),
                        emitted,
                        stop,
                    }
                }
            };
            outcomes.push(out);
        }
        Ok(TargetResult {
            outcomes,
            elapsed_ns: elapsed_since(t0),
        })
    }

    fn release(&mut self, _seq: SeqId) {}
}

impl TokenStreams for EchoBackend {
    fn insert(&mut self, seq: SeqId, prompt: &[u32], params: &SeqParams) -> crate::Result<()> {
        if prompt.is_empty() {
            return Err(crate::RuntimeError::InvalidInput("empty prompt".into()));
        }
        let s = EchoSeq {
            prompt: prompt.to_vec(),
            params: params.clone(),
            generated: 0,
            pending: Vec::new(),
            verifies: 0,
        };
        if self.seqs.insert(seq, s).is_none() {
            self.live.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn drain_emitted(&mut self, seq: SeqId, out: &mut Vec<u32>) {
        if let Some(s) = self.seqs.get_mut(&seq) {
            out.append(&mut s.pending);
        }
    }

    fn remove(&mut self, seq: SeqId) {
        if self.seqs.remove(&seq).is_some() {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
