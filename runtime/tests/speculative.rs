//! The live backend under the real engine core, on tiny generated models.
//!
//! The central claim of speculative decoding with greedy verification: whatever the draft proposes and
//! however many tokens each policy drafts, the output is token for token what greedy decoding of the
//! target alone produces. The reference here is a plain loop over the target model, one token per
//! forward, written independently of the backend and the engine.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use specsim_core::cost::FixedCost;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::workload::RequestSpec;
use specsim_runtime::drafter::model::ModelDrafter;
use specsim_runtime::drafter::ngram::NgramDrafter;
use specsim_runtime::live::{DraftSource, LiveBackend};
use specsim_runtime::model::tiny::{TinyArch, TinySpec};
use specsim_runtime::model::{ForwardItem, LogitRows, Model};
use specsim_runtime::sampling::{argmax, SamplingParams};

/// Greedy decoding of the target alone: prefill the prompt, then one token per forward.
fn greedy_reference(model: &Model, prompt: &[u32], n: usize, eos: Option<u32>) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    let mut feed = prompt.to_vec();
    while out.len() < n {
        let logits = model
            .forward(&mut [ForwardItem {
                cache: &mut cache,
                tokens: &feed,
                logits: LogitRows::Last,
            }])
            .unwrap();
        let t = argmax(logits.last(0).unwrap()).unwrap();
        out.push(t);
        if Some(t) == eos {
            break;
        }
        feed = vec![t];
    }
    out
}

/// [`greedy_reference`] for every request of a workload.
fn greedy_references(model: &Model, w: &Workload, eos: Option<u32>) -> Vec<Vec<u32>> {
    w.prompts
        .iter()
        .zip(&w.outputs)
        .map(|(p, &n)| greedy_reference(model, p, n as usize, eos))
        .collect()
}

/// A tiny target and its perturbed draft (re-packed as `serve` loads drafts if `repack`). Llama's tied
/// output makes logits more peaked: its draft needs more noise to disagree sometimes.
fn tiny_pair(arch: TinyArch, repack: bool) -> (TinySpec, Arc<Model>, Arc<Model>) {
    let spec = TinySpec::new(arch, 21);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    let noise = if arch == TinyArch::Llama { 1.0 } else { 0.15 };
    let perturbed = spec.perturbed(77, noise);
    let draft = if repack {
        perturbed.build_repacked(&Device::Cpu)
    } else {
        perturbed.build(&Device::Cpu)
    };
    (spec, target, Arc::new(draft.unwrap()))
}

struct Workload {
    prompts: Vec<Vec<u32>>,
    outputs: Vec<u32>,
}

