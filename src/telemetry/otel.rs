//! OpenTelemetry traces over OTLP (`[telemetry]`, Bindu's `TELEMETRY_ENABLED` and `OLTP_*`
//! settings, the standard `OTEL_*` variables beneath them).
//!
//! Precedence for each setting: Bindu's key (file, `OLTP_*` variable, flag) > the standard
//! `OTEL_*` variable > the default:
//! - protocol: `OLTP_PROTOCOL` > `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` >
//!   `OTEL_EXPORTER_OTLP_PROTOCOL` > `http/protobuf`;
//! - endpoint: `OLTP_ENDPOINT` (an HTTP URL without a path gets `/v1/traces`) >
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` > `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces` over
//!   HTTP) > `http://localhost:4318/v1/traces` (gRPC: `http://localhost:4317`), the last three
//!   resolved by `opentelemetry-otlp`, which also adds `OTEL_EXPORTER_OTLP(_TRACES)_HEADERS`;
//! - service name: `OLTP_SERVICE_NAME` > `OTEL_SERVICE_NAME` > the agent's name; version:
//!   `OLTP_SERVICE_VERSION` > the agent's version; `OTEL_RESOURCE_ATTRIBUTES` adds attributes;
//! - sampling: `OLTP_SAMPLING_RATIO` (parent-based: a sampled incoming `traceparent` is always
//!   followed) > `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` > every trace.
//!
//! Spans leave through [`super::export`]'s bounded queue: a full queue or an unreachable
//! collector drops spans (counted), never slows a request.

use std::collections::HashMap;
use std::time::Duration;

use bindu_engine::config::Section;
use bindu_engine::config::{check, fields, http_url, none_if_blank, within, EnvLookup, Invalid};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use secrecy::{ExposeSecret, SecretString};

use super::export::{CountingExporter, Dropped, QueueGate};

bindu_engine::kind! {
    /// How spans travel to the collector (`OLTP_PROTOCOL`).
    pub enum OtlpProtocol("protocol") {
        HttpProtobuf = "http/protobuf" | "http",
        Grpc = "grpc",
    }
}

bindu_engine::section! {
    /// `[telemetry]`: OpenTelemetry traces (Bindu's `OLTP_*` spelling).
    pub struct TelemetryConfig in "telemetry" {
        pub enabled: bool = false, env "TELEMETRY_ENABLED";
        /// Default: the standard `OTEL_EXPORTER_OTLP_*` variables, else a local collector.
        pub endpoint: Option<String> = None, env "OLTP_ENDPOINT";
        #[serde(with = "fields::opt_parsed")]
        pub protocol: Option<OtlpProtocol> = None, env "OLTP_PROTOCOL";
        pub service_name: Option<String> = None, env "OLTP_SERVICE_NAME";
        pub service_version: Option<String> = None, env "OLTP_SERVICE_VERSION";
        pub deployment_environment: Option<String> = None, env "OLTP_DEPLOYMENT_ENVIRONMENT";
        /// A JSON object of header names and values sent with every export.
        #[serde(with = "fields::secret")]
        pub headers: Option<SecretString> = None, secret "OLTP_HEADERS";
        pub verbose_logging: bool = false, env "OLTP_VERBOSE_LOGGING";
        #[serde(with = "fields::opt_parsed")]
        pub sampling_ratio: Option<f64> = None, env "OLTP_SAMPLING_RATIO";
        pub batch_max_queue_size: usize = 2048, env "OLTP_BATCH_MAX_QUEUE_SIZE";
        pub batch_max_export_batch_size: usize = 512, env "OLTP_BATCH_MAX_EXPORT_BATCH_SIZE";
        #[serde(with = "fields::millis")]
        pub batch_schedule_delay: Duration = Duration::from_millis(5000),
            env "OLTP_BATCH_SCHEDULE_DELAY_MILLIS" as "batch_schedule_delay_millis";
        #[serde(with = "fields::millis")]
        pub batch_export_timeout: Duration = Duration::from_millis(30_000),
            env "OLTP_BATCH_EXPORT_TIMEOUT_MILLIS" as "batch_export_timeout_millis";
    }
}

impl Section for TelemetryConfig {
    fn check(&mut self) -> Result<(), Invalid> {
        http_url(&mut self.endpoint, "endpoint")?;
        none_if_blank(&mut self.service_name);
        none_if_blank(&mut self.service_version);
        none_if_blank(&mut self.deployment_environment);
        if let Err(why) = self.export_headers() {
            return check(false, "headers", &why);
        }
        if let Some(r) = self.sampling_ratio {
            check(
                (0.0..=1.0).contains(&r),
                "sampling_ratio",
                "must be between 0 and 1 (0.01: one trace in a hundred)",
            )?;
        }
        within(
            self.batch_max_queue_size,
            1,
            1_000_000,
            "batch_max_queue_size",
        )?;
        within(
            self.batch_max_export_batch_size,
            1,
            self.batch_max_queue_size,
            "batch_max_export_batch_size",
        )?;
        check(
            !self.batch_schedule_delay.is_zero(),
            "batch_schedule_delay_millis",
            "must be at least 1",
        )?;
        check(
            !self.batch_export_timeout.is_zero(),
            "batch_export_timeout_millis",
            "must be at least 1",
        )
    }
}

