//! The serving-overhead term, by difference: the same cell run over HTTP (`specsim serve` +
//! `specsim replay --endpoint`) and in process (`specsim replay --in-process`, no HTTP, no SSE, no
//! server threads), request by request.
//!
//! The two sides are separate live runs of the same workload, so a difference also carries the
//! run-to-run noise of the engine itself; on a deterministic backend (the scripted echo backend,
//! fixed step times) that noise is small and the difference is the serving path's own time. Pairs
//! are matched by replicate (the i-th HTTP replicate with the i-th in-process one) and request id,
//! after the warm-up; failed requests on either side are left out.

use super::stats::quantile;
use serde::{Deserialize, Serialize};
use specsim_sim::metrics::RequestRecord;
use std::collections::HashMap;

/// Per-request HTTP − in-process differences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingOverhead {
    /// Request pairs compared.
    pub requests: usize,
    /// Replicate pairs they came from.
    pub replicate_pairs: usize,
    /// Median of HTTP − in-process TTFT, seconds.
    pub ttft_median_s: f64,
    /// 90th percentile of it.
    pub ttft_p90_s: f64,
    /// Median of HTTP − in-process TPOT, seconds (requests of more than one output token).
    pub tpot_median_s: f64,
    /// 90th percentile of it.
    pub tpot_p90_s: f64,
}

/// The differences over replicate pairs `(http, in_process)`, each side's rows as read from
/// `requests.csv`; the `warmup` lowest ids of each replicate are left out (they arrive first).
pub fn serving_overhead(
    pairs: &[(&[RequestRecord], &[RequestRecord])],
    warmup: usize,
) -> ServingOverhead {
    let (mut ttft, mut tpot) = (Vec::new(), Vec::new());
    for (http, local) in pairs {
        let by_id: HashMap<u64, &RequestRecord> = local
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| (r.id, r))
            .collect();
        let mut ids: Vec<u64> = http.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let first_kept = ids.get(warmup).copied().unwrap_or(u64::MAX);
        for h in http
            .iter()
            .filter(|r| r.error.is_none() && r.id >= first_kept)
        {
            let Some(l) = by_id.get(&h.id) else { continue };
            if h.ttft_s.is_finite() && l.ttft_s.is_finite() {
                ttft.push(h.ttft_s - l.ttft_s);
            }
            if h.output_tokens > 1
                && l.output_tokens > 1
                && h.tpot_s.is_finite()
                && l.tpot_s.is_finite()
            {
                tpot.push(h.tpot_s - l.tpot_s);
            }
        }
    }
    let q = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            quantile(v, p)
        }
    };
    ServingOverhead {
        requests: ttft.len(),
        replicate_pairs: pairs.len(),
        ttft_median_s: q(&ttft, 0.5),
        ttft_p90_s: q(&ttft, 0.9),
        tpot_median_s: q(&tpot, 0.5),
        tpot_p90_s: q(&tpot, 0.9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, ttft: f64, tpot: f64, out: u32) -> RequestRecord {
        RequestRecord {
            id,
            arrival_s: id as f64,
            prompt_tokens: 8,
            output_tokens: out,
            first_token_s: id as f64 + ttft,
            finish_s: id as f64 + ttft + tpot * (out - 1) as f64,
            ttft_s: ttft,
            tpot_s: tpot,
            e2e_s: ttft + tpot * (out - 1) as f64,
            drafted: 0,
            accepted: 0,
            steps: out,
            slo_met: true,
            replica: 0,
            policy: "none".into(),
            error: None,
            cached_tokens: None,
        }
    }

    #[test]
    fn differences_are_paired_by_id_after_the_warm_up() {
        // In process: TTFT 1.0 s, TPOT 0.1 s for ids 0..=10. Over HTTP, request i is i ms later on
        // its first token and i/10 ms later per output token; listed in reverse, so pairing must be
        // by id. Warm-up 1 drops id 0: differences 1..=10 ms, median 5.5 ms, p90 9.1 ms (linear
        // interpolation between 9 and 10); TPOT a tenth of that. One HTTP failure (id 11) and one
        // single-token request (id 12, no TPOT) are left out of what they cannot give.
        let local: Vec<_> = (0..=12).map(|i| row(i, 1.0, 0.1, 10)).collect();
        let mut http: Vec<_> = (0..=10)
            .rev()
            .map(|i| row(i, 1.0 + i as f64 * 1e-3, 0.1 + i as f64 * 1e-4, 10))
            .collect();
        http.push(RequestRecord {
            error: Some("reset".into()),
            ..row(11, 9.0, 9.0, 10)
        });
        http.push(row(12, 1.0, f64::NAN, 1));
        let o = serving_overhead(&[(&http, &local)], 1);
        assert_eq!((o.requests, o.replicate_pairs), (11, 1), "{o:?}");
        // TTFT: ids 1..=10 and 12 (difference 0): median of {0, 1, ..., 10} ms is 5 ms.
        assert!((o.ttft_median_s - 5e-3).abs() < 1e-12, "{o:?}");
        assert!((o.ttft_p90_s - 9e-3).abs() < 1e-12, "{o:?}");
        // TPOT: ids 1..=10 only: median 0.55 ms, p90 0.91 ms.
        assert!((o.tpot_median_s - 0.55e-3).abs() < 1e-12, "{o:?}");
        assert!((o.tpot_p90_s - 0.91e-3).abs() < 1e-12, "{o:?}");
    }
}
