//! The OpenAI-compatible HTTP server (`specsim serve`).
//!
//! ## Reading guide
//!
//! 1. [`infer`] — the seam: [`Generator::submit`] takes a tokenized request and returns a [`Generation`],
//!    a stream of token-id events; dropping it cancels the request (the generator frees its sequence and
//!    KV). Everything behind the seam is swappable: the engine thread ([`crate::driver`]) in production,
//!    [`fake::FakeGenerator`] in tests.
//! 2. [`routes`] — handlers: parse and validate (OpenAI error shape on failure), apply the chat template,
//!    tokenize, submit, then answer as one JSON body or as server-sent events with incremental
//!    detokenization.
//! 3. [`metrics`] — Prometheus text: requests, TTFT/TPOT, batch size, k chosen, acceptance per draft
//!    position, KV use.
//!
//! Routes: `POST /v1/completions`, `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`,
//! `GET /metrics`. Requests may set `ignore_eos` and `max_tokens` to force output lengths (replays do).
//! The server binds 127.0.0.1 unless `--host` says otherwise.

pub mod api;
pub mod fake;
pub mod infer;
pub mod metrics;
pub mod routes;

pub use infer::{
    FinishReason, GenEvent, GenerateRequest, Generation, GenerationSender, Generator, Load,
    SamplingParams, SubmitError,
};
pub use metrics::{ForwardModel, Metrics};
pub use routes::{router, AppState, ServerLimits};

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

/// Command-line flags of `specsim serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Draft model GGUF (needed unless --policy none or --fake).
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Target model GGUF; its tokenizer and chat template are used (needed unless --fake).
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Speculation policy: none, static-K (e.g. static-4), threshold, smartspec, specserve.
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
    pub max_num_seqs: usize,
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
}

impl ServeArgs {
    /// The request limits these flags describe.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_body_bytes: self.max_body_bytes,
            max_prompt_tokens: self.max_prompt_tokens,
            max_tokens: self.max_tokens,
            default_max_tokens: self.default_max_tokens,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight responses are allowed to finish.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn fixture_tokenizer() -> anyhow::Result<crate::tokenizer::GgufTokenizer> {
    let md: std::collections::HashMap<_, _> = crate::tokenizer::fixture::metadata("qwen2", None)
        .into_iter()
        .collect();
    Ok(crate::tokenizer::GgufTokenizer::from_metadata(&md)?)
}

/// Runs `specsim serve`: loads the tokenizer and models, starts the engine thread and serves HTTP until
/// Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(n) = args.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        // candle's matmuls run on rayon's global pool, sized from this variable on first use; nothing
        // has started a thread yet at this point.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let tokenizer = match &args.target {
        Some(t) => crate::tokenizer::GgufTokenizer::from_gguf_file(t)
            .with_context(|| format!("loading the tokenizer of {}", t.display()))?,
        None if args.fake => fixture_tokenizer()?,
        None => anyhow::bail!("--target is required (or --fake to serve the scripted generator)"),
    };
    let model_name = args.model_name.clone().unwrap_or_else(|| {
        args.target
            .as_ref()
            .and_then(|t| t.file_stem())
            .map_or_else(
                || "specsim-fake".to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
    });
    let metrics = Arc::new(Metrics::default());
    let tokenizer = Arc::new(tokenizer);
    let generator: Arc<dyn Generator> = if args.fake {
        let backend = crate::driver::echo::EchoBackend::new(0.8);
        let config = crate::driver::driver_config(&args, tokenizer.eos_ids().to_vec())?;
        Arc::new(crate::driver::spawn_engine(
            config,
            crate::driver::cost_model(&args)?,
            backend,
            metrics.clone(),
        )?)
    } else {
        crate::driver::start_live(&args, tokenizer.clone(), metrics.clone())?
    };
    let state = Arc::new(AppState::new(
        generator,
        tokenizer,
        args.limits(),
        model_name,
        metrics,
    ));
    let app = router(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!("specsim serve: listening on http://{local} (Ctrl-C to stop)");
        let server = serve_on(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("specsim serve: finishing requests in flight (Ctrl-C again to quit now)");
        });
        let second_interrupt = async {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tokio::signal::ctrl_c().await;
        };
        tokio::select! {
            r = server => r.context("serving HTTP"),
            _ = second_interrupt => Ok(()),
        }
    })
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
        assert_eq!(c.serve.host, "127.0.0.1");
        assert_eq!(c.serve.port, 8000);
        assert_eq!(c.serve.policy, "specserve");
        let l = c.serve.limits();
        assert_eq!(
            (l.max_body_bytes, l.max_prompt_tokens, l.max_tokens),
            (1 << 20, 4096, 4096)
        );
        assert!(Cli::try_parse_from(["specsim", "--port", "http"]).is_err());
    }
}