impl TelemetryConfig {
    /// `OLTP_HEADERS` as header names and values; the error never quotes a value (they are
    /// credentials).
    pub fn export_headers(&self) -> Result<HashMap<String, String>, String> {
        let Some(text) = &self.headers else {
            return Ok(HashMap::new());
        };
        let value: serde_json::Value = serde_json::from_str(text.expose_secret())
            .map_err(|e| format!("expected a JSON object of header names and values ({e})"))?;
        let Some(object) = value.as_object() else {
            return Err("expected a JSON object of header names and values, e.g. {\"Authorization\": \"Basic …\"}".into());
        };
        object
            .iter()
            .map(|(name, v)| {
                let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
                match v.as_str() {
                    Some(s) if valid && http::HeaderValue::from_str(s).is_ok() => {
                        Ok((name.clone(), s.to_string()))
                    }
                    _ => Err(format!(
                        "header {name:?}: expected a valid header name with a text value"
                    )),
                }
            })
            .collect()
    }

    /// The protocol: the setting, else the standard variables, else HTTP/protobuf.
    pub fn resolved_protocol(&self, env: EnvLookup<'_>) -> Result<OtlpProtocol, String> {
        if let Some(p) = self.protocol {
            return Ok(p);
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
                return v
                    .parse()
                    .map_err(|e| format!("{var}: {e} (http/json is not supported)"));
            }
        }
        Ok(OtlpProtocol::HttpProtobuf)
    }

    /// `OLTP_ENDPOINT` as the exporter takes it: an HTTP URL without a path is a collector's
    /// base, to which the traces path is added. `None`: the exporter's own resolution.
    pub fn resolved_endpoint(&self, protocol: OtlpProtocol) -> Option<String> {
        let endpoint = self.endpoint.clone()?;
        let bare = endpoint
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.contains('/'));
        Some(match protocol {
            OtlpProtocol::HttpProtobuf if bare => format!("{endpoint}/v1/traces"),
            _ => endpoint,
        })
    }

    /// The resource: service name, version, deployment environment (and
    /// `OTEL_RESOURCE_ATTRIBUTES`, read by the SDK).
    fn resource(
        &self,
        agent: &bindu_ingress::options::AgentConfig,
        env: EnvLookup<'_>,
    ) -> Resource {
        let mut builder = Resource::builder();
        match (&self.service_name, env("OTEL_SERVICE_NAME")) {
            (Some(name), _) => builder = builder.with_service_name(name.clone()),
            (None, Some(v)) if !v.trim().is_empty() => {}
            (None, _) => builder = builder.with_service_name(agent.name.clone()),
        }
        let version = self
            .service_version
            .clone()
            .unwrap_or_else(|| agent.version.clone());
        builder = builder.with_attribute(KeyValue::new("service.version", version));
        if let Some(environment) = &self.deployment_environment {
            builder = builder.with_attribute(KeyValue::new(
                "deployment.environment.name",
                environment.clone(),
            ));
        }
        builder.build()
    }
}

/// A running export pipeline: flushed and stopped by [`Pipeline::shutdown`].
pub struct Pipeline {
    pub(super) provider: SdkTracerProvider,
    pub(super) tracer: opentelemetry_sdk::trace::Tracer,
    /// The gRPC exporter's runtime (tonic needs one for its connection).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Pipeline {
    /// Builds the exporter, the bounded batch processor and the provider `cfg` describes.
    pub fn build(
        cfg: &TelemetryConfig,
        agent: &bindu_ingress::options::AgentConfig,
        env: EnvLookup<'_>,
        dropped: Dropped,
    ) -> Result<Pipeline, String> {
        let protocol = cfg.resolved_protocol(env)?;
        let headers = cfg.export_headers()?;
        let endpoint = cfg.resolved_endpoint(protocol);
        let mut runtime = None;
        let exporter = match protocol {
            OtlpProtocol::HttpProtobuf => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(cfg.batch_export_timeout)
                    .with_headers(headers);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                b.build()
            }
            OtlpProtocol::Grpc => {
                // tonic's connection lives on a runtime of its own, so the exporter does not
                // depend on which runtime (if any) the caller has.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("otlp-grpc")
                    // The connection's tasks are not traced: their spans would be exported
                    // in turn.
                    .on_thread_start(|| {
                        std::mem::forget(tracing::subscriber::set_default(
                            tracing::subscriber::NoSubscriber::default(),
                        ));
                    })
                    .enable_all()
                    .build()
                    .map_err(|e| format!("could not start the gRPC exporter's runtime: {e}"))?;
                let entered = rt.enter();
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (name, value) in &headers {
                    let name = tonic::metadata::MetadataKey::from_bytes(
                        name.to_ascii_lowercase().as_bytes(),
                    )
                    .map_err(|_| {
                        format!("OLTP_HEADERS: {name:?} is not a valid gRPC metadata key")
                    })?;
                    let value = value.parse().map_err(|_| {
                        format!("OLTP_HEADERS: the value of {name} is not valid gRPC metadata")
                    })?;
                    metadata.insert(name, value);
                }
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(cfg.batch_export_timeout)
                    .with_metadata(metadata);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                let built = b.build();
                drop(entered);
                runtime = Some(rt);
                built
            }
        }
        .map_err(|e| format!("could not build the OTLP exporter: {e}"))?;

