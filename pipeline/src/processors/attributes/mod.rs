//! `attributes`: otelcol's attribute actions on spans, log records and
//! metric data points, limited by `include` / `exclude`. Traces decode only
//! the spans the match leaves in play; the rest stay as their bytes.

mod matching;

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;

pub use matching::{AttributeMatch, LibraryMatch, MatchProperties, Matcher, Subject};

use crate::actions::{apply, check_all, Action, ActionConfig};
use crate::batch::{Batch, Request, Signal};
use crate::component::{ConfigError, Context, ProcessorBuilder, ProcessorFactory, Validate};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::rewrite::{decode_field, edit_span, replace_spans, rewrite_decoded, Reach};

/// `attributes` processor config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// Actions applied in order.
    pub actions: Vec<ActionConfig>,
    /// Act only on items matching this.
    #[serde(default)]
    pub include: Option<MatchProperties>,
    /// Never act on items matching this.
    #[serde(default)]
    pub exclude: Option<MatchProperties>,
}

impl Validate for AttributesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(|_| ())
    }
}

/// The checked config.
pub struct Checked {
    actions: Vec<Action>,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl AttributesConfig {
    fn checked(&self) -> Result<Checked, ConfigError> {
        Ok(Checked {
            actions: check_all("actions", &self.actions)?,
            include: self
                .include
                .as_ref()
                .map(|m| m.check("include"))
                .transpose()?,
            exclude: self
                .exclude
                .as_ref()
                .map(|m| m.check("exclude"))
                .transpose()?,
        })
    }
}

impl Checked {
    fn wanted(&self, s: &Subject) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(s))
            && !self.exclude.as_ref().is_some_and(|m| m.matches(s))
    }

    /// Whether resource and scope alone already rule every item out.
    fn ruled_out(&self, resource: &[KeyValue], scope: Option<&InstrumentationScope>) -> bool {
        let s = Subject {
            resource,
            scope,
            name: None,
            attributes: &[],
        };
        self.include
            .as_ref()
            .is_some_and(|m| !m.needs_item() && !m.matches(&s))
            || self
                .exclude
                .as_ref()
                .is_some_and(|m| !m.needs_item() && m.matches(&s))
    }
}

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "attributes",
        signals: &Signal::ALL,
        parse: |v| {
            let cfg: AttributesConfig = crate::component::parse_config(v)?;
            Ok(Arc::new(Builder(Arc::new(cfg.checked()?))))
        },
    }
}

struct Builder(Arc<Checked>);

impl ProcessorBuilder for Builder {
    fn build(&self, signal: Signal, next: BoxConsumer, _ctx: &Context) -> BoxConsumer {
        Arc::new(Attributes {
            signal,
            cfg: self.0.clone(),
            next,
        })
    }
}

struct Attributes {
    signal: Signal,
    cfg: Arc<Checked>,
    next: BoxConsumer,
}

impl Attributes {
    fn traces(&self, req: &Request) -> Option<Request> {
        let index = req.index.as_ref()?;
        let resources: Vec<Resource> = index
            .resources
            .iter()
            .map(|r| decode_field(&req.bytes, r.resource).unwrap_or_default())
            .collect();
        let scopes: Vec<Option<InstrumentationScope>> = index
            .scopes
            .iter()
            .map(|s| decode_field(&req.bytes, s.scope))
            .collect();
        let cfg = &self.cfg;
        let client = req.client.as_deref();
        replace_spans(req, Reach::AttributesOnly, |entry, field, out| {
            let scope_i = entry.scope as usize;
            let resource = &resources[index.scopes[scope_i].resource as usize].attributes;
            let scope = scopes[scope_i].as_ref();
            if cfg.ruled_out(resource, scope) {
                return false;
            }
            edit_span(field, out, |span| {
                let subject = Subject {
                    resource,
                    scope,
                    name: Some(&span.name),
                    attributes: &span.attributes,
                };
                cfg.wanted(&subject) && apply(&cfg.actions, &mut span.attributes, client)
            })
        })
    }

    fn logs_or_metrics(&self, req: &Request) -> Option<Request> {
        let cfg = &self.cfg;
        let client = req.client.as_deref();
        let act = |resource: &[KeyValue],
                   scope: Option<&InstrumentationScope>,
                   attrs: &mut Vec<KeyValue>| {
            let subject = Subject {
                resource,
                scope,
                name: None,
                attributes: attrs,
            };
            cfg.wanted(&subject) && apply(&cfg.actions, attrs, client)
        };
        rewrite_decoded(self.signal, req, |logs, metrics| {
            let mut changed = false;
            if let Some(logs) = logs {
                for rl in &mut logs.resource_logs {
                    let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                    for sl in &mut rl.scope_logs {
                        for rec in &mut sl.log_records {
                            changed |= act(resource, sl.scope.as_ref(), &mut rec.attributes);
                        }
                    }
                }
            }
            if let Some(metrics) = metrics {
                for rm in &mut metrics.resource_metrics {
                    let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                    for sm in &mut rm.scope_metrics {
                        let scope = sm.scope.as_ref();
                        for m in &mut sm.metrics {
                            crate::batch::each_point_attributes(m, |attrs| {
                                changed |= act(resource, scope, attrs);
                            });
                        }
                    }
                }
            }
            changed
        })
    }
}

#[async_trait]
impl Consumer for Attributes {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        crate::rewrite::rewrite_batch(&mut batch, |req| match self.signal {
            Signal::Traces => self.traces(req),
            _ => self.logs_or_metrics(req),
        });
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
