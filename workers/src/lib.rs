//! Workers: take task commands from the bus, run the agent's handler, record and announce
//! every transition.
//!
//! - [`handler`]: the [`Handler`] contract (input, output, streaming [`Emitter`]) and how an
//!   output maps to task states.
//! - [`echo`]: the built-in demo handler.
//! - [`pool`]: the [`WorkerPool`]: bounded concurrency, compare-and-set writes, cancellation,
//!   graceful drain.
//! - [`dispatcher`]: the webhook [`Dispatcher`]: push notifications from its own durable
//!   consumer of task events.

pub mod dispatcher;
pub mod echo;
pub mod handler;
pub mod pool;

pub use dispatcher::{Dispatcher, DispatcherOptions};
pub use echo::EchoHandler;
pub use handler::{Emitter, Handler, HandlerError, HandlerInput, HandlerOutput};
pub use pool::{WorkerOptions, WorkerPool};
