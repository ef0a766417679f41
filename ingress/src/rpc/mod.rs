//! `POST /`: the JSON-RPC endpoint, for A2A 0.3 and 1.0 (the `A2A-Version` of the
//! request, see [`crate::version`]: 0.3 method names and shapes without it, 1.0's with
//! `1.0`). A 1.0 request's params become the internal (0.3) params and its answer is
//! written back in 1.0's form ([`bindu_schemas::a2a10`]): the methods below are the same
//! for both, so authentication, payments, signatures and limits apply identically.
//!
//! Order of checks: body size (HTTP 413) → JSON (-32700) → envelope (-32600) → version
//! (-32009 under 1.0's codes) → method (-32601) → scope (403) → params (-32602; under 1.0,
//! a `tenant` this agent is not too, see [`params::wrong_tenant`]) → for a
//! message, the work queue and the caller's rate (HTTP 429, -32029, see [`crate::limits`])
//! → payment, for a priced method (HTTP 402, see [`crate::payments`]) → the method itself
//! (a message: the caller's open tasks, HTTP 429). Every JSON-RPC outcome is HTTP 200 and
//! echoes the request id (`null` when it could not be read). Once a request is known to be
//! `message/stream` or `tasks/resubscribe`, its error (params, unknown or finished task…) is
//! one SSE event carrying the JSON-RPC error response, and the stream ends.
//!
//! - `messages`: `message/send`, `message/stream`.
//! - `tasks`: `tasks/get|cancel|resubscribe|list|feedback`, `agent/getAuthenticatedExtendedCard`.
//! - `push`: `tasks/pushNotificationConfig/*`.
//! - `contexts`: `contexts/list|clear`.
//! - [`params`]: each method's params read and validated ([`params::Params::of`]).
//! - `reply`: what a method answers with (`Reply`); refusals are [`EdgeError`]s.

mod contexts;
mod messages;
pub mod params;
mod push;
mod reply;
mod tasks;

pub(crate) use reply::{Binding, Call};

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bindu_schemas::jsonrpc::{code, parse_request_with, JsonRpcError, Method, Request};
use tracing::Instrument;

use crate::body::{read_limited, BodyError};
use crate::caller::{Caller, GrantedScopes};
use crate::error::EdgeError;
use crate::payments::Gate;
use crate::state::Ingress;
use crate::version::{Negotiated, Version};
use params::Params;
use reply::Reply;

/// Bodies (and message params) above this many bytes are parsed as CPU-heavy work
/// ([`bindu_engine::cpu::heavy`]): a few milliseconds of parsing would hold up every other
/// request on the thread.
pub(crate) const HEAVY_BODY_BYTES: usize = 256 * 1024;

pub(crate) async fn handle(
    State(app): State<Ingress>,
    caller: Option<axum::Extension<Caller>>,
    scopes: Option<axum::Extension<GrantedScopes>>,
    negotiated: Option<axum::Extension<Negotiated>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &app.inner.metrics;
    let _in_flight = metrics.in_flight();
    let started = Instant::now();
    let limit = app.inner.options.max_body_bytes;
    let bytes = match read_limited(body, &headers, limit).await {
        Ok(b) => b,
        Err(e) => {
            metrics.observe("invalid", Some(code::INVALID_REQUEST), started);
            return match e {
                BodyError::TooLarge { drained } => EdgeError::BodyTooLarge { limit, drained },
                BodyError::Unreadable(why) => EdgeError::BodyUnreadable(why),
                BodyError::TimedOut(limit) => EdgeError::BodyTimedOut { limit },
            }
            .into_response();
        }
    };
    let version = match negotiated {
        None => Version::V03,
        Some(axum::Extension(Negotiated(Ok(v)))) => v,
        Some(axum::Extension(Negotiated(Err(unsupported)))) => {
            metrics.observe(
                "invalid",
                Some(crate::version::code10::VERSION_NOT_SUPPORTED),
                started,
            );
            return EdgeError::rpc(
                bindu_schemas::jsonrpc::request_id(&bytes),
                JsonRpcError::new(
                    crate::version::code10::VERSION_NOT_SUPPORTED,
                    unsupported.message(),
                ),
            )
            .into_response();
        }
    };
    let methods = match version {
        Version::V03 => Method::from_name,
        Version::V10 => bindu_schemas::a2a10::methods::from_name,
    };
    let request = match bindu_engine::cpu::heavy(bytes.len() > HEAVY_BODY_BYTES, || {
        parse_request_with(&bytes, methods)
    }) {
        Ok(r) => r,
        Err(e) => {
            metrics.observe("invalid", Some(e.error.code), started);
            return EdgeError::Rpc(e).into_response();
        }
    };
    let who = Authenticated {
        caller: caller.map(|axum::Extension(Caller(c))| c),
        scopes: scopes.map(|axum::Extension(s)| s),
    };
    run(
        &app,
        request,
        version,
        Binding::JsonRpc,
        who,
        &headers,
        started,
    )
    .await
}

