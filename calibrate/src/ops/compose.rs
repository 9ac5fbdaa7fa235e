//! One forward step composed from measured operators, as aiconfigurator composes a decoder layer.
//!
//! Per decoder layer, on each of `tp` GPUs: the QKV projection (n = (q + 2·kv)/tp, k = hidden), the
//! attention (context attention for a prompt, generation attention for decode and verification tokens),
//! the output projection (n = hidden, k = q/tp), gate+up (n = 2·ffn/tp, k = hidden) and down (n =
//! hidden, k = ffn/tp) GEMMs, two all-reduces of the activations when `tp > 1`, and the memory-bound
//! element-wise operations (two add+RMSNorm, the SwiGLU activation) priced as aiconfigurator prices
//! them (bytes over scaled bandwidth plus a constant). Around the layers: the embedding gather, the
//! final norm and the LM head (n = vocab/tp, k = hidden, m = positions whose logits are needed; bf16
//! even with FP8 weights, as FP8 checkpoints keep it).
//!
//! A verification of `t` tokens per sequence is priced as generation attention over `batch × t`
//! queries at the sequence's context (each verified token reads the whole KV), which is what a
//! decode kernel does with them; GEMMs see all `batch × t` tokens.

use super::tables::{AllReduceTable, AttnTable, GemmTable, Heads, MemOps, MoeTable, Notes};
use crate::Result;
use specsim_core::cost::catalog::ModelSpec;

/// Largest token count vLLM (V1) captures CUDA graphs for by default; larger forwards run eagerly.
pub const CUDA_GRAPH_MAX_TOKENS: f64 = 512.0;

/// The operator tables one model on one GPU type needs.
pub struct OpSet {
    /// GEMMs of the weight dtype.
    pub gemm: GemmTable,
    /// bf16 GEMMs, for the LM head (FP8 checkpoints keep it in bf16).
    pub gemm_head: GemmTable,
    /// Context (prefill) attention for the model's per-GPU heads.
    pub context: AttnTable,
    /// Generation (decode) attention for the model's per-GPU heads.
    pub generation: AttnTable,
    /// All-reduce with CUDA graphs and eager (`None` at TP 1).
    pub allreduce: Option<(AllReduceTable, AllReduceTable)>,
    /// The fused MoE layer of a mixture-of-experts model.
    pub moe: Option<MoeTable>,
    /// Element-wise operation pricing.
    pub mem: MemOps,
    /// How the tables were matched where not exactly (e.g. an equivalent head layout).
    pub notes: Vec<String>,
}

/// A model deployed on `tp` GPUs, priced from an [`OpSet`].
pub struct Composer<'a> {
    /// The model.
    pub model: &'a ModelSpec,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// The tables.
    pub ops: &'a OpSet,
}

/// An EAGLE-3 draft head on `target` as a one-layer model: one decoder layer of the target's shape and
/// an LM head over EAGLE-3's 32,000-token draft vocabulary (its fc over three of the target's hidden
/// states is a separate GEMM, n = hidden, k = 3·hidden, added by the caller).
pub fn eagle3_head(target: &ModelSpec) -> ModelSpec {
    let mut m = target.clone();
    m.name = format!("EAGLE-3 head of {}", target.name);
    m.layers = 1;
    m.vocab = 32000;
    m.tied_embeddings = false;
    m
}

/// The per-GPU head layout of a model at a TP degree (KV heads replicated when fewer than GPUs).
pub fn heads(model: &ModelSpec, tp: u32) -> Heads {
    let tp = tp.max(1) as u64;
    Heads {
        q: (model.heads as u64 / tp).max(1),
        kv: (model.kv_heads as u64 / tp).max(1),
        dim: model.head_dim().round() as u64,
    }
}

/// Nanoseconds of a step broken down by operator kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Breakdown {
    /// Projection and MLP GEMMs of every layer.
    pub gemm: f64,
    /// Attention of every layer.
    pub attention: f64,
    /// All-reduces.
    pub comm: f64,
    /// Element-wise operations, embedding, final norm.
    pub elementwise: f64,
    /// The LM head.
    pub lm_head: f64,
}

