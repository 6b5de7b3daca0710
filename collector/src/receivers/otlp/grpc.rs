//! OTLP/gRPC: TraceService, MetricsService and LogsService `Export`, taking
//! each message as raw bytes through [`RawCodec`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use exporters::grpc_codec::{Parts, RawCodec};
use pipeline::client::ClientInfo;
use pipeline::{BoxConsumer, ConsumeError, Signal};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::config::{GrpcConfig, GRPC_ALPN};
use crate::receivers::admission::{Admission, Refused};
use crate::receivers::conn::{secure, Acceptor, Limits, Peer};
use crate::receivers::identify::Identify;
use crate::receivers::tls::TlsServer;
use crate::receivers::{bind, ReceiverMetrics, SignalConsumers, Stop};

/// What clients are told to wait before retrying a refused request.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The `Export` call of one signal.
struct Export {
    signal: Signal,
    consumer: BoxConsumer,
    metrics: ReceiverMetrics,
    admission: Admission,
    identify: Identify,
}

/// Maps a pipeline refusal to the OTLP status.
fn refusal(e: ConsumeError) -> Status {
    match e {
        ConsumeError::Retryable(m) => Status::with_error_details(
            Code::Unavailable,
            m,
            ErrorDetails::with_retry_info(Some(RETRY_DELAY)),
        ),
        ConsumeError::Permanent(m) => Status::invalid_argument(m),
        // RESOURCE_EXHAUSTED with RetryInfo: retryable per the OTLP spec.
        ConsumeError::Throttled {
            message,
            retry_after,
        } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
    }
}

impl Export {
    async fn handle(&self, body: Bytes, client: Arc<ClientInfo>) -> Result<Parts, Status> {
        let (mut batch, _held) = self
            .admission
            .admit(self.signal, body)
            .map_err(|r| match r {
                Refused::Busy { message, items } => {
                    self.metrics.refused(self.signal, items);
                    refusal(ConsumeError::Retryable(message))
                }
                Refused::TooLarge(m) => {
                    self.metrics.malformed();
                    Status::resource_exhausted(m)
                }
                Refused::Invalid(m) => {
                    self.metrics.malformed();
                    Status::invalid_argument(m)
                }
            })?;
        for r in &mut batch.requests {
            r.client = Some(client.clone());
        }
        if batch.items() > 0 {
            self.metrics
                .deliver(&self.consumer, batch)
                .await
                .map_err(refusal)?;
        }
        // An empty Export*ServiceResponse encodes to nothing.
        Ok(Vec::new())
    }
}

#[derive(Clone)]
struct Call(Arc<Export>, Arc<ClientInfo>);

impl UnaryService<Bytes> for Call {
    type Response = Parts;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Parts>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (export, client) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            export
                .handle(request.into_inner(), client)
                .await
                .map(tonic::Response::new)
        })
    }
}

/// One OTLP gRPC service; `S` is the signal's slot, which fixes its name.
#[derive(Clone)]
struct SignalService<const S: usize> {
    export: Option<Arc<Export>>,
    max_message: usize,
}

impl NamedService for SignalService<0> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl NamedService for SignalService<1> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}
impl NamedService for SignalService<2> {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

type BoxBody = tonic::body::Body;

impl<const S: usize> tower::Service<http::Request<BoxBody>> for SignalService<S> {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let export = self.export.clone();
        let max = self.max_message;
        Box::pin(async move {
            let Some(export) = export.filter(|_| req.uri().path().ends_with("/Export")) else {
                return Ok(Status::unimplemented(
                    "no pipeline takes this signal from this receiver",
                )
                .into_http());
            };
            // Credentials are checked on the headers, before any of the
            // message is read.
            let peer = req.extensions().get::<Peer>().map(|p| p.0);
            let client = match export.identify.client(req.headers(), peer) {
                Ok(c) => c,
                Err(m) => return Ok(Status::unauthenticated(m).into_http()),
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max);
            let mut resp = grpc.unary(Call(export, client), req).await;
            too_large_is_resource_exhausted(&mut resp);
            Ok(resp)
        })
    }
}

