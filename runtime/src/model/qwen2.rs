//! Qwen2 (Qwen2.5, Qwen2.5-Coder) from a quantized GGUF file, with a ragged batched forward.
//!
//! The architecture: token embedding; per layer, pre-norm grouped-query attention with biases on the Q, K
//! and V projections and "halves" rotary embeddings, then a pre-norm SwiGLU MLP, each with a residual; a
//! final RMS norm and the output projection (tied to the embedding when `output.weight` is absent).
//!
//! Adapted from candle-transformers' `quantized_qwen2`. The differences are what speculative decoding
//! needs: one call runs several sequences, each with its own past length and any number of new tokens;
//! each new token has its own rotary position; logits come back for every new token that asks; and the KV
//! cache belongs to the caller ([`KvCache`]) and can be truncated. GGUF keys read: `qwen2.block_count`,
//! `qwen2.embedding_length`, `qwen2.attention.head_count`, `qwen2.attention.head_count_kv`,
//! `qwen2.context_length`, `qwen2.attention.layer_norm_rms_epsilon`, `qwen2.rope.freq_base` (default 1e6).

use std::io::{Read, Seek};

use candle_core::quantized::QMatMul;
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

/// A loaded Qwen2 model.
#[derive(Debug, Clone)]
pub struct Qwen2 {
    config: ModelConfig,
    embed: QMatMul,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: QMatMul,
    rope: Rope,
    device: Device,
}

impl Qwen2 {
    /// Reads the weights from a parsed GGUF file.
    pub(crate) fn load<R: Read + Seek>(
        mut g: Gguf<'_, R>,
        max_positions: Option<usize>,
    ) -> Result<Self> {
        let n_head = g.u32("qwen2.attention.head_count")? as usize;
        let n_kv_head = g.u32("qwen2.attention.head_count_kv")? as usize;
        let hidden = g.u32("qwen2.embedding_length")? as usize;
        let n_layer = g.u32("qwen2.block_count")? as usize;
        let context = g.u32("qwen2.context_length")? as usize;
        let eps = g.f32_or("qwen2.attention.layer_norm_rms_epsilon", 1e-6)?;
        let rope_base = g.f32_or("qwen2.rope.freq_base", 1_000_000.0)?;
        let config = ModelConfig::new(
            &g,
            "qwen2",
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
            QMatMul::from_arc(embed_q)?
        };
        let norm = RmsNorm::new(g.dense("output_norm.weight")?, eps);
        let mut blocks = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: RmsNorm::new(g.dense(&format!("{p}.attn_norm.weight"))?, eps),
                q: Linear::new(
                    g.matmul(&format!("{p}.attn_q.weight"))?,
                    Some(g.dense(&format!("{p}.attn_q.bias"))?),
                ),
                k: Linear::new(
                    g.matmul(&format!("{p}.attn_k.weight"))?,
                    Some(g.dense(&format!("{p}.attn_k.bias"))?),
                ),
                v: Linear::new(
                    g.matmul(&format!("{p}.attn_v.weight"))?,
                    Some(g.dense(&format!("{p}.attn_v.bias"))?),
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
            RopeStyle::Halves,
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
