//! Readers: one entry point, [`read_trace`], that detects the format and dispatches to the CSV reader
//! (every CSV format is a `CsvSchema`: which column holds the time and in which unit, which hold the
//! lengths) or the JSON-lines reader (Mooncake).

mod csv_reader;
pub(crate) mod mooncake;
#[cfg(feature = "parquet")]
pub mod parquet;

use crate::{Format, RawTrace, TraceError};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

pub(crate) use csv_reader::csv_schema;

/// Reads a trace file. `format` overrides detection from the first line.
///
/// The result is sorted by arrival and re-based so the first request arrives at 0. Unsorted input is
/// repaired by a stable sort and a warning in [`RawTrace::warnings`]; malformed rows are errors naming
/// the file and line; rows that are well-formed but unusable (zero lengths, BurstGPT failures) are
/// skipped and counted in [`RawTrace::skipped`].
pub fn read_trace(path: &Path, format: Option<Format>) -> Result<RawTrace, TraceError> {
    let io = |e| TraceError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len() as usize;
    // Detect from the start of the file, then stream it from the beginning: a multi-gigabyte trace
    // never has to fit in memory, only its rows (24 bytes each).
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut file)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let format = detect(&head, path, format)?;
    if format == Format::Parquet {
        drop(file);
        return finish(read_parquet(path)?, path);
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let reader = BufReader::with_capacity(1 << 16, file);
    finish(read_format(reader, size, path, format)?, path)
}

/// Reads a trace from memory; `path` names it in messages. See [`read_trace`].
pub fn read_trace_bytes(
    bytes: &[u8],
    path: &Path,
    format: Option<Format>,
) -> Result<RawTrace, TraceError> {
    let format = detect(bytes, path, format)?;
    if format == Format::Parquet {
        return Err(TraceError::Config(format!(
            "{}: a Parquet trace is read from its file, not from memory",
            path.display()
        )));
    }
    finish(read_format(bytes, bytes.len(), path, format)?, path)
}

/// Bytes read to detect the format.
const HEAD_BYTES: usize = 4096;

fn detect(head: &[u8], path: &Path, format: Option<Format>) -> Result<Format, TraceError> {
    if let Some(f) = format {
        return Ok(f);
    }
    if Format::is_parquet(head) {
        return Ok(Format::Parquet);
    }
    let first = first_line(head);
    if first.is_empty() {
        return Err(TraceError::Empty {
            what: path.display().to_string(),
        });
    }
    Format::detect(&first).ok_or_else(|| TraceError::UnknownFormat {
        path: path.to_path_buf(),
        header: first,
    })
}

fn read_format<R: BufRead>(
    reader: R,
    size: usize,
    path: &Path,
    format: Format,
) -> Result<RawTrace, TraceError> {
    match format {
        Format::Mooncake => mooncake::read(reader, path),
        csv_format => csv_reader::read(reader, size, path, csv_format),
    }
}

#[cfg(feature = "parquet")]
fn read_parquet(path: &Path) -> Result<RawTrace, TraceError> {
    parquet::read(path)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(path: &Path) -> Result<RawTrace, TraceError> {
    Err(TraceError::Config(format!(
        "{}: Parquet traces need specsim built with the `parquet` feature (on by default)",
        path.display()
    )))
}

fn finish(trace: RawTrace, path: &Path) -> Result<RawTrace, TraceError> {
    if trace.rows.is_empty() {
        return Err(TraceError::Empty {
            what: path.display().to_string(),
        });
    }
    Ok(trace)
}

/// The first non-blank line, without a byte-order mark or line end (an escaped excerpt of at most 80 characters).
fn first_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let line = bytes
        .split(|&c| c == b'\n')
        .find(|l| !crate::fields::trim(l).is_empty())
        .map(crate::fields::trim)
        .unwrap_or(&[]);
    specsim_core::excerpt(line, 80)
}
