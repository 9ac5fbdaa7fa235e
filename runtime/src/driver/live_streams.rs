//! The live candle backend as the engine thread's [`TokenStreams`].

use super::{SeqParams, TokenStreams};
use crate::live::LiveBackend;
use specsim_core::engine::SeqId;

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
