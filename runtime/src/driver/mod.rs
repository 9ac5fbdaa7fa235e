//! The engine thread: the synchronous engine core behind the server's async [`Generator`] seam.
//!
//! `specsim_core::engine::Engine` is synchronous and deterministic (the simulator steps it on a virtual
//! clock), so the live server does not turn it into async actors. One dedicated thread owns the engine and
//! the backend and loops:
//!
//! 1. **intake** — take new requests from a channel (blocking only when the engine is idle), register each
//!    request's prompt ids and settings with the backend ([`TokenStreams::insert`]) and queue it in the
//!    engine with its arrival time on the wall clock;
//! 2. **cancellation** — a request whose client went away ([`GenerationSender::is_cancelled`]) is ended
//!    through the backend seam: its next target outcome carries `stop`, so the engine retires it and frees
//!    its KV exactly as for an end-of-sequence token. So every way a sequence ends — length, end of
//!    sequence, client gone — retires through the same engine bookkeeping (`Engine::abort`, which drops a
//!    request between steps without reporting it, is not used here);
//! 3. **step** — one `Engine::step` at the wall-clock time;
//! 4. **stream** — forward each sequence's newly emitted ids ([`TokenStreams::drain_emitted`]) to its
//!    client, then report finished requests and forget them ([`TokenStreams::remove`]).
//!
//! The backend is any [`Backend`] that also implements [`TokenStreams`]: the live candle backend, or
//! [`echo::EchoBackend`] (scripted, no model) for tests and `serve --fake`. Verification steps are
//! recorded into the server's [`Metrics`] (batch size, k per sequence, acceptance per draft position) by
//! wrapping the backend, so the engine needs no metrics hooks either.

pub mod echo;
mod live_streams;
mod step_log;

use step_log::StepLog;

use crate::generate::{
    FinishReason, GenEvent, GenerateRequest, Generation, GenerationSender, Generator, Load,
    SubmitError,
};
use crate::metrics::{ForwardModel, Metrics};
use specsim_core::cost::{BatchShape, CostModel};
use specsim_core::engine::kv::context_fits;
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, Engine, EngineConfig, SeqId, TargetItem, TargetResult,
    TargetWork,
};
use specsim_core::policy::PolicyConfig;
use specsim_core::shape::{draft_shape, predicted_target_ns, target_shape, DraftKvMirror, Scorer};
use specsim_core::time::Nanos;
use specsim_core::workload::RequestSpec;
use specsim_core::CoreError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// Per-sequence settings the backend needs to produce tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqParams {
    /// How the sequence samples (temperature 0 = greedy).
    pub sampling: crate::sampling::SamplingParams,
    /// Ids that end the sequence (empty when the request sets `ignore_eos`). The backend sets `stop` on
    /// the outcome that emits one, and the id is the last one emitted.
    pub stop_ids: Vec<u32>,
    /// Most tokens the sequence generates (the engine's `output_tokens`).
    pub max_tokens: u32,
}

/// What the engine thread needs from a backend beyond [`Backend`]: the token ids behind the engine's
/// counts. Text never crosses this seam; the server detokenizes.
///
/// [`Backend::release`] (the engine dropped the sequence's KV, possibly to preempt and recompute it later)
/// must keep the sequence's token history; [`TokenStreams::remove`] forgets the sequence entirely.
pub trait TokenStreams {
    /// Registers a sequence before the engine schedules it.
    fn insert(&mut self, seq: SeqId, prompt: &[u32], params: &SeqParams) -> crate::Result<()>;
    /// Appends the ids emitted for `seq` since the last call to `out` (nothing for an unknown sequence).
    fn drain_emitted(&mut self, seq: SeqId, out: &mut Vec<u32>);
    /// Forgets a sequence (finished or cancelled), after the engine released it.
    fn remove(&mut self, seq: SeqId);
}

/// Why the engine thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The engine refused its configuration.
    #[error("engine: {0}")]
    Engine(#[from] CoreError),
    /// The live backend could not be built.
    #[error("{0}")]
    Backend(String),
    /// The OS refused to start the thread.
    #[error("starting the engine thread: {0}")]
    Thread(std::io::Error),
}

