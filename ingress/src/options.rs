//! The ingress's configuration sections (`[server]`, `[agent]`, `[auth]`, `[hydra]`,
//! `[cache]`, `[mtls]`): each `Default` is the only default of its keys, and each section
//! turns into the options of the part it configures.

use std::path::PathBuf;
use std::time::Duration;

use bindu_engine::config::{
    check, fields, http_url, key, none_if_blank, secret, within, Invalid, Key, MtlsMode, Section,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::skills::{Skill, SkillSource};
use crate::{ConnectionLimits, IngressOptions};

/// `[server]`: where and how the HTTP server listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Public base URL for the card; default `http://<host>:<bound port>`.
    pub deployment_url: Option<String>,
    pub max_body_bytes: usize,
    /// How long in-flight requests and tasks may take to finish on SIGTERM/Ctrl-C.
    #[serde(rename = "shutdown_timeout_secs", with = "fields::secs")]
    pub shutdown_timeout: Duration,
    #[serde(rename = "sse_keepalive_secs", with = "fields::secs")]
    pub sse_keepalive: Duration,
    /// Host names JSON-RPC requests are answered for, besides localhost, IP literals, the
    /// deployment URL's host and a host name `host` binds; `*`: any.
    #[serde(with = "fields::comma_list")]
    pub allowed_hosts: Vec<String>,
    #[serde(rename = "header_timeout_secs", with = "fields::secs")]
    pub header_timeout: Duration,
    #[serde(rename = "body_timeout_secs", with = "fields::secs")]
    pub body_timeout: Duration,
    #[serde(rename = "idle_timeout_secs", with = "fields::secs")]
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_tls_handshakes: usize,
    #[serde(rename = "tls_handshake_timeout_secs", with = "fields::secs")]
    pub tls_handshake_timeout: Duration,
    pub max_parts: usize,
    pub max_reference_task_ids: usize,
    pub max_list_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let ingress = IngressOptions::default();
        let limits = ConnectionLimits::default();
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 3773,
            deployment_url: None,
            max_body_bytes: ingress.max_body_bytes,
            shutdown_timeout: Duration::from_secs(30),
            sse_keepalive: ingress.sse_keepalive,
            allowed_hosts: ingress.allowed_hosts,
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            idle_timeout: limits.idle_timeout,
            max_connections: limits.max_connections,
            max_tls_handshakes: limits.max_tls_handshakes,
            tls_handshake_timeout: limits.tls_handshake_timeout,
            max_parts: ingress.max_parts,
            max_reference_task_ids: ingress.max_reference_task_ids,
            max_list_bytes: ingress.max_list_bytes,
        }
    }
}

impl Section for ServerConfig {
    const NAME: &'static str = "server";
    const KEYS: &'static [Key] = &[
        key("host", "BINDU_HOST"),
        key("port", "BINDU_PORT"),
        key("deployment_url", "BINDU_DEPLOYMENT_URL"),
        key("max_body_bytes", "BINDU_MAX_BODY_BYTES"),
        key("shutdown_timeout_secs", "BINDU_SHUTDOWN_TIMEOUT"),
        key("sse_keepalive_secs", "BINDU_SSE_KEEPALIVE"),
        key("allowed_hosts", "BINDU_ALLOWED_HOSTS"),
        key("header_timeout_secs", "BINDU_HEADER_TIMEOUT"),
        key("body_timeout_secs", "BINDU_BODY_TIMEOUT"),
        key("idle_timeout_secs", "BINDU_IDLE_TIMEOUT"),
        key("max_connections", "BINDU_MAX_CONNECTIONS"),
        key("max_tls_handshakes", "BINDU_MAX_TLS_HANDSHAKES"),
        key("tls_handshake_timeout_secs", "BINDU_TLS_HANDSHAKE_TIMEOUT"),
        key("max_parts", "BINDU_MAX_PARTS"),
        key("max_reference_task_ids", "BINDU_MAX_REFERENCE_TASK_IDS"),
        key("max_list_bytes", "BINDU_MAX_LIST_BYTES"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        self.host = self.host.trim().to_string();
        check(!self.host.is_empty(), "host", "must not be empty")?;
        http_url(&mut self.deployment_url, "deployment_url")?;
        check(
            self.max_body_bytes >= 1024,
            "max_body_bytes",
            "must be at least 1024",
        )?;
        check(
            self.sse_keepalive >= Duration::from_secs(1),
            "sse_keepalive_secs",
            "must be at least 1",
        )?;
        for (d, field) in [
            (self.header_timeout, "header_timeout_secs"),
            (self.body_timeout, "body_timeout_secs"),
            (self.idle_timeout, "idle_timeout_secs"),
            (self.tls_handshake_timeout, "tls_handshake_timeout_secs"),
        ] {
            within(d.as_secs(), 1, 86_400, field)?;
        }
        within(self.max_connections, 1, 1_000_000, "max_connections")?;
        within(self.max_tls_handshakes, 1, 100_000, "max_tls_handshakes")?;
        within(self.max_parts, 1, 1_000_000, "max_parts")?;
        within(
            self.max_reference_task_ids,
            0,
            100_000,
            "max_reference_task_ids",
        )?;
        within(self.max_list_bytes, 65_536, 1 << 30, "max_list_bytes")?;
        self.allowed_hosts.retain(|h| !h.trim().is_empty());
        Ok(())
    }
}

