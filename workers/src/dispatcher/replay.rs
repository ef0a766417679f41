//! Posting dead letters again (`bindu webhooks replay`).
//!
//! A replay goes to the webhook's current settings: the task's push config with the same id
//! (its URL and token as they are now), or the global webhook. The body is the one stored,
//! signed afresh. Success marks the dead letter replayed; failure records the new error.

use bindu_engine::store::{Access, DeadLetter, DeadLetterStore, StoreError};
use bindu_engine::TaskStore;
use tokio_util::sync::CancellationToken;

use super::delivery::{Outcome, Sender, Target};
use super::{GlobalWebhook, GLOBAL_CONFIG_ID};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("dead letter {0} not found")]
    NotFound(String),
    #[error("dead letter {0} was already replayed")]
    AlreadyReplayed(String),
    /// The webhook it was meant for is no longer configured.
    #[error("{0}")]
    NoTarget(String),
    #[error("delivery failed after {attempts} attempt(s): {error}")]
    Failed { attempts: u32, error: String },
    #[error("interrupted")]
    Interrupted,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Replays one dead letter; returns the attempts the successful delivery took.
pub async fn replay(
    letters: &dyn DeadLetterStore,
    store: &dyn TaskStore,
    sender: &Sender,
    global: Option<&GlobalWebhook>,
    id: &str,
    stop: &CancellationToken,
) -> Result<u32, ReplayError> {
    let letter = letters
        .get(id)
        .await?
        .ok_or_else(|| ReplayError::NotFound(id.to_string()))?;
    if letter.replayed_at.is_some() {
        return Err(ReplayError::AlreadyReplayed(id.to_string()));
    }
    let target = target(store, global, &letter).await?;
    match sender.deliver(&target, &letter.body, stop).await {
        Outcome::Delivered { attempts } => {
            letters.record_replay(id, Ok(())).await?;
            Ok(attempts)
        }
        Outcome::GaveUp {
            attempts, error, ..
        } => {
            letters
                .record_replay(id, Err((attempts, error.clone())))
                .await?;
            Err(ReplayError::Failed { attempts, error })
        }
        Outcome::Interrupted => Err(ReplayError::Interrupted),
    }
}

async fn target(
    store: &dyn TaskStore,
    global: Option<&GlobalWebhook>,
    letter: &DeadLetter,
) -> Result<Target, ReplayError> {
    if letter.config_id == GLOBAL_CONFIG_ID {
        return global.map(GlobalWebhook::target).ok_or_else(|| {
            ReplayError::NoTarget("the global webhook (WEBHOOK_URL) is no longer set".into())
        });
    }
    let configs = match store
        .list_push_configs(&letter.task_id, Access::Internal)
        .await
    {
        Ok(c) => c,
        Err(StoreError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    configs
        .into_iter()
        .find(|c| c.id.as_deref() == Some(letter.config_id.as_str()))
        .map(|c| Target {
            config_id: letter.config_id.clone(),
            v10: c.wants_v10(),
            url: c.url,
            token: c.token,
        })
        .ok_or_else(|| {
            ReplayError::NoTarget(format!(
                "push config {} of task {} no longer exists",
                letter.config_id, letter.task_id
            ))
        })
}
