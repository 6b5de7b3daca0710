//! `basicauth`: HTTP basic authentication. As a server it checks users
//! against an htpasswd list (file or inline; bcrypt, `{SHA}` or plain
//! entries) and makes the user name the request's identity
//! (`auth.username`); as a client it sends `client_auth`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use pipeline::auth::{Authenticator, ClientAuthenticator, ServerAuthenticator};
use pipeline::client::ClientInfo;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::secret::Secret;
use serde::Deserialize;
use sha2::Digest;
use tokio::task::JoinHandle;

use super::{header, same_secret, Watched};
use crate::extensions::{ExtensionBuilder, ExtensionFactory, Host};
use crate::receivers::Stop;

/// `htpasswd`: where the users are.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    /// An htpasswd file, re-read when it changes.
    pub file: Option<String>,
    /// htpasswd lines inline.
    pub inline: Option<Secret>,
}

/// `client_auth`: what a client sends.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// User name.
    pub username: String,
    /// Password (use `${env:…}`).
    pub password: Secret,
}

/// `basicauth` config (otelcol's keys).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    /// Users a server accepts.
    pub htpasswd: Option<Htpasswd>,
    /// Credentials a client sends.
    pub client_auth: Option<ClientAuth>,
}

/// One htpasswd entry's password check.
#[derive(Clone)]
enum Hash {
    Bcrypt(String),
    Sha1(Vec<u8>),
    Plain(String),
}

/// Users by name.
type Users = HashMap<String, Hash>;

fn parse_users(text: &str) -> Result<Users, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {}: not user:password", i + 1));
        };
        let h = if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            Hash::Bcrypt(hash.to_string())
        } else if let Some(b64) = hash.strip_prefix("{SHA}") {
            Hash::Sha1(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| format!("line {}: {{SHA}} entry is not base64", i + 1))?,
            )
        } else if hash.starts_with("$apr1$")
            || hash.starts_with("$1$")
            || hash.starts_with("$5$")
            || hash.starts_with("$6$")
        {
            return Err(format!(
                "line {}: this hash kind is not supported; use bcrypt (htpasswd -B), {{SHA}} or plain",
                i + 1
            ));
        } else {
            Hash::Plain(hash.to_string())
        };
        users.insert(user.to_string(), h);
    }
    if users.is_empty() {
        return Err("lists no user".into());
    }
    Ok(users)
}

impl Validate for BasicAuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.htpasswd.is_none() && self.client_auth.is_none() {
            return Err(ConfigError::new(
                "htpasswd",
                "set htpasswd (server) or client_auth (client)",
            ));
        }
        if let Some(h) = &self.htpasswd {
            match (&h.file, &h.inline) {
                (Some(f), None) => {
                    Watched::load(f, parse_users)
                        .map_err(|e| ConfigError::new("htpasswd.file", e))?;
                }
                (None, Some(t)) => {
                    parse_users(t.expose()).map_err(|e| ConfigError::new("htpasswd.inline", e))?;
                }
                _ => {
                    return Err(ConfigError::new(
                        "htpasswd",
                        "set exactly one of file and inline",
                    ))
                }
            }
        }
        if let Some(c) = &self.client_auth {
            if c.username.contains(':') {
                return Err(ConfigError::new(
                    "client_auth.username",
                    "must not contain ':'",
                ));
            }
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "basicauth",
        parse: |v| Ok(Arc::new(parse_config::<BasicAuthConfig>(v)?)),
    }
}

enum Source {
    Fixed(Arc<Users>),
    File(Watched<Users>),
}

/// Credentials already checked, so a bcrypt entry (tens of ms each) is
/// checked once per password, not once per request.
const VERIFIED_CAP: usize = 1024;

struct Server {
    users: Source,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Server {
    fn check(&self, user: &str, password: &str) -> bool {
        let users = match &self.users {
            Source::Fixed(u) => u.clone(),
            Source::File(w) => w.current(),
        };
        let Some(hash) = users.get(user) else {
            return false;
        };
        match hash {
            Hash::Plain(p) => same_secret(p.as_bytes(), password.as_bytes()),
            Hash::Sha1(d) => same_secret(d, &sha1::Sha1::digest(password.as_bytes())),
            Hash::Bcrypt(h) => {
                // Keyed by user, password and the entry, so a changed entry
                // is checked anew.
                let mut key = sha2::Sha256::new();
                for part in [user, password, h] {
                    key.update((part.len() as u64).to_le_bytes());
                    key.update(part.as_bytes());
                }
                let key: [u8; 32] = key.finalize().into();
                let mut seen = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if seen.contains(&key) {
                    return true;
                }
                drop(seen);
                let ok = bcrypt::verify(password, h).unwrap_or(false);
                if ok {
                    seen = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                    if seen.len() >= VERIFIED_CAP {
                        seen.clear();
                    }
                    seen.insert(key);
                }
                ok
            }
        }
    }
}

impl ServerAuthenticator for Server {
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Vec<(String, String)>, String> {
        let v =
            header(headers, &http::header::AUTHORIZATION).ok_or("missing Authorization header")?;
        let encoded = v
            .split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
            .map(|(_, b)| b.trim())
            .ok_or("Authorization header is not Basic")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or("Authorization header is not valid Basic credentials")?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or("Basic credentials lack ':'")?;
        if self.check(user, password) {
            Ok(vec![
                ("username".to_string(), user.to_string()),
                ("subject".to_string(), user.to_string()),
            ])
        } else {
            Err("invalid user name or password".into())
        }
    }

