//! A trace as read, before it becomes a [`specsim_core::workload::Workload`]: rows with times relative to
//! the first request, what was skipped and why, and side data (Mooncake's prefix-block hashes).

use crate::Format;
use specsim_core::time::Nanos;
use specsim_core::workload::{CategoryId, PromptPrefix, RequestSpec, Workload};
use std::path::PathBuf;

/// One request as read or synthesised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Arrival, nanoseconds from the first request (0 for every row of a length-only file).
    pub t_ns: Nanos,
    /// Prompt length in tokens (at least 1).
    pub prompt: u32,
    /// Output length in tokens (at least 1).
    pub output: u32,
    /// Category index into [`RawTrace::categories`].
    pub category: Option<CategoryId>,
    /// Index of the row in read order; keys side tables such as [`PrefixBlocks`].
    pub src: u32,
}

/// Rows skipped for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Why, e.g. "failed request (0 response tokens)".
    pub reason: String,
    /// How many rows.
    pub rows: u64,
    /// Line of the first such row.
    pub first_line: u64,
}

/// Prefix-block hashes per request (Mooncake's `hash_ids`): equal ids are shareable prefix KV blocks of
/// [`PrefixBlocks::block_tokens`] tokens each. Stored flat (one offsets array, one ids array) so a
/// million-request trace costs two allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixBlocks {
    /// Tokens per block (512 in the Mooncake release).
    pub block_tokens: u32,
    offsets: Vec<u32>,
    ids: Vec<u64>,
}

impl PrefixBlocks {
    /// An empty table of blocks of `block_tokens` tokens.
    pub fn new(block_tokens: u32) -> Self {
        PrefixBlocks {
            block_tokens,
            offsets: vec![0],
            ids: Vec::new(),
        }
    }

    /// Appends the next request's block ids.
    pub fn push(&mut self, ids: &[u64]) {
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len() as u32);
    }

    /// Number of requests in the table.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when the table has no request.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Block ids of request `i` (empty if out of range).
    pub fn blocks(&self, i: usize) -> &[u64] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.ids[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The table reordered to follow `src` (entry `k` of the result is entry `src[k]` of `self`).
    pub fn select(&self, src: impl Iterator<Item = u32>) -> PrefixBlocks {
        let mut out = PrefixBlocks::new(self.block_tokens);
        for s in src {
            out.push(self.blocks(s as usize));
        }
        out
    }
}

/// A trace file as read: rows sorted by arrival and re-based to the first request, plus what the
/// reader did to get there.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTrace {
    /// The file read.
    pub path: PathBuf,
    /// Its format (detected or given).
    pub format: Format,
    /// Requests kept, sorted by `t_ns` (stable: equal times keep file order).
    pub rows: Vec<Row>,
    /// Category names (native format only).
    pub categories: Vec<String>,
    /// Prefix-block hashes, indexed by [`Row::src`] (Mooncake only).
    pub prefix: Option<PrefixBlocks>,
    /// Data rows in the file (kept plus skipped).
    pub rows_read: u64,
    /// Rows skipped, by reason.
    pub skipped: Vec<Skipped>,
    /// Repairs made while reading (sorting), in words.
    pub warnings: Vec<String>,
}

impl RawTrace {
    /// An empty trace of `format` read from `path`.
    pub(crate) fn new(path: PathBuf, format: Format) -> Self {
        RawTrace {
            path,
            format,
            rows: Vec::new(),
            categories: Vec::new(),
            prefix: None,
            rows_read: 0,
            skipped: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Counts a skipped row under `reason`.
    pub(crate) fn skip(&mut self, reason: &str, line: u64) {
        match self.skipped.iter_mut().find(|s| s.reason == reason) {
            Some(s) => s.rows += 1,
            None => self.skipped.push(Skipped {
                reason: reason.to_string(),
                rows: 1,
                first_line: line,
            }),
        }
    }

    /// Rows skipped in total.
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.iter().map(|s| s.rows).sum()
    }

    /// Whether the rows carry arrival times.
    pub fn has_arrivals(&self) -> bool {
        self.format.has_arrivals()
    }

    /// Sorts (stably, with a warning naming the first out-of-order line) and re-bases times so the
    /// first request arrives at 0. `times` are the raw times in read order, parallel to `self.rows`;
    /// `first_unsorted_line` is the line of the first row earlier than the row before it, if any.
    pub(crate) fn finish(&mut self, times: Vec<i64>, first_unsorted_line: Option<u64>) {
        let t0 = times.iter().copied().min().unwrap_or(0);
        for (r, &t) in self.rows.iter_mut().zip(&times) {
            // Non-negative: t0 is the minimum, and parsed times lie within ±4.6e18 ns.
            r.t_ns = t.wrapping_sub(t0) as Nanos;
        }
        if let Some(line) = first_unsorted_line {
            let late = times.windows(2).filter(|w| w[1] < w[0]).count();
            self.rows.sort_by_key(|r| r.t_ns);
            self.warnings.push(format!(
                "{}: rows are not sorted by time ({late} rows arrive before the row above them, the first at \
                 line {line}); sorted them by arrival",
                self.path.display()
            ));
        }
    }

    /// The rows as a simulator workload (ids in arrival order), with the prefix table in the same order.
    pub fn to_workload(&self) -> (Workload, Option<PrefixBlocks>) {
        rows_to_workload(&self.rows, &self.categories, self.prefix.as_ref())
    }
}

/// A request's prefix identity from its block ids: the whole blocks of `block_tokens` that fit in a
/// prompt of `prompt` tokens (a Mooncake row lists the partial last block too, and a clipped prompt
/// keeps only the blocks that still fit).
pub fn prompt_prefix(block_tokens: u32, ids: &[u64], prompt: u32) -> Box<PromptPrefix> {
    let whole = (prompt / block_tokens.max(1)) as usize;
    Box::new(PromptPrefix {
        block_tokens,
        ids: ids[..ids.len().min(whole)].into(),
    })
}

/// Builds a workload from rows (already sorted), reordering the prefix table to the rows' order; each
/// request's [`RequestSpec::prefix`] comes from its row of the table.
pub(crate) fn rows_to_workload(
    rows: &[Row],
    categories: &[String],
    prefix: Option<&PrefixBlocks>,
) -> (Workload, Option<PrefixBlocks>) {
    let requests = rows
        .iter()
        .enumerate()
        .map(|(i, r)| RequestSpec {
            id: i as u64,
            arrival_ns: r.t_ns,
            prompt_tokens: r.prompt,
            output_tokens: r.output,
            category: r.category,
            prefix: prefix
                .map(|p| prompt_prefix(p.block_tokens, p.blocks(r.src as usize), r.prompt)),
        })
        .collect();
    let prefix = prefix.map(|p| p.select(rows.iter().map(|r| r.src)));
    (
        Workload {
            requests,
            categories: categories.to_vec(),
        },
        prefix,
    )
}
