//! T2: the NATS JetStream bus against a real `nats-server` spawned on a free port with a
//! temporary store (`NATS_SERVER_BIN` or the Debian path).
//!
//! Run with `cargo test -p bindu-engine --features t2-nats --test it t2_nats::`.

use std::time::Duration;

use bindu_engine::bus::conformance::{self, command, status_event};
use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::bus::{Bus, BusError, NatsBus, NatsOptions};
use bindu_schemas::TaskState;

use crate::support::{dead_letter_next, next_ok, next_open, stays_quiet};

/// A bus of `agent` on `server`, with the test options.
async fn connect(server: &NatsServer, agent: &str) -> NatsBus {
    NatsBus::connect(options(server, agent))
        .await
        .expect("connect")
}

fn options(server: &NatsServer, agent: &str) -> NatsOptions {
    let mut o = NatsOptions::new(server.url(), agent);
    o.ack_wait = Duration::from_secs(1);
    o.max_deliver = 2;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let server = NatsServer::start();
    let server = &server;
    conformance::run_all(|| async move {
        NatsBus::connect(options(
            server,
            &format!("agent-{}", uuid::Uuid::new_v4().simple()),
        ))
        .await
        .expect("connect")
    })
    .await;
}

/// The commands of one batch message (or a bus that publishes each alone).
async fn take(
    commands: &mut bindu_engine::bus::CommandStream,
    n: usize,
) -> Vec<bindu_engine::bus::Delivery> {
    let mut taken = Vec::new();
    for _ in 0..n {
        taken.push(next_ok(commands, "a command in time").await);
    }
    taken
}

/// The work-queue stream's message count.
async fn stored_messages(server: &NatsServer, agent: &str) -> u64 {
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(format!("BINDU_{agent}_COMMANDS"))
        .await
        .expect("stream");
    stream.info().await.expect("info").state.messages
}

/// Commands published together travel in few messages (at most `command_batch` each), and
/// each comes out once, with its own task and trace; with `command_batch` 1 each is a
/// message of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_published_together_share_messages() {
    let server = NatsServer::start();
    for (agent, batch) in [("batched", 64), ("single", 1)] {
        let mut o = options(&server, agent);
        o.command_batch = batch;
        let bus = NatsBus::connect(o).await.expect("connect");
        let ids: Vec<String> = (0..200).map(|i| format!("{agent}-{i}")).collect();
        let mut commands: Vec<_> = ids.iter().map(|id| command(id)).collect();
        commands[7].trace = Some(bindu_schemas::bus::TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: Some("k=\"v\"".into()),
        });
        bus.publish_commands(commands).await.expect("publish");
        let messages = stored_messages(&server, agent).await;
        if batch == 1 {
            assert_eq!(messages, 200, "one message per command");
        } else {
            assert!(
                (4..200).contains(&messages),
                "200 commands in {messages} messages of at most 64"
            );
        }
        let mut stream = bus.consume_commands().await.expect("consume");
        let mut got: Vec<String> = Vec::new();
        for d in take(&mut stream, 200).await {
            assert_eq!(d.attempt, 1);
            got.push(d.command.task_id.clone());
            d.acker.ack().await.expect("ack");
        }
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "each command once");
        assert!(
            stays_quiet(&mut stream, Duration::from_secs(2)).await,
            "nothing comes again once all are acked"
        );
    }
}

/// A batch is acked once every command in it is: one command handed back brings the whole
/// message again (each command numbered as a redelivery, so a worker checks it against the
/// store), after its siblings settled; a command dropped unsettled (its worker stopped
/// before running it) counts as handed back at once, long before the ack deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_comes_again_whole_when_one_command_is_handed_back() {
    let server = NatsServer::start();
    let mut o = options(&server, "handback");
    o.ack_wait = Duration::from_secs(30);
    o.max_deliver = 10;
    let bus = NatsBus::connect(o).await.expect("connect");
    bus.publish_commands(vec![command("a"), command("b"), command("c")])
        .await
        .expect("publish");
    assert_eq!(stored_messages(&server, "handback").await, 1, "one batch");
    let mut stream = bus.consume_commands().await.expect("consume");
    let mut first = take(&mut stream, 3).await;
    let c = first.pop().expect("c");
    let b = first.pop().expect("b");
    let a = first.pop().expect("a");
    a.acker.ack().await.expect("ack a");
    b.acker.nack(Duration::ZERO).await.expect("nack b");
    // Not yet: c is still running.
    assert!(
        stays_quiet(&mut stream, Duration::from_millis(500)).await,
        "redelivered before every command settled"
    );
    // c's worker stops before running it.
    drop(c);
    let again = take(&mut stream, 3).await;
    let mut ids: Vec<_> = again.iter().map(|d| d.command.task_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(
        again.iter().all(|d| d.attempt == 2),
        "numbered as redeliveries"
    );
    for d in again {
        d.acker.ack().await.expect("ack");
    }
    assert!(
        stays_quiet(&mut stream, Duration::from_secs(2)).await,
        "acked in full"
    );
}

