//! A per-sequence key/value cache that can be rolled back.
//!
//! Each sequence owns one [`KvCache`]: for every layer a key and a value buffer of shape
//! `[capacity, n_kv_head, head_dim]`, of which the first [`KvCache::len`] rows are valid. A forward writes
//! the new rows in place after the valid ones and only then advances the length, so a failed forward leaves
//! the cache as it was.
//!
//! Rollback of rejected draft tokens is [`KvCache::truncate`]: it lowers the length and nothing else. Rows
//! past the length are never read (attention views only the valid prefix) and the next forward overwrites
//! them, so after `truncate(n)` the cache is exactly the cache of a sequence that was only ever fed its
//! first `n` tokens. Capacity grows by half again when a forward needs more (amortised copies, at most 50%
//! unused rows); [`KvCache::shrink_to_fit`] gives the slack back.

use candle_core::{DType, Device, Tensor};

use crate::error::{Result, RuntimeError};

/// Rows added on the first allocation and the granularity of growth.
const GROW_ROWS: usize = 64;

/// Keys and values of one layer: `[capacity, n_kv_head, head_dim]` each.
#[derive(Debug, Clone)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// The key/value cache of one sequence across all layers of one model.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
    capacity: usize,
    n_kv_head: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
}

impl KvCache {
    /// An empty cache for a model with these dimensions; nothing is allocated until the first forward.
    pub fn new(
        n_layer: usize,
        n_kv_head: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            layers: vec![None; n_layer],
            len: 0,
            capacity: 0,
            n_kv_head,
            head_dim,
            dtype,
            device: device.clone(),
        }
    }

    /// Tokens held (the sequence's past length for the next forward).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows allocated per layer.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes allocated for keys and values over all layers.
    pub fn allocated_bytes(&self) -> usize {
        2 * self.layers.len()
            * self.capacity
            * self.n_kv_head
            * self.head_dim
            * self.dtype.size_in_bytes()
    }

    /// Keeps the first `len` tokens and forgets the rest (rollback of rejected draft tokens).
    ///
    /// Fails if `len` is more than the tokens held.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(RuntimeError::InvalidInput(format!(
                "cannot truncate a KV cache of {} tokens to {len}",
                self.len
            )));
        }
        self.len = len;
        Ok(())
    }

    /// Forgets everything but keeps the allocation.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Reallocates to exactly the tokens held, releasing unused rows.
    pub fn shrink_to_fit(&mut self) -> Result<()> {
        if self.capacity != self.len {
            self.reallocate(self.len)?;
        }
        Ok(())
    }

    /// Valid keys of `layer`, `[len, n_kv_head, head_dim]` (a view, not a copy).
    pub fn keys(&self, layer: usize) -> Result<Tensor> {
        self.view(layer, self.len).map(|(k, _)| k)
    }

    /// Valid values of `layer`, `[len, n_kv_head, head_dim]` (a view, not a copy).
    pub fn values(&self, layer: usize) -> Result<Tensor> {
        self.view(layer, self.len).map(|(_, v)| v)
    }

    /// Makes room for `additional` tokens past the current length.
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<()> {
        let needed = self.len + additional;
        if needed <= self.capacity {
            return Ok(());
        }
        let grown = (self.capacity + self.capacity / 2).max(needed);
        self.reallocate(grown.div_ceil(GROW_ROWS) * GROW_ROWS)
    }

    /// Writes `k`, `v` (`[n, n_kv_head, head_dim]`, contiguous) of `layer` at rows `at..at + n`. The
    /// caller has reserved the rows; the length is advanced separately by [`KvCache::advance`].
    pub(crate) fn write(&mut self, layer: usize, at: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = k.dim(0)?;
        if at + n > self.capacity {
            return Err(RuntimeError::InvalidInput(format!(
                "KV write of rows {at}..{} past capacity {}",
                at + n,
                self.capacity
            )));
        }
        let kv = self.layer(layer)?;
        kv.k.slice_set(k, 0, at)?;
        kv.v.slice_set(v, 0, at)?;
        Ok(())
    }

    /// Keys and values of `layer` for rows `0..upto`.
    pub(crate) fn view(&self, layer: usize, upto: usize) -> Result<(Tensor, Tensor)> {
        if upto > self.capacity {
            return Err(RuntimeError::InvalidInput(format!(
                "KV view of {upto} rows past capacity {}",
                self.capacity
            )));
        }
        match self.layers.get(layer) {
            Some(Some(kv)) => Ok((kv.k.narrow(0, 0, upto)?, kv.v.narrow(0, 0, upto)?)),
            Some(None) if upto == 0 => {
                let empty =
                    Tensor::zeros((0, self.n_kv_head, self.head_dim), self.dtype, &self.device)?;
                Ok((empty.clone(), empty))
            }
            _ => Err(RuntimeError::InvalidInput(format!(
                "KV cache has no layer {layer}"
            ))),
        }
    }

    /// Declares `n` more rows valid after a forward wrote them in every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    fn layer(&mut self, layer: usize) -> Result<&mut LayerKv> {
        match self.layers.get_mut(layer) {
            Some(Some(kv)) => Ok(kv),
            _ => Err(RuntimeError::InvalidInput(format!(
                "KV cache has no allocated layer {layer}"
            ))),
        }
    }

    /// Moves every layer into buffers of `rows` rows, keeping the valid prefix.
    fn reallocate(&mut self, rows: usize) -> Result<()> {
        let shape = (rows, self.n_kv_head, self.head_dim);
        for slot in self.layers.iter_mut() {
            let k = Tensor::zeros(shape, self.dtype, &self.device)?;
            let v = Tensor::zeros(shape, self.dtype, &self.device)?;
            if let Some(old) = slot.as_ref() {
                if self.len > 0 {
                    k.slice_set(&old.k.narrow(0, 0, self.len)?, 0, 0)?;
                    v.slice_set(&old.v.narrow(0, 0, self.len)?, 0, 0)?;
                }
            }
            *slot = Some(LayerKv { k, v });
        }
        self.capacity = rows;
        Ok(())
    }
}
