//! Workloads as streams: requests drawn or read one at a time, so a trace larger than memory (or a
//! synthetic day of a fleet) never has to be held.
//!
//! What streams: every synthetic workload ([`crate::synth::SynthIter`]), and trace files in the
//! `native` CSV and `mooncake` JSON-lines formats whose rows are sorted by arrival (an unsorted row is
//! an error naming its line, since repairing it would need the whole trace). Of the `[trace]`
//! transformations, those that act on one row at a time stream: `limit`, `rate_scale`, `max_prompt`,
//! `max_output`, `max_context`. The others (`start_s`/`duration_s` windows, `sample`, `target_rate`,
//! `categories`) need the whole trace: [`plan_stream`] then says `None` and the caller loads it
//! ([`crate::load_workload`]). A streamed workload has exactly the requests the loaded one has.

use crate::format::Format;
use crate::read::mooncake::MOONCAKE_BLOCK_TOKENS;
use crate::synth::SynthIter;
use crate::trace::{prompt_prefix, Row};
use crate::transform::clip;
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

/// Whether the transformations of `cfg` act on one row at a time.
fn row_local(cfg: &TraceConfig) -> bool {
    cfg.start_s.is_none()
        && cfg.duration_s.is_none()
        && cfg.sample.is_none()
        && cfg.target_rate.is_none()
        && cfg.categories.is_none()
}

/// Whether `specsim run` should stream `cfg`'s workload: `Some` when it can (see the module notes)
/// and it is worth it (every synthetic workload; files of at least [`STREAM_FILE_BYTES`]).
pub fn plan_stream(
    cfg: &TraceConfig,
    base_dir: &Path,
    _seed: u64,
) -> Result<Option<StreamPlan>, TraceError> {
    if !row_local(cfg) {
        return Ok(None);
    }
    match (&cfg.path, &cfg.synthetic) {
        (None, Some(s)) if cfg.format.is_none() => Ok(Some(StreamPlan {
            len: Some(cfg.limit.map_or(s.requests, |l| l.min(s.requests))),
            what: format!("synthetic workload: {}", crate::load::describe(s)),
        })),
        (Some(p), None) => {
            let path = paths::resolve(p, base_dir)?;
            let size = std::fs::metadata(&path)
                .map_err(|e| TraceError::io(&path, e))?
                .len();
            if size < STREAM_FILE_BYTES {
                return Ok(None);
            }
            let format = file_format(&path, cfg)?;
            Ok(
                matches!(format, Format::Native | Format::Mooncake).then(|| StreamPlan {
                    len: None,
                    what: format!("trace {} ({format}, {} MiB)", path.display(), size >> 20),
                }),
            )
        }
        _ => Ok(None),
    }
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
    limit: Option<usize>,
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
            limit: cfg.limit,
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

/// Opens `cfg`'s workload as a stream, whatever its size (see the module notes for what streams;
/// anything else is a configuration error saying so). Errors while streaming name the file and line.
pub fn open_stream(
    cfg: &TraceConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<RequestStream, TraceError> {
    if !row_local(cfg) {
        return Err(TraceError::Config(
            "start_s, duration_s, sample, target_rate and categories need the whole trace: load it instead of streaming"
                .into(),
        ));
    }
    let tr = RowTransforms::new(cfg)?;
    let (rows, len): (Box<dyn Iterator<Item = RowResult> + Send>, _) = match (
        &cfg.path,
        &cfg.synthetic,
    ) {
        (None, Some(s)) => (
            Box::new(SynthIter::new(s, base_dir, seed)?.map(|r| r.map(|r| (r, None)))),
            Some(s.requests),
        ),
        (Some(p), None) => {
            let path = paths::resolve(p, base_dir)?;
            let format = file_format(&path, cfg)?;
            let file = File::open(&path).map_err(|e| TraceError::io(&path, e))?;
            let reader = BufReader::with_capacity(1 << 16, file);
            let rows: Box<dyn Iterator<Item = RowResult> + Send> = match format
                {
                    Format::Native => Box::new(LineRows::new(reader, path, Format::Native)),
                    Format::Mooncake => Box::new(LineRows::new(reader, path, Format::Mooncake)),
                    other => {
                        return Err(TraceError::Config(format!(
                            "{}: the {other} format does not stream (native and mooncake do); load it instead",
                            path.display()
                        )))
                    }
                };
            (rows, None)
        }
        _ => {
            return Err(TraceError::Config(
                "needs exactly one of `path` or `[trace.synthetic]`".into(),
            ))
        }
    };
    let limit = tr.limit.unwrap_or(usize::MAX);
    let len = len.map(|n: usize| n.min(limit));
    let mut id = 0u64;
    let requests = rows.take(limit).map(move |r| {
        let (r, hash_ids) = r?;
        let r = tr.apply(r)?;
        let spec = RequestSpec {
            id,
            arrival_ns: r.t_ns,
            prompt_tokens: r.prompt,
            output_tokens: r.output,
            category: None,
            // After clipping, as the loader does: only the whole blocks that still fit.
            prefix: hash_ids.map(|ids| prompt_prefix(MOONCAKE_BLOCK_TOKENS, &ids, r.prompt)),
        };
        id += 1;
        Ok(spec)
    });
    Ok(RequestStream {
        requests: Box::new(requests.map(|r: Result<RequestSpec, TraceError>| {
            r.map_err(|e| SimError::Config(format!("trace: {e}")))
        })),
        categories: Vec::new(),
        len,
    })
}

/// A streamed row with its prefix-block ids (Mooncake's `hash_ids`; `None` for formats without them).
type PrefixedRow = (Row, Option<Vec<u64>>);
type RowResult = Result<PrefixedRow, TraceError>;

/// Rows of a native CSV or Mooncake JSON-lines file, read one line at a time. Times are re-based to
/// the first row; zero-length rows are skipped (as the loader does); a row arriving before the one
/// above it is an error naming its line; a `category` column is not supported while streaming.
struct LineRows<R> {
    reader: R,
    path: PathBuf,
    format: Format,
    buf: Vec<u8>,
    line: u64,
    header_seen: bool,
    /// Native CSV: indices of arrival_s, prompt_tokens, output_tokens.
    cols: [usize; 3],
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
    fn new(reader: R, path: PathBuf, format: Format) -> Self {
        LineRows {
            reader,
            path,
            format,
            buf: Vec::with_capacity(256),
            line: 0,
            header_seen: format == Format::Mooncake,
            cols: [0, 1, 2],
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
                if cols.contains(&"category") {
                    return Err(self.bad(
                        "a category column does not stream (categories must be known before the run); load the trace instead".into(),
                    ));
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
