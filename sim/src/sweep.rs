//! Parameter sweeps: a scenario's `[sweep]` grid, expanded into numbered cells and run in parallel.
//!
//! ## The `[sweep]` table
//!
//! Every key is a dotted scenario key (the same paths `--set` takes) and its value is the array of
//! values that axis takes; the special key `policy` is an array of policy tables, one per value:
//!
//! ```toml
//! [sweep]
//! "trace.rate_scale" = [0.5, 1.0, 2.0]
//! "models.hardware" = ["A100-80G", "H100-SXM"]
//! policy = [{ kind = "none" }, { kind = "static", k = 3 }, { kind = "specserve" }]
//! ```
//!
//! Without a `policy` axis, the scenario's own `[[policies]]` form it. The grid is the cartesian product
//! of the axes; axes are ordered by key (alphabetically, as TOML tables are) with `policy` last, and
//! the last axis varies fastest. Cell `i` is the `i`-th combination in that order — so cell numbers
//! depend only on the scenario file, never on threads, shards or machines.
//!
//! ## Determinism, shards and merging
//!
//! A cell is an ordinary scenario (the base file with the cell's values set, as `--set` would) and
//! runs on its own seed, so its result is the same bytes wherever it runs. [`Shard`] `I/N` takes the
//! cells whose number is `I mod N` (round-robin, so every shard gets a similar mix of cheap and
//! expensive cells); [`merge_tables`] joins shard tables back into the table an unsharded run writes,
//! checking that every cell is present exactly once.
//!
//! Workloads are loaded once per distinct `[trace]` table and seed (cells that only change the policy
//! or the hardware share one), through a caller-supplied loader, because reading real trace formats
//! lives in the `specsim-traces` crate, which depends on this one.
//!
//! [`write_table`] writes `results.csv` and, with the crate feature `parquet`, `results.parquet`
//! ([`parquet`]: the same table with typed columns).

#[cfg(feature = "parquet")]
pub mod parquet;

use crate::metrics::Summary;
use crate::scenario::{set_key, Scenario, ScenarioFile};
use crate::SimError;
use rayon::prelude::*;
use serde::Deserialize;
use specsim_core::policy::PolicyConfig;
use specsim_core::workload::Workload;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// The key of the policy axis in `[sweep]`.
pub const POLICY_AXIS: &str = "policy";

/// One axis of the grid: a scenario key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Dotted scenario key, or [`POLICY_AXIS`].
    pub key: String,
    /// Values, in file order.
    pub values: Vec<toml::Value>,
}

/// A grid of cells expanded from a scenario's `[sweep]`.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Axes in cell-numbering order (the last varies fastest).
    pub axes: Vec<Axis>,
}

/// One cell: its number and the value index on each axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Cell number, `0..grid.len()`.
    pub index: usize,
    /// Value index per axis.
    pub coords: Vec<usize>,
}

