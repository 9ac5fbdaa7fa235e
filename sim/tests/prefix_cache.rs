//! Automatic prefix caching in the engine core, against hand-worked cases: shared blocks are computed
//! once, the least recently used free cached block is evicted first, blocks in use never are, the KV
//! accounting holds after every step, and a workload without shared prefixes runs exactly as with
//! caching off.

mod common;
use common::scenario;
use specsim_core::acceptance::ConstantAcceptance;
use specsim_core::cost::FixedCost;
use specsim_core::engine::{
    Backend, DraftItem, DraftResult, Engine, EngineConfig, FinishedRequest, SeqId, TargetItem,
    TargetOutcome, TargetResult, TargetWork,
};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_core::time::Nanos;
use specsim_core::workload::{PromptPrefix, RequestSpec, Workload};
use specsim_core::CoreError;
use specsim_sim::scenario::Scenario;
use specsim_sim::simulated::SimBackend;
use specsim_sim::synth::generate;
use specsim_sim::trace_config::{ArrivalConfig, LengthConfig, SyntheticConfig};
use std::sync::Arc;

const MS: Nanos = 1_000_000;
const US: Nanos = 1_000;

/// Policies price steps with this; the recording backend has its own clock.
const COST: FixedCost = FixedCost {
    draft_base: MS,
    draft_per_seq: 10 * US,
    target_base: 8 * MS,
    target_per_token: 20 * US,
};

/// A backend without speculation whose target forward takes 8 ms + 20 µs per token, recording every
/// prefill chunk (sequence, start, length) and every prefix hit it was told of.
#[derive(Default)]
struct Recorder {
    prefills: Vec<(SeqId, u32, u32)>,
    hits: Vec<(SeqId, u32)>,
}

impl Recorder {
    fn step_ns(tokens: u32) -> Nanos {
        8 * MS + 20 * US * tokens as Nanos
    }

    fn prefill_tokens(&self) -> u32 {
        self.prefills.iter().map(|p| p.2).sum()
    }
}

impl Backend for Recorder {
    fn draft(&mut self, items: &[DraftItem]) -> Result<DraftResult, CoreError> {
        Ok(DraftResult {
            confidences: vec![0.5; items.len()],
            elapsed_ns: 0,
        })
    }

    fn target(&mut self, items: &[TargetItem]) -> Result<TargetResult, CoreError> {
        let mut tokens = 0;
        let outcomes = items
            .iter()
            .map(|it| match it.work {
                TargetWork::Prefill { start, len, last } => {
                    self.prefills.push((it.seq, start, len));
                    tokens += len;
                    TargetOutcome {
                        accepted: 0,
                        emitted: last as u32,
                        stop: false,
                    }
                }
                TargetWork::Verify { drafted } => {
                    tokens += drafted + 1;
                    TargetOutcome {
                        accepted: 0,
                        emitted: 1,
                        stop: false,
                    }
                }
            })
            .collect();
        Ok(TargetResult {
            outcomes,
            elapsed_ns: Self::step_ns(tokens),
        })
    }

    fn release(&mut self, _seq: SeqId) {}

    fn reuse_prefix(&mut self, seq: SeqId, tokens: u32) -> Result<(), CoreError> {
        self.hits.push((seq, tokens));
        Ok(())
    }
}

/// A request arriving at `at_ms` whose first blocks of `block` tokens are named `ids`.
fn req(id: u64, at_ms: u64, prompt: u32, output: u32, ids: &[u64], block: u32) -> RequestSpec {
    RequestSpec {
        id,
        arrival_ns: at_ms * MS,
        prompt_tokens: prompt,
        output_tokens: output,
        category: None,
        prefix: (!ids.is_empty()).then(|| {
            Box::new(PromptPrefix {
                block_tokens: block,
                ids: ids.into(),
            })
        }),
    }
}

fn config(kv_blocks: u32, caching: bool) -> EngineConfig {
    EngineConfig {
        block_size: 16,
        kv_blocks: Some(kv_blocks),
        max_num_seqs: 64,
        max_batched_tokens: 4096,
        prefix_caching: caching,
        ..EngineConfig::default()
    }
}

