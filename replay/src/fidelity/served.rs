//! The live engine's own view of each request (`steps.requests.csv`, beside the step log): when the
//! engine thread received it, when its loop admitted it, whether it woke an idle engine, and when
//! its first ids and its end were handed back to the server — all on the step log's clock.
//!
//! Two things follow from it.
//!
//! **The re-run follows the live schedule.** Fed the trace's arrivals and the forwards' own times,
//! a re-run with 9 ms forwards admits a request one step early now and then (the live engine got it
//! a little later than the trace says, after the client's send and the engine thread's wake-up) and
//! runs ahead of the live engine by the loop's own time between forwards (50–150 µs a step); the
//! batches then differ and every later forward is compared with the wrong log row. So the re-run
//! ([`served_workload`], [`forward_spans`]) takes:
//! - each forward's time from the moment the live engine could have started it — the previous
//!   forward's end, or, after an idle spell, the receipt of the request that woke it — to its end,
//!   so the re-run's steps end where the live ones did;
//! - each request's arrival at its receipt on the engine's clock, moved back to the start of the
//!   step that admitted it when it was received in the pause between two forwards (the simulator
//!   has no pause: live, a request received there is in the next batch; in the re-run it would
//!   arrive after that batch was formed);
//! - the prompt and output lengths the engine served, not the trace's.
//!
//! **The serving path is measured, not inferred.** The engine/queueing term compares the re-run
//! with the engine's own TTFT and TPOT ([`engine_records`]), and the serving path's time is the
//! client's latency minus the engine's, request by request.
//!
//! Live sequence ids are assigned in the order the engine received requests; the client's rows are
//! put in the order it sent them, and the k-th of each are the same request. A request the engine
//! refused would shift that; [`ServedMatch`] counts the pairs whose prompt lengths differ.

use super::steps::StepRow;
use crate::ReplayError;
use specsim_core::time::secs_to_ns;
use specsim_core::workload::{RequestSpec, Workload};
use specsim_sim::metrics::RequestRecord;
use std::path::{Path, PathBuf};

/// The header the runtime writes (`runtime::driver::step_log::REQUESTS_HEADER`).
pub const REQUESTS_HEADER: &str =
    "seq,received_s,admitted_s,woke,first_token_s,finished_s,prompt_tokens,max_tokens,emitted";

/// Slack for the log's microsecond rounding when comparing its times.
const ROUNDING_S: f64 = 1e-6;

/// The per-request sibling of a step log: `DIR/NAME.csv` → `DIR/NAME.requests.csv`.
pub fn requests_path(step_log: &Path) -> PathBuf {
    super::steps::sibling_path(step_log, "requests")
}

/// One request as the live engine served it; times are seconds on the step log's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServedRequest {
    /// The engine's sequence id (receipt order).
    pub seq: u64,
    /// The server handed it to the engine thread.
    pub received_s: f64,
    /// The engine loop admitted it.
    pub admitted_s: f64,
    /// It ended an idle wait of the engine loop.
    pub woke: bool,
    /// Its first ids went back to the server (`None`: it emitted nothing).
    pub first_token_s: Option<f64>,
    /// It left the engine.
    pub finished_s: f64,
    /// Prompt tokens served.
    pub prompt_tokens: u32,
    /// Most tokens it could generate.
    pub max_tokens: u32,
    /// Tokens it emitted.
    pub emitted: u32,
}

