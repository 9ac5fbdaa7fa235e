//! Replay against a scripted fake engine on loopback: known delays come back as measured latencies,
//! every kind of failure is a row, and an engine that dies mid-run ends the run without a hang.
//!
//! The fake engine is an axum server on its own thread and runtime, so that "dying" is what a killed
//! process does: the runtime is dropped, the listener and every open connection close at once.
//!
//! Its behaviour is keyed on `max_tokens` so one workload can mix cases:
//! 7 → HTTP 503; 9 → never answers; 3 → stops after 2 tokens (finish `stop`); 5 → an error event
//! after 2 tokens; anything else → TTFT delay, then one token per gap, then usage and `[DONE]`.
//!
//! Tolerances: delays are 50–150 ms, large against loopback and scheduling noise. A measured latency
//! cannot be shorter than the scripted one (the server sleeps at least that long), so lower bounds
//! are tight (1 ms for timer rounding); upper bounds allow 60 ms of noise on a loaded 2-core machine.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use specsim_core::workload::Workload;
use specsim_replay::prompts::{PromptMode, PromptSet, SetPrompt};
use specsim_replay::{replay, HttpEndpoint, ReplayConfig, ReplayOutcome};
use specsim_sim::metrics::{parse_requests_csv, SloConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
struct Script {
    ttft: Duration,
    gap: Duration,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn event(v: Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn chunk(text: &str, finish: Option<&str>) -> Bytes {
    event(
        json!({"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}),
    )
}

async fn completions(State(s): State<Script>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.bodies.lock().unwrap().push(v.clone());
    let max = v["max_tokens"].as_u64().unwrap_or(1) as u32;
    // A stand-in tokenizer: 4 characters per token.
    let prompt_tokens = match &v["prompt"] {
        Value::String(t) => t.chars().count().div_ceil(4) as u64,
        Value::Array(a) => a.len() as u64,
        _ => 0,
    };
    match max {
        7 => return (StatusCode::SERVICE_UNAVAILABLE, "overloaded, try later").into_response(),
        9 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
        _ => {}
    }
    let (produce, fail_after) = match max {
        3 => (2, None),
        5 => (3, Some(2)),
        n => (n, None),
    };
    let stream = futures_util::stream::unfold(0u32, move |i| {
        let s = s.clone();
        async move {
            if i > produce + 1 {
                return None;
            }
            let out = if i == 0 {
                tokio::time::sleep(s.ttft).await;
                chunk("tok", (produce == 1).then_some("length"))
            } else if i < produce {
                if fail_after == Some(i) {
                    event(
                        json!({"error": {"message": "generator crashed", "type": "server_error"}}),
                    )
                } else {
                    tokio::time::sleep(s.gap).await;
                    let finish =
                        (i + 1 == produce).then_some(if produce < max { "stop" } else { "length" });
                    chunk(" tok", finish)
                }
            } else if i == produce {
                event(
                    json!({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": produce, "total_tokens": prompt_tokens + produce as u64}}),
                )
            } else {
                Bytes::from("data: [DONE]\n\n")
            };
            Some((Ok::<Bytes, std::io::Error>(out), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A fake engine on its own thread; dropping the kill sender kills it like a process exit.
struct Fake {
    addr: SocketAddr,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Fake {
    fn start(ttft_ms: u64, gap_ms: u64) -> Fake {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            ttft: Duration::from_millis(ttft_ms),
            gap: Duration::from_millis(gap_ms),
            bodies: bodies.clone(),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/v1/completions", post(completions))
                    .with_state(script);
                tokio::select! {
                    _ = axum::serve(l, app) => {}
                    _ = kill_rx => {}
                }
            });
            // Dropping the runtime drops every connection task: open streams break off.
            rt.shutdown_background();
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Fake {
            addr,
            kill: Some(kill),
            bodies,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn kill(&mut self) {
        self.kill.take();
    }
}

fn workload(reqs: &[(f64, u32, u32)]) -> Workload {
    let mut w = Workload::default();
    for &(t, p, o) in reqs {
        w.push((t * 1e9) as u64, p, o, Some("coding"));
    }
    w
}

fn text_prompts() -> PromptMode {
    PromptMode::Text {
        set: PromptSet::new(vec![SetPrompt {
            category: "coding".into(),
            text: "Write a function that reverses a linked list.".into(),
        }])
        .unwrap(),
        chars_per_token: 4.0,
    }
}

async fn run(fake: &Fake, w: &Workload, cfg: &ReplayConfig) -> ReplayOutcome {
    let ep = Arc::new(HttpEndpoint::new(&fake.url(), Some("fake".into()), None).unwrap());
    // The run is bounded by its own deadline; this outer bound turns a hang into a failure.
    tokio::time::timeout(
        Duration::from_secs(60),
        replay(ep, w, &text_prompts(), cfg, &|_| {}),
    )
    .await
    .expect("the replay must end on its own")
}

fn within(x: f64, lo: f64, hi: f64) -> bool {
    (lo..=hi).contains(&x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_delays_come_back_as_ttft_tpot_and_e2e() {
    let fake = Fake::start(150, 80);
    // Four overlapping requests of 6 output tokens: TTFT 150 ms, then 5 gaps of 80 ms.
    let w = workload(&[(0.0, 12, 6), (0.05, 40, 6), (0.10, 12, 6), (0.15, 100, 6)]);
    let slo = SloConfig {
        ttft_s: Some(0.5),
        tpot_s: Some(0.2),
        e2e_s: None,
    };
    let out = run(&fake, &w, &ReplayConfig::new("fake-live", slo)).await;
    assert_eq!(out.summary.failed, 0, "{:?}", out.stats.failures);
    assert_eq!(out.summary.finished, 4);
    for r in &out.records {
        assert_eq!(r.output_tokens, 6);
        // Hand-computed: TTFT 0.150, TPOT 0.080, E2E 0.150 + 5 × 0.080 = 0.550.
        assert!(within(r.ttft_s, 0.149, 0.210), "ttft {}", r.ttft_s);
        assert!(within(r.tpot_s, 0.070, 0.095), "tpot {}", r.tpot_s);
        assert!(within(r.e2e_s, 0.549, 0.610), "e2e {}", r.e2e_s);
        assert!(r.slo_met);
        assert_eq!(r.policy, "fake-live");
    }
    // Prompt lengths: 12 tokens × 4 chars → 45 characters of the one prompt (cut back to a word), which
    // the stand-in tokenizer counts as ⌈45 / 4⌉ = 12; the 40- and 100-token prompts cycle the text.
    assert_eq!(out.records[0].prompt_tokens, 12);
    assert!(within(out.records[3].prompt_tokens as f64, 80.0, 100.0));
    // Every inter-token gap, not just the mean: 5 per request, each about 80 ms.
    assert!(out.stats.inter_token_gap.p50 > 0.070);
    assert!(out.stats.inter_token_gap.p50 < 0.095);
    assert_eq!(out.summary.slo_attainment, 1.0);
    // What was sent: the forced output length and streaming usage.
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4);
    for b in &bodies {
        assert_eq!(b["max_tokens"], 6);
        assert_eq!(b["min_tokens"], 6);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["model"], "fake");
    }
    // The written directory parses back in the simulator's schema.
    let dir = tempfile::tempdir().unwrap();
    specsim_replay::write_replay_dir(dir.path(), &out).unwrap();
    let text = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
    let back = parse_requests_csv(&text, "requests.csv").unwrap();
    assert_eq!(back.len(), 4);
    assert!(!text.lines().next().unwrap().contains("error"));
    let chunks = std::fs::read_to_string(dir.path().join("chunks.csv")).unwrap();
    // 6 token chunks per request (the usage chunk has no choice).
    assert_eq!(chunks.lines().count(), 1 + 4 * 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_queues_in_the_client_and_counts_in_ttft() {
    let fake = Fake::start(100, 50);
    // Two requests at t = 0, 4 tokens each, one slot: the second waits for the first
    // (100 + 3 × 50 = 250 ms), so its TTFT is 250 + 100 = 350 ms.
    let w = workload(&[(0.0, 8, 4), (0.0, 8, 4)]);
    let mut cfg = ReplayConfig::new("limited", SloConfig::default());
    cfg.concurrency_limit = Some(1);
    let out = run(&fake, &w, &cfg).await;
    assert_eq!(out.summary.failed, 0, "{:?}", out.stats.failures);
    let mut ttft: Vec<f64> = out.records.iter().map(|r| r.ttft_s).collect();
    ttft.sort_by(f64::total_cmp);
    assert!(within(ttft[0], 0.099, 0.160), "{ttft:?}");
    assert!(within(ttft[1], 0.349, 0.440), "{ttft:?}");
    assert!(out.stats.send_lag.max >= 0.249);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_a_row_with_its_reason() {
    let fake = Fake::start(50, 50);
    // 7: 503, 9: hangs past the timeout, 3: short output, 5: error event, 4: fine.
    let w = workload(&[
        (0.0, 8, 7),
        (0.0, 8, 9),
        (0.0, 8, 3),
        (0.0, 8, 5),
        (0.0, 8, 4),
    ]);
    let mut cfg = ReplayConfig::new("failing", SloConfig::default());
    cfg.request_timeout = Duration::from_millis(400);
    let out = run(&fake, &w, &cfg).await;
    assert_eq!(out.records.len(), 5);
    assert_eq!(out.summary.failed, 4);
    assert_eq!(out.summary.finished, 1);
    // One of five met its (empty) SLOs.
    assert_eq!(out.summary.slo_attainment, 0.2);
    let err = |i: usize| out.records[i].error.clone().unwrap_or_default();
    assert!(
        err(0).starts_with("http 503: overloaded; try later"),
        "{}",
        err(0)
    );
    assert_eq!(err(1), "timeout after 0.4 s");
    assert_eq!(err(2), "short output: 2 of 3 tokens");
    assert_eq!(err(3), "server error: generator crashed");
    assert_eq!(out.records[4].error, None);
    // A short output still reports what it measured before failing: its TTFT.
    assert!(out.records[2].ttft_s >= 0.049);
    assert!(out.records[1].ttft_s.is_nan());
    assert_eq!(out.stats.failures["timeout"], 1);
    assert_eq!(out.stats.failures["http_503"], 1);
    // Written and read back: failed rows keep their reason.
    let dir = tempfile::tempdir().unwrap();
    specsim_replay::write_replay_dir(dir.path(), &out).unwrap();
    let text = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
    let back = parse_requests_csv(&text, "requests.csv").unwrap();
    assert_eq!(back[1].error.as_deref(), Some("timeout after 0.4 s"));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["failed"], 4);
    assert_eq!(summary["finished"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_dies_mid_run_fails_the_rest_and_aborts() {
    let mut fake = Fake::start(100, 50);
    // Ten requests 200 ms apart, 4 tokens each (250 ms). The engine dies at 575 ms: requests 0 and 1
    // have finished (at 250 and 450 ms), request 2 (sent at 400 ms) loses its stream, requests 3 and 4
    // are refused, which makes three connection failures in a row and aborts the run: requests 5–9
    // are never sent.
    let reqs: Vec<(f64, u32, u32)> = (0..10).map(|i| (i as f64 * 0.2, 8, 4)).collect();
    let w = workload(&reqs);
    let mut cfg = ReplayConfig::new("dying", SloConfig::default());
    cfg.abort_after = 3;
    let url = fake.url();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(575)).await;
        fake.kill();
        fake
    });
    let ep = Arc::new(HttpEndpoint::new(&url, None, None).unwrap());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        replay(ep, &w, &text_prompts(), &cfg, &|_| {}),
    )
    .await
    .expect("the replay must end on its own");
    let _ = killer.await;
    assert_eq!(out.records.len(), 10);
    assert_eq!(out.summary.failed + out.summary.finished, 10);
    assert!(out.records[0].error.is_none(), "{:?}", out.records[0].error);
    let kind = |i: usize| out.records[i].error.clone().unwrap_or_default();
    assert!(kind(2).starts_with("stream:"), "{}", kind(2));
    assert!(kind(3).starts_with("connect:"), "{}", kind(3));
    for i in 5..10 {
        assert!(
            kind(i).starts_with("aborted: the engine stopped answering"),
            "{i}: {}",
            kind(i)
        );
    }
    assert!(out.stats.aborted.is_some());
    // Aborted requests were never sent: the run ended long before the last arrival (1.8 s) plus the
    // default 300 s timeout.
    assert!(out.results[9].sent_s.is_none());
}
