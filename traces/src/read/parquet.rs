//! Parquet traces, read one batch of one row group at a time (memory bounded by the batch, whatever
//! the file's size), with the `parquet` crate's column readers alone (no Arrow).
//!
//! Columns are found by name (case-insensitive, top-level columns only), so a table written by
//! `specsim trace convert --to parquet` or exported from another tool's CSV both read:
//!
//! | role | names (first found wins) | types |
//! |---|---|---|
//! | arrival | `arrival_ns` (ns), `arrival_s` (s), `arrived_at` (s, Vidur), `timestamp` (ms, Mooncake) | INT32, INT64, FLOAT, DOUBLE |
//! | prompt | `prompt_tokens`, `num_prefill_tokens`, `input_length`, `ContextTokens` | INT32, INT64 |
//! | output | `output_tokens`, `num_decode_tokens`, `output_length`, `GeneratedTokens` | INT32, INT64 |
//! | category | `category` (optional; null or empty = none) | BYTE_ARRAY |
//!
//! Floating-point times are rounded to the nearest nanosecond; integer ones are exact (what
//! `convert --to parquet` writes: `arrival_ns` as INT64). Columns may be REQUIRED or OPTIONAL, but a
//! null arrival or length is an error. Rows are numbered from 1 across row groups; that number stands
//! where a CSV error gives a line. Zero-length rows are skipped and counted, as in the CSV formats.

use crate::trace::RawTrace;
use crate::{Format, TraceError};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use specsim_core::workload::CategoryId;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Times beyond this many nanoseconds from zero are out of range (as in the CSV readers).
const MAX_ABS_NS: i64 = 4_600_000_000_000_000_000;

/// Rows decoded per column read (a few hundred KiB per column).
const BATCH_ROWS: usize = 1 << 15;

/// The arrival column names and their unit (nanoseconds per unit).
const TIME_COLUMNS: [(&str, i64); 4] = [
    ("arrival_ns", 1),
    ("arrival_s", 1_000_000_000),
    ("arrived_at", 1_000_000_000),
    ("timestamp", 1_000_000),
];
const PROMPT_COLUMNS: [&str; 4] = [
    "prompt_tokens",
    "num_prefill_tokens",
    "input_length",
    "ContextTokens",
];
const OUTPUT_COLUMNS: [&str; 4] = [
    "output_tokens",
    "num_decode_tokens",
    "output_length",
    "GeneratedTokens",
];

