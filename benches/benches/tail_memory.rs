//! Memory the tail sampler needs to hold traffic: sends ~1,000,000 spans
//! (10 s at 100,000 spans/s) with a decision wait far away, then prints the
//! resident memory they added per span against their OTLP-encoded size.
//! Run: `cargo bench -p benches --bench tail_memory`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pipeline::component::{Context, ProcessorBuilder, Tasks};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::processors::tail_sampling::TailSamplingConfig;
use pipeline::telemetry::{proc_status_bytes, Registry};
use pipeline::testing::CountItems;
use pipeline::{Batch, Signal};
use prost::Message;

const REQUESTS: usize = 1954; // × 512 spans ≈ 1,000,000

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let requests = if quick { 20 } else { REQUESTS };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The baseline comes before the requests exist: their bytes are what
        // the sampler holds (moved into it, never copied). The generator
        // frees its own structures after each request.
        let before = proc_status_bytes("VmRSS");
        let mut g = Generator::new(GeneratorOptions::default());
        let bodies: Vec<Vec<u8>> = (0..requests).map(|_| g.spans(512).encode_to_vec()).collect();
        let encoded: usize = bodies.iter().map(Vec::len).sum();
        let cfg: TailSamplingConfig = serde_yaml::from_str(
            "decision_wait: 1h\nnum_traces: 10000000\npolicies:\n  - {name: all, type: always_sample}\n",
        )
        .unwrap();
        let ctx = Context {
            id: "tail_sampling".into(),
            metrics: Registry::new(),
            tasks: Tasks::default(),
            storage: Default::default(),
            auth: Default::default(),
            local: Default::default(),
        };
        let sink = Arc::new(CountItems::default());
        let input = cfg.build(Signal::Traces, sink.clone(), &ctx);
        let mut spans = 0usize;
        for body in bodies {
            // Parsing (the span index) is part of what is held.
            let batch = Batch::parse(Signal::Traces, body.into()).unwrap();
            spans += batch.items();
            while input.consume(batch.clone()).await.is_err() {
                tokio::task::yield_now().await;
            }
        }
        // Let the sampler take in the last requests.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let held = proc_status_bytes("VmRSS").saturating_sub(before);
        println!(
            "tail_sampling holding {spans} spans: {:.0} B/span resident vs {:.0} B/span encoded ({:.2}x); {} MiB held",
            held as f64 / spans as f64,
            encoded as f64 / spans as f64,
            held as f64 / encoded as f64,
            held >> 20
        );
        assert_eq!(sink.0.load(Ordering::Relaxed), 0, "nothing decided before the wait");
        drop(input);
    });
}