/// A deterministic slice of the cells: those numbered `index mod count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole grid.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `0 <= I < N` (Slurm's `SLURM_ARRAY_TASK_ID` and Kubernetes'
    /// `JOB_COMPLETION_INDEX` are both 0-based).
    pub fn parse(s: &str) -> Result<Shard, SimError> {
        let bad = || SimError::Config(format!("--shard `{s}`: expected I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether cell `i` belongs to this shard.
    pub fn contains(&self, i: usize) -> bool {
        i % self.count == self.index
    }
}

impl Grid {
    /// Expands the scenario's `[sweep]` table; without one, the grid is the policy axis alone.
    pub fn from_scenario(sc: &Scenario) -> Result<Grid, SimError> {
        let err = |msg: String| SimError::Scenario {
            file: sc.path.display().to_string(),
            msg,
        };
        let mut axes = Vec::new();
        let mut policy_axis = None;
        if let Some(t) = &sc.file.sweep {
            for (key, v) in t {
                let toml::Value::Array(values) = v else {
                    return Err(err(format!("sweep.\"{key}\": expected an array of values")));
                };
                if values.is_empty() {
                    return Err(err(format!("sweep.\"{key}\": no values")));
                }
                if key == "sweep" || key.starts_with("sweep.") || key == "policies" {
                    return Err(err(format!(
                        "sweep.\"{key}\": cannot sweep this key (sweep policies with `policy = [...]`)"
                    )));
                }
                let axis = Axis {
                    key: key.clone(),
                    values: values.clone(),
                };
                if key == POLICY_AXIS {
                    for (i, p) in values.iter().enumerate() {
                        PolicyConfig::deserialize(p.clone()).map_err(|e| {
                            err(format!("sweep.policy[{i}]: {}", e.message().trim()))
                        })?;
                    }
                    policy_axis = Some(axis);
                } else {
                    axes.push(axis);
                }
            }
        }
        let policy_axis = match policy_axis {
            Some(a) => a,
            None => Axis {
                key: POLICY_AXIS.into(),
                values: match sc.raw.get("policies") {
                    Some(toml::Value::Array(a)) => a.clone(),
                    _ => return Err(err("[[policies]]: at least one policy is required".into())),
                },
            },
        };
        axes.push(policy_axis);
        Ok(Grid { axes })
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Whether the grid has no cells (never, for a grid built by [`Grid::from_scenario`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cell `index` (row-major, last axis fastest).
    pub fn cell(&self, index: usize) -> Cell {
        let mut coords = vec![0; self.axes.len()];
        let mut rest = index;
        for (c, a) in coords.iter_mut().zip(&self.axes).rev() {
            *c = rest % a.values.len();
            rest /= a.values.len();
        }
        Cell { index, coords }
    }

    /// The cells of a shard, in cell order.
    pub fn cells(&self, shard: Shard) -> Vec<Cell> {
        (0..self.len())
            .filter(|&i| shard.contains(i))
            .map(|i| self.cell(i))
            .collect()
    }

    /// The scenario of one cell: the base scenario's table with the cell's values set.
    pub fn scenario(&self, base: &Scenario, cell: &Cell) -> Result<Scenario, SimError> {
        let label = format!("{} (sweep cell {})", base.path.display(), cell.index);
        let err = |msg: String| SimError::Scenario {
            file: label.clone(),
            msg,
        };
        let mut raw = base.raw.clone();
        for (a, &c) in self.axes.iter().zip(&cell.coords) {
            let v = a.values[c].clone();
            if a.key == POLICY_AXIS {
                raw.insert("policies".into(), toml::Value::Array(vec![v]));
            } else {
                set_key(&mut raw, &a.key, v).map_err(|m| err(format!("sweep {m}")))?;
            }
        }
        crate::limits::check_ranges(&raw).map_err(&err)?;
        let file = match ScenarioFile::deserialize(toml::Value::Table(raw.clone())) {
            Ok(f) => f,
            Err(e) => {
                // Name the axis whose value does not fit its key.
                let mut probe = base.raw.clone();
                for (a, &c) in self.axes.iter().zip(&cell.coords) {
                    if a.key == POLICY_AXIS {
                        probe.insert(
                            "policies".into(),
                            toml::Value::Array(vec![a.values[c].clone()]),
                        );
                    } else {
                        let _ = set_key(&mut probe, &a.key, a.values[c].clone());
                    }
                    if let Err(e) = ScenarioFile::deserialize(toml::Value::Table(probe.clone())) {
                        return Err(err(format!(
                            "sweep.\"{}\" = {}: {}",
                            a.key,
                            crate::limits::short(&a.values[c].to_string(), 60),
                            e.message().replace('\n', " ").trim()
                        )));
                    }
                }
                return Err(err(e.message().replace('\n', " ").trim().to_string()));
            }
        };
        crate::limits::check_no_stray_numbers(&raw).map_err(&err)?;
        let sc = Scenario {
            file,
            path: base.path.clone(),
            base_dir: base.base_dir.clone(),
            raw,
        };
        sc.validate().map_err(|e| match e {
            SimError::Scenario { msg, .. } => err(msg),
            other => other,
        })?;
        Ok(sc)
    }

    /// The text written in the results table for an axis value: numbers and strings as they are, a
    /// policy as its result name (`static-3`), any other table as inline TOML.
    pub fn label(&self, axis: usize, value: usize) -> String {
        let a = &self.axes[axis];
        let v = &a.values[value];
        if a.key == POLICY_AXIS {
            if let Ok(p) = PolicyConfig::deserialize(v.clone()) {
                return p.build().name();
            }
        }
        match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Summary columns of the results table, after `cell` and one column per axis.
pub const SUMMARY_COLUMNS: &[&str] = &[
    "requests",
    "finished",
    "duration_s",
    "throughput_rps",
    "output_tokens_per_s",
    "goodput_rps",
    "slo_attainment",
    "ttft_attainment",
    "tpot_attainment",
    "ttft_mean_s",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "tpot_mean_s",
    "tpot_p50_s",
    "tpot_p90_s",
    "tpot_p99_s",
    "e2e_mean_s",
    "e2e_p50_s",
    "e2e_p99_s",
    "acceptance_rate",
    "mean_accepted_length",
    "preemptions",
    "events",
];

fn summary_fields(s: &Summary, events: u64) -> Vec<String> {
    let f = |x: f64| format!("{x:.9}");
    vec![
        s.requests.to_string(),
        s.finished.to_string(),
        f(s.duration_s),
        f(s.throughput_rps),
        f(s.output_tokens_per_s),
        f(s.goodput_rps),
        f(s.slo_attainment),
        f(s.ttft_attainment),
        f(s.tpot_attainment),
        f(s.ttft.mean),
        f(s.ttft.p50),
        f(s.ttft.p90),
        f(s.ttft.p99),
        f(s.tpot.mean),
        f(s.tpot.p50),
        f(s.tpot.p90),
        f(s.tpot.p99),
        f(s.e2e.mean),
        f(s.e2e.p50),
        f(s.e2e.p99),
        f(s.acceptance_rate),
        f(s.mean_accepted_length),
        s.preemptions.to_string(),
        events.to_string(),
    ]
}

/// The results of a sweep (or a shard of one): one row per cell, in cell order.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepTable {
    /// Column names: `cell`, one per axis (the key), then [`SUMMARY_COLUMNS`].
    pub columns: Vec<String>,
    /// Rows as text, each starting with the cell number.
    pub rows: Vec<Vec<String>>,
    /// Cells in the whole grid (so a merge can tell whether shards are missing).
    pub total_cells: usize,
    /// [`fingerprint`] of the resolved scenario the table was swept from (`None` in tables written
    /// before fingerprints existed).
    pub fingerprint: Option<String>,
    /// The resolved scenario itself, when known (a sweep's, or the `scenario.toml` beside a results
    /// file): it lets a refused merge name the key that differs.
    pub scenario: Option<toml::Table>,
}

/// The resolved scenario's keys flattened to `dotted.key -> value` (arrays by index), without
/// `description`, which does not change results.
pub fn scenario_keys(raw: &toml::Table) -> BTreeMap<String, String> {
    fn go(v: &toml::Value, path: &mut Vec<String>, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    path.push(k.clone());
                    go(x, path, out);
                    path.pop();
                }
            }
            toml::Value::Array(a) if !a.is_empty() => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    go(x, path, out);
                    path.pop();
                }
            }
            other => {
                out.insert(path.join("."), other.to_string());
            }
        }
    }
    let mut t = raw.clone();
    t.remove("description");
    let mut out = BTreeMap::new();
    go(&toml::Value::Table(t), &mut Vec::new(), &mut out);
    out
}

/// A fingerprint of the resolved scenario (after `--set`): 16 hex digits of a 64-bit FNV-1a hash of
/// its flattened keys and values. Shards of one experiment have the same one; `merge` refuses tables
/// whose fingerprints differ.
pub fn fingerprint(raw: &toml::Table) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in scenario_keys(raw) {
        for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'\n']) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The keys whose values differ between two resolved scenarios, as `key = a` / `key = b` pairs.
