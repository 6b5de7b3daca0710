//! `include` / `exclude`: which spans, log records or data points a
//! processor acts on, with otelcol's match properties.
//!
//! Within one block every given property must match (AND); within a list
//! (`services`, `span_names`) any entry may match (OR); every listed
//! attribute must be present (and equal, when a value is given).
//! `match_type: regexp` matches anywhere in the string, as Go's regexp does.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use regex::Regex;
use serde::Deserialize;

use crate::actions::{attribute, yaml_to_value};
use crate::component::ConfigError;

/// `{key, value}`: an attribute that must be present, with that value if given.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    /// Attribute key.
    pub key: String,
    /// Required value (strict) or pattern (regexp, strings only).
    #[serde(default)]
    pub value: Option<serde_yaml::Value>,
}

/// `{name, version}`: an instrumentation scope.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LibraryMatch {
    /// Scope name.
    pub name: String,
    /// Scope version, if it must match too.
    #[serde(default)]
    pub version: Option<String>,
}

/// One `include` or `exclude` block.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchProperties {
    /// `strict` or `regexp`.
    pub match_type: String,
    /// `service.name` of the resource.
    pub services: Vec<String>,
    /// Span names (spans only; log records and data points have none).
    pub span_names: Vec<String>,
    /// Attributes of the span, log record or data point.
    pub attributes: Vec<AttributeMatch>,
    /// Attributes of the resource.
    pub resources: Vec<AttributeMatch>,
    /// Instrumentation scopes.
    pub libraries: Vec<LibraryMatch>,
}

/// A string test: equality or a regex.
#[derive(Debug, Clone)]
enum Text {
    Exact(String),
    Pattern(Regex),
}

impl Text {
    fn is(&self, s: &str) -> bool {
        match self {
            Text::Exact(e) => e == s,
            Text::Pattern(p) => p.is_match(s),
        }
    }
}

#[derive(Debug, Clone)]
enum ValueTest {
    Any,
    Equal(Value),
    Pattern(Regex),
}

/// A checked `include` / `exclude` block.
#[derive(Debug, Clone)]
pub struct Matcher {
    services: Vec<Text>,
    span_names: Vec<Text>,
    attributes: Vec<(String, ValueTest)>,
    resources: Vec<(String, ValueTest)>,
    libraries: Vec<(Text, Option<Text>)>,
}

/// What a matcher looks at.
pub struct Subject<'a> {
    /// Resource attributes.
    pub resource: &'a [KeyValue],
    /// The instrumentation scope.
    pub scope: Option<&'a InstrumentationScope>,
    /// The span name (none for log records and data points).
    pub name: Option<&'a str>,
    /// The item's own attributes.
    pub attributes: &'a [KeyValue],
}

fn attrs_match(tests: &[(String, ValueTest)], attrs: &[KeyValue]) -> bool {
    tests.iter().all(|(k, t)| match (attribute(attrs, k), t) {
        (None, _) => false,
        (Some(_), ValueTest::Any) => true,
        (Some(v), ValueTest::Equal(want)) => v == want,
        (Some(Value::StringValue(s)), ValueTest::Pattern(p)) => p.is_match(s),
        (Some(_), ValueTest::Pattern(_)) => false,
    })
}

impl MatchProperties {
    /// Checks the block; `at` is its path for errors.
    pub fn check(&self, at: &str) -> Result<Matcher, ConfigError> {
        let regexp = match self.match_type.as_str() {
            "strict" => false,
            "regexp" => true,
            other => {
                return Err(ConfigError::new(
                    format!("{at}.match_type"),
                    format!("must be strict or regexp, not {other:?}"),
                ))
            }
        };
        let text = |k: &str, s: &str| -> Result<Text, ConfigError> {
            if regexp {
                Regex::new(s).map(Text::Pattern).map_err(|e| {
                    ConfigError::new(format!("{at}.{k}"), format!("invalid regex: {e}"))
                })
            } else {
                Ok(Text::Exact(s.to_string()))
            }
        };
        let attr_tests =
            |k: &str, list: &[AttributeMatch]| -> Result<Vec<(String, ValueTest)>, ConfigError> {
                list.iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let at_i = format!("{at}.{k}.{i}.value");
                        let test = match &a.value {
                            None => ValueTest::Any,
                            Some(serde_yaml::Value::String(s)) if regexp => {
                                ValueTest::Pattern(Regex::new(s).map_err(|e| {
                                    ConfigError::new(&at_i, format!("invalid regex: {e}"))
                                })?)
                            }
                            Some(_) if regexp => {
                                return Err(ConfigError::new(
                                    at_i,
                                    "with match_type regexp, values must be strings",
                                ))
                            }
                            Some(v) => ValueTest::Equal(yaml_to_value(v).ok_or_else(|| {
                                ConfigError::new(at_i, "must be a string, number or boolean")
                            })?),
                        };
                        Ok((a.key.clone(), test))
                    })
                    .collect()
            };
        let m = Matcher {
            services: self
                .services
                .iter()
                .map(|s| text("services", s))
                .collect::<Result<_, _>>()?,
            span_names: self
                .span_names
                .iter()
                .map(|s| text("span_names", s))
                .collect::<Result<_, _>>()?,
            attributes: attr_tests("attributes", &self.attributes)?,
            resources: attr_tests("resources", &self.resources)?,
            libraries: self
                .libraries
                .iter()
                .map(|l| {
                    Ok((
                        text("libraries", &l.name)?,
                        l.version
                            .as_deref()
                            .map(|v| text("libraries", v))
                            .transpose()?,
                    ))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        if m.services.is_empty()
            && m.span_names.is_empty()
            && m.attributes.is_empty()
            && m.resources.is_empty()
            && m.libraries.is_empty()
        {
            return Err(ConfigError::new(
                at,
                "must set at least one of services, span_names, attributes, resources, libraries",
            ));
        }
        Ok(m)
    }
}

impl Matcher {
    /// Whether the subject matches every property this block sets.
    pub fn matches(&self, s: &Subject) -> bool {
        let service = || match attribute(s.resource, "service.name") {
            Some(Value::StringValue(v)) => v.as_str(),
            _ => "",
        };
        (self.services.is_empty() || self.services.iter().any(|t| t.is(service())))
            && (self.span_names.is_empty()
                || s.name
                    .is_some_and(|n| self.span_names.iter().any(|t| t.is(n))))
            && attrs_match(&self.attributes, s.attributes)
            && attrs_match(&self.resources, s.resource)
            && (self.libraries.is_empty()
                || s.scope.is_some_and(|sc| {
                    self.libraries.iter().any(|(n, v)| {
                        n.is(&sc.name) && v.as_ref().is_none_or(|v| v.is(&sc.version))
                    })
                }))
    }

    /// Whether this block can only be decided with the item's own data
    /// (span name or attributes), not from its resource and scope alone.
    pub fn needs_item(&self) -> bool {
        !self.span_names.is_empty() || !self.attributes.is_empty()
    }
}
