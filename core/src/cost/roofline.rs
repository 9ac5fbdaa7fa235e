//! Analytical roofline: a forward takes `max(compute time, memory time) + communication + overhead`.
//!
//! - Compute: `2 · layer_params · new_tokens + 2 · hidden · vocab · logit_positions` for the matrix
//!   products plus `4 · layers · hidden · attended` for attention (QKᵀ and AV over every attended KV
//!   entry), at `peak · compute_efficiency`, split over the tensor-parallel degree.
//! - Memory: every weight once, the KV of every sequence in the batch once, and the new tokens' KV
//!   written, at `bandwidth · memory_efficiency`, split over the tensor-parallel degree.
//! - Tensor parallelism adds two ring all-reduces of the activations per layer.
//! - A fixed overhead per forward (kernel launches, scheduling, sampling) that a GPU cannot hide.
//!
//! Datasheet peaks are upper bounds; the efficiency factors (defaults 0.5 compute, 0.85 memory) are what
//! calibration replaces.
//!
//! With [`Roofline::cuda_graphs`], forwards without prefill (decode and verification, draft and target)
//! are padded as vLLM pads decode batches to replay a captured CUDA graph: the token count is rounded up
//! to the next capture size (1, 2, 4, then multiples of 8 up to 256; larger batches run eagerly,
//! unpadded). That is how vLLM 0.6 verifies with its batch-expansion scorer; its default MQA scorer
//! verifies eagerly, which is the default here.
//! Padding rows cost matmul compute, logits and all-reduce traffic but read no KV. Verification of
//! Σ(k_i + 1) tokens then costs steps at bucket edges, which is what SpecServe's confidence-prior
//! elimination exploits.

use super::catalog::{HardwareSpec, ModelSpec};
use super::{BatchShape, CostModel};
use crate::time::Nanos;

/// Latency of one all-reduce call beyond its bandwidth term.
const ALLREDUCE_LATENCY_S: f64 = 8e-6;

/// One model on `tp` accelerators.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The model.
    pub model: ModelSpec,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Fixed time per forward, seconds.
    pub overhead_s: f64,
}

/// Roofline step times for a draft and a target deployment on one accelerator type.
#[derive(Debug, Clone, PartialEq)]
pub struct Roofline {
    /// The accelerator.
    pub hardware: HardwareSpec,
    /// Target model deployment.
    pub target: Deployment,
    /// Draft model deployment (`None` when no draft is deployed).
    pub draft: Option<Deployment>,
    /// Fraction of peak FLOP/s reached.
    pub compute_efficiency: f64,
    /// Fraction of peak bandwidth reached.
    pub memory_efficiency: f64,
    /// Pad decode/verify forwards to CUDA-graph capture sizes (see the module docs).
    pub cuda_graphs: bool,
    /// Which capture sizes, when `cuda_graphs` is on.
    pub graph_sizes: GraphSizes,
}

/// Largest token count vLLM 0.6 captures a CUDA graph for; larger forwards run eagerly.
pub const MAX_CUDA_GRAPH_TOKENS: u32 = 256;

/// Which CUDA-graph capture sizes a deployment replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphSizes {
    /// vLLM 0.6's default: 1, 2, 4, then every multiple of 8 up to 256.
    #[default]
    Vllm,
    /// The SpecServe/AdaSpec fork's: powers of two up to 32, then multiples of 32 up to 256 — coarser
    /// buckets, whose edges confidence-prior elimination was designed around.
    Adaspec,
}

impl GraphSizes {
    /// The capture size a decode forward of `tokens` tokens is padded to; above
    /// [`MAX_CUDA_GRAPH_TOKENS`], `tokens` itself (eager).
    pub fn bucket(self, tokens: u32) -> u32 {
        match (self, tokens) {
            (_, 0..=2) => tokens,
            (_, 3..=4) => 4,
            (_, t) if t > MAX_CUDA_GRAPH_TOKENS => t,
            (GraphSizes::Vllm, t) => t.div_ceil(8) * 8,
            (GraphSizes::Adaspec, t) if t <= 32 => t.next_power_of_two(),
            (GraphSizes::Adaspec, t) => t.div_ceil(32) * 32,
        }
    }
}

