//! Ranges of every numeric scenario key, and names that may become paths.
//!
//! Every number a scenario can hold has a documented range ([`KEYS`], rendered as the table in
//! `docs/scenario-keys.md` by [`markdown_table`]); [`check_ranges`] walks a scenario's TOML table
//! (after `--set`, before it is deserialised) and rejects the first value outside its range, naming the
//! key as `--set` writes it (`policies.1.k`). The limits keep every count that sizes an allocation or a
//! loop (requests, replicas, token lengths, draft lengths) small enough to allocate, and every time
//! small enough for the nanosecond clock. Checks that involve more than one key (a trace's span,
//! replicas summed over groups) are [`Scenario::validate`](crate::scenario::Scenario::validate)'s.

/// Longest prompt or output, in tokens, anywhere (scenario lengths, clipping, trace rows).
pub const MAX_TOKENS: u32 = 1 << 20;
/// Most requests a synthetic workload may have.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Most replicas in a cluster (summed over groups).
pub const MAX_REPLICAS: u64 = 4096;
/// Longest span of a workload's arrivals, seconds (about 31.7 years; the clock is u64 nanoseconds).
pub const MAX_SPAN_S: f64 = 1e9;
/// Longest draft (speculation length) a policy may ask for.
pub const MAX_DRAFT: u64 = 64;

/// One end of a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The value itself is allowed.
    Incl(f64),
    /// Only values strictly inside.
    Excl(f64),
}

/// A numeric key and its allowed range.
#[derive(Debug, Clone, Copy)]
pub struct KeyRange {
    /// Dotted key; `*` matches any table key or array index, `{a,b}` either of the names.
    pub key: &'static str,
    /// Lower end.
    pub lo: Bound,
    /// Upper end.
    pub hi: Bound,
    /// Whether the value must be an integer.
    pub integer: bool,
    /// Unit (for the table).
    pub unit: &'static str,
}

use Bound::{Excl, Incl};

const fn int(key: &'static str, lo: f64, hi: f64, unit: &'static str) -> KeyRange {
    KeyRange {
        key,
        lo: Incl(lo),
        hi: Incl(hi),
        integer: true,
        unit,
    }
}

const fn real(key: &'static str, lo: Bound, hi: Bound, unit: &'static str) -> KeyRange {
    KeyRange {
        key,
        lo,
        hi,
        integer: false,
        unit,
    }
}

const TOK: f64 = MAX_TOKENS as f64;
const SPAN: f64 = MAX_SPAN_S;
const DRAFT: f64 = MAX_DRAFT as f64;
const REPL: f64 = MAX_REPLICAS as f64;
const SEQS: f64 = 65536.0;

