//! Re-quantizing GGUF tensors from one type to another (`scripts/fetch-models.sh` uses it via the
//! `requantize` binary).
//!
//! Why: the shipped Qwen2.5-Coder-0.5B draft is mostly Q5_0, for which candle has no SIMD dot product, so
//! it runs barely faster than the 1.5B target and speculation cannot pay. Dequantizing those tensors and
//! quantizing them to Q8_0 (which has AVX2 kernels) once, offline, fixes that while keeping greedy
//! agreement with the target (93% measured, see `../shared/models.md`).
//!
//! Metadata is copied unchanged (keys sorted, so the output is deterministic); tensors keep their order
//! in the source file; tensors of other types are copied bit for bit.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::path::Path;

/// Why re-quantization failed.
#[derive(Debug, thiserror::Error)]
pub enum RequantizeError {
    /// Reading or writing a file failed.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// A tensor could not be converted (candle refused a shape or type).
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What went wrong.
        msg: String,
    },
    /// A type name is not one of the supported ones.
    #[error("unknown tensor type `{0}` (expected one of f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0)")]
    UnknownType(String),
}

/// Parses a GGML type name (`q5_0`, `Q8_0`, …).
pub fn parse_dtype(s: &str) -> Result<GgmlDType, RequantizeError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q5_0" => GgmlDType::Q5_0,
        "q5_1" => GgmlDType::Q5_1,
        "q8_0" => GgmlDType::Q8_0,
        "q2_k" | "q2k" => GgmlDType::Q2K,
        "q3_k" | "q3k" => GgmlDType::Q3K,
        "q4_k" | "q4k" => GgmlDType::Q4K,
        "q5_k" | "q5k" => GgmlDType::Q5K,
        "q6_k" | "q6k" => GgmlDType::Q6K,
        "q8_k" | "q8k" => GgmlDType::Q8K,
        _ => return Err(RequantizeError::UnknownType(s.to_string())),
    })
}

/// What [`requantize_file`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequantizeReport {
    /// Tensors converted.
    pub converted: usize,
    /// Tensors copied unchanged (other types, or a shape the target type's block size does not divide).
    pub copied: usize,
}

/// Converts every tensor whose type is in `from` to `to`; see the module docs.
pub fn requantize_file(
    input: &Path,
    output: &Path,
    from: &[GgmlDType],
    to: GgmlDType,
) -> Result<RequantizeReport, RequantizeError> {
    let io = |p: &Path, e: &dyn std::fmt::Display| RequantizeError::Io {
        path: p.display().to_string(),
        msg: e.to_string(),
    };
    let mut file = std::fs::File::open(input).map_err(|e| io(input, &e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| io(input, &e))?;

    let mut names: Vec<(&String, u64)> = content
        .tensor_infos
        .iter()
        .map(|(n, i)| (n, i.offset))
        .collect();
    names.sort_by_key(|&(n, off)| (off, n.clone()));
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut report = RequantizeReport::default();
    for (name, _) in names {
        let terr = |e: candle_core::Error| RequantizeError::Tensor {
            name: name.clone(),
            msg: e.to_string(),
        };
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(terr)?;
        let last_dim = q.shape().dims().last().copied().unwrap_or(0);
        if from.contains(&q.dtype()) && last_dim % to.block_size() == 0 {
            let t = q.dequantize(&Device::Cpu).map_err(terr)?;
            tensors.push((name.clone(), QTensor::quantize(&t, to).map_err(terr)?));
            report.converted += 1;
        } else {
            tensors.push((name.clone(), q));
            report.copied += 1;
        }
    }

    let mut metadata: Vec<(&String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in metadata.iter_mut() {
        // candle writes tensor data with 32-byte alignment.
        if k.as_str() == "general.alignment" {
            *v = Value::U32(32);
        }
    }
    let md_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let out = std::fs::File::create(output).map_err(|e| io(output, &e))?;
    let mut w = std::io::BufWriter::new(out);
    gguf_file::write(&mut w, &md_refs, &t_refs).map_err(|e| io(output, &e))?;
    std::io::Write::flush(&mut w).map_err(|e| io(output, &e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn write_gguf(path: &Path, tensors: &[(&str, &QTensor)]) {
        let arch = Value::String("qwen2".into());
        let mut f = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &[("general.architecture", &arch)], tensors).unwrap();
    }

    #[test]
    fn q5_0_tensors_become_q8_0_and_others_are_copied_exactly() {
        let dir = std::env::temp_dir().join(format!("specsim-requantize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, dst) = (dir.join("in.gguf"), dir.join("out.gguf"));
        // Values on a coarse grid so the Q5_0 round trip is exact-ish and the check below is meaningful.
        let vals: Vec<f32> = (0..4 * 64)
            .map(|i| ((i * 37 % 29) as f32 - 14.0) / 16.0)
            .collect();
        let t = Tensor::from_vec(vals.clone(), (4, 64), &Device::Cpu).unwrap();
        let q5 = QTensor::quantize(&t, GgmlDType::Q5_0).unwrap();
        let f32t = QTensor::quantize(&t, GgmlDType::F32).unwrap();
        write_gguf(&src, &[("blk.0.w", &q5), ("norm", &f32t)]);

        let r = requantize_file(&src, &dst, &[GgmlDType::Q5_0], GgmlDType::Q8_0).unwrap();
        assert_eq!(
            r,
            RequantizeReport {
                converted: 1,
                copied: 1
            }
        );

        let mut f = std::fs::File::open(&dst).unwrap();
        let c = gguf_file::Content::read(&mut f).unwrap();
        assert_eq!(
            c.metadata["general.architecture"].to_string().unwrap(),
            "qwen2"
        );
        let w = c.tensor(&mut f, "blk.0.w", &Device::Cpu).unwrap();
        assert_eq!(w.dtype(), GgmlDType::Q8_0);
        assert_eq!(w.shape().dims(), &[4, 64]);
        // Q8_0 stores each 32-value block as round(x / d) with d = max|x| / 127 (d itself in f16, relative
        // error below 2^-11, i.e. at most 127·d·2^-11 ≈ 0.062·d more): the error against the Q5_0 values
        // it was made from is at most d / 2 + 0.062·d.
        let before: Vec<f32> = q5
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let after: Vec<f32> = w
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (blk_b, blk_a) in before.chunks(32).zip(after.chunks(32)) {
            let d = blk_b.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
            for (b, a) in blk_b.iter().zip(blk_a) {
                assert!((a - b).abs() <= d * 0.563 + 1e-7, "{a} vs {b} (d = {d})");
            }
        }
        let n = c.tensor(&mut f, "norm", &Device::Cpu).unwrap();
        assert_eq!(n.dtype(), GgmlDType::F32);
        let nv: Vec<f32> = n
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(nv, vals);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn type_names_parse_and_bad_ones_are_errors() {
        assert_eq!(parse_dtype("Q5_0").unwrap(), GgmlDType::Q5_0);
        assert_eq!(parse_dtype("q8_0").unwrap(), GgmlDType::Q8_0);
        assert_eq!(parse_dtype("Q4_K").unwrap(), GgmlDType::Q4K);
        assert_eq!(parse_dtype("q6k").unwrap(), GgmlDType::Q6K);
        assert!(matches!(
            parse_dtype("q9_9"),
            Err(RequantizeError::UnknownType(_))
        ));
        let e = requantize_file(
            Path::new("/nonexistent/x.gguf"),
            Path::new("/tmp/y.gguf"),
            &[],
            GgmlDType::Q8_0,
        );
        assert!(matches!(e, Err(RequantizeError::Io { .. })));
    }
}
