//! Fair settlement: withheld results, no charge for failed work, held streams,
//! settle-before, the authorization's expiry, authentication first, and replicas sharing the
//! nonce guard in Redis.

use super::*;

/// The task `body` answers, with its payment metadata.
fn failed_unpaid(body: &Value) -> (&Value, &Value) {
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "failed", "{task}");
    assert!(task.get("artifacts").is_none(), "nothing released: {task}");
    (task, &task["metadata"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_that_fails_withholds_the_result() {
    let p = Priced::echo().await;
    // 26: settle success:false → failed with the reason, payment-failed, nothing released.
    p.fac.set_settle(Mode::Refuse);
    let (status, headers, body) = p.send_paid("payment-signature", p.pay()).await;
    assert_eq!(status, 200);
    let (task, meta) = failed_unpaid(&body);
    assert_eq!(meta["x402.payment.status"], "payment-failed", "{task}");
    assert_eq!(meta["x402.payment.error"], "SETTLEMENT_FAILED");
    assert_eq!(meta["x402.payment.receipts"][0]["success"], false);
    assert!(task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .contains("insufficient_funds"));
    assert!(headers.get("payment-response").is_none());
    // The stored task has no artifact either, and the agent's reply is not in its history.
    let stored = p.srv.get_task(task["id"].as_str().unwrap()).await;
    assert!(stored.get("artifacts").is_none(), "{stored}");
    assert!(!stored
        .to_string()
        .contains("paid work\"}],\"role\":\"agent"));

    assert_eq!(p.fac.settled_count(), 0);
}

/// The task `body` answers, waiting for its payment's reconciliation: `working`,
/// `payment-orphaned` with what a reconciliation needs, nothing released.
fn orphaned<'a>(body: &'a Value, nonce: &Value) -> &'a Value {
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "working", "{task}");
    assert!(task.get("artifacts").is_none(), "nothing released: {task}");
    let meta = &task["metadata"];
    assert_eq!(meta["x402.payment.status"], "payment-orphaned", "{task}");
    assert_eq!(&meta["x402_nonce"], nonce);
    assert_eq!(meta["x402_network"], "eip155:84532");
    assert_eq!(&meta["x402_authorization"]["nonce"], nonce);
    assert!(task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .contains("reconciled"));
    task
}

