//! OTLP/JSON conversion on any bytes: never panics, and what it produces
//! passes the same intake checks as protobuf from the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use observatory::receivers::otlp::json::to_proto;
use pipeline::{Batch, Signal};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let signal = Signal::ALL[which as usize % 3];
    if let Ok(proto) = to_proto(signal, body) {
        // prost encoded it, so intake must take it unless it nests too deep.
        if let Err(e) = Batch::parse(signal, proto) {
            assert!(e.to_string().contains("nested") || e.to_string().contains("recursion"), "{e}");
        }
    }
});
