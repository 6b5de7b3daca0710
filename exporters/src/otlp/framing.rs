//! One OTLP/gRPC call framed by hand on tonic's channel, so the message is
//! compressed at the level we choose: tonic's encoder fixes gzip at level
//! 6, which costs several CPU-seconds per million spans; level 1 (what
//! otlphttp uses) costs a fraction of that for a little more wire.
//!
//! The frame is gRPC's: a compressed flag, a 4-byte big-endian length, the
//! message; `grpc-encoding` names the codec. The answer's status comes from
//! the trailers (or the headers of a trailers-only answer).

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::{Buf, Bytes};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http_body_util::BodyExt;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::Service;

use crate::client::Compression;

/// The largest answer accepted (an Export response is a few bytes).
const MAX_RESPONSE: usize = 4 << 20;

/// The gRPC frame of a message given as parts written back to back,
/// compressed straight from the parts into the frame: the batch is copied
/// once, whatever the codec.
fn frame(
    parts: &[Bytes],
    compression: Compression,
) -> std::io::Result<(Vec<u8>, Option<&'static str>)> {
    use std::io::Write;
    let total: usize = parts.iter().map(Bytes::len).sum();
    // The header's 5 bytes first, filled in once the length is known; the
    // codecs append their stream after them.
    let start = |cap: usize| {
        let mut f = Vec::with_capacity(5 + cap);
        f.extend_from_slice(&[0; 5]);
        f
    };
    let (mut frame, encoding) = match compression {
        Compression::None => {
            let mut f = start(total);
            for p in parts {
                f.extend_from_slice(p);
            }
            (f, None)
        }
        Compression::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(start(total / 4), flate2::Compression::fast());
            for p in parts {
                enc.write_all(p)?;
            }
            (enc.finish()?, Some("gzip"))
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::Encoder::new(start(total / 4), 1)?;
            for p in parts {
                enc.write_all(p)?;
            }
            (enc.finish()?, Some("zstd"))
        }
    };
    let len = (frame.len() - 5) as u32;
    frame[0] = u8::from(encoding.is_some());
    frame[1..5].copy_from_slice(&len.to_be_bytes());
    Ok((frame, encoding))
}

/// Sends the message made of `parts` to `path` and returns the response
/// message, or the call's failure as a gRPC status (transport failures are
/// `Unavailable`).
pub async fn unary(
    channel: &Channel,
    path: &'static str,
    parts: &[Bytes],
    compression: Compression,
    headers: HeaderMap,
) -> Result<Bytes, Status> {
    let (frame, encoding) =
        frame(parts, compression).map_err(|e| Status::internal(format!("compressing: {e}")))?;
    let mut req = http::Request::post(path)
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame),
        )))
        .map_err(|e| Status::internal(e.to_string()))?;
    *req.headers_mut() = headers;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("te", HeaderValue::from_static("trailers"));
    if let Some(name) = encoding {
        h.insert("grpc-encoding", HeaderValue::from_static(name));
    }
    let mut ch = channel.clone();
    futures::future::poll_fn(|cx| ch.poll_ready(cx))
        .await
        .map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
    let resp = ch
        .call(req)
        .await
        .map_err(|e| Status::unavailable(format!("transport error: {e}")))?;
    let (parts, body) = resp.into_parts();
    if let Some(status) = status_in(&parts.headers) {
        // A trailers-only answer.
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    if parts.status != http::StatusCode::OK {
        return Err(from_http(parts.status));
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| Status::unavailable(format!("reading the answer: {e}")))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    match status_in(&trailers).or_else(|| status_in(&parts.headers)) {
        Some(s) if s.code() != Code::Ok => return Err(s),
        Some(_) => {}
        None => return Err(Status::internal("the answer had no grpc-status")),
    }
    read_frame(data, parts.headers.get("grpc-encoding"))
}

