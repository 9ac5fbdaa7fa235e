//! The requests a simulation serves: arrival time, prompt and output lengths, optional category.
//!
//! `sim` owns these types so that every other crate (traces, runtime, replay) speaks the same
//! workload. The native CSV format is `arrival_s,prompt_tokens,output_tokens[,category]` with a header.

use crate::time::{ns_to_secs, secs_to_ns, Nanos};
use crate::CoreError;
use std::collections::HashMap;
use std::path::Path;

/// Index of a request category in [`Workload::categories`].
pub type CategoryId = u16;

/// One request of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    /// Position in the workload; also the id written to `requests.csv`.
    pub id: u64,
    /// Arrival time from the start of the workload.
    pub arrival_ns: Nanos,
    /// Prompt length in tokens (at least 1).
    pub prompt_tokens: u32,
    /// Tokens to generate, including the first one produced by prefill (at least 1).
    pub output_tokens: u32,
    /// Category (e.g. a Spec-Bench category) for category-specific acceptance.
    pub category: Option<CategoryId>,
    /// Identity of the prompt's leading blocks, for prefix caching; `None` when the workload does not
    /// say (every block then counts as unique).
    pub prefix: Option<Box<PromptPrefix>>,
}

/// Which leading blocks of a prompt two requests share: `ids[i]` names the content of prompt tokens
/// `i * block_tokens .. (i + 1) * block_tokens` (Mooncake's `hash_ids`, a shared system prompt, a
/// conversation's history). Only whole blocks are listed, so `ids.len() * block_tokens <= prompt_tokens`.
/// A consumer chains the ids (block `i`'s key depends on ids `0..=i`), so two prompts share their first
/// `n` blocks exactly when their first `n` ids are equal, whatever scheme produced the ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPrefix {
    /// Tokens per named block (512 in the Mooncake release; the engine's KV block size needs to divide it).
    pub block_tokens: u32,
    /// One id per whole block, from the start of the prompt.
    pub ids: Box<[u64]>,
}

/// An ordered list of requests plus the names of their categories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    /// Requests sorted by arrival time, ids `0..len`.
    pub requests: Vec<RequestSpec>,
    /// Category names; `RequestSpec::category` indexes this.
    pub categories: Vec<String>,
}

impl Workload {
    /// Appends a request, interning its category name. Ids are assigned in push order.
    pub fn push(
        &mut self,
        arrival_ns: Nanos,
        prompt_tokens: u32,
        output_tokens: u32,
        category: Option<&str>,
    ) {
        let category = category.map(|c| self.intern(c));
        let id = self.requests.len() as u64;
        self.requests.push(RequestSpec {
            id,
            arrival_ns,
            prompt_tokens,
            output_tokens,
            category,
            prefix: None,
        });
    }

    /// Returns the id of a category name, adding it if new.
    pub fn intern(&mut self, name: &str) -> CategoryId {
        if let Some(i) = self.categories.iter().position(|c| c == name) {
            return i as CategoryId;
        }
        self.categories.push(name.to_string());
        (self.categories.len() - 1) as CategoryId
    }

    /// Category name of a request, if it has one.
    pub fn category_name(&self, r: &RequestSpec) -> Option<&str> {
        r.category
            .and_then(|c| self.categories.get(c as usize))
            .map(String::as_str)
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True when there are no requests.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Time of the last arrival (0 for an empty workload).
    pub fn span_ns(&self) -> Nanos {
        self.requests.last().map_or(0, |r| r.arrival_ns)
    }

    /// Sorts by arrival (stable) and renumbers ids; returns true if the order changed.
    pub fn sort_and_renumber(&mut self) -> bool {
        let sorted = self
            .requests
            .windows(2)
            .all(|w| w[0].arrival_ns <= w[1].arrival_ns);
        if !sorted {
            self.requests.sort_by_key(|r| r.arrival_ns);
        }
        for (i, r) in self.requests.iter_mut().enumerate() {
            r.id = i as u64;
        }
        !sorted
    }

    /// Checks the invariants the engine relies on: sorted arrivals, ids `0..len`, lengths of at least 1.
    pub fn validate(&self) -> Result<(), CoreError> {
        for (i, r) in self.requests.iter().enumerate() {
            if r.id != i as u64 {
                return Err(CoreError::Workload(format!("request {i} has id {}", r.id)));
            }
            if r.prompt_tokens == 0 || r.output_tokens == 0 {
                return Err(CoreError::Workload(format!(
                    "request {i}: prompt and output lengths must be at least 1 (got {} and {})",
                    r.prompt_tokens, r.output_tokens
                )));
            }
            if i > 0 && self.requests[i - 1].arrival_ns > r.arrival_ns {
                return Err(CoreError::Workload(format!(
                    "request {i} arrives before request {}",
                    i - 1
                )));
            }
        }
        Ok(())
    }

    /// Reads the native CSV format (`arrival_s,prompt_tokens,output_tokens[,category]`).
    /// Errors name the file and line. Unsorted rows are an error (the traces crate offers repair).
    pub fn read_native_csv(path: &Path) -> Result<Workload, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        Self::parse_native_csv(&text, &path.display().to_string())
    }

