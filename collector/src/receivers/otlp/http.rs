//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}` with protobuf or JSON bodies,
//! optionally gzip/zstd/deflate compressed, answered per the OTLP spec.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use pipeline::client::ClientInfo;
use pipeline::rpc_status::RpcStatus;
use pipeline::{BoxConsumer, ConsumeError, Signal};
use prost::Message;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::config::{HttpConfig, HTTP_ALPN};
use crate::receivers::admission::{Admission, Refused};
use crate::receivers::conn::{secure, Acceptor, Activity, Limits, Peer};
use crate::receivers::identify::Identify;
use crate::receivers::tls::TlsServer;
use crate::receivers::{bind, ReceiverMetrics, SignalConsumers, Stop};

/// Seconds a refused client is asked to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "1";

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Proto,
    Json,
}

struct Endpoint {
    signal: Signal,
    consumer: BoxConsumer,
    metrics: ReceiverMetrics,
    limit: usize,
    response_headers: HeaderMap,
    /// Time to read the body once the headers are in.
    body_deadline: Duration,
    /// Time for the pipeline to take the request.
    write_timeout: Duration,
    admission: Admission,
    identify: Identify,
}

/// Why a request was refused: its HTTP status, `google.rpc.Code` and message.
struct Refusal {
    status: StatusCode,
    code: i32,
    message: String,
    /// Seconds to wait, sent as `Retry-After` (429 and 503 only).
    retry_after: Option<u64>,
}

impl Refusal {
    fn bad_request(message: String) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: 3,
            message,
            retry_after: None,
        }
    }

    fn too_large(message: String) -> Refusal {
        Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: 8,
            message,
            retry_after: None,
        }
    }

    fn body_too_large(limit: usize) -> Refusal {
        Refusal::too_large(format!(
            "request body exceeds max_request_body_size ({limit} bytes)"
        ))
    }

    /// The response, carrying `google.rpc.Status` in the request's encoding.
    fn into_response(self, enc: Encoding) -> Response {
        let s = RpcStatus {
            code: self.code,
            message: self.message,
            details: Vec::new(),
        };
        let (body, ctype) = match enc {
            Encoding::Proto => (s.encode_to_vec(), PROTOBUF),
            Encoding::Json => (serde_json::to_vec(&s).unwrap_or_default(), JSON),
        };
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        let wait = match (self.retry_after, self.status) {
            (Some(s), _) => Some(HeaderValue::from(s)),
            (None, StatusCode::SERVICE_UNAVAILABLE) => {
                Some(HeaderValue::from_static(RETRY_AFTER_SECONDS))
            }
            _ => None,
        };
        if let Some(w) = wait {
            r.headers_mut().insert(header::RETRY_AFTER, w);
        }
        r
    }
}

/// Decompresses `body` per `Content-Encoding`, refusing output over `limit`.
fn decompress(body: Bytes, encoding: &str, limit: usize) -> Result<Bytes, Refusal> {
    let reader: Box<dyn Read> = match encoding {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        "zstd" => match zstd::stream::read::Decoder::new(&body[..]) {
            Ok(d) => Box::new(d),
            Err(e) => return Err(Refusal::bad_request(format!("invalid zstd body: {e}"))),
        },
        other => {
            return Err(Refusal::bad_request(format!(
                "unsupported Content-Encoding {other:?}: use gzip, zstd, deflate or none"
            )))
        }
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    match reader.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(Refusal::body_too_large(limit)),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(Refusal::bad_request(format!(
            "invalid {encoding} body: {e}"
        ))),
    }
}

/// Reads and drops the rest of a refused body (up to 4× the limit, 5 s), so
/// a client still sending it gets to read our 413 instead of a broken pipe.
async fn discard<B>(mut body: B, limit: usize)
where
    B: http_body::Body + Unpin,
{
    let cap = limit.saturating_mul(4).max(1 << 20);
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, bytes::Buf::remaining);
            if seen > cap {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

/// The request's encoding from its `Content-Type`.
fn encoding_of(req: &Request) -> Result<Encoding, Refusal> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match ctype.as_str() {
        PROTOBUF | "application/protobuf" => Ok(Encoding::Proto),
        JSON => Ok(Encoding::Json),
        _ => Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: 3,
            message: format!("unsupported Content-Type {ctype:?}: use {PROTOBUF} or {JSON}"),
            retry_after: None,
        }),
    }
}

