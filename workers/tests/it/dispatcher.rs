//! T1: the webhook dispatcher on the memory backends, with a worker pool running real tasks
//! and webhook receivers on loopback ports. Every test allows loopback destinations only
//! (PUSH__DESTINATIONS=loopback); nothing else is ever contacted.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use bindu_engine::bus::MemoryBus;
use bindu_engine::store::{DeadLetterStore, MemoryDeadLetters, MemoryStore};
use bindu_engine::{Bus, TaskStore};
use bindu_schemas::{Artifact, Part};
use bindu_workers::dispatcher::replay::{self, ReplayError};
use bindu_workers::dispatcher::{GlobalWebhook, Sender};
use bindu_workers::handler::handler_fn;
use bindu_workers::{HandlerError, HandlerInput, HandlerOutput};
use support::*;
use tokio_util::sync::CancellationToken;

struct Agent {
    store: Arc<dyn TaskStore>,
    bus: Arc<dyn Bus>,
    dead: Arc<dyn DeadLetterStore>,
    stop: CancellationToken,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Memory store and bus with a worker pool whose handler streams `steps` status messages
/// and one artifact before completing.
async fn agent(steps: usize) -> Agent {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let handler = handler_fn(move |input: HandlerInput| async move {
        for i in 0..steps {
            input.emitter.status(format!("step {i}")).await?;
        }
        input
            .emitter
            .artifact_chunk(
                Artifact {
                    artifact_id: "a1".into(),
                    name: None,
                    description: None,
                    parts: vec![Part::text("done")],
                    metadata: None,
                    extensions: None,
                },
                false,
                true,
            )
            .await?;
        Ok::<_, HandlerError>(HandlerOutput::Streamed)
    });
    let stop = CancellationToken::new();
    spawn_pool(
        store.clone(),
        bus.clone(),
        handler,
        busy_pool_options(),
        &stop,
    );
    Agent {
        store,
        bus,
        dead: Arc::new(MemoryDeadLetters::default()),
        stop,
    }
}

impl Agent {
    /// Records and queues task `task_id` with push `configs` (see [`submit`]).
    async fn submit(&self, task_id: &str, configs: Vec<bindu_schemas::PushNotificationConfig>) {
        submit(&self.store, &self.bus, task_id, configs).await;
    }

    /// Replays dead letter `id` through `sender`; how many attempts it took.
    async fn replay(
        &self,
        sender: &Sender,
        id: &str,
        stop: &CancellationToken,
    ) -> Result<u32, ReplayError> {
        replay::replay(
            self.dead.as_ref(),
            self.store.as_ref(),
            sender,
            None,
            id,
            stop,
        )
        .await
    }

