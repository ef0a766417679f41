//! The private card through HTTP, with authentication against the fake Hydra: private
//! skills (`agent.private_skills`) are shown by `GET /agent/private.json` and
//! `agent/getAuthenticatedExtendedCard` to the callers `agent.allowed_dids` lists only
//! (401 without credentials, 403 for others), never on the public card or `/agent/skills`,
//! and only listed callers can run a task with one.

use serde_json::{json, Value};

use crate::skills::{example_skill, skill_echo};
use crate::support::hydra::{fake_hydra, now};
use crate::support::*;

struct Env {
    srv: TestServer,
    keys: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.keys).ok();
    }
}

/// Public: pdf-processing and question-answering; private: translation, for `partner-a`.
/// Tokens: `tok-partner` (partner-a), `tok-stranger` (stranger).
async fn start() -> Env {
    let (hydra, addr) = fake_hydra().await;
    let exp = json!(now() + 3600);
    hydra.token(
        "tok-partner",
        "partner-a",
        exp.clone(),
        "agent:read agent:write",
    );
    hydra.token("tok-stranger", "stranger", exp, "agent:read agent:write");
    let keys = std::env::temp_dir().join(unique("bindu-private-card"));
    let public = format!(
        "{},{}",
        example_skill("pdf-processing"),
        example_skill("question-answering")
    );
    let private = example_skill("translation");
    let hydra_url = format!("http://{addr}");
    let srv = TestServer::start(
        &[
            ("auth.enabled", "true"),
            ("hydra.admin_url", &hydra_url),
            ("identity.dir", keys.to_str().unwrap()),
            ("agent.skills", &public),
            ("agent.private_skills", &private),
            ("agent.allowed_dids", "partner-a, partner-b"),
        ],
        skill_echo(),
    )
    .await;
    Env { srv, keys }
}

impl Env {
    async fn private_json(&self, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
        self.get(token, "/agent/private.json").await
    }

    /// GET `path` with `token`; the status, headers and JSON body.
    async fn get(
        &self,
        token: Option<&str>,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.srv.client.get(self.srv.endpoint(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = within(&format!("GET {path}"), req.send()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap())
    }

    /// `message/send` of `message` with `token`.
    async fn send(&self, token: Option<&str>, message: Value) -> (u16, Value) {
        self.rpc(token, "message/send", json!({ "message": message }))
            .await
    }

    async fn rpc(&self, token: Option<&str>, method: &str, params: Value) -> (u16, Value) {
        let mut req =
            self.srv.client.post(self.srv.url()).json(
                &json!({"jsonrpc": "2.0", "id": "req-9", "method": method, "params": params}),
            );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = within(method, req.send()).await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

fn skill_ids(card: &Value) -> Vec<String> {
    card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_card_shows_private_skills_to_listed_callers_only() {
    let env = start().await;
    let (status, headers, body) = env.private_json(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], -32009);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, body) = env.private_json(Some("tok-unknown")).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(-32010))
    );
    let (status, _, body) = env.private_json(Some("tok-stranger")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], -32013);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("stranger"));
    let (status, headers, card) = env.private_json(Some("tok-partner")).await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(headers["cache-control"], "private, no-store");
    assert_eq!(
        skill_ids(&card),
        [
            "pdf-processing-v1",
            "question-answering-v1",
            "translation-v1"
        ]
    );
    assert_eq!(card["supportsAuthenticatedExtendedCard"], true);
    let head = within(
        "HEAD /agent/private.json",
        env.srv
            .client
            .head(env.srv.endpoint("/agent/private.json"))
            .bearer_auth("tok-partner")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(head.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_card_method_is_gated_the_same_way() {
    let env = start().await;
    let method = "agent/getAuthenticatedExtendedCard";
    let (status, body) = env.rpc(None, method, json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(-32009))
    );
    let (status, body) = env.rpc(Some("tok-stranger"), method, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], -32013);
    assert_eq!(body["id"], "req-9", "the request id is echoed");
    let (status, body) = env.rpc(Some("tok-partner"), method, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        skill_ids(&body["result"]),
        [
            "pdf-processing-v1",
            "question-answering-v1",
            "translation-v1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_json_extended_card_is_gated_the_same_way() {
    let env = start().await;
    let get = |token: Option<&'static str>| {
        let env = &env;
        async move {
            let (status, _, body) = env.get(token, "/v1/extendedAgentCard").await;
            (status, body)
        }
    };
    let (status, body) = get(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "AUTHENTICATION_REQUIRED"
    );
    let (status, body) = get(Some("tok-stranger")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "INSUFFICIENT_PERMISSIONS"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("stranger"));
    let (status, card) = get(Some("tok-partner")).await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(
        skill_ids(&card),
        [
            "pdf-processing-v1",
            "question-answering-v1",
            "translation-v1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_skills_stay_off_the_public_card_and_routes() {
    let env = start().await;
    let card: Value = get_json(
        &env.srv.client,
        env.srv.endpoint("/.well-known/agent-card.json"),
    )
    .await;
    assert_eq!(
        skill_ids(&card),
        ["pdf-processing-v1", "question-answering-v1"]
    );
    assert_eq!(card["supportsAuthenticatedExtendedCard"], true);
    // The skill routes are public, with auth on; the private skill is not there.
    let list: Value = get_json(&env.srv.client, env.srv.endpoint("/agent/skills")).await;
    assert_eq!(list["total"], 2);
    for path in [
        "/agent/skills/translation-v1",
        "/agent/skills/translation-v1/documentation",
    ] {
        let (status, _, body) = env.srv.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_callers_run_a_task_with_a_private_skill() {
    let env = start().await;
    let message = user_message_with("hallo", json!({"metadata": {"skillId": "translation-v1"}}));
    let (status, body) = env.send(Some("tok-partner"), message.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        first_text(&body["result"]["artifacts"][0]),
        "translation-v1",
        "{body}"
    );
    let (status, body) = env.send(Some("tok-stranger"), message).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32030, "{body}");
    let public = user_message_with(
        "q",
        json!({"metadata": {"skillId": "question-answering-v1"}}),
    );
    let (_, body) = env.send(Some("tok-stranger"), public).await;
    assert_eq!(
        first_text(&body["result"]["artifacts"][0]),
        "question-answering-v1"
    );
}

#[tokio::test]
async fn without_private_skills_or_an_access_list_there_is_no_private_route() {
    let srv = TestServer::echo().await;
    let (status, _, _) = srv.get("/agent/private.json").await;
    assert_eq!(status, 404);
}

#[test]
fn private_skills_without_authentication_stop_the_binary() {
    let private = example_skill("translation");
    let stderr = crate::process::exits_2(
        &[
            ("BINDU_PRIVATE_SKILLS", private.as_str()),
            ("BINDU_AGENT_ALLOWED_DIDS", "partner-a"),
        ],
        &["serve", "--port", "0"],
    );
    assert!(stderr.contains("agent.allowed_dids"), "{stderr}");
    assert!(stderr.contains("AUTH__ENABLED"), "{stderr}");
    let stderr = crate::process::exits_2(
        &[("BINDU_PRIVATE_SKILLS", private.as_str())],
        &["serve", "--port", "0"],
    );
    assert!(stderr.contains("BINDU_AGENT_ALLOWED_DIDS"), "{stderr}");
}
