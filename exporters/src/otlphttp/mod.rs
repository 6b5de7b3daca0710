//! `otlphttp`: OTLP over HTTP. With `encoding: proto` the request bytes go
//! out as they came in.

mod config;

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pipeline::batch::Decoded;
use pipeline::component::{parse_config, ConfigError, Context};
use pipeline::rpc_status::RpcStatus;
use pipeline::{Batch, BoxConsumer, Signal};
use prost::Message;

pub use config::{Encoding, OtlpHttpConfig};

use crate::client::{partial_success, retry_after, Compression};
use crate::engine::{self, ExportError, Exporter, Sent};
use crate::{ExporterBuilder, ExporterFactory};

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "otlphttp",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<OtlpHttpConfig>(v)?)),
    }
}

impl ExporterBuilder for OtlpHttpConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let urls = Signal::ALL.map(|s| self.url(s));
        let [t, m, l] = urls;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            headers.insert(
                http::HeaderName::try_from(k.as_str()).expect("validated"),
                http::HeaderValue::try_from(v.as_str()).expect("validated"),
            );
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .map_err(|e| ConfigError::new("", format!("cannot build HTTP client: {e}")))?;
        let exporter = OtlpHttp {
            client,
            urls: [t?, m?, l?],
            compression: self.compression,
            encoding: self.encoding,
        };
        engine::start(ctx, self.engine(), Arc::new(exporter))
    }
}

struct OtlpHttp {
    client: reqwest::Client,
    urls: [String; 3],
    compression: Compression,
    encoding: Encoding,
}

/// Compresses a body; `None` leaves it as is.
pub fn compress(body: &[u8], c: Compression) -> std::io::Result<Vec<u8>> {
    match c {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(body)?;
            enc.finish()
        }
        Compression::Zstd => zstd::bulk::compress(body, 1),
    }
}

/// The JSON body for a batch (decoded request by request, then OTLP/JSON
/// encoded), with the items of requests that did not decode as `rejected`.
pub fn json_body(batch: &Batch) -> Result<(Vec<u8>, Sent), String> {
    fn encode<T: serde::Serialize>(d: Decoded<T>) -> Result<(Vec<u8>, Sent), String> {
        let body = serde_json::to_vec(&d.request).map_err(|e| e.to_string())?;
        let message = d.skipped_message().unwrap_or_default();
        let sent = Sent {
            rejected: d.skipped_items,
            message,
        };
        Ok((body, sent))
    }
    match batch.signal {
        Signal::Traces => encode(batch.decode_traces_each()),
        Signal::Metrics => encode(batch.decode_metrics_each()),
        Signal::Logs => encode(batch.decode_logs_each()),
    }
}

#[async_trait]
impl Exporter for OtlpHttp {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        let mut skipped = Sent::default();
        let (body, content_type) = match self.encoding {
            Encoding::Proto => (batch.to_bytes(), "application/x-protobuf"),
            Encoding::Json => {
                let (body, s) = json_body(batch).map_err(ExportError::Permanent)?;
                skipped = s;
                (Bytes::from(body), "application/json")
            }
        };
        let mut req = self
            .client
            .post(&self.urls[batch.signal as usize])
            .header(http::header::CONTENT_TYPE, content_type);
        let body = match self.compression {
            Compression::None => body,
            c => {
                req = req.header(
                    http::header::CONTENT_ENCODING,
                    if c == Compression::Gzip {
                        "gzip"
                    } else {
                        "zstd"
                    },
                );
                Bytes::from(compress(&body, c).map_err(|e| ExportError::Permanent(e.to_string()))?)
            }
        };
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::Retryable(format!("sending: {e}")))?;
        let status = resp.status();
        let after = retry_after(&resp);
        let is_json = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            if is_json || skipped.rejected > 0 {
                return Ok(skipped);
            }
            return Ok(partial_success(batch.signal, &body));
        }
        let detail = if is_json {
            serde_json::from_slice::<RpcStatus>(&body)
                .map(|s| s.message)
                .unwrap_or_default()
        } else {
            RpcStatus::decode(body.as_ref())
                .map(|s| s.message)
                .unwrap_or_default()
        };
        let message = format!("HTTP {status}: {detail}");
        Err(match (status.as_u16(), after) {
            (429 | 502 | 503 | 504, Some(after)) => ExportError::Throttled { after, message },
            (429 | 502 | 503 | 504, None) => ExportError::Retryable(message),
            _ => ExportError::Permanent(message),
        })
    }
}
