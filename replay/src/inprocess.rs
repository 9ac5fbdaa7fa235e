//! [`InProcessEndpoint`]: replay against the runtime's engine in the same process, without HTTP.
//!
//! (Compiled with the `runtime` feature.) The runtime's server talks to its engine through one small
//! trait, [`Generator`]: a tokenized request in, a stream of token-id events out. This endpoint
//! drives that same trait directly, so a replay measures the engine without tokenization, JSON,
//! SSE and sockets in the path, and sees exact token counts: a speculative step that emits three
//! tokens arrives as one [`Chunk`] with `tokens = 3`.
//!
//! Prompts: token-id prompts go in as they are; text prompts need an encoder (the runtime's
//! tokenizer, given as a closure so this crate does not fix its type), and fail with a `protocol`
//! failure without one.
//!
//! Mapping of the generator's refusals and failures onto [`Failure`]: a full queue is `http 429` and
//! an invalid request `http 400` (what the server would answer); a stopped generator, or one that
//! drops a request without finishing it, is a connection-level failure, so that an engine thread
//! that dies aborts the replay exactly as a dead server does.

use crate::endpoint::{Chunk, Endpoint, EndpointRequest, Failure, Observation};
use crate::prompts::Prompt;
use specsim_runtime::server::{GenEvent, GenerateRequest, Generator, RequestSampling, SubmitError};
use std::sync::Arc;
use std::time::Instant;

/// Turns text into token ids (the runtime's tokenizer).
pub type Encoder = Arc<dyn Fn(&str) -> Result<Vec<u32>, String> + Send + Sync>;

/// The runtime's engine (or any [`Generator`]) as an [`Endpoint`].
#[derive(Clone)]
pub struct InProcessEndpoint {
    generator: Arc<dyn Generator>,
    encoder: Option<Encoder>,
    sampling: RequestSampling,
    name: String,
}

impl InProcessEndpoint {
    /// An endpoint over `generator`; `encoder` tokenizes text prompts (token-id prompts only without
    /// one); `name` describes the engine in reports.
    pub fn new(
        generator: Arc<dyn Generator>,
        encoder: Option<Encoder>,
        sampling: RequestSampling,
        name: impl Into<String>,
    ) -> Self {
        InProcessEndpoint {
            generator,
            encoder,
            sampling,
            name: name.into(),
        }
    }
}

impl Endpoint for InProcessEndpoint {
    async fn generate<'a>(
        &'a self,
        req: &'a EndpointRequest,
        obs: &'a mut Observation,
    ) -> Result<(), Failure> {
        let prompt = match &req.prompt {
            Prompt::Ids(ids) => ids.clone(),
            Prompt::Text(t) => match &self.encoder {
                Some(enc) => enc(t).map_err(|e| Failure::Protocol(format!("tokenizing: {e}")))?,
                None => {
                    return Err(Failure::Protocol(
                        "text prompts need an encoder in process (or use token-id prompts)".into(),
                    ))
                }
            },
        };
        obs.prompt_tokens = Some(prompt.len() as u32);
        let mut generation = self
            .generator
            .submit(GenerateRequest {
                prompt,
                max_tokens: req.max_tokens,
                ignore_eos: true,
                sampling: self.sampling,
            })
            .map_err(|e| match e {
                SubmitError::QueueFull(_) => Failure::Status {
                    status: 429,
                    body: e.to_string(),
                },
                SubmitError::Invalid(_) => Failure::Status {
                    status: 400,
                    body: e.to_string(),
                },
                SubmitError::Unavailable => Failure::Connect(e.to_string()),
            })?;
        let mut emitted: u32 = 0;
        // One iteration per event; the generator sends at most `max_tokens` tokens and then exactly
        // one terminal event, and the driver's timeout bounds a generator that stalls.
        loop {
            match generation.next().await {
                Some(GenEvent::Tokens(ids)) => {
                    let n = ids.len() as u32;
                    emitted += n;
                    obs.completion_tokens = Some(emitted);
                    obs.chunks.push(Chunk {
                        at: Instant::now(),
                        tokens: n,
                    });
                }
                Some(GenEvent::Finished(reason)) => {
                    obs.finish_reason = Some(reason.as_str().to_string());
                    obs.completion_tokens = Some(emitted);
                    return Ok(());
                }
                Some(GenEvent::Failed(m)) => return Err(Failure::Server(m)),
                None => {
                    return Err(Failure::Stream(
                        "the engine dropped the request without finishing it".into(),
                    ))
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("in-process {}", self.name)
    }
}