/// An echo agent whose reconciliation passes every second.
async fn reconciling() -> Priced {
    Priced::start(
        &[("x402.reconcile_interval", "1s")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await
}

/// Sends a paid message whose settlement has no answer: its task (checked by [`orphaned`])
/// and the response headers.
async fn send_orphaned(p: &Priced) -> (String, reqwest::header::HeaderMap) {
    let payment = p.pay();
    let nonce = unb64(&payment)["payload"]["authorization"]["nonce"].clone();
    let (_, headers, body) = p.send_paid("payment-signature", payment).await;
    let id = orphaned(&body, &nonce)["id"].as_str().unwrap().to_string();
    (id, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_settlement_is_reconciled_and_the_result_released_once_paid() {
    // Reconciliation passes every second.
    let p = reconciling().await;
    // HTTP 500 (nothing transferred) and a late answer (the transfer landed, the answer
    // came after the worker stopped waiting): the outcome is unknown; the blocking answer
    // says so at once.
    for mode in [Mode::Broken, Mode::Late] {
        p.fac.set_settle(mode);
        let before = p.fac.settles.load(Ordering::SeqCst);
        let landed = p.fac.settled_count();
        let (id, headers) = send_orphaned(&p).await;
        assert!(headers.get("payment-response").is_none());
        // Still waiting while the facilitator gives no answer.
        let stored = p.srv.get_task(&id).await;
        assert_eq!(stored["status"]["state"], "working", "{mode:?}: {stored}");
        // The facilitator answers again: the reconciliation settles it (or recognises the
        // late transfer by its used nonce) and releases the result with the receipt.
        if mode == Mode::Late {
            assert_eq!(p.fac.settled_count(), landed + 1, "the transfer landed");
        }
        p.fac.set_settle(Mode::Honest);
        let done = p.srv.wait_for_state(&id, "completed").await;
        let meta = &done["metadata"];
        assert_eq!(meta["x402.payment.status"], "payment-completed", "{done}");
        assert_eq!(meta["x402.payment.receipts"][0]["success"], true);
        assert_eq!(
            done["artifacts"][0]["parts"][0]["text"], "paid work",
            "{done}"
        );
        assert!(
            p.fac.settles.load(Ordering::SeqCst) >= before + 2,
            "asked again"
        );
    }
    assert_eq!(p.fac.settled_count(), 2, "each payment transferred once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_settlement_the_facilitator_then_refuses_is_never_charged() {
    let p = reconciling().await;
    p.fac.set_settle(Mode::Broken);
    let (id, _) = send_orphaned(&p).await;
    p.fac.set_settle(Mode::Refuse);
    let done = p.srv.wait_for_state(&id, "failed").await;
    assert_eq!(
        done["metadata"]["x402.payment.status"], "payment-failed",
        "{done}"
    );
    assert_eq!(done["metadata"]["x402.payment.error"], "SETTLEMENT_FAILED");
    assert!(done.get("artifacts").is_none(), "nothing released: {done}");
    assert_eq!(p.fac.settled_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_never_charged() {
    let h = handler(|input: HandlerInput| async move {
        match input.last_user_message().map(|m| m.text()).as_deref() {
            Some("fail") => Err(HandlerError::from("the model is down")),
            Some("reject") => Ok(HandlerOutput::Rejected("not my job".into())),
            _ => Ok(HandlerOutput::InputRequired("which city?".into())),
        }
    });
    let p = Priced::start(&[], h).await;
    for (text, state) in [("fail", "failed"), ("reject", "rejected")] {
        let (status, headers, body) = p
            .post(
                "message/send",
                json!({"message": user_message(text)}),
                &[("payment-signature", p.pay())],
            )
            .await;
        assert_eq!(status, 200);
        let task = &body["result"];
        assert_eq!(task["status"]["state"], state, "{task}");
        assert_eq!(
            task["metadata"]["x402.payment.status"], "payment-failed",
            "{task}"
        );
        assert_eq!(task["metadata"]["x402.payment.error"], "TASK_NOT_COMPLETED");
        assert!(headers.get("payment-response").is_none());
    }
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 0, "nothing settled");
}

/// A handler that streams one chunk, says so, waits for the test, then finishes.
pub(super) fn gated_streamer() -> (
    Arc<tokio::sync::Notify>,
    Arc<tokio::sync::Notify>,
    Arc<dyn bindu::Handler>,
) {
    let sent = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Notify::new());
    let (s, g) = (sent.clone(), go.clone());
    let h = handler(move |input: HandlerInput| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            let mut stream = input.emitter.stream("answer");
            stream
                .send(vec![bindu::schemas::Part::text("first ")])
                .await?;
            s.notify_one();
            g.notified().await;
            stream
                .finish(vec![bindu::schemas::Part::text("second")])
                .await?;
            Ok(HandlerOutput::Streamed)
        }
    });
    (sent, go, h)
}

/// `message/stream` for `message` with `headers`; the raw response, a 200.
pub(super) async fn open_stream(
    p: &Priced,
    message: Value,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "message/stream",
                      "params": {"message": message}});
    let mut req = p
        .srv
        .client
        .post(p.srv.url())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = within("opening the stream", req.body(body.to_string()).send())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp
}

/// A paid `message/stream` of "stream it".
async fn open_paid_stream(p: &Priced) -> reqwest::Response {
    open_stream(
        p,
        user_message("stream it"),
        &[("payment-signature", p.pay())],
    )
    .await
}

/// Reads `resp`, the stream of a [`gated_streamer`] run (`sent`, `go`) whose payment settles
/// after the run: no chunk reaches the client before the settlement; once the handler goes
/// on, both chunks and the final `completed` do. Every event read.
pub(super) async fn held_until_settled(
    p: &Priced,
    resp: &mut reqwest::Response,
    sent: &tokio::sync::Notify,
    go: &tokio::sync::Notify,
) -> Vec<Value> {
    within("the first chunk", sent.notified()).await;
    let mut buf = String::new();
    let early = events_within(resp, Duration::from_millis(500), &mut buf).await;
    assert!(
        artifact_updates(&early).is_empty(),
        "a chunk left before settlement: {early:?}"
    );
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 0);
    go.notify_one();
    let all = events_within(resp, support::TIMEOUT, &mut buf).await;
    let chunks = artifact_updates(&all);
    assert_eq!(chunks.len(), 2, "{all:?}");
    let last = all.last().unwrap();
    assert_eq!(last["status"]["state"], "completed", "{all:?}");
    assert_eq!(last["final"], true);
    all
}

