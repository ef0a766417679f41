//! T2/T3 x402 in distributed mode: a priced agent as separate `bindu ingress` and
//! `bindu worker` processes on a private nats-server, a fresh Postgres database and the
//! local Redis (the shared nonce guard), paid through the fake facilitator of test support
//! (it runs in this process, on loopback). A paid task settles once through ingress and
//! worker; a worker SIGKILLed after its settlement landed but before its ack leaves the
//! redelivery to recognise the payment as settled (not charge or fail it again); a
//! settlement without an answer is orphaned, listed by `bindu payments list` and resolved
//! by `bindu payments reconcile` or by the workers' reconciliation job; a settlement left
//! `settling` by a killed worker is resolved past `X402__SETTLING_LEASE` by asking `/verify`
//! (never settled anew). A skill's own price reaches the 402 of a separate ingress, and a
//! worker process shows its settlements on its own `/metrics`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bindu_engine::bus::nats_server::NatsServer;
use bindu_engine::store::postgres::test_db::TestDb;
use bindu_engine::store::{PaymentState, PaymentStore, PostgresPayments};
use bindu_ingress::payments::fake_facilitator::{self, FakeFacilitator, Mode};
use serde_json::{json, Value};

use crate::payments::{b64, nonce, now, payer, payload, unb64, PAY_TO};
use crate::process::{self, Agent};
use crate::support::redis_proxy::redis_url;
use crate::support::{self, patient_client};

const AGENT: &str = "paid-dist";

/// The environment of every process of the priced agent.
struct Paid {
    nats: NatsServer,
    db: TestDb,
    fac: std::sync::Arc<FakeFacilitator>,
    fac_url: String,
    config: std::path::PathBuf,
    key_dir: std::path::PathBuf,
}

impl Paid {
    /// Holds the next settlement's answer open while the transfer lands, sends a paid
    /// message (`req`) to `ingress` and kills `victim`, the worker settling it, once the
    /// facilitator holds `landed` transfers (panicking with `what` if not in time); then the
    /// facilitator answers honestly again. The task id and the payment.
    async fn killed_mid_settlement(
        &self,
        c: &reqwest::Client,
        ingress: &Agent,
        req: &Value,
        victim: Agent,
        what: &str,
        landed: usize,
    ) -> (String, Value) {
        self.fac.delay_ms.store(120_000, Ordering::SeqCst);
        self.fac.set_settle(Mode::Late);
        let (_, body, pay) = send_paid(c, ingress, req, false).await;
        let id = body["result"]["id"].as_str().unwrap().to_string();
        until(what, || self.fac.settled_count() == landed).await;
        victim.kill();
        self.fac.set_settle(Mode::Honest);
        (id, pay)
    }

    async fn start() -> Paid {
        let (fac_url, fac) = fake_facilitator::start().await.unwrap();
        let dir = std::env::temp_dir().join(format!("bindu-paid-{}", uuid::Uuid::new_v4()));
        let config = crate::payments::write_priced_config(
            &dir,
            AGENT,
            &format!(
                "\n[[agent.skills]]\nid = \"dear\"\nname = \"dear\"\ndescription = \"Costs more\"\nexecution_cost = [{{ amount = \"$0.50\", pay_to_address = \"{PAY_TO}\" }}]\n"
            ),
        );
        Paid {
            nats: NatsServer::start(),
            db: TestDb::new().await,
            fac,
            fac_url,
            config,
            key_dir: dir.join("keys"),
        }
    }

