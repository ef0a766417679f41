//! The library API: the Rust counterpart of Bindu's `bindufy(config, handler)`.
//!
//! ```no_run
//! use bindu::{handler_fn, Agent, HandlerError, HandlerInput};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let server = Agent::builder()
//!     .name("greeter")
//!     .description("Greets whoever you name.")
//!     .author("ann@example.com")
//!     .version("1.0.0")
//!     .skill(bindu::agent::skill("greet", "Greet", "Says hello to a name", &["greeting"]))
//!     .deployment_url("https://greeter.example.com")
//!     .handler(handler_fn(|input: HandlerInput| async move {
//!         let name = input.last_user_message().map(|m| m.text()).unwrap_or_default();
//!         Ok::<_, HandlerError>(format!("Hello, {name}!"))
//!     }))
//!     .with_env() // BINDU_PORT, STORAGE_TYPE, … still apply on top
//!     .serve()
//!     .await?;
//! server.wait().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The same builder's [`AgentBuilder::worker`] runs only the worker pool, for a separate
//! `bindu worker`-style process next to `bindu ingress` (shared Postgres and NATS).

use std::sync::Arc;

use std::path::Path;

use bindu_ingress::skills::{Skill, SkillSource};

use crate::{Config, Error, Handler, Result, Role, Server};

/// Capabilities to advertise in the agent card. The engine supports streaming; push
/// notifications only when its dispatcher runs. A builder can turn a capability off, not
/// claim one the engine lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub streaming: bool,
    pub push_notifications: bool,
}

impl Default for Capabilities {
    /// Everything the engine supports.
    fn default() -> Self {
        Capabilities {
            streaming: true,
            push_notifications: true,
        }
    }
}

/// A skill: id, name, description and tags; its setters add the rest
/// (`.input_modes(&["application/pdf"])`, `.avg_processing_time_ms(2000)`,
/// `.keywords(&["invoice"])`…).
pub fn skill(id: &str, name: &str, description: &str, tags: &[&str]) -> Skill {
    Skill::new(id, name, description).tags(tags)
}

/// Where a builder setting comes from, in `bindu config`-style messages.
const BUILDER_SOURCE: &str = "flag Agent::builder";

/// An agent ready to serve: its configuration and handler.
pub struct Agent {
    config: Config,
    handler: Arc<dyn Handler>,
    capabilities: Capabilities,
}

impl Agent {
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            config: Config::defaults(),
            skills: Vec::new(),
            handler: None,
            capabilities: Capabilities::default(),
            env: false,
        }
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// HTTP ingress and worker pool in this process.
    pub async fn serve(self) -> Result<Server> {
        self.launch(Role::Serve).await
    }

    /// Only the worker pool: takes tasks from the shared bus (needs `STORAGE_TYPE=postgres`
    /// and `SCHEDULER_TYPE=nats` or `redis`, like `bindu worker`).
    pub async fn worker(self) -> Result<Server> {
        self.launch(Role::Worker).await
    }

    /// Any role (`Role::Ingress` ignores the handler).
    pub async fn launch(self, role: Role) -> Result<Server> {
        crate::launch_with(self.config, Some(self.handler), role, self.capabilities).await
    }
}

/// Collects the agent's manifest, settings and handler. Setters never fail; a bad value
/// is reported by [`AgentBuilder::build`] (and so by `serve`/`worker`), naming its key.
pub struct AgentBuilder {
    config: Config,
    skills: Vec<SkillSource>,
    handler: Option<Arc<dyn Handler>>,
    capabilities: Capabilities,
    env: bool,
}

impl AgentBuilder {
    /// Starts from this configuration instead of the defaults (e.g. one from
    /// [`Config::load`]); the builder's own settings are applied over it.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Changes any setting of the configuration (`|c| c.worker.concurrency = 64`).
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    pub fn name(self, name: &str) -> Self {
        self.configure(|c| c.agent.name = name.into())
    }

    pub fn description(self, description: &str) -> Self {
        self.configure(|c| c.agent.description = description.into())
    }

