//! Checks every `auth.authenticator` in receivers and exporters names an
//! auth extension listed in `service.extensions` that can play that side
//! (a receiver needs one that checks requests, an exporter one that
//! decorates them), so `validate` catches a wrong id, not the first start.

use pipeline::component::ConfigError;
use serde_yaml::{Mapping, Value};

/// Extension types that check incoming requests.
const SERVER: &[&str] = &["bearertokenauth", "basicauth", "api_key"];
/// Extension types that decorate outgoing requests.
const CLIENT: &[&str] = &["bearertokenauth", "basicauth", "headers_setter"];

/// Every `auth.authenticator` value under `v`, with its dotted path.
fn refs(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let Value::Mapping(m) = v else { return };
    for (k, child) in m {
        let Some(k) = k.as_str() else { continue };
        let at = format!("{path}.{k}");
        if k == "auth" {
            if let Some(id) = child.get("authenticator").and_then(Value::as_str) {
                out.push((format!("{at}.authenticator"), id.to_string()));
            }
        }
        refs(&at, child, out);
    }
}

/// Checks the section (`receivers` or `exporters`).
pub fn check(section: &str, components: &Mapping, listed: &[String]) -> Result<(), ConfigError> {
    let (allowed, side) = if section == "receivers" {
        (SERVER, "check incoming requests")
    } else {
        (CLIENT, "authenticate outgoing requests")
    };
    for (id, v) in components {
        let Some(id) = id.as_str() else { continue };
        let mut found = Vec::new();
        refs(&format!("{section}.{id}"), v, &mut found);
        for (at, ext) in found {
            if !listed.contains(&ext) {
                return Err(ConfigError::new(
                    at,
                    format!("extension {ext:?} is not listed in service.extensions"),
                ));
            }
            let kind = ext.split_once('/').map_or(ext.as_str(), |(t, _)| t);
            if !allowed.contains(&kind) {
                return Err(ConfigError::new(
                    at,
                    format!("{ext:?} cannot {side}; use one of {}", allowed.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_wrong_sided_authenticators_are_named() {
        let receivers: Mapping = serde_yaml::from_str(
            "otlp:\n  protocols:\n    grpc:\n      auth: {authenticator: basicauth/in}\n",
        )
        .unwrap();
        check("receivers", &receivers, &["basicauth/in".into()]).unwrap();
        let e = check("receivers", &receivers, &[]).unwrap_err();
        assert_eq!(e.path, "receivers.otlp.protocols.grpc.auth.authenticator");
        let exporters: Mapping =
            serde_yaml::from_str("otlp:\n  auth: {authenticator: api_key}\n").unwrap();
        let e = check("exporters", &exporters, &["api_key".into()]).unwrap_err();
        assert_eq!(e.path, "exporters.otlp.auth.authenticator");
        assert!(e.message.contains("cannot authenticate outgoing"), "{e}");
    }
}
