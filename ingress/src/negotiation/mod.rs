//! `POST /agent/negotiation`: "can you do this, and at what cost?", answered before any
//! work is sent (served when `negotiation.enabled`, public like the card).
//!
//! - [`request`]: the body, read field by field; a bad one is HTTP 400 naming the field.
//! - [`score`]: the assessment, pure: hard rules with Bindu's reason names, then the
//!   weighted subscores.
//! - [`embeddings`]: the optional semantic part, from an OpenAI-compatible `/embeddings`
//!   endpoint, with a timeout and the keyword score as the fallback.
//! - [`token`]: the negotiation id of an accepted answer, which a message can carry
//!   (`metadata.negotiationId`) to run with the best skill.
//! - [`options`]: the `[negotiation]` section.
//!
//! The load subscore reads the bus's live queue depth ([`bindu_engine::Bus::queue_depth`]:
//! commands waiting plus tasks running), never the task table. The cost subscore reads the
//! agent's price per task, given by the composition root; an agent without one is free.

pub mod embeddings;
pub mod options;
pub mod request;
pub mod score;
pub mod token;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub use options::NegotiationConfig;
pub use score::{Assessment, Conditions, Rejection, Scorer, Task, Weights};
pub use token::{IdError, IdKey};

use crate::body::{read_limited, BodyError};
use crate::error::EdgeError;
use crate::skills::Skills;
use crate::state::Ingress;

/// Largest request body (two 10,000-character texts in UTF-8 and the rest).
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// Longest wait for the bus's queue depth.
const DEPTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers negotiations for one agent: its public skills prepared, its price, the key of its
/// negotiation ids.
pub struct Negotiator {
    scorer: Scorer,
    weights: Weights,
    key: IdKey,
    id_ttl: Duration,
    price: Option<f64>,
    embedder: Option<embeddings::Embedder>,
}

impl Negotiator {
    /// `key`: the secret of negotiation ids (see [`token`]); `price`: the agent's price per
    /// task, `None` for a free agent.
    pub fn new(
        config: &NegotiationConfig,
        skills: &Skills,
        key: [u8; 32],
        price: Option<f64>,
    ) -> Negotiator {
        let public: Vec<&crate::skills::LoadedSkill> =
            skills.public().iter().map(|s| s.as_ref()).collect();
        Negotiator {
            scorer: Scorer::new(
                public.iter().copied(),
                config.default_latency_ms,
                config.embedding_weight,
                config.keyword_weight,
            ),
            weights: config.weights(),
            key: IdKey::new(key),
            id_ttl: config.id_ttl,
            price,
            embedder: config
                .use_embeddings
                .then(|| embeddings::Embedder::new(config, public.iter().copied())),
        }
    }

    /// The default weights of a request that names none.
    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// Assesses `task` with `queue_depth` commands waiting or running.
    pub async fn answer(&self, task: &Task, queue_depth: u64) -> Assessment {
        let similarities = match &self.embedder {
            Some(e) if !self.scorer.is_empty() => e.similarities(task).await,
            _ => None,
        };
        let conditions = Conditions {
            queue_depth,
            price: self.price,
        };
        let mut answer = self
            .scorer
            .assess(task, conditions, similarities.as_deref());
        if let Some(best) = answer.best_skill() {
            let expires = unix_now().saturating_add(self.id_ttl.as_secs());
            answer.negotiation_id = Some(self.key.issue(best, expires));
        }
        answer
    }

    /// The skill a negotiation id stands for.
    pub fn skill_of(&self, negotiation_id: &str) -> Result<String, IdError> {
        self.key.verify(negotiation_id, unix_now())
    }
}

fn unix_now() -> u64 {
    u64::try_from(bindu_engine::time::unix_now()).unwrap_or(0)
}

/// `POST /agent/negotiation`.
pub(crate) async fn negotiate(
    State(app): State<Ingress>,
    request: Request,
) -> Result<Response, EdgeError> {
    let Some(negotiator) = app.inner.negotiator.as_ref() else {
        return Err(EdgeError::NoRoute {
            path: "/agent/negotiation".into(),
        });
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !content_type.as_deref().is_some_and(crate::guard::is_json) {
        return Err(EdgeError::NegotiationNotJson { content_type });
    }
    let (parts, body) = request.into_parts();
    let body = read_limited(body, &parts.headers, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { drained } => EdgeError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
                drained,
            },
            BodyError::Unreadable(why) => EdgeError::BodyUnreadable(why),
            BodyError::TimedOut(limit) => EdgeError::BodyTimedOut { limit },
        })?;
    let task =
        request::parse(&body, negotiator.weights()).map_err(|r| EdgeError::NegotiationRefused {
            field: r.field,
            message: r.message,
        })?;
    let depth = match tokio::time::timeout(DEPTH_TIMEOUT, app.inner.bus.queue_depth()).await {
        Ok(Ok(depth)) => depth.total(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "negotiation: the queue depth could not be read");
            return Err(EdgeError::NegotiationUnavailable);
        }
        Err(_) => {
            tracing::warn!("negotiation: the bus did not say its queue depth in time");
            return Err(EdgeError::NegotiationUnavailable);
        }
    };
    let answer = negotiator.answer(&task, depth).await;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
        .into_response())
}