    fn credential_headers(&self) -> Vec<http::HeaderName> {
        vec![http::header::AUTHORIZATION]
    }
}

struct Client {
    value: http::HeaderValue,
}

impl ClientAuthenticator for Client {
    fn headers(
        &self,
        _client: Option<&ClientInfo>,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
        Ok(vec![(http::header::AUTHORIZATION, self.value.clone())])
    }
}

#[async_trait]
impl ExtensionBuilder for BasicAuthConfig {
    async fn start(&self, _: &Context, _: &Host, _: Stop) -> Result<Vec<JoinHandle<()>>, String> {
        Ok(Vec::new())
    }

    fn authenticator(&self) -> Result<Option<Authenticator>, String> {
        let server = match &self.htpasswd {
            None => None,
            Some(h) => {
                let users = match (&h.file, &h.inline) {
                    (Some(f), _) => Source::File(Watched::load(f, parse_users)?),
                    (None, Some(t)) => Source::Fixed(Arc::new(parse_users(t.expose())?)),
                    (None, None) => return Err("htpasswd: set file or inline".into()),
                };
                Some(Arc::new(Server {
                    users,
                    verified: Mutex::new(HashSet::new()),
                }) as Arc<dyn ServerAuthenticator>)
            }
        };
        let client = match &self.client_auth {
            None => None,
            Some(c) => {
                let raw = format!("{}:{}", c.username, c.password.expose());
                let text = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                );
                let mut value = http::HeaderValue::try_from(text).map_err(|e| e.to_string())?;
                value.set_sensitive(true);
                Some(Arc::new(Client { value }) as Arc<dyn ClientAuthenticator>)
            }
        };
        Ok(Some(Authenticator { server, client }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        m.insert(
            http::header::AUTHORIZATION,
            format!("Basic {v}").parse().unwrap(),
        );
        m
    }

    #[test]
    fn htpasswd_entries_of_each_kind_check_and_name_the_user() {
        let bcrypt = bcrypt::hash("b-pass", 4).unwrap();
        let sha = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"s-pass"));
        let inline = format!("alice:plain-pass\nbob:{bcrypt}\ncarol:{{SHA}}{sha}\n");
        let cfg = BasicAuthConfig {
            htpasswd: Some(Htpasswd {
                file: None,
                inline: Some(Secret::new(inline)),
            }),
            client_auth: None,
        };
        cfg.validate().unwrap();
        let s = cfg.authenticator().unwrap().unwrap().server.unwrap();
        for (u, p) in [
            ("alice", "plain-pass"),
            ("bob", "b-pass"),
            ("carol", "s-pass"),
        ] {
            let id = s.authenticate(&basic(u, p)).unwrap();
            assert!(id.contains(&("username".to_string(), u.to_string())));
            // A second time (bob: from the verified cache) still passes.
            assert!(s.authenticate(&basic(u, p)).is_ok());
            assert!(s.authenticate(&basic(u, "wrong")).is_err());
        }
        assert!(s.authenticate(&basic("mallory", "plain-pass")).is_err());
        assert!(s.authenticate(&http::HeaderMap::new()).is_err());
    }

    #[test]
    fn the_client_sends_basic_credentials_and_mistakes_are_named() {
        let cfg: BasicAuthConfig = parse_config(
            serde_yaml::from_str("client_auth: {username: u, password: p}\n").unwrap(),
        )
        .unwrap();
        let h = cfg
            .authenticator()
            .unwrap()
            .unwrap()
            .client
            .unwrap()
            .headers(None)
            .unwrap();
        assert_eq!(h[0].1, "Basic dTpw");
        let err = |y: &str| {
            parse_config::<BasicAuthConfig>(serde_yaml::from_str(y).unwrap()).unwrap_err()
        };
        assert_eq!(err("{}").path, "htpasswd");
        assert_eq!(
            err("htpasswd: {inline: 'x:$apr1$abc'}\n").path,
            "htpasswd.inline"
        );
        assert_eq!(
            err("htpasswd: {file: /nonexistent}\n").path,
            "htpasswd.file"
        );
    }
}
