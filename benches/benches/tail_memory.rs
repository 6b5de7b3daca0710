//! Memory the tail sampler needs to hold traffic: sends ~1,000,000 spans
//! (10 s at 100,000 spans/s) with a decision wait far away, waits until the
//! requests older than `compress_after` are compressed, then prints the
//! resident memory they added per span against their OTLP-encoded size,
//! and the CPU the compression took. One child process per
//! `held_compression` (none, lz4, zstd), so each starts from a clean heap.
//! Run: `cargo bench -p benches --bench tail_memory`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline::component::{Context, ProcessorBuilder, Tasks};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::processors::tail_sampling::TailSamplingConfig;
use pipeline::telemetry::{proc_status_bytes, Registry};
use pipeline::testing::CountItems;
use pipeline::{Batch, Signal};
use prost::Message;

const REQUESTS: usize = 1954; // × 512 spans ≈ 1,000,000
const CODECS: [&str; 3] = ["none", "lz4", "zstd"];

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let Ok(codec) = std::env::var("TAIL_MEMORY_CODEC") else {
        for codec in CODECS {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(std::env::args().skip(1))
                .env("TAIL_MEMORY_CODEC", codec)
                .status()
                .unwrap();
            assert!(status.success(), "{codec}: {status}");
        }
        return;
    };
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
        let cfg: TailSamplingConfig = serde_yaml::from_str(&format!(
            "decision_wait: 1h\nnum_traces: 10000000\nheld_compression: {codec}\ncompress_after: 1s\npolicies:\n  - {{name: all, type: always_sample}}\n"
        ))
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
        // Every request is past compress_after from here; wait until the
        // sampler's task has compressed them all (the gauge stops moving).
        let cpu = cpu_seconds();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let packed = || {
            ctx.metrics
                .value(
                    "observatory_processor_tail_sampling_compressed_bytes",
                    &[("processor", "tail_sampling")],
                )
                .unwrap()
        };
        let mut last = -1.0;
        while packed() != last {
            last = packed();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let cpu = cpu_seconds() - cpu;
        let held = proc_status_bytes("VmRSS").saturating_sub(before);
        println!(
            "tail_sampling held_compression={codec:4} holding {spans} spans: {:.0} B/span resident vs {:.0} B/span encoded ({:.2}x); {} MiB held, {:.0} MiB compressed; compressing took {:.2} CPU-s per M spans",
            held as f64 / spans as f64,
            encoded as f64 / spans as f64,
            held as f64 / encoded as f64,
            held >> 20,
            last / f64::from(1 << 20),
            cpu / spans as f64 * 1e6,
        );
        assert_eq!(sink.0.load(Ordering::Relaxed), 0, "nothing decided before the wait");
        drop(input);
    });
}
