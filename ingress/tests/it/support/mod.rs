//! The flaky memory store of the engine's test support.

pub use bindu_engine::store::flaky::Flaky;
