//! The batch processor's cost per span: requests of 512 spans go in, batches
//! of 8192 come out to a consumer that only counts. With and without a
//! `send_batch_max_size` that forces splitting.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipeline::component::{Context, ProcessorBuilder, Tasks};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::processors::batch::BatchConfig;
use pipeline::telemetry::Registry;
use pipeline::testing::CountItems;
use pipeline::{Batch, Signal};
use prost::Message;

const SPANS: usize = 512;
const REQUESTS: usize = 64;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut gen = Generator::new(GeneratorOptions::default());
    let bytes = gen.spans(SPANS).encode_to_vec();
    let request = Batch::parse(Signal::Traces, bytes.into()).unwrap();
    let mut g = c.benchmark_group("batch_processor");
    g.throughput(Throughput::Elements((SPANS * REQUESTS) as u64));
    for (name, max) in [("concat", 0), ("split_at_1000", 1000)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let sink = Arc::new(CountItems::default());
                    let ctx = Context {
                        id: "batch".into(),
                        metrics: Registry::new(),
                        tasks: Tasks::default(),
                        storage: Default::default(),
                        auth: Default::default(),
                        local: Default::default(),
                    };
                    let cfg = BatchConfig {
                        timeout: Duration::from_secs(60),
                        send_batch_size: if max == 0 { 8192 } else { max },
                        send_batch_max_size: max,
                        ..BatchConfig::default()
                    };
                    let input = cfg.build(Signal::Traces, sink.clone(), &ctx);
                    for _ in 0..REQUESTS {
                        while input.consume(request.clone()).await.is_err() {
                            tokio::task::yield_now().await;
                        }
                    }
                    drop(input);
                    for (_, t) in ctx.tasks.take() {
                        t.await.unwrap();
                    }
                    assert_eq!(sink.0.load(Ordering::Relaxed), SPANS * REQUESTS);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
