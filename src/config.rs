//! The whole configuration: one section per TOML table, each owned by the crate that reads it
//! (`server`, `agent`, `negotiation`, `auth`, `hydra`, `cache`, `mtls` by ingress; `worker`, `openai`,
//! `push`, `webhook` by workers; the backends' and the process's own here, `telemetry` in
//! [`crate::telemetry`]), layered by
//! [`bindu_engine::config::Layers`]: defaults < TOML file < environment < CLI flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::nats::NatsStorage;
use bindu_engine::config::{
    at_least, check, fields, keys_of, url_with, within, ConfigError, EnvLookup, FullKey, Invalid,
    Layers, MtlsMode, Section, Table,
};
use bindu_engine::x402::{Pricing, X402Config};
use bindu_ingress::limits::LimitsConfig;
use bindu_ingress::negotiation::NegotiationConfig;
use bindu_ingress::options::{
    AgentConfig, AuthConfig, CacheConfig, HydraConfig, MtlsConfig, ServerConfig,
};
use bindu_ingress::payments::Prices;
use bindu_ingress::skills::{SkillSource, Skills};
use bindu_workers::options::{HandlerKind, OpenAiConfig, PushConfig, WebhookConfig, WorkerConfig};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

bindu_engine::kind! {
    /// Where tasks are stored (`STORAGE_TYPE`).
    pub enum StoreKind("backend") {
        /// In this process only.
        Memory = "memory",
        /// Durable, shared by every process.
        Postgres = "postgres" | "postgresql",
    }
}

bindu_engine::kind! {
    /// How task commands and events travel (`SCHEDULER_TYPE`).
    pub enum BusKind("backend") {
        /// In this process only.
        Memory = "memory",
        /// NATS JetStream, shared by ingress and worker processes.
        Nats = "nats",
        /// Redis Streams (`REDIS_URL`), shared by ingress and worker processes.
        Redis = "redis",
    }
}

bindu_engine::kind! {
    /// Where JetStream keeps its streams (`NATS__STORAGE`).
    pub enum JetStreamStorage("storage") {
        /// Survives server restarts.
        File = "file",
        Memory = "memory",
    }
}

bindu_engine::kind! {
    /// Log lines as text or JSON (`LOGGING__FORMAT`).
    pub enum LogFormat("format") {
        Text = "text",
        Json = "json",
    }
}

bindu_engine::section! {
    /// `[identity]`: the agent's key pair.
    pub struct IdentityConfig in "identity" {
        pub dir: PathBuf = PathBuf::from(".bindu"), env "BINDU_KEY_DIR";
    }
}

impl Section for IdentityConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        let blank = self.dir.to_str().is_some_and(|s| s.trim().is_empty());
        check(!blank, "dir", "must not be empty")
    }
}

bindu_engine::section! {
    /// `[storage]`: the task store.
    pub struct StorageConfig in "storage" {
        pub kind: StoreKind = StoreKind::Memory, env "STORAGE_TYPE" as "type";
        #[serde(with = "fields::secret")]
        pub database_url: Option<SecretString> = None, secret "DATABASE_URL";
        /// Default: the agent's DID.
        pub namespace: Option<String> = None, env "STORAGE__NAMESPACE";
        pub pool_size: u32 = postgres().pool_size, env "STORAGE__POOL_SIZE";
        pub batch_max: usize = postgres().batch_max, env "STORAGE__BATCH_MAX";
        #[serde(with = "fields::millis")]
        pub batch_linger: Duration = postgres().batch_linger,
            env "STORAGE__BATCH_LINGER_MS" as "batch_linger_ms";
        #[serde(with = "fields::secs")]
        pub timeout: Duration = postgres().timeout, env "STORAGE__TIMEOUT" as "timeout_secs";
        /// Batches committed in parallel per process.
        pub writers: usize = postgres().writers, env "STORAGE__WRITERS";
        /// Terminal tasks older than this are deleted; `None` keeps everything.
        #[serde(with = "fields::opt_duration")]
        pub retention: Option<Duration> = None, env "STORAGE__RETENTION";
        pub memory_max_tasks: usize = bindu_engine::store::memory::DEFAULT_MAX_TASKS,
            env "STORAGE__MEMORY_MAX_TASKS";
        /// Postgres: stored tasks are counted for `/metrics` at most once per this interval.
        #[serde(with = "fields::duration")]
        pub count_interval: Duration = postgres().count_interval, env "STORAGE__COUNT_INTERVAL";
        /// Idempotent sends: a message resent with the same `messageId` by the same caller
        /// within this long gets the first one's task; 0 turns it off.
        #[serde(with = "fields::duration")]
        pub dedupe_window: Duration = bindu_ingress::IngressOptions::default().dedupe_window,
            env "STORAGE__DEDUPE_WINDOW";
    }
}