/// One row as stored, before any check on its values.
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetRow {
    /// 1-based row number in the file.
    pub row: u64,
    /// Arrival, nanoseconds (not re-based).
    pub t_ns: i64,
    /// Prompt tokens as stored (may be out of range; the caller checks).
    pub prompt: i64,
    /// Output tokens as stored.
    pub output: i64,
    /// The category, when the file has the column and this row a non-empty value.
    pub category: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

/// Where the columns are: (index, name) of each role, and the arrival's unit.
#[derive(Debug, Clone)]
struct Columns {
    time: (usize, String, i64),
    prompt: (usize, String),
    output: (usize, String),
    category: Option<(usize, String)>,
}

struct GroupReaders {
    time: ColumnReader,
    prompt: ColumnReader,
    output: ColumnReader,
    category: Option<ColumnReader>,
}

#[derive(Default)]
struct Batch {
    time: Vec<Option<Num>>,
    prompt: Vec<Option<Num>>,
    output: Vec<Option<Num>>,
    category: Vec<Option<ByteArray>>,
}

/// The rows of a Parquet trace in file order, one batch of one row group in memory at a time.
pub struct ParquetRows {
    path: PathBuf,
    file: SerializedFileReader<File>,
    cols: Columns,
    next_group: usize,
    group: Option<GroupReaders>,
    batch: Batch,
    pos: usize,
    row: u64,
    failed: bool,
}

fn perr(path: &Path, msg: impl Into<String>) -> TraceError {
    TraceError::Parquet {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl ParquetRows {
    /// Opens `path` and finds its columns (an error names what is missing or mistyped).
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let f = File::open(path).map_err(|e| TraceError::io(path, e))?;
        let file = SerializedFileReader::new(f)
            .map_err(|e| perr(path, format!("not a readable Parquet file ({e})")))?;
        let cols = find_columns(path, &file)?;
        Ok(ParquetRows {
            path: path.to_path_buf(),
            file,
            cols,
            next_group: 0,
            group: None,
            batch: Batch::default(),
            pos: 0,
            row: 0,
            failed: false,
        })
    }

    /// Rows the footer says the file holds (before zero-length rows are skipped).
    pub fn rows_in_file(&self) -> u64 {
        self.file.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file has a category column.
    pub fn has_category(&self) -> bool {
        self.cols.category.is_some()
    }

    fn open_group(&mut self, g: usize) -> Result<GroupReaders, TraceError> {
        let here =
            |e: parquet::errors::ParquetError| perr(&self.path, format!("row group {g}: {e}"));
        let rg = self.file.get_row_group(g).map_err(here)?;
        let col = |(i, _): (usize, &String)| rg.get_column_reader(i).map_err(here);
        Ok(GroupReaders {
            time: col((self.cols.time.0, &self.cols.time.1))?,
            prompt: col((self.cols.prompt.0, &self.cols.prompt.1))?,
            output: col((self.cols.output.0, &self.cols.output.1))?,
            category: match &self.cols.category {
                Some((i, n)) => Some(col((*i, n))?),
                None => None,
            },
        })
    }

    /// Decodes the next batch (opening row groups as needed); false at the end of the file.
    fn refill(&mut self) -> Result<bool, TraceError> {
        loop {
            if self.group.is_none() {
                if self.next_group >= self.file.num_row_groups() {
                    return Ok(false);
                }
                let g = self.open_group(self.next_group)?;
                self.group = Some(g);
                self.next_group += 1;
            }
            let g = self.next_group - 1;
            let readers = self.group.as_mut().expect("opened above");
            let b = &mut self.batch;
            let name = |c: &(usize, String)| c.1.clone();
            let at = |col: String, e: parquet::errors::ParquetError| {
                perr(&self.path, format!("row group {g}, column `{col}`: {e}"))
            };
            b.time.clear();
            b.prompt.clear();
            b.output.clear();
            b.category.clear();
            let nt = read_num(&mut readers.time, &mut b.time)
                .map_err(|e| at(name(&(0, self.cols.time.1.clone())), e))?;
            let np = read_num(&mut readers.prompt, &mut b.prompt)
                .map_err(|e| at(name(&self.cols.prompt), e))?;
            let no = read_num(&mut readers.output, &mut b.output)
                .map_err(|e| at(name(&self.cols.output), e))?;
            let counts = [
                (self.cols.time.1.as_str(), nt),
                (self.cols.prompt.1.as_str(), np),
                (self.cols.output.1.as_str(), no),
            ];
            let mut counts = counts.to_vec();
            if let (Some(r), Some(c)) = (readers.category.as_mut(), &self.cols.category) {
                let nc = read_bytes(r, &mut b.category).map_err(|e| at(c.1.clone(), e))?;
                counts.push((c.1.as_str(), nc));
            }
            if counts.iter().any(|c| c.1 != nt) {
                let list: Vec<String> = counts.iter().map(|(n, k)| format!("`{n}` {k}")).collect();
                return Err(perr(
                    &self.path,
                    format!(
                        "row group {g}: columns end at different rows ({})",
                        list.join(", ")
                    ),
                ));
            }
            self.pos = 0;
            if nt > 0 {
                return Ok(true);
            }
            self.group = None;
        }
    }

    fn next_row(&mut self) -> Result<Option<ParquetRow>, TraceError> {
        if self.pos >= self.batch.time.len() && !self.refill()? {
            return Ok(None);
        }
        let i = self.pos;
        self.pos += 1;
        self.row += 1;
        let row = self.row;
        let g = self.next_group - 1;
        let null = |col: &str| {
            perr(
                &self.path,
                format!("row group {g}, row {row}: `{col}` is null"),
            )
        };
        let (_, tname, unit) = &self.cols.time;
        let t = self.batch.time[i].ok_or_else(|| null(tname))?;
        let t_ns = to_ns(t, *unit).ok_or_else(|| {
            perr(
                &self.path,
                format!("row group {g}, row {row}: `{tname}` {t:?} is out of range"),
            )
        })?;
        let int = |v: Option<Num>, col: &str| match v {
            Some(Num::Int(x)) => Ok(x),
            Some(Num::Float(_)) | None => Err(null(col)),
        };
        let prompt = int(self.batch.prompt[i], &self.cols.prompt.1)?;
        let output = int(self.batch.output[i], &self.cols.output.1)?;
        let category = self
            .batch
            .category
            .get(i)
            .cloned()
            .flatten()
            .map(|b| b.data().to_vec())
            .filter(|c| !c.is_empty());
        Ok(Some(ParquetRow {
            row,
            t_ns,
            prompt,
            output,
            category,
        }))
    }
}

impl Iterator for ParquetRows {
    type Item = Result<ParquetRow, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.next_row().transpose();
        self.failed = matches!(r, Some(Err(_)));
        r
    }
}

/// A time in `unit` nanoseconds as nanoseconds, or None when out of the clock's range.
fn to_ns(t: Num, unit: i64) -> Option<i64> {
    match t {
        Num::Int(x) => x.checked_mul(unit).filter(|v| v.abs() <= MAX_ABS_NS),
        Num::Float(x) => {
            let v = (x * unit as f64).round();
            (v.is_finite() && v.abs() <= MAX_ABS_NS as f64).then_some(v as i64)
        }
    }
}

fn find_columns(path: &Path, file: &SerializedFileReader<File>) -> Result<Columns, TraceError> {
    use parquet::basic::Type as P;
    let schema = file.metadata().file_metadata().schema_descr();
    let top: Vec<(usize, String, P)> = schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.path().parts().len() == 1)
        .map(|(i, c)| (i, c.name().to_string(), c.physical_type()))
        .collect();
    let header = top
        .iter()
        .map(|c| c.1.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| top.iter().find(|c| c.1.eq_ignore_ascii_case(n)).cloned())
    };
    let missing = |what: &str, names: &[&str]| {
        perr(
            path,
            format!(
                "no {what} column (looked for {}; the file has {header})",
                names.join(", ")
            ),
        )
    };
    let typed = |c: (usize, String, P), ok: &[P], want: &str| {
        if ok.contains(&c.2) {
            Ok((c.0, c.1))
        } else {
            Err(perr(
                path,
                format!("column `{}` is {} but must be {want}", c.1, c.2),
            ))
        }
    };
    let time_names: Vec<&str> = TIME_COLUMNS.iter().map(|c| c.0).collect();
    let t = find(&time_names).ok_or_else(|| missing("arrival", &time_names))?;
    let unit = TIME_COLUMNS
        .iter()
        .find(|c| c.0.eq_ignore_ascii_case(&t.1))
        .map_or(1, |c| c.1);
    let (ti, tn) = typed(
        t,
        &[P::INT32, P::INT64, P::FLOAT, P::DOUBLE],
        "a number (INT32, INT64, FLOAT or DOUBLE)",
    )?;
    let ints = [P::INT32, P::INT64];
    let p = find(&PROMPT_COLUMNS).ok_or_else(|| missing("prompt-length", &PROMPT_COLUMNS))?;
    let o = find(&OUTPUT_COLUMNS).ok_or_else(|| missing("output-length", &OUTPUT_COLUMNS))?;
    let category = match find(&["category"]) {
        Some(c) => Some(typed(c, &[P::BYTE_ARRAY], "BYTE_ARRAY (a string)")?),
        None => None,
    };
    Ok(Columns {
        time: (ti, tn, unit),
        prompt: typed(p, &ints, "an integer (INT32 or INT64)")?,
        output: typed(o, &ints, "an integer (INT32 or INT64)")?,
        category,
    })
}

