//! The ingress's configuration sections (`[server]`, `[agent]`, `[auth]`, `[hydra]`,
//! `[cache]`, `[mtls]`): each `Default` is the only default of its keys, and each section
//! turns into the options of the part it configures.

use std::path::PathBuf;
use std::time::Duration;

use bindu_engine::config::{
    at_least, check, fields, http_url, none_if_blank, within, Invalid, MtlsMode, Section,
};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::shared::RedisOptions;
use crate::auth::AuthSettings;
use crate::skills::{Skill, SkillSource};
use crate::{ConnectionLimits, IngressOptions};

bindu_engine::section! {
    /// `[server]`: where and how the HTTP server listens.
    pub struct ServerConfig in "server" {
        pub host: String = "127.0.0.1".into(), env "BINDU_HOST";
        pub port: u16 = 3773, env "BINDU_PORT";
        /// Public base URL for the card; default `http://<host>:<bound port>`.
        pub deployment_url: Option<String> = None, env "BINDU_DEPLOYMENT_URL";
        pub max_body_bytes: usize = IngressOptions::default().max_body_bytes,
            env "BINDU_MAX_BODY_BYTES";
        /// How long in-flight requests and tasks may take to finish on SIGTERM/Ctrl-C.
        #[serde(with = "fields::secs")]
        pub shutdown_timeout: Duration = Duration::from_secs(30),
            env "BINDU_SHUTDOWN_TIMEOUT" as "shutdown_timeout_secs";
        #[serde(with = "fields::secs")]
        pub sse_keepalive: Duration = IngressOptions::default().sse_keepalive,
            env "BINDU_SSE_KEEPALIVE" as "sse_keepalive_secs";
        /// Host names JSON-RPC requests are answered for, besides localhost, IP literals, the
        /// deployment URL's host and a host name `host` binds; `*`: any.
        #[serde(with = "fields::comma_list")]
        pub allowed_hosts: Vec<String> = IngressOptions::default().allowed_hosts,
            env "BINDU_ALLOWED_HOSTS";
        #[serde(with = "fields::secs")]
        pub header_timeout: Duration = ConnectionLimits::default().header_timeout,
            env "BINDU_HEADER_TIMEOUT" as "header_timeout_secs";
        #[serde(with = "fields::secs")]
        pub body_timeout: Duration = ConnectionLimits::default().body_timeout,
            env "BINDU_BODY_TIMEOUT" as "body_timeout_secs";
        #[serde(with = "fields::secs")]
        pub idle_timeout: Duration = ConnectionLimits::default().idle_timeout,
            env "BINDU_IDLE_TIMEOUT" as "idle_timeout_secs";
        pub max_connections: usize = ConnectionLimits::default().max_connections,
            env "BINDU_MAX_CONNECTIONS";
        pub max_tls_handshakes: usize = ConnectionLimits::default().max_tls_handshakes,
            env "BINDU_MAX_TLS_HANDSHAKES";
        #[serde(with = "fields::secs")]
        pub tls_handshake_timeout: Duration = ConnectionLimits::default().tls_handshake_timeout,
            env "BINDU_TLS_HANDSHAKE_TIMEOUT" as "tls_handshake_timeout_secs";
        pub max_parts: usize = IngressOptions::default().max_parts, env "BINDU_MAX_PARTS";
        pub max_reference_task_ids: usize = IngressOptions::default().max_reference_task_ids,
            env "BINDU_MAX_REFERENCE_TASK_IDS";
        pub max_list_bytes: usize = IngressOptions::default().max_list_bytes,
            env "BINDU_MAX_LIST_BYTES";
        /// Where the A2A 1.0 HTTP+JSON binding is served (`/message:send`, `/tasks`, … under
        /// it); empty or `/`: at the root.
        pub rest_base_path: String = IngressOptions::default().rest_base_path,
            env "BINDU_REST_BASE_PATH";
        /// The A2A 1.0 tenant this agent is (the proto's `tenant`): listed on the card's 1.0
        /// interfaces, its HTTP+JSON routes served under `<base>/<tenant>/` too, and a 1.0
        /// request naming another tenant refused. Unset: none (a named tenant is refused).
        pub tenant: Option<String> = IngressOptions::default().tenant, env "BINDU_TENANT";
    }
}

