//! Workloads as streams: requests drawn or read one at a time, so a trace larger than memory (or a
//! synthetic day of a fleet) never has to be held.
//!
//! What streams: every synthetic workload ([`crate::synth::SynthIter`]), and trace files in the
//! `native` CSV, `mooncake` JSON-lines and Parquet formats whose rows are sorted by arrival (an
//! unsorted row is an error naming its line or row, since repairing it would need the whole trace).
//! Every `[trace]` transformation streams, with exactly the requests the loaded path
//! ([`crate::load_workload`], [`crate::transform::apply`]) gives:
//!
//! - `limit`, `rate_scale`, `max_prompt`, `max_output`, `max_context` act on one row at a time;
//! - a `start_s`/`duration_s` window skips rows before it and stops reading at the first row after it
//!   (so a malformed row after the window, which loading would report, is never read);
//! - `sample` is selection sampling, one seeded decision per row in order, which needs only the number
//!   of rows in the window: a first pass over the source counts them;
//! - `target_rate` divides times by a factor computed from the selected rows' count and span: a pass
//!   through the window, sample and limit finds them, then the stream applies the factor as
//!   `rate_scale` would;
//! - `categories` draws one category per request in order from its own seeded stream.
//!
//! Each extra pass re-reads the file (or re-draws the synthetic workload) without holding it. A file's
//! own `category` values do not stream (their names must be known before the run) unless a
//! `categories` mix replaces them. [`plan_stream`] decides when `specsim run` streams: large files
//! ([`STREAM_FILE_BYTES`], [`STREAM_PARQUET_ROWS`]), and synthetic workloads whose length is known in
//! advance (no window, `sample` or `target_rate`).

use crate::format::Format;
use crate::read::mooncake::MOONCAKE_BLOCK_TOKENS;
use crate::synth::SynthIter;
use crate::trace::{prompt_prefix, Row};
use crate::transform::{clip, mean_rate_of, rate_factor, window_bounds, CategoryDraw, Sampler};
use crate::{paths, TraceError};
use specsim_core::time::Nanos;
use specsim_core::workload::RequestSpec;
use specsim_sim::scenario::RequestStream;
use specsim_sim::trace_config::TraceConfig;
use specsim_sim::SimError;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Trace files at least this large stream from disk in `specsim run` (when their format and
/// transformations allow); smaller ones are loaded, which also repairs unsorted rows.
pub const STREAM_FILE_BYTES: u64 = 256 << 20;

/// What [`plan_stream`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
    /// Requests, when known in advance (synthetic workloads).
    pub len: Option<usize>,
    what: String,
}

impl StreamPlan {
    /// One line for the user.
    pub fn describe(&self) -> String {
        format!("streaming {}", self.what)
    }
}

/// Whether the transformations of `cfg` keep the number of requests known in advance (a synthetic
/// workload's length is then known before the run).
fn keeps_count(cfg: &TraceConfig) -> bool {
    cfg.start_s.is_none()
        && cfg.duration_s.is_none()
        && cfg.sample.is_none()
        && cfg.target_rate.is_none()
}

/// Parquet files of at least this many rows stream in `specsim run` (about what
/// [`STREAM_FILE_BYTES`] of native CSV holds); smaller ones are loaded.
pub const STREAM_PARQUET_ROWS: u64 = 1 << 23;

/// Whether `specsim run` should stream `cfg`'s workload: `Some` when it can (see the module notes)
/// and it is worth it (synthetic workloads whose length is known; files of at least
/// [`STREAM_FILE_BYTES`], or Parquet files of at least [`STREAM_PARQUET_ROWS`] rows).
pub fn plan_stream(
    cfg: &TraceConfig,
    base_dir: &Path,
    _seed: u64,
) -> Result<Option<StreamPlan>, TraceError> {
    match (&cfg.path, &cfg.synthetic) {
        (None, Some(s)) if cfg.format.is_none() && keeps_count(cfg) => Ok(Some(StreamPlan {
            len: Some(cfg.limit.map_or(s.requests, |l| l.min(s.requests))),
            what: format!("synthetic workload: {}", crate::load::describe(s)),
        })),
        (Some(p), None) => {
            let path = paths::resolve(p, base_dir)?;
            let size = std::fs::metadata(&path)
                .map_err(|e| TraceError::io(&path, e))?
                .len();
            let format = file_format(&path, cfg)?;
            let big = match format {
                Format::Native | Format::Mooncake => size >= STREAM_FILE_BYTES,
                Format::Parquet => parquet_rows(&path)? >= STREAM_PARQUET_ROWS,
                _ => false,
            };
            Ok(big.then(|| StreamPlan {
                len: None,
                what: format!("trace {} ({format}, {} MiB)", path.display(), size >> 20),
            }))
        }
        _ => Ok(None),
    }
}

