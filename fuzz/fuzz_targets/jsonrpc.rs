//! The JSON-RPC validator `POST /` runs on a body before any method: envelope and method
//! (`bindu_schemas::jsonrpc::parse_request`), then the method's params
//! (`bindu_ingress::rpc::params::Params::of`).
//!
//! Asserts, for any bytes:
//! - no panic;
//! - a refused envelope answers -32700, -32600 or -32601, and -32700 (with a `null` id)
//!   exactly when the body is not JSON;
//! - the error response serialises to a JSON-RPC error a client reads back unchanged;
//! - an accepted request was JSON and names a known method; its params are either refused
//!   with -32602 or accepted, and accepted params written back out are accepted again as
//!   the same value (nothing the validator lets through changes on a second pass).
#![no_main]

use bindu_ingress::rpc::params::Params;
use bindu_schemas::jsonrpc::{code, parse_request, Method, RequestId, ResponseEnvelope};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

const ENVELOPE_CODES: [i32; 3] = [
    code::PARSE_ERROR,
    code::INVALID_REQUEST,
    code::METHOD_NOT_FOUND,
];

fn to_value(params: &Params) -> Option<Value> {
    let v = match params {
        Params::MessageSend(p) | Params::MessageStream(p) => serde_json::to_value(p),
        Params::TasksGet(p) => serde_json::to_value(p),
        Params::TasksCancel(p) | Params::TasksResubscribe(p) | Params::PushConfigList(p) => {
            serde_json::to_value(p)
        }
        Params::TasksList(p) => serde_json::to_value(p),
        Params::TasksFeedback(p) => serde_json::to_value(p),
        Params::GetAuthenticatedExtendedCard => return None,
        Params::PushConfigSet(p) => serde_json::to_value(p),
        Params::PushConfigGet(p) => serde_json::to_value(p),
        Params::PushConfigDelete(p) => serde_json::to_value(p),
        Params::ContextsList(p) => serde_json::to_value(p),
        Params::ContextsClear(p) => serde_json::to_value(p),
    };
    Some(v.expect("accepted params serialise"))
}

fn same(a: &Params, b: &Params) -> bool {
    use Params::*;
    match (a, b) {
        (MessageSend(x), MessageSend(y)) | (MessageStream(x), MessageStream(y)) => x == y,
        (TasksGet(x), TasksGet(y)) => x == y,
        (TasksCancel(x), TasksCancel(y))
        | (TasksResubscribe(x), TasksResubscribe(y))
        | (PushConfigList(x), PushConfigList(y)) => x == y,
        (TasksList(x), TasksList(y)) => x == y,
        (TasksFeedback(x), TasksFeedback(y)) => x == y,
        (GetAuthenticatedExtendedCard, GetAuthenticatedExtendedCard) => true,
        (PushConfigSet(x), PushConfigSet(y)) => x == y,
        (PushConfigGet(x), PushConfigGet(y)) => x == y,
        (PushConfigDelete(x), PushConfigDelete(y)) => x == y,
        (ContextsList(x), ContextsList(y)) => x == y,
        (ContextsClear(x), ContextsClear(y)) => x == y,
        _ => false,
    }
}

fuzz_target!(|body: &[u8]| {
    // JSON is UTF-8 text (`from_slice` alone does not decode the strings it skips).
    let is_json = std::str::from_utf8(body)
        .is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok());
    let request = match parse_request(body) {
        Err(refusal) => {
            let c = refusal.error.code;
            assert!(ENVELOPE_CODES.contains(&c), "envelope refused with {c}");
            assert_eq!(
                c == code::PARSE_ERROR,
                !is_json,
                "-32700 exactly for bodies that are not JSON (got {c})"
            );
            if c == code::PARSE_ERROR {
                assert_eq!(refusal.id, RequestId::Null);
            }
            let wire = refusal.to_json();
            match serde_json::from_slice::<ResponseEnvelope<Value>>(&wire) {
                Ok(ResponseEnvelope::Error(back)) => assert_eq!(back, refusal),
                other => panic!("error response does not read back: {other:?}"),
            }
            return;
        }
        Ok(r) => r,
    };
    assert!(is_json, "accepted a body that is not JSON");
    assert_eq!(
        Method::from_name(request.method.as_str()),
        Some(request.method)
    );
    let params = match Params::of(&request, bindu_ingress::version::Version::V03) {
        Err(e) => {
            assert_eq!(
                e.code,
                code::INVALID_PARAMS,
                "params refused with {}",
                e.code
            );
            return;
        }
        Ok(p) => p,
    };
    assert_eq!(params.method(), request.method);
    let Some(written) = to_value(&params) else {
        return;
    };
    let again = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": request.method.as_str(), "params": written,
    })
    .to_string();
    let reparsed = parse_request(again.as_bytes()).expect("a rewritten request is valid");
    match Params::of(&reparsed, bindu_ingress::version::Version::V03) {
        Ok(p) => assert!(
            same(&params, &p),
            "params changed on a second pass:\n{params:?}\n{p:?}"
        ),
        Err(e) => panic!("accepted params refused once written back ({e}): {again}"),
    }
});
