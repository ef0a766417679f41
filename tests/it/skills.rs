//! Skills through HTTP: read from directories shaped like Bindu's examples
//! (`examples/skills/`: a `skill.yaml`, a `SKILL.md` with front matter, a directory with
//! both), served at `/agent/skills…`, listed on the card, and named by messages so the
//! handler learns which one it serves. A bad skill file stops the binary at start-up.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::process::{exits_2, run_bindu};
use crate::support::{self, *};

/// The directory of an example skill.
pub fn example_skill(name: &str) -> String {
    format!("{}/examples/skills/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The three example skills, as `agent.skills` takes them.
pub fn example_skills() -> String {
    ["pdf-processing", "question-answering", "translation"]
        .map(example_skill)
        .join(",")
}

/// A handler answering with the skill it was given (`none` without one).
pub fn skill_echo() -> Arc<dyn bindu::Handler> {
    handler(|input: bindu::HandlerInput| async move {
        Ok(bindu::HandlerOutput::Text(
            input.skill.unwrap_or_else(|| "none".into()),
        ))
    })
}

async fn with_examples(extra: &[(&str, &str)], h: Arc<dyn bindu::Handler>) -> TestServer {
    let skills = example_skills();
    let mut settings = vec![("agent.skills", skills.as_str())];
    settings.extend_from_slice(extra);
    TestServer::start(&settings, h).await
}

async fn get_json(srv: &TestServer, path: &str) -> (u16, String, Value) {
    let (status, content_type, body) = srv.get(path).await;
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
    (status, content_type, value)
}

#[tokio::test]
async fn skills_from_files_are_listed_as_summaries() {
    let srv = with_examples(&[], Arc::new(bindu::EchoHandler::default())).await;
    let (status, content_type, body) = get_json(&srv, "/agent/skills").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    assert_eq!(body["total"], 3);
    let ids: Vec<&str> = body["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "pdf-processing-v1",
            "question-answering-v1",
            "translation-v1"
        ]
    );
    let pdf = &body["skills"][0];
    assert_eq!(
        pdf,
        &json!({
            "id": "pdf-processing-v1",
            "name": "pdf-processing",
            "description": "Pulls text, tables and form fields out of PDF documents, including scanned pages\n(through OCR), and fills PDF forms from structured data.",
            "version": "1.2.0",
            "tags": ["pdf", "documents", "tables", "forms"],
            "input_modes": ["application/pdf", "text/plain"],
            "output_modes": ["text/plain", "application/json"],
            "examples": ["Extract the text of this PDF", "Pull the line items table out of this invoice", "Fill in this PDF form with the data below"],
            "documentation_path": "/agent/skills/pdf-processing-v1/documentation",
        })
    );
    // A skill without input_modes takes text/plain.
    let translation = &body["skills"][2];
    assert_eq!(translation["input_modes"], json!(["text/plain"]));
    assert!(translation.get("examples").is_none());
}

#[tokio::test]
async fn a_skill_record_has_every_field_and_says_whether_it_has_documentation() {
    let srv = with_examples(&[], Arc::new(bindu::EchoHandler::default())).await;
    let (status, _, pdf) = get_json(&srv, "/agent/skills/pdf-processing-v1").await;
    assert_eq!(status, 200);
    assert_eq!(pdf["has_documentation"], true);
    assert_eq!(pdf["author"], "docs-team@example.com");
    assert_eq!(
        pdf["capabilities_detail"]["table_extraction"]["output_formats"],
        json!(["json", "csv"])
    );
    assert_eq!(pdf["requirements"]["min_memory_mb"], 512);
    assert_eq!(pdf["performance"]["avg_processing_time_ms"], 2000);
    assert_eq!(
        pdf["performance"]["avg_time_per_page_ms"], 200,
        "performance keys beyond the known ones are kept"
    );
    assert_eq!(pdf["allowed_tools"], json!(["Read", "Write"]));
    assert_eq!(
        pdf["assessment"]["specializations"][0],
        json!({"domain": "invoice_tables", "confidence_boost": 0.2})
    );
    assert_eq!(
        pdf["assessment"]["complexity_indicators"]["complex"][0],
        "scanned"
    );
    assert!(pdf["documentation"]["overview"]
        .as_str()
        .unwrap()
        .contains("OCR"));
    assert!(pdf.get("documentation_content").is_none());
    assert!(pdf.get("markdown_content").is_none());

    let (_, _, qa) = get_json(&srv, "/agent/skills/question-answering-v1").await;
    assert_eq!(qa["version"], "1.0.0");
    assert_eq!(qa["has_documentation"], true);
    assert!(qa["markdown_content"]
        .as_str()
        .unwrap()
        .starts_with("# Question answering"));
    // skill.yaml and SKILL.md side by side: the record from the YAML, the Markdown body too.
    let (_, _, tr) = get_json(&srv, "/agent/skills/translation-v1").await;
    assert_eq!(tr["name"], "translation");
    assert!(tr["markdown_content"]
        .as_str()
        .unwrap()
        .starts_with("# Translation"));
}

#[tokio::test]
async fn documentation_is_the_raw_file_with_its_media_type() {
    let srv = with_examples(&[], Arc::new(bindu::EchoHandler::default())).await;
    for (id, file, media_type) in [
        (
            "pdf-processing-v1",
            "pdf-processing/skill.yaml",
            "application/yaml",
        ),
        (
            "question-answering-v1",
            "question-answering/SKILL.md",
            "text/markdown; charset=utf-8",
        ),
        (
            "translation-v1",
            "translation/skill.yaml",
            "application/yaml",
        ),
    ] {
        let (status, content_type, body) =
            srv.get(&format!("/agent/skills/{id}/documentation")).await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(content_type, media_type, "{id}");
        let raw = std::fs::read_to_string(format!(
            "{}/examples/skills/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(body, raw, "{id}: the file as written");
    }
}

#[tokio::test]
async fn an_unknown_skill_is_404_with_code_32030() {
    let srv = with_examples(&[], Arc::new(bindu::EchoHandler::default())).await;
    for path in [
        "/agent/skills/nope",
        "/agent/skills/nope/documentation",
        "/agent/skills/%2F..",
        "/agent/skills/..%2F..%2Fetc%2Fpasswd/documentation",
        "/agent/skills/pdf-processing-v1%00",
    ] {
        let (status, content_type, body) = get_json(&srv, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(content_type, "application/json", "{path}");
        assert_eq!(body["jsonrpc"], "2.0", "{path}");
        assert_eq!(body["error"]["code"], -32030, "{path}: {body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn skill_routes_answer_head_and_get_only() {
    let srv = with_examples(&[], Arc::new(bindu::EchoHandler::default())).await;
    for (path, status) in [
        ("/agent/skills", 200),
        ("/agent/skills/pdf-processing-v1", 200),
        ("/agent/skills/pdf-processing-v1/documentation", 200),
        ("/agent/skills/nope", 404),
    ] {
        let resp = within("HEAD", srv.client.head(srv.endpoint(path)).send())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "HEAD {path}");
        assert!(
            resp.bytes().await.unwrap().is_empty(),
            "HEAD {path}: no body"
        );
    }
    let resp = within(
        "POST /agent/skills",
        srv.client.post(srv.endpoint("/agent/skills")).send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn the_card_lists_the_skills_in_a2a_form() {
    let srv = with_examples(&[], Arc::new(bindu::EchoHandler::default())).await;
    let (_, _, card) = get_json(&srv, "/.well-known/agent-card.json").await;
    let skills = card["skills"].as_array().unwrap();
    assert_eq!(skills.len(), 3);
    assert_eq!(
        skills[0],
        json!({
            "id": "pdf-processing-v1",
            "name": "pdf-processing",
            "description": "Pulls text, tables and form fields out of PDF documents, including scanned pages\n(through OCR), and fills PDF forms from structured data.",
            "tags": ["pdf", "documents", "tables", "forms"],
            "examples": ["Extract the text of this PDF", "Pull the line items table out of this invoice", "Fill in this PDF form with the data below"],
            "inputModes": ["application/pdf", "text/plain"],
            "outputModes": ["text/plain", "application/json"],
        })
    );
}

#[tokio::test]
async fn builder_skills_are_served_and_an_inline_one_has_no_documentation_file() {
    let server = bindu::Agent::builder()
        .port(0)
        .skill(
            bindu::agent::skill(
                "greet-v1",
                "greet",
                "Greets whoever you name",
                &["greeting"],
            )
            .input_modes(&["text/plain"])
            .avg_processing_time_ms(50),
        )
        .skill_dir(example_skill("pdf-processing"))
        .handler_arc(skill_echo())
        .serve()
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = client();
    let list: Value = support::get_json(&c, format!("{base}/agent/skills")).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["skills"][0]["id"], "greet-v1");
    assert!(list["skills"][0].get("documentation_path").is_none());
    let record: Value = support::get_json(&c, format!("{base}/agent/skills/greet-v1")).await;
    assert_eq!(record["has_documentation"], false);
    assert_eq!(record["performance"]["avg_processing_time_ms"], 50);
    let resp = c
        .get(format!("{base}/agent/skills/greet-v1/documentation"))
        .send()
        .await
        .unwrap();
    support::assert_error(resp, 404, -32030).await;
    let card: Value = support::get_json(&c, format!("{base}/.well-known/agent-card.json")).await;
    assert_eq!(card["skills"][0]["id"], "greet-v1");
    assert_eq!(card["skills"][1]["id"], "pdf-processing-v1");
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn an_agent_may_advertise_no_skills() {
    let srv = TestServer::echo_with(&[("agent.skills", "")]).await;
    let (_, _, body) = get_json(&srv, "/agent/skills").await;
    assert_eq!(body, json!({"skills": [], "total": 0}));
    let (_, _, card) = get_json(&srv, "/.well-known/agent-card.json").await;
    assert_eq!(card["skills"], json!([]));
}

fn with_skill(text: &str, metadata: Value) -> Value {
    user_message_with(text, json!({ "metadata": metadata }))
}

#[tokio::test]
async fn the_handler_learns_the_skill_a_message_names() {
    let srv = with_examples(&[], skill_echo()).await;
    for (metadata, expected) in [
        (
            json!({"skillId": "question-answering-v1"}),
            "question-answering-v1",
        ),
        (json!({"skill_id": "translation-v1"}), "translation-v1"),
        (json!({"other": 1}), "none"),
    ] {
        let task = srv.send(with_skill("hi", metadata.clone())).await;
        assert_eq!(task["status"]["state"], "completed", "{metadata}");
        assert_eq!(first_text(&task["artifacts"][0]), expected, "{metadata}");
    }
    let task = srv.send(user_message("no metadata")).await;
    assert_eq!(first_text(&task["artifacts"][0]), "none");
    // The skill is recorded on the message, under its A2A-style name.
    let history = &task["history"];
    assert!(history[0].get("metadata").is_none());
    let task = srv
        .send(with_skill("hi", json!({"skill_id": "translation-v1"})))
        .await;
    assert_eq!(task["history"][0]["metadata"]["skillId"], "translation-v1");

    let resp = srv
        .rpc_send(with_skill("hi", json!({"skillId": "nope"})))
        .await;
    assert_eq!(error_code(&resp), -32030);
    assert!(resp["error"]["message"]
        .as_str()
        .unwrap()
        .contains("skillId"));
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": with_skill("hi", json!({"skillId": 7}))}),
        )
        .await;
    assert_eq!(code, -32602);
    // Negotiation is off here: a negotiation id cannot name a skill.
    let code = srv
        .rpc_err(
            "message/send",
            json!({"message": with_skill("hi", json!({"negotiationId": "n1.1.61.00"}))}),
        )
        .await;
    assert_eq!(code, -32602);
}

#[tokio::test]
async fn a_follow_up_keeps_the_skill_of_its_task() {
    let h = handler(|input: bindu::HandlerInput| async move {
        let users = input
            .history
            .iter()
            .filter(|m| m.role == bindu::schemas::Role::User)
            .count();
        if users == 1 {
            return Ok(bindu::HandlerOutput::InputRequired(
                "Into which language?".into(),
            ));
        }
        Ok(bindu::HandlerOutput::Text(format!(
            "{} after {users} messages",
            input.skill.unwrap_or_default()
        )))
    });
    let srv = with_examples(&[], h).await;
    let first = srv
        .send(with_skill(
            "translate this",
            json!({"skillId": "translation-v1"}),
        ))
        .await;
    assert_eq!(first["status"]["state"], "input-required");
    let task_id = first["id"].as_str().unwrap();
    let done = srv
        .send(user_message_with("German", json!({"taskId": task_id})))
        .await;
    assert_eq!(done["status"]["state"], "completed");
    assert_eq!(
        first_text(&done["artifacts"][0]),
        "translation-v1 after 2 messages"
    );
}

/// A skill directory under a fresh temporary directory, holding `file` with `text`.
fn skill_dir(file: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("bindu-skill"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
    dir
}

#[test]
fn a_bad_skill_file_stops_the_binary_naming_the_file_the_field_and_the_problem() {
    let cases = [
        (
            "skill.yaml",
            "name: pdf\ndescription: Reads PDFs\nperformance:\n  avg_processing_time_ms: fast\n",
            "field `performance.avg_processing_time_ms`: invalid type",
        ),
        (
            "skill.yaml",
            "id: x\ndescription: no name\n",
            "missing field `name`",
        ),
        (
            "skill.yaml",
            "name: x\ndescription: d\ninput_modes: [pdf]\n",
            "field `input_modes[0]`",
        ),
        (
            "skill.yaml",
            "name: x\ndescription: d\n  tags: [oops\n",
            "not valid YAML at line",
        ),
        (
            "SKILL.md",
            "# No front matter\n\nJust prose.\n",
            "front matter",
        ),
        (
            "SKILL.md",
            "---\nname: x\ndescription: d\nassessment:\n  specializations:\n    - domain: y\n      confidence_boost: 5\n---\nbody\n",
            "field `assessment.specializations[0].confidence_boost`",
        ),
    ];
    for (file, text, problem) in cases {
        let dir = skill_dir(file, text);
        let path = dir.to_str().unwrap();
        let stderr = exits_2(
            &[("BINDU_SKILLS", path), ("BINDU_KEY_DIR", path)],
            &["serve", "--port", "0"],
        );
        assert!(stderr.contains("agent.skills / BINDU_SKILLS"), "{stderr}");
        assert!(
            stderr.contains(&dir.join(file).display().to_string()),
            "the file is named: {stderr}"
        );
        assert!(stderr.contains(problem), "{problem:?} in {stderr}");
        std::fs::remove_dir_all(dir).ok();
    }
    // Two skills with one id: both places are named.
    let a = skill_dir("skill.yaml", "id: same\nname: a\ndescription: d\n");
    let b = skill_dir("skill.yaml", "id: same\nname: b\ndescription: d\n");
    let both = format!("{},{}", a.display(), b.display());
    let stderr = exits_2(
        &[
            ("BINDU_SKILLS", &both),
            ("BINDU_KEY_DIR", a.to_str().unwrap()),
        ],
        &["config"],
    );
    assert!(stderr.contains("field `id`"), "{stderr}");
    assert!(
        stderr.contains(&a.join("skill.yaml").display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains(&b.join("skill.yaml").display().to_string()),
        "{stderr}"
    );
    // A good one passes, and `bindu config` lists it.
    let out = run_bindu(
        &[("BINDU_SKILLS", &example_skill("pdf-processing"))],
        &["config"],
    );
    crate::process::assert_success(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("examples/skills/pdf-processing"), "{shown}");
    std::fs::remove_dir_all(a).ok();
    std::fs::remove_dir_all(b).ok();
}
