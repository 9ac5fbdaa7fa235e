//! Mooncake's `hash_ids` reach the engine as prompt prefixes (loaded or streamed, after clipping), and
//! the engine's prefix-cache hits on a slice of the real trace match an independent count. Skipped,
//! with a message, when the shared traces folder is absent.

mod common;

use common::shared_traces;
use specsim_core::acceptance::ConstantAcceptance;
use specsim_core::cost::FixedCost;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_core::rng::stream;
use specsim_core::workload::RequestSpec;
use specsim_sim::simulated::SimBackend;
use specsim_sim::trace_config::TraceConfig;
use specsim_traces::load_workload;
use specsim_traces::stream::open_stream;
use std::collections::HashSet;
use std::sync::Arc;

const BLOCK: u32 = 16;
const MOONCAKE_BLOCK: u32 = 512;

fn slice(limit: usize, max_prompt: Option<u32>) -> Option<TraceConfig> {
    let dir = shared_traces()?;
    Some(TraceConfig {
        path: Some(dir.join("conversation_trace.jsonl")),
        limit: Some(limit),
        max_prompt,
        ..Default::default()
    })
}

#[test]
fn loaded_and_streamed_mooncake_requests_carry_the_same_whole_block_prefixes() {
    // Prompts clipped to 3000 tokens keep 5 whole blocks of 512 (the 6th would end at 3072).
    let Some(cfg) = slice(800, Some(3000)) else {
        return;
    };
    let dir = cfg.path.as_ref().unwrap().parent().unwrap().to_path_buf();
    let loaded = load_workload(&cfg, &dir, 0).unwrap();
    let table = loaded.prefix.as_ref().expect("mooncake keeps hash_ids");
    let mut clipped = 0;
    for (i, r) in loaded.workload.requests.iter().enumerate() {
        let p = r
            .prefix
            .as_deref()
            .expect("every mooncake request has prefix identity");
        assert_eq!(p.block_tokens, MOONCAKE_BLOCK);
        let whole = (r.prompt_tokens / MOONCAKE_BLOCK) as usize;
        // hash_ids list ceil(input / 512) blocks, the partial last one included; only whole ones that
        // still fit the (clipped) prompt remain.
        assert_eq!(p.ids.len(), whole.min(table.blocks(i).len()), "request {i}");
        assert_eq!(&p.ids[..], &table.blocks(i)[..p.ids.len()], "request {i}");
        clipped += usize::from(r.prompt_tokens == 3000);
    }
    assert!(clipped > 0, "the slice has prompts longer than 3000 tokens");
    let streamed: Vec<RequestSpec> = open_stream(&cfg, &dir, 0)
        .unwrap()
        .requests
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, loaded.workload.requests);
}

/// Independent reference: with KV that never runs out, a request finds cached every leading 512-token
/// block whose whole chain of ids (ids 0..=i) an earlier request had, in 16-token engine blocks and short
/// of its last prompt token.
fn expected_cached(requests: &[RequestSpec], ids: impl Fn(usize) -> Vec<u64>) -> Vec<u32> {
    let mut seen: HashSet<Vec<u64>> = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let ids = ids(i);
        let whole = ids.len().min((r.prompt_tokens / MOONCAKE_BLOCK) as usize);
        let matched = (1..=whole)
            .take_while(|&n| seen.contains(&ids[..n]))
            .count() as u32;
        let limit = (r.prompt_tokens - 1) / BLOCK * BLOCK;
        out.push((matched * MOONCAKE_BLOCK).min(limit));
        for n in 1..=whole {
            seen.insert(ids[..n].to_vec());
        }
    }
    out
}

#[test]
fn mooncake_slice_hit_rate_matches_an_independent_count() {
    let Some(cfg) = slice(1500, None) else {
        return;
    };
    let dir = cfg.path.as_ref().unwrap().parent().unwrap().to_path_buf();
    let loaded = load_workload(&cfg, &dir, 0).unwrap();
    let w = &loaded.workload.requests;
    let table = loaded.prefix.as_ref().unwrap();
    let want = expected_cached(w, |i| table.blocks(i).to_vec());
    // Room for every block the slice ever allocates, so nothing is evicted or preempted.
    let blocks: u64 = w
        .iter()
        .map(|r| (r.prompt_tokens + r.output_tokens).div_ceil(BLOCK) as u64 + 1)
        .sum();
    let cfg = EngineConfig {
        block_size: BLOCK,
        kv_blocks: Some(blocks as u32),
        prefix_caching: true,
        ..EngineConfig::default()
    };
    let cost = Arc::new(FixedCost {
        draft_base: 1_000_000,
        draft_per_seq: 10_000,
        target_base: 8_000_000,
        target_per_token: 2_000,
    });
    let mut engine = Engine::new(cfg, PolicyConfig::None.build(), cost.clone()).unwrap();
    let mut backend = SimBackend::new(
        cost,
        Arc::new(ConstantAcceptance { alpha: 0.7 }),
        stream(0, "acceptance", 0),
        false,
    );
    let (mut now, mut next) = (0, 0);
    let mut got = vec![None; w.len()];
    while next < w.len() || engine.has_work() {
        while next < w.len() && w[next].arrival_ns <= now {
            engine.add_request(w[next].clone()).unwrap();
            next += 1;
        }
        match engine.step(now, &mut backend).unwrap() {
            Some(rep) => {
                assert_eq!(rep.preempted, 0);
                now = rep.end_ns;
            }
            None => now = w[next].arrival_ns,
        }
        for f in engine.drain_finished() {
            got[f.spec.id as usize] = f.cached_tokens;
        }
    }
    let got: Vec<u32> = got.into_iter().map(|c| c.expect("cached_tokens")).collect();
    let mismatch = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(mismatch, None, "first differing request");
    let prompts: u64 = w.iter().map(|r| r.prompt_tokens as u64).sum();
    let hits: u64 = want.iter().map(|&c| c as u64).sum();
    let rate = hits as f64 / prompts as f64;
    eprintln!(
        "mooncake conversation, first {} requests, unlimited KV, one replica: token hit rate {rate:.4}",
        w.len()
    );
    assert!(rate > 0.0, "conversations reuse their history");
}
