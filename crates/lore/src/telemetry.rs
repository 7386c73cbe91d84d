//! Logging to stderr (`LORE_LOG`, default `warn`) and, with `telemetry.otlp_endpoint`, the
//! spans of the service exported to an OpenTelemetry collector over OTLP/HTTP.

use lore_core::config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Exports what is left when dropped (the batch processor would lose its last spans).
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("lore: telemetry: the last spans were not exported: {error}");
        }
    }
}

/// Installs the global subscriber: the log lines, plus span export when configured. Only
/// spans at `info` or above go to the collector (the stage spans are `info`); log events stay
/// on stderr.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let filter = lore_core::env::var(lore_core::env::LORE_LOG).unwrap_or_else(|| "warn".into());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(tracing_subscriber::EnvFilter::new(filter));
    let Some(endpoint) = &config.otlp_endpoint else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry(None));
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint {endpoint:?}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("lore")).with_filter(
        tracing_subscriber::filter::filter_fn(|meta| meta.is_span() && *meta.level() <= tracing::Level::INFO),
    );
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(Telemetry(Some(provider)))
}
