//! Observatory's exporters and the engine they share.

#![forbid(unsafe_code)]

pub mod client;
pub mod debug;
pub mod engine;
pub mod file;
pub mod grpc_codec;
pub mod kafka;
pub mod loadbalancing;
pub mod loki;
pub mod nop;
pub mod otlp;
pub mod otlphttp;
pub mod parquet;
pub mod time;
pub mod timescaledb;
pub mod tls;
pub mod values;

use std::sync::Arc;

use pipeline::component::{ConfigError, Context};
use pipeline::{BoxConsumer, Signal};

/// A validated exporter config; `build` does the I/O (opening files, clients).
pub trait ExporterBuilder: Send + Sync {
    /// Starts the exporter; one instance serves every pipeline that names it.
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError>;

    /// Whether this config can serve a `signal` pipeline (beyond the
    /// type's signals: `loadbalancing`'s routing key fits only some).
    fn accepts(&self, _signal: Signal) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// An exporter type: its name, the signals it takes, its config parser.
pub struct ExporterFactory {
    /// Type name in configs (`otlphttp`).
    pub type_name: &'static str,
    /// Signals it accepts.
    pub signals: &'static [Signal],
    /// Parses and validates a config.
    pub parse: fn(serde_yaml::Value) -> Result<Arc<dyn ExporterBuilder>, ConfigError>,
}

/// The built-in exporter types.
pub fn factories() -> Vec<ExporterFactory> {
    let mut all = vec![
        debug::factory(),
        file::factory(),
        kafka::factory(),
        loki::factory(),
        nop::factory(),
        otlp::factory(),
        otlphttp::factory(),
        parquet::factory(),
        timescaledb::factory(),
    ];
    all.extend(loadbalancing::factories());
    // Recent otelcol releases' names for the OTLP exporters.
    all.push(ExporterFactory {
        type_name: "otlp_grpc",
        ..otlp::factory()
    });
    all.push(ExporterFactory {
        type_name: "otlp_http",
        ..otlphttp::factory()
    });
    all
}
