//! Authenticators as components use them (otelcol's `auth` extensions): a
//! receiver asks one to check a request's headers before reading its body;
//! an exporter asks one for the headers to send. Extensions implement them;
//! components find them by id through [`crate::component::Context`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::client::ClientInfo;
use crate::component::ConfigError;

/// Checks incoming requests.
pub trait ServerAuthenticator: Send + Sync {
    /// The identity's attributes (`username`, `tenant`, ...) for a request
    /// with these headers, or why it is refused (never quoting a secret).
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Vec<(String, String)>, String>;

    /// The headers that carry the credential: never kept as metadata.
    fn credential_headers(&self) -> Vec<http::HeaderName>;
}

/// Decorates outgoing requests.
pub trait ClientAuthenticator: Send + Sync {
    /// Headers to add to a request carrying data sent by `client`.
    fn headers(
        &self,
        client: Option<&ClientInfo>,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String>;
}

/// What one auth extension offers.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// For receivers, if it can check requests.
    pub server: Option<Arc<dyn ServerAuthenticator>>,
    /// For exporters, if it can decorate requests.
    pub client: Option<Arc<dyn ClientAuthenticator>>,
}

/// The running auth extensions by id.
pub type Authenticators = Arc<BTreeMap<String, Authenticator>>;

/// `auth` on a receiver protocol or an exporter.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The id of the auth extension (`bearertokenauth/in`).
    pub authenticator: String,
}

fn find<'a>(
    all: &'a Authenticators,
    key: &str,
    id: &str,
) -> Result<&'a Authenticator, ConfigError> {
    all.get(id).ok_or_else(|| {
        ConfigError::new(
            key,
            format!("extension {id:?} is not an auth extension listed in service.extensions"),
        )
    })
}

impl AuthConfig {
    /// The server side of the named extension; `key` names this setting.
    pub fn server(
        &self,
        all: &Authenticators,
        key: &str,
    ) -> Result<Arc<dyn ServerAuthenticator>, ConfigError> {
        find(all, key, &self.authenticator)?
            .server
            .clone()
            .ok_or_else(|| {
                ConfigError::new(
                    key,
                    format!(
                        "{:?} cannot check incoming requests (it is client-side only)",
                        self.authenticator
                    ),
                )
            })
    }

    /// The client side of the named extension.
    pub fn client(
        &self,
        all: &Authenticators,
        key: &str,
    ) -> Result<Arc<dyn ClientAuthenticator>, ConfigError> {
        find(all, key, &self.authenticator)?
            .client
            .clone()
            .ok_or_else(|| {
                ConfigError::new(
                    key,
                    format!(
                        "{:?} cannot authenticate outgoing requests (it is server-side only)",
                        self.authenticator
                    ),
                )
            })
    }
}
