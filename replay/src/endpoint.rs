//! The seam between the load generator and an engine: one request in, timed token arrivals out.
//!
//! The driver ([`crate::driver`]) decides *when* each request is sent and how long it may take; an
//! [`Endpoint`] only runs one request and records, as they arrive, the times at which output tokens
//! came back. Two implementations are meant to exist:
//!
//! - [`crate::http::HttpEndpoint`]: any OpenAI-compatible server (`specsim serve`, vLLM, SGLang,
//!   llama.cpp), streaming `/v1/completions`;
//! - an in-process endpoint that drives the runtime's engine directly (no HTTP, exact token counts per
//!   step), for fast tests. It is not written yet: it needs the runtime's live backend. It implements
//!   this same trait, filling [`Chunk::tokens`] with the tokens of each engine step.
//!
//! The endpoint fills an [`Observation`] *while* it runs, so that when the driver cancels a request
//! (timeout, run deadline, aborted run) the tokens that did arrive are still reported.

use crate::prompts::Prompt;
use std::future::Future;
use std::time::Instant;

/// One request as an endpoint sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRequest {
    /// Request id (the workload's).
    pub id: u64,
    /// What to send as the prompt.
    pub prompt: Prompt,
    /// Tokens to generate, exactly (the endpoint asks the engine to ignore end-of-sequence).
    pub max_tokens: u32,
}

/// Output tokens that arrived together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chunk {
    /// When they arrived.
    pub at: Instant,
    /// How many tokens, when known (in-process), or 1 per streamed text chunk (HTTP; a chunk with
    /// empty text, such as a final chunk that only carries the finish reason, counts 0).
    pub tokens: u32,
}

/// What an endpoint observed while one request ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Output arrivals, in order.
    pub chunks: Vec<Chunk>,
    /// Prompt tokens as the engine counted them (`usage.prompt_tokens`), when reported.
    pub prompt_tokens: Option<u32>,
    /// Output tokens as the engine counted them (`usage.completion_tokens`), when reported.
    pub completion_tokens: Option<u32>,
    /// Finish reason of the last chunk (`length`, `stop`), when reported.
    pub finish_reason: Option<String>,
}

impl Observation {
    /// Output tokens received: the engine's count when reported; else `max_tokens` when the engine
    /// said it stopped at the length limit; else the tokens counted in chunks (which undercounts a
    /// server that streams several tokens per chunk without reporting usage).
    pub fn output_tokens(&self, max_tokens: u32) -> u32 {
        if let Some(n) = self.completion_tokens {
            return n;
        }
        if self.finish_reason.as_deref() == Some("length") {
            return max_tokens;
        }
        self.chunks.iter().map(|c| c.tokens).sum()
    }

    /// Time of the first output (the first chunk that carries a token, else the first chunk).
    pub fn first_token_at(&self) -> Option<Instant> {
        self.chunks
            .iter()
            .find(|c| c.tokens > 0)
            .or(self.chunks.first())
            .map(|c| c.at)
    }

    /// Time of the last output.
    pub fn last_token_at(&self) -> Option<Instant> {
        self.chunks
            .iter()
            .rev()
            .find(|c| c.tokens > 0)
            .or(self.chunks.last())
            .map(|c| c.at)
    }
}

/// Why one request failed. Failed requests are results: each is written to `requests.csv` with this
/// as its `error` and counted in `summary.failed`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The connection could not be made (refused, unreachable, reset before a response).
    #[error("connect: {0}")]
    Connect(String),
    /// The server answered with a non-success HTTP status.
    #[error("http {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The response stream broke off (the engine died or closed the connection mid-response).
    #[error("stream: {0}")]
    Stream(String),
    /// The server reported an error inside the stream.
    #[error("server error: {0}")]
    Server(String),
    /// The response was not what an OpenAI-compatible server sends.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Fewer tokens came back than requested.
    #[error("short output: {got} of {want} tokens")]
    ShortOutput {
        /// Tokens received.
        got: u32,
        /// Tokens requested.
        want: u32,
    },
    /// The request took longer than the per-request timeout.
    #[error("timeout after {0:.1} s")]
    Timeout(f64),
    /// The run's overall deadline passed before the request finished (or was sent).
    #[error("run deadline passed")]
    Deadline,
    /// The run was aborted (the engine stopped accepting connections) before the request finished
    /// (or was sent).
    #[error("aborted: {0}")]
    Aborted(String),
}

impl Failure {
    /// Whether the failure says the engine is unreachable (not merely slow or refusing one request):
    /// consecutive such failures abort a replay.
    pub fn is_connection(&self) -> bool {
        matches!(self, Failure::Connect(_) | Failure::Stream(_))
    }

    /// A short name of the kind, for counts (`connect`, `http_503`, `timeout`, ...).
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(_) => "connect".into(),
            Failure::Status { status, .. } => format!("http_{status}"),
            Failure::Stream(_) => "stream".into(),
            Failure::Server(_) => "server_error".into(),
            Failure::Protocol(_) => "protocol".into(),
            Failure::ShortOutput { .. } => "short_output".into(),
            Failure::Timeout(_) => "timeout".into(),
            Failure::Deadline => "deadline".into(),
            Failure::Aborted(_) => "aborted".into(),
        }
    }
}

/// An engine that runs one request at a time per call (calls run concurrently).
///
/// Implementations push a [`Chunk`] into `obs` as each output arrives (timestamped with
/// [`Instant::now`] at arrival), fill the usage fields when the engine reports them, and return
/// `Ok(())` when the engine says the request is complete. They need not enforce timeouts or check
/// the output length: the driver does both, and drops the future to cancel a request.
pub trait Endpoint: Send + Sync + 'static {
    /// Runs one request, recording its outputs into `obs`.
    fn generate<'a>(
        &'a self,
        req: &'a EndpointRequest,
        obs: &'a mut Observation,
    ) -> impl Future<Output = Result<(), Failure>> + Send + 'a;

    /// One line naming the engine (for reports), e.g. the URL.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn output_tokens_prefer_the_engines_count() {
        let t0 = Instant::now();
        let mut o = Observation {
            chunks: vec![
                Chunk { at: t0, tokens: 1 },
                Chunk {
                    at: t0 + Duration::from_millis(5),
                    tokens: 1,
                },
                Chunk {
                    at: t0 + Duration::from_millis(9),
                    tokens: 0,
                },
            ],
            ..Default::default()
        };
        assert_eq!(o.output_tokens(10), 2);
        assert_eq!(o.last_token_at(), Some(t0 + Duration::from_millis(5)));
        o.finish_reason = Some("length".into());
        assert_eq!(o.output_tokens(10), 10);
        o.completion_tokens = Some(7);
        assert_eq!(o.output_tokens(10), 7);
        assert_eq!(o.first_token_at(), Some(t0));
    }
}