pub fn scenario_diff(a: &toml::Table, b: &toml::Table) -> Vec<(String, String, String)> {
    let (ka, kb) = (scenario_keys(a), scenario_keys(b));
    let keys: std::collections::BTreeSet<&String> = ka.keys().chain(kb.keys()).collect();
    keys.into_iter()
        .filter(|k| ka.get(*k) != kb.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| {
                m.get(k).cloned().unwrap_or_else(|| "(unset)".into())
            };
            (k.clone(), show(&ka), show(&kb))
        })
        .collect()
}

/// Quotes a CSV field when it holds a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The comment line that records the grid size in a results CSV.
const TOTAL_PREFIX: &str = "# cells=";
/// The comment line that records the scenario fingerprint.
const SCENARIO_PREFIX: &str = "# scenario=";

impl SweepTable {
    /// Renders the CSV: a `# cells=N` line, the header, then one line per row.
    pub fn to_csv(&self) -> String {
        let mut s = format!("{TOTAL_PREFIX}{}\n", self.total_cells);
        if let Some(f) = &self.fingerprint {
            let _ = writeln!(s, "{SCENARIO_PREFIX}{f}");
        }
        let line = |v: &[String]| v.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
        s += &line(&self.columns);
        s.push('\n');
        for r in &self.rows {
            let _ = writeln!(s, "{}", line(r));
        }
        s
    }

