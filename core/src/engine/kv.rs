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

    /// Evicts the `n` least recently used cached free blocks into the plain free pool; false (and no
    /// change) when fewer are cached.
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
        if self.map.contains_key(&key) {
            return NO_SLOT;
        }
        let block = CachedBlock {
            key,
            refs: 1,
            prev: NO_SLOT,
            next: NO_SLOT,
        };
        let slot = match self.vacant.pop() {
            Some(s) => {
                self.blocks[s as usize] = block;
                s
            }
            None => {
                self.blocks.push(block);
                (self.blocks.len() - 1) as u32
            }
        };
        self.map.insert(key, slot);
        self.held += 1;
        slot
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
        mix(self.chain[named].wrapping_add((j as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    }

    /// Keys of engine blocks `from..cacheable()`.
    pub fn keys(&self, from: u32) -> impl Iterator<Item = u64> + '_ {
        (from..self.cacheable).map(|j| self.key(j))
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
