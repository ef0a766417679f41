//! In-process dead letters: bounded, the oldest leave first. Looked up by id through an
//! index, so parking many notifications stays cheap.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{DeadLetter, DeadLetterStore};
use crate::store::StoreError;

/// In-process dead letters, bounded (the oldest go first).
pub struct MemoryDeadLetters {
    state: Mutex<Letters>,
    max: usize,
}

#[derive(Default)]
struct Letters {
    /// Oldest first; `letters[0]` was the `base`-th letter added.
    letters: VecDeque<DeadLetter>,
    base: u64,
    /// Id → position (`base` + index).
    index: HashMap<String, u64>,
}

impl Letters {
    fn get_mut(&mut self, id: &str) -> Option<&mut DeadLetter> {
        let at = self.index.get(id)?.checked_sub(self.base)?;
        self.letters.get_mut(usize::try_from(at).ok()?)
    }
}

impl MemoryDeadLetters {
    pub fn new(max: usize) -> Self {
        MemoryDeadLetters {
            state: Mutex::new(Letters::default()),
            max: max.max(1),
        }
    }

    /// See [`DeadLetterStore::record_replay`]: failed attempts are `add`ed to the stored
    /// ones, or replace them.
    fn settle(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
        add: bool,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        let d = state
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        d.retrying = false;
        match outcome {
            Ok(()) => d.replayed_at = Some(crate::time::now_rfc3339()),
            Err((attempts, error)) => {
                d.attempts = if add {
                    d.attempts.saturating_add(attempts)
                } else {
                    attempts
                };
                d.last_error = error;
            }
        }
        Ok(())
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
        let mut state = self.state.lock();
        if state.index.contains_key(&letter.id) {
            return Ok(());
        }
        let at = state.base + state.letters.len() as u64;
        state.index.insert(letter.id.clone(), at);
        state.letters.push_back(letter);
        while state.letters.len() > self.max {
            if let Some(old) = state.letters.pop_front() {
                state.index.remove(&old.id);
            }
            state.base += 1;
        }
        Ok(())
    }

    async fn list(&self, limit: u32, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .state
            .lock()
            .letters
            .iter()
            .rev()
            .filter(|d| !pending_only || d.replayed_at.is_none())
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.state.lock().get_mut(id).map(|d| d.clone()))
    }

    async fn record_replay(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError> {
        self.settle(id, outcome, true)
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self
            .state
            .lock()
            .letters
            .iter()
            .filter(|d| d.replayed_at.is_none())
            .count() as u64)
    }

    async fn retrying(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self
            .state
            .lock()
            .letters
            .iter()
            .filter(|d| d.retrying)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn finish_retry(
        &self,
        id: &str,
        outcome: Result<(), (u32, String)>,
    ) -> Result<(), StoreError> {
        self.settle(id, outcome, false)
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
        assert_eq!(s.get("a").await.unwrap(), None, "the oldest left");
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
        s.add(letter("a")).await.unwrap();
        assert_eq!(s.get("b").await.unwrap(), None, "the oldest left again");
        assert!(
            s.get("a").await.unwrap().is_some(),
            "a letter that left can come again"
        );
    }

    #[tokio::test]
    async fn memory_dead_letters_pass_the_conformance_suite() {
        conformance::run_all(|| async { MemoryDeadLetters::default() }).await;
    }
}
