//! Logging set-up from `logging.*`, and OpenTelemetry traces from `telemetry.*`.
//!
//! - `otel`: the `[telemetry]` section and the OTLP export pipeline it describes.
//! - `export`: the export queue's bound and the count of dropped spans.

mod export;
mod otel;

use std::sync::LazyLock;

use crate::config::{LogFormat, LoggingConfig};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use otel::{OtlpProtocol, Pipeline, TelemetryConfig};

/// Spans dropped by this process's export queue (`bindu_telemetry_spans_dropped_total`).
static DROPPED: LazyLock<export::Dropped> = LazyLock::new(export::Dropped::default);

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `logging.default_level`.
pub fn init(cfg: &LoggingConfig) {
    install(cfg, None);
}

/// [`init`], and when `telemetry.enabled` the OpenTelemetry layer exporting spans over
/// OTLP. Keep the returned [`Telemetry`] until the process ends: dropping it exports what is
/// queued. An error names the setting that stops the exporter from being built.
pub fn init_with_traces(config: &crate::Config) -> Result<Telemetry, String> {
    let pipeline = if config.telemetry.enabled {
        let env = |k: &str| std::env::var(k).ok();
        Some(Pipeline::build(
            &config.telemetry,
            &config.agent,
            &env,
            DROPPED.clone(),
        )?)
    } else {
        None
    };
    install(&config.logging, pipeline.as_ref().map(|p| p.tracer.clone()));
    if pipeline.is_some() {
        bindu_engine::trace::enable();
        if LevelFilter::current() < LevelFilter::INFO {
            tracing::warn!(
                level = %config.logging.default_level,
                "TELEMETRY_ENABLED=true, but spans are recorded at info level and the log level filters them out: no trace will be exported (set LOGGING__DEFAULT_LEVEL=info or a filter that keeps info)"
            );
        }
    }
    Ok(Telemetry { pipeline })
}

fn install(cfg: &LoggingConfig, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.default_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colours only for a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().finish().with(otel_layer(tracer)).try_init(),
        LogFormat::Text => builder.finish().with(otel_layer(tracer)).try_init(),
    };
}

/// The layer that turns spans into OpenTelemetry spans. (The exporter's own requests run
/// without a subscriber, see `export`, so they never trace themselves.)
fn otel_layer<S>(tracer: Option<opentelemetry_sdk::trace::Tracer>) -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
    })
}

/// The process's span export: flushes and stops it when dropped.
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    pipeline: Option<Pipeline>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.pipeline.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.pipeline.take() {
            p.shutdown();
        }
    }
}

/// Registers `bindu_telemetry_spans_dropped_total` (spans this process dropped instead of
/// exporting: queue full, collector unreachable).
pub fn register_metrics(registry: &mut prometheus_client::registry::Registry) {
    registry.register(
        "bindu_telemetry_spans_dropped",
        "Spans dropped instead of exported (export queue full, collector unreachable or refusing)",
        DROPPED.counter(),
    );
}

/// Spans this process dropped instead of exporting.
pub fn spans_dropped() -> u64 {
    DROPPED.get()
}
