//! `google.rpc.Status`, the error body OTLP/HTTP returns (field numbers from
//! googleapis' status.proto).

use serde::{Deserialize, Serialize};

/// A status with a code and a message; `details` are kept opaque.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct RpcStatus {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    #[serde(default)]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub message: String,
    /// `Any` details, undecoded.
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    pub details: Vec<prost_types_any::Any>,
}

/// A minimal `google.protobuf.Any`.
pub mod prost_types_any {
    /// Type URL plus encoded value.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// Identifies the message type.
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// The encoded message.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
}
