//! A local stand-in for Loki's push endpoint that decodes the real wire
//! format: snappy block + `logproto.PushRequest` (messages written here from
//! Loki's push.proto field numbers, apart from the exporter's), or Loki's
//! JSON body. It records every push and answers from a script.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

#[derive(Clone, PartialEq, prost::Message)]
struct WirePush {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<WireStream>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireStream {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<WireEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireEntry {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<WireTime>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<WirePair>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireTime {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WirePair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// One entry as Loki would store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub time_ns: u64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// One stream of one push.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    pub labels: BTreeMap<String, String>,
    pub lines: Vec<Line>,
}

/// One push as received.
#[derive(Debug, Clone)]
pub struct Push {
    pub headers: HeaderMap,
    pub streams: Vec<Pushed>,
}

/// What the server answers, in order; 204 once the script is used up.
pub type Answer = (u16, Option<&'static str>, &'static str);

/// The running stand-in.
pub struct FakeLoki {
    pub port: u16,
    pub pushes: Arc<Mutex<Vec<Push>>>,
    /// Requests refused by the script (they are not in `pushes`).
    pub refused: Arc<Mutex<usize>>,
    /// Bodies that did not decode, with why; tests expect none.
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl FakeLoki {
    /// Every stream of every accepted push.
    pub fn streams(&self) -> Vec<Pushed> {
        let pushes = self.pushes.lock().unwrap();
        pushes.iter().flat_map(|p| p.streams.clone()).collect()
    }

    /// Lines accepted so far.
    pub fn count(&self) -> usize {
        self.streams().iter().map(|s| s.lines.len()).sum()
    }
}

/// Parses a LogQL selector `{a="x", b="y \"q\""}`.
pub fn parse_selector(s: &str) -> BTreeMap<String, String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a selector: {s}"));
    let mut out = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('='), "in {s}");
        assert_eq!(chars.next(), Some('"'), "in {s}");
        let mut value = String::new();
        loop {
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated value in {s}"))
            {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape in {s}"),
                },
                c => value.push(c),
            }
        }
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(valid, "label name {name:?} breaks Loki's rules");
        out.insert(name, value);
    }
    out
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Pushed>, String> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match content_type {
        "application/x-protobuf" => {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("not snappy: {e}"))?;
            let push: WirePush = prost::Message::decode(raw.as_slice())
                .map_err(|e| format!("not a PushRequest: {e}"))?;
            Ok(push
                .streams
                .into_iter()
                .map(|s| Pushed {
                    labels: parse_selector(&s.labels),
                    lines: s
                        .entries
                        .into_iter()
                        .map(|e| {
                            let t = e.timestamp.expect("every entry has a timestamp");
                            Line {
                                time_ns: t.seconds as u64 * 1_000_000_000 + t.nanos as u64,
                                line: e.line,
                                metadata: e
                                    .metadata
                                    .into_iter()
                                    .map(|p| (p.name, p.value))
                                    .collect(),
                            }
                        })
                        .collect(),
                })
                .collect())
        }
        "application/json" => {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
            let text = |v: &serde_json::Value| v.as_str().expect("strings only").to_string();
            Ok(v["streams"]
                .as_array()
                .ok_or("no streams")?
                .iter()
                .map(|s| Pushed {
                    labels: s["stream"]
                        .as_object()
                        .expect("stream is an object")
                        .iter()
                        .map(|(k, v)| (k.clone(), text(v)))
                        .collect(),
                    lines: s["values"]
                        .as_array()
                        .expect("values is an array")
                        .iter()
                        .map(|e| Line {
                            time_ns: text(&e[0]).parse().expect("nanoseconds as a string"),
                            line: text(&e[1]),
                            metadata: e
                                .get(2)
                                .and_then(|m| m.as_object())
                                .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                                .unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect())
        }
        other => Err(format!("unsupported content type {other:?}")),
    }
}

/// Starts the stand-in on a free port with a script of answers.
pub async fn start(script: Vec<Answer>) -> FakeLoki {
    let pushes = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let (p, r, errs) = (pushes.clone(), refused.clone(), errors.clone());
    let app = axum::Router::new().route(
        "/loki/api/v1/push",
        post(move |headers: HeaderMap, body: Bytes| {
            let (pushes, refused, script, errs) =
                (p.clone(), r.clone(), script.clone(), errs.clone());
            async move {
                let streams = match decode(&headers, &body) {
                    Ok(s) => s,
                    Err(e) => {
                        errs.lock().unwrap().push(e.clone());
                        return (StatusCode::BAD_REQUEST, HeaderMap::new(), e);
                    }
                };
                if let Some((code, after, msg)) = script.lock().unwrap().pop_front() {
                    *refused.lock().unwrap() += 1;
                    let mut h = HeaderMap::new();
                    if let Some(a) = after {
                        h.insert("retry-after", a.parse().unwrap());
                    }
                    return (StatusCode::from_u16(code).unwrap(), h, msg.to_string());
                }
                pushes.lock().unwrap().push(Push { headers, streams });
                (StatusCode::NO_CONTENT, HeaderMap::new(), String::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeLoki {
        port,
        pushes,
        refused,
        errors,
    }
}
