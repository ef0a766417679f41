//! Layered configuration: defaults < TOML file < environment < CLI flags.
//!
//! Every scalar setting is one row of [`KEYS`]: its TOML key, its environment variable
//! (Bindu's names where Bindu has one), its default and whether it is secret. All sources go
//! through the same [`Config::set`], so a bad value is reported the same way wherever it came
//! from, naming the key and the source. The README's configuration table mirrors [`KEYS`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bindu_schemas::AgentSkill;

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted TOML key, e.g. `server.port`.
    pub key: &'static str,
    /// Environment variable, e.g. `BINDU_PORT`.
    pub env: &'static str,
    pub default: &'static str,
    /// Redacted by `bindu config`.
    pub secret: bool,
    pub help: &'static str,
}

macro_rules! keys {
    ($($key:literal, $env:literal, $default:literal, $secret:literal, $help:literal;)*) => {
        /// Every scalar configuration key.
        pub const KEYS: &[KeySpec] = &[$(KeySpec { key: $key, env: $env, default: $default, secret: $secret, help: $help },)*];
    };
}

keys! {
    "server.host", "BINDU_HOST", "127.0.0.1", false, "Address the HTTP server binds to.";
    "server.port", "BINDU_PORT", "3773", false, "TCP port of the HTTP server (0 picks a free one).";
    "server.deployment_url", "BINDU_DEPLOYMENT_URL", "", false, "Public base URL put in the agent card; default http://<host>:<bound port>.";
    "server.max_body_bytes", "BINDU_MAX_BODY_BYTES", "10485760", false, "Largest request body accepted; larger ones are refused with HTTP 413 before being read whole.";
    "server.shutdown_timeout_secs", "BINDU_SHUTDOWN_TIMEOUT", "30", false, "On SIGTERM/Ctrl-C, how long in-flight requests and tasks may take to finish.";
    "server.sse_keepalive_secs", "BINDU_SSE_KEEPALIVE", "15", false, "Interval of SSE keep-alive comments on open streams.";
    "agent.name", "BINDU_AGENT_NAME", "bindu-echo", false, "Agent name (card, DID).";
    "agent.description", "BINDU_AGENT_DESCRIPTION", "Echoes every message back; the bindu demo agent.", false, "Agent description (card).";
    "agent.version", "BINDU_AGENT_VERSION", "0.1.0", false, "The agent's own version (card).";
    "agent.author", "BINDU_AGENT_AUTHOR", "", false, "Author (e-mail or organisation): card provider and the DID did:bindu:<author>:<name>:<id>; unset → the agent's DID is its did:key.";
    "agent.provider_url", "BINDU_AGENT_PROVIDER_URL", "", false, "Provider URL (card provider, with agent.author).";
    "agent.documentation_url", "BINDU_AGENT_DOCUMENTATION_URL", "", false, "Documentation URL (card).";
    "agent.extended_card_file", "BINDU_EXTENDED_CARD_FILE", "", false, "JSON file whose fields override the public card for agent/getAuthenticatedExtendedCard; unset → -32007.";
    "auth.enabled", "AUTH__ENABLED", "false", false, "Require a Hydra-issued Bearer token on JSON-RPC requests (public paths stay open).";
    "auth.allowed_dids", "AUTH__ALLOWED_DIDS", "", false, "Comma-separated DIDs (token client ids) admitted; empty admits every valid token.";
    "auth.signature_window_secs", "AUTH__SIGNATURE_WINDOW", "300", false, "Accepted clock difference of X-DID-Timestamp, in seconds (either direction).";
    "auth.require_permissions", "AUTH__REQUIRE_PERMISSIONS", "false", false, "Enforce per-method scopes: agent:read for reads, agent:write for sends and changes (403, -32013).";
    "auth.replay_guard", "AUTH__REPLAY_GUARD", "true", false, "Refuse a DID signature already seen within the window (reason `replayed`).";
    "mtls.enabled", "MTLS__ENABLED", "false", false, "Serve HTTPS (rustls) with mtls.cert_file / mtls.key_file; client certificates are checked as mtls.mode says.";
    "mtls.mode", "MTLS__MODE", "hybrid", false, "hybrid: client certificate AND Bearer token, the certificate's DID must equal the token's client id (needs AUTH__ENABLED); mtls: the certificate alone identifies the caller (no token, no DID request signature; AUTH__ENABLED must be false); off: HTTPS only, client certificates unused.";
    "mtls.require_client_cert", "MTLS__REQUIRE_CLIENT_CERT", "true", false, "Refuse the TLS handshake without a valid client certificate (every path); false: optional at the handshake, still required for JSON-RPC in hybrid and mtls modes (public paths then work without one).";
    "mtls.cert_file", "MTLS__CERT_FILE", "", false, "PEM server certificate followed by its chain; default <identity.dir>/tls_cert.pem.";
    "mtls.key_file", "MTLS__KEY_FILE", "", false, "PEM private key of the server certificate (keep it mode 0600); default <identity.dir>/tls_key.pem.";
    "mtls.ca_file", "MTLS__CA_FILE", "", false, "PEM bundle of the CAs whose client certificates are accepted; default <identity.dir>/ca_bundle.pem.";
    "cache.redis_url", "REDIS_URL", "", true, "Redis shared by ingress replicas for token introspections, caller keys and the DID replay guard (e.g. redis://127.0.0.1:6379).";
    "hydra.admin_url", "HYDRA__ADMIN_URL", "", false, "Ory Hydra admin API base URL (token introspection, client keys); required with AUTH__ENABLED.";
    "hydra.cache_ttl_secs", "HYDRA__CACHE_TTL", "300", false, "Longest an introspection result or client key is cached (never past the token's exp).";
    "hydra.timeout_secs", "HYDRA__TIMEOUT", "5", false, "Timeout of one Hydra request; a slow or unreachable Hydra gives HTTP 503 (-32603).";
    "hydra.sensitive_scopes", "HYDRA__SENSITIVE_SCOPES", "", false, "Comma-separated scopes whose tokens are never cached.";
    "identity.dir", "BINDU_KEY_DIR", ".bindu", false, "Directory of the agent's Ed25519 key pair (private.pem, mode 0600; public.pem), created on first start and reused.";
    "storage.type", "STORAGE_TYPE", "memory", false, "Task store backend: memory (one process) or postgres (durable, shared by every process).";
    "storage.database_url", "DATABASE_URL", "", true, "Postgres URL, e.g. postgres://user:password@127.0.0.1:5432/bindu (required with STORAGE_TYPE=postgres).";
    "storage.namespace", "STORAGE__NAMESPACE", "", false, "Namespace of this agent's rows in a shared database and of its subjects on the bus; default: the agent's DID.";
    "storage.pool_size", "STORAGE__POOL_SIZE", "8", false, "Postgres connections per process.";
    "storage.batch_max", "STORAGE__BATCH_MAX", "512", false, "Most task writes group-committed in one Postgres transaction.";
    "storage.batch_linger_ms", "STORAGE__BATCH_LINGER_MS", "1", false, "How long a batch waits for more writes before committing (0: commit at once).";
    "storage.timeout_secs", "STORAGE__TIMEOUT", "5", false, "Longest a store operation may take, retries of transient errors included; then the request fails with -32603.";
    "storage.retention", "STORAGE__RETENTION", "", false, "Delete terminal tasks older than this (e.g. 30d, 12h); checked hourly. Unset: keep everything.";
    "storage.memory_max_tasks", "STORAGE__MEMORY_MAX_TASKS", "1000000", false, "Memory store bound; beyond it the oldest terminal tasks are evicted.";
    "scheduler.type", "SCHEDULER_TYPE", "memory", false, "Bus backend: memory (one process) or nats (JetStream; ingress and worker processes).";
    "nats.url", "NATS_URL", "", false, "NATS server URL, e.g. nats://127.0.0.1:4222 (required with SCHEDULER_TYPE=nats).";
    "nats.replicas", "NATS__REPLICAS", "1", false, "JetStream stream replicas (1 for a single server).";
    "nats.storage", "NATS__STORAGE", "file", false, "JetStream storage: file (survives server restarts) or memory.";
    "nats.event_retention", "NATS__EVENT_RETENTION", "24h", false, "How long task events stay replayable on the bus (resubscribe, Last-Event-ID).";
    "nats.ack_wait_secs", "NATS__ACK_WAIT", "30", false, "Seconds before an unacknowledged command is redelivered; running handlers extend it with in-progress acks.";
    "nats.max_deliver", "NATS__MAX_DELIVER", "5", false, "Deliveries of one command before its task is failed and the command dead-lettered.";
    "nats.wait_for_server", "NATS__WAIT_FOR_SERVER", "false", false, "At start-up, wait (retrying) for NATS instead of exiting with an error.";
    "scheduler.queue_capacity", "SCHEDULER__QUEUE_CAPACITY", "65536", false, "Memory bus: commands waiting for a worker before senders wait (back-pressure).";
    "worker.handler", "BINDU_HANDLER", "echo", false, "Handler run by `bindu serve` and `bindu worker`: echo, command (BINDU_HANDLER_COMMAND) or openai (OPENAI_BASE_URL, BINDU_HANDLER_MODEL).";
    "worker.concurrency", "BINDU_WORKER_CONCURRENCY", "256", false, "Tasks one worker process runs at once.";
    "worker.echo_delay_ms", "BINDU_ECHO_DELAY_MS", "0", false, "Echo handler: milliseconds of simulated work before replying (demos and load tests).";
    "worker.task_timeout", "BINDU_TASK_TIMEOUT", "10m", false, "Longest one handler run may take (e.g. 90s, 10m); then it is interrupted and the task fails. 0: no limit.";
    "worker.max_output_bytes", "BINDU_MAX_OUTPUT_BYTES", "10485760", false, "Most bytes of output (artifact parts, streamed chunks, status messages) one handler run may produce; beyond it the task fails.";
    "worker.history_sessions", "BINDU_NUM_HISTORY_SESSIONS", "0", false, "Earlier tasks of the same context (the newest N, at most 100) given to the handler with their history and artifacts, like Bindu's num_history_sessions. 0: only the task's own history.";
    "worker.command", "BINDU_HANDLER_COMMAND", "", false, "command handler: the program and its arguments, split on spaces with single/double quotes and no shell, e.g. `python3 agent.py`.";
    "worker.command_processes", "BINDU_HANDLER_PROCESSES", "4", false, "command handler: long-lived processes, each running one task at a time; more tasks wait for a free one.";
    "openai.base_url", "OPENAI_BASE_URL", "https://api.openai.com/v1", false, "openai handler: base URL of an OpenAI-compatible API; requests go to <base>/chat/completions (Ollama: http://127.0.0.1:11434/v1).";
    "openai.api_key", "OPENAI_API_KEY", "", true, "openai handler: API key, sent as a Bearer token (unset for local servers).";
    "openai.model", "BINDU_HANDLER_MODEL", "", false, "openai handler: the model name (required with BINDU_HANDLER=openai).";
    "openai.system_prompt", "BINDU_HANDLER_SYSTEM_PROMPT", "", false, "openai handler: system message put before the conversation.";
    "openai.timeout_secs", "OPENAI_TIMEOUT", "60", false, "openai handler: longest wait for the response to start and between two streamed chunks.";
    "openai.max_retries", "OPENAI_MAX_RETRIES", "3", false, "openai handler: retries of a 429, a 5xx or a connection error before the first token, with exponential back-off that honours Retry-After.";
    "push.enabled", "PUSH__ENABLED", "false", false, "Deliver push notifications (webhooks): run the dispatcher in `bindu serve` and advertise capabilities.pushNotifications. Setting WEBHOOK_URL also enables it.";
    "push.destinations", "PUSH__DESTINATIONS", "public", false, "Which webhook addresses may be contacted: a comma list of public, private (RFC 1918, unique-local, CGNAT), loopback. Link-local (incl. 169.254.169.254), multicast and unspecified addresses are always refused.";
    "push.max_attempts", "PUSH__MAX_ATTEMPTS", "8", false, "Delivery attempts of one notification to one webhook before it becomes a dead letter.";
    "push.retry_base_ms", "PUSH__RETRY_BASE_MS", "1000", false, "First retry delay (exponential back-off with full jitter).";
    "push.retry_max_ms", "PUSH__RETRY_MAX_MS", "300000", false, "Longest retry delay; a Retry-After header is honoured up to 10 minutes.";
    "push.timeout_secs", "PUSH__TIMEOUT", "10", false, "Timeout of one webhook request (connect, send, response).";
    "push.per_host_concurrency", "PUSH__PER_HOST_CONCURRENCY", "8", false, "Requests in flight to one webhook host at once.";
    "push.max_in_flight", "PUSH__MAX_IN_FLIGHT", "10000", false, "Task events the dispatcher holds (queued or being delivered) before it stops taking more from the bus.";
    "push.sign", "PUSH__SIGN", "true", false, "Sign every notification with the agent's DID key (X-DID, X-DID-Timestamp, X-DID-Signature over the exact body).";
    "push.metrics_addr", "PUSH__METRICS_ADDR", "", false, "`bindu dispatcher` only: address serving its /metrics and /healthz, e.g. 127.0.0.1:9464 (unset: none). `bindu serve` shows the dispatcher's metrics on its own /metrics.";
    "push.consumer", "PUSH__CONSUMER", "webhooks", false, "Name of the dispatcher's durable consumer of task events (one active dispatcher per name).";
    "webhook.url", "WEBHOOK_URL", "", false, "Global webhook: receives the notifications of every task that has no push config of its own.";
    "webhook.token", "WEBHOOK_TOKEN", "", true, "Token sent to the global webhook (Authorization: Bearer and X-A2A-Notification-Token).";
    "logging.default_level", "LOGGING__DEFAULT_LEVEL", "info", false, "Log level (trace, debug, info, warn, error) or a tracing filter such as `info,bindu_ingress=debug`.";
    "logging.format", "LOGGING__FORMAT", "text", false, "Log format: text or json.";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Memory,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Memory,
    Nats,
}