    /// E-mail or organisation: the card's provider and the DID `did:bindu:<author>:<name>:<id>`.
    pub fn author(self, author: &str) -> Self {
        self.configure(|c| c.agent.author = Some(author.into()))
    }

    pub fn version(self, version: &str) -> Self {
        self.configure(|c| c.agent.version = version.into())
    }

    /// The public base URL put in the agent card.
    pub fn deployment_url(self, url: &str) -> Self {
        self.configure(|c| c.server.deployment_url = Some(url.into()))
    }

    /// The address the HTTP server binds to.
    pub fn host(self, host: &str) -> Self {
        self.configure(|c| c.server.host = host.into())
    }

    /// The HTTP port (0 picks a free one).
    pub fn port(self, port: u16) -> Self {
        self.configure(|c| c.server.port = port)
    }

    /// Tasks this process runs at once.
    pub fn concurrency(self, tasks: usize) -> Self {
        self.configure(|c| c.worker.concurrency = tasks)
    }

    /// Adds a skill to the card (the first skill replaces the default echo skill).
    pub fn skill(mut self, skill: Skill) -> Self {
        self.skills.push(SkillSource::Inline(Box::new(skill)));
        self
    }

    /// Prices every task (x402): each call adds one way to pay, e.g.
    /// `PriceOption::usdc("0.01").on("base-sepolia").pay_to("0x…")`. Protected methods then
    /// answer HTTP 402 until paid (see the README's Payments section).
    pub fn price(self, option: bindu_engine::x402::PriceOption) -> Self {
        self.configure(|c| c.agent.execution_cost.push(option))
    }

    /// Adds the skill of a directory holding `skill.yaml` and/or `SKILL.md` (or of such a
    /// file); read, and checked, by `build()`.
    pub fn skill_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.skills
            .push(SkillSource::Path(path.as_ref().to_path_buf()));
        self
    }

    /// Adds a skill shown only on the private card, to the callers of
    /// [`AgentBuilder::allowed_dids`] (needs authentication).
    pub fn private_skill(self, skill: Skill) -> Self {
        self.configure(|c| {
            c.agent
                .private_skills
                .push(SkillSource::Inline(Box::new(skill)))
        })
    }

    /// Who may read the private card (token client ids, or certificate DIDs).
    pub fn allowed_dids(self, dids: &[&str]) -> Self {
        self.configure(|c| c.agent.allowed_dids = dids.iter().map(|d| d.to_string()).collect())
    }

    /// Serves `POST /agent/negotiation` (the `[negotiation]` settings apply).
    pub fn negotiation(self, enabled: bool) -> Self {
        self.configure(|c| c.negotiation.enabled = enabled)
    }

    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The agent's handler: a [`crate::handler_fn`] closure or any [`Handler`].
    pub fn handler(self, handler: impl Handler) -> Self {
        self.handler_arc(Arc::new(handler))
    }

    pub fn handler_arc(mut self, handler: Arc<dyn Handler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Lets the environment variables of the README's table override the builder's
    /// settings at build time, so one binary can be deployed with `BINDU_PORT`,
    /// `STORAGE_TYPE`, `DATABASE_URL`… like `bindu serve`.
    pub fn with_env(mut self) -> Self {
        self.env = true;
        self
    }

    /// Checks the settings; the handler is required.
    pub fn build(self) -> Result<Agent> {
        let mut config = self.config;
        if !self.skills.is_empty() {
            config.agent.skills = self.skills;
        }
        let env = |k: &str| std::env::var(k).ok();
        let env: &dyn Fn(&str) -> Option<String> = &env;
        let config = config.relayer(BUILDER_SOURCE, self.env.then_some(env))?;
        let handler = self.handler.ok_or(Error::NoHandler(
            "Agent::builder() needs a handler (call .handler(..))",
        ))?;
        Ok(Agent {
            config,
            handler,
            capabilities: self.capabilities,
        })
    }

    /// Builds and serves (HTTP ingress and worker pool in this process).
    pub async fn serve(self) -> Result<Server> {
        self.build()?.serve().await
    }

    /// Builds and runs only the worker pool (see [`Agent::worker`]).
    pub async fn worker(self) -> Result<Server> {
        self.build()?.worker().await
    }
}
