//! Runs a process's parts and stops them in order.
//!
//! Every part runs on one [`TaskTracker`]; each stoppable part has a child of one stop
//! token. A graceful shutdown (the `shutdown` token, from a signal or [`crate::Server`])
//! goes stage by stage, all within the shutdown deadline:
//!
//! 1. HTTP: stop accepting, let in-flight requests finish (aborted at the deadline);
//! 2. workers: the bus takes no more commands ([`Bus::close_intake`]), running tasks
//!    finish (interrupted at the deadline);
//! 3. webhook dispatcher: deliver what the finished work announced, then stop;
//! 4. everything else on the tracker (retention, metrics listener) stops with the parent.
//!
//! A part that stops on its own stops the process with its error.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bindu_engine::Bus;
use bindu_workers::dispatcher::DispatcherMetrics;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;

type Part = JoinHandle<Result<(), String>>;

/// The parts of one process, started and not yet stopped.
pub(crate) struct Supervisor {
    tracker: TaskTracker,
    /// Starts the graceful shutdown.
    shutdown: CancellationToken,
    /// Parent of every part's own stop token.
    stop: CancellationToken,
    http: Option<Part>,
    workers: Option<(Part, CancellationToken)>,
    dispatcher: Option<(Part, CancellationToken, DispatcherMetrics)>,
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor {
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            stop: CancellationToken::new(),
            http: None,
            workers: None,
            dispatcher: None,
        }
    }

    /// The token that starts the graceful shutdown.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A token for a part that stops with the process.
    pub fn part_token(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// A background task that stops when its token (from [`Supervisor::part_token`]) fires.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// The HTTP server; it stops accepting when the shutdown starts.
    pub fn http<E: std::fmt::Display>(
        &mut self,
        serve: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let task = async move { serve.await.map_err(|e| e.to_string()) };
        self.http = Some(self.tracker.spawn(task));
    }

    /// The worker pool, stopped by `stop` (from [`Supervisor::part_token`]).
    pub fn workers<E: std::fmt::Display>(
        &mut self,
        stop: CancellationToken,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let task = async move { run.await.map_err(|e| e.to_string()) };
        self.workers = Some((self.tracker.spawn(task), stop));
    }

    /// The webhook dispatcher, stopped by `stop`; `metrics` tell what it still holds.
    pub fn dispatcher<E: std::fmt::Display>(
        &mut self,
        stop: CancellationToken,
        metrics: DispatcherMetrics,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let task = async move { run.await.map_err(|e| e.to_string()) };
        self.dispatcher = Some((self.tracker.spawn(task), stop, metrics));
    }

    /// Runs until the shutdown token fires or a part stops, then stops every part in order
    /// within `deadline`.
    pub fn run(self, bus: Arc<dyn Bus>, deadline: Duration) -> JoinHandle<Result<(), Error>> {
        tokio::spawn(async move {
            let result = self.supervise(bus, deadline).await;
            tracing::info!("stopped");
            result
        })
    }

    async fn supervise(mut self, bus: Arc<dyn Bus>, deadline: Duration) -> Result<(), Error> {
        let stopped = |part: &'static str, r: Result<Result<(), String>, _>| match r {
            Ok(Ok(())) => Error::Stopped {
                part,
                message: "stopped unexpectedly".into(),
            },
            Ok(Err(e)) => Error::Stopped {
                part,
                message: format!("failed: {e}"),
            },
            Err(e) => Error::Stopped {
                part,
                message: format!("panicked: {e}"),
            },
        };
        let early = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            r = wait(self.http.as_mut()) => {
                self.http = None;
                match r {
                    Ok(Ok(())) => None,
                    r => Some(stopped("the HTTP server", r)),
                }
            }
            r = wait(self.workers.as_mut().map(|w| &mut w.0)) => Some(stopped("the worker pool", r)),
            r = wait(self.dispatcher.as_mut().map(|d| &mut d.0)) => Some(stopped("the webhook dispatcher", r)),
        };
        if let Some(e) = early {
            self.shutdown.cancel();
            self.stop.cancel();
            self.tracker.close();
            return Err(e);
        }
        self.shutdown.cancel();
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "shutting down: finishing in-flight work"
        );
        let until = Instant::now() + deadline;
        if let Some(mut http) = self.http.take() {
            match tokio::time::timeout_at(until, &mut http).await {
                Ok(r) => r
                    .map_err(|e| stopped("the HTTP server", Err(e)))?
                    .map_err(|e| stopped("the HTTP server", Ok(Err(e))))?,
                Err(_) => {
                    tracing::warn!("shutdown deadline passed with requests still open");
                    http.abort();
                }
            }
        }
        // No more requests: the workers finish what they hold (an in-process queue's
        // commands included), then stop.
        bus.close_intake().await;
        if let Some((mut workers, stop)) = self.workers.take() {
            if tokio::time::timeout_at(until, &mut workers).await.is_err() {
                tracing::warn!("shutdown deadline passed; interrupting running tasks");
                stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), &mut workers).await;
            }
        }
        // Last: the dispatcher delivers what the work finished above announced (held or
        // parked), within the shutdown deadline. What it has not delivered then stays unacked
        // or parked for the next dispatcher (durable buses and stores); with the memory
        // backends it is lost with the process.
        if let Some((dispatcher, stop, metrics)) = self.dispatcher.take() {
            if !dispatcher.is_finished() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                while (metrics.events_held.get() > 0 || metrics.notifications_parked.get() > 0)
                    && Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            stop.cancel();
            if tokio::time::timeout(Duration::from_secs(15), dispatcher)
                .await
                .is_err()
            {
                tracing::warn!("the webhook dispatcher did not stop in time");
            }
        }
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        Ok(())
    }
}

/// A part's end; never, for a part that is not running.
async fn wait<T>(part: Option<&mut JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match part {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}
