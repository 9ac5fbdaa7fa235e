//! `specsim serve`: flags turned into a [`ServeConfig`] once; the work is `specsim_runtime::serve`.

use anyhow::Context;
use clap::Args;
use specsim_core::policy::PolicyConfig;
use specsim_runtime::serve::{serve, ServeConfig};
use specsim_runtime::server::{ConnLimits, ServerLimits};
use std::path::PathBuf;

/// Command-line flags of `specsim serve`.
///
/// SIGTERM and SIGINT (Ctrl-C) both drain: no new connections or requests, requests in flight finish
/// within --shutdown-grace (then end with an error event and [DONE]), exit status 0.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Draft model GGUF (needed unless --policy none or --fake).
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Target model GGUF; its tokenizer and chat template are used (needed unless --fake).
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Speculation policy: none, static-K (e.g. static-4), threshold, smartspec, specserve; NAME-K caps
    /// an adaptive policy's k (specserve-6). Other parameters take the scenario file's defaults.
    #[arg(long, default_value = "specserve")]
    pub policy: String,
    /// Address to bind; 127.0.0.1 keeps the server local. Use 0.0.0.0 only on a trusted network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind (0 picks a free one; the chosen address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Most sequences in the running batch.
    #[arg(long, default_value_t = 16)]
    pub max_num_seqs: u32,
    /// Most requests accepted (running plus waiting); more get HTTP 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// KV cache budget in tokens, shared by all sequences.
    #[arg(long, default_value_t = 32768)]
    pub kv_tokens: u64,
    /// Calibrated profile (`specsim calibrate --out P.toml`) from which policies predict step times;
    /// without it they use rough built-in CPU figures for the Qwen pair.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// TPOT SLO in seconds that SLO-aware policies (SpecServe) protect: give the scenario's
    /// `[slo] tpot_s` so the live engine decides as the simulator does.
    #[arg(long, value_name = "SECONDS")]
    pub tpot_slo: Option<f64>,
    /// Write one CSV row per model forward to FILE: its batch shape, measured time and the time the
    /// cost model (--profile) predicts for it; the totals are in /metrics
    /// (`specsim_forward_seconds_total`, `specsim_forward_predicted_seconds_total`).
    #[arg(long, value_name = "FILE")]
    pub step_log: Option<PathBuf>,
    /// Draft by n-gram lookup in each sequence's own tokens instead of a draft model.
    #[arg(long)]
    pub ngram: bool,
    /// Compute threads for the model forwards (default: physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Longest prompt in tokens after the chat template; longer prompts get HTTP 400.
    #[arg(long, default_value_t = 4096)]
    pub max_prompt_tokens: usize,
    /// Largest max_tokens a request may ask for; more gets HTTP 400.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: u32,
    /// max_tokens for requests that do not set it.
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: u32,
    /// Largest request body in bytes; larger bodies get HTTP 413.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Model name reported by /v1/models and in responses (default: the target file's stem).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Run the real engine over a scripted backend that echoes the prompt instead of models (for testing
    /// clients and replays); uses the target's tokenizer if --target is given, else a tiny byte tokenizer.
    #[arg(long)]
    pub fake: bool,
    /// With --fake: wall time of each engine step in milliseconds, so that streams last as with a
    /// model (for testing clients, drains and disconnects).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub fake_step_ms: u64,
    /// With --fake: drafts accepted at each verification, cycled per sequence (the n-th verification
    /// of sequence s accepts PATTERN[(s + n) mod len], at most those drafted), e.g. `3,0,2,1`; by
    /// default every draft is accepted. Lets a dry run exercise per-sequence acceptance.
    #[arg(long, value_delimiter = ',', value_name = "PATTERN")]
    pub fake_accept: Vec<u32>,
    /// Shutdown: on SIGTERM (what Kubernetes, systemd and docker send) or SIGINT (Ctrl-C) the server
    /// drains: it stops accepting connections, refuses new requests with 503, and lets requests in
    /// flight finish for up to this many seconds; then it ends the rest cleanly (a stream gets an error
    /// event and `data: [DONE]`, a non-streaming request a 503) and exits with status 0. A second signal
    /// ends them at once. Keep it below the orchestrator's own grace period (Kubernetes: 30 s).
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    pub shutdown_grace: f64,
    /// Close a connection whose request headers have not all arrived this many seconds after it
    /// started sending them (slow-header clients cannot hold connections open). Request bodies have
    /// 30 s, and a declared Content-Length over --max-body-bytes is refused at once with 413.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub header_timeout: f64,
}

