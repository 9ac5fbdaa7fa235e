//! The engine/queueing term is ~0 when nothing but the engine is in the path: the runtime's engine
//! thread over the scripted echo backend (every target forward sleeps a fixed time, every draft is
//! accepted), replayed in process, then the simulator re-run with that run's step log as its forward
//! times must reproduce each request's TTFT and TPOT within 1 %.
//!
//! Forwards of 500 ms keep the serving path's own time (a timer's millisecond, waking the engine
//! thread, handing tokens to the client: 1.5–2 ms a request on a loaded 2-core machine, 4 ms at worst
//! seen) under 1 % of every latency; arrivals fall mid-forward (250 ms from either end), so a few
//! milliseconds of drift cannot move a request into another step. A warm-up request goes first and is
//! not compared: the first wake of an idle engine thread costs a few milliseconds more.
#![cfg(feature = "runtime")]

use specsim_core::acceptance::AcceptanceConfig;
use specsim_core::cost::FixedCost;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_core::workload::Workload;
use specsim_replay::fidelity::recorded::engine_term;
use specsim_replay::fidelity::resimulate;
use specsim_replay::fidelity::steps::{read_step_log, ForwardKind};
use specsim_replay::inprocess::InProcessEndpoint;
use specsim_replay::prompts::PromptMode;
use specsim_replay::{replay, ReplayConfig};
use specsim_runtime::driver::echo::EchoBackend;
use specsim_runtime::driver::{spawn_engine, DriverConfig};
use specsim_runtime::server::{Metrics, RequestSampling};
use specsim_sim::cluster::Replica;
use specsim_sim::metrics::SloConfig;
use specsim_sim::simulated::SimBackend;
use std::sync::Arc;
use std::time::Duration;

const STEP_MS: u64 = 500;

