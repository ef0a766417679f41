//! The a2a-x402 metadata flow (`X402__FLOW=a2a`): an unpaid call pauses its task in
//! `input-required` asking for the payment (`x402.payment.required`), a follow-up carrying
//! `x402.payment.payload` pays and runs it; and, in either flow, a follow-up on a task that
//! is paid (or whose verified payment waits for the task to complete) is not charged again.

use super::*;
use crate::support::user_message_with;

/// A follow-up message on `task_id` with `metadata`.
fn follow_up(task_id: &str, text: &str, metadata: Value) -> Value {
    user_message_with(text, json!({"taskId": task_id, "metadata": metadata}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_call_pauses_for_payment_and_a_follow_up_with_the_payload_runs_it() {
    let p = Priced::start(
        &[("x402.flow", "a2a")],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    // No payment: not a 402 but a task asking for one, nothing verified or run.
    let (status, _, body) = p
        .post(
            "message/send",
            json!({"message": user_message("paid work")}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "input-required", "{task}");
    let prompt = &task["status"]["message"]["metadata"];
    assert_eq!(prompt["x402.payment.status"], "payment-required");
    assert_eq!(prompt["x402.payment.required"]["x402Version"], 2);
    assert_eq!(prompt["x402.payment.required"]["accepts"], json!([p.req]));
    assert_eq!(task["metadata"]["x402.payment.status"], "payment-required");
    assert!(task.get("artifacts").is_none());
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);

    // A payload that is not a PaymentPayload object, or one that does not verify: refused
    // with the reason, the task still waits.
    for bad in [json!("not an object"), {
        let mut tampered = payload(&payer(), &p.req, now() + 300, nonce());
        tampered["payload"]["authorization"]["value"] = json!("1");
        tampered
    }] {
        let (status, _, body) = p
            .post(
                "message/send",
                json!({"message": follow_up(&id, "pay", json!({"x402.payment.status": "payment-submitted", "x402.payment.payload": bad}))}),
                &[],
            )
            .await;
        assert_eq!(status, 402, "{body}");
        assert!(error_of(&body).starts_with("Invalid payment"), "{body}");
    }
    assert_eq!(
        p.srv.get_task(&id).await["status"]["state"],
        "input-required"
    );

    // The payment in the follow-up's metadata: verified, run, settled.
    let pay = payload(&payer(), &p.req, now() + 300, nonce());
    let signature = pay["payload"]["signature"].as_str().unwrap().to_string();
    let (status, headers, body) = p
        .post(
            "message/send",
            json!({"message": follow_up(&id, "paid work", json!({"x402.payment.status": "payment-submitted", "x402.payment.payload": pay}))}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let done = &body["result"];
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["metadata"]["x402.payment.status"], "payment-completed");
    assert_eq!(
        done["metadata"]["x402.payment.receipts"][0]["success"],
        true
    );
    assert!(headers.get("payment-response").is_some());
    assert_eq!(p.fac.settled_count(), 1);
    // The conversation keeps that a payment was submitted, not the signed payload.
    let stored = p.srv.get_task(&id).await;
    assert!(!stored.to_string().contains(&signature), "{stored}");
    let history = stored["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|m| m["metadata"]["x402.payment.status"] == "payment-submitted"));

    // Once paid, a follow-up is free: no payment asked for, nothing settled again. (The
    // echo handler completed the task, so the follow-up is refused as a task that ended,
    // not as unpaid.)
    let (status, _, body) = p
        .post(
            "message/send",
            json!({"message": follow_up(&id, "more", json!({}))}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "not 402: {body}");
    assert_eq!(p.fac.settled_count(), 1);
}

/// A handler that asks a question first, then answers.
fn asks_first() -> Arc<dyn bindu::Handler> {
    handler(|input: HandlerInput| async move {
        if input
            .history
            .iter()
            .filter(|m| m.role == bindu::schemas::Role::User)
            .count()
            < 2
        {
            Ok(HandlerOutput::InputRequired("which city?".into()))
        } else {
            Ok(HandlerOutput::Text("sunny".into()))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_on_a_paid_task_are_not_charged_twice() {
    for settle in ["after", "before"] {
        let p = Priced::start(&[("x402.settle", settle)], asks_first()).await;
        let (status, _, body) = p
            .post(
                "message/send",
                json!({"message": user_message("weather?")}),
                &[("payment-signature", p.pay())],
            )
            .await;
        assert_eq!(status, 200, "{settle}: {body}");
        let task = &body["result"];
        assert_eq!(task["status"]["state"], "input-required", "{task}");
        let id = task["id"].as_str().unwrap().to_string();
        // After: nothing settled yet, the payment waits for the task to complete.
        // Before: settled before the first run.
        let expected = if settle == "after" {
            "payment-verified"
        } else {
            "payment-completed"
        };
        assert_eq!(
            task["metadata"]["x402.payment.status"], expected,
            "{settle}"
        );

        // The follow-up carries no payment and is not asked for one.
        let (status, _, body) = p
            .post(
                "message/send",
                json!({"message": follow_up(&id, "Paris", json!({}))}),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{settle}: not 402: {body}");
        let done = &body["result"];
        assert_eq!(done["status"]["state"], "completed", "{settle}: {done}");
        assert_eq!(done["metadata"]["x402.payment.status"], "payment-completed");
        assert_eq!(done["artifacts"][0]["parts"][0]["text"], "sunny");
        assert_eq!(p.fac.settled_count(), 1, "{settle}: charged once");
        assert_eq!(
            p.fac.verifies.load(Ordering::SeqCst),
            1,
            "{settle}: verified once"
        );

        // A follow-up naming a task that was never paid still needs a payment.
        let (status, _, _) = p
            .post(
                "message/send",
                json!({"message": follow_up(&uuid::Uuid::new_v4().to_string(), "hi", json!({}))}),
                &[],
            )
            .await;
        assert_eq!(status, 402, "{settle}");
    }
}

/// A webhook receiver on loopback: the JSON bodies it got, in order.
async fn webhook() -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let url = support::serve_hook(axum::routing::post(move |body: axum::body::Bytes| {
        let g = g.clone();
        async move {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                g.lock().unwrap().push(v);
            }
            axum::http::StatusCode::NO_CONTENT
        }
    }))
    .await;
    (url, got)
}

/// The notifications in `got` once one of them shows `state` (panicking with `what` if none
/// does in time).
async fn hooked_until(got: &std::sync::Mutex<Vec<Value>>, what: &str, state: &str) -> Vec<Value> {
    within(what, async {
        loop {
            let now = got.lock().unwrap().clone();
            if now.iter().any(|v| v["status"]["state"] == state) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The task state (or event kind) of each notification.
fn states(got: &[Value]) -> Vec<String> {
    got.iter()
        .map(|v| {
            v["status"]["state"]
                .as_str()
                .unwrap_or(v["kind"].as_str().unwrap_or("?"))
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_for_payment_reaches_webhooks_like_every_transition() {
    let (url, got) = webhook().await;
    let p = Priced::start(
        &[
            ("x402.flow", "a2a"),
            ("push.enabled", "true"),
            ("push.destinations", "loopback"),
            ("push.retry_base_ms", "10"),
        ],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let (status, _, body) = p
        .post(
            "message/send",
            json!({
                "message": user_message("paid work"),
                "configuration": {"pushNotificationConfig": {"url": url}},
            }),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["result"]["status"]["state"], "input-required");
    let paused = hooked_until(&got, "the pause to reach the webhook", "input-required").await;
    assert_eq!(
        states(&paused),
        ["submitted", "input-required"],
        "{paused:?}"
    );
    for (i, v) in paused.iter().enumerate() {
        assert_eq!(v["taskId"], id);
        assert_eq!(v["sequence"], i as u64 + 1, "in order, from 1: {v}");
    }
    assert_eq!(
        paused[1]["status"]["message"]["metadata"]["x402.payment.status"],
        "payment-required"
    );

    // Paid: the rest of the task follows, in order.
    let pay = payload(&payer(), &p.req, now() + 300, nonce());
    let (status, _, body) = p
        .post(
            "message/send",
            json!({"message": follow_up(&id, "paid", json!({"x402.payment.payload": pay}))}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");
    let all = hooked_until(&got, "the completion to reach the webhook", "completed").await;
    let seen = states(&all);
    assert_eq!(seen[..2], ["submitted", "input-required"]);
    assert_eq!(seen.last().unwrap(), "completed", "{seen:?}");
    for (i, v) in all.iter().enumerate() {
        assert_eq!(v["sequence"], i as u64 + 1, "in order: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_pauses_for_payment_and_its_paid_resumption_holds_chunks_until_settled() {
    use super::settlement::{
        artifact_updates, events_within, gated_streamer, held_until_settled, open_stream,
    };
    let (sent, go, h) = gated_streamer();
    let p = Priced::start(&[("x402.flow", "a2a")], h).await;

    // Unpaid: the stream shows the task paused, asking for the payment, and ends.
    let mut resp = open_stream(&p, user_message("stream it"), &[]).await;
    let mut buf = String::new();
    let paused = events_within(&mut resp, support::TIMEOUT, &mut buf).await;
    let last = paused.last().unwrap_or_else(|| panic!("no event: {buf}"));
    assert_eq!(last["status"]["state"], "input-required", "{paused:?}");
    let asked = &last["status"]["message"]["metadata"];
    assert_eq!(asked["x402.payment.status"], "payment-required", "{last}");
    assert_eq!(asked["x402.payment.required"]["accepts"], json!([p.req]));
    assert!(artifact_updates(&paused).is_empty());
    let id = last["id"]
        .as_str()
        .or(last["taskId"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);

    // Resumed by a stream whose message pays: the chunks wait for the settlement.
    let pay = payload(&payer(), &p.req, now() + 300, nonce());
    let mut resp = open_stream(
        &p,
        follow_up(&id, "stream it", json!({"x402.payment.payload": pay})),
        &[],
    )
    .await;
    held_until_settled(&p, &mut resp, &sent, &go).await;
    assert_eq!(p.fac.settled_count(), 1);
    let stored = p.srv.get_task(&id).await;
    assert_eq!(
        stored["metadata"]["x402.payment.status"],
        "payment-completed"
    );
}