/// The Postgres store's defaults.
fn postgres() -> bindu_engine::store::PostgresOptions {
    bindu_engine::store::PostgresOptions::new("", "")
}

impl Section for StorageConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        use secrecy::ExposeSecret;
        let ok = match &self.database_url {
            None => true,
            Some(u) => {
                let u = u.expose_secret();
                u.starts_with("postgres://") || u.starts_with("postgresql://")
            }
        };
        check(
            ok,
            "database_url",
            "expected a postgres:// or postgresql:// URL",
        )?;
        bindu_engine::config::none_if_blank(&mut self.namespace);
        within(self.pool_size, 2, 1000, "pool_size")?;
        within(self.batch_max, 1, 100_000, "batch_max")?;
        within(self.writers, 1, 64, "writers")?;
        check(
            self.batch_linger <= Duration::from_secs(1),
            "batch_linger_ms",
            "must be at most 1000",
        )?;
        at_least(self.timeout.as_secs(), 1, "timeout_secs")?;
        check(
            self.count_interval >= Duration::from_secs(1),
            "count_interval",
            "must be at least 1s",
        )?;
        check(
            self.dedupe_window <= Duration::from_secs(30 * 86_400),
            "dedupe_window",
            "must be at most 30d (0 turns idempotent sends off)",
        )?;
        at_least(self.memory_max_tasks, 1, "memory_max_tasks")
    }
}

bindu_engine::section! {
    /// `[scheduler]`: the task bus.
    pub struct SchedulerConfig in "scheduler" {
        pub kind: BusKind = BusKind::Memory, env "SCHEDULER_TYPE" as "type";
        /// Memory bus: commands waiting for a worker before senders wait.
        pub queue_capacity: usize = 65_536, env "SCHEDULER__QUEUE_CAPACITY";
    }
}

impl Section for SchedulerConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        at_least(self.queue_capacity, 1, "queue_capacity")
    }
}

bindu_engine::section! {
    /// `[nats]`: the JetStream bus.
    pub struct NatsConfig in "nats" {
        pub url: Option<String> = None, env "NATS_URL";
        pub replicas: usize = nats().replicas, env "NATS__REPLICAS";
        pub storage: JetStreamStorage = match nats().storage {
            NatsStorage::File => JetStreamStorage::File,
            NatsStorage::Memory => JetStreamStorage::Memory,
        }, env "NATS__STORAGE";
        #[serde(with = "fields::duration")]
        pub event_retention: Duration = nats().event_max_age, env "NATS__EVENT_RETENTION";
        #[serde(with = "fields::secs")]
        pub ack_wait: Duration = nats().ack_wait, env "NATS__ACK_WAIT" as "ack_wait_secs";
        pub max_deliver: i64 = nats().max_deliver, env "NATS__MAX_DELIVER";
        pub wait_for_server: bool = nats().wait_for_server, env "NATS__WAIT_FOR_SERVER";
        pub command_batch: usize = nats().command_batch, env "NATS__COMMAND_BATCH";
    }
}

