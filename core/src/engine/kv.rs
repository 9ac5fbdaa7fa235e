//! KV-cache block accounting (paged attention): sequences hold whole blocks of `block_size` tokens.
//!
//! **Automatic prefix caching** (vLLM V1's): a block whose content the workload names (the leading
//! blocks of a prompt, [`crate::workload::PromptPrefix`]) is keyed by a hash chain over the prompt's
//! block ids, so two prompts' blocks share a key exactly when everything up to the block's end does.
//! Named blocks are reference-counted; when the last holder lets go they stay cached, free but
//! reusable, in a least-recently-used list, and are evicted (oldest first) only when an allocation
//! finds no plain free block. Blocks the workload does not name (decode tokens, the prompt past its
//! named blocks, every block of a request without a prefix) are counted, not tracked: by the
//! workload's own account no other request can share them, so they are reused before any cached
//! block. vLLM hashes those too and evicts in the order blocks were freed; reusing them first can only
//! keep a shareable block longer. The accounting is `held + cached_free + free = total`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Whether a request whose whole context (prompt plus every output token) is `tokens` tokens can ever
/// fit in `total_blocks` blocks of `block_size` tokens. The one "fits in KV" rule: the engine's
/// admission check, a scenario's workload check and the live server's refusal all ask here.
pub fn context_fits(tokens: u64, total_blocks: u32, block_size: u32) -> bool {
    block_size > 0 && tokens.div_ceil(block_size as u64) <= total_blocks as u64
}

/// Counts free KV blocks and keeps the prefix cache. Per-sequence holdings live with the sequences (a
/// count, plus the cached blocks a sequence references); the manager guards the invariant
/// `held + cached_free + free == total`.
#[derive(Debug, Clone)]
pub struct BlockManager {
    block_size: u32,
    total: u32,
    /// Blocks free with nothing worth keeping in them.
    free: u32,
    /// Named blocks: held ones and the free ones kept for reuse.
    cache: PrefixCache,
}

