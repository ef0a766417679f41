//! The `openai` handler: forwards the conversation to an OpenAI-compatible
//! `POST <base>/chat/completions` with `stream: true` and streams each token delta as an
//! artifact chunk (Ollama, LM Studio, vLLM, hosted APIs).
//!
//! - [`messages`]: the conversation sent (system prompt, context, references, history).
//! - [`sse`]: reading the `data:` events of the streamed reply.
//!
//! Before the first token, a 429, a 5xx, a connection error or a timeout is retried up to
//! `max_retries` times with exponential back-off (full jitter), waiting at least what a
//! `Retry-After` header (seconds or an HTTP date) asks, up to a minute. Once tokens flow, a failure fails the task. Cancellation stops
//! the request at once.

pub mod messages;
pub mod sse;

use std::time::Duration;

use async_trait::async_trait;
use bindu_engine::retry::RetryPolicy;
use bindu_schemas::Part;
use futures::StreamExt;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::handler::{Handler, HandlerError, HandlerInput, HandlerOutput};
use bindu_engine::sse::{SseDecoder, SseError, SseFrames};
use sse::Event;

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Longest SSE line (and event) accepted from the model.
const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct OpenAiOptions {
    /// Base URL, e.g. `https://api.openai.com/v1` (no trailing slash).
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub system_prompt: Option<String>,
    /// Longest wait for the response to start, and between two chunks of the stream.
    pub timeout: Duration,
    pub max_retries: u32,
    /// First back-off delay; doubles per retry up to `retry_max_delay`.
    pub retry_base: Duration,
    pub retry_max_delay: Duration,
}

impl std::fmt::Debug for OpenAiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiOptions")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl OpenAiOptions {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiOptions {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            model: model.into(),
            system_prompt: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_base: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(10),
        }
    }
}

pub struct OpenAiHandler {
    client: reqwest::Client,
    options: OpenAiOptions,
    url: String,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt (429, 5xx, connection error, timeout), after at least `after`.
    Transient {
        why: String,
        after: Option<Duration>,
    },
    Fatal(HandlerError),
}

