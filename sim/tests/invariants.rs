//! Named invariants of the engine core (see the crate docs), checked under pressure: a KV cache small
//! enough to force preemption, speculation, chunked prefill, several replicas.

mod common;
use common::{run_all, scenario};
use specsim_core::acceptance::ConstantAcceptance;
use specsim_core::cost::FixedCost;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_sim::simulated::SimBackend;
use specsim_sim::synth::generate;
use specsim_sim::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig};
use std::sync::Arc;

const COST: FixedCost = FixedCost {
    draft_base: 1_000_000,
    draft_per_seq: 10_000,
    target_base: 8_000_000,
    target_per_token: 20_000,
};

/// Drives one engine directly and checks, after every step: KV blocks held + free = total and never
/// above total; the clock never goes backwards; every verified sequence emits accepted + 1 tokens
/// (visible as emitted tokens summing to each request's output length); every request finishes once.
fn drive(chunked: bool, policy: PolicyConfig, kv_blocks: u32) -> (u64, usize) {
    let w = generate(
        &SyntheticConfig {
            requests: 300,
            rate: 50.0,
            arrival: ArrivalConfig::Poisson,
            prompt: LengthConfig::Uniform { min: 1, max: 300 },
            output: LengthConfig::Uniform { min: 1, max: 200 },
        },
        3,
    )
    .unwrap();
    let cfg = EngineConfig {
        kv_blocks: Some(kv_blocks),
        block_size: 16,
        max_num_seqs: 64,
        max_batched_tokens: 512,
        chunked_prefill: chunked,
        ..Default::default()
    };
    let cost = Arc::new(COST);
    let mut engine = Engine::new(cfg, policy.build(), cost.clone()).unwrap();
    let mut backend = SimBackend::new(
        cost,
        Arc::new(ConstantAcceptance { alpha: 0.7 }),
        stream(1, "acceptance", 0),
        true,
    );
    let mut now = 0;
    let mut next = 0;
    let mut finished = vec![0u32; w.len()];
    let mut preempted = 0u64;
    let mut drafted = 0u64;
    while next < w.len() || engine.has_work() {
        while next < w.len() && w.requests[next].arrival_ns <= now {
            engine.add_request(w.requests[next].clone()).unwrap();
            next += 1;
        }
        match engine.step(now, &mut backend).unwrap() {
            Some(rep) => {
                assert!(
                    rep.end_ns >= rep.start_ns && rep.start_ns == now,
                    "clock went backwards"
                );
                assert!(rep.kv_used <= engine.kv_total(), "KV over capacity");
                assert!(rep.accepted <= rep.drafted);
                engine.check_kv_invariant().unwrap();
                preempted += rep.preempted as u64;
                drafted += rep.drafted as u64;
                now = rep.end_ns;
            }
            None => now = w.requests[next].arrival_ns,
        }
        for f in engine.drain_finished() {
            finished[f.spec.id as usize] += 1;
            assert_eq!(
                f.output_tokens, f.spec.output_tokens,
                "request {} emitted the wrong number of tokens",
                f.spec.id
            );
            assert!(f.first_token_ns <= f.finish_ns && f.first_token_ns >= f.spec.arrival_ns);
        }
    }
    assert!(
        finished.iter().all(|&n| n == 1),
        "every request finishes exactly once"
    );
    assert_eq!(engine.kv_used(), 0, "all KV returned at the end");
    (preempted, drafted as usize)
}

#[test]
fn invariants_hold_with_preemption_and_speculation() {
    // 40 blocks of 16 = 640 tokens of KV for requests up to 500 tokens: preemption must happen.
    let (preempted, drafted) = drive(false, PolicyConfig::Static { k: 4 }, 40);
    assert!(preempted > 0, "the test must exercise preemption");
    assert!(drafted > 0);
}

#[test]
fn invariants_hold_with_chunked_prefill_and_every_policy() {
    for p in [
        PolicyConfig::None,
        PolicyConfig::Static { k: 3 },
        PolicyConfig::BatchTable {
            table: vec![[4, 4], [16, 2]],
        },
        PolicyConfig::Threshold {
            confidence: 0.6,
            k_max: 6,
        },
        PolicyConfig::Smartspec {
            k_max: 6,
            alpha0: 0.7,
            bias: 1.1,
        },
        PolicyConfig::Specserve {
            k_max: 8,
            elimination: true,
            slo_aware: true,
            alpha0: None,
        },
        PolicyConfig::Oracle { k_max: 8 },
    ] {
        drive(true, p.clone(), 40);
        drive(false, p, 400);
    }
}