/// tonic reports a message over the size limit as OUT_OF_RANGE; the OTLP
/// specification (and grpc-go, so otelcol) says RESOURCE_EXHAUSTED, which
/// clients treat as not retryable when it carries no RetryInfo.
fn too_large_is_resource_exhausted(resp: &mut http::Response<BoxBody>) {
    let h = resp.headers_mut();
    let too_large = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message").is_some_and(|m| {
            m.to_str().is_ok_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            })
        });
    if too_large {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

/// Time a new connection has to send the HTTP/2 preface: a client that
/// connects and sends nothing is cut off instead of holding a socket.
const GRPC_FIRST_BYTES: Duration = Duration::from_secs(10);

/// HTTP/2 SETTINGS_MAX_FRAME_SIZE this server announces.
const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// Binds the gRPC endpoint and serves until `stop`.
pub async fn serve(
    cfg: &GrpcConfig,
    consumers: SignalConsumers,
    metrics: ReceiverMetrics,
    admission: Admission,
    identify: Identify,
    stop: Stop,
) -> Result<JoinHandle<()>, String> {
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| TlsServer::start(t, "protocols.grpc.tls", GRPC_ALPN, stop.clone()))
        .transpose()?;
    let listener = bind(&cfg.endpoint).await?;
    let max_message = (cfg.max_recv_msg_size_mib as usize) << 20;
    let export = |s: Signal| {
        consumers.get(s).map(|c| {
            Arc::new(Export {
                signal: s,
                consumer: c.clone(),
                metrics: metrics.clone(),
                admission: admission.clone(),
                identify: identify.clone(),
            })
        })
    };
    // Flow-control windows sized by bandwidth-delay estimation, as grpc-go
    // (and so otelcol) does by default; with h2's fixed 64 KiB windows a
    // 240 KB export waits on several WINDOW_UPDATE round trips.
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_adaptive_window(Some(true))
        // Clients split a message into DATA frames of at most this size; at
        // h2's 16 KiB default a 240 KB export is 15 frames, each a wake-up
        // and a copy on both sides.
        .max_frame_size(Some(MAX_FRAME_SIZE));
    if cfg.max_concurrent_streams > 0 {
        builder = builder.max_concurrent_streams(cfg.max_concurrent_streams);
    }
    let router = builder
        .add_service(SignalService::<0> {
            export: export(Signal::Traces),
            max_message,
        })
        .add_service(SignalService::<1> {
            export: export(Signal::Metrics),
            max_message,
        })
        .add_service(SignalService::<2> {
            export: export(Signal::Logs),
            max_message,
        });
    let limits = Limits {
        max_connections: cfg.max_connections,
        first_bytes: GRPC_FIRST_BYTES,
    };
    let acceptor = Acceptor::new(listener, &limits, metrics.refused_connections());
    // Handshakes run on their own tasks so a slow one holds up no other
    // connection; the server takes connections as they become ready.
    let (ready, ready_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = acceptor.accept() => c,
                () = ready.closed() => return,
            };
            match (conn, &tls) {
                (Err(e), _) => {
                    let _ = ready.send(Err(e)).await;
                    return;
                }
                (Ok(conn), None) => {
                    if ready
                        .send(Ok(crate::receivers::conn::Stream::Plain(conn)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                (Ok(conn), Some(tls)) => {
                    let (tls, ready, metrics) = (tls.clone(), ready.clone(), metrics.clone());
                    tokio::spawn(async move {
                        match secure(conn, Some(&tls), GRPC_FIRST_BYTES).await {
                            Some(s) => {
                                let _ = ready.send(Ok(s)).await;
                            }
                            None => metrics.tls_failed(),
                        }
                    });
                }
            }
        }
    });
    let incoming = futures::stream::unfold(ready_rx, |mut rx| async move {
        rx.recv().await.map(|next| (next, rx))
    });
    let endpoint = cfg.endpoint.clone();
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stop.wait())
            .await
        {
            tracing::error!(%endpoint, error = %e, "OTLP/gRPC server failed");
        }
    }))
}
