//! JSON-RPC 2.0 envelope, request validation and error codes.
//!
//! [`parse_request`] checks a request body in the order the A2A spec asks for:
//! malformed JSON → -32700, not a JSON-RPC 2.0 request object → -32600, unknown method →
//! -32601. Params are checked afterwards by [`Request::params`] (→ -32602). Every error
//! carries the request `id` when it could be read, `null` otherwise.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::a2a::Validate;

/// Every error code we emit. A2A's own codes are -32001..-32007; Bindu adds -32008.. .
pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;
    pub const TASK_NOT_FOUND: i32 = -32001;
    pub const TASK_NOT_CANCELABLE: i32 = -32002;
    pub const PUSH_NOTIFICATION_NOT_SUPPORTED: i32 = -32003;
    pub const UNSUPPORTED_OPERATION: i32 = -32004;
    pub const CONTENT_TYPE_NOT_SUPPORTED: i32 = -32005;
    pub const INVALID_AGENT_RESPONSE: i32 = -32006;
    pub const EXTENDED_CARD_NOT_CONFIGURED: i32 = -32007;
    /// Bindu: a terminal task cannot take new messages.
    pub const TASK_IMMUTABLE: i32 = -32008;
    pub const AUTHENTICATION_REQUIRED: i32 = -32009;
    pub const INVALID_TOKEN: i32 = -32010;
    pub const TOKEN_EXPIRED: i32 = -32011;
    pub const INVALID_TOKEN_SIGNATURE: i32 = -32012;
    pub const INSUFFICIENT_PERMISSIONS: i32 = -32013;
    pub const CONTEXT_NOT_FOUND: i32 = -32020;
    pub const SKILL_NOT_FOUND: i32 = -32030;
    /// Bindu: too many requests (the work queue is over its limit, or the caller over its
    /// rate or open tasks); sent with HTTP 429 and `Retry-After`. Free in A2A 0.3 and 1.0.
    pub const TOO_MANY_REQUESTS: i32 = -32029;
}

/// A request id: string, number or null.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum RequestId {
    String(String),
    Number(serde_json::Number),
    #[default]
    Null,
}

/// The `error` member of an error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRpcError {
    pub code: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl JsonRpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        JsonRpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn parse_error(detail: impl std::fmt::Display) -> Self {
        Self::new(code::PARSE_ERROR, format!("Invalid JSON payload: {detail}"))
    }
    pub fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(
            code::INVALID_REQUEST,
            format!("Invalid JSON-RPC request: {detail}"),
        )
    }
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            code::METHOD_NOT_FOUND,
            format!("Method not found: `{method}`"),
        )
    }
    pub fn invalid_params(detail: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID_PARAMS, format!("Invalid params: {detail}"))
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(code::INTERNAL_ERROR, format!("Internal error: {detail}"))
    }
    pub fn task_not_found(task_id: &str) -> Self {
        Self::new(code::TASK_NOT_FOUND, format!("Task not found: {task_id}"))
    }
    pub fn task_not_cancelable(task_id: &str, state: &str) -> Self {
        Self::new(
            code::TASK_NOT_CANCELABLE,
            format!("Task {task_id} cannot be canceled: it is already {state}"),
        )
    }
    pub fn unsupported_operation(detail: impl std::fmt::Display) -> Self {
        Self::new(
            code::UNSUPPORTED_OPERATION,
            format!("Unsupported operation: {detail}"),
        )
    }
    pub fn extended_card_not_configured() -> Self {
        Self::new(
            code::EXTENDED_CARD_NOT_CONFIGURED,
            "Authenticated Extended Card not configured",
        )
    }
    pub fn task_immutable(task_id: &str, state: &str) -> Self {
        Self::new(
            code::TASK_IMMUTABLE,
            format!(
                "Task {task_id} is {state} and cannot be modified; start a new task \
                 (same contextId) with `referenceTaskIds: [\"{task_id}\"]` to build on it"
            ),
        )
    }
    pub fn context_not_found(context_id: &str) -> Self {
        Self::new(
            code::CONTEXT_NOT_FOUND,
            format!("Context not found: {context_id}"),
        )
    }
}

impl std::fmt::Display for JsonRpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for JsonRpcError {}

pub const VERSION: &str = "2.0";

/// A success response, serialised without copying the result.
#[derive(Debug, Serialize)]
pub struct SuccessResponse<'a, T: Serialize> {
    pub jsonrpc: &'static str,
    pub id: &'a RequestId,
    pub result: &'a T,
}

