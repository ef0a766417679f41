//! A2A 1.0's HTTP+JSON binding (spec §11; the paths and verbs of the `google.api.http`
//! annotations of `../shared/spec/a2a-v1.0.proto`), under `server.rest_base_path`:
//!
//! | route | method it runs |
//! |---|---|
//! | `POST /message:send`, `POST /message:stream` (SSE) | `SendMessage`, `SendStreamingMessage` |
//! | `GET /tasks/{id}` (`?historyLength=`) | `GetTask` |
//! | `GET /tasks` (`?contextId=&status=&pageSize=&pageToken=&historyLength=&statusTimestampAfter=&includeArtifacts=`) | `ListTasks` |
//! | `POST /tasks/{id}:cancel` | `CancelTask` |
//! | `GET /tasks/{id}:subscribe` (the proto's verb; `POST` too, as the prose spec has it, bodiless as the SDKs send it) (SSE) | `SubscribeToTask` |
//! | `POST /tasks/{id}/pushNotificationConfigs`, `GET` the same (`?pageSize=&pageToken=`) | `Create…`, `ListTaskPushNotificationConfigs` |
//! | `GET`, `DELETE /tasks/{id}/pushNotificationConfigs/{configId}` | `Get…`, `DeleteTaskPushNotificationConfig` |
//! | `GET /extendedAgentCard` | `GetExtendedAgentCard` |
//!
//! Each route only translates: the path, query and body become the 1.0 params of the same
//! method the JSON-RPC endpoint runs, and [`crate::rpc::run`] does the rest (scopes,
//! params, payment, the method), answering with the bare 1.0 object (no JSON-RPC
//! envelope) and errors as [`error`] says. The routes sit behind the same layers as `POST
//! /` (authentication, DID request signatures over the body as sent, or the request
//! line when there is no body, the `Host` and
//! content-type guard, the x402 extension echo), so nothing is checked differently.
//!
//! A task id is one path segment. The verb follows its last `:`, so an id that holds a `:`
//! is sent percent-encoded (`%3A`); ids are percent-decoded after the split.
//!
//! The binding speaks 1.0 only: `A2A-Version` absent, empty or `1.0` is served (a request
//! here is a 1.0 client's; 0.3 has no HTTP+JSON binding here), anything else gets
//! `VERSION_NOT_SUPPORTED` (HTTP 400).
//!
//! Tenants: with `server.tenant` set, every route is served under `{base}/{tenant}` too,
//! its params then carrying that `tenant`; a path, query or body naming another tenant (or
//! any, without `server.tenant`) is refused with 400 `INVALID_PARAMS`
//! ([`crate::rpc::params::wrong_tenant`]).

pub mod error;

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method as Http, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use bindu_schemas::jsonrpc::{self, JsonRpcError, Method, RequestId};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::body::{read_limited, BodyError};
use crate::caller::{Caller, GrantedScopes};
use crate::error::EdgeError;
use crate::rpc::{Authenticated, Binding};
use crate::state::Ingress;
use crate::version::{self, code10, Negotiated, Version};

/// The binding's routes, after the base path: the templates `http_requests_total` names.
pub const TEMPLATES: [&str; 6] = [
    "/message:send",
    "/message:stream",
    "/tasks",
    "/tasks/{task}",
    "/tasks/{task}/pushNotificationConfigs",
    "/tasks/{task}/pushNotificationConfigs/{config}",
];
/// The extended card's route, after the base path.
pub const CARD_TEMPLATE: &str = "/extendedAgentCard";

/// Checks and normalises `server.rest_base_path`: `""` (the root) or `/segment…` without a
/// trailing slash, each segment of unreserved URL characters.
pub fn base_path(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Err(format!(
            "must start with `/` (got {trimmed:?}), or be empty for the root"
        ));
    };
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    for segment in rest.split('/') {
        if segment.is_empty() || !segment.chars().all(unreserved) || segment.starts_with('.') {
            return Err(format!(
                "{trimmed:?}: each segment must be letters, digits, `-`, `_`, `~` or `.` (not leading), e.g. `/v1` or `/a2a/v1`"
            ));
        }
    }
    Ok(trimmed.to_string())
}

