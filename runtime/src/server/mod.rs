//! The OpenAI-compatible HTTP server (`specsim serve`).
//!
//! ## Reading guide
//!
//! 1. [`crate::generate`] — the seam: [`Generator::submit`] takes a tokenized request and returns a [`Generation`],
//!    a stream of token-id events; dropping it cancels the request (the generator frees its sequence and
//!    KV). Everything behind the seam is swappable: the engine thread ([`crate::driver`]) in production,
//!    [`fake::FakeGenerator`] in tests.
//! 2. [`routes`] — handlers: parse and validate (OpenAI error shape on failure), apply the chat template,
//!    tokenize, submit, then answer as one JSON body or as server-sent events with incremental
//!    detokenization.
//! 3. [`crate::metrics`] — Prometheus text: requests, TTFT/TPOT, batch size, k chosen, acceptance per draft
//!    position, KV use.
//!
//! Routes: `POST /v1/completions`, `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`,
//! `GET /metrics`. Requests may set `ignore_eos` and `max_tokens` to force output lengths (replays do).
//! The server binds 127.0.0.1 unless `--host` says otherwise.

pub mod api;
pub mod fake;
pub mod routes;

// The seam and the metrics the server reads, re-exported where HTTP code and its tests look for them.
pub use crate::generate::{
    FinishReason, GenEvent, GenerateRequest, Generation, GenerationSender, Generator, Load,
    RequestSampling, SubmitError,
};
pub use crate::metrics::{ForwardModel, Metrics};
pub use routes::{router, AppState, ServerLimits};

use std::future::Future;

/// Serves `app` on `listener` until `shutdown` resolves; in-flight responses are allowed to finish.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