/// Rows a Parquet file's footer declares.
#[cfg(feature = "parquet")]
fn parquet_rows(path: &Path) -> Result<u64, TraceError> {
    Ok(crate::read::parquet::ParquetRows::open(path)?.rows_in_file())
}

#[cfg(not(feature = "parquet"))]
fn parquet_rows(_path: &Path) -> Result<u64, TraceError> {
    Ok(0)
}

fn file_format(path: &Path, cfg: &TraceConfig) -> Result<Format, TraceError> {
    if let Some(f) = cfg.format.as_deref() {
        return f.parse::<Format>();
    }
    let mut head = Vec::new();
    File::open(path)
        .map_err(|e| TraceError::io(path, e))?
        .take(4096)
        .read_to_end(&mut head)
        .map_err(|e| TraceError::io(path, e))?;
    if Format::is_parquet(&head) {
        return Ok(Format::Parquet);
    }
    let text = String::from_utf8_lossy(head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head));
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    Format::detect(first).ok_or_else(|| TraceError::UnknownFormat {
        path: path.to_path_buf(),
        header: first.to_string(),
    })
}

/// The row-local transformations of a `[trace]`, checked once.
struct RowTransforms {
    rate_scale: Option<f64>,
    max_prompt: Option<u32>,
    max_output: Option<u32>,
    max_context: Option<u32>,
}

impl RowTransforms {
    fn new(cfg: &TraceConfig) -> Result<Self, TraceError> {
        if cfg.limit == Some(0) {
            return Err(TraceError::Config("limit must be at least 1".into()));
        }
        if let Some(f) = cfg.rate_scale {
            if !(f.is_finite() && f > 0.0) {
                return Err(TraceError::Config(format!(
                    "rate_scale must be positive (got {f})"
                )));
            }
        }
        for (what, v) in [
            ("max_prompt", cfg.max_prompt),
            ("max_output", cfg.max_output),
        ] {
            if v == Some(0) {
                return Err(TraceError::Config(format!("{what} must be at least 1")));
            }
        }
        if let Some(ctx) = cfg.max_context {
            clip(&mut [], ctx)?;
        }
        Ok(RowTransforms {
            rate_scale: cfg.rate_scale,
            max_prompt: cfg.max_prompt,
            max_output: cfg.max_output,
            max_context: cfg.max_context,
        })
    }

    /// The row after every transformation, in [`crate::transform::apply`]'s order.
    fn apply(&self, mut r: Row) -> Result<Row, TraceError> {
        if let Some(f) = self.rate_scale {
            r.t_ns = (r.t_ns as f64 / f).round() as u64;
        }
        if let Some(m) = self.max_prompt {
            r.prompt = r.prompt.min(m);
        }
        if let Some(m) = self.max_output {
            r.output = r.output.min(m);
        }
        if let Some(ctx) = self.max_context {
            clip(std::slice::from_mut(&mut r), ctx)?;
        }
        Ok(r)
    }
}

type Rows = Box<dyn Iterator<Item = RowResult> + Send>;

