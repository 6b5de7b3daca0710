//! The span-index scan against a prost decode of the same 512-span LLM
//! request: the gap is the data path's performance lead. Reported per span.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::scan::{scan_traces, SpanIndex};
use prost::Message;

const SPANS: usize = 512;

fn bench(c: &mut Criterion) {
    let bytes = Generator::new(GeneratorOptions::default())
        .spans(SPANS)
        .encode_to_vec();
    let mut g = c.benchmark_group("traces_512_spans");
    // Elements = spans, so criterion prints time per span as elem/s.
    g.throughput(Throughput::Elements(SPANS as u64));
    let mut index = SpanIndex::default();
    g.bench_function("scan_index", |b| {
        b.iter(|| {
            scan_traces(std::hint::black_box(&bytes), &mut index).unwrap();
            index.spans.len()
        })
    });
    g.bench_function("prost_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(std::hint::black_box(&bytes[..])).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
