//! The engine core's error type, shared by the simulator and the runtime (they re-export it).

use std::path::Path;

/// Everything that can go wrong building or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error (printed in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A text input (CSV, profile) has a bad line.
    #[error("{origin}:{line}: {msg}")]
    Parse {
        /// File or other source name.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The scenario file is invalid: unknown key, wrong type, impossible value.
    #[error("{file}: {msg}")]
    Scenario {
        /// The scenario file.
        file: String,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// A configuration value is impossible (e.g. a request longer than KV capacity).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The workload violates an invariant (unsorted, zero lengths).
    #[error("invalid workload: {0}")]
    Workload(String),
    /// A backend (simulated or live) failed during a step.
    #[error("backend: {0}")]
    Backend(String),
}

impl CoreError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.display().to_string(),
            error: source,
        }
    }
}

/// A short, escaped excerpt of input bytes for an error message: at most about `max` characters of
/// output, control characters, `\\` and bytes that are not UTF-8 escaped (`\\n`, `\\xff`), `...` when
/// cut. Errors quote what they read only through this, so a binary or foreign file never floods the
/// terminal.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut push = |piece: &str, out: &mut String| {
        let len = piece.chars().count();
        if n + len > max {
            return false;
        }
        out.push_str(piece);
        n += len;
        true
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let piece = if c.is_control() || c == '\\' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            };
            if !push(&piece, &mut out) {
                out += "...";
                return out;
            }
        }
        for b in chunk.invalid() {
            if !push(&format!("\\x{b:02x}"), &mut out) {
                out += "...";
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(super::excerpt(b"ab\n\x00\xff", 20), "ab\\n\\u{0}\\xff");
        assert_eq!(super::excerpt(b"\xff\xff\xff", 9), "\\xff\\xff...");
        assert_eq!(super::excerpt("é€".as_bytes(), 10), "é€");
        assert_eq!(super::excerpt(&[b'x'; 100], 5), "xxxxx...");
    }
}
