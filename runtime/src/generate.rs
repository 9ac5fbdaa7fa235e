//! The seam between the HTTP layer and whatever generates tokens: request in, token stream out.
//!
//! The server knows nothing about engines. It tokenizes, calls [`Generator::submit`] and reads
//! [`GenEvent`]s from the returned [`Generation`]. The generator — the engine thread
//! ([`crate::driver`]) or a scripted fake in tests ([`crate::server::fake`]) — pushes events through the paired
//! [`GenerationSender`].
//!
//! **Cancellation travels through the same pair.** Dropping the [`Generation`] (a client disconnected, so
//! axum dropped the response stream) closes the channel; the generator sees
//! [`GenerationSender::is_cancelled`] (or awaits [`GenerationSender::cancelled`]) and frees the sequence and
//! its KV. Nothing else needs to be called, so no code path can forget to.

use tokio::sync::mpsc;

/// Sampling settings as a request asks for them (0 and None mean "off" or "engine picks"); the engine
/// thread resolves them into [`crate::sampling::SamplingParams`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSampling {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass (1.0 disables).
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 disables).
    pub top_k: u32,
    /// Per-request seed; `None` lets the engine pick one.
    pub seed: Option<u64>,
}

impl Default for RequestSampling {
    fn default() -> Self {
        RequestSampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
        }
    }
}

/// A tokenized generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (at least one).
    pub max_tokens: u32,
    /// Keep generating past end-of-sequence tokens until `max_tokens` (replays force output lengths so).
    pub ignore_eos: bool,
    /// Sampling settings.
    pub sampling: RequestSampling,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token was generated (it is the last token sent).
    Stop,
    /// `max_tokens` were generated.
    Length,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a generator reports about one request, in order: any number of `Tokens`, then exactly one
/// `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// Newly emitted token ids (a verified step can emit several at once).
    Tokens(Vec<u32>),
    /// Generation ended.
    Finished(FinishReason),
    /// The generator failed this request.
    Failed(String),
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Too many requests are queued or running; the client should retry later (HTTP 429).
    #[error("the server is at capacity ({0} requests in flight); retry later")]
    QueueFull(usize),
    /// The generator has stopped (HTTP 503).
    #[error("the generator is not running")]
    Unavailable,
    /// The request cannot be served by this generator (HTTP 400), e.g. it needs more KV than exists.
    #[error("{0}")]
    Invalid(String),
}

/// Occupancy numbers for `/health` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Requests accepted and not yet finished or cancelled.
    pub in_flight: usize,
    /// Of those, how many are running (admitted to the batch).
    pub running: usize,
    /// KV cache in use, in tokens.
    pub kv_used_tokens: u64,
    /// KV cache capacity, in tokens.
    pub kv_capacity_tokens: u64,
}

/// Something that turns requests into token streams: the engine thread, or a fake in tests.
pub trait Generator: Send + Sync + 'static {
    /// Accepts a request and returns its event stream, or refuses it at once.
    fn submit(&self, request: GenerateRequest) -> Result<Generation, SubmitError>;
    /// Current occupancy.
    fn load(&self) -> Load;
    /// False once the generator can no longer serve (its engine thread stopped); `/health` turns 503.
    fn healthy(&self) -> bool {
        true
    }
}

/// The server's end of one request: events arrive in order; dropping it cancels the request.
#[derive(Debug)]
pub struct Generation {
    rx: mpsc::UnboundedReceiver<GenEvent>,
}

impl Generation {
    /// The next event, or `None` when the generator dropped its sender without finishing (treat as failure).
    pub async fn next(&mut self) -> Option<GenEvent> {
        self.rx.recv().await
    }
}

/// The generator's end of one request.
#[derive(Debug, Clone)]
pub struct GenerationSender {
    tx: mpsc::UnboundedSender<GenEvent>,
}

impl GenerationSender {
    /// Sends an event; returns false when the client has gone (the request is cancelled).
    pub fn send(&self, event: GenEvent) -> bool {
        self.tx.send(event).is_ok()
    }

    /// True once the server dropped the [`Generation`] (client disconnected): free the sequence.
    pub fn is_cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the request is cancelled.
    pub async fn cancelled(&self) {
        self.tx.closed().await
    }
}

/// A connected sender/receiver pair for one request.
pub fn generation_channel() -> (GenerationSender, Generation) {
    let (tx, rx) = mpsc::unbounded_channel();
    (GenerationSender { tx }, Generation { rx })
}
