//! Reading request bodies, for every reader: JSON-RPC requests ([`crate::rpc`]), signed
//! requests ([`crate::auth`], which needs the raw bytes) and `POST /did/resolve`.
//!
//! A body is read up to a limit and never buffered whole beyond it. A refused body is
//! drained (bounded in bytes and time) before the answer goes out, so a client still
//! sending sees the answer instead of a reset connection, and the connection stays usable.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;

/// After refusing a body, how much more of it is read and discarded.
const DRAIN_MAX_BYTES: usize = 32 * 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the limit (declared or sent). `drained`: the rest was read to its end.
    TooLarge { drained: bool },
    /// The connection failed mid-body.
    Unreadable(String),
    /// The body did not arrive within `server.body_timeout_secs` (this long).
    TimedOut(Duration),
}

impl BodyError {
    fn read(e: axum::Error) -> BodyError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(t) = c.downcast_ref::<crate::server::BodyTimedOut>() {
                return BodyError::TimedOut(t.0);
            }
            cause = c.source();
        }
        BodyError::Unreadable(e.to_string())
    }
}

/// The `Content-Length` the client declared, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body, refusing it once it passes `limit` bytes (a declared length over the
/// limit is refused before anything is read). A refused body is drained.
pub(crate) async fn read_limited(
    mut body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        let drained = drain(body).await;
        return Err(BodyError::TooLarge { drained });
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::read)?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                let drained = drain(body).await;
                return Err(BodyError::TooLarge { drained });
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of a refused body, within bounds.
/// Returns whether the body was read to its end (the connection can then be reused).
pub(crate) async fn drain(mut body: Body) -> bool {
    let work = async {
        let mut seen = 0usize;
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        seen += data.len();
                        if seen > DRAIN_MAX_BYTES {
                            return false;
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(DRAIN_MAX_TIME, work)
        .await
        .unwrap_or(false)
}

/// Answers `refusal` after draining the request's body (see [`drain`]).
pub(crate) async fn refuse(req: Request, refusal: impl IntoResponse) -> Response {
    drained(req, refusal).await.into_response()
}

/// `refusal`, once the request's body is drained (see [`drain`]).
pub(crate) async fn drained<R>(req: Request, refusal: R) -> R {
    let _ = drain(req.into_body()).await;
    refusal
}

/// Rebuilds a request around a body that was read (for signature verification).
pub(crate) fn with_body(parts: axum::http::request::Parts, body: Bytes) -> Request {
    Request::from_parts(parts, Body::from(body))
}