/// Runs `requests` (sorted by arrival) to completion on one engine, checking the KV accounting after
/// every step; returns the finished requests by id.
fn drive<B: Backend>(
    requests: &[RequestSpec],
    cfg: EngineConfig,
    policy: PolicyConfig,
    backend: &mut B,
) -> Vec<FinishedRequest> {
    let mut engine = Engine::new(cfg, policy.build(), Arc::new(COST)).unwrap();
    let (mut now, mut next) = (0, 0);
    let mut done: Vec<Option<FinishedRequest>> = vec![None; requests.len()];
    while next < requests.len() || engine.has_work() {
        while next < requests.len() && requests[next].arrival_ns <= now {
            engine.add_request(requests[next].clone()).unwrap();
            next += 1;
        }
        match engine.step(now, backend).unwrap() {
            Some(rep) => {
                engine
                    .check_kv_invariant()
                    .unwrap_or_else(|e| panic!("after the step at {now}: {e}"));
                assert!(rep.kv_used + engine.kv_cached_free() <= engine.kv_total());
                now = rep.end_ns;
            }
            None => now = requests[next].arrival_ns,
        }
        for f in engine.drain_finished() {
            let id = f.spec.id as usize;
            assert!(done[id].is_none(), "request {id} finished twice");
            done[id] = Some(f);
        }
    }
    done.into_iter()
        .map(|f| f.expect("every request finishes"))
        .collect()
}

#[test]
fn two_requests_sharing_a_three_block_prefix_compute_it_once() {
    // Two 60-token prompts whose first three 16-token blocks are the same, arriving together: the
    // first computes all 60 tokens; the second finds the three blocks (48 tokens), cached as the first
    // was scheduled, and computes its last 12. One prefill forward of 72 tokens instead of 120.
    let both = [
        req(0, 0, 60, 1, &[1, 2, 3], 16),
        req(1, 0, 60, 1, &[1, 2, 3], 16),
    ];
    let mut on = Recorder::default();
    let done = drive(&both, config(64, true), PolicyConfig::None, &mut on);
    assert_eq!(on.prefills, vec![(0, 0, 60), (1, 48, 12)]);
    assert_eq!(on.hits, vec![(1, 48)]);
    assert_eq!(done[0].cached_tokens, Some(0));
    assert_eq!(done[1].cached_tokens, Some(48));
    assert_eq!(done[1].first_token_ns, Recorder::step_ns(72));
    let mut off = Recorder::default();
    let done_off = drive(&both, config(64, false), PolicyConfig::None, &mut off);
    assert_eq!(off.prefill_tokens(), 120);
    assert!(off.hits.is_empty());
    assert_eq!(done_off[1].first_token_ns, Recorder::step_ns(120));
    assert_eq!(done_off[1].cached_tokens, None);

    // Arriving one after another: the first request's blocks outlive it, cached and free. A prompt that
    // is all cached still computes its last block (vLLM always computes the last prompt token).
    let apart = [
        req(0, 0, 60, 1, &[1, 2, 3], 16),
        req(1, 1000, 60, 1, &[1, 2, 3], 16),
        req(2, 2000, 48, 1, &[1, 2, 3], 16),
    ];
    let mut rec = Recorder::default();
    let done = drive(&apart, config(64, true), PolicyConfig::None, &mut rec);
    assert_eq!(rec.prefills, vec![(0, 0, 60), (1, 48, 12), (2, 32, 16)]);
    assert_eq!(
        done[1].first_token_ns - done[1].spec.arrival_ns,
        Recorder::step_ns(12)
    );
    assert_eq!(
        done.iter().map(|f| f.cached_tokens).collect::<Vec<_>>(),
        vec![Some(0), Some(48), Some(32)]
    );
}