impl Roofline {
    /// Seconds for one forward of `d` over `shape`.
    pub fn forward_s(&self, d: &Deployment, shape: &BatchShape) -> f64 {
        ForwardTerms::new(self, d).seconds(shape)
    }

    /// The same step times with each deployment's constants computed once ([`PreparedRoofline`]):
    /// what the simulator uses, since it prices several forwards per simulated step.
    pub fn prepare(self) -> PreparedRoofline {
        let target = ForwardTerms::new(&self, &self.target);
        let draft = self.draft.as_ref().map(|d| ForwardTerms::new(&self, d));
        PreparedRoofline {
            roofline: self,
            target,
            draft,
        }
    }

    /// KV blocks that fit on one replica: memory × utilisation minus the weights of both models, over
    /// the bytes of one block of target KV plus the draft's KV for the same tokens.
    pub fn kv_blocks(&self, block_size: u32, gpu_memory_utilization: f64) -> Result<u32, String> {
        let tp = self.target.tp.max(1) as f64;
        let mem = self.hardware.memory_gb * 1e9 * tp * gpu_memory_utilization;
        let weights = self.target.model.weight_bytes_total()
            + self.draft.as_ref().map_or(0.0, |d| {
                d.model.weight_bytes_total() * tp / d.tp.max(1) as f64
            });
        let per_token = self.target.model.kv_bytes_per_token()
            + self
                .draft
                .as_ref()
                .map_or(0.0, |d| d.model.kv_bytes_per_token());
        let free = mem - weights;
        if free <= 0.0 {
            return Err(format!(
                "{} ({:.1} GB of weights) does not fit in {} x {} ({:.0} GB usable)",
                self.target.model.name,
                weights / 1e9,
                self.target.tp,
                self.hardware.name,
                mem / 1e9
            ));
        }
        Ok((free / (per_token * block_size as f64)).floor() as u32)
    }
}

impl CostModel for Roofline {
    fn draft_step(&self, shape: &BatchShape) -> Nanos {
        match &self.draft {
            Some(d) => ForwardTerms::new(self, d).nanos(shape),
            None => 0,
        }
    }
    fn target_step(&self, shape: &BatchShape) -> Nanos {
        ForwardTerms::new(self, &self.target).nanos(shape)
    }
    fn describe(&self) -> String {
        format!(
            "roofline({} tp{} + {} on {}, eff compute {} memory {}{})",
            self.target.model.name,
            self.target.tp,
            self.draft
                .as_ref()
                .map_or("no draft".to_string(), |d| d.model.name.clone()),
            self.hardware.name,
            self.compute_efficiency,
            self.memory_efficiency,
            if self.cuda_graphs {
                ", CUDA-graph padding"
            } else {
                ""
            }
        )
    }
}

/// The parts of one deployment's forward time that do not depend on the batch shape, each computed as
/// the roofline formula computes it (same operations in the same order), so a forward priced from
/// them is bit-identical to one priced from scratch.
#[derive(Debug, Clone, PartialEq)]
struct ForwardTerms {
    /// `2 · layer_params`: matmul FLOPs per computed row.
    flops_per_row: f64,
    /// `2 · head_params`: output-head FLOPs per logit position (and padding row).
    flops_per_logit: f64,
    /// `4 · layers · q_dim`: attention FLOPs per attended KV entry.
    flops_per_attended: f64,
    /// Weight bytes read by every forward.
    weight_bytes: f64,
    /// KV bytes per token.
    kv_bytes_per_token: f64,
    /// Achieved FLOP/s (peak · efficiency · tp).
    flops_per_s: f64,
    /// Achieved bytes/s (bandwidth · efficiency · tp).
    bytes_per_s: f64,
    /// Hidden size, for the all-reduce message.
    hidden: f64,
    /// Tensor-parallel degree (all-reduces only above 1).
    tp: u32,
    /// `2 (tp − 1) / tp`: the ring all-reduce's traffic factor.
    ring_factor: f64,
    /// Interconnect bytes/s.
    link_bytes_per_s: f64,
    /// `2 · layers`: all-reduces per forward.
    allreduces: f64,
    /// Fixed time per forward, seconds.
    overhead_s: f64,
    /// CUDA-graph padding of decode forwards, when on.
    graph_sizes: Option<GraphSizes>,
}