impl BlockManager {
    /// `total` blocks of `block_size` tokens.
    pub fn new(block_size: u32, total: u32) -> Self {
        assert!(block_size > 0, "block size must be positive");
        BlockManager {
            block_size,
            total,
            free: total,
            cache: PrefixCache::default(),
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

    /// Free blocks holding nothing worth keeping (cached free blocks not included).
    pub fn free(&self) -> u32 {
        self.free
    }

    /// Free blocks kept for their cached content (evictable).
    pub fn cached_free(&self) -> u32 {
        self.cache.idle
    }

    /// Named blocks some sequence holds (each counted once, however many share it).
    pub fn cached_held(&self) -> u32 {
        self.cache.held
    }

    /// Blocks held by sequences.
    pub fn used(&self) -> u32 {
        self.total - self.free - self.cache.idle
    }

    /// Tokens that `blocks` blocks hold.
    #[inline]
    pub fn tokens_in(&self, blocks: u32) -> u64 {
        blocks as u64 * self.block_size as u64
    }

    /// Grows a holding of `held` blocks to cover `tokens` tokens; false (and no change) if not enough free.
    #[inline]
    pub fn grow_to(&mut self, held: &mut u32, tokens: u32) -> bool {
        // Most calls (one per decoded or drafted token) stay inside the blocks held: skip the division.
        if tokens as u64 <= self.tokens_in(*held) {
            return true;
        }
        let need = self.blocks_for(tokens);
        if need <= *held {
            return true;
        }
        let extra = need - *held;
        if extra > self.free && !self.evict(extra - self.free) {
            return false;
        }
        self.free -= extra;
        *held = need;
        true
    }

    /// Shrinks a holding to exactly cover `tokens` tokens, returning blocks to the pool.
    pub fn shrink_to(&mut self, held: &mut u32, tokens: u32) {
        // Nothing to return unless the tokens fit in one block fewer (the common case).
        if *held == 0 || tokens as u64 > self.tokens_in(*held - 1) {
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

    /// Evicts the `n` least recently used cached free blocks into the plain free pool; false (and no
    /// change) when fewer are cached. Cold: the per-token hot path must stay small enough to inline.
    #[cold]
    #[inline(never)]
    fn evict(&mut self, n: u32) -> bool {
        if n > self.cache.idle {
            return false;
        }
        for _ in 0..n {
            self.cache.evict_oldest();
        }
        self.free += n;
        true
    }

    /// How many of `keys` (a prompt's block keys, in order) are cached, counting from the first until
    /// one is missing, at most `max`; and how many of those are free (so taking them removes them from
    /// what allocations may evict).
    pub fn lookup(&self, keys: impl Iterator<Item = u64>, max: u32) -> (u32, u32) {
        let (mut hits, mut idle) = (0, 0);
        for key in keys.take(max as usize) {
            let Some(&slot) = self.cache.map.get(&key) else {
                break;
            };
            hits += 1;
            idle += u32::from(self.cache.blocks[slot as usize].refs == 0);
        }
        (hits, idle)
    }

    /// Whether `new` plain blocks can be allocated after taking cached blocks of which `idle` are free.
    pub fn can_allocate(&self, new: u32, idle: u32) -> bool {
        new as u64 <= self.free as u64 + (self.cache.idle - idle) as u64
    }

    /// Takes a reference to the cached block of `key` (which [`BlockManager::lookup`] found) and
    /// returns its slot.
    pub fn acquire(&mut self, key: u64) -> u32 {
        let slot = *self.cache.map.get(&key).expect("lookup found the key");
        self.cache.take(slot);
        slot
    }

    /// A held plain block now holds the content `key`: it becomes a cached block (its slot returned),
    /// unless a block with that content is cached already ([`NO_SLOT`]: it stays plain).
    pub fn register(&mut self, key: u64) -> u32 {
        if self.cache.map.capacity() == 0 {
            // At most `total` blocks are cached; a map at most half full keeps probes short under the
            // constant insert/evict churn of a full cache.
            let cap = (2 * self.total as usize).min(1 << 20);
            self.cache.map.reserve(cap);
            self.cache.blocks.reserve(cap / 2);
        }
        self.cache.insert(key)
    }

    /// Drops a reference to a cached block; the last one leaves it cached and free, most recently used.
    pub fn release_cached(&mut self, slot: u32) {
        self.cache.put(slot);
    }

    /// References held on the cached block in `slot` (for invariant checks).
    pub fn refs(&self, slot: u32) -> u32 {
        self.cache.blocks.get(slot as usize).map_or(0, |b| b.refs)
    }

    /// The cached free blocks' keys, least recently used first (for tests and invariant checks).
    pub fn lru_keys(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.cache.idle as usize);
        let mut at = self.cache.head;
        while at != NO_SLOT {
            let b = &self.cache.blocks[at as usize];
            out.push(b.key);
            at = b.next;
        }
        out
    }
}

/// No slot: a block that is not cached, or the end of the LRU list.
pub const NO_SLOT: u32 = u32::MAX;

/// Keys are hashes already: the map uses them as they are.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// One named block: its key, its holders, and its place in the LRU list while free.
#[derive(Debug, Clone)]
struct CachedBlock {
    key: u64,
    refs: u32,
    prev: u32,
    next: u32,
}

/// Named blocks by key, with an intrusive doubly linked LRU list (`head` least recently used) over
/// those no sequence holds. Slots of evicted blocks are reused.
#[derive(Debug, Clone)]
struct PrefixCache {
    map: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    blocks: Vec<CachedBlock>,
    vacant: Vec<u32>,
    head: u32,
    tail: u32,
    /// Cached blocks no sequence holds (the LRU list's length).
    idle: u32,
    /// Cached blocks some sequence holds.
    held: u32,
}

impl Default for PrefixCache {
    fn default() -> Self {
        PrefixCache {
            map: HashMap::default(),
            blocks: Vec::new(),
            vacant: Vec::new(),
            head: NO_SLOT,
            tail: NO_SLOT,
            idle: 0,
            held: 0,
        }
    }
}

impl PrefixCache {
    /// A new cached block for `key`, held once; [`NO_SLOT`] if `key` is cached already.
    fn insert(&mut self, key: u64) -> u32 {
        let next = self
            .vacant
            .last()
            .copied()
            .unwrap_or(self.blocks.len() as u32);
        match self.map.entry(key) {
            Entry::Occupied(_) => return NO_SLOT,
            Entry::Vacant(v) => v.insert(next),
        };
        let block = CachedBlock {
            key,
            refs: 1,
            prev: NO_SLOT,
            next: NO_SLOT,
        };
        match self.vacant.pop() {
            Some(s) => self.blocks[s as usize] = block,
            None => self.blocks.push(block),
        }
        self.held += 1;
        next
    }

    /// One more holder of `slot`; a free block leaves the LRU list.
    fn take(&mut self, slot: u32) {
        if self.blocks[slot as usize].refs == 0 {
            self.unlink(slot);
            self.idle -= 1;
            self.held += 1;
        }
        self.blocks[slot as usize].refs += 1;
    }

    /// One holder fewer; the last one puts the block at the LRU list's tail (most recently used).
    fn put(&mut self, slot: u32) {
        let b = &mut self.blocks[slot as usize];
        debug_assert!(b.refs > 0, "released a cached block nobody holds");
        b.refs -= 1;
        if b.refs > 0 {
            return;
        }
        b.next = NO_SLOT;
        b.prev = self.tail;
        match self.tail {
            NO_SLOT => self.head = slot,
            t => self.blocks[t as usize].next = slot,
        }
        self.tail = slot;
        self.idle += 1;
        self.held -= 1;
    }

    /// Forgets the least recently used free block (the caller counts it as plain free).
    fn evict_oldest(&mut self) {
        let slot = self.head;
        debug_assert!(slot != NO_SLOT, "evicting from an empty list");
        self.unlink(slot);
        self.map.remove(&self.blocks[slot as usize].key);
        self.vacant.push(slot);
        self.idle -= 1;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let b = &self.blocks[slot as usize];
            (b.prev, b.next)
        };
        match prev {
            NO_SLOT => self.head = next,
            p => self.blocks[p as usize].next = next,
        }
        match next {
            NO_SLOT => self.tail = prev,
            n => self.blocks[n as usize].prev = prev,
        }
    }
}

/// Mixes 64 bits (splitmix64's finaliser): the chain's step.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash chain of a prompt's named blocks: entry `i` depends on `block_tokens` and ids `0..=i`, so
/// two prompts' entries agree exactly as far as their ids do.
pub fn chain(block_tokens: u32, ids: &[u64]) -> Box<[u64]> {
    let mut h = mix(block_tokens as u64 ^ 0x5eed_cafe_f00d_0001);
    ids.iter()
        .map(|&id| {
            h = mix(h.rotate_left(23) ^ mix(id));
            h
        })
        .collect()
}

/// Where an engine's KV blocks meet a prompt's named blocks: engine block `j` (tokens
/// `j·block_size .. (j+1)·block_size`) is cacheable when it lies inside the named blocks, and its key
/// is the chain entry of the named block holding its last token, mixed with `j`. So two prompts share
/// engine block `j` exactly when they agree on every named block up to its end, whatever the two
/// block sizes are (neither needs to divide the other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixKeys {
    chain: Box<[u64]>,
    block_tokens: u32,
    block_size: u32,
    /// Engine blocks wholly inside the named part of the prompt.
    cacheable: u32,
}

impl PrefixKeys {
    /// Keys of a prompt of `prompt_tokens` whose first `ids.len()` blocks of `block_tokens` are named
    /// `ids`, for engine blocks of `block_size` tokens. Named tokens past the prompt are ignored.
    pub fn new(block_tokens: u32, ids: &[u64], prompt_tokens: u32, block_size: u32) -> Self {
        let named = (ids.len() as u64 * block_tokens as u64).min(prompt_tokens as u64);
        PrefixKeys {
            chain: chain(block_tokens, ids),
            block_tokens,
            block_size,
            cacheable: (named / block_size.max(1) as u64) as u32,
        }
    }

