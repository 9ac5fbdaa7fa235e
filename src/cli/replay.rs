//! `specsim replay SCENARIO.toml --endpoint URL`: measure a live engine on the scenario's workload.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use specsim_core::workload::Workload;
use specsim_replay::prompts::{fit_chars, PromptMode, PromptSet, DEFAULT_CHARS_PER_TOKEN};
use specsim_replay::{Endpoint, HttpEndpoint, ReplayConfig};
use specsim_sim::scenario::Scenario;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `specsim replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Scenario file (TOML): its workload (after its trace transformations) is replayed, and its
    /// [slo] decides which requests meet their objectives.
    pub scenario: PathBuf,
    /// OpenAI-compatible server, e.g. http://127.0.0.1:8000 (`specsim serve`, vLLM, SGLang,
    /// llama.cpp); requests go to /v1/completions, streaming. Required unless --in-process.
    #[arg(
        long,
        required_unless_present = "in_process",
        conflicts_with = "in_process"
    )]
    pub endpoint: Option<String>,
    /// Serve the engine in this process instead (the engine flags below, as `specsim serve` takes
    /// them): no HTTP, SSE or sockets in the measurement, so the difference from an HTTP replay of
    /// the same engine is the serving overhead. Also writes the engine's /metrics text (metrics.txt)
    /// and its per-forward log (steps.csv, or the --step-log file) beside the results.
    #[arg(long)]
    pub in_process: bool,
    /// The engine of --in-process.
    #[command(
        flatten,
        next_help_heading = "Engine of --in-process (as `specsim serve`)"
    )]
    pub engine: super::serve::ServeArgs,
    /// Record the machine's noise during the run (CPU steal and other load from /proc, a fixed
    /// probe timed before and after) in noise.json; a run past the thresholds is flagged.
    #[arg(long)]
    pub noise: bool,
    /// With --noise: repetitions of the probe kernel (~30 ms each) before and after the run; the
    /// drift is judged on their medians.
    #[arg(long, default_value_t = specsim_replay::fidelity::noise::PROBE_REPS, value_name = "N")]
    pub noise_probe_reps: usize,
    /// With --noise: flag the run when the probe's median moved by more than this fraction.
    #[arg(long, default_value_t = specsim_replay::fidelity::noise::MAX_PROBE_DRIFT, value_name = "FRACTION")]
    pub noise_max_probe_drift: f64,
    /// With --noise: flag the run when the hypervisor stole more than this fraction of CPU time.
    #[arg(long, default_value_t = specsim_replay::fidelity::noise::MAX_STEAL, value_name = "FRACTION")]
    pub noise_max_steal: f64,
    /// With --noise: flag the run when other processes used more than this fraction of the CPUs.
    #[arg(long, default_value_t = specsim_replay::fidelity::noise::MAX_OTHER_BUSY, value_name = "FRACTION")]
    pub noise_max_other_busy: f64,
    /// Output directory [default: out/<scenario name>-replay]; results go to DIR/<policy label>/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Name of the measured policy: the subdirectory and the `policy` column. Use the predicted
    /// policy's name so that `specsim compare PRED_DIR MEASURED_DIR` pairs them.
    #[arg(long, default_value = "measured")]
    pub policy_label: String,
    /// Per-request timeout in seconds, from when the request is sent; it also bounds each set-up
    /// request (model name, /tokenize, the characters-per-token probe), headers and body.
    #[arg(long, default_value_t = 300.0)]
    pub timeout: f64,
    /// Deadline of the whole replay in seconds, counted from the command's start, set-up included
    /// [default: last arrival + timeout + 10 after set-up]. A replay whose set-up fails or runs out of
    /// time still writes its results (every request failed, with why) and exits non-zero.
    #[arg(long)]
    pub deadline: Option<f64>,
    /// Most requests in flight at once (later arrivals wait in the client, and the wait counts in
    /// their TTFT) [default: unlimited].
    #[arg(long)]
    pub concurrency_limit: Option<usize>,
    /// Abort the run after this many requests in a row fail to connect or lose their stream
    /// (0: never).
    #[arg(long, default_value_t = 10)]
    pub abort_after: u32,
    /// Model name sent with each request [default: the first model of GET /v1/models].
    #[arg(long)]
    pub model: Option<String>,
    /// Sampling temperature sent with each request [default: the server's].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Prompt set (JSON Lines with `category` and `turns`).
    #[arg(long, default_value = "shared:prompts/spec-bench.jsonl")]
    pub prompts: PathBuf,
    /// Characters per token used to size text prompts [default: measured by one probe request
    /// when the server reports usage, else 4].
    #[arg(long)]
    pub chars_per_token: Option<f64>,
    /// Size text prompts by characters per token only, without fitting each to its token count with
    /// the server's POST /tokenize (which is used when the server has it: `specsim serve`, vLLM).
    #[arg(long)]
    pub no_fit: bool,
    /// Send prompts as token ids of exactly the trace's length instead of text (the server must
    /// accept token-id prompts; acceptance rates on them are not those of real text).
    #[arg(long)]
    pub token_prompts: bool,
    /// Replay only the first N requests of the workload.
    #[arg(long)]
    pub max_requests: Option<usize>,
    /// Exit with status 0 even when requests failed (failures are in the results either way).
    #[arg(long)]
    pub allow_failures: bool,
    /// Override a scenario key before validation (repeatable), as in `specsim run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Longest --timeout or --deadline, seconds (a year: longer is a typo, and would overflow the clock).
