//! The `parquet` exporter with the real binary: spans and log records sent
//! over OTLP are read back from the files with the `parquet` crate and
//! compared field by field; files roll by size and by age, sit under
//! `<signal>/date=…/hour=…/`, and the open file is written at shutdown.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, Int32Array, MapArray, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use common::*;
use exporters::values::text;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::wire::hex;
use pipeline::Signal;
use prost::Message;

fn config(extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
processors:
  batch:
    timeout: 50ms
exporters:
  parquet:
    endpoint: @DIR@/archive
{extra}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
"#
    )
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap_or_else(|e| panic!("{} is not a readable parquet file: {e}", path.display()))
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Rows of every parquet file under `root/signal`, once they number `n`.
fn rows(
    root: &Path,
    signal: &str,
    n: usize,
    row: fn(&RecordBatch, usize) -> String,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut out = Vec::new();
        for f in files(&root.join(signal)) {
            for b in read(&f) {
                out.extend((0..b.num_rows()).map(|i| row(&b, i)));
            }
        }
        if out.len() >= n || Instant::now() > deadline {
            out.sort();
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

fn id(b: &RecordBatch, name: &str, i: usize) -> String {
    let a: &FixedSizeBinaryArray = col(b, name);
    if a.is_null(i) {
        String::new()
    } else {
        hex(a.value(i))
    }
}

fn map(b: &RecordBatch, name: &str, i: usize) -> String {
    let m: &MapArray = col(b, name);
    let entries = m.value(i);
    let (k, v) = (
        entries.column(0).as_string::<i32>(),
        entries.column(1).as_string::<i32>(),
    );
    (0..entries.len())
        .map(|j| format!("{}={}", k.value(j), v.value(j)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resource's attributes: a JSON object in the file.
fn resource(b: &RecordBatch, i: usize) -> serde_json::Value {
    serde_json::from_str(&s(b, "resource_attributes", i)).unwrap()
}

fn kvs(attrs: &[KeyValue]) -> String {
    attrs
        .iter()
        .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
        .collect::<Vec<_>>()
        .join(",")
}

fn s(b: &RecordBatch, name: &str, i: usize) -> String {
    col::<StringArray>(b, name).value(i).to_string()
}

fn span_row(b: &RecordBatch, i: usize) -> String {
    let t = |n: &str| col::<TimestampNanosecondArray>(b, n).value(i);
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        id(b, "trace_id", i),
        id(b, "span_id", i),
        id(b, "parent_span_id", i),
        s(b, "name", i),
        col::<Int32Array>(b, "kind").value(i),
        t("start_time"),
        t("end_time"),
        col::<Int32Array>(b, "status_code").value(i),
        s(b, "status_message", i),
        map(b, "attributes", i),
        s(b, "service_name", i),
        resource(b, i),
        s(b, "scope_name", i),
        s(b, "scope_version", i),
        serde_json::from_str::<serde_json::Value>(&s(b, "events", i))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
    )
}

fn log_row(b: &RecordBatch, i: usize) -> String {
    let t = |n: &str| col::<TimestampNanosecondArray>(b, n).value(i);
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        t("time"),
        col::<Int32Array>(b, "severity_number").value(i),
        s(b, "severity_text", i),
        s(b, "body", i),
        id(b, "trace_id", i),
        id(b, "span_id", i),
        map(b, "attributes", i),
        s(b, "service_name", i),
        resource(b, i),
        s(b, "scope_name", i),
    )
}

#[tokio::test]
async fn spans_and_logs_read_back_field_by_field_from_partitioned_files() {
    let c = Collector::start(&config("    max_file_age: 1s"));
    let mut g = Generator::new(GeneratorOptions::default());
    let mut want_spans = Vec::new();
    for _ in 0..3 {
        let r = g.spans(200);
        grpc_send(c.grpc, Signal::Traces, r.encode_to_vec(), None)
            .await
            .unwrap();
        for rs in &r.resource_spans {
            let res = rs.resource.as_ref().unwrap();
            let svc = res
                .attributes
                .iter()
                .find(|k| k.key == "service.name")
                .map(|k| text(k.value.as_ref()).into_owned())
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref().unwrap();
                for sp in &ss.spans {
                    let st = sp.status.clone().unwrap_or_default();
                    want_spans.push(format!(
                        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                        hex(&sp.trace_id),
                        hex(&sp.span_id),
                        hex(&sp.parent_span_id),
                        sp.name,
                        sp.kind,
                        sp.start_time_unix_nano,
                        sp.end_time_unix_nano,
                        st.code,
                        st.message,
                        kvs(&sp.attributes),
                        svc,
                        exporters::values::attributes(&res.attributes),
                        scope.name,
                        scope.version,
                        sp.events.len(),
                    ));
                }
            }
        }
    }
    want_spans.sort();
    let logs = g.logs(150);
    grpc_send(c.grpc, Signal::Logs, logs.encode_to_vec(), None)
        .await
        .unwrap();
    let mut want_logs = Vec::new();
    for rl in &logs.resource_logs {
        let res = rl.resource.as_ref().unwrap();
        let svc = res
            .attributes
            .iter()
            .find(|k| k.key == "service.name")
            .map(|k| text(k.value.as_ref()).into_owned())
            .unwrap_or_default();
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                want_logs.push(format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    r.time_unix_nano,
                    r.severity_number,
                    r.severity_text,
                    text(r.body.as_ref()),
                    hex(&r.trace_id),
                    hex(&r.span_id),
                    kvs(&r.attributes),
                    svc,
                    exporters::values::attributes(&res.attributes),
                    sl.scope.as_ref().map_or("", |s| s.name.as_str()),
                ));
            }
        }
    }
    want_logs.sort();

    let root = c.path("archive");
    let got = rows(&root, "traces", want_spans.len(), span_row);
    assert_eq!(got.len(), want_spans.len());
    assert_eq!(got, want_spans);
    let got = rows(&root, "logs", want_logs.len(), log_row);
    assert_eq!(got, want_logs);

    // Layout: <signal>/date=YYYY-MM-DD/hour=HH/<uuid>.parquet, nothing else.
    let all = files(&root);
    assert!(!all.is_empty());
    for f in &all {
        let rel = f.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 4, "{rel}");
        assert!(["traces", "logs"].contains(&parts[0]), "{rel}");
        assert!(
            parts[1].starts_with("date=") && parts[1].len() == 15,
            "{rel}"
        );
        assert!(
            parts[2].starts_with("hour=") && parts[2].len() == 7,
            "{rel}"
        );
        assert!(
            parts[3].ends_with(".parquet") && parts[3].len() == 36 + 8,
            "{rel}"
        );
    }
    // The documented column types.
    let b = &read(&files(&root.join("traces"))[0])[0];
    assert_eq!(
        b.schema().field_with_name("trace_id").unwrap().data_type(),
        &DataType::FixedSizeBinary(16)
    );
    assert_eq!(
        b.schema().field_with_name("span_id").unwrap().data_type(),
        &DataType::FixedSizeBinary(8)
    );
    assert!(matches!(
        b.schema()
            .field_with_name("attributes")
            .unwrap()
            .data_type(),
        DataType::Map(..)
    ));
    assert!(
        c.metric("observatory_exporter_parquet_files_total{exporter=\"parquet\"}")
            .unwrap()
            >= 2.0
    );
}