/// The `result` of every SSE data line read from `resp` within `limit`.
pub(super) async fn events_within(
    resp: &mut reqwest::Response,
    limit: Duration,
    buf: &mut String,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    // Until the stream ends or the deadline passes.
    while let Ok(Ok(Some(bytes))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
        buf.push_str(&String::from_utf8_lossy(&bytes));
    }
    buf.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        // A line cut by the end of a read is read whole by the next call (same `buf`).
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .map(|v| v["result"].clone())
        .collect()
}

pub(super) fn artifact_updates(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "artifact-update")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_stream_holds_its_chunks_until_the_payment_settled() {
    let (sent, go, h) = gated_streamer();
    let p = Priced::start(&[], h).await;
    let mut resp = open_paid_stream(&p).await;
    let all = held_until_settled(&p, &mut resp, &sent, &go).await;
    let chunks = artifact_updates(&all);
    assert_eq!(chunks[0]["artifact"]["parts"][0]["text"], "first ");
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 1);

    // A stream whose settlement fails ends failed, and no chunk ever reaches the client.
    p.fac.set_settle(Mode::Refuse);
    let mut resp = open_paid_stream(&p).await;
    within("the first chunk", sent.notified()).await;
    go.notify_one();
    let mut buf = String::new();
    let all = events_within(&mut resp, support::TIMEOUT, &mut buf).await;
    assert!(artifact_updates(&all).is_empty(), "{all:?}");
    assert_eq!(all.last().unwrap()["status"]["state"], "failed", "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_before_settles_first_then_streams() {
    let (sent, go, h) = gated_streamer();
    let p = Priced::start(&[("x402.settle", "before")], h).await;
    let mut resp = open_paid_stream(&p).await;
    within("the first chunk", sent.notified()).await;
    assert_eq!(
        p.fac.settles.load(Ordering::SeqCst),
        1,
        "settled before the run"
    );
    let mut buf = String::new();
    let early = events_within(&mut resp, Duration::from_millis(500), &mut buf).await;
    assert_eq!(
        artifact_updates(&early).len(),
        1,
        "streamed at once: {early:?}"
    );
    go.notify_one();
    let all = events_within(&mut resp, support::TIMEOUT, &mut buf).await;
    assert_eq!(all.last().unwrap()["status"]["state"], "completed");
    // A refused settlement: the handler never runs.
    p.fac.set_settle(Mode::Refuse);
    let (_, _, body) = p.send_paid("payment-signature", p.pay()).await;
    let (_, meta) = failed_unpaid(&body);
    assert_eq!(meta["x402.payment.status"], "payment-failed");
}