impl<'a, T: Serialize> SuccessResponse<'a, T> {
    pub fn new(id: &'a RequestId, result: &'a T) -> Self {
        SuccessResponse {
            jsonrpc: VERSION,
            id,
            result,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub jsonrpc: String,
    pub id: RequestId,
    pub error: JsonRpcError,
}

impl ErrorResponse {
    pub fn new(id: RequestId, error: JsonRpcError) -> Self {
        ErrorResponse {
            jsonrpc: VERSION.to_string(),
            id,
            error,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A request as a client builds it (`SendMessageRequest`, `GetTaskRequest`, ... are this
/// with the matching `P`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope<P> {
    pub jsonrpc: String,
    pub id: RequestId,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<P>,
}

impl<P> RequestEnvelope<P> {
    pub fn new(id: RequestId, method: Method, params: P) -> Self {
        RequestEnvelope {
            jsonrpc: VERSION.to_string(),
            id,
            method: method.as_str().to_string(),
            params: Some(params),
        }
    }
}

/// A response as a client reads it: success with a `result` of type `R`, or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponseEnvelope<R> {
    Success {
        jsonrpc: String,
        id: RequestId,
        result: R,
    },
    Error(ErrorResponse),
}

macro_rules! methods {
    ($($variant:ident => $name:literal,)*) => {
        /// Every method we answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method { $($variant,)* }

        impl Method {
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            pub fn from_name(name: &str) -> Option<Method> {
                match name { $($name => Some(Method::$variant),)* _ => None }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Method::$variant => $name,)* }
            }
        }
    };
}

methods! {
    MessageSend => "message/send",
    MessageStream => "message/stream",
    TasksGet => "tasks/get",
    TasksCancel => "tasks/cancel",
    TasksResubscribe => "tasks/resubscribe",
    PushConfigSet => "tasks/pushNotificationConfig/set",
    PushConfigGet => "tasks/pushNotificationConfig/get",
    PushConfigList => "tasks/pushNotificationConfig/list",
    PushConfigDelete => "tasks/pushNotificationConfig/delete",
    GetAuthenticatedExtendedCard => "agent/getAuthenticatedExtendedCard",
    TasksList => "tasks/list",
    TasksFeedback => "tasks/feedback",
    ContextsList => "contexts/list",
    ContextsClear => "contexts/clear",
}

/// A request that passed envelope and method validation; params are still raw.
#[derive(Debug)]
pub struct Request<'a> {
    pub id: RequestId,
    pub method: Method,
    pub params: Option<&'a RawValue>,
}

impl Request<'_> {
    /// Deserialises and validates params (→ -32602 on any failure).
    pub fn params<T: DeserializeOwned + Validate>(&self) -> Result<T, JsonRpcError> {
        let raw = self
            .params
            .ok_or_else(|| JsonRpcError::invalid_params("`params` is required"))?;
        if !raw.get().trim_start().starts_with('{') {
            return Err(JsonRpcError::invalid_params("`params` must be an object"));
        }
        let value: T = serde_json::from_str(raw.get()).map_err(JsonRpcError::invalid_params)?;
        value.validate().map_err(JsonRpcError::invalid_params)?;
        Ok(value)
    }

