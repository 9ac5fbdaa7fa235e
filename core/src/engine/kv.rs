//! KV-cache block accounting (paged attention): sequences hold whole blocks of `block_size` tokens.

/// Whether a request whose whole context (prompt plus every output token) is `tokens` tokens can ever
/// fit in `total_blocks` blocks of `block_size` tokens. The one "fits in KV" rule: the engine's
/// admission check, a scenario's workload check and the live server's refusal all ask here.
pub fn context_fits(tokens: u64, total_blocks: u32, block_size: u32) -> bool {
    block_size > 0 && tokens.div_ceil(block_size as u64) <= total_blocks as u64
}

/// Counts free KV blocks. Per-sequence holdings live with the sequences; the manager only guards the
/// invariant `allocated + free == total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockManager {
    block_size: u32,
    total: u32,
    free: u32,
}

impl BlockManager {
    /// `total` blocks of `block_size` tokens.
    pub fn new(block_size: u32, total: u32) -> Self {
        assert!(block_size > 0, "block size must be positive");
        BlockManager {
            block_size,
            total,
            free: total,
        }
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.block_size)
    }

    /// Tokens per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Total blocks.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Free blocks.
    pub fn free(&self) -> u32 {
        self.free
    }

    /// Allocated blocks.
    pub fn used(&self) -> u32 {
        self.total - self.free
    }

    /// Grows a holding of `held` blocks to cover `tokens` tokens; false (and no change) if not enough free.
    pub fn grow_to(&mut self, held: &mut u32, tokens: u32) -> bool {
        // Most calls (one per decoded or drafted token) stay inside the blocks held: skip the division.
        if tokens as u64 <= *held as u64 * self.block_size as u64 {
            return true;
        }
        let need = self.blocks_for(tokens);
        if need <= *held {
            return true;
        }
        let extra = need - *held;
        if extra > self.free {
            return false;
        }
        self.free -= extra;
        *held = need;
        true
    }

    /// Shrinks a holding to exactly cover `tokens` tokens, returning blocks to the pool.
    pub fn shrink_to(&mut self, held: &mut u32, tokens: u32) {
        // Nothing to return unless the tokens fit in one block fewer (the common case).
        if *held == 0 || tokens as u64 > (*held as u64 - 1) * self.block_size as u64 {
            return;
        }
        let need = self.blocks_for(tokens);
        if need < *held {
            self.free += *held - need;
            *held = need;
        }
    }

    /// Returns a whole holding to the pool.
    pub fn release(&mut self, held: &mut u32) {
        self.free += *held;
        *held = 0;
        debug_assert!(self.free <= self.total);
    }
}

/// What vLLM's KV sizing reads (`gpu_memory_utilization` semantics of vLLM V1), per GPU of a
/// tensor-parallel group.
///
/// vLLM profiles one forward of `max_num_batched_tokens` tokens, then gives the KV cache what is left
/// of `util × total memory` after the weights, that forward's activation peak and the memory outside
/// torch's allocator (CUDA context, cuBLAS workspaces, NCCL and custom all-reduce buffers). Every GPU
/// of the group holds its shard of every block, so the block count is the same on all of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VllmMemory {
    /// Memory of one GPU as the driver reports it, bytes.
    pub gpu_memory_bytes: f64,
    /// `--gpu-memory-utilization` (0..1].
    pub utilization: f64,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Bytes of all weights of the model (split evenly over the group).
    pub weight_bytes: f64,
    /// KV bytes per token of the whole model (all layers, all KV heads).
    pub kv_bytes_per_token: f64,
    /// KV heads of the model (a group wider than this replicates heads).
    pub kv_heads: u32,
    /// Activation peak of the profiling forward on one GPU, bytes.
    pub activation_peak_bytes: f64,
    /// Memory outside torch's allocator on one GPU, bytes.
    pub non_torch_bytes: f64,
    /// Tokens per KV block.
    pub block_size: u32,
}

impl VllmMemory {
    /// KV bytes one GPU holds per token: heads split over the group, at least one head each.
    pub fn kv_bytes_per_token_per_gpu(&self) -> f64 {
        let shards = self.tp.clamp(1, self.kv_heads.max(1));
        self.kv_bytes_per_token / shards as f64
    }