#[test]
fn same_scenario_and_seed_give_identical_bytes() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/quickstart.toml"
    ))
    .unwrap();
    let text = text.replace("requests = 2000", "requests = 400");
    let a = run_all(&scenario(&text));
    let b = run_all(&scenario(&text));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            specsim_sim::metrics::requests_csv(&x.records),
            specsim_sim::metrics::requests_csv(&y.records)
        );
        assert_eq!(
            specsim_sim::metrics::steps_csv(&x.steps),
            specsim_sim::metrics::steps_csv(&y.steps)
        );
        assert_eq!(
            serde_json::to_string(&x.summary).unwrap(),
            serde_json::to_string(&y.summary).unwrap()
        );
    }
    let c = run_all(&scenario(&text.replace("seed = 42", "seed = 43")));
    assert_ne!(
        specsim_sim::metrics::requests_csv(&a[0].records),
        specsim_sim::metrics::requests_csv(&c[0].records)
    );
}

#[test]
fn equal_time_events_fire_in_class_order() {
    // A request arriving exactly when a step ends joins the very next step: R1 arrives at 14 ms, the
    // end of R0's 14 ms prefill, and is prefilled from 14 ms (not after R0's first decode step).
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        "arrival_s,prompt_tokens,output_tokens\n0,4,3\n0.014,2,1\n",
    )
    .unwrap();
    let sc = scenario(&format!(
        "[trace]\npath = \"{}\"\n[engine]\nkv_blocks = 10\n[cost]\nkind = \"fixed\"\ntarget_ms = 10.0\ntarget_per_token_ms = 1.0\n[acceptance]\nkind = \"constant\"\nalpha = 0.0\n[[policies]]\nkind = \"none\"\n",
        trace.display()
    ));
    let run = &run_all(&sc)[0];
    assert!(
        (run.records[1].first_token_s - 0.026).abs() < 1e-9,
        "{:?}",
        run.records[1]
    );
}

#[test]
fn replicas_share_load_and_every_router_conserves_requests() {
    for router in [
        "round_robin",
        "least_outstanding",
        "least_tokens",
        "power_of_two",
    ] {
        let sc = scenario(&format!(
            r#"
            [trace.synthetic]
            requests = 400
            rate = 40.0
            prompt = {{ kind = "uniform", min = 10, max = 100 }}
            output = {{ kind = "uniform", min = 10, max = 100 }}
            [cluster]
            replicas = 3
            router = "{router}"
            [engine]
            kv_blocks = 500
            [cost]
            kind = "fixed"
            target_ms = 10.0
            [acceptance]
            kind = "constant"
            alpha = 0.5
            [[policies]]
            kind = "static"
            k = 2
            "#
        ));
        let run = &run_all(&sc)[0];
        assert_eq!(run.records.len(), 400);
        let mut per = [0usize; 3];
        run.records
            .iter()
            .for_each(|r| per[r.replica as usize] += 1);
        assert!(per.iter().all(|&n| n > 80), "{router}: {per:?}");
    }
}

#[test]
fn abort_removes_waiting_and_running_requests_and_returns_their_kv() {
    use specsim_core::workload::RequestSpec;
    let cfg = EngineConfig {
        kv_blocks: Some(100),
        max_num_seqs: 1,
        ..Default::default()
    };
    let cost = Arc::new(COST);
    let mut engine = Engine::new(cfg, PolicyConfig::Static { k: 2 }.build(), cost.clone()).unwrap();
    let mut backend = SimBackend::new(
        cost,
        Arc::new(ConstantAcceptance { alpha: 0.5 }),
        stream(1, "acceptance", 0),
        true,
    );
    for id in 0..2 {
        engine
            .add_request(RequestSpec {
                id,
                arrival_ns: 0,
                prompt_tokens: 40,
                output_tokens: 50,
                category: None,
                prefix: None,
            })
            .unwrap();
    }
    engine.step(0, &mut backend).unwrap(); // request 0 admitted and prefilled; 1 waits (max_num_seqs 1)
    assert_eq!((engine.running_len(), engine.waiting_len()), (1, 1));
    assert!(engine.kv_used() > 0);
    assert!(engine.abort(1, &mut backend), "waiting request");
    assert!(engine.abort(0, &mut backend), "running request");
    assert!(!engine.abort(7, &mut backend), "unknown request");
    assert!(!engine.has_work());
    assert_eq!(engine.kv_used(), 0);
    engine.check_kv_invariant().unwrap();
    assert!(
        engine.drain_finished().is_empty(),
        "aborted requests are not reported as finished"
    );
}

