//! The agent's identity on the wire: DID in the card and /health, the DID document at
//! /did/resolve, and signatures on every text part the agent produces.

use crate::support::{self, patient_client};

use bindu::engine::identity::verify_base58;
use serde_json::{json, Value};

async fn start(author: Option<&str>) -> (bindu::Server, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bindu-id-{}", uuid::Uuid::new_v4().simple()));
    let mut settings = vec![
        ("server.port", "0"),
        ("identity.dir", dir.to_str().unwrap()),
        ("agent.name", "Echo Agent"),
    ];
    if let Some(a) = author {
        settings.push(("agent.author", a));
    }
    (support::start_echo(&settings).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_did_is_served_and_results_are_signed() {
    let (server, dir) = start(Some("Ops@Example.com")).await;
    let base = format!("http://{}", server.local_addr());
    let c = patient_client();

    let card: Value = support::get_json(&c, format!("{base}/.well-known/agent-card.json")).await;
    let ext = &card["capabilities"]["extensions"][0];
    let did = ext["uri"].as_str().unwrap().to_string();
    assert!(
        did.starts_with("did:bindu:ops_at_example_com:echo_agent:"),
        "{did}"
    );
    let health: Value = support::get_json(&c, format!("{base}/health")).await;
    assert_eq!(health["application"]["agent_did"], json!(did));

    // The DID document, by GET and POST, under both DIDs of the key.
    let doc: Value = c
        .get(format!("{base}/did/resolve"))
        .query(&[("did", &did)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["id"], json!(did));
    assert_eq!(doc["@context"][0], "https://www.w3.org/ns/did/v1");
    let auth = &doc["authentication"][0];
    assert_eq!(auth["type"], "Ed25519VerificationKey2020");
    assert_eq!(auth["controller"], json!(did));
    let key = auth["publicKeyBase58"].as_str().unwrap().to_string();
    let did_key = ext["params"]["didKey"].as_str().unwrap();
    let by_post: Value = c
        .post(format!("{base}/did/resolve"))
        .json(&json!({"did": did_key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_post, doc);
    let other = c
        .get(format!("{base}/did/resolve"))
        .query(&[("did", "did:bindu:someone:else:x")])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let missing = c.get(format!("{base}/did/resolve")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 400);
    let garbage = c
        .post(format!("{base}/did/resolve"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    support::assert_error(garbage, 400, -32700).await;

    // Every text part of the result (artifact and agent message) is signed by that key.
    let sent: Value = c
        .post(format!("{base}/"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
            "role": "user", "messageId": "m", "parts": [{"kind": "text", "text": "sign me"}, {"kind": "data", "data": {"a": 1}}]}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = &sent["result"];
    let artifact_part = &task["artifacts"][0]["parts"][0];
    let reply_part = &task["history"][1]["parts"][0];
    for part in [artifact_part, reply_part] {
        let sig = part["metadata"]["did.message.signature"]
            .as_str()
            .unwrap_or_else(|| panic!("unsigned: {part}"));
        assert!(verify_base58(&key, b"sign me", sig));
        assert!(!verify_base58(&key, b"sign me!", sig));
    }
    assert!(
        task["artifacts"][0]["parts"][1]["metadata"].is_null(),
        "data parts are not signed"
    );
    // The user's own message is not touched.
    assert!(task["history"][0]["parts"][0].get("metadata").is_none());

    server.shutdown();
    server.wait().await.unwrap();
    #[cfg(unix)]
    assert_eq!(
        bindu::engine::identity::file_mode(&dir.join("private.pem")).unwrap(),
        0o600
    );
    // A restart reuses the key: same DID.
    let config = bindu::Config::from_settings(&[
        ("identity.dir", dir.to_str().unwrap()),
        ("agent.name", "Echo Agent"),
        ("agent.author", "Ops@Example.com"),
    ])
    .unwrap();
    let (again, _) = bindu::load_identity(&config, false).unwrap();
    assert_eq!(again.did, did);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_author_the_did_is_the_did_key() {
    let (server, dir) = start(None).await;
    let base = format!("http://{}", server.local_addr());
    let card: Value = support::get_json(
        &patient_client(),
        format!("{base}/.well-known/agent-card.json"),
    )
    .await;
    let did = card["capabilities"]["extensions"][0]["uri"]
        .as_str()
        .unwrap();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    server.shutdown();
    server.wait().await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}
