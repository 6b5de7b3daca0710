//! TLS with otelcol's `tls` keys, on rustls: what clients (exporters) and
//! servers (receivers) share — protocol versions, cipher suites by Go's
//! names, and certificates and keys read from files or inline PEM.

pub mod client;
pub mod connect;

use std::sync::Arc;

use pipeline::component::ConfigError;
use pipeline::secret::Secret;
use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::ClientTlsConfig;

/// Parses otelcol's version string; rustls has no TLS 1.0 or 1.1.
fn version(key: &str, v: &str) -> Result<&'static SupportedProtocolVersion, ConfigError> {
    match v {
        "1.2" => Ok(&rustls::version::TLS12),
        "1.3" => Ok(&rustls::version::TLS13),
        "1.0" | "1.1" => Err(ConfigError::new(
            key,
            format!("TLS {v} is not supported (it is obsolete and rustls does not implement it): use \"1.2\" or \"1.3\""),
        )),
        other => Err(ConfigError::new(
            key,
            format!("unknown TLS version {other:?}: use \"1.2\" or \"1.3\""),
        )),
    }
}

/// The versions between `min_version` (default 1.2, as otelcol) and
/// `max_version` (default 1.3); keys are named under `prefix`.
pub fn versions(
    prefix: &str,
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
    let min = version(&format!("{prefix}.min_version"), min.unwrap_or("1.2"))?;
    let max = version(&format!("{prefix}.max_version"), max.unwrap_or("1.3"))?;
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    let (lo, hi) = (
        all.iter().position(|v| *v == min).unwrap_or(0),
        all.iter().position(|v| *v == max).unwrap_or(1),
    );
    if lo > hi {
        return Err(ConfigError::new(
            format!("{prefix}.min_version"),
            "is above max_version",
        ));
    }
    Ok(all[lo..=hi].to_vec())
}

/// Go's names for the suites rustls implements (TLS 1.3 first).
const SUITES: &[(&str, CipherSuite)] = &[
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The ring provider, its TLS 1.2 suites cut to `cipher_suites` when given.
/// As in Go, TLS 1.3 suites stay on unless the list names some of them.
pub fn provider(prefix: &str, names: &[String]) -> Result<Arc<CryptoProvider>, ConfigError> {
    let mut p = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(Arc::new(p));
    }
    let mut wanted = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match SUITES.iter().find(|(n, _)| n == name) {
            Some((_, s)) => wanted.push(*s),
            None => {
                let known: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
                return Err(ConfigError::new(
                    format!("{prefix}.cipher_suites[{i}]"),
                    format!(
                        "{name:?} is not a suite this build implements (no CBC, RSA key exchange or 3DES suites); use one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    let names_tls13 = p
        .cipher_suites
        .iter()
        .any(|s| s.tls13().is_some() && wanted.contains(&s.suite()));
    p.cipher_suites
        .retain(|s| wanted.contains(&s.suite()) || (s.tls13().is_some() && !names_tls13));
    Ok(Arc::new(p))
}

/// Where a PEM item comes from: `<name>_file` or `<name>_pem`, not both.
pub struct PemSource<'a> {
    /// The key's base name under its prefix (`tls.cert`).
    pub key: String,
    /// `<key>_file`.
    pub file: Option<&'a str>,
    /// `<key>_pem`.
    pub pem: Option<&'a [u8]>,
}

impl PemSource<'_> {
    /// The PEM text, or `None` when neither key is set.
    fn read(&self) -> Result<Option<(String, Vec<u8>)>, ConfigError> {
        match (self.file, self.pem) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                format!("{}_pem", self.key),
                format!("set only one of {0}_file and {0}_pem", self.key),
            )),
            (Some(path), None) => {
                let key = format!("{}_file", self.key);
                std::fs::read(path)
                    .map(|b| Some((key.clone(), b)))
                    .map_err(|e| ConfigError::new(key, format!("cannot read {path}: {e}")))
            }
            (None, Some(pem)) => Ok(Some((format!("{}_pem", self.key), pem.to_vec()))),
            (None, None) => Ok(None),
        }
    }

    /// The certificates it holds; an error when set but holding none.
    pub fn certs(&self) -> Result<Option<Vec<CertificateDer<'static>>>, ConfigError> {
        let Some((key, pem)) = self.read()? else {
            return Ok(None);
        };
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError::new(&key, format!("is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ConfigError::new(
                key,
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
        Ok(Some(certs))
    }

    /// The private key it holds.
    pub fn key(&self) -> Result<Option<PrivateKeyDer<'static>>, ConfigError> {
        let Some((key, pem)) = self.read()? else {
            return Ok(None);
        };
        PrivateKeyDer::from_pem_slice(&pem).map(Some).map_err(|e| {
            ConfigError::new(
                key,
                format!("holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            )
        })
    }
}

/// A certificate chain and its private key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A certificate chain and its key, checked to belong together.
pub fn identity(
    prefix: &str,
    cert: PemSource<'_>,
    key: PemSource<'_>,
    provider: &CryptoProvider,
) -> Result<Option<Identity>, ConfigError> {
    match (cert.certs()?, key.key()?) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::new(
            format!("{prefix}.key_file"),
            "is required with cert_file (or cert_pem)",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            format!("{prefix}.cert_file"),
            "is required with key_file (or key_pem)",
        )),
        (Some(chain), Some(k)) => {
            rustls::sign::CertifiedKey::from_der(chain.clone(), k.clone_key(), provider).map_err(
                |e| {
                    ConfigError::new(
                        format!("{prefix}.key_file"),
                        format!("does not fit the certificate: {e}"),
                    )
                },
            )?;
            Ok(Some((chain, k)))
        }
    }
}

/// A root store from a CA bundle.
pub fn roots(
    key: &str,
    certs: Vec<CertificateDer<'static>>,
) -> Result<rustls::RootCertStore, ConfigError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        store.add(c).map_err(|e| {
            ConfigError::new(key, format!("holds a certificate rustls refuses: {e}"))
        })?;
    }
    Ok(store)
}

/// The bytes of an optional inline PEM secret.
pub fn pem_bytes(s: &Option<Secret>) -> Option<&[u8]> {
    s.as_ref().map(|s| s.expose().as_bytes())
}

#[cfg(test)]
mod tests;