const MAX_SECS: f64 = 366.0 * 86_400.0;

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v <= MAX_SECS) {
        bail!("--{name} must be a positive number of seconds, at most {MAX_SECS} (got {v:?})");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Where the prompt set is: a `shared:` path is looked up from the scenario's directory, then the
/// working directory, then this checkout (the shared data lies beside the repository).
fn prompt_set_path(p: &Path, scenario_dir: &Path) -> Result<PathBuf> {
    if !p
        .to_string_lossy()
        .starts_with(specsim_traces::paths::SHARED_PREFIX)
    {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let bases = [
        if scenario_dir.as_os_str().is_empty() {
            cwd.clone()
        } else {
            scenario_dir.to_path_buf()
        },
        cwd,
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    ];
    let mut last = None;
    for b in &bases {
        match specsim_traces::paths::resolve(p, b) {
            Ok(path) => return Ok(path),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e)
            .context("finding the prompt set (give one with --prompts, or use --token-prompts)"),
        None => bail!("no prompt set"),
    }
}

/// Where prompt tokens are counted: the server's `POST /tokenize`, or the in-process engine's own
/// tokenizer.
enum Counter<'a> {
    Http(&'a HttpEndpoint),
    Local(&'a specsim_runtime::tokenizer::GgufTokenizer),
}

impl Counter<'_> {
    /// The token count of `text` (`None`: the server has no /tokenize).
    async fn count(&self, text: &str) -> Result<Option<u32>, String> {
        match self {
            Counter::Http(ep) => ep.tokenize_count(text).await,
            Counter::Local(tok) => tok
                .encode(text)
                .map(|ids| Some(ids.len() as u32))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Text prompts from the prompt set: fitted to each request's token count with the server's
/// `/tokenize` when it has one (and `--no-fit` is not given), else sized with a measured or given
/// characters-per-token ratio.
async fn text_prompts(
    a: &ReplayArgs,
    sc: &Scenario,
    w: &Workload,
    ep: &Counter<'_>,
    quiet: bool,
) -> Result<PromptMode> {
    let path = prompt_set_path(&a.prompts, &sc.base_dir)?;
    let set = PromptSet::load(&path)
        .context("reading the prompt set (give another with --prompts, or use --token-prompts)")?;
    let given = match a.chars_per_token {
        Some(c) if c.is_finite() && c > 0.0 && c <= 64.0 => Some(c),
        Some(c) => bail!("--chars-per-token must be in (0, 64] (got {c})"),
        None => None,
    };
    let probe = set.text(0, None, ReplayConfig::probe_chars_per_token());
    let probe_chars = probe.chars().count() as f64;
    if !a.no_fit {
        match ep.count(&probe).await {
            Ok(Some(n)) if n > 0 => {
                let cpt = given.unwrap_or(probe_chars / n as f64);
                return fit_prompts(set, cpt, w, ep, quiet).await;
            }
            Ok(_) => {
                if !quiet {
                    eprintln!(
                        "prompts: the server has no /tokenize; sizing text by characters per token"
                    );
                }
            }
            Err(e) => {
                eprintln!("warning: /tokenize failed ({e}); sizing text by characters per token")
            }
        }
    }
    let chars_per_token = match given {
        Some(c) => c,
        None => match probe_count(ep, &probe).await {
            Ok(n) if n > 0 => {
                let c = probe_chars / n as f64;
                if !quiet {
                    eprintln!("prompts: {probe_chars} characters are {n} tokens on this server: {c:.2} characters per token");
                }
                c
            }
            other => {
                let why = match other {
                    Ok(_) => "zero tokens".to_string(),
                    Err(e) => e,
                };
                eprintln!("warning: could not measure characters per token ({why}); using {DEFAULT_CHARS_PER_TOKEN}");
                DEFAULT_CHARS_PER_TOKEN
            }
        },
    };
    Ok(PromptMode::Text {
        set,
        chars_per_token,
    })
}

/// The prompt tokens of `text` by a one-token completion (servers without /tokenize).
async fn probe_count(ep: &Counter<'_>, text: &str) -> Result<u32, String> {
    match ep {
        Counter::Http(h) => h.count_prompt_tokens(text).await,
        Counter::Local(_) => ep.count(text).await.map(|n| n.unwrap_or(0)),
    }
}

/// Fits every request's text to its token count with the server's tokenizer, before the clock starts
/// (a few `/tokenize` calls per request; no model forward).
async fn fit_prompts(
    set: PromptSet,
    chars_per_token: f64,
    w: &Workload,
    ep: &Counter<'_>,
    quiet: bool,
) -> Result<PromptMode> {
    let bar = ProgressBar::new(w.len() as u64);
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("fitting prompts [{bar:30}] {pos}/{len}  {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut chars = HashMap::with_capacity(w.len());
    let (mut exact, mut abs_err) = (0usize, 0u64);
    for r in &w.requests {
        let guess = (r.prompt_tokens as f64 * chars_per_token).round().max(1.0) as usize;
        let count = |t: String| async move {
            match ep.count(&t).await {
                Ok(Some(n)) => Ok(n),
                Ok(None) => Err("the server stopped answering /tokenize".to_string()),
                Err(e) => Err(e),
            }
        };
        let f = fit_chars(
            &set,
            r.id,
            w.category_name(r),
            r.prompt_tokens,
            guess,
            count,
        )
        .await
        .map_err(|e| anyhow::anyhow!("fitting request {}'s prompt: {e}", r.id))?;
        exact += usize::from(f.tokens == r.prompt_tokens.max(1));
        abs_err += u64::from(f.tokens.abs_diff(r.prompt_tokens.max(1)));
        chars.insert(r.id, f.chars);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !quiet {
        eprintln!(
            "prompts: fitted {} text prompts with the server's tokenizer: {exact} exact, mean |error| {:.2} tokens",
            w.len(),
            abs_err as f64 / w.len().max(1) as f64
        );
    }
    Ok(PromptMode::Fitted {
        set,
        chars,
        chars_per_token,
    })
}

/// Once set-up is over: gives the run what is left of the deadline (an aborted outcome when set-up
/// used it all), says what is replayed, and replays `w` against `ep` with a progress bar.
async fn measure<E: Endpoint>(
    ep: E,
    scenario: &str,
    w: &Workload,
    prompts: &PromptMode,
    mut cfg: ReplayConfig,
    deadline: Deadline,
    quiet: bool,
) -> specsim_replay::ReplayOutcome {
    if let Err(why) = deadline.apply(&mut cfg) {
        return specsim_replay::aborted_outcome(w, &cfg, ep.describe(), why);
    }
    if !quiet {
        eprintln!(
            "{scenario}: replaying {} requests over {:.1} s against {}",
            w.len(),
            w.span_ns() as f64 / 1e9,
            ep.describe()
        );
    }
    let bar = ProgressBar::new(w.len() as u64);
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} requests  {msg}  {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let tick = |p: &specsim_replay::Progress| {
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "SLO met {:.1}%  failed {}",
            p.attainment() * 100.0,
            p.failed
        ));
    };
    let outcome = specsim_replay::replay(Arc::new(ep), w, prompts, &cfg, &tick).await;
    bar.finish();
    outcome
}

/// `--deadline`, counted from the start of the command: set-up included.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    limit: Option<Duration>,
    since: std::time::Instant,
}

impl Deadline {
    /// The instant it passes, if there is one.
    fn at(self) -> Option<std::time::Instant> {
        self.limit.map(|d| self.since + d)
    }

    /// Gives the run what is left; an error when set-up used it all.
    fn apply(self, cfg: &mut ReplayConfig) -> std::result::Result<(), &'static str> {
        if let Some(d) = self.limit {
            let left = d.saturating_sub(self.since.elapsed());
            if left.is_zero() {
                return Err("the deadline passed during set-up");
            }
            cfg.deadline = Some(left);
        }
        Ok(())
    }
}

/// The replay against an OpenAI-compatible server.
async fn replay_http(
    a: &ReplayArgs,
    endpoint: &str,
    sc: &Scenario,
    w: &Workload,
    cfg: ReplayConfig,
    deadline: Deadline,
) -> Result<specsim_replay::ReplayOutcome> {
    let quiet = a.quiet;
    let mut ep = HttpEndpoint::new(endpoint, a.model.clone(), a.temperature)?;
    // Every set-up wait (model name, /tokenize, the characters-per-token probe) is bounded by
    // --timeout each and by --deadline in all.
    ep.set_limits(cfg.request_timeout, deadline.at());
    let setup = async {
        match ep.discover_model().await {
            Ok(m) if !quiet => eprintln!("endpoint {endpoint}: model {m}"),
            Ok(_) => {}
            Err(e) => eprintln!("warning: no model name ({e}); sending requests without one"),
        }
        if a.token_prompts {
            Ok(PromptMode::TokenIds)
        } else {
            text_prompts(a, sc, w, &Counter::Http(&ep), quiet).await
        }
    };
    let prompts = match setup.await {
        Ok(p) => p,
        Err(e) => {
            let why = format!("set-up failed: {e:#}");
            eprintln!("error: {why}");
            return Ok(specsim_replay::aborted_outcome(
                w,
                &cfg,
                ep.describe(),
                &why,
            ));
        }
    };
    Ok(measure(ep, &sc.name(), w, &prompts, cfg, deadline, quiet).await)
}

/// The replay against the engine served in this process; also writes its /metrics text to
/// `out/metrics.txt`.
async fn replay_in_process(
    a: &ReplayArgs,
    sc: &Scenario,
    w: &Workload,
    cfg: ReplayConfig,
    deadline: Deadline,
    out: &Path,
) -> Result<specsim_replay::ReplayOutcome> {
    let quiet = a.quiet;
    let mut config = a.engine.clone().config()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if config.step_log.is_none() {
        config.step_log = Some(out.join("steps.csv"));
    }
    let engine = specsim_runtime::serve::start_engine(&config)?;
    let tokenizer = engine.tokenizer.clone();
    let prompts = if a.token_prompts {
        PromptMode::TokenIds
    } else {
        text_prompts(a, sc, w, &Counter::Local(&tokenizer), quiet).await?
    };
    let encoder: specsim_replay::inprocess::Encoder = {
        let tok = tokenizer.clone();
        Arc::new(move |t: &str| tok.encode(t).map_err(|e| e.to_string()))
    };
    let sampling = specsim_runtime::server::RequestSampling {
        temperature: a.temperature.unwrap_or(1.0),
        ..Default::default()
    };
    let ep = specsim_replay::inprocess::InProcessEndpoint::new(
        engine.generator.clone(),
        Some(encoder),
        sampling,
        format!("{} ({})", engine.model_name, config.policy_name),
    );
    let outcome = measure(ep, &sc.name(), w, &prompts, cfg, deadline, quiet).await;
    let metrics = engine.metrics.render(&engine.generator.load());
    let path = out.join("metrics.txt");
    std::fs::write(&path, metrics).with_context(|| format!("writing {}", path.display()))?;
    Ok(outcome)
}

/// `specsim replay`.
pub fn run(a: ReplayArgs) -> Result<()> {
    // The deadline covers the whole command, set-up included: counted from here.
    let t0 = std::time::Instant::now();
    let sc = Scenario::load(&a.scenario, &a.sets)?;
    specsim_sim::limits::check_path_name("--policy-label", &a.policy_label)
        .map_err(anyhow::Error::msg)?;
    if a.policy_label.contains(',') {
        bail!("--policy-label must be a name without ','");
    }
    let mut w = super::run::load_workload(&sc, a.quiet)?;
    if let Some(n) = a.max_requests {
        w.requests.truncate(n);
    }
    if w.is_empty() {
        bail!("{}: the workload has no requests", a.scenario.display());
    }
    let mut cfg = ReplayConfig::new(a.policy_label.clone(), sc.file.slo);
    cfg.request_timeout = secs("timeout", a.timeout)?;
    let deadline = Deadline {
        limit: a.deadline.map(|d| secs("deadline", d)).transpose()?,
        since: t0,
    };
    if a.concurrency_limit.is_some_and(|n| n == 0 || n > 1_000_000) {
        bail!("--concurrency-limit must be in [1, 1000000]");
    }
    cfg.concurrency_limit = a.concurrency_limit;
    cfg.abort_after = a.abort_after;
    let out_root = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("{}-replay", sc.name())));
    let out = out_root.join(&a.policy_label);
    // An earlier replay's results would look complete if this one were killed. (A step log is not
    // removed: an HTTP replay's server may be writing it already; in process it is truncated when
    // the engine starts.)
    specsim_sim::metrics::remove_stale(
        &out,
        &[
            "summary.json",
            "requests.csv",
            "chunks.csv",
            "replay.json",
            "noise.json",
            "metrics.txt",
        ],
    )?;
    let monitor = if a.noise {
        use specsim_replay::fidelity::noise::{NoiseMonitor, NoiseThresholds, ProbeSettings};
        if !(1..=1000).contains(&a.noise_probe_reps) {
            bail!("--noise-probe-reps must be in [1, 1000]");
        }
        let fractions = [
            ("--noise-max-probe-drift", a.noise_max_probe_drift),
            ("--noise-max-steal", a.noise_max_steal),
            ("--noise-max-other-busy", a.noise_max_other_busy),
        ];
        for (flag, v) in fractions {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{flag} must be a fraction ≥ 0, got {v}");
            }
        }
        Some(NoiseMonitor::start(
            ProbeSettings {
                reps: a.noise_probe_reps,
            },
            NoiseThresholds {
                max_steal: a.noise_max_steal,
                max_other_busy: a.noise_max_other_busy,
                max_probe_drift: a.noise_max_probe_drift,
            },
        ))
    } else {
        None
    };
    let outcome = specsim_replay::block_on(async {
        match (&a.endpoint, a.in_process) {
            (_, true) => replay_in_process(&a, &sc, &w, cfg, deadline, &out).await,
            (Some(e), false) => replay_http(&a, e, &sc, &w, cfg, deadline).await,
            (None, false) => bail!("give --endpoint URL or --in-process"),
        }
    })??;
    specsim_replay::write_replay_dir(&out, &outcome)
        .with_context(|| format!("writing {}", out.display()))?;
    if let Some(m) = monitor {
        let report = m.finish();
        if report.flagged() {
            eprintln!("noise: the run is flagged: {}", report.flags.join("; "));
        }
        let path = out.join("noise.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let s = &outcome.summary;
    println!(
        "{:<20} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "policy", "finished", "failed", "SLO %", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99"
    );
    println!(
        "{:<20} {:>8} {:>7} {:>7.2} {:>8.3}s {:>8.3}s {:>7.1}ms {:>7.1}ms",
        s.policy,
        s.finished,
        s.failed,
        s.slo_attainment * 100.0,
        s.ttft.p50,
        s.ttft.p99,
        s.tpot.p50 * 1e3,
        s.tpot.p99 * 1e3
    );
    if !a.quiet {
        eprintln!("results in {}", out.display());
    }
    check_failures(&outcome.stats, &out, a.allow_failures)
}

/// The exit status: an error naming the failures unless there were none or they are allowed.
fn check_failures(st: &specsim_replay::ReplayStats, out: &Path, allow: bool) -> Result<()> {
    if st.failed == 0 {
        return Ok(());
    }
    let kinds = st
        .failures
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = match &st.aborted {
        Some(why) => format!(
            "{why}; {} of {} requests failed ({kinds}); results in {}",
            st.failed,
            st.requests,
            out.display()
        ),
        None => format!(
            "{} of {} requests failed ({kinds}); results in {}",
            st.failed,
            st.requests,
            out.display()
        ),
    };
    if allow {
        eprintln!("warning: {msg}");
        Ok(())
    } else {
        bail!(msg)
    }
}
