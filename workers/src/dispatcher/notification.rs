//! What a webhook receives, and how a receiver checks it came from the agent.
//!
//! Body, in the A2A version of the request that made the push config:
//! - 0.3 ([`body`]): the A2A event (`status-update` or `artifact-update`, camelCase as on the
//!   wire) with three more fields: `eventId` (`<taskId>:<sequence>`, the same on every
//!   redelivery), `sequence` (the task's event number, from 1) and `timestamp` (when the
//!   transition was recorded);
//! - 1.0 ([`body_v10`]): the event as 1.0 streams it, a `StreamResponse`
//!   (`{"statusUpdate": …}` or `{"artifactUpdate": …}`), nothing added.
//!
//! Compact JSON.
//!
//! Headers: `Content-Type: application/json`; with a token, `Authorization: Bearer <token>`
//! and `X-A2A-Notification-Token: <token>`; with signing on, `X-DID` (the agent's DID),
//! `X-DID-Timestamp` (Unix seconds) and `X-DID-Signature`: base58 Ed25519 over the same
//! canonical bytes DID-signed requests use (`bindu_schemas::signing`, Python form) with the
//! exact body bytes as the body, made with the agent's **webhook key** (`<did>#webhook` in
//! its DID document, `webhookPublicKeyBase58` in the card's DID extension), never with the
//! identity key that signs results: a result signature (over any text a caller sends) can
//! never pass for a webhook signature.

use std::time::Duration;

use bindu_engine::identity::{verify_base58, Identity};
use bindu_schemas::bus::TaskEvent;
use bindu_schemas::signing::{parse_timestamp, signing_payload, Form};

pub const HEADER_DID: &str = "x-did";
pub const HEADER_TIMESTAMP: &str = "x-did-timestamp";
pub const HEADER_SIGNATURE: &str = "x-did-signature";
pub const HEADER_TOKEN: &str = "x-a2a-notification-token";

/// The JSON body posted for `event`.
pub fn body(event: &TaskEvent) -> String {
    let mut value = match serde_json::to_value(&event.event) {
        Ok(serde_json::Value::Object(map)) => map,
        // An event is a struct of strings and numbers: it always serialises to an object.
        _ => serde_json::Map::new(),
    };
    value.insert("eventId".into(), event.event_id().into());
    value.insert("sequence".into(), event.seq.into());
    value.insert("timestamp".into(), event.timestamp.clone().into());
    serde_json::Value::Object(value).to_string()
}

/// The JSON body posted for `event` to a webhook configured over A2A 1.0.
pub fn body_v10(event: &TaskEvent) -> String {
    use bindu_schemas::a2a10::StreamResponse;
    use bindu_schemas::bus::EventBody;
    let response = match &event.event {
        EventBody::Status(e) => StreamResponse::StatusUpdate(e.clone().into()),
        EventBody::Artifact(e) => StreamResponse::ArtifactUpdate(e.clone().into()),
    };
    // A 1.0 event is a struct of strings, numbers and JSON values: it always serialises.
    serde_json::to_string(&response).unwrap_or_default()
}

/// The signature headers for `body`, signed now.
pub fn sign(identity: &Identity, body: &str, unix_secs: i64) -> [(&'static str, String); 3] {
    let payload = signing_payload(body, &identity.did, unix_secs, Form::Python);
    [
        (HEADER_DID, identity.did.clone()),
        (HEADER_TIMESTAMP, unix_secs.to_string()),
        (
            HEADER_SIGNATURE,
            identity.sign_webhook_base58(payload.as_bytes()),
        ),
    ]
}

/// Why a notification did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing, repeated or not text")]
    MissingHeader(&'static str),
    #[error("the notification is signed by {0}, not by the expected agent")]
    WrongSigner(String),
    #[error("the X-DID-Timestamp header is not a Unix time in seconds")]
    BadTimestamp,
    #[error("the signature is older or newer than the accepted window")]
    Stale,
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("the signature does not match the body")]
    BadSignature,
}

/// Checks a received notification: signed by `agent_did` with its webhook key
/// `webhook_key_base58` (`webhookPublicKeyBase58` in the agent card's DID extension, or the
/// `#webhook` assertion method of its `/did/resolve` document; **not** the identity key
/// `publicKeyBase58`, which signs results), over exactly `body`, at most `max_skew` away
/// from now.
///
/// ```
/// # use bindu_workers::dispatcher::notification::*;
/// # let headers = reqwest::header::HeaderMap::new();
/// # let body = b"{}";
/// let ok = verify(&headers, body, "did:bindu:acme:agent:…", "8XK…base58…",
///                 std::time::Duration::from_secs(300));
/// assert!(ok.is_err());
/// ```
pub fn verify(
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    agent_did: &str,
    webhook_key_base58: &str,
    max_skew: Duration,
) -> Result<(), VerifyError> {
    let now = bindu_engine::time::unix_now();
    verify_at(headers, body, agent_did, webhook_key_base58, max_skew, now)
}

