//! Observatory's exporters and the engine they share.

#![forbid(unsafe_code)]

pub mod client;
pub mod debug;
pub mod engine;
pub mod file;
pub mod grpc_codec;
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
    vec![
        debug::factory(),
        file::factory(),
        loki::factory(),
        nop::factory(),
        otlp::factory(),
        otlphttp::factory(),
        parquet::factory(),
        timescaledb::factory(),
    ]
}
