//! Readers: one entry point, [`read_trace`], that detects the format and dispatches to the CSV reader
//! (every CSV format is a `CsvSchema`: which column holds the time and in which unit, which hold the
//! lengths) or the JSON-lines reader (Mooncake).

mod csv_reader;
mod mooncake;

use crate::{Format, RawTrace, TraceError};
use std::path::Path;

pub(crate) use csv_reader::csv_schema;

/// Reads a trace file. `format` overrides detection from the first line.
///
/// The result is sorted by arrival and re-based so the first request arrives at 0. Unsorted input is
/// repaired by a stable sort and a warning in [`RawTrace::warnings`]; malformed rows are errors naming
/// the file and line; rows that are well-formed but unusable (zero lengths, BurstGPT failures) are
/// skipped and counted in [`RawTrace::skipped`].
pub fn read_trace(path: &Path, format: Option<Format>) -> Result<RawTrace, TraceError> {
    let bytes = std::fs::read(path).map_err(|e| TraceError::io(path, e))?;
    read_trace_bytes(&bytes, path, format)
}

/// Reads a trace from memory; `path` names it in messages. See [`read_trace`].
pub fn read_trace_bytes(
    bytes: &[u8],
    path: &Path,
    format: Option<Format>,
) -> Result<RawTrace, TraceError> {
    let first = first_line(bytes);
    let format = match format {
        Some(f) => f,
        None => {
            if first.is_empty() {
                return Err(TraceError::Empty {
                    what: path.display().to_string(),
                });
            }
            Format::detect(&first).ok_or_else(|| TraceError::UnknownFormat {
                path: path.to_path_buf(),
                header: first.clone(),
            })?
        }
    };
    let trace = match format {
        Format::Mooncake => mooncake::read(bytes, path)?,
        csv_format => csv_reader::read(bytes, path, csv_format)?,
    };
    if trace.rows.is_empty() {
        return Err(TraceError::Empty {
            what: path.display().to_string(),
        });
    }
    Ok(trace)
}

/// The first non-blank line, without a byte-order mark or line end (lossy UTF-8, at most 512 bytes).
fn first_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let line = bytes
        .split(|&c| c == b'\n')
        .find(|l| !crate::fields::trim(l).is_empty())
        .map(crate::fields::trim)
        .unwrap_or(&[]);
    String::from_utf8_lossy(&line[..line.len().min(512)]).into_owned()
}
