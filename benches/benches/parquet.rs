//! The parquet exporter's per-span cost: Arrow rows from an encoded, scanned
//! 512-span LLM request, then written with the exporter's writer settings (zstd).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exporters::parquet::{spans, writer_properties, Codec};
use parquet::arrow::ArrowWriter;
use parquet::basic::ZstdLevel;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::{Batch, Signal};
use prost::Message;

fn bench(c: &mut Criterion) {
    let req = Generator::new(GeneratorOptions::default()).spans(512);
    let req = Batch::parse(Signal::Traces, req.encode_to_vec().into()).unwrap();
    let mut g = c.benchmark_group("parquet");
    g.throughput(Throughput::Elements(512));
    g.bench_function("rows", |b| b.iter(|| spans(&req).unwrap()));
    let rows = spans(&req).unwrap();
    let props = writer_properties(Codec::ZSTD(ZstdLevel::default()));
    g.bench_function("rows+write", |b| {
        let mut w = ArrowWriter::try_new(Vec::new(), rows.schema(), Some(props.clone())).unwrap();
        let mut n = 0;
        b.iter(|| {
            w.write(&spans(&req).unwrap()).unwrap();
            n += 1;
            // Keep the file a realistic size: a new one every 64 requests.
            if n % 64 == 0 {
                let full = std::mem::replace(
                    &mut w,
                    ArrowWriter::try_new(Vec::new(), rows.schema(), Some(props.clone())).unwrap(),
                );
                full.into_inner().unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
