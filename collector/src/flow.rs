//! Items crossing each boundary of a pipeline, counted where the stages
//! meet: the live page's edges and the per-processor in/out rates.

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::telemetry::{Counter, Registry};
use pipeline::{Batch, BoxConsumer, ConsumeError, Consumer};

use crate::config::PipelinePlan;

/// A consumer that counts the items its inner consumer took.
struct Counted {
    inner: BoxConsumer,
    counters: Vec<Counter>,
}

#[async_trait]
impl Consumer for Counted {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let items = batch.items() as u64;
        // Counted once taken: a stage that retries a refused batch would
        // otherwise count it again.
        self.inner.consume(batch).await?;
        for c in &self.counters {
            c.add(items);
        }
        Ok(())
    }
}

fn counted(inner: BoxConsumer, counters: Vec<Counter>) -> BoxConsumer {
    Arc::new(Counted { inner, counters })
}

/// Builds pipeline `p`'s chain ending in `exporters`, each processor made
/// by `build(id, next)`, with every boundary counted; returns its head.
pub fn build_chain(
    reg: &Registry,
    p: &PipelinePlan,
    exporters: BoxConsumer,
    mut build: impl FnMut(&str, BoxConsumer) -> BoxConsumer,
) -> BoxConsumer {
    let pipeline = p.id.as_str();
    let proc = |what: &str, help: &'static str, id: &str| {
        reg.counter(
            &format!("observatory_processor_{what}_items_total"),
            help,
            &[("processor", id), ("pipeline", pipeline)],
        )
    };
    let incoming = |id: &str| proc("incoming", "Items a processor took.", id);
    let outgoing = |id: &str| proc("outgoing", "Items a processor handed on.", id);
    let edge = |what: &str, help: &'static str| {
        reg.counter(
            &format!("observatory_pipeline_{what}_items_total"),
            help,
            &[("pipeline", pipeline)],
        )
    };
    let mut tail = vec![edge(
        "outgoing",
        "Items a pipeline handed to its exporters.",
    )];
    let mut next = exporters;
    for pid in p.processors.iter().rev() {
        tail.push(outgoing(pid));
        let stage = build(pid, counted(next, std::mem::take(&mut tail)));
        tail.push(incoming(pid));
        next = stage;
    }
    tail.push(edge(
        "incoming",
        "Items a pipeline took from its receivers.",
    ));
    counted(next, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::generate::{Generator, GeneratorOptions};
    use pipeline::testing::Sink;
    use pipeline::Signal;
    use prost::Message;

    struct Halve(BoxConsumer);

    #[async_trait]
    impl Consumer for Halve {
        async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
            // Drops every other request, as a sampler would.
            if batch.items().is_multiple_of(2) {
                self.0.consume(batch).await
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn every_boundary_counts_what_crossed_it() {
        let reg = Registry::new();
        let plan = PipelinePlan {
            id: "traces/x".into(),
            signal: Signal::Traces,
            receivers: vec!["otlp".into()],
            processors: vec!["a".into(), "b".into()],
            exporters: vec!["nop".into()],
        };
        let sink = Arc::new(Sink::default());
        let head = build_chain(&reg, &plan, sink.clone(), |id, next| {
            if id == "b" {
                Arc::new(Halve(next))
            } else {
                next
            }
        });
        let mut gen = Generator::new(GeneratorOptions::default());
        for n in [2, 3, 4] {
            let bytes = gen.spans(n).encode_to_vec().into();
            head.consume(Batch::parse(Signal::Traces, bytes).unwrap())
                .await
                .unwrap();
        }
        let v = |name: &str, labels: &[(&str, &str)]| reg.value(name, labels).unwrap();
        let p = |id| [("processor", id), ("pipeline", "traces/x")];
        assert_eq!(
            v(
                "observatory_pipeline_incoming_items_total",
                &[("pipeline", "traces/x")]
            ),
            9.0
        );
        assert_eq!(
            v("observatory_processor_incoming_items_total", &p("a")),
            9.0
        );
        assert_eq!(
            v("observatory_processor_outgoing_items_total", &p("a")),
            9.0
        );
        assert_eq!(
            v("observatory_processor_incoming_items_total", &p("b")),
            9.0
        );
        assert_eq!(
            v("observatory_processor_outgoing_items_total", &p("b")),
            6.0
        );
        assert_eq!(
            v(
                "observatory_pipeline_outgoing_items_total",
                &[("pipeline", "traces/x")]
            ),
            6.0
        );
        assert_eq!(sink.sizes(), vec![2, 4]);
    }
}
