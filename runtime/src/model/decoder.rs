//! The decoder both supported architectures share: token embedding; per layer, pre-norm grouped-query
//! attention (optionally with Q/K/V biases) with rotary embeddings, then a pre-norm SwiGLU MLP, each with a
//! residual; a final RMS norm and the output projection (tied to the embedding when `output.weight` is
//! absent).
//!
//! Adapted from candle-transformers' `quantized_qwen2`. The differences are what speculative decoding
//! needs: one call runs several sequences, each with its own past length and any number of new tokens;
//! each new token has its own rotary position; logits come back for every new token that asks; and the KV
//! cache belongs to the caller ([`KvCache`]) and can be truncated. An architecture ([`Arch`]) says only
//! what differs: its GGUF key prefix, Q/K/V biases, rotary pairing and default rotary base. GGUF keys
//! read: `{prefix}.block_count`, `.embedding_length`, `.attention.head_count`,
//! `.attention.head_count_kv`, `.context_length`, `.attention.layer_norm_rms_epsilon`, `.rope.freq_base`.

use std::io::{Read, Seek};

use candle_core::quantized::QMatMul;

use super::weight::Weight;
use candle_core::Device;

use super::gguf::Gguf;
use super::kv::KvCache;
use super::layers::{
    ragged_attention, ForwardItem, Linear, Logits, Mlp, RaggedBatch, RmsNorm, Rope, RopeStyle,
};
use super::ModelConfig;
use crate::error::Result;

/// One transformer block.
#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

/// What distinguishes one architecture of the family from another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arch {
    /// GGUF metadata key prefix (`general.architecture`).
    pub prefix: &'static str,
    /// Q, K and V projections carry biases.
    pub qkv_bias: bool,
    /// How rotary embeddings pair dimensions.
    pub rope_style: RopeStyle,
    /// Rotary base when the file does not say.
    pub default_rope_base: f32,
}

/// A loaded decoder of either architecture.
#[derive(Debug, Clone)]
pub struct Decoder {
    config: ModelConfig,
    embed: QMatMul,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Weight,
    rope: Rope,
    device: Device,
}

impl Decoder {
    /// Reads the weights from a parsed GGUF file.
    pub(crate) fn load<R: Read + Seek>(
        mut g: Gguf<'_, R>,
        max_positions: Option<usize>,
        arch: Arch,
    ) -> Result<Self> {
        let key = |k: &str| format!("{}.{k}", arch.prefix);
        let n_head = g.u32(&key("attention.head_count"))? as usize;
        let n_kv_head = g.u32(&key("attention.head_count_kv"))? as usize;
        let hidden = g.u32(&key("embedding_length"))? as usize;
        let n_layer = g.u32(&key("block_count"))? as usize;
        let context = g.u32(&key("context_length"))? as usize;
        let eps = g.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-6)?;
        let rope_base = g.f32_or(&key("rope.freq_base"), arch.default_rope_base)?;
        let config = ModelConfig::new(
            &g,
            arch.prefix,
            n_layer,
            n_head,
            n_kv_head,
            hidden,
            context,
            max_positions,
        )?;

        let embed_q = std::sync::Arc::new(g.qtensor("token_embd.weight")?);
        let embed = QMatMul::from_arc(embed_q.clone())?;
        let output = if g.has("output.weight") {
            g.matmul("output.weight")?
        } else {
            g.weight(embed_q)?
        };
        let norm = RmsNorm::new(g.dense("output_norm.weight")?, eps);
        let bias = |g: &mut Gguf<'_, R>, name: &str| -> Result<_> {
            if arch.qkv_bias {
                Ok(Some(g.dense(name)?))
            } else {
                Ok(None)
            }
        };
        let mut blocks = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: RmsNorm::new(g.dense(&format!("{p}.attn_norm.weight"))?, eps),
                q: Linear::new(
                    g.matmul(&format!("{p}.attn_q.weight"))?,
                    bias(&mut g, &format!("{p}.attn_q.bias"))?,
                ),
                k: Linear::new(
                    g.matmul(&format!("{p}.attn_k.weight"))?,
                    bias(&mut g, &format!("{p}.attn_k.bias"))?,
                ),
                v: Linear::new(
                    g.matmul(&format!("{p}.attn_v.weight"))?,
                    bias(&mut g, &format!("{p}.attn_v.bias"))?,
                ),
                o: Linear::new(g.matmul(&format!("{p}.attn_output.weight"))?, None),
                ffn_norm: RmsNorm::new(g.dense(&format!("{p}.ffn_norm.weight"))?, eps),
                mlp: Mlp {
                    gate: g.matmul(&format!("{p}.ffn_gate.weight"))?,
                    up: g.matmul(&format!("{p}.ffn_up.weight"))?,
                    down: g.matmul(&format!("{p}.ffn_down.weight"))?,
                },
            });
        }
        let rope = Rope::new(
            config.head_dim,
            rope_base,
            config.max_positions,
            arch.rope_style,
            &g.device,
        )?;
        Ok(Self {
            config,
            embed,
            blocks,
            norm,
            output,
            rope,
            device: g.device.clone(),
        })
    }

    /// The model's dimensions.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Runs the new tokens of every item through the model in one pass, appending to each item's cache,
    /// and returns the logit rows the items asked for.
    pub fn forward(&self, items: &mut [ForwardItem]) -> Result<Logits> {
        let c = &self.config;
        let batch = RaggedBatch::new(items, c.vocab, c.max_positions, &self.device)?;
        let total = batch.total;
        let mut x = self.embed.embedding(&batch.token_ids)?; // [total, hidden]
        for (l, b) in self.blocks.iter().enumerate() {
            let h = b.attn_norm.forward(&x)?;
            let q = b.q.forward(&h)?.reshape((total, c.n_head, c.head_dim))?;
            let k = b.k.forward(&h)?.reshape((total, c.n_kv_head, c.head_dim))?;
            let v =
                b.v.forward(&h)?
                    .reshape((total, c.n_kv_head, c.head_dim))?
                    .contiguous()?;
            let q = self.rope.apply(&q, &batch.positions)?;
            let k = self.rope.apply(&k, &batch.positions)?;
            let attn = ragged_attention(l, &q, &k, &v, &batch, items)?;
            x = (x + b.o.forward(&attn)?)?;
            let h = b.ffn_norm.forward(&x)?;
            x = (x + b.mlp.forward(&h)?)?;
        }
        batch.commit(items);
        batch.logits(&x, &self.norm, &self.output, c.vocab)
    }

    /// An empty KV cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        self.config.new_cache(&self.device)
    }
}
