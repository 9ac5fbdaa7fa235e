//! In-process replay over the runtime's `Generator` seam (feature `runtime`): scripted delays come back
//! as latencies, multi-token steps are counted exactly, and a generator that stops aborts the run.
//!
//! Tolerances as in `fake_engine.rs`: delays of 50–150 ms, tight lower bounds, 60 ms of noise above.
#![cfg(feature = "runtime")]

use specsim_core::workload::Workload;
use specsim_replay::inprocess::InProcessEndpoint;
use specsim_replay::prompts::PromptMode;
use specsim_replay::{replay, ReplayConfig};
use specsim_runtime::server::fake::{FakeConfig, FakeGenerator};
use specsim_runtime::server::{
    FinishReason, GenEvent, GenerateRequest, Generation, Generator, Load, RequestSampling,
    SubmitError,
};
use specsim_sim::metrics::SloConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sleeps `ttft`, then sends the output in steps of `step` tokens `gap` apart; refuses every request
/// once `dead` is set.
struct Scripted {
    ttft: Duration,
    gap: Duration,
    step: u32,
    dead: Arc<AtomicBool>,
}

impl Generator for Scripted {
    fn submit(&self, req: GenerateRequest) -> Result<Generation, SubmitError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(SubmitError::Unavailable);
        }
        let (tx, rx) = specsim_runtime::generate::generation_channel();
        let (ttft, gap, step) = (self.ttft, self.gap, self.step);
        tokio::spawn(async move {
            tokio::time::sleep(ttft).await;
            let mut sent = 0;
            // The first token comes from prefill; then steps of `step` tokens.
            while sent < req.max_tokens {
                let n = if sent == 0 {
                    1
                } else {
                    step.min(req.max_tokens - sent)
                };
                if sent > 0 {
                    tokio::time::sleep(gap).await;
                }
                if !tx.send(GenEvent::Tokens(vec![7; n as usize])) {
                    return;
                }
                sent += n;
            }
            tx.send(GenEvent::Finished(FinishReason::Length));
        });
        Ok(rx)
    }

    fn load(&self) -> Load {
        Load::default()
    }
}

fn workload(reqs: &[(f64, u32, u32)]) -> Workload {
    let mut w = Workload::default();
    for &(t, p, o) in reqs {
        w.push((t * 1e9) as u64, p, o, None);
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_steps_come_back_with_exact_token_counts() {
    // TTFT 150 ms, then steps of 3 tokens every 120 ms: 7 tokens = 1 + 3 + 3, so two steps after the
    // first token: E2E 150 + 2 × 120 = 390 ms, TPOT 240 / 6 = 40 ms.
    let gen = Scripted {
        ttft: Duration::from_millis(150),
        gap: Duration::from_millis(120),
        step: 3,
        dead: Arc::new(AtomicBool::new(false)),
    };
    let ep = InProcessEndpoint::new(Arc::new(gen), None, RequestSampling::default(), "scripted");
    let w = workload(&[(0.0, 10, 7), (0.05, 20, 7)]);
    let out = replay(
        Arc::new(ep),
        &w,
        &PromptMode::TokenIds,
        &ReplayConfig::new("in-process", SloConfig::default()),
        &|_| {},
    )
    .await;
    assert_eq!(out.summary.failed, 0, "{:?}", out.stats.failures);
    for r in &out.records {
        assert_eq!(r.output_tokens, 7);
        assert!((0.149..=0.210).contains(&r.ttft_s), "ttft {}", r.ttft_s);
        assert!((0.389..=0.450).contains(&r.e2e_s), "e2e {}", r.e2e_s);
        assert!((0.039..=0.050).contains(&r.tpot_s), "tpot {}", r.tpot_s);
    }
    // Prompt tokens are exact in process.
    assert_eq!(out.records[1].prompt_tokens, 20);
    let tokens: Vec<u32> = out.results[0].chunks.iter().map(|c| c.1).collect();
    assert_eq!(tokens, vec![1, 3, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtimes_fake_generator_bursts_are_counted_and_text_needs_an_encoder() {
    let fake = FakeGenerator::new(FakeConfig {
        burst: 3,
        ..FakeConfig::default()
    });
    let ep = InProcessEndpoint::new(Arc::new(fake), None, RequestSampling::default(), "fake");
    let w = workload(&[(0.0, 5, 8)]);
    let out = replay(
        Arc::new(ep.clone()),
        &w,
        &PromptMode::TokenIds,
        &ReplayConfig::new("fake", SloConfig::default()),
        &|_| {},
    )
    .await;
    assert_eq!(out.summary.failed, 0, "{:?}", out.stats.failures);
    assert_eq!(out.records[0].output_tokens, 8);
    let tokens: u32 = out.results[0].chunks.iter().map(|c| c.1).sum();
    assert_eq!(tokens, 8);
    // Text prompts without an encoder: a protocol failure, recorded.
    let text = PromptMode::Text {
        set: specsim_replay::PromptSet::new(vec![specsim_replay::prompts::SetPrompt {
            category: String::new(),
            text: "hello".into(),
        }])
        .unwrap(),
        chars_per_token: 4.0,
    };
    let out = replay(
        Arc::new(ep),
        &w,
        &text,
        &ReplayConfig::new("fake", SloConfig::default()),
        &|_| {},
    )
    .await;
    assert_eq!(out.summary.failed, 1);
    assert!(out.records[0]
        .error
        .as_deref()
        .unwrap_or("")
        .starts_with("protocol: text prompts need an encoder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_aborts_the_in_process_run() {
    let dead = Arc::new(AtomicBool::new(false));
    let gen = Scripted {
        ttft: Duration::from_millis(50),
        gap: Duration::from_millis(50),
        step: 1,
        dead: dead.clone(),
    };
    let ep = InProcessEndpoint::new(Arc::new(gen), None, RequestSampling::default(), "dying");
    // Requests every 100 ms, 2 tokens (100 ms each); the engine stops at 250 ms: requests 0–2 finish,
    // 3 and 4 are refused (two in a row abort), 5–7 are never sent.
    let w = workload(&(0..8).map(|i| (i as f64 * 0.1, 4, 2)).collect::<Vec<_>>());
    let mut cfg = ReplayConfig::new("dying", SloConfig::default());
    cfg.abort_after = 2;
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        dead.store(true, Ordering::SeqCst);
    });
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        replay(Arc::new(ep), &w, &PromptMode::TokenIds, &cfg, &|_| {}),
    )
    .await
    .expect("the replay must end on its own");
    killer.await.unwrap();
    assert_eq!(out.records.len(), 8);
    assert!(out.records[0].error.is_none());
    assert!(out.stats.aborted.is_some());
    let err = |i: usize| out.records[i].error.clone().unwrap_or_default();
    assert!(
        err(3).starts_with("connect: the generator is not running"),
        "{}",
        err(3)
    );
    assert!(err(7).starts_with("aborted:"), "{}", err(7));
    assert!(out.results[7].sent_s.is_none());
}
