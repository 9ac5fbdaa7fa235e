//! Writing a workload in another tool's format: specsim's native CSV, or Vidur's trace CSV (so the same
//! workload can be replayed in Vidur for a cross-check).

use specsim_core::time::ns_to_secs;
use specsim_core::workload::Workload;
use std::fmt::Write as _;
use std::str::FromStr;

/// An output format of `trace convert` and `trace synth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `arrival_s,prompt_tokens,output_tokens,category` (specsim's own).
    Native,
    /// `arrived_at,num_prefill_tokens,num_decode_tokens` (Vidur's trace request generator).
    Vidur,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(OutputFormat::Native),
            "vidur" => Ok(OutputFormat::Vidur),
            _ => Err(format!(
                "unknown output format `{s}`: expected native or vidur"
            )),
        }
    }
}

/// The workload as CSV text in `format`.
pub fn write(w: &Workload, format: OutputFormat) -> String {
    match format {
        OutputFormat::Native => w.to_native_csv(),
        OutputFormat::Vidur => to_vidur_csv(w),
    }
}

/// Vidur's trace CSV: arrival seconds (9 decimals, exact to the nanosecond) and the two lengths.
pub fn to_vidur_csv(w: &Workload) -> String {
    let mut s = String::with_capacity(32 * (w.len() + 1));
    s.push_str("arrived_at,num_prefill_tokens,num_decode_tokens\n");
    for r in &w.requests {
        // Writing into a String cannot fail.
        let _ = writeln!(
            s,
            "{:.9},{},{}",
            ns_to_secs(r.arrival_ns),
            r.prompt_tokens,
            r.output_tokens
        );
    }
    s
}

/// The header line of `format` (newline included).
pub fn header(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Native => "arrival_s,prompt_tokens,output_tokens,category\n",
        OutputFormat::Vidur => "arrived_at,num_prefill_tokens,num_decode_tokens\n",
    }
}

/// Appends one request in `format` (newline included), exactly as [`write()`] renders it.
pub fn push_row(
    s: &mut String,
    format: OutputFormat,
    r: &specsim_core::workload::RequestSpec,
    category: Option<&str>,
) {
    let t = ns_to_secs(r.arrival_ns);
    // Writing into a String cannot fail.
    let _ = match format {
        OutputFormat::Native => writeln!(
            s,
            "{:.9},{},{},{}",
            t,
            r.prompt_tokens,
            r.output_tokens,
            category.unwrap_or("")
        ),
        OutputFormat::Vidur => writeln!(s, "{:.9},{},{}", t, r.prompt_tokens, r.output_tokens),
    };
}

/// Writes a request stream in `format` to `out` as it is drawn (constant memory: `trace synth` of
/// 10⁸ requests holds one row at a time). Returns the requests written.
pub fn write_stream(
    requests: &mut dyn Iterator<
        Item = Result<specsim_core::workload::RequestSpec, specsim_sim::SimError>,
    >,
    categories: &[String],
    format: OutputFormat,
    out: &mut dyn std::io::Write,
) -> Result<u64, crate::TraceError> {
    let io = |e| crate::TraceError::io(std::path::Path::new("output"), e);
    let mut s = String::with_capacity(1 << 16);
    s.push_str(header(format));
    let mut n = 0u64;
    for r in requests {
        let r = r.map_err(|e| crate::TraceError::Config(e.to_string()))?;
        let cat = r
            .category
            .and_then(|c| categories.get(c as usize))
            .map(String::as_str);
        push_row(&mut s, format, &r, cat);
        n += 1;
        if s.len() >= 1 << 16 {
            out.write_all(s.as_bytes()).map_err(io)?;
            s.clear();
        }
    }
    out.write_all(s.as_bytes()).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(n)
}

/// Rows per Parquet row group written by [`write_parquet_stream`] (about 7 MiB of buffered values).
#[cfg(feature = "parquet")]
pub const PARQUET_GROUP_ROWS: usize = 1 << 18;