fn single<'a>(
    headers: &'a reqwest::header::HeaderMap,
    name: &'static str,
) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if v.len() <= 4096 => v
            .to_str()
            .map(str::trim)
            .map_err(|_| VerifyError::MissingHeader(name)),
        _ => Err(VerifyError::MissingHeader(name)),
    }
}

/// [`verify`] at a given time (Unix seconds).
pub fn verify_at(
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    agent_did: &str,
    webhook_key_base58: &str,
    max_skew: Duration,
    now_unix: i64,
) -> Result<(), VerifyError> {
    let did = single(headers, HEADER_DID)?;
    let ts = single(headers, HEADER_TIMESTAMP)?;
    let sig = single(headers, HEADER_SIGNATURE)?;
    if did != agent_did {
        return Err(VerifyError::WrongSigner(did.to_string()));
    }
    let ts = parse_timestamp(ts).ok_or(VerifyError::BadTimestamp)?;
    if now_unix.abs_diff(ts) > max_skew.as_secs() {
        return Err(VerifyError::Stale);
    }
    let text = std::str::from_utf8(body).map_err(|_| VerifyError::NotUtf8)?;
    let ok = [Form::Python, Form::Js].into_iter().any(|form| {
        verify_base58(
            webhook_key_base58,
            signing_payload(text, did, ts, form).as_bytes(),
            sig,
        )
    });
    if ok {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindu_schemas::TaskState;
    use ed25519_dalek::SigningKey;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn a_1_0_webhook_gets_the_event_as_1_0_streams_it() {
        let event: TaskEvent = serde_json::from_value(serde_json::json!({
            "seq": 3, "timestamp": "2026-01-01T00:00:00Z",
            "event": {"kind": "status-update", "taskId": "t", "contextId": "c", "final": true,
                      "status": {"state": "completed"}}
        }))
        .unwrap();
        let v10: serde_json::Value = serde_json::from_str(&body_v10(&event)).unwrap();
        assert_eq!(
            v10,
            serde_json::json!({"statusUpdate": {"taskId": "t", "contextId": "c",
                                                "status": {"state": "TASK_STATE_COMPLETED"}}})
        );
        let v03: serde_json::Value = serde_json::from_str(&body(&event)).unwrap();
        assert_eq!(
            (v03["kind"].as_str(), v03["sequence"].as_u64()),
            (Some("status-update"), Some(3))
        );
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_body_is_the_a2a_event_with_id_sequence_and_timestamp() {
        let e = bindu_engine::bus::conformance::status_event("t-1", 3, TaskState::Working);
        let v: serde_json::Value = serde_json::from_str(&body(&e)).unwrap();
        assert_eq!(v["kind"], "status-update");
        assert_eq!(v["taskId"], "t-1");
        assert_eq!(v["status"]["state"], "working");
        assert_eq!(v["final"], false);
        assert_eq!(v["eventId"], "t-1:3");
        assert_eq!(v["sequence"], 3);
        assert_eq!(v["timestamp"], e.timestamp);
    }

    #[test]
    fn signatures_verify_only_for_the_exact_body_signer_and_window() {
        let id = Identity::new(SigningKey::from_bytes(&[9; 32]), "acme", "hooks");
        let key = id.webhook_public_key_base58();
        assert_eq!(
            verify_at(
                &headers(&sign(&id, "{}", 1_000)),
                b"{}",
                &id.did,
                &id.public_key_base58(),
                Duration::from_secs(300),
                1_000
            ),
            Err(VerifyError::BadSignature),
            "the identity key does not verify webhooks"
        );
        let body = "{\"text\":\"héllo\"}";
        let h = headers(&sign(&id, body, 1_000));
        let skew = Duration::from_secs(300);
        assert_eq!(
            verify_at(&h, body.as_bytes(), &id.did, &key, skew, 1_100),
            Ok(())
        );
        assert_eq!(
            verify_at(&h, b"{\"text\":\"hello\"}", &id.did, &key, skew, 1_100),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify_at(&h, body.as_bytes(), &id.did, &key, skew, 2_000),
            Err(VerifyError::Stale)
        );
        assert!(matches!(
            verify_at(&h, body.as_bytes(), "did:other", &key, skew, 1_100),
            Err(VerifyError::WrongSigner(_))
        ));
        let other = Identity::new(SigningKey::from_bytes(&[8; 32]), "acme", "hooks");
        assert_eq!(
            verify_at(
                &h,
                body.as_bytes(),
                &id.did,
                &other.webhook_public_key_base58(),
                skew,
                1_100
            ),
            Err(VerifyError::BadSignature)
        );
        let mut doubled = h.clone();
        doubled.append(HEADER_SIGNATURE, HeaderValue::from_static("x"));
        assert_eq!(
            verify_at(&doubled, body.as_bytes(), &id.did, &key, skew, 1_100),
            Err(VerifyError::MissingHeader(HEADER_SIGNATURE))
        );
        assert_eq!(
            verify_at(
                &HeaderMap::new(),
                body.as_bytes(),
                &id.did,
                &key,
                skew,
                1_100
            ),
            Err(VerifyError::MissingHeader(HEADER_DID))
        );
    }
}
