//! Quantized decoder models with a ragged batched forward and a truncatable KV cache.
//!
//! Speculative decoding asks three things of a model that ordinary generation code does not:
//!
//! 1. **Ragged batches.** A verification step feeds each running sequence its last token plus its own
//!    number of draft tokens, on top of its own past length; prefill chunks ride in the same call. So a
//!    forward takes a list of [`ForwardItem`]s, packs all new tokens into one matrix for the linear layers
//!    (each quantized weight block is decoded once for all of them) and runs attention per sequence
//!    against that sequence's cache (candle's variable-length attention, causal mask aligned to each
//!    sequence's end). Rotary embeddings are applied at each token's own position.
//! 2. **Logits at every verified position** ([`LogitRows::All`]): the target's distribution after each
//!    draft token is what acceptance is decided on. Prefill chunks ask for the last row or none.
//! 3. **Rollback.** The cache of a sequence is a [`KvCache`] owned by the caller; after verification it is
//!    truncated to the accepted length, which leaves it exactly as if the rejected tokens were never fed.
//!
//! One shared decoder (`decoder.rs`); each architecture's file, [`qwen2`] and [`llama`], states only what
//! differs (GGUF prefix, Q/K/V biases, rotary pairing and base). [`Model`] picks one from the GGUF's
//! `general.architecture`. [`tiny`] writes random-weight GGUF files of both for tests.
//!
//! ```no_run
//! # fn main() -> Result<(), specsim_runtime::RuntimeError> {
//! use specsim_runtime::model::{ForwardItem, LogitRows, Model};
//! let model = Model::load("models/target.gguf", &candle_core::Device::Cpu, None)?;
//! let (mut a, mut b) = (model.new_cache(), model.new_cache());
//! let logits = model.forward(&mut [
//!     ForwardItem { cache: &mut a, tokens: &[1, 2, 3], logits: LogitRows::Last },
//!     ForwardItem { cache: &mut b, tokens: &[4, 5], logits: LogitRows::All },
//! ])?;
//! assert_eq!(logits.rows(1), 2);
//! a.truncate(2)?; // forget token 3
//! # Ok(()) }
//! ```

mod decoder;
mod gguf;
pub mod kv;
mod layers;
pub mod llama;
pub mod qwen2;
pub mod tiny;
mod weight;

use std::io::{Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};

pub use kv::KvCache;
pub use layers::{ForwardItem, LogitRows, Logits};

use crate::error::{Result, RuntimeError};
use gguf::Gguf;

/// Dimensions of a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// `general.architecture` (`qwen2`, `llama`).
    pub architecture: String,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Per-head dimension (`hidden / n_head`).
    pub head_dim: usize,
    /// Vocabulary size (rows of the token embedding).
    pub vocab: usize,
    /// Longest sequence (prompt + output) this instance accepts: the GGUF context length, or less when
    /// the loader was told so (the rotary tables are this long).
    pub max_positions: usize,
    /// End-of-sequence token (`tokenizer.ggml.eos_token_id`), if the file names one.
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
    #[allow(clippy::too_many_arguments)]
    fn new<R: Read + Seek>(
        g: &Gguf<'_, R>,
        architecture: &str,
        n_layer: usize,
        n_head: usize,
        n_kv_head: usize,
        hidden: usize,
        context: usize,
        max_positions: Option<usize>,
    ) -> Result<Self> {
        if n_head == 0
            || n_kv_head == 0
            || !hidden.is_multiple_of(n_head)
            || !n_head.is_multiple_of(n_kv_head)
        {
            return Err(RuntimeError::Gguf(format!(
                "inconsistent attention shape: hidden {hidden}, {n_head} heads, {n_kv_head} KV heads"
            )));
        }
        let head_dim = hidden / n_head;
        if !head_dim.is_multiple_of(2) {
            return Err(RuntimeError::Gguf(format!(
                "head dimension {head_dim} is odd"
            )));
        }
        let vocab = match g.content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims().first().copied().unwrap_or(0),
            None => {
                return Err(RuntimeError::Gguf(
                    "missing tensor token_embd.weight".into(),
                ))
            }
        };
        Ok(Self {
            architecture: architecture.to_string(),
            n_layer,
            n_head,
            n_kv_head,
            hidden,
            head_dim,
            vocab,
            max_positions: max_positions.map_or(context, |m| m.min(context)).max(1),
            eos_token_id: g.u32_opt("tokenizer.ggml.eos_token_id"),
        })
    }

    /// An empty KV cache for one sequence of this model.
    pub fn new_cache(&self, device: &Device) -> KvCache {
        KvCache::new(
            self.n_layer,
            self.n_kv_head,
            self.head_dim,
            DType::F32,
            device,
        )
    }

    /// KV bytes per cached token (all layers, keys and values, f32).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layer * self.n_kv_head * self.head_dim * DType::F32.size_in_bytes()
    }
}