bindu_engine::section! {
    /// `[redis_bus]`: the Redis Streams bus (`SCHEDULER_TYPE=redis`, on `REDIS_URL`).
    pub struct RedisBusConfig in "redis_bus" {
        #[serde(with = "fields::duration")]
        pub event_retention: Duration = redis_bus().event_retention, env "REDIS_BUS__EVENT_RETENTION";
        #[serde(with = "fields::secs")]
        pub ack_wait: Duration = redis_bus().ack_wait, env "REDIS_BUS__ACK_WAIT" as "ack_wait_secs";
        pub max_deliver: u64 = redis_bus().max_deliver, env "REDIS_BUS__MAX_DELIVER";
    }
}

/// The Redis bus's defaults.
fn redis_bus() -> bindu_engine::bus::RedisBusOptions {
    bindu_engine::bus::RedisBusOptions::new("", "")
}

impl Section for RedisBusConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        check_bus(self.event_retention, self.ack_wait, self.max_deliver)
    }
}

/// What both durable buses check: events kept a while, an ack wait of a second or more, and
/// 1-1000 deliveries.
fn check_bus(
    event_retention: Duration,
    ack_wait: Duration,
    max_deliver: u64,
) -> Result<(), Invalid> {
    check(
        !event_retention.is_zero(),
        "event_retention",
        "must be longer than zero",
    )?;
    at_least(ack_wait.as_secs(), 1, "ack_wait_secs")?;
    within(max_deliver, 1, 1000, "max_deliver")
}

impl Config {
    /// How long a command's worker may stay silent before the bus gives the command to
    /// another: a running handler reports progress three times per this.
    pub fn bus_ack_wait(&self) -> Duration {
        match self.scheduler.kind {
            BusKind::Redis => self.redis_bus.ack_wait,
            _ => self.nats.ack_wait,
        }
    }
}

/// The JetStream bus's defaults.
fn nats() -> bindu_engine::bus::NatsOptions {
    bindu_engine::bus::NatsOptions::new("", "")
}

impl Section for NatsConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        url_with(&mut self.url, &["nats", "tls"], "url")?;
        within(self.replicas, 1, 5, "replicas")?;
        // A negative count is out of range like zero.
        let max_deliver = u64::try_from(self.max_deliver).unwrap_or(0);
        check_bus(self.event_retention, self.ack_wait, max_deliver)?;
        within(self.command_batch, 1, 1000, "command_batch")
    }
}

bindu_engine::section! {
    /// `[logging]`.
    pub struct LoggingConfig in "logging" {
        /// A level or a tracing filter such as `info,bindu_ingress=debug`.
        pub default_level: String = "info".into(), env "LOGGING__DEFAULT_LEVEL";
        pub format: LogFormat = LogFormat::Text, env "LOGGING__FORMAT";
    }
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl Section for LoggingConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        let level = self.default_level.trim().to_ascii_lowercase();
        check(
            !level.is_empty() && (level.contains('=') || LEVELS.contains(&level.as_str())),
            "default_level",
            &format!(
                "expected one of {} or a tracing filter, got {:?}",
                LEVELS.join(", "),
                self.default_level
            ),
        )?;
        self.default_level = level;
        Ok(())
    }
}

/// Declares the configuration's sections once: the struct, its keys and its checks.
macro_rules! sections {
    ($($field:ident: $ty:ty),+ $(,)?) => {
        /// The effective configuration. Its `Debug` output is [`Config::render`]'s: secrets
        /// redacted.
        #[derive(Clone, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(pub $field: $ty,)+
            /// Where each key that is not at its default came from.
            #[serde(skip)]
            sources: Arc<BTreeMap<String, String>>,
        }

        /// Every key, in the order of the README's table.
        pub fn keys() -> Vec<FullKey> {
            let mut keys = Vec::new();
            $(keys.extend(keys_of::<$ty>());)+
            keys
        }

        impl Config {
            /// Each section's own checks; `invalid` names a key and its source.
            fn check_sections(
                &mut self,
                invalid: impl Fn(&str, String) -> ConfigError,
            ) -> Result<(), ConfigError> {
                $(self.$field.check().map_err(|e| {
                    invalid(&format!("{}.{}", <$ty as Table>::NAME, e.field), e.message)
                })?;)+
                Ok(())
            }
        }
    };
}

