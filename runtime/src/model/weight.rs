//! A quantized weight matrix for `x Wᵀ`, optionally re-packed at load time into a type with fast CPU
//! kernels.
//!
//! Why: candle's CPU kernels for the legacy block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) are compute-bound
//! and scale linearly with the rows multiplied, while its K-quant kernels (Q4_K, Q6_K) reuse each weight
//! block across rows. Measured on the 2-core AVX2 machine (`cargo run --release -p specsim-runtime
//! --example qmm`), a 4864×1024 matrix at 1, 4 and 16 rows: Q8_0 0.33 / 1.39 / 5.42 ms, Q6_K 0.16 / 0.25 /
//! 0.92 ms. A draft model stored in those legacy types therefore drafts a batch of four sequences at
//! roughly four times the cost of one. K-quants need the input dimension to be a multiple of 256
//! (Qwen2.5-0.5B's is 896), so the matrix is zero-padded along it and the input padded to match: the
//! product is unchanged up to the Q6_K rounding of the weights (6.56 bits per weight, finer than the
//! Q5_0 the draft ships in). Only the draft is re-packed by default: its exact weights do not affect what
//! speculative decoding emits, while the target's do.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor, D};

use crate::error::Result;

/// The K-quant super-block size: the input dimension of a re-packed matrix is a multiple of it.
const QK_K: usize = 256;

/// A weight matrix `[out, in]` for `x Wᵀ`.
#[derive(Debug, Clone)]
pub(crate) struct Weight {
    matmul: QMatMul,
    /// Input features the caller provides.
    in_features: usize,
    /// Input features of the stored matrix (≥ `in_features`; larger when zero-padded).
    stored_in: usize,
}

/// Whether candle's CPU kernels for `dtype` decode each weight block once per input row.
fn slow_on_cpu(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_0
    )
}

impl Weight {
    /// Wraps a stored tensor `[out, in]`; with `repack`, a legacy block type on the CPU becomes Q6_K
    /// (input dimension zero-padded to a multiple of 256).
    pub fn new(t: Arc<QTensor>, repack: bool, device: &Device) -> Result<Self> {
        let (_, in_features) = t.shape().dims2()?;
        if !(repack && device.is_cpu() && slow_on_cpu(t.dtype())) {
            return Ok(Weight {
                matmul: QMatMul::from_arc(t)?,
                in_features,
                stored_in: in_features,
            });
        }
        let stored_in = in_features.div_ceil(QK_K) * QK_K;
        let mut w = t.dequantize(device)?;
        if stored_in > in_features {
            w = w.pad_with_zeros(D::Minus1, 0, stored_in - in_features)?;
        }
        let q = QTensor::quantize(&w, GgmlDType::Q6K)?;
        Ok(Weight {
            matmul: QMatMul::from_qtensor(q)?,
            in_features,
            stored_in,
        })
    }

    /// `x`: `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.stored_in == self.in_features {
            return Ok(self.matmul.forward(x)?);
        }
        let x = x.pad_with_zeros(D::Minus1, 0, self.stored_in - self.in_features)?;
        Ok(self.matmul.forward(&x)?)
    }

    /// The stored type (Q6_K once re-packed).
    #[cfg(test)]
    pub fn dtype(&self) -> Option<GgmlDType> {
        match &self.matmul {
            QMatMul::QTensor(t) => Some(t.dtype()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repacked_padded_matrix_gives_the_same_product_within_q6k_rounding() {
        // 40 × 96 (96 is not a multiple of 256): Q8_0 stored, Q6_K re-packed with 160 zero columns.
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (40, 96), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (5, 96), &dev).unwrap();
        let exact = x.matmul(&w.t().unwrap()).unwrap();
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let plain = Weight::new(Arc::new(q8), false, &dev).unwrap();
        assert_eq!(plain.dtype(), Some(GgmlDType::Q8_0));
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let packed = Weight::new(Arc::new(q8), true, &dev).unwrap();
        assert_eq!(packed.dtype(), Some(GgmlDType::Q6K));
        assert_eq!(packed.stored_in, 256);
        let got = packed.forward(&x).unwrap();
        assert_eq!(got.dims(), &[5, 40]);
        // Q6_K keeps 6 bits per weight with 8-bit scales per 16: a relative weight error of a few percent;
        // over 96 products of unit normals the error of a sum stays well below 0.1 of its √96 ≈ 9.8 scale.
        let err = (got - &exact)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1.0, "max abs error {err}");
        // And exactly what padding both sides by hand and multiplying in Q6_K gives: the zero columns
        // and the zero inputs contribute nothing.
        let w8 = QTensor::quantize(&w, GgmlDType::Q8_0)
            .unwrap()
            .dequantize(&dev)
            .unwrap();
        let wp = w8.pad_with_zeros(D::Minus1, 0, 160).unwrap();
        let reference = QMatMul::from_qtensor(QTensor::quantize(&wp, GgmlDType::Q6K).unwrap())
            .unwrap()
            .forward(&x.pad_with_zeros(D::Minus1, 0, 160).unwrap())
            .unwrap();
        let same = (packed.forward(&x).unwrap() - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(same, 0.0);
        // Already-fast types are kept as stored.
        let w256 = Tensor::randn(0f32, 1.0, (8, 256), &dev).unwrap();
        let q4k = QTensor::quantize(&w256, GgmlDType::Q4K).unwrap();
        assert_eq!(
            Weight::new(Arc::new(q4k), true, &dev).unwrap().dtype(),
            Some(GgmlDType::Q4K)
        );
    }
}
