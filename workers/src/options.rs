//! The workers' configuration sections (`[worker]`, `[openai]`, `[push]`, `[webhook]`):
//! each default reads the default of the option it configures, so each default is written
//! once, and each section turns into those options.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::config::{
    at_least, check, fields, http_url, none_if_blank, url_with, within, Invalid, PushDestinations,
    Section,
};
use secrecy::{ExposeSecret, SecretString};

use crate::dispatcher::{DeliveryOptions, GlobalWebhook};
use crate::{
    CommandHandler, CommandOptions, DispatcherOptions, EchoHandler, Handler, OpenAiHandler,
    OpenAiOptions, WorkerOptions,
};

bindu_engine::kind! {
    /// The built-in handler `bindu serve` and `bindu worker` run (`BINDU_HANDLER`).
    pub enum HandlerKind("handler") {
        /// Replies with the user's message.
        Echo = "echo",
        /// Any executable speaking JSON lines on stdin/stdout (`BINDU_HANDLER_COMMAND`).
        Command = "command",
        /// An OpenAI-compatible chat-completions endpoint.
        OpenAi = "openai",
    }
}

/// Where `bindu worker` serves its probes and `/metrics` by default (Prometheus's
/// conventional exporter range; loopback, like `BINDU_HOST`).
pub const WORKER_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9465);
/// Where `bindu dispatcher` serves its probes and `/metrics` by default.
pub const DISPATCHER_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

bindu_engine::section! {
    /// `[worker]`: the worker pool and the handler it runs.
    pub struct WorkerConfig in "worker" {
        pub handler: HandlerKind = HandlerKind::Echo, env "BINDU_HANDLER";
        pub concurrency: usize = WorkerOptions::default().concurrency,
            env "BINDU_WORKER_CONCURRENCY";
        /// Echo handler: simulated work before the reply.
        #[serde(with = "fields::millis")]
        pub echo_delay: Duration = EchoHandler::default().delay,
            env "BINDU_ECHO_DELAY_MS" as "echo_delay_ms";
        /// `None`: no limit.
        #[serde(with = "fields::limit")]
        pub task_timeout: Option<Duration> = WorkerOptions::default().task_timeout,
            env "BINDU_TASK_TIMEOUT";
        pub max_output_bytes: usize = WorkerOptions::default().max_output_bytes,
            env "BINDU_MAX_OUTPUT_BYTES";
        pub history_sessions: usize = WorkerOptions::default().history_sessions,
            env "BINDU_NUM_HISTORY_SESSIONS";
        /// The command handler's program and arguments.
        #[serde(with = "fields::command")]
        pub command: Vec<String> = Vec::new(), env "BINDU_HANDLER_COMMAND";
        pub command_processes: usize = CommandOptions::new(Vec::new()).processes,
            env "BINDU_HANDLER_PROCESSES";
        /// Variables of the engine's environment the command handler's processes get besides
        /// the defaults (a trailing `*` is a prefix).
        #[serde(with = "fields::comma_list")]
        pub command_env: Vec<String> = Vec::new(), env "BINDU_HANDLER_ENV";
        /// `bindu worker` only: where its probes and `/metrics` are served (empty: nowhere).
        #[serde(with = "fields::opt_parsed")]
        pub metrics_addr: Option<SocketAddr> = Some(WORKER_METRICS_ADDR),
            env "BINDU_WORKER_METRICS_ADDR";
    }
}

impl Section for WorkerConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        within(self.concurrency, 1, 100_000, "concurrency")?;
        at_least(self.max_output_bytes, 1024, "max_output_bytes")?;
        within(self.history_sessions, 0, 100, "history_sessions")?;
        within(self.command_processes, 1, 1024, "command_processes")?;
        check(
            self.command_env.iter().all(|n| {
                let name = n.strip_suffix('*').unwrap_or(n);
                !name.is_empty() && !name.contains(['=', '\0'])
            }),
            "command_env",
            "list variable names (a trailing * is a prefix; a lone * is not allowed)",
        )
    }
}

/// Why the configured handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HandlerSetupError {
    #[error("command handler (BINDU_HANDLER=command): {0}")]
    Command(#[from] crate::command::CommandError),
    #[error("BINDU_HANDLER=openai needs BINDU_HANDLER_MODEL")]
    NoModel,
    #[error("openai handler (BINDU_HANDLER=openai): {0}")]
    OpenAi(crate::HandlerError),
}

