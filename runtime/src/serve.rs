//! `specsim serve` as a library call: [`ServeConfig`] (typed settings, built once by the CLI from its
//! flags) and [`serve`], which wires the tokenizer, the engine thread ([`crate::driver`]) over the live
//! or echo backend, and the HTTP server ([`crate::server`]) together.
//!
//! This module is the only one that knows all three; the server knows only the [`crate::generate`]
//! seam and the driver only the engine core, so no import circle runs through them.

use crate::drafter::model::ModelDrafter;
use crate::drafter::ngram::NgramDrafter;
use crate::driver::{spawn_engine, DriverConfig, DriverError};
use crate::generate::Generator;
use crate::live::{DraftSource, LiveBackend};
use crate::metrics::Metrics;
use crate::model::Model;
use crate::server::{router, serve_with, AppState, ConnLimits, ServerLimits};
use crate::tokenizer::GgufTokenizer;
use specsim_core::cost::linear::{LinearCoefficients, LinearCost};
use specsim_core::cost::profile::{Profile, ProfileCost};
use specsim_core::cost::CostModel;
use specsim_core::engine::EngineConfig;
use specsim_core::policy::PolicyConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything `specsim serve` needs, as typed values (the CLI's flags, parsed and checked once).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Draft model GGUF (needed unless the policy is `none`, `ngram` is set, or `fake`).
    pub draft: Option<PathBuf>,
    /// Target model GGUF; its tokenizer and chat template are used (needed unless `fake`).
    pub target: Option<PathBuf>,
    /// The speculation policy.
    pub policy: PolicyConfig,
    /// The policy as the user named it (for messages).
    pub policy_name: String,
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Most sequences in the running batch.
    pub max_num_seqs: u32,
    /// Most requests accepted (running plus waiting); more get HTTP 429.
    pub max_queue: usize,
    /// KV cache budget in tokens, shared by all sequences.
    pub kv_tokens: u64,
    /// Calibrated profile from which policies predict step times (else [`default_cost`]).
    pub profile: Option<PathBuf>,
    /// TPOT SLO in seconds that SLO-aware policies protect.
    pub tpot_slo_s: Option<f64>,
    /// One CSV row per model forward to this file.
    pub step_log: Option<PathBuf>,
    /// Draft by n-gram lookup instead of a draft model.
    pub ngram: bool,
    /// Compute threads for the model forwards (None: physical cores).
    pub threads: Option<usize>,
    /// Request limits (body size, prompt and output lengths).
    pub limits: ServerLimits,
    /// Model name reported by /v1/models (None: the target file's stem).
    pub model_name: Option<String>,
    /// Run the engine over the scripted echo backend instead of models.
    pub fake: bool,
    /// Wall time of each target forward of the echo backend (`fake`), milliseconds.
    pub fake_step_ms: u64,
    /// Accepted drafts per verification of the echo backend, cycled per sequence (empty: all).
    pub fake_accept: Vec<u32>,
    /// On SIGTERM or Ctrl-C: how long requests in flight may take to finish before they are ended
    /// (streams with an error event and `[DONE]`).
    pub shutdown_grace: std::time::Duration,
    /// Connection limits (the header read timeout).
    pub conn: ConnLimits,
}

/// Why `serve` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is impossible; the message names the flag.
    #[error("{0}")]
    Config(String),
    /// The tokenizer could not be read from the target GGUF.
    #[error("loading the tokenizer of {path}: {error}")]
    Tokenizer {
        /// The target file.
        path: String,
        /// What went wrong.
        error: crate::tokenizer::TokenizerError,
    },
    /// The engine thread could not start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Binding, or serving HTTP, failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        error: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |error| ServeError::Io { context, error }
}

/// Step-time model the policies use until a calibrated profile is supplied: rough CPU figures for the
/// Qwen2.5-Coder 0.5B/1.5B pair (target ≈ 80 ms + 12 ms per token, draft ≈ 25 ms + 3 ms per token).
pub fn default_cost() -> LinearCost {
    LinearCost {
        draft: LinearCoefficients {
            a: 25e6,
            b: 3e6,
            c: 0.0,
            d: 0.0,
        },
        target: LinearCoefficients {
            a: 80e6,
            b: 12e6,
            c: 0.0,
            d: 0.0,
        },
        prefill: None,
    }
}

impl ServeConfig {
    /// The step-time model policies consult: the profile if given, else [`default_cost`].
    pub fn cost_model(&self) -> Result<Arc<dyn CostModel>, DriverError> {
        Ok(match &self.profile {
            Some(p) => Arc::new(ProfileCost {
                profile: Profile::load(p)?,
            }),
            None => Arc::new(default_cost()),
        })
    }

