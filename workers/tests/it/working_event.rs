//! A run's `working` event: held briefly so a fast run announces it with its outcome, but
//! always announced first, and promptly while a slow handler still runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::conformance::command_for;
use bindu_engine::bus::{Bus, EventStream, MemoryBus};
use bindu_engine::store::conformance::user_message;
use bindu_engine::store::*;
use bindu_schemas::bus::EventBody;
use bindu_schemas::{Part, TaskState};
use bindu_workers::handler::handler_fn;
use bindu_workers::{HandlerError, HandlerInput, HandlerOutput, WorkerOptions, WorkerPool};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// What the handler does, chosen by the message text.
async fn handle(input: HandlerInput, finished: Arc<AtomicBool>) -> HandlerOutput {
    let text = match input.history.last().and_then(|m| m.parts.first()) {
        Some(Part::Text(t)) => t.text.clone(),
        _ => String::new(),
    };
    let out = match text.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_millis(600)).await;
            HandlerOutput::Text("slow done".into())
        }
        "stream" => {
            let mut s = input.emitter.stream("s");
            s.send(vec![Part::text("a")]).await.unwrap();
            s.finish(vec![Part::text("b")]).await.unwrap();
            HandlerOutput::Streamed
        }
        _ => HandlerOutput::Text("fast".into()),
    };
    finished.store(true, Ordering::SeqCst);
    out
}

struct Run {
    store: Arc<MemoryStore>,
    bus: Arc<MemoryBus>,
    finished: Arc<AtomicBool>,
    stop: CancellationToken,
}

fn start() -> Run {
    let store = Arc::new(MemoryStore::new(1000));
    let bus = Arc::new(MemoryBus::new(64));
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let handler = handler_fn(move |input: HandlerInput| {
        let flag = flag.clone();
        async move { Ok::<_, HandlerError>(handle(input, flag).await) }
    });
    let stop = CancellationToken::new();
    let pool = WorkerPool::new(
        store.clone(),
        bus.clone(),
        Arc::new(handler),
        WorkerOptions {
            concurrency: 4,
            ..WorkerOptions::default()
        },
    );
    tokio::spawn(pool.run(stop.clone()));
    Run {
        store,
        bus,
        finished,
        stop,
    }
}

/// Submits a task with `text` and queues it; returns its live events (subscribed first).
async fn send(run: &Run, task_id: &str, text: &str) -> EventStream {
    let events = run.bus.subscribe_task(task_id).await.unwrap();
    let submitted = run
        .store
        .submit(SubmitRequest::new(task_id, user_message(text)))
        .await
        .unwrap();
    run.bus
        .publish_commands(vec![command_for(&submitted)])
        .await
        .unwrap();
    events
}

/// `status:<state>` or `artifact` for each event up to the first final status (bounded).
async fn read_until_final(events: &mut EventStream) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let e = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .expect("no error");
        let (label, last) = match &e.event {
            EventBody::Status(s) => (
                format!("status:{}", s.status.state),
                s.status.state.is_final(),
            ),
            EventBody::Artifact(_) => ("artifact".to_string(), false),
        };
        out.push((e.seq, label));
        if last {
            return out;
        }
    }
    panic!("no final status in 20 events: {out:?}");
}

/// Sends task `text` with the text `text`; its events up to the final one.
async fn run_to_the_end(run: &Run, text: &str) -> Vec<(u64, String)> {
    let mut events = send(run, text, text).await;
    read_until_final(&mut events).await
}

fn labels(events: &[(u64, String)]) -> Vec<&str> {
    events.iter().map(|(_, l)| l.as_str()).collect()
}

fn assert_numbered_in_order(events: &[(u64, String)]) {
    let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (2..2 + seqs.len() as u64).collect();
    assert_eq!(
        seqs, want,
        "events numbered after `submitted` (1), gap-free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_run_announces_working_first_then_its_outcome() {
    let run = start();
    let got = run_to_the_end(&run, "fast").await;
    assert_eq!(
        labels(&got),
        ["status:working", "artifact", "status:completed"]
    );
    assert_numbered_in_order(&got);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_run_announces_working_while_the_handler_still_runs() {
    let run = start();
    let mut events = send(&run, "slow", "slow").await;
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("no error");
    match &first.event {
        EventBody::Status(s) => assert_eq!(s.status.state, TaskState::Working),
        EventBody::Artifact(_) => panic!("an artifact before `working`"),
    }
    assert!(
        !run.finished.load(Ordering::SeqCst),
        "`working` came only after the 600 ms handler had finished"
    );
    let rest = read_until_final(&mut events).await;
    assert_eq!(labels(&rest), ["artifact", "status:completed"]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_run_announces_working_before_its_first_chunk() {
    let run = start();
    let got = run_to_the_end(&run, "stream").await;
    assert_eq!(
        labels(&got),
        ["status:working", "artifact", "artifact", "status:completed"]
    );
    assert_numbered_in_order(&got);
    run.stop.cancel();
}
