//! Processors' cost per span on 512-span LLM requests, each in front of a
//! consumer that only counts: the memory limiter's accept path (one atomic
//! load per batch) and `resource` (decodes, changes and re-encodes only the
//! resources; spans are copied as bytes) and `llm_cost` (decodes only the
//! 2 in 5 spans that carry token usage) and `attributes` (decodes each span
//! to match its name, changes 1 in 5) and `probabilistic_sampler` (hashes
//! trace ids from the index, copies the kept spans' bytes) and `redaction`
//! (scans string values in place, decodes only spans with a hit) and
//! `filter` (reads names and attributes in place, re-frames without the
//! dropped spans).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipeline::component::{Context, ProcessorFactory, Tasks};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::processors::memory_limiter::MemoryLimiterConfig;
use pipeline::telemetry::Registry;
use pipeline::testing::CountItems;
use pipeline::{Batch, BoxConsumer, Signal};
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
        storage: Default::default(),
        auth: Default::default(),
        local: Default::default(),
    };
    let cfg = MemoryLimiterConfig {
        check_interval: Duration::from_secs(1),
        limit_mib: 1 << 20,
        ..Default::default()
    };
    let sink = Arc::new(CountItems::default());
    let limiter = rt.block_on(async {
        cfg.build_with_probe(Signal::Traces, sink, &ctx, Arc::new(Default::default), None)
    });
    let mut g = c.benchmark_group("memory_limiter");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("accept_512_spans", |b| {
        b.iter(|| rt.block_on(limiter.consume(batch.clone())).unwrap())
    });
    g.finish();

    let from_yaml = |factory: ProcessorFactory, yaml: &str| -> BoxConsumer {
        let builder = (factory.parse)(serde_yaml::from_str(yaml).unwrap()).unwrap();
        builder.build(Signal::Traces, Arc::new(CountItems::default()), &ctx)
    };
    let mut run = |group: &str, name: &str, p: BoxConsumer| {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(SPANS as u64));
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(p.consume(batch.clone())).unwrap())
        });
        g.finish();
    };
    use pipeline::processors::*;
    run(
        "resource",
        "upsert_512_spans",
        from_yaml(
            resource::factory(),
            "attributes:\n  - {key: telemetry.source, value: claude, action: upsert}\n",
        ),
    );
    run(
        "attributes",
        "upsert_on_1_in_5_spans",
        from_yaml(
            attributes::factory(),
            "include:\n  match_type: strict\n  span_names: [llm.chat_completion]\nactions:\n  - {key: reviewed, value: true, action: upsert}\n",
        ),
    );
    run(
        "probabilistic_sampler",
        "keep_10_percent",
        from_yaml(
            probabilistic_sampler::factory(),
            "sampling_percentage: 10\n",
        ),
    );
    run(
        "redaction",
        "three_presets_no_hits",
        from_yaml(
            redaction::factory(),
            "allow_all_keys: true\nblocked_value_presets: [email, credit_card, api_key]\n",
        ),
    );
    // The llm-gateway example's redaction: key patterns, six presets and
    // the GenAI content switch.
    run(
        "redaction",
        "gateway_config",
        from_yaml(
            redaction::factory(),
            r#"
allow_all_keys: true
blocked_key_patterns: ["(?i)passw(or)?d", "(?i)api[_-]?key", "(?i)(access|auth|refresh|session|bearer)[_.-]?token", "(?i)secret"]
blocked_value_presets: [email, credit_card, us_ssn, bearer_token, api_key, url_secret]
drop_genai_content: true
summary: info
"#,
        ),
    );
    run(
        "llm_cost",
        "price_512_spans",
        from_yaml(llm_cost::factory(), "{}"),
    );
    run(
        "filter",
        "drop_1_in_5_by_name_or_attribute",
        from_yaml(
            filter::factory(),
            "traces:\n  span:\n    - 'name == \"vectordb.search\"'\n    - 'attributes[\"http.route\"] == \"/healthz\"'\n",
        ),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