/// Checks `server.tenant`: one path segment of unreserved URL characters (not leading
/// `.`), at most 128, and not `tasks` (`<base>/tasks/…` is `GetTask`'s).
pub fn tenant_name(text: &str) -> Result<(), String> {
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if text.is_empty() || text.len() > 128 || !text.chars().all(unreserved) || text.starts_with('.')
    {
        return Err(format!(
            "{:?}: a tenant is one path segment of at most 128 letters, digits, `-`, `_`, `~` or `.` (not leading), e.g. `acme`",
            text.chars().take(140).collect::<String>()
        ));
    }
    if text == "tasks" {
        return Err("`tasks` cannot be a tenant: `<base>/tasks/…` names tasks".into());
    }
    Ok(())
}

/// The tenant a path under the base path (`rest`, what follows the base) puts before one
/// of the binding's routes (`/acme/tasks/x` → `acme`), if it does.
pub(crate) fn tenant_in_path(rest: &str) -> Option<&str> {
    let (tenant, route) = rest.strip_prefix('/')?.split_once('/')?;
    let first = route.split('/').next().unwrap_or_default();
    let a_route = matches!(
        first,
        "message:send" | "message:stream" | "tasks" | "extendedAgentCard"
    );
    // `tasks/…` after the base is a task, never a tenant.
    (a_route && !tenant.is_empty() && tenant != "tasks").then_some(tenant)
}

/// What a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Send,
    Stream,
    ListTasks,
    /// `/tasks/{id}` with or without a `:verb`.
    Task,
    PushConfigs,
    PushConfig,
    ExtendedCard,
}

/// The binding's routes under `base`, and under `base/tenant` too when the agent is a
/// tenant, each with the methods it takes (anything else gets 405 from axum, recoded by
/// [`layer`]).
pub(crate) fn routes(base: &str, tenant: Option<&str>) -> Vec<(String, MethodRouter<Ingress>)> {
    let mut all = routes_at(base, None);
    if let Some(tenant) = tenant {
        all.extend(routes_at(&format!("{base}/{tenant}"), Some(tenant)));
    }
    all
}

/// The routes under `base` (the base path, then the tenant's segment when `tenant`).
fn routes_at(base: &str, tenant: Option<&str>) -> Vec<(String, MethodRouter<Ingress>)> {
    let at = |route: Route, methods: &'static str| -> MethodRouter<Ingress> {
        let prefix: std::sync::Arc<str> = base.into();
        let tenant: Option<std::sync::Arc<str>> = tenant.map(Into::into);
        let filter = methods
            .split(", ")
            .map(|m| match m {
                "GET" => MethodFilter::GET,
                "POST" => MethodFilter::POST,
                _ => MethodFilter::DELETE,
            })
            .reduce(MethodFilter::or)
            .unwrap_or(MethodFilter::GET);
        on(filter, move |State(app): State<Ingress>, req: Request| {
            let at = At {
                route,
                prefix: prefix.clone(),
                tenant: tenant.clone(),
            };
            serve(at, app, req)
        })
        // Outside the route's layers: answered here in the binding's form.
        .fallback(move || async move { method_not_allowed(methods) })
    };
    let [send, stream, list, task, configs, config] = TEMPLATES;
    vec![
        (format!("{base}{send}"), at(Route::Send, "POST")),
        (format!("{base}{stream}"), at(Route::Stream, "POST")),
        (format!("{base}{list}"), at(Route::ListTasks, "GET")),
        (format!("{base}{task}"), at(Route::Task, "GET, POST")),
        (
            format!("{base}{configs}"),
            at(Route::PushConfigs, "GET, POST"),
        ),
        (
            format!("{base}{config}"),
            at(Route::PushConfig, "GET, DELETE"),
        ),
        (
            format!("{base}{CARD_TEMPLATE}"),
            at(Route::ExtendedCard, "GET"),
        ),
    ]
}

