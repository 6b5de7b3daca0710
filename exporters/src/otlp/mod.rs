//! `otlp`: OTLP over gRPC. Forwards each batch's request bytes as they are;
//! nothing is decoded.

mod config;
mod framing;

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context};
use pipeline::{Batch, BoxConsumer, Signal};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

pub use config::OtlpConfig;

use crate::client::{partial_success, Compression};
use crate::engine::{self, ExportError, Exporter, Sent};
use crate::grpc_codec::export_path;
use crate::{ExporterBuilder, ExporterFactory};

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "otlp",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<OtlpConfig>(v)?)),
    }
}

impl ExporterBuilder for OtlpConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        engine::start(ctx, self.engine(), self.exporter(ctx)?)
    }
}

impl OtlpConfig {
    /// The exporter alone, for a caller that runs it in its own engine
    /// (`loadbalancing` wraps each backend's).
    pub fn exporter(&self, ctx: &Context) -> Result<Arc<dyn Exporter>, ConfigError> {
        let channel = crate::tls::connect::grpc_channel(&self.tls, &self.target()?)?;
        let mut headers = MetadataMap::new();
        for (k, v) in &self.headers {
            let key =
                MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()).expect("validated");
            headers.insert(key, MetadataValue::try_from(v.as_str()).expect("validated"));
        }
        Ok(Arc::new(OtlpGrpc {
            auth: crate::client::client_auth(self.auth.as_ref(), ctx)?,
            channel,
            headers,
            compression: self.compression,
        }))
    }
}

struct OtlpGrpc {
    auth: crate::client::ClientAuth,
    channel: Channel,
    headers: MetadataMap,
    compression: Compression,
}

/// Sorts a gRPC failure per the OTLP specification's retryable codes.
pub fn classify(status: &Status) -> ExportError {
    let delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let message = format!("{:?}: {}", status.code(), status.message());
    match (status.code(), delay) {
        (Code::ResourceExhausted, None) => ExportError::Permanent(message),
        (_, Some(after)) => ExportError::Throttled { after, message },
        (
            Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss,
            None,
        ) => ExportError::Retryable(message),
        // tonic reports connection failures as Unknown with a transport source.
        (Code::Unknown, None)
            if status.message().contains("transport") || status.message().contains("connect") =>
        {
            ExportError::Retryable(message)
        }
        _ => ExportError::Permanent(message),
    }
}

#[async_trait]
impl Exporter for OtlpGrpc {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        let parts: Vec<bytes::Bytes> = batch.requests.iter().map(|r| r.bytes.clone()).collect();
        let mut headers = self.headers.clone().into_headers();
        for (k, v) in crate::client::auth_headers(&self.auth, batch)? {
            headers.insert(k, v);
        }
        let path = export_path(batch.signal);
        match framing::unary(&self.channel, path, &parts, self.compression, headers).await {
            Ok(resp) => Ok(partial_success(batch.signal, &resp)),
            Err(status) => Err(classify(&status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn grpc_codes_are_classified_per_the_spec() {
        assert!(matches!(
            classify(&Status::unavailable("x")),
            ExportError::Retryable(_)
        ));
        assert!(matches!(
            classify(&Status::invalid_argument("x")),
            ExportError::Permanent(_)
        ));
        assert!(matches!(
            classify(&Status::resource_exhausted("x")),
            ExportError::Permanent(_)
        ));
        let throttled = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(3))),
        );
        match classify(&throttled) {
            ExportError::Throttled { after, message } => {
                assert_eq!(after, std::time::Duration::from_secs(3));
                assert_eq!(message, "ResourceExhausted: slow down");
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
    }
}
