//! Route handlers: validate and tokenize, submit to the [`Generator`], answer as JSON or as an SSE stream.

use super::api::{
    ApiError, ChatRequest, CommonParams, CompletionRequest, MessageContent, PromptInput,
};
use crate::chat::ChatMessage;
use crate::generate::{
    FinishReason, GenEvent, GenerateRequest, Generation, Generator, RequestSampling, SubmitError,
};
use crate::metrics::{Metrics, Outcome};
use crate::tokenizer::{GgufTokenizer, IncrementalDecoder};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Request limits; requests beyond them get a 4xx JSON error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest prompt in tokens, after the chat template (400 beyond).
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for (400 beyond).
    pub max_tokens: u32,
    /// `max_tokens` when a request does not say.
    pub default_max_tokens: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 1 << 20,
            max_prompt_tokens: 4096,
            max_tokens: 4096,
            default_max_tokens: 256,
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    generator: Arc<dyn Generator>,
    tokenizer: Arc<GgufTokenizer>,
    limits: ServerLimits,
    model_name: String,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    created: u64,
    /// Set when the server drains (SIGTERM or Ctrl-C): new requests get 503.
    draining: AtomicBool,
    /// Set when the drain's grace period is over: requests still in flight end now, streams with an
    /// error event and `[DONE]`.
    cut: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// State for a server over `generator`, tokenizing with `tokenizer` and reporting into `metrics`.
    pub fn new(
        generator: Arc<dyn Generator>,
        tokenizer: Arc<GgufTokenizer>,
        limits: ServerLimits,
        model_name: impl Into<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        AppState {
            generator,
            tokenizer,
            limits,
            model_name: model_name.into(),
            metrics,
            next_id: AtomicU64::new(1),
            created: unix_now(),
            draining: AtomicBool::new(false),
            cut: tokio::sync::watch::channel(false).0,
        }
    }

    /// Starts draining: requests arriving from now on are refused with 503; those in flight go on.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ends every request still in flight: a stream sends an error event and `[DONE]`, a
    /// non-streaming request answers 503. Used when a drain's grace period is over.
    pub fn end_in_flight(&self) {
        self.begin_drain();
        self.cut.send_replace(true);
    }

    /// Requests in flight (generations submitted and not yet answered or cancelled).
    pub fn in_flight(&self) -> usize {
        self.cut.receiver_count()
    }

    /// Resolves once [`AppState::end_in_flight`] was called.
    fn cut_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cut.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