#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: Option<String>,
    pub replicas: usize,
    pub memory_storage: bool,
    pub event_retention: Duration,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub wait_for_server: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub deployment_url: Option<String>,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub sse_keepalive_secs: u64,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub description: String,
    pub version: String,
    pub author: Option<String>,
    pub provider_url: Option<String>,
    pub documentation_url: Option<String>,
    pub extended_card_file: Option<PathBuf>,
    /// From the TOML file's `[[agent.skills]]`; the echo skill when none are given.
    pub skills: Vec<AgentSkill>,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub enabled: bool,
    pub allowed_dids: Vec<String>,
    pub signature_window: Duration,
    pub replay_guard: bool,
    pub require_permissions: bool,
    pub redis_url: Option<String>,
    pub hydra_admin_url: Option<String>,
    pub cache_ttl: Duration,
    pub hydra_timeout: Duration,
    pub sensitive_scopes: Vec<String>,
}

/// What a client certificate means for JSON-RPC requests (`MTLS__MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Certificate and Bearer token are both required; the certificate's DID must equal the
    /// token's client id (and `X-DID` for signed requests).
    Hybrid,
    /// The certificate alone identifies the caller: no token, no DID request signature.
    Mtls,
    /// HTTPS only: client certificates are not used.
    Off,
}

