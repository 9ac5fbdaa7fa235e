//! Reading a GGUF file: metadata lookups and tensor loads that name what is missing.

use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{Device, Tensor};

use super::weight::Weight;
use crate::error::{Result, RuntimeError};

/// A parsed GGUF header plus the reader its tensors come from.
pub(crate) struct Gguf<'r, R> {
    pub content: gguf_file::Content,
    pub reader: &'r mut R,
    pub device: Device,
    /// Re-pack weight matrices of slow CPU types (see [`Weight`]).
    pub repack: bool,
}

impl<R: Read + Seek> Gguf<'_, R> {
    fn value(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| RuntimeError::Gguf(format!("missing metadata key {key}")))
    }

    /// A required integer metadata value.
    pub fn u32(&self, key: &str) -> Result<u32> {
        let v = self.value(key)?;
        v.to_u32()
            .or_else(|_| v.to_u64().map(|x| x as u32))
            .or_else(|_| v.to_i32().map(|x| x as u32))
            .map_err(|_| RuntimeError::Gguf(format!("metadata key {key} is not an integer")))
    }

    /// An optional integer metadata value.
    pub fn u32_opt(&self, key: &str) -> Option<u32> {
        self.content
            .metadata
            .contains_key(key)
            .then(|| self.u32(key).ok())
            .flatten()
    }

    /// A float metadata value, or `default` when absent.
    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => v
                .to_f32()
                .map_err(|_| RuntimeError::Gguf(format!("metadata key {key} is not a float"))),
        }
    }

    /// Whether the file holds a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A tensor as stored (quantized or not).
    pub fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has(name) {
            return Err(RuntimeError::Gguf(format!("missing tensor {name}")));
        }
        Ok(self.content.tensor(self.reader, name, &self.device)?)
    }

    /// A weight matrix for `x Wᵀ`, kept quantized (re-packed if the file is loaded with `repack`).
    pub fn matmul(&mut self, name: &str) -> Result<Weight> {
        let t = std::sync::Arc::new(self.qtensor(name)?);
        self.weight(t)
    }

    /// A weight matrix from an already loaded tensor (a tied output projection).
    pub fn weight(&self, t: std::sync::Arc<QTensor>) -> Result<Weight> {
        Weight::new(t, self.repack, &self.device)
    }

    /// A small tensor (norm scale, bias) dequantized to f32.
    pub fn dense(&mut self, name: &str) -> Result<Tensor> {
        let device = self.device.clone();
        Ok(self.qtensor(name)?.dequantize(&device)?)
    }
}