/// Cached tokens of R5 (prefix [1, 2]) and R6 (prefix [3, 4]) after R1 ([1, 2]), R2 ([3, 4]),
/// optionally R3 touching [1, 2] again, and R4 — a 80-token prompt without prefix — which needs six
/// of the eight blocks and so evicts two of the four cached ones. One request at a time.
fn lru_case(touch: bool) -> (Option<u32>, Option<u32>) {
    let mut w = vec![
        req(0, 0, 32, 1, &[1, 2], 16),
        req(0, 1000, 32, 1, &[3, 4], 16),
    ];
    if touch {
        w.push(req(0, 2000, 33, 1, &[1, 2], 16));
    }
    w.push(req(0, 3000, 80, 1, &[], 16));
    w.push(req(0, 4000, 33, 1, &[1, 2], 16));
    w.push(req(0, 5000, 33, 1, &[3, 4], 16));
    for (i, r) in w.iter_mut().enumerate() {
        r.id = i as u64;
    }
    let done = drive(
        &w,
        config(8, true),
        PolicyConfig::None,
        &mut Recorder::default(),
    );
    let n = done.len();
    (done[n - 2].cached_tokens, done[n - 1].cached_tokens)
}

#[test]
fn lru_evicts_the_least_recently_used_free_cached_block_first() {
    // Without the touch, [1, 2] is the least recently used pair: R4 evicts it, R5 misses, R6 hits.
    assert_eq!(lru_case(false), (Some(0), Some(32)));
    // R3 used [1, 2] after R2 used [3, 4]: now [3, 4] is evicted, R5 hits and R6 misses.
    assert_eq!(lru_case(true), (Some(32), Some(0)));
}

#[test]
fn blocks_in_use_are_never_evicted() {
    // Eight blocks. R0 (prefix [1, 2]) decodes 40 tokens, holding 3 blocks and growing to 5. R1 shares
    // R0's two cached blocks while R0 runs (32 tokens cached, one new block). R2 (96 tokens, no prefix)
    // needs 7 blocks: it waits for both to finish rather than evict blocks they hold.
    let w = [
        req(0, 0, 32, 40, &[1, 2], 16),
        req(1, 20, 40, 1, &[1, 2], 16),
        req(2, 30, 96, 1, &[], 16),
    ];
    let mut rec = Recorder::default();
    let done = drive(&w, config(8, true), PolicyConfig::None, &mut rec);
    assert_eq!(done[1].cached_tokens, Some(32));
    assert!(
        done[1].first_token_ns < done[0].finish_ns,
        "R1 ran beside R0"
    );
    let freed = done[0].finish_ns.max(done[1].finish_ns);
    assert_eq!(
        done[2].first_token_ns,
        freed + Recorder::step_ns(96),
        "R2 is admitted once R0 and R1 have let go"
    );
    assert_eq!(rec.prefill_tokens(), 32 + 8 + 96);
}

/// A seeded workload where half the requests open with one of three shared system prompts (2 to 6
/// blocks of 32 tokens), so hits, evictions and preemptions all happen in a small KV cache.
fn shared_prefix_workload(seed: u64) -> Vec<RequestSpec> {
    let w = generate(
        &SyntheticConfig {
            requests: 400,
            rate: 40.0,
            arrival: ArrivalConfig::Poisson,
            prompt: LengthConfig::Uniform { min: 1, max: 300 },
            output: LengthConfig::Uniform { min: 1, max: 120 },
        },
        seed,
    )
    .unwrap();
    let systems: [&[u64]; 3] = [&[1, 2], &[1, 2, 3, 4], &[9, 8, 7, 6, 5, 4]];
    let mut out = w.requests;
    for r in &mut out {
        let sys = systems[(r.id % 6) as usize % 3];
        if r.id % 2 == 0 && r.prompt_tokens >= 32 {
            let whole = (r.prompt_tokens / 32) as usize;
            let mut ids: Vec<u64> = sys.to_vec();
            // The rest of the prompt is the request's own.
            ids.extend(
                (0..whole.saturating_sub(sys.len())).map(|i| 1_000_000 + r.id * 100 + i as u64),
            );
            ids.truncate(whole);
            r.prefix = Some(Box::new(PromptPrefix {
                block_tokens: 32,
                ids: ids.into(),
            }));
        }
    }
    out
}

