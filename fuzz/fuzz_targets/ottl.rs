//! The OTTL subset parser on any text, in every context: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::processors::filter::ottl::{parse, Context};

fuzz_target!(|data: &[u8]| {
    let Some((&which, src)) = data.split_first() else {
        return;
    };
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    let ctx = [Context::Span, Context::SpanEvent, Context::Log, Context::Metric]
        [which as usize % 4];
    let _ = parse(src, ctx);
});