/// Settings of the engine thread.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Scheduler limits (`kv_blocks` must be set).
    pub engine: EngineConfig,
    /// The speculation policy.
    pub policy: PolicyConfig,
    /// Most requests accepted at once (running plus waiting); more are refused with 429.
    pub max_in_flight: usize,
    /// Ids that end a sequence unless the request sets `ignore_eos`.
    pub eos_ids: Vec<u32>,
    /// TPOT SLO in nanoseconds that SLO-aware policies (SpecServe) protect, as a simulated scenario's
    /// `[slo] tpot_s` does.
    pub tpot_slo_ns: Option<u64>,
    /// Whether a draft model is deployed, so that predicted draft forwards include its catch-up on
    /// tokens it has not seen (as the simulator books it; see [`DraftKvMirror`]).
    pub draft_model: bool,
    /// Write one CSV row per forward (measured and predicted time, batch shape) to this file.
    pub step_log: Option<std::path::PathBuf>,
}

/// Occupancy shared between the engine thread and request handlers.
#[derive(Debug, Default)]
struct Shared {
    in_flight: AtomicUsize,
    running: AtomicUsize,
    kv_used_tokens: AtomicU64,
    kv_capacity_tokens: AtomicU64,
    alive: AtomicBool,
    next_id: AtomicU64,
}

struct Submission {
    id: SeqId,
    request: GenerateRequest,
    events: GenerationSender,
    /// When the handle took the request, on the engine's clock (the step log's `time_s`).
    received_ns: Nanos,
}

/// The server's handle on the engine thread; implements [`Generator`].
pub struct EngineHandle {
    tx: mpsc::Sender<Submission>,
    /// The engine thread's clock origin.
    start: Instant,
    shared: Arc<Shared>,
    max_in_flight: usize,
    block_size: u32,
    kv_blocks: u32,
}

impl Generator for EngineHandle {
    fn submit(&self, request: GenerateRequest) -> Result<Generation, SubmitError> {
        if !self.shared.alive.load(Ordering::SeqCst) {
            return Err(SubmitError::Unavailable);
        }
        let tokens = request.prompt.len() as u64 + request.max_tokens as u64;
        if !context_fits(tokens, self.kv_blocks, self.block_size) {
            return Err(SubmitError::Invalid(format!(
                "prompt plus max_tokens is {tokens} tokens; the KV cache holds {}",
                self.kv_blocks as u64 * self.block_size as u64
            )));
        }
        let max = self.max_in_flight;
        if self
            .shared
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(SubmitError::QueueFull(max));
        }
        let (events, generation) = crate::generate::generation_channel();
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        let received_ns = self.start.elapsed().as_nanos() as Nanos;
        if self
            .tx
            .send(Submission {
                id,
                request,
                events,
                received_ns,
            })
            .is_err()
        {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Unavailable);
        }
        Ok(generation)
    }

    fn healthy(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    fn load(&self) -> Load {
        Load {
            in_flight: self.shared.in_flight.load(Ordering::SeqCst),
            running: self.shared.running.load(Ordering::SeqCst),
            kv_used_tokens: self.shared.kv_used_tokens.load(Ordering::SeqCst),
            kv_capacity_tokens: self.shared.kv_capacity_tokens.load(Ordering::SeqCst),
        }
    }
}