impl WorkerConfig {
    /// The pool's options; running commands are marked in progress every `heartbeat`, and
    /// on shutdown running handlers may finish for `drain` (the shutdown deadline).
    pub fn pool_options(&self, heartbeat: Duration, drain: Duration) -> WorkerOptions {
        WorkerOptions {
            concurrency: self.concurrency,
            drain_timeout: drain,
            heartbeat,
            task_timeout: self.task_timeout,
            max_output_bytes: self.max_output_bytes,
            history_sessions: self.history_sessions,
        }
    }

    /// The built-in handler this section names (`openai` reads its own section).
    pub fn handler(&self, openai: &OpenAiConfig) -> Result<Arc<dyn Handler>, HandlerSetupError> {
        Ok(match self.handler {
            HandlerKind::Echo => Arc::new(EchoHandler {
                delay: self.echo_delay,
            }),
            HandlerKind::Command => {
                let mut options = CommandOptions::new(self.command.clone());
                options.processes = self.command_processes;
                options.max_line_bytes = self.max_output_bytes;
                options.env = self.command_env.clone();
                Arc::new(CommandHandler::new(options)?)
            }
            HandlerKind::OpenAi => {
                Arc::new(OpenAiHandler::new(openai.options()?).map_err(HandlerSetupError::OpenAi)?)
            }
        })
    }
}

/// The OpenAI API's address, the `openai` handler's default.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

bindu_engine::section! {
    /// `[openai]`: the `openai` handler.
    pub struct OpenAiConfig in "openai" {
        pub base_url: String = OPENAI_BASE_URL.into(), env "OPENAI_BASE_URL";
        /// Sent as a Bearer token; never logged.
        #[serde(with = "fields::secret")]
        pub api_key: Option<SecretString> = None, secret "OPENAI_API_KEY";
        pub model: Option<String> = None, env "BINDU_HANDLER_MODEL";
        pub system_prompt: Option<String> = None, env "BINDU_HANDLER_SYSTEM_PROMPT";
        #[serde(with = "fields::secs")]
        pub timeout: Duration = OpenAiOptions::new(OPENAI_BASE_URL, "").timeout,
            env "OPENAI_TIMEOUT" as "timeout_secs";
        pub max_retries: u32 = OpenAiOptions::new(OPENAI_BASE_URL, "").max_retries,
            env "OPENAI_MAX_RETRIES";
    }
}

impl Section for OpenAiConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        let mut url = Some(std::mem::take(&mut self.base_url));
        http_url(&mut url, "base_url")?;
        self.base_url = url.ok_or(Invalid {
            field: "base_url",
            message: "must not be empty".into(),
        })?;
        none_if_blank(&mut self.model);
        none_if_blank(&mut self.system_prompt);
        at_least(self.timeout.as_secs(), 1, "timeout_secs")?;
        within(self.max_retries, 0, 20, "max_retries")
    }
}

impl OpenAiConfig {
    /// The handler's options; the model is required.
    pub fn options(&self) -> Result<OpenAiOptions, HandlerSetupError> {
        let model = self.model.clone().ok_or(HandlerSetupError::NoModel)?;
        let mut options = OpenAiOptions::new(self.base_url.clone(), model);
        options.api_key = self.api_key.as_ref().map(|k| k.expose_secret().to_string());
        options.system_prompt.clone_from(&self.system_prompt);
        options.timeout = self.timeout;
        options.max_retries = self.max_retries;
        Ok(options)
    }
}