// Multi-threaded: the runtime must keep closing the client's connections
// while the test thread blocks in terminate(), or the receiver's graceful
// stop waits for them.
#[tokio::test(flavor = "multi_thread")]
async fn files_roll_by_size_and_the_open_file_is_written_at_shutdown() {
    let mut c = Collector::start(&config(
        "    max_file_size_mib: 1\n    max_file_age: 1h\n    compression: none",
    ));
    let mut g = Generator::new(GeneratorOptions::default());
    let mut sent = 0;
    for _ in 0..60 {
        let r = g.spans(500);
        sent += 500;
        grpc_send(c.grpc, Signal::Traces, r.encode_to_vec(), None)
            .await
            .unwrap();
    }
    let root = c.path("archive");
    // 30,000 spans come to ~3.6 MB of Parquet: 1 MiB files roll by size.
    let deadline = Instant::now() + Duration::from_secs(10);
    while files(&root).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let rolled = files(&root).len();
    assert!(rolled >= 2, "{rolled} files");
    // Every file present is complete: it reads.
    for f in files(&root) {
        read(&f);
    }
    // The rest sits in the open file until shutdown writes it.
    assert_eq!(c.terminate(), 0);
    let total: usize = files(&root)
        .iter()
        .flat_map(|f| read(f))
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(total, sent);
    assert!(files(&root).len() > rolled);
}

/// A local S3 endpoint: moto's server (scripts/test.sh installs it from
/// PyPI), which implements S3's HTTP API; killed when dropped.
struct S3 {
    child: std::process::Child,
    port: u16,
}

impl S3 {
    fn start() -> S3 {
        let port = free_port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (scripts/test.sh installs it)");
        let s3 = S3 { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/").is_none() {
            assert!(Instant::now() < deadline, "moto server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    /// Creates a bucket (moto takes an unsigned PUT).
    async fn bucket(&self, name: &str) {
        let r = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/{name}", self.port))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// A signed client for `bucket`, as any S3 user would read the archive.
    fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_archived_to_s3_as_whole_objects() {
    let s3 = S3::start();
    s3.bucket("telemetry").await;
    let store = s3.client("telemetry");
    let c = Collector::start(&config(&format!(
        "    max_file_age: 1s\n    s3:\n      endpoint: http://127.0.0.1:{}\n      allow_http: true\n      region: us-east-1\n      access_key_id: test\n      secret_access_key: test",
        s3.port
    ))
    .replace("endpoint: @DIR@/archive", "endpoint: s3://telemetry/otel"));
    let mut g = Generator::new(GeneratorOptions::default());
    let mut sent: Vec<String> = Vec::new();
    for _ in 0..2 {
        let r = g.spans(300);
        grpc_send(c.grpc, Signal::Traces, r.encode_to_vec(), None)
            .await
            .unwrap();
        for sp in r
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            sent.push(format!(
                "{}|{}|{}",
                hex(&sp.trace_id),
                hex(&sp.span_id),
                sp.name
            ));
        }
    }
    sent.sort();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        got.clear();
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = object_store::path::Path::from("otel/traces");
        let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
        for meta in listed {
            let key = meta.location.to_string();
            let parts: Vec<&str> = key.split('/').collect();
            assert_eq!(parts.len(), 5, "{key}");
            assert!(
                parts[2].starts_with("date=") && parts[3].starts_with("hour="),
                "{key}"
            );
            let body = store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(body)
                .unwrap_or_else(|e| panic!("{key} is not a whole parquet file: {e}"))
                .build()
                .unwrap();
            for b in reader {
                let b = b.unwrap();
                for i in 0..b.num_rows() {
                    got.push(format!(
                        "{}|{}|{}",
                        id(&b, "trace_id", i),
                        id(&b, "span_id", i),
                        s(&b, "name", i)
                    ));
                }
            }
        }
    }
    got.sort();
    assert_eq!(got, sent);
}
