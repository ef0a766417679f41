//! Workers: take task commands from the bus, run the agent's handler, record and announce
//! every transition.
//!
//! - [`handler`]: the [`Handler`] contract (input, output, streaming [`Emitter`] and
//!   [`ArtifactStream`]) and how an output maps to task states.
//! - [`echo`]: the built-in demo handler.
//! - [`command`]: runs any executable speaking a JSON-lines protocol (a pool of long-lived
//!   processes).
//! - [`openai`]: streams an OpenAI-compatible chat-completions endpoint.
//! - [`pool`]: the [`WorkerPool`]: bounded concurrency, per-task timeout and output limit,
//!   compare-and-set writes, cancellation, graceful drain.
//! - [`options`]: the `[worker]`, `[openai]`, `[push]` and `[webhook]` configuration
//!   sections, with the built-in handler they name ([`options::HandlerKind`]).
//! - [`payments`]: fair settlement of paid tasks (x402): settle after the handler
//!   succeeded, release the result only then.
//! - [`dispatcher`]: the webhook [`Dispatcher`]: push notifications from its own durable
//!   consumer of task events.

pub mod command;
pub mod dispatcher;
pub mod echo;
pub mod handler;
pub mod openai;
pub mod options;
pub mod payments;
pub mod pool;

pub use command::{CommandHandler, CommandOptions};
pub use dispatcher::{Dispatcher, DispatcherOptions};
pub use echo::EchoHandler;
pub use handler::{
    ArtifactStream, Emitter, Handler, HandlerError, HandlerInput, HandlerOutput, OutputTooLarge,
};
pub use openai::{OpenAiHandler, OpenAiOptions};
pub use pool::{WorkerOptions, WorkerPool};