    async fn dispatcher(&self, options: bindu_workers::DispatcherOptions) -> Running {
        start_dispatcher(
            self.store.clone(),
            self.bus.clone(),
            self.dead.clone(),
            options,
        )
        .await
    }
}

/// Events of a task with `steps` status messages: submitted, working, the steps, the
/// artifact, completed.
fn events_per_task(steps: usize) -> u64 {
    steps as u64 + 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_signed_by_the_agent_and_carry_tokens_and_sequence() {
    let agent = agent(1).await;
    let receiver = Receiver::start().await;
    let _d = agent.dispatcher(options()).await;
    agent
        .submit("t-signed", vec![config(&receiver.url, Some("s3cret"))])
        .await;
    let n = events_per_task(1);
    let got = receiver.wait_for("every event of the task", n).await;
    assert_eq!(seqs_of(&got, "t-signed"), (1..=n).collect::<Vec<_>>());
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| r.json["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "status-update");
    assert_eq!(got[0].json["status"]["state"], "submitted");
    assert_eq!(got[1].json["status"]["state"], "working");
    assert!(kinds.contains(&"artifact-update"));
    let last = got.last().unwrap();
    assert_eq!(last.json["status"]["state"], "completed");
    assert_eq!(last.json["final"], true);
    for r in &got {
        assert_eq!(r.event_id(), format!("t-signed:{}", r.seq()));
        assert!(r.json["timestamp"].is_string());
        assert_eq!(r.headers["authorization"], "Bearer s3cret");
        assert_eq!(r.headers["x-a2a-notification-token"], "s3cret");
        assert_eq!(r.headers["content-type"], "application/json");
        r.verify(&r.body)
            .expect("signed by the agent's webhook key over the exact body");
        // One changed byte and the signature no longer holds.
        let mut tampered = r.body.to_vec();
        tampered[1] ^= 1;
        assert!(r.verify(&tampered).is_err());
    }
    assert_eq!(outcomes(&_d.metrics, "delivered"), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_is_delivered_in_order_while_tasks_run_in_parallel_under_a_host_cap() {
    let agent = agent(3).await;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(5));
    let second = Receiver::start().await;
    let mut o = options();
    o.delivery.per_host_concurrency = 3;
    let _d = agent.dispatcher(o).await;
    let tasks: Vec<String> = (0..24).map(|i| format!("par-{i}")).collect();
    for t in &tasks {
        // Two webhooks per task: each gets every event, in order.
        agent
            .submit(
                t,
                vec![config(&receiver.url, None), config(&second.url, None)],
            )
            .await;
    }
    let n = events_per_task(3);
    let total = n as usize * tasks.len();
    for r in [&receiver, &second] {
        let got = r
            .wait_until("every event of every task", |g| g.len() >= total)
            .await;
        assert_eq!(got.len(), total, "no event was sent twice");
        for t in &tasks {
            assert_eq!(seqs_of(&got, t), (1..=n).collect::<Vec<_>>(), "task {t}");
        }
    }
    let peak = receiver.max_in_flight();
    assert!(peak <= 3, "per-host cap exceeded: {peak} requests at once");
    assert!(
        peak >= 2,
        "tasks were not delivered in parallel (peak {peak})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_then_recovering_gets_every_event_in_order() {
    let agent = agent(0).await;
    // The first event fails three times (503, 429 with Retry-After, 500), then succeeds.
    let receiver = Receiver::with(|r, nth| match (r.seq(), nth) {
        (1, 1) => Reply::Status(503),
        (1, 2) => Reply::With(429, vec![("retry-after", "0".into())]),
        (1, 3) => Reply::Status(500),
        _ => Reply::Status(200),
    })
    .await;
    let d = agent.dispatcher(options()).await;
    agent
        .submit("t-flaky", vec![config(&receiver.url, None)])
        .await;
    let n = events_per_task(0);
    let got = receiver
        .wait_until("all events", |g| {
            g.iter().filter(|r| r.seq() == n).count() == 1
        })
        .await;
    let seqs = seqs_of(&got, "t-flaky");
    assert_eq!(seqs[..4], [1, 1, 1, 1], "event 1 retried until accepted");
    assert_eq!(
        seqs[4..],
        (2..=n).collect::<Vec<_>>()[..],
        "then the rest, in order"
    );
    let first_ids: Vec<String> = got[..4].iter().map(|r| r.event_id()).collect();
    assert!(
        first_ids.iter().all(|id| id == "t-flaky:1"),
        "retries carry the same eventId"
    );
    // Event 1 was parked while it waited to retry, and the later ones behind it; each
    // letter is marked delivered, nothing was given up.
    wait_until_none_pending(agent.dead.as_ref()).await;
    let letters = agent.dead.list(10, false).await.unwrap();
    assert!(letters
        .iter()
        .all(|l| l.replayed_at.is_some() && !l.retrying && l.task_id == "t-flaky"));
    assert!(letters.iter().any(|l| l.seq == 1));
    assert_eq!(outcomes(&d.metrics, "delivered"), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_is_retried_without_holding_up_other_tasks() {
    let agent = agent(0).await;
    let hanging = Receiver::with(|_, nth| {
        if nth == 1 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let healthy = Receiver::start().await;
    let _d = agent.dispatcher(options()).await;
    agent
        .submit("t-hang", vec![config(&hanging.url, None)])
        .await;
    agent
        .submit("t-other", vec![config(&healthy.url, None)])
        .await;
    let n = events_per_task(0);
    // The other task finishes while every first request to the hanging receiver hangs.
    let other = healthy.wait_for("the other task", n).await;
    assert_eq!(seqs_of(&other, "t-other"), (1..=n).collect::<Vec<_>>());
    let got = hanging
        .wait_until("the hanging task after its timeouts", |g| {
            g.iter().filter(|r| r.seq() == n).count() == 2
        })
        .await;
    let seqs = seqs_of(&got, "t-hang");
    // Each event: one hung request (timed out), then a successful retry.
    let expected: Vec<u64> = (1..=n).flat_map(|s| [s, s]).collect();
    assert_eq!(seqs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_stops_retries_and_records_a_dead_letter() {
    let agent = agent(0).await;
    let receiver = Receiver::with(|_, _| Reply::Status(410)).await;
    let d = agent.dispatcher(options()).await;
    agent
        .submit("t-gone", vec![config(&receiver.url, None)])
        .await;
    let n = events_per_task(0);
    let got = receiver.wait_for("every event once", n).await;
    // Later events still go out (each once), in order: a final answer is not retried.
    assert_eq!(seqs_of(&got, "t-gone"), (1..=n).collect::<Vec<_>>());
    let letters = wait_for_dead_letters(agent.dead.as_ref(), n as usize).await;
    assert!(letters
        .iter()
        .all(|l| l.attempts == 1 && l.task_id == "t-gone"));
    assert_eq!(outcomes(&d.metrics, "rejected"), n);
    assert_eq!(d.metrics.dead_letters.get(), n);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len() as u64, n, "no retry after 410");
}

/// Waits for `n` notifications given up (parked ones that are still retried do not count).
async fn wait_for_dead_letters(
    dead: &dyn DeadLetterStore,
    n: usize,
) -> Vec<bindu_engine::store::DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut letters = dead.list(1000, true).await.unwrap();
        letters.retain(|l| !l.retrying);
        if letters.len() >= n {
            return letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} dead letters, have {}",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_notifications_become_dead_letters_and_replay_delivers_them() {
    let agent = agent(0).await;
    let receiver = Receiver::with(|_, _| Reply::Status(500)).await;
    let mut o = options();
    o.delivery.max_attempts = 2;
    o.global = None;
    let d = agent.dispatcher(o.clone()).await;
    agent
        .submit("t-dead", vec![config(&receiver.url, Some("tok"))])
        .await;
    let n = events_per_task(0);
    let letters = wait_for_dead_letters(agent.dead.as_ref(), n as usize).await;
    assert!(letters.iter().all(|l| l.attempts == 2));
    assert_eq!(outcomes(&d.metrics, "exhausted"), n);
    assert_eq!(receiver.got().len() as u64, 2 * n);

    // The receiver is fixed; replay every dead letter, oldest first.
    receiver.set_behaviour(|_, _| Reply::Status(200));
    let before = receiver.got().len();
    let sender = Sender::new(o.delivery.clone(), Some(identity()), Default::default()).unwrap();
    let stop = CancellationToken::new();
    let mut ids: Vec<String> = letters.iter().map(|l| l.id.clone()).collect();
    ids.reverse();
    for id in &ids {
        let attempts = agent.replay(&sender, id, &stop).await.expect("replayed");
        assert_eq!(attempts, 1);
    }
    let replayed = &receiver.got()[before..];
    assert_eq!(seqs_of(replayed, "t-dead"), (1..=n).collect::<Vec<_>>());
    for r in replayed {
        assert_eq!(r.headers["authorization"], "Bearer tok");
        r.verify(&r.body).expect("replays are signed afresh");
    }
    assert_eq!(agent.dead.pending().await.unwrap(), 0);
    // A second replay of the same dead letter is refused.
    let again = agent.replay(&sender, &ids[0], &stop).await;
    assert!(matches!(again, Err(ReplayError::AlreadyReplayed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_webhook_gets_tasks_without_a_config_of_their_own() {
    let agent = agent(0).await;
    let global = Receiver::start().await;
    let own = Receiver::start().await;
    let mut o = options();
    o.global = Some(GlobalWebhook {
        url: global.url.clone(),
        token: Some("global-token".into()),
    });
    let _d = agent.dispatcher(o).await;
    submit(&agent.store, &agent.bus, "t-global", vec![]).await;
    agent.submit("t-own", vec![config(&own.url, None)]).await;
    let n = events_per_task(0);
    let got = global.wait_for("the global webhook", n).await;
    own.wait_for("the task's own webhook", n).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seqs_of(&global.got(), "t-own"), Vec::<u64>::new());
    assert_eq!(seqs_of(&got, "t-global"), (1..=n).collect::<Vec<_>>());
    assert_eq!(got[0].headers["authorization"], "Bearer global-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destinations_are_never_contacted_and_redirects_are_not_followed() {
    let agent = agent(0).await;
    // A loopback receiver that redirects to another loopback receiver.
    let target = Receiver::start().await;
    let target_url = target.url.clone();
    let redirector =
        Receiver::with(move |_, _| Reply::With(302, vec![("location", target_url.clone())])).await;
    let d = agent.dispatcher(options()).await;
    let port = redirector.port();
    let refused = [
        "http://10.0.0.7:9/hook".to_string(),  // private
        "http://192.168.1.1/hook".to_string(), // private
        "http://169.254.169.254/latest/meta-data/".to_string(), // cloud metadata (link-local)
        "http://[fe80::1]:9/hook".to_string(), // IPv6 link-local
        "http://[::ffff:169.254.169.254]/".to_string(), // metadata, IPv4-mapped
        "http://0.0.0.0:9/".to_string(),       // unspecified
        "ftp://127.0.0.1/hook".to_string(),    // not http(s)
    ];
    let mut configs: Vec<_> = refused.iter().map(|u| config(u, None)).collect();
    configs.push(config(&redirector.url, None));
    submit(&agent.store, &agent.bus, "t-ssrf", configs).await;
    let n = events_per_task(0);
    let per_event = refused.len() + 1;
    let letters = wait_for_dead_letters(agent.dead.as_ref(), n as usize * per_event).await;
    assert!(
        letters.iter().all(|l| l.attempts == 1),
        "refusals are final: no retries"
    );
    assert_eq!(outcomes(&d.metrics, "refused"), n * refused.len() as u64);
    assert_eq!(
        outcomes(&d.metrics, "rejected"),
        n,
        "the redirect is a final answer"
    );
    assert_eq!(redirector.got().len() as u64, n);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(target.got().is_empty(), "the redirect target was contacted");

    // A host name is checked after resolution: `localhost` is loopback, which a
    // public-only policy refuses before connecting.
    let mut public_only = bindu_workers::dispatcher::delivery::DeliveryOptions {
        ..delivery_options()
    };
    public_only.destinations = bindu_engine::config::PushDestinations {
        public: true,
        ..Default::default()
    };
    let victim = Receiver::start().await;
    let vport = victim.port();
    let sender = Sender::new(public_only, None, Default::default()).unwrap();
    let outcome = deliver_to(&sender, format!("http://localhost:{vport}/hook")).await;
    assert!(
        matches!(
            outcome,
            bindu_workers::dispatcher::Outcome::GaveUp {
                attempts: 1,
                kind: "refused",
                ..
            }
        ),
        "{outcome:?}"
    );
    let literal = deliver_to(&sender, format!("http://127.0.0.1:{port}/hook")).await;
    assert!(matches!(
        literal,
        bindu_workers::dispatcher::Outcome::GaveUp {
            kind: "refused",
            ..
        }
    ));
    assert!(victim.got().is_empty());
    assert_eq!(redirector.got().len() as u64, n);
}

/// One delivery of `{}` by `sender` to `url` (config "c", no token).
async fn deliver_to(sender: &Sender, url: String) -> bindu_workers::dispatcher::Outcome {
    let target = bindu_workers::dispatcher::Target {
        config_id: "c".into(),
        url,
        token: None,
        v10: false,
    };
    sender
        .deliver(&target, "{}", &CancellationToken::new())
        .await
}
