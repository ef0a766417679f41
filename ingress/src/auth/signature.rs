//! DID request signatures (Bindu's scheme): `X-DID`, `X-DID-Timestamp`, `X-DID-Signature`
//! over the canonical bytes of `bindu_schemas::signing` (Python form, then JavaScript form).
//! Every header is length-capped before decoding; duplicates are refused; the body is read
//! up to 2 MiB (chunked or not); a signature seen before inside the window is refused.

use axum::extract::Request;
use axum::response::Response;
use bindu_engine::identity::batch::{decode_key, decode_signature, VerifyJob};
use bindu_schemas::signing::{parse_timestamp, signing_payload, Form};
use http_body_util::BodyExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::cache::Sighting;
use super::{forbidden, now, refuse, with_body, Auth, AuthorityError};

/// Largest signed body.
pub const MAX_SIGNED_BODY: usize = 2 * 1024 * 1024;
const MAX_DID_LEN: usize = 2048;
const MAX_TIMESTAMP_LEN: usize = 24;
const MAX_SIGNATURE_LEN: usize = 128;

fn reject(reason: &str, did: Option<&str>) -> Response {
    let mut details = json!({"did_verified": false, "reason": reason});
    if let Some(d) = did {
        details["did"] = json!(d);
    }
    forbidden(json!({"error": "Invalid DID signature", "details": details}))
}

fn single<'a>(req: &'a Request, name: &str, max: usize) -> Option<&'a str> {
    let mut values = req.headers().get_all(name).iter();
    let v = values.next()?;
    if values.next().is_some() || v.len() > max {
        return None;
    }
    let s = v.to_str().ok()?.trim();
    (!s.is_empty()).then_some(s)
}

/// Verifies the request's signature; on success returns the request with its body restored.
pub(crate) async fn verify(auth: &Auth, client: &str, req: Request) -> Result<Request, Response> {
    let (Some(did), Some(ts), Some(sig)) = (
        single(&req, "x-did", MAX_DID_LEN).map(str::to_string),
        single(&req, "x-did-timestamp", MAX_TIMESTAMP_LEN).and_then(parse_timestamp),
        single(&req, "x-did-signature", MAX_SIGNATURE_LEN).map(str::to_string),
    ) else {
        return Err(refuse(req, reject("missing_signature_headers", None)).await);
    };
    if did != client {
        return Err(refuse(req, reject("did_mismatch", Some(&did))).await);
    }
    let key = match auth.public_key(client).await {
        Ok(Some(k)) => k,
        Ok(None) => return Err(refuse(req, reject("public_key_unavailable", Some(&did))).await),
        Err(AuthorityError::Unavailable(e)) | Err(AuthorityError::Invalid(e)) => {
            tracing::warn!(%did, error = %e, "caller key lookup failed");
            return Err(refuse(req, reject("public_key_unavailable", Some(&did))).await);
        }
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_SIGNED_BODY as u64) {
        return Err(refuse(req, reject("payload_too_large", Some(&did))).await);
    }
    let (parts, mut body) = req.into_parts();
    let mut read = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return Err(reject("payload_too_large", Some(&did))),
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                if read.len() + data.len() > MAX_SIGNED_BODY {
                    // Read (bounded) and drop the rest, so the client sees the answer
                    // instead of a reset while it is still sending.
                    let _ = crate::rpc::drain(body).await;
                    return Err(reject("payload_too_large", Some(&did)));
                }
                read.extend_from_slice(data);
            }
        }
    }
    let body = read.freeze();
    let window = auth.settings.signature_window.as_secs() as i64;
    if now().abs_diff(ts) > window as u64 {
        tracing::info!(%did, ts, "DID signature outside the time window");
        return Err(reject("invalid_signature", Some(&did)));
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(reject("invalid_signature", Some(&did)));
    };
    let key = match auth.parsed_keys.get(&key) {
        Some(k) => Some(k),
        None => {
            let parsed = decode_key(&key);
            if let Some(k) = parsed {
                auth.parsed_keys.insert(key, k, auth.settings.cache_ttl);
            }
            parsed
        }
    };
    let (Some(key), Some(signature)) = (key, decode_signature(&sig)) else {
        return Err(reject("invalid_signature", Some(&did)));
    };
    // Python form (Bindu's own clients) through the batch; the JavaScript form is only built
    // and checked when that fails.
    let job = VerifyJob {
        key,
        signature,
        messages: vec![signing_payload(text, &did, ts, Form::Python).into_bytes()],
    };
    let verified = auth.verifier.verify(job).await || {
        use ed25519_dalek::Verifier;
        key.verify(
            signing_payload(text, &did, ts, Form::Js).as_bytes(),
            &signature,
        )
        .is_ok()
    };
    if !verified {
        return Err(reject("invalid_signature", Some(&did)));
    }
    if auth.settings.replay_guard {
        let digest: [u8; 32] = Sha256::digest(sig.as_bytes()).into();
        // Acceptable while now ≤ ts + window: remembered exactly that long.
        match auth
            .first_sighting(&digest, ts.saturating_add(window))
            .await
        {
            Sighting::First => {}
            Sighting::Replayed => return Err(reject("replayed", Some(&did))),
            Sighting::Full => {
                tracing::warn!(
                    "DID replay guard at capacity; refusing new signatures until entries expire"
                );
                return Err(super::rpc_error(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    bindu_schemas::jsonrpc::code::INTERNAL_ERROR,
                    "Too many signed requests in the signature window; retry shortly",
                ));
            }
        }
    }
    Ok(with_body(parts, body))
}