/// Reads up to [`BATCH_ROWS`] records of a flat column, nulls as `None`; returns the records read.
fn read_opt<T: DataType>(
    r: &mut ColumnReaderImpl<T>,
    out: &mut Vec<Option<T::T>>,
) -> parquet::errors::Result<usize> {
    let mut values = Vec::with_capacity(BATCH_ROWS);
    // Left empty by the reader when the column is REQUIRED (its max definition level is 0).
    let mut defs = Vec::new();
    let (records, _, _) = r.read_records(BATCH_ROWS, Some(&mut defs), None, &mut values)?;
    if !defs.is_empty() {
        let mut it = values.into_iter();
        for d in defs {
            out.push(if d > 0 { it.next() } else { None });
        }
    } else {
        out.extend(values.into_iter().map(Some));
    }
    Ok(records)
}

fn read_num(r: &mut ColumnReader, out: &mut Vec<Option<Num>>) -> parquet::errors::Result<usize> {
    macro_rules! via {
        ($r:expr, $f:expr) => {{
            let mut v = Vec::new();
            let n = read_opt($r, &mut v)?;
            out.extend(v.into_iter().map(|x| x.map($f)));
            Ok(n)
        }};
    }
    match r {
        ColumnReader::Int32ColumnReader(r) => via!(r, |x: i32| Num::Int(x as i64)),
        ColumnReader::Int64ColumnReader(r) => via!(r, Num::Int),
        ColumnReader::FloatColumnReader(r) => via!(r, |x: f32| Num::Float(x as f64)),
        ColumnReader::DoubleColumnReader(r) => via!(r, Num::Float),
        _ => Err(parquet::errors::ParquetError::General(
            "not a numeric column".into(),
        )),
    }
}

