//! Loki's push bodies: `logproto.PushRequest` (field numbers from Loki's
//! published `pkg/push/push.proto`), snappy block compressed, and the JSON
//! form of `POST /loki/api/v1/push`.

use serde_json::{json, Map, Value};

use pipeline::wire::{len_header_size, put_len_header, put_varint, varint_len};

use super::streams::{Entry, Stream, Text};

fn str_len(number: u32, s: &str) -> usize {
    len_header_size(number, s.len()) + s.len()
}

fn put_str(out: &mut Vec<u8>, number: u32, s: &str) {
    put_len_header(out, number, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn pair_len(name: &str, value: &str) -> usize {
    str_len(1, name) + str_len(2, value)
}

fn split_time(ns: u64) -> (u64, u64) {
    (ns / 1_000_000_000, ns % 1_000_000_000)
}

fn time_len(ns: u64) -> usize {
    let (s, n) = split_time(ns);
    2 + varint_len(s) + varint_len(n)
}

fn entry_len(e: &Entry) -> usize {
    let t = time_len(e.time_ns);
    len_header_size(1, t)
        + t
        + str_len(2, &e.line)
        + e.metadata
            .iter()
            .map(|(k, v)| {
                let p = pair_len(k, v);
                len_header_size(3, p) + p
            })
            .sum::<usize>()
}

/// The snappy-compressed `PushRequest`, written straight from the streams
/// (no intermediate messages: the labels, lines and metadata are copied
/// once, into the body).
pub fn protobuf_body(streams: &[Stream]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for s in streams {
        let labels = s.selector();
        let entries: Vec<usize> = s.entries.iter().map(entry_len).collect();
        let body = str_len(1, &labels)
            + entries
                .iter()
                .map(|l| len_header_size(2, *l) + l)
                .sum::<usize>();
        put_len_header(&mut out, 1, body);
        put_str(&mut out, 1, &labels);
        for (e, len) in s.entries.iter().zip(entries) {
            put_len_header(&mut out, 2, len);
            let (secs, nanos) = split_time(e.time_ns);
            put_len_header(&mut out, 1, time_len(e.time_ns));
            put_varint(&mut out, 1 << 3);
            put_varint(&mut out, secs);
            put_varint(&mut out, 2 << 3);
            put_varint(&mut out, nanos);
            put_str(&mut out, 2, &e.line);
            for (k, v) in &e.metadata {
                put_len_header(&mut out, 3, pair_len(k, v));
                put_str(&mut out, 1, k);
                put_str(&mut out, 2, v);
            }
        }
    }
    snap::raw::Encoder::new()
        .compress_vec(&out)
        .map_err(|e| format!("snappy: {e}"))
}

fn object(list: &[(Text, Text)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect::<Map<_, _>>(),
    )
}

/// The JSON body: `{"streams": [{"stream": {…}, "values": [[ns, line, {…}]]}]}`.
pub fn json_body(streams: &[Stream]) -> Vec<u8> {
    let streams: Vec<Value> = streams
        .iter()
        .map(|s| {
            let values: Vec<Value> = s
                .entries
                .iter()
                .map(|e| {
                    let mut v = vec![json!(e.time_ns.to_string()), json!(e.line)];
                    if !e.metadata.is_empty() {
                        v.push(object(&e.metadata));
                    }
                    Value::Array(v)
                })
                .collect();
            json!({"stream": object(&s.labels), "values": values})
        })
        .collect();
    serde_json::to_vec(&json!({ "streams": streams })).expect("JSON values serialize")
}

/// The push messages as prost types, to read bodies back in tests.
#[cfg(test)]
pub mod messages {
    /// `logproto.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        /// One per label set.
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// `logproto.StreamAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// The label set as a LogQL selector: `{a="x", b="y"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        /// Entries, oldest first.
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        /// Left zero: Loki computes it.
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `logproto.EntryAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        /// When the line was logged.
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        /// The log line.
        #[prost(string, tag = "2")]
        pub line: String,
        /// Structured metadata (Loki 3).
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    /// `logproto.LabelPairAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        /// Name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        /// Seconds since the Unix epoch.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds within the second.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}
