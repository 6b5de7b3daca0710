//! `api_key` (ours): each key names the tenant (and optionally the
//! source) it belongs to, so the identity a request carries comes from its
//! credential, not from what the client writes into its data. Keys come
//! inline or from a YAML file re-read when it changes; only their SHA-256
//! is kept in memory.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use pipeline::auth::{Authenticator, ServerAuthenticator};
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::secret::Secret;
use serde::Deserialize;
use sha2::Digest;
use tokio::task::JoinHandle;

use super::{header, Watched};
use crate::extensions::{ExtensionBuilder, ExtensionFactory, Host};
use crate::receivers::Stop;

/// One key and whose it is.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key (use `${env:…}`).
    pub key: Secret,
    /// The tenant it authenticates (`auth.tenant`).
    pub tenant: String,
    /// The source within the tenant (`auth.source`), if keys are per source.
    #[serde(default)]
    pub source: Option<String>,
}

/// `api_key` config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    /// Header carrying the key.
    pub header: String,
    /// Keys inline.
    pub keys: Vec<ApiKey>,
    /// A YAML file holding a list of keys in the same shape.
    pub keys_file: Option<String>,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        ApiKeyConfig {
            header: "X-API-Key".into(),
            keys: Vec::new(),
            keys_file: None,
        }
    }
}

/// Keys by their SHA-256: a lookup compares digests, never the key.
type Keys = HashMap<[u8; 32], Vec<(String, String)>>;

fn digest(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

fn index(list: &[ApiKey]) -> Result<Keys, String> {
    let mut keys = HashMap::new();
    for (i, k) in list.iter().enumerate() {
        if k.key.expose().is_empty() || k.tenant.is_empty() {
            return Err(format!("keys[{i}]: key and tenant must not be empty"));
        }
        let mut id = vec![
            ("tenant".to_string(), k.tenant.clone()),
            ("subject".to_string(), k.tenant.clone()),
        ];
        if let Some(s) = &k.source {
            id.push(("source".to_string(), s.clone()));
        }
        if keys.insert(digest(k.key.expose()), id).is_some() {
            return Err(format!("keys[{i}]: the same key is listed twice"));
        }
    }
    if keys.is_empty() {
        return Err("lists no key".into());
    }
    Ok(keys)
}

fn parse_file(text: &str) -> Result<Keys, String> {
    let list: Vec<ApiKey> = serde_yaml::from_str(text)
        .map_err(|e| format!("is not a YAML list of {{key, tenant, source}}: {e}"))?;
    index(&list)
}

impl Validate for ApiKeyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if http::HeaderName::try_from(self.header.as_str()).is_err() {
            return Err(ConfigError::new("header", "is not a valid header name"));
        }
        match (&self.keys_file, self.keys.is_empty()) {
            (Some(f), true) => {
                Watched::load(f, parse_file).map_err(|e| ConfigError::new("keys_file", e))?;
            }
            (None, false) => {
                index(&self.keys).map_err(|e| ConfigError::new("keys", e))?;
            }
            _ => {
                return Err(ConfigError::new(
                    "keys",
                    "set exactly one of keys and keys_file",
                ))
            }
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "api_key",
        parse: |v| Ok(Arc::new(parse_config::<ApiKeyConfig>(v)?)),
    }
}

enum Source {
    Fixed(Arc<Keys>),
    File(Watched<Keys>),
}

struct Server {
    header: http::HeaderName,
    keys: Source,
}

impl ServerAuthenticator for Server {
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Vec<(String, String)>, String> {
        let given = header(headers, &self.header)
            .ok_or_else(|| format!("missing {} header", self.header))?;
        let keys = match &self.keys {
            Source::Fixed(k) => k.clone(),
            Source::File(w) => w.current(),
        };
        keys.get(&digest(given.trim()))
            .cloned()
            .ok_or_else(|| format!("unknown key in {}", self.header))
    }

    fn credential_headers(&self) -> Vec<http::HeaderName> {
        vec![self.header.clone()]
    }
}

#[async_trait]
impl ExtensionBuilder for ApiKeyConfig {
    async fn start(&self, _: &Context, _: &Host, _: Stop) -> Result<Vec<JoinHandle<()>>, String> {
        Ok(Vec::new())
    }

    fn authenticator(&self) -> Result<Option<Authenticator>, String> {
        let keys = match &self.keys_file {
            Some(f) => Source::File(Watched::load(f, parse_file)?),
            None => Source::Fixed(Arc::new(index(&self.keys)?)),
        };
        let server = Server {
            header: http::HeaderName::try_from(self.header.as_str()).map_err(|e| e.to_string())?,
            keys,
        };
        Ok(Some(Authenticator {
            server: Some(Arc::new(server)),
            client: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_tenant_and_source() {
        let yaml = "keys:\n  - {key: k-acme, tenant: acme, source: chatbot}\n  - {key: k-globex, tenant: globex}\n";
        let cfg: ApiKeyConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
        let s = cfg.authenticator().unwrap().unwrap().server.unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "k-acme".parse().unwrap());
        let id = s.authenticate(&h).unwrap();
        assert!(id.contains(&("tenant".into(), "acme".into())));
        assert!(id.contains(&("source".into(), "chatbot".into())));
        h.insert("x-api-key", "k-globex".parse().unwrap());
        assert!(!s
            .authenticate(&h)
            .unwrap()
            .iter()
            .any(|(k, _)| k == "source"));
        h.insert("x-api-key", "nope".parse().unwrap());
        let e = s.authenticate(&h).unwrap_err();
        assert!(!e.contains("nope"), "the refusal quotes the key: {e}");
        assert!(s.authenticate(&http::HeaderMap::new()).is_err());
    }

    #[test]
    fn config_mistakes_are_named() {
        let err =
            |y: &str| parse_config::<ApiKeyConfig>(serde_yaml::from_str(y).unwrap()).unwrap_err();
        assert_eq!(err("{}").path, "keys");
        assert_eq!(
            err("keys: [{key: a, tenant: t}, {key: a, tenant: u}]\n").path,
            "keys"
        );
        assert_eq!(err("keys_file: /nonexistent\n").path, "keys_file");
        assert_eq!(
            err("keys: [{key: a, tenant: t, tier: gold}]\n").path,
            "keys[0].tier"
        );
    }
}
