//! Pieces shared by the decoder files: the ragged batch, RMS norm, the gated MLP, rotary embeddings with
//! per-token positions, and attention of each sequence's new tokens against its own KV cache.
//!
//! Shapes follow one convention throughout: a forward packs the new tokens of every sequence into one
//! dimension of `total` rows (sequence 0's tokens first, then sequence 1's, ...). Hidden states are
//! `[total, hidden]`, queries `[total, n_head, head_dim]`, new keys/values `[total, n_kv_head, head_dim]`.
//! Linear layers therefore see one matrix of all new tokens, which is what lets a quantized weight block
//! be reused across the k+1 tokens of a verification instead of being decoded once per token.

use candle_core::{DType, Device, Tensor};

use super::kv::KvCache;
use super::weight::Weight;
use crate::error::{Result, RuntimeError};

/// Which logit rows a sequence wants from a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// One row per new token (verification: the target's distribution after every drafted token).
    All,
    /// Only the row of the last new token (decode, draft proposals, the last prefill chunk).
    Last,
    /// None (an intermediate prefill chunk).
    None,
}

/// One sequence's part of a ragged batched forward.
#[derive(Debug)]
pub struct ForwardItem<'a> {
    /// The sequence's cache: its length is the past length; the forward appends `tokens`.
    pub cache: &'a mut KvCache,
    /// New tokens to feed (at least one).
    pub tokens: &'a [u32],
    /// Logit rows to return.
    pub logits: LogitRows,
}

/// Logits of a forward: for item `i`, `rows(i)` rows of `vocab` values, in token order.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    data: Vec<f32>,
    vocab: usize,
    /// First row of each item in `data` (in rows), plus one past the end.
    starts: Vec<usize>,
}

impl Logits {
    /// Vocabulary size (row length).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Number of items in the forward.
    pub fn items(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Number of rows returned for item `i` (0 if out of range).
    pub fn rows(&self, i: usize) -> usize {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    /// Row `j` of item `i`.
    pub fn row(&self, i: usize, j: usize) -> Option<&[f32]> {
        if j >= self.rows(i) {
            return None;
        }
        let r = self.starts[i] + j;
        self.data.get(r * self.vocab..(r + 1) * self.vocab)
    }

    /// The last row of item `i`.
    pub fn last(&self, i: usize) -> Option<&[f32]> {
        self.rows(i).checked_sub(1).and_then(|j| self.row(i, j))
    }
}

/// The bookkeeping of one ragged forward, derived from the items once and used by every layer.
pub(crate) struct RaggedBatch {
    /// New token ids, packed: `[total]` u32.
    pub token_ids: Tensor,
    /// Absolute position of each packed token: `[total]` u32.
    pub positions: Tensor,
    /// Per sequence: (first packed row, new tokens, past length).
    pub spans: Vec<(usize, usize, usize)>,
    /// Packed rows whose logits are wanted, in order: `[rows]` u32 (None when no row is wanted).
    pub logit_rows: Option<Tensor>,
    /// Per sequence, the number of logit rows wanted.
    pub logit_counts: Vec<usize>,
    /// Packed tokens.
    pub total: usize,
}

impl RaggedBatch {
    /// Validates the items against the vocabulary and position limit, reserves KV rows for the new
    /// tokens, and builds the index tensors.
    pub fn new(
        items: &mut [ForwardItem],
        vocab: usize,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        if items.is_empty() {
            return Err(RuntimeError::InvalidInput("empty forward batch".into()));
        }
        let (mut ids, mut positions) = (Vec::new(), Vec::new());
        let (mut spans, mut rows, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for (i, item) in items.iter_mut().enumerate() {
            let n = item.tokens.len();
            let past = item.cache.len();
            if n == 0 {
                return Err(RuntimeError::InvalidInput(format!(
                    "batch item {i} has no new token"
                )));
            }
            if let Some(&bad) = item.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(RuntimeError::InvalidInput(format!(
                    "token id {bad} outside the vocabulary of {vocab}"
                )));
            }
            if past + n > max_positions {
                return Err(RuntimeError::InvalidInput(format!(
                    "sequence of {} tokens exceeds the model's context of {max_positions}",
                    past + n
                )));
            }
            item.cache.reserve(n)?;
            let first = ids.len();
            ids.extend_from_slice(item.tokens);
            positions.extend((past..past + n).map(|p| p as u32));
            spans.push((first, n, past));
            let wanted = match item.logits {
                LogitRows::All => first..first + n,
                LogitRows::Last => first + n - 1..first + n,
                LogitRows::None => first..first,
            };
            counts.push(wanted.len());
            rows.extend(wanted.map(|r| r as u32));
        }
        let total = ids.len();
        let logit_rows = if rows.is_empty() {
            None
        } else {
            Some(Tensor::new(rows.as_slice(), device)?)
        };
        Ok(Self {
            token_ids: Tensor::new(ids.as_slice(), device)?,
            positions: Tensor::new(positions.as_slice(), device)?,
            spans,
            logit_rows,
            logit_counts: counts,
            total,
        })
    }

    /// After all layers wrote their keys and values: advance every cache by its new tokens.
    pub fn commit(&self, items: &mut [ForwardItem]) {
        for (item, &(_, n, _)) in items.iter_mut().zip(&self.spans) {
            item.cache.advance(n);
        }
    }

    /// Final norm, output projection of the wanted rows, and the copy to host memory.
    pub fn logits(
        &self,
        hidden: &Tensor,
        norm: &RmsNorm,
        output: &Weight,
        vocab: usize,
    ) -> Result<Logits> {
        let mut starts = Vec::with_capacity(self.logit_counts.len() + 1);
        starts.push(0);
        for c in &self.logit_counts {
            starts.push(starts.last().copied().unwrap_or(0) + c);
        }
        let data = match &self.logit_rows {
            None => Vec::new(),
            Some(rows) => {
                let x = norm.forward(&hidden.index_select(rows, 0)?)?;
                output
                    .forward(&x)?
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?
            }
        };
        Ok(Logits {
            data,
            vocab,
            starts,
        })
    }
}

/// Root-mean-square layer norm with a learned scale.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f32) -> Self {
        Self { weight, eps }
    }