    /// The engine thread's settings.
    pub fn driver_config(&self, eos_ids: Vec<u32>) -> Result<DriverConfig, DriverError> {
        let block_size = 16u32;
        // SpecServe starts its running mean confidence where the calibrated profile measured it, as the
        // simulator does with the same profile.
        let prior = match &self.profile {
            Some(p) => Profile::load(p)?
                .acceptance
                .and_then(|a| a.mean_confidence()),
            None => None,
        };
        let kv_blocks =
            u32::try_from(self.kv_tokens.div_ceil(block_size as u64)).unwrap_or(u32::MAX);
        Ok(DriverConfig {
            engine: EngineConfig {
                block_size,
                kv_blocks: Some(kv_blocks),
                max_num_seqs: self.max_num_seqs,
                // The live backend cannot share KV blocks between requests (the driver refuses it).
                prefix_caching: false,
                ..EngineConfig::default()
            },
            policy: self.policy.with_prior_confidence(prior),
            max_in_flight: self.max_queue,
            eos_ids,
            draft_model: false,
            step_log: self.step_log.clone(),
            tpot_slo_ns: match self.tpot_slo_s {
                Some(s) if !(s.is_finite() && s > 0.0) => {
                    return Err(DriverError::Backend(format!(
                        "--tpot-slo must be a positive number of seconds (got {s})"
                    )))
                }
                s => s.map(specsim_core::time::secs_to_ns),
            },
        })
    }
}

fn fixture_tokenizer() -> Result<GgufTokenizer, ServeError> {
    let md: std::collections::HashMap<_, _> = crate::tokenizer::fixture::metadata("qwen2", None)
        .into_iter()
        .collect();
    GgufTokenizer::from_metadata(&md).map_err(|error| ServeError::Tokenizer {
        path: "built-in fixture".into(),
        error,
    })
}

/// What serves requests without the HTTP layer: the engine thread (behind the [`Generator`] seam),
/// the tokenizer, the metrics the engine records into, and the model name.
pub struct LocalEngine {
    /// The engine thread's handle.
    pub generator: Arc<dyn Generator>,
    /// The target's tokenizer (the fixture's for `fake`).
    pub tokenizer: Arc<GgufTokenizer>,
    /// Where the engine records steps and forwards (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The name `/v1/models` reports.
    pub model_name: String,
}

