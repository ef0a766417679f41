//! The fake Ory Hydra admin API of `bindu_ingress::auth::fake_hydra` (test support).

#[allow(unused_imports)]
pub use bindu_ingress::auth::fake_hydra::*;
