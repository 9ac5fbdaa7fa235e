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
//! 3. [`crate::metrics`] — Prometheus text (prometheus-client): requests, TTFT/TPOT, batch size, k chosen,
//!    acceptance per draft position (also under vLLM's `vllm:spec_decode_*` names), KV use.
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
pub use routes::{router, AppState, ServerLimits, BODY_READ_TIMEOUT};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;

/// Connection-level limits of [`serve_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// A client must send a request's complete headers within this time of starting it (or of the
    /// connection opening), else the connection is closed: slow-header ("slowloris") clients cannot
    /// hold connections open.
    pub header_read_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, with the default [`ConnLimits`]; in-flight
/// responses are allowed to finish.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, ConnLimits::default()).await
}

/// Serves `app` on `listener` until `shutdown` resolves. Then it stops accepting, asks every open
/// connection to close once its in-flight response is done (idle keep-alive connections close at once),
/// and returns when all are closed. Every connection has a header read timeout
/// ([`ConnLimits::header_read_timeout`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            // hyper's header timer starts at a request's first byte: a connection that sends
            // nothing at all is closed here after the same time.
            // A connection still silent when the server stops is closed too.
            let mut first = [0u8; 1];
            let spoke = tokio::select! {
                r = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)) => {
                    matches!(r, Ok(Ok(n)) if n > 0)
                }
                _ = stop.wait_for(|s| *s) => false,
            };
            if !spoke {
                drop(open);
                return;
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let mut asked = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    r = stop.wait_for(|s| *s), if !asked => {
                        asked = true;
                        if r.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}
