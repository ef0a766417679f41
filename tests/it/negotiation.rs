//! `POST /agent/negotiation` through HTTP, with the example skills (Bindu's shapes): the
//! accepted answer and its fields, every rejection with Bindu's reason name, every bad field
//! as a 400 naming it, the load subscore following the live queue, the negotiation id that
//! runs a task with the best skill, and the optional embeddings (a fake endpoint in test
//! support) with their keyword fallback.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::skills::{example_skills, skill_echo};
use crate::support::embeddings::{FakeEmbeddings, Mode};
use crate::support::*;

async fn negotiating(extra: &[(&str, &str)], h: Arc<dyn bindu::Handler>) -> TestServer {
    let skills = example_skills();
    let mut settings = vec![
        ("agent.skills", skills.as_str()),
        ("negotiation.enabled", "true"),
    ];
    settings.extend_from_slice(extra);
    TestServer::start(&settings, h).await
}

/// POSTs `body` (as written) to `/agent/negotiation` with `content_type`.
async fn post(srv: &TestServer, content_type: &str, body: String) -> (u16, Value) {
    let resp = within(
        "POST /agent/negotiation",
        srv.client
            .post(srv.endpoint("/agent/negotiation"))
            .header("content-type", content_type)
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("negotiation answer is not JSON ({e}): {text}"));
    (status, value)
}

async fn negotiate(srv: &TestServer, body: Value) -> Value {
    let (status, answer) = post(srv, "application/json", body.to_string()).await;
    assert_eq!(status, 200, "{body}: {answer}");
    answer
}

