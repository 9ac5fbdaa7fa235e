//! HTTP server tests over loopback with the scripted fake generator.
//!
//! The fake echoes the prompt (output token i = prompt[i mod len]) and the tokenizer is the tiny fixture
//! (`tokenizer::fixture`: bytes are ids 0..=255, `hello` = 259, ` world` = 264, `<|im_start|>` = 266,
//! `<|im_end|>` = 267), so every expected text and token count below is worked out by hand from the
//! prompt. No test depends on timing: waits are for conditions, bounded only as a safety net.

use serde_json::{json, Value};
use specsim_runtime::server::fake::{FakeConfig, FakeGenerator};
use specsim_runtime::server::{router, AppState, Generator, Metrics, ServerLimits};
use specsim_runtime::tokenizer::{fixture, GgufTokenizer};
use std::sync::Arc;
use std::time::Duration;

/// Safety bound on condition waits; a healthy run finishes each wait in milliseconds.
const WAIT: Duration = Duration::from_secs(60);

struct Server {
    base: String,
    fake: Option<FakeGenerator>,
    generator: Arc<dyn Generator>,
    client: reqwest::Client,
}

fn tiny_tokenizer() -> GgufTokenizer {
    let md = fixture::metadata("qwen2", None).into_iter().collect();
    GgufTokenizer::from_metadata(&md).expect("fixture tokenizer")
}

async fn start(cfg: FakeConfig, limits: ServerLimits) -> Server {
    let fake = FakeGenerator::new(cfg);
    let mut s = serve_generator(Arc::new(fake.clone()), Arc::new(Metrics::default()), limits).await;
    s.fake = Some(fake);
    s
}

async fn serve_generator(
    generator: Arc<dyn Generator>,
    metrics: Arc<Metrics>,
    limits: ServerLimits,
) -> Server {
    let state = AppState::new(
        generator.clone(),
        Arc::new(tiny_tokenizer()),
        limits,
        "tiny",
        metrics,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(Arc::new(state))).await;
    });
    Server {
        base: format!("http://{addr}"),
        fake: None,
        generator,
        client: reqwest::Client::new(),
    }
}

impl Server {
    fn fake(&self) -> &FakeGenerator {
        self.fake
            .as_ref()
            .expect("a server over the fake generator")
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.post(path, body.to_string()).await;
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}")),
        )
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.expect("body"))
    }
}

/// Reads an SSE response to the end and returns the `data:` payloads in order.
async fn sse_events(mut resp: reqwest::Response) -> Vec<String> {
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await.expect("stream chunk") {
        buf.push_str(std::str::from_utf8(&chunk).expect("utf-8 stream"));
    }
    buf.split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

/// Concatenated text of completion (`text`) or chat (`delta.content`) chunks.
fn stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let v: Value = serde_json::from_str(e).ok()?;
            let c = v["choices"].get(0)?;
            c["text"]
                .as_str()
                .or(c["delta"]["content"].as_str())
                .map(str::to_string)
        })
        .collect()
}

