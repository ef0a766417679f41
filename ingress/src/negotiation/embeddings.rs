//! Semantic matching through an OpenAI-compatible embeddings endpoint
//! (`POST <embedding_url>/embeddings` with `{"model", "input": [texts]}`, answered with
//! `{"data": [{"index", "embedding"}]}`).
//!
//! - Each skill is embedded once (name, description, tags, keywords, examples), in one
//!   request, the first time a negotiation needs it; the vectors are kept for the life of
//!   the process.
//! - A task's embedding is cached by its text (`embedding_cache_size` entries).
//! - Every request is bounded by `embedding_timeout_ms`. When the endpoint fails, times out
//!   or answers something unusable, the answer uses keywords alone, and the endpoint is not
//!   asked again for [`RETRY_AFTER`] (so an outage costs one wait, not one per call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::options::NegotiationConfig;
use super::score::Task;
use crate::skills::LoadedSkill;

/// How long a failing endpoint is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Largest answer read from the endpoint.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

/// Why the endpoint gave no vectors (logged; the answer falls back to keywords).
#[derive(Debug, thiserror::Error)]
enum EmbedError {
    #[error("the embeddings endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the embeddings request failed: {0}")]
    Request(String),
    #[error("the embeddings endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the embeddings endpoint's answer is unusable: {0}")]
    Unusable(String),
}

/// The skills' texts, their vectors once known, and the task cache.
pub struct Embedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<SecretString>,
    timeout: Duration,
    skill_texts: Vec<String>,
    /// The skills' vectors once computed.
    skill_vectors: tokio::sync::OnceCell<Arc<Vec<Vec<f32>>>>,
    /// When the endpoint last failed.
    failed_at: parking_lot::Mutex<Option<Instant>>,
    tasks: moka::future::Cache<String, Arc<Vec<f32>>>,
}

impl Embedder {
    pub fn new<'a>(
        config: &NegotiationConfig,
        skills: impl IntoIterator<Item = &'a LoadedSkill>,
    ) -> Embedder {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Embedder {
            client,
            url: format!("{}/embeddings", config.embedding_url.trim_end_matches('/')),
            model: config.embedding_model.clone(),
            api_key: config.embedding_api_key.clone(),
            timeout: config.embedding_timeout,
            skill_texts: skills.into_iter().map(skill_text).collect(),
            skill_vectors: tokio::sync::OnceCell::new(),
            failed_at: parking_lot::Mutex::new(None),
            tasks: moka::future::Cache::new(config.embedding_cache_size),
        }
    }

    /// Each skill's cosine similarity to `task`, in the skills' order; `None` when the
    /// endpoint cannot say (keywords alone then).
    pub async fn similarities(&self, task: &Task) -> Option<Vec<f64>> {
        if self
            .failed_at
            .lock()
            .is_some_and(|at| at.elapsed() < RETRY_AFTER)
        {
            return None;
        }
        match self.compute(task).await {
            Ok(sims) => Some(sims),
            Err(e) => {
                tracing::warn!(error = %e, retry_after = ?RETRY_AFTER, "negotiation falls back to keyword matching");
                *self.failed_at.lock() = Some(Instant::now());
                None
            }
        }
    }

    async fn compute(&self, task: &Task) -> Result<Vec<f64>, EmbedError> {
        let skills = self
            .skill_vectors
            .get_or_try_init(|| async { self.embed(&self.skill_texts).await.map(Arc::new) })
            .await?
            .clone();
        let text = match &task.details {
            Some(d) => format!("{}\n{d}", task.summary),
            None => task.summary.clone(),
        };
        let task_vector = match self.tasks.get(&text).await {
            Some(v) => v,
            None => {
                let mut v = self.embed(std::slice::from_ref(&text)).await?;
                let v = Arc::new(v.pop().unwrap_or_default());
                self.tasks.insert(text, v.clone()).await;
                v
            }
        };
        if skills.iter().any(|s| s.len() != task_vector.len()) {
            return Err(EmbedError::Unusable(
                "the task's and the skills' vectors differ in length".into(),
            ));
        }
        Ok(skills.iter().map(|s| cosine(s, &task_vector)).collect())
    }

    /// One request for `inputs`; the vectors in the inputs' order.
    async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut request = self
            .client
            .post(&self.url)
            .json(&json!({"model": self.model, "input": inputs}));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let work = async {
            let response = request
                .send()
                .await
                .map_err(|e| EmbedError::Request(e.without_url().to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(EmbedError::Status(status.as_u16()));
            }
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| EmbedError::Request(e.without_url().to_string()))?
            {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(EmbedError::Unusable(format!(
                        "more than {MAX_ANSWER_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice::<Answer>(&body).map_err(|e| EmbedError::Unusable(e.to_string()))
        };
        let answer = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| EmbedError::Timeout(self.timeout))??;
        order(answer.data, inputs.len())
    }
}

/// The vectors by `index` (or in order when the endpoint gives none), one per input.
fn order(mut items: Vec<Item>, inputs: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    if items.len() != inputs {
        return Err(EmbedError::Unusable(format!(
            "{} vectors for {inputs} inputs",
            items.len()
        )));
    }
    if items.iter().all(|i| i.index.is_some()) {
        items.sort_by_key(|i| i.index);
        if items.iter().enumerate().any(|(n, i)| i.index != Some(n)) {
            return Err(EmbedError::Unusable(
                "the indexes do not match the inputs".into(),
            ));
        }
    }
    let vectors: Vec<Vec<f32>> = items.into_iter().map(|i| i.embedding).collect();
    if vectors
        .iter()
        .any(|v| v.is_empty() || v.iter().any(|x| !x.is_finite()))
    {
        return Err(EmbedError::Unusable("an empty or non-finite vector".into()));
    }
    Ok(vectors)
}

/// What a skill is embedded as.
fn skill_text(loaded: &LoadedSkill) -> String {
    let s = &loaded.skill;
    let mut text = format!("{}: {}", s.name, s.description);
    if !s.tags.is_empty() {
        text.push_str(&format!("\nTags: {}", s.tags.join(", ")));
    }
    if let Some(a) = &s.assessment {
        if !a.keywords.is_empty() {
            text.push_str(&format!("\nKeywords: {}", a.keywords.join(", ")));
        }
    }
    if !s.examples.is_empty() {
        text.push_str(&format!("\nExamples: {}", s.examples.join("; ")));
    }
    text
}

/// Cosine similarity; 0 for a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-9);
        assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn vectors_come_back_in_input_order() {
        let items = vec![
            Item {
                index: Some(1),
                embedding: vec![2.0],
            },
            Item {
                index: Some(0),
                embedding: vec![1.0],
            },
        ];
        assert_eq!(order(items, 2).unwrap(), vec![vec![1.0], vec![2.0]]);
        let short = vec![Item {
            index: Some(0),
            embedding: vec![1.0],
        }];
        assert!(order(short, 2).is_err());
        let gap = vec![
            Item {
                index: Some(0),
                embedding: vec![1.0],
            },
            Item {
                index: Some(5),
                embedding: vec![1.0],
            },
        ];
        assert!(order(gap, 2).is_err());
        assert!(order(
            vec![Item {
                index: None,
                embedding: vec![]
            }],
            1
        )
        .is_err());
    }
}
