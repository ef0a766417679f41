//! The workers' configuration sections (`[worker]`, `[openai]`, `[push]`, `[webhook]`):
//! each `Default` reads the defaults of the options it configures, so each default is written
//! once, and each section turns into those options.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::config::{
    check, fields, http_url, key, none_if_blank, secret, url_with, within, Invalid, Key,
    PushDestinations, Section,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

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

/// `[worker]`: the worker pool and the handler it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    pub handler: HandlerKind,
    pub concurrency: usize,
    /// Echo handler: simulated work before the reply.
    #[serde(rename = "echo_delay_ms", with = "fields::millis")]
    pub echo_delay: Duration,
    /// `None`: no limit.
    #[serde(with = "fields::limit")]
    pub task_timeout: Option<Duration>,
    pub max_output_bytes: usize,
    pub history_sessions: usize,
    /// The command handler's program and arguments.
    #[serde(with = "fields::command")]
    pub command: Vec<String>,
    pub command_processes: usize,
    /// Variables of the engine's environment the command handler's processes get besides
    /// the defaults (a trailing `*` is a prefix).
    #[serde(with = "fields::comma_list")]
    pub command_env: Vec<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let pool = WorkerOptions::default();
        WorkerConfig {
            handler: HandlerKind::Echo,
            concurrency: pool.concurrency,
            echo_delay: EchoHandler::default().delay,
            task_timeout: pool.task_timeout,
            max_output_bytes: pool.max_output_bytes,
            history_sessions: pool.history_sessions,
            command: Vec::new(),
            command_processes: CommandOptions::new(Vec::new()).processes,
            command_env: Vec::new(),
        }
    }
}

