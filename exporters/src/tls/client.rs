//! The client side of `tls` (otelcol's `configtls.ClientConfig`): which
//! endpoints speak TLS, which roots are trusted, client certificates, and
//! the two escape hatches (`insecure_skip_verify`, `server_name_override`).

use std::sync::{Arc, OnceLock};

use pipeline::component::ConfigError;
use pipeline::secret::Secret;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;

use super::{identity, pem_bytes, provider, roots, versions, PemSource};

/// `tls` on an exporter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// Plaintext for a `host:port` endpoint, unless a CA is given (otelcol).
    pub insecure: bool,
    /// Accept any server certificate (encrypts, does not authenticate).
    pub insecure_skip_verify: bool,
    /// CA bundle that signs the server's certificate.
    pub ca_file: Option<String>,
    /// The same, inline.
    pub ca_pem: Option<String>,
    /// Trust the system's roots as well as `ca_file`.
    pub include_system_ca_certs_pool: bool,
    /// Client certificate (for a server that asks for one).
    pub cert_file: Option<String>,
    /// The same, inline.
    pub cert_pem: Option<String>,
    /// The client certificate's key.
    pub key_file: Option<String>,
    /// The same, inline.
    pub key_pem: Option<Secret>,
    /// Name the server's certificate is checked against (and sent as SNI
    /// where the client controls it: `otlp`).
    pub server_name_override: Option<String>,
    /// Lowest TLS version (default "1.2").
    pub min_version: Option<String>,
    /// Highest TLS version (default "1.3").
    pub max_version: Option<String>,
    /// TLS 1.2 suites allowed, by Go's names (empty: rustls's defaults).
    pub cipher_suites: Vec<String>,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://` or `https://` URL, without a trailing slash.
    pub url: String,
    /// Whether the connection speaks TLS.
    pub tls: bool,
}

impl ClientTlsConfig {
    fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_pem.is_some()
    }

    /// The first key set that only means something over TLS.
    fn tls_only_key(&self) -> Option<&'static str> {
        [
            ("ca_file", self.ca_file.is_some()),
            ("ca_pem", self.ca_pem.is_some()),
            ("cert_file", self.cert_file.is_some()),
            ("cert_pem", self.cert_pem.is_some()),
            ("key_file", self.key_file.is_some()),
            ("key_pem", self.key_pem.is_some()),
            ("insecure_skip_verify", self.insecure_skip_verify),
            ("server_name_override", self.server_name_override.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set)
        .map(|(k, _)| k)
    }

    /// Resolves `endpoint` (named `key` in errors): `https://` is TLS,
    /// `http://` plaintext, and a bare `host:port` is TLS unless
    /// `insecure` is set without a CA (otelcol's rule).
    pub fn resolve(&self, key: &str, endpoint: &str) -> Result<Target, ConfigError> {
        if endpoint.is_empty() {
            return Err(ConfigError::new(key, "is required"));
        }
        let (url, tls) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (format!("https://{rest}"), true)
        } else if endpoint.starts_with("http://") {
            if let Some(k) = self.tls_only_key() {
                return Err(ConfigError::new(
                    format!("tls.{k}"),
                    format!("applies only to TLS, and {key} is an http:// URL: use https:// or remove tls.{k}"),
                ));
            }
            (endpoint.to_string(), false)
        } else if endpoint.contains("://") {
            return Err(ConfigError::new(
                key,
                "must be host:port or an http:// or https:// URL",
            ));
        } else if self.insecure && !self.has_ca() {
            if let Some(k) = self.tls_only_key() {
                return Err(ConfigError::new(
                    format!("tls.{k}"),
                    "applies only to TLS, and tls.insecure: true without a CA means plaintext",
                ));
            }
            (format!("http://{endpoint}"), false)
        } else {
            (format!("https://{endpoint}"), true)
        };
        if tls {
            self.rustls(&[])?;
        }
        Ok(Target {
            url: url.trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// The rustls client config, offering `alpn` protocols.
    pub fn rustls(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, ConfigError> {
        let provider = provider("tls", &self.cipher_suites)?;
        let versions = versions(
            "tls",
            self.min_version.as_deref(),
            self.max_version.as_deref(),
        )?;
        let ca = PemSource {
            key: "tls.ca".into(),
            file: self.ca_file.as_deref(),
            pem: self.ca_pem.as_deref().map(str::as_bytes),
        }
        .certs()?;
        let mut trusted = match &ca {
            Some(certs) => roots("tls.ca_file", certs.clone())?,
            None => rustls::RootCertStore::empty(),
        };
        if ca.is_none() || self.include_system_ca_certs_pool {
            trusted.add_parsable_certificates(system_roots().iter().cloned());
        }
        if trusted.is_empty() && !self.insecure_skip_verify {
            return Err(ConfigError::new(
                "tls.ca_file",
                "is required: this system has no root certificates to verify the server with",
            ));
        }
        let server_name = self
            .server_name_override
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_string()).map_err(|e| {
                    ConfigError::new(
                        "tls.server_name_override",
                        format!("is not a host name: {e}"),
                    )
                })
            })
            .transpose()?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::new("tls.cipher_suites", e.to_string()))?;
        let builder = if self.insecure_skip_verify || server_name.is_some() {
            let inner = if self.insecure_skip_verify {
                None
            } else {
                Some(
                    WebPkiServerVerifier::builder_with_provider(
                        Arc::new(trusted),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| ConfigError::new("tls.ca_file", e.to_string()))?,
                )
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    inner,
                    server_name,
                    provider: provider.clone(),
                }))
        } else {
            builder.with_root_certificates(trusted)
        };
        let id = identity(
            "tls",
            PemSource {
                key: "tls.cert".into(),
                file: self.cert_file.as_deref(),
                pem: self.cert_pem.as_deref().map(str::as_bytes),
            },
            PemSource {
                key: "tls.key".into(),
                file: self.key_file.as_deref(),
                pem: pem_bytes(&self.key_pem),
            },
            &provider,
        )?;
        let mut cfg = match id {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::new("tls.cert_file", e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }

    /// The name sent as SNI for `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name_override.as_deref().unwrap_or(host);
        ServerName::try_from(
            name.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| format!("{name:?} is not a valid server name: {e}"))
    }
}

/// The system's trusted roots, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's root certificates");
        }
        found.certs
    })
}

/// Checks the server's certificate against another name than the one
/// dialled, or not at all (`insecure_skip_verify`: `inner` is `None`);
/// handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    server_name: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.inner {
            None => Ok(ServerCertVerified::assertion()),
            Some(v) => v.verify_server_cert(
                end_entity,
                intermediates,
                self.server_name.as_ref().unwrap_or(server_name),
                ocsp_response,
                now,
            ),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
