//! The persistent sending queue with the real binary: data acknowledged to
//! the client survives SIGKILL of the collector and reaches a real OTLP
//! backend (a second collector) after a restart, at least once.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

const FRONT: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
extensions:
  file_storage/queue:
    directory: @QUEUE@
    fsync: true
exporters:
  otlp/back:
    endpoint: 127.0.0.1:@BACK@
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 300ms
      max_elapsed_time: 0s
    sending_queue:
      storage: file_storage/queue
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/back]
"#;

fn front(queue: &Path, back_grpc: u16) -> Collector {
    Collector::start_with(
        FRONT,
        &[
            ("QUEUE", queue.display().to_string()),
            ("BACK", back_grpc.to_string()),
            ("EXTENSIONS", ", file_storage/queue".into()),
        ],
    )
}

fn back(grpc: u16, http: u16) -> Collector {
    Collector::start(
        &FILE_CONFIG
            .replace("@GRPC@", &grpc.to_string())
            .replace("@HTTP@", &http.to_string()),
    )
}

fn sigkill(c: &mut Collector) {
    c.child.kill().unwrap();
    c.child.wait().unwrap();
}

fn segments(queue: &Path) -> Vec<PathBuf> {
    let dir = queue.join("exporter_otlp_back");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// How many times each span row arrived, once `want` distinct rows did.
fn arrivals(back: &Collector, want: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(back.path("traces.jsonl")).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let lines: Vec<String> = complete.lines().map(str::to_string).collect();
        let mut seen = HashMap::new();
        for row in span_rows(&traces_from(&lines)) {
            *seen.entry(row).or_insert(0) += 1;
        }
        if seen.len() >= want || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn acknowledged_spans_survive_sigkill_and_a_torn_record_while_the_backend_is_down() {
    let queue = tempfile::tempdir().unwrap();
    let (bg, bh) = (free_port(), free_port());
    let mut f = front(queue.path(), bg);
    let mut g = Generator::new(GeneratorOptions::default());
    let mut sent = Vec::new();
    for _ in 0..40 {
        let r = g.spans(50);
        grpc_send(f.grpc, Signal::Traces, r.encode_to_vec(), None)
            .await
            .expect("accepted into the WAL");
        sent.extend(span_rows(&r));
    }
    sent.sort();
    // The backend is down: everything is on disk, nothing was sent.
    assert_eq!(
        f.metric("observatory_exporter_queue_size{exporter=\"otlp/back\"}"),
        Some(40.0)
    );
    sigkill(&mut f);

    // A crash half-way through writing one more record.
    let last = segments(queue.path()).pop().unwrap();
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    torn.write_all(&[0xe8, 0x03, 0, 0, 0xde, 0xad, 0xbe, 0xef, 7, 7, 7])
        .unwrap();
    drop(torn);

    let b = back(bg, bh);
    let f2 = front(queue.path(), bg);
    let seen = arrivals(&b, sent.len());
    let mut got: Vec<String> = seen.keys().cloned().collect();
    got.sort();
    assert_rows_eq(&got, &sent);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        duplicates, 0,
        "the backend never took anything before the kill"
    );
    let m = |name: &str| f2.metric(&format!("{name}{{exporter=\"otlp/back\"}}"));
    assert_eq!(
        m("observatory_exporter_queue_recovered_spans_total"),
        Some(2000.0)
    );
    assert_eq!(
        m("observatory_exporter_queue_corrupt_records_total"),
        Some(1.0)
    );
    assert!(
        f2.logs().contains("torn or damaged record skipped"),
        "{}",
        f2.logs()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while m("observatory_exporter_queue_size") != Some(0.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(m("observatory_exporter_queue_size"), Some(0.0));
    assert_eq!(m("observatory_exporter_sent_spans_total"), Some(2000.0));
}

#[tokio::test]
async fn a_kill_while_sending_loses_nothing_and_duplicates_stay_within_the_redelivered_count() {
    let queue = tempfile::tempdir().unwrap();
    let (bg, bh) = (free_port(), free_port());
    let b = back(bg, bh);
    let mut f = front(queue.path(), bg);
    let mut g = Generator::new(GeneratorOptions::default());
    let mut acked = Vec::new();
    for i in 0..60 {
        if i == 30 {
            sigkill(&mut f);
        }
        let r = g.spans(50);
        if grpc_send(f.grpc, Signal::Traces, r.encode_to_vec(), None)
            .await
            .is_ok()
        {
            acked.extend(span_rows(&r));
        }
    }
    assert_eq!(
        acked.len(),
        1500,
        "only the requests before the kill were accepted"
    );
    let f2 = front(queue.path(), bg);
    let seen = arrivals(&b, acked.len());
    for row in &acked {
        assert!(seen.contains_key(row), "an acknowledged span never arrived");
    }
    assert_eq!(seen.len(), acked.len());
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let redelivered = f2
        .metric("observatory_exporter_queue_redelivered_spans_total{exporter=\"otlp/back\"}")
        .unwrap();
    assert!(
        duplicates as f64 <= redelivered,
        "{duplicates} duplicates, but only {redelivered} spans were possibly delivered before the kill"
    );
    println!("duplicates after SIGKILL: {duplicates} spans (redelivered bound {redelivered})");
}

#[test]
fn a_second_collector_on_the_same_queue_directory_is_refused_by_name() {
    let queue = tempfile::tempdir().unwrap();
    let bg = free_port();
    let _first = front(queue.path(), bg);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let text = FRONT
        .replace("@GRPC@", &free_port().to_string())
        .replace("@QUEUE@", &queue.path().display().to_string())
        .replace("@BACK@", &bg.to_string())
        + "  extensions: [file_storage/queue]\n";
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exporters.otlp/back") && err.contains("locked by another process"),
        "{err}"
    );
}