impl ForwardTerms {
    fn new(r: &Roofline, d: &Deployment) -> Self {
        let m = &d.model;
        let tp = d.tp.max(1) as f64;
        ForwardTerms {
            flops_per_row: 2.0 * m.layer_params(),
            flops_per_logit: 2.0 * m.head_params(),
            flops_per_attended: 4.0 * m.layers as f64 * m.q_dim(),
            weight_bytes: (m.layer_params() + m.head_params()) * m.weight_bytes,
            kv_bytes_per_token: m.kv_bytes_per_token(),
            flops_per_s: r.hardware.peak_tflops * 1e12 * r.compute_efficiency * tp,
            bytes_per_s: r.hardware.mem_bandwidth_tbs * 1e12 * r.memory_efficiency * tp,
            hidden: m.hidden as f64,
            tp: d.tp,
            ring_factor: 2.0 * (tp - 1.0) / tp,
            link_bytes_per_s: r.hardware.interconnect_gbs * 1e9,
            allreduces: 2.0 * m.layers as f64,
            overhead_s: d.overhead_s,
            graph_sizes: r.cuda_graphs.then_some(r.graph_sizes),
        }
    }

    /// Seconds for one forward over `shape`.
    fn seconds(&self, shape: &BatchShape) -> f64 {
        if shape.new_tokens == 0 {
            return 0.0;
        }
        // Rows actually computed: padded to a CUDA-graph size for decode/verify forwards.
        let rows = match self.graph_sizes {
            Some(g) if shape.prefill_tokens == 0 => g.bucket(shape.new_tokens),
            _ => shape.new_tokens,
        };
        let pad = rows - shape.new_tokens;
        let flops = self.flops_per_row * rows as f64
            + self.flops_per_logit * (shape.logit_positions + pad) as f64
            + self.flops_per_attended * shape.attended as f64;
        let bytes = self.weight_bytes
            + self.kv_bytes_per_token * (shape.context_tokens as f64 + shape.new_tokens as f64);
        let compute_s = flops / self.flops_per_s;
        let memory_s = bytes / self.bytes_per_s;
        let comm_s = if self.tp > 1 {
            let msg = rows as f64 * self.hidden * 2.0;
            let per = self.ring_factor * msg / self.link_bytes_per_s + ALLREDUCE_LATENCY_S;
            self.allreduces * per
        } else {
            0.0
        };
        compute_s.max(memory_s) + comm_s + self.overhead_s
    }

    /// Nanoseconds for one forward over `shape`.
    fn nanos(&self, shape: &BatchShape) -> Nanos {
        (self.seconds(shape) * 1e9).round() as Nanos
    }
}

/// A [`Roofline`] with each deployment's shape-independent terms computed once
/// ([`Roofline::prepare`]); prices every forward exactly as the roofline does.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRoofline {
    roofline: Roofline,
    target: ForwardTerms,
    draft: Option<ForwardTerms>,
}

impl PreparedRoofline {
    /// The roofline it was prepared from.
    pub fn roofline(&self) -> &Roofline {
        &self.roofline
    }
}