fn read_bytes(
    r: &mut ColumnReader,
    out: &mut Vec<Option<ByteArray>>,
) -> parquet::errors::Result<usize> {
    match r {
        ColumnReader::ByteArrayColumnReader(r) => read_opt(r, out),
        _ => Err(parquet::errors::ParquetError::General(
            "not a BYTE_ARRAY column".into(),
        )),
    }
}

/// Reads a whole Parquet trace (see the module notes), sorted and re-based like the CSV formats.
pub fn read(path: &Path) -> Result<RawTrace, TraceError> {
    let mut rows = ParquetRows::open(path)?;
    let mut trace = RawTrace::new(path.to_path_buf(), Format::Parquet);
    let mut times: Vec<i64> = Vec::with_capacity(rows.rows_in_file().min(1 << 24) as usize);
    trace.rows.reserve(times.capacity());
    let mut first_unsorted = None;
    let mut cat_ids: HashMap<Vec<u8>, CategoryId> = HashMap::new();
    let (pname, oname) = (rows.cols.prompt.1.clone(), rows.cols.output.1.clone());
    for r in rows.by_ref() {
        let r = r?;
        trace.rows_read += 1;
        let Some((prompt, output)) = lengths(path, &r, &pname, &oname)? else {
            let reason = if r.output == 0 {
                "zero output tokens"
            } else {
                "zero prompt tokens"
            };
            trace.skip(reason, r.row);
            continue;
        };
        let category = match r.category {
            None => None,
            Some(c) => Some(match cat_ids.get(&c) {
                Some(&id) => id,
                None => {
                    let id = CategoryId::try_from(trace.categories.len()).map_err(|_| {
                        perr(
                            path,
                            format!("row {}: more than 65,535 distinct categories", r.row),
                        )
                    })?;
                    trace
                        .categories
                        .push(String::from_utf8_lossy(&c).into_owned());
                    cat_ids.insert(c, id);
                    id
                }
            }),
        };
        if first_unsorted.is_none() && times.last().is_some_and(|&prev| r.t_ns < prev) {
            first_unsorted = Some(r.row);
        }
        times.push(r.t_ns);
        let src = trace.rows.len() as u32;
        trace.rows.push(crate::Row {
            t_ns: 0,
            prompt,
            output,
            category,
            src,
        });
    }
    trace.finish(times, first_unsorted);
    Ok(trace)
}

/// A row's lengths as token counts, `None` when either is zero (the row is skipped); an error naming
/// the row when one is negative or too large.
pub fn lengths(
    path: &Path,
    r: &ParquetRow,
    prompt_col: &str,
    output_col: &str,
) -> Result<Option<(u32, u32)>, TraceError> {
    let len = |v: i64, col: &str| {
        u32::try_from(v)
            .map_err(|_| perr(path, format!("row {}: `{col}` {v} is out of range", r.row)))
    };
    let output = len(r.output, output_col)?;
    let prompt = len(r.prompt, prompt_col)?;
    Ok((prompt > 0 && output > 0).then_some((prompt, output)))
}

impl ParquetRows {
    /// The names of the prompt and output columns found.
    pub fn length_columns(&self) -> (&str, &str) {
        (&self.cols.prompt.1, &self.cols.output.1)
    }
}
