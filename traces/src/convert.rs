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
