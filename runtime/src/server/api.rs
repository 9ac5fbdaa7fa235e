//! OpenAI-compatible request bodies and the error shape.
//!
//! Unknown fields are ignored, as OpenAI-compatible servers do (clients send `user`, `presence_penalty`
//! and the like). Fields that would change the output and that this server cannot honour (`n > 1`,
//! `logprobs`, `echo`) are refused with a 400 instead of being silently dropped.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// `prompt` of `/v1/completions`: text or token ids (a batch of several prompts is refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    /// One text prompt.
    Text(String),
    /// One prompt given as token ids.
    Ids(Vec<u32>),
    /// Several text prompts (only one is accepted).
    Texts(Vec<String>),
    /// Several id prompts (only one is accepted).
    IdLists(Vec<Vec<u32>>),
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by both endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonParams {
    /// Model name; any value is accepted (one model is served).
    pub model: Option<String>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy). Default 1.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass. Default 1.
    pub top_p: Option<f32>,
    /// Top-k sampling (0 or absent disables).
    pub top_k: Option<i64>,
    /// Per-request seed.
    pub seed: Option<u64>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Generate exactly `max_tokens`, past end-of-sequence tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// Number of choices; only 1 is supported.
    pub n: Option<u32>,
    /// Stop sequences: a string or up to four strings; the text ends before the first match.
    pub stop: Option<serde_json::Value>,
    /// Log probabilities; not supported (refused when set).
    pub logprobs: Option<serde_json::Value>,
}

/// Body of `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: PromptInput,
    /// Echo the prompt; not supported (refused when true).
    #[serde(default)]
    pub echo: bool,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// Content of a chat message: a string or a list of parts of which only `text` parts are supported.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Part type; only `text` is supported.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// One message of a chat request.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The content (null is treated as empty).
    pub content: Option<MessageContent>,
}

/// Body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<RequestMessage>,
    /// Newer name of `max_tokens`; used when `max_tokens` is absent.
    pub max_completion_tokens: Option<u32>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, …).
    pub kind: &'static str,
    /// Machine-readable code.
    pub code: &'static str,
    /// The offending parameter, if any.
    pub param: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(
        code: &'static str,
        param: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            code,
            param,
        }
    }

    /// Any status with a given type and code.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            code,
            param: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