    /// Like [`Request::params`], but absent params mean `T::default()`.
    pub fn params_or_default<T: DeserializeOwned + Validate + Default>(
        &self,
    ) -> Result<T, JsonRpcError> {
        match self.params {
            None => Ok(T::default()),
            Some(_) => self.params(),
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Validates the envelope and method of a request body (A2A 0.3 method names).
pub fn parse_request(body: &[u8]) -> Result<Request<'_>, ErrorResponse> {
    parse_request_with(body, Method::from_name)
}

/// The `id` of a request body, `null` when it has none or cannot be read (to answer a
/// request refused before its method is looked up).
pub fn request_id(body: &[u8]) -> RequestId {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: RequestId,
    }
    serde_json::from_slice::<IdOnly>(body).map_or(RequestId::Null, |r| r.id)
}

/// [`parse_request`] with the method names of a protocol version (`methods` names the
/// method a name stands for).
pub fn parse_request_with(
    body: &[u8],
    methods: fn(&str) -> Option<Method>,
) -> Result<Request<'_>, ErrorResponse> {
    let fail = |id: RequestId, e: JsonRpcError| ErrorResponse::new(id, e);
    // JSON is UTF-8 text: checked once for the whole body (skipped values, such as unknown
    // members, are otherwise never decoded), so the parses below need not check it again.
    let Ok(body) = std::str::from_utf8(body) else {
        return Err(fail(
            RequestId::Null,
            JsonRpcError::parse_error("the body is not UTF-8"),
        ));
    };
    let first = body.bytes().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(body) {
            Err(e) => fail(RequestId::Null, JsonRpcError::parse_error(e)),
            Ok(_) if first == Some(b'[') => fail(
                RequestId::Null,
                JsonRpcError::invalid_request(
                    "batch requests are not supported; send one request object per call",
                ),
            ),
            Ok(_) => fail(
                RequestId::Null,
                JsonRpcError::invalid_request("the request must be a JSON object"),
            ),
        });
    }
    let env: RawEnvelope<'_> = match serde_json::from_str(body) {
        Ok(env) => env,
        // A body that is JSON but not an envelope we can read (a duplicate member, a member
        // name with a lone surrogate such as `"\ud800"`) is an invalid request; only a body
        // that is not JSON to the end is a parse error (a duplicate member is found before
        // any syntax error after it).
        Err(e) if serde_json::from_str::<IgnoredAny>(body).is_ok() => {
            return Err(fail(RequestId::Null, JsonRpcError::invalid_request(e)))
        }
        Err(e) => return Err(fail(RequestId::Null, JsonRpcError::parse_error(e))),
    };
    let id = match env.id {
        None => RequestId::Null,
        Some(raw) => match raw.get().as_bytes().first() {
            Some(b'"') | Some(b'-') | Some(b'0'..=b'9') => serde_json::from_str(raw.get())
                .map_err(|_| {
                    fail(
                        RequestId::Null,
                        JsonRpcError::invalid_request("`id` must be a string, a number or null"),
                    )
                })?,
            _ => {
                return Err(fail(
                    RequestId::Null,
                    JsonRpcError::invalid_request("`id` must be a string, a number or null"),
                ))
            }
        },
    };
    match env.jsonrpc.map(RawValue::get) {
        Some("\"2.0\"") => {}
        _ => {
            return Err(fail(
                id,
                JsonRpcError::invalid_request("`jsonrpc` must be exactly \"2.0\""),
            ))
        }
    }
    let method_name: String = match env.method {
        Some(raw) if raw.get().starts_with('"') => serde_json::from_str(raw.get())
            .map_err(|e| fail(id.clone(), JsonRpcError::invalid_request(e)))?,
        Some(_) => {
            return Err(fail(
                id,
                JsonRpcError::invalid_request("`method` must be a string"),
            ))
        }
        None => {
            return Err(fail(
                id,
                JsonRpcError::invalid_request("`method` is required"),
            ))
        }
    };
    let Some(method) = methods(&method_name) else {
        // A method of the other protocol version: say how to call it.
        let mut error = JsonRpcError::method_not_found(&method_name);
        if Method::from_name(&method_name).is_some() {
            error
                .message
                .push_str("; it is an A2A 0.3 method: send it without `A2A-Version` (or with 0.3)");
        } else if crate::a2a10::methods::from_name(&method_name).is_some() {
            error
                .message
                .push_str("; it is an A2A 1.0 method: send it with `A2A-Version: 1.0`");
        }
        return Err(fail(id, error));
    };
    Ok(Request {
        id,
        method,
        params: env.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err_code(body: &str) -> (i32, RequestId) {
        let e = parse_request(body.as_bytes()).expect_err("should fail");
        (e.error.code, e.id)
    }

    #[test]
    fn validation_order() {
        assert_eq!(err_code("{not json").0, code::PARSE_ERROR);
        assert_eq!(err_code("").0, code::PARSE_ERROR);
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"x"} trailing"#).0,
            code::PARSE_ERROR
        );
        assert_eq!(err_code("[]").0, code::INVALID_REQUEST);
        assert_eq!(
            err_code(r#"[{"jsonrpc":"2.0","id":1,"method":"tasks/get"}]"#).0,
            code::INVALID_REQUEST
        );
        assert_eq!(err_code("42").0, code::INVALID_REQUEST);
        assert_eq!(
            err_code(r#"{"jsonrpc":"1.0","id":7,"method":"tasks/get"}"#),
            (code::INVALID_REQUEST, RequestId::Number(7.into()))
        );
        assert_eq!(
            err_code(r#"{"id":"a","method":"tasks/get"}"#),
            (code::INVALID_REQUEST, RequestId::String("a".into()))
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":"a"}"#),
            (code::INVALID_REQUEST, RequestId::String("a".into()))
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":"a","method":5}"#).0,
            code::INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"tasks/get"}"#),
            (code::INVALID_REQUEST, RequestId::Null)
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":true,"method":"tasks/get"}"#),
            (code::INVALID_REQUEST, RequestId::Null)
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":"q","method":"nope"}"#),
            (code::METHOD_NOT_FOUND, RequestId::String("q".into()))
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","method":"nope"}"#),
            (code::METHOD_NOT_FOUND, RequestId::Null)
        );
        // Malformed params are still a parse error: the body is not JSON.
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{bad}}"#),
            (code::PARSE_ERROR, RequestId::Null)
        );
    }

    #[test]
    fn bodies_that_are_not_json_text_are_parse_errors() {
        // Found by the `jsonrpc` fuzz target: bytes that are not UTF-8 in a string were a
        // parse error in `method`, an invalid request at the top level, and accepted in a
        // member the envelope skips; malformed JSON after a duplicate member was an invalid
        // request.
        for body in [
            &b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"agent/\xc7etAuthenticatedExtendedCard\"}"
                [..],
            b"\"\xff\"",
            b"[\"\xc3\"]",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tasks/get\",\"x\":\"\xff\"}",
            b"\xef\xbb\xbf{}",
            br#"{"id":1,"id":2,"#,
            br#"{"method":"tasks/get","method":"x" garbage"#,
        ] {
            let e = parse_request(body).expect_err("not JSON");
            assert_eq!(
                (e.error.code, e.id),
                (code::PARSE_ERROR, RequestId::Null),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // A body that is JSON but whose envelope cannot be read is an invalid request: a
        // duplicate member, or (found by the fuzz target; it was -32700) a member name with a
        // lone surrogate, which JSON's grammar allows.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tasks/get"}"#,
            r#"{"":"2.0","id":"q","\ud800":"nope"}"#,
            r#"{"jsonrpc":"2.0","id":"q","method":"tasks/get","\udfff":1}"#,
        ] {
            assert_eq!(err_code(body).0, code::INVALID_REQUEST, "{body}");
        }
    }

    #[test]
    fn a_number_id_is_echoed_as_the_number_sent() {
        // Found by the `jsonrpc` fuzz target: read without `float_roundtrip`, this id was one
        // ulp off, and the answer's id, read back by a client, was yet another number.
        let sent = "-1.999999901441688237";
        let body = format!(r#"{{"jsonrpc":"r.0","id":{sent},"method":"tasks/get"}}"#);
        let refusal = parse_request(body.as_bytes()).expect_err("bad version");
        let exact: f64 = sent.parse().expect("a float");
        assert_eq!(
            refusal.id,
            RequestId::Number(serde_json::Number::from_f64(exact).expect("finite"))
        );
        let back: ErrorResponse = serde_json::from_slice(&refusal.to_json()).expect("JSON");
        assert_eq!(back, refusal);
    }

    #[test]
    fn accepts_valid_requests() {
        let r = parse_request(
            br#" {"jsonrpc":"2.0","id":"x-1","method":"tasks/get","params":{"id":"t"}}"#,
        )
        .unwrap();
        assert_eq!(r.method, Method::TasksGet);
        assert_eq!(r.id, RequestId::String("x-1".into()));
        let p: crate::a2a::TaskQueryParams = r.params().unwrap();
        assert_eq!(p.id, "t");
        let r = parse_request(br#"{"jsonrpc":"2.0","id":null,"method":"tasks/get","params":[1]}"#)
            .unwrap();
        assert_eq!(
            r.params::<crate::a2a::TaskQueryParams>().unwrap_err().code,
            code::INVALID_PARAMS
        );
        let r = parse_request(br#"{"jsonrpc":"2.0","id":-1.5,"method":"tasks/get"}"#).unwrap();
        assert_eq!(
            r.params::<crate::a2a::TaskQueryParams>().unwrap_err().code,
            code::INVALID_PARAMS
        );
    }

    #[test]
    fn client_envelopes_round_trip() {
        let req = RequestEnvelope::new(
            RequestId::Number(3.into()),
            Method::TasksGet,
            crate::a2a::TaskQueryParams {
                id: "t".into(),
                history_length: Some(1),
                metadata: None,
            },
        );
        let json = serde_json::to_string(&req).unwrap();
        let parsed = parse_request(json.as_bytes()).unwrap();
        assert_eq!(parsed.method, Method::TasksGet);
        let ok: ResponseEnvelope<serde_json::Value> =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":3,"result":{"x":1}}"#).unwrap();
        assert!(matches!(ok, ResponseEnvelope::Success { .. }));
        let err: ResponseEnvelope<serde_json::Value> = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}"#,
        )
        .unwrap();
        assert!(matches!(err, ResponseEnvelope::Error(e) if e.error.code == code::PARSE_ERROR));
    }

    #[test]
    fn every_method_name_round_trips() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.as_str()), Some(*m));
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_always_answers_a_known_code(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse_request(&body) {
                prop_assert!([code::PARSE_ERROR, code::INVALID_REQUEST, code::METHOD_NOT_FOUND].contains(&e.error.code));
            }
        }

        #[test]
        fn string_ids_are_echoed(id in "[a-zA-Z0-9 _\\-\"\\\\]{0,40}", method in "[a-z/]{1,20}") {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method}).to_string();
            match parse_request(body.as_bytes()) {
                Ok(r) => prop_assert_eq!(r.id, RequestId::String(id)),
                Err(e) => prop_assert_eq!(e.id, RequestId::String(id)),
            }
        }
    }
}