/// How tonic reads `grpc-status-details-bin` (padding optional).
const DETAILS: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The status in `grpc-status` / `grpc-message` / `grpc-status-details-bin`;
/// details that are not base64 are dropped (tonic would panic on them).
fn status_in(headers: &HeaderMap) -> Option<Status> {
    headers.get("grpc-status")?;
    let bad_details = headers
        .get("grpc-status-details-bin")
        .is_some_and(|v| DETAILS.decode(v.as_bytes()).is_err());
    if bad_details {
        let mut clean = headers.clone();
        clean.remove("grpc-status-details-bin");
        return Status::from_header_map(&clean);
    }
    Status::from_header_map(headers)
}

/// The gRPC code an HTTP status stands for (gRPC's HTTP mapping).
fn from_http(s: http::StatusCode) -> Status {
    let code = match s.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP {s} from the server"))
}

/// The one message of an answer body, inflated if it says so.
fn read_frame(mut data: Bytes, encoding: Option<&HeaderValue>) -> Result<Bytes, Status> {
    if data.is_empty() {
        return Ok(data);
    }
    if data.len() < 5 {
        return Err(Status::internal("a truncated gRPC frame in the answer"));
    }
    let compressed = data.get_u8() == 1;
    let len = data.get_u32() as usize;
    if len > MAX_RESPONSE || len > data.len() {
        return Err(Status::internal(format!("an answer frame of {len} bytes")));
    }
    let msg = data.split_to(len);
    if !compressed {
        return Ok(msg);
    }
    let out = match encoding.map(HeaderValue::as_bytes) {
        Some(b"gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&msg[..])
                .take(MAX_RESPONSE as u64 + 1)
                .read_to_end(&mut out)
                .map(|_| out)
        }
        Some(b"zstd") => zstd::bulk::decompress(&msg, MAX_RESPONSE),
        _ => {
            return Err(Status::internal(
                "a compressed answer without a known grpc-encoding",
            ))
        }
    }
    .map_err(|e| Status::internal(format!("inflating the answer: {e}")))?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_come_from_headers_and_bad_details_do_not_panic() {
        let mut h = HeaderMap::new();
        assert!(status_in(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("14"));
        h.insert("grpc-message", HeaderValue::from_static("down%20now"));
        h.insert(
            "grpc-status-details-bin",
            HeaderValue::from_static("!!not base64!!"),
        );
        let s = status_in(&h).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "down now");
        assert!(s.details().is_empty());
    }

    #[test]
    fn frames_hold_the_parts_back_to_back_in_each_codec() {
        let parts = [Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (f, enc) = frame(&parts, c).unwrap();
            assert_eq!(f[0], u8::from(c != Compression::None), "{c:?}");
            let len = u32::from_be_bytes(f[1..5].try_into().unwrap()) as usize;
            assert_eq!(f.len(), 5 + len, "{c:?}");
            let name = enc.map(HeaderValue::from_static);
            let back = read_frame(Bytes::from(f), name.as_ref()).unwrap();
            assert_eq!(&back[..], b"hello world", "{c:?}");
        }
    }

    #[test]
    fn answer_frames_are_read_and_inflated() {
        let msg = b"hello".to_vec();
        let mut plain = vec![0u8];
        plain.extend_from_slice(&5u32.to_be_bytes());
        plain.extend_from_slice(&msg);
        assert_eq!(read_frame(Bytes::from(plain), None).unwrap(), &msg[..]);
        let packed = crate::otlphttp::compress(&msg, Compression::Gzip).unwrap();
        let mut gz = vec![1u8];
        gz.extend_from_slice(&(packed.len() as u32).to_be_bytes());
        gz.extend_from_slice(&packed);
        let enc = HeaderValue::from_static("gzip");
        assert_eq!(
            read_frame(Bytes::from(gz.clone()), Some(&enc)).unwrap(),
            &msg[..]
        );
        assert!(
            read_frame(Bytes::from(gz), None).is_err(),
            "compressed without an encoding"
        );
        assert!(read_frame(Bytes::from_static(&[0, 0, 0, 1]), None).is_err());
        assert!(
            read_frame(Bytes::from_static(&[0, 0, 0, 0, 9]), None).is_err(),
            "length past the data"
        );
    }
}