/// The expiry rule: with X402__SETTLE=after a paid run is stopped, unpaid, before its
/// authorization can no longer be settled (validBefore − 6 s − the facilitator timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_would_outlive_its_authorization_is_stopped_unpaid() {
    let h = handler(|input: HandlerInput| async move {
        // Far longer than the authorization; stops when told to.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = input.cancel.cancelled() => {}
        }
        Ok(HandlerOutput::Text("too late".into()))
    });
    let p = Priced::start(&[], h).await;
    // Valid for 10 s: the run must end by about now + 3 s (10 − 6 − 1).
    let payment = b64(&payload(&payer(), &p.req, now() + 10, nonce()));
    let started = std::time::Instant::now();
    let (status, _, body) = p.send_paid("payment-signature", payment).await;
    assert_eq!(status, 200);
    let (task, meta) = failed_unpaid(&body);
    assert_eq!(meta["x402.payment.error"], "EXPIRED_PAYMENT", "{task}");
    assert!(started.elapsed() < support::TIMEOUT);
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_facilitator_speaks_supported() {
    let (url, _) = fake_facilitator::start().await.unwrap();
    let f = bindu::engine::x402::HttpFacilitator::new(&url, Duration::from_secs(2)).unwrap();
    use bindu::engine::x402::Facilitator;
    let s = f.supported().await.unwrap();
    assert_eq!(s.kinds[0].network, "eip155:84532");
}

