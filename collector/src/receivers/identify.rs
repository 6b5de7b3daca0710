//! Who sent a request: the receiver's authenticator checks its headers
//! (before any body is read) and the request gets its client context — the
//! peer address, the identity, and, under `include_metadata`, its headers
//! (never the ones carrying the credential).

use std::net::SocketAddr;
use std::sync::Arc;

use pipeline::auth::{AuthConfig, Authenticators, ServerAuthenticator};
use pipeline::client::ClientInfo;
use pipeline::telemetry::Counter;

/// A protocol's authentication and context settings, resolved.
#[derive(Clone)]
pub struct Identify {
    auth: Option<Arc<dyn ServerAuthenticator>>,
    include_metadata: bool,
    hidden: Vec<http::HeaderName>,
    refused: Counter,
}

impl Identify {
    /// Resolves `auth` (named `key` in errors) against the running
    /// extensions; `refused` counts requests that fail authentication.
    pub fn new(
        auth: Option<&AuthConfig>,
        include_metadata: bool,
        all: &Authenticators,
        key: &str,
        refused: Counter,
    ) -> Result<Identify, String> {
        let auth = auth
            .map(|a| a.server(all, key))
            .transpose()
            .map_err(|e| e.to_string())?;
        let hidden = auth
            .as_ref()
            .map(|a| a.credential_headers())
            .unwrap_or_default();
        Ok(Identify {
            auth,
            include_metadata,
            hidden,
            refused,
        })
    }

    /// The client context of a request with these headers from `peer`, or
    /// why authentication refused it (counted).
    pub fn client(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Arc<ClientInfo>, String> {
        let auth = match &self.auth {
            None => Vec::new(),
            Some(a) => a
                .authenticate(headers)
                .inspect_err(|_| self.refused.add(1))?,
        };
        let mut metadata: Vec<(String, Vec<String>)> = Vec::new();
        if self.include_metadata {
            for (name, value) in headers {
                if self.hidden.contains(name) {
                    continue;
                }
                let Ok(v) = value.to_str() else { continue };
                match metadata.iter_mut().find(|(k, _)| k == name.as_str()) {
                    Some((_, vals)) => vals.push(v.to_string()),
                    None => metadata.push((name.as_str().to_string(), vec![v.to_string()])),
                }
            }
        }
        Ok(Arc::new(ClientInfo {
            addr: peer.map(|p| p.ip()),
            auth,
            metadata,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::auth::Authenticator;

    struct OnlyAlice;

    impl ServerAuthenticator for OnlyAlice {
        fn authenticate(&self, h: &http::HeaderMap) -> Result<Vec<(String, String)>, String> {
            (h.get("authorization").is_some_and(|v| v == "alice"))
                .then(|| vec![("username".to_string(), "alice".to_string())])
                .ok_or_else(|| "no".to_string())
        }

        fn credential_headers(&self) -> Vec<http::HeaderName> {
            vec![http::header::AUTHORIZATION]
        }
    }

    #[test]
    fn context_carries_identity_and_metadata_but_never_the_credential() {
        let reg = pipeline::telemetry::Registry::new();
        let refused = reg.counter("refused_total", "t", &[]);
        let mut all = std::collections::BTreeMap::new();
        all.insert(
            "a".to_string(),
            Authenticator {
                server: Some(Arc::new(OnlyAlice)),
                client: None,
            },
        );
        let cfg = AuthConfig {
            authenticator: "a".into(),
        };
        let id = Identify::new(Some(&cfg), true, &Arc::new(all), "auth", refused).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "alice".parse().unwrap());
        h.append("x-team", "red".parse().unwrap());
        h.append("x-team", "blue".parse().unwrap());
        let c = id
            .client(&h, Some("10.0.0.1:5000".parse().unwrap()))
            .unwrap();
        assert_eq!(c.auth_attribute("username"), Some("alice"));
        assert_eq!(c.metadata("x-team"), ["red", "blue"]);
        assert!(c.metadata("authorization").is_empty());
        assert_eq!(c.addr, Some("10.0.0.1".parse().unwrap()));
        h.insert("authorization", "mallory".parse().unwrap());
        assert!(id.client(&h, None).is_err());
        assert_eq!(reg.value("refused_total", &[]), Some(1.0));
        let missing = AuthConfig {
            authenticator: "b".into(),
        };
        assert!(Identify::new(
            Some(&missing),
            false,
            &Default::default(),
            "auth",
            reg.counter("x", "t", &[])
        )
        .is_err());
    }
}
