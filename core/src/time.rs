//! Simulated time: integer nanoseconds, so that event order and results are exact and reproducible.

/// A point in time or a duration, in nanoseconds.
pub type Nanos = u64;

/// Nanoseconds in one second.
pub const NS_PER_S: f64 = 1e9;

/// Seconds (float) to nanoseconds, rounded to the nearest nanosecond; negative values clamp to zero.
pub fn secs_to_ns(s: f64) -> Nanos {
    if s <= 0.0 || s.is_nan() {
        0
    } else {
        (s * NS_PER_S).round() as Nanos
    }
}

/// Milliseconds (float) to nanoseconds.
pub fn ms_to_ns(ms: f64) -> Nanos {
    secs_to_ns(ms / 1e3)
}

/// Nanoseconds to seconds.
pub fn ns_to_secs(ns: Nanos) -> f64 {
    ns as f64 / NS_PER_S
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(secs_to_ns(1.5), 1_500_000_000);
        assert_eq!(ms_to_ns(0.25), 250_000);
        assert_eq!(secs_to_ns(-3.0), 0);
        assert!((ns_to_secs(2_500_000_000) - 2.5).abs() < 1e-12);
    }
}