/// Parses a per-request file; `origin` names it in errors. Rows come back in sequence order.
pub fn parse_served(text: &str, origin: &str) -> Result<Vec<ServedRequest>, ReplayError> {
    let mut rows = Vec::new();
    for (line, f) in super::steps::log_rows(text, origin, REQUESTS_HEADER, 9)? {
        let bad = |name: &str, v: &str, what: &str| ReplayError::Parse {
            origin: origin.to_string(),
            line,
            msg: format!("field `{name}`: `{v}` is not {what}"),
        };
        let secs = |k: usize, name: &str| -> Result<f64, ReplayError> {
            f[k].parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(name, f[k], "a time ≥ 0"))
        };
        let count = |k: usize, name: &str| -> Result<u32, ReplayError> {
            f[k].parse::<u32>().map_err(|_| bad(name, f[k], "a count"))
        };
        let woke = match f[3] {
            "0" => false,
            "1" => true,
            v => return Err(bad("woke", v, "0 or 1")),
        };
        rows.push(ServedRequest {
            seq: f[0].parse().map_err(|_| bad("seq", f[0], "an id"))?,
            received_s: secs(1, "received_s")?,
            admitted_s: secs(2, "admitted_s")?,
            woke,
            first_token_s: match f[4] {
                "" => None,
                _ => Some(secs(4, "first_token_s")?),
            },
            finished_s: secs(5, "finished_s")?,
            prompt_tokens: count(6, "prompt_tokens")?,
            max_tokens: count(7, "max_tokens")?,
            emitted: count(8, "emitted")?,
        });
    }
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Reads the per-request file beside `step_log`; `Ok(None)` when there is none (a log from before it
/// was written).
pub fn read_served(step_log: &Path) -> Result<Option<Vec<ServedRequest>>, ReplayError> {
    let path = requests_path(step_log);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ReplayError::io(&path, e))?;
    parse_served(&text, &path.display().to_string()).map(Some)
}

/// Where each logged forward could have started live: the previous forward's end, or, when the
/// engine idled in between, the receipt of the request that woke it. One entry per row, in order.
pub fn forward_boundaries(rows: &[StepRow], served: &[ServedRequest]) -> Vec<f64> {
    let mut wakes: Vec<f64> = served
        .iter()
        .filter(|r| r.woke)
        .map(|r| r.received_s)
        .collect();
    wakes.sort_by(f64::total_cmp);
    let mut prev_end = 0.0;
    rows.iter()
        .map(|row| {
            let start = row.time_s - row.measured_s + ROUNDING_S;
            // The last wake in (prev_end, start]: the engine idled from prev_end until then.
            let upto = wakes.partition_point(|&w| w <= start);
            let boundary = match upto.checked_sub(1).map(|i| wakes[i]) {
                Some(w) if w > prev_end => w,
                _ => prev_end,
            };
            prev_end = row.time_s;
            boundary
        })
        .collect()
}

/// Each logged forward's time in the re-run, seconds: from its boundary (`boundaries`, from
/// [`forward_boundaries`]) to its end, so it carries the engine loop's own time before it.
pub fn forward_spans(rows: &[StepRow], boundaries: &[f64]) -> Vec<f64> {
    boundaries
        .iter()
        .zip(rows)
        .map(|(b, r)| (r.time_s - b).max(r.measured_s))
        .collect()
}

/// How the live engine's requests were matched with the client's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ServedMatch {
    /// Requests in the engine's file that had a client row.
    pub paired: u64,
    /// Of them, pairs whose prompt lengths differ (a shifted pairing, or a prompt re-tokenized).
    pub prompt_mismatched: u64,
    /// Client rows (or engine rows) left without a partner.
    pub unpaired: u64,
}

