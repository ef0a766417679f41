//! Prices per skill: a skill's own `execution_cost` replaces the agent's for messages that
//! target it (`message.metadata.skillId`, or a follow-up on its task), `[]` makes it free
//! on a priced agent; the 402's `accepts` and the card's x402 extension say so. An id no
//! skill has keeps the agent's price, and a payment for it is given back.

use super::*;
use crate::support::user_message_with;
use bindu_ingress::skills::SkillSource;

fn inline(skill: bindu::Skill) -> SkillSource {
    SkillSource::Inline(Box::new(skill))
}

/// `dear` ($0.50), `gift` (free) and `plain` (the agent's price).
fn priced_skills() -> Vec<SkillSource> {
    vec![
        inline(
            bindu::Skill::new("dear", "dear", "Costs more")
                .execution_cost(vec![PriceOption::usdc("$0.50")]),
        ),
        inline(bindu::Skill::new("gift", "gift", "Free on a priced agent").free()),
        inline(bindu::Skill::new("plain", "plain", "The agent's price")),
    ]
}

/// An unpaid follow-up, "that one", on `task_id`.
fn that_one(task_id: &str) -> Value {
    user_message_with("that one", json!({"taskId": task_id}))
}

fn targeting(skill: &str, text: &str) -> Value {
    user_message_with(text, json!({"metadata": {"skillId": skill}}))
}

impl Priced {
    /// An echo agent at $0.01 with [`priced_skills`].
    async fn with_priced_skills() -> Priced {
        Priced::configured(
            &[],
            |c| {
                c.agent.execution_cost = vec![PriceOption::usdc("$0.01")];
                c.agent.skills = priced_skills();
            },
            Arc::new(bindu::EchoHandler::default()),
        )
        .await
    }

    /// The x402 extension of the public card.
    async fn x402_extension(&self) -> Value {
        let (_, card) = self.srv.get_json("/.well-known/agent-card.json").await;
        super::x402_extension(&card)
    }

