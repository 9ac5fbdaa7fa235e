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
}