    /// Engine blocks that can be cached (whole blocks inside the named prefix).
    pub fn cacheable(&self) -> u32 {
        self.cacheable
    }

    /// Key of engine block `j` (`j < cacheable()`).
    pub fn key(&self, j: u32) -> u64 {
        let last_token = (j as u64 + 1) * self.block_size as u64 - 1;
        let named = (last_token / self.block_tokens as u64) as usize;
        // Consecutive keys for the engine blocks of one named block: the cache map (which uses keys as
        // their own hash) then keeps them in neighbouring buckets, and registering or evicting a
        // prompt's blocks walks memory in order instead of missing the cache once per block.
        mix(self.chain[named]).wrapping_add(j as u64)
    }

    /// Keys of engine blocks `from..cacheable()`.
    pub fn keys(&self, from: u32) -> impl Iterator<Item = u64> + '_ {
        (from..self.cacheable).map(|j| self.key(j))
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

    /// Registers `keys` as the content of freshly allocated blocks of one holder; returns the slots.
    fn hold(m: &mut BlockManager, keys: &[u64]) -> Vec<u32> {
        let mut n = 0;
        assert!(m.grow_to(&mut n, keys.len() as u32 * m.block_size()));
        keys.iter().map(|&k| m.register(k)).collect()
    }

    /// Releases a holder's cached blocks, last block first (as the engine does).
    fn let_go(m: &mut BlockManager, slots: &[u32]) {
        for &s in slots.iter().rev() {
            m.release_cached(s);
        }
    }