#[derive(Debug, Clone)]
pub struct MtlsConfig {
    pub enabled: bool,
    pub mode: MtlsMode,
    pub require_client_cert: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl MtlsConfig {
    /// Whether client certificates take part in authentication.
    pub fn client_certs(&self) -> bool {
        self.enabled && self.mode != MtlsMode::Off
    }
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub kind: StorageKind,
    pub memory_max_tasks: usize,
    pub database_url: Option<String>,
    pub namespace: Option<String>,
    pub pool_size: u32,
    pub batch_max: usize,
    pub batch_linger: Duration,
    pub timeout: Duration,
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub kind: SchedulerKind,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub handler: String,
    pub concurrency: usize,
    pub echo_delay: Duration,
    /// `None`: no limit.
    pub task_timeout: Option<Duration>,
    pub max_output_bytes: usize,
    pub history_sessions: usize,
    /// The command handler's program and arguments.
    pub command: Vec<String>,
    pub command_processes: usize,
}

/// The `openai` handler's settings.
#[derive(Clone)]
pub struct OpenAiConfig {
    pub base_url: String,
    /// Secret: never logged (the `Debug` output redacts it).
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("system_prompt", &self.system_prompt)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// Which kinds of webhook address the dispatcher may contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushDestinations {
    pub public: bool,
    pub private: bool,
    pub loopback: bool,
}

#[derive(Debug, Clone)]
pub struct PushConfig {
    pub enabled: bool,
    pub destinations: PushDestinations,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    pub per_host_concurrency: usize,
    pub max_in_flight: usize,
    pub sign: bool,
    pub consumer: String,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub webhook_url: Option<String>,
    pub webhook_token: Option<String>,
}

impl PushConfig {
    /// Delivery runs when enabled explicitly or when a global webhook is set.
    pub fn delivery_enabled(&self) -> bool {
        self.enabled || self.webhook_url.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub default_level: String,
    pub format: LogFormat,
}

/// The effective configuration. Its `Debug` output is [`Config::render`]'s: secrets redacted.
#[derive(Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub agent: AgentConfig,
    pub identity: IdentityConfig,
    pub auth: AuthConfig,
    pub mtls: MtlsConfig,
    pub storage: StorageConfig,
    pub scheduler: SchedulerConfig,
    pub nats: NatsConfig,
    pub worker: WorkerConfig,
    pub openai: OpenAiConfig,
    pub push: PushConfig,
    pub logging: LoggingConfig,
    /// Raw value and source of every key, for `bindu config`.
    values: BTreeMap<&'static str, (String, Source)>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A setting that could not be used. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}` (from {source_desc}): {message}")]
pub struct ConfigError {
    pub key: String,
    pub source_desc: String,
    pub message: String,
}

fn default_skill() -> AgentSkill {
    AgentSkill {
        id: "echo".into(),
        name: "echo".into(),
        description: "Replies with the parts of the user's last message.".into(),
        tags: vec!["echo".into(), "demo".into()],
        examples: Some(vec!["Hello, agent!".into()]),
        input_modes: None,
        output_modes: None,
        security: None,
    }
}

fn parse_num<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected {what}, got {v:?}"))
}

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

fn non_empty(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn http_url(v: &str) -> Result<Option<String>, String> {
    match non_empty(v) {
        None => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(Some(u.trim_end_matches('/').to_string()))
        }
        Some(u) => Err(format!("expected an http:// or https:// URL, got {u:?}")),
    }
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl Config {
    /// Defaults only.
    pub fn defaults() -> Self {
        let mut c = Config {
            server: ServerConfig {
                host: String::new(),
                port: 0,
                deployment_url: None,
                max_body_bytes: 0,
                shutdown_timeout_secs: 0,
                sse_keepalive_secs: 0,
            },
            agent: AgentConfig {
                name: String::new(),
                description: String::new(),
                version: String::new(),
                author: None,
                provider_url: None,
                documentation_url: None,
                extended_card_file: None,
                skills: vec![default_skill()],
            },
            identity: IdentityConfig {
                dir: PathBuf::new(),
            },
            auth: AuthConfig {
                enabled: false,
                allowed_dids: Vec::new(),
                signature_window: Duration::ZERO,
                replay_guard: true,
                require_permissions: false,
                redis_url: None,
                hydra_admin_url: None,
                cache_ttl: Duration::ZERO,
                hydra_timeout: Duration::ZERO,
                sensitive_scopes: Vec::new(),
            },
            mtls: MtlsConfig {
                enabled: false,
                mode: MtlsMode::Hybrid,
                require_client_cert: true,
                cert_file: None,
                key_file: None,
                ca_file: None,
            },
            storage: StorageConfig {
                kind: StorageKind::Memory,
                memory_max_tasks: 0,
                database_url: None,
                namespace: None,
                pool_size: 0,
                batch_max: 0,
                batch_linger: Duration::ZERO,
                timeout: Duration::ZERO,
                retention: None,
            },
            scheduler: SchedulerConfig {
                kind: SchedulerKind::Memory,
                queue_capacity: 0,
            },
            nats: NatsConfig {
                url: None,
                replicas: 1,
                memory_storage: false,
                event_retention: Duration::ZERO,
                ack_wait: Duration::ZERO,
                max_deliver: 0,
                wait_for_server: false,
            },
            worker: WorkerConfig {
                handler: String::new(),
                concurrency: 0,
                echo_delay: Duration::ZERO,
                task_timeout: None,
                max_output_bytes: 0,
                history_sessions: 0,
                command: Vec::new(),
                command_processes: 0,
            },
            openai: OpenAiConfig {
                base_url: String::new(),
                api_key: None,
                model: None,
                system_prompt: None,
                timeout: Duration::ZERO,
                max_retries: 0,
            },
            push: PushConfig {
                enabled: false,
                destinations: PushDestinations::default(),
                max_attempts: 1,
                retry_base: Duration::ZERO,
                retry_max: Duration::ZERO,
                timeout: Duration::ZERO,
                per_host_concurrency: 1,
                max_in_flight: 1,
                sign: true,
                consumer: String::new(),
                metrics_addr: None,
                webhook_url: None,
                webhook_token: None,
            },
            logging: LoggingConfig {
                default_level: String::new(),
                format: LogFormat::Text,
            },
            values: BTreeMap::new(),
        };
        for k in KEYS {
            // Defaults are compile-time constants checked by the tests below.
            if let Err(e) = c.set(k.key, k.default, Source::Default) {
                panic!("bad default for {}: {e}", k.key);
            }
        }
        c
    }

    /// Loads the layers: `file` (TOML), then `env` (a lookup, normally the process
    /// environment), then `flags` (key, value, flag name).
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &[(&str, String, &str)],
    ) -> Result<Config, ConfigError> {
        let mut c = Config::defaults();
        if let Some(path) = file {
            c.apply_file(path)?;
        }
        for k in KEYS {
            if let Some(v) = env(k.env) {
                c.set(k.key, &v, Source::Env(k.env))?;
            }
        }
        for (key, value, flag) in flags {
            c.set(key, value, Source::Flag(flag.to_string()))?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks that hold across keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.auth.enabled && self.auth.hydra_admin_url.is_none() {
            let source = self
                .values
                .get("auth.enabled")
                .map(|(_, s)| s.to_string())
                .unwrap_or_default();
            return Err(ConfigError {
                key: "hydra.admin_url / HYDRA__ADMIN_URL".into(),
                source_desc: source,
                message: "AUTH__ENABLED=true needs HYDRA__ADMIN_URL".into(),
            });
        }
        if self.mtls.enabled {
            let source = |k: &str| {
                self.values
                    .get(k)
                    .map(|(_, s)| s.to_string())
                    .unwrap_or_default()
            };
            match self.mtls.mode {
                MtlsMode::Hybrid if !self.auth.enabled => {
                    return Err(ConfigError {
                        key: "mtls.mode / MTLS__MODE".into(),
                        source_desc: source("mtls.mode"),
                        message: "MTLS__MODE=hybrid checks the client certificate against the Bearer token, so it needs AUTH__ENABLED=true; use MTLS__MODE=mtls for certificate-only authentication".into(),
                    });
                }
                MtlsMode::Mtls if self.auth.enabled => {
                    return Err(ConfigError {
                        key: "mtls.mode / MTLS__MODE".into(),
                        source_desc: source("mtls.mode"),
                        message: "MTLS__MODE=mtls makes the client certificate the only credential (no token, no DID request signature); set AUTH__ENABLED=false, or use MTLS__MODE=hybrid to require both".into(),
                    });
                }
                _ => {}
            }
        }
        if self.scheduler.kind == SchedulerKind::Nats && self.nats.url.is_none() {
            let source = self
                .values
                .get("scheduler.type")
                .map(|(_, s)| s.to_string())
                .unwrap_or_default();
            return Err(ConfigError {
                key: "nats.url / NATS_URL".into(),
                source_desc: source,
                message: "SCHEDULER_TYPE=nats needs NATS_URL".into(),
            });
        }
        let handler_source = || {
            self.values
                .get("worker.handler")
                .map(|(_, s)| s.to_string())
                .unwrap_or_default()
        };
        if self.worker.handler == "command" && self.worker.command.is_empty() {
            return Err(ConfigError {
                key: "worker.command / BINDU_HANDLER_COMMAND".into(),
                source_desc: handler_source(),
                message:
                    "BINDU_HANDLER=command needs BINDU_HANDLER_COMMAND (e.g. \"python3 agent.py\")"
                        .into(),
            });
        }
        if self.worker.handler == "openai" && self.openai.model.is_none() {
            return Err(ConfigError {
                key: "openai.model / BINDU_HANDLER_MODEL".into(),
                source_desc: handler_source(),
                message: "BINDU_HANDLER=openai needs BINDU_HANDLER_MODEL".into(),
            });
        }
        if self.storage.kind == StorageKind::Postgres && self.storage.database_url.is_none() {
            let source = self
                .values
                .get("storage.type")
                .map(|(_, s)| s.to_string())
                .unwrap_or_default();
            return Err(ConfigError {
                key: "storage.database_url / DATABASE_URL".into(),
                source_desc: source,
                message: "STORAGE_TYPE=postgres needs DATABASE_URL".into(),
            });
        }
        Ok(())
    }

    /// Why this configuration cannot run as separate ingress or worker processes, if so.
    pub fn distributed_problem(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.storage.kind != StorageKind::Postgres {
            why.push("STORAGE_TYPE=memory keeps tasks inside one process, so an ingress and its workers would not see each other's tasks: set STORAGE_TYPE=postgres and DATABASE_URL");
        }
        if self.scheduler.kind != SchedulerKind::Nats {
            why.push("SCHEDULER_TYPE=memory queues work inside one process, so no other process could take it: set SCHEDULER_TYPE=nats and NATS_URL");
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

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            key: key.to_string(),
            source_desc: format!("file {}", path.display()),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("--config", format!("cannot read the file: {e}")))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| err("--config", format!("not valid TOML: {e}")))?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            if key == "agent.skills" {
                let skills: Vec<AgentSkill> = value.try_into().map_err(|e| {
                    err(
                        &key,
                        format!("each skill needs id, name and description: {e}"),
                    )
                })?;
                if skills.is_empty() {
                    return Err(err(
                        &key,
                        "list at least one skill or leave the key out".into(),
                    ));
                }
                self.agent.skills = skills;
                continue;
            }
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => {
                    return Err(err(
                        &key,
                        format!("expected a single value, got {}", other.type_str()),
                    ))
                }
            };
            self.set(&key, &text, Source::File(path.to_path_buf()))?;
        }
        Ok(())
    }

    /// Sets one key from its textual value.
    pub fn set(&mut self, key: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let Some(spec) = KEYS.iter().find(|k| k.key == key) else {
            return Err(ConfigError {
                key: key.to_string(),
                source_desc: source.to_string(),
                message: "unknown key (see the configuration table in the README)".into(),
            });
        };
        self.apply(key, value).map_err(|message| ConfigError {
            key: format!("{} / {}", spec.key, spec.env),
            source_desc: source.to_string(),
            message,
        })?;
        self.values.insert(spec.key, (value.to_string(), source));
        Ok(())
    }

    fn apply(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "server.host" => {
                self.server.host = non_empty(v).ok_or("must not be empty")?;
            }
            "server.port" => self.server.port = parse_num(v, "a port number 0-65535")?,
            "server.deployment_url" => self.server.deployment_url = http_url(v)?,
            "server.max_body_bytes" => {
                let n: usize = parse_num(v, "a number of bytes")?;
                if n < 1024 {
                    return Err("must be at least 1024".into());
                }
                self.server.max_body_bytes = n;
            }
            "server.shutdown_timeout_secs" => {
                self.server.shutdown_timeout_secs = parse_num(v, "a number of seconds")?
            }
            "server.sse_keepalive_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.server.sse_keepalive_secs = n;
            }
            "agent.name" => self.agent.name = non_empty(v).ok_or("must not be empty")?,
            "agent.description" => self.agent.description = v.trim().to_string(),
            "agent.version" => self.agent.version = non_empty(v).ok_or("must not be empty")?,
            "agent.author" => self.agent.author = non_empty(v),
            "agent.provider_url" => self.agent.provider_url = http_url(v)?,
            "agent.documentation_url" => self.agent.documentation_url = http_url(v)?,
            "agent.extended_card_file" => {
                self.agent.extended_card_file = non_empty(v).map(PathBuf::from)
            }
            "storage.type" => {
                self.storage.kind = match v.trim().to_ascii_lowercase().as_str() {
                    "memory" => StorageKind::Memory,
                    "postgres" | "postgresql" => StorageKind::Postgres,
                    other => {
                        return Err(format!(
                            "unknown backend {other:?}; supported: memory, postgres"
                        ))
                    }
                }
            }
            "mtls.enabled" => self.mtls.enabled = parse_bool(v)?,
            "mtls.mode" => {
                self.mtls.mode = match v.trim().to_ascii_lowercase().as_str() {
                    "hybrid" => MtlsMode::Hybrid,
                    "mtls" => MtlsMode::Mtls,
                    "off" => MtlsMode::Off,
                    other => {
                        return Err(format!(
                            "unknown mode {other:?}; supported: hybrid, mtls, off"
                        ))
                    }
                }
            }
            "mtls.require_client_cert" => self.mtls.require_client_cert = parse_bool(v)?,
            "mtls.cert_file" => self.mtls.cert_file = non_empty(v).map(PathBuf::from),
            "mtls.key_file" => self.mtls.key_file = non_empty(v).map(PathBuf::from),
            "mtls.ca_file" => self.mtls.ca_file = non_empty(v).map(PathBuf::from),
            "auth.enabled" => self.auth.enabled = parse_bool(v)?,
            "auth.allowed_dids" => self.auth.allowed_dids = comma_list(v),
            "auth.signature_window_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if !(1..=86_400).contains(&n) {
                    return Err("must be between 1 and 86400".into());
                }
                self.auth.signature_window = Duration::from_secs(n);
            }
            "auth.replay_guard" => self.auth.replay_guard = parse_bool(v)?,
            "auth.require_permissions" => self.auth.require_permissions = parse_bool(v)?,
            "hydra.admin_url" => self.auth.hydra_admin_url = http_url(v)?,
            "cache.redis_url" => {
                self.auth.redis_url = match non_empty(v) {
                    None => None,
                    Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => Some(u),
                    Some(_) => return Err("expected a redis:// or rediss:// URL".into()),
                }
            }
            "hydra.cache_ttl_secs" => {
                self.auth.cache_ttl = Duration::from_secs(parse_num(v, "a number of seconds")?)
            }
            "hydra.timeout_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.auth.hydra_timeout = Duration::from_secs(n);
            }
            "hydra.sensitive_scopes" => self.auth.sensitive_scopes = comma_list(v),
            "identity.dir" => {
                self.identity.dir = PathBuf::from(non_empty(v).ok_or("must not be empty")?)
            }
            "storage.database_url" => {
                self.storage.database_url = match non_empty(v) {
                    None => None,
                    Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                        Some(u)
                    }
                    Some(_) => return Err("expected a postgres:// or postgresql:// URL".into()),
                }
            }
            "storage.namespace" => self.storage.namespace = non_empty(v),
            "storage.pool_size" => {
                let n: u32 = parse_num(v, "a number of connections")?;
                if !(2..=1000).contains(&n) {
                    return Err("must be between 2 and 1000".into());
                }
                self.storage.pool_size = n;
            }
            "storage.batch_max" => {
                let n: usize = parse_num(v, "a number of writes")?;
                if !(1..=100_000).contains(&n) {
                    return Err("must be between 1 and 100000".into());
                }
                self.storage.batch_max = n;
            }
            "storage.batch_linger_ms" => {
                let n: u64 = parse_num(v, "a number of milliseconds")?;
                if n > 1000 {
                    return Err("must be at most 1000".into());
                }
                self.storage.batch_linger = Duration::from_millis(n);
            }
            "storage.timeout_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.storage.timeout = Duration::from_secs(n);
            }
            "storage.retention" => {
                self.storage.retention = match non_empty(v) {
                    None => None,
                    Some(d) => Some(parse_duration(&d)?),
                }
            }
            "storage.memory_max_tasks" => {
                let n: usize = parse_num(v, "a number of tasks")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.storage.memory_max_tasks = n;
            }
            "scheduler.type" => {
                self.scheduler.kind = match v.trim().to_ascii_lowercase().as_str() {
                    "memory" => SchedulerKind::Memory,
                    "nats" => SchedulerKind::Nats,
                    other => {
                        return Err(format!(
                            "unknown backend {other:?}; supported: memory, nats"
                        ))
                    }
                }
            }
            "nats.url" => {
                self.nats.url = match non_empty(v) {
                    None => None,
                    Some(u) if u.starts_with("nats://") || u.starts_with("tls://") => Some(u),
                    Some(_) => return Err("expected a nats:// or tls:// URL".into()),
                }
            }
            "nats.replicas" => {
                let n: usize = parse_num(v, "a number of replicas")?;
                if !(1..=5).contains(&n) {
                    return Err("must be between 1 and 5".into());
                }
                self.nats.replicas = n;
            }
            "nats.storage" => {
                self.nats.memory_storage = match v.trim().to_ascii_lowercase().as_str() {
                    "file" => false,
                    "memory" => true,
                    _ => return Err(format!("expected file or memory, got {v:?}")),
                }
            }
            "nats.event_retention" => {
                let d = parse_duration(v)?;
                if d.is_zero() {
                    return Err("must be longer than zero".into());
                }
                self.nats.event_retention = d;
            }
            "nats.ack_wait_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.nats.ack_wait = Duration::from_secs(n);
            }
            "nats.max_deliver" => {
                let n: i64 = parse_num(v, "a number of deliveries")?;
                if !(1..=1000).contains(&n) {
                    return Err("must be between 1 and 1000".into());
                }
                self.nats.max_deliver = n;
            }
            "nats.wait_for_server" => self.nats.wait_for_server = parse_bool(v)?,
            "worker.echo_delay_ms" => {
                let n: u64 = parse_num(v, "a number of milliseconds")?;
                self.worker.echo_delay = Duration::from_millis(n);
            }
            "scheduler.queue_capacity" => {
                let n: usize = parse_num(v, "a number of commands")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.scheduler.queue_capacity = n;
            }
            "worker.handler" => {
                self.worker.handler = match v.trim() {
                    h @ ("echo" | "command" | "openai") => h.into(),
                    other => {
                        return Err(format!(
                            "unknown handler {other:?}; supported: echo, command, openai"
                        ))
                    }
                }
            }
            "worker.task_timeout" => {
                let d = parse_duration(v)?;
                self.worker.task_timeout = (!d.is_zero()).then_some(d);
            }
            "worker.max_output_bytes" => {
                let n: usize = parse_num(v, "a number of bytes")?;
                if n < 1024 {
                    return Err("must be at least 1024".into());
                }
                self.worker.max_output_bytes = n;
            }
            "worker.history_sessions" => {
                let n: usize = parse_num(v, "a number of tasks")?;
                if n > 100 {
                    return Err("must be between 0 and 100".into());
                }
                self.worker.history_sessions = n;
            }
            "worker.command" => self.worker.command = split_command(v)?,
            "worker.command_processes" => {
                let n: usize = parse_num(v, "a number of processes")?;
                if !(1..=1024).contains(&n) {
                    return Err("must be between 1 and 1024".into());
                }
                self.worker.command_processes = n;
            }
            "openai.base_url" => {
                self.openai.base_url = http_url(v)?.ok_or("must not be empty")?;
            }
            "openai.api_key" => self.openai.api_key = non_empty(v),
            "openai.model" => self.openai.model = non_empty(v),
            "openai.system_prompt" => self.openai.system_prompt = non_empty(v),
            "openai.timeout_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.openai.timeout = Duration::from_secs(n);
            }
            "openai.max_retries" => {
                let n: u32 = parse_num(v, "a number of retries")?;
                if n > 20 {
                    return Err("must be between 0 and 20".into());
                }
                self.openai.max_retries = n;
            }
            "worker.concurrency" => {
                let n: usize = parse_num(v, "a number of tasks")?;
                if !(1..=100_000).contains(&n) {
                    return Err("must be between 1 and 100000".into());
                }
                self.worker.concurrency = n;
            }
            "push.enabled" => self.push.enabled = parse_bool(v)?,
            "push.destinations" => {
                let mut d = PushDestinations::default();
                for item in comma_list(v) {
                    match item.to_ascii_lowercase().as_str() {
                        "public" => d.public = true,
                        "private" => d.private = true,
                        "loopback" => d.loopback = true,
                        other => {
                            return Err(format!(
                                "unknown destination class {other:?}; use public, private, loopback"
                            ))
                        }
                    }
                }
                if d == PushDestinations::default() {
                    return Err("name at least one of public, private, loopback".into());
                }
                self.push.destinations = d;
            }
            "push.max_attempts" => {
                let n: u32 = parse_num(v, "a number of attempts")?;
                if !(1..=100).contains(&n) {
                    return Err("must be between 1 and 100".into());
                }
                self.push.max_attempts = n;
            }
            "push.retry_base_ms" => {
                let n: u64 = parse_num(v, "a number of milliseconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.push.retry_base = Duration::from_millis(n);
            }
            "push.retry_max_ms" => {
                let n: u64 = parse_num(v, "a number of milliseconds")?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.push.retry_max = Duration::from_millis(n);
            }
            "push.timeout_secs" => {
                let n: u64 = parse_num(v, "a number of seconds")?;
                if !(1..=600).contains(&n) {
                    return Err("must be between 1 and 600".into());
                }
                self.push.timeout = Duration::from_secs(n);
            }
            "push.per_host_concurrency" => {
                let n: usize = parse_num(v, "a number of requests")?;
                if !(1..=10_000).contains(&n) {
                    return Err("must be between 1 and 10000".into());
                }
                self.push.per_host_concurrency = n;
            }
            "push.max_in_flight" => {
                let n: usize = parse_num(v, "a number of events")?;
                if !(1..=1_000_000).contains(&n) {
                    return Err("must be between 1 and 1000000".into());
                }
                self.push.max_in_flight = n;
            }
            "push.sign" => self.push.sign = parse_bool(v)?,
            "push.consumer" => {
                let name = non_empty(v).ok_or("must not be empty")?;
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err("use letters, digits, `_` and `-` only".into());
                }
                self.push.consumer = name;
            }
            "push.metrics_addr" => {
                self.push.metrics_addr = match non_empty(v) {
                    None => None,
                    Some(a) => Some(a.parse().map_err(|_| {
                        format!("expected an address such as 127.0.0.1:9464, got {a:?}")
                    })?),
                }
            }
            "webhook.url" => {
                self.push.webhook_url = match non_empty(v) {
                    None => None,
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u),
                    Some(u) => {
                        return Err(format!("expected an http:// or https:// URL, got {u:?}"))
                    }
                }
            }
            "webhook.token" => self.push.webhook_token = non_empty(v),
            "logging.default_level" => {
                let level = v.trim().to_ascii_lowercase();
                if level.is_empty() || (!level.contains('=') && !LEVELS.contains(&level.as_str())) {
                    return Err(format!(
                        "expected one of {} or a tracing filter, got {v:?}",
                        LEVELS.join(", ")
                    ));
                }
                self.logging.default_level = level;
            }
            "logging.format" => {
                self.logging.format = match v.trim().to_ascii_lowercase().as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(format!("expected text or json, got {v:?}")),
                }
            }
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    /// The effective configuration as TOML-like lines with their sources; secrets redacted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for k in KEYS {
            let (value, source) = self
                .values
                .get(k.key)
                .cloned()
                .unwrap_or((k.default.to_string(), Source::Default));
            let shown = if k.secret && !value.is_empty() {
                "<redacted>".to_string()
            } else {
                value
            };
            out.push_str(&format!(
                "{} = {}    # {}, {}\n",
                k.key,
                toml::Value::String(shown),
                k.env,
                source
            ));
        }
        let skills: Vec<&str> = self.agent.skills.iter().map(|s| s.id.as_str()).collect();
        out.push_str(&format!("# agent.skills: {}\n", skills.join(", ")));
        out
    }
}

