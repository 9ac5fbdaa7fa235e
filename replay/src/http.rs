//! [`HttpEndpoint`]: an OpenAI-compatible server over plain HTTP, streaming `/v1/completions`.
//!
//! Each request is one `POST /v1/completions` with
//!
//! ```json
//! {"model": M, "prompt": P, "max_tokens": N, "min_tokens": N, "ignore_eos": true,
//!  "stream": true, "stream_options": {"include_usage": true}}
//! ```
//!
//! `ignore_eos` (vLLM, SGLang, `specsim serve`) and `min_tokens` (vLLM) force the trace's output
//! length; servers that know neither ignore them, and a shorter answer is then recorded as a
//! `short_output` failure. The response is read as server-sent events: every `data:` event with a
//! choice is a chunk of output, timestamped when its bytes arrive; `usage` (asked for with
//! `include_usage`) gives the engine's own prompt and output token counts; `data: [DONE]` ends it.
//!
//! Timing is what a client sees: a server that sends several tokens in one event (speculative
//! decoding emits an accepted run at once) shows them as one arrival, and a server that holds back
//! text until it decodes to whole characters delays the first chunk slightly.

use crate::endpoint::{Chunk, Endpoint, EndpointRequest, Failure, Observation};
use crate::prompts::Prompt;
use crate::ReplayError;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Most bytes of an error body kept in a failure message.
const ERROR_BODY_CHARS: usize = 200;

/// Most bytes read of a set-up response (`/v1/models`, `/tokenize`, the probe completion) or of an
/// error body: a server that sends more is answered with an error, not with unbounded memory.
pub const MAX_SETUP_BODY: usize = 1 << 20;

