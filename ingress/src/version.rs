//! A2A protocol versions on one endpoint (A2A 1.0 §3.6): which version a request speaks,
//! the version every answer names, and each version's error codes.
//!
//! The version is the `A2A-Version` header, else the `A2A-Version` query parameter, as
//! `Major.Minor`; absent or empty means 0.3 (what clients that predate the header speak).
//! [`layer`] reads it for each request of a versioned route, stores it as a [`Negotiated`]
//! extension, sets the `A2A-Version` response header to the version served, and gives
//! refusals made before a handler ran (authentication, scopes) the codes of 1.0.
//!
//! Error codes differ between the versions; handlers raise the internal (0.3) codes and
//! [`Version::code`] translates them:
//!
//! | error | 0.3 | 1.0 |
//! |---|---|---|
//! | task not found / not cancelable / push not supported / unsupported operation / content type / invalid agent response / extended card not configured | -32001 … -32007 | the same |
//! | task is terminal, cannot take a message | -32008 (Bindu) | -32004 `UnsupportedOperationError` |
//! | extension support required | — | -32008 |
//! | version not supported | — | -32009 `VersionNotSupportedError` |
//! | authentication required / invalid token / token expired / invalid token signature / insufficient permissions | -32009 / -32010 / -32011 / -32012 / -32013 (Bindu) | -32041 / -32042 / -32043 / -32044 / -32045 (Bindu) |
//! | context not found / skill not found | -32020 / -32030 (Bindu) | the same |
//! | too many requests (HTTP 429, see [`crate::limits`]) | -32029 (Bindu) | the same |

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bindu_schemas::jsonrpc::{code, ErrorResponse};

/// The request and response header naming the protocol version (and the query parameter).
pub const HEADER: &str = "a2a-version";
const QUERY: &str = "A2A-Version";

/// The versions this agent serves, oldest first.
pub const SUPPORTED: [&str; 2] = ["0.3", "1.0"];

/// A protocol version this agent serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// A2A 0.3 (no `A2A-Version`, or `0.3`).
    #[default]
    V03,
    /// A2A 1.0.
    V10,
}

/// 1.0 error codes of their own.
pub mod code10 {
    pub const UNSUPPORTED_OPERATION: i32 = -32004;
    pub const EXTENSION_SUPPORT_REQUIRED: i32 = -32008;
    pub const VERSION_NOT_SUPPORTED: i32 = -32009;
    pub const AUTHENTICATION_REQUIRED: i32 = -32041;
    pub const INVALID_TOKEN: i32 = -32042;
    pub const TOKEN_EXPIRED: i32 = -32043;
    pub const INVALID_TOKEN_SIGNATURE: i32 = -32044;
    pub const INSUFFICIENT_PERMISSIONS: i32 = -32045;
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V03 => "0.3",
            Version::V10 => "1.0",
        }
    }

    /// This version's code for an internal (0.3) error code.
    pub fn code(self, internal: i32) -> i32 {
        match (self, internal) {
            (Version::V03, c) => c,
            (Version::V10, code::TASK_IMMUTABLE) => code10::UNSUPPORTED_OPERATION,
            (Version::V10, code::AUTHENTICATION_REQUIRED) => code10::AUTHENTICATION_REQUIRED,
            (Version::V10, code::INVALID_TOKEN) => code10::INVALID_TOKEN,
            (Version::V10, code::TOKEN_EXPIRED) => code10::TOKEN_EXPIRED,
            (Version::V10, code::INVALID_TOKEN_SIGNATURE) => code10::INVALID_TOKEN_SIGNATURE,
            (Version::V10, code::INSUFFICIENT_PERMISSIONS) => code10::INSUFFICIENT_PERMISSIONS,
            (Version::V10, c) => c,
        }
    }

    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// A version this agent does not serve (what the client asked for, as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    /// The sentence a refusal carries.
    pub fn message(&self) -> String {
        // What was asked, quoted up to a few characters: a header of kilobytes is not
        // echoed back whole.
        const SHOWN: usize = 16;
        let asked: String = self.0.chars().take(SHOWN).collect();
        let more = if self.0.chars().count() > SHOWN {
            "…"
        } else {
            ""
        };
        format!(
            "A2A protocol version {asked:?}{more} is not supported; this agent serves {} (send `A2A-Version: Major.Minor`, or none for 0.3)",
            SUPPORTED.join(" and ")
        )
    }
}

/// What [`layer`] found a request asks for.
#[derive(Debug, Clone)]
pub struct Negotiated(pub Result<Version, Unsupported>);

impl Negotiated {
    /// The version to answer in: the one asked for, or 1.0 (whose error says why) for
    /// one this agent does not serve.
    pub fn answer_in(&self) -> Version {
        self.0.as_ref().map_or(Version::V10, |v| *v)
    }
}

/// The version a request asks for: the header, else the query parameter.
pub fn negotiate(headers: &HeaderMap, uri: &Uri) -> Result<Version, Unsupported> {
    let asked = match headers.get(HEADER) {
        Some(v) => match v.to_str() {
            Ok(v) => v.trim().to_string(),
            Err(_) => return Err(Unsupported(String::from_utf8_lossy(v.as_bytes()).into())),
        },
        None => query_version(uri).unwrap_or_default(),
    };
    parse(&asked)
}

