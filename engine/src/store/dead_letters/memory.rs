//! In-process dead letters: bounded, the oldest leave first.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{DeadLetter, DeadLetterStore};
use crate::store::StoreError;

/// In-process dead letters, bounded (the oldest go first).
pub struct MemoryDeadLetters {
    letters: Mutex<VecDeque<DeadLetter>>,
    max: usize,
}

impl MemoryDeadLetters {
    pub fn new(max: usize) -> Self {
        MemoryDeadLetters {
            letters: Mutex::new(VecDeque::new()),
            max: max.max(1),
        }
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl DeadLetterStore for MemoryDeadLetters {
    async fn add(&self, mut letter: DeadLetter) -> Result<(), StoreError> {
        letter.created_at = crate::time::now_rfc3339();
        let mut l = self.letters.lock();
        if l.iter().any(|d| d.id == letter.id) {
            return Ok(());
        }
        l.push_back(letter);
        while l.len() > self.max {
            l.pop_front();
        }
        Ok(())
    }

    async fn list(&self, limit: u32, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .letters
            .lock()
            .iter()
            .rev()
            .filter(|d| !pending_only || d.replayed_at.is_none())
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.letters.lock().iter().find(|d| d.id == id).cloned())
    }

    async fn record_replay(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError> {
        let mut l = self.letters.lock();
        let d = l
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        match outcome {
            Ok(()) => d.replayed_at = Some(crate::time::now_rfc3339()),
            Err((attempts, error)) => {
                d.attempts = d.attempts.saturating_add(attempts);
                d.last_error = error;
            }
        }
        Ok(())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self
            .letters
            .lock()
            .iter()
            .filter(|d| d.replayed_at.is_none())
            .count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dead_letters::conformance::{self, letter};

    #[tokio::test]
    async fn memory_dead_letters_list_newest_first_and_record_replays() {
        let s = MemoryDeadLetters::new(2);
        for id in ["a", "b", "c"] {
            s.add(letter(id)).await.unwrap();
        }
        let ids: Vec<String> = s
            .list(10, false)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["c", "b"], "bounded, newest first");
        s.record_replay("b", Err((2, "HTTP 503".into())))
            .await
            .unwrap();
        let b = s.get("b").await.unwrap().unwrap();
        assert_eq!((b.attempts, b.last_error.as_str()), (5, "HTTP 503"));
        s.record_replay("b", Ok(())).await.unwrap();
        assert_eq!(s.pending().await.unwrap(), 1);
        assert_eq!(s.list(10, true).await.unwrap().len(), 1);
        assert!(matches!(
            s.record_replay("zz", Ok(())).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn memory_dead_letters_pass_the_conformance_suite() {
        conformance::run_all(|| async { MemoryDeadLetters::default() }).await;
    }
}