fn workload(vocab: usize, n: usize, seed: u64) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let prompts = (0..n)
        .map(|_| {
            let len = rng.random_range(3..24);
            (0..len)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect();
    let outputs = (0..n).map(|_| rng.random_range(8..30)).collect();
    Workload { prompts, outputs }
}

/// Totals of one engine run.
struct Run {
    outputs: Vec<Vec<u32>>,
    drafted: u64,
    accepted: u64,
    preemptions: u32,
}

/// How requests sample and end.
struct Requests {
    params: fn(usize) -> SamplingParams,
    ignore_eos: bool,
    eos: Option<u32>,
}

const GREEDY: Requests = Requests {
    params: |_| SamplingParams::greedy(),
    ignore_eos: true,
    eos: None,
};

fn run_engine(
    target: Arc<Model>,
    draft: DraftSource,
    policy: &PolicyConfig,
    config: EngineConfig,
    w: &Workload,
    r: &Requests,
) -> Run {
    let cost = Arc::new(FixedCost {
        draft_base: 1_000_000,
        draft_per_seq: 100_000,
        target_base: 10_000_000,
        target_per_token: 500_000,
    });
    let mut engine = Engine::new(config, policy.build(), cost).unwrap();
    let mut backend = LiveBackend::new(target, draft).unwrap();
    backend.set_eos(r.eos);
    for (i, (prompt, &out)) in w.prompts.iter().zip(&w.outputs).enumerate() {
        backend
            .register(i as u64, prompt.clone(), (r.params)(i), r.ignore_eos)
            .unwrap();
        let spec = RequestSpec {
            id: i as u64,
            arrival_ns: 0,
            prompt_tokens: prompt.len() as u32,
            output_tokens: out,
            category: None,
            prefix: None,
        };
        engine.add_request(spec).unwrap();
    }
    let mut now = 0;
    let mut finished = HashMap::new();
    let mut guard = 0;
    while engine.has_work() {
        let report = engine
            .step(now, &mut backend)
            .unwrap()
            .expect("work remains");
        now = report.end_ns;
        for f in engine.drain_finished() {
            finished.insert(f.spec.id, f);
        }
        guard += 1;
        assert!(guard < 10_000, "engine does not finish");
    }
    let outputs: Vec<Vec<u32>> = (0..w.prompts.len() as u64)
        .map(|i| backend.remove(i).unwrap())
        .collect();
    for (i, o) in outputs.iter().enumerate() {
        assert_eq!(
            finished[&(i as u64)].output_tokens as usize,
            o.len(),
            "request {i}: engine and backend disagree on length"
        );
    }
    assert_eq!(
        backend.kv_allocated_bytes(),
        0,
        "KV caches outlive their sequences"
    );
    Run {
        outputs,
        drafted: finished.values().map(|f| f.drafted).sum(),
        accepted: finished.values().map(|f| f.accepted).sum(),
        preemptions: finished.values().map(|f| f.preemptions).sum(),
    }
}

fn policies() -> Vec<PolicyConfig> {
    vec![
        PolicyConfig::None,
        PolicyConfig::Static { k: 4 },
        PolicyConfig::BatchTable {
            table: vec![[2, 5], [4, 3], [8, 1]],
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
            k_max: 6,
            elimination: true,
            slo_aware: true,
            alpha0: None,
        },
    ]
}

fn engine_config(kv_blocks: u32, max_num_seqs: u32, chunked_prefill: bool) -> EngineConfig {
    EngineConfig {
        block_size: 16,
        kv_blocks: Some(kv_blocks),
        max_num_seqs,
        max_batched_tokens: 64,
        chunked_prefill,
        ..EngineConfig::default()
    }
}

/// Every policy, a draft model, both architectures: output identical to target-only greedy decoding.
#[test]
fn greedy_speculative_output_equals_target_only_for_every_policy() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let (spec, target, draft) = tiny_pair(arch, false);
        let w = workload(spec.vocab, 5, 5);
        let want = greedy_references(&target, &w, None);
        for policy in policies() {
            let source = DraftSource::Model(ModelDrafter::new(draft.clone()));
            let run = run_engine(
                target.clone(),
                source,
                &policy,
                engine_config(64, 4, false),
                &w,
                &GREEDY,
            );
            for (i, (got, want)) in run.outputs.iter().zip(&want).enumerate() {
                assert_eq!(
                    got, want,
                    "{arch:?} {policy:?}: request {i} differs from target-only greedy output"
                );
            }
            if policy != PolicyConfig::None {
                assert!(run.drafted > 0, "{arch:?} {policy:?}: nothing was drafted");
            }
            if matches!(policy, PolicyConfig::Static { .. }) {
                // The perturbed draft must produce both outcomes, or the test proves little.
                assert!(
                    run.accepted > 0 && run.accepted < run.drafted,
                    "{arch:?}: accepted {} of {}",
                    run.accepted,
                    run.drafted
                );
                eprintln!(
                    "{arch:?} static: accepted {} of {} drafts",
                    run.accepted, run.drafted
                );
            }
        }
    }
}

/// A draft loaded as `serve` loads drafts (Q8_0 re-packed to Q6_K, input dimension zero-padded to 256)
/// still drafts usefully, and the output stays exactly the target's.
#[test]
fn repacked_draft_keeps_greedy_output_exact() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let (spec, target, draft) = tiny_pair(arch, true);
        let w = workload(spec.vocab, 4, 9);
        let want = greedy_references(&target, &w, None);
        let source = DraftSource::Model(ModelDrafter::new(draft));
        let policy = PolicyConfig::Static { k: 3 };
        let run = run_engine(
            target,
            source,
            &policy,
            engine_config(64, 4, false),
            &w,
            &GREEDY,
        );
        assert_eq!(
            run.outputs, want,
            "{arch:?}: output differs from target-only"
        );
        assert!(
            run.accepted > 0,
            "{arch:?}: the re-packed draft had nothing accepted ({} drafted)",
            run.drafted
        );
    }
}