bindu_engine::section! {
    /// `[push]`: push notifications (the webhook dispatcher).
    pub struct PushConfig in "push" {
        pub enabled: bool = false, env "PUSH__ENABLED";
        pub destinations: PushDestinations = delivery().destinations, env "PUSH__DESTINATIONS";
        pub max_attempts: u32 = delivery().max_attempts, env "PUSH__MAX_ATTEMPTS";
        #[serde(with = "fields::millis")]
        pub retry_base: Duration = delivery().retry_base,
            env "PUSH__RETRY_BASE_MS" as "retry_base_ms";
        #[serde(with = "fields::millis")]
        pub retry_max: Duration = delivery().retry_max,
            env "PUSH__RETRY_MAX_MS" as "retry_max_ms";
        #[serde(with = "fields::secs")]
        pub timeout: Duration = delivery().timeout, env "PUSH__TIMEOUT" as "timeout_secs";
        pub per_host_concurrency: usize = delivery().per_host_concurrency,
            env "PUSH__PER_HOST_CONCURRENCY";
        pub max_pending_per_destination: usize = delivery().max_pending_per_destination,
            env "PUSH__MAX_PENDING_PER_DESTINATION";
        pub max_parked_per_destination: usize = delivery().max_parked_per_destination,
            env "PUSH__MAX_PARKED_PER_DESTINATION";
        pub max_in_flight: usize = DispatcherOptions::default().max_in_flight,
            env "PUSH__MAX_IN_FLIGHT";
        pub sign: bool = delivery().sign, env "PUSH__SIGN";
        /// `bindu dispatcher` only: where its probes and `/metrics` are served (empty:
        /// nowhere).
        #[serde(with = "fields::opt_parsed")]
        pub metrics_addr: Option<SocketAddr> = Some(DISPATCHER_METRICS_ADDR),
            env "PUSH__METRICS_ADDR";
        pub consumer: String = DispatcherOptions::default().consumer, env "PUSH__CONSUMER";
    }
}

/// The delivery defaults (the dispatcher's).
fn delivery() -> DeliveryOptions {
    DispatcherOptions::default().delivery
}

impl Section for PushConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        within(self.max_attempts, 1, 100, "max_attempts")?;
        check(
            !self.retry_base.is_zero(),
            "retry_base_ms",
            "must be at least 1",
        )?;
        check(
            !self.retry_max.is_zero(),
            "retry_max_ms",
            "must be at least 1",
        )?;
        within(self.timeout.as_secs(), 1, 600, "timeout_secs")?;
        within(self.per_host_concurrency, 1, 10_000, "per_host_concurrency")?;
        within(
            self.max_pending_per_destination,
            1,
            1_000_000,
            "max_pending_per_destination",
        )?;
        within(
            self.max_parked_per_destination,
            1,
            10_000_000,
            "max_parked_per_destination",
        )?;
        within(self.max_in_flight, 1, 1_000_000, "max_in_flight")?;
        self.consumer = self.consumer.trim().to_string();
        check(!self.consumer.is_empty(), "consumer", "must not be empty")?;
        check(
            self.consumer
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "consumer",
            "use letters, digits, `_` and `-` only",
        )
    }
}

impl PushConfig {
    /// Delivery runs when enabled explicitly or when a global webhook is set.
    pub fn delivery_enabled(&self, webhook: &WebhookConfig) -> bool {
        self.enabled || webhook.url.is_some()
    }

    /// The dispatcher's options, delivering to `webhook` too.
    pub fn dispatcher_options(&self, webhook: &WebhookConfig) -> DispatcherOptions {
        DispatcherOptions {
            consumer: self.consumer.clone(),
            max_in_flight: self.max_in_flight,
            global: webhook.global(),
            delivery: DeliveryOptions {
                destinations: self.destinations,
                max_attempts: self.max_attempts,
                retry_base: self.retry_base,
                retry_max: self.retry_max,
                timeout: self.timeout,
                per_host_concurrency: self.per_host_concurrency,
                max_pending_per_destination: self.max_pending_per_destination,
                max_parked_per_destination: self.max_parked_per_destination,
                sign: self.sign,
            },
            ..DispatcherOptions::default()
        }
    }
}

bindu_engine::section! {
    /// `[webhook]`: the global webhook, for tasks without a push config of their own.
    pub struct WebhookConfig in "webhook" {
        /// Kept as given (path and trailing slash included).
        pub url: Option<String> = None, env "WEBHOOK_URL";
        #[serde(with = "fields::secret")]
        pub token: Option<SecretString> = None, secret "WEBHOOK_TOKEN";
    }
}

impl Section for WebhookConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        url_with(&mut self.url, &["http", "https"], "url")
    }
}

impl WebhookConfig {
    /// The global webhook, if one is set.
    pub fn global(&self) -> Option<GlobalWebhook> {
        self.url.clone().map(|url| GlobalWebhook {
            url,
            token: self.token.as_ref().map(|t| t.expose_secret().to_string()),
        })
    }
}
