//! What the end-to-end tests share: starting the real `observatory` binary
//! on free ports, sending OTLP over real sockets, reading what the `file`
//! exporter wrote.
#![allow(dead_code)]

pub mod backends;
pub mod dns;
pub mod loki;
pub mod pki;
pub mod postgres;
pub mod tansu;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exporters::grpc_codec::{export_path, RawCodec};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline::Signal;
use tonic::codec::CompressionEncoding;

/// A port nothing listens on right now, below the kernel's ephemeral range
/// (32768+) and never handed out twice in this process. A port reserved
/// for a server started later must not be taken meanwhile by a client
/// socket or another test's `bind(":0")`, which both draw from that range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Tests run as separate processes too: start each at its own offset.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 600) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < 32_768, "ran out of test ports");
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A running collector; killed when dropped.
pub struct Collector {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub grpc: u16,
    pub http: u16,
    pub health: u16,
    pub metrics: u16,
    pub log: PathBuf,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_observatory")
}

impl Collector {
    /// Starts the binary on `template`, where `@GRPC@`, `@HTTP@`, `@HEALTH@`,
    /// `@METRICS@` become free ports and `@DIR@` a fresh directory. A second
    /// `--config` file ([`HARNESS`]) adds `health_check` and the metrics
    /// address, merged over the template; start returns once health is 200.
    pub fn start(template: &str) -> Collector {
        Collector::start_with(template, &[])
    }

    /// As `start`, with extra `@NAME@` → value substitutions. The harness
    /// file replaces `service.extensions`, so a template's own extensions
    /// go in the var `EXTENSIONS` (`", file_storage/q"`).
    pub fn start_with(template: &str, vars: &[(&str, String)]) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
        let mut text = template
            .replace("@GRPC@", &grpc.to_string())
            .replace("@HTTP@", &http.to_string())
            .replace("@HEALTH@", &health.to_string())
            .replace("@METRICS@", &metrics.to_string())
            .replace("@DIR@", dir.path().to_str().unwrap());
        for (k, v) in vars {
            text = text.replace(&format!("@{k}@"), v);
        }
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, text).unwrap();
        let harness = dir.path().join("harness.yaml");
        let extra = vars.iter().find(|(k, _)| *k == "EXTENSIONS");
        let harness_text = HARNESS
            .replace("@HEALTH@", &health.to_string())
            .replace("@METRICS@", &metrics.to_string())
            .replace("@EXTENSIONS@", extra.map_or("", |(_, v)| v));
        std::fs::write(&harness, harness_text).unwrap();
        let log = dir.path().join("collector.log");
        let child = Command::new(binary())
            .arg("--config")
            .arg(&cfg)
            .arg("--config")
            .arg(&harness)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut c = Collector {
            child,
            dir,
            grpc,
            http,
            health,
            metrics,
            log,
        };
        c.wait_healthy();
        c
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("collector exited with {status} at start:\n{}", self.logs());
            }
            if http_get(self.health, "/").is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("collector not healthy after 20s:\n{}", self.logs());
    }

    /// A memory field of the collector's `/proc/<pid>/status` (`VmRSS`,
    /// `VmHWM` for the peak), in MiB.
    pub fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb / 1024.0
    }

    /// What the collector has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A path inside the collector's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Value of a self-metric series (the whole `name{labels}` text).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = http_get(self.metrics, "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Value of a self-metric series once it equals `want`, or its last value
    /// after 10 s: a counter moves after the exporter hears back, which can be
    /// just after the back end has the data.
    pub async fn metric_when(&self, series: &str, want: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.metric(series);
            if got == Some(want) || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self) -> i32 {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "collector did not exit within 40s of SIGTERM:\n{}",
            self.logs()
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `loadgen` from this workspace; `scripts/test.sh` builds it first
/// (`cargo build -p benches --bin loadgen`), since a test cannot build
/// another package's binary while `cargo test` holds the build lock.
pub fn loadgen_bin() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/loadgen");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p benches --bin loadgen` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A plain HTTP GET on localhost; (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Sends one encoded request over OTLP/gRPC.
pub async fn grpc_send(
    port: u16,
    signal: Signal,
    body: Vec<u8>,
    compression: Option<CompressionEncoding>,
) -> Result<Bytes, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    if let Some(c) = compression {
        grpc = grpc.send_compressed(c);
    }
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(export_path(signal));
    grpc.unary(tonic::Request::new(vec![Bytes::from(body)]), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

/// Sends one body over OTLP/HTTP; returns (status, headers, body).
pub async fn http_post(
    port: u16,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Bytes) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap())
}

/// gzip-compresses.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

