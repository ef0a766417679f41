//! The payment replay guard: each authorization nonce is claimed once, atomically, under
//! `network:asset:nonce` (lower case), until its authorization has expired (plus a minute).
//!
//! - [`SharedNonces`]: Redis `SET NX EX`, shared by every ingress replica. A Redis that does
//!   not answer refuses the payment (fail closed): a replica's own memory would let the same
//!   payment through on another replica.
//! - [`LocalNonces`]: this process's memory, for the single-process mode only (the engine
//!   refuses to start a priced agent's separate ingress without Redis). At capacity it
//!   refuses new claims rather than forget a live one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::auth::cache::{ReplayGuard, Sighting};
use crate::auth::shared::SharedState;

/// The port.
#[async_trait]
pub trait NonceGuard: Send + Sync + 'static {
    /// Claims `key` for `ttl`: `Ok(true)` the first time, `Ok(false)` for a replay, `Err`
    /// when the guard cannot tell (the payment is refused).
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, String>;
    /// Gives a claim back (the facilitator refused the payment, so its nonce is unspent).
    async fn release(&self, key: &str);
    /// Where claims are kept, for logs and `/health`.
    fn backend(&self) -> &'static str;
}

/// In this process's memory.
pub struct LocalNonces {
    guard: ReplayGuard,
}

impl LocalNonces {
    pub fn new(capacity: usize) -> LocalNonces {
        LocalNonces {
            guard: ReplayGuard::new(capacity),
        }
    }

    fn digest(key: &str) -> u128 {
        let d = Sha256::digest(key.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        u128::from_be_bytes(b)
    }
}

#[async_trait]
impl NonceGuard for LocalNonces {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let now = bindu_engine::time::unix_now();
        let until = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        match self.guard.check(Self::digest(key), until, now) {
            Sighting::First => Ok(true),
            Sighting::Replayed => Ok(false),
            Sighting::Full => Err("the payment replay guard is full".into()),
        }
    }

    async fn release(&self, key: &str) {
        self.guard.forget(Self::digest(key));
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// In Redis, shared by every replica.
pub struct SharedNonces {
    shared: Arc<dyn SharedState>,
}

impl SharedNonces {
    pub fn new(shared: Arc<dyn SharedState>) -> SharedNonces {
        SharedNonces { shared }
    }
}

#[async_trait]
impl NonceGuard for SharedNonces {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        self.shared.put_new(&format!("nonce:{key}"), ttl).await
    }

    async fn release(&self, key: &str) {
        if let Err(e) = self.shared.remove(&format!("nonce:{key}")).await {
            // The nonce stays claimed until its TTL: the payer re-signs with a new one.
            tracing::warn!(error = %e, "could not release a refused payment's nonce");
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_nonce_is_claimed_once_until_released() {
        let g = LocalNonces::new(2);
        let ttl = Duration::from_secs(60);
        assert!(g.claim("a", ttl).await.unwrap());
        assert!(!g.claim("a", ttl).await.unwrap());
        g.release("a").await;
        assert!(g.claim("a", ttl).await.unwrap());
        assert!(g.claim("b", ttl).await.unwrap());
        assert!(
            g.claim("c", ttl).await.is_err(),
            "full: refuse, never forget"
        );
    }
}