/// Drafts a policy eliminates before verification were drafted — their draft forwards were paid — so
/// they count in `drafted`; only the verified ones can be accepted. Hand-worked: a policy that drafts 4
/// (capped, as always, at one fewer than the tokens still owed) and keeps 1 per step, every draft
/// accepted, one request of 1 prompt token and 9 output tokens: prefill emits 1 (8 owed); each decode
/// step verifies 1 draft and emits 2, drafting min(4, owed - 1): 4 (6 owed), 4 (4), 3 (2), 1 (0) —
/// 4 steps, 12 proposed drafts, 4 accepted.
#[test]
fn eliminated_drafts_count_as_drafted() {
    use specsim_core::policy::{DraftView, SpeculationPolicy};
    use specsim_core::workload::RequestSpec;
    struct DraftFourKeepOne;
    impl SpeculationPolicy for DraftFourKeepOne {
        fn name(&self) -> String {
            "draft-4-keep-1".into()
        }
        fn k_max(&self) -> u32 {
            4
        }
        fn draft_next(&mut self, view: &DraftView, keep: &mut [bool]) {
            if view.position >= 4 {
                keep.fill(false);
            }
        }
        fn finalize(&mut self, _view: &DraftView, k: &mut [u32]) {
            k.iter_mut().for_each(|x| *x = (*x).min(1));
        }
    }
    let cfg = EngineConfig {
        kv_blocks: Some(100),
        ..Default::default()
    };
    let cost = Arc::new(COST);
    let mut engine = Engine::new(cfg, Box::new(DraftFourKeepOne), cost.clone()).unwrap();
    let mut backend = SimBackend::new(
        cost,
        Arc::new(ConstantAcceptance { alpha: 1.0 }),
        stream(1, "acceptance", 0),
        true,
    );
    engine
        .add_request(RequestSpec {
            id: 0,
            arrival_ns: 0,
            prompt_tokens: 1,
            output_tokens: 9,
            category: None,
            prefix: None,
        })
        .unwrap();
    let mut now = 0;
    let mut reported = 0;
    while let Some(r) = engine.step(now, &mut backend).unwrap() {
        now = r.end_ns;
        reported += r.drafted;
    }
    let f = engine.drain_finished().pop().unwrap();
    assert_eq!(f.output_tokens, 9);
    assert_eq!(f.verify_steps, 4);
    assert_eq!((f.drafted, f.accepted), (12, 4));
    assert_eq!(reported, 12, "step reports count proposed drafts too");
}

/// A draft token takes a KV slot, and a new block only when the blocks held are full. Hand-worked,
/// blocks of 16 tokens, static k = 4: request A (29 prompt tokens, 10 output) and B (20 prompt, 2
/// output) are prefilled in the first step; decoding reserves A's next token (30 tokens: 2 blocks)
/// and B's (21: 2 blocks). A's draft positions 0..3 need 31, 32, 33, 34 tokens: the first two fit in
/// its 2 blocks, the third needs a third block. B owes one token and drafts nothing. With 4 blocks
/// none is left and A drafts 2; with 5 it takes the fifth and drafts all 4.
#[test]
fn a_draft_token_takes_a_new_block_only_when_the_held_ones_are_full() {
    use specsim_core::workload::RequestSpec;
    for (kv_blocks, drafted) in [(4, 2), (5, 4)] {
        let cfg = EngineConfig {
            kv_blocks: Some(kv_blocks),
            block_size: 16,
            chunked_prefill: false,
            prefix_caching: false,
            ..Default::default()
        };
        let cost = Arc::new(COST);
        let mut engine =
            Engine::new(cfg, PolicyConfig::Static { k: 4 }.build(), cost.clone()).unwrap();
        let mut backend = SimBackend::new(
            cost,
            Arc::new(ConstantAcceptance { alpha: 0.0 }),
            stream(1, "acceptance", 0),
            true,
        );
        for (id, prompt_tokens, output_tokens) in [(0, 29, 10), (1, 20, 2)] {
            engine
                .add_request(RequestSpec {
                    id,
                    arrival_ns: 0,
                    prompt_tokens,
                    output_tokens,
                    category: None,
                    prefix: None,
                })
                .unwrap();
        }
        let prefill = engine.step(0, &mut backend).unwrap().unwrap();
        assert_eq!(
            (prefill.batch, prefill.drafted),
            (2, 0),
            "{kv_blocks} blocks"
        );
        let decode = engine.step(prefill.end_ns, &mut backend).unwrap().unwrap();
        assert_eq!(decode.drafted, drafted, "{kv_blocks} blocks");
        // Every draft rejected (alpha 0): A keeps 31 tokens (2 blocks, the third handed back) and
        // B, done, returns its 2.
        assert_eq!(decode.kv_used, 2, "{kv_blocks} blocks");
        engine.check_kv_invariant().unwrap();
    }
}
