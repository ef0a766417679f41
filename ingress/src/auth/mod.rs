//! Authentication of JSON-RPC requests (`AUTH__ENABLED=true`): the [`Auth`] state (the
//! [`TokenAuthority`] port and its caches) here, the checks in [`middleware`].
//!
//! The layer sits on the `POST /` route only, so every other path (card, `/did/resolve`,
//! health, metrics) is public by construction: the router decides, not a second path matcher.
//!
//! In order, first failure wins:
//! 1. `Authorization: Bearer <token>` present, else 401 / -32009.
//! 2. Token introspected by the [`TokenAuthority`] (cached, see [`cache`]; inactive answers
//!    for `HYDRA__NEGATIVE_CACHE_TTL`; concurrent requests with one token share one lookup):
//!    authority down → 503 / -32603; inactive or malformed answer → 401 / -32010; expired →
//!    401 / -32011; not an access token (`token_use`), not valid yet (`nbf`) or not for
//!    `HYDRA__AUDIENCE` (`aud`) → 401 / -32010.
//! 3. `AUTH__ALLOWED_DIDS` set and the client not in it → 403 "DID not admitted".
//! 4. A client id starting with `did:` must sign the request ([`signature`]): 403 with a
//!    `reason` on failure.
//! 5. The caller (the token's client id) is attached to the request: tasks and contexts are
//!    owned by it.
//!
//! - `middleware`: the axum layer making the checks above (refusals are
//!   [`crate::error::EdgeError`]s).
//! - `signature`: DID request signatures.
//! - `hydra`: the Ory Hydra admin API as the [`TokenAuthority`].
//! - `cache`: bounded TTL caches for introspections and client keys, and the replay guard.
//! - `shared`: the same state shared by every replica through Redis, when configured.
//! - [`setup`]: the layer built from the `[auth]`, `[hydra]`, `[cache]` and `[mtls]` sections.

pub mod cache;
#[cfg(any(test, feature = "testing"))]
pub mod fake_hydra;
pub mod hydra;
pub mod middleware;
pub mod setup;
pub mod shared;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bindu_engine::identity::batch::BatchVerifier;
use sha2::{Digest, Sha256};

/// What the authority says about a token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Introspection {
    pub active: bool,
    pub client_id: Option<String>,
    pub sub: Option<String>,
    /// Expiry, unix seconds; `None` when absent or not an integer.
    pub exp: Option<i64>,
    /// Not before, unix seconds; `None` when absent.
    pub nbf: Option<i64>,
    pub scopes: Vec<String>,
    /// Hydra's `token_use`: `access_token` or `refresh_token` (`None` when not said).
    pub token_use: Option<String>,
    /// The audiences the token was issued for (`aud`, a string or a list).
    pub audience: Vec<String>,
}

impl Introspection {
    /// An inactive token (what the authority says of unknown and revoked tokens).
    pub fn inactive() -> Introspection {
        Introspection::default()
    }

    fn to_shared(&self) -> String {
        serde_json::json!({
            "active": self.active, "client_id": self.client_id, "sub": self.sub,
            "exp": self.exp, "nbf": self.nbf, "scopes": self.scopes,
            "token_use": self.token_use, "aud": self.audience,
        })
        .to_string()
    }

    fn from_shared(json: &str) -> Option<Introspection> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let list = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Introspection {
            active: v.get("active")?.as_bool()?,
            client_id: text("client_id"),
            sub: text("sub"),
            exp: v.get("exp").and_then(|x| x.as_i64()),
            nbf: v.get("nbf").and_then(|x| x.as_i64()),
            scopes: list("scopes"),
            token_use: text("token_use"),
            audience: list("aud"),
        })
    }

    /// Why this active token cannot be used here, if it cannot: a refresh token, one issued
    /// for another audience than `audience` (when one is required), one not valid before a
    /// time still `NBF_LEEWAY_SECS` ahead of `now`.
    pub fn unusable(&self, audience: Option<&str>, now: i64) -> Option<&'static str> {
        if self
            .token_use
            .as_deref()
            .is_some_and(|u| u != "access_token")
        {
            return Some("it is not an access token");
        }
        if let Some(required) = audience {
            if !self.audience.iter().any(|a| a == required) {
                return Some("it was not issued for this agent's audience");
            }
        }
        if self
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(NBF_LEEWAY_SECS))
        {
            return Some("it is not valid yet");
        }
        None
    }
}

