//! The processors of `benches/configs/full-chain.yaml` (memory_limiter →
//! redaction → llm_cost → tail_sampling with its 10 s hold → batch) in one
//! thread, on a paused clock that moves 512 spans' worth of 150,000 spans/s
//! per request: the e2e bench's full chain without the network, loadgen or
//! a second core's noise, so two builds compare within a few per cent.
//! Before measuring, 12 s of traffic fills the hold, so each measured
//! request also pays for the decisions and the compression that are due.
//! Each pass over the distinct requests gives their traces new ids, as
//! loadgen's `--unique-traces` does: a trace id is never seen twice, so
//! the sampler's map is probed as in e2e (for ids it does not hold), and
//! the ids are changed and the request scanned outside the timed part.
//! Run: `cargo bench -p benches --bench chain`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipeline::component::{Context, Tasks};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::telemetry::Registry;
use pipeline::testing::CountItems;
use pipeline::{Batch, BoxConsumer, Signal};
use prost::Message;

const SPANS: usize = 512;
const RATE: f64 = 150_000.0;
/// Distinct requests cycled through (with new trace ids each pass).
const DISTINCT: usize = 3_600;
/// Requests sent before measuring: the hold full, decisions under way.
const WARM: usize = 3_600;

fn config() -> serde_yaml::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/full-chain.yaml");
    let text = std::fs::read_to_string(path).expect("the full-chain config");
    serde_yaml::from_str(&text).expect("YAML")
}

/// The config's traces pipeline, built back to front in front of `sink`.
fn chain(sink: BoxConsumer) -> BoxConsumer {
    let cfg = config();
    let names: Vec<String> =
        serde_yaml::from_value(cfg["service"]["pipelines"]["traces"]["processors"].clone())
            .expect("a processor list");
    let mut next = sink;
    for name in names.iter().rev() {
        let factory = pipeline::processors::factories()
            .into_iter()
            .find(|f| f.type_name == name.as_str())
            .unwrap_or_else(|| panic!("no processor {name}"));
        let builder = (factory.parse)(cfg["processors"][name.as_str()].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ctx = Context {
            id: name.clone(),
            metrics: Registry::new(),
            tasks: Tasks::default(),
            storage: Default::default(),
            auth: Default::default(),
            local: Default::default(),
        };
        next = builder.build(Signal::Traces, next, &ctx);
    }
    next
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let quick = !std::env::args().any(|a| a == "--bench");
    let distinct = if quick { 40 } else { DISTINCT };
    // loadgen's defaults: the traces the policies keep come from these.
    let mut generator = Generator::new(GeneratorOptions {
        error_rate: 0.02,
        slow_rate: 0.01,
        ..Default::default()
    });
    let requests: Vec<Batch> = (0..distinct)
        .map(|_| {
            Batch::parse(
                Signal::Traces,
                generator.spans(SPANS).encode_to_vec().into(),
            )
            .unwrap()
        })
        .collect();
    // Request `n`: pass `n / distinct` over them, its trace ids' last 8
    // bytes xor-ed with the pass number (spans of a trace stay together).
    let request = |n: usize| -> Batch {
        let base = &requests[n % requests.len()];
        let pass = (n / requests.len()) as u64;
        if pass == 0 {
            return base.clone();
        }
        let req = &base.requests[0];
        let mut bytes = req.bytes.to_vec();
        for span in &req.index.as_ref().expect("indexed").spans {
            let (from, to) = (span.range.0 as usize, span.range.1 as usize);
            let at = from
                + bytes[from..to]
                    .windows(16)
                    .position(|w| w == span.trace_id)
                    .expect("the span holds its trace id");
            for (b, x) in bytes[at + 8..at + 16].iter_mut().zip(pass.to_le_bytes()) {
                *b ^= x;
            }
        }
        Batch::parse(Signal::Traces, bytes.into()).unwrap()
    };
    let step = Duration::from_secs_f64(SPANS as f64 / RATE);
    let sink = Arc::new(CountItems::default());
    let head = rt.block_on(async { chain(sink.clone()) });
    let mut next = 0;
    // Sends the next request; returns the time it took, not counting
    // making the request.
    let mut send = |head: &BoxConsumer| {
        let batch = request(next);
        next += 1;
        let start = Instant::now();
        rt.block_on(async {
            head.consume(batch).await.expect("accepted");
            tokio::time::advance(step).await;
            // The sampler's and the batcher's tasks run on this thread.
            tokio::task::yield_now().await;
        });
        start.elapsed()
    };
    for _ in 0..if quick { 40 } else { WARM } {
        send(&head);
    }
    assert!(
        sink.0.load(std::sync::atomic::Ordering::Relaxed) > 0 || quick,
        "decided spans reach the sink"
    );
    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("full_chain_512_spans_at_150k", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| send(&head)).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
