//! Backends for `loadbalancing` tests: collectors that write what they
//! receive to files, each on its own loopback address and one shared port,
//! as DNS answers list pods.

use super::{span_ids_in, Collector};

/// A backend's config: traces and logs to files.
pub const BACK: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  file/traces:
    path: @DIR@/traces.jsonl
  file/logs:
    path: @DIR@/logs.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces]
    logs:
      receivers: [otlp]
      exporters: [file/logs]
"#;

/// A backend on `ip:port` (127.0.0.N and the shared port).
pub fn back_at(ip: &str, port: u16) -> Collector {
    Collector::start_with(
        &BACK.replace("127.0.0.1:@GRPC@", "@IP@:@PORT@"),
        &[("IP", ip.to_string()), ("PORT", port.to_string())],
    )
}

/// The span ids (hex) a backend has written so far.
pub fn spans_at(b: &Collector) -> Vec<String> {
    span_ids_in(&b.path("traces.jsonl"))
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}
