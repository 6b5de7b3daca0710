//! `loadgen`: drives an OTLP endpoint with realistic LLM-application
//! telemetry. Requests are generated and encoded before the clock starts, so
//! the generator costs little beside the collector it measures. It does not
//! retry unless told to, so refusals stay visible.

use std::collections::BTreeMap;

#[path = "loadgen/progress.rs"]
mod progress;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use exporters::grpc_codec::{export_path, RawCodec};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;
use tonic::codec::CompressionEncoding;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Protocol {
    Grpc,
    Http,
    HttpJson,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

/// Load generator for OTLP endpoints.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version)]
struct Args {
    /// `host:port` (gRPC) or `http://host:port` (HTTP); defaults per protocol.
    #[arg(long)]
    endpoint: Option<String>,
    /// Transport and encoding.
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// What to send.
    #[arg(long, value_enum, default_value = "traces")]
    signal: SignalArg,
    /// Items (spans, points, records) per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to run (`30s`, `5m`).
    #[arg(long, value_parser = pipeline::duration::parse, default_value = "10s")]
    duration: Duration,
    /// Stop after this many items instead (0 = use --duration).
    #[arg(long, default_value_t = 0)]
    total: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Items per request.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Share of traces with an error status (0..1).
    #[arg(long, default_value_t = 0.02)]
    error_rate: f64,
    /// Share of traces slower than 5 s (0..1).
    #[arg(long, default_value_t = 0.01)]
    slow_rate: f64,
    /// gzip request bodies.
    #[arg(long)]
    gzip: bool,
    /// Retry refused requests (after Retry-After or 100 ms, up to 10 times).
    #[arg(long)]
    retry: bool,
    /// Distinct pre-encoded requests to cycle through.
    #[arg(long, default_value_t = 64)]
    pool: usize,
    /// Give every request's traces fresh trace ids, as real traffic has
    /// (protobuf traces without --gzip). Without it a tail sampler sees the
    /// pool's few thousand traces again and again.
    #[arg(long)]
    unique_traces: bool,
    /// Send each trace's spans in this many separate requests (needs
    /// --rate; protobuf traces without --gzip; trace ids are fresh per
    /// trace), as services of one application emit them.
    #[arg(long, default_value_t = 1)]
    spread: usize,
    /// Time between the requests carrying one trace's parts (with --spread).
    #[arg(long, value_parser = pipeline::duration::parse, default_value = "1s")]
    spread_delay: Duration,
    /// Connect over TLS, trusting this CA (PEM).
    #[arg(long)]
    ca_file: Option<String>,
    /// Client certificate for mTLS (PEM; with --key-file).
    #[arg(long)]
    cert_file: Option<String>,
    /// Client key for mTLS (PEM).
    #[arg(long)]
    key_file: Option<String>,
    /// Progress and summary as JSON lines on stdout (for scripts).
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The TLS settings, when --ca-file asks for TLS.
    fn tls(&self) -> Option<exporters::tls::ClientTlsConfig> {
        self.ca_file
            .as_ref()
            .map(|ca| exporters::tls::ClientTlsConfig {
                ca_file: Some(ca.clone()),
                cert_file: self.cert_file.clone(),
                key_file: self.key_file.clone(),
                ..Default::default()
            })
    }
}

/// Where each span's 16-byte trace id starts in an encoded traces request.
fn trace_id_offsets(body: &Bytes) -> Vec<usize> {
    let req = pipeline::Request::parse(Signal::Traces, body.clone()).expect("valid request");
    let index = req.index.expect("traces are indexed");
    let mut out = Vec::with_capacity(index.spans.len());
    for span in &index.spans {
        let (start, end) = (span.range.0 as usize, span.range.1 as usize);
        let mut outer = pipeline::wire::Reader::new(body, start, end, "ScopeSpans");
        let field = outer.next_field().unwrap().unwrap();
        let mut r = pipeline::wire::Reader::new(body, field.body.0, field.body.1, "Span");
        while let Ok(Some(f)) = r.next_field() {
            if f.number == 1 && f.body.1 - f.body.0 == 16 {
                out.push(f.body.0);
            }
        }
    }
    out
}

/// A copy of `body` whose trace ids are xored with `seq` (distinct per
/// send, so no two sends share a trace).
fn with_fresh_trace_ids(body: &Bytes, offsets: &[usize], seq: u64) -> Bytes {
    let mut v = body.to_vec();
    for &o in offsets {
        let id = &mut v[o..o + 8];
        let x = u64::from_le_bytes(id.try_into().unwrap()) ^ seq.wrapping_add(1);
        id.copy_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

/// One part of a spread request: its bytes, spans, and where its trace ids are.
type Part = (Bytes, u64, Vec<usize>);

#[derive(Default)]
struct Stats {
    sent_items: AtomicU64,
    accepted_items: AtomicU64,
    refused_items: AtomicU64,
    requests: AtomicU64,
    refused_by: Mutex<BTreeMap<String, u64>>,
    latencies_us: Mutex<Vec<u64>>,
    /// The latencies since the last progress tick.
    recent_us: Mutex<Vec<u64>>,
}

enum Client {
    Grpc(tonic::transport::Channel),
    Http(reqwest::Client, String),
}

/// Sends one request; Err carries the refusal code and a retry hint.
async fn send(
    client: &Client,
    signal: Signal,
    body: &Bytes,
    args: &Args,
) -> Result<(), (String, Option<Duration>)> {
    match client {
        Client::Grpc(channel) => {
            let mut grpc =
                tonic::client::Grpc::new(channel.clone()).max_encoding_message_size(usize::MAX);
            if args.gzip {
                grpc = grpc.send_compressed(CompressionEncoding::Gzip);
            }
            grpc.ready()
                .await
                .map_err(|e| (format!("grpc:connect ({e})"), None))?;
            let path = http::uri::PathAndQuery::from_static(export_path(signal));
            grpc.unary(tonic::Request::new(vec![body.clone()]), path, RawCodec)
                .await
                .map(|_| ())
                .map_err(|s| (format!("grpc:{:?}", s.code()), None))
        }
        Client::Http(c, url) => {
            let ctype = if args.protocol == Protocol::HttpJson {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            let mut req = c.post(url).header("content-type", ctype).body(body.clone());
            if args.gzip {
                req = req.header("content-encoding", "gzip");
            }
            let resp = req
                .send()
                .await
                .map_err(|e| (format!("http:error ({e})"), None))?;
            let code = resp.status().as_u16();
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(Duration::from_secs);
            let _ = resp.bytes().await;
            if code == 200 {
                Ok(())
            } else {
                Err((format!("http:{code}"), after))
            }
        }
    }
}

fn encode_pool(args: &Args, signal: Signal) -> Vec<(Bytes, u64)> {
    (0..args.pool.max(1))
        .map(|i| {
            let mut g = Generator::new(GeneratorOptions {
                seed: i as u64 + 1,
                error_rate: args.error_rate,
                slow_rate: args.slow_rate,
            });
            let n = args.batch_size;
            let body = match (signal, args.protocol) {
                (Signal::Traces, Protocol::HttpJson) => serde_json::to_vec(&g.spans(n)).unwrap(),
                (Signal::Traces, _) => g.spans(n).encode_to_vec(),
                (Signal::Logs, Protocol::HttpJson) => serde_json::to_vec(&g.logs(n)).unwrap(),
                (Signal::Logs, _) => g.logs(n).encode_to_vec(),
                (Signal::Metrics, Protocol::HttpJson) => serde_json::to_vec(&g.metrics(n)).unwrap(),
                (Signal::Metrics, _) => g.metrics(n).encode_to_vec(),
            };
            let body = if args.gzip {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&body).unwrap();
                e.finish().unwrap()
            } else {
                body
            };
            (Bytes::from(body), n as u64)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let signal = match args.signal {
        SignalArg::Traces => Signal::Traces,
        SignalArg::Metrics => Signal::Metrics,
        SignalArg::Logs => Signal::Logs,
    };
    let pool = Arc::new(encode_pool(&args, signal));
    let fresh = args.unique_traces
        && matches!(signal, Signal::Traces)
        && args.protocol != Protocol::HttpJson
        && !args.gzip;
    if args.unique_traces && !fresh {
        eprintln!("loadgen: --unique-traces needs protobuf traces without --gzip");
        std::process::exit(2);
    }
    if args.spread > 1
        && (args.rate == 0
            || !matches!(signal, Signal::Traces)
            || args.protocol == Protocol::HttpJson
            || args.gzip)
    {
        eprintln!("loadgen: --spread needs --rate and protobuf traces without --gzip");
        std::process::exit(2);
    }
    // With --spread, every pool entry is cut into its parts (span i goes to
    // part i % spread); part p of trace group g goes out `lag` groups after
    // part p-1, so the parts of one trace are spread_delay apart.
    let parts: Arc<Vec<Vec<Part>>> = Arc::new(if args.spread > 1 {
        pool.iter()
            .map(|(b, _)| {
                let req =
                    pipeline::Request::parse(Signal::Traces, b.clone()).expect("valid request");
                let n = req.items as u32;
                (0..args.spread as u32)
                    .map(|p| {
                        let pos: Vec<u32> =
                            (0..n).filter(|i| i % args.spread as u32 == p).collect();
                        let part = pipeline::split::select_spans(&req, &pos);
                        let offsets = trace_id_offsets(&part.bytes);
                        (part.bytes, part.items as u64, offsets)
                    })
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    });
    let lag: u64 = if args.spread > 1 {
        let per_group = args.batch_size as f64 / args.rate as f64;
        (args.spread_delay.as_secs_f64() / per_group)
            .round()
            .max(1.0) as u64
    } else {
        0
    };
    let offsets: Arc<Vec<Vec<usize>>> = Arc::new(if fresh {
        pool.iter().map(|(b, _)| trace_id_offsets(b)).collect()
    } else {
        Vec::new()
    });
    let avg_bytes = pool.iter().map(|p| p.0.len()).sum::<usize>() / pool.len();
    eprintln!(
        "loadgen: {:?} {} over {:?}, {} items/request, {} B/request, concurrency {}",
        args.signal,
        signal.item_name(),
        args.protocol,
        args.batch_size,
        avg_bytes,
        args.concurrency
    );
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let slot = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // With --spread a slot is one part: batch_size/spread items.
    let interval = (args.rate > 0).then(|| {
        Duration::from_secs_f64(
            args.batch_size as f64 / args.spread.max(1) as f64 / args.rate as f64,
        )
    });

    // With --spread, the groups (traces) started within --duration (or
    // --total) are sent whole: the run ends once the last part of the last
    // started group went out, so every trace that was begun is complete.
    let groups = match interval {
        Some(iv) if args.spread > 1 => {
            let n = args.spread as f64;
            Some(if args.total > 0 {
                (args.total as f64 / args.batch_size as f64).ceil() as u64
            } else {
                (args.duration.as_secs_f64() / (iv.as_secs_f64() * n)).ceil() as u64
            })
        }
        _ => None,
    };

    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let client = match args.protocol {
            Protocol::Grpc => {
                let ep = args
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "localhost:4317".into());
                if let Some(tls) = args.tls() {
                    let target = tls.resolve("--endpoint", &ep).expect("TLS settings");
                    let ch =
                        exporters::tls::connect::grpc_channel(&tls, &target).expect("TLS settings");
                    Client::Grpc(ch)
                } else {
                    let url = if ep.starts_with("http") {
                        ep
                    } else {
                        format!("http://{ep}")
                    };
                    let ch = tonic::transport::Endpoint::from_shared(url)
                        .unwrap()
                        .tcp_nodelay(true)
                        .connect_lazy();
                    Client::Grpc(ch)
                }
            }
            _ => {
                let ep = args
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "http://localhost:4318".into());
                let base = if ep.starts_with("http") {
                    ep
                } else {
                    format!("http://{ep}")
                };
                let client = match args.tls() {
                    Some(tls) => {
                        let base = base.replacen("http://", "https://", 1);
                        let target = tls.resolve("--endpoint", &base).expect("TLS settings");
                        exporters::tls::connect::http_client(&tls, &[&target], Default::default())
                            .expect("TLS settings")
                    }
                    None => reqwest::Client::new(),
                };
                let base = if args.tls().is_some() {
                    base.replacen("http://", "https://", 1)
                } else {
                    base
                };
                Client::Http(
                    client,
                    format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str()),
                )
            }
        };
        let parts = parts.clone();
        let (args, pool, offsets, stats, stop, slot) = (
            args.clone(),
            pool.clone(),
            offsets.clone(),
            stats.clone(),
            stop.clone(),
            slot.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while groups.is_some() || !stop.load(Ordering::Relaxed) {
                let k = slot.fetch_add(1, Ordering::Relaxed);
                if groups.is_none() && args.total > 0 && k * args.batch_size as u64 >= args.total {
                    break;
                }
                if let Some(iv) = interval {
                    tokio::time::sleep_until((start + iv * k as u32).into()).await;
                }
                let fresh_body;
                let (body, items) = if args.spread > 1 {
                    // Slot k carries part p of group g; a group's parts go
                    // out `lag` groups apart (one slot per group and part,
                    // so pacing counts parts as requests of batch_size/spread).
                    let n = args.spread as u64;
                    let (group_slot, p) = (k / n, k % n);
                    let last = groups.unwrap_or(u64::MAX);
                    if group_slot >= last.saturating_add((n - 1) * lag) {
                        break;
                    }
                    let Some(g) = group_slot.checked_sub(p * lag) else {
                        continue;
                    };
                    if g >= last {
                        continue;
                    }
                    let (b, items, o) = &parts[g as usize % parts.len()][p as usize];
                    fresh_body = with_fresh_trace_ids(b, o, g);
                    (&fresh_body, items)
                } else {
                    let (body, items) = &pool[i % pool.len()];
                    let body = match offsets.get(i % pool.len()) {
                        Some(o) => {
                            fresh_body = with_fresh_trace_ids(body, o, k);
                            &fresh_body
                        }
                        None => body,
                    };
                    (body, items)
                };
                i += args.concurrency;
                stats.sent_items.fetch_add(*items, Ordering::Relaxed);
                let t = Instant::now();
                let mut attempt = 0;
                let result = loop {
                    match send(&client, signal, body, &args).await {
                        Err((_, after))
                            if args.retry && attempt < 10 && !stop.load(Ordering::Relaxed) =>
                        {
                            attempt += 1;
                            tokio::time::sleep(after.unwrap_or(Duration::from_millis(100))).await;
                        }
                        other => break other,
                    }
                };
                let us = t.elapsed().as_micros() as u64;
                lat.push(us);
                stats.recent_us.lock().unwrap().push(us);
                stats.requests.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(()) => {
                        stats.accepted_items.fetch_add(*items, Ordering::Relaxed);
                    }
                    Err((code, _)) => {
                        stats.refused_items.fetch_add(*items, Ordering::Relaxed);
                        *stats.refused_by.lock().unwrap().entry(code).or_default() += 1;
                    }
                }
            }
            stats.latencies_us.lock().unwrap().extend(lat);
        }));
    }

    let style = progress::Style::pick(args.json);
    let total_secs = (args.total == 0).then(|| args.duration.as_secs_f64());
    let progress = {
        let (stats, stop) = (stats.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval_at(
                (start + Duration::from_secs(1)).into(),
                Duration::from_secs(1),
            );
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let acc = stats.accepted_items.load(Ordering::Relaxed);
                let mut recent = std::mem::take(&mut *stats.recent_us.lock().unwrap());
                recent.sort_unstable();
                let refused_by = stats.refused_by.lock().unwrap().clone();
                progress::report(
                    style,
                    &progress::Tick {
                        elapsed: start.elapsed().as_secs_f64(),
                        total: total_secs,
                        accepted: acc,
                        per_sec: acc - last,
                        refused: stats.refused_items.load(Ordering::Relaxed),
                        refused_by: &refused_by,
                        recent_us: &recent,
                    },
                );
                last = acc;
            }
        })
    };
    let deadline = if args.total > 0 || groups.is_some() {
        None
    } else {
        Some(start + args.duration)
    };
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
        stop.store(true, Ordering::Relaxed);
    }
    for w in workers {
        let _ = w.await;
    }
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    progress::finish(style);
    let elapsed = start.elapsed().as_secs_f64();

    let mut lat = stats.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let acc = stats.accepted_items.load(Ordering::Relaxed);
    let refused_by = stats.refused_by.lock().unwrap().clone();
    let (sent, refused, requests) = (
        stats.sent_items.load(Ordering::Relaxed),
        stats.refused_items.load(Ordering::Relaxed),
        stats.requests.load(Ordering::Relaxed),
    );
    let (p50, p99) = (
        progress::percentile(&lat, 0.5),
        progress::percentile(&lat, 0.99),
    );
    if args.json {
        let summary = serde_json::json!({
            "type": "summary",
            "signal": signal.item_name(),
            "sent": sent,
            "accepted": acc,
            "refused": refused,
            "refused_by": refused_by,
            "requests": requests,
            "seconds": (elapsed * 10.0).round() / 10.0,
            "accepted_per_sec": (acc as f64 / elapsed).round(),
            "p50_ms": p50,
            "p99_ms": p99,
        });
        println!("{summary}");
        return;
    }
    // benches/e2e.sh and tests/fleet.rs read this line: keep its format.
    let refused_list: Vec<String> = refused_by.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "summary: signal={} sent={sent} accepted={acc} refused={refused} refused_by=[{}] requests={requests} seconds={elapsed:.1} accepted_per_sec={:.0} p50_ms={p50:.2} p99_ms={p99:.2}",
        signal.item_name(),
        refused_list.join(","),
        acc as f64 / elapsed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_trace_ids_keep_traces_together_and_differ_per_send() {
        let sent = Generator::new(GeneratorOptions::default()).traces(20);
        let body = Bytes::from(sent.encode_to_vec());
        let offsets = trace_id_offsets(&body);
        assert_eq!(offsets.len(), 100);
        let ids = |b: &Bytes| -> Vec<[u8; 16]> {
            let r = pipeline::Request::parse(Signal::Traces, b.clone()).unwrap();
            r.index.unwrap().spans.iter().map(|s| s.trace_id).collect()
        };
        let (a, b) = (
            with_fresh_trace_ids(&body, &offsets, 7),
            with_fresh_trace_ids(&body, &offsets, 8),
        );
        let (orig, ia, ib) = (ids(&body), ids(&a), ids(&b));
        let distinct = |v: &[[u8; 16]]| v.iter().collect::<std::collections::HashSet<_>>().len();
        // Same grouping of spans into traces, all ids new.
        assert_eq!(distinct(&ia), 20);
        for i in 0..100 {
            for j in 0..100 {
                assert_eq!(orig[i] == orig[j], ia[i] == ia[j]);
            }
            assert!(!orig.contains(&ia[i]) && !ib.contains(&ia[i]));
        }
    }
}
