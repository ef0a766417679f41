//! Conformance: concurrent writers.

use std::sync::Arc;

use bindu_schemas::TaskState;

use super::*;

pub async fn concurrent_terminal_writes_one_winner<S: TaskStore>(store: Arc<S>) {
    let store: Arc<dyn TaskStore> = store;
    racing_writers_one_terminal_winner(&[store.clone(), store], 20).await;
}

/// Many callers at once, each applying two dependent updates of its own task in one call
/// (`submitted → working`, then `working → failed` expecting `working`): each call's
/// updates apply in order, however the backend spreads concurrent work (the Postgres store
/// runs several batch writers).
pub async fn one_calls_updates_apply_in_order_under_load<S: TaskStore>(store: Arc<S>) {
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(submit_new(&*store, None).await.task.id);
    }
    let mut handles = Vec::new();
    for id in ids {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let r = store
                .apply(vec![
                    TaskUpdate::new(&id, Expect::State(TaskState::Submitted))
                        .status(TaskState::Working, None),
                    TaskUpdate::new(&id, Expect::State(TaskState::Working))
                        .status(TaskState::Failed, None),
                ])
                .await;
            (id, r)
        }));
    }
    for h in handles {
        let (id, r) = h.await.expect("join");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].as_ref().map(|a| a.state).ok(),
            Some(TaskState::Working),
            "{id}: {:?}",
            r[0]
        );
        assert_eq!(
            r[1].as_ref().map(|a| a.state).ok(),
            Some(TaskState::Failed),
            "{id}: {:?}",
            r[1]
        );
    }
}

/// Writers (one store used twice, or several stores on one database, like processes) race
/// to end the same working task: exactly one terminal state wins and every writer reads it.
pub async fn racing_writers_one_terminal_winner(writers: &[Arc<dyn TaskStore>], rounds: usize) {
    let first = &writers[0];
    for _ in 0..rounds {
        let id = submit_new(&**first, None).await.task.id;
        run_to(&**first, &id, TaskState::Working).await;
        let mut handles = Vec::new();
        let targets = [
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Canceled,
            TaskState::Completed,
        ];
        for (i, target) in targets.into_iter().enumerate() {
            let store = writers[i % writers.len()].clone();
            let id = id.clone();
            handles.push(tokio::spawn(async move {
                apply_one(
                    &*store,
                    TaskUpdate::new(&id, Expect::NotTerminal).status(target, None),
                )
                .await
                .map(|a| a.state)
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            if let Ok(state) = h.await.expect("join") {
                winners.push(state);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one terminal write wins");
        for store in writers {
            let got = store.get(&id, Access::Internal).await.expect("get");
            assert_eq!(got.task.status.state, winners[0]);
            assert_eq!(got.version, 3);
        }
    }
}
