//! Llama (Llama 2/3, SmolLM2, TinyLlama) from a quantized GGUF file, with a ragged batched forward.
//!
//! The shared [`Decoder`] without attention biases and with interleaved rotary embeddings (llama.cpp's
//! converter permutes Q and K so that pairs are adjacent); rotary base 1e4 unless
//! `llama.rope.freq_base` says otherwise.

use super::decoder::{Arch, Decoder};
use super::layers::RopeStyle;

/// A loaded Llama model.
pub type Llama = Decoder;

/// Llama's differences from the shared decoder.
pub(crate) const ARCH: Arch = Arch {
    prefix: "llama",
    qkv_bias: false,
    rope_style: RopeStyle::Interleaved,
    default_rope_base: 10_000.0,
};