/// The version an HTTP+JSON request asks for ([`crate::rest`]): that binding serves 1.0
/// only, so no version (or an empty one) is 1.0 there, and 0.3 is not served.
pub fn negotiate_rest(headers: &HeaderMap, uri: &Uri) -> Result<Version, Unsupported> {
    match headers.get(HEADER) {
        Some(v) => match v.to_str() {
            Ok(v) if v.trim().is_empty() || v.trim() == "1.0" => Ok(Version::V10),
            Ok(v) => Err(Unsupported(v.trim().to_string())),
            Err(_) => Err(Unsupported(String::from_utf8_lossy(v.as_bytes()).into())),
        },
        None => match query_version(uri).unwrap_or_default().as_str() {
            "" | "1.0" => Ok(Version::V10),
            other => Err(Unsupported(other.to_string())),
        },
    }
}

fn query_version(uri: &Uri) -> Option<String> {
    uri.query()?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(QUERY))
        .map(|(_, v)| v.trim().to_string())
}

/// `Major.Minor` (an empty value is 0.3).
pub fn parse(asked: &str) -> Result<Version, Unsupported> {
    match asked {
        "" | "0.3" => Ok(Version::V03),
        "1.0" => Ok(Version::V10),
        other => Err(Unsupported(other.to_string())),
    }
}

/// Negotiates the version of each request of a versioned route (see the module header).
pub async fn layer(mut request: Request, next: Next) -> Response {
    let negotiated = Negotiated(negotiate(request.headers(), request.uri()));
    let version = negotiated.answer_in();
    request.extensions_mut().insert(negotiated);
    let mut response = next.run(request).await;
    if version == Version::V10 && !response.status().is_success() {
        response = recode(response).await;
    }
    response
        .headers_mut()
        .insert(HeaderName::from_static(HEADER), version.header_value());
    response
}

/// Largest refusal body [`recode`] reads.
const MAX_REFUSAL_BYTES: usize = 64 * 1024;

/// A JSON-RPC refusal made before the handler ran (authentication, scopes), with its code
/// in 1.0's table. Other bodies pass unchanged.
async fn recode(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REFUSAL_BYTES).await else {
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let bytes = match serde_json::from_slice::<ErrorResponse>(&bytes) {
        Ok(mut e) => {
            e.error.code = Version::V10.code(e.error.code);
            bytes::Bytes::from(e.to_json())
        }
        Err(_) => bytes,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(header: Option<&str>, uri: &str) -> Result<Version, Unsupported> {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert(HEADER, HeaderValue::from_str(h).unwrap());
        }
        negotiate(&headers, &uri.parse().unwrap())
    }

    #[test]
    fn the_header_then_the_query_parameter_name_the_version() {
        assert_eq!(asked(None, "/"), Ok(Version::V03));
        assert_eq!(asked(Some(""), "/"), Ok(Version::V03), "empty means 0.3");
        assert_eq!(asked(Some(" 1.0 "), "/"), Ok(Version::V10));
        assert_eq!(asked(Some("0.3"), "/?A2A-Version=1.0"), Ok(Version::V03));
        assert_eq!(asked(None, "/?A2A-Version=1.0"), Ok(Version::V10));
        assert_eq!(
            asked(None, "/tasks?pageSize=2&a2a-version=1.0"),
            Ok(Version::V10)
        );
        assert_eq!(asked(None, "/?A2A-Version="), Ok(Version::V03));
        for bad in ["1", "1.0.1", "2.0", "0.2", "1.1", "v1.0"] {
            assert_eq!(asked(Some(bad), "/"), Err(Unsupported(bad.into())), "{bad}");
        }
        assert!(asked(None, "/?A2A-Version=0.9").is_err());
    }

    #[test]
    fn http_json_requests_speak_1_0_whether_or_not_they_say_so() {
        let rest = |header: Option<&str>, uri: &str| {
            let mut headers = HeaderMap::new();
            if let Some(h) = header {
                headers.insert(HEADER, HeaderValue::from_str(h).unwrap());
            }
            negotiate_rest(&headers, &uri.parse().unwrap())
        };
        assert_eq!(rest(None, "/v1/tasks"), Ok(Version::V10));
        assert_eq!(rest(Some(" "), "/v1/tasks"), Ok(Version::V10));
        assert_eq!(rest(Some("1.0"), "/v1/tasks"), Ok(Version::V10));
        assert_eq!(rest(None, "/v1/tasks?A2A-Version=1.0"), Ok(Version::V10));
        assert!(rest(Some("0.3"), "/v1/tasks").is_err());
        assert!(rest(None, "/v1/tasks?a2a-version=2.0").is_err());
    }

    #[test]
    fn each_version_answers_with_its_own_codes() {
        assert_eq!(
            Version::V03.code(code::TASK_IMMUTABLE),
            code::TASK_IMMUTABLE
        );
        assert_eq!(
            Version::V10.code(code::TASK_IMMUTABLE),
            code10::UNSUPPORTED_OPERATION
        );
        assert_eq!(
            Version::V10.code(code::AUTHENTICATION_REQUIRED),
            code10::AUTHENTICATION_REQUIRED
        );
        // No internal code becomes one that means something else in 1.0.
        for c in -32099..=-32000 {
            let v10 = Version::V10.code(c);
            assert_ne!(v10, code10::VERSION_NOT_SUPPORTED, "{c}");
            assert_ne!(v10, code10::EXTENSION_SUPPORT_REQUIRED, "{c}");
        }
        assert_eq!(
            Version::V10.code(code::TASK_NOT_FOUND),
            code::TASK_NOT_FOUND
        );
    }

    #[test]
    fn a_long_unsupported_version_is_quoted_shortened() {
        let message = Unsupported("9".repeat(6000)).message();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("\"9999999999999999\"…"), "{message}");
        assert!(Unsupported("2.0".into())
            .message()
            .contains("\"2.0\" is not"));
    }
}
