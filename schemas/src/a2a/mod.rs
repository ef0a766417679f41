//! The A2A v0.3.0 object model (`../shared/spec/a2a-v0.3.0.schema.json`).
//!
//! - `message`: [`Message`], [`Part`] and file contents.
//! - `task`: [`Task`], [`TaskStatus`], [`TaskState`], [`Artifact`] and the streaming events.
//! - `card`: [`AgentCard`] and everything it carries (skills, capabilities, security schemes).
//! - `params`: the params object of every JSON-RPC method, A2A and Bindu extensions.
//!
//! Every type tolerates unknown fields (extensions) and validates what serde cannot express
//! through [`Validate`].

mod card;
mod message;
mod params;
mod task;

pub use card::*;
pub use message::*;
pub use params::*;
pub use task::*;

/// Free-form `metadata` objects.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Checks that serde cannot express (non-empty lists, mutually exclusive fields, ranges).
/// The error is a human-readable sentence naming the offending field.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}
