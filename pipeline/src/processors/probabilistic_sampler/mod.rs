//! `probabilistic_sampler`: keeps `sampling_percentage` of traces, deciding
//! by a hash of the trace id, so every span of a trace gets the same
//! decision and several instances with the same `hash_seed` agree. The hash
//! is otelcol's `hash_seed` mode (FNV-1a 32 over the seed's four
//! little-endian bytes then the 16-byte trace id, 14-bit buckets), so
//! Observatory and otelcol instances sample the same traces. It works on the
//! span index: nothing is decoded. Dropped spans are counted.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::batch::{Batch, Signal};
use crate::component::{
    parse_config, ConfigError, Context, ProcessorBuilder, ProcessorFactory, Validate,
};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::split::filter_spans;
use crate::telemetry::Counter;

/// Hash buckets: 2^14, as otelcol.
const BUCKET_MASK: u32 = 0x3fff;

/// `probabilistic_sampler` config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticSamplerConfig {
    /// Percentage of traces kept; 100 or more keeps all.
    pub sampling_percentage: f32,
    /// Seed mixed into the hash; tiers with different rates should differ.
    pub hash_seed: u32,
    /// Only `hash_seed` (otelcol's hash-based mode) is available.
    pub mode: Option<String>,
}

impl Validate for ProbabilisticSamplerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.sampling_percentage.is_finite() || self.sampling_percentage < 0.0 {
            return Err(ConfigError::new(
                "sampling_percentage",
                "must be a number from 0 to 100",
            ));
        }
        match self.mode.as_deref() {
            None | Some("hash_seed") => Ok(()),
            Some(other) => Err(ConfigError::new(
                "mode",
                format!("{other:?} is not available yet; only hash_seed (the hash-based mode) is"),
            )),
        }
    }
}

/// otelcol's hash: FNV-1a 32 over the seed (little-endian) then `id`.
pub fn trace_hash(id: &[u8], seed: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(id) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The bucket threshold for a percentage, computed in f32 as otelcol does.
pub fn threshold(percentage: f32) -> u32 {
    (percentage * (16384.0f32 / 100.0)) as u32
}

/// Whether a trace is kept at `threshold` with `seed`.
pub fn keeps(trace_id: &[u8; 16], seed: u32, threshold: u32) -> bool {
    trace_hash(trace_id, seed) & BUCKET_MASK < threshold
}

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "probabilistic_sampler",
        signals: &[Signal::Traces],
        parse: |v| Ok(Arc::new(parse_config::<ProbabilisticSamplerConfig>(v)?)),
    }
}

impl ProcessorBuilder for ProbabilisticSamplerConfig {
    fn build(&self, _signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        Arc::new(Sampler {
            seed: self.hash_seed,
            threshold: threshold(self.sampling_percentage),
            all: self.sampling_percentage >= 100.0,
            next,
            dropped: ctx.metrics.counter(
                "observatory_processor_dropped_spans_total",
                "Items a processor dropped (refused permanently downstream).",
                &[("processor", ctx.id.as_str())],
            ),
        })
    }
}

struct Sampler {
    seed: u32,
    threshold: u32,
    all: bool,
    next: BoxConsumer,
    dropped: Counter,
}

#[async_trait]
impl Consumer for Sampler {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        if !self.all {
            for req in &mut batch.requests {
                if let Some(kept) =
                    filter_spans(req, |s| keeps(&s.trace_id, self.seed, self.threshold))
                {
                    self.dropped.add((req.items - kept.items) as u64);
                    *req = kept;
                }
            }
            batch.requests.retain(|r| r.items > 0);
            if batch.requests.is_empty() {
                return Ok(());
            }
        }
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::component::Tasks;
    use crate::generate::{Generator, GeneratorOptions};
    use crate::telemetry::Registry;
    use crate::testing::Sink;

    #[test]
    fn the_hash_is_fnv1a_over_seed_then_id() {
        // FNV-1a 32 reference values: "" and "a" (seedless) are the
        // published test vectors; with a seed, the four seed bytes come first.
        let fnv = |bytes: &[u8]| {
            let mut h: u32 = 0x811c_9dc5;
            for b in bytes {
                h ^= u32::from(*b);
                h = h.wrapping_mul(0x0100_0193);
            }
            h
        };
        assert_eq!(fnv(b""), 0x811c_9dc5);
        assert_eq!(fnv(b"a"), 0xe40c_292c);
        let id = [7u8; 16];
        let mut seeded = 4321u32.to_le_bytes().to_vec();
        seeded.extend_from_slice(&id);
        assert_eq!(trace_hash(&id, 4321), fnv(&seeded));
        assert_eq!(threshold(100.0), 16384);
        assert_eq!(threshold(1.0), 163);
        assert_eq!(threshold(33.3), 5455);
    }

    #[tokio::test]
    async fn keeps_whole_traces_at_the_configured_share() {
        let cfg: ProbabilisticSamplerConfig =
            parse_config(serde_yaml::from_str("sampling_percentage: 25\nhash_seed: 22").unwrap())
                .unwrap();
        let ctx = Context {
            id: "probabilistic_sampler".into(),
            metrics: Registry::new(),
            tasks: Tasks::default(),
            storage: Default::default(),
            auth: Default::default(),
            local: Default::default(),
        };
        let sink = Arc::new(Sink::default());
        let p = cfg.build(Signal::Traces, sink.clone(), &ctx);
        let mut g = Generator::new(GeneratorOptions::default());
        let mut sent = 0;
        for _ in 0..40 {
            let b = Batch::parse(Signal::Traces, g.traces(100).encode_to_vec().into()).unwrap();
            sent += b.items();
            p.consume(b).await.unwrap();
        }
        let batches = sink.batches.lock().unwrap();
        let mut kept_spans = 0;
        let mut per_trace: std::collections::HashMap<[u8; 16], usize> = Default::default();
        for b in batches.iter() {
            for r in &b.requests {
                for s in &r.index.as_ref().unwrap().spans {
                    kept_spans += 1;
                    *per_trace.entry(s.trace_id).or_default() += 1;
                }
            }
        }
        // 4,000 traces at 25%: 1,000 expected, standard deviation ~27.
        let traces = per_trace.len();
        assert!((880..=1120).contains(&traces), "{traces} traces kept");
        assert!(
            per_trace.values().all(|n| *n == 5),
            "every kept trace is whole"
        );
        let dropped = ctx
            .metrics
            .value(
                "observatory_processor_dropped_spans_total",
                &[("processor", "probabilistic_sampler")],
            )
            .unwrap();
        assert_eq!(kept_spans as f64 + dropped, sent as f64);
    }

    #[test]
    fn other_modes_are_refused_by_name() {
        let err = parse_config::<ProbabilisticSamplerConfig>(
            serde_yaml::from_str("sampling_percentage: 5\nmode: proportional").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.path, "mode");
    }
}