/// Every numeric scenario key with its range and unit.
pub const KEYS: &[KeyRange] = &[
    int("seed", 0.0, i64::MAX as f64, "-"),
    // [trace]
    real("trace.start_s", Incl(0.0), Incl(SPAN), "s"),
    real("trace.duration_s", Excl(0.0), Incl(SPAN), "s"),
    real("trace.rate_scale", Incl(1e-6), Incl(1e6), "x"),
    real("trace.target_rate", Incl(1e-6), Incl(1e6), "requests/s"),
    int("trace.limit", 1.0, 100_000_000.0, "requests"),
    int("trace.concurrency", 1.0, SEQS, "requests in flight"),
    real("trace.sample", Excl(0.0), Incl(1.0), "fraction"),
    int("trace.max_prompt", 1.0, TOK, "tokens"),
    int("trace.max_output", 1.0, TOK, "tokens"),
    int("trace.max_context", 2.0, 2.0 * TOK, "tokens"),
    real("trace.categories.*", Incl(0.0), Incl(1e6), "weight"),
    int(
        "trace.synthetic.requests",
        1.0,
        MAX_REQUESTS as f64,
        "requests",
    ),
    real("trace.synthetic.rate", Incl(1e-6), Incl(1e6), "requests/s"),
    real("trace.synthetic.arrival.cv", Excl(0.0), Incl(100.0), "-"),
    real(
        "trace.synthetic.arrival.burst_factor",
        Incl(1.0),
        Incl(1e6),
        "x",
    ),
    real("trace.synthetic.arrival.on_s", Excl(0.0), Incl(SPAN), "s"),
    real("trace.synthetic.arrival.off_s", Excl(0.0), Incl(SPAN), "s"),
    real(
        "trace.synthetic.arrival.amplitude",
        Incl(0.0),
        Excl(1.0),
        "fraction",
    ),
    real(
        "trace.synthetic.arrival.period_s",
        Excl(0.0),
        Incl(SPAN),
        "s",
    ),
    int(
        "trace.{synthetic,timestamps}.{prompt,output}.value",
        1.0,
        TOK,
        "tokens",
    ),
    int(
        "trace.{synthetic,timestamps}.{prompt,output}.min",
        1.0,
        TOK,
        "tokens",
    ),
    int(
        "trace.{synthetic,timestamps}.{prompt,output}.max",
        1.0,
        TOK,
        "tokens",
    ),
    real(
        "trace.{synthetic,timestamps}.{prompt,output}.mean",
        Excl(0.0),
        Incl(TOK),
        "tokens",
    ),
    real(
        "trace.{synthetic,timestamps}.{prompt,output}.std",
        Excl(0.0),
        Incl(TOK),
        "tokens",
    ),
    int("trace.shared_prefix.system_prompts", 1.0, 1e6, "groups"),
    int(
        "trace.shared_prefix.users_per_system_prompt",
        1.0,
        1e6,
        "users",
    ),
    int("trace.shared_prefix.system_prompt_len", 0.0, TOK, "tokens"),
    int(
        "trace.shared_prefix.max_model_len",
        2.0,
        2.0 * TOK,
        "tokens",
    ),
    int("trace.shared_prefix.block_tokens", 1.0, 65536.0, "tokens"),
    real(
        "trace.shared_prefix.stage_gap_s",
        Incl(0.0),
        Incl(SPAN),
        "s",
    ),
    real(
        "trace.shared_prefix.stages.*.rate",
        Incl(1e-6),
        Incl(1e6),
        "requests/s",
    ),
    real(
        "trace.shared_prefix.stages.*.duration_s",
        Excl(0.0),
        Incl(SPAN),
        "s",
    ),
    int(
        "trace.shared_prefix.{question_len,output_len}.{value,min,max}",
        1.0,
        TOK,
        "tokens",
    ),
    real(
        "trace.shared_prefix.{question_len,output_len}.{mean,std}",
        Excl(0.0),
        Incl(TOK),
        "tokens",
    ),
    // [slo]
    real("slo.{ttft_s,tpot_s,e2e_s}", Excl(0.0), Incl(1e6), "s"),
    // [cluster]
    int("cluster.replicas", 1.0, REPL, "replicas"),
    int("cluster.groups.*.replicas", 1.0, REPL, "replicas"),
    int("cluster.groups.*.tp", 1.0, 64.0, "GPUs"),
    int("cluster.groups.*.kv_blocks", 1.0, u32::MAX as f64, "blocks"),
    // [engine]
    int("engine.block_size", 1.0, 1024.0, "tokens"),
    int("engine.kv_blocks", 1.0, u32::MAX as f64, "blocks"),
    int("engine.max_num_seqs", 1.0, SEQS, "sequences"),
    int("engine.max_batched_tokens", 1.0, 16.0 * TOK, "tokens"),
    real(
        "engine.gpu_memory_utilization",
        Excl(0.0),
        Incl(1.0),
        "fraction",
    ),
    // [models]
    int("models.{tp,draft_tp}", 1.0, 64.0, "GPUs"),
    int(
        "models.{target_spec,draft_spec}.layers",
        1.0,
        1024.0,
        "layers",
    ),
    int("models.{target_spec,draft_spec}.hidden", 1.0, TOK, "-"),
    int("models.{target_spec,draft_spec}.heads", 1.0, SEQS, "heads"),
    int(
        "models.{target_spec,draft_spec}.kv_heads",
        1.0,
        SEQS,
        "heads",
    ),
    int("models.{target_spec,draft_spec}.ffn", 1.0, 4.0 * TOK, "-"),
    int(
        "models.{target_spec,draft_spec}.vocab",
        1.0,
        16.0 * TOK,
        "tokens",
    ),
    real(
        "models.{target_spec,draft_spec}.weight_bytes",
        Excl(0.0),
        Incl(8.0),
        "bytes",
    ),
    real(
        "models.{target_spec,draft_spec}.kv_bytes",
        Excl(0.0),
        Incl(8.0),
        "bytes",
    ),
    int(
        "models.{target_spec,draft_spec}.moe.experts",
        1.0,
        SEQS,
        "experts",
    ),
    int(
        "models.{target_spec,draft_spec}.moe.top_k",
        1.0,
        SEQS,
        "experts",
    ),
    real("models.hardware_spec.memory_gb", Excl(0.0), Incl(1e6), "GB"),
    real(
        "models.hardware_spec.mem_bandwidth_tbs",
        Excl(0.0),
        Incl(1e3),
        "TB/s",
    ),
    real(
        "models.hardware_spec.peak_tflops",
        Excl(0.0),
        Incl(1e6),
        "TFLOP/s",
    ),
    real(
        "models.hardware_spec.interconnect_gbs",
        Excl(0.0),
        Incl(1e6),
        "GB/s",
    ),
    // [cost]
    real(
        "cost.{compute_efficiency,memory_efficiency}",
        Excl(0.0),
        Incl(1.0),
        "fraction",
    ),
    real(
        "cost.{target_overhead_ms,draft_overhead_ms}",
        Incl(0.0),
        Incl(1e6),
        "ms",
    ),
    real(
        "cost.{target_ms,target_per_token_ms,draft_ms,draft_per_seq_ms}",
        Incl(0.0),
        Incl(1e6),
        "ms",
    ),
    real(
        "cost.{draft,target,prefill}.{a,b,c,d}",
        Incl(-1e12),
        Incl(1e12),
        "ns (per unit)",
    ),
    // [acceptance]
    real("acceptance.alpha", Incl(0.0), Incl(1.0), "probability"),
    real("acceptance.alphas.*", Incl(0.0), Incl(1.0), "probability"),
    real("acceptance.confidence_beta.*", Excl(0.0), Incl(1e6), "-"),
    real("acceptance.curve.*.*", Incl(0.0), Incl(1.0), "probability"),
    real(
        "acceptance.position_alphas.*",
        Incl(0.0),
        Incl(1.0),
        "probability",
    ),
    real(
        "acceptance.position_decay",
        Excl(0.0),
        Incl(1.0),
        "x per position",
    ),
    real(
        "acceptance.categories.*.confidence_beta.*",
        Excl(0.0),
        Incl(1e6),
        "-",
    ),
    real(
        "acceptance.categories.*.curve.*.*",
        Incl(0.0),
        Incl(1.0),
        "probability",
    ),
    real(
        "acceptance.categories.*.position_decay",
        Excl(0.0),
        Incl(1.0),
        "x per position",
    ),
    // [[policies]] (also plan.policies)
    int("policies.*.{k,k_max}", 0.0, DRAFT, "tokens"),
    real(
        "policies.*.{confidence,alpha0}",
        Incl(0.0),
        Incl(1.0),
        "probability",
    ),
    real("policies.*.bias", Excl(0.0), Incl(1e6), "x"),
    int("policies.*.table.*.0", 1.0, SEQS, "sequences"),
    int("policies.*.table.*.1", 0.0, DRAFT, "tokens"),
    // [plan]
    real("plan.target", Excl(0.0), Incl(1.0), "fraction"),
    real(
        "plan.{rate_scale,max_rate_scale}",
        Incl(1e-6),
        Incl(1e6),
        "x",
    ),
    int("plan.tp.*", 1.0, 64.0, "GPUs"),
    int("plan.replicas.*", 1.0, REPL, "replicas"),
    int("plan.max_batch.*", 1.0, SEQS, "sequences"),
    real("plan.prices.*", Incl(0.0), Incl(1e6), "$/GPU-hour"),
    real("plan.tolerance", Excl(0.0), Incl(1.0), "fraction"),
    int("plan.coarse_requests", 0.0, MAX_REQUESTS as f64, "requests"),
];