impl Section for ServerConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        self.host = self.host.trim().to_string();
        check(!self.host.is_empty(), "host", "must not be empty")?;
        http_url(&mut self.deployment_url, "deployment_url")?;
        at_least(self.max_body_bytes, 1024, "max_body_bytes")?;
        at_least(self.sse_keepalive.as_secs(), 1, "sse_keepalive_secs")?;
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
        self.rest_base_path =
            crate::rest::base_path(&self.rest_base_path).map_err(|message| Invalid {
                field: "rest_base_path",
                message,
            })?;
        none_if_blank(&mut self.tenant);
        if let Some(tenant) = &self.tenant {
            crate::rest::tenant_name(tenant).map_err(|message| Invalid {
                field: "tenant",
                message,
            })?;
        }
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
            rest_base_path: self.rest_base_path.clone(),
            tenant: self.tenant.clone(),
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

bindu_engine::section! {
    /// `[agent]`: the manifest the card is made of. `skills` lists skill directories (or
    /// `skill.yaml` / `SKILL.md` files) and inline skill tables; `private_skills` those only the
    /// callers in `allowed_dids` see (the private card). See [`crate::skills`].
    pub struct AgentConfig in "agent" {
        pub name: String = "bindu-echo".into(), env "BINDU_AGENT_NAME";
        pub description: String = "Echoes every message back; the bindu demo agent.".into(),
            env "BINDU_AGENT_DESCRIPTION";
        pub version: String = "0.1.0".into(), env "BINDU_AGENT_VERSION";
        /// E-mail or organisation: the card's provider and the DID's author.
        pub author: Option<String> = None, env "BINDU_AGENT_AUTHOR";
        pub provider_url: Option<String> = None, env "BINDU_AGENT_PROVIDER_URL";
        pub documentation_url: Option<String> = None, env "BINDU_AGENT_DOCUMENTATION_URL";
        pub extended_card_file: Option<PathBuf> = None, env "BINDU_EXTENDED_CARD_FILE";
        /// The echo skill when none are given; `[]`: none.
        #[serde(with = "crate::skills::sources")]
        pub skills: Vec<SkillSource> = vec![echo_skill()], env "BINDU_SKILLS";
        /// Skills shown only on the private card.
        #[serde(with = "crate::skills::sources")]
        pub private_skills: Vec<SkillSource> = Vec::new(), env "BINDU_PRIVATE_SKILLS";
        /// Who may read the private card (token client ids / certificate DIDs).
        #[serde(with = "fields::comma_list")]
        pub allowed_dids: Vec<String> = Vec::new(), env "BINDU_AGENT_ALLOWED_DIDS";
        /// The price of a task (`[[agent.execution_cost]]`, x402): each option is one way to
        /// pay; none (the default) makes the agent free.
        pub execution_cost: Vec<bindu_engine::x402::PriceOption> = Vec::new();
    }
}

/// The demo agent's one skill.
fn echo_skill() -> SkillSource {
    SkillSource::Inline(Box::new(
        Skill::new(
            "echo",
            "echo",
            "Replies with the parts of the user's last message.",
        )
        .tags(&["echo", "demo"])
        .examples(&["Hello, agent!"]),
    ))
}

