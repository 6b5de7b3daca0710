use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline::generate::{Generator, GeneratorOptions};
use prost::Message;

use super::*;

fn traces_request(seed: u64, spans: usize) -> Request {
    let mut g = Generator::new(GeneratorOptions {
        seed,
        ..Default::default()
    });
    Request::parse(Signal::Traces, Bytes::from(g.spans(spans).encode_to_vec())).unwrap()
}

/// (trace id, span id) of every span in a request.
fn ids(req: &Request) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    let d = ExportTraceServiceRequest::decode(req.bytes.clone()).unwrap();
    d.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect()
}

fn exporter(yaml: &str) -> KafkaExporter {
    let (client, keys) =
        client::parse_with_client::<ExporterKeys>(serde_yaml::from_str(yaml).unwrap()).unwrap();
    let mut props = client.properties();
    keys.producer_properties(&mut props);
    KafkaExporter {
        producer: props.create().unwrap(),
        keys,
        partitions: Mutex::new(HashMap::new()),
    }
}

#[test]
fn traces_by_id_become_one_keyed_message_per_trace() {
    let reqs = [traces_request(1, 300), traces_request(2, 300)];
    let out = by_trace_id(&reqs);
    let mut seen = BTreeSet::new();
    let mut per_trace: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for m in &out {
        let key = m.key.clone().expect("keyed");
        let spans = ids(&m.request);
        assert_eq!(spans.len(), m.request.items);
        for (trace, _) in &spans {
            assert_eq!(
                pipeline::wire::hex(trace).into_bytes(),
                key,
                "one trace per message"
            );
        }
        *per_trace.entry(key).or_default() += 1;
        seen.extend(spans);
    }
    let want: BTreeSet<_> = reqs.iter().flat_map(ids).collect();
    assert_eq!(seen, want, "every span once");
    assert!(
        per_trace.values().all(|&n| n == 1),
        "a trace's spans go in one message"
    );
    assert!(out.len() > 20, "{} messages", out.len());
}

#[test]
fn large_requests_are_split_to_fit_max_message_bytes() {
    let e = exporter("producer: {max_message_bytes: 65536}");
    let req = traces_request(3, 2000);
    assert!(req.bytes.len() > 5 * 65536, "{}", req.bytes.len());
    let batch = Batch {
        signal: Signal::Traces,
        requests: vec![req.clone(), traces_request(4, 100)],
    };
    let mut fitted = Vec::new();
    let mut too_large = 0;
    for m in e.messages(&batch).unwrap() {
        e.fit(Signal::Traces, m, &mut fitted, &mut too_large)
            .unwrap();
    }
    assert_eq!(too_large, 0);
    assert!(fitted.len() >= 6, "{} messages", fitted.len());
    let mut seen = BTreeSet::new();
    for (m, value) in &fitted {
        assert!(value.is_none(), "otlp_proto sends the request's bytes");
        assert!(
            m.request.bytes.len() + RECORD_OVERHEAD <= 65536,
            "{}",
            m.request.bytes.len()
        );
        seen.extend(ids(&m.request));
    }
    let want: BTreeSet<_> = batch.requests.iter().flat_map(ids).collect();
    assert_eq!(seen, want);
}

#[test]
fn small_requests_are_packed_into_few_messages_in_order() {
    let reqs: Vec<Request> = (0..10).map(|i| traces_request(10 + i, 100)).collect();
    let each = reqs[0].bytes.len();
    let out = packed(&reqs, each * 3 + each / 2);
    assert!(out.len() >= 4 && out.len() <= 5, "{} messages", out.len());
    let bytes: Vec<u8> = out.iter().flat_map(|r| r.bytes.to_vec()).collect();
    let want: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.to_vec()).collect();
    assert_eq!(bytes, want, "the same bytes, in order");
    assert_eq!(out.iter().map(|r| r.items).sum::<usize>(), 1000);
    for r in &out {
        let again = Request::parse(Signal::Traces, r.bytes.clone()).unwrap();
        assert_eq!(again.items, r.items, "each message is a valid request");
    }
}

#[test]
fn logs_by_resource_are_keyed_by_the_resource() {
    let mut g = Generator::new(GeneratorOptions::default());
    let logs = g.logs(90);
    let resources = logs.resource_logs.len();
    let req = Request::parse(Signal::Logs, Bytes::from(logs.encode_to_vec())).unwrap();
    let out = by_resource(Signal::Logs, &[req.clone(), req]).unwrap();
    assert_eq!(
        out.len(),
        resources,
        "the same resource twice is one message"
    );
    assert_eq!(out.iter().map(|m| m.request.items).sum::<usize>(), 180);
}
