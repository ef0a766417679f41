//! Wiring the auth layer from its configuration sections: Hydra as the token authority,
//! the settings, and Redis for state shared by ingress replicas.

use std::sync::Arc;

use secrecy::ExposeSecret;

use super::hydra::Hydra;
use super::shared::RedisState;
use super::Auth;
use crate::options::{AuthConfig, CacheConfig, HydraConfig, MtlsConfig};

/// The configuration sections auth reads.
pub struct AuthSections<'a> {
    pub auth: &'a AuthConfig,
    pub hydra: &'a HydraConfig,
    pub cache: &'a CacheConfig,
    pub mtls: &'a MtlsConfig,
}

/// The auth layer `sections` ask for (`None` when `AUTH__ENABLED` is off). Shared state
/// in Redis is keyed under the agent's `namespace`. The error names the setting at fault.
pub async fn from_config(
    sections: AuthSections<'_>,
    namespace: &str,
) -> Result<Option<Auth>, String> {
    if !sections.auth.enabled {
        return Ok(None);
    }
    let admin = sections
        .hydra
        .admin_url
        .as_deref()
        .ok_or("HYDRA__ADMIN_URL is not set")?;
    let hydra =
        Hydra::new(admin, sections.hydra.timeout).map_err(|e| format!("Hydra client: {e}"))?;
    let auth = Auth::new(
        Arc::new(hydra),
        sections.auth.settings(sections.hydra, sections.mtls),
    );
    Ok(Some(match &sections.cache.redis_url {
        Some(url) => {
            let prefix = format!(
                "bindu:{}:auth:",
                bindu_schemas::bus::subjects::token(namespace)
            );
            let redis =
                RedisState::connect(url.expose_secret(), &prefix, sections.cache.redis_options())
                    .await
                    .map_err(|e| format!("REDIS_URL: {e}"))?;
            auth.with_shared_state(Arc::new(redis))
        }
        None => auth,
    }))
}