impl ServerConfig {
    /// The ingress's options; a blocking send waits at most `blocking_wait`.
    pub fn ingress_options(&self, blocking_wait: Duration) -> IngressOptions {
        let mut allowed_hosts = self.allowed_hosts.clone();
        // The names the agent is known by: its public URL and the host name it binds.
        allowed_hosts.extend(self.deployment_url.iter().cloned());
        allowed_hosts.push(self.host.clone());
        IngressOptions {
            max_body_bytes: self.max_body_bytes,
            sse_keepalive: self.sse_keepalive,
            blocking_wait,
            allowed_hosts,
            max_parts: self.max_parts,
            max_reference_task_ids: self.max_reference_task_ids,
            max_list_bytes: self.max_list_bytes,
            ..IngressOptions::default()
        }
    }

    /// The bounds on client connections.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections,
            max_tls_handshakes: self.max_tls_handshakes,
            tls_handshake_timeout: self.tls_handshake_timeout,
        }
    }

    /// Whether requests that name this agent by a host name other than `localhost` are
    /// refused by default: it listens beyond loopback, and neither `deployment_url` nor
    /// `allowed_hosts` says under which names it is reached.
    pub fn host_names_unconfigured(&self) -> bool {
        let loopback = self.host == "localhost"
            || self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        !loopback && self.deployment_url.is_none() && self.allowed_hosts.is_empty()
    }
}

/// `[agent]`: the manifest the card is made of. `skills` lists skill directories (or
/// `skill.yaml` / `SKILL.md` files) and inline skill tables; `private_skills` those only the
/// callers in `allowed_dids` see (the private card). See [`crate::skills`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    pub description: String,
    pub version: String,
    /// E-mail or organisation: the card's provider and the DID's author.
    pub author: Option<String>,
    pub provider_url: Option<String>,
    pub documentation_url: Option<String>,
    pub extended_card_file: Option<PathBuf>,
    /// The echo skill when none are given; `[]`: none.
    #[serde(with = "crate::skills::sources")]
    pub skills: Vec<SkillSource>,
    /// Skills shown only on the private card.
    #[serde(with = "crate::skills::sources")]
    pub private_skills: Vec<SkillSource>,
    /// Who may read the private card (token client ids / certificate DIDs).
    #[serde(with = "fields::comma_list")]
    pub allowed_dids: Vec<String>,
    /// The price of a task (`[[agent.execution_cost]]`, x402): each option is one way to
    /// pay; none (the default) makes the agent free.
    pub execution_cost: Vec<bindu_engine::x402::PriceOption>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: "bindu-echo".into(),
            description: "Echoes every message back; the bindu demo agent.".into(),
            version: "0.1.0".into(),
            author: None,
            provider_url: None,
            documentation_url: None,
            extended_card_file: None,
            skills: vec![SkillSource::Inline(Box::new(
                Skill::new(
                    "echo",
                    "echo",
                    "Replies with the parts of the user's last message.",
                )
                .tags(&["echo", "demo"])
                .examples(&["Hello, agent!"]),
            ))],
            private_skills: Vec::new(),
            allowed_dids: Vec::new(),
            execution_cost: Vec::new(),
        }
    }
}