    fn conserved(m: &BlockManager) -> bool {
        m.used() + m.cached_free() + m.free() == m.total()
    }

    #[test]
    fn lru_evicts_the_least_recently_used_free_cached_block_first() {
        let mut m = BlockManager::new(16, 6);
        let a = hold(&mut m, &[1, 2]);
        let b = hold(&mut m, &[3, 4]);
        let_go(&mut m, &a);
        let_go(&mut m, &b);
        // Freed last block first: a's tail, a's head, b's tail, b's head.
        assert_eq!(m.lru_keys(), vec![2, 1, 4, 3]);
        assert_eq!((m.free(), m.cached_free(), m.used()), (2, 4, 0));
        // Touch a again (a hit on both blocks) and let go: a is now the most recently used.
        assert_eq!(m.lookup([1, 2].into_iter(), 2), (2, 2));
        let again: Vec<u32> = [1, 2].iter().map(|&k| m.acquire(k)).collect();
        assert_eq!((m.cached_free(), m.cached_held()), (2, 2));
        let_go(&mut m, &again);
        assert_eq!(m.lru_keys(), vec![4, 3, 2, 1]);
        // Three new blocks: two plain free ones, then the oldest cached one (b's tail) is evicted.
        let mut c = 0;
        assert!(m.grow_to(&mut c, 48));
        assert_eq!(m.lru_keys(), vec![3, 2, 1]);
        assert!(conserved(&m));
        // Its content is gone: a lookup of b stops at the missing tail, finding only b's head.
        assert_eq!(m.lookup([3, 4].into_iter(), 2), (1, 1));
        assert_eq!(m.lookup([4].into_iter(), 1), (0, 0));
    }

