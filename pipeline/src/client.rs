//! Who sent a request (otelcol's `client.Info`): the peer address, what an
//! authenticator established, and the request headers a receiver keeps
//! under `include_metadata`. Processors read it through `from_context`
//! keys; `batch` keeps requests apart by its `metadata_keys`.

use std::net::IpAddr;

/// A request's client context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientInfo {
    /// The client's address.
    pub addr: Option<IpAddr>,
    /// Attributes the authenticator set (`username`, `tenant`, ...); empty
    /// without authentication.
    pub auth: Vec<(String, String)>,
    /// Kept headers (gRPC metadata), names lower-case, in arrival order.
    pub metadata: Vec<(String, Vec<String>)>,
}

impl ClientInfo {
    /// The values of metadata `key` (any case); empty when absent.
    pub fn metadata(&self, key: &str) -> &[String] {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// An authentication attribute.
    pub fn auth_attribute(&self, name: &str) -> Option<&str> {
        self.auth
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Resolves a `from_context` key as otelcol does: `client.address`,
    /// `auth.<attribute>`, `metadata.<key>`, or a bare metadata key.
    pub fn lookup(&self, key: &str) -> Vec<String> {
        if key == "client.address" {
            return self.addr.map(|a| a.to_string()).into_iter().collect();
        }
        if let Some(attr) = key.strip_prefix("auth.") {
            return self
                .auth_attribute(attr)
                .map(str::to_string)
                .into_iter()
                .collect();
        }
        let md = key.strip_prefix("metadata.").unwrap_or(key);
        self.metadata(md).to_vec()
    }

    /// Only the metadata `keys` (what `batch` with `metadata_keys` passes on).
    pub fn only_metadata(&self, keys: &[String]) -> ClientInfo {
        ClientInfo {
            addr: None,
            auth: Vec::new(),
            metadata: keys
                .iter()
                .filter_map(|k| {
                    let v = self.metadata(k);
                    (!v.is_empty()).then(|| (k.to_ascii_lowercase(), v.to_vec()))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_context_keys_resolve_as_otelcol() {
        let c = ClientInfo {
            addr: Some("10.0.0.7".parse().unwrap()),
            auth: vec![("tenant".into(), "acme".into())],
            metadata: vec![("x-tenant".into(), vec!["a".into(), "b".into()])],
        };
        assert_eq!(c.lookup("client.address"), ["10.0.0.7"]);
        assert_eq!(c.lookup("auth.tenant"), ["acme"]);
        assert!(c.lookup("auth.username").is_empty());
        assert_eq!(c.lookup("metadata.X-Tenant"), ["a", "b"]);
        assert_eq!(c.lookup("x-tenant"), ["a", "b"]);
        let kept = c.only_metadata(&["X-Tenant".into(), "absent".into()]);
        assert_eq!(
            kept.metadata,
            vec![("x-tenant".into(), vec!["a".into(), "b".into()])]
        );
        assert!(kept.auth.is_empty() && kept.addr.is_none());
    }
}