/// Clock skew allowed between the authority and this server on a token's `nbf`.
pub const NBF_LEEWAY_SECS: i64 = 30;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthorityError {
    /// Unreachable, timed out or answering 5xx: nothing can be decided, nothing is cached.
    #[error("authentication service unavailable: {0}")]
    Unavailable(String),
    /// It answered, but not with something we can use.
    #[error("unusable answer from the authentication service: {0}")]
    Invalid(String),
}

/// The port to the OAuth2 server (the consumer owns it; Hydra is one implementation).
#[async_trait]
pub trait TokenAuthority: Send + Sync + 'static {
    async fn introspect(&self, token: &str) -> Result<Introspection, AuthorityError>;
    /// The client's Ed25519 public key (base58), `None` when it has none.
    async fn client_public_key(&self, client_id: &str) -> Result<Option<String>, AuthorityError>;
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub allowed_dids: Vec<String>,
    pub cache_ttl: Duration,
    pub sensitive_scopes: Vec<String>,
    pub signature_window: Duration,
    pub replay_guard: bool,
    /// Enforce `agent:read` / `agent:write` per method (403, -32013).
    pub require_permissions: bool,
    /// `MTLS__MODE=hybrid`: a verified client certificate is required too, and its DID
    /// must equal the token's client id (Bindu documents this check but never makes it).
    pub bind_client_certificate: bool,
    /// `HYDRA__AUDIENCE`: tokens must list it in their `aud`.
    pub audience: Option<String>,
    /// How long an inactive (unknown, revoked, expired) token is remembered as such.
    pub negative_cache_ttl: Duration,
}

/// The authentication layer's state.
#[derive(Clone)]
pub struct Auth {
    authority: Arc<dyn TokenAuthority>,
    settings: Arc<AuthSettings>,
    /// Introspections, each kept for the TTL it earned (zero: not kept); concurrent
    /// requests with one token share one lookup.
    tokens: moka::future::Cache<String, (Duration, Introspection)>,
    keys: Arc<cache::TtlCache<Option<String>>>,
    replays: Arc<cache::ReplayGuard>,
    /// Caller keys already decoded (decompressing a point costs as much as hashing a body).
    parsed_keys: Arc<cache::TtlCache<ed25519_dalek::VerifyingKey>>,
    verifier: BatchVerifier,
    shared: Option<Arc<dyn shared::SharedState>>,
    pub(crate) metrics: crate::metrics::AuthMetrics,
}

/// Most entries in each cache.
const CACHE_CAPACITY: usize = 10_000;
/// Most live signatures the replay guard holds (about 50 bytes each): 13,000 signed
/// requests/s sustained over the default 300 s window.
const REPLAY_CAPACITY: usize = 4_000_000;

impl Auth {
    pub fn new(authority: Arc<dyn TokenAuthority>, settings: AuthSettings) -> Auth {
        Auth {
            authority,
            settings: Arc::new(settings),
            tokens: cache::ttl_future_cache(CACHE_CAPACITY),
            keys: Arc::new(cache::TtlCache::new(CACHE_CAPACITY)),
            replays: Arc::new(cache::ReplayGuard::new(REPLAY_CAPACITY)),
            parsed_keys: Arc::new(cache::TtlCache::new(CACHE_CAPACITY)),
            verifier: BatchVerifier::start(),
            shared: None,
            metrics: crate::metrics::AuthMetrics::default(),
        }
    }

    /// The shared state's condition (`None` without one), refreshing its gauge.
    pub fn shared_status(&self) -> Option<shared::SharedStatus> {
        let status = self.shared.as_ref()?.status();
        self.metrics.shared_up.set(i64::from(status.up));
        Some(status)
    }

