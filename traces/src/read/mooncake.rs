//! Mooncake (FAST'25) JSON lines: `{"timestamp": ms, "input_length": n, "output_length": n,
//! "hash_ids": [..]}`, one object per line. Read line by line with serde_json (a columnar reader would
//! not help: the rows are small and `hash_ids` is ragged). `hash_ids` go to a [`PrefixBlocks`] side
//! table keyed by the row's read index, for a prefix-cache model.

use crate::fields::trim;
use crate::trace::{PrefixBlocks, Row};
use crate::{Format, RawTrace, TraceError};
use std::io::BufRead;
use std::path::Path;

/// Tokens per prefix block in the Mooncake release.
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

#[derive(serde::Deserialize)]
struct Line {
    timestamp: f64,
    input_length: i64,
    output_length: i64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Reads JSON lines from `reader`.
pub(crate) fn read<R: BufRead>(mut reader: R, path: &Path) -> Result<RawTrace, TraceError> {
    let mut trace = RawTrace::new(path.to_path_buf(), Format::Mooncake);
    let mut prefix = PrefixBlocks::new(MOONCAKE_BLOCK_TOKENS);
    let mut times = Vec::new();
    let mut first_unsorted = None;
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| TraceError::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = trim(&buf);
        let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        trace.rows_read += 1;
        let bad = |msg: String| TraceError::parse(path, line_no, msg);
        let l: Line =
            serde_json::from_slice(text).map_err(|e| bad(format!("bad JSON line: {e}")))?;
        if !l.timestamp.is_finite() || l.timestamp.abs() > 4.6e12 {
            return Err(bad(format!(
                "timestamp {} (ms) is out of range",
                l.timestamp
            )));
        }
        let len = |v: i64, name: &str| {
            u32::try_from(v).map_err(|_| {
                bad(if v < 0 {
                    format!("{name} {v} is negative")
                } else {
                    format!("{name} {v} is too large")
                })
            })
        };
        let prompt = len(l.input_length, "input_length")?;
        let output = len(l.output_length, "output_length")?;
        if output == 0 {
            trace.skip("zero output tokens", line_no);
            continue;
        }
        if prompt == 0 {
            trace.skip("zero prompt tokens", line_no);
            continue;
        }
        let t = (l.timestamp * 1e6).round() as i64;
        if first_unsorted.is_none() && times.last().is_some_and(|&p| t < p) {
            first_unsorted = Some(line_no);
        }
        times.push(t);
        prefix.push(&l.hash_ids);
        let src = trace.rows.len() as u32;
        trace.rows.push(Row {
            t_ns: 0,
            prompt,
            output,
            category: None,
            src,
        });
    }
    trace.prefix = Some(prefix);
    trace.finish(times, first_unsorted);
    Ok(trace)
}