    /// `x`: `[rows, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

/// A (quantized) linear layer `y = x Wᵀ + b`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Weight, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// `x`: `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate.forward(x)?)?;
        let up = self.up.forward(x)?;
        self.down.forward(&(gate * up)?)
    }
}

/// How a model's GGUF expects rotary embeddings to pair dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    /// Pairs `(i, i + d/2)` ("neox"; Qwen2).
    Halves,
    /// Pairs `(2i, 2i + 1)` (llama.cpp's llama, whose converter permutes Q/K for it).
    Interleaved,
}

/// Rotary embedding tables, `[max_positions, head_dim / 2]`, applied at arbitrary per-token positions.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    style: RopeStyle,
}

impl Rope {
    pub fn new(
        head_dim: usize,
        base: f32,
        max_positions: usize,
        style: RopeStyle,
        device: &Device,
    ) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let t = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let angles = t.matmul(&inv_freq)?;
        Ok(Self {
            cos: angles.cos()?,
            sin: angles.sin()?,
            style,
        })
    }

    /// Rotates `x` (`[total, heads, head_dim]`) with each row at its own position (`positions`, `[total]`).
    ///
    /// candle's rope kernels take `x` as `(batch, heads, seq, dim)` and accept per-batch tables of shape
    /// `(batch, seq, dim/2)`, so each packed token becomes its own batch entry with `seq = 1`.
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (total, heads, dim) = x.dims3()?;
        let x = x.contiguous()?.reshape((total, heads, 1, dim))?;
        let cos = self
            .cos
            .index_select(positions, 0)?
            .reshape((total, 1, dim / 2))?;
        let sin = self
            .sin
            .index_select(positions, 0)?
            .reshape((total, 1, dim / 2))?;
        let y = match self.style {
            RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
        };
        Ok(y.reshape((total, heads, dim))?)
    }
}

/// Causal attention of every sequence's new queries against its own cached plus new keys.
///
/// Writes this layer's new keys/values (`k`, `v`: `[total, n_kv_head, head_dim]`) into each sequence's
/// cache after its past, then runs candle's variable-length attention once per sequence on a view of that
/// sequence's cache (no copy: the valid rows of a cache are a contiguous prefix of its buffer). The causal
/// mask is aligned to the sequence's end: query `j` of a sequence with `past` cached tokens sees keys
/// `0..=past + j`. Calling once per sequence instead of packing every cache into one tensor avoids copying
/// all contexts every layer, which at high concurrency costs more than the per-call overhead. Returns
/// `[total, n_head * head_dim]`.
pub(crate) fn ragged_attention(
    layer: usize,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: &RaggedBatch,
    items: &mut [ForwardItem],
) -> Result<Tensor> {
    let (total, n_head, head_dim) = q.dims3()?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let device = q.device();
    let mut outs = Vec::with_capacity(items.len());
    for (item, &(first, n, past)) in items.iter_mut().zip(&batch.spans) {
        item.cache.write(
            layer,
            past,
            &k.narrow(0, first, n)?,
            &v.narrow(0, first, n)?,
        )?;
        let (kc, vc) = item.cache.view(layer, past + n)?;
        let qs = q.narrow(0, first, n)?.contiguous()?;
        let lq = Tensor::new(&[n as u32], device)?;
        let lk = Tensor::new(&[(past + n) as u32], device)?;
        let attn = if device.is_cpu() {
            candle_nn::attention::flash_attn_varlen_cpu
        } else {
            candle_nn::attention::flash_attn_varlen_unfused
        };
        outs.push(attn(
            &qs,
            &kc,
            &vc,
            None,
            &lq,
            &lk,
            n,
            past + n,
            scale,
            true,
            None,
            None,
        )?);
    }
    let out = if outs.len() == 1 {
        outs.swap_remove(0)
    } else {
        Tensor::cat(&outs, 0)?
    };
    Ok(out.reshape((total, n_head * head_dim))?)
}
