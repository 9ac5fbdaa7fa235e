//! Tiny random-weight Qwen2 and Llama GGUF files, written in memory, so that tests (here and in other
//! crates) exercise the real loaders and forwards without downloading anything.
//!
//! Weights are drawn uniformly from a seeded generator and scaled so that logits have a standard
//! deviation of a few units: distributions are peaked enough that greedy decoding is stable against
//! floating-point noise, yet far from one-hot. Matrices are stored as Q8_0 (so the quantized matmul
//! kernels run) unless [`TinySpec::quantized`] is false, norms and biases as f32.
//!
//! A draft for a tiny target is the same spec with [`TinySpec::perturbed`]: the target's weights plus
//! independent noise, so that the draft agrees with the target often but not always, and speculation
//! has both accepted and rejected tokens to get right.

use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Model;
use crate::error::Result;

/// Architecture of a tiny model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyArch {
    /// Q/K/V biases, halves rotary pairing, separate output matrix.
    Qwen2,
    /// No biases, interleaved rotary pairing, output tied to the embedding.
    Llama,
}

/// Shape and seed of a tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinySpec {
    /// Architecture.
    pub arch: TinyArch,
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden size (a multiple of 32 for Q8_0 blocks).
    pub hidden: usize,
    /// Feed-forward size (a multiple of 32).
    pub ffn: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Context length written to the metadata.
    pub context: usize,
    /// End-of-sequence token written to the metadata.
    pub eos: Option<u32>,
    /// Seed of the weights.
    pub seed: u64,
    /// Optional (seed, relative scale) of noise added to every weight: a correlated draft.
    pub noise: Option<(u64, f32)>,
    /// Store matrices as Q8_0 (true) or f32 (false; for comparisons with a naive f32 forward).
    pub quantized: bool,
}

impl TinySpec {
    /// A 2-layer model: vocab 96, hidden 64, 4 query heads over 2 KV heads, FFN 128, context 512.
    pub fn new(arch: TinyArch, seed: u64) -> Self {
        Self {
            arch,
            vocab: 96,
            hidden: 64,
            ffn: 128,
            n_layer: 2,
            n_head: 4,
            n_kv_head: 2,
            context: 512,
            eos: None,
            seed,
            noise: None,
            quantized: true,
        }
    }

    /// The same model with independent noise of relative size `scale` added to every weight.
    pub fn perturbed(&self, noise_seed: u64, scale: f32) -> Self {
        Self {
            noise: Some((noise_seed, scale)),
            ..self.clone()
        }
    }

    /// The GGUF file's bytes.
    pub fn gguf_bytes(&self) -> Result<Vec<u8>> {
        let arch = match self.arch {
            TinyArch::Qwen2 => "qwen2",
            TinyArch::Llama => "llama",
        };
        let mut w = Weights::new(self);
        let matrix_dtype = if self.quantized {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        let (h, f, v) = (self.hidden, self.ffn, self.vocab);
        let kv = self.n_kv_head * (h / self.n_head);
        // Uniform(-a, a) has variance a²/3: a = gain·sqrt(3/fan_in) gives outputs of standard deviation
        // ≈ gain for unit-variance inputs.
        let logit_gain = 4.0;
        let mut tensors = vec![(
            "token_embd.weight".to_string(),
            w.matrix(matrix_dtype, v, h, 0.5, 1)?,
        )];
        if self.arch == TinyArch::Qwen2 {
            tensors.push((
                "output.weight".into(),
                w.matrix(matrix_dtype, v, h, logit_gain, h)?,
            ));
        }
        tensors.push(("output_norm.weight".into(), w.norm(h)?));
        for l in 0..self.n_layer {
            let p = format!("blk.{l}");
            tensors.push((format!("{p}.attn_norm.weight"), w.norm(h)?));
            tensors.push((
                format!("{p}.attn_q.weight"),
                w.matrix(matrix_dtype, h, h, 1.0, h)?,
            ));
            tensors.push((
                format!("{p}.attn_k.weight"),
                w.matrix(matrix_dtype, kv, h, 1.0, h)?,
            ));
            tensors.push((
                format!("{p}.attn_v.weight"),
                w.matrix(matrix_dtype, kv, h, 1.0, h)?,
            ));
            if self.arch == TinyArch::Qwen2 {
                tensors.push((format!("{p}.attn_q.bias"), w.vector(h, 0.1)?));
                tensors.push((format!("{p}.attn_k.bias"), w.vector(kv, 0.1)?));
                tensors.push((format!("{p}.attn_v.bias"), w.vector(kv, 0.1)?));
            }
            tensors.push((
                format!("{p}.attn_output.weight"),
                w.matrix(matrix_dtype, h, h, 0.5, h)?,
            ));
            tensors.push((format!("{p}.ffn_norm.weight"), w.norm(h)?));
            tensors.push((
                format!("{p}.ffn_gate.weight"),
                w.matrix(matrix_dtype, f, h, 1.0, h)?,
            ));
            tensors.push((
                format!("{p}.ffn_up.weight"),
                w.matrix(matrix_dtype, f, h, 1.0, h)?,
            ));
            tensors.push((
                format!("{p}.ffn_down.weight"),
                w.matrix(matrix_dtype, h, f, 0.5, f)?,
            ));
        }
        let u = |x: usize| gguf_file::Value::U32(x as u32);
        let mut meta = vec![
            (
                "general.architecture".to_string(),
                gguf_file::Value::String(arch.into()),
            ),
            (format!("{arch}.block_count"), u(self.n_layer)),
            (format!("{arch}.embedding_length"), u(h)),
            (format!("{arch}.feed_forward_length"), u(f)),
            (format!("{arch}.attention.head_count"), u(self.n_head)),
            (format!("{arch}.attention.head_count_kv"), u(self.n_kv_head)),
            (format!("{arch}.context_length"), u(self.context)),
            (
                format!("{arch}.attention.layer_norm_rms_epsilon"),
                gguf_file::Value::F32(1e-6),
            ),
            (
                format!("{arch}.rope.freq_base"),
                gguf_file::Value::F32(10_000.0),
            ),
        ];
        if let Some(eos) = self.eos {
            meta.push((
                "tokenizer.ggml.eos_token_id".into(),
                gguf_file::Value::U32(eos),
            ));
        }
        let meta_refs: Vec<(&str, &gguf_file::Value)> =
            meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &meta_refs, &tensor_refs)?;
        Ok(out.into_inner())
    }

