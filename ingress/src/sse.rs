//! Task event streams over SSE (`message/stream`, `tasks/resubscribe`).
//!
//! Each event is one compact `data:` line holding a JSON-RPC response with the request id
//! (under 1.0 its result is a `StreamResponse`: `{"task": …}`, `{"statusUpdate": …}`, …;
//! over HTTP+JSON the `StreamResponse` alone, and an error its `google.rpc.Status` body);
//! its SSE `id:` is the task event's sequence number. The first event is the Task, then the
//! status and artifact updates in order; after the update with `final: true` the stream
//! ends. A client that goes away only drops its subscription: the task keeps running.

use std::convert::Infallible;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bindu_engine::bus::{BusError, EventStream};
use bindu_engine::store::Access;
use bindu_schemas::a2a10::StreamResponse;
use bindu_schemas::bus::EventBody;
use bindu_schemas::jsonrpc::{ErrorResponse, JsonRpcError, SuccessResponse};
use bindu_schemas::Task;
use futures::StreamExt;
use serde::Serialize;

use crate::rpc::{Binding, Call};
use crate::state::Ingress;
use crate::version::Version;

struct StreamState {
    app: Ingress,
    call: Call,
    task_id: String,
    first: Option<Task>,
    /// Highest sequence number already sent (or covered by a snapshot).
    after: u64,
    events: EventStream,
    trim: Option<u32>,
    done: bool,
    /// An event came truncated (or was missed): the task is sent as stored at the end.
    resync: bool,
    /// Counts the stream in `bindu_sse_streams_open` until it ends or is dropped.
    _open: crate::metrics::InFlight,
}

/// What one event carries.
enum Streamed<'a> {
    Task(&'a Task),
    Event(&'a EventBody),
}

fn data_event(call: &Call, seq: u64, what: Streamed<'_>) -> Event {
    fn json<T: Serialize>(call: &Call, result: &T) -> String {
        match call.binding {
            Binding::JsonRpc => serde_json::to_string(&SuccessResponse::new(&call.id, result)),
            Binding::Rest => serde_json::to_string(result),
        }
        .unwrap_or_else(|e| error_json(call, JsonRpcError::internal(e)))
    }
    let json = match (call.version, what) {
        (Version::V03, Streamed::Task(t)) => json(call, t),
        (Version::V03, Streamed::Event(e)) => json(call, e),
        (Version::V10, Streamed::Task(t)) => json(call, &StreamResponse::Task(t.clone().into())),
        (Version::V10, Streamed::Event(EventBody::Status(e))) => {
            json(call, &StreamResponse::StatusUpdate(e.clone().into()))
        }
        (Version::V10, Streamed::Event(EventBody::Artifact(e))) => {
            json(call, &StreamResponse::ArtifactUpdate(e.clone().into()))
        }
    };
    Event::default().id(seq.to_string()).data(json)
}

/// The error response to `call` (JSON-RPC, or HTTP+JSON's status body), with the code of
/// its version.
fn error_json(call: &Call, mut e: JsonRpcError) -> String {
    e.code = call.version.code(e.code);
    let body = match call.binding {
        Binding::JsonRpc => ErrorResponse::new(call.id.clone(), e).to_json(),
        Binding::Rest => crate::rest::error::body(&e, None).1,
    };
    String::from_utf8(body).unwrap_or_default()
}

impl StreamState {
    /// The task as stored, as one event, when the store holds it at `at_least` or later.
    async fn snapshot(&mut self, at_least: u64) -> Result<Option<Event>, Event> {
        match self
            .app
            .inner
            .store
            .get(&self.task_id, Access::Internal)
            .await
        {
            Ok(snap) if snap.version >= at_least && snap.version > self.after => {
                self.after = snap.version;
                self.done = snap.task.status.state.is_final();
                let mut task = snap.task;
                task.trim_history(self.trim);
                Ok(Some(data_event(
                    &self.call,
                    snap.version,
                    Streamed::Task(&task),
                )))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                self.done = true;
                Err(Event::default().data(error_json(&self.call, crate::error::store_error(e))))
            }
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        if let Some(task) = self.first.take() {
            // A task that has ended gets no more events (a resubscribe with Last-Event-ID 0).
            self.done = task.status.state.is_terminal();
            return Some(data_event(&self.call, self.after, Streamed::Task(&task)));
        }
        loop {
            match self.events.next().await {
                Some(Ok(e)) if e.seq <= self.after => continue,
                Some(Ok(e)) if e.truncated || (self.resync && e.is_final()) => {
                    // Too large for the bus: send the task as stored instead. A chunk the
                    // store does not hold yet comes with the task once the run has ended.
                    self.resync = true;
                    match self.snapshot(e.seq).await {
                        Ok(Some(event)) => return Some(event),
                        Ok(None) => continue,
                        Err(event) => return Some(event),
                    }
                }
                Some(Ok(e)) => {
                    self.after = e.seq;
                    self.done = e.is_final();
                    return Some(data_event(&self.call, e.seq, Streamed::Event(&e.event)));
                }
                Some(Err(BusError::Lagged(missed))) => {
                    // Too slow to keep up: resynchronise from a fresh snapshot.
                    tracing::debug!(task_id = %self.task_id, missed, "stream lagged; sending a snapshot");
                    self.resync = true;
                    match self.snapshot(self.after + 1).await {
                        Ok(Some(event)) => return Some(event),
                        Ok(None) => continue,
                        Err(event) => return Some(event),
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(
                        Event::default().data(error_json(&self.call, crate::error::bus_error(e))),
                    );
                }
                None => return None,
            }
        }
    }
}

/// The answer to a streaming call that failed: one event carrying the JSON-RPC error
/// response, then the end of the stream (streaming clients read nothing but SSE).
pub(crate) fn error_stream(call: &Call, error: JsonRpcError) -> Response {
    let event = Event::default().data(error_json(call, error));
    let mut resp = Sse::new(futures::stream::once(
        async move { Ok::<_, Infallible>(event) },
    ))
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An SSE response: `snapshot` first (its sequence number is `version`), then every event
/// of `events` after it until the final one.
pub(crate) fn task_stream(
    app: &Ingress,
    call: Call,
    snapshot: Task,
    version: u64,
    events: EventStream,
    trim: Option<u32>,
) -> Response {
    let task_id = snapshot.id.clone();
    resume_stream(app, call, task_id, Some(snapshot), version, events, trim)
}

/// Like [`task_stream`], but without a snapshot when the client already has the events up
/// to `version` (SSE `Last-Event-ID`).
pub(crate) fn resume_stream(
    app: &Ingress,
    call: Call,
    task_id: String,
    snapshot: Option<Task>,
    version: u64,
    events: EventStream,
    trim: Option<u32>,
) -> Response {
    let state = StreamState {
        app: app.clone(),
        call,
        task_id,
        first: snapshot,
        after: version,
        events,
        trim,
        done: false,
        resync: false,
        _open: app.inner.metrics.sse_opened(),
    };
    // Streams end when the ingress stops (their events carry ids: the client resubscribes on
    // another replica), but not before the first event: it names the task, and without it
    // the client of a just-accepted message could not resubscribe at all.
    let shutdown = app.inner.shutdown.clone();
    let stream = futures::stream::unfold((state, shutdown), |(mut st, shutdown)| async move {
        let event = if st.first.is_some() {
            st.next_event().await
        } else {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => None,
                e = st.next_event() => e,
            }
        };
        event.map(|e| (Ok::<_, Infallible>(e), (st, shutdown)))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(app.inner.options.sse_keepalive))
        .into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
