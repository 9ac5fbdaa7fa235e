//! Every CSV format as a schema (time column and unit, length columns), read by one loop.
//!
//! The loop reuses one `csv::ByteRecord`, parses fields from bytes and never allocates per row, which is
//! what makes a million-row Azure file read in a fraction of a second (see `benches/read_azure.rs`).

use crate::fields::{parse_datetime_ns, parse_time_ns, parse_tokens, trim};
use crate::trace::Row;
use crate::{Format, RawTrace, TraceError};
use specsim_core::workload::CategoryId;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// How a time column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    /// A calendar timestamp, `YYYY-MM-DD HH:MM:SS.fffffff`.
    DateTime,
    /// Decimal seconds.
    Seconds,
}

/// The columns a CSV format is read from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsvSchema {
    /// Arrival-time column and its unit; `None` for length-only files.
    pub time: Option<(&'static str, TimeUnit)>,
    /// Prompt-length column.
    pub prompt: &'static str,
    /// Output-length column.
    pub output: &'static str,
    /// Optional category column.
    pub category: Option<&'static str>,
    /// Why a row with zero output tokens is skipped, as reported.
    pub zero_output: &'static str,
}

impl CsvSchema {
    /// Columns that must be present (the ones detection looks for).
    pub fn required(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.time.iter().map(|t| t.0).collect();
        v.push(self.prompt);
        v.push(self.output);
        v
    }
}

/// The schema of a CSV format; `None` for JSON lines.
pub(crate) fn csv_schema(format: Format) -> Option<CsvSchema> {
    let s = |time, prompt, output| CsvSchema {
        time,
        prompt,
        output,
        category: None,
        zero_output: "zero output tokens",
    };
    Some(match format {
        Format::Native => CsvSchema {
            category: Some("category"),
            ..s(
                Some(("arrival_s", TimeUnit::Seconds)),
                "prompt_tokens",
                "output_tokens",
            )
        },
        Format::Azure => s(
            Some(("TIMESTAMP", TimeUnit::DateTime)),
            "ContextTokens",
            "GeneratedTokens",
        ),
        Format::BurstGpt => CsvSchema {
            zero_output: "failed request (0 response tokens)",
            ..s(
                Some(("Timestamp", TimeUnit::Seconds)),
                "Request tokens",
                "Response tokens",
            )
        },
        Format::Vidur => s(
            Some(("arrived_at", TimeUnit::Seconds)),
            "num_prefill_tokens",
            "num_decode_tokens",
        ),
        Format::Lengths => s(None, "num_prefill_tokens", "num_decode_tokens"),
        Format::Mooncake | Format::Parquet => return None,
    })
}

fn csv_error(path: &Path, e: csv::Error) -> TraceError {
    let line = e.position().map_or(0, |p| p.line());
    let msg = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => TraceError::io(path, io),
        _ => TraceError::parse(path, line, format!("malformed CSV: {msg}")),
    }
}

/// Reads CSV from `reader` in `format`; `size` (bytes, approximate) sizes the row buffers.
pub(crate) fn read<R: Read>(
    reader: R,
    size: usize,
    path: &Path,
    format: Format,
) -> Result<RawTrace, TraceError> {
    let Some(schema) = csv_schema(format) else {
        return Err(TraceError::Config(format!(
            "`{format}` is not a CSV format"
        )));
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(reader);
    let headers = rdr.byte_headers().map_err(|e| csv_error(path, e))?.clone();
    let header_line = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let header_line = specsim_core::excerpt(header_line.as_bytes(), 120);
    let find = |name: &str| {
        headers.iter().position(|h| {
            let h = trim(h.strip_prefix(b"\xef\xbb\xbf").unwrap_or(h));
            h.eq_ignore_ascii_case(name.as_bytes())
        })
    };
    let need = |name: &'static str| {
        find(name).ok_or_else(|| TraceError::MissingColumn {
            path: path.to_path_buf(),
            format: format.name(),
            column: name,
            header: header_line.clone(),
        })
    };
    let time_col = match schema.time {
        Some((name, unit)) => Some((need(name)?, name, unit)),
        None => None,
    };
    let ip = need(schema.prompt)?;
    let io = need(schema.output)?;
    let ic = schema.category.and_then(find);

    let mut trace = RawTrace::new(path.to_path_buf(), format);
    let estimate = size / 32;
    trace.rows.reserve(estimate);
    let mut times: Vec<i64> = Vec::with_capacity(if time_col.is_some() { estimate } else { 0 });
    let mut first_unsorted = None;
    let mut cat_ids: HashMap<Vec<u8>, CategoryId> = HashMap::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = rec.position().map_or(0, |p| p.line());
        trace.rows_read += 1;
        let bad = |msg: String| TraceError::parse(path, line, msg);
        let field = |i: usize, name: &str| {
            rec.get(i).ok_or_else(|| {
                bad(format!(
                    "missing field `{name}` (the row has {} fields)",
                    rec.len()
                ))
            })
        };
        let t = match time_col {
            Some((i, name, TimeUnit::DateTime)) => {
                parse_datetime_ns(field(i, name)?).map_err(bad)?
            }
            Some((i, name, TimeUnit::Seconds)) => {
                parse_time_ns(field(i, name)?, 1e9, name).map_err(bad)?
            }
            None => 0,
        };
        let prompt = parse_tokens(field(ip, schema.prompt)?, schema.prompt).map_err(bad)?;
        let output = parse_tokens(field(io, schema.output)?, schema.output).map_err(bad)?;
        if output == 0 {
            trace.skip(schema.zero_output, line);
            continue;
        }
        if prompt == 0 {
            trace.skip("zero prompt tokens", line);
            continue;
        }
        let category = match ic
            .and_then(|i| rec.get(i))
            .map(trim)
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(c) => Some(match cat_ids.get(c) {
                Some(&id) => id,
                None => {
                    let id = CategoryId::try_from(trace.categories.len())
                        .map_err(|_| bad("more than 65,535 distinct categories".into()))?;
                    trace
                        .categories
                        .push(String::from_utf8_lossy(c).into_owned());
                    cat_ids.insert(c.to_vec(), id);
                    id
                }
            }),
        };
        if time_col.is_some() {
            if first_unsorted.is_none() && times.last().is_some_and(|&prev| t < prev) {
                first_unsorted = Some(line);
            }
            times.push(t);
        }
        let src = trace.rows.len() as u32;
        trace.rows.push(Row {
            t_ns: 0,
            prompt,
            output,
            category,
            src,
        });
    }
    if time_col.is_some() {
        trace.finish(times, first_unsorted);
    }
    Ok(trace)
}