/// The layer outside every HTTP+JSON route: negotiates the version (see the module
/// header), names it in `A2A-Version`, and gives refusals made before the handler the
/// binding's error form ([`error::recode`]).
pub(crate) async fn layer(mut request: Request, next: Next) -> Response {
    // Before anything rewrites it: what a bodiless request's DID signature covers.
    let line = crate::auth::signature::RequestLine::of(&request);
    request.extensions_mut().insert(line);
    let negotiated = Negotiated(version::negotiate_rest(request.headers(), request.uri()));
    request.extensions_mut().insert(negotiated);
    if is_bodiless_subscribe(&request) {
        // The official SDKs subscribe with a bare `POST …:subscribe` (no body, so no
        // `Content-Type`), which the content-type guard would refuse with 415. Without a
        // body it is the proto's `GET …:subscribe` and can do nothing a `GET` cannot (it only
        // opens a stream), so it is served as that; a `POST` that carries a body is still
        // checked as every other.
        *request.method_mut() = Http::GET;
    }
    let mut response = error::recode(next.run(request).await).await;
    response.headers_mut().insert(
        HeaderName::from_static(version::HEADER),
        HeaderValue::from_static("1.0"),
    );
    response
}

/// Whether `request` is a `POST {base}/tasks/{id}:subscribe` without a body and without a
/// `Content-Type`. Only the task route has a last segment ending in `:subscribe` after a
/// `tasks` segment (the other templates end in fixed words, or put a fixed word before
/// their last segment), so the path alone says which route it is.
fn is_bodiless_subscribe(request: &Request) -> bool {
    let headers = request.headers();
    let no_body = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    let mut segments = request.uri().path().rsplit('/');
    let last = segments.next().unwrap_or_default();
    request.method() == Http::POST
        && no_body
        && !headers.contains_key(header::CONTENT_TYPE)
        && last.ends_with(":subscribe")
        && segments.next() == Some("tasks")
}

/// A refusal of this binding: `error` (its code in 1.0's table) as a status body.
fn refuse(error: JsonRpcError) -> Response {
    EdgeError::Rest(error).into_response()
}

/// Which route a request came in on: its kind, the path prefix it is under, and the
/// tenant that prefix names.
struct At {
    route: Route,
    prefix: std::sync::Arc<str>,
    tenant: Option<std::sync::Arc<str>>,
}

async fn serve(at: At, app: Ingress, request: Request) -> Response {
    let metrics = &app.inner.metrics;
    let _in_flight = metrics.in_flight();
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Some(Negotiated(Err(unsupported))) = parts.extensions.get::<Negotiated>() {
        metrics.observe("invalid", Some(code10::VERSION_NOT_SUPPORTED), started);
        return refuse(JsonRpcError::new(
            code10::VERSION_NOT_SUPPORTED,
            format!(
                "{}; the HTTP+JSON binding serves A2A 1.0 only (0.3 clients use JSON-RPC at `/`)",
                unsupported.message()
            ),
        ));
    }
    let call = match plan(&at, &app, &parts, body).await {
        Ok(call) => call,
        Err(refusal) => {
            metrics.observe("invalid", Some(jsonrpc::code::INVALID_REQUEST), started);
            return refusal.into_response();
        }
    };
    let params: &RawValue = match &call.params {
        Params::Body(bytes) => {
            let heavy = bytes.len() > crate::rpc::HEAVY_BODY_BYTES;
            match bindu_engine::cpu::heavy(heavy, || serde_json::from_slice::<&RawValue>(bytes)) {
                Ok(raw) => raw,
                Err(e) => {
                    metrics.observe("invalid", Some(jsonrpc::code::PARSE_ERROR), started);
                    return refuse(JsonRpcError::parse_error(format!(
                        "the body is not JSON: {e}"
                    )));
                }
            }
        }
        Params::Built(raw) => raw,
    };
    if !params.get().trim_start().starts_with('{') {
        metrics.observe("invalid", Some(jsonrpc::code::INVALID_REQUEST), started);
        return refuse(JsonRpcError::invalid_request(format!(
            "the body must be a JSON object (a 1.0 `{}` request)",
            bindu_schemas::a2a10::methods::name(call.method)
        )));
    }
    let request = jsonrpc::Request {
        id: RequestId::Null,
        method: call.method,
        params: Some(params),
    };
    let who = Authenticated {
        caller: parts.extensions.get::<Caller>().map(|c| c.0.clone()),
        scopes: parts.extensions.get::<GrantedScopes>().cloned(),
    };
    crate::rpc::run(
        &app,
        request,
        Version::V10,
        Binding::Rest,
        who,
        &parts.headers,
        started,
    )
    .await
}