/// A loaded model of any supported architecture.
#[derive(Debug, Clone)]
pub enum Model {
    /// Qwen2 / Qwen2.5.
    Qwen2(qwen2::Qwen2),
    /// Llama family.
    Llama(llama::Llama),
}

impl Model {
    /// Loads a GGUF file. `max_positions` caps the context (and the rotary tables) below the file's
    /// `context_length`.
    pub fn load(
        path: impl AsRef<Path>,
        device: &Device,
        max_positions: Option<usize>,
    ) -> Result<Self> {
        Self::load_file(path.as_ref(), device, max_positions, false)
    }

    /// [`Model::load`] for a draft model: weight matrices in quantized types without fast CPU kernels
    /// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) are re-packed to Q6_K once, at load (see `model/weight.rs`: about
    /// 2× faster for one sequence and 5× for a batch of four on the 2-core AVX2 machine). The outputs
    /// move by the Q6_K rounding, which is harmless for a drafter (verification decides what is emitted)
    /// but is why a target is loaded with [`Model::load`], as stored.
    pub fn load_repacked(
        path: impl AsRef<Path>,
        device: &Device,
        max_positions: Option<usize>,
    ) -> Result<Self> {
        Self::load_file(path.as_ref(), device, max_positions, true)
    }

    fn load_file(
        path: &Path,
        device: &Device,
        max_positions: Option<usize>,
        repack: bool,
    ) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| RuntimeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_reader_with(
            &mut std::io::BufReader::new(file),
            device,
            max_positions,
            repack,
        )
    }

    /// Loads a GGUF image from any reader (a file, or bytes in memory).
    pub fn from_reader<R: Read + Seek>(
        reader: &mut R,
        device: &Device,
        max_positions: Option<usize>,
    ) -> Result<Self> {
        Self::from_reader_with(reader, device, max_positions, false)
    }

    /// [`Model::from_reader`], re-packing slow weight types (see [`Model::load_repacked`]) if `repack`.
    pub fn from_reader_with<R: Read + Seek>(
        reader: &mut R,
        device: &Device,
        max_positions: Option<usize>,
        repack: bool,
    ) -> Result<Self> {
        let content = gguf_file::Content::read(reader)?;
        let arch = match content.metadata.get("general.architecture") {
            Some(v) => v
                .to_string()
                .map_err(|_| RuntimeError::Gguf("general.architecture is not a string".into()))?
                .clone(),
            None => {
                return Err(RuntimeError::Gguf(
                    "missing metadata key general.architecture".into(),
                ))
            }
        };
        let g = Gguf {
            content,
            reader,
            device: device.clone(),
            repack,
        };
        match arch.as_str() {
            "qwen2" => Ok(Model::Qwen2(decoder::Decoder::load(
                g,
                max_positions,
                qwen2::ARCH,
            )?)),
            "llama" => Ok(Model::Llama(decoder::Decoder::load(
                g,
                max_positions,
                llama::ARCH,
            )?)),
            other => Err(RuntimeError::UnsupportedArchitecture(other.to_string())),
        }
    }

    /// The model's dimensions.
    pub fn config(&self) -> &ModelConfig {
        match self {
            Model::Qwen2(m) => m.config(),
            Model::Llama(m) => m.config(),
        }
    }

    /// One ragged batched forward; see the module docs.
    pub fn forward(&self, items: &mut [ForwardItem]) -> Result<Logits> {
        match self {
            Model::Qwen2(m) => m.forward(items),
            Model::Llama(m) => m.forward(items),
        }
    }

    /// An empty KV cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        match self {
            Model::Qwen2(m) => m.new_cache(),
            Model::Llama(m) => m.new_cache(),
        }
    }

    /// Runs a throw-away prefill and decode so that the first real request does not pay for paging the
    /// memory-mapped weights in and for first-touch allocations (measured on the Qwen 1.5B target: the
    /// first 28-token prefill of a fresh server took 2.5 s, later ones 0.5 s). Returns the time taken.
    pub fn warm_up(&self) -> Result<std::time::Duration> {
        let start = std::time::Instant::now();
        let vocab = self.config().vocab.max(1) as u32;
        let prompt: Vec<u32> = (0..16u32).map(|t| t % vocab).collect();
        let mut cache = self.new_cache();
        self.forward(&mut [ForwardItem {
            cache: &mut cache,
            tokens: &prompt,
            logits: LogitRows::Last,
        }])?;
        self.forward(&mut [ForwardItem {
            cache: &mut cache,
            tokens: &prompt[..1],
            logits: LogitRows::All,
        }])?;
        Ok(start.elapsed())
    }
}