/// Chunked prefill (prefill chunks in the verification forward) and preemption under a small KV budget
/// (recompute from the token history) keep the output exact.
#[test]
fn chunked_prefill_and_preemption_keep_output_exact() {
    let spec = TinySpec::new(TinyArch::Qwen2, 8);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    let draft = Arc::new(spec.perturbed(3, 0.5).build(&Device::Cpu).unwrap());
    let w = workload(spec.vocab, 6, 17);
    let want = greedy_references(&target, &w, None);
    let mut preemptions = 0;
    for (blocks, chunked) in [(64, true), (6, false), (6, true)] {
        for policy in [
            PolicyConfig::Static { k: 3 },
            PolicyConfig::Specserve {
                k_max: 6,
                elimination: true,
                slo_aware: true,
                alpha0: None,
            },
        ] {
            let source = DraftSource::Model(ModelDrafter::new(draft.clone()));
            let run = run_engine(
                target.clone(),
                source,
                &policy,
                engine_config(blocks, 8, chunked),
                &w,
                &GREEDY,
            );
            assert_eq!(
                run.outputs, want,
                "{policy:?} kv_blocks={blocks} chunked={chunked}"
            );
            preemptions += run.preemptions;
        }
    }
    assert!(
        preemptions > 0,
        "the small KV budget should force preemptions"
    );
}

/// N-gram lookup as the drafter: same exactness.
#[test]
fn ngram_drafter_output_equals_target_only() {
    let spec = TinySpec::new(TinyArch::Llama, 4);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    // Repetitive prompts, so that lookup finds matches.
    let mut w = workload(spec.vocab, 4, 9);
    for p in w.prompts.iter_mut() {
        let copy = p.clone();
        p.extend_from_slice(&copy);
    }
    let want = greedy_references(&target, &w, None);
    for policy in [
        PolicyConfig::Static { k: 3 },
        PolicyConfig::Threshold {
            confidence: 0.5,
            k_max: 4,
        },
    ] {
        let run = run_engine(
            target.clone(),
            DraftSource::Ngram(NgramDrafter::default()),
            &policy,
            engine_config(64, 4, false),
            &w,
            &GREEDY,
        );
        assert_eq!(run.outputs, want, "{policy:?}");
    }
}

/// An end-of-sequence token ends a request early unless it ignores EOS.
#[test]
fn eos_stops_unless_ignored() {
    let spec = TinySpec::new(TinyArch::Qwen2, 21);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    let draft = Arc::new(spec.perturbed(77, 0.5).build(&Device::Cpu).unwrap());
    let w = workload(spec.vocab, 4, 5);
    // Take as EOS a token that the first request emits in the middle of its output.
    let full = greedy_reference(&target, &w.prompts[0], w.outputs[0] as usize, None);
    let eos = full[full.len() / 2];
    let want = greedy_references(&target, &w, Some(eos));
    assert!(want[0].len() < full.len());
    for ignore_eos in [false, true] {
        let source = DraftSource::Model(ModelDrafter::new(draft.clone()));
        let r = Requests {
            params: |_| SamplingParams::greedy(),
            ignore_eos,
            eos: Some(eos),
        };
        let run = run_engine(
            target.clone(),
            source,
            &PolicyConfig::Static { k: 4 },
            engine_config(64, 4, false),
            &w,
            &r,
        );
        if ignore_eos {
            assert_eq!(run.outputs[0], full);
        } else {
            assert_eq!(run.outputs, want);
        }
    }
}