        let gate = QueueGate::new(cfg.batch_max_queue_size, dropped);
        let exporter = CountingExporter::new(exporter, gate.clone(), cfg.verbose_logging);
        let batch = BatchConfigBuilder::default()
            // One more slot than the gate lets through: the processor itself never drops,
            // so every dropped span is one the gate counted.
            .with_max_queue_size(cfg.batch_max_queue_size + 1)
            .with_max_export_batch_size(cfg.batch_max_export_batch_size)
            .with_scheduled_delay(cfg.batch_schedule_delay)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_span_processor(gate.wrap(processor))
            .with_resource(cfg.resource(agent, env));
        if let Some(ratio) = cfg.sampling_ratio {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let provider = builder.build();
        let tracer = provider.tracer("bindu");
        Ok(Pipeline {
            provider,
            tracer,
            runtime,
        })
    }

    /// Exports what is queued (bounded by the export timeout), then stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "telemetry: shutdown of the span exporter");
        }
        if let Some(rt) = self.runtime {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_protocol_is_bindus_setting_then_the_standard_variables_then_http() {
        let mut cfg = TelemetryConfig::default();
        let none = env(&[]);
        assert_eq!(cfg.resolved_protocol(&none), Ok(OtlpProtocol::HttpProtobuf));
        let general = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(cfg.resolved_protocol(&general), Ok(OtlpProtocol::Grpc));
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(cfg.resolved_protocol(&both), Ok(OtlpProtocol::HttpProtobuf));
        let json = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert!(cfg
            .resolved_protocol(&json)
            .unwrap_err()
            .contains("OTEL_EXPORTER_OTLP_PROTOCOL"));
        cfg.protocol = Some(OtlpProtocol::Grpc);
        assert_eq!(cfg.resolved_protocol(&both), Ok(OtlpProtocol::Grpc));
    }

    #[test]
    fn an_http_endpoint_without_a_path_gets_the_traces_path() {
        let mut cfg = TelemetryConfig::default();
        assert_eq!(cfg.resolved_endpoint(OtlpProtocol::HttpProtobuf), None);
        cfg.endpoint = Some("http://collector:4318".into());
        assert_eq!(
            cfg.resolved_endpoint(OtlpProtocol::HttpProtobuf).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            cfg.resolved_endpoint(OtlpProtocol::Grpc).as_deref(),
            Some("http://collector:4318")
        );
        cfg.endpoint = Some("https://cloud.langfuse.com/api/public/otel/v1/traces".into());
        assert_eq!(
            cfg.resolved_endpoint(OtlpProtocol::HttpProtobuf).as_deref(),
            Some("https://cloud.langfuse.com/api/public/otel/v1/traces")
        );
    }

    #[test]
    fn headers_are_a_json_object_of_texts_and_errors_quote_no_value() {
        let mut cfg = TelemetryConfig {
            headers: Some(SecretString::from(
                r#"{"Authorization": "Basic abc", "x-team": "t1"}"#,
            )),
            ..TelemetryConfig::default()
        };
        let h = cfg.export_headers().unwrap();
        assert_eq!(h["Authorization"], "Basic abc");
        assert_eq!(h["x-team"], "t1");
        for bad in [
            "Authorization=Basic secret-1",
            r#"["secret-1"]"#,
            r#"{"Authorization": 1}"#,
            r#"{"bad header": "secret-1"}"#,
            r#"{"x": "secret-1\n"}"#,
        ] {
            cfg.headers = Some(SecretString::from(bad));
            let e = cfg.export_headers().unwrap_err();
            assert!(!e.contains("secret-1"), "{e}");
        }
    }

    #[test]
    fn the_service_is_named_by_the_setting_then_otel_service_name_then_the_agent() {
        let agent = bindu_ingress::options::AgentConfig {
            name: "research-agent".into(),
            version: "2.0.0".into(),
            ..Default::default()
        };
        let name = |cfg: &TelemetryConfig, vars: &[(&str, &str)]| {
            let r = cfg.resource(&agent, &env(vars));
            r.get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string())
        };
        let mut cfg = TelemetryConfig::default();
        assert_eq!(name(&cfg, &[]).as_deref(), Some("research-agent"));
        cfg.service_name = Some("from-oltp".into());
        assert_eq!(name(&cfg, &[]).as_deref(), Some("from-oltp"));
        let r = cfg.resource(&agent, &env(&[]));
        assert_eq!(
            r.get(&opentelemetry::Key::new("service.version"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("2.0.0")
        );
    }
}