#[test]
fn kv_accounting_holds_after_every_step_under_hits_evictions_and_preemption() {
    for chunked in [false, true] {
        let w = shared_prefix_workload(5);
        let cfg = EngineConfig {
            block_size: 16,
            kv_blocks: Some(60),
            max_num_seqs: 32,
            max_batched_tokens: 512,
            chunked_prefill: chunked,
            prefix_caching: true,
            ..EngineConfig::default()
        };
        let mut backend = SimBackend::new(
            Arc::new(COST),
            Arc::new(ConstantAcceptance { alpha: 0.7 }),
            stream(1, "acceptance", 0),
            true,
        );
        let mut engine =
            Engine::new(cfg, PolicyConfig::Static { k: 3 }.build(), Arc::new(COST)).unwrap();
        let (mut now, mut next, mut preempted) = (0, 0, 0);
        let mut finished = vec![0u32; w.len()];
        let mut cached_free_seen = 0;
        let mut hits = 0u64;
        while next < w.len() || engine.has_work() {
            while next < w.len() && w[next].arrival_ns <= now {
                engine.add_request(w[next].clone()).unwrap();
                next += 1;
            }
            match engine.step(now, &mut backend).unwrap() {
                Some(rep) => {
                    // held + cached free + free = total, and every cached block's references.
                    engine.check_kv_invariant().unwrap();
                    preempted += rep.preempted;
                    cached_free_seen = cached_free_seen.max(engine.kv_cached_free());
                    now = rep.end_ns;
                }
                None => now = w[next].arrival_ns,
            }
            for f in engine.drain_finished() {
                finished[f.spec.id as usize] += 1;
                assert_eq!(f.output_tokens, f.spec.output_tokens);
                hits += f.cached_tokens.unwrap_or(0) as u64;
                assert_eq!(f.cached_tokens.is_some(), f.spec.prefix.is_some());
            }
        }
        assert!(finished.iter().all(|&n| n == 1), "chunked {chunked}");
        assert!(
            preempted > 0,
            "chunked {chunked}: the cache is small enough to preempt"
        );
        assert!(hits > 0, "chunked {chunked}: shared system prompts hit");
        assert!(cached_free_seen > 0, "chunked {chunked}");
    }
}

const NO_PREFIX_SCENARIO: &str = r#"
    seed = 11
    [trace.synthetic]
    requests = 300
    rate = 30.0
    prompt = { kind = "uniform", min = 1, max = 400 }
    output = { kind = "uniform", min = 1, max = 150 }
    [engine]
    kv_blocks = 90
    max_num_seqs = 32
    max_batched_tokens = 1024
    [cost]
    kind = "fixed"
    target_ms = 8.0
    target_per_token_ms = 0.02
    draft_ms = 1.0
    [acceptance]
    kind = "constant"
    alpha = 0.7
    [[policies]]
    kind = "static"
    k = 3
"#;

fn run_with(sc: &Scenario, w: &Workload) -> specsim_sim::scenario::PolicyRun {
    sc.run_policy(w, &sc.file.policies[0], true, None).unwrap()
}