/// 27, and the order of item 3: the caller is authenticated before its payment is looked
/// at. An unauthenticated caller with a valid payment gets 401; nothing is verified and
/// the nonce is not burned, so the same payment pays once the caller authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_is_authenticated_before_the_payment_is_checked() {
    let (hydra, hydra_addr) = crate::support::hydra::fake_hydra().await;
    let hydra_url = format!("http://{hydra_addr}");
    hydra.token(
        "svc-token",
        "svc-client",
        json!(crate::support::hydra::now() + 3600),
        "agent:write",
    );
    let p = Priced::start(
        &[("auth.enabled", "true"), ("hydra.admin_url", &hydra_url)],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let payment = p.pay();
    let (status, _, body) = p.send_paid("payment-signature", payment.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);
    let (status, _, body) = p
        .post(
            "message/send",
            json!({"message": user_message("x")}),
            &[("authorization", "Bearer svc-token".into())],
        )
        .await;
    assert_eq!(status, 402, "authenticated, unpaid: {body}");
    let (status, _, body) = p
        .post(
            "message/send",
            json!({"message": user_message("paid work")}),
            &[
                ("authorization", "Bearer svc-token".into()),
                ("payment-signature", payment),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");
}

/// Payments by outcome and settlement latency on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_are_counted_by_outcome() {
    let p = Priced::echo().await;
    let _ = p
        .post("message/send", json!({"message": user_message("x")}), &[])
        .await;
    let (status, _, _) = p.send_paid("payment-signature", p.pay()).await;
    assert_eq!(status, 200);
    let (_, _, text) = p.srv.get("/metrics").await;
    for line in [
        "bindu_payments_verified_total{outcome=\"required\"} 1",
        "bindu_payments_verified_total{outcome=\"verified\"} 1",
        "bindu_payment_settlements_total{outcome=\"settled\"} 1",
        "bindu_payment_settle_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

/// A priced agent's separate ingress (or a `bindu serve` on a shared bus) refuses to start
/// without Redis: a replay guard in each process's memory would let a payment through once
/// per replica.
#[test]
fn a_priced_agent_with_several_processes_needs_redis() {
    let problem = |c: &bindu::Config, role| {
        let priced = c.prices(&c.skills().unwrap()).unwrap().priced();
        c.payments_problem(role, priced)
    };
    let mut c = bindu::Config::from_settings(&[("x402.pay_to", PAY_TO)]).unwrap();
    c.agent.execution_cost = vec![PriceOption::usdc("0.01")];
    assert!(problem(&c, bindu::Role::Serve).is_none(), "one process");
    assert!(
        problem(&c, bindu::Role::Worker).is_none(),
        "workers claim nothing"
    );
    assert!(problem(&c, bindu::Role::Ingress)
        .unwrap()
        .contains("REDIS_URL"));
    c.scheduler.kind = bindu::BusKind::Nats;
    assert!(problem(&c, bindu::Role::Serve).is_some());
    c.cache.redis_url = Some("redis://127.0.0.1:6379".to_string().into());
    assert!(problem(&c, bindu::Role::Ingress).is_none());
    c.agent.execution_cost.clear();
    c.cache.redis_url = None;
    assert!(problem(&c, bindu::Role::Ingress).is_none(), "a free agent");
    // A free agent with a priced skill is priced.
    c.agent.skills = vec![bindu_ingress::skills::SkillSource::Inline(Box::new(
        bindu::Skill::new("dear", "dear", "d").execution_cost(vec![PriceOption::usdc("1")]),
    ))];
    assert!(problem(&c, bindu::Role::Ingress)
        .unwrap()
        .contains("REDIS_URL"));
}

/// T2: the replay guard in Redis, shared by two replicas; a Redis that stops answering
/// refuses payments (fail closed) and takes them again once it is back.
#[cfg(feature = "t2-redis")]
mod redis {
    use super::*;
    use crate::support::redis_proxy::Proxy;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_share_the_nonces_and_an_outage_refuses_payments() {
        let proxy = Proxy::start().await;
        let ns = format!("x402-{}", uuid::Uuid::new_v4().simple());
        let settings = [
            ("cache.redis_url", proxy.url.as_str()),
            ("cache.redis_timeout_ms", "300"),
            ("storage.namespace", ns.as_str()),
        ];
        let a = Priced::start(&settings, Arc::new(bindu::EchoHandler::default())).await;
        let b = Priced::start(&settings, Arc::new(bindu::EchoHandler::default())).await;
        let payment = a.pay();
        let (status, _, body) = a.send_paid("payment-signature", payment.clone()).await;
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = b.send_paid("x-payment", payment).await;
        assert_eq!(status, 402, "a replay on the other replica: {body}");
        assert!(error_of(&body).contains("replay"));

        proxy.hang(true);
        let fresh = a.pay();
        let (status, _, body) = a.send_paid("payment-signature", fresh).await;
        assert_eq!(status, 503, "fail closed: {body}");
        assert_eq!(a.fac.verifies.load(Ordering::SeqCst), 1, "not verified");
        assert_eq!(a.tasks().await, 1);
        proxy.hang(false);
        // Back once a PING answers (every half second while down). The claim that timed
        // out may still have landed when Redis woke up: that payment then counts as used
        // (nothing was verified or settled; the payer signs a new one), so each try pays
        // anew.
        let mut paid = false;
        for _ in 0..40 {
            let (status, _, _) = a.send_paid("payment-signature", a.pay()).await;
            if status == 200 {
                paid = true;
                break;
            }
            assert_eq!(status, 503);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(paid, "payments are taken again once Redis answers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_settlement_before_the_run_runs_it_once_reconciled() {
    let p = Priced::start(
        &[("x402.settle", "before"), ("x402.reconcile_interval", "1s")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    p.fac.set_settle(Mode::Broken);
    let payment = p.pay();
    let nonce = unb64(&payment)["payload"]["authorization"]["nonce"].clone();
    let (_, _, body) = p.send_paid("payment-signature", payment).await;
    // The handler has not run: nothing in the history but the user's message.
    let task = orphaned(&body, &nonce);
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["history"].as_array().unwrap().len(), 1, "{task}");
    p.fac.set_settle(Mode::Honest);
    // Settled by the reconciliation, then run (and not settled again).
    let done = p.srv.wait_for_state(&id, "completed").await;
    assert_eq!(done["metadata"]["x402.payment.status"], "payment-completed");
    assert_eq!(
        done["artifacts"][0]["parts"][0]["text"], "paid work",
        "{done}"
    );
    assert_eq!(p.fac.settled_count(), 1);
}
