//! Loki's push bodies: `logproto.PushRequest` (field numbers from Loki's
//! published `pkg/push/push.proto`), snappy block compressed, and the JSON
//! form of `POST /loki/api/v1/push`.

use serde_json::{json, Map, Value};

use super::streams::Stream;

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

fn pairs(list: &[(String, String)]) -> Vec<LabelPairAdapter> {
    list.iter()
        .map(|(name, value)| LabelPairAdapter {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// The snappy-compressed protobuf body.
pub fn protobuf_body(streams: &[Stream]) -> Result<Vec<u8>, String> {
    let req = PushRequest {
        streams: streams
            .iter()
            .map(|s| StreamAdapter {
                labels: s.selector(),
                entries: s
                    .entries
                    .iter()
                    .map(|e| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: (e.time_ns / 1_000_000_000) as i64,
                            nanos: (e.time_ns % 1_000_000_000) as i32,
                        }),
                        line: e.line.clone(),
                        structured_metadata: pairs(&e.metadata),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&req))
        .map_err(|e| format!("snappy: {e}"))
}

fn object(list: &[(String, String)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
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