/// Longest line of an event stream (a server streaming one endless line is a protocol error).
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// Set-up waits when no limit is given: each request at most this long.
const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a response body of at most `limit` bytes, all of it by `until`.
async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
    until: tokio::time::Instant,
) -> Result<String, String> {
    if let Some(n) = resp.content_length().filter(|&n| n > limit as u64) {
        return Err(format!(
            "the response declares {n} bytes, more than the {limit} read"
        ));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(until, stream.next()).await {
            Err(_) => {
                return Err(format!(
                    "the response body stalled ({} bytes read before the time limit)",
                    buf.len()
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(error_line(&e)),
            Ok(Some(Ok(b))) => {
                if buf.len() + b.len() > limit {
                    return Err(format!("the response body is larger than {limit} bytes"));
                }
                buf.extend_from_slice(&b);
            }
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A streaming OpenAI-compatible completions endpoint.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    client: reqwest::Client,
    base: String,
    completions: String,
    model: Option<String>,
    temperature: Option<f32>,
    /// Longest one set-up request (headers and body) may take.
    setup_timeout: Duration,
    /// When every set-up request must be over (the replay's deadline), if any.
    setup_until: Option<tokio::time::Instant>,
}

/// The server root of an endpoint URL: `http://h:p`, `http://h:p/v1` and
/// `http://h:p/v1/completions` all name the server `http://h:p`.
fn server_root(url: &str) -> Result<String, ReplayError> {
    let u = url.trim().trim_end_matches('/');
    if u.starts_with("https://") {
        return Err(ReplayError::Config(format!(
            "{url}: https is not supported (this build has no TLS; engines are reached over plain HTTP on a private network)"
        )));
    }
    if !u.starts_with("http://") || u.len() <= "http://".len() {
        return Err(ReplayError::Config(format!(
            "{url}: the endpoint must be an http:// URL, e.g. http://127.0.0.1:8000"
        )));
    }
    let u = u.strip_suffix("/completions").unwrap_or(u);
    let u = u.strip_suffix("/v1").unwrap_or(u);
    Ok(u.to_string())
}

/// A reqwest error as one line: its message and its sources (where "connection refused" lives).
fn error_line(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    // Error chains are short; the bound guards against a cyclic one.
    for _ in 0..8 {
        let Some(inner) = src else { break };
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

fn first_chars(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    t.replace(['\n', '\r'], " ")
}

impl HttpEndpoint {
    /// An endpoint at `url` (`http://host:port`, optionally ending in `/v1` or `/v1/completions`).
    /// `model` is sent as the `model` field when given (vLLM requires the served name; see
    /// [`HttpEndpoint::discover_model`]); `temperature` is sent when given (the server's default
    /// otherwise).
    pub fn new(
        url: &str,
        model: Option<String>,
        temperature: Option<f32>,
    ) -> Result<Self, ReplayError> {
        let base = server_root(url)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ReplayError::Config(format!("HTTP client: {}", error_line(&e))))?;
        Ok(HttpEndpoint {
            completions: format!("{base}/v1/completions"),
            base,
            client,
            model,
            temperature,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            setup_until: None,
        })
    }

    /// Bounds every set-up request (`discover_model`, `tokenize_count`, `count_prompt_tokens`): each
    /// one at most `timeout` (the replay's `--timeout`), and all of them over by `until` (its
    /// `--deadline`, counted from the start of the command).
    pub fn set_limits(&mut self, timeout: Duration, until: Option<std::time::Instant>) {
        self.setup_timeout = timeout;
        self.setup_until = until.map(tokio::time::Instant::from_std);
    }

    /// When the set-up request starting now must be over, or why none may start.
    fn setup_deadline(&self) -> Result<(tokio::time::Instant, Duration), String> {
        let now = tokio::time::Instant::now();
        let mut until = now + self.setup_timeout;
        if let Some(d) = self.setup_until {
            if d <= now {
                return Err("the replay deadline passed during set-up".into());
            }
            until = until.min(d);
        }
        Ok((until, until - now))
    }

    /// Sends a set-up request and reads its status and (bounded) body, all within the set-up limits.
    async fn setup_call(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, String), String> {
        let (until, limit) = self.setup_deadline().map_err(|e| format!("{url}: {e}"))?;
        let resp = tokio::time::timeout_at(until, req.send())
            .await
            .map_err(|_| format!("{url}: no answer in {:.1} s", limit.as_secs_f64()))?
            .map_err(|e| format!("{url}: {}", error_line(&e)))?;
        let status = resp.status().as_u16();
        let text = read_limited(resp, MAX_SETUP_BODY, until)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok((status, text))
    }

    /// The model name that will be sent, if any.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Asks `GET /v1/models` for the served model and uses the first one, unless a model was given.
    /// Returns the model name, or why it could not be found (the replay then sends no `model` field).
    pub async fn discover_model(&mut self) -> Result<String, String> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let url = format!("{}/v1/models", self.base);
        let (status, text) = self.setup_call(&url, self.client.get(&url)).await?;
        if !(200..300).contains(&status) {
            return Err(format!("{url}: HTTP {status}"));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))?;
        let id = v["data"][0]["id"]
            .as_str()
            .ok_or_else(|| format!("{url}: no model listed"))?
            .to_string();
        self.model = Some(id.clone());
        Ok(id)
    }

    /// Sends `text` as a one-token, non-streaming completion and returns `usage.prompt_tokens`: how
    /// many tokens the engine's tokenizer makes of it (used to measure characters per token).
    pub async fn count_prompt_tokens(&self, text: &str) -> Result<u32, String> {
        let body = self.body(&Prompt::Text(text.to_string()), 1, false);
        let url = &self.completions;
        let (status, text) = self
            .setup_call(
                url,
                self.client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(format!(
                "HTTP {status}: {}",
                first_chars(&text, ERROR_BODY_CHARS)
            ));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v["usage"]["prompt_tokens"]
            .as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| "the response has no usage.prompt_tokens".to_string())
    }

    /// Counts the tokens of `text` with the server's `POST /tokenize` (vLLM's and `specsim serve`'s
    /// tokenizer endpoint; no model forward). `Ok(None)` when the server has no such route (404/405).
    pub async fn tokenize_count(&self, text: &str) -> Result<Option<u32>, String> {
        let mut body = json!({"prompt": text});
        if let Some(m) = &self.model {
            body["model"] = json!(m);
        }
        let url = format!("{}/tokenize", self.base);
        let (status, text) = self
            .setup_call(
                &url,
                self.client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            )
            .await?;
        if status == 404 || status == 405 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(format!(
                "{url}: HTTP {status}: {}",
                first_chars(&text, ERROR_BODY_CHARS)
            ));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))?;
        v["count"]
            .as_u64()
            .or_else(|| v["tokens"].as_array().map(|t| t.len() as u64))
            .map(|n| Some(n as u32))
            .ok_or_else(|| format!("{url}: the response has no `count`"))
    }

    fn body(&self, prompt: &Prompt, max_tokens: u32, stream: bool) -> Value {
        let mut b = json!({
            "prompt": match prompt {
                Prompt::Text(t) => json!(t),
                Prompt::Ids(ids) => json!(ids),
            },
            "max_tokens": max_tokens,
            "min_tokens": max_tokens,
            "ignore_eos": true,
            "stream": stream,
        });
        if stream {
            b["stream_options"] = json!({"include_usage": true});
        }
        if let Some(m) = &self.model {
            b["model"] = json!(m);
        }
        if let Some(t) = self.temperature {
            b["temperature"] = json!(t);
        }
        b
    }
}

impl Endpoint for HttpEndpoint {
    async fn generate<'a>(
        &'a self,
        req: &'a EndpointRequest,
        obs: &'a mut Observation,
    ) -> Result<(), Failure> {
        let body = self.body(&req.prompt, req.max_tokens, true).to_string();
        let resp = self
            .client
            .post(&self.completions)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Connect(error_line(&e)))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            let text = read_limited(resp, 64 << 10, until)
                .await
                .unwrap_or_default();
            return Err(Failure::Status {
                status,
                body: first_chars(&text, ERROR_BODY_CHARS),
            });
        }
        let mut stream = resp.bytes_stream();
        let mut sse = SseParser::default();
        let mut done = false;
        while let Some(item) = stream.next().await {
            let bytes = item.map_err(|e| Failure::Stream(error_line(&e)))?;
            let at = Instant::now();
            for data in sse.push(&bytes) {
                done |= handle_event(&data, at, obs)?;
            }
            if sse.overflowed() {
                return Err(Failure::Protocol(format!(
                    "an event-stream line or event is longer than {MAX_EVENT_LINE} bytes"
                )));
            }
            if done {
                return Ok(());
            }
        }
        if let Some(data) = sse.finish() {
            done |= handle_event(&data, Instant::now(), obs)?;
        }
        if done || obs.finish_reason.is_some() {
            Ok(())
        } else {
            Err(Failure::Stream(
                "the stream ended without a finish reason or [DONE]".into(),
            ))
        }
    }

    fn describe(&self) -> String {
        match &self.model {
            Some(m) => format!("{} (model {m})", self.completions),
            None => self.completions.clone(),
        }
    }
}

