//! Qwen2 (Qwen2.5, Qwen2.5-Coder) from a quantized GGUF file, with a ragged batched forward.
//!
//! The shared [`Decoder`] with biases on the Q, K and V projections and "halves" rotary embeddings
//! (rotary base 1e6 unless `qwen2.rope.freq_base` says otherwise).

use super::decoder::{Arch, Decoder};
use super::layers::RopeStyle;

/// A loaded Qwen2 model.
pub type Qwen2 = Decoder;

/// Qwen2's differences from the shared decoder.
pub(crate) const ARCH: Arch = Arch {
    prefix: "qwen2",
    qkv_bias: true,
    rope_style: RopeStyle::Halves,
    default_rope_base: 1_000_000.0,
};
