//! Task state machine: the transition check alone, and transitions as the memory store
//! applies them (compare-and-set, events, history): one task submitted → working → completed,
//! and the same for 64 tasks with each step applied as one batch (as the workers do).

use bindu_engine::state::can_transition;
use bindu_engine::store::conformance::user_message;
use bindu_engine::store::{Expect, MemoryStore, SubmitRequest, TaskStore, TaskUpdate};
use bindu_schemas::TaskState;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn submit(n: u64) -> SubmitRequest {
    SubmitRequest {
        owner: None,
        task_id: format!("t-{n}"),
        context_id: Some(format!("c-{n}")),
        message: user_message("hello"),
        push_config: None,
        dedupe: None,
    }
}

fn step(ids: &[String], from: TaskState, to: TaskState) -> Vec<TaskUpdate> {
    ids.iter()
        .map(|id| TaskUpdate::new(id.clone(), Expect::State(from)).status(to, None))
        .collect()
}

fn state(c: &mut Criterion) {
    let mut g = c.benchmark_group("state_machine");
    let all = TaskState::ALL;
    g.throughput(Throughput::Elements((all.len() * all.len()) as u64));
    g.bench_function("can_transition_all_pairs", |b| {
        b.iter(|| {
            let mut allowed = 0u32;
            for from in all {
                for to in all {
                    allowed += u32::from(can_transition(black_box(from), black_box(to)));
                }
            }
            allowed
        })
    });

    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    // Bounded: the oldest terminal tasks are evicted, so memory stays flat however long it runs.
    let store = MemoryStore::new(100_000);
    let mut n = 0u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("memory_store_submit_working_completed", |b| {
        b.iter(|| {
            rt.block_on(async {
                n += 1;
                let s = store.submit(submit(n)).await.expect("submit");
                let id = vec![s.task.id];
                let w = store
                    .apply(step(&id, TaskState::Submitted, TaskState::Working))
                    .await;
                assert!(w[0].is_ok());
                let d = store
                    .apply(step(&id, TaskState::Working, TaskState::Completed))
                    .await;
                assert!(d[0].is_ok());
            })
        })
    });
    const BATCH: usize = 64;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("memory_store_64_tasks_batched_transitions", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut ids = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    n += 1;
                    ids.push(store.submit(submit(n)).await.expect("submit").task.id);
                }
                let w = store
                    .apply(step(&ids, TaskState::Submitted, TaskState::Working))
                    .await;
                assert!(w.iter().all(|r| r.is_ok()));
                let d = store
                    .apply(step(&ids, TaskState::Working, TaskState::Completed))
                    .await;
                assert!(d.iter().all(|r| r.is_ok()));
                // A second completion must be refused: terminal tasks never move.
                let again = store
                    .apply(step(&ids[..1], TaskState::Working, TaskState::Completed))
                    .await;
                assert!(again[0].is_err());
            })
        })
    });
    g.finish();
}

criterion_group!(benches, state);
criterion_main!(benches);
