//! Field parsers shared by the readers: calendar timestamps, seconds, token counts.
//!
//! They work on bytes and return a message (not an error) so the caller can attach the file and line.
//! Hand-written rather than via a date library: the Azure traces carry 7 fractional digits, which
//! common parsers (Python's `fromisoformat`, `%f`-style formats) reject, and this is the hot loop of
//! reading a million-row trace.

/// Nanoseconds since 1970-01-01T00:00:00Z of a calendar timestamp
/// `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}][Z|±HH:MM]` (a missing zone means UTC; digits past the ninth
/// fractional one are rejected rather than silently dropped).
pub fn parse_datetime_ns(s: &[u8]) -> Result<i64, String> {
    let bad = |why: &str| {
        Err(format!(
            "bad timestamp `{}`: {why}",
            specsim_core::excerpt(s, 40)
        ))
    };
    let s = trim(s);
    if s.len() < 19 {
        return bad("expected YYYY-MM-DD HH:MM:SS[.fraction]");
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        let mut v = 0i64;
        for &c in &s[a..b] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    };
    let seps = s[4] == b'-'
        && s[7] == b'-'
        && (s[10] == b' ' || s[10] == b'T')
        && s[13] == b':'
        && s[16] == b':';
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec), true) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
        seps,
    ) else {
        return bad("expected YYYY-MM-DD HH:MM:SS[.fraction]");
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return bad("no such date");
    }
    if hour > 23 || min > 59 || sec > 59 {
        return bad("no such time of day");
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if i < s.len() && s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return bad("no digits after the decimal point");
        }
        if digits > 9 {
            return bad("more than 9 fractional digits");
        }
        for &c in &s[start..i] {
            frac_ns = frac_ns * 10 + (c - b'0') as i64;
        }
        frac_ns *= 10i64.pow(9 - digits as u32);
    }
    let mut offset_s = 0i64;
    match &s[i..] {
        [] | [b'Z'] => {}
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let d = |c: &u8| c.is_ascii_digit().then(|| (c - b'0') as i64);
            let (Some(a), Some(b), Some(c), Some(e)) = (d(h1), d(h2), d(m1), d(m2)) else {
                return bad("bad zone offset");
            };
            offset_s = (a * 10 + b) * 3600 + (c * 10 + e) * 60;
            if *sign == b'-' {
                offset_s = -offset_s;
            }
        }
        _ => return bad("unexpected characters after the time"),
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Ok(secs * 1_000_000_000 + frac_ns)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time in units of `unit_ns` nanoseconds (1e9 for seconds, 1e6 for milliseconds), written as a
/// decimal number, to integer nanoseconds. Negative times are allowed (they are re-based later).
pub fn parse_time_ns(s: &[u8], unit_ns: f64, name: &str) -> Result<i64, String> {
    let t = trim(s);
    let text = std::str::from_utf8(t).unwrap_or("");
    let v: f64 = match text.parse() {
        Ok(v) => v,
        Err(_) => {
            return Err(format!(
                "{name} `{}` is not a number",
                specsim_core::excerpt(t, 40)
            ))
        }
    };
    let ns = v * unit_ns;
    // About 146 years either way: beyond that the value is a unit mix-up, not a trace.
    if !ns.is_finite() || ns.abs() > 4.6e18 {
        return Err(format!(
            "{name} `{}` is out of range",
            specsim_core::excerpt(t, 40)
        ));
    }
    Ok(ns.round() as i64)
}

/// A token count: a non-negative integer (an integral decimal such as `12.0` is accepted, since some
/// tools write counts as floats). Zero is returned as zero; the reader decides what it means.
pub fn parse_tokens(s: &[u8], name: &str) -> Result<u32, String> {
    let t = trim(s);
    let mut v: u64 = 0;
    let mut i = 0;
    while i < t.len() && t[i].is_ascii_digit() {
        v = v * 10 + (t[i] - b'0') as u64;
        if v > u32::MAX as u64 {
            return Err(format!(
                "{name} `{}` is too large",
                specsim_core::excerpt(t, 40)
            ));
        }
        i += 1;
    }
    if i == t.len() && i > 0 {
        return Ok(v as u32);
    }
    // Slow path: a float spelling, a sign, or garbage.
    let text = specsim_core::excerpt(t, 40);
    match std::str::from_utf8(t).unwrap_or("x").parse::<f64>() {
        Ok(f) if f < 0.0 => Err(format!("{name} `{text}` is negative")),
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f <= u32::MAX as f64 => Ok(f as u32),
        Ok(_) => Err(format!("{name} `{text}` is not a whole number of tokens")),
        Err(_) if t.is_empty() => Err(format!("{name} is empty")),
        Err(_) => Err(format!("{name} `{text}` is not a number")),
    }
}

/// The slice without leading and trailing ASCII whitespace.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_timestamps_with_seven_digits_parse_exactly() {
        // 2023-11-16 is 19,677 days after the epoch (checked with `date -d 2023-11-16 +%s` / 86400).
        let t = parse_datetime_ns(b"2023-11-16 18:17:03.9799600").unwrap();
        let expect = (19_677i64 * 86_400 + 18 * 3600 + 17 * 60 + 3) * 1_000_000_000 + 979_960_000;
        assert_eq!(t, expect);
        assert_eq!(parse_datetime_ns(b"1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(
            parse_datetime_ns(b"1970-01-01T00:00:01.5Z").unwrap(),
            1_500_000_000
        );
        assert_eq!(parse_datetime_ns(b"1970-01-01 01:00:00+01:00").unwrap(), 0);
        assert_eq!(
            parse_datetime_ns(b"2000-03-01 00:00:00").unwrap() / 1_000_000_000 / 86_400,
            11_017
        );
        assert_eq!(
            parse_datetime_ns(b"2024-02-29 00:00:00").unwrap() / 1_000_000_000 / 86_400,
            19_782
        );
    }

    #[test]
    fn malformed_timestamps_are_rejected_with_a_reason() {
        for bad in [
            &b"2023-11-16"[..],
            b"2023-13-01 00:00:00",
            b"2023-02-29 00:00:00",
            b"2023-11-16 24:00:00",
            b"2023/11/16 18:17:03",
            b"2023-11-16 18:17:03.",
            b"2023-11-16 18:17:03.1234567890",
            b"2023-11-16 18:17:03 junk",
            b"yesterday at noon, roughly",
        ] {
            let e = parse_datetime_ns(bad).unwrap_err();
            assert!(e.contains("bad timestamp"), "{e}");
        }
    }

    #[test]
    fn token_counts_accept_integers_and_integral_floats_only() {
        assert_eq!(parse_tokens(b" 1020 ", "x"), Ok(1020));
        assert_eq!(parse_tokens(b"12.0", "x"), Ok(12));
        assert_eq!(parse_tokens(b"0", "x"), Ok(0));
        assert!(parse_tokens(b"-3", "x").unwrap_err().contains("negative"));
        assert!(parse_tokens(b"abc", "x")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_tokens(b"1.5", "x")
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_tokens(b"", "x").unwrap_err().contains("empty"));
        assert!(parse_tokens(b"99999999999", "x")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn times_in_units() {
        assert_eq!(parse_time_ns(b"1.5", 1e9, "t"), Ok(1_500_000_000));
        assert_eq!(parse_time_ns(b"250", 1e6, "t"), Ok(250_000_000));
        assert!(parse_time_ns(b"NaN", 1e9, "t").is_err());
        assert!(parse_time_ns(b"soon", 1e9, "t")
            .unwrap_err()
            .contains("not a number"));
    }
}
