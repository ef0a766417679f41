//! `[negotiation]`: whether `POST /agent/negotiation` is served, the default weights, and
//! the optional embeddings (Bindu's `NEGOTIATION__*` names).

use std::time::Duration;

use bindu_engine::config::{check, fields, http_url, key, secret, within, Invalid, Key, Section};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::score::Weights;

/// `[negotiation]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NegotiationConfig {
    /// Serve `POST /agent/negotiation` (Bindu's `capabilities.negotiation`).
    pub enabled: bool,
    pub skill_match_weight: f64,
    pub io_compatibility_weight: f64,
    pub performance_weight: f64,
    pub load_weight: f64,
    pub cost_weight: f64,
    /// The latency estimate of a skill without `performance.avg_processing_time_ms`, and the
    /// baseline of the performance subscore without `max_latency_ms`.
    pub default_latency_ms: u64,
    /// How long a negotiation id stays usable in `message.metadata.negotiationId`.
    #[serde(with = "fields::duration")]
    pub id_ttl: Duration,
    /// Blend embedding similarity into the skill match (needs an embeddings endpoint).
    pub use_embeddings: bool,
    /// Base URL of an OpenAI-compatible API; requests go to `<url>/embeddings`.
    pub embedding_url: String,
    pub embedding_model: String,
    #[serde(with = "fields::secret")]
    pub embedding_api_key: Option<SecretString>,
    /// Weights of embedding similarity and keyword overlap in the skill match.
    pub embedding_weight: f64,
    pub keyword_weight: f64,
    /// Longest wait for the embeddings endpoint; then the answer uses keywords alone.
    #[serde(rename = "embedding_timeout_ms", with = "fields::millis")]
    pub embedding_timeout: Duration,
    /// Task embeddings kept (by text) so a repeated task costs no request.
    pub embedding_cache_size: u64,
}

impl Default for NegotiationConfig {
    fn default() -> Self {
        let w = Weights::default();
        NegotiationConfig {
            enabled: false,
            skill_match_weight: w.skill_match,
            io_compatibility_weight: w.io_compatibility,
            performance_weight: w.performance,
            load_weight: w.load,
            cost_weight: w.cost,
            default_latency_ms: 5000,
            id_ttl: Duration::from_secs(3600),
            use_embeddings: false,
            embedding_url: "https://api.openai.com/v1".into(),
            embedding_model: "text-embedding-3-small".into(),
            embedding_api_key: None,
            embedding_weight: 0.7,
            keyword_weight: 0.3,
            embedding_timeout: Duration::from_millis(2000),
            embedding_cache_size: 1000,
        }
    }
}

impl Section for NegotiationConfig {
    const NAME: &'static str = "negotiation";
    const KEYS: &'static [Key] = &[
        key("enabled", "NEGOTIATION__ENABLED"),
        key("skill_match_weight", "NEGOTIATION__SKILL_MATCH_WEIGHT"),
        key(
            "io_compatibility_weight",
            "NEGOTIATION__IO_COMPATIBILITY_WEIGHT",
        ),
        key("performance_weight", "NEGOTIATION__PERFORMANCE_WEIGHT"),
        key("load_weight", "NEGOTIATION__LOAD_WEIGHT"),
        key("cost_weight", "NEGOTIATION__COST_WEIGHT"),
        key("default_latency_ms", "NEGOTIATION__DEFAULT_LATENCY_MS"),
        key("id_ttl", "NEGOTIATION__ID_TTL"),
        key("use_embeddings", "NEGOTIATION__USE_EMBEDDINGS"),
        key("embedding_url", "NEGOTIATION__EMBEDDING_URL"),
        key("embedding_model", "NEGOTIATION__EMBEDDING_MODEL"),
        secret("embedding_api_key", "NEGOTIATION__EMBEDDING_API_KEY"),
        key("embedding_weight", "NEGOTIATION__EMBEDDING_WEIGHT"),
        key("keyword_weight", "NEGOTIATION__KEYWORD_WEIGHT"),
        key("embedding_timeout_ms", "NEGOTIATION__EMBEDDING_TIMEOUT_MS"),
        key("embedding_cache_size", "NEGOTIATION__EMBEDDING_CACHE_SIZE"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        for (w, field) in [
            (self.skill_match_weight, "skill_match_weight"),
            (self.io_compatibility_weight, "io_compatibility_weight"),
            (self.performance_weight, "performance_weight"),
            (self.load_weight, "load_weight"),
            (self.cost_weight, "cost_weight"),
            (self.embedding_weight, "embedding_weight"),
            (self.keyword_weight, "keyword_weight"),
        ] {
            check(
                w.is_finite() && (0.0..=1000.0).contains(&w),
                field,
                "must be a number from 0 to 1000 (weights are normalised)",
            )?;
        }
        within(self.default_latency_ms, 1, 86_400_000, "default_latency_ms")?;
        check(
            self.id_ttl >= Duration::from_secs(1),
            "id_ttl",
            "must be at least 1s",
        )?;
        let mut url = Some(self.embedding_url.clone());
        http_url(&mut url, "embedding_url")?;
        self.embedding_url = url.unwrap_or_default();
        check(
            !(self.use_embeddings && self.embedding_url.is_empty()),
            "embedding_url",
            "NEGOTIATION__USE_EMBEDDINGS=true needs an embeddings endpoint",
        )?;
        self.embedding_model = self.embedding_model.trim().to_string();
        check(
            !self.embedding_model.is_empty(),
            "embedding_model",
            "must not be empty",
        )?;
        within(
            self.embedding_timeout.as_millis(),
            10,
            60_000,
            "embedding_timeout_ms",
        )?;
        within(
            self.embedding_cache_size,
            0,
            1_000_000,
            "embedding_cache_size",
        )
    }
}

impl NegotiationConfig {
    /// The default weights of an assessment.
    pub fn weights(&self) -> Weights {
        Weights {
            skill_match: self.skill_match_weight,
            io_compatibility: self.io_compatibility_weight,
            performance: self.performance_weight,
            load: self.load_weight,
            cost: self.cost_weight,
        }
    }
}