    /// The environment of a process (or a CLI run) of the agent.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
        let mut env = vec![
            ("STORAGE_TYPE", "postgres".to_string()),
            ("DATABASE_URL", self.db.url.clone()),
            ("SCHEDULER_TYPE", "nats".to_string()),
            ("NATS_URL", self.nats.url()),
            ("STORAGE__NAMESPACE", AGENT.to_string()),
            ("BINDU_CONFIG", self.config.display().to_string()),
            ("BINDU_KEY_DIR", self.key_dir.display().to_string()),
            ("REDIS_URL", redis_url()),
            ("X402__FACILITATOR_URL", self.fac_url.clone()),
            ("NATS__ACK_WAIT", "2".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    }

    fn process(&self, role: &str, extra: &[(&str, &str)]) -> Agent {
        let env = self.env(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Agent::start(process::distributed(
            role,
            AGENT,
            &self.db.url,
            &self.nats.url(),
            &env,
        ))
    }

    /// Runs `bindu <args>` against the agent's backends; its stdout.
    fn cli(&self, args: &[&str]) -> String {
        self.cli_with(&[], args)
    }

    /// [`Paid::cli`] with `extra` environment.
    fn cli_with(&self, extra: &[(&str, &str)], args: &[&str]) -> String {
        let mut all = vec![("X402__FACILITATOR_TIMEOUT", "2")];
        all.extend_from_slice(extra);
        let env = self.env(&all);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = process::run_bindu(&env, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "bindu {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn payments(&self) -> PostgresPayments {
        let store = self.db.store(AGENT).await;
        PostgresPayments::new(store.pool_handle().clone(), AGENT)
    }
}

/// `accepts[0]` of the agent's card.
async fn requirement(c: &reqwest::Client, ingress: &Agent) -> Value {
    let card: Value = c
        .get(format!("{}.well-known/agent-card.json", ingress.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    crate::payments::x402_extension(&card)["params"]["accepts"][0].clone()
}

/// Sends a paid `message/send`; the response's `PAYMENT-RESPONSE` header and body.
async fn send_paid(
    c: &reqwest::Client,
    ingress: &Agent,
    req: &Value,
    blocking: bool,
) -> (Option<String>, Value, Value) {
    let pay = payload(&payer(), req, now() + 300, nonce());
    let resp = c
        .post(ingress.url())
        .header("payment-signature", b64(&pay))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                      "params": {"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                                             "parts": [{"kind": "text", "text": "paid work"}]},
                                 "configuration": {"blocking": blocking}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let header = resp
        .headers()
        .get("payment-response")
        .map(|v| v.to_str().unwrap().to_string());
    (header, resp.json().await.unwrap(), pay)
}

async fn wait_state(c: &reqwest::Client, ingress: &Agent, id: &str, want: &str) -> Value {
    support::rpc_wait_for_state(c, &ingress.url(), id, want, Duration::from_secs(60)).await
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_task_settles_once_even_when_its_worker_dies_between_settle_and_ack() {
    let p = Paid::start().await;
    // A worker waits for a settlement answer far longer than this test holds one open.
    let patient = [("X402__FACILITATOR_TIMEOUT", "60")];
    let ingress = p.process("ingress", &[]);
    // The worker process shows its settlements on a /metrics of its own.
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let victim = p.process(
        "worker",
        &[
            patient[0],
            ("BINDU_WORKER_METRICS_ADDR", metrics_addr.as_str()),
        ],
    );
    let c = patient_client();
    let req = requirement(&c, &ingress).await;

    // A skill's own price (read by the ingress from the same file): its 402 asks for it.
    let resp = c
        .post(ingress.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                      "params": {"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                                             "parts": [{"kind": "text", "text": "dear work"}],
                                             "metadata": {"skillId": "dear"}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 402);
    let asked: Value = resp.json().await.unwrap();
    assert_eq!(asked["accepts"][0]["amount"], "500000", "{asked}");

    // Through ingress and worker: verified at the edge, kept with the task, settled by
    // the worker, the receipt on the task and in PAYMENT-RESPONSE.
    let (header, body, _) = send_paid(&c, &ingress, &req, true).await;
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "completed", "{body}");
    assert_eq!(task["metadata"]["x402.payment.status"], "payment-completed");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "paid work");
    let receipt = unb64(&header.expect("PAYMENT-RESPONSE"));
    assert_eq!(receipt["success"], true);
    assert_eq!(p.fac.settled_count(), 1);
    let payments = p.payments().await;
    let kept = payments
        .for_task(task["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the payment is kept with its task");
    assert_eq!(
        (kept[0].state, kept[0].attempts),
        (PaymentState::Settled, 1)
    );
    assert_eq!(
        kept[0].receipt.as_ref().unwrap().transaction,
        receipt["transaction"]
    );
    let metrics = support::get_text(&c, format!("http://{metrics_addr}/metrics")).await;
    for line in [
        "bindu_payment_settlements_total{outcome=\"settled\"} 1",
        "bindu_payment_settle_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} in the worker's\n{metrics}");
    }

    // The next settlement lands, and its answer is held open: the worker is killed while
    // it waits, between the settlement and its ack.
    let (id, pay) = p
        .killed_mid_settlement(&c, &ingress, &req, victim, "the second transfer lands", 2)
        .await;
    // Another worker gets the command again; the facilitator answers at once now, and
    // says the nonce is used.
    let settles = p.fac.settles.load(Ordering::SeqCst);
    let _survivor = p.process("worker", &patient);
    let done = wait_state(&c, &ingress, &id, "completed").await;
    assert_eq!(
        done["metadata"]["x402.payment.status"], "payment-completed",
        "{done}"
    );
    assert_eq!(
        done["metadata"]["x402.payment.receipts"][0]["success"],
        true
    );
    assert_eq!(done["artifacts"][0]["parts"][0]["text"], "paid work");
    assert!(
        p.fac.settles.load(Ordering::SeqCst) > settles,
        "the redelivery asked again"
    );
    assert_eq!(p.fac.settled_count(), 2, "transferred once");
    let nonce = pay["payload"]["authorization"]["nonce"].as_str().unwrap();
    let record = payments.get(&id, nonce).await.unwrap().expect("kept");
    assert_eq!(record.state, PaymentState::Settled);
    assert_eq!(record.attempts, 2, "both attempts recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_payments_are_listed_and_reconciled() {
    let p = Paid::start().await;
    let ingress = p.process("ingress", &[]);
    // No reconciliation job in this worker: the CLI does it.
    let _worker = p.process(
        "worker",
        &[
            ("X402__FACILITATOR_TIMEOUT", "1"),
            ("X402__RECONCILE_INTERVAL", "0"),
        ],
    );
    let c = patient_client();
    let req = requirement(&c, &ingress).await;

    // HTTP 500 on /settle: nothing transferred, the outcome unknown to the worker.
    p.fac.set_settle(Mode::Broken);
    let (header, body, _) = send_paid(&c, &ingress, &req, true).await;
    assert!(header.is_none());
    let task = &body["result"];
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["status"]["state"], "working", "{body}");
    assert_eq!(task["metadata"]["x402.payment.status"], "payment-orphaned");
    assert!(task.get("artifacts").is_none());

    let listed = p.cli(&["payments", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("orphaned"),
        "{listed}"
    );
    let json = p.cli(&["payments", "list", "--json", "--state", "all"]);
    let row: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["taskId"], id.as_str());
    assert_eq!(row["state"], "orphaned");

    // The facilitator answers again: the CLI settles it, the task completes with its result.
    p.fac.set_settle(Mode::Honest);
    let out = p.cli(&["payments", "reconcile"]);
    assert!(out.contains(&id) && out.contains("settled"), "{out}");
    let done = wait_state(&c, &ingress, &id, "completed").await;
    assert_eq!(done["metadata"]["x402.payment.status"], "payment-completed");
    assert_eq!(done["artifacts"][0]["parts"][0]["text"], "paid work");
    assert_eq!(p.fac.settled_count(), 1);
    assert_eq!(p.cli(&["payments", "list"]).trim(), "no payments");
    assert_eq!(
        p.cli(&["payments", "reconcile"]).trim(),
        "no orphaned payments"
    );

    // A worker with the reconciliation job: a settlement that landed but answered too
    // late is recognised by its used nonce on the job's next pass.
    let _reconciling = p.process(
        "worker",
        &[
            ("X402__FACILITATOR_TIMEOUT", "1"),
            ("X402__RECONCILE_INTERVAL", "1"),
        ],
    );
    p.fac.delay_ms.store(3_000, Ordering::SeqCst);
    p.fac.set_settle(Mode::Late);
    let (_, body, _) = send_paid(&c, &ingress, &req, true).await;
    let id = body["result"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        body["result"]["metadata"]["x402.payment.status"], "payment-orphaned",
        "{body}"
    );
    assert_eq!(p.fac.settled_count(), 2, "it landed");
    p.fac.set_settle(Mode::Honest);
    let done = wait_state(&c, &ingress, &id, "completed").await;
    assert_eq!(done["metadata"]["x402.payment.status"], "payment-completed");
    assert_eq!(p.fac.settled_count(), 2, "not transferred again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_left_by_a_killed_worker_is_resolved_after_its_lease_without_settling_again() {
    let p = Paid::start().await;
    let ingress = p.process("ingress", &[]);
    let quiet = [
        ("X402__FACILITATOR_TIMEOUT", "60"),
        ("X402__RECONCILE_INTERVAL", "0"),
    ];
    let victim = p.process("worker", &quiet);
    let c = patient_client();
    let req = requirement(&c, &ingress).await;
    // The settlement lands and its answer is held open: the worker is killed mid-settlement.
    let (id, pay) = p
        .killed_mid_settlement(&c, &ingress, &req, victim, "the transfer lands", 1)
        .await;
    let nonce = pay["payload"]["authorization"]["nonce"].as_str().unwrap();
    let payments = p.payments().await;
    let left = payments.get(&id, nonce).await.unwrap().expect("kept");
    assert_eq!(left.state, PaymentState::Settling);

    // Within its lease nothing touches it; past it, the reconciliation asks /verify (not
    // /settle), finds the nonce used and records the payment settled.
    let lease = [("X402__SETTLING_LEASE", "1")];
    let out = p.cli_with(
        &[("X402__SETTLING_LEASE", "600")],
        &["payments", "reconcile"],
    );
    assert_eq!(out.trim(), "no orphaned payments", "{out}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let settles = p.fac.settles.load(Ordering::SeqCst);
    let out = p.cli_with(&lease, &["payments", "reconcile"]);
    assert!(out.contains(&id) && out.contains("settled"), "{out}");
    assert_eq!(
        p.fac.settles.load(Ordering::SeqCst),
        settles,
        "not settled anew"
    );
    let record = payments.get(&id, nonce).await.unwrap().expect("kept");
    assert_eq!(record.state, PaymentState::Settled);

    // The command's next delivery completes the task without settling it again.
    let _worker = p.process("worker", &quiet);
    let done = wait_state(&c, &ingress, &id, "completed").await;
    assert_eq!(done["metadata"]["x402.payment.status"], "payment-completed");
    assert_eq!(done["artifacts"][0]["parts"][0]["text"], "paid work");
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), settles);
    assert_eq!(p.fac.settled_count(), 1, "transferred once");
}