/// The rows of `cfg`'s source (file or synthesiser), before any transformation, and their number
/// when known in advance. Called once per pass.
fn source_rows(
    cfg: &TraceConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<(Rows, Option<usize>), TraceError> {
    // A file's category column is replaced by a drawn mix, so it may then hold anything.
    let file_categories = cfg.categories.is_none();
    match (&cfg.path, &cfg.synthetic) {
        (None, Some(s)) => Ok((
            Box::new(SynthIter::new(s, base_dir, seed)?.map(|r| r.map(|r| (r, None)))),
            Some(s.requests),
        )),
        (Some(p), None) => {
            let path = paths::resolve(p, base_dir)?;
            let format = file_format(&path, cfg)?;
            if format == Format::Parquet {
                return Ok((parquet_source(&path, file_categories)?, None));
            }
            let file = File::open(&path).map_err(|e| TraceError::io(&path, e))?;
            let reader = BufReader::with_capacity(1 << 16, file);
            let rows: Rows = match format {
                Format::Native | Format::Mooncake => {
                    Box::new(LineRows::new(reader, path, format, file_categories))
                }
                other => {
                    return Err(TraceError::Config(format!(
                        "{}: the {other} format does not stream (native, mooncake and parquet do); load it instead",
                        path.display()
                    )))
                }
            };
            Ok((rows, None))
        }
        _ => Err(TraceError::Config(
            "needs exactly one of `path` or `[trace.synthetic]`".into(),
        )),
    }
}

#[cfg(feature = "parquet")]
fn parquet_source(path: &Path, file_categories: bool) -> Result<Rows, TraceError> {
    Ok(Box::new(ParquetStream::open(path, file_categories)?))
}

#[cfg(not(feature = "parquet"))]
fn parquet_source(path: &Path, _file_categories: bool) -> Result<Rows, TraceError> {
    Err(TraceError::Config(format!(
        "{}: Parquet traces need specsim built with the `parquet` feature (on by default)",
        path.display()
    )))
}

/// The selecting transformations (window, sample, limit) over sorted rows, in
/// [`crate::transform::apply`]'s order: rows before the window are skipped, reading stops at the
/// first row past it or once `limit` rows are kept.
struct Selected {
    rows: Rows,
    window: Option<(u64, Option<u64>)>,
    sampler: Option<Sampler>,
    left: usize,
    done: bool,
}

impl Selected {
    fn new(
        rows: Rows,
        window: Option<(u64, Option<u64>)>,
        sampler: Option<Sampler>,
        limit: Option<usize>,
    ) -> Self {
        Selected {
            rows,
            window,
            sampler,
            left: limit.unwrap_or(usize::MAX),
            done: false,
        }
    }

    fn next_row(&mut self) -> Result<Option<PrefixedRow>, TraceError> {
        while !self.done && self.left > 0 {
            let Some(r) = self.rows.next() else { break };
            let (mut row, ids) = r?;
            if let Some((lo, hi)) = self.window {
                if row.t_ns < lo {
                    continue;
                }
                if hi.is_some_and(|h| row.t_ns >= h) {
                    break;
                }
                row.t_ns -= lo;
            }
            if let Some(s) = self.sampler.as_mut() {
                let keep = s.keep().ok_or_else(|| {
                    TraceError::Config(
                        "the trace has more rows than its counting pass found (did the file change while it was read?)"
                            .into(),
                    )
                })?;
                if !keep {
                    continue;
                }
            }
            self.left -= 1;
            return Ok(Some((row, ids)));
        }
        self.done = true;
        Ok(None)
    }
}

impl Iterator for Selected {
    type Item = RowResult;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.next_row().transpose();
        if matches!(r, Some(Err(_))) {
            self.done = true;
        }
        r
    }
}