    /// Registers the auth layer's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry, self.shared.is_some());
        let _ = self.shared_status();
    }

    /// Shares introspections, caller keys and the replay guard with other replicas.
    pub fn with_shared_state(mut self, shared: Arc<dyn shared::SharedState>) -> Self {
        self.shared = Some(shared);
        self
    }

    async fn shared_get(&self, key: &str) -> Option<String> {
        let shared = self.shared.as_ref()?;
        match shared.get(key).await {
            Ok(v) => v,
            Err(e) => {
                self.metrics.shared_errors.inc();
                tracing::debug!(error = %e, "shared auth state unavailable; using this replica's cache");
                None
            }
        }
    }

    async fn shared_put(&self, key: &str, value: &str, ttl: Duration) {
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.put(key, value, ttl).await {
                self.metrics.shared_errors.inc();
                tracing::debug!(error = %e, "shared auth state unavailable; cached on this replica only");
            }
        }
    }

    /// First sighting of a signature (`digest`, remembered until unix second `until`), across
    /// replicas when shared state is configured.
    pub(crate) async fn first_sighting(&self, digest: &[u8; 32], until: i64) -> cache::Sighting {
        let now = now();
        let key = u128::from_be_bytes(digest[..16].try_into().unwrap_or([0; 16]));
        if let Some(shared) = &self.shared {
            let ttl = Duration::from_secs(until.saturating_sub(now).max(1) as u64);
            match shared
                .put_new(&format!("replay:{}", hex(digest)), ttl)
                .await
            {
                Ok(first) => {
                    // Keep the local guard in step, so an outage later still remembers it.
                    self.replays.remember(key, until, now);
                    return if first {
                        cache::Sighting::First
                    } else {
                        cache::Sighting::Replayed
                    };
                }
                Err(e) => {
                    self.metrics.shared_errors.inc();
                    tracing::debug!(error = %e, "shared replay guard unavailable; guarding this replica only")
                }
            }
        }
        self.replays.check(key, until, now)
    }

    /// What the authority says of `token`: from this replica's cache, else from the shared
    /// cache, else from the authority. Concurrent calls for one token share one lookup
    /// (moka runs one init future per key and hands its answer to every waiter); failures
    /// are not kept.
    async fn introspect(&self, token: &str) -> Result<Introspection, AuthorityError> {
        let key = hex(Sha256::digest(token.as_bytes()));
        self.tokens
            .try_get_with(key.clone(), self.look_up(token, &key))
            .await
            .map(|(_, answer)| answer)
            .map_err(|e| (*e).clone())
    }

    /// How long `answer` may be reused: inactive tokens briefly, active ones until their
    /// expiry (at most `HYDRA__CACHE_TTL`), tokens with a sensitive scope or no expiry never.
    fn keep_for(&self, answer: &Introspection) -> Duration {
        if !answer.active {
            return self.settings.negative_cache_ttl;
        }
        let sensitive = answer
            .scopes
            .iter()
            .any(|s| self.settings.sensitive_scopes.contains(s));
        match answer.exp.map(|e| e.saturating_sub(now())) {
            Some(left) if left > 0 && !sensitive => self
                .settings
                .cache_ttl
                .min(Duration::from_secs(left as u64)),
            _ => Duration::ZERO,
        }
    }

    async fn look_up(
        &self,
        token: &str,
        key: &str,
    ) -> Result<(Duration, Introspection), AuthorityError> {
        self.metrics.introspections.inc();
        if let Some(json) = self.shared_get(&format!("token:{key}")).await {
            if let Some(hit) = Introspection::from_shared(&json) {
                return Ok((self.keep_for(&hit), hit));
            }
        }
        let answer = self.authority.introspect(token).await?;
        let ttl = self.keep_for(&answer);
        if answer.active && !ttl.is_zero() {
            self.shared_put(&format!("token:{key}"), &answer.to_shared(), ttl)
                .await;
        }
        Ok((ttl, answer))
    }

    async fn public_key(&self, client_id: &str) -> Result<Option<String>, AuthorityError> {
        if let Some(hit) = self.keys.get(client_id) {
            return Ok(hit);
        }
        let shared_key = format!("key:{}", hex(Sha256::digest(client_id.as_bytes())));
        if let Some(k) = self.shared_get(&shared_key).await {
            self.keys.insert(
                client_id.to_string(),
                Some(k.clone()),
                self.settings.cache_ttl,
            );
            return Ok(Some(k));
        }
        let key = self.authority.client_public_key(client_id).await?;
        if let Some(k) = &key {
            self.shared_put(&shared_key, k, self.settings.cache_ttl)
                .await;
            self.keys
                .insert(client_id.to_string(), key.clone(), self.settings.cache_ttl);
        }
        Ok(key)
    }
}

pub(crate) use bindu_engine::time::unix_now as now;
use hex::encode as hex;
