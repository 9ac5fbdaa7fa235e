//! `[trace.timestamps]`: the arrival times of a timestamp-only file, lengths drawn by seed.
//!
//! The SpecServe/AdaSpec evaluation published its arrivals as CSV files with one `Timestamp` column
//! (seconds) and paired them with a dataset's prompts. Here every timestamp is kept, in file order
//! (sorted stably, with a warning naming the first out-of-order line, if the file is not sorted), re-based
//! to the first; each request's prompt and output lengths are drawn as `[trace.synthetic]` draws them
//! (same streams, so a length file or distribution gives the same draws either way).

use crate::synth::Lengths;
use crate::{paths, Row, TraceError};
use specsim_core::excerpt;
use specsim_core::time::secs_to_ns;
use specsim_sim::trace_config::TimestampsConfig;
use std::path::{Path, PathBuf};

/// Arrival times (seconds, in file order) read from `path`'s `column`, and warnings about repairs.
pub fn read_timestamps(path: &Path, column: &str) -> Result<(Vec<f64>, Vec<String>), TraceError> {
    let text = std::fs::read(path).map_err(|e| TraceError::io(path, e))?;
    let text = String::from_utf8_lossy(text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text));
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or("");
    let parse_err = |line: usize, msg: String| TraceError::Parse {
        path: path.to_path_buf(),
        line: line as u64,
        msg,
    };
    let col = header
        .split(',')
        .position(|h| h.trim() == column)
        .ok_or_else(|| {
            parse_err(
                1,
                format!(
                    "no column `{column}` (trace.timestamps.column) in header `{}`",
                    excerpt(header.as_bytes(), 80)
                ),
            )
        })?;
    let mut times = Vec::new();
    let mut first_unsorted = None;
    for (i, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        let field = l.split(',').nth(col).unwrap_or("").trim();
        let t: f64 = field.parse().map_err(|_| {
            parse_err(
                i + 1,
                format!(
                    "`{column}` = `{}` is not a number of seconds",
                    excerpt(field.as_bytes(), 40)
                ),
            )
        })?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(parse_err(
                i + 1,
                format!("`{column}` = {t} must be a finite, non-negative time"),
            ));
        }
        if first_unsorted.is_none() && times.last().is_some_and(|&last| t < last) {
            first_unsorted = Some(i + 1);
        }
        times.push(t);
    }
    if times.is_empty() {
        return Err(TraceError::Empty {
            what: path.display().to_string(),
        });
    }
    let mut warnings = Vec::new();
    if let Some(line) = first_unsorted {
        times.sort_by(f64::total_cmp);
        warnings.push(format!(
            "{}: timestamps not sorted (first at line {line}); sorted",
            path.display()
        ));
    }
    Ok((times, warnings))
}

/// The rows `cfg` describes: one per timestamp, arrivals re-based to the first, lengths drawn by
/// `seed`; plus the resolved file and warnings.
pub fn timestamp_rows(
    cfg: &TimestampsConfig,
    base_dir: &Path,
    seed: u64,
) -> Result<(Vec<Row>, PathBuf, Vec<String>), TraceError> {
    let path = paths::resolve(&cfg.path, base_dir)?;
    let (times, warnings) = read_timestamps(&path, &cfg.column)?;
    let mut lengths = Lengths::new(&cfg.prompt, &cfg.output, base_dir, seed)?;
    let t0 = times[0];
    let rows = times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let (prompt, output) = lengths.draw();
            Row {
                t_ns: secs_to_ns(t - t0),
                prompt,
                output,
                category: None,
                src: i as u32,
            }
        })
        .collect();
    Ok((rows, path, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use specsim_sim::trace_config::LengthConfig;

    fn config(dir: &Path, body: &str) -> TimestampsConfig {
        std::fs::write(dir.join("t.csv"), body).unwrap();
        TimestampsConfig {
            path: "t.csv".into(),
            column: "Timestamp".into(),
            prompt: LengthConfig::Uniform { min: 10, max: 1000 },
            output: LengthConfig::Fixed { value: 7 },
        }
    }

    #[test]
    fn every_timestamp_is_kept_and_lengths_are_drawn_by_seed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "Timestamp\n72.5\n73.0\n73.0\n80.25\n");
        let (rows, _, warnings) = timestamp_rows(&cfg, dir.path(), 1).unwrap();
        assert!(warnings.is_empty());
        // Re-based to the first arrival; the two equal timestamps both stay.
        let t: Vec<u64> = rows.iter().map(|r| r.t_ns).collect();
        assert_eq!(t, [0, 500_000_000, 500_000_000, 7_750_000_000]);
        assert!(rows
            .iter()
            .all(|r| r.output == 7 && (10..=1000).contains(&r.prompt)));
        // The same seed draws the same lengths; another seed other lengths, the same arrivals.
        let again = timestamp_rows(&cfg, dir.path(), 1).unwrap().0;
        assert_eq!(again, rows);
        let other = timestamp_rows(&cfg, dir.path(), 2).unwrap().0;
        assert_ne!(
            other.iter().map(|r| r.prompt).collect::<Vec<_>>(),
            rows.iter().map(|r| r.prompt).collect::<Vec<_>>()
        );
        assert_eq!(other.iter().map(|r| r.t_ns).collect::<Vec<_>>(), t);
    }

    #[test]
    fn bad_files_name_the_line_or_column() {
        let dir = tempfile::tempdir().unwrap();
        let e = timestamp_rows(&config(dir.path(), "Time\n1\n"), dir.path(), 0).unwrap_err();
        assert!(e.to_string().contains("Timestamp"), "{e}");
        let e = timestamp_rows(&config(dir.path(), "Timestamp\n1\nsoon\n"), dir.path(), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:3") && e.contains("soon"), "{e}");
        let e = timestamp_rows(&config(dir.path(), "Timestamp\n"), dir.path(), 0).unwrap_err();
        assert!(e.to_string().contains("no requests"), "{e}");
        // Unsorted files are sorted with a warning naming the first offending line.
        let (rows, _, w) =
            timestamp_rows(&config(dir.path(), "Timestamp\n5\n3\n4\n"), dir.path(), 0).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(w[0].contains("line 3"), "{w:?}");
    }

    #[test]
    fn the_adaspec_traces_keep_every_arrival() {
        let Some(shared) = crate::paths::shared_dir(Path::new(env!("CARGO_MANIFEST_DIR"))) else {
            eprintln!("SKIP the_adaspec_traces_keep_every_arrival: no shared data folder");
            return;
        };
        // Row counts from shared/traces/SOURCES.md: conv 2,867, code 719, mooncake 1,077.
        for (name, n) in [("conv", 2867), ("code", 719), ("mooncake", 1077)] {
            let cfg = TimestampsConfig {
                path: shared.join(format!("traces/adaspec/{name}.csv")),
                column: "Timestamp".into(),
                prompt: LengthConfig::Fixed { value: 1 },
                output: LengthConfig::Fixed { value: 1 },
            };
            let (rows, _, _) = timestamp_rows(&cfg, Path::new("."), 0).unwrap();
            assert_eq!(rows.len(), n, "{name}");
        }
    }
}
