//! x402 payments end to end (T1): a priced agent against the fake facilitator of
//! `bindu_ingress::payments::fake_facilitator` (real `/verify`, `/settle`, `/supported` JSON,
//! verification by signature recovery), payments signed here with the well-known local
//! development key. The 402 answer, the order of checks, the hostile payments of the
//! reference (§8, items 18-27), the replay guard, fair settlement (no charge for failed
//! work, nothing released unpaid), held streams and the authorization's expiry.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bindu::engine::x402::pricing::parse_address;
use bindu::engine::x402::verify::{authorization_digest, domain_of, hex0x, Authorization};
use bindu::engine::x402::PriceOption;
use bindu::{HandlerError, HandlerInput, HandlerOutput};
use bindu_ingress::payments::fake_facilitator::{self, FakeFacilitator, Mode};
use bindu_schemas::x402::PaymentRequirements;
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};

use crate::support::{self, handler, user_message, within, TestServer};

/// Hardhat/Anvil account #0: a public test key, never funded.
const PAYER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

fn payer() -> SigningKey {
    SigningKey::from_slice(&hex_bytes(PAYER_KEY)).unwrap()
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

fn unb64(s: &str) -> Value {
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

/// A fresh random-looking nonce.
fn nonce() -> [u8; 32] {
    let u = uuid::Uuid::new_v4();
    let mut n = [0u8; 32];
    n[..16].copy_from_slice(u.as_bytes());
    n[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    n
}

/// The payload (JSON) of a payment of `req` by `key`, valid until `valid_before`.
fn payload(key: &SigningKey, req: &Value, valid_before: u64, nonce: [u8; 32]) -> Value {
    let r: PaymentRequirements = serde_json::from_value(req.clone()).unwrap();
    let from = bindu::engine::x402::verify::address_of(key.verifying_key());
    let a = Authorization {
        from,
        to: parse_address(&r.pay_to).unwrap(),
        value: r.amount.parse().unwrap(),
        valid_after: now() - 600,
        valid_before,
        nonce,
    };
    let digest = authorization_digest(&domain_of(&r).unwrap(), &a);
    let (sig, id) = key.sign_prehash_recoverable(&digest).unwrap();
    let mut signature = sig.to_bytes().to_vec();
    signature.push(27 + id.to_byte());
    json!({
        "x402Version": 2,
        "accepted": req,
        "payload": {
            "signature": hex0x(&signature),
            "authorization": {
                "from": hex0x(&from),
                "to": r.pay_to,
                "value": r.amount,
                "validAfter": a.valid_after.to_string(),
                "validBefore": valid_before.to_string(),
                "nonce": hex0x(&nonce),
            },
        },
    })
}

/// A priced agent (0.01 USDC on base-sepolia) and its fake facilitator.
struct Priced {
    srv: TestServer,
    fac: Arc<FakeFacilitator>,
    /// `accepts[0]` as the agent publishes it.
    req: Value,
}

impl Priced {
    async fn start(extra: &[(&str, &str)], h: Arc<dyn bindu::Handler>) -> Priced {
        let (url, fac) = fake_facilitator::start().await.unwrap();
        // A settlement or verification slower than this counts as no answer.
        fac.delay_ms.store(4000, Ordering::SeqCst);
        let mut settings = vec![
            ("x402.facilitator_url", url.as_str()),
            ("x402.facilitator_timeout_secs", "1"),
            ("x402.pay_to", PAY_TO),
        ];
        settings.extend_from_slice(extra);
        let srv = TestServer::start_config(
            &settings,
            |c| c.agent.execution_cost = vec![PriceOption::usdc("$0.01")],
            h,
        )
        .await;
        let (status, _, card) = srv.get("/.well-known/agent-card.json").await;
        assert_eq!(status, 200);
        let card: Value = serde_json::from_str(&card).unwrap();
        let ext = card["capabilities"]["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["uri"] == bindu_schemas::x402::EXTENSION_URI)
            .cloned()
            .expect("the card lists the x402 extension");
        let req = ext["params"]["accepts"][0].clone();
        Priced { srv, fac, req }
    }

    async fn echo() -> Priced {
        Priced::start(&[], Arc::new(bindu::EchoHandler::default())).await
    }

    /// A payment header valid for the default window.
    fn pay(&self) -> String {
        b64(&payload(&payer(), &self.req, now() + 300, nonce()))
    }

    /// POSTs `method` with `headers`; status, headers and JSON body.
    async fn post(
        &self,
        method: &str,
        params: Value,
        headers: &[(&str, String)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut req = self
            .srv
            .client
            .post(self.srv.url())
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = within("POST /", req.send()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = within("the body", resp.text()).await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    async fn send_paid(
        &self,
        header: &str,
        payment: String,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post(
            "message/send",
            json!({"message": user_message("paid work")}),
            &[(header, payment)],
        )
        .await
    }

    async fn tasks(&self) -> usize {
        self.srv.rpc_ok("tasks/list", json!({})).await["tasks"]
            .as_array()
            .unwrap()
            .len()
    }
}

/// The 402's error text.
fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priced_agent_answers_402_with_its_requirements_and_says_so_in_its_card() {
    let p = Priced::echo().await;
    // The card's requirement is the price: 0.01 USDC on base-sepolia, to X402_PAY_TO.
    assert_eq!(p.req["network"], "eip155:84532");
    assert_eq!(p.req["amount"], "10000");
    assert_eq!(p.req["asset"], "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    assert_eq!(p.req["payTo"], PAY_TO);
    assert_eq!(p.req["extra"], json!({"name": "USDC", "version": "2"}));
    assert_eq!(p.req["maxTimeoutSeconds"], 600);

    for method in ["message/send", "message/stream"] {
        let (status, headers, body) = p
            .post(method, json!({"message": user_message("hi")}), &[])
            .await;
        assert_eq!(status, 402, "{method}: {body}");
        assert_eq!(body["x402Version"], 2);
        assert_eq!(body["accepts"], json!([p.req]));
        assert!(error_of(&body).contains("PAYMENT-SIGNATURE"), "{body}");
        assert_eq!(body["agent"]["name"], "bindu-echo");
        assert!(body["agent"]["did"].as_str().unwrap().starts_with("did:"));
        assert!(body["agent"]["agentCard"]
            .as_str()
            .unwrap()
            .ends_with("/.well-known/agent-card.json"));
        let header = headers["payment-required"].to_str().unwrap();
        assert_eq!(unb64(header), body, "PAYMENT-REQUIRED is the body, base64");
        assert!(
            headers.get("x-a2a-extensions").is_none(),
            "not activated, not echoed"
        );
    }
    // The extension is echoed to clients that activate it, on POST / and the card.
    let activate = [(
        "x-a2a-extensions",
        format!(
            "https://example.com/other, {}",
            bindu_schemas::x402::EXTENSION_URI
        ),
    )];
    let (status, headers, _) = p
        .post(
            "message/send",
            json!({"message": user_message("hi")}),
            &activate,
        )
        .await;
    assert_eq!(status, 402);
    assert_eq!(
        headers["x-a2a-extensions"],
        bindu_schemas::x402::EXTENSION_URI
    );
    let card = within(
        "the card",
        p.srv
            .client
            .get(p.srv.endpoint("/.well-known/agent-card.json"))
            .header("x-a2a-extensions", bindu_schemas::x402::EXTENSION_URI)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(
        card.headers()["x-a2a-extensions"],
        bindu_schemas::x402::EXTENSION_URI
    );
    let card: Value = card.json().await.unwrap();
    let ext = card["capabilities"]["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uri"] == bindu_schemas::x402::EXTENSION_URI)
        .unwrap()
        .clone();
    assert_eq!(ext["required"], true);

    // Nothing was recorded or verified for the refused calls; reads stay free.
    assert_eq!(p.tasks().await, 0);
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);
    let missing = p.srv.rpc("tasks/get", json!({"id": "nope"})).await;
    assert_eq!(support::error_code(&missing), -32001);
    // A malformed request is a JSON-RPC error, not a request for money.
    let (status, _, body) = p
        .post("message/send", json!({"message": {"role": "robot"}}), &[])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (200, Some(-32602))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_send_completes_settles_once_and_carries_its_receipt() {
    let p = Priced::echo().await;
    let payment = p.pay();
    let (status, headers, body) = p.send_paid("payment-signature", payment.clone()).await;
    assert_eq!(status, 200, "{body}");
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "paid work");
    let meta = &task["metadata"];
    assert_eq!(meta["x402.payment.status"], "payment-completed", "{task}");
    let receipt = &meta["x402.payment.receipts"][0];
    assert_eq!(receipt["success"], true);
    assert_eq!(receipt["network"], "eip155:84532");
    let header = unb64(headers["payment-response"].to_str().unwrap());
    assert_eq!(&header, receipt, "PAYMENT-RESPONSE is the receipt");
    assert!(header["transaction"].as_str().unwrap().starts_with("0x"));
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 1);
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 1);
    // tasks/get shows the same receipt.
    let stored = p.srv.get_task(task["id"].as_str().unwrap()).await;
    assert_eq!(stored["metadata"], *meta);

    // 18: the same payment again is a replay: refused before the facilitator is asked.
    let (status, _, body) = p.send_paid("x-payment", payment.clone()).await;
    assert_eq!(status, 402);
    assert!(error_of(&body).contains("replay"), "{body}");
    // The same nonce written in capitals is the same nonce.
    let mut upper = unb64(&payment);
    let n = upper["payload"]["authorization"]["nonce"]
        .as_str()
        .unwrap()
        .to_uppercase()
        .replace("0X", "0x");
    upper["payload"]["authorization"]["nonce"] = json!(n);
    let (status, _, body) = p.send_paid("payment-signature", b64(&upper)).await;
    assert_eq!(status, 402, "{body}");
    assert!(error_of(&body).contains("replay"), "{body}");
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 1);
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 1);

    // Bindu's clients send X-PAYMENT; a fresh payment there works the same.
    let (status, headers, body) = p.send_paid("x-payment", p.pay()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");
    assert!(headers.get("payment-response").is_some());
    // Two different payments at once are ambiguous.
    let (status, _, _) = p
        .post(
            "message/send",
            json!({"message": user_message("x")}),
            &[("payment-signature", p.pay()), ("x-payment", p.pay())],
        )
        .await;
    assert_eq!(status, 402);
    assert_eq!(p.fac.settled_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payments_are_refused_before_the_facilitator_is_asked() {
    let p = Priced::echo().await;
    let good = payload(&payer(), &p.req, now() + 300, nonce());
    let with = |path: &[&str], v: Value| {
        let mut x = good.clone();
        let mut at = &mut x;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        at[path[path.len() - 1]] = v;
        b64(&x)
    };
    let other_key = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let mut other_amount = p.req.clone();
    other_amount["amount"] = json!("10001");
    let cases: Vec<(&str, String)> = vec![
        // 19: not base64, not JSON, not an object.
        ("not base64", "%%%".into()),
        (
            "not json",
            base64::engine::general_purpose::STANDARD.encode("not json"),
        ),
        ("an array", b64(&json!([good]))),
        ("a scalar", b64(&json!(42))),
        // 20: versions.
        ("v1", with(&["x402Version"], json!(1))),
        ("v3", with(&["x402Version"], json!(3))),
        // 21: mismatches.
        ("scheme", with(&["accepted", "scheme"], json!("upto"))),
        (
            "network",
            with(&["accepted", "network"], json!("eip155:8453")),
        ),
        (
            "amount off by one",
            b64(&payload(&payer(), &other_amount, now() + 300, nonce())),
        ),
        (
            "to is not payTo",
            with(
                &["payload", "authorization", "to"],
                json!("0x742d35Cc6634C0532925a3b844Bc454e4438f44e"),
            ),
        ),
        // 22: time.
        (
            "expires in 5 s",
            b64(&payload(&payer(), &p.req, now() + 5, nonce())),
        ),
        (
            "valid only later",
            with(
                &["payload", "authorization", "validAfter"],
                json!((now() + 60).to_string()),
            ),
        ),
        (
            "enormous window",
            b64(&payload(&payer(), &p.req, now() + 100_000, nonce())),
        ),
        // 23: signatures.
        ("another key", {
            let mut x = payload(&other_key, &p.req, now() + 300, nonce());
            x["payload"]["authorization"]["from"] =
                good["payload"]["authorization"]["from"].clone();
            b64(&x)
        }),
        (
            "zero signature",
            with(&["payload", "signature"], json!(hex0x(&[0u8; 65]))),
        ),
        (
            "64-byte signature",
            with(&["payload", "signature"], json!(hex0x(&[1u8; 64]))),
        ),
    ];
    for (what, header) in cases {
        let (status, _, body) = p.send_paid("payment-signature", header).await;
        assert_eq!(status, 402, "{what}: {body}");
        assert!(
            error_of(&body).starts_with("Invalid payment"),
            "{what}: {body}"
        );
        assert_eq!(body["accepts"], json!([p.req]), "{what}");
    }
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);
    assert_eq!(p.tasks().await, 0);
    // v1 is refused with the reason.
    let (_, _, body) = p
        .send_paid("payment-signature", with(&["x402Version"], json!(1)))
        .await;
    assert!(error_of(&body).contains("re-sign with v2"), "{body}");
    // The untouched payment still goes through: nothing above burned its nonce.
    let (status, _, body) = p.send_paid("payment-signature", b64(&good)).await;
    assert_eq!(status, 200, "{body}");

    // 25: a client-injected `_payment_context` is dropped.
    let mut m = user_message("sneaky");
    m["metadata"] = json!({"_payment_context": {"paid": true}, "kept": 1});
    let (status, _, body) = p
        .post(
            "message/send",
            json!({"message": m}),
            &[("payment-signature", p.pay())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = &body["result"]["history"][0]["metadata"];
    assert_eq!(sent["kept"], 1, "{body}");
    assert!(sent.get("_payment_context").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_refusals_release_the_nonce_and_outages_are_503() {
    let p = Priced::echo().await;
    let payment = p.pay();
    // 26: isValid false → 402 with its reason; the nonce is released.
    p.fac.set_verify(Mode::Refuse);
    let (status, _, body) = p.send_paid("payment-signature", payment.clone()).await;
    assert_eq!(status, 402);
    assert!(error_of(&body).contains("insufficient_funds"), "{body}");
    // HTTP 500, then no answer in time: 503, nonce released each time.
    p.fac.set_verify(Mode::Broken);
    let (status, _, body) = p.send_paid("payment-signature", payment.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], -32603);
    p.fac.set_verify(Mode::Slow);
    let (status, _, _) = p.send_paid("payment-signature", payment.clone()).await;
    assert_eq!(status, 503);
    assert_eq!(p.tasks().await, 0, "no task for an unverified payment");
    // 27: a nonce the facilitator rejected is not burned: the same payment pays now.
    p.fac.set_verify(Mode::Honest);
    let (status, _, body) = p.send_paid("payment-signature", payment).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed");
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 4);
}

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

    // HTTP 500 and a timeout: the outcome is unknown: payment-orphaned, with what a
    // reconciliation needs.
    for mode in [Mode::Broken, Mode::Slow] {
        p.fac.set_settle(mode);
        let payment = p.pay();
        let nonce = unb64(&payment)["payload"]["authorization"]["nonce"].clone();
        let (_, _, body) = p.send_paid("payment-signature", payment).await;
        let (task, meta) = failed_unpaid(&body);
        assert_eq!(
            meta["x402.payment.status"], "payment-orphaned",
            "{mode:?}: {task}"
        );
        assert_eq!(meta["x402_nonce"], nonce);
        assert_eq!(meta["x402_network"], "eip155:84532");
        assert_eq!(meta["x402_authorization"]["nonce"], nonce);
    }
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
    for (text, state) in [
        ("fail", "failed"),
        ("reject", "rejected"),
        ("ask", "input-required"),
    ] {
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
fn gated_streamer() -> (
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

async fn open_paid_stream(p: &Priced) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "message/stream",
                      "params": {"message": user_message("stream it")}});
    let resp = within(
        "opening the stream",
        p.srv
            .client
            .post(p.srv.url())
            .header("content-type", "application/json")
            .header("payment-signature", p.pay())
            .body(body.to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp
}

/// The `result` of every SSE data line read from `resp` within `limit`.
async fn events_within(
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

fn artifact_updates(events: &[Value]) -> Vec<&Value> {
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
    within("the first chunk", sent.notified()).await;
    let mut buf = String::new();
    let early = events_within(&mut resp, Duration::from_millis(500), &mut buf).await;
    assert!(
        artifact_updates(&early).is_empty(),
        "a chunk left before settlement: {early:?}"
    );
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 0);
    go.notify_one();
    let all = events_within(&mut resp, support::TIMEOUT, &mut buf).await;
    let chunks = artifact_updates(&all);
    assert_eq!(chunks.len(), 2, "{all:?}");
    assert_eq!(chunks[0]["artifact"]["parts"][0]["text"], "first ");
    let last = all.last().unwrap();
    assert_eq!(last["status"]["state"], "completed", "{all:?}");
    assert_eq!(last["final"], true);
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
    let mut c = bindu::Config::from_settings(&[("x402.pay_to", PAY_TO)]).unwrap();
    c.agent.execution_cost = vec![PriceOption::usdc("0.01")];
    assert!(
        c.payments_problem(bindu::Role::Serve).is_none(),
        "one process"
    );
    assert!(
        c.payments_problem(bindu::Role::Worker).is_none(),
        "workers claim nothing"
    );
    assert!(c
        .payments_problem(bindu::Role::Ingress)
        .unwrap()
        .contains("REDIS_URL"));
    c.scheduler.kind = bindu::BusKind::Nats;
    assert!(c.payments_problem(bindu::Role::Serve).is_some());
    c.cache.redis_url = Some("redis://127.0.0.1:6379".to_string().into());
    assert!(c.payments_problem(bindu::Role::Ingress).is_none());
    c.agent.execution_cost.clear();
    c.cache.redis_url = None;
    assert!(
        c.payments_problem(bindu::Role::Ingress).is_none(),
        "a free agent"
    );
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