/// A batch that runs out of deliveries reports each of its commands, and dead-lettering
/// them one after the other succeeds (the first removes the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_batch_reports_every_command() {
    let server = NatsServer::start();
    let mut o = options(&server, "exhaust");
    o.max_deliver = 1;
    let bus = NatsBus::connect(o).await.expect("connect");
    let mut exhausted = bus.exhausted_commands().await.expect("advisories");
    bus.publish_commands(vec![command("x"), command("y")])
        .await
        .expect("publish");
    let mut stream = bus.consume_commands().await.expect("consume");
    // Taken and never settled (held): the ack deadline passes, no delivery is left.
    let held = take(&mut stream, 2).await;
    let mut reported = Vec::new();
    for _ in 0..2 {
        let ex = next_open(&mut exhausted, "reported in time").await;
        reported.push(ex.command.task_id.clone());
        bus.dead_letter(&ex).await.expect("dead-lettered");
    }
    reported.sort();
    assert_eq!(reported, ["x", "y"]);
    assert_eq!(stored_messages(&server, "exhaust").await, 0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_are_idempotent() {
    let server = NatsServer::start();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let o = options(&server, "shared-agent");
        handles.push(tokio::spawn(async move {
            NatsBus::connect(o).await.map(|_| ())
        }));
    }
    for h in handles {
        h.await.expect("join").expect("every start succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_replayed_from_any_position() {
    let server = NatsServer::start();
    let bus = connect(&server, "replay").await;
    bus.publish_events(vec![
        status_event("t", 1, TaskState::Submitted),
        status_event("t", 2, TaskState::Working),
        status_event("other", 1, TaskState::Submitted),
        status_event("t", 3, TaskState::Completed),
    ])
    .await
    .expect("publish");
    // Another process (a second connection) replays what it never saw live.
    let reader = connect(&server, "replay").await;
    assert!(reader.keeps_history());
    let mut replay = reader.replay_task("t", 1).await.expect("replay");
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let e = next_ok(&mut replay, "in time").await;
        assert_eq!(e.task_id(), "t");
        seqs.push(e.seq);
    }
    assert_eq!(seqs, [2, 3]);
    // ... then live events continue on the same stream.
    bus.publish_events(vec![status_event("t", 4, TaskState::Completed)])
        .await
        .expect("publish");
    let e = next_ok(&mut replay, "in time").await;
    assert_eq!(e.seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_commands_are_redelivered_then_dead_lettered() {
    let server = NatsServer::start();
    let bus = connect(&server, "dlq").await;
    let mut exhausted = bus.exhausted_commands().await.expect("advisories");
    bus.publish_commands(vec![command("doomed")])
        .await
        .expect("publish");
    let mut consumer = bus.consume_commands().await.expect("consume");
    // Two deliveries (max_deliver = 2), never acked: the worker "crashed" each time.
    for attempt in 1..=2u64 {
        let d = next_ok(&mut consumer, "delivery in time").await;
        assert_eq!(d.command.task_id, "doomed");
        assert_eq!(d.attempt, attempt);
    }
    dead_letter_next(&bus, &mut exhausted, "advisory in time", "doomed", 2).await;
    // Nothing is delivered again.
    assert!(
        stays_quiet(&mut consumer, Duration::from_secs(3)).await,
        "a dead-lettered command is not redelivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_command_publishes_are_dropped() {
    let server = NatsServer::start();
    let bus = connect(&server, "dedup").await;
    let c = command("once");
    bus.publish_commands(vec![c.clone(), c.clone()])
        .await
        .expect("publish");
    bus.publish_commands(vec![c]).await.expect("publish again");
    let mut consumer = bus.consume_commands().await.expect("consume");
    let d = next_ok(&mut consumer, "in time").await;
    d.acker.ack().await.expect("ack");
    assert!(
        stays_quiet(&mut consumer, Duration::from_secs(2)).await,
        "the same task/message id is queued once"
    );
}

/// A follow-up that reuses a message id is a new submission of the task (a later version):
/// JetStream's duplicate window must not drop its command, or the task would stay
/// `submitted` with nothing queued to run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_reusing_a_message_id_is_queued() {
    let server = NatsServer::start();
    let bus = connect(&server, "reuse").await;
    let mut first = command("again");
    first.version = 1;
    let mut follow_up = first.clone();
    follow_up.version = 3;
    bus.publish_commands(vec![first]).await.expect("publish");
    bus.publish_commands(vec![follow_up])
        .await
        .expect("publish the follow-up");
    let mut consumer = bus.consume_commands().await.expect("consume");
    let mut versions = Vec::new();
    for _ in 0..2 {
        let d = next_ok(&mut consumer, "both commands are delivered in time").await;
        versions.push(d.command.version);
        d.acker.ack().await.expect("ack");
    }
    assert_eq!(versions, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_clear_error() {
    let mut o = NatsOptions::new("nats://127.0.0.1:1", "x");
    o.wait_for_server = false;
    let err = match NatsBus::connect(o).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens on port 1"),
    };
    // Unavailable (retryable, a 503 at the ingress), naming the URL.
    assert!(
        matches!(&err, BusError::Unavailable(m)
            if m.starts_with("cannot connect to NATS at nats://127.0.0.1:1")),
        "{err:?}"
    );
}

/// What a one-turn task puts on the wire: a new task without a push config is not announced
/// as `submitted`; its run's held `working` and its outcome travel as ONE message (a JSON
/// array), the first event marked `opensTask` and flagged with whether the task had push
/// configs when the outcome was recorded. A send with a push config is announced, flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_turn_task_is_one_event_message_on_the_wire() {
    use bindu_engine::ledger::Patience;
    use bindu_engine::store::conformance::user_message;
    use bindu_engine::store::{
        status_event as store_status_event, Expect, MemoryStore, SubmitRequest, TaskStore,
        TaskUpdate,
    };
    use bindu_engine::TaskLedger;
    use bindu_schemas::bus::{subjects, TaskEvent};
    use bindu_schemas::{PushNotificationConfig, TaskStatus};
    use std::sync::Arc;

    let server = NatsServer::start();
    let agent = "wire-agent";
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(options(&server, agent)).await.unwrap());
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let ledger = TaskLedger::new(store.clone(), bus.clone());
    let raw = async_nats::connect(server.url()).await.unwrap();
    let mut wire = raw.subscribe(subjects::all_events(agent)).await.unwrap();
    raw.flush().await.unwrap();

    // Accepts `task_id` (with a push config or not), then records its run's outcome with
    // the held `working`, as a worker does; returns the messages seen for the task.
    let run = |task_id: &'static str, push: bool| {
        let ledger = ledger.clone();
        async move {
            let request = SubmitRequest {
                owner: None,
                task_id: task_id.into(),
                context_id: None,
                message: user_message("hi"),
                push_config: push.then(|| PushNotificationConfig {
                    url: "https://hooks.example.com/x".into(),
                    id: Some("c".into()),
                    token: None,
                    authentication: None,
                    a2a_version: None,
                }),
                dedupe: None,
            };
            let submitted = ledger
                .accept(request, conformance::command_for)
                .await
                .unwrap();
            let now = bindu_engine::time::now_rfc3339();
            let working = TaskStatus {
                state: TaskState::Working,
                message: None,
                timestamp: Some(now.clone()),
            };
            let held = store_status_event(task_id, &submitted.task.context_id, &working, 2, &now);
            let update = TaskUpdate::new(task_id, Expect::Active)
                .status(TaskState::Completed, None)
                .after_run(1, Vec::new());
            ledger
                .transition_after(update, Patience::Once, vec![held], true)
                .await
                .unwrap();
        }
    };
    let decode = |m: &async_nats::Message| -> Vec<TaskEvent> {
        if m.payload.first() == Some(&b'[') {
            serde_json::from_slice(&m.payload).unwrap()
        } else {
            vec![serde_json::from_slice(&m.payload).unwrap()]
        }
    };

    async fn next(wire: &mut async_nats::Subscriber) -> async_nats::Message {
        next_open(wire, "a message in time").await
    }

    run("plain", false).await;
    let m = next(&mut wire).await;
    let events = decode(&m);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3],
        "no submitted; working and the outcome in one message: {}",
        String::from_utf8_lossy(&m.payload)
    );
    assert!(events[0].opens_task && !events[0].push_configured);
    assert!(!events[1].opens_task);

    run("hooked", true).await;
    let first = decode(&next(&mut wire).await);
    assert_eq!(first.len(), 1, "submitted, announced alone");
    assert_eq!(first[0].seq, 1);
    assert!(first[0].push_configured);
    let outcome = decode(&next(&mut wire).await);
    assert_eq!(outcome.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(outcome[0].opens_task && outcome[0].push_configured);
    // Nothing else on the wire.
    assert!(stays_quiet(&mut wire, Duration::from_millis(300)).await);
}
