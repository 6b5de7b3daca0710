//! `resource`: applies attribute actions to every resource (otelcol's
//! `resource` processor). For traces only the resources are decoded and
//! re-encoded; spans travel as their original bytes.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::actions::{apply, check_all, Action, ActionConfig};
use crate::batch::{Batch, Signal};
use crate::component::{ConfigError, Context, ProcessorBuilder, ProcessorFactory, Validate};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::rewrite::{rewrite_batch, rewrite_resources};

/// `resource` processor config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Actions applied in order to each resource's attributes.
    pub attributes: Vec<ActionConfig>,
}

impl Validate for ResourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_all("attributes", &self.attributes).map(|_| ())
    }
}

/// The checked config.
struct Checked(Arc<Vec<Action>>);

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "resource",
        signals: &Signal::ALL,
        parse: |v| {
            let cfg: ResourceConfig = crate::component::parse_config(v)?;
            Ok(Arc::new(Checked(Arc::new(check_all(
                "attributes",
                &cfg.attributes,
            )?))))
        },
    }
}

impl ProcessorBuilder for Checked {
    fn build(&self, signal: Signal, next: BoxConsumer, _ctx: &Context) -> BoxConsumer {
        Arc::new(ResourceProcessor {
            signal,
            actions: self.0.clone(),
            next,
        })
    }
}

struct ResourceProcessor {
    signal: Signal,
    actions: Arc<Vec<Action>>,
    next: BoxConsumer,
}

#[async_trait]
impl Consumer for ResourceProcessor {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        rewrite_batch(&mut batch, |req| {
            let client = req.client.as_deref();
            rewrite_resources(self.signal, req, |r| {
                apply(&self.actions, &mut r.attributes, client)
            })
        });
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::component::{parse_config, Tasks};
    use crate::generate::{Generator, GeneratorOptions};
    use crate::telemetry::Registry;
    use crate::testing::Sink;

    #[tokio::test]
    async fn documented_example_tags_every_resource() {
        let yaml = "attributes:\n  - key: telemetry.source\n    value: claude\n    action: upsert\n  - key: host.name\n    action: delete\n";
        let builder = (factory().parse)(serde_yaml::from_str(yaml).unwrap()).unwrap();
        let sink = Arc::new(Sink::default());
        let ctx = Context {
            id: "resource".into(),
            metrics: Registry::new(),
            tasks: Tasks::default(),
            storage: Default::default(),
            auth: Default::default(),
            local: Default::default(),
        };
        let p = builder.build(Signal::Traces, sink.clone(), &ctx);
        let sent = Generator::new(GeneratorOptions::default()).spans(12);
        p.consume(Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap())
            .await
            .unwrap();
        let got = sink.batches.lock().unwrap()[0].decode_traces().unwrap();
        for rs in &got.resource_spans {
            let keys: Vec<&str> = rs
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .map(|a| a.key.as_str())
                .collect();
            assert!(
                keys.contains(&"telemetry.source") && !keys.contains(&"host.name"),
                "{keys:?}"
            );
        }
        assert!(
            parse_config::<ResourceConfig>(serde_yaml::from_str("attributes: []").unwrap())
                .is_err()
        );
    }
}