/// Loads the tokenizer and models and starts the engine thread, as `serve` does before it binds a
/// socket (`specsim replay --in-process` uses it to measure the engine without HTTP).
pub fn start_engine(config: &ServeConfig) -> Result<LocalEngine, ServeError> {
    if let Some(n) = config.threads {
        if n == 0 {
            return Err(ServeError::Config("--threads must be at least 1".into()));
        }
        // candle's matmuls run on rayon's global pool, sized from this variable on first use; nothing
        // has started a thread yet at this point.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let tokenizer = match &config.target {
        Some(t) => GgufTokenizer::from_gguf_file(t).map_err(|error| ServeError::Tokenizer {
            path: t.display().to_string(),
            error,
        })?,
        None if config.fake => fixture_tokenizer()?,
        None => {
            return Err(ServeError::Config(
                "--target is required (or --fake to serve the scripted generator)".into(),
            ))
        }
    };
    let model_name = config.model_name.clone().unwrap_or_else(|| {
        config
            .target
            .as_ref()
            .and_then(|t| t.file_stem())
            .map_or_else(
                || "specsim-fake".to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
    });
    let metrics = Arc::new(Metrics::new(&model_name));
    let tokenizer = Arc::new(tokenizer);
    let generator: Arc<dyn Generator> = if config.fake {
        let backend = crate::driver::echo::EchoBackend::new(0.8)
            .with_step_delay(std::time::Duration::from_millis(config.fake_step_ms))
            .with_accept_pattern(config.fake_accept.clone());
        let driver = config.driver_config(tokenizer.eos_ids().to_vec())?;
        Arc::new(spawn_engine(
            driver,
            config.cost_model()?,
            backend,
            metrics.clone(),
        )?)
    } else {
        start_live(config, tokenizer.clone(), metrics.clone())?
    };
    Ok(LocalEngine {
        generator,
        tokenizer,
        metrics,
        model_name,
    })
}

/// Runs `specsim serve`: loads the tokenizer and models, starts the engine thread and serves HTTP until
/// SIGTERM or Ctrl-C, then drains (see [`ServeConfig::shutdown_grace`]) and returns `Ok`.
pub fn serve(config: &ServeConfig) -> Result<(), ServeError> {
    let LocalEngine {
        generator,
        tokenizer,
        metrics,
        model_name,
    } = start_engine(config)?;
    let state = Arc::new(AppState::new(
        generator,
        tokenizer,
        config.limits,
        model_name,
        metrics,
    ));
    let app = router(state.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("starting the async runtime"))?;
    let grace = config.shutdown_grace;
    rt.block_on(async move {
        // Listen for the signals before anything can send them.
        let mut signals = Signals::new().map_err(io_err("installing signal handlers"))?;
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(io_err(format!("binding {addr}")))?;
        let local = listener
            .local_addr()
            .map_err(io_err("reading the bound address"))?;
        eprintln!("specsim serve: listening on http://{local} (SIGTERM or Ctrl-C drains and stops)");
        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        // SIGTERM (what Kubernetes, systemd and docker send) and SIGINT (Ctrl-C) drain alike: stop
        // accepting, let requests in flight finish for up to the grace period, then end the rest
        // cleanly (a stream gets an error event and [DONE]) and exit 0. A second signal ends them now.
        let st = state.clone();
        tokio::spawn(async move {
            let first = signals.next().await;
            st.begin_drain();
            eprintln!(
                "specsim serve: {first}: draining ({} requests in flight, {:.0} s grace; signal again to end them now)",
                st.in_flight(),
                grace.as_secs_f64()
            );
            let _ = drain_tx.send(true);
            tokio::select! {
                _ = tokio::time::sleep(grace) => {
                    let n = st.in_flight();
                    if n > 0 {
                        eprintln!("specsim serve: grace period over: ending {n} requests in flight");
                    }
                }
                s = signals.next() => eprintln!("specsim serve: {s} again: ending requests in flight now"),
            }
            st.end_in_flight();
        });
        let mut stop = drain_rx.clone();
        let server = serve_with(
            listener,
            app,
            async move {
                let _ = stop.wait_for(|d| *d).await;
            },
            config.conn,
        );
        // A safety net: connections that do not close by themselves after the cut are left behind.
        let mut after = drain_rx;
        let backstop = async move {
            let _ = after.wait_for(|d| *d).await;
            tokio::time::sleep(grace + std::time::Duration::from_secs(5)).await;
        };
        let r = tokio::select! {
            r = server => r.map_err(io_err("serving HTTP")),
            _ = backstop => Ok(()),
        };
        eprintln!("specsim serve: stopped");
        r
    })
}

/// SIGTERM and SIGINT, listened for from the start.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Loads the models `args` name and starts the engine thread over the live backend.
///
/// Every id in the tokenizer's end-of-sequence list stops a sequence: the backend stops on the file's
/// `eos_token_id`, and the engine thread ends a sequence on any other one (Qwen's `<|endoftext|>` besides
/// `<|im_end|>`) through the cancellation path.
pub fn start_live(
    config: &ServeConfig,
    tokenizer: Arc<GgufTokenizer>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn Generator>, DriverError> {
    let mut driver = config.driver_config(tokenizer.eos_ids().to_vec())?;
    let target_path = config
        .target
        .as_ref()
        .ok_or_else(|| DriverError::Backend("--target is required".into()))?;
    let device = candle_core::Device::Cpu;
    let max_positions = Some(config.limits.max_prompt_tokens + config.limits.max_tokens as usize);
    // The draft is re-packed into types with fast CPU kernels (Model::load_repacked); the target is
    // run as stored, since its exact weights decide what is emitted.
    let load = |p: &std::path::Path, repack: bool| {
        let m = if repack {
            Model::load_repacked(p, &device, max_positions)
        } else {
            Model::load(p, &device, max_positions)
        };
        m.map(Arc::new)
            .map_err(|e| DriverError::Backend(format!("loading {}: {e}", p.display())))
    };
    let target = load(target_path, false)?;
    let draft = match (&driver.policy, &config.draft, config.ngram) {
        (PolicyConfig::None, _, _) => DraftSource::None,
        (_, _, true) => DraftSource::Ngram(NgramDrafter::default()),
        (_, Some(p), false) => DraftSource::Model(ModelDrafter::new(load(p, true)?)),
        (_, None, false) => {
            return Err(DriverError::Backend(format!(
                "policy `{}` drafts: give --draft D.gguf (or --ngram, or --policy none)",
                config.policy_name
            )))
        }
    };
    driver.draft_model = matches!(draft, DraftSource::Model(_));
    // Page the weights in before the server reports healthy, so the first request is timed like the
    // others (and like the calibrated profile).
    let mut warm = vec![("target", target.warm_up())];
    if let DraftSource::Model(d) = &draft {
        warm.push(("draft", d.model().warm_up()));
    }
    for (name, t) in warm {
        let t = t.map_err(|e| DriverError::Backend(format!("warming up the {name}: {e}")))?;
        eprintln!("warm-up: {name} model {:.2} s", t.as_secs_f64());
    }
    let mut backend =
        LiveBackend::new(target, draft).map_err(|e| DriverError::Backend(e.to_string()))?;
    if let Some(&eos) = tokenizer.eos_ids().first() {
        backend.set_eos(Some(eos));
    }
    let handle = spawn_engine(driver, config.cost_model()?, backend, metrics)?;
    Ok(Arc::new(handle))
}