/// Sampling requests run through rejection sampling and produce the requested lengths; the same seed
/// gives the same output.
#[test]
fn sampled_requests_are_seeded_and_complete() {
    let spec = TinySpec::new(TinyArch::Qwen2, 2);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    let draft = Arc::new(spec.perturbed(5, 0.5).build(&Device::Cpu).unwrap());
    let w = workload(spec.vocab, 3, 1);
    let r = Requests {
        params: |i| SamplingParams {
            temperature: 0.8,
            top_k: Some(20),
            top_p: 0.95,
            seed: i as u64,
        },
        ignore_eos: true,
        eos: None,
    };
    let run = || {
        let source = DraftSource::Model(ModelDrafter::new(draft.clone()));
        run_engine(
            target.clone(),
            source,
            &PolicyConfig::Static { k: 3 },
            engine_config(64, 4, false),
            &w,
            &r,
        )
        .outputs
    };
    let a = run();
    for (o, &n) in a.iter().zip(&w.outputs) {
        assert_eq!(o.len(), n as usize);
    }
    assert_eq!(a, run());
}

#[test]
fn bad_registrations_are_errors() {
    let spec = TinySpec::new(TinyArch::Llama, 1);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    let mut b = LiveBackend::new(target.clone(), DraftSource::None).unwrap();
    assert!(b
        .register(1, vec![], SamplingParams::greedy(), false)
        .is_err());
    assert!(b
        .register(1, vec![spec.vocab as u32], SamplingParams::greedy(), false)
        .is_err());
    b.register(1, vec![1, 2], SamplingParams::greedy(), false)
        .unwrap();
    assert!(b
        .register(1, vec![1, 2], SamplingParams::greedy(), false)
        .is_err());
    let other = Arc::new(
        TinySpec {
            vocab: 64,
            ..spec.clone()
        }
        .build(&Device::Cpu)
        .unwrap(),
    );
    assert!(LiveBackend::new(target, DraftSource::Model(ModelDrafter::new(other))).is_err());
}

/// Cancelling a running request ends it at its next step: the engine retires it and frees its KV, the
/// others finish normally.
#[test]
fn cancel_ends_a_request_and_frees_its_kv() {
    let spec = TinySpec::new(TinyArch::Qwen2, 21);
    let target = Arc::new(spec.build(&Device::Cpu).unwrap());
    let draft = Arc::new(spec.perturbed(77, 0.15).build(&Device::Cpu).unwrap());
    let cost = Arc::new(FixedCost {
        draft_base: 1,
        draft_per_seq: 1,
        target_base: 10,
        target_per_token: 1,
    });
    let mut engine = Engine::new(
        engine_config(64, 4, false),
        PolicyConfig::Static { k: 3 }.build(),
        cost,
    )
    .unwrap();
    let mut backend =
        LiveBackend::new(target, DraftSource::Model(ModelDrafter::new(draft))).unwrap();
    for id in 0..2u64 {
        backend
            .register(id, vec![1, 2, 3, 4], SamplingParams::greedy(), true)
            .unwrap();
        engine
            .add_request(RequestSpec {
                id,
                arrival_ns: 0,
                prompt_tokens: 4,
                output_tokens: 60,
                category: None,
                prefix: None,
            })
            .unwrap();
    }
    let mut now = 0;
    for _ in 0..3 {
        now = engine.step(now, &mut backend).unwrap().unwrap().end_ns;
    }
    let before = backend.output(0).unwrap().len();
    backend.cancel(0);
    now = engine.step(now, &mut backend).unwrap().unwrap().end_ns;
    let finished = engine.drain_finished();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].spec.id, 0);
    assert!((finished[0].output_tokens as usize) < 60);
    assert!(
        backend.output(0).unwrap().len() > before,
        "the cancelling step still emits its tokens"
    );
    assert!(backend.remove(0).is_some());
    while engine.has_work() {
        now = engine.step(now, &mut backend).unwrap().unwrap().end_ns;
    }
    assert_eq!(backend.remove(1).unwrap().len(), 60);
    assert_eq!(engine.kv_used(), 0);
    assert_eq!(backend.kv_allocated_bytes(), 0);
}

#[test]
fn warm_up_leaves_no_trace_in_later_output() {
    for arch in [TinyArch::Qwen2, TinyArch::Llama] {
        let (_, target, draft) = tiny_pair(arch, true);
        let prompt = [3u32, 14, 15, 9, 2, 6];
        let before = greedy_reference(&target, &prompt, 8, None);
        for m in [&target, &draft] {
            m.warm_up().unwrap();
        }
        assert_eq!(
            greedy_reference(&target, &prompt, 8, None),
            before,
            "{arch:?}"
        );
    }
}