#[tokio::test]
async fn negotiation_is_served_only_when_enabled() {
    let srv = TestServer::echo_with(&[("agent.skills", &example_skills())]).await;
    let resp = within(
        "POST /agent/negotiation",
        srv.client
            .post(srv.endpoint("/agent/negotiation"))
            .json(&json!({"task_summary": "x"}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn an_accepted_answer_names_the_best_skill_and_why() {
    let srv = negotiating(&[], Arc::new(bindu::EchoHandler::default())).await;
    let answer = negotiate(
        &srv,
        json!({
            "task_summary": "Extract the line items table from this scanned invoice",
            "task_details": "The invoice tables span two pages.",
            "input_mime_types": ["application/pdf"],
            "output_mime_types": ["application/json"],
            "max_latency_ms": 4000,
            "required_tools": ["Read"],
        }),
    )
    .await;
    let keys: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for key in [
        "accepted",
        "score",
        "confidence",
        "rejection_reason",
        "skill_matches",
        "matched_tags",
        "matched_capabilities",
        "latency_estimate_ms",
        "queue_depth",
        "subscores",
        "negotiation_id",
    ] {
        assert!(keys.contains(&key), "{key} in {answer}");
    }
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(answer["rejection_reason"], Value::Null);
    let best = &answer["skill_matches"][0];
    assert_eq!(best["skill_id"], "pdf-processing-v1");
    assert_eq!(best["skill_name"], "pdf-processing");
    let reasons: Vec<&str> = best["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("keywords: ")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"tags: tables"), "{reasons:?}");
    assert!(
        reasons.contains(&"capabilities: table_extraction"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("specialization: invoice_tables")),
        "{reasons:?}"
    );
    assert_eq!(answer["matched_tags"], json!(["tables"]));
    assert_eq!(answer["matched_capabilities"], json!(["table_extraction"]));
    // Only skills that take a PDF and give JSON are considered.
    assert_eq!(answer["skill_matches"].as_array().unwrap().len(), 1);
    assert_eq!(answer["latency_estimate_ms"], 2000);
    assert_eq!(answer["queue_depth"], 0);
    let sub = &answer["subscores"];
    assert_eq!(sub["io_compatibility"], 1.0);
    assert_eq!(sub["load"], 1.0);
    assert_eq!(sub["cost"], 1.0, "an agent without a price is free");
    assert_eq!(sub["performance"], 0.75, "2000 ms of a 4000 ms budget");
    let expected = 0.55 * sub["skill_match"].as_f64().unwrap() + 0.20 + 0.15 * 0.75 + 0.05 + 0.05;
    assert!(
        (answer["score"].as_f64().unwrap() - expected).abs() < 0.001,
        "{answer}"
    );
    assert_eq!(answer["confidence"], 1.0);
    assert!(answer["negotiation_id"]
        .as_str()
        .unwrap()
        .starts_with("n1."));

    // A question goes to the question-answering skill; camelCase fields are read too.
    let answer = negotiate(
        &srv,
        json!({"taskSummary": "Why is the sky blue? Explain it simply", "minScore": 0.1}),
    )
    .await;
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(
        answer["skill_matches"][0]["skill_id"],
        "question-answering-v1"
    );
    assert_eq!(answer["latency_estimate_ms"], 800);
}

#[tokio::test]
async fn every_rejection_has_bindus_reason() {
    let srv = negotiating(&[], Arc::new(bindu::EchoHandler::default())).await;
    let cases = [
        (
            json!({"task_summary": "transcribe this", "input_mime_types": ["audio/wav"]}),
            "input_mime_unsupported",
        ),
        (
            json!({"task_summary": "draw it", "input_mime_types": ["application/pdf"], "output_mime_types": ["image/png"]}),
            "output_mime_unsupported",
        ),
        (
            json!({"task_summary": "browse the web", "required_tools": ["Browser"]}),
            "required_tool_missing",
        ),
        (
            json!({"task_summary": "summarise", "forbidden_tools": ["write"]}),
            "forbidden_tool_present",
        ),
        (
            json!({"task_summary": "extract the invoice tables from this pdf", "max_latency_ms": 500}),
            "latency_exceeds_constraint",
        ),
        (
            json!({"task_summary": "bake a chocolate cake"}),
            "score_below_threshold",
        ),
        (
            json!({"task_summary": "why is the sky blue? explain", "min_score": 0.99}),
            "score_below_threshold",
        ),
        (
            // Every skill that could take it is ruled out by its anti-patterns.
            json!({"task_summary": "explain today's stock prices", "output_mime_types": ["application/json"], "input_mime_types": ["text/plain"], "required_tools": []}),
            "score_below_threshold",
        ),
    ];
    for (body, reason) in cases {
        let answer = negotiate(&srv, body.clone()).await;
        assert_eq!(answer["accepted"], false, "{body}: {answer}");
        assert_eq!(answer["rejection_reason"], reason, "{body}: {answer}");
        assert!(answer.get("negotiation_id").is_none(), "{answer}");
        assert!(answer["score"].as_f64().unwrap() < 0.99);
    }
    let latency = negotiate(
        &srv,
        json!({"task_summary": "extract the invoice tables from this pdf", "max_latency_ms": 500}),
    )
    .await;
    assert_eq!(latency["latency_estimate_ms"], 2000);

    let empty =
        TestServer::echo_with(&[("agent.skills", ""), ("negotiation.enabled", "true")]).await;
    let answer = negotiate(&empty, json!({"task_summary": "anything"})).await;
    assert_eq!(answer["rejection_reason"], "no_skills_advertised");
    assert_eq!(answer["confidence"], 1.0);
    assert_eq!(answer["subscores"], json!({}));

    // This agent is free: any budget, even 0, fits (a priced one: below).
    let answer = negotiate(
        &srv,
        json!({"task_summary": "why is the sky blue? explain", "max_cost_amount": "$0"}),
    )
    .await;
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(answer["subscores"]["cost"], 1.0);
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_field() {
    let srv = negotiating(&[], Arc::new(bindu::EchoHandler::default())).await;
    let long = "x".repeat(10_001);
    let cases = [
        (json!({}), "task_summary"),
        (json!({"task_summary": ""}), "task_summary"),
        (json!({"task_summary": 42}), "task_summary"),
        (json!({"task_summary": long}), "task_summary"),
        (
            json!({"task_summary": "x", "task_details": {"a": 1}}),
            "task_details",
        ),
        (
            json!({"task_summary": "x", "input_mime_types": "application/pdf"}),
            "input_mime_types",
        ),
        (
            json!({"task_summary": "x", "input_mime_types": ["pdf"]}),
            "input_mime_types[0]",
        ),
        (
            json!({"task_summary": "x", "output_mime_types": [3]}),
            "output_mime_types[0]",
        ),
        (
            json!({"task_summary": "x", "max_latency_ms": 0}),
            "max_latency_ms",
        ),
        (
            json!({"task_summary": "x", "max_latency_ms": "fast"}),
            "max_latency_ms",
        ),
        (
            json!({"task_summary": "x", "max_cost_amount": "a lot"}),
            "max_cost_amount",
        ),
        (
            json!({"task_summary": "x", "max_cost_amount": -0.5}),
            "max_cost_amount",
        ),
        (
            json!({"task_summary": "x", "required_tools": "Read"}),
            "required_tools",
        ),
        (
            json!({"task_summary": "x", "forbidden_tools": [""]}),
            "forbidden_tools[0]",
        ),
        (json!({"task_summary": "x", "min_score": 2}), "min_score"),
        (json!({"task_summary": "x", "weights": [1, 2]}), "weights"),
        (
            json!({"task_summary": "x", "weights": {"speed": 1}}),
            "weights.speed",
        ),
        (
            json!({"task_summary": "x", "weights": {"load": -1}}),
            "weights.load",
        ),
        (json!(["task_summary"]), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = post(&srv, "application/json", body.to_string()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    let (status, answer) = post(&srv, "application/json", "{not json".into()).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("body")));
    let (status, answer) = post(&srv, "text/plain", json!({"task_summary": "x"}).to_string()).await;
    assert_eq!(status, 415, "{answer}");
    let huge = json!({"task_summary": "x", "task_details": "y".repeat(200_000)}).to_string();
    let (status, _) = post(&srv, "application/json", huge).await;
    assert_eq!(status, 413);
    // Still answering after all that.
    negotiate(&srv, json!({"task_summary": "explain why"})).await;
}

#[tokio::test]
async fn weights_from_the_request_replace_the_defaults() {
    let srv = negotiating(
        &[
            ("negotiation.load_weight", "0"),
            ("negotiation.cost_weight", "0"),
        ],
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let task = "why is the sky blue? explain";
    let skill_only = negotiate(
        &srv,
        json!({"task_summary": task, "weights": {"skill_match": 1, "io_compatibility": 0, "performance": 0}}),
    )
    .await;
    assert_eq!(
        skill_only["score"], skill_only["subscores"]["skill_match"],
        "{skill_only}"
    );
    let load_only = negotiate(
        &srv,
        json!({"task_summary": task, "weights": {"skill_match": 0, "io_compatibility": 0, "performance": 0, "load": 3}}),
    )
    .await;
    assert_eq!(load_only["score"], 1.0, "an idle agent: {load_only}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_subscore_follows_the_live_queue() {
    let (gate, h) = Gate::new();
    let srv = negotiating(&[("worker.concurrency", "1")], h).await;
    let ask = json!({"task_summary": "why is the sky blue? explain"});
    let idle = negotiate(&srv, ask.clone()).await;
    assert_eq!(idle["queue_depth"], 0);
    assert_eq!(idle["subscores"]["load"], 1.0);
    for i in 0..3 {
        srv.send_nonblocking(user_message(&format!("job {i}")))
            .await;
    }
    gate.started().await;
    let busy = within("the queue depth to reach 3", async {
        loop {
            let a = negotiate(&srv, ask.clone()).await;
            if a["queue_depth"] == 3 {
                return a;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(busy["subscores"]["load"], 0.25, "1 / (1 + 3): {busy}");
    assert!(busy["score"].as_f64().unwrap() < idle["score"].as_f64().unwrap());
    gate.release(3);
    within("the queue to drain", async {
        loop {
            let a = negotiate(&srv, ask.clone()).await;
            if a["queue_depth"] == 0 {
                assert_eq!(a["subscores"]["load"], 1.0);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_negotiation_id_runs_the_task_with_the_best_skill() {
    let srv = negotiating(&[], skill_echo()).await;
    let answer = negotiate(
        &srv,
        json!({"task_summary": "Translate this text into German"}),
    )
    .await;
    assert_eq!(answer["skill_matches"][0]["skill_id"], "translation-v1");
    let id = answer["negotiation_id"].as_str().unwrap().to_string();
    let message = |metadata: Value| user_message_with("Guten Tag", json!({"metadata": metadata}));
    for metadata in [
        json!({"negotiationId": id}),
        json!({"negotiation_id": id}),
        json!({"negotiationId": id, "skillId": "translation-v1"}),
    ] {
        let task = srv.send(message(metadata.clone())).await;
        assert_eq!(task["status"]["state"], "completed", "{metadata}");
        assert_eq!(
            first_text(&task["artifacts"][0]),
            "translation-v1",
            "{metadata}"
        );
    }
    // Altered, foreign or contradicted ids are refused before anything is recorded.
    let last = if id.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &id[..id.len() - 1]);
    let other_skill = id.replace(&hex("translation-v1"), &hex("pdf-processing-v1"));
    for metadata in [
        json!({"negotiationId": forged}),
        json!({"negotiationId": other_skill}),
        json!({"negotiationId": "n1.99999999999.61.00000000000000000000000000000000"}),
        json!({"negotiationId": "not an id"}),
        json!({"negotiationId": id, "skillId": "question-answering-v1"}),
    ] {
        let code = srv
            .rpc_err(
                "message/send",
                json!({"message": message(metadata.clone())}),
            )
            .await;
        assert_eq!(code, -32602, "{metadata}");
    }
    // Another agent (another key) does not accept this agent's ids.
    let keys = std::env::temp_dir().join(unique("bindu-negotiation-keys"));
    let other = negotiating(&[("identity.dir", keys.to_str().unwrap())], skill_echo()).await;
    let code = other
        .rpc_err(
            "message/send",
            json!({"message": message(json!({"negotiationId": id}))}),
        )
        .await;
    assert_eq!(code, -32602);
    std::fs::remove_dir_all(keys).ok();
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A negotiating server whose skill match blends in the fake endpoint's embeddings.
async fn with_embeddings(fake: &FakeEmbeddings, extra: &[(&str, &str)]) -> TestServer {
    let url = fake.base_url();
    let mut settings = vec![
        ("negotiation.use_embeddings", "true"),
        ("negotiation.embedding_url", url.as_str()),
        ("negotiation.embedding_api_key", "sk-embed-test"),
    ];
    settings.extend_from_slice(extra);
    negotiating(&settings, Arc::new(bindu::EchoHandler::default())).await
}

fn semantic(answer: &Value) -> bool {
    answer["skill_matches"].as_array().unwrap().iter().any(|m| {
        m["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("semantic similarity"))
    })
}

#[tokio::test]
async fn embeddings_find_the_skill_keywords_miss() {
    let fake = FakeEmbeddings::start(Mode::Normal).await;
    let srv = with_embeddings(&fake, &[]).await;
    let ask = json!({"task_summary": "Render this paragraph in Spanish"});
    let answer = negotiate(&srv, ask.clone()).await;
    assert_eq!(answer["accepted"], true, "{answer}");
    assert_eq!(answer["skill_matches"][0]["skill_id"], "translation-v1");
    assert!(semantic(&answer), "{answer}");
    // Keywords alone find nothing in it.
    let plain = negotiating(&[], Arc::new(bindu::EchoHandler::default())).await;
    let keywords = negotiate(&plain, ask.clone()).await;
    assert_eq!(keywords["rejection_reason"], "score_below_threshold");

    // The skills in one request (once), then the task; the model and the key as configured.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (skills, auth) = &requests[0];
    assert_eq!(skills["model"], "text-embedding-3-small");
    assert_eq!(auth.as_deref(), Some("Bearer sk-embed-test"));
    let texts = skills["input"].as_array().unwrap();
    assert_eq!(texts.len(), 3);
    assert!(texts[2].as_str().unwrap().starts_with("translation: "));
    assert_eq!(
        requests[1].0["input"],
        json!(["Render this paragraph in Spanish"])
    );
    // A repeated task is answered from the cache; a new one costs one small request.
    negotiate(&srv, ask).await;
    assert_eq!(fake.requests().len(), 2);
    let answer = negotiate(
        &srv,
        json!({"task_summary": "Why do plants need light? Explain"}),
    )
    .await;
    assert_eq!(
        answer["skill_matches"][0]["skill_id"],
        "question-answering-v1"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].0["input"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_endpoint_falls_back_to_keywords_and_is_left_alone() {
    for (mode, extra) in [
        (Mode::Fail, None),
        (Mode::Unusable, None),
        (
            Mode::Slow(std::time::Duration::from_secs(5)),
            Some(("negotiation.embedding_timeout_ms", "100")),
        ),
    ] {
        let fake = FakeEmbeddings::start(mode).await;
        let srv = with_embeddings(&fake, extra.as_slice()).await;
        let ask = json!({"task_summary": "Why is the sky blue? Explain"});
        let answer = negotiate(&srv, ask.clone()).await;
        assert_eq!(answer["accepted"], true, "{mode:?}: {answer}");
        assert_eq!(
            answer["skill_matches"][0]["skill_id"], "question-answering-v1",
            "{mode:?}"
        );
        assert!(!semantic(&answer), "{mode:?}: keywords alone: {answer}");
        assert_eq!(fake.requests().len(), 1, "{mode:?}");
        // Within the back-off the endpoint is not asked again, even once it has recovered.
        fake.set_mode(Mode::Normal);
        let again = negotiate(&srv, ask).await;
        assert!(!semantic(&again), "{mode:?}");
        assert_eq!(fake.requests().len(), 1, "{mode:?}: left alone");
    }
}

#[tokio::test]
async fn a_priced_agent_compares_its_cheapest_price_with_the_budget() {
    use bindu::PriceOption;
    let skills = example_skills();
    let srv = TestServer::start_config(
        &[
            ("agent.skills", skills.as_str()),
            ("negotiation.enabled", "true"),
            ("x402.pay_to", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            // Never contacted: negotiation looks at the price only.
            ("x402.facilitator_url", "http://127.0.0.1:9"),
        ],
        |c| {
            c.agent.execution_cost = vec![
                PriceOption::usdc("$0.08").on("base"),
                PriceOption::usdc("0.05").on("base-sepolia"),
            ]
        },
        Arc::new(bindu::EchoHandler::default()),
    )
    .await;
    let task = "why is the sky blue? explain";
    let over = negotiate(
        &srv,
        json!({"task_summary": task, "max_cost_amount": "0.01"}),
    )
    .await;
    assert_eq!(over["accepted"], false);
    assert_eq!(over["rejection_reason"], "cost_exceeds_budget", "{over}");
    assert_eq!(over["confidence"], 0.9);
    let within_budget =
        negotiate(&srv, json!({"task_summary": task, "max_cost_amount": 0.1})).await;
    assert_eq!(within_budget["accepted"], true, "{within_budget}");
    assert_eq!(
        within_budget["subscores"]["cost"], 0.75,
        "1 - 0.05 / 0.10 × 0.5, the cheaper option"
    );
    let exact = negotiate(
        &srv,
        json!({"task_summary": task, "max_cost_amount": "$0.05"}),
    )
    .await;
    assert_eq!(exact["subscores"]["cost"], 0.5, "{exact}");
    let no_budget = negotiate(&srv, json!({"task_summary": task})).await;
    assert_eq!(no_budget["subscores"]["cost"], 0.5, "{no_budget}");
}