impl Endpoint {
    async fn handle(&self, req: Request) -> Response {
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        // Credentials first, on the headers alone: a refused client's body
        // is never read.
        let client = match self.identify.client(req.headers(), peer) {
            Ok(c) => c,
            Err(message) => {
                let enc = encoding_of(&req).unwrap_or(Encoding::Proto);
                let mut r = Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    code: 16,
                    message,
                    retry_after: None,
                }
                .into_response(enc);
                r.headers_mut().extend(self.response_headers.clone());
                return r;
            }
        };
        let (mut resp, refused_by_pipeline) = match encoding_of(&req) {
            Err(r) => (r.into_response(Encoding::Proto), false),
            Ok(enc) => match self.answer(req, enc, client).await {
                Ok(r) => (r, false),
                Err((r, by_pipeline)) => (r.into_response(enc), by_pipeline),
            },
        };
        if resp.status() != StatusCode::OK && !refused_by_pipeline {
            self.metrics.malformed();
        }
        resp.headers_mut().extend(self.response_headers.clone());
        resp
    }

    /// Reads, checks and delivers one request; on refusal, says whether the
    /// pipeline refused it (already counted by item) or the input was bad.
    async fn answer(
        &self,
        req: Request,
        enc: Encoding,
        client: Arc<ClientInfo>,
    ) -> Result<Response, (Refusal, bool)> {
        let bad = |r: Refusal| (r, false);
        let content_encoding = req
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limit as u64) {
            discard(req.into_body(), self.limit).await;
            return Err(bad(Refusal::body_too_large(self.limit)));
        }
        let mut body = req.into_body();
        let collected = tokio::time::timeout(
            self.body_deadline,
            Limited::new(&mut body, self.limit).collect(),
        )
        .await
        .map_err(|_| {
            bad(Refusal {
                status: StatusCode::REQUEST_TIMEOUT,
                code: 4,
                message: format!(
                    "request body not received within {:?} (body_read_timeout / read_timeout)",
                    self.body_deadline
                ),
                retry_after: None,
            })
        })?;
        let body = match collected {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                discard(body, self.limit).await;
                return Err(bad(Refusal::body_too_large(self.limit)));
            }
            Err(e) => {
                return Err(bad(Refusal::bad_request(format!(
                    "reading request body: {e}"
                ))))
            }
        };
        let body = decompress(body, &content_encoding, self.limit).map_err(bad)?;
        let proto = match enc {
            Encoding::Proto => body,
            Encoding::Json => {
                // Deserializing builds every message at once: refuse before.
                let estimate = super::json::decoded_estimate(&body);
                if estimate > self.admission.limit() {
                    return Err(bad(Refusal::too_large(format!(
                        "OTLP/JSON request too large once decoded: about {} MiB, over admission.request_limit_mib ({} MiB)",
                        estimate >> 20,
                        self.admission.limit() >> 20
                    ))));
                }
                super::json::to_proto(self.signal, &body)
                    .map_err(|m| bad(Refusal::bad_request(m)))?
            }
        };
        let (mut batch, _held) = self
            .admission
            .admit(self.signal, proto)
            .map_err(|r| match r {
                Refused::Busy { message, items } => {
                    self.metrics.refused(self.signal, items);
                    (refusal(ConsumeError::Retryable(message)), true)
                }
                Refused::TooLarge(m) => bad(Refusal::too_large(m)),
                Refused::Invalid(m) => bad(Refusal::bad_request(m)),
            })?;
        for r in &mut batch.requests {
            r.client = Some(client.clone());
        }
        if batch.items() > 0 {
            let delivered = tokio::time::timeout(
                self.write_timeout,
                self.metrics.deliver(&self.consumer, batch),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ConsumeError::Retryable(format!(
                    "the pipeline did not take the request within write_timeout ({:?})",
                    self.write_timeout
                )))
            });
            delivered.map_err(|e| (refusal(e), true))?;
        }
        let (body, ct) = match enc {
            Encoding::Proto => (Vec::new(), PROTOBUF),
            Encoding::Json => (b"{}".to_vec(), JSON),
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        Ok(r)
    }
}

fn refusal(e: ConsumeError) -> Refusal {
    match e {
        ConsumeError::Retryable(message) => Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: 14,
            message,
            retry_after: None,
        },
        ConsumeError::Permanent(m) => Refusal::bad_request(m),
        ConsumeError::Throttled {
            message,
            retry_after,
        } => Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: 8,
            message,
            // Whole seconds, rounded up: a client told 0 would come straight back.
            retry_after: Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)),
        },
    }
}

