//! State shared by every ingress replica through Redis (`REDIS_URL`): token introspections,
//! caller keys and the replay guard. Without Redis each replica keeps its own bounded caches.
//! When Redis is unreachable the layer falls back to the local caches and logs a warning
//! (availability first; the replay guard then only covers this replica).

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::{Expiration, SetOptions};

/// The port: a string key-value store with expiry.
#[async_trait]
pub trait SharedState: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, String>;
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String>;
    /// Stores `key` only if absent; true when it was stored (first sighting).
    async fn put_new(&self, key: &str, ttl: Duration) -> Result<bool, String>;
}

/// Redis through fred.
pub struct RedisState {
    client: Client,
    prefix: String,
}

impl RedisState {
    /// Connects; `prefix` namespaces every key (e.g. `bindu:<agent>:auth:`).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisState, String> {
        let config = Config::from_url(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        client
            .init()
            .await
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        Ok(RedisState {
            client,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

#[async_trait]
impl SharedState for RedisState {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.client
            .get::<Option<String>, _>(self.key(key))
            .await
            .map_err(|e| e.to_string())
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String> {
        self.client
            .set::<(), _, _>(
                self.key(key),
                value,
                Some(Expiration::EX(secs(ttl))),
                None,
                false,
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn put_new(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let stored: Option<String> = self
            .client
            .set(
                self.key(key),
                "1",
                Some(Expiration::EX(secs(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(stored.is_some())
    }
}