/// Longest a request body may take to arrive once its headers have (408 beyond).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Refuses a declared `Content-Length` over the limit at once (413, before any of the body is read),
/// and bounds the time the body may take to arrive (408), so neither a huge declared body nor a slow
/// one holds a connection.
async fn body_guard(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!(
                "the request declares a {} byte body; at most {limit} bytes are accepted",
                declared.unwrap_or(0)
            ),
        )
        .into_response();
    }
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, limit.saturating_add(1)),
    )
    .await
    {
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
            .into_response()
        }
        Ok(Err(_)) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large",
                format!("the request body is larger than {limit} bytes"),
            )
            .into_response()
        }
        Ok(Ok(b)) => b,
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The application: OpenAI-compatible routes plus `/health` and `/metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(limit, body_guard))
        .with_state(state)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        "no such route",
    )
}

async fn models(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": st.model_name, "object": "model", "created": st.created, "owned_by": "specsim"}]
    }))
}

/// Body of `POST /tokenize` (vLLM's shape): a completion prompt, tokenized as `/v1/completions` would.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    prompt: String,
    /// Accepted for compatibility; this server's completions add no special tokens to text prompts.
    #[serde(default)]
    #[allow(dead_code)]
    add_special_tokens: Option<bool>,
}

/// `POST /tokenize`: `{"count", "tokens", "max_model_len"}` for a text prompt, so that a load generator
/// can size prompts to an exact token count before it starts the clock (`specsim replay` does).
async fn tokenize(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = || -> Result<serde_json::Value, ApiError> {
        let req: TokenizeRequest = parse_json(body)?;
        let tokens = st.encode(&req.prompt)?;
        Ok(json!({
            "count": tokens.len(),
            "tokens": tokens,
            "max_model_len": st.limits.max_prompt_tokens,
        }))
    };
    match run() {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let load = st.generator.load();
    let (status, word) = if st.generator.healthy() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = json!({
        "status": word,
        "in_flight": load.in_flight,
        "running": load.running,
        "kv_used_tokens": load.kv_used_tokens
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let text = st.metrics.render(&st.generator.load());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// Which endpoint a request came through; decides the response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Completion,
    Chat,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Completion => "completions",
            Kind::Chat => "chat",
        }
    }
}

/// A validated, tokenized request ready to submit.
struct Job {
    request: GenerateRequest,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
    model: String,
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(r.status(), "invalid_request_error", code, r.body_text())
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("invalid_json", None, format!("invalid request body: {e}")))
}

/// Most stop sequences per request, and the longest one in bytes.
const MAX_STOPS: usize = 4;
const MAX_STOP_BYTES: usize = 256;

/// `stop`: absent, null, one string or a list of strings; empty strings are ignored.
fn parse_stop(v: Option<&serde_json::Value>) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| ApiError::invalid("invalid_value", Some("stop"), m);
    let list: Vec<String> = match v {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("stop must be a string or a list of strings".into()))?,
        Some(_) => return Err(bad("stop must be a string or a list of strings".into())),
    };
    let list: Vec<String> = list.into_iter().filter(|s| !s.is_empty()).collect();
    if list.len() > MAX_STOPS {
        return Err(bad(format!(
            "at most {MAX_STOPS} stop sequences are allowed"
        )));
    }
    if list.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(bad(format!(
            "stop sequences are limited to {MAX_STOP_BYTES} bytes"
        )));
    }
    Ok(list)
}

/// Turns a request's token ids into the text a client sees: incremental detokenization, then stop
/// sequences. Text that could be the start of a stop sequence is held back until it cannot; the stop
/// sequence itself is not returned.
struct TextOut {
    decoder: IncrementalDecoder,
    stops: Vec<String>,
    held: String,
}

impl TextOut {
    fn new(stops: Vec<String>) -> Self {
        TextOut {
            decoder: IncrementalDecoder::new(true),
            stops,
            held: String::new(),
        }
    }

    /// Releasable text, and whether a stop sequence was found (then generation should end).
    fn release(&mut self, at_end: bool) -> (String, bool) {
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(pos) = hit {
            let out = self.held[..pos].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = if at_end {
            0
        } else {
            self.stops
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(0)
                .saturating_sub(1)
        };
        let mut cut = self.held.len().saturating_sub(keep);
        while !self.held.is_char_boundary(cut) {
            cut -= 1;
        }
        let out: String = self.held.drain(..cut).collect();
        (out, false)
    }

    fn push(&mut self, tok: &GgufTokenizer, ids: &[u32]) -> Result<(String, bool), String> {
        for &id in ids {
            if let Some(t) = self.decoder.push(tok, id).map_err(|e| e.to_string())? {
                self.held.push_str(&t);
            }
        }
        Ok(self.release(false))
    }

    fn finish(&mut self, tok: &GgufTokenizer) -> Result<(String, bool), String> {
        let t = self.decoder.flush(tok).map_err(|e| e.to_string())?;
        self.held.push_str(&t);
        Ok(self.release(true))
    }
}

impl AppState {
    /// Checks the shared fields and builds the generation request for `prompt`.
    fn build(&self, kind: Kind, c: &CommonParams, prompt: Vec<u32>) -> Result<Job, ApiError> {
        if c.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(
                "unsupported",
                Some("n"),
                "only n = 1 is supported",
            ));
        }
        let stop = parse_stop(c.stop.as_ref())?;
        if matches!(&c.logprobs, Some(v) if !v.is_null() && *v != json!(false)) {
            return Err(ApiError::invalid(
                "unsupported",
                Some("logprobs"),
                "logprobs are not supported",
            ));
        }
        let temperature = c.temperature.unwrap_or(1.0);
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(ApiError::invalid(
                "invalid_value",
                Some("temperature"),
                "temperature must be a number >= 0",
            ));
        }
        let top_p = c.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "invalid_value",
                Some("top_p"),
                "top_p must be in (0, 1]",
            ));
        }
        let top_k = match c.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => u32::try_from(k).unwrap_or(u32::MAX),
            Some(_) => {
                return Err(ApiError::invalid(
                    "invalid_value",
                    Some("top_k"),
                    "top_k must be -1, 0 or positive",
                ))
            }
        };
        let max_tokens = c
            .max_tokens
            .unwrap_or(self.limits.default_max_tokens.min(self.limits.max_tokens));
        if max_tokens == 0 {
            return Err(ApiError::invalid(
                "invalid_value",
                Some("max_tokens"),
                "max_tokens must be at least 1",
            ));
        }
        if max_tokens > self.limits.max_tokens {
            return Err(ApiError::invalid(
                "max_tokens_too_large",
                Some("max_tokens"),
                format!(
                    "max_tokens is {max_tokens}; this server allows at most {}",
                    self.limits.max_tokens
                ),
            ));
        }
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                "empty_prompt",
                Some("prompt"),
                "the prompt is empty",
            ));
        }
        if prompt.len() > self.limits.max_prompt_tokens {
            return Err(ApiError::invalid(
                "context_length_exceeded",
                Some(if kind == Kind::Chat {
                    "messages"
                } else {
                    "prompt"
                }),
                format!(
                    "the prompt has {} tokens; this server allows at most {}",
                    prompt.len(),
                    self.limits.max_prompt_tokens
                ),
            ));
        }
        let vocab = self.tokenizer.vocab_size();
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::invalid(
                "invalid_value",
                Some("prompt"),
                format!("token id {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        Ok(Job {
            stop,
            request: GenerateRequest {
                prompt,
                max_tokens,
                ignore_eos: c.ignore_eos,
                sampling: RequestSampling {
                    temperature,
                    top_p,
                    top_k,
                    seed: c.seed,
                },
            },
            stream: c.stream,
            include_usage: c.stream_options.as_ref().is_some_and(|o| o.include_usage),
            model: c.model.clone().unwrap_or_else(|| self.model_name.clone()),
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        // Rough pre-check so a huge prompt is refused before the tokenizer spends time on it: byte-level
        // BPE never yields more tokens than bytes, and rarely fewer than a quarter of them.
        if text.len() / 8 > self.limits.max_prompt_tokens {
            return Err(ApiError::invalid(
                "context_length_exceeded",
                Some("prompt"),
                format!(
                    "the prompt ({} bytes) exceeds the limit of {} tokens",
                    text.len(),
                    self.limits.max_prompt_tokens
                ),
            ));
        }
        self.tokenizer
            .encode(text)
            .map_err(|e| ApiError::invalid("tokenization_failed", Some("prompt"), e.to_string()))
    }

    fn completion_job(&self, body: Result<Bytes, BytesRejection>) -> Result<Job, ApiError> {
        let req: CompletionRequest = parse_json(body)?;
        if req.echo {
            return Err(ApiError::invalid(
                "unsupported",
                Some("echo"),
                "echo is not supported",
            ));
        }
        let one = |n: usize| {
            if n == 1 {
                Ok(())
            } else {
                Err(ApiError::invalid(
                    "unsupported",
                    Some("prompt"),
                    format!("one prompt per request is supported, got {n}"),
                ))
            }
        };
        let prompt = match req.prompt {
            PromptInput::Text(s) => self.encode(&s)?,
            PromptInput::Ids(ids) => ids,
            PromptInput::Texts(v) => {
                one(v.len())?;
                self.encode(&v[0])?
            }
            PromptInput::IdLists(mut v) => {
                one(v.len())?;
                v.swap_remove(0)
            }
        };
        self.build(Kind::Completion, &req.common, prompt)
    }

    fn chat_job(&self, body: Result<Bytes, BytesRejection>) -> Result<Job, ApiError> {
        let mut req: ChatRequest = parse_json(body)?;
        let mut messages = Vec::with_capacity(req.messages.len());
        for m in req.messages {
            let content = match m.content {
                None => String::new(),
                Some(MessageContent::Text(s)) => s,
                Some(MessageContent::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => s.push_str(&t),
                            (k, _) => {
                                return Err(ApiError::invalid(
                                    "unsupported",
                                    Some("messages"),
                                    format!("content part type `{k}` is not supported"),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            messages.push(ChatMessage {
                role: m.role,
                content,
            });
        }
        let text = self
            .tokenizer
            .chat_template()
            .render(&messages, true)
            .map_err(|e| ApiError::invalid("invalid_messages", Some("messages"), e.to_string()))?;
        if req.common.max_tokens.is_none() {
            req.common.max_tokens = req.max_completion_tokens;
        }
        let prompt = self.encode(&text)?;
        self.build(Kind::Chat, &req.common, prompt)
    }

    fn submit(&self, job: &Job) -> Result<Generation, ApiError> {
        self.generator
            .submit(job.request.clone())
            .map_err(|e| match e {
                SubmitError::QueueFull(_) => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "server_overloaded",
                    "queue_full",
                    e.to_string(),
                ),
                SubmitError::Unavailable => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "unavailable",
                    e.to_string(),
                ),
                SubmitError::Invalid(m) => ApiError::invalid("invalid_request", None, m),
            })
    }
}

async fn completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let job = st.completion_job(body);
    respond(st, Kind::Completion, job).await
}

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let job = st.chat_job(body);
    respond(st, Kind::Chat, job).await
}

/// Counts a request's outcome exactly once: `Cancelled` unless something else was set before the drop
/// (a dropped handler future or response stream means the client went away).
struct RequestGuard {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
    outcome: Outcome,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.metrics.request(self.endpoint, self.outcome);
    }
}

/// Per-request timing, for TTFT and TPOT.
struct Timing {
    start: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    tokens: usize,
}

impl Timing {
    fn tokens(&mut self, n: usize) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.tokens += n;
    }

    fn record(&self, metrics: &Metrics, prompt_tokens: usize) {
        let ttft = self.first.map(|f| (f - self.start).as_secs_f64());
        let tpot = match (self.first, self.last) {
            (Some(f), Some(l)) if self.tokens > 1 => {
                Some((l - f).as_secs_f64() / (self.tokens - 1) as f64)
            }
            _ => None,
        };
        metrics.finished(prompt_tokens, self.tokens, ttft, tpot);
    }
}

async fn respond(st: Arc<AppState>, kind: Kind, job: Result<Job, ApiError>) -> Response {
    let ep = kind.label();
    let job = match job {
        Ok(j) => j,
        Err(e) => {
            st.metrics.request(ep, Outcome::Invalid);
            return e.into_response();
        }
    };
    if st.draining.load(Ordering::SeqCst) {
        st.metrics.request(ep, Outcome::Rejected);
        return shutting_down().into_response();
    }
    let start = Instant::now();
    let generation = match st.submit(&job) {
        Ok(g) => g,
        Err(e) => {
            let outcome = if e.status == StatusCode::TOO_MANY_REQUESTS {
                Outcome::Rejected
            } else {
                Outcome::Error
            };
            st.metrics.request(ep, outcome);
            return e.into_response();
        }
    };
    let guard = RequestGuard {
        metrics: st.metrics.clone(),
        endpoint: ep,
        outcome: Outcome::Cancelled,
    };
    let timing = Timing {
        start,
        first: None,
        last: None,
        tokens: 0,
    };
    let id = format!(
        "{}-{}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        st.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let ctx = ResponseCtx {
        id,
        created: unix_now(),
        model: job.model.clone(),
        kind,
        prompt_tokens: job.request.prompt.len(),
    };
    if job.stream {
        stream_response(
            st,
            ctx,
            generation,
            guard,
            timing,
            job.include_usage,
            job.stop,
        )
    } else {
        full_response(st, ctx, generation, guard, timing, job.stop).await
    }
}

/// Fields every response object repeats.
struct ResponseCtx {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    prompt_tokens: usize,
}

impl ResponseCtx {
    fn usage(&self, completion: usize) -> serde_json::Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion, "total_tokens": self.prompt_tokens + completion})
    }

    fn chunk(&self, text: &str, first: bool, finish: Option<FinishReason>) -> serde_json::Value {
        let finish = finish.map(FinishReason::as_str);
        match self.kind {
            Kind::Completion => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]
            }),
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if first {
                    delta.insert("role".into(), json!("assistant"));
                }
                if !text.is_empty() || first {
                    delta.insert("content".into(), json!(text));
                }
                json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
                })
            }
        }
    }

    fn usage_chunk(&self, completion: usize) -> serde_json::Value {
        let object = if self.kind == Kind::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [], "usage": self.usage(completion)})
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "shutting_down",
        "the server is shutting down",
    )
}

fn generator_failed(msg: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "generation_failed",
        msg,
    )
}

async fn full_response(
    st: Arc<AppState>,
    ctx: ResponseCtx,
    mut generation: Generation,
    mut guard: RequestGuard,
    mut timing: Timing,
    stops: Vec<String>,
) -> Response {
    let mut out = TextOut::new(stops);
    let mut text = String::new();
    let mut cut = std::pin::pin!(st.cut_signal());
    let step = loop {
        let event = tokio::select! {
            e = generation.next() => e,
            _ = &mut cut => {
                guard.outcome = Outcome::Error;
                return shutting_down().into_response();
            }
        };
        match event {
            Some(GenEvent::Tokens(t)) => {
                timing.tokens(t.len());
                match out.push(&st.tokenizer, &t) {
                    Ok((s, false)) => text.push_str(&s),
                    Ok((s, true)) => {
                        text.push_str(&s);
                        break Ok(FinishReason::Stop);
                    }
                    Err(e) => break Err(e),
                }
            }
            Some(GenEvent::Finished(r)) => match out.finish(&st.tokenizer) {
                Ok((s, hit)) => {
                    text.push_str(&s);
                    break Ok(if hit { FinishReason::Stop } else { r });
                }
                Err(e) => break Err(e),
            },
            Some(GenEvent::Failed(m)) => break Err(m),
            None => break Err("the generator stopped".into()),
        }
    };
    // Dropping the generation here cancels it if a stop sequence ended it early.
    drop(generation);
    let finish = match step {
        Ok(f) => f,
        Err(m) => {
            guard.outcome = Outcome::Error;
            return generator_failed(m).into_response();
        }
    };
    guard.outcome = Outcome::Ok;
    timing.record(&st.metrics, ctx.prompt_tokens);
    let finish = finish.as_str();
    let n = timing.tokens;
    let body = match ctx.kind {
        Kind::Completion => json!({
            "id": ctx.id, "object": "text_completion", "created": ctx.created, "model": ctx.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            "usage": ctx.usage(n),
        }),
        Kind::Chat => json!({
            "id": ctx.id, "object": "chat.completion", "created": ctx.created, "model": ctx.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish}],
            "usage": ctx.usage(n),
        }),
    };
    Json(body).into_response()
}

/// Where a streaming response is.
enum Phase {
    Running,
    Usage,
    Done,
    End,
}

/// State of one SSE stream. Dropping it (client gone) drops the [`Generation`], which cancels the request.
struct StreamState {
    st: Arc<AppState>,
    ctx: ResponseCtx,
    /// `None` once a stop sequence ended the request (dropping it cancelled generation).
    generation: Option<Generation>,
    guard: RequestGuard,
    timing: Timing,
    out: TextOut,
    include_usage: bool,
    first_chunk: bool,
    phase: Phase,
    /// Resolves when the server's drain grace period is over.
    cut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl StreamState {
    fn data(v: &serde_json::Value) -> Event {
        Event::default().data(v.to_string())
    }

    fn fail(&mut self, msg: String) -> Event {
        self.fail_with(generator_failed(msg))
    }

    /// An error event; `[DONE]` follows.
    fn fail_with(&mut self, e: ApiError) -> Event {
        self.guard.outcome = Outcome::Error;
        self.phase = Phase::Done;
        Self::data(&e.body())
    }

    /// The last text chunk, with its finish reason; what follows is usage (if asked for) and `[DONE]`.
    fn finish(&mut self, text: &str, reason: FinishReason) -> Event {
        self.guard.outcome = Outcome::Ok;
        self.timing.record(&self.st.metrics, self.ctx.prompt_tokens);
        self.phase = if self.include_usage {
            Phase::Usage
        } else {
            Phase::Done
        };
        self.text_chunk(text, Some(reason))
    }

    fn text_chunk(&mut self, text: &str, finish: Option<FinishReason>) -> Event {
        let ev = Self::data(&self.ctx.chunk(text, self.first_chunk, finish));
        self.first_chunk = false;
        ev
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.phase {
                Phase::Running => {
                    let event = match self.generation.as_mut() {
                        Some(g) => tokio::select! {
                            e = g.next() => e,
                            _ = &mut self.cut => {
                                // Cancel the request, then end the stream cleanly.
                                self.generation = None;
                                return Some(self.fail_with(shutting_down()));
                            }
                        },
                        None => None,
                    };
                    match event {
                        Some(GenEvent::Tokens(ids)) => {
                            self.timing.tokens(ids.len());
                            match self.out.push(&self.st.tokenizer, &ids) {
                                Ok((text, true)) => {
                                    self.generation = None;
                                    return Some(self.finish(&text, FinishReason::Stop));
                                }
                                Ok((text, false)) if !text.is_empty() => {
                                    return Some(self.text_chunk(&text, None))
                                }
                                Ok(_) => {}
                                Err(e) => return Some(self.fail(e)),
                            }
                        }
                        Some(GenEvent::Finished(reason)) => {
                            return Some(match self.out.finish(&self.st.tokenizer) {
                                Ok((text, hit)) => self
                                    .finish(&text, if hit { FinishReason::Stop } else { reason }),
                                Err(e) => self.fail(e),
                            });
                        }
                        Some(GenEvent::Failed(m)) => return Some(self.fail(m)),
                        None => return Some(self.fail("the generator stopped".into())),
                    }
                }
                Phase::Usage => {
                    self.phase = Phase::Done;
                    return Some(Self::data(&self.ctx.usage_chunk(self.timing.tokens)));
                }
                Phase::Done => {
                    self.phase = Phase::End;
                    return Some(Event::default().data("[DONE]"));
                }
                Phase::End => return None,
            }
        }
    }
}

fn stream_response(
    st: Arc<AppState>,
    ctx: ResponseCtx,
    generation: Generation,
    guard: RequestGuard,
    timing: Timing,
    include_usage: bool,
    stops: Vec<String>,
) -> Response {
    let cut = Box::pin(st.cut_signal());
    let state = StreamState {
        cut,
        st,
        ctx,
        generation: Some(generation),
        guard,
        timing,
        out: TextOut::new(stops),
        include_usage,
        first_chunk: true,
        phase: Phase::Running,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let ev = s.next_event().await?;
        Some((Ok::<Event, Infallible>(ev), s))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
