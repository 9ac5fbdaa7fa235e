//! Built-in hardware and model specifications for the roofline cost model (public datasheet figures;
//! dense bf16/fp16 peaks without sparsity).

use serde::{Deserialize, Serialize};

/// An accelerator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSpec {
    /// Catalog name.
    pub name: String,
    /// Memory, GB (10^9 bytes).
    pub memory_gb: f64,
    /// Memory bandwidth, TB/s.
    pub mem_bandwidth_tbs: f64,
    /// Dense bf16/fp16 tensor peak, TFLOP/s.
    pub peak_tflops: f64,
    /// Interconnect bandwidth per GPU for tensor-parallel all-reduce, GB/s.
    pub interconnect_gbs: f64,
}

/// A mixture-of-experts MLP: every layer holds `experts` SwiGLU experts of the model's `ffn` width and
/// routes each token to `top_k` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeSpec {
    /// Experts per layer.
    pub experts: u32,
    /// Experts each token is routed to.
    pub top_k: u32,
}

/// A decoder-only transformer (SwiGLU MLP, RoPE, grouped-query attention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Catalog name.
    pub name: String,
    /// Decoder layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Attention heads.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Head dimension when it is not `hidden / heads` (Qwen3: 128 with hidden 5120 and 64 heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u32>,
    /// MLP intermediate size.
    pub ffn: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Input and output embeddings share weights.
    #[serde(default)]
    pub tied_embeddings: bool,
    /// Bytes per weight (2 for bf16/fp16; ~0.56 for Q4_K).
    #[serde(default = "two")]
    pub weight_bytes: f64,
    /// Bytes per KV-cache element (2 for fp16).
    #[serde(default = "two")]
    pub kv_bytes: f64,
    /// Mixture-of-experts MLP (None: dense). The roofline model prices a MoE model as if every
    /// expert ran; operator-table profiles price the routed layer from the MoE table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeSpec>,
}

fn two() -> f64 {
    2.0
}

impl ModelSpec {
    /// Head dimension (`hidden / heads` unless the model says otherwise).
    pub fn head_dim(&self) -> f64 {
        match self.head_dim {
            Some(d) => d as f64,
            None => self.hidden as f64 / self.heads as f64,
        }
    }

    /// Width of the query projection's output (`heads × head_dim`; the hidden size for most models).
    pub fn q_dim(&self) -> f64 {
        self.heads as f64 * self.head_dim()
    }

    /// Weights in the decoder layers (attention projections, MLP or every expert and the router).
    pub fn layer_params(&self) -> f64 {
        let h = self.hidden as f64;
        let kv = self.kv_heads as f64 * self.head_dim();
        let attn = 2.0 * h * self.q_dim() + 2.0 * h * kv;
        let mlp = 3.0 * h * self.ffn as f64;
        let mlp = match self.moe {
            Some(m) => m.experts as f64 * (mlp + h),
            None => mlp,
        };
        self.layers as f64 * (attn + mlp)
    }

    /// Output head weights (vocab × hidden), read by every forward.
    pub fn head_params(&self) -> f64 {
        self.vocab as f64 * self.hidden as f64
    }

    /// Total parameters (embedding counted once when tied).
    pub fn total_params(&self) -> f64 {
        let emb = if self.tied_embeddings {
            0.0
        } else {
            self.head_params()
        };
        self.layer_params() + self.head_params() + emb
    }

    /// Bytes of all weights.
    pub fn weight_bytes_total(&self) -> f64 {
        self.total_params() * self.weight_bytes
    }

    /// KV-cache bytes per token (keys and values of every layer).
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * self.layers as f64 * self.kv_heads as f64 * self.head_dim() * self.kv_bytes
    }
}

fn hw(name: &str, memory_gb: f64, bw: f64, tflops: f64, link: f64) -> HardwareSpec {
    HardwareSpec {
        name: name.into(),
        memory_gb,
        mem_bandwidth_tbs: bw,
        peak_tflops: tflops,
        interconnect_gbs: link,
    }
}

#[allow(clippy::too_many_arguments)]
fn model(
    name: &str,
    layers: u32,
    hidden: u32,
    heads: u32,
    kv_heads: u32,
    ffn: u32,
    vocab: u32,
    tied: bool,
) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        layers,
        hidden,
        heads,
        kv_heads,
        ffn,
        vocab,
        head_dim: None,
        tied_embeddings: tied,
        weight_bytes: 2.0,
        kv_bytes: 2.0,
        moe: None,
    }
}

/// The built-in accelerators.
pub fn hardware() -> Vec<HardwareSpec> {
    vec![
        hw("A100-80G", 80.0, 2.04, 312.0, 600.0),
        hw("H100-SXM", 80.0, 3.35, 989.0, 900.0),
        hw("H200", 141.0, 4.8, 989.0, 900.0),
        hw("L40S", 48.0, 0.864, 362.0, 64.0),
        hw("L40", 48.0, 0.864, 181.0, 64.0),
    ]
}

