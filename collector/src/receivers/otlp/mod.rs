//! `otlp` receiver: OTLP over gRPC and HTTP (protobuf and JSON). Requests
//! are kept as bytes; traces are validated and indexed by one scan.

mod config;
mod grpc;
mod http;
pub mod json;

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::component::{parse_config, Context};
use pipeline::Signal;
use tokio::task::JoinHandle;

pub use config::OtlpReceiverConfig;

use super::admission::Admission;
use super::identify::Identify;
use super::{ReceiverBuilder, ReceiverFactory, ReceiverMetrics, SignalConsumers, Stop};

/// The registry entry.
pub fn factory() -> ReceiverFactory {
    ReceiverFactory {
        type_name: "otlp",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<OtlpReceiverConfig>(v)?)),
    }
}

#[async_trait]
impl ReceiverBuilder for OtlpReceiverConfig {
    async fn start(
        &self,
        consumers: SignalConsumers,
        ctx: &Context,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let mut tasks = Vec::new();
        let admission = Admission::new(&self.admission);
        if let Some(g) = &self.protocols.grpc {
            let metrics = ReceiverMetrics::new(&ctx.metrics, &ctx.id, "grpc");
            let identify = Identify::new(
                g.auth.as_ref(),
                g.include_metadata,
                &ctx.auth,
                "protocols.grpc.auth.authenticator",
                metrics.unauthenticated(),
            )?;
            tasks.push(
                grpc::serve(
                    g,
                    consumers.clone(),
                    metrics,
                    admission.clone(),
                    identify,
                    stop.clone(),
                )
                .await?,
            );
            tracing::info!(receiver = %ctx.id, endpoint = %g.endpoint, "OTLP/gRPC listening");
        }
        if let Some(h) = &self.protocols.http {
            let metrics = ReceiverMetrics::new(&ctx.metrics, &ctx.id, "http");
            let identify = Identify::new(
                h.auth.as_ref(),
                h.include_metadata,
                &ctx.auth,
                "protocols.http.auth.authenticator",
                metrics.unauthenticated(),
            )?;
            tasks.push(http::serve(h, consumers, metrics, admission, identify, stop).await?);
            tracing::info!(receiver = %ctx.id, endpoint = %h.endpoint, "OTLP/HTTP listening");
        }
        Ok(tasks)
    }
}