/// Applies one SSE `data` payload to the observation; returns true at `[DONE]`.
fn handle_event(data: &str, at: Instant, obs: &mut Observation) -> Result<bool, Failure> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(true);
    }
    if data.is_empty() {
        return Ok(false);
    }
    let v: Value = serde_json::from_str(data).map_err(|e| {
        Failure::Protocol(format!(
            "event is not JSON ({e}): {}",
            first_chars(data, 80)
        ))
    })?;
    if let Some(err) = v.get("error") {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(Failure::Server(first_chars(&msg, ERROR_BODY_CHARS)));
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        if let Some(p) = u.get("prompt_tokens").and_then(Value::as_u64) {
            obs.prompt_tokens = Some(p as u32);
        }
        if let Some(c) = u.get("completion_tokens").and_then(Value::as_u64) {
            obs.completion_tokens = Some(c as u32);
        }
    }
    if let Some(choice) = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        let text = choice
            .get("text")
            .and_then(Value::as_str)
            .or_else(|| choice.pointer("/delta/content").and_then(Value::as_str))
            .unwrap_or("");
        let finish = choice.get("finish_reason").and_then(Value::as_str);
        if let Some(f) = finish {
            obs.finish_reason = Some(f.to_string());
        }
        if !text.is_empty() || finish.is_some() {
            obs.chunks.push(Chunk {
                at,
                tokens: u32::from(!text.is_empty()),
            });
        }
    }
    Ok(false)
}