/// The live requests paired with the client's rows: `(served, client id)` in sequence order (see
/// the module doc for the pairing).
///
/// Under a burst on a saturated machine the client's tasks can submit out of their send order (a
/// Gamma replicate at 90 % paired 169 of 300 requests with another prompt length in order), so
/// pairing is by prompt length and time: the clock offset between client and engine is the median
/// receipt − send of the k-th receipt and the k-th send (reordering is local, a few milliseconds
/// within a burst), and each engine request (in
/// receipt order) takes the unpaired client row of its prompt length sent nearest to its receipt
/// less that offset. Requests with no row of their length left are paired in order among the rest.
pub fn pair_with_client<'a>(
    served: &'a [ServedRequest],
    client: &[RequestRecord],
) -> (Vec<(&'a ServedRequest, u64)>, ServedMatch) {
    let mut sent: Vec<&RequestRecord> = client.iter().collect();
    sent.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s).then(a.id.cmp(&b.id)));
    let mut offsets: Vec<f64> = served
        .iter()
        .zip(&sent)
        .map(|(s, c)| s.received_s - c.arrival_s)
        .collect();
    offsets.sort_by(f64::total_cmp);
    let offset = offsets.get(offsets.len() / 2).copied().unwrap_or(0.0);
    let mut taken = vec![false; sent.len()];
    let mut chosen: Vec<Option<usize>> = served
        .iter()
        .map(|s| {
            let sent_at = s.received_s - offset;
            let best = (0..sent.len())
                .filter(|&i| !taken[i] && sent[i].prompt_tokens == s.prompt_tokens)
                .min_by(|&a, &b| {
                    (sent[a].arrival_s - sent_at)
                        .abs()
                        .total_cmp(&(sent[b].arrival_s - sent_at).abs())
                })?;
            taken[best] = true;
            Some(best)
        })
        .collect();
    // The rest in order.
    let mut left = (0..sent.len()).filter(|&i| !taken[i]);
    for c in chosen.iter_mut().filter(|c| c.is_none()) {
        *c = left.next();
    }
    let mut m = ServedMatch {
        unpaired: served.len().abs_diff(sent.len()) as u64,
        ..ServedMatch::default()
    };
    let pairs = served
        .iter()
        .zip(chosen)
        .filter_map(|(s, c)| {
            let c = sent[c?];
            m.paired += 1;
            if s.prompt_tokens != c.prompt_tokens {
                m.prompt_mismatched += 1;
            }
            Some((s, c.id))
        })
        .collect();
    (pairs, m)
}

/// The workload the live engine served, for the re-run: each paired request with its engine-side
/// arrival (see the module doc), the served prompt length and `max_tokens`, and the trace's
/// category. `boundaries` are the rows' [`forward_boundaries`]. Its ids are positions; the second
/// value gives each position's client id and engine receipt (seconds).
pub fn served_workload(
    pairs: &[(&ServedRequest, u64)],
    rows: &[StepRow],
    boundaries: &[f64],
    trace: &Workload,
) -> (Workload, Vec<(u64, f64)>) {
    let starts: Vec<f64> = rows.iter().map(|r| r.time_s - r.measured_s).collect();
    let mut reqs: Vec<(f64, RequestSpec, (u64, f64))> = pairs
        .iter()
        .map(|(s, client_id)| {
            // The first forward after its admission is the first of the step that could take it.
            let i = starts.partition_point(|&st| st + ROUNDING_S < s.admitted_s);
            let arrival = boundaries
                .get(i)
                .map_or(s.received_s, |&b| s.received_s.min(b));
            let category = trace
                .requests
                .get(*client_id as usize)
                .and_then(|r| r.category);
            let spec = RequestSpec {
                id: 0,
                arrival_ns: secs_to_ns(arrival),
                prompt_tokens: s.prompt_tokens.max(1),
                output_tokens: s.max_tokens.max(1),
                category,
                prefix: None,
            };
            (arrival, spec, (*client_id, s.received_s))
        })
        .collect();
    reqs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut w = Workload {
        categories: trace.categories.clone(),
        ..Workload::default()
    };
    let mut ids = Vec::with_capacity(reqs.len());
    for (i, (_, mut spec, client)) in reqs.into_iter().enumerate() {
        spec.id = i as u64;
        w.requests.push(spec);
        ids.push(client);
    }
    (w, ids)
}