impl Section for AgentConfig {
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

bindu_engine::section! {
    /// `[auth]`: who may call.
    pub struct AuthConfig in "auth" {
        /// Require a Hydra-issued Bearer token on JSON-RPC requests.
        pub enabled: bool = false, env "AUTH__ENABLED";
        #[serde(with = "fields::comma_list")]
        pub allowed_dids: Vec<String> = Vec::new(), env "AUTH__ALLOWED_DIDS";
        #[serde(with = "fields::secs")]
        pub signature_window: Duration = Duration::from_secs(300),
            env "AUTH__SIGNATURE_WINDOW" as "signature_window_secs";
        pub require_permissions: bool = false, env "AUTH__REQUIRE_PERMISSIONS";
        pub replay_guard: bool = true, env "AUTH__REPLAY_GUARD";
    }
}

impl Section for AuthConfig {
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

bindu_engine::section! {
    /// `[hydra]`: the Ory Hydra that issues and introspects tokens.
    pub struct HydraConfig in "hydra" {
        pub admin_url: Option<String> = None, env "HYDRA__ADMIN_URL";
        #[serde(with = "fields::secs")]
        pub cache_ttl: Duration = Duration::from_secs(300),
            env "HYDRA__CACHE_TTL" as "cache_ttl_secs";
        #[serde(with = "fields::secs")]
        pub timeout: Duration = Duration::from_secs(5), env "HYDRA__TIMEOUT" as "timeout_secs";
        /// Scopes whose tokens are never cached.
        #[serde(with = "fields::comma_list")]
        pub sensitive_scopes: Vec<String> = Vec::new(), env "HYDRA__SENSITIVE_SCOPES";
        /// When set, a token must list it in its `aud`.
        pub audience: Option<String> = None, env "HYDRA__AUDIENCE";
        /// How long an inactive token is remembered as inactive (0: not at all).
        #[serde(with = "fields::secs")]
        pub negative_cache_ttl: Duration = Duration::from_secs(10),
            env "HYDRA__NEGATIVE_CACHE_TTL" as "negative_cache_ttl_secs";
    }
}

impl Section for HydraConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        http_url(&mut self.admin_url, "admin_url")?;
        none_if_blank(&mut self.audience);
        within(
            self.negative_cache_ttl.as_secs(),
            0,
            300,
            "negative_cache_ttl_secs",
        )?;
        at_least(self.timeout.as_secs(), 1, "timeout_secs")
    }
}

bindu_engine::section! {
    /// `[cache]`: state shared by ingress replicas.
    pub struct CacheConfig in "cache" {
        /// Redis for token introspections, caller keys and the DID replay guard.
        #[serde(with = "fields::secret")]
        pub redis_url: Option<SecretString> = None, secret "REDIS_URL";
        /// Longest one Redis command may take before Redis counts as down.
        #[serde(with = "fields::millis")]
        pub redis_timeout: Duration = RedisOptions::default().command_timeout,
            env "CACHE__REDIS_TIMEOUT_MS" as "redis_timeout_ms";
        /// Longest pause between two attempts to reconnect to Redis.
        #[serde(with = "fields::millis")]
        pub redis_reconnect_max: Duration = RedisOptions::default().reconnect_max,
            env "CACHE__REDIS_RECONNECT_MAX_MS" as "redis_reconnect_max_ms";
    }
}

impl CacheConfig {
    pub fn redis_options(&self) -> RedisOptions {
        RedisOptions {
            command_timeout: self.redis_timeout,
            reconnect_max: self.redis_reconnect_max,
        }
    }
}

impl Section for CacheConfig {
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

bindu_engine::section! {
    /// `[mtls]`: HTTPS, and what client certificates mean.
    pub struct MtlsConfig in "mtls" {
        pub enabled: bool = false, env "MTLS__ENABLED";
        pub mode: MtlsMode = MtlsMode::Hybrid, env "MTLS__MODE";
        pub require_client_cert: bool = true, env "MTLS__REQUIRE_CLIENT_CERT";
        pub cert_file: Option<PathBuf> = None, env "MTLS__CERT_FILE";
        pub key_file: Option<PathBuf> = None, env "MTLS__KEY_FILE";
        pub ca_file: Option<PathBuf> = None, env "MTLS__CA_FILE";
    }
}

impl Section for MtlsConfig {
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