    /// Bytes one GPU gives the KV cache (negative when the model does not fit).
    pub fn kv_budget_bytes(&self) -> f64 {
        self.gpu_memory_bytes * self.utilization
            - self.weight_bytes / self.tp.max(1) as f64
            - self.activation_peak_bytes
            - self.non_torch_bytes
    }

    /// KV blocks of the replica, or None when not even one block fits.
    pub fn kv_blocks(&self) -> Option<u32> {
        let per_block = self.kv_bytes_per_token_per_gpu() * self.block_size as f64;
        if per_block.is_nan() || per_block <= 0.0 {
            return None;
        }
        let blocks = (self.kv_budget_bytes() / per_block).floor();
        (blocks >= 1.0).then_some(blocks.min(u32::MAX as f64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_fits_when_its_blocks_do() {
        // 10 blocks of 16 tokens hold 160 tokens: 160 fits, 161 needs an 11th block.
        assert!(context_fits(160, 10, 16));
        assert!(!context_fits(161, 10, 16));
        assert!(context_fits(1, 1, 16));
        // Far beyond u32 (a prompt plus max_tokens from an HTTP request) does not wrap.
        assert!(!context_fits(u64::MAX, u32::MAX, 16));
        assert!(!context_fits(1, 10, 0), "no block size holds nothing");
    }

    #[test]
    fn grow_shrink_release_conserve_blocks() {
        let mut m = BlockManager::new(16, 4);
        let mut a = 0;
        assert!(m.grow_to(&mut a, 17)); // 2 blocks
        assert_eq!((a, m.free()), (2, 2));
        let mut b = 0;
        assert!(!m.grow_to(&mut b, 48)); // needs 3, only 2 free
        assert_eq!((b, m.free()), (0, 2));
        assert!(m.grow_to(&mut a, 64));
        assert_eq!((a, m.free()), (4, 0));
        m.shrink_to(&mut a, 20);
        assert_eq!((a, m.free()), (2, 2));
        m.release(&mut a);
        assert_eq!((a, m.free(), m.used()), (0, 4, 0));
    }

    #[test]
    fn vllm_kv_blocks_of_llama2_7b_on_h100_at_0_9() {
        // Worked by hand: H100 80GB HBM3 reports 81,559 MiB = 85,520,809,984 B; × 0.9 =
        // 76,968,728,985.6 B. Weights 6,738,149,376 params × 2 B = 13,476,298,752 B. Activation
        // peak of a 2048-token profiling forward (gate/up output and its activation, 3 × 11008 wide,
        // 2 B): 2048 × 3 × 11008 × 2 = 135,266,304 B. Outside torch: 0.7 GiB = 751,619,276.8 B.
        // Left: 62,605,544,652.8 B; a block is 16 tokens × 524,288 B = 8,388,608 B → 7463.13 → 7463.
        // vLLM's own log for this run (BLIS training data, kv_blocks_total_gpu) says 7462.
        let m = VllmMemory {
            gpu_memory_bytes: 81_559.0 * 1024.0 * 1024.0,
            utilization: 0.9,
            tp: 1,
            weight_bytes: 13_476_298_752.0,
            kv_bytes_per_token: 524_288.0,
            kv_heads: 32,
            activation_peak_bytes: 135_266_304.0,
            non_torch_bytes: 0.7 * 1024.0 * 1024.0 * 1024.0,
            block_size: 16,
        };
        assert_eq!(m.kv_blocks(), Some(7463));
        // Tensor parallelism splits weights and KV heads alike: 4 GPUs of Llama-2-70B's shape hold
        // 8 KV heads as 2 each, so a GPU's token costs a quarter.
        let tp4 = VllmMemory {
            tp: 4,
            kv_heads: 8,
            ..m
        };
        assert_eq!(tp4.kv_bytes_per_token_per_gpu(), 131_072.0);
        // A group wider than the KV heads replicates them: 8 heads over 16 GPUs is one head each.
        let wide = VllmMemory {
            tp: 16,
            kv_heads: 8,
            ..m
        };
        assert_eq!(wide.kv_bytes_per_token_per_gpu(), 65_536.0);
        // A model bigger than the memory has no KV.
        let too_big = VllmMemory {
            weight_bytes: 1e12,
            ..m
        };
        assert_eq!(too_big.kv_blocks(), None);
    }
}
