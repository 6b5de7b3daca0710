//! Clients built from a `tls` config: reqwest for the HTTP exporters, and a
//! tonic channel whose connector runs the TLS handshake itself, so that
//! every `tls` key (skip-verify, name override, client certificates)
//! applies to gRPC as it does to HTTP.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use pipeline::component::ConfigError;
use tonic::transport::{Channel, Endpoint, Uri};

use super::client::{ClientTlsConfig, Target};

/// Time to open a TCP connection and finish a TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP client for `targets`, sending `headers` with every request.
pub fn http_client(
    tls: &ClientTlsConfig,
    targets: &[&Target],
    headers: http::HeaderMap,
) -> Result<reqwest::Client, ConfigError> {
    let mut b = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(CONNECT_TIMEOUT);
    if targets.iter().any(|t| t.tls) {
        b = b.use_preconfigured_tls(tls.rustls(&[b"h2", b"http/1.1"])?);
    }
    b.build()
        .map_err(|e| ConfigError::new("", format!("cannot build HTTP client: {e}")))
}

/// A lazily connecting gRPC channel to `target`.
pub fn grpc_channel(tls: &ClientTlsConfig, target: &Target) -> Result<Channel, ConfigError> {
    // tonic sees http:// either way: TLS, when wanted, is ours to run.
    let plain = target.url.replacen("https://", "http://", 1);
    let endpoint = Endpoint::from_shared(plain)
        .map_err(|e| ConfigError::new("endpoint", e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if !target.tls {
        return Ok(endpoint.connect_lazy());
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.rustls(&[b"h2"])?));
    let tls = tls.clone();
    let connect = tower::service_fn(move |uri: Uri| {
        let (connector, tls) = (connector.clone(), tls.clone());
        async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = tls
                .server_name(&host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let handshake = async {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                connector.connect(name, tcp).await
            };
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "TLS connection to {host}:{port} not made within {CONNECT_TIMEOUT:?}"
                        ),
                    )
                })?
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("TLS connection to {host}:{port}: {e}"))
                })?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}
