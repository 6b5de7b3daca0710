//! Observatory's data path: batches of encoded OTLP with a span index, the
//! stage interface, and processors.

#![forbid(unsafe_code)]

pub mod actions;
pub mod auth;
pub mod batch;
pub mod client;
pub mod component;
pub mod consumer;
pub mod duration;
pub mod fasthash;
pub mod generate;
pub mod inplace;
pub mod processors;
pub mod rewrite;
pub mod rpc_status;
pub mod scan;
pub mod secret;
pub mod split;
pub mod telemetry;
pub mod testing;
pub mod wire;

pub use batch::{Batch, Request, Signal};
pub use consumer::{BoxConsumer, ConsumeError, Consumer, Fanout};
