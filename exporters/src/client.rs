//! Client settings the OTLP exporters share: compression, `Retry-After`,
//! and reading partial-success responses (TLS is in `crate::tls`).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use pipeline::Signal;
use prost::Message;
use serde::{Deserialize, Deserializer};

use crate::engine::Sent;

/// Request body compression; gzip by default, as otelcol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// No compression (`none` or empty).
    None,
    /// gzip.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "" | "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(serde::de::Error::custom(format!(
                "unsupported compression {other:?}: use gzip, zstd or none"
            ))),
        }
    }
}

/// Reads a `Retry-After` header given in seconds.
pub fn retry_after(resp: &reqwest::Response) -> Option<std::time::Duration> {
    let v = resp
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

/// Reads a protobuf Export response's partial success.
pub fn partial_success(signal: Signal, body: &[u8]) -> Sent {
    let (rejected, message) = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
    }
    .unwrap_or_default();
    Sent {
        rejected: rejected.max(0) as usize,
        message,
    }
}

/// An exporter's `auth` authenticator, resolved at build.
pub type ClientAuth = Option<std::sync::Arc<dyn pipeline::auth::ClientAuthenticator>>;

/// Resolves an exporter's `auth` against the running extensions.
pub fn client_auth(
    auth: Option<&pipeline::auth::AuthConfig>,
    ctx: &pipeline::component::Context,
) -> Result<ClientAuth, pipeline::component::ConfigError> {
    auth.map(|a| a.client(&ctx.auth, "auth.authenticator"))
        .transpose()
}

/// The headers `auth` adds for a batch (whose context, when `batch` kept
/// one, is the same in every request).
pub fn auth_headers(
    auth: &ClientAuth,
    batch: &pipeline::Batch,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, crate::engine::ExportError> {
    let Some(a) = auth else {
        return Ok(Vec::new());
    };
    let client = batch.requests.first().and_then(|r| r.client.as_deref());
    a.headers(client)
        .map_err(|e| crate::engine::ExportError::Permanent(format!("auth: {e}")))
}
