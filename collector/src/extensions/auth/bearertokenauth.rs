//! `bearertokenauth`: a static token (or several, or a file of them) in a
//! header, `Authorization: Bearer <token>` by default. As a server it
//! checks requests (and, as in otelcol, establishes no identity); as a
//! client it sends the first token.

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::auth::{Authenticator, ClientAuthenticator, ServerAuthenticator};
use pipeline::client::ClientInfo;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::secret::Secret;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{header, same_secret, Watched};
use crate::extensions::{ExtensionBuilder, ExtensionFactory, Host};
use crate::receivers::Stop;

/// `bearertokenauth` config (otelcol's keys and defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenConfig {
    /// Header carrying the token.
    pub header: String,
    /// Word before the token; empty = the header holds the token alone.
    pub scheme: String,
    /// One token.
    pub token: Option<Secret>,
    /// Several tokens (any one is accepted; the first is sent).
    pub tokens: Vec<Secret>,
    /// A file of tokens, one per line, re-read when it changes.
    pub filename: Option<String>,
}

impl Default for BearerTokenConfig {
    fn default() -> Self {
        BearerTokenConfig {
            header: "Authorization".into(),
            scheme: "Bearer".into(),
            token: None,
            tokens: Vec::new(),
            filename: None,
        }
    }
}

fn parse_tokens(text: &str) -> Result<Vec<String>, String> {
    let t: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if t.is_empty() {
        return Err("holds no token".into());
    }
    Ok(t)
}

impl Validate for BearerTokenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let sources = [
            self.token.is_some(),
            !self.tokens.is_empty(),
            self.filename.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(ConfigError::new(
                "token",
                "set exactly one of token, tokens and filename",
            ));
        }
        if http::HeaderName::try_from(self.header.as_str()).is_err() {
            return Err(ConfigError::new("header", "is not a valid header name"));
        }
        if let Some(f) = &self.filename {
            Watched::load(f, parse_tokens).map_err(|e| ConfigError::new("filename", e))?;
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "bearertokenauth",
        parse: |v| Ok(Arc::new(parse_config::<BearerTokenConfig>(v)?)),
    }
}

enum Tokens {
    Fixed(Arc<Vec<String>>),
    File(Watched<Vec<String>>),
}

struct Bearer {
    header: http::HeaderName,
    scheme: String,
    tokens: Tokens,
}

impl Bearer {
    fn tokens(&self) -> Arc<Vec<String>> {
        match &self.tokens {
            Tokens::Fixed(t) => t.clone(),
            Tokens::File(w) => w.current(),
        }
    }
}

impl ServerAuthenticator for Bearer {
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Vec<(String, String)>, String> {
        let Some(v) = header(headers, &self.header) else {
            return Err(format!("missing {} header", self.header));
        };
        let given = if self.scheme.is_empty() {
            Some(v)
        } else {
            v.split_once(' ')
                .filter(|(s, _)| s.eq_ignore_ascii_case(&self.scheme))
                .map(|(_, t)| t.trim())
        };
        let Some(given) = given else {
            return Err(format!(
                "{} header is not \"{} <token>\"",
                self.header, self.scheme
            ));
        };
        // Every token is compared, so the time taken says nothing of which
        // (or whether one) matched.
        let ok = self.tokens().iter().fold(false, |ok, t| {
            same_secret(t.as_bytes(), given.as_bytes()) | ok
        });
        if ok {
            Ok(Vec::new())
        } else {
            Err("invalid bearer token".into())
        }
    }

    fn credential_headers(&self) -> Vec<http::HeaderName> {
        vec![self.header.clone()]
    }
}

impl ClientAuthenticator for Bearer {
    fn headers(
        &self,
        _client: Option<&ClientInfo>,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
        let tokens = self.tokens();
        let token = tokens.first().ok_or("no bearer token")?;
        let text = if self.scheme.is_empty() {
            token.clone()
        } else {
            format!("{} {token}", self.scheme)
        };
        let mut v = http::HeaderValue::try_from(text)
            .map_err(|_| "the bearer token is not a valid header value".to_string())?;
        v.set_sensitive(true);
        Ok(vec![(self.header.clone(), v)])
    }
}

#[async_trait]
impl ExtensionBuilder for BearerTokenConfig {
    async fn start(&self, _: &Context, _: &Host, _: Stop) -> Result<Vec<JoinHandle<()>>, String> {
        Ok(Vec::new())
    }

    fn authenticator(&self) -> Result<Option<Authenticator>, String> {
        let tokens = match (&self.token, &self.filename) {
            (Some(t), _) => Tokens::Fixed(Arc::new(vec![t.expose().to_string()])),
            (None, Some(f)) => Tokens::File(Watched::load(f, parse_tokens)?),
            (None, None) => Tokens::Fixed(Arc::new(
                self.tokens.iter().map(|t| t.expose().to_string()).collect(),
            )),
        };
        let b = Arc::new(Bearer {
            header: http::HeaderName::try_from(self.header.as_str()).map_err(|e| e.to_string())?,
            scheme: self.scheme.clone(),
            tokens,
        });
        Ok(Some(Authenticator {
            server: Some(b.clone()),
            client: Some(b),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(yaml: &str) -> Authenticator {
        parse_config::<BearerTokenConfig>(serde_yaml::from_str(yaml).unwrap())
            .unwrap()
            .authenticator()
            .unwrap()
            .unwrap()
    }

    fn with(h: &str, v: &str) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        m.insert(http::HeaderName::try_from(h).unwrap(), v.parse().unwrap());
        m
    }

    #[test]
    fn any_listed_token_passes_and_the_first_is_sent() {
        let a = auth("tokens: [one, two]\n");
        let s = a.server.unwrap();
        assert!(s.authenticate(&with("authorization", "Bearer two")).is_ok());
        assert!(s.authenticate(&with("authorization", "bearer one")).is_ok());
        for bad in ["Bearer three", "Basic one", "one", ""] {
            let e = s.authenticate(&with("authorization", bad)).unwrap_err();
            assert!(!e.contains("one") || bad == "one", "{e}");
        }
        assert!(s.authenticate(&http::HeaderMap::new()).is_err());
        let h = a.client.unwrap().headers(None).unwrap();
        assert_eq!(h[0].0, "authorization");
        assert_eq!(h[0].1, "Bearer one");
        let custom = auth("token: k\nheader: X-Token\nscheme: ''\n")
            .server
            .unwrap();
        assert!(custom.authenticate(&with("x-token", "k")).is_ok());
    }

    #[test]
    fn config_mistakes_are_named() {
        let err = |y: &str| {
            parse_config::<BearerTokenConfig>(serde_yaml::from_str(y).unwrap()).unwrap_err()
        };
        assert_eq!(err("{}").path, "token");
        assert_eq!(err("token: a\ntokens: [b]\n").path, "token");
        assert_eq!(err("filename: /nonexistent/tokens\n").path, "filename");
        assert_eq!(err("token: a\nheader: 'bad header'\n").path, "header");
    }
}