impl std::fmt::Debug for Config {
    // The typed fields hold secrets (database and Redis URLs, API keys) verbatim; never print
    // them, whatever logs a config with `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Config {\n")?;
        f.write_str(&self.render())?;
        f.write_str("}")
    }
}

/// Splits a command line into words: spaces separate words, single quotes keep text as is,
/// double quotes keep spaces (inside them a backslash escapes `"` and `\`; outside quotes it
/// escapes any character). No shell: no variables, globs or pipes.
pub fn split_command(v: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a trailing backslash escapes nothing".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parses `30d`, `12h`, `90m`, `45s` (or a plain number of seconds).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as 30d, 12h, 90m or 45s, got {v:?}"))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        "w" => n.saturating_mul(7 * 86_400),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {v:?}; use s, m, h, d or w"
            ))
        }
    };
    Ok(Duration::from_secs(secs))
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let mut c = Config::defaults();
        c.set(
            "storage.database_url",
            "postgres://u:hunter2@127.0.0.1/db",
            Source::Default,
        )
        .unwrap();
        c.set(
            "cache.redis_url",
            "redis://:s3cret@127.0.0.1:6379",
            Source::Default,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults();
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.server.port, 3773);
        assert_eq!(c.server.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.worker.handler, "echo");
        assert_eq!(c.agent.skills.len(), 1);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("bindu-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bindu.toml");
        std::fs::write(
            &file,
            "[server]\nport = 4000\nhost = \"0.0.0.0\"\n[agent]\nname = \"file-agent\"\n[[agent.skills]]\nid = \"s1\"\nname = \"S1\"\ndescription = \"d\"\ntags = [\"x\"]\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            &env(&[("BINDU_PORT", "5000"), ("BINDU_AGENT_NAME", "env-agent")]),
            &[("server.port", "6000".into(), "--port")],
        )
        .unwrap();
        assert_eq!(c.server.host, "0.0.0.0", "file beats default");
        assert_eq!(c.agent.name, "env-agent", "env beats file");
        assert_eq!(c.server.port, 6000, "flag beats env");
        assert_eq!(c.agent.skills[0].id, "s1");
        let rendered = c.render();
        assert!(
            rendered.contains("server.port = \"6000\"    # BINDU_PORT, flag --port"),
            "{rendered}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn command_lines_split_like_a_shell_without_one() {
        assert_eq!(
            split_command("python3  agent.py --name 'my agent' \"a \\\"b\\\"\" c\\ d").unwrap(),
            ["python3", "agent.py", "--name", "my agent", "a \"b\"", "c d"]
        );
        assert!(split_command("   ").unwrap().is_empty());
        assert_eq!(split_command("''").unwrap(), [""]);
        assert!(split_command("python3 'open").is_err());
        assert!(split_command("python3 \"open").is_err());
    }

    #[test]
    fn handler_settings_are_checked_together() {
        let e = Config::load(None, &env(&[("BINDU_HANDLER", "command")]), &[]).unwrap_err();
        assert!(e.key.contains("BINDU_HANDLER_COMMAND"), "{e}");
        let e = Config::load(None, &env(&[("BINDU_HANDLER", "openai")]), &[]).unwrap_err();
        assert!(e.key.contains("BINDU_HANDLER_MODEL"), "{e}");
        let e = Config::load(None, &env(&[("BINDU_HANDLER", "llama")]), &[]).unwrap_err();
        assert!(e.key.contains("BINDU_HANDLER"), "{e}");
        let c = Config::load(
            None,
            &env(&[
                ("BINDU_HANDLER", "openai"),
                ("BINDU_HANDLER_MODEL", "llama3"),
                ("OPENAI_API_KEY", "sk-secret-value"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"),
                ("BINDU_TASK_TIMEOUT", "0"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.openai.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(c.worker.task_timeout, None);
        assert!(!c.render().contains("sk-secret-value"));
        assert!(!format!("{:?}", c.openai).contains("sk-secret-value"));
        let c = Config::load(
            None,
            &env(&[
                ("BINDU_HANDLER", "command"),
                ("BINDU_HANDLER_COMMAND", "sh agent.sh"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.worker.command, ["sh", "agent.sh"]);
        assert_eq!(c.worker.task_timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::load(None, &env(&[("BINDU_PORT", "seventy")]), &[]).unwrap_err();
        assert!(e.key.contains("BINDU_PORT"));
        assert!(e.source_desc.contains("BINDU_PORT"));
        let e = Config::load(None, &env(&[("STORAGE_TYPE", "mongo")]), &[]).unwrap_err();
        assert!(e.key.contains("STORAGE_TYPE"));
        let e = Config::load(None, &env(&[("LOGGING__DEFAULT_LEVEL", "loud")]), &[]).unwrap_err();
        assert!(e.key.contains("logging.default_level"));
        let e = Config::load(None, &env(&[("BINDU_DEPLOYMENT_URL", "ftp://x")]), &[]).unwrap_err();
        assert!(e.key.contains("BINDU_DEPLOYMENT_URL"));
    }

    #[test]
    fn postgres_needs_a_url_and_secrets_are_redacted() {
        let e = Config::load(None, &env(&[("STORAGE_TYPE", "postgres")]), &[]).unwrap_err();
        assert!(e.key.contains("DATABASE_URL"), "{e}");
        let c = Config::load(
            None,
            &env(&[
                ("STORAGE_TYPE", "postgres"),
                ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.storage.kind, StorageKind::Postgres);
        let shown = c.render();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("storage.database_url = \"<redacted>\""),
            "{shown}"
        );
        let e = Config::load(None, &env(&[("DATABASE_URL", "mysql://x")]), &[]).unwrap_err();
        assert!(e.key.contains("DATABASE_URL"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3y").is_err());
        let e = Config::load(None, &env(&[("STORAGE__RETENTION", "forever")]), &[]).unwrap_err();
        assert!(e.key.contains("STORAGE__RETENTION"));
    }

    #[test]
    fn push_settings_parse_and_bad_ones_name_their_key() {
        let c = Config::load(
            None,
            &env(&[
                ("PUSH__DESTINATIONS", "loopback, private"),
                ("WEBHOOK_URL", "https://hooks.example.com/a2a/"),
                ("WEBHOOK_TOKEN", "hook-secret"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.push.destinations,
            PushDestinations {
                public: false,
                private: true,
                loopback: true
            }
        );
        assert_eq!(
            c.push.webhook_url.as_deref(),
            Some("https://hooks.example.com/a2a/"),
            "the path is kept as given"
        );
        assert!(
            c.push.delivery_enabled(),
            "a global webhook enables delivery"
        );
        assert!(!Config::defaults().push.delivery_enabled());
        assert!(!c.render().contains("hook-secret"));
        for (var, value) in [
            ("PUSH__DESTINATIONS", "intranet"),
            ("PUSH__DESTINATIONS", ""),
            ("WEBHOOK_URL", "ftp://x"),
            ("PUSH__MAX_ATTEMPTS", "0"),
            ("PUSH__CONSUMER", "a.b"),
            ("PUSH__METRICS_ADDR", "nowhere"),
        ] {
            let e = Config::load(None, &env(&[(var, value)]), &[]).unwrap_err();
            assert!(e.key.contains(var), "{var}={value}: {e}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("bindu-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bindu.toml");
        std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
        let e = Config::load(Some(&file), &env(&[]), &[]).unwrap_err();
        assert_eq!(e.key, "server.prot");
        std::fs::remove_dir_all(dir).ok();
    }
}
