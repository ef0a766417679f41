//! A small OpenAI-compatible server on 127.0.0.1 for the `openai` handler's tests.
//!
//! `POST /v1/chat/completions` answers with the next scripted [`Reply`] (the default when
//! the script is empty: a streamed "Echo: <last user message>"), streaming the way the real
//! API does: `data: {chat.completion.chunk}` events (a role chunk, content deltas, a finish
//! chunk, a usage chunk when `stream_options.include_usage` asks) then `data: [DONE]`. Every
//! request body, `Authorization` and `traceparent` header is recorded,
//! and the server notes when a client went away in the middle of a stream.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The prompt tokens a streamed answer reports when asked for usage.
pub const PROMPT_TOKENS: u64 = 11;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Streams these deltas, `delay` apart.
    Stream {
        deltas: Vec<String>,
        delay: Duration,
    },
    /// Streams the first delta, then each next one only when the test calls
    /// [`FakeOpenAi::release`] (the end of the stream needs a release too).
    Gated { deltas: Vec<String> },
    /// Streams these deltas, then stops sending without ending the response.
    Stall { deltas: Vec<String> },
    /// An error status with an OpenAI-style error body.
    Status {
        code: u16,
        retry_after: Option<u64>,
        message: String,
    },
    /// A non-streamed completion (a server that ignores `stream: true`).
    Whole(String),
}

impl Reply {
    pub fn stream(deltas: &[&str]) -> Reply {
        Reply::Stream {
            deltas: deltas.iter().map(|d| d.to_string()).collect(),
            delay: Duration::ZERO,
        }
    }
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    /// When each request arrived.
    arrivals: Mutex<Vec<std::time::Instant>>,
    auth: Mutex<Vec<Option<String>>>,
    /// The `traceparent` header of every request.
    traceparents: Mutex<Vec<Option<String>>>,
    /// Streams whose client disconnected before the end.
    abandoned: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let shared = Arc::new(Shared {
            script: Mutex::default(),
            requests: Mutex::default(),
            arrivals: Mutex::default(),
            auth: Mutex::default(),
            traceparents: Mutex::default(),
            abandoned: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let (addr, stop) = crate::support::serve_fake(app).await;
        FakeOpenAi { addr, shared, stop }
    }

    /// `http://127.0.0.1:<port>/v1`, the value for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, replies: Vec<Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.arrivals.lock().unwrap().clone()
    }

    /// The `Authorization` header of every request.
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.shared.auth.lock().unwrap().clone()
    }

    /// The `traceparent` header of every request.
    pub fn traceparents(&self) -> Vec<Option<String>> {
        self.shared.traceparents.lock().unwrap().clone()
    }

    /// Lets a gated stream send `n` more events.
    pub fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    pub fn abandoned_streams(&self) -> usize {
        self.shared.abandoned.load(Ordering::SeqCst)
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let body = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {body}\n\n"))
}

/// Counts a stream as abandoned when it is dropped before its end.
struct Watch {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    shared
        .arrivals
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
    shared.requests.lock().unwrap().push(body.clone());
    shared.auth.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    shared.traceparents.lock().unwrap().push(
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    // Token counts in a last chunk when asked, as the real API does.
    let usage = body["stream_options"]["include_usage"] == true;
    let next = shared.script.lock().unwrap().pop_front();
    let reply = next.unwrap_or_else(|| {
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        Reply::Stream {
            deltas: vec!["Echo: ".into(), last],
            delay: Duration::ZERO,
        }
    });
    let (deltas, delay, stall, gated) = match reply {
        Reply::Status {
            code,
            retry_after,
            message,
        } => {
            let mut resp = (
                StatusCode::from_u16(code).unwrap(),
                Json(json!({"error": {"message": message, "type": "fake_error"}})),
            )
                .into_response();
            if let Some(s) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", s.to_string().parse().unwrap());
            }
            return resp;
        }
        Reply::Whole(text) => {
            return Json(json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "model": "fake-model",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }))
            .into_response()
        }
        Reply::Stream { deltas, delay } => (deltas, delay, false, false),
        Reply::Stall { deltas } => (deltas, Duration::ZERO, true, false),
        Reply::Gated { deltas } => (deltas, Duration::ZERO, false, true),
    };
    let mut events: VecDeque<Bytes> = VecDeque::new();
    events.push_back(chunk(json!({"role": "assistant", "content": ""}), None));
    let completion_tokens = deltas.len();
    for d in deltas {
        events.push_back(chunk(json!({ "content": d }), None));
    }
    let watch = Watch {
        shared: shared.clone(),
        finished: false,
    };
    // The role chunk and the first delta go out at once.
    let ungated = 2;
    let stream = futures::stream::unfold(
        (events, watch, 0usize),
        move |(mut events, mut watch, sent)| async move {
            if gated && sent >= ungated && !watch.finished {
                // Bounded like every wait in the tests.
                let permit =
                    tokio::time::timeout(Duration::from_secs(30), watch.shared.gate.acquire())
                        .await;
                match permit {
                    Ok(Ok(p)) => p.forget(),
                    _ => return None,
                }
            }
            match events.pop_front() {
                Some(e) => {
                    if sent > 0 && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<_, std::io::Error>(e), (events, watch, sent + 1)))
                }
                None if stall => {
                    // Hold the response open, sending nothing (bounded: 60 s).
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    None
                }
                None if !watch.finished => {
                    watch.finished = true;
                    let mut end = vec![chunk(json!({}), Some("stop"))];
                    if usage {
                        let body = json!({
                            "id": "chatcmpl-fake", "object": "chat.completion.chunk",
                            "model": "fake-model", "choices": [],
                            "usage": {"prompt_tokens": PROMPT_TOKENS,
                                      "completion_tokens": completion_tokens,
                                      "total_tokens": PROMPT_TOKENS + completion_tokens as u64},
                        });
                        end.push(Bytes::from(format!("data: {body}\n\n")));
                    }
                    end.push(Bytes::from("data: [DONE]\n\n"));
                    let end = end.concat();
                    Some((Ok(Bytes::from(end)), (events, watch, sent + 1)))
                }
                None => None,
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}