/// The 1.0 params of a call: the body as sent, or built from the path, query and body.
enum Params {
    Body(Bytes),
    Built(Box<RawValue>),
}

/// Why a request was refused before its method ran.
enum Refused {
    /// The binding's error (its code in 1.0's table).
    Error(JsonRpcError),
    /// A refusal `POST /` gives too (a body too large or too slow).
    Edge(EdgeError),
    /// The route (or task verb) does not take the request's HTTP method; it takes these.
    MethodNotAllowed(&'static str),
}

impl From<JsonRpcError> for Refused {
    fn from(e: JsonRpcError) -> Refused {
        Refused::Error(e)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Error(e) => refuse(e),
            Refused::Edge(e) => e.into_response(),
            Refused::MethodNotAllowed(allowed) => method_not_allowed(allowed),
        }
    }
}

/// The method a request runs, and its params.
struct Planned {
    method: Method,
    params: Params,
}

/// Reads what `route` needs of the request: its method and 1.0 params.
async fn plan(
    at: &At,
    app: &Ingress,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Planned, Refused> {
    let route = at.route;
    let http = &parts.method;
    let path = parts.uri.path();
    // The raw (still percent-encoded) segments after `{prefix}/tasks/`.
    let segments: Vec<&str> = path
        .strip_prefix(&*at.prefix)
        .and_then(|p| p.strip_prefix("/tasks/"))
        .map(|p| p.split('/').collect())
        .unwrap_or_default();
    let planned = |method: Method, params: Params| Ok(Planned { method, params });
    let built = |method: Method, mut object: Map<String, Value>| {
        if let Some(tenant) = &at.tenant {
            // The path's tenant; a query or body naming another is refused.
            path_param(&mut object, "tenant", tenant.to_string())?;
        }
        // Serialising a map of JSON values cannot fail.
        let raw = serde_json::value::to_raw_value(&object)
            .map_err(|e| JsonRpcError::internal(format!("could not build the params: {e}")))?;
        Ok(Planned {
            method,
            params: Params::Built(raw),
        })
    };
    match route {
        Route::Send => planned(
            Method::MessageSend,
            Params::Body(read(app, parts, body).await?),
        ),
        Route::Stream => planned(
            Method::MessageStream,
            Params::Body(read(app, parts, body).await?),
        ),
        Route::ExtendedCard => built(Method::GetAuthenticatedExtendedCard, query(parts, &[])?),
        Route::ListTasks => {
            let query = query(
                parts,
                &[
                    ("contextId", Kind::Text),
                    ("status", Kind::Text),
                    ("pageSize", Kind::Integer),
                    ("pageToken", Kind::Text),
                    ("historyLength", Kind::Integer),
                    ("statusTimestampAfter", Kind::Text),
                    ("includeArtifacts", Kind::Boolean),
                ],
            )?;
            built(Method::TasksList, query)
        }
        Route::Task => {
            let segment = segments.first().copied().unwrap_or_default();
            let (id, verb) = match segment.rsplit_once(':') {
                Some((id, verb)) => (id, Some(verb)),
                None => (segment, None),
            };
            let (method, allowed) = match verb {
                None => (Method::TasksGet, "GET"),
                Some("cancel") => (Method::TasksCancel, "POST"),
                Some("subscribe") => (Method::TasksResubscribe, "GET, POST"),
                Some(other) => {
                    return Err(Refused::Error(JsonRpcError::new(
                        jsonrpc::code::METHOD_NOT_FOUND,
                        format!(
                            "tasks have no verb {:?}: use `/tasks/{{id}}`, `/tasks/{{id}}:cancel` or `/tasks/{{id}}:subscribe` (a task id holding `:` is sent as `%3A`)",
                            other.chars().take(32).collect::<String>()
                        ),
                    )))
                }
            };
            if !allowed.split(", ").any(|m| m == http.as_str()) {
                return Err(Refused::MethodNotAllowed(allowed));
            }
            let id = decoded(id, "task id")?;
            let mut object = match method {
                Method::TasksGet => query(parts, &[("historyLength", Kind::Integer)])?,
                Method::TasksCancel => object(read(app, parts, body).await?, "CancelTaskRequest")?,
                _ => Map::new(),
            };
            path_param(&mut object, "id", id)?;
            built(method, object)
        }
        Route::PushConfigs => {
            let task = decoded(segments.first().copied().unwrap_or_default(), "task id")?;
            if http == Http::POST {
                let mut object =
                    object(read(app, parts, body).await?, "TaskPushNotificationConfig")?;
                path_param(&mut object, "taskId", task)?;
                built(Method::PushConfigSet, object)
            } else {
                let mut object = query(
                    parts,
                    &[("pageSize", Kind::Integer), ("pageToken", Kind::Text)],
                )?;
                path_param(&mut object, "taskId", task)?;
                built(Method::PushConfigList, object)
            }
        }
        Route::PushConfig => {
            let task = decoded(segments.first().copied().unwrap_or_default(), "task id")?;
            let config = decoded(segments.get(2).copied().unwrap_or_default(), "config id")?;
            let mut object = Map::new();
            path_param(&mut object, "taskId", task)?;
            path_param(&mut object, "id", config)?;
            let method = if http == Http::DELETE {
                Method::PushConfigDelete
            } else {
                Method::PushConfigGet
            };
            built(method, object)
        }
    }
}

/// 404 for a path under the base path that no route serves.
pub(crate) fn no_route(path: &str) -> Response {
    let mut response = refuse(JsonRpcError::new(
        jsonrpc::code::METHOD_NOT_FOUND,
        format!(
            "no A2A 1.0 HTTP+JSON route at {:?}; the routes are …/message:send, …/message:stream, …/tasks, …/tasks/{{id}}[:cancel|:subscribe], …/tasks/{{id}}/pushNotificationConfigs[/{{configId}}] and …/extendedAgentCard under server.rest_base_path",
            path.chars().take(200).collect::<String>()
        ),
    ));
    response.headers_mut().insert(
        HeaderName::from_static(version::HEADER),
        HeaderValue::from_static("1.0"),
    );
    response
}

/// 400 for a route under a tenant this agent is not (`served`; any, when `None`).
pub(crate) fn wrong_tenant(given: &str, served: Option<&str>) -> Response {
    let mut response = refuse(crate::rpc::params::wrong_tenant(given, served));
    response.headers_mut().insert(
        HeaderName::from_static(version::HEADER),
        HeaderValue::from_static("1.0"),
    );
    response
}

/// 405 for a route (or a task verb) that does not take the request's HTTP method.
fn method_not_allowed(allowed: &'static str) -> Response {
    let mut response = error::response_with(
        StatusCode::METHOD_NOT_ALLOWED,
        &JsonRpcError::new(
            jsonrpc::code::METHOD_NOT_FOUND,
            format!("this route does not take that HTTP method; it takes {allowed}"),
        ),
    );
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
    headers.insert(
        HeaderName::from_static(version::HEADER),
        HeaderValue::from_static("1.0"),
    );
    response
}

/// A path segment, percent-decoded; a blank or undecodable one is refused (400).
fn decoded(raw: &str, what: &str) -> Result<String, JsonRpcError> {
    let text = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| {
            JsonRpcError::invalid_params(format!(
                "the {what} in the path is not UTF-8 once percent-decoded"
            ))
        })?;
    if text.trim().is_empty() {
        return Err(JsonRpcError::invalid_params(format!(
            "the path names no {what}"
        )));
    }
    Ok(text.into_owned())
}