/// Who the authentication layers found is calling.
pub(crate) struct Authenticated {
    /// The caller's DID (or client id), when authentication is on.
    pub caller: Option<String>,
    /// The scopes its token grants, when permissions are enforced.
    pub scopes: Option<GrantedScopes>,
}

/// Runs a request whose envelope and method are valid, from the scope check on (see the
/// order of checks above), and answers it in `version` and `binding`. The JSON-RPC
/// endpoint and the HTTP+JSON routes ([`crate::rest`]) both end here, so every check after
/// authentication is the same for both.
pub(crate) async fn run(
    app: &Ingress,
    request: Request<'_>,
    version: Version,
    binding: Binding,
    who: Authenticated,
    headers: &HeaderMap,
    started: Instant,
) -> Response {
    let metrics = &app.inner.metrics;
    let Authenticated { caller, scopes } = who;
    if let Some(GrantedScopes(granted)) = &scopes {
        let scope = required_scope(request.method);
        if !granted.iter().any(|s| s == scope) {
            metrics.observe(
                request.method.as_str(),
                Some(code::INSUFFICIENT_PERMISSIONS),
                started,
            );
            return EdgeError::MissingScope {
                id: request.id,
                method: request.method,
                scope,
            }
            .into_response();
        }
    }
    if request.method == Method::GetAuthenticatedExtendedCard {
        // The private card is for the callers `agent.allowed_dids` lists (403 otherwise).
        if let Err(refusal) = app.private_card(caller.as_deref(), request.id.clone()) {
            metrics.observe(
                request.method.as_str(),
                Some(code::INSUFFICIENT_PERMISSIONS),
                started,
            );
            return refusal.into_response();
        }
    }
    // SSE reconnects carry the last event id the client saw (a task event sequence number).
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let method = request.method;
    let call = Call {
        id: request.id.clone(),
        version,
        binding,
    };
    let refuse = |mut error: JsonRpcError| -> Response {
        if error.code == code::TOO_MANY_REQUESTS {
            // HTTP 429 and `Retry-After` for every method and binding, streams included:
            // clients and proxies act on the status before they read a body.
            return match binding {
                Binding::Rest => EdgeError::Rest(error).into_response(),
                Binding::JsonRpc => EdgeError::TooManyRequests(
                    bindu_schemas::jsonrpc::ErrorResponse::new(request.id.clone(), error),
                )
                .into_response(),
            };
        }
        error.code = version.code(error.code);
        match binding {
            // An HTTP+JSON client reads the status before it reads a stream.
            Binding::Rest => EdgeError::Rest(error).into_response(),
            // A streaming client reads only SSE: its error is the stream's one event.
            Binding::JsonRpc
                if matches!(method, Method::MessageStream | Method::TasksResubscribe) =>
            {
                crate::sse::error_stream(&call, error)
            }
            Binding::JsonRpc => EdgeError::rpc(request.id.clone(), error).into_response(),
        }
    };
    // Params of a large request are read off the runtime's own work (see `HEAVY_BODY_BYTES`).
    let heavy = request
        .params
        .is_some_and(|p| p.get().len() > HEAVY_BODY_BYTES);
    let tenant = app.inner.options.tenant.as_deref();
    let params =
        match bindu_engine::cpu::heavy(heavy, || Params::of_served(&request, version, tenant)) {
            Ok(p) => p,
            Err(error) => {
                metrics.observe(method.as_str(), Some(error.code), started);
                return refuse(error);
            }
        };
    // Back-pressure and the caller's rate, before payment: a refused message costs nothing.
    if let (Some(limits), Params::MessageSend(_) | Params::MessageStream(_)) =
        (&app.inner.limits, &params)
    {
        if let Err(refusal) = limits.admit(&app.inner.bus, caller.as_deref()).await {
            limits.metrics().refused(&refusal);
            tracing::debug!(
                reason = refusal.reason(),
                caller = caller.as_deref().unwrap_or("-"),
                "message refused: too many requests"
            );
            metrics.observe(method.as_str(), Some(code::TOO_MANY_REQUESTS), started);
            return refuse(refusal.error());
        }
    }
    // A priced method is paid before its task is accepted (the caller is authenticated
    // and the request valid by now).
    let payment = match app.inner.payments.get() {
        Some(payments) => {
            let message = match &params {
                Params::MessageSend(p) | Params::MessageStream(p) => Some(&p.message),
                _ => None,
            };
            // The price is the targeted skill's, when skills have prices of their own.
            let skill = match message {
                Some(m) if payments.protects(method) && !payments.prices().skills.is_empty() => {
                    messages::priced_skill(app, m, caller.as_deref()).await
                }
                _ => None,
            };
            match payments
                .check(method, headers, message, skill.as_deref())
                .await
            {
                Ok(gate) => gate,
                Err(refusal) => {
                    metrics.observe(method.as_str(), Some(PAYMENT_REFUSED), started);
                    return EdgeError::from(refusal).into_response();
                }
            }
        }
        None => Gate::Free,
    };
    // Log lines of the request carry its method and caller, and its task and context once
    // known (`record_task`). While tracing is on the span is also exported: it continues an
    // incoming `traceparent`, and the command it queues carries it to the worker.
    let span = tracing::info_span!(
        "rpc",
        method = method.as_str(),
        caller = caller.as_deref().unwrap_or("-"),
        task_id = tracing::field::Empty,
        context_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        rpc.system = tracing::field::Empty,
        rpc.method = tracing::field::Empty,
    );
    // The exporter's fields only while tracing is on: log lines stay short, and nothing is
    // formatted for them per request otherwise.
    if bindu_engine::trace::enabled() {
        span.record("otel.name", method.as_str());
        span.record("otel.kind", "server");
        span.record(
            "rpc.system",
            match binding {
                Binding::JsonRpc => "jsonrpc",
                Binding::Rest => "http+json",
            },
        );
        span.record("rpc.method", method.as_str());
    }
    bindu_engine::trace::follow_headers(&span, headers);
    let outcome = dispatch(app, &call, params, caller, last_event_id, payment)
        .instrument(span)
        .await;
    metrics.observe(
        method.as_str(),
        outcome.as_ref().err().map(|e| e.code),
        started,
    );
    match outcome {
        Ok(reply) => reply.into_response(),
        Err(error) => refuse(error),
    }
}