fn segment_matches(pattern: &str, seg: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(alts) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        return alts.split(',').any(|a| a == seg);
    }
    pattern == seg
}

fn key_matches(pattern: &str, path: &[String]) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    // `{a,b}` alternatives hold no dots, so splitting on '.' keeps them whole.
    p.len() == path.len() && p.iter().zip(path).all(|(a, b)| segment_matches(a, b))
}

/// The range of a key path (plan policies share the policies' ranges).
pub fn range_of(path: &[String]) -> Option<&'static KeyRange> {
    let path: &[String] = if path.len() > 2 && path[0] == "plan" && path[1] == "policies" {
        &path[1..]
    } else {
        path
    };
    KEYS.iter().find(|k| key_matches(k.key, path))
}

fn fmt_num(x: f64) -> String {
    if x >= i64::MAX as f64 {
        i64::MAX.to_string()
    } else if x == x.trunc() && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl KeyRange {
    /// Whether `x` is inside.
    pub fn contains(&self, x: f64) -> bool {
        let lo = match self.lo {
            Incl(l) => x >= l,
            Excl(l) => x > l,
        };
        let hi = match self.hi {
            Incl(h) => x <= h,
            Excl(h) => x < h,
        };
        lo && hi && (!self.integer || x == x.trunc())
    }

    /// The range as interval notation: `[1, 4096]`, `(0, 1]`.
    pub fn interval(&self) -> String {
        let (l, lb) = match self.lo {
            Incl(l) => (l, '['),
            Excl(l) => (l, '('),
        };
        let (h, hb) = match self.hi {
            Incl(h) => (h, ']'),
            Excl(h) => (h, ')'),
        };
        format!("{lb}{}, {}{hb}", fmt_num(l), fmt_num(h))
    }
}

fn walk(v: &toml::Value, path: &mut Vec<String>) -> Result<(), String> {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                // Sweep values are checked in each cell, where they land on their keys.
                if path.is_empty() && k == "sweep" {
                    continue;
                }
                path.push(k.clone());
                walk(x, path)?;
                path.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                walk(x, path)?;
                path.pop();
            }
        }
        toml::Value::Integer(_) | toml::Value::Float(_) => {
            let (x, shown) = match v {
                toml::Value::Integer(i) => (*i as f64, i.to_string()),
                toml::Value::Float(f) => (*f, format!("{f:?}")),
                _ => unreachable!(),
            };
            if let Some(r) = range_of(path) {
                if !r.contains(x) {
                    let what = if r.integer { "an integer in " } else { "" };
                    let unit = match r.unit {
                        "-" => String::new(),
                        u => format!(" {u}"),
                    };
                    return Err(format!(
                        "{} = {shown} is out of range: must be {what}{}{unit}",
                        path.join("."),
                        r.interval()
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks every numeric value of a scenario table against [`KEYS`]; the error names the key.
pub fn check_ranges(raw: &toml::Table) -> Result<(), String> {
    let mut path = Vec::new();
    walk(&toml::Value::Table(raw.clone()), &mut path)
}

/// Every numeric leaf of a table that no range covers (for tests: the table must be complete).
pub fn unranged_keys(raw: &toml::Table) -> Vec<String> {
    fn go(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    path.push(k.clone());
                    go(x, path, out);
                    path.pop();
                }
            }
            toml::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    go(x, path, out);
                    path.pop();
                }
            }
            toml::Value::Integer(_) | toml::Value::Float(_) if range_of(path).is_none() => {
                out.push(path.join("."));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    go(&toml::Value::Table(raw.clone()), &mut Vec::new(), &mut out);
    out
}

/// After a table deserialised: every number in it must sit on a key of [`KEYS`]. One that does not
/// was taken by serde in a way no key documents (a table written as an array, `engine = [1]`, fills
/// the struct's fields by position), so it is refused, naming where it is.
pub fn check_no_stray_numbers(raw: &toml::Table) -> Result<(), String> {
    let mut t = raw.clone();
    t.remove("sweep");
    match unranged_keys(&t).first() {
        None => Ok(()),
        Some(k) => Err(format!(
            "{k}: no scenario key takes a number here (is a table written as an array? see docs/scenario-keys.md)"
        )),
    }
}

/// The Markdown table of [`KEYS`] (the one in `docs/scenario-keys.md`).
pub fn markdown_table() -> String {
    let mut s = String::from("| key | range | type | unit |\n|---|---|---|---|\n");
    for k in KEYS {
        s += &format!(
            "| `{}` | {} | {} | {} |\n",
            k.key.replace('*', "N"),
            k.interval(),
            if k.integer { "integer" } else { "number" },
            k.unit
        );
    }
    s
}

/// Checks that a name taken from input (a scenario `name`, a policy label) is one plain path
/// component, so an output path built from it stays inside its folder: not empty, at most 128
/// characters, no `/`, `\`, `:`, control character or NUL, not `.` or `..`, not starting with `.` or
/// `-`. `what` names the key in the error.
pub fn check_path_name(what: &str, name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{what} = {:?} cannot name an output folder: {why}",
            short(name, 60)
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.chars().count() > 128 {
        return bad("it is longer than 128 characters");
    }
    if name.contains(['/', '\\', ':']) {
        return bad("it holds a path separator ('/', '\\' or ':')");
    }
    if name.chars().any(char::is_control) {
        return bad("it holds a control character");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if name.starts_with('-') {
        return bad("it starts with '-'");
    }
    if name.trim() != name {
        return bad("it starts or ends with white space");
    }
    Ok(())
}

/// At most `max` characters of `s`, with `...` when cut (for quoting input in errors).
pub fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).collect::<String>() + "..."
    }
}

pub use specsim_core::excerpt;

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn ranges_name_the_key_with_array_indices() {
        let e = check_ranges(&table(
            "[[policies]]\nkind='none'\n[[policies]]\nkind='static'\nk=100",
        ))
        .unwrap_err();
        assert!(e.starts_with("policies.1.k = 100 is out of range"), "{e}");
        let e = check_ranges(&table("[trace.synthetic]\nrate=1e-308")).unwrap_err();
        assert!(e.contains("trace.synthetic.rate"), "{e}");
        let e = check_ranges(&table("[plan]\npolicies=[{kind='static',k=65}]")).unwrap_err();
        assert!(e.starts_with("plan.policies.0.k"), "{e}");
        let e = check_ranges(&table("[slo]\nttft_s=nan")).unwrap_err();
        assert!(e.starts_with("slo.ttft_s"), "{e}");
        assert!(check_ranges(&table("[sweep]\n'trace.synthetic.rate'=[0.0]")).is_ok());
        assert!(check_ranges(&table("[engine]\nblock_size=16")).is_ok());
        let e = check_ranges(&table("[engine]\nblock_size=0")).unwrap_err();
        assert!(e.contains("engine.block_size = 0"), "{e}");
        let e = check_no_stray_numbers(&table("engine = [1]")).unwrap_err();
        assert!(e.starts_with("engine.0: no scenario key"), "{e}");
    }

    #[test]
    fn path_names_must_be_one_component() {
        for bad in [
            "", "..", "../x", "/abs", "a/b", "a\\b", ".hidden", "-x", "a\0b", "c:x", " a",
        ] {
            assert!(check_path_name("name", bad).is_err(), "{bad:?}");
        }
        for ok in ["quickstart", "fig3 load", "azure_conv-2", "qwen.cpu"] {
            assert!(check_path_name("name", ok).is_ok(), "{ok}");
        }
    }

    /// The documented table in docs/scenario-keys.md is this module's.
    #[test]
    fn documented_table_matches_the_code() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/scenario-keys.md"
        ))
        .unwrap();
        assert!(
            doc.contains(&markdown_table()),
            "docs/scenario-keys.md is out of date; its table must be:\n{}",
            markdown_table()
        );
    }

    /// Every numeric key of every scenario shipped in scenarios/ has a range.
    #[test]
    fn every_numeric_key_in_the_shipped_scenarios_has_a_range() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut stack = vec![std::path::PathBuf::from(root)];
        let mut missing = Vec::new();
        let mut files = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    files += 1;
                    let mut t = table(&std::fs::read_to_string(&p).unwrap());
                    // Sweep axes are checked on their keys.
                    if let Some(toml::Value::Table(sw)) = t.remove("sweep") {
                        for (k, v) in sw {
                            if k == "policy" {
                                let mut tt = toml::Table::new();
                                tt.insert("policies".into(), v);
                                missing.extend(unranged_keys(&tt));
                            }
                        }
                    }
                    missing.extend(
                        unranged_keys(&t)
                            .into_iter()
                            .map(|k| format!("{}: {k}", p.display())),
                    );
                }
            }
        }
        assert!(files > 10);
        assert!(
            missing.is_empty(),
            "numeric keys without a range: {missing:?}"
        );
    }
}
