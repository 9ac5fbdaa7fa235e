//! A scripted [`Generator`] for server tests: no engine at all, so tests can hold requests at exact
//! points. (`specsim serve --fake` instead runs the real engine over [`crate::driver::echo::EchoBackend`].)
//!
//! It echoes the prompt: output token `i` is `prompt[i % prompt.len()]`, sent in bursts of `burst`
//! tokens (as a speculative step emits several tokens at once). With `eos_after = Some(n)` and
//! `ignore_eos` unset, token `n` is the end-of-sequence id and the request finishes with `stop`. KV use is
//! modelled as prompt plus generated tokens per request, returned when it finishes or is cancelled.
//!
//! A test can hold requests mid-stream with a gate: the first `free_tokens` tokens of each request flow,
//! every further token waits for a permit from [`FakeGenerator::release`]. While waiting, the request
//! watches for cancellation, so a client that disconnects is observed without any timing assumption.

use crate::generate::{
    generation_channel, FinishReason, GenEvent, GenerateRequest, Generation, GenerationSender,
    Generator, Load, SubmitError,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

/// Settings of a [`FakeGenerator`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Most requests in flight; more are refused with [`SubmitError::QueueFull`].
    pub capacity: usize,
    /// Tokens per event.
    pub burst: usize,
    /// Emit this id as token number `n` (0-based) when `eos_after = Some(n)`, unless `ignore_eos`.
    pub eos_id: u32,
    /// Position of the end-of-sequence token, if any.
    pub eos_after: Option<u32>,
    /// With `Some(n)`, only the first `n` tokens of each request flow freely; the rest need permits.
    pub free_tokens: Option<u32>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            capacity: 64,
            burst: 3,
            eos_id: 0,
            eos_after: None,
            free_tokens: None,
        }
    }
}

#[derive(Debug)]
struct Shared {
    cfg: FakeConfig,
    in_flight: AtomicUsize,
    kv_used: AtomicU64,
    cancelled: AtomicU64,
    finished: AtomicU64,
    gate: Semaphore,
    changed: Notify,
}

/// The scripted generator; cheap to clone (clones share state).
#[derive(Debug, Clone)]
pub struct FakeGenerator {
    shared: Arc<Shared>,
}

impl FakeGenerator {
    /// A generator with the given settings.
    pub fn new(cfg: FakeConfig) -> Self {
        FakeGenerator {
            shared: Arc::new(Shared {
                cfg,
                in_flight: AtomicUsize::new(0),
                kv_used: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
                finished: AtomicU64::new(0),
                gate: Semaphore::new(0),
                changed: Notify::new(),
            }),
        }
    }

    /// The token the script emits at output position `i` for `prompt` (before end-of-sequence handling).
    pub fn echo_token(prompt: &[u32], i: u32) -> u32 {
        prompt[i as usize % prompt.len()]
    }

    /// Lets `n` more gated tokens through (shared by all requests).
    pub fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    /// Requests that ended because their client went away.
    pub fn cancelled(&self) -> u64 {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Requests that ran to completion.
    pub fn finished(&self) -> u64 {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// Waits until `pred(self)` holds, re-checking whenever a request starts, emits a token or ends.
    pub async fn wait_until(&self, pred: impl Fn(&FakeGenerator) -> bool) {
        loop {
            let notified = self.shared.changed.notified();
            if pred(self) {
                return;
            }
            notified.await;
        }
    }

    async fn run(shared: Arc<Shared>, req: GenerateRequest, tx: GenerationSender) {
        let mut held = req.prompt.len() as u64;
        let mut produced = 0u32;
        let mut batch = Vec::new();
        let outcome = loop {
            if produced == req.max_tokens {
                break Some(FinishReason::Length);
            }
            let gated = shared.cfg.free_tokens.is_some_and(|f| produced >= f);
            if gated {
                // Flush what is pending before blocking, so the client sees it.
                if !batch.is_empty() && !tx.send(GenEvent::Tokens(std::mem::take(&mut batch))) {
                    break None;
                }
                tokio::select! {
                    permit = shared.gate.acquire() => match permit {
                        Ok(p) => p.forget(),
                        Err(_) => break None,
                    },
                    _ = tx.cancelled() => break None,
                }
            }
            let eos = !req.ignore_eos && shared.cfg.eos_after == Some(produced);
            let tok = if eos {
                shared.cfg.eos_id
            } else {
                Self::echo_token(&req.prompt, produced)
            };
            batch.push(tok);
            produced += 1;
            held += 1;
            shared.kv_used.fetch_add(1, Ordering::SeqCst);
            shared.changed.notify_waiters();
            if eos {
                break Some(FinishReason::Stop);
            }
            if batch.len() >= shared.cfg.burst.max(1) {
                if !tx.send(GenEvent::Tokens(std::mem::take(&mut batch))) {
                    break None;
                }
                tokio::task::yield_now().await;
            }
        };
        let delivered = match outcome {
            Some(reason) => {
                (batch.is_empty() || tx.send(GenEvent::Tokens(batch)))
                    && tx.send(GenEvent::Finished(reason))
            }
            None => false,
        };
        shared.kv_used.fetch_sub(held, Ordering::SeqCst);
        if delivered {
            shared.finished.fetch_add(1, Ordering::SeqCst);
        } else {
            shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.changed.notify_waiters();
    }
}

impl Generator for FakeGenerator {
    fn submit(&self, request: GenerateRequest) -> Result<Generation, SubmitError> {
        if request.prompt.is_empty() {
            return Err(SubmitError::Invalid("empty prompt".into()));
        }
        let s = &self.shared;
        let admitted = s
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < s.cfg.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return Err(SubmitError::QueueFull(s.cfg.capacity));
        }
        s.kv_used
            .fetch_add(request.prompt.len() as u64, Ordering::SeqCst);
        s.changed.notify_waiters();
        let (tx, rx) = generation_channel();
        tokio::spawn(Self::run(self.shared.clone(), request, tx));
        Ok(rx)
    }

    fn load(&self) -> Load {
        let n = self.shared.in_flight.load(Ordering::SeqCst);
        Load {
            in_flight: n,
            running: n,
            kv_used_tokens: self.shared.kv_used.load(Ordering::SeqCst),
            kv_capacity_tokens: 1 << 20,
        }
    }
}
