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
pub(crate) const PAYER_KEY: &str =
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub(crate) const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

pub(crate) fn payer() -> SigningKey {
    SigningKey::from_slice(&hex_bytes(PAYER_KEY)).unwrap()
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

pub(crate) fn unb64(s: &str) -> Value {
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

/// A fresh random-looking nonce.
pub(crate) fn nonce() -> [u8; 32] {
    let u = uuid::Uuid::new_v4();
    let mut n = [0u8; 32];
    n[..16].copy_from_slice(u.as_bytes());
    n[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    n
}

/// The payload (JSON) of a payment of `req` by `key`, valid until `valid_before`.
pub(crate) fn payload(key: &SigningKey, req: &Value, valid_before: u64, nonce: [u8; 32]) -> Value {
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

/// Writes `dir/paid.toml`, the configuration of agent `name` at 0.01 USDC on base-sepolia
/// paid to [`PAY_TO`], followed by the TOML `more`; its path.
pub(crate) fn write_priced_config(
    dir: &std::path::Path,
    name: &str,
    more: &str,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("paid.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nname = \"{name}\"\n\n[[agent.execution_cost]]\namount = \"$0.01\"\nnetwork = \"base-sepolia\"\npay_to_address = \"{PAY_TO}\"\n{more}"
        ),
    )
    .unwrap();
    config
}

/// The x402 extension `card` lists (panics if it lists none).
pub(crate) fn x402_extension(card: &Value) -> Value {
    card["capabilities"]["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uri"] == bindu_schemas::x402::EXTENSION_URI)
        .cloned()
        .expect("the card lists the x402 extension")
}

/// A priced agent (0.01 USDC on base-sepolia) and its fake facilitator.
pub(crate) struct Priced {
    pub(crate) srv: TestServer,
    pub(crate) fac: Arc<FakeFacilitator>,
    /// `accepts[0]` as the agent publishes it.
    pub(crate) req: Value,
}

impl Priced {
    async fn start(extra: &[(&str, &str)], h: Arc<dyn bindu::Handler>) -> Priced {
        Priced::configured(
            extra,
            |c| c.agent.execution_cost = vec![PriceOption::usdc("$0.01")],
            h,
        )
        .await
    }

    /// A priced agent as `change` configures it (`req`: the agent's first requirement,
    /// `null` when the agent itself is free).
    pub(crate) async fn configured(
        extra: &[(&str, &str)],
        change: impl FnOnce(&mut bindu::Config),
        h: Arc<dyn bindu::Handler>,
    ) -> Priced {
        let (url, fac) = fake_facilitator::start().await.unwrap();
        // A settlement or verification slower than this counts as no answer.
        fac.delay_ms.store(4000, Ordering::SeqCst);
        let mut settings = vec![
            ("x402.facilitator_url", url.as_str()),
            ("x402.facilitator_timeout_secs", "1"),
            ("x402.pay_to", PAY_TO),
        ];
        settings.extend_from_slice(extra);
        let srv = TestServer::start_config(&settings, change, h).await;
        let (status, _, card) = srv.get("/.well-known/agent-card.json").await;
        assert_eq!(status, 200);
        let card: Value = serde_json::from_str(&card).unwrap();
        let ext = x402_extension(&card);
        let req = ext["params"]["accepts"][0].clone();
        Priced { srv, fac, req }
    }

    async fn echo() -> Priced {
        Priced::start(&[], Arc::new(bindu::EchoHandler::default())).await
    }

    /// A payment header valid for the default window.
    pub(crate) fn pay(&self) -> String {
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

    pub(crate) async fn send_paid(
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
    let ext = x402_extension(&card);
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

mod a2a_flow;
mod settlement;
mod skill_prices;
mod stale;
