//! Back-pressure and per-caller limits (`[limits]`): a message over a limit is answered at
//! once with HTTP 429, `Retry-After` and -32029, and one noisy caller does not hold up a
//! quiet one. Callers are told apart by their tokens (a fake Hydra on loopback).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::hydra::{fake_hydra, now, Hydra};
use crate::support::{self, user_message, within, Gate, TestServer};

const TOO_MANY_REQUESTS: i64 = -32029;

/// A `message/send` body (`blocking` as given).
fn send_body(text: &str, blocking: bool) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": user_message(text), "configuration": {"blocking": blocking}}})
    .to_string()
}

/// POSTs `body` with `headers`; the status, the `Retry-After` header and the JSON body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
    body: String,
) -> (u16, Option<String>, Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = within("POST /", req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = within("a response body", resp.json::<Value>())
        .await
        .unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// Asserts a 429 refusal for `reason`; its `Retry-After` seconds.
fn assert_refused(answer: &(u16, Option<String>, Value), reason: &str) -> u64 {
    let (status, retry_after, body) = answer;
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"]["code"], TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["data"]["reason"], reason, "{body}");
    assert_eq!(body["id"], 1, "the id is echoed: {body}");
    let secs: u64 = retry_after
        .as_deref()
        .expect("a Retry-After header")
        .parse()
        .unwrap();
    assert!(secs >= 1, "{secs}");
    assert_eq!(body["error"]["data"]["retryAfter"], secs, "{body}");
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_over_its_limit_answers_429_at_once_instead_of_waiting() {
    let (gate, h) = Gate::new();
    let srv = TestServer::start(
        &[("worker.concurrency", "1"), ("limits.queue_limit", "2")],
        h,
    )
    .await;
    let http = reqwest::Client::new();
    // Non-blocking sends pile up behind the one gated run until the queue passes its limit
    // (the depth the check reads is at most a quarter of a second old).
    let mut refused = None;
    for i in 0..200 {
        let answer = post(
            &http,
            &srv.url(),
            &[],
            send_body(&format!("job {i}"), false),
        )
        .await;
        if answer.0 == 429 {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.0, 200, "{}", answer.2);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("the queue over its limit refused a message");
    assert_eq!(assert_refused(&refused, "queue"), 1);
    // A blocking send is answered at once too, not after the queue drained.
    let blocking = post(&http, &srv.url(), &[], send_body("wait?", true)).await;
    assert_refused(&blocking, "queue");
    // Streams get the same HTTP answer.
    let stream = json!({"jsonrpc": "2.0", "id": 1, "method": "message/stream",
                        "params": {"message": user_message("stream?")}});
    assert_refused(
        &post(&http, &srv.url(), &[], stream.to_string()).await,
        "queue",
    );
    gate.started().await;
    gate.release(1000);
    // Once the queue drains, messages pass again.
    within("the queue to drain and a message to pass", async {
        loop {
            let answer = post(&http, &srv.url(), &[], send_body("again", true)).await;
            if answer.0 == 200 {
                assert_eq!(support::state(&answer.2["result"]), "completed");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (_, _, metrics) = srv.get("/metrics").await;
    assert!(
        metrics.contains("bindu_limits_refused_total{reason=\"queue\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_in_process_queue_refuses_instead_of_holding_the_request() {
    let (gate, h) = Gate::new();
    // No limit configured: the bus's own capacity is the limit.
    let srv = TestServer::start(
        &[
            ("worker.concurrency", "1"),
            ("scheduler.queue_capacity", "1"),
        ],
        h,
    )
    .await;
    let http = reqwest::Client::new();
    let mut refused = None;
    for i in 0..50 {
        let body = send_body(&format!("job {i}"), false);
        let answer = post(&http, &srv.url(), &[], body.clone()).await;
        if answer.0 == 429 {
            refused = Some((answer, body));
            break;
        }
        assert_eq!(answer.0, 200, "{}", answer.2);
    }
    let (refused, body) = refused.expect("a full queue refused a message");
    assert_refused(&refused, "queue");
    gate.started().await;
    gate.release(1000);
    // Told to retry, the sender sends the same message again (idempotent sends are on by
    // default): once there is room it makes a task that runs, not the one failed for want
    // of room.
    let mut retried = None;
    for _ in 0..100 {
        let answer = post(&http, &srv.url(), &[], body.clone()).await;
        if answer.0 == 200 {
            retried = Some(answer);
            break;
        }
        assert_eq!(answer.0, 429, "{}", answer.2);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let retried = retried.expect("the retry was accepted once the queue had room");
    let task = srv
        .wait_for_state(retried.2["result"]["id"].as_str().unwrap(), "completed")
        .await;
    assert_eq!(task["status"]["state"], "completed", "{task}");
}

/// An agent with authentication on a fake Hydra and `limits`; two callers' tokens.
pub(crate) async fn two_callers(
    limits: &[(&str, &str)],
    h: Arc<dyn bindu::Handler>,
) -> (TestServer, Arc<Hydra>) {
    let (hydra, addr) = fake_hydra().await;
    let dir = std::env::temp_dir().join(format!("bindu-limits-{}", uuid::Uuid::new_v4().simple()));
    let srv = support::start_authenticated(addr, &dir, limits, h).await;
    for (token, client) in [("noisy", "svc-noisy"), ("quiet", "svc-quiet")] {
        hydra.token(token, client, json!(now() + 3600), "agent:read agent:write");
    }
    (srv, hydra)
}

/// Sends "later" to `url` with `headers` until it is accepted (panicking with `what` if it
/// is not in time); each refusal until then is for the caller's open tasks.
async fn accepted_once_freed(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&'static str, String)],
    what: &str,
) {
    within(what, async {
        loop {
            let answer = post(http, url, headers, send_body("later", false)).await;
            if answer.0 == 200 {
                return;
            }
            assert_refused(&answer, "open_tasks");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

pub(crate) fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_caller_is_limited_by_its_rate_and_a_quiet_one_is_not() {
    let (srv, _hydra) = two_callers(
        // One message a minute after a burst of three: the test never sees a refill.
        &[("limits.rate", "0.0167"), ("limits.burst", "3")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let http = reqwest::Client::new();
    let noisy = [bearer("noisy")];
    for i in 0..3 {
        let answer = post(&http, &srv.url(), &noisy, send_body(&format!("n{i}"), true)).await;
        assert_eq!(answer.0, 200, "{}", answer.2);
        assert_eq!(support::state(&answer.2["result"]), "completed");
    }
    for i in 0..5 {
        let answer = post(&http, &srv.url(), &noisy, send_body(&format!("x{i}"), true)).await;
        let secs = assert_refused(&answer, "rate");
        assert!(
            (50..=61).contains(&secs),
            "a token is back in about a minute: {secs}"
        );
    }
    // The quiet caller has its own bucket: every message of its burst passes.
    for i in 0..3 {
        let answer = post(
            &http,
            &srv.url(),
            &[bearer("quiet")],
            send_body(&format!("q{i}"), true),
        )
        .await;
        assert_eq!(answer.0, 200, "{}", answer.2);
        assert_eq!(support::state(&answer.2["result"]), "completed");
    }
    // Reads are not limited.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/list", "params": {}});
    assert_eq!(
        post(&http, &srv.url(), &noisy, list.to_string()).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_at_its_open_task_limit_is_refused_until_one_ends() {
    let (gate, h) = Gate::new();
    let (srv, _hydra) = two_callers(
        &[("limits.max_open_tasks", "2"), ("worker.concurrency", "4")],
        h,
    )
    .await;
    let http = reqwest::Client::new();
    let noisy = [bearer("noisy")];
    for i in 0..2 {
        let answer = post(
            &http,
            &srv.url(),
            &noisy,
            send_body(&format!("n{i}"), false),
        )
        .await;
        assert_eq!(answer.0, 200, "{}", answer.2);
    }
    let refused = post(&http, &srv.url(), &noisy, send_body("third", false)).await;
    assert_refused(&refused, "open_tasks");
    // The quiet caller's runs are its own.
    let quiet = post(&http, &srv.url(), &[bearer("quiet")], send_body("q", false)).await;
    assert_eq!(quiet.0, 200, "{}", quiet.2);
    for _ in 0..3 {
        gate.started().await;
    }
    gate.release(1);
    // Once a run ends, the noisy caller may start another.
    accepted_once_freed(&http, &srv.url(), &noisy, "a place to free up").await;
    gate.release(1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_have_their_own_limits() {
    let srv = TestServer::echo_with(&[
        ("limits.anonymous_rate", "0.0167"),
        ("limits.anonymous_burst", "1"),
    ])
    .await;
    let http = reqwest::Client::new();
    assert_eq!(
        post(&http, &srv.url(), &[], send_body("one", true)).await.0,
        200
    );
    assert_refused(
        &post(&http, &srv.url(), &[], send_body("two", true)).await,
        "rate",
    );
    // A2A 1.0 callers get the same answer (-32029 means nothing else in 1.0).
    let send10 = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                        "params": {"message": {"role": "ROLE_USER", "messageId": "m10", "parts": [{"text": "three"}]}}});
    let answer = post(
        &http,
        &srv.url(),
        &[("a2a-version", "1.0".to_string())],
        send10.to_string(),
    )
    .await;
    assert_refused(&answer, "rate");
}

/// Two ingress replicas sharing Redis (`BINDU_TEST_REDIS_URL`, default the local server):
/// the anonymous callers' bucket is one for both, so the burst is shared, not doubled.
#[cfg(feature = "t2-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_callers_bucket_through_redis() {
    let (redis, agent) = crate::support::redis_proxy::shared_agent("limits-test");
    let settings = [
        ("cache.redis_url", redis.as_str()),
        ("storage.namespace", agent.as_str()),
        ("limits.anonymous_rate", "0.0167"),
        ("limits.anonymous_burst", "3"),
    ];
    let a = TestServer::echo_with(&settings).await;
    let b = TestServer::echo_with(&settings).await;
    let http = reqwest::Client::new();
    let mut passed = 0;
    for i in 0..6 {
        let srv = if i % 2 == 0 { &a } else { &b };
        let answer = post(&http, &srv.url(), &[], send_body(&format!("m{i}"), true)).await;
        match answer.0 {
            200 => passed += 1,
            _ => {
                assert_refused(&answer, "rate");
            }
        }
    }
    assert_eq!(passed, 3, "the burst of 3 is shared by both replicas");
    let (_, _, metrics) = a.get("/metrics").await;
    assert!(
        metrics.contains("bindu_limits_fallbacks_total 0"),
        "Redis answered every check: {metrics}"
    );
}

/// Redis stops answering (a restart behind a proxy): messages are still answered, limited by
/// the replica's own bucket instead (counted as fallbacks), never refused for Redis's sake.
#[cfg(feature = "t2-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_fall_back_to_the_replicas_own_bucket_when_redis_is_down_through_redis() {
    let proxy = crate::support::redis_proxy::Proxy::start().await;
    let agent = format!("limits-down-{}", uuid::Uuid::new_v4().simple());
    let srv = TestServer::echo_with(&[
        ("cache.redis_url", proxy.url.as_str()),
        ("cache.redis_timeout_ms", "300"),
        ("cache.redis_reconnect_max_ms", "500"),
        ("storage.namespace", agent.as_str()),
        ("limits.anonymous_rate", "0.0167"),
        ("limits.anonymous_burst", "2"),
    ])
    .await;
    let http = reqwest::Client::new();
    for i in 0..2 {
        let answer = post(&http, &srv.url(), &[], send_body(&format!("a{i}"), true)).await;
        assert_eq!(answer.0, 200, "{}", answer.2);
    }
    assert_refused(
        &post(&http, &srv.url(), &[], send_body("a2", true)).await,
        "rate",
    );
    proxy.restart_begins();
    // The shared bucket is out of reach: the replica's own (full) bucket decides.
    for i in 0..2 {
        let answer = post(&http, &srv.url(), &[], send_body(&format!("b{i}"), true)).await;
        assert_eq!(answer.0, 200, "{}", answer.2);
        assert_eq!(support::state(&answer.2["result"]), "completed");
    }
    assert_refused(
        &post(&http, &srv.url(), &[], send_body("b2", true)).await,
        "rate",
    );
    let (_, _, metrics) = srv.get("/metrics").await;
    let fallbacks: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bindu_limits_fallbacks_total "))
        .expect("the fallback counter")
        .parse()
        .unwrap();
    assert!(fallbacks >= 3.0, "{metrics}");
    proxy.restart_ends();
}

/// Two replicas sharing Redis count a caller's open runs together: runs open on one replica
/// leave no place on the other.
#[cfg(feature = "t2-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_callers_open_runs_through_redis() {
    let (redis, agent) = crate::support::redis_proxy::shared_agent("limits-open");
    let settings = [
        ("cache.redis_url", redis.as_str()),
        ("storage.namespace", agent.as_str()),
        ("limits.anonymous_max_open_tasks", "2"),
    ];
    let (gate_a, ha) = Gate::new();
    let (gate_b, hb) = Gate::new();
    let a = TestServer::start(&settings, ha).await;
    let b = TestServer::start(&settings, hb).await;
    let http = reqwest::Client::new();
    assert_eq!(
        post(&http, &a.url(), &[], send_body("a", false)).await.0,
        200
    );
    assert_eq!(
        post(&http, &b.url(), &[], send_body("b", false)).await.0,
        200
    );
    gate_a.started().await;
    gate_b.started().await;
    assert_refused(
        &post(&http, &a.url(), &[], send_body("third", false)).await,
        "open_tasks",
    );
    assert_refused(
        &post(&http, &b.url(), &[], send_body("third", false)).await,
        "open_tasks",
    );
    // The run on `a` ends: `a` gives its place back, and `b` may use it.
    gate_a.release(1);
    accepted_once_freed(&http, &b.url(), &[], "the ended run to free a place").await;
    gate_a.release(100);
    gate_b.release(100);
}
