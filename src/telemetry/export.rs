//! The export queue's bound and its count of dropped spans.
//!
//! Ending a span never waits: [`QueueGate`] lets a finished span into the batch processor
//! only while fewer than `OLTP_BATCH_MAX_QUEUE_SIZE` are queued or being exported, and drops
//! it otherwise; [`CountingExporter`] frees their places once an export is over, and counts
//! the spans of a failed export (collector unreachable, refused, timed out) as dropped too.
//! Both go to one counter ([`Dropped`], `bindu_telemetry_spans_dropped_total` on `/metrics`),
//! reported by a warning at most every [`REPORT_EVERY`]. An export runs without a tracing
//! subscriber, so the HTTP and gRPC clients' own spans are never exported in turn.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;

/// The shortest time between two warnings about dropped spans.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Spans dropped since start: a counter shared with `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Dropped(Counter<u64, AtomicU64>);

impl Dropped {
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// The counter to register on `/metrics`.
    pub fn counter(&self) -> Counter<u64, AtomicU64> {
        self.0.clone()
    }
}

/// The bound on spans queued or being exported.
#[derive(Clone, Debug)]
pub struct QueueGate {
    inner: Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    limit: usize,
    queued: AtomicUsize,
    dropped: Dropped,
}

impl QueueGate {
    pub fn new(limit: usize, dropped: Dropped) -> QueueGate {
        QueueGate {
            inner: Arc::new(Gate {
                limit: limit.max(1),
                queued: AtomicUsize::new(0),
                dropped,
            }),
        }
    }

    /// `processor` behind this gate.
    pub fn wrap<P: SpanProcessor>(&self, processor: P) -> Gated<P> {
        Gated {
            gate: self.clone(),
            processor,
        }
    }

    /// Takes a place in the queue; false (and counted) when it is full.
    fn admit(&self) -> bool {
        let g = &self.inner;
        if g.queued.fetch_add(1, Ordering::AcqRel) >= g.limit {
            g.queued.fetch_sub(1, Ordering::AcqRel);
            g.dropped.add(1);
            return false;
        }
        true
    }

    /// Frees the places of `n` spans whose export is over.
    fn release(&self, n: usize) {
        let _ = self
            .inner
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }
}

/// A span processor whose queue is bounded by a [`QueueGate`].
#[derive(Debug)]
pub struct Gated<P> {
    gate: QueueGate,
    processor: P,
}

impl<P: SpanProcessor> SpanProcessor for Gated<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.processor.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Unsampled spans are not exported (the batch processor skips them too).
        if !span.span_context.is_sampled() {
            return;
        }
        if self.gate.admit() {
            self.processor.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.processor.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.processor.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.processor.set_resource(resource);
    }
}

/// An exporter that frees the gate's places and counts the spans of failed exports.
#[derive(Debug)]
pub struct CountingExporter<E> {
    exporter: E,
    gate: QueueGate,
    verbose: bool,
    reported: Mutex<(Instant, u64)>,
}

impl<E> CountingExporter<E> {
    pub fn new(exporter: E, gate: QueueGate, verbose: bool) -> Self {
        CountingExporter {
            exporter,
            gate,
            verbose,
            reported: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Warns about spans dropped since the last warning, at most every [`REPORT_EVERY`].
    fn report(&self) {
        let total = self.gate.inner.dropped.get();
        let mut last = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if total > last.1 && (last.1 == 0 || last.0.elapsed() >= REPORT_EVERY) {
            tracing::warn!(
                dropped = total - last.1,
                total,
                "telemetry: spans dropped (export queue full or collector unreachable); requests are not affected"
            );
            *last = (Instant::now(), total);
        }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let started = Instant::now();
        // The export's own work (HTTP or gRPC client) is not traced or logged: its spans
        // would be exported in turn.
        let result = self
            .exporter
            .export(batch)
            .with_subscriber(NoSubscriber::default())
            .await;
        self.gate.release(n);
        match &result {
            Ok(()) if self.verbose => {
                tracing::info!(
                    spans = n,
                    ms = started.elapsed().as_millis() as u64,
                    "telemetry: spans exported"
                );
            }
            Ok(()) => {}
            Err(e) => {
                self.gate.inner.dropped.add(n as u64);
                if self.verbose {
                    tracing::warn!(spans = n, error = %e, "telemetry: export failed");
                }
            }
        }
        self.report();
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_until_an_export_frees_places() {
        let dropped = Dropped::default();
        let gate = QueueGate::new(2, dropped.clone());
        assert!(gate.admit());
        assert!(gate.admit());
        assert!(!gate.admit());
        assert!(!gate.admit());
        assert_eq!(dropped.get(), 2);
        gate.release(2);
        assert!(gate.admit());
        assert_eq!(dropped.get(), 2);
    }
}
