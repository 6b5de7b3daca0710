//! The span-index scanner on any bytes: never panics, and whatever it
//! accepts prost decodes too, with the same spans where the index says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ScopeSpans;
use pipeline::scan::{scan_traces, SpanIndex};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut index = SpanIndex::default();
    if scan_traces(data, &mut index).is_err() {
        return;
    }
    let req = ExportTraceServiceRequest::decode(data).expect("scanner accepted what prost refuses");
    let spans: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), index.spans.len());
    for (e, s) in index.spans.iter().zip(spans) {
        let field = &data[e.range.0 as usize..e.range.1 as usize];
        let one = ScopeSpans::decode(field).expect("span range decodes");
        assert_eq!(&one.spans[0], s);
        assert_eq!(e.start_time_unix_nano, s.start_time_unix_nano);
    }
});
