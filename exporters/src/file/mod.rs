//! `file`: writes each batch as one line of OTLP/JSON (or, with
//! `format: proto`, as a 4-byte big-endian length and the protobuf bytes).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::{Batch, BoxConsumer, ConsumeError, Consumer, Signal};
use serde::Deserialize;

use crate::engine::ExporterMetrics;
use crate::otlphttp::json_body;
use crate::{ExporterBuilder, ExporterFactory};

/// Record format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One OTLP/JSON request per line.
    #[default]
    Json,
    /// Length-prefixed protobuf requests.
    Proto,
}

/// `file` exporter config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to write; its directory is created if missing.
    pub path: PathBuf,
    /// `json` (default) or `proto`.
    #[serde(default)]
    pub format: Format,
    /// Keep what the file holds instead of truncating it at start.
    #[serde(default)]
    pub append: bool,
}

impl Validate for FileConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("path", "is required"));
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "file",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<FileConfig>(v)?)),
    }
}

impl ExporterBuilder for FileConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let fail = |e: std::io::Error| {
            ConfigError::new("path", format!("cannot open {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(fail)?;
        Ok(Arc::new(FileExporter(Arc::new(Writer {
            id: ctx.id.clone(),
            file: Mutex::new(file),
            format: self.format,
            metrics: ExporterMetrics::new(&ctx.metrics, &ctx.id),
        }))))
    }
}

/// Decoding to JSON and writing block, so both run on tokio's blocking
/// pool: the async workers (receivers, processors) never wait on them.
struct FileExporter(Arc<Writer>);

struct Writer {
    id: String,
    file: Mutex<File>,
    format: Format,
    metrics: ExporterMetrics,
}

#[async_trait]
impl Consumer for FileExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let w = self.0.clone();
        tokio::task::spawn_blocking(move || w.write(&batch))
            .await
            .unwrap_or_else(|e| Err(ConsumeError::Retryable(format!("file writer: {e}"))))
    }
}

impl Writer {
    fn write(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let mut skipped = 0;
        let record = match self.format {
            Format::Json => {
                let (mut line, s) = json_body(batch).map_err(ConsumeError::Permanent)?;
                if s.rejected > 0 {
                    tracing::warn!(exporter = %self.id, items = s.rejected, "{}", s.message);
                    self.metrics.failed(batch.signal, s.rejected);
                    skipped = s.rejected;
                }
                line.push(b'\n');
                line
            }
            Format::Proto => {
                let body = batch.to_bytes();
                let mut rec = (body.len() as u32).to_be_bytes().to_vec();
                rec.extend_from_slice(&body);
                rec
            }
        };
        // One write per record keeps lines whole for readers tailing the file.
        let written = self.file.lock().unwrap().write_all(&record);
        match written {
            Ok(()) => {
                self.metrics.sent(batch.signal, batch.items() - skipped);
                Ok(())
            }
            Err(e) => {
                self.metrics.failed(batch.signal, batch.items() - skipped);
                Err(ConsumeError::Retryable(format!("writing file: {e}")))
            }
        }
    }
}