/// Opens `cfg`'s workload as a stream, whatever its size (see the module notes for what streams;
/// anything else is a configuration error saying so). Errors while streaming name the file and line.
///
/// `sample` costs one counting pass over the source before streaming, `target_rate` one more (its
/// factor needs the selected rows' count and span); both read the file without holding it.
pub fn open_stream(
    cfg: &TraceConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<RequestStream, TraceError> {
    let mut tr = RowTransforms::new(cfg)?;
    let window = window_bounds(cfg)?;
    if let Some(f) = cfg.sample {
        Sampler::new(0, f, seed)?;
    }
    rate_factor(cfg, || Some(1.0))?;
    let mut categories = match &cfg.categories {
        Some(mix) => Some(CategoryDraw::new(mix, seed)?),
        None => None,
    };
    let sampler = |n| cfg.sample.map(|f| Sampler::new(n, f, seed)).transpose();
    let in_window = match cfg.sample {
        Some(_) => {
            let (rows, _) = source_rows(cfg, base_dir, seed)?;
            Selected::new(rows, window, None, None).try_fold(0usize, |n, r| r.map(|_| n + 1))?
        }
        None => 0,
    };
    if cfg.target_rate.is_some() {
        let (rows, _) = source_rows(cfg, base_dir, seed)?;
        let (mut n, mut first, mut last) = (0usize, 0u64, 0u64);
        for r in Selected::new(rows, window, sampler(in_window)?, cfg.limit) {
            let t = r?.0.t_ns;
            if n == 0 {
                first = t;
            }
            last = t;
            n += 1;
        }
        tr.rate_scale = rate_factor(cfg, || mean_rate_of(n, first, last))?;
    }
    let (rows, len) = source_rows(cfg, base_dir, seed)?;
    let len = len
        .filter(|_| keeps_count(cfg))
        .map(|n| n.min(cfg.limit.unwrap_or(usize::MAX)));
    let names = categories
        .as_ref()
        .map_or_else(Vec::new, |c| c.names().to_vec());
    let mut id = 0u64;
    let mut rows = Selected::new(rows, window, sampler(in_window)?, cfg.limit);
    let requests = std::iter::from_fn(move || {
        let next = match rows.next() {
            Some(r) => r,
            // As the loader: a workload left empty is an error.
            None if id == 0 => {
                id = u64::MAX;
                Err(TraceError::Empty {
                    what: "[trace] after its transformations".into(),
                })
            }
            None => return None,
        };
        Some(next.and_then(|(r, hash_ids)| {
            let r = tr.apply(r)?;
            let spec = RequestSpec {
                id,
                arrival_ns: r.t_ns,
                prompt_tokens: r.prompt,
                output_tokens: r.output,
                category: categories.as_mut().map(CategoryDraw::draw),
                // After clipping, as the loader does: only the whole blocks that still fit.
                prefix: hash_ids.map(|ids| prompt_prefix(MOONCAKE_BLOCK_TOKENS, &ids, r.prompt)),
            };
            id += 1;
            Ok(spec)
        }))
    });
    Ok(RequestStream {
        requests: Box::new(requests.map(|r: Result<RequestSpec, TraceError>| {
            r.map_err(|e| SimError::Config(format!("trace: {e}")))
        })),
        categories: names,
        len,
    })
}

/// Why a file's own categories stop a stream.
const NO_FILE_CATEGORIES: &str = "a category value does not stream (categories must be known before the run); load the trace instead, or set a `categories` mix";

/// A streamed row with its prefix-block ids (Mooncake's `hash_ids`; `None` for formats without them).
type PrefixedRow = (Row, Option<Vec<u64>>);
type RowResult = Result<PrefixedRow, TraceError>;

/// Rows of a native CSV or Mooncake JSON-lines file, read one line at a time. Times are re-based to
/// the first row; zero-length rows are skipped (as the loader does); a row arriving before the one
/// above it is an error naming its line; a non-empty `category` value is an error unless a
/// `categories` mix replaces it.
struct LineRows<R> {
    reader: R,
    path: PathBuf,
    format: Format,
    buf: Vec<u8>,
    line: u64,
    header_seen: bool,
    /// Native CSV: indices of arrival_s, prompt_tokens, output_tokens.
    cols: [usize; 3],
    /// Native CSV: the category column, when it must be empty (no `categories` mix replaces it).
    category_col: Option<usize>,
    file_categories: bool,
    t0: Option<i64>,
    last: i64,
    src: u32,
}

#[derive(serde::Deserialize)]
struct MooncakeLine {
    timestamp: f64,
    input_length: i64,
    output_length: i64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

impl<R: BufRead> LineRows<R> {
    fn new(reader: R, path: PathBuf, format: Format, file_categories: bool) -> Self {
        LineRows {
            reader,
            path,
            format,
            buf: Vec::with_capacity(256),
            line: 0,
            header_seen: format == Format::Mooncake,
            cols: [0, 1, 2],
            category_col: None,
            file_categories,
            t0: None,
            last: i64::MIN,
            src: 0,
        }
    }

    fn bad(&self, msg: String) -> TraceError {
        TraceError::parse(&self.path, self.line, msg)
    }

    /// The next usable row (with its `hash_ids` for Mooncake), or None at the end.
    fn next_row(&mut self) -> Result<Option<PrefixedRow>, TraceError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| TraceError::io(&self.path, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = crate::fields::trim(&self.buf);
            let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
            if text.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(text).into_owned();
            if !self.header_seen {
                self.header_seen = true;
                let cols: Vec<&str> = text.split(',').map(str::trim).collect();
                if self.file_categories {
                    self.category_col = cols.iter().position(|c| *c == "category");
                }
                for (k, name) in ["arrival_s", "prompt_tokens", "output_tokens"]
                    .into_iter()
                    .enumerate()
                {
                    self.cols[k] = cols
                        .iter()
                        .position(|c| *c == name)
                        .ok_or_else(|| self.bad(format!("missing column `{name}`")))?;
                }
                continue;
            }
            let mut hash_ids = None;
            let (t, prompt, output): (i64, i64, i64) = match self.format {
                Format::Mooncake => {
                    let l: MooncakeLine = serde_json::from_str(&text)
                        .map_err(|e| self.bad(format!("bad JSON line: {e}")))?;
                    if !l.timestamp.is_finite() || l.timestamp.abs() > 4.6e12 {
                        return Err(
                            self.bad(format!("timestamp {} (ms) is out of range", l.timestamp))
                        );
                    }
                    hash_ids = Some(l.hash_ids);
                    (
                        (l.timestamp * 1e6).round() as i64,
                        l.input_length,
                        l.output_length,
                    )
                }
                _ => {
                    let f: Vec<&str> = text.split(',').map(str::trim).collect();
                    let get = |k: usize, name: &str| {
                        f.get(self.cols[k])
                            .copied()
                            .ok_or_else(|| self.bad(format!("missing field `{name}`")))
                    };
                    let t = crate::fields::parse_time_ns(
                        get(0, "arrival_s")?.as_bytes(),
                        1e9,
                        "arrival_s",
                    )
                    .map_err(|m| self.bad(m))?;
                    let num = |k: usize, name: &str| -> Result<i64, TraceError> {
                        crate::fields::parse_tokens(get(k, name)?.as_bytes(), name)
                            .map(i64::from)
                            .map_err(|m| self.bad(m))
                    };
                    if let Some(c) = self.category_col {
                        if f.get(c).is_some_and(|v| !v.is_empty()) {
                            return Err(self.bad(NO_FILE_CATEGORIES.into()));
                        }
                    }
                    (t, num(1, "prompt_tokens")?, num(2, "output_tokens")?)
                }
            };
            let len = |v: i64, name: &str| {
                u32::try_from(v).map_err(|_| self.bad(format!("{name} {v} is out of range")))
            };
            let prompt = len(prompt, "prompt length")?;
            let output = len(output, "output length")?;
            if prompt == 0 || output == 0 {
                continue;
            }
            if t < self.last {
                return Err(self.bad(
                    "arrives before the row above it: a streamed trace must be sorted by time (load it, or sort it with `specsim trace convert`)".into(),
                ));
            }
            self.last = t;
            let t0 = *self.t0.get_or_insert(t);
            let src = self.src;
            self.src += 1;
            let row = Row {
                t_ns: (t - t0) as Nanos,
                prompt,
                output,
                category: None,
                src,
            };
            return Ok(Some((row, hash_ids)));
        }
    }
}

impl<R: BufRead> Iterator for LineRows<R> {
    type Item = RowResult;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

/// Rows of a Parquet trace ([`crate::read::parquet`]), with the checks of [`LineRows`]: zero-length
/// rows skipped, times re-based to the first row, an unsorted row or a non-empty category (without a
/// `categories` mix) an error naming its row.
#[cfg(feature = "parquet")]
struct ParquetStream {
    rows: crate::read::parquet::ParquetRows,
    columns: (String, String),
    file_categories: bool,
    t0: Option<i64>,
    last: i64,
    src: u32,
}

#[cfg(feature = "parquet")]
impl ParquetStream {
    fn open(path: &Path, file_categories: bool) -> Result<Self, TraceError> {
        let rows = crate::read::parquet::ParquetRows::open(path)?;
        let (p, o) = rows.length_columns();
        Ok(ParquetStream {
            columns: (p.to_string(), o.to_string()),
            rows,
            file_categories,
            t0: None,
            last: i64::MIN,
            src: 0,
        })
    }

    fn bad(&self, row: u64, msg: &str) -> TraceError {
        TraceError::Parquet {
            path: self.rows.path().to_path_buf(),
            msg: format!("row {row}: {msg}"),
        }
    }

    fn next_row(&mut self) -> Result<Option<PrefixedRow>, TraceError> {
        while let Some(r) = self.rows.next() {
            let r = r?;
            let (pc, oc) = &self.columns;
            let Some((prompt, output)) =
                crate::read::parquet::lengths(self.rows.path(), &r, pc, oc)?
            else {
                continue;
            };
            if self.file_categories && r.category.is_some() {
                return Err(self.bad(r.row, NO_FILE_CATEGORIES));
            }
            if r.t_ns < self.last {
                return Err(self.bad(
                    r.row,
                    "arrives before the row above it: a streamed trace must be sorted by time (load it, or sort it with `specsim trace convert`)",
                ));
            }
            self.last = r.t_ns;
            let t0 = *self.t0.get_or_insert(r.t_ns);
            let src = self.src;
            self.src += 1;
            let row = Row {
                t_ns: (r.t_ns - t0) as Nanos,
                prompt,
                output,
                category: None,
                src,
            };
            return Ok(Some((row, None)));
        }
        Ok(None)
    }
}

#[cfg(feature = "parquet")]
impl Iterator for ParquetStream {
    type Item = RowResult;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}
