//! Processors' cost per span on 512-span LLM requests, each in front of a
//! consumer that only counts: the memory limiter's accept path (one atomic
//! load per batch) and `resource` (decodes, changes and re-encodes only the
//! resources; spans are copied as bytes) and `llm_cost` (decodes only the
//! 2 in 5 spans that carry token usage) and `attributes` (decodes each span
//! to match its name, changes 1 in 5) and `probabilistic_sampler` (hashes
//! trace ids from the index, copies the kept spans' bytes) and `redaction`
//! (decodes every span to scan its strings).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipeline::component::{Context, Tasks};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::processors::memory_limiter::MemoryLimiterConfig;
use pipeline::telemetry::Registry;
use pipeline::testing::CountItems;
use pipeline::{Batch, Signal};
use prost::Message;

const SPANS: usize = 512;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batch = Batch::parse(
        Signal::Traces,
        Generator::new(GeneratorOptions::default())
            .spans(SPANS)
            .encode_to_vec()
            .into(),
    )
    .unwrap();
    let ctx = Context {
        id: "memory_limiter".into(),
        metrics: Registry::new(),
        tasks: Tasks::default(),
    };
    let cfg = MemoryLimiterConfig {
        check_interval: Duration::from_secs(1),
        limit_mib: 1 << 20,
        ..Default::default()
    };
    let sink = Arc::new(CountItems::default());
    let limiter =
        rt.block_on(async { cfg.build_with_probe(Signal::Traces, sink, &ctx, Arc::new(|| 0)) });
    let mut g = c.benchmark_group("memory_limiter");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("accept_512_spans", |b| {
        b.iter(|| rt.block_on(limiter.consume(batch.clone())).unwrap())
    });
    g.finish();

    let yaml = "attributes:\n  - {key: telemetry.source, value: claude, action: upsert}\n";
    let resource =
        (pipeline::processors::resource::factory().parse)(serde_yaml::from_str(yaml).unwrap())
            .unwrap();
    let sink = Arc::new(CountItems::default());
    let resource = resource.build(Signal::Traces, sink, &ctx);
    let mut g = c.benchmark_group("resource");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("upsert_512_spans", |b| {
        b.iter(|| rt.block_on(resource.consume(batch.clone())).unwrap())
    });
    g.finish();

    let yaml = "include:\n  match_type: strict\n  span_names: [llm.chat_completion]\nactions:\n  - {key: reviewed, value: true, action: upsert}\n";
    let attributes =
        (pipeline::processors::attributes::factory().parse)(serde_yaml::from_str(yaml).unwrap())
            .unwrap();
    let sink = Arc::new(CountItems::default());
    let attributes = attributes.build(Signal::Traces, sink, &ctx);
    let mut g = c.benchmark_group("attributes");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("upsert_on_1_in_5_spans", |b| {
        b.iter(|| rt.block_on(attributes.consume(batch.clone())).unwrap())
    });
    g.finish();

    let sampler: pipeline::processors::probabilistic_sampler::ProbabilisticSamplerConfig =
        serde_yaml::from_str("sampling_percentage: 10\n").unwrap();
    let sink = Arc::new(CountItems::default());
    let sampler =
        pipeline::component::ProcessorBuilder::build(&sampler, Signal::Traces, sink, &ctx);
    let mut g = c.benchmark_group("probabilistic_sampler");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("keep_10_percent", |b| {
        b.iter(|| rt.block_on(sampler.consume(batch.clone())).unwrap())
    });
    g.finish();

    let yaml = "allow_all_keys: true\nblocked_value_presets: [email, credit_card, api_key]\n";
    let redaction =
        (pipeline::processors::redaction::factory().parse)(serde_yaml::from_str(yaml).unwrap())
            .unwrap();
    let sink = Arc::new(CountItems::default());
    let redaction = redaction.build(Signal::Traces, sink, &ctx);
    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("three_presets_no_hits", |b| {
        b.iter(|| rt.block_on(redaction.consume(batch.clone())).unwrap())
    });
    g.finish();

    let llm_cost = pipeline::processors::llm_cost::LlmCostConfig::default();
    let sink = Arc::new(CountItems::default());
    let llm_cost =
        pipeline::component::ProcessorBuilder::build(&llm_cost, Signal::Traces, sink, &ctx);
    let mut g = c.benchmark_group("llm_cost");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("price_512_spans", |b| {
        b.iter(|| rt.block_on(llm_cost.consume(batch.clone())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