impl Section for WorkerConfig {
    const NAME: &'static str = "worker";
    const KEYS: &'static [Key] = &[
        key("handler", "BINDU_HANDLER"),
        key("concurrency", "BINDU_WORKER_CONCURRENCY"),
        key("echo_delay_ms", "BINDU_ECHO_DELAY_MS"),
        key("task_timeout", "BINDU_TASK_TIMEOUT"),
        key("max_output_bytes", "BINDU_MAX_OUTPUT_BYTES"),
        key("history_sessions", "BINDU_NUM_HISTORY_SESSIONS"),
        key("command", "BINDU_HANDLER_COMMAND"),
        key("command_processes", "BINDU_HANDLER_PROCESSES"),
        key("command_env", "BINDU_HANDLER_ENV"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        within(self.concurrency, 1, 100_000, "concurrency")?;
        check(
            self.max_output_bytes >= 1024,
            "max_output_bytes",
            "must be at least 1024",
        )?;
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
    /// The pool's options; running commands are marked in progress every `heartbeat`.
    pub fn pool_options(&self, heartbeat: Duration) -> WorkerOptions {
        WorkerOptions {
            concurrency: self.concurrency,
            drain_timeout: Duration::from_secs(5),
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

/// `[openai]`: the `openai` handler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    pub base_url: String,
    /// Sent as a Bearer token; never logged.
    #[serde(with = "fields::secret")]
    pub api_key: Option<SecretString>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    #[serde(rename = "timeout_secs", with = "fields::secs")]
    pub timeout: Duration,
    pub max_retries: u32,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        let options = OpenAiOptions::new(OPENAI_BASE_URL, "");
        OpenAiConfig {
            base_url: options.base_url,
            api_key: None,
            model: None,
            system_prompt: None,
            timeout: options.timeout,
            max_retries: options.max_retries,
        }
    }
}

impl Section for OpenAiConfig {
    const NAME: &'static str = "openai";
    const KEYS: &'static [Key] = &[
        key("base_url", "OPENAI_BASE_URL"),
        secret("api_key", "OPENAI_API_KEY"),
        key("model", "BINDU_HANDLER_MODEL"),
        key("system_prompt", "BINDU_HANDLER_SYSTEM_PROMPT"),
        key("timeout_secs", "OPENAI_TIMEOUT"),
        key("max_retries", "OPENAI_MAX_RETRIES"),
    ];

    fn check(&mut self) -> Result<(), Invalid> {
        let mut url = Some(std::mem::take(&mut self.base_url));
        http_url(&mut url, "base_url")?;
        self.base_url = url.ok_or(Invalid {
            field: "base_url",
            message: "must not be empty".into(),
        })?;
        none_if_blank(&mut self.model);
        none_if_blank(&mut self.system_prompt);
        check(
            self.timeout >= Duration::from_secs(1),
            "timeout_secs",
            "must be at least 1",
        )?;
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

/// `[push]`: push notifications (the webhook dispatcher).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    pub enabled: bool,
    pub destinations: PushDestinations,
    pub max_attempts: u32,
    #[serde(rename = "retry_base_ms", with = "fields::millis")]
    pub retry_base: Duration,
    #[serde(rename = "retry_max_ms", with = "fields::millis")]
    pub retry_max: Duration,
    #[serde(rename = "timeout_secs", with = "fields::secs")]
    pub timeout: Duration,
    pub per_host_concurrency: usize,
    pub max_pending_per_destination: usize,
    pub max_parked_per_destination: usize,
    pub max_in_flight: usize,
    pub sign: bool,
    /// `bindu dispatcher` only: where its `/metrics` and `/healthz` are served.
    #[serde(with = "fields::opt_parsed")]
    pub metrics_addr: Option<SocketAddr>,
    pub consumer: String,
}

impl Default for PushConfig {
    fn default() -> Self {
        let dispatcher = DispatcherOptions::default();
        let delivery = dispatcher.delivery;
        PushConfig {
            enabled: false,
            destinations: delivery.destinations,
            max_attempts: delivery.max_attempts,
            retry_base: delivery.retry_base,
            retry_max: delivery.retry_max,
            timeout: delivery.timeout,
            per_host_concurrency: delivery.per_host_concurrency,
            max_pending_per_destination: delivery.max_pending_per_destination,
            max_parked_per_destination: delivery.max_parked_per_destination,
            max_in_flight: dispatcher.max_in_flight,
            sign: delivery.sign,
            metrics_addr: None,
            consumer: dispatcher.consumer,
        }
    }
}

impl Section for PushConfig {
    const NAME: &'static str = "push";
    const KEYS: &'static [Key] = &[
        key("enabled", "PUSH__ENABLED"),
        key("destinations", "PUSH__DESTINATIONS"),
        key("max_attempts", "PUSH__MAX_ATTEMPTS"),
        key("retry_base_ms", "PUSH__RETRY_BASE_MS"),
        key("retry_max_ms", "PUSH__RETRY_MAX_MS"),
        key("timeout_secs", "PUSH__TIMEOUT"),
        key("per_host_concurrency", "PUSH__PER_HOST_CONCURRENCY"),
        key(
            "max_pending_per_destination",
            "PUSH__MAX_PENDING_PER_DESTINATION",
        ),
        key(
            "max_parked_per_destination",
            "PUSH__MAX_PARKED_PER_DESTINATION",
        ),
        key("max_in_flight", "PUSH__MAX_IN_FLIGHT"),
        key("sign", "PUSH__SIGN"),
        key("metrics_addr", "PUSH__METRICS_ADDR"),
        key("consumer", "PUSH__CONSUMER"),
    ];

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

/// `[webhook]`: the global webhook, for tasks without a push config of their own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Kept as given (path and trailing slash included).
    pub url: Option<String>,
    #[serde(with = "fields::secret")]
    pub token: Option<SecretString>,
}

impl Section for WebhookConfig {
    const NAME: &'static str = "webhook";
    const KEYS: &'static [Key] = &[key("url", "WEBHOOK_URL"), secret("token", "WEBHOOK_TOKEN")];

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
