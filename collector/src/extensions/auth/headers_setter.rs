//! `headers_setter`: headers an exporter sends, each a static value or a
//! value from the client context of the data it carries (otelcol's
//! extension; only the `upsert` action, which is its default).

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::auth::{Authenticator, ClientAuthenticator};
use pipeline::client::ClientInfo;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::extensions::{ExtensionBuilder, ExtensionFactory, Host};
use crate::receivers::Stop;

/// One header.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// Header name.
    pub key: String,
    /// Only `upsert` (set, replacing a static header of the same name).
    #[serde(default = "upsert")]
    pub action: String,
    /// A fixed value.
    #[serde(default)]
    pub value: Option<String>,
    /// A `from_context` key: `metadata.<key>` (or bare), `auth.<attribute>`,
    /// `client.address`.
    #[serde(default)]
    pub from_context: Option<String>,
    /// Sent when the context has no value.
    #[serde(default)]
    pub default_value: Option<String>,
}

fn upsert() -> String {
    "upsert".into()
}

/// `headers_setter` config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSetterConfig {
    /// The headers.
    pub headers: Vec<HeaderRule>,
}

impl Validate for HeadersSetterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.headers.is_empty() {
            return Err(ConfigError::new("headers", "must list at least one header"));
        }
        for (i, h) in self.headers.iter().enumerate() {
            let at = |k: &str| format!("headers[{i}].{k}");
            if http::HeaderName::try_from(h.key.as_str()).is_err() {
                return Err(ConfigError::new(at("key"), "is not a valid header name"));
            }
            if h.action != "upsert" {
                return Err(ConfigError::new(
                    at("action"),
                    format!("{:?} is not supported: only upsert (the default)", h.action),
                ));
            }
            if h.value.is_some() == h.from_context.is_some() {
                return Err(ConfigError::new(
                    at("value"),
                    "set exactly one of value and from_context",
                ));
            }
            for v in [&h.value, &h.default_value].into_iter().flatten() {
                if http::HeaderValue::try_from(v.as_str()).is_err() {
                    return Err(ConfigError::new(at("value"), "is not a valid header value"));
                }
            }
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "headers_setter",
        parse: |v| Ok(Arc::new(parse_config::<HeadersSetterConfig>(v)?)),
    }
}

struct Setter(Vec<HeaderRule>);

impl ClientAuthenticator for Setter {
    fn headers(
        &self,
        client: Option<&ClientInfo>,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
        let mut out = Vec::new();
        for h in &self.0 {
            let v = match (&h.value, &h.from_context) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(k)) => {
                    let vals = client.map(|c| c.lookup(k)).unwrap_or_default();
                    if vals.is_empty() {
                        h.default_value.clone()
                    } else {
                        Some(vals.join(","))
                    }
                }
                (None, None) => None,
            };
            let Some(v) = v else { continue };
            let name = http::HeaderName::try_from(h.key.as_str()).map_err(|e| e.to_string())?;
            let value = http::HeaderValue::try_from(v).map_err(|_| {
                format!(
                    "the context value for {} is not a valid header value",
                    h.key
                )
            })?;
            out.push((name, value));
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtensionBuilder for HeadersSetterConfig {
    async fn start(&self, _: &Context, _: &Host, _: Stop) -> Result<Vec<JoinHandle<()>>, String> {
        Ok(Vec::new())
    }

    fn authenticator(&self) -> Result<Option<Authenticator>, String> {
        Ok(Some(Authenticator {
            server: None,
            client: Some(Arc::new(Setter(self.headers.clone()))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_the_context_or_fall_back() {
        let yaml = "headers:\n  - {key: X-Scope-OrgID, from_context: auth.tenant, default_value: anonymous}\n  - {key: X-Static, value: s}\n";
        let cfg: HeadersSetterConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
        let c = cfg.authenticator().unwrap().unwrap().client.unwrap();
        let acme = ClientInfo {
            auth: vec![("tenant".into(), "acme".into())],
            ..Default::default()
        };
        let h = c.headers(Some(&acme)).unwrap();
        assert_eq!(
            (h[0].0.as_str(), h[0].1.to_str().unwrap()),
            ("x-scope-orgid", "acme")
        );
        assert_eq!(h[1].1, "s");
        assert_eq!(c.headers(None).unwrap()[0].1, "anonymous");
        let err = |y: &str| {
            parse_config::<HeadersSetterConfig>(serde_yaml::from_str(y).unwrap()).unwrap_err()
        };
        assert_eq!(
            err("headers: [{key: a, action: delete, value: x}]\n").path,
            "headers[0].action"
        );
        assert_eq!(err("headers: [{key: a}]\n").path, "headers[0].value");
    }
}