/// Names the task (and its context, when known) on the current request's log lines.
fn record_task(task_id: &str, context_id: Option<&str>) {
    let span = tracing::Span::current();
    span.record("task_id", task_id);
    if let Some(c) = context_id {
        span.record("context_id", c);
    }
}

/// The outcome label of a request refused for its payment (HTTP 402 or 503).
const PAYMENT_REFUSED: i32 = 402;

/// The scope a method needs when permissions are enforced: reading needs `agent:read`,
/// everything that creates or changes state needs `agent:write`.
pub fn required_scope(method: Method) -> &'static str {
    match method {
        Method::TasksGet
        | Method::TasksList
        | Method::TasksResubscribe
        | Method::PushConfigGet
        | Method::PushConfigList
        | Method::ContextsList
        | Method::GetAuthenticatedExtendedCard => "agent:read",
        Method::MessageSend
        | Method::MessageStream
        | Method::TasksCancel
        | Method::TasksFeedback
        | Method::PushConfigSet
        | Method::PushConfigDelete
        | Method::ContextsClear => "agent:write",
    }
}

async fn dispatch(
    app: &Ingress,
    id: &Call,
    params: Params,
    caller: Option<String>,
    last_event_id: Option<u64>,
    payment: Gate,
) -> Result<Reply, JsonRpcError> {
    match params {
        Params::MessageSend(params) => {
            messages::send(app, id, params, caller, false, payment).await
        }
        Params::MessageStream(params) => {
            messages::send(app, id, params, caller, true, payment).await
        }
        Params::TasksGet(params) => tasks::get(app, id, params, caller).await,
        Params::TasksCancel(params) => tasks::cancel(app, id, params, caller).await,
        Params::TasksResubscribe(params) => {
            tasks::resubscribe(app, id, params, caller, last_event_id).await
        }
        Params::TasksList(params) => tasks::list(app, id, params, caller).await,
        Params::TasksFeedback(params) => tasks::feedback(app, id, params, caller).await,
        Params::GetAuthenticatedExtendedCard => tasks::extended_card(app, id),
        Params::PushConfigSet(params) => push::set(app, id, params, caller).await,
        Params::PushConfigGet(params) => push::get(app, id, params, caller).await,
        Params::PushConfigList(params) => push::list(app, id, params, caller).await,
        Params::PushConfigDelete(params) => push::delete(app, id, params, caller).await,
        Params::ContextsList(params) => contexts::list(app, id, params, caller).await,
        Params::ContextsClear(params) => contexts::clear(app, id, params, caller).await,
    }
}
