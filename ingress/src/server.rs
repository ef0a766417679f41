//! The HTTP/1.1 connection loop shared by [`crate::serve`] and [`crate::tls::serve_tls`].
//!
//! Each accepted connection is served by hyper's HTTP/1 server directly. `axum::serve`
//! first reads 24 bytes to tell HTTP/2 from HTTP/1 and replays them to hyper, whose read
//! buffer then grows from 8 to 16 KiB on the first request; an open SSE stream keeps its
//! connection, and so that buffer, for its whole life. We serve HTTP/1.1 only, so the
//! probe buys nothing.
//!
//! Slow and idle clients ([`ConnectionLimits`]): at most `max_connections` are open at once
//! (beyond that, new ones wait in the kernel's accept backlog); a connection that has not
//! sent a complete request head within `header_timeout` of opening, or its next one within
//! `idle_timeout` of its previous response, is closed; a request body that takes longer than
//! `body_timeout` to arrive is refused (HTTP 408). A request being answered (a blocking send,
//! an SSE stream) is never timed out here.
//!
//! Shutdown: no connection is accepted once `shutdown` fires; every open connection
//! finishes its in-flight request and closes (idle ones at once); `serve` returns when the
//! last one has.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::serve::Listener;
use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds on what one client connection may hold; `[server]` settings (see the README's
/// security section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A new connection must send a complete request head within this time.
    pub header_timeout: Duration,
    /// A kept-alive connection must send its next request head within this time of its
    /// previous response.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this time of its head.
    pub body_timeout: Duration,
    /// Connections open at once (TLS: once their handshake is done).
    pub max_connections: usize,
    /// TLS handshakes in progress at once.
    pub max_tls_handshakes: usize,
    /// A TLS handshake must complete within this time.
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            // Above the 10,000 concurrent SSE streams the benchmarks hold.
            max_connections: 16_384,
            max_tls_handshakes: 128,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a connection is in its request cycle (what its timer waits for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opened; no request head yet.
    Opened,
    /// A request is being answered: no timer.
    Busy,
    /// Its last response has gone out; waiting for the next request head.
    Idle,
}

/// Serves `router` on the connections `listener` accepts until `shutdown` fires. Requests
/// of a connection carry the extension `extension` makes of its peer address, if any.
pub(crate) async fn serve_http1<L, E>(
    mut listener: L,
    router: Router,
    shutdown: CancellationToken,
    limits: &ConnectionLimits,
    extension: impl Fn(L::Addr) -> Option<E>,
) where
    L: Listener,
    E: Clone + Send + Sync + 'static,
{
    // Routes are built once here; each connection shares them (an `Arc` clone).
    let router = router.with_state(());
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut warned: Option<Instant> = None;
    loop {
        if permits.available_permits() == 0
            && warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            warned = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait until one closes (server.max_connections / BINDU_MAX_CONNECTIONS)"
            );
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (io, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (phase, phase_rx) = watch::channel(Phase::Opened);
        let service = PeerService {
            inner: TowerToHyperService::new(router.clone()),
            extension: extension(addr),
            phase: Arc::new(phase),
            body_timeout: limits.body_timeout,
        };
        // A token of its own: polling a clone of the shared one would lock the mutex every
        // connection shares on each wake-up of each connection.
        let shutdown = shutdown.child_token();
        let limits = limits.clone();
        connections.spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service);
            drive(conn, phase_rx, &limits, shutdown).await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Runs one connection to its end, closing it when it waits too long for a request head.
async fn drive<I, E>(
    conn: hyper::server::conn::http1::Connection<I, PeerService<E>>,
    mut phase: watch::Receiver<Phase>,
    limits: &ConnectionLimits,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: Clone + Send + Sync + 'static,
{
    let mut conn = std::pin::pin!(conn);
    loop {
        let wait = match *phase.borrow_and_update() {
            Phase::Opened => Some(limits.header_timeout),
            Phase::Idle => Some(limits.idle_timeout),
            Phase::Busy => None,
        };
        let timer = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => return log_end(r),
            _ = shutdown.cancelled() => break,
            changed = phase.changed() => {
                if changed.is_err() {
                    // The service is gone: only the connection itself is left to finish.
                    break;
                }
            }
            _ = timer => {
                // No request is being answered (the phase would be `Busy`): closing loses
                // nothing but a partial request head.
                tracing::debug!(wait = ?wait, "closing a connection that sent no request head in time");
                return;
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    log_end(conn.await);
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// The router as a hyper service: adds the connection's extension to each request, bounds
/// the time its body may take, and tells the connection when a request starts and ends.
struct PeerService<E> {
    inner: TowerToHyperService<Router>,
    extension: Option<E>,
    phase: Arc<watch::Sender<Phase>>,
    body_timeout: Duration,
}

impl<E> hyper::service::Service<hyper::Request<Incoming>> for PeerService<E>
where
    E: Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.phase.send_replace(Phase::Busy);
        let mut req: Request = req.map(|b| Body::new(TimedBody::new(b, self.body_timeout)));
        if let Some(e) = &self.extension {
            req.extensions_mut().insert(e.clone());
        }
        let answer = hyper::service::Service::call(&self.inner, req);
        let done = AnsweredGuard(self.phase.clone());
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    _done: done,
                })
            }))
        })
    }
}

/// Marks the connection idle when the response (its body) is finished or dropped.
struct AnsweredGuard(Arc<watch::Sender<Phase>>);

impl Drop for AnsweredGuard {
    fn drop(&mut self) {
        self.0.send_replace(Phase::Idle);
    }
}

/// A response body that carries its connection's [`AnsweredGuard`].
struct GuardedBody {
    inner: Body,
    _done: AnsweredGuard,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a request body gives when it did not arrive within `server.body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (server.body_timeout_secs / BINDU_BODY_TIMEOUT)", .0.as_secs_f64())]
pub(crate) struct BodyTimedOut(pub Duration);

/// A request body that fails with [`BodyTimedOut`] once its time is up.
struct TimedBody {
    inner: Incoming,
    limit: Duration,
    deadline: tokio::time::Instant,
    /// Set on the first wait (a body that is there at once never arms a timer).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        TimedBody {
            inner,
            limit,
            deadline: tokio::time::Instant::now() + limit,
            timer: None,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