sections! {
    server: ServerConfig,
    agent: AgentConfig,
    negotiation: NegotiationConfig,
    limits: LimitsConfig,
    auth: AuthConfig,
    mtls: MtlsConfig,
    cache: CacheConfig,
    hydra: HydraConfig,
    x402: X402Config,
    identity: IdentityConfig,
    storage: StorageConfig,
    scheduler: SchedulerConfig,
    nats: NatsConfig,
    redis_bus: RedisBusConfig,
    worker: WorkerConfig,
    openai: OpenAiConfig,
    push: PushConfig,
    webhook: WebhookConfig,
    logging: LoggingConfig,
    telemetry: crate::telemetry::TelemetryConfig,
}

impl Config {
    /// Defaults only.
    pub fn defaults() -> Self {
        Config::default()
    }

    /// Loads the layers: `file` (TOML), then `env` (a lookup, normally the process
    /// environment), then `flags` (key, value, flag name).
    pub fn load(
        file: Option<&Path>,
        env: EnvLookup<'_>,
        flags: &[(&str, String, &str)],
    ) -> Result<Config, ConfigError> {
        let mut layers = Layers::new(keys());
        if let Some(path) = file {
            layers = layers.file(path)?;
        }
        Config::from_layers(&layers.env(env).flags(flags))
    }

    /// A configuration from (dotted key, value) pairs over the defaults, read as the
    /// environment's text would be (for tests and tools; `("server.port", "0")`).
    pub fn from_settings(settings: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let flags: Vec<(&str, String, &str)> = settings
            .iter()
            .map(|(k, v)| (*k, v.to_string(), *k))
            .collect();
        Config::load(None, &|_| None, &flags)
    }

    /// `self` as one layer from `source`, with `env` (when given) over it.
    pub fn relayer(&self, source: &str, env: Option<EnvLookup<'_>>) -> Result<Config, ConfigError> {
        let mut layers = Layers::new(keys()).values(self, source)?;
        if let Some(env) = env {
            layers = layers.env(env);
        }
        Config::from_layers(&layers)
    }

    fn from_layers(layers: &Layers) -> Result<Config, ConfigError> {
        let mut c: Config = layers.extract()?;
        c.check_sections(|key, message| layers.invalid(key, message))?;
        c.sources = Arc::new(layers.sources());
        c.anchor_skill_paths(layers);
        c.validate()?;
        // A bad skill file stops here, with its file, field and problem.
        c.skills()?;
        Ok(c)
    }

    /// Skill paths written in a TOML file are relative to that file's directory; they are
    /// made absolute, so the configuration reads the same files when layered again.
    fn anchor_skill_paths(&mut self, layers: &Layers) {
        for (key, list) in [
            ("agent.skills", &mut self.agent.skills),
            ("agent.private_skills", &mut self.agent.private_skills),
        ] {
            let Some(dir) = layers
                .file_of(key)
                .and_then(|f| f.parent().map(Path::to_path_buf))
            else {
                continue;
            };
            for source in list.iter_mut() {
                if let SkillSource::Path(p) = source {
                    if p.is_relative() {
                        *p = dir.join(&*p);
                    }
                }
            }
        }
    }

    /// Reads the skills `agent.skills` and `agent.private_skills` declare; a bad one is an
    /// error naming its key, file, field and problem.
    pub fn skills(&self) -> Result<Skills, ConfigError> {
        Skills::load(&self.agent).map_err(|e| ConfigError {
            key: keys()
                .iter()
                .find(|k| k.key == e.key)
                .map_or_else(|| e.key.to_string(), FullKey::named),
            source_desc: self.source(e.key),
            message: e.error.to_string(),
        })
    }

    /// Whether `key` was given a value (file, environment or flag) rather than left at its
    /// default.
    pub fn is_set(&self, key: &str) -> bool {
        self.sources.contains_key(key)
    }