/// Sets `field` to the path's `value`; a body that names another one is refused (400).
fn path_param(
    object: &mut Map<String, Value>,
    field: &str,
    value: String,
) -> Result<(), JsonRpcError> {
    match object.get(field) {
        Some(Value::String(given)) if *given != value && !given.is_empty() => {
            Err(JsonRpcError::invalid_params(format!(
                "`{field}` in the body ({given:?}) is not the one in the path ({value:?})"
            )))
        }
        _ => {
            object.insert(field.into(), Value::String(value));
            Ok(())
        }
    }
}

/// The body, within `server.max_body_bytes` (the refusals are `POST /`'s).
async fn read(
    app: &Ingress,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Bytes, Refused> {
    let limit = app.inner.options.max_body_bytes;
    read_limited(body, &parts.headers, limit)
        .await
        .map_err(|e| {
            Refused::Edge(match e {
                BodyError::TooLarge { drained } => EdgeError::BodyTooLarge { limit, drained },
                BodyError::Unreadable(why) => EdgeError::BodyUnreadable(why),
                BodyError::TimedOut(limit) => EdgeError::BodyTimedOut { limit },
            })
        })
}

/// A body that must be a JSON object (an empty one is `{}`).
fn object(bytes: Bytes, what: &str) -> Result<Map<String, Value>, JsonRpcError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JsonRpcError::invalid_request(format!(
            "the body must be a JSON object (a 1.0 `{what}`)"
        ))),
        Err(e) => Err(JsonRpcError::parse_error(format!(
            "the body is not JSON: {e}"
        ))),
    }
}

