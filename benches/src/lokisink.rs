//! The receiving end of the `grpc-batch-loki` bench: a Loki push endpoint
//! that decodes every body (snappy, then the `PushRequest` structure, or
//! JSON) and counts entries, so the bench measures the exporter producing
//! Loki's real wire format. `GET /` answers 200 once it listens; on SIGTERM
//! it prints the entries and pushes it took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use clap::Parser;
use pipeline::wire::{Reader, LEN};

#[derive(Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:25100")]
    listen: String,
}

/// Entries in a snappy-compressed `logproto.PushRequest` (streams = 1,
/// entries = 2, line = 2 of an entry), checking the structure on the way.
fn protobuf_entries(body: &[u8]) -> Result<u64, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    let mut entries = 0;
    let mut push = Reader::new(&raw, 0, raw.len(), "PushRequest");
    while let Some(stream) = push.next_field().map_err(|e| e.to_string())? {
        if stream.number != 1 || stream.wire != LEN {
            continue;
        }
        let mut s = Reader::new(&raw, stream.body.0, stream.body.1, "StreamAdapter");
        while let Some(f) = s.next_field().map_err(|e| e.to_string())? {
            match (f.number, f.wire) {
                (1, LEN) => {
                    std::str::from_utf8(&raw[f.body.0..f.body.1]).map_err(|e| e.to_string())?;
                }
                (2, LEN) => {
                    let mut e = Reader::new(&raw, f.body.0, f.body.1, "EntryAdapter");
                    while e.next_field().map_err(|e| e.to_string())?.is_some() {}
                    entries += 1;
                }
                _ => {}
            }
        }
    }
    Ok(entries)
}

fn json_entries(body: &[u8]) -> Result<u64, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let streams = v["streams"].as_array().ok_or("no streams")?;
    Ok(streams
        .iter()
        .map(|s| s["values"].as_array().map_or(0, |v| v.len() as u64))
        .sum())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let entries = Arc::new(AtomicU64::new(0));
    let pushes = Arc::new(AtomicU64::new(0));
    let (e, p) = (entries.clone(), pushes.clone());
    let app = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/loki/api/v1/push",
            post(move |headers: HeaderMap, body: Bytes| {
                let (e, p) = (e.clone(), p.clone());
                async move {
                    let json = headers
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                    let n = if json {
                        json_entries(&body)
                    } else {
                        protobuf_entries(&body)
                    };
                    match n {
                        Ok(n) => {
                            e.fetch_add(n, Ordering::Relaxed);
                            p.fetch_add(1, Ordering::Relaxed);
                            (StatusCode::NO_CONTENT, String::new())
                        }
                        Err(why) => (StatusCode::BAD_REQUEST, why),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", args.listen));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        r = axum::serve(listener, app) => r.expect("serving"),
        _ = term.recv() => {}
    }
    println!(
        "lokisink: entries={} pushes={}",
        entries.load(Ordering::Relaxed),
        pushes.load(Ordering::Relaxed)
    );
}