/// Writes a request stream as a Parquet trace to `out`, one row group of `group_rows` (the CLI uses
/// [`PARQUET_GROUP_ROWS`]) at a time: memory bounded by one group, whatever the stream's length. Columns: `arrival_ns` INT64 (exact,
/// delta-encoded), `prompt_tokens` and `output_tokens` INT64, `category` an optional UTF-8 string;
/// uncompressed (the crate is built without codecs). [`crate::read::parquet`] reads it back exactly.
/// Returns the requests written.
#[cfg(feature = "parquet")]
pub fn write_parquet_stream<W: std::io::Write + Send>(
    requests: &mut dyn Iterator<
        Item = Result<specsim_core::workload::RequestSpec, specsim_sim::SimError>,
    >,
    categories: &[String],
    out: W,
    path: &std::path::Path,
    group_rows: usize,
) -> Result<u64, crate::TraceError> {
    use parquet::basic::{Encoding, LogicalType, Repetition, Type as PhysicalType};
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::{ColumnPath, Type};
    use std::sync::Arc;

    let perr = |e: parquet::errors::ParquetError| crate::TraceError::Parquet {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let int = |name: &str| {
        Type::primitive_type_builder(name, PhysicalType::INT64)
            .with_repetition(Repetition::REQUIRED)
            .build()
            .map(Arc::new)
    };
    let category = Type::primitive_type_builder("category", PhysicalType::BYTE_ARRAY)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(Some(LogicalType::String))
        .build()
        .map(Arc::new)
        .map_err(perr)?;
    let schema = Type::group_type_builder("specsim_trace")
        .with_fields(vec![
            int("arrival_ns").map_err(perr)?,
            int("prompt_tokens").map_err(perr)?,
            int("output_tokens").map_err(perr)?,
            category,
        ])
        .build()
        .map_err(perr)?;
    let mut props = WriterProperties::builder();
    for c in ["arrival_ns", "prompt_tokens", "output_tokens"] {
        // Sorted times and short lengths pack into a few bits each as deltas.
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    let mut writer =
        SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props.build())).map_err(perr)?;
    let mut cols: [Vec<i64>; 3] = Default::default();
    let mut cats: Vec<ByteArray> = Vec::new();
    let mut defs: Vec<i16> = Vec::new();
    let mut n = 0u64;
    let mut flush = |cols: &mut [Vec<i64>; 3],
                     cats: &mut Vec<ByteArray>,
                     defs: &mut Vec<i16>|
     -> Result<(), crate::TraceError> {
        if cols[0].is_empty() {
            return Ok(());
        }
        let mut group = writer.next_row_group().map_err(perr)?;
        for values in cols.iter() {
            let mut col = group.next_column().map_err(perr)?.ok_or_else(|| {
                perr(parquet::errors::ParquetError::General(
                    "schema has fewer columns than written".into(),
                ))
            })?;
            col.typed::<Int64Type>()
                .write_batch(values, None, None)
                .map_err(perr)?;
            col.close().map_err(perr)?;
        }
        let mut col = group.next_column().map_err(perr)?.ok_or_else(|| {
            perr(parquet::errors::ParquetError::General(
                "schema has no category column".into(),
            ))
        })?;
        col.typed::<ByteArrayType>()
            .write_batch(cats, Some(defs), None)
            .map_err(perr)?;
        col.close().map_err(perr)?;
        group.close().map_err(perr)?;
        cols.iter_mut().for_each(Vec::clear);
        cats.clear();
        defs.clear();
        Ok(())
    };
    for r in requests {
        let r = r.map_err(|e| crate::TraceError::Config(e.to_string()))?;
        cols[0].push(r.arrival_ns as i64);
        cols[1].push(i64::from(r.prompt_tokens));
        cols[2].push(i64::from(r.output_tokens));
        match r.category.and_then(|c| categories.get(c as usize)) {
            Some(name) => {
                cats.push(ByteArray::from(name.as_str()));
                defs.push(1);
            }
            None => defs.push(0),
        }
        n += 1;
        if cols[0].len() >= group_rows.max(1) {
            flush(&mut cols, &mut cats, &mut defs)?;
        }
    }
    flush(&mut cols, &mut cats, &mut defs)?;
    writer.close().map_err(perr)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vidur_csv_reads_back_identically() {
        let mut w = Workload::default();
        w.push(0, 10, 5, None);
        w.push(1_500_000_001, 7, 3, None);
        let text = to_vidur_csv(&w);
        assert!(
            text.starts_with("arrived_at,num_prefill_tokens,num_decode_tokens\n0.000000000,10,5\n")
        );
        let back =
            crate::read_trace_bytes(text.as_bytes(), std::path::Path::new("v.csv"), None).unwrap();
        assert_eq!(back.format, crate::Format::Vidur);
        assert_eq!(back.to_workload().0, w);
    }
}
