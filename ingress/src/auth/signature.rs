//! DID request signatures (Bindu's scheme): `X-DID`, `X-DID-Timestamp`, `X-DID-Signature`
//! over the canonical bytes of `bindu_schemas::signing` (Python form, then JavaScript form).
//! Every header is length-capped before decoding; duplicates are refused; the body is read
//! up to 2 MiB (chunked or not); a signature seen before inside the window is refused.
//!
//! What is signed: the body as sent; for an HTTP+JSON request without a body (a `GET`, a
//! `DELETE`, a bodiless `POST …:cancel`), its request line's method and target instead
//! ([`RequestLine`]), so a signature authorises that one request, not every bodiless route.

use axum::extract::Request;
use axum::http::HeaderMap;
use bindu_engine::identity::batch::{decode_key, decode_signature, VerifyJob};
use bindu_schemas::signing::{parse_timestamp, signing_payload, Form};
use sha2::{Digest, Sha256};

use super::cache::Sighting;
use super::{now, Auth, AuthorityError};
use crate::body::{drained, read_limited, with_body, BodyError};
use crate::error::{EdgeError, SignatureFailure};

/// Largest signed body.
pub const MAX_SIGNED_BODY: usize = 2 * 1024 * 1024;
/// Longest `X-DID`.
pub const MAX_DID_LEN: usize = 2048;
/// Longest `X-DID-Timestamp`.
pub const MAX_TIMESTAMP_LEN: usize = 24;
/// Longest `X-DID-Signature`.
pub const MAX_SIGNATURE_LEN: usize = 128;

/// The method and origin-form target (path and query, percent-encoding untouched) of an
/// HTTP+JSON request as it arrived, e.g. `GET /v1/tasks/abc?historyLength=2`: what a
/// request without a body signs ([`bindu_schemas::signing::request_line`]). Set by
/// [`crate::rest`]'s outer layer before anything rewrites the request; absent on `POST /`.
#[derive(Debug, Clone)]
pub(crate) struct RequestLine(pub String);

impl RequestLine {
    pub(crate) fn of(request: &Request) -> RequestLine {
        let target = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path(), |p| p.as_str());
        RequestLine(bindu_schemas::signing::request_line(
            request.method().as_str(),
            target,
        ))
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &str, max: usize) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let v = values.next()?;
    if values.next().is_some() || v.len() > max {
        return None;
    }
    let s = v.to_str().ok()?.trim();
    (!s.is_empty()).then_some(s)
}

/// The three signature headers, each present exactly once, within its length cap, visible
/// ASCII and not blank once trimmed, the timestamp strictly an integer
/// ([`parse_timestamp`]): `(did, timestamp, signature)`, trimmed; `None` otherwise (a
/// refusal with `MissingHeaders`). Public for the `signature` fuzz target.
#[doc(hidden)]
pub fn signature_headers(headers: &HeaderMap) -> Option<(String, i64, String)> {
    Some((
        single(headers, "x-did", MAX_DID_LEN)?.to_string(),
        single(headers, "x-did-timestamp", MAX_TIMESTAMP_LEN).and_then(parse_timestamp)?,
        single(headers, "x-did-signature", MAX_SIGNATURE_LEN)?.to_string(),
    ))
}

/// The signature headers and the caller's key: the checks made before the body is read.
async fn claim(
    auth: &Auth,
    client: &str,
    headers: &HeaderMap,
) -> Result<(String, i64, String, String), EdgeError> {
    let Some((did, ts, sig)) = signature_headers(headers) else {
        return Err(EdgeError::signature(SignatureFailure::MissingHeaders, None));
    };
    let reject = |reason| Err(EdgeError::signature(reason, Some(&did)));
    if did != client {
        return reject(SignatureFailure::DidMismatch);
    }
    match auth.public_key(client).await {
        Ok(Some(key)) => Ok((did, ts, sig, key)),
        Ok(None) => reject(SignatureFailure::PublicKeyUnavailable),
        Err(AuthorityError::Unavailable(e)) | Err(AuthorityError::Invalid(e)) => {
            tracing::warn!(%did, error = %e, "caller key lookup failed");
            reject(SignatureFailure::PublicKeyUnavailable)
        }
    }
}

/// Verifies the request's signature; on success returns the request with its body restored.
pub(crate) async fn verify(auth: &Auth, client: &str, req: Request) -> Result<Request, EdgeError> {
    let (did, ts, sig, key) = match claim(auth, client, req.headers()).await {
        Ok(claim) => claim,
        Err(refusal) => return Err(drained(req, refusal).await),
    };
    let reject = |reason| EdgeError::signature(reason, Some(&did));
    let (parts, body) = req.into_parts();
    // Over the limit (declared or sent), the body is drained before the refusal.
    let body = read_limited(body, &parts.headers, MAX_SIGNED_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TimedOut(limit) => EdgeError::BodyTimedOut { limit },
            _ => reject(SignatureFailure::PayloadTooLarge),
        })?;
    let window = auth.settings.signature_window.as_secs() as i64;
    if now().abs_diff(ts) > window as u64 {
        tracing::info!(%did, ts, "DID signature outside the time window");
        return Err(reject(SignatureFailure::Invalid));
    }
    let text = match parts.extensions.get::<RequestLine>() {
        Some(RequestLine(line)) if body.is_empty() => line.as_str(),
        _ => match std::str::from_utf8(&body) {
            Ok(text) => text,
            Err(_) => return Err(reject(SignatureFailure::Invalid)),
        },
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
        return Err(reject(SignatureFailure::Invalid));
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
        return Err(reject(SignatureFailure::Invalid));
    }
    if auth.settings.replay_guard {
        let digest: [u8; 32] = Sha256::digest(sig.as_bytes()).into();
        // Acceptable while now ≤ ts + window: remembered exactly that long.
        match auth
            .first_sighting(&digest, ts.saturating_add(window))
            .await
        {
            Sighting::First => {}
            Sighting::Replayed => return Err(reject(SignatureFailure::Replayed)),
            Sighting::Full => {
                tracing::warn!(
                    "DID replay guard at capacity; refusing new signatures until entries expire"
                );
                return Err(EdgeError::ReplayGuardFull);
            }
        }
    }
    Ok(with_body(parts, body))
}
