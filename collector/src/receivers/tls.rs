//! The server side of `tls` on receivers (otelcol's `configtls.ServerConfig`):
//! the certificate served, client certificates required under
//! `client_ca_file` (mTLS), versions and suites, and reloading the files
//! while running, so a renewed certificate is served without a restart and
//! without touching open connections.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use exporters::tls::{identity, pem_bytes, provider, roots, versions, PemSource};
use pipeline::component::ConfigError;
use pipeline::secret::Secret;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use super::Stop;

/// How often `client_ca_file_reload` looks at the CA file when no
/// `reload_interval` is set (otelcol watches the file instead).
const CA_RELOAD_POLL: Duration = Duration::from_secs(10);

/// `tls` on a receiver protocol.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsConfig {
    /// The certificate chain served.
    pub cert_file: Option<String>,
    /// The same, inline.
    pub cert_pem: Option<String>,
    /// Its private key.
    pub key_file: Option<String>,
    /// The same, inline.
    pub key_pem: Option<Secret>,
    /// CAs that sign client certificates: set, every client must present
    /// one they sign (mTLS).
    pub client_ca_file: Option<String>,
    /// Re-read `client_ca_file` when it changes.
    pub client_ca_file_reload: bool,
    /// Lowest TLS version (default "1.2").
    pub min_version: Option<String>,
    /// Highest TLS version (default "1.3").
    pub max_version: Option<String>,
    /// TLS 1.2 suites allowed, by Go's names (empty: rustls's defaults).
    pub cipher_suites: Vec<String>,
    /// Re-read the certificate, key and CA files this often; 0 = never.
    #[serde(with = "pipeline::duration")]
    pub reload_interval: Duration,
}

impl ServerTlsConfig {
    /// The rustls config, offering `alpn`; errors name keys under `prefix`.
    pub fn build(&self, prefix: &str, alpn: &[&[u8]]) -> Result<ServerConfig, ConfigError> {
        let provider = provider(prefix, &self.cipher_suites)?;
        let versions = versions(
            prefix,
            self.min_version.as_deref(),
            self.max_version.as_deref(),
        )?;
        let (chain, key) = identity(
            prefix,
            PemSource {
                key: format!("{prefix}.cert"),
                file: self.cert_file.as_deref(),
                pem: self.cert_pem.as_deref().map(str::as_bytes),
            },
            PemSource {
                key: format!("{prefix}.key"),
                file: self.key_file.as_deref(),
                pem: pem_bytes(&self.key_pem),
            },
            &provider,
        )?
        .ok_or_else(|| {
            ConfigError::new(
                format!("{prefix}.cert_file"),
                "is required: a TLS listener needs a certificate and key",
            )
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::new(format!("{prefix}.cipher_suites"), e.to_string()))?;
        let ca_key = format!("{prefix}.client_ca_file");
        let builder = match (PemSource {
            key: format!("{prefix}.client_ca"),
            file: self.client_ca_file.as_deref(),
            pem: None,
        })
        .certs()?
        {
            Some(certs) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(&ca_key, certs)?),
                    provider,
                )
                .build()
                .map_err(|e| ConfigError::new(&ca_key, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None if self.client_ca_file_reload => {
                return Err(ConfigError::new(
                    format!("{prefix}.client_ca_file_reload"),
                    "needs client_ca_file",
                ))
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(chain, key)
            .map_err(|e| ConfigError::new(format!("{prefix}.cert_file"), e.to_string()))?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }

    /// How often the files are looked at, if ever.
    fn reload_every(&self) -> Option<Duration> {
        if !self.reload_interval.is_zero() {
            Some(self.reload_interval)
        } else if self.client_ca_file_reload {
            Some(CA_RELOAD_POLL)
        } else {
            None
        }
    }

    /// What the files hold now, to notice a change.
    fn contents(&self) -> Vec<Option<Vec<u8>>> {
        [&self.cert_file, &self.key_file, &self.client_ca_file]
            .into_iter()
            .map(|f| f.as_ref().and_then(|f| std::fs::read(f).ok()))
            .collect()
    }
}

/// A listener's TLS: the config handshakes use now, swapped on reload.
#[derive(Clone)]
pub struct TlsServer {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsServer {
    /// Builds the config and, with a reload interval, starts watching the
    /// files until `stop`.
    pub fn start(
        cfg: &ServerTlsConfig,
        prefix: &str,
        alpn: &'static [&'static [u8]],
        stop: Stop,
    ) -> Result<TlsServer, String> {
        let built = cfg.build(prefix, alpn).map_err(|e| e.to_string())?;
        let server = TlsServer {
            current: Arc::new(RwLock::new(Arc::new(built))),
        };
        if let Some(every) = cfg.reload_every() {
            let (cfg, prefix, current) = (cfg.clone(), prefix.to_string(), server.current.clone());
            tokio::spawn(async move {
                let mut seen = cfg.contents();
                let stopped = stop.wait();
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        () = &mut stopped => return,
                    }
                    let now = cfg.contents();
                    if now == seen {
                        continue;
                    }
                    match cfg.build(&prefix, alpn) {
                        Ok(c) => {
                            *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
                            seen = now;
                            tracing::info!(key = %prefix, "TLS certificates reloaded");
                        }
                        // A file caught half-written: keep serving the old
                        // certificate and look again next time.
                        Err(e) => {
                            tracing::warn!(error = %e, "TLS reload failed; the previous certificate stays in use")
                        }
                    }
                }
            });
        }
        Ok(server)
    }

    /// Runs the server side of a handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg).accept(io).await
    }
}
