//! Attribute actions as otelcol's `attributes` and `resource` processors
//! define them: insert, update, upsert, delete, hash, extract, convert,
//! applied in order to a list of attributes.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use regex::Regex;
use serde::Deserialize;
use sha1::Digest;

use crate::client::ClientInfo;
use crate::component::ConfigError;

/// One action as written in the config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActionConfig {
    /// The attribute acted on.
    pub key: String,
    /// The value to set (insert, update, upsert); its YAML type is kept.
    pub value: Option<serde_yaml::Value>,
    /// Take the value from this attribute instead.
    pub from_attribute: Option<String>,
    /// Take the value from the request's client context: `client.address`,
    /// `auth.<attribute>`, `metadata.<key>` (or a bare metadata key).
    pub from_context: Option<String>,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract`, `convert`
    /// (either case).
    pub action: String,
    /// Regex: for `extract`, named groups become attributes; for `delete` and
    /// `hash`, keys matching it are acted on (instead of or beside `key`).
    pub pattern: Option<String>,
    /// For `convert`: `int`, `double` or `string`.
    pub converted_type: Option<String>,
}

/// What an action does, checked.
#[derive(Debug, Clone)]
enum Op {
    Insert(Source),
    Update(Source),
    Upsert(Source),
    Delete(Option<Regex>),
    Hash(Option<Regex>),
    Extract(Regex),
    Convert(Target),
}

#[derive(Debug, Clone)]
enum Source {
    Value(Value),
    Attribute(String),
    Context(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Int,
    Double,
    Str,
}

/// A checked action.
#[derive(Debug, Clone)]
pub struct Action {
    key: String,
    op: Op,
}

/// Converts a YAML scalar to an attribute value.
pub fn yaml_to_value(v: &serde_yaml::Value) -> Option<Value> {
    match v {
        serde_yaml::Value::String(s) => Some(Value::StringValue(s.clone())),
        serde_yaml::Value::Bool(b) => Some(Value::BoolValue(*b)),
        serde_yaml::Value::Number(n) => n
            .as_i64()
            .map(Value::IntValue)
            .or_else(|| n.as_f64().map(Value::DoubleValue)),
        _ => None,
    }
}

fn regex(at: &str, p: &str) -> Result<Regex, ConfigError> {
    Regex::new(p).map_err(|e| ConfigError::new(at, format!("invalid regex: {e}")))
}

impl ActionConfig {
    /// Checks the action; `at` is its path (`attributes.0`) for errors.
    pub fn check(&self, at: &str) -> Result<Action, ConfigError> {
        let field = |k: &str| format!("{at}.{k}");
        let source = || -> Result<Source, ConfigError> {
            match (&self.value, &self.from_attribute, &self.from_context) {
                (Some(v), None, None) => yaml_to_value(v).map(Source::Value).ok_or_else(|| {
                    ConfigError::new(field("value"), "must be a string, number or boolean")
                }),
                (None, Some(a), None) => Ok(Source::Attribute(a.clone())),
                (None, None, Some(c)) if !c.is_empty() => Ok(Source::Context(c.clone())),
                _ => Err(ConfigError::new(
                    field("value"),
                    "set exactly one of value, from_attribute and from_context",
                )),
            }
        };
        let needs_key = || {
            if self.key.is_empty() {
                Err(ConfigError::new(field("key"), "is required"))
            } else {
                Ok(())
            }
        };
        let op = match self.action.to_ascii_lowercase().as_str() {
            "insert" => {
                needs_key()?;
                Op::Insert(source()?)
            }
            "update" => {
                needs_key()?;
                Op::Update(source()?)
            }
            "upsert" => {
                needs_key()?;
                Op::Upsert(source()?)
            }
            "delete" | "hash" => {
                let p = self.pattern.as_deref().map(|p| regex(&field("pattern"), p)).transpose()?;
                if self.key.is_empty() && p.is_none() {
                    return Err(ConfigError::new(field("key"), "set key or pattern"));
                }
                if self.action.eq_ignore_ascii_case("delete") {
                    Op::Delete(p)
                } else {
                    Op::Hash(p)
                }
            }
            "extract" => {
                needs_key()?;
                let p = self
                    .pattern
                    .as_deref()
                    .ok_or_else(|| ConfigError::new(field("pattern"), "is required for extract"))?;
                let re = regex(&field("pattern"), p)?;
                if re.capture_names().skip(1).any(|n| n.is_none()) || re.captures_len() < 2 {
                    return Err(ConfigError::new(field("pattern"), "every group must be named, and there must be at least one"));
                }
                Op::Extract(re)
            }
            "convert" => {
                needs_key()?;
                Op::Convert(match self.converted_type.as_deref() {
                    Some("int") => Target::Int,
                    Some("double") => Target::Double,
                    Some("string") => Target::Str,
                    _ => return Err(ConfigError::new(field("converted_type"), "must be int, double or string")),
                })
            }
            other => {
                return Err(ConfigError::new(
                    field("action"),
                    format!("unknown action {other:?}: use insert, update, upsert, delete, hash, extract or convert"),
                ))
            }
        };
        Ok(Action {
            key: self.key.clone(),
            op,
        })
    }
}

/// Checks a list of actions at `at` (`attributes`, `actions`).
pub fn check_all(at: &str, list: &[ActionConfig]) -> Result<Vec<Action>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::new(at, "must list at least one action"));
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| a.check(&format!("{at}.{i}")))
        .collect()
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// The value of attribute `key` (the first, as otelcol's map lookup).
pub fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    find(attrs, key).and_then(value_of)
}

fn set(attrs: &mut Vec<KeyValue>, key: &str, value: Value) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(AnyValue { value: Some(value) }),
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }),
    }
}

/// SHA-1 of the value's bytes as otelcol defines them, in hex.
fn hash(v: &Value) -> Option<Value> {
    let bytes: Vec<u8> = match v {
        Value::StringValue(s) => s.as_bytes().to_vec(),
        Value::BoolValue(b) => vec![u8::from(*b)],
        Value::IntValue(i) => i.to_le_bytes().to_vec(),
        Value::DoubleValue(d) => d.to_bits().to_le_bytes().to_vec(),
        _ => return None,
    };
    let digest = sha1::Sha1::digest(&bytes);
    Some(Value::StringValue(
        digest.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

fn convert(v: &Value, t: Target) -> Option<Value> {
    match (v, t) {
        (Value::StringValue(s), Target::Int) => s.trim().parse().ok().map(Value::IntValue),
        (Value::DoubleValue(d), Target::Int) => Some(Value::IntValue(d.trunc() as i64)),
        (Value::BoolValue(b), Target::Int) => Some(Value::IntValue(i64::from(*b))),
        (Value::IntValue(_), Target::Int) => None,
        (Value::StringValue(s), Target::Double) => s.trim().parse().ok().map(Value::DoubleValue),
        (Value::IntValue(i), Target::Double) => Some(Value::DoubleValue(*i as f64)),
        (Value::BoolValue(b), Target::Double) => {
            Some(Value::DoubleValue(if *b { 1.0 } else { 0.0 }))
        }
        (Value::DoubleValue(_), Target::Double) => None,
        (Value::IntValue(i), Target::Str) => Some(Value::StringValue(i.to_string())),
        (Value::DoubleValue(d), Target::Str) => Some(Value::StringValue(d.to_string())),
        (Value::BoolValue(b), Target::Str) => Some(Value::StringValue(b.to_string())),
        _ => None,
    }
}

fn value_of(kv: &KeyValue) -> Option<&Value> {
    kv.value.as_ref()?.value.as_ref()
}

/// A `from_context` value: one string, or an array when the key has
/// several values (as otelcol); `None` when absent.
fn context_value(client: Option<&ClientInfo>, key: &str) -> Option<Value> {
    let mut vals = client?.lookup(key);
    match vals.len() {
        0 => None,
        1 => vals.pop().map(Value::StringValue),
        _ => Some(Value::ArrayValue(ArrayValue {
            values: vals
                .into_iter()
                .map(|v| AnyValue {
                    value: Some(Value::StringValue(v)),
                })
                .collect(),
        })),
    }
}

/// Applies `actions` in order to attributes of data sent by `client`;
/// returns whether anything changed.
pub fn apply(actions: &[Action], attrs: &mut Vec<KeyValue>, client: Option<&ClientInfo>) -> bool {
    let mut changed = false;
    for a in actions {
        let resolve = |src: &Source, attrs: &[KeyValue]| match src {
            Source::Value(v) => Some(v.clone()),
            Source::Attribute(k) => find(attrs, k).and_then(value_of).cloned(),
            Source::Context(k) => context_value(client, k),
        };
        match &a.op {
            Op::Insert(src) | Op::Update(src) | Op::Upsert(src) => {
                let exists = find(attrs, &a.key).is_some();
                let go = match a.op {
                    Op::Insert(_) => !exists,
                    Op::Update(_) => exists,
                    _ => true,
                };
                if go {
                    if let Some(v) = resolve(src, attrs) {
                        set(attrs, &a.key, v);
                        changed = true;
                    }
                }
            }
            Op::Delete(pattern) => {
                let before = attrs.len();
                attrs.retain(|kv| {
                    kv.key != a.key && !pattern.as_ref().is_some_and(|p| p.is_match(&kv.key))
                });
                changed |= attrs.len() != before;
            }
            Op::Hash(pattern) => {
                for kv in attrs.iter_mut() {
                    if kv.key == a.key || pattern.as_ref().is_some_and(|p| p.is_match(&kv.key)) {
                        if let Some(h) = value_of(kv).and_then(hash) {
                            kv.value = Some(AnyValue { value: Some(h) });
                            changed = true;
                        }
                    }
                }
            }
            Op::Extract(re) => {
                let Some(Value::StringValue(s)) = find(attrs, &a.key).and_then(value_of).cloned()
                else {
                    continue;
                };
                if let Some(caps) = re.captures(&s) {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            set(attrs, name, Value::StringValue(m.as_str().to_string()));
                            changed = true;
                        }
                    }
                }
            }
            Op::Convert(t) => {
                if let Some(kv) = attrs.iter_mut().find(|kv| kv.key == a.key) {
                    if let Some(v) = value_of(kv).and_then(|v| convert(v, *t)) {
                        kv.value = Some(AnyValue { value: Some(v) });
                        changed = true;
                    }
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn actions(yaml: &str) -> Vec<Action> {
        let list: Vec<ActionConfig> = serde_yaml::from_str(yaml).unwrap();
        check_all("actions", &list).unwrap()
    }

    fn get<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a Value> {
        find(attrs, k).and_then(value_of)
    }

    #[test]
    fn from_context_takes_the_credential_not_what_the_client_claims() {
        let a = actions(
            r#"
- {key: telemetry.source, from_context: auth.tenant, action: upsert}
- {key: client.ip, from_context: client.address, action: insert}
- {key: teams, from_context: metadata.x-team, action: insert}
- {key: absent, from_context: auth.nothing, action: insert}
"#,
        );
        let client = ClientInfo {
            addr: Some("10.0.0.9".parse().unwrap()),
            auth: vec![("tenant".into(), "acme".into())],
            metadata: vec![("x-team".into(), vec!["red".into(), "blue".into()])],
        };
        let mut attrs = vec![kv("telemetry.source", s("forged"))];
        assert!(apply(&a, &mut attrs, Some(&client)));
        assert_eq!(get(&attrs, "telemetry.source"), Some(&s("acme")));
        assert_eq!(get(&attrs, "client.ip"), Some(&s("10.0.0.9")));
        let Some(Value::ArrayValue(teams)) = get(&attrs, "teams") else {
            panic!("{attrs:?}")
        };
        assert_eq!(teams.values.len(), 2);
        assert_eq!(get(&attrs, "absent"), None);
        // No context (e.g. after batch without metadata_keys): nothing set.
        let mut attrs = vec![kv("telemetry.source", s("claimed"))];
        assert!(!apply(&a, &mut attrs, None));
        assert_eq!(get(&attrs, "telemetry.source"), Some(&s("claimed")));
        let both: Vec<ActionConfig> =
            serde_yaml::from_str("- {key: k, value: v, from_context: auth.x, action: insert}")
                .unwrap();
        assert_eq!(
            check_all("actions", &both).unwrap_err().path,
            "actions.0.value"
        );
    }

    #[test]
    fn otelcol_documented_example_behaves_as_documented() {
        let a = actions(
            r#"
- {key: db.table, action: delete}
- {key: redacted_span, value: true, action: upsert}
- {key: copy_key, from_attribute: key_original, action: update}
- {key: account_id, value: 2245, action: insert}
- {key: account_email, action: hash}
- {key: http.status_code, action: convert, converted_type: int}
- {key: url, pattern: '^/api/(?P<version>v\d+)/(?P<resource>\w+)', action: extract}
"#,
        );
        let mut attrs = vec![
            kv("db.table", s("users")),
            kv("copy_key", s("old")),
            kv("key_original", s("new")),
            kv("account_id", Value::IntValue(7)),
            kv("account_email", s("a@b.c")),
            kv("http.status_code", s("503")),
            kv("url", s("/api/v2/orders?id=1")),
        ];
        assert!(apply(&a, &mut attrs, None));
        assert_eq!(get(&attrs, "db.table"), None);
        assert_eq!(get(&attrs, "redacted_span"), Some(&Value::BoolValue(true)));
        assert_eq!(get(&attrs, "copy_key"), Some(&s("new")));
        assert_eq!(
            get(&attrs, "account_id"),
            Some(&Value::IntValue(7)),
            "insert keeps an existing key"
        );
        // SHA-1 of "a@b.c" in hex, computed independently (Python hashlib).
        assert_eq!(
            get(&attrs, "account_email"),
            Some(&s("e2d6a40c8b4d3e6a2779ba1802ef29d13940a051"))
        );
        assert_eq!(get(&attrs, "http.status_code"), Some(&Value::IntValue(503)));
        assert_eq!(get(&attrs, "version"), Some(&s("v2")));
        assert_eq!(get(&attrs, "resource"), Some(&s("orders")));
    }

    #[test]
    fn nothing_to_do_reports_no_change() {
        let a =
            actions("- {key: absent, action: delete}\n- {key: absent, value: 1, action: update}\n");
        let mut attrs = vec![kv("present", s("x"))];
        assert!(!apply(&a, &mut attrs, None));
    }

    #[test]
    fn bad_actions_are_named() {
        let check = |yaml: &str| {
            let list: Vec<ActionConfig> = serde_yaml::from_str(yaml).unwrap();
            check_all("attributes", &list).unwrap_err()
        };
        assert_eq!(
            check("- {key: a, action: frobnicate}").path,
            "attributes.0.action"
        );
        assert_eq!(
            check("- {key: a, action: insert}").path,
            "attributes.0.value"
        );
        assert_eq!(
            check("- {key: a, action: extract, pattern: '(\\d+)'}").path,
            "attributes.0.pattern"
        );
        assert_eq!(
            check("- {key: a, action: convert, converted_type: date}").path,
            "attributes.0.converted_type"
        );
        assert_eq!(
            check("- {key: a, value: 1, action: upsert}\n- {action: delete}").path,
            "attributes.1.key"
        );
    }
}
