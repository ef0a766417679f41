//! State shared by every ingress replica through Redis (`REDIS_URL`): token introspections,
//! caller keys and the replay guard (and the payment nonces of [`crate::payments`], which
//! fail closed instead of falling back). Without Redis each replica keeps its own bounded caches.
//! When Redis is unreachable the layer falls back to the local caches and logs a warning
//! (availability first; the replay guard then only covers this replica).
//!
//! Redis never holds a request up for long: every command is bounded by
//! `CACHE__REDIS_TIMEOUT_MS`, and once one fails or times out Redis counts as down, so
//! requests skip it at once (no waiting on a dead connection) until a background `PING`
//! answers again. The client reconnects on its own (exponential back-off up to
//! `CACHE__REDIS_RECONNECT_MAX_MS`, forever), and a connection that stops answering is
//! closed and reconnected. The state (up or down, and why) is on `/health` and in metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::{Expiration, SetOptions};
use parking_lot::Mutex;

/// Whether the shared state can be used now, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStatus {
    pub backend: &'static str,
    pub up: bool,
    /// Why it is down (never a credential).
    pub error: Option<String>,
}

/// The port: a string key-value store with expiry.
#[async_trait]
pub trait SharedState: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, String>;
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String>;
    /// Stores `key` only if absent; true when it was stored (first sighting).
    async fn put_new(&self, key: &str, ttl: Duration) -> Result<bool, String>;
    /// Deletes `key`.
    async fn remove(&self, key: &str) -> Result<(), String>;
    /// Up or down now (for `/health` and metrics).
    fn status(&self) -> SharedStatus;
}

/// How the Redis client waits and reconnects.
#[derive(Debug, Clone, Copy)]
pub struct RedisOptions {
    /// Longest one command may take; then Redis counts as down.
    pub command_timeout: Duration,
    /// Longest pause between two reconnection attempts.
    pub reconnect_max: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            command_timeout: Duration::from_millis(1000),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// Up or down, as the last command or `PING` found it.
#[derive(Default)]
struct Health {
    down: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Health {
    fn up(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }

    fn failed(&self, why: String) {
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!(error = %why, "Redis is unavailable; until it answers again the auth caches and the request replay guard are this replica's own, and payments (x402 nonce claims) are refused with 503");
        }
        *self.why.lock() = Some(why);
    }

    fn answered(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!("Redis answers again; auth state and payment nonces are shared by the replicas again");
        }
        *self.why.lock() = None;
    }
}

/// Redis through fred.
pub struct RedisState {
    client: Client,
    prefix: String,
    options: RedisOptions,
    health: Arc<Health>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for RedisState {
    fn drop(&mut self) {
        self.watcher.abort();
        let client = self.client.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// An error's text without anything a URL could carry (fred's errors name no URL, but a
/// resolver error could quote the host; credentials never appear).
fn describe(e: &fred::error::Error) -> String {
    format!("{:?}: {}", e.kind(), e.details())
}

impl RedisState {
    /// Connects; `prefix` namespaces every key (e.g. `bindu:<agent>:auth:`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        options: RedisOptions,
    ) -> Result<RedisState, String> {
        // fred's URL errors quote no part of the URL.
        let config =
            Config::from_url(url).map_err(|e| format!("not a Redis URL: {}", describe(&e)))?;
        let timeout = options.command_timeout;
        let reconnect_max = u32::try_from(options.reconnect_max.as_millis()).unwrap_or(u32::MAX);
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5).max(timeout);
                c.internal_command_timeout = timeout;
                // A connection that leaves a command unanswered this long is closed and
                // opened again (a hung server, a half-open TCP connection).
                c.unresponsive.max_timeout = Some(timeout * 2);
                c.unresponsive.interval = (timeout / 2).max(Duration::from_millis(50));
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            // Reconnect forever: 100 ms, doubling, at most `reconnect_max` apart.
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                100,
                reconnect_max.max(100),
                2,
            ))
            .build()
            .map_err(|e| describe(&e))?;
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            client.init().await.map(|_| ())
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = client.quit().await;
                return Err(format!("cannot connect to Redis: {}", describe(&e)));
            }
            Err(_) => {
                let _ = client.quit().await;
                return Err("cannot connect to Redis: no answer within 10 s".into());
            }
        }
        let health = Arc::new(Health::default());
        let watcher = tokio::spawn(watch(client.clone(), health.clone(), options));
        Ok(RedisState {
            client,
            prefix: prefix.to_string(),
            options,
            health,
            watcher,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one command within the timeout, unless Redis is known to be down.
    async fn run<T>(
        &self,
        command: impl std::future::Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, String> {
        if !self.health.up() {
            let why = self.health.why.lock().clone().unwrap_or_default();
            return Err(format!("Redis is down ({why})"));
        }
        match tokio::time::timeout(self.options.command_timeout, command).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let why = describe(&e);
                self.health.failed(why.clone());
                Err(why)
            }
            Err(_) => {
                let why = format!(
                    "no answer within {} ms",
                    self.options.command_timeout.as_millis()
                );
                self.health.failed(why.clone());
                Err(why)
            }
        }
    }
}

impl RedisState {
    /// Runs the Lua `script` on `keys` (each under this state's prefix) with `args`, within
    /// the command timeout (as every command: skipped while Redis is down). `EVAL` sends
    /// the script each time; Redis compiles it once and keeps it by its hash.
    pub(crate) async fn eval(
        &self,
        script: &'static str,
        keys: &[&str],
        args: Vec<fred::types::Value>,
    ) -> Result<fred::types::Value, String> {
        use fred::interfaces::ClientLike;
        use fred::types::{ClusterHash, CustomCommand, Value};
        let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(script.into());
        all.push(Value::from(keys.len() as i64));
        all.extend(keys.iter().map(|k| Value::from(self.key(k))));
        all.extend(args);
        self.run(self.client.custom(
            CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false),
            all,
        ))
        .await
    }
}

/// Pings Redis every half second while it is down (every 2 s while up): the first answer
/// after an outage puts the shared state back in use. Ends when the state is dropped.
async fn watch(client: Client, health: Arc<Health>, options: RedisOptions) {
    loop {
        let pause = if health.up() {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        tokio::time::sleep(pause).await;
        match tokio::time::timeout(options.command_timeout, client.ping::<String>(None)).await {
            Ok(Ok(_)) => health.answered(),
            Ok(Err(e)) => health.failed(describe(&e)),
            Err(_) => health.failed(format!(
                "PING unanswered within {} ms",
                options.command_timeout.as_millis()
            )),
        }
    }
}

fn secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

#[async_trait]
impl SharedState for RedisState {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.run(self.client.get::<Option<String>, _>(self.key(key)))
            .await
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String> {
        self.run(self.client.set::<(), _, _>(
            self.key(key),
            value,
            Some(Expiration::EX(secs(ttl))),
            None,
            false,
        ))
        .await
    }

    async fn put_new(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let stored: Option<String> = self
            .run(self.client.set(
                self.key(key),
                "1",
                Some(Expiration::EX(secs(ttl))),
                Some(SetOptions::NX),
                false,
            ))
            .await?;
        Ok(stored.is_some())
    }

    async fn remove(&self, key: &str) -> Result<(), String> {
        self.run(self.client.del::<i64, _>(self.key(key)))
            .await
            .map(|_| ())
    }

    fn status(&self) -> SharedStatus {
        SharedStatus {
            backend: "redis",
            up: self.health.up(),
            error: self.health.why.lock().clone(),
        }
    }
}
