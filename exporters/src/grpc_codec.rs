//! A tonic codec that moves OTLP messages as bytes: the receiver gets the
//! request exactly as it arrived (zero-copy from tonic's buffer), the exporter
//! writes a batch's requests back to back.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Encoded message parts written back to back as one message.
pub type Parts = Vec<Bytes>;

/// The raw-bytes codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Writes parts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// Yields the message bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Parts;
    type Error = Status;

    fn encode(&mut self, item: Parts, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        for part in item {
            dst.put(part);
        }
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl Codec for RawCodec {
    type Encode = Parts;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// The gRPC method path for a signal's Export call.
pub fn export_path(signal: pipeline::Signal) -> &'static str {
    match signal {
        pipeline::Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        pipeline::Signal::Metrics => {
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        }
        pipeline::Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
}