/// The type of a query parameter (§11.5: strings as sent, numbers in decimal, booleans
/// `true`/`false`).
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
}

/// The query parameters of a request as a params object: each of `known` (and `tenant`,
/// every request's) at most once; `A2A-Version` passes; any other is refused (400), so a
/// misspelt filter is never silently ignored.
fn query(
    parts: &axum::http::request::Parts,
    known: &[(&'static str, Kind)],
) -> Result<Map<String, Value>, JsonRpcError> {
    let mut object = Map::new();
    if parts.uri.query().is_none() {
        return Ok(object);
    }
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map_err(|e| JsonRpcError::invalid_params(format!("the query string cannot be read: {e}")))?
        .0;
    for (name, value) in pairs {
        if name.eq_ignore_ascii_case(version::HEADER) {
            continue;
        }
        let tenant = [("tenant", Kind::Text)];
        let Some((field, kind)) = known.iter().chain(&tenant).find(|(k, _)| *k == name) else {
            let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
            return Err(JsonRpcError::invalid_params(format!(
                "unknown query parameter {:?}; this route takes {}",
                name.chars().take(64).collect::<String>(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        let value = match kind {
            Kind::Text => Some(Value::String(value)),
            Kind::Integer => value.trim().parse::<i64>().ok().map(Value::from),
            Kind::Boolean => match value.trim() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
        };
        let Some(value) = value else {
            let expected = match kind {
                Kind::Integer => "an integer",
                Kind::Boolean => "`true` or `false`",
                Kind::Text => "text",
            };
            return Err(JsonRpcError::invalid_params(format!(
                "query parameter `{field}` must be {expected}"
            )));
        };
        if object.insert((*field).to_string(), value).is_some() {
            return Err(JsonRpcError::invalid_params(format!(
                "query parameter `{field}` is given more than once"
            )));
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_normalised_and_odd_ones_refused() {
        assert_eq!(base_path("").unwrap(), "");
        assert_eq!(base_path("/").unwrap(), "");
        assert_eq!(base_path(" /v1/ ").unwrap(), "/v1");
        assert_eq!(base_path("/a2a/v1").unwrap(), "/a2a/v1");
        for bad in ["v1", "/v1//x", "/{id}", "/a:b", "/..", "/a b", "/*"] {
            assert!(base_path(bad).is_err(), "{bad}");
        }
    }
}