impl Section for AgentConfig {
    const NAME: &'static str = "agent";
    const KEYS: &'static [Key] = &[
        key("name", "BINDU_AGENT_NAME"),
        key("description", "BINDU_AGENT_DESCRIPTION"),
        key("version", "BINDU_AGENT_VERSION"),
        key("author", "BINDU_AGENT_AUTHOR"),
        key("provider_url", "BINDU_AGENT_PROVIDER_URL"),
        key("documentation_url", "BINDU_AGENT_DOCUMENTATION_URL"),
        key("extended_card_file", "BINDU_EXTENDED_CARD_FILE"),
        key("skills", "BINDU_SKILLS"),
        key("private_skills", "BINDU_PRIVATE_SKILLS"),
        key("allowed_dids", "BINDU_AGENT_ALLOWED_DIDS"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        self.name = self.name.trim().to_string();
        check(!self.name.is_empty(), "name", "must not be empty")?;
        self.description = self.description.trim().to_string();
        self.version = self.version.trim().to_string();
        check(!self.version.is_empty(), "version", "must not be empty")?;
        none_if_blank(&mut self.author);
        http_url(&mut self.provider_url, "provider_url")?;
        http_url(&mut self.documentation_url, "documentation_url")?;
        if self
            .extended_card_file
            .as_ref()
            .is_some_and(|p| p.to_str().is_some_and(|s| s.trim().is_empty()))
        {
            self.extended_card_file = None;
        }
        Ok(())
    }
}

/// `[auth]`: who may call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a Hydra-issued Bearer token on JSON-RPC requests.
    pub enabled: bool,
    #[serde(with = "fields::comma_list")]
    pub allowed_dids: Vec<String>,
    #[serde(rename = "signature_window_secs", with = "fields::secs")]
    pub signature_window: Duration,
    pub require_permissions: bool,
    pub replay_guard: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            allowed_dids: Vec::new(),
            signature_window: Duration::from_secs(300),
            require_permissions: false,
            replay_guard: true,
        }
    }
}

impl Section for AuthConfig {
    const NAME: &'static str = "auth";
    const KEYS: &'static [Key] = &[
        key("enabled", "AUTH__ENABLED"),
        key("allowed_dids", "AUTH__ALLOWED_DIDS"),
        key("signature_window_secs", "AUTH__SIGNATURE_WINDOW"),
        key("require_permissions", "AUTH__REQUIRE_PERMISSIONS"),
        key("replay_guard", "AUTH__REPLAY_GUARD"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        within(
            self.signature_window.as_secs(),
            1,
            86_400,
            "signature_window_secs",
        )
    }
}

impl AuthConfig {
    /// The auth layer's settings; `mtls` says whether client certificates bind to tokens.
    pub fn settings(&self, hydra: &HydraConfig, mtls: &MtlsConfig) -> AuthSettings {
        AuthSettings {
            allowed_dids: self.allowed_dids.clone(),
            cache_ttl: hydra.cache_ttl,
            sensitive_scopes: hydra.sensitive_scopes.clone(),
            signature_window: self.signature_window,
            replay_guard: self.replay_guard,
            require_permissions: self.require_permissions,
            bind_client_certificate: mtls.client_certs() && mtls.mode == MtlsMode::Hybrid,
            audience: hydra.audience.clone(),
            negative_cache_ttl: hydra.negative_cache_ttl,
        }
    }
}

/// `[hydra]`: the Ory Hydra that issues and introspects tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HydraConfig {
    pub admin_url: Option<String>,
    #[serde(rename = "cache_ttl_secs", with = "fields::secs")]
    pub cache_ttl: Duration,
    #[serde(rename = "timeout_secs", with = "fields::secs")]
    pub timeout: Duration,
    /// Scopes whose tokens are never cached.
    #[serde(with = "fields::comma_list")]
    pub sensitive_scopes: Vec<String>,
    /// When set, a token must list it in its `aud`.
    pub audience: Option<String>,
    /// How long an inactive token is remembered as inactive (0: not at all).
    #[serde(rename = "negative_cache_ttl_secs", with = "fields::secs")]
    pub negative_cache_ttl: Duration,
}

impl Default for HydraConfig {
    fn default() -> Self {
        HydraConfig {
            admin_url: None,
            cache_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            sensitive_scopes: Vec::new(),
            audience: None,
            negative_cache_ttl: Duration::from_secs(10),
        }
    }
}