    /// Parses a CSV written by [`SweepTable::to_csv`]; `origin` names it in errors.
    pub fn parse_csv(text: &str, origin: &str) -> Result<SweepTable, SimError> {
        let perr = |line: usize, msg: String| SimError::Parse {
            origin: origin.into(),
            line,
            msg,
        };
        let mut lines = text.lines().enumerate();
        let total_cells =
            match lines.next() {
                Some((_, l)) if l.starts_with(TOTAL_PREFIX) => l[TOTAL_PREFIX.len()..]
                    .trim()
                    .parse()
                    .map_err(|_| perr(1, format!("bad `{TOTAL_PREFIX}` line")))?,
                _ => return Err(perr(1, format!("expected a `{TOTAL_PREFIX}N` line"))),
            };
        let mut lines = lines.peekable();
        let fingerprint = match lines.peek() {
            Some((_, l)) if l.starts_with(SCENARIO_PREFIX) => {
                let f = l[SCENARIO_PREFIX.len()..].trim().to_string();
                if f.len() != 16 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(perr(2, format!("bad `{SCENARIO_PREFIX}` line")));
                }
                lines.next();
                Some(f)
            }
            _ => None,
        };
        let (hn, columns) = match lines.next() {
            Some((n, l)) => (n + 1, split_csv_line(l)),
            None => return Err(perr(2, "missing header".into())),
        };
        if columns.first().map(String::as_str) != Some("cell") {
            return Err(perr(hn, "the first column must be `cell`".into()));
        }
        let mut rows = Vec::new();
        for (n, l) in lines {
            if l.trim().is_empty() {
                continue;
            }
            let r = split_csv_line(l);
            if r.len() != columns.len() {
                return Err(perr(
                    n + 1,
                    format!("{} fields, header has {}", r.len(), columns.len()),
                ));
            }
            if r[0].parse::<usize>().map_or(true, |c| c >= total_cells) {
                return Err(perr(n + 1, format!("bad cell number `{}`", r[0])));
            }
            rows.push(r);
        }
        Ok(SweepTable {
            columns,
            rows,
            total_cells,
            fingerprint,
            scenario: None,
        })
    }

    /// Cell number of row `i`.
    pub fn cell_of(&self, i: usize) -> usize {
        self.rows[i][0].parse().unwrap_or(usize::MAX)
    }

    /// A column's values parsed as numbers (NaN where not a number); None if there is no such column.
    pub fn numbers(&self, column: &str) -> Option<Vec<f64>> {
        let c = self.columns.iter().position(|x| x == column)?;
        Some(
            self.rows
                .iter()
                .map(|r| r[c].parse().unwrap_or(f64::NAN))
                .collect(),
        )
    }

    /// A column's values as text; None if there is no such column.
    pub fn texts(&self, column: &str) -> Option<Vec<String>> {
        let c = self.columns.iter().position(|x| x == column)?;
        Some(self.rows.iter().map(|r| r[c].clone()).collect())
    }
}