/// Incremental parser of a `text/event-stream` body: bytes in, the `data` of each complete event out.
///
/// Lines end in `\n`, `\r\n` or `\r`; an event ends at a blank line; several `data:` lines of one
/// event are joined with `\n`; comments (`:` keep-alives) and other fields are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
    last_was_cr: bool,
    overflow: bool,
}

impl SseParser {
    /// Feeds bytes; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.last_was_cr && b == b'\n' {
                self.last_was_cr = false;
                continue;
            }
            self.last_was_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, &mut out);
            } else if self.line.len() < MAX_EVENT_LINE {
                self.line.push(b);
            } else {
                self.overflow = true;
            }
        }
        out
    }

    /// Whether a line or an event grew past [`MAX_EVENT_LINE`] (its excess was dropped).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The data of an event left unterminated at the end of the body, if any.
    pub fn finish(&mut self) -> Option<String> {
        let line = std::mem::take(&mut self.line);
        let mut out = Vec::new();
        if !line.is_empty() {
            self.line_done(&line, &mut out);
        }
        self.line_done(&[], &mut out);
        out.pop()
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<String>) {
        if line.is_empty() {
            if let Some(d) = self.data.take() {
                out.push(d);
            }
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) if d.len() + value.len() >= MAX_EVENT_LINE => self.overflow = true,
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_anywhere() {
        let body = b": keep-alive\n\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\nevent: e\ndata: [DONE]\n\n";
        // Every split point gives the same events.
        for cut in 0..body.len() {
            let mut p = SseParser::default();
            let mut ev = p.push(&body[..cut]);
            ev.extend(p.push(&body[cut..]));
            assert_eq!(ev, vec!["{\"a\":1}", "x\ny", "[DONE]"], "cut at {cut}");
            assert_eq!(p.finish(), None);
        }
        let mut p = SseParser::default();
        assert!(p.push(b"data: tail").is_empty());
        assert_eq!(p.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn events_fill_the_observation() {
        let t = Instant::now();
        let mut o = Observation::default();
        let c = r#"{"choices":[{"index":0,"text":"Hi","finish_reason":null}]}"#;
        assert!(!handle_event(c, t, &mut o).unwrap());
        let chat =
            r#"{"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"length"}]}"#;
        assert!(!handle_event(chat, t, &mut o).unwrap());
        let u = r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}"#;
        assert!(!handle_event(u, t, &mut o).unwrap());
        assert!(handle_event("[DONE]", t, &mut o).unwrap());
        assert_eq!(o.chunks.len(), 2);
        assert_eq!(o.prompt_tokens, Some(12));
        assert_eq!(o.completion_tokens, Some(2));
        assert_eq!(o.finish_reason.as_deref(), Some("length"));
        let e = handle_event(r#"{"error":{"message":"boom"}}"#, t, &mut o).unwrap_err();
        assert_eq!(e, Failure::Server("boom".into()));
        assert!(matches!(
            handle_event("not json", t, &mut o),
            Err(Failure::Protocol(_))
        ));
    }

    #[test]
    fn endpoint_urls_name_the_server() {
        for u in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
            "http://127.0.0.1:8000/v1/completions",
        ] {
            assert_eq!(server_root(u).unwrap(), "http://127.0.0.1:8000", "{u}");
        }
        assert!(server_root("https://x")
            .unwrap_err()
            .to_string()
            .contains("TLS"));
        assert!(server_root("127.0.0.1:8000").is_err());
    }
}