impl CostModel for PreparedRoofline {
    fn draft_step(&self, shape: &BatchShape) -> Nanos {
        self.draft.as_ref().map_or(0, |d| d.nanos(shape))
    }
    fn target_step(&self, shape: &BatchShape) -> Nanos {
        self.target.nanos(shape)
    }
    fn describe(&self) -> String {
        self.roofline.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::{find_hardware, find_model};
    use super::*;

    fn a100_7b() -> Roofline {
        Roofline {
            hardware: find_hardware("A100-80G").unwrap(),
            target: Deployment {
                model: find_model("Llama-2-7B").unwrap(),
                tp: 1,
                overhead_s: 0.0,
            },
            draft: None,
            compute_efficiency: 1.0,
            memory_efficiency: 1.0,
            cuda_graphs: false,
            graph_sizes: GraphSizes::Vllm,
        }
    }

    /// The roofline formula written out from the model and hardware each time, as it was before the
    /// shape-independent terms were hoisted into `ForwardTerms`.
    fn from_scratch_s(r: &Roofline, d: &Deployment, shape: &BatchShape) -> f64 {
        if shape.new_tokens == 0 {
            return 0.0;
        }
        let m = &d.model;
        let tp = d.tp.max(1) as f64;
        let rows = if r.cuda_graphs && shape.prefill_tokens == 0 {
            r.graph_sizes.bucket(shape.new_tokens)
        } else {
            shape.new_tokens
        };
        let pad = rows - shape.new_tokens;
        let flops = 2.0 * m.layer_params() * rows as f64
            + 2.0 * m.head_params() * (shape.logit_positions + pad) as f64
            + 4.0 * m.layers as f64 * m.q_dim() * shape.attended as f64;
        let bytes = (m.layer_params() + m.head_params()) * m.weight_bytes
            + m.kv_bytes_per_token() * (shape.context_tokens as f64 + shape.new_tokens as f64);
        let compute_s = flops / (r.hardware.peak_tflops * 1e12 * r.compute_efficiency * tp);
        let memory_s = bytes / (r.hardware.mem_bandwidth_tbs * 1e12 * r.memory_efficiency * tp);
        let comm_s = if d.tp > 1 {
            let msg = rows as f64 * m.hidden as f64 * 2.0;
            let per = 2.0 * (tp - 1.0) / tp * msg / (r.hardware.interconnect_gbs * 1e9)
                + ALLREDUCE_LATENCY_S;
            2.0 * m.layers as f64 * per
        } else {
            0.0
        };
        compute_s.max(memory_s) + comm_s + d.overhead_s
    }

    #[test]
    fn prepared_terms_price_every_forward_to_the_bit() {
        // Decode, verification, prefill and mixed shapes, under every padding mode and several TP
        // degrees, on a draft and a target deployment with uneven efficiencies and overheads.
        let shapes = [
            BatchShape::one(0, 1, false, 1),
            BatchShape::one(517, 4, false, 4),
            BatchShape::uniform(33, 1, 700),
            BatchShape::uniform(300, 3, 2048),
            BatchShape::prefill(1234),
            BatchShape::prefill(90).merge(BatchShape::uniform(17, 2, 333)),
            BatchShape::default(),
        ];
        for (tp, graphs) in [
            (1, None),
            (2, Some(GraphSizes::Vllm)),
            (4, Some(GraphSizes::Adaspec)),
            (8, None),
        ] {
            let mut r = a100_7b();
            r.compute_efficiency = 0.47;
            r.memory_efficiency = 0.83;
            r.target.tp = tp;
            r.target.overhead_s = 1.3e-3;
            r.draft = Some(Deployment {
                model: find_model("Vicuna-68M").unwrap(),
                tp: 1,
                overhead_s: 0.3e-3,
            });
            r.cuda_graphs = graphs.is_some();
            r.graph_sizes = graphs.unwrap_or_default();
            let prepared = r.clone().prepare();
            let draft = r.draft.clone().unwrap();
            for s in &shapes {
                let want_t = (from_scratch_s(&r, &r.target, s) * 1e9).round() as Nanos;
                let want_d = (from_scratch_s(&r, &draft, s) * 1e9).round() as Nanos;
                assert_eq!(prepared.target_step(s), want_t, "target tp {tp} {s:?}");
                assert_eq!(prepared.draft_step(s), want_d, "draft tp {tp} {s:?}");
                let exact = from_scratch_s(&r, &r.target, s).to_bits();
                assert_eq!(
                    r.forward_s(&r.target, s).to_bits(),
                    exact,
                    "seconds tp {tp} {s:?}"
                );
            }
        }
    }

    #[test]
    fn batch_one_decode_is_bound_by_reading_the_weights() {
        // Layers (6.48e9) and output head (0.13e9) at 2 bytes = 13.22 GB read at 2.04 TB/s = 6.48 ms (the
        // input embedding table is not read), plus one token's KV read and written (negligible).
        let r = a100_7b();
        let m = &r.target.model;
        let bytes = (m.layer_params() + m.head_params()) * 2.0 + 2.0 * m.kv_bytes_per_token();
        let want = bytes / 2.04e12;
        let got = r.forward_s(&r.target, &BatchShape::one(0, 1, false, 1));
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!((got - 6.48e-3).abs() < 0.05e-3, "{got}");
    }

    #[test]
    fn large_batches_become_compute_bound() {
        // 4096 tokens: 2 · 6.48e9 · 4096 flops ≈ 53 TFLOP -> 170 ms at 312 TFLOP/s, far above the
        // 6.5 ms memory time: time grows linearly with tokens.
        let r = a100_7b();
        let t1 = r.forward_s(&r.target, &BatchShape::uniform(2048, 1, 1));
        let t2 = r.forward_s(&r.target, &BatchShape::uniform(4096, 1, 1));
        assert!(t1 > 0.05 && (t2 / t1 - 2.0).abs() < 0.01, "{t1} {t2}");
    }

    #[test]
    fn batch_expansion_verify_reads_each_sequences_kv_once_per_position() {
        use crate::shape::Scorer;
        // Eight sequences at context 1000 verify k = 3 drafts on Llama-2-7B / Vicuna-7B (fp16 KV:
        // 2 (K, V) · 32 layers · 4096 · 2 bytes = 524,288 bytes per token). Bytes moved per sequence:
        // multi-query reads the 1000 cached entries plus the 4 new ones and writes 4: 1008 tokens of KV;
        // batch expansion runs 4 one-token rows at contexts 1000..=1003, reading 1001 + 1002 + 1003 +
        // 1004 = 4010 and writing 4: 4014 tokens, 3.98x (k + 1 = 4x less the triangle of new tokens).
        let r = a100_7b();
        let m = &r.target.model;
        assert_eq!(m.kv_bytes_per_token(), 524_288.0);
        let batch = |sc: Scorer| {
            (0..8).fold(BatchShape::default(), |s, _| {
                s.merge(sc.verify_seq(1000, 3))
            })
        };
        let weights = (m.layer_params() + m.head_params()) * 2.0;
        // 32 rows are far from compute-bound (2 · 6.5e9 · 32 flops = 1.3 ms < 6.5 ms of weights), so the
        // forward takes bytes / 2.04 TB/s.
        for (sc, kv_tokens) in [
            (Scorer::MultiQuery, 1008.0),
            (Scorer::BatchExpansion, 4014.0),
        ] {
            let want = (weights + 8.0 * kv_tokens * 524_288.0) / 2.04e12;
            let got = r.forward_s(&r.target, &batch(sc));
            assert!((got - want).abs() < 1e-12, "{sc:?}: {got} vs {want}");
        }
        // The difference is the extra KV traffic alone: 8 · 3006 · 524,288 B = 12.6 GB, 6.18 ms.
        let extra = r.forward_s(&r.target, &batch(Scorer::BatchExpansion))
            - r.forward_s(&r.target, &batch(Scorer::MultiQuery));
        assert!((extra - 8.0 * 3006.0 * 524_288.0 / 2.04e12).abs() < 1e-12);
        assert!((extra - 6.18e-3).abs() < 0.01e-3, "{extra}");
    }

    #[test]
    fn the_adaspec_forks_capture_sizes_are_coarser() {
        // Powers of two to 32, then multiples of 32 to 256: a batch of 33 pads to 64 (vLLM: 40).
        let fork: Vec<u32> = [1, 3, 5, 17, 31, 32, 33, 64, 65, 250, 256, 257]
            .iter()
            .map(|&t| GraphSizes::Adaspec.bucket(t))
            .collect();
        assert_eq!(fork, [1, 4, 8, 32, 32, 32, 64, 64, 96, 256, 256, 257]);
        assert_eq!(GraphSizes::Vllm.bucket(33), 40);
        // The roofline pads by them: 33 one-token rows cost as 64 rows of matmul and logits.
        let mut r = a100_7b();
        r.cuda_graphs = true;
        r.graph_sizes = GraphSizes::Adaspec;
        let m = &r.target.model;
        let s = BatchShape::uniform(33, 1, 1);
        let flops = 2.0 * m.layer_params() * 64.0
            + 2.0 * m.head_params() * 64.0
            + 4.0 * m.layers as f64 * m.hidden as f64 * s.attended as f64;
        let bytes = (m.layer_params() + m.head_params()) * 2.0 + m.kv_bytes_per_token() * 66.0;
        let want = (flops / 312e12).max(bytes / 2.04e12);
        assert!((r.forward_s(&r.target, &s) - want).abs() < 1e-12);
    }

    #[test]
    fn cuda_graph_padding_rounds_decode_forwards_up_to_capture_sizes() {
        // vLLM 0.6 captures 1, 2, 4, 8, 16, ..., 256 tokens; larger forwards and prefills are unpadded.
        let sizes: Vec<u32> = [1, 2, 3, 4, 5, 8, 9, 17, 120, 121, 256, 257, 300]
            .iter()
            .map(|&t| GraphSizes::Vllm.bucket(t))
            .collect();
        assert_eq!(sizes, [1, 2, 4, 4, 8, 8, 16, 24, 120, 128, 256, 257, 300]);
        // One token per sequence, context 1: 7B on an A100 at full efficiency turns compute-bound
        // above ~150 tokens. 161 tokens run as 168 rows (matmuls and logits), attention only on 161.
        let mut r = a100_7b();
        let v = |r: &Roofline, n: u32| r.forward_s(&r.target, &BatchShape::uniform(n, 1, 1));
        let unpadded = (v(&r, 161), v(&r, 300) / v(&r, 240));
        r.cuda_graphs = true;
        let m = &r.target.model;
        let s = BatchShape::uniform(161, 1, 1);
        let flops = 2.0 * m.layer_params() * 168.0
            + 2.0 * m.head_params() * 168.0
            + 4.0 * m.layers as f64 * m.hidden as f64 * s.attended as f64;
        assert!(
            (v(&r, 161) - flops / 312e12).abs() < 1e-12,
            "{}",
            v(&r, 161)
        );
        assert!(v(&r, 161) > unpadded.0 * 1.04, "8 padding rows on 160");
        assert_eq!(
            v(&r, 300) / v(&r, 240),
            unpadded.1,
            "eager above 256 tokens"
        );
        // A prefill is never padded.
        let p = |r: &Roofline| r.forward_s(&r.target, &BatchShape::prefill(121));
        let padded = p(&r);
        r.cuda_graphs = false;
        assert_eq!(p(&r), padded);
    }

    #[test]
    fn kv_capacity_of_7b_on_a100() {
        // 80 GB · 0.9 = 72 GB; weights 13.48 GB; 58.52 GB / (512 KiB · 16) = 6976 blocks.
        let r = a100_7b();
        let blocks = r.kv_blocks(16, 0.9).unwrap();
        let want =
            ((72e9 - r.target.model.weight_bytes_total()) / (524_288.0 * 16.0)).floor() as u32;
        assert_eq!(blocks, want);
        assert!((6900..7050).contains(&blocks), "{blocks}");
    }

    #[test]
    fn seventy_b_does_not_fit_one_gpu_but_fits_eight() {
        let mut r = a100_7b();
        r.target.model = find_model("Llama-3.3-70B").unwrap();
        assert!(r.kv_blocks(16, 0.9).is_err());
        r.target.tp = 8;
        assert!(r.kv_blocks(16, 0.9).unwrap() > 1000);
    }
}