/// Joins shard tables into the table of the whole grid. Every cell must appear exactly once and the
/// shards must agree on columns and grid size; `require_complete = false` accepts missing cells.
pub fn merge_tables(
    tables: Vec<(String, SweepTable)>,
    require_complete: bool,
) -> Result<SweepTable, SimError> {
    let mut it = tables.into_iter();
    let (first_name, first) = it
        .next()
        .ok_or_else(|| SimError::Config("merge: no result tables given".into()))?;
    let mut by_cell: BTreeMap<usize, (String, Vec<String>)> = BTreeMap::new();
    let columns = first.columns.clone();
    let total = first.total_cells;
    let fp = first.fingerprint.clone();
    let scenario = first.scenario.clone();
    let fname = first_name.clone();
    for (name, t) in std::iter::once((first_name, first)).chain(it) {
        if t.fingerprint != fp {
            let diff = match (&scenario, &t.scenario) {
                (Some(a), Some(b)) => scenario_diff(a, b),
                _ => Vec::new(),
            };
            let show = |f: &Option<String>| f.clone().unwrap_or_else(|| "none".into());
            let what = if let Some((k, a, b)) = diff.first() {
                let more = match diff.len() {
                    1 => String::new(),
                    n => format!(" (and {} more key{})", n - 1, if n == 2 { "" } else { "s" }),
                };
                format!("{k} = {a} in {fname} but {b} in {name}{more}")
            } else {
                format!(
                    "scenario fingerprint {} in {fname} but {} in {name}",
                    show(&fp),
                    show(&t.fingerprint)
                )
            };
            return Err(SimError::Config(format!(
                "merge: {name} comes from a different experiment: {what}"
            )));
        }
        if t.columns != columns || t.total_cells != total {
            return Err(SimError::Config(format!(
                "merge: {name} comes from a different sweep (its columns or grid size differ)"
            )));
        }
        for (i, row) in t.rows.into_iter().enumerate() {
            let cell: usize = row[0].parse().unwrap_or(usize::MAX);
            if let Some((other, _)) = by_cell.get(&cell) {
                return Err(SimError::Config(format!(
                    "merge: cell {cell} appears in both {other} and {name} (row {})",
                    i + 1
                )));
            }
            by_cell.insert(cell, (name.clone(), row));
        }
    }
    if require_complete && by_cell.len() != total {
        let missing: Vec<String> = (0..total)
            .filter(|c| !by_cell.contains_key(c))
            .take(10)
            .map(|c| c.to_string())
            .collect();
        return Err(SimError::Config(format!(
            "merge: {} of {total} cells present; missing cells include {}",
            by_cell.len(),
            missing.join(", ")
        )));
    }
    Ok(SweepTable {
        columns,
        rows: by_cell.into_values().map(|(_, r)| r).collect(),
        total_cells: total,
        fingerprint: fp,
        scenario,
    })
}

/// Loads a cell's workload (reading real trace formats is the caller's business).
pub type WorkloadLoader<'a> = dyn Fn(&Scenario) -> Result<Workload, SimError> + Sync + 'a;

/// Options of [`run_sweep`].
pub struct SweepOptions<'a> {
    /// Which cells to run.
    pub shard: Shard,
    /// Worker threads (None: rayon's default, one per core).
    pub threads: Option<usize>,
    /// Called with (cells done, cells to do) after each cell.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