/// The engine both tests serve live: 64 blocks of 16 tokens, 8 sequences, prefix caching off (the live
/// engine refuses it: it cannot reuse KV across requests).
fn live_engine_config() -> EngineConfig {
    EngineConfig {
        block_size: 16,
        kv_blocks: Some(64),
        max_num_seqs: 8,
        prefix_caching: false,
        ..EngineConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_on_the_step_log_reproduces_every_request_within_one_percent() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.csv");
    let engine = live_engine_config();
    let policy = PolicyConfig::from_name("static-3").unwrap();
    let cost = Arc::new(FixedCost {
        draft_base: 1_000_000,
        draft_per_seq: 0,
        target_base: STEP_MS * 1_000_000,
        target_per_token: 0,
    });
    let driver = DriverConfig {
        engine: engine.clone(),
        policy: policy.clone(),
        max_in_flight: 64,
        eos_ids: Vec::new(),
        tpot_slo_ns: None,
        draft_model: false,
        step_log: Some(log.clone()),
    };
    let backend = EchoBackend::new(0.9).with_step_delay(Duration::from_millis(STEP_MS));
    let handle = spawn_engine(
        driver,
        cost.clone(),
        backend,
        Arc::new(Metrics::new("echo")),
    )
    .unwrap();
    // Two groups of three requests of 9 output tokens (1 from prefill, then 4 per verification
    // with k = 3, all accepted). In a group starting at t: A at t is prefilled and verified alone;
    // B at t + 0.75 (mid A's verification) is prefilled next, alone (prefill goes first), and C at
    // t + 1.25 (mid B's prefill) after it; then A, B, C verify together and B, C once more: six
    // target forwards of 1, 1, 1, 1, 3 and 2 sequences.
    let mut w = Workload::default();
    w.push(0, 8, 1, None);
    for g in 0..2 {
        let t = 1.0 + g as f64 * 4.0;
        for (dt, prompt) in [(0.0, 12), (0.75, 20), (1.25, 16)] {
            w.push(((t + dt) * 1e9) as u64, prompt, 9, None);
        }
    }
    let ep = InProcessEndpoint::new(Arc::new(handle), None, RequestSampling::default(), "echo");
    let slo = SloConfig::default();
    let out = replay(
        Arc::new(ep),
        &w,
        &PromptMode::TokenIds,
        &ReplayConfig::new("static-3", slo),
        &|_| {},
    )
    .await;
    assert_eq!(out.summary.failed, 0, "{:?}", out.stats.failures);
    // The engine thread flushes its log when it runs out of work; give it a moment after the last
    // token.
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = read_step_log(&log).unwrap();
        if rows.iter().filter(|r| r.kind != ForwardKind::Draft).count() >= 13 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The warm-up's prefill, then two groups of six target forwards.
    let target_rows = rows.iter().filter(|r| r.kind != ForwardKind::Draft).count();
    assert_eq!(target_rows, 13, "{rows:?}");

    let acceptance = AcceptanceConfig::Constant { alpha: 1.0 }
        .build(&w.categories)
        .map(Arc::from)
        .unwrap();
    let mut sim_engine = Engine::new(engine, policy.build(), cost.clone()).unwrap();
    sim_engine.set_tpot_slo(None);
    let sim = SimBackend::new(cost, acceptance, stream(1, "acceptance", 0), false);
    let replica = Replica {
        engine: sim_engine,
        backend: Box::new(sim),
    };
    let (rerun, matching) = resimulate(replica, &rows, &w, "static-3", &slo, 1).unwrap();
    assert_eq!(
        matching.mismatched + matching.beyond_log,
        0,
        "{matching:?} {rows:#?}"
    );
    let term = engine_term(&rerun[1..], &out.records[1..], matching);
    assert_eq!(term.requests, 6);
    for (m, p) in out.records.iter().zip(&rerun).skip(1) {
        assert_eq!(m.id, p.id);
        let e_ttft = (p.ttft_s - m.ttft_s) / m.ttft_s;
        let e_tpot = (p.tpot_s - m.tpot_s) / m.tpot_s;
        assert!(
            e_ttft.abs() < 0.01 && e_tpot.abs() < 0.01,
            "request {}: TTFT {:.4} vs {:.4} s, TPOT {:.4} vs {:.4} s",
            m.id,
            p.ttft_s,
            m.ttft_s,
            p.tpot_s,
            m.tpot_s
        );
    }
    assert!(
        term.ttft_max_abs_rel < 0.01 && term.tpot_max_abs_rel < 0.01,
        "{term:?}"
    );
    eprintln!("engine/queueing term on the echo backend: {term:?}");
}

#[test]
fn a_rerun_that_leaves_the_log_says_so() {
    use specsim_replay::fidelity::steps::parse_step_log;
    // A log of one single-sequence prefill; the re-run has two requests arriving together (one
    // forward of two sequences, then verifications): the batch size differs and the log runs out.
    let rows = parse_step_log(
        "time_s,model,seqs,new_tokens,prefill_tokens,context_tokens,measured_s,predicted_s\n0.3,target,1,8,8,8,0.300000,0.300000\n",
        "log",
    )
    .unwrap();
    let cost = Arc::new(FixedCost {
        draft_base: 0,
        draft_per_seq: 0,
        target_base: 100_000_000,
        target_per_token: 0,
    });
    let engine = live_engine_config();
    let policy = PolicyConfig::from_name("none").unwrap();
    let mut w = Workload::default();
    w.push(0, 8, 3, None);
    w.push(0, 8, 3, None);
    let acceptance = AcceptanceConfig::Constant { alpha: 1.0 }
        .build(&w.categories)
        .map(Arc::from)
        .unwrap();
    let replica = Replica {
        engine: Engine::new(engine, policy.build(), cost.clone()).unwrap(),
        backend: Box::new(SimBackend::new(cost, acceptance, stream(1, "a", 0), false)),
    };
    let (rerun, m) = resimulate(replica, &rows, &w, "none", &SloConfig::default(), 1).unwrap();
    assert_eq!(rerun.len(), 2);
    // First forward: 2 sequences against a logged 1 (used anyway); then two decode forwards past
    // the log's end at the cost model's 100 ms.
    assert_eq!((m.matched, m.mismatched, m.beyond_log), (0, 1, 2), "{m:?}");
    assert!(m.match_fraction() < 0.5);
    assert!((rerun[0].ttft_s - 0.3).abs() < 1e-9);
    assert!((rerun[0].e2e_s - 0.5).abs() < 1e-9);
}