/// Starts the engine thread over `backend` and returns the server's handle. The thread ends when the
/// handle is dropped and the engine has drained.
pub fn spawn_engine<B>(
    config: DriverConfig,
    predictor: Arc<dyn CostModel>,
    backend: B,
    metrics: Arc<Metrics>,
) -> Result<EngineHandle, DriverError>
where
    B: Backend + TokenStreams + Send + 'static,
{
    if config.engine.prefix_caching {
        // The live backend keeps one KV cache per sequence and cannot share blocks between them, so it
        // refuses rather than let the engine book prefix-cache hits it would not take.
        return Err(DriverError::Backend(
            "engine.prefix_caching = true: the live backend cannot reuse cached KV blocks across \
             requests; set engine.prefix_caching = false"
                .into(),
        ));
    }
    let mut engine = Engine::new(
        config.engine.clone(),
        config.policy.build(),
        predictor.clone(),
    )?;
    let step_log = match &config.step_log {
        Some(path) => Some(StepLog::create(path)?),
        None => None,
    };
    engine.set_tpot_slo(config.tpot_slo_ns);
    let block_size = config.engine.block_size;
    let kv_blocks = engine.kv_total();
    let shared = Arc::new(Shared::default());
    shared.alive.store(true, Ordering::SeqCst);
    shared
        .kv_capacity_tokens
        .store(kv_blocks as u64 * block_size as u64, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let thread_shared = shared.clone();
    let eos_ids = config.eos_ids.clone();
    let start = Instant::now();
    std::thread::Builder::new()
        .name("specsim-engine".into())
        .spawn(move || {
            let mut lp = EngineLoop {
                engine,
                backend,
                rx,
                shared: thread_shared,
                metrics,
                eos_ids,
                live: HashMap::new(),
                cancelled: HashSet::new(),
                start,
                buf: Vec::new(),
                idle_wait: false,
                predictor,
                draft_kv: config.draft_model.then(DraftKvMirror::default),
                step_log,
            };
            lp.run();
        })
        .map_err(DriverError::Thread)?;
    Ok(EngineHandle {
        tx,
        start,
        shared,
        max_in_flight: config.max_in_flight,
        block_size,
        kv_blocks,
    })
}

/// A request the engine thread is serving.
struct LiveRequest {
    events: GenerationSender,
    stop_ids: Vec<u32>,
    sent: u32,
    last: Option<u32>,
    /// Its times and lengths (`max_tokens` among them), for the step log's request file.
    times: step_log::RequestTimes,
}

struct EngineLoop<B> {
    engine: Engine,
    backend: B,
    rx: mpsc::Receiver<Submission>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    eos_ids: Vec<u32>,
    live: HashMap<SeqId, LiveRequest>,
    cancelled: HashSet<SeqId>,
    start: Instant,
    buf: Vec<u32>,
    /// The last step found nothing to run although requests are queued.
    idle_wait: bool,
    /// The cost model, to set each measured forward beside its prediction.
    predictor: Arc<dyn CostModel>,
    /// The draft model's cache lengths as the simulator would track them (`None` without a draft
    /// model), for the predicted shapes of draft forwards.
    draft_kv: Option<DraftKvMirror>,
    step_log: Option<StepLog>,
}

impl<B: Backend + TokenStreams> EngineLoop<B> {
    fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    fn run(&mut self) {
        loop {
            if !self.intake() {
                break;
            }
            self.mark_cancelled();
            if self.engine.has_work() {
                let now = self.now();
                let mut hooked = Hooked {
                    inner: &mut self.backend,
                    cancelled: &self.cancelled,
                    metrics: &self.metrics,
                    predictor: self.predictor.as_ref(),
                    draft_kv: self.draft_kv.as_mut(),
                    step_log: self.step_log.as_mut(),
                    start: self.start,
                };
                match self.engine.step(now, &mut hooked) {
                    Ok(Some(_)) => {}
                    // Work the engine cannot schedule yet: wait briefly for news rather than spin.
                    Ok(None) => self.idle_wait = true,
                    Err(e) => {
                        self.fail_all(&format!("engine step failed: {e}"));
                        break;
                    }
                }
            }
            self.stream_tokens();
            self.retire();
            self.publish();
        }
        self.shared.alive.store(false, Ordering::SeqCst);
        self.publish();
    }

    /// Takes new requests; blocks only while the engine is idle. Returns false when the server is gone
    /// and nothing is left to do.
    fn intake(&mut self) -> bool {
        // Whether the first submission woke an idle engine (the simulator idles until an arrival too).
        let mut woke = false;
        let mut first = if self.engine.has_work() {
            if std::mem::take(&mut self.idle_wait) {
                match self.rx.recv_timeout(std::time::Duration::from_millis(1)) {
                    Ok(s) => Some(s),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                }
            } else {
                None
            }
        } else {
            // Idle: a good moment to write the step log out (nothing is being timed).
            if let Some(log) = self.step_log.as_mut() {
                log.flush();
            }
            match self.rx.recv() {
                Ok(s) => {
                    woke = true;
                    Some(s)
                }
                Err(_) => return false,
            }
        };
        loop {
            let sub = match first.take() {
                Some(s) => s,
                None => match self.rx.try_recv() {
                    Ok(s) => s,
                    Err(_) => return true,
                },
            };
            self.admit(sub, std::mem::take(&mut woke));
        }
    }

    /// Hands a submission to the engine; `woke` says it ended an idle wait.
    fn admit(&mut self, sub: Submission, woke: bool) {
        let Submission {
            id,
            request,
            events,
            received_ns,
        } = sub;
        if events.is_cancelled() {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let stop_ids = if request.ignore_eos {
            Vec::new()
        } else {
            self.eos_ids.clone()
        };
        let s = request.sampling;
        let sampling = crate::sampling::SamplingParams {
            temperature: s.temperature,
            top_k: (s.top_k > 0).then_some(s.top_k as usize),
            top_p: s.top_p,
            seed: s.seed.unwrap_or(id),
        };
        let params = SeqParams {
            sampling,
            stop_ids: stop_ids.clone(),
            max_tokens: request.max_tokens,
        };
        let admitted_ns = self.now();
        let times = step_log::RequestTimes {
            seq: id,
            received_ns,
            admitted_ns,
            woke,
            first_token_ns: None,
            prompt_tokens: request.prompt.len() as u32,
            max_tokens: request.max_tokens,
        };
        let spec = RequestSpec {
            id,
            arrival_ns: admitted_ns,
            prompt_tokens: request.prompt.len() as u32,
            output_tokens: request.max_tokens,
            category: None,
            prefix: None,
        };
        let added = self
            .backend
            .insert(id, &request.prompt, &params)
            .map_err(|e| e.to_string())
            .and_then(|()| self.engine.add_request(spec).map_err(|e| e.to_string()));
        match added {
            Ok(()) => {
                self.live.insert(
                    id,
                    LiveRequest {
                        events,
                        stop_ids,
                        sent: 0,
                        last: None,
                        times,
                    },
                );
            }
            Err(e) => {
                self.backend.remove(id);
                events.send(GenEvent::Failed(e));
                self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn mark_cancelled(&mut self) {
        for (id, r) in &self.live {
            if r.events.is_cancelled() {
                self.cancelled.insert(*id);
            }
        }
    }

    /// Forwards new ids to clients. Nothing is sent past `max_tokens` or past a stop id; a sequence that
    /// emitted a stop id its backend did not stop on is ended through the cancellation path.
    fn stream_tokens(&mut self) {
        let now = self.now();
        for (id, r) in self.live.iter_mut() {
            self.buf.clear();
            self.backend.drain_emitted(*id, &mut self.buf);
            let ended = r.last.is_some_and(|t| r.stop_ids.contains(&t));
            let room = if ended {
                0
            } else {
                r.times.max_tokens.saturating_sub(r.sent) as usize
            };
            self.buf.truncate(room);
            if let Some(p) = self.buf.iter().position(|t| r.stop_ids.contains(t)) {
                self.buf.truncate(p + 1);
                self.cancelled.insert(*id);
            }
            if self.buf.is_empty() {
                continue;
            }
            r.sent += self.buf.len() as u32;
            r.last = self.buf.last().copied();
            r.times.first_token_ns.get_or_insert(now);
            r.events.send(GenEvent::Tokens(self.buf.clone()));
        }
    }

    fn retire(&mut self) {
        let now = self.now();
        for f in self.engine.drain_finished() {
            let id = f.spec.id;
            self.backend.remove(id);
            self.cancelled.remove(&id);
            if let Some(r) = self.live.remove(&id) {
                let reason = match r.last {
                    Some(t) if r.stop_ids.contains(&t) => FinishReason::Stop,
                    _ => FinishReason::Length,
                };
                r.events.send(GenEvent::Finished(reason));
                self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                if let Some(log) = self.step_log.as_mut() {
                    log.request(&r.times, now, r.sent);
                }
            }
        }
    }

    fn fail_all(&mut self, msg: &str) {
        for (id, r) in self.live.drain() {
            self.backend.remove(id);
            r.events.send(GenEvent::Failed(msg.to_string()));
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn publish(&self) {
        let block = self.shared.kv_capacity_tokens.load(Ordering::SeqCst)
            / self.engine.kv_total().max(1) as u64;
        self.shared
            .running
            .store(self.engine.running_len(), Ordering::SeqCst);
        self.shared
            .kv_used_tokens
            .store(self.engine.kv_used() as u64 * block, Ordering::SeqCst);
    }
}

/// The backend as the engine sees it from the driver: cancelled sequences get `stop` on their outcomes,
/// every verification step is recorded into the metrics, and every forward's measured time is set
/// beside the cost model's prediction for the same batch (metrics, and the `--step-log` file).
struct Hooked<'a, B> {
    inner: &'a mut B,
    cancelled: &'a HashSet<SeqId>,
    metrics: &'a Metrics,
    predictor: &'a dyn CostModel,
    draft_kv: Option<&'a mut DraftKvMirror>,
    step_log: Option<&'a mut StepLog>,
    start: Instant,
}

impl<B> Hooked<'_, B> {
    fn record_forward(
        &mut self,
        model: ForwardModel,
        shape: BatchShape,
        measured: Nanos,
        predicted: Nanos,
    ) {
        self.metrics.forward(model, measured, predicted);
        if let Some(log) = self.step_log.as_mut() {
            let at = self.start.elapsed().as_nanos() as Nanos;
            log.row(at, model, &shape, measured, predicted);
        }
    }
}

impl<B: Backend> Backend for Hooked<'_, B> {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        let res = self.inner.draft(items)?;
        let shape = match self.draft_kv.as_mut() {
            Some(m) => m.draft_shape(items),
            None => draft_shape(items),
        };
        let predicted = self.predictor.draft_step(&shape);
        self.record_forward(ForwardModel::Draft, shape, res.elapsed_ns, predicted);
        Ok(res)
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        let mut res = self.inner.target(items)?;
        // The runtime verifies each sequence with one multi-token query.
        let predicted = predicted_target_ns(self.predictor, items, Scorer::MultiQuery);
        self.record_forward(
            ForwardModel::Target,
            target_shape(items, Scorer::MultiQuery),
            res.elapsed_ns,
            predicted,
        );
        let mut verified = Vec::with_capacity(items.len());
        let mut per_seq = Vec::with_capacity(items.len());
        for (item, out) in items.iter().zip(res.outcomes.iter_mut()) {
            let (verify, drafted) = match item.work {
                TargetWork::Verify { drafted } => (true, drafted),
                TargetWork::Prefill { .. } => (false, 0),
            };
            per_seq.push(step_log::SeqOutcome {
                seq: item.seq,
                verify,
                drafted,
                accepted: out.accepted.min(drafted),
            });
            if let TargetWork::Verify { drafted } = item.work {
                let accepted = out.accepted.min(drafted);
                verified.push((drafted, accepted));
                if let Some(m) = self.draft_kv.as_mut() {
                    m.verified(item.seq, item.context_tokens, accepted);
                }
            }
            if self.cancelled.contains(&item.seq) {
                out.stop = true;
            }
        }
        self.metrics.verify_step(&verified);
        if let Some(log) = self.step_log.as_mut() {
            log.target_outcomes(&per_seq);
        }
        Ok(res)
    }

    fn release(&mut self, seq: SeqId) {
        if let Some(m) = self.draft_kv.as_mut() {
            m.release(seq);
        }
        self.inner.release(seq)
    }

    fn lookahead(&mut self, items: &[DraftItem], k_max: u32) -> Option<Vec<u32>> {
        self.inner.lookahead(items, k_max)
    }
}