    #[test]
    fn blocks_in_use_are_never_evicted() {
        let mut m = BlockManager::new(16, 4);
        let a = hold(&mut m, &[1, 2]);
        // Two blocks held by `a` (cached content), two free: a request wanting three cannot have them.
        let mut b = 0;
        assert!(!m.grow_to(&mut b, 48));
        assert_eq!((b, m.free(), m.cached_held()), (0, 2, 2));
        assert_eq!(
            m.lookup([1, 2].into_iter(), 2),
            (2, 0),
            "held blocks stay cached"
        );
        // A second holder shares them; the first letting go leaves them held, not free.
        let shared: Vec<u32> = [1, 2].iter().map(|&k| m.acquire(k)).collect();
        let_go(&mut m, &a);
        assert_eq!((m.cached_free(), m.cached_held()), (0, 2));
        assert!(!m.grow_to(&mut b, 48));
        let_go(&mut m, &shared);
        assert_eq!((m.cached_free(), m.cached_held()), (2, 0));
        // Now they are free and evictable.
        assert!(m.grow_to(&mut b, 48));
        assert_eq!((b, m.free(), m.cached_free()), (3, 0, 1));
        assert!(conserved(&m));
    }

    #[test]
    fn can_allocate_does_not_count_the_free_hits_it_is_about_to_take() {
        let mut m = BlockManager::new(16, 4);
        let a = hold(&mut m, &[1, 2, 3]);
        let_go(&mut m, &a);
        // One plain free + three cached free. Taking two of those as hits leaves 1 + 1 for new blocks.
        let (hits, idle) = m.lookup([1, 2].into_iter(), 2);
        assert_eq!((hits, idle), (2, 2));
        assert!(m.can_allocate(2, idle));
        assert!(!m.can_allocate(3, idle));
    }

    #[test]
    fn registering_content_already_cached_leaves_the_block_plain() {
        let mut m = BlockManager::new(16, 4);
        let a = hold(&mut m, &[7]);
        let dup = hold(&mut m, &[7]);
        assert_ne!(a[0], NO_SLOT);
        assert_eq!(dup, vec![NO_SLOT]);
        assert_eq!((m.cached_held(), m.used()), (1, 2));
    }

    #[test]
    fn prefix_keys_agree_exactly_as_far_as_the_block_ids_do() {
        // Named blocks of 64 tokens, engine blocks of 16: four engine blocks per named block.
        let a = PrefixKeys::new(64, &[10, 20, 30], 200, 16);
        let b = PrefixKeys::new(64, &[10, 20, 31], 200, 16);
        assert_eq!((a.cacheable(), b.cacheable()), (12, 12));
        let same = (0..12).take_while(|&j| a.key(j) == b.key(j)).count();
        assert_eq!(
            same, 8,
            "the first two named blocks (8 engine blocks) agree"
        );
        // Every key differs from every other within one prompt.
        let mut keys: Vec<u64> = a.keys(0).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 12);
        // A prompt shorter than its named blocks caches only the whole engine blocks inside it; an engine
        // block wider than a named block is keyed by every named block it covers.
        assert_eq!(PrefixKeys::new(64, &[10, 20, 30], 100, 16).cacheable(), 6);
        let wide_a = PrefixKeys::new(16, &[1, 2, 3, 4], 64, 32);
        let wide_b = PrefixKeys::new(16, &[1, 9, 3, 4], 64, 32);
        assert_eq!(wide_a.cacheable(), 2);
        assert_ne!(
            wide_a.key(0),
            wide_b.key(0),
            "engine block 0 covers named blocks 0 and 1"
        );
        // Engine blocks that straddle named blocks (24-token named blocks, 16-token engine blocks).
        let odd_a = PrefixKeys::new(24, &[1, 2], 48, 16);
        let odd_b = PrefixKeys::new(24, &[1, 5], 48, 16);
        assert_eq!(odd_a.cacheable(), 3);
        assert_eq!(
            odd_a.key(0),
            odd_b.key(0),
            "tokens 0..16 lie in named block 0"
        );
        assert_ne!(
            odd_a.key(1),
            odd_b.key(1),
            "tokens 16..32 reach into named block 1"
        );
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