    /// Parses native CSV text; `origin` names the source in errors.
    pub fn parse_native_csv(text: &str, origin: &str) -> Result<Workload, CoreError> {
        let mut lines = text.lines().enumerate();
        let header = loop {
            match lines.next() {
                Some((_, l)) if l.trim().is_empty() => continue,
                Some((_, l)) => break l,
                None => {
                    return Err(CoreError::Parse {
                        origin: origin.into(),
                        line: 1,
                        msg: "empty file".into(),
                    })
                }
            }
        };
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| cols.iter().position(|c| *c == name);
        let (Some(ia), Some(ip), Some(io)) =
            (col("arrival_s"), col("prompt_tokens"), col("output_tokens"))
        else {
            return Err(CoreError::Parse {
                origin: origin.into(),
                line: 1,
                msg: format!(
                    "header must contain arrival_s,prompt_tokens,output_tokens (got `{}`)",
                    crate::excerpt(header.as_bytes(), 120)
                ),
            });
        };
        let ic = col("category");
        let mut w = Workload::default();
        let mut last = 0.0f64;
        let mut cat_ids: HashMap<String, CategoryId> = HashMap::new();
        for (n, line) in lines {
            let line_no = n + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let err = |msg: String| CoreError::Parse {
                origin: origin.into(),
                line: line_no,
                msg,
            };
            let get = |i: usize, name: &str| {
                fields
                    .get(i)
                    .copied()
                    .ok_or_else(|| err(format!("missing field `{name}`")))
            };
            let a: f64 = get(ia, "arrival_s")?.parse().map_err(|_| {
                err(format!(
                    "arrival_s `{}` is not a number",
                    crate::excerpt(fields[ia].as_bytes(), 40)
                ))
            })?;
            if !a.is_finite() || a < 0.0 {
                return Err(err(format!(
                    "arrival_s must be a non-negative number (got {a})"
                )));
            }
            if a < last {
                return Err(err(format!(
                    "arrival_s {a} is earlier than the previous row's {last}: rows must be sorted"
                )));
            }
            last = a;
            let parse_len = |i: usize, name: &str| -> Result<u32, CoreError> {
                let s = get(i, name)?;
                let v: u32 = s.parse().map_err(|_| {
                    err(format!(
                        "{name} `{}` is not a positive integer",
                        crate::excerpt(s.as_bytes(), 40)
                    ))
                })?;
                if v == 0 {
                    return Err(err(format!("{name} must be at least 1")));
                }
                Ok(v)
            };
            let p = parse_len(ip, "prompt_tokens")?;
            let o = parse_len(io, "output_tokens")?;
            let cat = ic
                .and_then(|i| fields.get(i))
                .filter(|s| !s.is_empty())
                .map(|c| match cat_ids.get(*c) {
                    Some(id) => *id,
                    None => {
                        let id = w.intern(c);
                        cat_ids.insert(c.to_string(), id);
                        id
                    }
                });
            let id = w.requests.len() as u64;
            w.requests.push(RequestSpec {
                id,
                arrival_ns: secs_to_ns(a),
                prompt_tokens: p,
                output_tokens: o,
                category: cat,
                prefix: None,
            });
        }
        Ok(w)
    }

    /// Writes the native CSV format.
    pub fn to_native_csv(&self) -> String {
        let mut s = String::from("arrival_s,prompt_tokens,output_tokens,category\n");
        for r in &self.requests {
            let cat = self.category_name(r).unwrap_or("");
            s.push_str(&format!(
                "{:.9},{},{},{}\n",
                ns_to_secs(r.arrival_ns),
                r.prompt_tokens,
                r.output_tokens,
                cat
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_csv_round_trips() {
        let text = "arrival_s,prompt_tokens,output_tokens,category\n0.0,10,5,coding\n0.5,20,1,\n1.25,7,3,writing\n";
        let w = Workload::parse_native_csv(text, "t.csv").unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w.requests[1].arrival_ns, 500_000_000);
        assert_eq!(w.requests[1].category, None);
        assert_eq!(w.category_name(&w.requests[2]), Some("writing"));
        let again = Workload::parse_native_csv(&w.to_native_csv(), "again").unwrap();
        assert_eq!(again, w);
    }

    #[test]
    fn native_csv_errors_name_the_line() {
        let bad = "arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,x,5\n";
        let e = Workload::parse_native_csv(bad, "f.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.csv:3") && e.contains("prompt_tokens"), "{e}");
        let unsorted = "arrival_s,prompt_tokens,output_tokens\n2,10,5\n1,10,5\n";
        let e = Workload::parse_native_csv(unsorted, "u.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("u.csv:3") && e.contains("sorted"), "{e}");
        let zero = "arrival_s,prompt_tokens,output_tokens\n0,0,5\n";
        assert!(Workload::parse_native_csv(zero, "z").is_err());
        let header = "time,prompt\n0,1\n";
        assert!(Workload::parse_native_csv(header, "h")
            .unwrap_err()
            .to_string()
            .contains("header"));
    }

    #[test]
    fn sort_and_renumber_repairs_order() {
        let mut w = Workload::default();
        w.push(5, 1, 1, None);
        w.push(1, 1, 1, None);
        assert!(w.sort_and_renumber());
        assert_eq!(w.requests[0].arrival_ns, 1);
        assert_eq!(w.requests[0].id, 0);
        assert!(w.validate().is_ok());
    }
}