/// The engine's own latencies of the paired requests, as rows keyed by client id: TTFT from
/// receipt to first ids, TPOT from first ids to the end over the tokens after the first.
pub fn engine_records(pairs: &[(&ServedRequest, u64)]) -> Vec<RequestRecord> {
    pairs
        .iter()
        .filter_map(|(s, id)| {
            let first = s.first_token_s?;
            let tpot = if s.emitted > 1 {
                (s.finished_s - first) / f64::from(s.emitted - 1)
            } else {
                0.0
            };
            Some(RequestRecord {
                id: *id,
                arrival_s: s.received_s,
                prompt_tokens: s.prompt_tokens,
                output_tokens: s.emitted,
                first_token_s: first,
                finish_s: s.finished_s,
                ttft_s: first - s.received_s,
                tpot_s: tpot,
                e2e_s: s.finished_s - s.received_s,
                drafted: 0,
                accepted: 0,
                steps: 0,
                slo_met: false,
                replica: 0,
                policy: String::new(),
                error: None,
                cached_tokens: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fidelity::steps::parse_step_log;

    const STEPS: &str =
        "time_s,model,seqs,new_tokens,prefill_tokens,context_tokens,measured_s,predicted_s\n";

    /// A hand-made live run: request 0 wakes the idle engine at 1.000 s, its prefill runs
    /// 1.001–1.011, its decode 1.0112–1.0212; request 1 is received at 1.0111, in the pause after
    /// the prefill, admitted at 1.0112 before the decode starts, and prefilled 1.0213–1.0313. The
    /// engine then idles until request 2 wakes it at 2.000; its prefill runs 2.0005–2.0105. Request
    /// 3 is received mid-forward at 2.005, admitted after it, and prefilled 2.0107–2.0207.
    fn run() -> (Vec<StepRow>, Vec<ServedRequest>) {
        let rows = parse_step_log(
            &format!(
                "{STEPS}1.011,target,1,8,8,8,0.010,0.010\n1.0212,target,1,1,0,9,0.010,0.010\n\
                 1.0313,target,1,8,8,8,0.010,0.010\n2.0105,target,1,8,8,8,0.010,0.010\n\
                 2.0207,target,1,8,8,8,0.010,0.010\n"
            ),
            "steps",
        )
        .unwrap();
        let served = parse_served(
            &format!(
                "{REQUESTS_HEADER}\n\
                 1,1.0111,1.0112,0,1.0314,1.05,8,2,2\n\
                 0,1.000,1.0005,1,1.0111,1.0213,8,2,2\n\
                 2,2.000,2.0003,1,2.0106,2.02,8,1,1\n\
                 3,2.005,2.0106,0,2.0208,2.03,8,1,1\n"
            ),
            "requests",
        )
        .unwrap();
        (rows, served)
    }

    #[test]
    fn forwards_start_at_the_previous_end_or_at_the_wake() {
        let (rows, served) = run();
        // Sorted by sequence on reading.
        assert_eq!(
            served.iter().map(|s| s.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let b = forward_boundaries(&rows, &served);
        let want = [1.000, 1.011, 1.0212, 2.000, 2.0105];
        for (got, want) in b.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{b:?}");
        }
        // Spans: end − boundary, so the loop's time before a forward is in it.
        let spans = forward_spans(&rows, &b);
        let want = [0.011, 0.0102, 0.0101, 0.0105, 0.0102];
        for (got, want) in spans.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{spans:?}");
        }
    }

    #[test]
    fn a_request_received_in_the_pause_arrives_at_the_pause_start() {
        let (rows, served) = run();
        let client: Vec<RequestRecord> = served
            .iter()
            .map(|s| {
                let mut r = engine_records(&[(s, 0)]).pop().unwrap();
                // The client's ids are not the engine's: 10, 11, ...; sent 20 ms earlier.
                r.id = 10 + s.seq;
                r.arrival_s = s.received_s - 0.02;
                r
            })
            .collect();
        let (pairs, m) = pair_with_client(&served, &client);
        assert_eq!(
            m,
            ServedMatch {
                paired: 4,
                prompt_mismatched: 0,
                unpaired: 0
            }
        );
        let mut trace = Workload::default();
        for _ in 0..14 {
            trace.push(0, 8, 2, None);
        }
        let boundaries = forward_boundaries(&rows, &served);
        let (w, clients) = served_workload(&pairs, &rows, &boundaries, &trace);
        let arrivals: Vec<f64> = w
            .requests
            .iter()
            .map(|r| r.arrival_ns as f64 / 1e9)
            .collect();
        // 0 at its receipt (it woke the engine); 1 was received at 1.0111, after the prefill ended at
        // 1.011 and before the decode's step began: it arrives at 1.011. 2 woke the engine at 2.000;
        // 3 was received mid-forward (2.005 < 2.0105), so at its receipt.
        let want = [1.000, 1.011, 2.000, 2.005];
        for (got, want) in arrivals.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{arrivals:?}");
        }
        assert_eq!(
            clients.iter().map(|c| c.0).collect::<Vec<_>>(),
            [10, 11, 12, 13]
        );
        assert_eq!(w.requests[0].output_tokens, 2);
        assert_eq!(w.requests[2].output_tokens, 1);
        w.validate().unwrap();
        // The engine's own latencies: request 0, TTFT 1.0111 − 1.000, TPOT (1.0213 − 1.0111) / 1.
        let e = engine_records(&pairs);
        assert!((e[0].ttft_s - 0.0111).abs() < 1e-9 && (e[0].tpot_s - 0.0102).abs() < 1e-9);
        assert_eq!(e[0].id, 10);
    }

    #[test]
    fn bad_rows_name_the_file_line_and_field() {
        let text = format!("{REQUESTS_HEADER}\n0,1.0,1.0,1,,2.0,8,2,0\n1,1.5,x,0,1.6,2.0,8,2,2\n");
        let e = parse_served(&text, "r.csv").unwrap_err().to_string();
        assert!(
            e.contains("r.csv") && e.contains('3') && e.contains("admitted_s"),
            "{e}"
        );
        let text = format!("{REQUESTS_HEADER}\n0,1.0,1.0,2,,2.0,8,2,0\n");
        let e = parse_served(&text, "r.csv").unwrap_err().to_string();
        assert!(e.contains("woke"), "{e}");
        assert!(parse_served("seq,received_s\n", "r.csv").is_err());
        // A request that emitted nothing has no first token and no engine latency.
        let ok =
            parse_served(&format!("{REQUESTS_HEADER}\n0,1.0,1.0,1,,2.0,8,2,0\n"), "r").unwrap();
        assert_eq!(ok[0].first_token_s, None);
        assert!(engine_records(&[(&ok[0], 0)]).is_empty());
    }

    #[test]
    fn requests_submitted_out_of_send_order_pair_by_length_and_time() {
        // The client sent 0 (8 tokens) at 1.000, 1 (12) at 1.001, 2 (8) at 2.000, 3 (20) at 2.001;
        // the engine (its clock 0.5 s ahead) received 1 before 0, and 3 before 2.
        let served = parse_served(
            &format!(
                "{REQUESTS_HEADER}\n0,1.5015,1.5015,1,1.6,1.7,12,2,2\n1,1.5020,1.5020,0,1.6,1.7,8,2,2\n\
                 2,2.5013,2.5013,1,2.6,2.7,20,2,2\n3,2.5016,2.5016,0,2.6,2.7,8,2,2\n"
            ),
            "r",
        )
        .unwrap();
        let client: Vec<RequestRecord> =
            [(0, 1.000, 8), (1, 1.001, 12), (2, 2.000, 8), (3, 2.001, 20)]
                .iter()
                .map(|&(id, at, prompt)| {
                    let mut r = engine_records(&[(&served[0], id)]).pop().unwrap();
                    r.arrival_s = at;
                    r.prompt_tokens = prompt;
                    r
                })
                .collect();
        let (pairs, m) = pair_with_client(&served, &client);
        let ids: Vec<(u64, u64)> = pairs.iter().map(|(s, id)| (s.seq, *id)).collect();
        assert_eq!(ids, [(0, 1), (1, 0), (2, 3), (3, 2)]);
        assert_eq!((m.paired, m.prompt_mismatched, m.unpaired), (4, 0, 0));
    }
}