impl OpenAiHandler {
    pub fn new(options: OpenAiOptions) -> Result<OpenAiHandler, HandlerError> {
        // Stalls are timed per chunk in `relay`, where they get a clear message.
        let client = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| HandlerError::from(format!("building the HTTP client: {e}")))?;
        Ok(OpenAiHandler {
            client,
            url: format!("{}/chat/completions", options.base_url),
            options,
        })
    }

    /// Sends the request; returns the response once its status is a success.
    async fn start(&self, body: &Value) -> Result<reqwest::Response, Failure> {
        let mut req = self
            .client
            .post(&self.url)
            .header("accept", "text/event-stream")
            .json(body);
        for (name, value) in bindu_engine::trace::headers() {
            req = req.header(name, value);
        }
        if let Some(key) = &self.options.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match tokio::time::timeout(self.options.timeout, req.send()).await {
            Err(_) => {
                return Err(Failure::Transient {
                    why: format!(
                        "the model did not answer within {} s",
                        self.options.timeout.as_secs_f64()
                    ),
                    after: None,
                })
            }
            // `without_url`: the error text carries no query strings or credentials.
            Ok(Err(e)) => {
                return Err(Failure::Transient {
                    why: format!("could not reach the model: {}", e.without_url()),
                    after: None,
                })
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(bindu_engine::retry::retry_after)
            .map(|d| d.min(MAX_RETRY_AFTER));
        let body = tokio::time::timeout(self.options.timeout, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").map(sse::error_message))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let why = format!("the model answered HTTP {status}: {}", detail.trim());
        if status.as_u16() == 429 || status.is_server_error() {
            Err(Failure::Transient {
                why,
                after: retry_after,
            })
        } else {
            Err(Failure::Fatal(why.into()))
        }
    }

    /// Streams the reply as chunks of one artifact.
    async fn relay(
        &self,
        resp: reqwest::Response,
        input: &HandlerInput,
        traced: bool,
    ) -> Result<HandlerOutput, HandlerError> {
        let is_sse = bindu_engine::sse::is_event_stream(resp.headers());
        if !is_sse {
            // A server that ignored `stream: true` sends one completion object.
            let body = tokio::time::timeout(self.options.timeout, resp.json::<Value>())
                .await
                .map_err(|_| "the model's reply did not arrive in time")?
                .map_err(|e| format!("the model's reply is not JSON: {}", e.without_url()))?;
            if traced {
                record_usage(&body);
            }
            let text = sse::completion_text(&body)
                .ok_or("the model's reply has no choices[0].message.content")?;
            if text.is_empty() {
                return Err("the model returned an empty reply".into());
            }
            let mut stream = input.emitter.stream("result");
            stream.send(vec![Part::text(text)]).await?;
            stream.finish(Vec::new()).await?;
            return Ok(HandlerOutput::Streamed);
        }
        let mut body = resp.bytes_stream();
        // Lenient: a server that ends on a last `data:` line without a blank line still counts.
        let mut frames = SseFrames::new(SseDecoder::new(MAX_LINE_BYTES).lenient());
        let mut stream = input.emitter.stream("result");
        let mut done = false;
        while !done && !frames.ended() {
            let next = tokio::select! {
                n = tokio::time::timeout(self.options.timeout, body.next()) => n,
                _ = input.cancel.cancelled() => return Err("canceled".into()),
            };
            match next {
                Err(_) => {
                    return Err(format!(
                        "the model stream stalled for {} s",
                        self.options.timeout.as_secs_f64()
                    )
                    .into())
                }
                Ok(None) => frames.end(),
                Ok(Some(Err(e))) => {
                    return Err(format!("the model stream broke: {}", e.without_url()).into())
                }
                Ok(Some(Ok(b))) => frames.push(&b),
            }
            while let Some(data) = frames.next_event().map_err(stream_error)? {
                if traced && data.contains("\"usage\"") {
                    if let Ok(chunk) = serde_json::from_str::<Value>(&data) {
                        record_usage(&chunk);
                    }
                }
                match sse::parse_data(&data) {
                    // A last event cut by the end of the stream is used only if it parses.
                    Err(_) if frames.ended() => {}
                    Err(e) => return Err(e.into()),
                    Ok(Event::Error(e)) => {
                        return Err(format!("the model reported an error: {e}").into())
                    }
                    Ok(Event::Done) => {
                        done = true;
                        break;
                    }
                    Ok(Event::Delta(text)) if text.is_empty() => {}
                    Ok(Event::Delta(text)) => stream.send(vec![Part::text(text)]).await?,
                }
            }
        }
        if stream.chunks() == 0 {
            return Err("the model returned an empty reply".into());
        }
        stream.finish(Vec::new()).await?;
        Ok(HandlerOutput::Streamed)
    }
}

/// What a broken event stream from the model means for the task.
fn stream_error(e: SseError) -> String {
    match e {
        SseError::TooLong(max) => format!("the model sent a line longer than {max} bytes"),
        SseError::Io(e) => format!("reading the model stream: {e}"),
    }
}

/// Back-off before retry `attempt` (1-based), never shorter than the server's `Retry-After`.
fn retry_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    policy.delay(attempt).max(retry_after.unwrap_or_default())
}

#[async_trait]
impl Handler for OpenAiHandler {
    async fn handle(&self, input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
        // While tracing is on: a span with the GenAI semantic conventions' attributes (what
        // Langfuse and Arize read), the tokens the server reports recorded on it.
        let model = self.options.model.as_str();
        let span = bindu_engine::trace::span(|| {
            tracing::info_span!(
                "gen_ai",
                otel.name = %format!("chat {model}"),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                gen_ai.system = "openai",
                gen_ai.operation.name = "chat",
                gen_ai.request.model = model,
                gen_ai.response.model = tracing::field::Empty,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                server.address = self.url.as_str(),
            )
        });
        let traced = !span.is_disabled();
        let result = self.chat(input, traced).instrument(span.clone()).await;
        if traced && result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }
}

impl OpenAiHandler {
    /// One chat completion, retried and streamed; `traced`: the current span records usage.
    async fn chat(&self, input: HandlerInput, traced: bool) -> Result<HandlerOutput, HandlerError> {
        let mut body = json!({
            "model": self.options.model,
            "stream": true,
            "messages": messages::conversation(
                self.options.system_prompt.as_deref(),
                &input.context_history,
                &input.references,
                &input.history,
            ),
        });
        if traced {
            // Token counts for the span: streamed completions report them only when asked.
            body["stream_options"] = json!({"include_usage": true});
        }
        let policy = RetryPolicy {
            base: self.options.retry_base,
            max_delay: self.options.retry_max_delay,
            deadline: Duration::MAX,
        };
        let mut attempt = 0u32;
        let resp = loop {
            let failure = tokio::select! {
                r = self.start(&body) => match r {
                    Ok(resp) => break resp,
                    Err(f) => f,
                },
                _ = input.cancel.cancelled() => return Err("canceled".into()),
            };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Transient { why, .. } if attempt >= self.options.max_retries => {
                    return Err(format!("{why} (gave up after {} attempts)", attempt + 1).into())
                }
                Failure::Transient { why, after } => {
                    attempt += 1;
                    let delay = retry_delay(&policy, attempt, after);
                    tracing::info!(task_id = %input.task_id, attempt, delay_ms = delay.as_millis() as u64, reason = %why, "retrying the model request");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = input.cancel.cancelled() => return Err("canceled".into()),
                    }
                }
            }
        };
        tokio::select! {
            r = self.relay(resp, &input, traced) => r,
            _ = input.cancel.cancelled() => Err("canceled".into()),
        }
    }
}

/// Records a completion's `usage` and `model` on the current span (GenAI conventions).
fn record_usage(chunk: &Value) {
    let span = tracing::Span::current();
    if let Some(model) = chunk.get("model").and_then(Value::as_str) {
        span.record("gen_ai.response.model", model);
    }
    let Some(usage) = chunk.get("usage") else {
        return;
    };
    if let Some(n) = usage.get("prompt_tokens").and_then(Value::as_u64) {
        span.record("gen_ai.usage.input_tokens", n);
    }
    if let Some(n) = usage.get("completion_tokens").and_then(Value::as_u64) {
        span.record("gen_ai.usage.output_tokens", n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_sets_a_floor_under_the_back_off() {
        let policy = RetryPolicy {
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            deadline: Duration::MAX,
        };
        for attempt in 1..6 {
            assert!(retry_delay(&policy, attempt, None) <= Duration::from_millis(40));
            assert_eq!(
                retry_delay(&policy, attempt, Some(Duration::from_secs(2))),
                Duration::from_secs(2)
            );
        }
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let mut o = OpenAiOptions::new("http://127.0.0.1:1/v1/", "m");
        o.api_key = Some("sk-very-secret".into());
        assert!(!format!("{o:?}").contains("sk-very-secret"));
        assert_eq!(o.base_url, "http://127.0.0.1:1/v1");
    }
}
