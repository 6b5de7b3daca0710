//! The operators that change one entry, in otelcol's syntax:
//! `json_parser`, `regex_parser`, `move`, `copy`, `add`, `remove`,
//! `flatten`, `severity_parser`, `time_parser`, each with `on_error`
//! (`router` and `recombine` are in `chain.rs`). Other operator types and
//! `if` conditions are refused by name.

use pipeline::component::ConfigError;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::field::{Entry, Field};
use super::timefmt::{severity_of, Layout};

/// One operator as written: its keys, read by [`Operator::new`].
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct OperatorConfig(pub serde_yaml::Mapping);

/// What to do with an entry an operator failed on (otelcol's `on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Send it on unchanged and log the error (the default).
    Send,
    /// Send it on unchanged, quietly.
    SendQuiet,
    /// Drop it and log the error.
    Drop,
    /// Drop it quietly.
    DropQuiet,
}

/// A parser's timestamp or severity step.
#[derive(Debug, Clone)]
struct Timestamp {
    from: Field,
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Kind {
    Json {
        from: Field,
        to: Field,
    },
    Regex {
        from: Field,
        to: Field,
        re: regex::Regex,
    },
    Move {
        from: Field,
        to: Field,
    },
    Copy {
        from: Field,
        to: Field,
    },
    Add {
        field: Field,
        value: Value,
    },
    Remove {
        field: Field,
    },
    Flatten {
        field: Field,
    },
    Severity {
        from: Field,
    },
    Time(Timestamp),
}

/// A checked operator.
#[derive(Debug, Clone)]
pub struct Operator {
    kind: Kind,
    timestamp: Option<Timestamp>,
    severity: Option<Field>,
    /// What happens on failure.
    pub on_error: OnError,
}

/// Keys every operator may have.
const COMMON: [&str; 4] = ["type", "id", "output", "on_error"];

/// A string key of an operator's config.
pub fn text(m: &serde_yaml::Mapping, key: &str) -> Result<Option<String>, ConfigError> {
    match m.get(key) {
        None => Ok(None),
        Some(serde_yaml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ConfigError::new(key, "must be a string")),
    }
}

fn field(m: &serde_yaml::Mapping, key: &str, default: Option<&str>) -> Result<Field, ConfigError> {
    let s = text(m, key)?
        .or_else(|| default.map(str::to_string))
        .ok_or_else(|| ConfigError::new(key, "is required"))?;
    let f = Field::parse(&s).map_err(|e| ConfigError::new(key, e))?;
    if f.is_whole_map() && !matches!(key, "parse_to") {
        return Err(ConfigError::new(
            key,
            format!("{s:?} names a whole map: name a key in it"),
        ));
    }
    Ok(f)
}

fn timestamp(v: &serde_yaml::Value, at: &str) -> Result<Timestamp, ConfigError> {
    let m = v
        .as_mapping()
        .ok_or_else(|| ConfigError::new(at, "must be a mapping"))?;
    only(m, &["parse_from", "layout_type", "layout", "location"]).map_err(|e| e.under(at))?;
    let layout_type = text(m, "layout_type")
        .map_err(|e| e.under(at))?
        .unwrap_or_else(|| "strptime".into());
    let layout = text(m, "layout").map_err(|e| e.under(at))?;
    let layout = match (layout, layout_type.as_str()) {
        (Some(l), _) => l,
        (None, "epoch") => return Err(ConfigError::new(format!("{at}.layout"), "is required")),
        (None, _) => return Err(ConfigError::new(format!("{at}.layout"), "is required")),
    };
    let location = text(m, "location").map_err(|e| e.under(at))?;
    Ok(Timestamp {
        from: field(m, "parse_from", None).map_err(|e| e.under(at))?,
        layout: Layout::new(&layout_type, &layout, location.as_deref())
            .map_err(|e| ConfigError::new(format!("{at}.layout"), e))?,
    })
}

fn severity(v: &serde_yaml::Value, at: &str) -> Result<Field, ConfigError> {
    let m = v
        .as_mapping()
        .ok_or_else(|| ConfigError::new(at, "must be a mapping"))?;
    if m.contains_key("mapping") || m.contains_key("overwrite_text") {
        return Err(ConfigError::new(
            format!("{at}.mapping"),
            "custom severity mappings are not supported yet: the default mapping (trace, debug, info, warn, error, fatal and their usual aliases) applies",
        ));
    }
    only(m, &["parse_from", "preset"]).map_err(|e| e.under(at))?;
    if let Some(p) = text(m, "preset").map_err(|e| e.under(at))? {
        if p != "default" {
            return Err(ConfigError::new(
                format!("{at}.preset"),
                "only the default preset is supported",
            ));
        }
    }
    field(m, "parse_from", None).map_err(|e| e.under(at))
}

/// Refuses keys beyond `allowed` and [`COMMON`], naming the first.
fn only(m: &serde_yaml::Mapping, allowed: &[&str]) -> Result<(), ConfigError> {
    for k in m.keys() {
        let k = k.as_str().unwrap_or("");
        if k == "if" {
            return Err(ConfigError::new(
                "if",
                "conditions (otelcol's expr language) are not supported yet",
            ));
        }
        if !allowed.contains(&k) && !COMMON.contains(&k) {
            return Err(ConfigError::new(
                k,
                format!("unknown key; this operator takes {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

impl Operator {
    /// Checks one operator's config.
    pub fn new(cfg: &OperatorConfig) -> Result<Operator, ConfigError> {
        let m = &cfg.0;
        let ty = text(m, "type")?.ok_or_else(|| ConfigError::new("type", "is required"))?;
        let on_error = match text(m, "on_error")?.as_deref() {
            None | Some("send") => OnError::Send,
            Some("send_quiet") => OnError::SendQuiet,
            Some("drop") => OnError::Drop,
            Some("drop_quiet") => OnError::DropQuiet,
            Some(o) => {
                return Err(ConfigError::new(
                    "on_error",
                    format!("{o:?}: use send, send_quiet, drop or drop_quiet"),
                ))
            }
        };
        let parser = ["parse_from", "parse_to", "timestamp", "severity"];
        let mut timestamp_step = None;
        let mut severity_step = None;
        let kind = match ty.as_str() {
            "json_parser" | "regex_parser" => {
                let mut keys = parser.to_vec();
                if ty == "regex_parser" {
                    keys.extend(["regex", "cache"]);
                }
                only(m, &keys)?;
                if m.contains_key("cache") {
                    return Err(ConfigError::new("cache", "is not supported yet"));
                }
                timestamp_step = m
                    .get("timestamp")
                    .map(|v| timestamp(v, "timestamp"))
                    .transpose()?;
                severity_step = m
                    .get("severity")
                    .map(|v| severity(v, "severity"))
                    .transpose()?;
                let from = field(m, "parse_from", Some("body"))?;
                let to = field(m, "parse_to", Some("attributes"))?;
                if ty == "json_parser" {
                    Kind::Json { from, to }
                } else {
                    let src = text(m, "regex")?
                        .ok_or_else(|| ConfigError::new("regex", "is required"))?;
                    let re = regex::Regex::new(&src)
                        .map_err(|e| ConfigError::new("regex", format!("invalid regex: {e}")))?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(ConfigError::new(
                            "regex",
                            "needs at least one named group, (?P<name>…)",
                        ));
                    }
                    Kind::Regex { from, to, re }
                }
            }
            "move" | "copy" => {
                only(m, &["from", "to"])?;
                let (from, to) = (field(m, "from", None)?, field(m, "to", None)?);
                if ty == "move" {
                    Kind::Move { from, to }
                } else {
                    Kind::Copy { from, to }
                }
            }
            "add" => {
                only(m, &["field", "value"])?;
                let value = m
                    .get("value")
                    .ok_or_else(|| ConfigError::new("value", "is required"))?;
                if value.as_str().is_some_and(|s| s.starts_with("EXPR(")) {
                    return Err(ConfigError::new(
                        "value",
                        "EXPR(...) values are not supported yet",
                    ));
                }
                let value = serde_json::to_value(value)
                    .map_err(|e| ConfigError::new("value", e.to_string()))?;
                Kind::Add {
                    field: field(m, "field", None)?,
                    value,
                }
            }
            "remove" => {
                only(m, &["field"])?;
                Kind::Remove {
                    field: field(m, "field", None)?,
                }
            }
            "flatten" => {
                only(m, &["field"])?;
                Kind::Flatten {
                    field: field(m, "field", None)?,
                }
            }
            "severity_parser" => {
                only(m, &["parse_from", "preset", "mapping", "overwrite_text"])?;
                Kind::Severity {
                    from: severity(&serde_yaml::Value::Mapping(m.clone()), "").map_err(
                        |mut e| {
                            e.path = e.path.trim_start_matches('.').to_string();
                            e
                        },
                    )?,
                }
            }
            "time_parser" => {
                only(m, &["parse_from", "layout_type", "layout", "location"])?;
                let mut sub = m.clone();
                for k in COMMON {
                    sub.remove(k);
                }
                Kind::Time(
                    timestamp(&serde_yaml::Value::Mapping(sub), "").map_err(|mut e| {
                        e.path = e.path.trim_start_matches('.').to_string();
                        e
                    })?,
                )
            }
            other => {
                return Err(ConfigError::new(
                    "type",
                    format!("operator {other:?} is not supported yet"),
                ))
            }
        };
        Ok(Operator {
            kind,
            timestamp: timestamp_step,
            severity: severity_step,
            on_error,
        })
    }

    /// Applies the operator. On an error the entry is as the failing step
    /// left it, as in otelcol: a parser whose timestamp fails has still
    /// parsed its fields; a parse that fails changes nothing.
    pub fn apply(&self, e: &mut Entry) -> Result<(), String> {
        let missing = |f: &Field| format!("no value at {f:?}");
        match &self.kind {
            Kind::Json { from, to } => {
                let v = from.get(e).ok_or_else(|| missing(from))?;
                let s = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
                let parsed: Map<String, Value> =
                    serde_json::from_str(s).map_err(|err| format!("not a JSON object: {err}"))?;
                to.merge(e, parsed);
            }
            Kind::Regex { from, to, re } => {
                let v = from.get(e).ok_or_else(|| missing(from))?;
                let s = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
                let caps = re
                    .captures(s)
                    .ok_or_else(|| "the regex does not match".to_string())?;
                let parsed: Map<String, Value> = re
                    .capture_names()
                    .flatten()
                    .filter_map(|n| {
                        Some((
                            n.to_string(),
                            Value::String(caps.name(n)?.as_str().to_string()),
                        ))
                    })
                    .collect();
                to.merge(e, parsed);
            }
            Kind::Move { from, to } => {
                let v = from.take(e).ok_or_else(|| missing(from))?;
                to.set(e, v);
            }
            Kind::Copy { from, to } => {
                let v = from.get(e).ok_or_else(|| missing(from))?.clone();
                to.set(e, v);
            }
            Kind::Add { field, value } => field.set(e, value.clone()),
            Kind::Remove { field } => {
                field.take(e).ok_or_else(|| missing(field))?;
            }
            Kind::Flatten { field } => {
                let v = field.take(e).ok_or_else(|| missing(field))?;
                let Value::Object(inner) = v else {
                    field.set(e, v);
                    return Err(format!("{field:?} is not a map"));
                };
                // Its keys move up one level, beside it.
                let mut parent = field.clone();
                parent.keys.pop();
                for (k, v) in inner {
                    let mut f = parent.clone();
                    f.keys.push(k);
                    f.set(e, v);
                }
            }
            Kind::Severity { from } => set_severity(e, from)?,
            Kind::Time(t) => set_time(e, t)?,
        }
        if let Some(t) = &self.timestamp {
            set_time(e, t)?;
        }
        if let Some(f) = &self.severity {
            set_severity(e, f)?;
        }
        Ok(())
    }
}

fn set_time(e: &mut Entry, t: &Timestamp) -> Result<(), String> {
    let v = t
        .from
        .get(e)
        .ok_or_else(|| format!("no timestamp at {:?}", t.from))?;
    e.timestamp = Some(t.layout.parse(v)?);
    Ok(())
}

fn set_severity(e: &mut Entry, from: &Field) -> Result<(), String> {
    let v = from
        .get(e)
        .ok_or_else(|| format!("no severity at {from:?}"))?;
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    e.severity = severity_of(&text)
        .ok_or_else(|| format!("severity {text:?} is not in the default mapping"))?;
    e.severity_text = text;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(yaml: &str) -> Result<Operator, ConfigError> {
        Operator::new(&serde_yaml::from_str(yaml).unwrap())
    }

    fn line(s: &str) -> Entry {
        Entry {
            body: json!(s),
            ..Default::default()
        }
    }

    #[test]
    fn an_llm_session_line_is_parsed_and_moved() {
        let ops = [
            op("type: json_parser\ntimestamp: {parse_from: attributes.timestamp, layout: '%Y-%m-%dT%H:%M:%S.%LZ', location: UTC}\nseverity: {parse_from: attributes.level}").unwrap(),
            op("type: move\nfrom: attributes.session_id\nto: resource[\"session.id\"]").unwrap(),
            op("type: move\nfrom: attributes.source\nto: resource[\"service.name\"]").unwrap(),
            op("type: move\nfrom: attributes.message\nto: body").unwrap(),
            op("type: add\nfield: attributes.pipeline\nvalue: llm").unwrap(),
            op("type: remove\nfield: attributes.level").unwrap(),
        ];
        let mut e = line(
            r#"{"timestamp":"2026-11-30T10:00:00.250Z","session_id":"s1","source":"claude","level":"warn","message":"rate limited"}"#,
        );
        for o in &ops {
            o.apply(&mut e).unwrap();
        }
        assert_eq!(e.body, json!("rate limited"));
        assert_eq!(e.timestamp, Some(1_796_032_800_250_000_000));
        assert_eq!((e.severity, e.severity_text.as_str()), (13, "warn"));
        assert_eq!(
            Value::Object(e.resource),
            json!({"session.id": "s1", "service.name": "claude"})
        );
        assert_eq!(
            Value::Object(e.attributes),
            json!({"timestamp": "2026-11-30T10:00:00.250Z", "pipeline": "llm"})
        );
    }

    #[test]
    fn regex_copy_flatten_and_errors() {
        let re = op("type: regex_parser\nregex: '^(?P<level>\\w+) (?P<msg>.*)$'").unwrap();
        let mut e = line("ERROR disk full");
        re.apply(&mut e).unwrap();
        assert_eq!(e.attributes["level"], "ERROR");
        op("type: copy\nfrom: attributes.msg\nto: body.text")
            .unwrap()
            .apply(&mut e)
            .unwrap();
        assert_eq!(e.body, json!({"text": "disk full"}));
        let mut e = line(r#"{"a":{"b":1,"c":2}}"#);
        op("type: json_parser").unwrap().apply(&mut e).unwrap();
        op("type: flatten\nfield: attributes.a")
            .unwrap()
            .apply(&mut e)
            .unwrap();
        assert_eq!(Value::Object(e.attributes.clone()), json!({"b": 1, "c": 2}));
        // A parse that fails changes nothing.
        let mut bad = line("not json");
        let before = bad.clone();
        assert!(op("type: json_parser").unwrap().apply(&mut bad).is_err());
        assert_eq!(bad, before);
    }

    #[test]
    fn what_is_not_supported_is_refused_by_name() {
        let err = |y: &str| op(y).unwrap_err();
        assert!(err("type: key_value_parser")
            .message
            .contains("not supported yet"));
        assert_eq!(
            err("type: move\nfrom: body\nto: attributes.x\nif: 'body != nil'").path,
            "if"
        );
        assert_eq!(
            err("type: move\nfrom: body\nto: attributes.x\nbogus: 1").path,
            "bogus"
        );
        assert_eq!(
            err("type: json_parser\nseverity: {parse_from: attributes.l, mapping: {}}").path,
            "severity.mapping"
        );
        assert_eq!(
            err("type: time_parser\nparse_from: attributes.t\nlayout: '%Y %Z'").path,
            "layout"
        );
        assert_eq!(err("type: remove\nfield: attributes").path, "field");
        assert_eq!(
            err("type: add\nfield: body.x\nvalue: x\non_error: explode").path,
            "on_error"
        );
    }
}