fn limits() -> ServerLimits {
    ServerLimits {
        max_body_bytes: 4096,
        max_prompt_tokens: 16,
        max_tokens: 64,
        default_max_tokens: 8,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_echoes_prompt_with_usage() {
    let s = start(FakeConfig::default(), limits()).await;
    let (status, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "hello world", "max_tokens": 5}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // Prompt [259, 264]; echo of 5 tokens: hello, world, hello, world, hello.
    assert_eq!(v["choices"][0]["text"], "hello worldhello worldhello");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7})
    );

    // Token-id prompts work the same way.
    let (status, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": [259, 264], "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], "hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eos_stops_generation_unless_ignore_eos() {
    let cfg = FakeConfig {
        eos_id: 267,
        eos_after: Some(2),
        ..Default::default()
    };
    let s = start(cfg, limits()).await;
    let (_, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "hello world", "max_tokens": 6}),
        )
        .await;
    // Tokens 259, 264, then <|im_end|> (skipped in text but counted).
    assert_eq!(v["choices"][0]["text"], "hello world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let (_, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "hello world", "max_tokens": 6, "ignore_eos": true}),
        )
        .await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["choices"][0]["text"], "hello worldhello worldhello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_applies_the_chatml_template() {
    let mut l = limits();
    l.max_prompt_tokens = 64;
    let s2 = start(FakeConfig::default(), l).await;
    let body = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3});
    let (status, v) = s2.post_json("/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{v}");
    // "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n" (no default system prompt in the
    // fixture): <|im_start|>, u s e r, \n, hello, <|im_end|>, \n, <|im_start|>, a s s i s t a n t, \n
    // = 1 + 4 + 1 + 1 + 1 + 1 + 1 + 9 + 1 = 20 tokens. The echo's first three: <|im_start|> u s → "us".
    assert_eq!(v["usage"]["prompt_tokens"], 20);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "us"})
    );

    // Content parts are joined; non-text parts and unknown roles are 400s.
    let parts = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]}], "max_tokens": 3});
    let (_, v2) = s2.post_json("/v1/chat/completions", parts).await;
    assert_eq!(v2["usage"]["prompt_tokens"], 20);
    let bad = json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]});
    assert_eq!(s2.post_json("/v1/chat/completions", bad).await.0, 400);
    let bad = json!({"messages": [{"role": "wizard", "content": "x"}]});
    let (st, v) = s2.post_json("/v1/chat/completions", bad).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_messages"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streaming_clients_each_get_their_own_stream() {
    let s = Arc::new(start(FakeConfig::default(), limits()).await);
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // Prompt "k{i}z" is three single-byte tokens (the Qwen2 split isolates the digit); 7 echoed
            // tokens spell it twice and a third "k".
            let prompt = format!("k{i}z");
            let body = json!({"prompt": prompt, "max_tokens": 7, "stream": true, "stream_options": {"include_usage": true}});
            let resp = s.post("/v1/completions", body.to_string()).await;
            assert_eq!(resp.status().as_u16(), 200);
            assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
            let events = sse_events(resp).await;
            assert_eq!(stream_text(&events), format!("k{i}zk{i}zk"));
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            // Bursts of 3 tokens: at least three text chunks, then the usage chunk, then [DONE].
            assert!(events.len() >= 5, "{events:?}");
            let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
            assert_eq!(usage["usage"], json!({"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}));
            assert_eq!(usage["choices"], json!([]));
            let last_text: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
            assert_eq!(last_text["choices"][0]["finish_reason"], "length");
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    assert_eq!(s.fake().finished(), 8);
    assert_eq!(s.fake().load().kv_used_tokens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_carries_role_then_content_and_whole_characters() {
    let cfg = FakeConfig {
        burst: 1,
        ..Default::default()
    };
    let s = start(cfg, limits()).await;
    // Completion prompt "é" = bytes c3 a9; three echoed tokens c3 a9 c3: "é", then a dangling c3 byte
    // that decodes to U+FFFD only at the end.
    let body = json!({"prompt": "é", "max_tokens": 3, "stream": true});
    let events = sse_events(s.post("/v1/completions", body.to_string()).await).await;
    assert_eq!(stream_text(&events), "é\u{FFFD}");
    let texts: Vec<String> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, vec!["é".to_string(), "\u{FFFD}".to_string()]);

    let mut l = limits();
    l.max_prompt_tokens = 64;
    let s = start(FakeConfig::default(), l).await;
    let body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": true});
    let events = sse_events(s.post("/v1/chat/completions", body.to_string()).await).await;
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(stream_text(&events), "us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_openai_shaped_400s() {
    let s = start(FakeConfig::default(), limits()).await;
    let r = s.post("/v1/completions", "{not json").await;
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json_body().await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_json");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid request body"));

    for (body, code) in [
        (json!({"max_tokens": 3}), "invalid_json"), // no prompt
        (json!({"prompt": "a", "max_tokens": "many"}), "invalid_json"), // wrong type
        (json!({"prompt": "a", "max_tokens": 0}), "invalid_value"),
        (json!({"prompt": "a", "temperature": -1.0}), "invalid_value"),
        (json!({"prompt": "a", "top_p": 0.0}), "invalid_value"),
        (json!({"prompt": "a", "n": 2}), "unsupported"),
        (json!({"prompt": "a", "stop": [1]}), "invalid_value"),
        (
            json!({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}),
            "invalid_value",
        ),
        (json!({"prompt": ["a", "b"]}), "unsupported"),
        (json!({"prompt": ""}), "empty_prompt"),
        (json!({"prompt": [100000]}), "invalid_value"),
    ] {
        let (status, v) = s.post_json("/v1/completions", body.clone()).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_eq!(v["error"]["code"], code, "{body} → {v}");
    }
    let (status, v) = s
        .post_json("/v1/chat/completions", json!({"messages": []}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_messages"))
    );
    let (status, body) = s.get_text("/v2/nothing").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""));
}

trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        let t = self.text().await.expect("body");
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("non-JSON body {t:?}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_prompts_bodies_and_max_tokens_are_refused() {
    let s = start(FakeConfig::default(), limits()).await;
    // 16 letters with no merges among them are 16 tokens: allowed; 17 are not.
    let (status, _) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "abcdefghijkmnpqr", "max_tokens": 1}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "abcdefghijkmnpqrs", "max_tokens": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "prompt");

    let (status, v) = s
        .post_json("/v1/completions", json!({"prompt": "a", "max_tokens": 65}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("max_tokens_too_large"))
    );

    // Bodies over 4096 bytes: 413 in the same error shape.
    let big = json!({"prompt": "a".repeat(5000)}).to_string();
    let r = s.post("/v1/completions", big).await;
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json_body().await;
    assert_eq!(v["error"]["code"], "body_too_large");
    assert_eq!(s.fake().finished(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_stream_cancels_and_frees_kv() {
    // Two tokens flow, the third waits on the gate: the stream is parked mid-generation.
    let cfg = FakeConfig {
        burst: 1,
        free_tokens: Some(2),
        ..Default::default()
    };
    let s = start(cfg, limits()).await;
    let body = json!({"prompt": "hello world", "max_tokens": 50, "stream": true});
    let mut resp = s.post("/v1/completions", body.to_string()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let first = resp.chunk().await.expect("chunk").expect("a first event");
    assert!(std::str::from_utf8(&first).unwrap().contains("hello"));
    tokio::time::timeout(WAIT, s.fake().wait_until(|f| f.load().kv_used_tokens == 4))
        .await
        .expect("prompt 2 + 2 tokens in KV");
    assert_eq!(s.fake().load().in_flight, 1);

    drop(resp); // the client goes away mid-stream

    tokio::time::timeout(
        WAIT,
        s.fake()
            .wait_until(|f| f.cancelled() == 1 && f.load().in_flight == 0),
    )
    .await
    .expect("the generator observes the cancellation");
    assert_eq!(s.fake().load().kv_used_tokens, 0);
    assert_eq!(s.fake().finished(), 0);
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(
        metrics
            .contains("specsim_requests_total{endpoint=\"completions\",outcome=\"cancelled\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("specsim_kv_used_tokens 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_gets_429_and_recovers() {
    // Capacity 2, every token gated: two streams occupy the generator.
    let cfg = FakeConfig {
        capacity: 2,
        free_tokens: Some(0),
        ..Default::default()
    };
    let s = start(cfg, limits()).await;
    let body = json!({"prompt": "ab", "max_tokens": 2, "stream": true}).to_string();
    let a = s.post("/v1/completions", body.clone()).await;
    let b = s.post("/v1/completions", body.clone()).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(s.fake().load().in_flight, 2);

    let (status, v) = s
        .post_json("/v1/completions", json!({"prompt": "ab", "max_tokens": 2}))
        .await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["code"], "queue_full");

    s.fake().release(4);
    assert_eq!(stream_text(&sse_events(a).await), "ab");
    assert_eq!(stream_text(&sse_events(b).await), "ab");
    s.fake().release(2);
    let (status, v) = s
        .post_json("/v1/completions", json!({"prompt": "ab", "max_tokens": 2}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(
        metrics.contains("specsim_requests_total{endpoint=\"completions\",outcome=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("specsim_requests_total{endpoint=\"completions\",outcome=\"ok\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_counts_as_completions_do() {
    let s = start(FakeConfig::default(), limits()).await;
    let (status, v) = s
        .post_json(
            "/tokenize",
            json!({"model": "tiny", "prompt": "hello world"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, c) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "hello world", "max_tokens": 1}),
        )
        .await;
    assert_eq!(v["count"], c["usage"]["prompt_tokens"]);
    assert_eq!(v["count"], 2);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 2);
    let (status, e) = s.post_json("/tokenize", json!({"text": "x"})).await;
    assert_eq!(status, 400, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_metrics_endpoints() {
    let s = start(FakeConfig::default(), limits()).await;
    let (status, body) = s.get_text("/v1/models").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"][0]["id"], "tiny");
    assert_eq!(v["object"], "list");

    let (status, body) = s.get_text("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "ok"
    );

    let _ = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "hello world", "max_tokens": 4}),
        )
        .await;
    let r = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for line in [
        "specsim_requests_total{endpoint=\"completions\",outcome=\"ok\"} 1",
        "specsim_prompt_tokens_total 2",
        "specsim_generation_tokens_total 4",
        "specsim_time_to_first_token_seconds_count 1",
        "specsim_time_per_output_token_seconds_count 1",
        "specsim_kv_used_tokens 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

// ---- The real engine core behind the seam: engine thread + scripted echo backend ----

use specsim_core::engine::EngineConfig;
use specsim_core::policy::PolicyConfig;
use specsim_runtime::driver::echo::{EchoBackend, StepGate};
use specsim_runtime::driver::{spawn_engine, DriverConfig};
use specsim_runtime::serve::default_cost;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A server whose generator is the engine thread over `backend`, with fixture EOS ids 265 and 267.
async fn start_engine(
    policy: &str,
    backend: EchoBackend,
    max_in_flight: usize,
) -> (Server, Arc<AtomicUsize>, Arc<Metrics>) {
    start_engine_logged(policy, backend, max_in_flight, None).await
}

/// [`start_engine`], writing a `--step-log` file.
async fn start_engine_logged(
    policy: &str,
    backend: EchoBackend,
    max_in_flight: usize,
    step_log: Option<std::path::PathBuf>,
) -> (Server, Arc<AtomicUsize>, Arc<Metrics>) {
    let live = backend.live_sequences();
    let config = DriverConfig {
        draft_model: false,
        step_log,
        engine: EngineConfig {
            block_size: 16,
            kv_blocks: Some(64),
            max_num_seqs: 8,
            prefix_caching: false,
            ..EngineConfig::default()
        },
        policy: PolicyConfig::from_name(policy).expect("policy"),
        max_in_flight,
        eos_ids: vec![265, 267],
        tpot_slo_ns: None,
    };
    let metrics = Arc::new(Metrics::default());
    let handle = spawn_engine(config, Arc::new(default_cost()), backend, metrics.clone())
        .expect("engine thread");
    let mut l = limits();
    l.max_prompt_tokens = 64;
    l.max_tokens = 4096;
    (
        serve_generator(Arc::new(handle), metrics.clone(), l).await,
        live,
        metrics,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_log_sets_each_forward_beside_the_cost_models_prediction() {
    let dir = std::env::temp_dir().join(format!("specsim-serve-steplog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("steps.csv");
    let (s, _, metrics) =
        start_engine_logged("none", EchoBackend::new(0.9), 16, Some(path.clone())).await;
    let body = json!({"prompt": "abcd", "max_tokens": 4, "stream": false});
    let (status, v) = s.post_json("/v1/completions", body).await;
    assert_eq!(status, 200, "{v}");
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap() as f64;
    assert!(eventually(|| s.generator.load().in_flight == 0).await);
    // The engine thread flushes the log whenever it runs out of work; wait for the last row.
    let mut rows: Vec<Vec<String>> = Vec::new();
    assert!(
        eventually(|| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            rows = text
                .lines()
                .skip(1)
                .map(|l| l.split(',').map(String::from).collect())
                .collect();
            rows.len() == 4
        })
        .await,
        "{rows:?}"
    );
    // Policy none, 4 tokens: one prefill forward of the whole prompt (emits the first token), then 3
    // decode forwards of one token each. default_cost: target 80 ms + 12 ms per new token.
    let predicted: Vec<f64> = rows.iter().map(|r| r[7].parse().unwrap()).collect();
    assert!(rows.iter().all(|r| r[1] == "target" && r[2] == "1"));
    assert_eq!(rows[0][4].parse::<f64>().unwrap(), prompt);
    assert!(
        (predicted[0] - (0.080 + 0.012 * prompt)).abs() < 1e-6,
        "{predicted:?}"
    );
    for p in &predicted[1..] {
        assert!((p - 0.092).abs() < 1e-6, "{predicted:?}");
    }
    let text = metrics.render(&Default::default());
    let key = "specsim_forward_predicted_seconds_total{model=\"target\"} ";
    let got: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("missing {key} in\n{text}"))
        .parse()
        .unwrap();
    assert!(
        (got - predicted.iter().sum::<f64>()).abs() < 1e-6,
        "{got} in\n{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Polls `cond` every 10 ms, at most `WAIT` in all; for conditions reached on another thread.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..(WAIT.as_millis() / 10) {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_streams_concurrent_clients_with_speculation() {
    let (s, live, _) = start_engine("static-3", EchoBackend::new(0.9), 16).await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..6u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"prompt": format!("k{i}z"), "max_tokens": 10, "stream": true, "stream_options": {"include_usage": true}});
            let events = sse_events(s.post("/v1/completions", body.to_string()).await).await;
            assert_eq!(stream_text(&events), format!("k{i}zk{i}zk{i}zk"));
            let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
            assert_eq!(usage["usage"]["completion_tokens"], 10);
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    assert!(eventually(|| s.generator.load().in_flight == 0).await);
    let load = s.generator.load();
    assert_eq!(
        (load.running, load.kv_used_tokens, load.kv_capacity_tokens),
        (0, 0, 64 * 16)
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
    // Static k = 3 with every draft accepted: 10 tokens = 1 (prefill) + 4 + 4 + 1 → steps verify k = 3,
    // 3, then 0 (one token left); acceptance is counted at positions 0..=2.
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(
        metrics.contains("specsim_chosen_k_total{k=\"3\"} 12"),
        "{metrics}"
    );
    assert!(
        metrics.contains("specsim_draft_accepted_total{position=\"2\"} 12"),
        "{metrics}"
    );
    assert!(
        metrics.contains("specsim_draft_tokens_total{position=\"2\"} 12"),
        "{metrics}"
    );
    // The same counts under vLLM's names and labels (12 drafts of 3 tokens, all accepted), so a
    // dashboard built for vLLM reads them unchanged.
    let vllm = |name: &str, extra: &str| -> u64 {
        let key = format!("{name}{{model_name=\"specsim\",engine=\"0\"{extra}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .unwrap_or_else(|| panic!("missing {key} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(vllm("vllm:spec_decode_num_drafts_total", ""), 12);
    assert_eq!(vllm("vllm:spec_decode_num_draft_tokens_total", ""), 36);
    assert_eq!(vllm("vllm:spec_decode_num_accepted_tokens_total", ""), 36);
    for p in 0..3 {
        assert_eq!(
            vllm(
                "vllm:spec_decode_num_accepted_tokens_per_pos_total",
                &format!(",position=\"{p}\"")
            ),
            12
        );
    }
    assert!(metrics.contains("# TYPE vllm:spec_decode_num_drafts_total counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_stops_at_eos_unless_ignore_eos() {
    let (s, _, _) = start_engine("specserve", EchoBackend::new(0.9), 16).await;
    // Prompt "hello<|im_end|>" = [259, 267]: the echo's second token is <|im_end|>, an EOS id.
    let (status, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "hello<|im_end|>", "max_tokens": 9}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], "hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let body = json!({"prompt": "hello<|im_end|>", "max_tokens": 5, "ignore_eos": true});
    let (_, v) = s.post_json("/v1/completions", body).await;
    assert_eq!(v["choices"][0]["text"], "hellohellohello");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    // A request that can never fit in the KV cache (64 blocks of 16 tokens) is a 400, not a hang.
    let (status, v) = s
        .post_json(
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": 2000}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_disconnect_mid_stream_returns_kv_to_zero() {
    // Two target forwards (prefill, one verify) run freely; then the engine waits at the gate.
    let gate = StepGate::new(2);
    let (s, live, metrics) =
        start_engine("static-2", EchoBackend::gated(0.9, gate.clone()), 16).await;
    let body =
        json!({"prompt": "hello world", "max_tokens": 900, "stream": true, "ignore_eos": true});
    let mut resp = s.post("/v1/completions", body.to_string()).await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.chunk().await.expect("chunk").expect("a first event");
    assert!(eventually(|| s.generator.load().kv_used_tokens > 0).await);
    assert_eq!(s.generator.load().in_flight, 1);

    drop(resp);
    // The server drops its end of the stream once hyper sees the closed connection.
    assert!(
        eventually(|| metrics
            .render(&Default::default())
            .contains("outcome=\"cancelled\"} 1"))
        .await
    );
    // One forward to finish the step in progress, one in which the engine stops the cancelled sequence.
    // Without cancellation the request would need about 300 more forwards.
    gate.release(2);
    assert!(
        eventually(|| s.generator.load().in_flight == 0).await,
        "the engine retired the cancelled request"
    );
    let load = s.generator.load();
    assert_eq!((load.running, load.kv_used_tokens), (0, 0));
    assert_eq!(live.load(Ordering::SeqCst), 0);
    gate.release(1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_queue_overflow_gets_429() {
    let gate = StepGate::new(0);
    let (s, _, _) = start_engine("none", EchoBackend::gated(0.9, gate.clone()), 2).await;
    let body = json!({"prompt": "ab", "max_tokens": 2, "stream": true}).to_string();
    let a = s.post("/v1/completions", body.clone()).await;
    let b = s.post("/v1/completions", body.clone()).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let (status, v) = s
        .post_json("/v1/completions", json!({"prompt": "ab", "max_tokens": 2}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (429, Some("queue_full"))
    );
    gate.release(1000);
    assert_eq!(stream_text(&sse_events(a).await), "ab");
    assert_eq!(stream_text(&sse_events(b).await), "ab");
    assert!(eventually(|| s.generator.load().in_flight == 0).await);
    let (status, _) = s
        .post_json("/v1/completions", json!({"prompt": "ab", "max_tokens": 2}))
        .await;
    assert_eq!(status, 200);
}

/// A backend whose target forward always fails, to see the engine thread fail requests and stop.
struct FailingBackend;

impl specsim_core::engine::Backend for FailingBackend {
    fn draft(
        &mut self,
        items: &[specsim_core::engine::DraftItem],
    ) -> Result<specsim_core::engine::DraftResult, specsim_core::CoreError> {
        Ok(specsim_core::engine::DraftResult {
            confidences: vec![0.5; items.len()],
            elapsed_ns: 1,
        })
    }
    fn target(
        &mut self,
        _items: &[specsim_core::engine::TargetItem],
    ) -> Result<specsim_core::engine::TargetResult, specsim_core::CoreError> {
        Err(specsim_core::CoreError::Backend(
            "the device fell over".into(),
        ))
    }
    fn release(&mut self, _seq: u64) {}
}

impl specsim_runtime::driver::TokenStreams for FailingBackend {
    fn insert(
        &mut self,
        _seq: u64,
        _prompt: &[u32],
        _params: &specsim_runtime::driver::SeqParams,
    ) -> specsim_runtime::Result<()> {
        Ok(())
    }
    fn drain_emitted(&mut self, _seq: u64, _out: &mut Vec<u32>) {}
    fn remove(&mut self, _seq: u64) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_failure_fails_requests_and_health_turns_503() {
    let config = DriverConfig {
        draft_model: false,
        step_log: None,
        engine: EngineConfig {
            block_size: 16,
            kv_blocks: Some(64),
            prefix_caching: false,
            ..EngineConfig::default()
        },
        policy: PolicyConfig::None,
        max_in_flight: 4,
        eos_ids: vec![],
        tpot_slo_ns: None,
    };
    let metrics = Arc::new(Metrics::default());
    let handle = spawn_engine(
        config,
        Arc::new(default_cost()),
        FailingBackend,
        metrics.clone(),
    )
    .unwrap();
    let s = serve_generator(Arc::new(handle), metrics, limits()).await;
    assert_eq!(s.get_text("/health").await.0, 200);
    let (status, v) = s
        .post_json("/v1/completions", json!({"prompt": "ab", "max_tokens": 2}))
        .await;
    assert_eq!(status, 500, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the device fell over"),
        "{v}"
    );
    assert!(eventually(|| !s.generator.healthy()).await);
    let (status, body) = s.get_text("/health").await;
    assert_eq!(status, 503, "{body}");
    let (status, v) = s
        .post_json("/v1/completions", json!({"prompt": "ab", "max_tokens": 2}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );
}

#[test]
fn the_live_engine_refuses_prefix_caching_naming_the_key() {
    // The live backend cannot share KV blocks between requests: an engine configured to cache
    // prefixes is refused before it starts, so no prefix-cache hit is ever booked without being taken.
    let config = DriverConfig {
        draft_model: false,
        step_log: None,
        engine: EngineConfig {
            block_size: 16,
            kv_blocks: Some(64),
            prefix_caching: true,
            ..EngineConfig::default()
        },
        policy: PolicyConfig::None,
        max_in_flight: 4,
        eos_ids: vec![],
        tpot_slo_ns: None,
    };
    let refused = spawn_engine(
        config,
        Arc::new(default_cost()),
        FailingBackend,
        Arc::new(Metrics::default()),
    );
    let e = refused
        .err()
        .expect("prefix caching is refused")
        .to_string();
    assert!(e.contains("engine.prefix_caching"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sequences_end_generation_and_are_not_returned() {
    let s = start(FakeConfig::default(), limits()).await;
    // Echo text "hello worldhello world…"; the stop "dhe" spans the end of " world" and the next
    // "hello". The fake's first burst [hello, world, hello] already contains it.
    let body = json!({"prompt": "hello world", "max_tokens": 9, "stop": ["zzz", "dhe"]});
    let (status, v) = s.post_json("/v1/completions", body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], "hello worl");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    // The rest of the generation was cancelled, and its KV freed.
    tokio::time::timeout(
        WAIT,
        s.fake()
            .wait_until(|f| f.cancelled() == 1 && f.load().in_flight == 0),
    )
    .await
    .expect("the stop sequence cancels generation");
    assert_eq!(s.fake().load().kv_used_tokens, 0);

    // A stop sequence that never occurs changes nothing.
    let body = json!({"prompt": "hello world", "max_tokens": 3, "stop": "xyz"});
    let (_, v) = s.post_json("/v1/completions", body).await;
    assert_eq!(v["choices"][0]["text"], "hello worldhello");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_holds_back_possible_stop_prefixes() {
    let s = start(
        FakeConfig {
            burst: 1,
            ..Default::default()
        },
        limits(),
    )
    .await;
    let body = json!({"prompt": "hello world", "max_tokens": 9, "stop": "dhe", "stream": true});
    let events = sse_events(s.post("/v1/completions", body.to_string()).await).await;
    // One token per event; the last two bytes stay held while they could start "dhe":
    // "hello" → "hel"; " world" → "lo wor"; "hello" → stop found → "l".
    let texts: Vec<String> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, vec!["hel", "lo wor", "l"]);
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    tokio::time::timeout(
        WAIT,
        s.fake()
            .wait_until(|f| f.cancelled() == 1 && f.load().in_flight == 0),
    )
    .await
    .expect("the stop sequence cancels generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_during_a_non_streaming_request_cancels_it() {
    let cfg = FakeConfig {
        burst: 1,
        free_tokens: Some(2),
        ..Default::default()
    };
    let s = Arc::new(start(cfg, limits()).await);
    let s2 = s.clone();
    let client = tokio::spawn(async move {
        s2.post_json(
            "/v1/completions",
            json!({"prompt": "hello world", "max_tokens": 50}),
        )
        .await
    });
    tokio::time::timeout(WAIT, s.fake().wait_until(|f| f.load().kv_used_tokens == 4))
        .await
        .expect("the request is parked mid-generation");
    client.abort(); // the client goes away before any response byte
    tokio::time::timeout(
        WAIT,
        s.fake()
            .wait_until(|f| f.cancelled() == 1 && f.load().in_flight == 0),
    )
    .await
    .expect("the generator observes the cancellation");
    assert_eq!(s.fake().load().kv_used_tokens, 0);
}

/// Where real model files live: `$SPECSIM_MODELS`, else `models/` at the workspace root.
fn models_dir() -> std::path::PathBuf {
    std::env::var_os("SPECSIM_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_qwen_pair_serves_a_chat_completion() {
    let (target, draft) = (
        models_dir().join("target.gguf"),
        models_dir().join("draft.gguf"),
    );
    if !target.exists() || !draft.exists() {
        eprintln!(
            "SKIP real_qwen_pair_serves_a_chat_completion: {} or {} not found (run scripts/fetch-models.sh)",
            target.display(),
            draft.display()
        );
        return;
    }
    let config = specsim_runtime::serve::ServeConfig {
        draft: Some(draft.clone()),
        target: Some(target.clone()),
        policy: specsim_core::policy::PolicyConfig::Static { k: 4 },
        policy_name: "static-4".into(),
        host: "127.0.0.1".into(),
        port: 0,
        max_num_seqs: 16,
        max_queue: 256,
        kv_tokens: 32768,
        profile: None,
        tpot_slo_s: None,
        step_log: None,
        ngram: false,
        threads: None,
        limits: ServerLimits::default(),
        model_name: None,
        fake: false,
        fake_step_ms: 0,
        fake_accept: Vec::new(),
        shutdown_grace: Duration::from_secs(20),
        conn: specsim_runtime::server::ConnLimits::default(),
    };
    let tokenizer = Arc::new(GgufTokenizer::from_gguf_file(&target).expect("tokenizer"));
    let metrics = Arc::new(Metrics::default());
    let generator = tokio::task::spawn_blocking({
        let (tokenizer, metrics) = (tokenizer.clone(), metrics.clone());
        move || specsim_runtime::serve::start_live(&config, tokenizer, metrics)
    })
    .await
    .unwrap()
    .expect("models load");
    let state = AppState::new(
        generator,
        tokenizer,
        ServerLimits::default(),
        "qwen",
        metrics,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(Arc::new(state))).await;
    });
    let body = json!({
        "messages": [{"role": "user", "content": "Write a Python function that adds two numbers."}],
        "max_tokens": 16, "temperature": 0
    });
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json_body().await;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert!(
        text.contains("def ") || text.contains("python"),
        "unexpected output {text:?}"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (drafted, accepted) = (
        count("specsim_draft_tokens_total"),
        count("specsim_draft_accepted_total"),
    );
    assert!(drafted > 0);
    eprintln!(
        "real Qwen pair via HTTP (static-4): {text:?}; acceptance {accepted}/{drafted} = {:.2}",
        accepted as f64 / drafted as f64
    );
}

/// A server over the fake generator with `serve_with`'s connection limits; returns its address.
async fn start_with_conn_limits(conn: specsim_runtime::server::ConnLimits) -> String {
    let fake = FakeGenerator::new(FakeConfig::default());
    let state = AppState::new(
        Arc::new(fake),
        Arc::new(tiny_tokenizer()),
        limits(),
        "tiny",
        Arc::new(Metrics::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(specsim_runtime::server::serve_with(
        listener,
        router(Arc::new(state)),
        std::future::pending(),
        conn,
    ));
    addr
}

/// Reads from `c` until the server closes it (or `limit` passes); returns what was read and when it
/// closed.
async fn read_until_closed(
    c: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (String, Option<Duration>) {
    use tokio::io::AsyncReadExt;
    let t0 = std::time::Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t0.elapsed()), c.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    Some(t0.elapsed()),
                )
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Slow-header ("slowloris") clients: a connection that trickles its headers is closed after the
/// header read timeout, however many there are; a well-behaved request on another connection is
/// answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_by_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let addr = start_with_conn_limits(specsim_runtime::server::ConnLimits {
        header_read_timeout: Duration::from_millis(800),
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    // Keep trickling a header byte now and then: still too slow.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for c in &mut slow {
            let _ = c.write_all(b"X").await;
        }
    }
    // And connections that send nothing at all.
    for _ in 0..5 {
        slow.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let r = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for c in &mut slow {
        let (_, closed) = read_until_closed(c, Duration::from_secs(10)).await;
        let closed = closed.expect("slow-header connection still open");
        assert!(closed < Duration::from_secs(5), "{closed:?}");
    }
}

/// A huge declared Content-Length is refused at once with a JSON 413, without waiting for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_content_length_is_refused_at_once() {
    use tokio::io::AsyncWriteExt;
    let addr = start_with_conn_limits(Default::default()).await;
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{",
    )
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    let (text, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["error"]["code"], "body_too_large");
}

/// A wrong method gets 405 with an OpenAI-shaped JSON error, not an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_a_json_405() {
    let addr = start_with_conn_limits(Default::default()).await;
    let r = reqwest::get(format!("http://{addr}/v1/completions"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json_body().await;
    assert_eq!(v["error"]["code"], "method_not_allowed");
    assert!(v["error"]["message"].as_str().unwrap().contains("GET"));
    let r = reqwest::Client::new()
        .delete(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json_body().await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
}
