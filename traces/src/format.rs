//! The trace formats this crate reads, and how each is recognised from its first line (Parquet from
//! its magic bytes).

use crate::TraceError;
use std::fmt;
use std::str::FromStr;

/// The first (and last) four bytes of every Parquet file.
pub const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// A trace file format. [`Format::detect`] recognises each from its header; `format = "..."` in
/// `[trace]` (or `--format` on the command line) overrides detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// specsim's own CSV: `arrival_s,prompt_tokens,output_tokens[,category]`, seconds from the start.
    Native,
    /// Azure LLM inference traces 2023 and 2024: `TIMESTAMP,ContextTokens,GeneratedTokens`, calendar
    /// timestamps with up to 9 (in practice 7) fractional digits, optionally with a zone offset.
    Azure,
    /// Mooncake (FAST'25) JSON lines: `{"timestamp": ms, "input_length", "output_length", "hash_ids"}`.
    Mooncake,
    /// BurstGPT CSV: `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`, seconds;
    /// rows with 0 response tokens are failed requests and are skipped (and counted).
    BurstGpt,
    /// Vidur's trace CSV: `arrived_at,num_prefill_tokens,num_decode_tokens` (seconds; other columns ignored).
    Vidur,
    /// A length-only statistics CSV (`num_prefill_tokens,num_decode_tokens,...` without `arrived_at`),
    /// e.g. the ShareGPT and arXiv-summarization statistics: a length distribution, not a trace.
    Lengths,
    /// Parquet (recognised by its `PAR1` magic bytes): `arrival_ns` (INT64) or `arrival_s` (seconds),
    /// `prompt_tokens`, `output_tokens`, optional `category`; see [`crate::read::parquet`].
    Parquet,
}

impl Format {
    /// Every format's name as written in `format = "..."`.
    pub const NAMES: [&'static str; 7] = [
        "native", "azure", "mooncake", "burstgpt", "vidur", "lengths", "parquet",
    ];

    /// The name used in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Azure => "azure",
            Format::Mooncake => "mooncake",
            Format::BurstGpt => "burstgpt",
            Format::Vidur => "vidur",
            Format::Lengths => "lengths",
            Format::Parquet => "parquet",
        }
    }

    /// Whether rows carry arrival times (every format except [`Format::Lengths`]).
    pub fn has_arrivals(self) -> bool {
        self != Format::Lengths
    }

    /// Whether a file starting with `head` is Parquet (its first four bytes are the magic `PAR1`).
    pub fn is_parquet(head: &[u8]) -> bool {
        head.starts_with(PARQUET_MAGIC)
    }

    /// Recognises a format from the first non-blank line of a file, or `None`.
    ///
    /// A line starting with `{` is JSON lines (Mooncake). Otherwise the line is a CSV header and the
    /// format is the first whose required columns are all present (names compared case-insensitively),
    /// checked from the most specific to the least: BurstGPT, Azure, Vidur (has `arrived_at`), native,
    /// then length-only statistics.
    pub fn detect(first_line: &str) -> Option<Format> {
        let line = first_line.trim_start_matches('\u{feff}').trim();
        if line.starts_with('{') {
            return Some(Format::Mooncake);
        }
        let cols: Vec<String> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let has = |names: &[&str]| {
            names
                .iter()
                .all(|n| cols.iter().any(|c| c.eq_ignore_ascii_case(n)))
        };
        [
            Format::BurstGpt,
            Format::Azure,
            Format::Vidur,
            Format::Native,
            Format::Lengths,
        ]
        .into_iter()
        .find(|f| crate::read::csv_schema(*f).is_some_and(|s| has(&s.required())))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = TraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let found = match lower.as_str() {
            "native" => Format::Native,
            "azure" | "azure2023" | "azure2024" => Format::Azure,
            "mooncake" | "jsonl" => Format::Mooncake,
            "burstgpt" => Format::BurstGpt,
            "vidur" => Format::Vidur,
            "lengths" => Format::Lengths,
            "parquet" => Format::Parquet,
            _ => {
                return Err(TraceError::Config(format!(
                    "unknown format `{s}`; expected one of {}",
                    Format::NAMES.join(", ")
                )))
            }
        };
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_each_real_format_are_recognised() {
        let cases = [
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens",
                Some(Format::Azure),
            ),
            (
                "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
                Some(Format::BurstGpt),
            ),
            (
                "arrived_at,num_prefill_tokens,num_decode_tokens",
                Some(Format::Vidur),
            ),
            (
                "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio",
                Some(Format::Lengths),
            ),
            (
                "arrival_s,prompt_tokens,output_tokens,category",
                Some(Format::Native),
            ),
            (
                "{\"timestamp\": 0, \"input_length\": 5}",
                Some(Format::Mooncake),
            ),
            (
                "\u{feff}TIMESTAMP,ContextTokens,GeneratedTokens\r",
                Some(Format::Azure),
            ),
            ("time,prompt,output", None),
        ];
        for (header, want) in cases {
            assert_eq!(Format::detect(header), want, "{header}");
        }
    }

    #[test]
    fn names_round_trip() {
        for n in Format::NAMES {
            assert_eq!(n.parse::<Format>().unwrap().name(), n);
        }
        assert!("xlsx"
            .parse::<Format>()
            .unwrap_err()
            .to_string()
            .contains("expected one of"));
    }
}