/// Runs the cells of `shard` in parallel and returns their results in cell order.
pub fn run_sweep(
    base: &Scenario,
    load: &WorkloadLoader,
    opts: &SweepOptions,
) -> Result<SweepTable, SimError> {
    let grid = Grid::from_scenario(base)?;
    let cells = grid.cells(opts.shard);
    // Build every cell's scenario first, so a bad value fails before any simulation.
    let scenarios: Vec<Scenario> = cells
        .iter()
        .map(|c| grid.scenario(base, c))
        .collect::<Result<_, _>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| SimError::Config(format!("thread pool: {e}")))?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = cells.len();
    let rows = pool.install(|| -> Result<Vec<Vec<String>>, SimError> {
        // One workload per distinct (trace table, seed).
        let key = |sc: &Scenario| {
            format!(
                "{}|{}",
                sc.raw
                    .get("trace")
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                sc.file.seed
            )
        };
        let mut first_of: BTreeMap<String, usize> = BTreeMap::new();
        for (i, sc) in scenarios.iter().enumerate() {
            first_of.entry(key(sc)).or_insert(i);
        }
        let loaded: Vec<(String, Arc<Workload>)> = first_of
            .into_iter()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(k, i)| {
                let w = load(&scenarios[i])?;
                scenarios[i].check_workload(&w)?;
                Ok((k, Arc::new(w)))
            })
            .collect::<Result<_, SimError>>()?;
        let workloads: BTreeMap<String, Arc<Workload>> = loaded.into_iter().collect();
        cells
            .par_iter()
            .zip(scenarios.par_iter())
            .map(|(cell, sc)| {
                let w = &workloads[&key(sc)];
                sc.check_workload(w)?;
                let policy = &sc.file.policies[0];
                let run = sc.run_policy(w, policy, false, None)?;
                let mut row = vec![cell.index.to_string()];
                for (a, &c) in cell.coords.iter().enumerate() {
                    row.push(grid.label(a, c));
                }
                row.extend(summary_fields(&run.summary, run.events));
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if let Some(p) = opts.progress {
                    p(n, total);
                }
                Ok(row)
            })
            .collect()
    })?;
    let mut columns = vec!["cell".to_string()];
    columns.extend(grid.axes.iter().map(|a| a.key.clone()));
    columns.extend(SUMMARY_COLUMNS.iter().map(|s| s.to_string()));
    Ok(SweepTable {
        columns,
        rows,
        total_cells: grid.len(),
        fingerprint: Some(fingerprint(&base.raw)),
        scenario: Some(base.raw.clone()),
    })
}

/// Removes the result files of an earlier sweep or merge from `dir` (before a new one starts), so a
/// run that is killed leaves no complete-looking table behind.
pub fn clear_results(dir: &Path) -> Result<(), SimError> {
    for name in ["results.csv", "results.parquet", SCENARIO_FILE] {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SimError::io(&p, e)),
        }
    }
    Ok(())
}

/// Name of the resolved scenario written beside `results.csv`.
pub const SCENARIO_FILE: &str = "scenario.toml";

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed into place once
/// complete: a process killed mid-write leaves the old file or none, never a partial one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).map_err(|e| SimError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SimError::io(path, e))
}

/// Writes `results.csv` into `dir`, and `results.parquet` (same table, typed columns) when the crate
/// feature `parquet` is on.
pub fn write_table(dir: &Path, table: &SweepTable) -> Result<(), SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
    if let Some(sc) = &table.scenario {
        let p = dir.join(SCENARIO_FILE);
        let text = format!(
            "# The resolved scenario (after --set) these results were swept from; fingerprint {}.\n{}",
            table.fingerprint.as_deref().unwrap_or("none"),
            toml::to_string(sc).map_err(|e| SimError::Config(format!("{}: {e}", p.display())))?
        );
        write_atomically(&p, text.as_bytes())?;
    }
    let p = dir.join("results.csv");
    write_atomically(&p, table.to_csv().as_bytes())?;
    #[cfg(feature = "parquet")]
    {
        let p = dir.join("results.parquet");
        let tmp = dir.join(".results.parquet.partial");
        parquet::write_parquet(&tmp, table)?;
        std::fs::rename(&tmp, &p).map_err(|e| SimError::io(&p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parses_and_partitions() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let s: Vec<usize> = (0..3)
            .flat_map(|i| (0..10).filter(move |c| Shard { index: i, count: 3 }.contains(*c)))
            .collect();
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn csv_quotes_round_trip() {
        let t = SweepTable {
            columns: vec!["cell".into(), "x".into()],
            rows: vec![vec!["0".into(), "a,\"b\"".into()]],
            total_cells: 1,
            fingerprint: Some("0123456789abcdef".into()),
            scenario: None,
        };
        assert_eq!(SweepTable::parse_csv(&t.to_csv(), "t").unwrap(), t);
        let old = SweepTable {
            fingerprint: None,
            ..t.clone()
        };
        assert_eq!(SweepTable::parse_csv(&old.to_csv(), "t").unwrap(), old);
    }
}
