//! `[negotiation]`: whether `POST /agent/negotiation` is served, the default weights, and
//! the optional embeddings (Bindu's `NEGOTIATION__*` names).

use std::time::Duration;

use bindu_engine::config::{check, fields, http_url, within, Invalid, Section};
use secrecy::SecretString;

use super::score::Weights;

bindu_engine::section! {
    /// `[negotiation]`.
    pub struct NegotiationConfig in "negotiation" {
        /// Serve `POST /agent/negotiation` (Bindu's `capabilities.negotiation`).
        pub enabled: bool = false, env "NEGOTIATION__ENABLED";
        pub skill_match_weight: f64 = Weights::default().skill_match,
            env "NEGOTIATION__SKILL_MATCH_WEIGHT";
        pub io_compatibility_weight: f64 = Weights::default().io_compatibility,
            env "NEGOTIATION__IO_COMPATIBILITY_WEIGHT";
        pub performance_weight: f64 = Weights::default().performance,
            env "NEGOTIATION__PERFORMANCE_WEIGHT";
        pub load_weight: f64 = Weights::default().load, env "NEGOTIATION__LOAD_WEIGHT";
        pub cost_weight: f64 = Weights::default().cost, env "NEGOTIATION__COST_WEIGHT";
        /// The latency estimate of a skill without `performance.avg_processing_time_ms`, and
        /// the baseline of the performance subscore without `max_latency_ms`.
        pub default_latency_ms: u64 = 5000, env "NEGOTIATION__DEFAULT_LATENCY_MS";
        /// How long a negotiation id stays usable in `message.metadata.negotiationId`.
        #[serde(with = "fields::duration")]
        pub id_ttl: Duration = Duration::from_secs(3600), env "NEGOTIATION__ID_TTL";
        /// Blend embedding similarity into the skill match (needs an embeddings endpoint).
        pub use_embeddings: bool = false, env "NEGOTIATION__USE_EMBEDDINGS";
        /// Base URL of an OpenAI-compatible API; requests go to `<url>/embeddings`.
        pub embedding_url: String = "https://api.openai.com/v1".into(),
            env "NEGOTIATION__EMBEDDING_URL";
        pub embedding_model: String = "text-embedding-3-small".into(),
            env "NEGOTIATION__EMBEDDING_MODEL";
        #[serde(with = "fields::secret")]
        pub embedding_api_key: Option<SecretString> = None,
            secret "NEGOTIATION__EMBEDDING_API_KEY";
        /// Weights of embedding similarity and keyword overlap in the skill match.
        pub embedding_weight: f64 = 0.7, env "NEGOTIATION__EMBEDDING_WEIGHT";
        pub keyword_weight: f64 = 0.3, env "NEGOTIATION__KEYWORD_WEIGHT";
        /// Longest wait for the embeddings endpoint; then the answer uses keywords alone.
        #[serde(with = "fields::millis")]
        pub embedding_timeout: Duration = Duration::from_millis(2000),
            env "NEGOTIATION__EMBEDDING_TIMEOUT_MS" as "embedding_timeout_ms";
        /// Task embeddings kept (by text) so a repeated task costs no request.
        pub embedding_cache_size: u64 = 1000, env "NEGOTIATION__EMBEDDING_CACHE_SIZE";
    }
}

impl Section for NegotiationConfig {
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
