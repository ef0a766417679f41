//! In-process HTTP integration tests: each test starts its own server on a free port of
//! 127.0.0.1 and talks to it over real HTTP.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bindu::schemas::jsonrpc::code;
use bindu::schemas::{Artifact, Part};
use bindu::{HandlerInput, HandlerOutput};
use serde_json::{json, Value};
use support::*;

const PARSE_ERROR: i64 = code::PARSE_ERROR as i64;
const INVALID_REQUEST: i64 = code::INVALID_REQUEST as i64;
const METHOD_NOT_FOUND: i64 = code::METHOD_NOT_FOUND as i64;
const INVALID_PARAMS: i64 = code::INVALID_PARAMS as i64;
const TASK_NOT_FOUND: i64 = code::TASK_NOT_FOUND as i64;
const TASK_NOT_CANCELABLE: i64 = code::TASK_NOT_CANCELABLE as i64;
const UNSUPPORTED_OPERATION: i64 = code::UNSUPPORTED_OPERATION as i64;
const EXTENDED_CARD_NOT_CONFIGURED: i64 = code::EXTENDED_CARD_NOT_CONFIGURED as i64;
const TASK_IMMUTABLE: i64 = code::TASK_IMMUTABLE as i64;
const CONTEXT_NOT_FOUND: i64 = code::CONTEXT_NOT_FOUND as i64;

/// Posts `body` and asserts HTTP 200, the error `code` and the echoed `id`.
async fn expect_error(srv: &TestServer, body: &str, code: i64, id: Value) {
    let (status, resp) = srv.raw_post(body).await;
    assert_eq!(status, 200, "HTTP status for {body}: {resp}");
    assert_eq!(resp["jsonrpc"], "2.0", "{body}: {resp}");
    assert_eq!(error_code(&resp), code, "code for {body}: {resp}");
    assert_eq!(resp["id"], id, "id for {body}: {resp}");
    assert!(resp.get("result").is_none(), "{body}: {resp}");
}

/// [`expect_error`] for each (body, code, id), in order.
async fn expect_errors(srv: &TestServer, cases: &[(&str, i64, Value)]) {
    for (body, code, id) in cases {
        expect_error(srv, body, *code, id.clone()).await;
    }
}

fn send_body(id: Value, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "message/send", "params": params}).to_string()
}

mod extensions;
mod push_and_cards;
mod sends;
mod streams;
mod surface;
mod tasks;
mod validation;
