//! The Qwen2.5-Coder 0.5B/1.5B pair, when present (`scripts/fetch-models.sh` puts it in `models/`, or set
//! `SPECSIM_MODELS` to a directory holding `draft.gguf` and `target.gguf`). Skipped with a message
//! otherwise, so CI needs no download.
//!
//! Checks that speculative decoding with the real draft produces exactly the target's greedy output,
//! that the output is the expected kind of text (a Python function for a coding prompt), and reports the
//! acceptance rate.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use specsim_core::cost::FixedCost;
use specsim_core::engine::{Engine, EngineConfig};
use specsim_core::policy::PolicyConfig;
use specsim_runtime::chat::ChatMessage;
use specsim_runtime::drafter::model::ModelDrafter;
use specsim_runtime::live::{DraftSource, LiveBackend};
use specsim_runtime::model::{ForwardItem, LogitRows, Model};
use specsim_runtime::offline::{run_offline, OfflineRequest};
use specsim_runtime::sampling::{argmax, SamplingParams};
use specsim_runtime::tokenizer::GgufTokenizer;

fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SPECSIM_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"),
    };
    (dir.join("draft.gguf").is_file() && dir.join("target.gguf").is_file()).then_some(dir)
}

#[test]
fn qwen_pair_speculative_greedy_is_exact_and_coherent() {
    let Some(dir) = model_dir() else {
        eprintln!(
            "SKIPPED qwen_pair_speculative_greedy_is_exact_and_coherent: models/draft.gguf and models/target.gguf \
             not found (run scripts/fetch-models.sh or set SPECSIM_MODELS)"
        );
        return;
    };
    let device = Device::Cpu;
    let target = Arc::new(Model::load(dir.join("target.gguf"), &device, Some(4096)).unwrap());
    let draft =
        Arc::new(Model::load_repacked(dir.join("draft.gguf"), &device, Some(4096)).unwrap());
    let tok = GgufTokenizer::from_gguf_file(&dir.join("target.gguf")).unwrap();
    let prompt_text = tok
        .chat_template()
        .render(
            &[ChatMessage::user(
                "Write a Python function that returns the n-th Fibonacci number.",
            )],
            true,
        )
        .unwrap();
    let prompt = tok.encode(&prompt_text).unwrap();
    let n = 48;

    // Target alone, greedy, one token per forward.
    let mut cache = target.new_cache();
    let mut want = Vec::new();
    let mut feed = prompt.clone();
    while want.len() < n {
        let logits = target
            .forward(&mut [ForwardItem {
                cache: &mut cache,
                tokens: &feed,
                logits: LogitRows::Last,
            }])
            .unwrap();
        let t = argmax(logits.last(0).unwrap()).unwrap();
        want.push(t);
        feed = vec![t];
    }

    let cost = Arc::new(FixedCost {
        draft_base: 1,
        draft_per_seq: 1,
        target_base: 10,
        target_per_token: 1,
    });
    let config = EngineConfig {
        kv_blocks: Some(512),
        max_num_seqs: 4,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, PolicyConfig::Static { k: 4 }.build(), cost).unwrap();
    let mut backend =
        LiveBackend::new(target.clone(), DraftSource::Model(ModelDrafter::new(draft))).unwrap();
    let req = OfflineRequest {
        prompt,
        max_tokens: n as u32,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
    };
    let run = run_offline(&mut engine, &mut backend, &[req], 0).unwrap();
    let text = tok.decode(&run.outputs[0], true).unwrap();
    eprintln!(
        "qwen pair, static k=4: acceptance {:.1}%, {:.2} tokens per verification, {:.2} tokens/s\n---\n{text}\n---",
        100.0 * run.acceptance(),
        run.tokens_per_verify(),
        run.tokens_per_s()
    );
    assert_eq!(
        run.outputs[0], want,
        "speculative output differs from the target's greedy output"
    );
    assert!(
        text.contains("def "),
        "expected a Python function, got: {text}"
    );
    assert!(
        run.acceptance() > 0.3,
        "a same-family draft should be accepted often"
    );
}