    /// Writes the GGUF file to `path`.
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let bytes = self.gguf_bytes()?;
        std::fs::write(path, bytes).map_err(|source| crate::error::RuntimeError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Builds the model directly (through the GGUF loader).
    pub fn build(&self, device: &Device) -> Result<Model> {
        Model::from_reader(&mut Cursor::new(self.gguf_bytes()?), device, None)
    }

    /// Builds the model as a draft is loaded: Q8_0 matrices re-packed to Q6_K (see
    /// [`Model::load_repacked`]).
    pub fn build_repacked(&self, device: &Device) -> Result<Model> {
        Model::from_reader_with(&mut Cursor::new(self.gguf_bytes()?), device, None, true)
    }
}

/// Draws weights in a fixed order from the spec's seed, plus the optional noise stream.
struct Weights {
    rng: StdRng,
    noise: Option<(StdRng, f32)>,
}

impl Weights {
    fn new(spec: &TinySpec) -> Self {
        Self {
            rng: StdRng::seed_from_u64(spec.seed),
            noise: spec
                .noise
                .map(|(seed, scale)| (StdRng::seed_from_u64(seed), scale)),
        }
    }

    /// `n` values uniform in `(-a, a)`, plus noise of relative size `scale` if set.
    fn values(&mut self, n: usize, a: f32) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|_| a * (2.0 * self.rng.random::<f32>() - 1.0))
            .collect();
        if let Some((rng, scale)) = self.noise.as_mut() {
            for x in v.iter_mut() {
                *x += *scale * a * (2.0 * rng.random::<f32>() - 1.0);
            }
        }
        v
    }

    fn matrix(
        &mut self,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        gain: f32,
        fan_in: usize,
    ) -> Result<QTensor> {
        let a = gain * (3.0 / fan_in as f32).sqrt();
        let t = Tensor::from_vec(self.values(rows * cols, a), (rows, cols), &Device::Cpu)?;
        Ok(QTensor::quantize(&t, dtype)?)
    }

    fn vector(&mut self, n: usize, a: f32) -> Result<QTensor> {
        let t = Tensor::from_vec(self.values(n, a), n, &Device::Cpu)?;
        Ok(QTensor::quantize(&t, GgmlDType::F32)?)
    }

    /// A norm scale around 1.
    fn norm(&mut self, n: usize) -> Result<QTensor> {
        let v: Vec<f32> = self.values(n, 0.2).into_iter().map(|x| 1.0 + x).collect();
        let t = Tensor::from_vec(v, n, &Device::Cpu)?;
        Ok(QTensor::quantize(&t, GgmlDType::F32)?)
    }
}