impl ServeArgs {
    /// The typed configuration these flags describe.
    pub fn config(self) -> anyhow::Result<ServeConfig> {
        let policy = PolicyConfig::from_name(&self.policy)
            .map_err(anyhow::Error::msg)
            .context("--policy")?;
        let secs = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=86_400.0).contains(&v) {
                Ok(std::time::Duration::from_secs_f64(v))
            } else {
                Err(anyhow::anyhow!(
                    "--{name} must be a number of seconds in [0, 86400] (got {v:?})"
                ))
            }
        };
        // Every count that sizes an allocation (KV cache, position tables, queues, bodies) has a range.
        let max_tok = specsim_sim::limits::MAX_TOKENS as u64;
        for (flag, v, lo, hi) in [
            ("--max-num-seqs", self.max_num_seqs as u64, 1, 65_536),
            ("--max-queue", self.max_queue as u64, 1, 1_000_000),
            ("--kv-tokens", self.kv_tokens, 1, 1 << 32),
            (
                "--max-prompt-tokens",
                self.max_prompt_tokens as u64,
                1,
                max_tok,
            ),
            ("--max-tokens", self.max_tokens as u64, 1, max_tok),
            (
                "--default-max-tokens",
                self.default_max_tokens as u64,
                1,
                self.max_tokens as u64,
            ),
            ("--max-body-bytes", self.max_body_bytes as u64, 1, 1 << 30),
            ("--fake-step-ms", self.fake_step_ms, 0, 60_000),
        ] {
            if !(lo..=hi).contains(&v) {
                anyhow::bail!("{flag} = {v} is out of range: must be in [{lo}, {hi}]");
            }
        }
        let shutdown_grace = secs("shutdown-grace", self.shutdown_grace)?;
        let header_timeout = secs("header-timeout", self.header_timeout)?;
        if header_timeout.is_zero() {
            anyhow::bail!("--header-timeout must be positive");
        }
        Ok(ServeConfig {
            draft: self.draft,
            target: self.target,
            policy,
            policy_name: self.policy,
            host: self.host,
            port: self.port,
            max_num_seqs: self.max_num_seqs,
            max_queue: self.max_queue,
            kv_tokens: self.kv_tokens,
            profile: self.profile,
            tpot_slo_s: self.tpot_slo,
            step_log: self.step_log,
            ngram: self.ngram,
            threads: self.threads,
            limits: ServerLimits {
                max_body_bytes: self.max_body_bytes,
                max_prompt_tokens: self.max_prompt_tokens,
                max_tokens: self.max_tokens,
                default_max_tokens: self.default_max_tokens,
            },
            model_name: self.model_name,
            fake: self.fake,
            fake_step_ms: self.fake_step_ms,
            fake_accept: self.fake_accept,
            shutdown_grace,
            conn: ConnLimits {
                header_read_timeout: header_timeout,
            },
        })
    }
}

/// Runs `specsim serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    Ok(serve(&args.config()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn serve_flags_default_to_a_local_server() {
        Cli::command().debug_assert();
        let c =
            Cli::try_parse_from(["specsim", "--target", "t.gguf", "--draft", "d.gguf"]).unwrap();
        let config = c.serve.config().unwrap();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8000);
        assert_eq!(
            config.policy,
            PolicyConfig::Specserve {
                k_max: 8,
                elimination: true,
                slo_aware: true,
                alpha0: None
            }
        );
        let l = config.limits;
        assert_eq!(
            (l.max_body_bytes, l.max_prompt_tokens, l.max_tokens),
            (1 << 20, 4096, 4096)
        );
        assert!(Cli::try_parse_from(["specsim", "--port", "http"]).is_err());
        for bad in [
            ["specsim", "--max-prompt-tokens", "1000000000000"],
            ["specsim", "--max-num-seqs", "0"],
            ["specsim", "--shutdown-grace", "1e300"],
        ] {
            let c = Cli::try_parse_from(bad).unwrap();
            let e = format!("{:#}", c.serve.config().unwrap_err());
            assert!(e.contains(bad[1]), "{e}");
        }
        let bad = Cli::try_parse_from(["specsim", "--policy", "magic"]).unwrap();
        let e = format!("{:#}", bad.serve.config().unwrap_err());
        assert!(e.contains("--policy") && e.contains("magic"), "{e}");
    }
}