/// The built-in models.
pub fn models() -> Vec<ModelSpec> {
    vec![
        model("Vicuna-68M", 2, 768, 12, 12, 3072, 32000, false),
        model("Vicuna-160M", 12, 768, 12, 12, 3072, 32000, false),
        model("Llama-2-7B", 32, 4096, 32, 32, 11008, 32000, false),
        model("Vicuna-7B", 32, 4096, 32, 32, 11008, 32000, false),
        model("Vicuna-33B", 60, 6656, 52, 52, 17920, 32000, false),
        model("Llama-3.2-1B", 16, 2048, 32, 8, 8192, 128256, true),
        model("Llama-3.1-8B", 32, 4096, 32, 8, 14336, 128256, false),
        model("Llama-3.3-70B", 80, 8192, 64, 8, 28672, 128256, false),
        // Llama-3.1-70B has Llama-3.3-70B's shape (config.json of both).
        model("Llama-3.1-70B", 80, 8192, 64, 8, 28672, 128256, false),
        model("Llama-3.1-405B", 126, 16384, 128, 8, 53248, 128256, false),
        model("Llama-2-70B", 80, 8192, 64, 8, 28672, 32000, false),
        model("Qwen2.5-7B", 28, 3584, 28, 4, 18944, 152064, false),
        model("Qwen2.5-32B", 64, 5120, 40, 8, 27648, 152064, false),
        ModelSpec {
            head_dim: Some(128),
            ..model("Qwen3-8B", 36, 4096, 32, 8, 12288, 151936, false)
        },
        ModelSpec {
            head_dim: Some(128),
            ..model("Qwen3-32B", 64, 5120, 64, 8, 25600, 151936, false)
        },
        // The dense models of BLIS's vLLM ground truth (config.json of each on the Hugging Face hub).
        model("CodeLlama-34B", 48, 8192, 64, 8, 22016, 32000, false),
        model("Yi-34B", 60, 7168, 56, 8, 20480, 64000, false),
        ModelSpec {
            head_dim: Some(128),
            ..model("Qwen3-14B", 40, 5120, 40, 8, 17408, 151936, false)
        },
        ModelSpec {
            head_dim: Some(128),
            ..model("Mistral-Nemo-12B", 40, 5120, 32, 8, 14336, 131072, false)
        },
        ModelSpec {
            moe: Some(MoeSpec {
                experts: 8,
                top_k: 2,
            }),
            ..model("Mixtral-8x7B", 32, 4096, 32, 8, 14336, 32000, false)
        },
        ModelSpec {
            moe: Some(MoeSpec {
                experts: 8,
                top_k: 2,
            }),
            ..model("Mixtral-8x22B", 56, 6144, 48, 8, 16384, 32768, false)
        },
        model("Qwen2.5-Coder-0.5B", 24, 896, 14, 2, 4864, 151936, true),
        model("Qwen2.5-Coder-1.5B", 28, 1536, 12, 2, 8960, 151936, true),
    ]
}

/// Looks up an accelerator by name (case-insensitive).
pub fn find_hardware(name: &str) -> Option<HardwareSpec> {
    hardware()
        .into_iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
}

/// Looks up a model by name (case-insensitive).
pub fn find_model(name: &str) -> Option<ModelSpec> {
    models()
        .into_iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama2_7b_has_about_6_7_billion_parameters() {
        // Published count: 6.74 B.
        let m = find_model("llama-2-7b").unwrap();
        assert!(
            (m.total_params() / 1e9 - 6.74).abs() < 0.02,
            "{}",
            m.total_params()
        );
        // KV per token: 2 · 32 layers · 4096 · 2 bytes = 512 KiB.
        assert_eq!(m.kv_bytes_per_token(), 524_288.0);
    }

    #[test]
    fn llama3_70b_and_qwen_sizes_match_published_counts() {
        let m = find_model("Llama-3.3-70B").unwrap();
        assert!(
            (m.total_params() / 1e9 - 70.6).abs() < 0.2,
            "{}",
            m.total_params()
        );
        // Qwen3-32B: 32.8 B published (config: head_dim 128 with 64 heads over hidden 5120).
        let q3 = find_model("Qwen3-32B").unwrap();
        assert!(
            (q3.total_params() / 1e9 - 32.8).abs() < 0.2,
            "{}",
            q3.total_params()
        );
        // Llama-3.1-8B: 8.03 B published; Qwen2.5-7B: 7.61 B.
        let l8 = find_model("Llama-3.1-8B").unwrap();
        assert!((l8.total_params() / 1e9 - 8.03).abs() < 0.02);
        let q7 = find_model("Qwen2.5-7B").unwrap();
        assert!(
            (q7.total_params() / 1e9 - 7.61).abs() < 0.02,
            "{}",
            q7.total_params()
        );
        let q = find_model("Qwen2.5-Coder-1.5B").unwrap();
        // 1.54 B published (1.31 B without embeddings): layer params ≈ 1.31 B.
        assert!(
            (q.layer_params() / 1e9 - 1.31).abs() < 0.02,
            "{}",
            q.layer_params()
        );
    }

    #[test]
    fn ground_truth_models_match_published_counts() {
        // Published parameter counts (model cards): Mixtral-8x7B 46.7 B and 8x22B 140.6 B (all
        // experts), CodeLlama-34B 33.7 B, Yi-34B 34.4 B, Qwen3-14B
        // 14.8 B, Mistral-Nemo 12.2 B. The catalog leaves out norms and biases (< 0.01 B).
        for (name, billions) in [
            ("Mixtral-8x7B", 46.7),
            ("Mixtral-8x22B", 140.6),
            ("CodeLlama-34B", 33.7),
            ("Yi-34B", 34.4),
            ("Qwen3-14B", 14.8),
            ("Mistral-Nemo-12B", 12.2),
        ] {
            let m = find_model(name).unwrap();
            assert!(
                (m.total_params() / 1e9 - billions).abs() < 0.1,
                "{name}: {}",
                m.total_params()
            );
        }
        // Mistral-Nemo's attention is narrower than its hidden size: 32 heads of 128 over 5120.
        assert_eq!(find_model("Mistral-Nemo-12B").unwrap().q_dim(), 4096.0);
    }
}
