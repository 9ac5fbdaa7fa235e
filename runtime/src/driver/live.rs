//! The live candle backend as the engine thread's [`TokenStreams`], and `serve`'s model loading.

use super::{cost_model, driver_config, spawn_engine, DriverError, SeqParams, TokenStreams};
use crate::drafter::model::ModelDrafter;
use crate::drafter::ngram::NgramDrafter;
use crate::live::{DraftSource, LiveBackend};
use crate::model::Model;
use crate::server::{Generator, Metrics, ServeArgs};
use crate::tokenizer::GgufTokenizer;
use specsim_sim::engine::SeqId;
use specsim_sim::policy::PolicyConfig;
use std::sync::Arc;

impl TokenStreams for LiveBackend {
    fn insert(&mut self, seq: SeqId, prompt: &[u32], params: &SeqParams) -> crate::Result<()> {
        self.register(
            seq,
            prompt.to_vec(),
            params.sampling,
            params.stop_ids.is_empty(),
        )
    }

    fn drain_emitted(&mut self, seq: SeqId, out: &mut Vec<u32>) {
        out.extend(self.take_new_tokens(seq));
    }

    fn remove(&mut self, seq: SeqId) {
        LiveBackend::remove(self, seq);
    }
}

/// Loads the models `args` name and starts the engine thread over the live backend.
///
/// Every id in the tokenizer's end-of-sequence list stops a sequence: the backend stops on the file's
/// `eos_token_id`, and the engine thread ends a sequence on any other one (Qwen's `<|endoftext|>` besides
/// `<|im_end|>`) through the cancellation path.
pub fn start_live(
    args: &ServeArgs,
    tokenizer: Arc<GgufTokenizer>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn Generator>, DriverError> {
    let mut config = driver_config(args, tokenizer.eos_ids().to_vec())?;
    let target_path = args
        .target
        .as_ref()
        .ok_or_else(|| DriverError::Backend("--target is required".into()))?;
    let device = candle_core::Device::Cpu;
    let max_positions = Some(args.max_prompt_tokens + args.max_tokens as usize);
    // The draft is re-packed into types with fast CPU kernels (Model::load_repacked); the target is
    // run as stored, since its exact weights decide what is emitted.
    let load = |p: &std::path::Path, repack: bool| {
        let m = if repack {
            Model::load_repacked(p, &device, max_positions)
        } else {
            Model::load(p, &device, max_positions)
        };
        m.map(Arc::new)
            .map_err(|e| DriverError::Backend(format!("loading {}: {e}", p.display())))
    };
    let target = load(target_path, false)?;
    let draft = match (&config.policy, &args.draft, args.ngram) {
        (PolicyConfig::None, _, _) => DraftSource::None,
        (_, _, true) => DraftSource::Ngram(NgramDrafter::default()),
        (_, Some(p), false) => DraftSource::Model(ModelDrafter::new(load(p, true)?)),
        (_, None, false) => {
            return Err(DriverError::Backend(format!(
                "policy `{}` drafts: give --draft D.gguf (or --ngram, or --policy none)",
                args.policy
            )))
        }
    };
    config.draft_model = matches!(draft, DraftSource::Model(_));
    // Page the weights in before the server reports healthy, so the first request is timed like the
    // others (and like the calibrated profile).
    let mut warm = vec![("target", target.warm_up())];
    if let DraftSource::Model(d) = &draft {
        warm.push(("draft", d.model().warm_up()));
    }
    for (name, t) in warm {
        let t = t.map_err(|e| DriverError::Backend(format!("warming up the {name}: {e}")))?;
        eprintln!("warm-up: {name} model {:.2} s", t.as_secs_f64());
    }
    let mut backend =
        LiveBackend::new(target, draft).map_err(|e| DriverError::Backend(e.to_string()))?;
    if let Some(&eos) = tokenizer.eos_ids().first() {
        backend.set_eos(Some(eos));
    }
    let handle = spawn_engine(config, cost_model(args)?, backend, metrics)?;
    Ok(Arc::new(handle))
}
