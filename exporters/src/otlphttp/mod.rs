//! `otlphttp`: OTLP over HTTP. With `encoding: proto` the request bytes go
//! out as they came in.

mod config;

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
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
        let [t, m, l] = Signal::ALL.map(|s| self.url(s));
        let (t, m, l) = (t?, m?, l?);
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            headers.insert(
                http::HeaderName::try_from(k.as_str()).expect("validated"),
                http::HeaderValue::try_from(v.as_str()).expect("validated"),
            );
        }
        let client = crate::tls::connect::http_client(&self.tls, &[&t, &m, &l], headers)?;
        let exporter = OtlpHttp {
            auth: crate::client::client_auth(self.auth.as_ref(), ctx)?,
            client,
            urls: [t.url, m.url, l.url],
            compression: self.compression,
            encoding: self.encoding,
        };
        engine::start(ctx, self.engine(), Arc::new(exporter))
    }
}

struct OtlpHttp {
    auth: crate::client::ClientAuth,
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

/// The JSON body for a batch, decoded and written one request at a time so
/// at most one request is held decoded; the items of requests that did not
/// decode are left out and returned as `rejected`. The text is what
/// serializing the whole decoded batch gives.
pub fn json_body(batch: &Batch) -> Result<(Vec<u8>, Sent), String> {
    match batch.signal {
        Signal::Traces => stream_json(batch, "resourceSpans", |r: ExportTraceServiceRequest| {
            r.resource_spans
        }),
        Signal::Metrics => stream_json(
            batch,
            "resourceMetrics",
            |r: ExportMetricsServiceRequest| r.resource_metrics,
        ),
        Signal::Logs => stream_json(batch, "resourceLogs", |r: ExportLogsServiceRequest| {
            r.resource_logs
        }),
    }
}

fn stream_json<T: Message + Default, P: serde::Serialize>(
    batch: &Batch,
    field: &str,
    parts: fn(T) -> Vec<P>,
) -> Result<(Vec<u8>, Sent), String> {
    let mut out = Vec::with_capacity(batch.encoded_len() * 2);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":[");
    let mut first = true;
    let mut failed: Option<serde_json::Error> = None;
    let d = batch.for_each_decoded(|req: T| {
        for part in parts(req) {
            if !first {
                out.push(b',');
            }
            first = false;
            if let Err(e) = serde_json::to_writer(&mut out, &part) {
                failed.get_or_insert(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.to_string());
    }
    out.extend_from_slice(b"]}");
    let skipped = Sent {
        rejected: d.skipped_items,
        message: d.skipped_message().unwrap_or_default(),
    };
    Ok((out, skipped))
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
        for (k, v) in crate::client::auth_headers(&self.auth, batch)? {
            req = req.header(k, v);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::generate::{Generator, GeneratorOptions};
    use pipeline::Request;

    #[test]
    fn json_written_request_by_request_equals_the_whole_batch_serialized() {
        let mut g = Generator::new(GeneratorOptions::default());
        let mut req =
            |n| Request::parse(Signal::Traces, g.spans(n).encode_to_vec().into()).unwrap();
        let batch = Batch {
            signal: Signal::Traces,
            requests: vec![req(3), req(1), req(4)],
        };
        let (body, sent) = json_body(&batch).unwrap();
        assert_eq!(
            body,
            serde_json::to_vec(&batch.decode_traces().unwrap()).unwrap()
        );
        assert_eq!(sent, Sent::default());
        let mut logs = Generator::new(GeneratorOptions::default());
        let l = Batch::parse(Signal::Logs, logs.logs(5).encode_to_vec().into()).unwrap();
        let (body, _) = json_body(&l).unwrap();
        assert_eq!(body, serde_json::to_vec(&l.decode_logs().unwrap()).unwrap());
        let empty = Batch {
            signal: Signal::Metrics,
            requests: vec![],
        };
        assert_eq!(json_body(&empty).unwrap().0, b"{\"resourceMetrics\":[]}");
    }
}
