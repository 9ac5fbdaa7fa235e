//! Speculative decoding on the real Qwen2.5-Coder pair: tokens/s of target-only, static k=4 and
//! `specserve` at several concurrencies, on Spec-Bench coding and writing prompts, greedy; and the cost of
//! verifying k+1 tokens relative to one decode step.
//!
//! ```text
//! scripts/fetch-models.sh                      # once: models/draft.gguf, models/target.gguf
//! cargo bench -p specsim-runtime --bench speculative
//! ```
//!
//! Environment: `SPECSIM_MODELS` (model directory, default `models/`), `SPECSIM_PROMPTS` (Spec-Bench
//! JSONL, default `../shared/prompts/spec-bench.jsonl`), `SPECSIM_BENCH_TOKENS` (output tokens per
//! request, default 128), `SPECSIM_BENCH_CONCURRENCY` (comma-separated, default `1,4,16`),
//! `SPECSIM_BENCH_POLICIES` (comma-separated subset of `none,static-4,specserve`),
//! `SPECSIM_BENCH_REQUESTS` (requests per concurrency level, at least the concurrency; default 4),
//! `SPECSIM_BENCH_ROUNDS` (default 1), `RAYON_NUM_THREADS`. Each concurrency level runs the same requests
//! under every policy (prompts cycle through the coding and writing categories), at most `concurrency`
//! at a time, `rounds` times with the policies interleaved; the table gives the median tokens/s, the
//! median of the per-round ratios to `none` and their range (the spread is this machine's noise). SpecServe's prior mean
//! draft confidence ᾱ is the acceptance static-4 measured at the same level (the paper's 0.6 when
//! static-4 is not run), as `specsim serve` takes it from a calibrated profile. Without the models it
//! prints why and exits successfully.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_runtime::chat::ChatMessage;
use specsim_runtime::drafter::model::ModelDrafter;
use specsim_runtime::live::{DraftSource, LiveBackend};
use specsim_runtime::model::Model;
use specsim_runtime::offline::{
    measure_linear_cost, run_offline, time_forward, ContextTimer, OfflineRequest, OfflineRun,
};
use specsim_runtime::sampling::SamplingParams;
use specsim_runtime::tokenizer::GgufTokenizer;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("SPECSIM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    let (tp, dp) = (dir.join("target.gguf"), dir.join("draft.gguf"));
    if !tp.is_file() || !dp.is_file() {
        eprintln!(
            "speculative bench skipped: {} and {} not found (run scripts/fetch-models.sh)",
            tp.display(),
            dp.display()
        );
        return;
    }
    let prompts_path = std::env::var_os("SPECSIM_PROMPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/prompts/spec-bench.jsonl"));
    let tokens: u32 = env_or("SPECSIM_BENCH_TOKENS", "128")
        .parse()
        .expect("SPECSIM_BENCH_TOKENS");
    let levels: Vec<usize> = env_or("SPECSIM_BENCH_CONCURRENCY", "1,4,16")
        .split(',')
        .map(|s| s.trim().parse().expect("SPECSIM_BENCH_CONCURRENCY"))
        .collect();
    let min_requests: usize = env_or("SPECSIM_BENCH_REQUESTS", "4")
        .parse()
        .expect("SPECSIM_BENCH_REQUESTS");
    let rounds: usize = env_or("SPECSIM_BENCH_ROUNDS", "1")
        .parse::<usize>()
        .expect("SPECSIM_BENCH_ROUNDS")
        .max(1);
    let wanted: Vec<String> = env_or("SPECSIM_BENCH_POLICIES", "none,static-4,specserve")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();

    let device = Device::Cpu;
    let target = Arc::new(Model::load(&tp, &device, Some(4096)).expect("target"));
    let draft = Arc::new(Model::load_repacked(&dp, &device, Some(4096)).expect("draft"));
    let tok = GgufTokenizer::from_gguf_file(&tp).expect("tokenizer");

    // Spec-Bench first turns of the coding and writing categories, interleaved.
    let text = std::fs::read_to_string(&prompts_path)
        .unwrap_or_else(|e| panic!("{}: {e}", prompts_path.display()));
    let (mut coding, mut writing) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("spec-bench line");
        let turn = v["turns"][0].as_str().unwrap_or_default().to_string();
        match v["category"].as_str() {
            Some("coding") => coding.push(turn),
            Some("writing") => writing.push(turn),
            _ => {}
        }
    }
    let prompts: Vec<Vec<u32>> = coding
        .iter()
        .zip(&writing)
        .flat_map(|(c, w)| [c, w])
        .map(|p| {
            let text = tok
                .chat_template()
                .render(&[ChatMessage::user(p.as_str())], true)
                .expect("template");
            tok.encode(&text).expect("encode")
        })
        .collect();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "# speculative bench: {} prompts (coding+writing), {tokens} tokens each, threads {threads}",
        prompts.len()
    );

    // Verification cost relative to one decode step, at a context of 256 tokens. One- and (k+1)-token
    // forwards alternate and the ratio is taken per pair, so that load drifting during the run (these
    // machines are shared) affects both sides of each ratio alike; medians over the pairs.
    let reps = 5;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let h = v.len() / 2;
        if v.len().is_multiple_of(2) {
            (v[h - 1] + v[h]) / 2.0
        } else {
            v[h]
        }
    };
    let mut one_ms = Vec::new();
    let mut timer = ContextTimer::new(&target, 256).expect("prefill");
    timer.time(1).expect("warm-up");
    for k in [1usize, 2, 4, 8] {
        let mut ratios = Vec::new();
        for _ in 0..reps {
            let t1 = timer.time(1).expect("forward") as f64;
            let tk = timer.time(k + 1).expect("forward") as f64;
            ratios.push(tk / t1);
            one_ms.push(t1 / 1e6);
        }
        println!(
            "verify k={k}: {:.2} x one decode step (median of {reps} alternating pairs)",
            median(ratios)
        );
    }
    let one = median(one_ms);
    println!("target decode step: {one:.1} ms (median)");
    let d1 = time_forward(&draft, 1, 256, 1, reps).expect("forward") as f64 / 1e6;
    println!(
        "draft decode step: {d1:.1} ms ({:.2} of a target step)",
        d1 / one
    );

    let cost = Arc::new(measure_linear_cost(&target, Some(&draft), 256, reps).expect("cost"));
    println!("linear cost for policies: {cost:?}");

    let policies: Vec<(&str, PolicyConfig)> = vec![
        ("none", PolicyConfig::None),
        ("static-4", PolicyConfig::Static { k: 4 }),
        (
            "specserve",
            PolicyConfig::Specserve {
                k_max: 8,
                elimination: true,
                slo_aware: true,
                alpha0: None,
            },
        ),
    ];
    println!(
        "# each level: {min_requests} requests or the concurrency if more, {rounds} round(s) with the policies \
         interleaved; specserve's prior ᾱ = static-4's acceptance in round 1"
    );
    println!("| concurrency | policy | tokens/s | vs none | per-round range | acceptance | tokens/verify | wall s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut next_id = 0;
    let chosen: Vec<&(&str, PolicyConfig)> = policies
        .iter()
        .filter(|(n, _)| wanted.iter().any(|w| w == n))
        .collect();
    for &c in &levels {
        let reqs: Vec<OfflineRequest> = (0..c.max(min_requests))
            .map(|i| OfflineRequest {
                prompt: prompts[i % prompts.len()].clone(),
                max_tokens: tokens,
                sampling: SamplingParams::greedy(),
                ignore_eos: true,
            })
            .collect();
        let mut prior = None;
        // runs[p][r]: policy p in round r. Interleaving the policies round by round spreads the
        // machine's drift over all of them, and the per-round ratio to `none` cancels most of it.
        let mut runs: Vec<Vec<OfflineRun>> = chosen.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (p, (name, policy)) in chosen.iter().enumerate() {
                let config = EngineConfig {
                    kv_blocks: Some(4096),
                    max_num_seqs: c as u32,
                    max_batched_tokens: 8192,
                    ..EngineConfig::default()
                };
                let policy = policy.with_prior_confidence(prior);
                let mut engine = Engine::new(config, policy.build(), cost.clone()).expect("engine");
                let source = DraftSource::Model(ModelDrafter::new(draft.clone()));
                let mut backend = LiveBackend::new(target.clone(), source).expect("backend");
                let run = run_offline(&mut engine, &mut backend, &reqs, next_id).expect("run");
                next_id += reqs.len() as u64;
                if *name == "static-4" && prior.is_none() {
                    prior = Some(run.acceptance());
                }
                runs[p].push(run);
            }
        }
        let base = chosen.iter().position(|(n, _)| *n == "none");
        for (p, (name, _)) in chosen.iter().enumerate() {
            let tps: Vec<f64> = runs[p].iter().map(OfflineRun::tokens_per_s).collect();
            let (rel, range) = match base {
                Some(b) if b != p => {
                    let ratios: Vec<f64> = runs[p]
                        .iter()
                        .zip(&runs[b])
                        .map(|(x, y)| x.tokens_per_s() / y.tokens_per_s())
                        .collect();
                    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = ratios.iter().copied().fold(0.0, f64::max);
                    (
                        format!("{:.2}x", median(ratios)),
                        format!("{lo:.2}–{hi:.2}x"),
                    )
                }
                _ => ("—".to_string(), "—".to_string()),
            };
            let n = runs[p].len() as f64;
            println!(
                "| {c} | {name} | {:.2} | {rel} | {range} | {:.1}% | {:.2} | {:.1} |",
                median(tps),
                100.0 * runs[p].iter().map(OfflineRun::acceptance).sum::<f64>() / n,
                runs[p]
                    .iter()
                    .map(OfflineRun::tokens_per_verify)
                    .sum::<f64>()
                    / n,
                runs[p].iter().map(|r| r.wall_ns as f64 / 1e9).sum::<f64>() / n,
            );
        }
    }
}