    async fn send_message(
        &self,
        message: Value,
        payment: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let headers: Vec<(&str, String)> = payment
            .map(|p| vec![("payment-signature", p)])
            .unwrap_or_default();
        self.post("message/send", json!({ "message": message }), &headers)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_price_replaces_the_agents_in_the_402_and_the_card() {
    let p = Priced::with_priced_skills().await;
    // The card: the agent's price, and the skills with a price of their own.
    let ext = p.x402_extension().await;
    assert_eq!(ext["required"], true);
    assert_eq!(ext["params"]["accepts"][0]["amount"], "10000");
    let skills = ext["params"]["skills"].as_object().unwrap();
    assert_eq!(skills.len(), 2, "{skills:?}");
    assert_eq!(skills["dear"]["accepts"][0]["amount"], "500000");
    assert_eq!(skills["gift"]["accepts"], json!([]));
    let dear_req = skills["dear"]["accepts"][0].clone();

    // The 402 asks for the targeted skill's price; a skill without one, no skill or an id
    // no skill has: the agent's.
    for (skill, amount) in [
        (Some("dear"), "500000"),
        (Some("plain"), "10000"),
        (None, "10000"),
        (Some("no-such-skill"), "10000"),
    ] {
        let message = match skill {
            Some(s) => targeting(s, "hi"),
            None => user_message("hi"),
        };
        let (status, headers, body) = p.send_message(message, None).await;
        assert_eq!(status, 402, "{skill:?}: {body}");
        assert_eq!(body["accepts"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["accepts"][0]["amount"], amount, "{skill:?}");
        let header = unb64(headers["payment-required"].to_str().unwrap());
        assert_eq!(header, body);
    }
    // A free skill on a priced agent runs without payment.
    let (status, headers, body) = p.send_message(targeting("gift", "free work"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed", "{body}");
    assert!(headers.get("payment-response").is_none());
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);

    // The agent's price does not pay for the dearer skill.
    let (status, _, body) = p.send_message(targeting("dear", "hi"), Some(p.pay())).await;
    assert_eq!(status, 402, "{body}");
    assert!(error_of(&body).starts_with("Invalid payment"), "{body}");
    assert_eq!(body["accepts"][0]["amount"], "500000");
    // Its own price does, and the receipt says what was paid.
    let pay_dear = b64(&payload(&payer(), &dear_req, now() + 300, nonce()));
    let (status, headers, body) = p
        .send_message(targeting("dear", "dear work"), Some(pay_dear))
        .await;
    assert_eq!(status, 200, "{body}");
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "completed", "{task}");
    assert_eq!(
        task["metadata"]["x402.payment.receipts"][0]["amount"],
        "500000"
    );
    assert!(headers.get("payment-response").is_some());
    assert_eq!(p.fac.settled_count(), 1);

    // A paid message naming no skill of the agent's is refused (-32030), nothing is
    // settled, and its payment is given back: the same payment then pays for a task.
    let payment = p.pay();
    let (status, _, body) = p
        .send_message(targeting("no-such-skill", "hi"), Some(payment.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["code"], -32030, "{body}");
    let (status, _, body) = p.send_message(user_message("retry"), Some(payment)).await;
    assert_eq!(status, 200, "the nonce was released: {body}");
    assert_eq!(body["result"]["status"]["state"], "completed", "{body}");
    assert_eq!(p.fac.settled_count(), 2);
}

/// A handler that asks a question first, then answers.
fn asks_first() -> Arc<dyn bindu::Handler> {
    handler(|input: HandlerInput| async move {
        let users = input
            .history
            .iter()
            .filter(|m| m.role == bindu::schemas::Role::User)
            .count();
        if users < 2 {
            Ok(HandlerOutput::InputRequired("which one?".into()))
        } else {
            Ok(HandlerOutput::Text(format!(
                "done with {}",
                input.skill.unwrap_or_default()
            )))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_agent_charges_only_for_its_priced_skill_and_its_follow_ups_pay_it_too() {
    let p = Priced::configured(&[], |c| c.agent.skills = priced_skills(), asks_first()).await;
    let ext = p.x402_extension().await;
    assert_eq!(ext["required"], false, "the agent itself is free");
    assert_eq!(ext["params"]["accepts"], json!([]));
    let dear_req = ext["params"]["skills"]["dear"]["accepts"][0].clone();

    // No skill, or a skill without a price: free.
    for message in [user_message("hi"), targeting("plain", "hi")] {
        let (status, _, body) = p.send_message(message, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["status"]["state"], "input-required");
    }
    // The free skill's task paused; its follow-up naming no skill stays free.
    let (_, _, body) = p.send_message(targeting("gift", "hi"), None).await;
    let gift_task = body["result"]["id"].as_str().unwrap().to_string();
    let (status, _, body) = p.send_message(that_one(&gift_task), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed", "{body}");

    // The priced skill needs its price.
    let (status, _, body) = p.send_message(targeting("dear", "hi"), None).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["accepts"][0]["amount"], "500000");
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 0);

    // Paid, it pauses (nothing settled yet); its follow-up pays nothing more and
    // completes, settled once.
    let pay = b64(&payload(&payer(), &dear_req, now() + 300, nonce()));
    let (status, _, body) = p.send_message(targeting("dear", "hi"), Some(pay)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "input-required");
    let dear_task = body["result"]["id"].as_str().unwrap().to_string();
    let (status, _, body) = p.send_message(that_one(&dear_task), None).await;
    assert_eq!(status, 200, "{body}");
    let done = &body["result"];
    assert_eq!(done["status"]["state"], "completed", "{done}");
    assert_eq!(done["artifacts"][0]["parts"][0]["text"], "done with dear");
    assert_eq!(p.fac.settled_count(), 1);
    assert_eq!(p.fac.verifies.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_follow_up_on_a_priced_skills_task_pays_that_skills_price() {
    // The a2a flow: the pause asks for the skill's price, and the follow-up that names no
    // skill is asked for (and pays) the same.
    let p = Priced::configured(
        &[("x402.flow", "a2a")],
        |c| c.agent.skills = priced_skills(),
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let dear_req = p.x402_extension().await["params"]["skills"]["dear"]["accepts"][0].clone();
    let (status, _, body) = p.send_message(targeting("dear", "hi"), None).await;
    assert_eq!(status, 200, "{body}");
    let task = &body["result"];
    assert_eq!(task["status"]["state"], "input-required", "{task}");
    let asked = &task["status"]["message"]["metadata"]["x402.payment.required"];
    assert_eq!(asked["accepts"], json!([dear_req]), "{asked}");
    let id = task["id"].as_str().unwrap().to_string();
    // A follow-up without payment or skill is asked again, for the skill's price.
    let (status, _, body) = p
        .send_message(user_message_with("again", json!({"taskId": id})), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let asked = &body["result"]["status"]["message"]["metadata"]["x402.payment.required"];
    assert_eq!(asked["accepts"][0]["amount"], "500000", "{body}");
    // Paying it runs the task.
    let pay = payload(&payer(), &dear_req, now() + 300, nonce());
    let (status, _, body) = p
        .send_message(
            user_message_with(
                "paid",
                json!({"taskId": id, "metadata": {"x402.payment.payload": pay}}),
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"]["state"], "completed", "{body}");
    assert_eq!(p.fac.settled_count(), 1);
}

/// POSTs a 1.0 message to the HTTP+JSON `message:send` of `p` (with `payment`).
async fn rest_send(
    p: &Priced,
    skill: &str,
    payment: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = json!({"message": {"role": "ROLE_USER", "messageId": crate::support::unique("m"),
                                  "parts": [{"text": "rest work"}], "metadata": {"skillId": skill}}});
    let mut req = p
        .srv
        .client
        .post(p.srv.endpoint("/v1/message:send"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(payment) = payment {
        req = req.header("payment-signature", payment);
    }
    let resp = within("POST /v1/message:send", req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_skill_asks_for_payment_over_http_json_too() {
    let p = Priced::with_priced_skills().await;
    let dear_req = p.x402_extension().await["params"]["skills"]["dear"]["accepts"][0].clone();
    // Unpaid: x402's 402 answer, as on JSON-RPC, with the skill's price.
    let (status, headers, body) = rest_send(&p, "dear", None).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["accepts"][0]["amount"], "500000", "{body}");
    assert_eq!(unb64(headers["payment-required"].to_str().unwrap()), body);
    assert_eq!(p.tasks().await, 0, "nothing ran unpaid");
    // A free skill runs without payment.
    let (status, _, body) = rest_send(&p, "gift", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"]["status"]["state"], "TASK_STATE_COMPLETED");
    // Paid: the task runs and the receipt rides in PAYMENT-RESPONSE.
    let pay = b64(&payload(&payer(), &dear_req, now() + 300, nonce()));
    let (status, headers, body) = rest_send(&p, "dear", Some(pay.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{body}"
    );
    let receipt = unb64(headers["payment-response"].to_str().unwrap());
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(p.fac.settles.load(Ordering::SeqCst), 1);
    // The same payment again is a replay.
    let (status, _, body) = rest_send(&p, "dear", Some(pay)).await;
    assert_eq!(status, 402, "{body}");
}