/// Binds the HTTP endpoint and serves until `stop`.
pub async fn serve(
    cfg: &HttpConfig,
    consumers: SignalConsumers,
    metrics: ReceiverMetrics,
    admission: Admission,
    identify: Identify,
    stop: Stop,
) -> Result<JoinHandle<()>, String> {
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| TlsServer::start(t, "protocols.http.tls", HTTP_ALPN, stop.clone()))
        .transpose()?;
    let listener = bind(&cfg.endpoint).await?;
    let mut response_headers = HeaderMap::new();
    for (k, v) in &cfg.response_headers {
        response_headers.insert(
            http::HeaderName::try_from(k.as_str()).expect("validated"),
            HeaderValue::try_from(v.as_str()).expect("validated"),
        );
    }
    let mut router = Router::new();
    let body_deadline = match cfg.read_timeout {
        t if t.is_zero() => cfg.body_read_timeout,
        t => t.min(cfg.body_read_timeout),
    };
    for (signal, path) in [
        (Signal::Traces, &cfg.traces_url_path),
        (Signal::Metrics, &cfg.metrics_url_path),
        (Signal::Logs, &cfg.logs_url_path),
    ] {
        let Some(consumer) = consumers.get(signal) else {
            continue;
        };
        let ep = Arc::new(Endpoint {
            signal,
            consumer: consumer.clone(),
            metrics: metrics.clone(),
            limit: cfg.max_request_body_size as usize,
            response_headers: response_headers.clone(),
            body_deadline,
            write_timeout: cfg.write_timeout,
            admission: admission.clone(),
            identify: identify.clone(),
        });
        router = router.route(
            path,
            post(move |req: Request| async move { ep.handle(req).await }),
        );
    }
    let router = router
        .method_not_allowed_fallback(|| async {
            Refusal {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: 12,
                message: "only POST is allowed".into(),
                retry_after: None,
            }
            .into_response(Encoding::Proto)
        })
        .fallback(|req: Request| async move {
            Refusal {
                status: StatusCode::NOT_FOUND,
                code: 5,
                message: format!("no OTLP endpoint at {}", req.uri().path()),
                retry_after: None,
            }
            .into_response(Encoding::Proto)
        });
    let header_timeout = match cfg.read_timeout {
        t if t.is_zero() => cfg.read_header_timeout,
        t => t.min(cfg.read_header_timeout),
    };
    let limits = Limits {
        max_connections: cfg.max_connections,
        first_bytes: header_timeout,
    };
    let acceptor = Acceptor::new(listener, &limits, metrics.refused_connections());
    let server = Server {
        router,
        header_timeout,
        idle_timeout: cfg.idle_timeout,
        tls,
        metrics,
    };
    let endpoint = cfg.endpoint.clone();
    Ok(tokio::spawn(async move {
        if let Err(e) = server.run(acceptor, stop).await {
            tracing::error!(%endpoint, error = %e, "OTLP/HTTP server failed");
        }
    }))
}

/// Serves connections with hyper directly: `axum::serve` builds hyper
/// without a timer, so hyper's header-read timeout never fires there.
struct Server {
    router: Router,
    header_timeout: Duration,
    idle_timeout: Duration,
    tls: Option<TlsServer>,
    metrics: ReceiverMetrics,
}

impl Server {
    async fn run(self, acceptor: Acceptor, stop: Stop) -> std::io::Result<()> {
        let mut builder = AutoBuilder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_LIST_SIZE);
        let builder = Arc::new(builder);
        // Every connection task holds a sender; when all are gone, every
        // connection has finished its requests and closed.
        let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
        let stopped = stop.clone().wait();
        tokio::pin!(stopped);
        loop {
            let conn = tokio::select! {
                c = acceptor.accept() => c?,
                () = &mut stopped => break,
            };
            let activity = conn.activity();
            let peer = Peer(conn.peer());
            let router = self.router.clone();
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(peer);
                let busy = InProgress::new(activity.clone());
                let router = router.clone();
                async move {
                    let resp = router.oneshot(req.map(Body::new)).await;
                    drop(busy);
                    resp
                }
            });
            let (builder, stop, open) = (builder.clone(), stop.clone(), open_tx.clone());
            let idle_timeout = self.idle_timeout;
            let (tls, metrics, header_timeout) =
                (self.tls.clone(), self.metrics.clone(), self.header_timeout);
            tokio::spawn(async move {
                let activity = conn.activity();
                let Some(conn) = secure(conn, tls.as_ref(), header_timeout).await else {
                    metrics.tls_failed();
                    drop(open);
                    return;
                };
                let served = builder.serve_connection(TokioIo::new(conn), svc);
                tokio::pin!(served);
                let stopped = stop.wait();
                tokio::pin!(stopped);
                let mut closing = false;
                let tick = if idle_timeout.is_zero() {
                    Duration::from_secs(3600)
                } else {
                    (idle_timeout / 4).max(Duration::from_millis(50))
                };
                loop {
                    tokio::select! {
                        _ = served.as_mut() => break,
                        () = &mut stopped, if !closing => {
                            served.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        () = tokio::time::sleep(tick), if !closing && !idle_timeout.is_zero() => {
                            if activity.idle_for() >= idle_timeout {
                                served.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                    }
                }
                drop(open);
            });
        }
        drop(open_tx);
        let _ = all_closed.recv().await;
        Ok(())
    }
}

/// Largest HTTP/2 header block accepted (HTTP/1's is bounded by hyper's
/// read buffer, about 400 KiB).
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Marks a request in progress on its connection until dropped (also when
/// the client goes away mid-request and the future is dropped).
struct InProgress(Activity);

impl InProgress {
    fn new(a: Activity) -> InProgress {
        a.begin();
        InProgress(a)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.end();
    }
}
