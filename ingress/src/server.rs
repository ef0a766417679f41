//! The HTTP/1.1 connection loop shared by [`crate::serve`] and [`crate::tls::serve_tls`].
//!
//! Each accepted connection is served by hyper's HTTP/1 server directly. `axum::serve`
//! first reads 24 bytes to tell HTTP/2 from HTTP/1 and replays them to hyper, whose read
//! buffer then grows from 8 to 16 KiB on the first request; an open SSE stream keeps its
//! connection, and so that buffer, for its whole life. We serve HTTP/1.1 only, so the
//! probe buys nothing.
//!
//! Shutdown: no connection is accepted once `shutdown` fires; every open connection
//! finishes its in-flight request and closes (idle ones at once); `serve` returns when the
//! last one has.

use std::convert::Infallible;

use axum::extract::Request;
use axum::response::Response;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `router` on the connections `listener` accepts until `shutdown` fires. Requests
/// of a connection carry the extension `extension` makes of its peer address, if any.
pub(crate) async fn serve_http1<L, E>(
    mut listener: L,
    router: Router,
    shutdown: CancellationToken,
    extension: impl Fn(L::Addr) -> Option<E>,
) where
    L: Listener,
    E: Clone + Send + Sync + 'static,
{
    // Routes are built once here; each connection shares them (an `Arc` clone).
    let router = router.with_state(());
    let connections = TaskTracker::new();
    loop {
        let (io, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let service = PeerService {
            inner: TowerToHyperService::new(router.clone()),
            extension: extension(addr),
        };
        // A token of its own: polling a clone of the shared one would lock the mutex every
        // connection shares on each wake-up of each connection.
        let shutdown = shutdown.child_token();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => return log_end(r),
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            log_end(conn.await);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// The router as a hyper service, adding the connection's extension to each request.
struct PeerService<E> {
    inner: TowerToHyperService<Router>,
    extension: Option<E>,
}

impl<E> hyper::service::Service<Request<Incoming>> for PeerService<E>
where
    E: Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TowerToHyperServiceFuture<Router, Request<Incoming>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(e) = &self.extension {
            req.extensions_mut().insert(e.clone());
        }
        self.inner.call(req)
    }
}