/// The lines the `file` exporter wrote, waiting until they hold `items`.
pub fn wait_for_lines(
    path: &Path,
    count: impl Fn(&[String]) -> usize,
    items: usize,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A record is complete only once its newline is written; a reader
        // can catch a long line half-way through.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let lines: Vec<String> = complete.lines().map(str::to_string).collect();
        let n = count(&lines);
        if n >= items || Instant::now() > deadline {
            assert_eq!(n, items, "items in {}", path.display());
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Traces in a file exporter's lines, merged into one request.
pub fn traces_from(lines: &[String]) -> ExportTraceServiceRequest {
    let mut all = ExportTraceServiceRequest::default();
    for l in lines {
        let r: ExportTraceServiceRequest = serde_json::from_str(l).unwrap();
        all.resource_spans.extend(r.resource_spans);
    }
    all
}

/// Logs in a file exporter's lines, merged.
pub fn logs_from(lines: &[String]) -> ExportLogsServiceRequest {
    let mut all = ExportLogsServiceRequest::default();
    for l in lines {
        let r: ExportLogsServiceRequest = serde_json::from_str(l).unwrap();
        all.resource_logs.extend(r.resource_logs);
    }
    all
}

/// Metrics in a file exporter's lines, merged.
pub fn metrics_from(lines: &[String]) -> ExportMetricsServiceRequest {
    let mut all = ExportMetricsServiceRequest::default();
    for l in lines {
        let r: ExportMetricsServiceRequest = serde_json::from_str(l).unwrap();
        all.resource_metrics.extend(r.resource_metrics);
    }
    all
}

pub use pipeline::wire::hex;

/// (trace id, span id) in hex of every span a `file` exporter has written
/// to `path` so far, duplicates kept; none when the file does not exist yet.
pub fn span_ids_in(path: &Path) -> Vec<(String, String)> {
    let lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    traces_from(&lines)
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .map(|s| (hex(&s.trace_id), hex(&s.span_id)))
        .collect()
}

/// Every span with its resource and scope, in a canonical order, so requests
/// regrouped by batching compare equal when their content is.
pub fn span_rows(r: &ExportTraceServiceRequest) -> Vec<String> {
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    let mut rows: Vec<String> = r
        .resource_spans
        .iter()
        .flat_map(|rs: &ResourceSpans| {
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans.iter().map(move |s| {
                    format!(
                        "{:?}|{}|{:?}|{}|{:?}",
                        rs.resource, rs.schema_url, ss.scope, ss.schema_url, s
                    )
                })
            })
        })
        .collect();
    rows.sort();
    rows
}

/// Every log record with its resource and scope, canonically ordered.
pub fn log_rows(r: &ExportLogsServiceRequest) -> Vec<String> {
    let mut rows: Vec<String> = r
        .resource_logs
        .iter()
        .flat_map(|rl| {
            rl.scope_logs.iter().flat_map(move |sl| {
                sl.log_records
                    .iter()
                    .map(move |l| format!("{:?}|{:?}|{:?}", rl.resource, sl.scope, l))
            })
        })
        .collect();
    rows.sort();
    rows
}

/// Every metric with its resource and scope, canonically ordered.
pub fn metric_rows(r: &ExportMetricsServiceRequest) -> Vec<String> {
    let mut rows: Vec<String> = r
        .resource_metrics
        .iter()
        .flat_map(|rm| {
            rm.scope_metrics.iter().flat_map(move |sm| {
                sm.metrics
                    .iter()
                    .map(move |m| format!("{:?}|{:?}|{:?}", rm.resource, sm.scope, m))
            })
        })
        .collect();
    rows.sort();
    rows
}

/// Spans across a file exporter's lines.
pub fn count_spans(lines: &[String]) -> usize {
    pipeline::batch::span_count(&traces_from(lines))
}

/// Log records across a file exporter's lines.
pub fn count_logs(lines: &[String]) -> usize {
    pipeline::batch::log_count(&logs_from(lines))
}

/// Data points across a file exporter's lines.
pub fn count_points(lines: &[String]) -> usize {
    pipeline::batch::point_count(&metrics_from(lines))
}

/// Merged over every test config: the health check the harness waits on and
/// the metrics endpoint tests read.
pub const HARNESS: &str = "extensions:\n  health_check:\n    endpoint: 127.0.0.1:@HEALTH@\nservice:\n  extensions: [health_check@EXTENSIONS@]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:@METRICS@\n";

/// A config with OTLP in on both protocols, `batch`, and one `file`
/// exporter per signal under `@DIR@`.
pub const FILE_CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
      http:
        endpoint: 127.0.0.1:@HTTP@
        max_request_body_size: 1048576
processors:
  batch:
    timeout: 100ms
exporters:
  file/traces:
    path: @DIR@/traces.jsonl
  file/metrics:
    path: @DIR@/metrics.jsonl
  file/logs:
    path: @DIR@/logs.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/metrics]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/logs]
"#;

/// Asserts two row lists are equal, reporting only the first difference.
pub fn assert_rows_eq(got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |v: &[String]| {
        v.get(first)
            .map(|s| s.chars().take(3000).collect::<String>())
            .unwrap_or_default()
    };
    panic!(
        "rows differ: got {} rows, want {}; first difference at row {first}:\n got: {}\nwant: {}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}