impl Breakdown {
    /// The sum.
    pub fn total(&self) -> f64 {
        self.gemm + self.attention + self.comm + self.elementwise + self.lm_head
    }
}

impl Composer<'_> {
    fn layers(&self) -> f64 {
        self.model.layers as f64
    }

    /// The projection and MLP GEMMs of all layers at `m` tokens.
    pub fn layer_gemms(&self, m: f64, notes: &mut Notes) -> Result<f64> {
        let md = self.model;
        let tp = self.tp.max(1) as f64;
        let h = md.hidden as f64;
        let q = md.q_dim();
        let kv = heads(md, self.tp).kv as f64 * md.head_dim();
        let f = md.ffn as f64;
        let g = &self.ops.gemm;
        let attn = g.ns(m, q / tp + 2.0 * kv, h, notes)? + g.ns(m, h, q / tp, notes)?;
        let mlp = match &self.ops.moe {
            // The router's GEMM (hidden × experts) is left out: under 0.1 % of the experts' work.
            Some(t) if md.moe.is_some() => t.ns(m, notes),
            _ => g.ns(m, 2.0 * f / tp, h, notes)? + g.ns(m, h, f / tp, notes)?,
        };
        Ok((attn + mlp) * self.layers())
    }

    /// The LM head for `logits` positions.
    pub fn lm_head(&self, logits: f64, notes: &mut Notes) -> Result<f64> {
        let md = self.model;
        self.ops.gemm_head.ns(
            logits.max(1.0),
            md.vocab as f64 / self.tp.max(1) as f64,
            md.hidden as f64,
            notes,
        )
    }

    /// All-reduces of all layers for `m` tokens (0 at TP 1).
    pub fn comm(&self, m: f64, notes: &mut Notes) -> f64 {
        match &self.ops.allreduce {
            Some((graph, eager)) if self.tp > 1 => {
                let t = if m <= CUDA_GRAPH_MAX_TOKENS {
                    graph
                } else {
                    eager
                };
                2.0 * self.layers() * t.ns(m * self.model.hidden as f64, notes)
            }
            _ => 0.0,
        }
    }

    /// Element-wise operations at `m` tokens with `logits` logit rows: per layer two add+RMSNorm
    /// (hidden in, hidden out) and the SwiGLU activation (2·ffn/tp in, ffn/tp out); the embedding
    /// gather and final norm once; the sampler reading fp32 logits. bf16 activations.
    pub fn elementwise(&self, m: f64, logits: f64) -> f64 {
        let md = self.model;
        let tp = self.tp.max(1) as f64;
        let (h, f) = (md.hidden as f64, md.ffn as f64 / tp);
        let mem = &self.ops.mem;
        let per_layer = 2.0 * mem.ns(m * 2.0 * h * 2.0) + mem.ns(m * 3.0 * f * 2.0);
        per_layer * self.layers()
            + mem.ns(m * h * 2.0)
            + mem.ns(m * 2.0 * h * 2.0)
            + mem.ns(logits * md.vocab as f64 / tp * 4.0)
    }

    /// A decode or verification forward: `batch` sequences with `tokens` new tokens each at context
    /// `context` (KV length after the step); every new token's logits are needed.
    pub fn decode(
        &self,
        batch: f64,
        tokens: f64,
        context: f64,
        notes: &mut Notes,
    ) -> Result<Breakdown> {
        let m = batch * tokens;
        Ok(Breakdown {
            gemm: self.layer_gemms(m, notes)?,
            attention: self.layers() * self.ops.generation.ns(m, context, notes)?,
            comm: self.comm(m, notes),
            elementwise: self.elementwise(m, m),
            lm_head: self.lm_head(m, notes)?,
        })
    }

    /// A prefill of one prompt of `tokens` tokens from an empty cache (logits of its last position).
    pub fn prefill(&self, tokens: f64, notes: &mut Notes) -> Result<Breakdown> {
        Ok(Breakdown {
            gemm: self.layer_gemms(tokens, notes)?,
            attention: self.layers() * self.ops.context.ns(1.0, tokens, notes)?,
            comm: self.comm(tokens, notes),
            elementwise: self.elementwise(tokens, 1.0),
            lm_head: self.lm_head(1.0, notes)?,
        })
    }
}
