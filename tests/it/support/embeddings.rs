//! A fake OpenAI-compatible embeddings endpoint on 127.0.0.1 (`POST /v1/embeddings`),
//! speaking the real wire format: `{"model", "input": text | [texts]}` in,
//! `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model",
//! "usage"}` out.
//!
//! Its vectors are deterministic and "semantic" in a small way: each word counts towards a
//! concept (words of one concept, such as `spanish` and `german`, point the same way), so
//! texts that share no word can still be similar. Every request is recorded; [`Mode`] makes
//! the endpoint fail, stall or answer something unusable.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Concepts and their words; any other word gets a dimension of its own.
const CONCEPTS: &[&[&str]] = &[
    &[
        "translate",
        "translates",
        "translation",
        "render",
        "language",
        "languages",
        "english",
        "german",
        "french",
        "spanish",
        "italian",
        "localize",
    ],
    &[
        "pdf",
        "pdfs",
        "document",
        "documents",
        "invoice",
        "table",
        "tables",
        "form",
        "forms",
        "scanned",
        "ocr",
        "extract",
    ],
    &[
        "question",
        "questions",
        "answer",
        "answers",
        "explain",
        "explains",
        "why",
        "science",
        "photosynthesis",
        "knowledge",
        "facts",
    ],
];

const DIMENSIONS: usize = 64;

/// How the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// HTTP 500 with an OpenAI-style error body.
    Fail,
    /// Answers only after this long.
    Slow(Duration),
    /// One vector too few.
    Unusable,
}

struct Shared {
    mode: Mutex<Mode>,
    requests: Mutex<Vec<(Value, Option<String>)>>,
}

pub struct FakeEmbeddings {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for FakeEmbeddings {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeEmbeddings {
    pub async fn start(mode: Mode) -> FakeEmbeddings {
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            requests: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(shared.clone());
        let (addr, stop) = crate::support::serve_fake(app).await;
        FakeEmbeddings { addr, shared, stop }
    }

    /// `http://127.0.0.1:<port>/v1`, the value for `NEGOTIATION__EMBEDDING_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Every request body received so far, with its `Authorization` header.
    pub fn requests(&self) -> Vec<(Value, Option<String>)> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// The vector of `text`: word counts folded into concept (or hashed) dimensions.
pub fn vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
    {
        let dim = match CONCEPTS.iter().position(|c| c.contains(&word.as_str())) {
            Some(concept) => concept,
            None => {
                let hash = word
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                CONCEPTS.len() + (hash as usize) % (DIMENSIONS - CONCEPTS.len())
            }
        };
        // Concept words weigh more than the rest, as a model's topic words would.
        v[dim] += if dim < CONCEPTS.len() { 3.0 } else { 1.0 };
    }
    v
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared.requests.lock().unwrap().push((body.clone(), auth));
    let mode = *shared.mode.lock().unwrap();
    match mode {
        Mode::Fail => return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "the model is overloaded", "type": "server_error"}})),
        )
            .into_response(),
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Normal | Mode::Unusable => {}
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "'input' is required", "type": "invalid_request_error"}})),
            )
                .into_response()
        }
    };
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": vector(text)}))
        .collect();
    if mode == Mode::Unusable {
        data.pop();
    }
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}