impl Section for HydraConfig {
    const NAME: &'static str = "hydra";
    const KEYS: &'static [Key] = &[
        key("admin_url", "HYDRA__ADMIN_URL"),
        key("cache_ttl_secs", "HYDRA__CACHE_TTL"),
        key("timeout_secs", "HYDRA__TIMEOUT"),
        key("sensitive_scopes", "HYDRA__SENSITIVE_SCOPES"),
        key("audience", "HYDRA__AUDIENCE"),
        key("negative_cache_ttl_secs", "HYDRA__NEGATIVE_CACHE_TTL"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        http_url(&mut self.admin_url, "admin_url")?;
        none_if_blank(&mut self.audience);
        within(
            self.negative_cache_ttl.as_secs(),
            0,
            300,
            "negative_cache_ttl_secs",
        )?;
        check(
            self.timeout >= Duration::from_secs(1),
            "timeout_secs",
            "must be at least 1",
        )
    }
}

/// `[cache]`: state shared by ingress replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Redis for token introspections, caller keys and the DID replay guard.
    #[serde(with = "fields::secret")]
    pub redis_url: Option<SecretString>,
    /// Longest one Redis command may take before Redis counts as down.
    #[serde(rename = "redis_timeout_ms", with = "fields::millis")]
    pub redis_timeout: Duration,
    /// Longest pause between two attempts to reconnect to Redis.
    #[serde(rename = "redis_reconnect_max_ms", with = "fields::millis")]
    pub redis_reconnect_max: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let redis = crate::auth::shared::RedisOptions::default();
        CacheConfig {
            redis_url: None,
            redis_timeout: redis.command_timeout,
            redis_reconnect_max: redis.reconnect_max,
        }
    }
}

impl CacheConfig {
    pub fn redis_options(&self) -> crate::auth::shared::RedisOptions {
        crate::auth::shared::RedisOptions {
            command_timeout: self.redis_timeout,
            reconnect_max: self.redis_reconnect_max,
        }
    }
}

impl Section for CacheConfig {
    const NAME: &'static str = "cache";
    const KEYS: &'static [Key] = &[
        secret("redis_url", "REDIS_URL"),
        key("redis_timeout_ms", "CACHE__REDIS_TIMEOUT_MS"),
        key("redis_reconnect_max_ms", "CACHE__REDIS_RECONNECT_MAX_MS"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        within(
            self.redis_timeout.as_millis(),
            10,
            60_000,
            "redis_timeout_ms",
        )?;
        within(
            self.redis_reconnect_max.as_millis(),
            100,
            600_000,
            "redis_reconnect_max_ms",
        )?;
        let ok = match &self.redis_url {
            None => true,
            Some(u) => {
                let u = u.expose_secret();
                u.starts_with("redis://") || u.starts_with("rediss://")
            }
        };
        check(ok, "redis_url", "expected a redis:// or rediss:// URL")
    }
}

/// `[mtls]`: HTTPS, and what client certificates mean.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtlsConfig {
    pub enabled: bool,
    pub mode: MtlsMode,
    pub require_client_cert: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl Default for MtlsConfig {
    fn default() -> Self {
        MtlsConfig {
            enabled: false,
            mode: MtlsMode::Hybrid,
            require_client_cert: true,
            cert_file: None,
            key_file: None,
            ca_file: None,
        }
    }
}

impl Section for MtlsConfig {
    const NAME: &'static str = "mtls";
    const KEYS: &'static [Key] = &[
        key("enabled", "MTLS__ENABLED"),
        key("mode", "MTLS__MODE"),
        key("require_client_cert", "MTLS__REQUIRE_CLIENT_CERT"),
        key("cert_file", "MTLS__CERT_FILE"),
        key("key_file", "MTLS__KEY_FILE"),
        key("ca_file", "MTLS__CA_FILE"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        for file in [&mut self.cert_file, &mut self.key_file, &mut self.ca_file] {
            if file
                .as_ref()
                .is_some_and(|p| p.to_str().is_some_and(|s| s.trim().is_empty()))
            {
                *file = None;
            }
        }
        Ok(())
    }
}

impl MtlsConfig {
    /// Whether client certificates take part in authentication.
    pub fn client_certs(&self) -> bool {
        self.enabled && self.mode != MtlsMode::Off
    }
}