#[test]
fn a_workload_without_shared_prefixes_runs_exactly_as_with_caching_off() {
    for chunked in [false, true] {
        let text = NO_PREFIX_SCENARIO.replace(
            "[engine]\n",
            &format!("[engine]\nchunked_prefill = {chunked}\n"),
        );
        let on = scenario(&text.replace("[engine]\n", "[engine]\nprefix_caching = true\n"));
        let off = scenario(&text.replace("[engine]\n", "[engine]\nprefix_caching = false\n"));
        assert_ne!(on.file.engine, off.file.engine);
        let w = on.builtin_workload().unwrap();
        // No prefix identity at all: identical requests, steps and summary.
        let (a, b) = (run_with(&on, &w), run_with(&off, &w));
        assert!(a.summary.preemptions > 0, "chunked {chunked}: KV is tight");
        assert_eq!(a.records, b.records, "chunked {chunked}");
        assert_eq!(a.steps, b.steps, "chunked {chunked}");
        assert_eq!(a.summary, b.summary, "chunked {chunked}");
        assert_eq!(a.summary.prefix_cache, None);
        // Prefix identity, but every prompt's blocks its own: nothing is shared, so the timeline is the
        // same; the summary reports a hit rate of 0 over every prompt token. (With room enough that
        // nothing is preempted: a recomputed sequence would find its own blocks still cached.)
        let roomy = |caching: bool| {
            scenario(
                &text
                    .replace(
                        "[engine]\n",
                        &format!("[engine]\nprefix_caching = {caching}\n"),
                    )
                    .replace("kv_blocks = 90", "kv_blocks = 2000"),
            )
        };
        let (on, off) = (roomy(true), roomy(false));
        let a = run_with(&off, &w);
        assert_eq!(a.summary.preemptions, 0);
        let mut unique = w.clone();
        for r in &mut unique.requests {
            let n = (r.prompt_tokens / 16) as u64;
            r.prefix = Some(Box::new(PromptPrefix {
                block_tokens: 16,
                ids: (0..n).map(|i| r.id << 20 | i).collect(),
            }));
        }
        let c = run_with(&on, &unique);
        assert_eq!(c.steps, a.steps, "chunked {chunked}");
        for (x, y) in c.records.iter().zip(&a.records) {
            assert_eq!(x.cached_tokens, Some(0));
            assert_eq!(
                RequestRecordTiming::of(x),
                RequestRecordTiming::of(y),
                "chunked {chunked}"
            );
        }
        let pc = c
            .summary
            .prefix_cache
            .expect("prefix identity gives a hit rate");
        let prompts: u64 = w.requests.iter().map(|r| r.prompt_tokens as u64).sum();
        assert_eq!(
            (pc.prompt_tokens, pc.cached_tokens, pc.hit_rate),
            (prompts, 0, 0.0)
        );
    }
}

/// The fields of a request row that timing decides.
#[derive(Debug, PartialEq)]
struct RequestRecordTiming(u64, f64, f64, u64, u64, u32);

impl RequestRecordTiming {
    fn of(r: &specsim_sim::metrics::RequestRecord) -> Self {
        RequestRecordTiming(
            r.id,
            r.first_token_s,
            r.finish_s,
            r.drafted,
            r.accepted,
            r.steps,
        )
    }
}

#[test]
fn summary_hit_rate_counts_cached_prompt_tokens_over_prompt_tokens() {
    // Four 100-token prompts one second apart, with named blocks of 32 tokens: [5, 6, 7], [5, 6, 7],
    // [5, 6, 8], [9, 6, 7]. Hits: 0, 96 (three blocks, short of the last token), 64 (the chain breaks
    // at the third block), 0 (the chain breaks at the first). 160 of 400 prompt tokens: 0.4.
    let sc = scenario(
        &NO_PREFIX_SCENARIO
            .replace("kv_blocks = 90", "kv_blocks = 400")
            .replace("[engine]\n", "[engine]\nprefix_caching = true\n"),
    );
    let mut w = Workload::default();
    for (i, ids) in [[5, 6, 7], [5, 6, 7], [5, 6, 8], [9, 6, 7]]
        .iter()
        .enumerate()
    {
        w.requests
            .push(req(i as u64, i as u64 * 1000, 100, 3, ids, 32));
    }
    let run = run_with(&sc, &w);
    let cached: Vec<_> = run.records.iter().map(|r| r.cached_tokens).collect();
    assert_eq!(cached, vec![Some(0), Some(96), Some(64), Some(0)]);
    let pc = run.summary.prefix_cache.unwrap();
    assert_eq!((pc.prompt_tokens, pc.cached_tokens), (400, 160));
    assert!((pc.hit_rate - 0.4).abs() < 1e-12);
}