    fn source(&self, key: &str) -> String {
        self.sources
            .get(key)
            .cloned()
            .unwrap_or_else(|| bindu_engine::config::DEFAULT_SOURCE.to_string())
    }

    /// Checks that hold across keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, from: &str, message: &str| {
            Err(ConfigError {
                key: key.into(),
                source_desc: self.source(from),
                message: message.into(),
            })
        };
        if !self.agent.private_skills.is_empty() && self.agent.allowed_dids.is_empty() {
            return err(
                "agent.allowed_dids / BINDU_AGENT_ALLOWED_DIDS",
                "agent.private_skills",
                "private skills are shown only to the callers agent.allowed_dids lists: list their DIDs",
            );
        }
        let authenticates =
            self.auth.enabled || (self.mtls.client_certs() && self.mtls.mode == MtlsMode::Mtls);
        if !self.agent.allowed_dids.is_empty() && !authenticates {
            return err(
                "agent.allowed_dids / BINDU_AGENT_ALLOWED_DIDS",
                "agent.allowed_dids",
                "the private card goes only to the callers agent.allowed_dids lists, and only authentication says who calls: set AUTH__ENABLED=true (or MTLS__ENABLED=true with MTLS__MODE=mtls)",
            );
        }
        if self.auth.enabled && self.hydra.admin_url.is_none() {
            return err(
                "hydra.admin_url / HYDRA__ADMIN_URL",
                "auth.enabled",
                "AUTH__ENABLED=true needs HYDRA__ADMIN_URL",
            );
        }
        if self.mtls.enabled {
            match self.mtls.mode {
                MtlsMode::Hybrid if !self.auth.enabled => {
                    return err("mtls.mode / MTLS__MODE", "mtls.mode", "MTLS__MODE=hybrid checks the client certificate against the Bearer token, so it needs AUTH__ENABLED=true; use MTLS__MODE=mtls for certificate-only authentication");
                }
                MtlsMode::Mtls if self.auth.enabled => {
                    return err("mtls.mode / MTLS__MODE", "mtls.mode", "MTLS__MODE=mtls makes the client certificate the only credential (no token, no DID request signature); set AUTH__ENABLED=false, or use MTLS__MODE=hybrid to require both");
                }
                _ => {}
            }
        }
        if let Err(e) = self.pricing() {
            return err("agent.execution_cost", "agent.execution_cost", &e);
        }
        // A kind that needs a setting it does not have: the first one missing.
        let needs = [
            (
                self.scheduler.kind == BusKind::Nats && self.nats.url.is_none(),
                "nats.url / NATS_URL",
                "scheduler.type",
                "SCHEDULER_TYPE=nats needs NATS_URL",
            ),
            (
                self.scheduler.kind == BusKind::Redis && self.cache.redis_url.is_none(),
                "cache.redis_url / REDIS_URL",
                "scheduler.type",
                "SCHEDULER_TYPE=redis needs REDIS_URL",
            ),
            (
                self.worker.handler == HandlerKind::Command && self.worker.command.is_empty(),
                "worker.command / BINDU_HANDLER_COMMAND",
                "worker.handler",
                "BINDU_HANDLER=command needs BINDU_HANDLER_COMMAND (e.g. \"python3 agent.py\")",
            ),
            (
                self.worker.handler == HandlerKind::OpenAi && self.openai.model.is_none(),
                "openai.model / BINDU_HANDLER_MODEL",
                "worker.handler",
                "BINDU_HANDLER=openai needs BINDU_HANDLER_MODEL",
            ),
            (
                self.storage.kind == StoreKind::Postgres && self.storage.database_url.is_none(),
                "storage.database_url / DATABASE_URL",
                "storage.type",
                "STORAGE_TYPE=postgres needs DATABASE_URL",
            ),
        ];
        if let Some((_, key, field, message)) = needs.into_iter().find(|n| n.0) {
            return err(key, field, message);
        }
        Ok(())
    }

    /// The agent's price (x402): `None` when it is free (no `agent.execution_cost`).
    pub fn pricing(&self) -> std::result::Result<Option<Pricing>, String> {
        Pricing::new(&self.agent.execution_cost, &self.x402)
    }

    /// The agent's and its skills' prices (x402; `skills` as [`Config::skills`] read them).
    /// The error names the skill list and the skill at fault.
    pub fn prices(&self, skills: &Skills) -> Result<Prices, ConfigError> {
        Prices::new(&self.agent.execution_cost, skills, &self.x402).map_err(|message| {
            let key = if self.agent.execution_cost.is_empty() || message.starts_with("skill ") {
                "agent.skills"
            } else {
                "agent.execution_cost"
            };
            ConfigError {
                key: keys()
                    .iter()
                    .find(|k| k.key == key)
                    .map_or_else(|| key.to_string(), FullKey::named),
                source_desc: self.source(key),
                message,
            }
        })
    }

    /// Why this configuration cannot take payments in `role`, if so: every ingress of a
    /// `priced` agent (its price or a skill's, see [`Config::prices`]) that is not the only
    /// process must share the payment replay guard in Redis (a guard in each process's
    /// memory would let one payment through on each).
    pub fn payments_problem(&self, role: crate::Role, priced: bool) -> Option<String> {
        let alone = role == crate::Role::Serve && self.scheduler.kind == BusKind::Memory;
        (priced && role != crate::Role::Worker && !alone && self.cache.redis_url.is_none())
            .then(|| "a priced agent (agent.execution_cost, or a skill's execution_cost) with more than one process needs REDIS_URL: its ingress replicas claim each payment's nonce in Redis, so a payment cannot be replayed on another replica".to_string())
    }

    /// Why this configuration cannot run as separate ingress or worker processes, if so.
    pub fn distributed_problem(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.storage.kind != StoreKind::Postgres {
            why.push("STORAGE_TYPE=memory keeps tasks inside one process, so an ingress and its workers would not see each other's tasks: set STORAGE_TYPE=postgres and DATABASE_URL");
        }
        if self.scheduler.kind == BusKind::Memory {
            why.push("SCHEDULER_TYPE=memory queues work inside one process, so no other process could take it: set SCHEDULER_TYPE=nats and NATS_URL (or SCHEDULER_TYPE=redis and REDIS_URL)");
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The agent's namespace in shared stores and on the bus: `STORAGE__NAMESPACE`, else
    /// the agent's DID.
    pub fn namespace(&self, did: &str) -> String {
        self.storage
            .namespace
            .clone()
            .unwrap_or_else(|| did.to_string())
    }

    /// Whether push notifications are delivered (`PUSH__ENABLED`, or a global webhook).
    pub fn push_enabled(&self) -> bool {
        self.push.delivery_enabled(&self.webhook)
    }

    /// The effective configuration as TOML-like lines with their sources; secrets redacted.
    pub fn render(&self) -> String {
        let mut out = bindu_engine::config::render(self, &keys(), &self.sources);
        for (key, list) in [
            ("agent.skills", &self.agent.skills),
            ("agent.private_skills", &self.agent.private_skills),
        ] {
            let shown: Vec<String> = list
                .iter()
                .map(|s| match s {
                    SkillSource::Path(p) => p.display().to_string(),
                    SkillSource::Inline(s) => format!("{} (inline)", s.id),
                })
                .collect();
            out.push_str(&format!("# {key}: {}\n", shown.join(", ")));
        }
        let prices: Vec<String> = self
            .agent
            .execution_cost
            .iter()
            .map(|p| {
                format!(
                    "{} {} on {}",
                    p.amount,
                    p.token,
                    p.network.as_deref().unwrap_or(&self.x402.default_network)
                )
            })
            .collect();
        if !prices.is_empty() {
            out.push_str(&format!("# agent.execution_cost: {}\n", prices.join(" | ")));
        }
        out
    }
}

impl std::fmt::Debug for Config {
    // Secrets (database and Redis URLs, API keys) are never printed, whatever logs a config
    // with `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Config {\n")?;
        f.write_str(&self.render())?;
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests;
