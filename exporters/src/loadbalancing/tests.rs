use super::*;

fn parse(yaml: &str) -> Result<LoadBalancingConfig, ConfigError> {
    parse_config(serde_yaml::from_str(yaml).unwrap())
}

#[test]
fn otelcols_example_parses_and_backends_get_the_otlp_keys() {
    let cfg = parse(
        r#"
routing_key: traceID
protocol:
  otlp:
    timeout: 1s
    compression: zstd
    tls: {insecure: true}
resolver:
  static:
    hostnames: [sampler-1:4317, sampler-2:4317]
"#,
    )
    .unwrap();
    assert_eq!(cfg.routing(Signal::Traces).unwrap(), RoutingKey::TraceId);
    let b = cfg.backend("sampler-1:4317").unwrap();
    assert_eq!(b.endpoint, "sampler-1:4317");
    assert_eq!(b.timeout, std::time::Duration::from_secs(1));
    assert_eq!(b.compression, crate::client::Compression::Zstd);
    // Defaults as otelcol: service for logs and metrics.
    let d = parse("protocol: {otlp: {}}\nresolver: {dns: {hostname: samplers}}\n").unwrap();
    assert_eq!(d.routing(Signal::Logs).unwrap(), RoutingKey::Service);
    assert_eq!(d.routing(Signal::Traces).unwrap(), RoutingKey::TraceId);
    let dns = d.resolver.dns.unwrap();
    assert_eq!(
        (
            dns.port.as_str(),
            dns.interval.as_secs(),
            dns.timeout.as_secs()
        ),
        ("4317", 5, 1)
    );
}

#[test]
fn what_is_not_available_is_refused_by_name() {
    let base =
        "protocol: {otlp: {tls: {insecure: true}}}\nresolver: {static: {hostnames: [a:1]}}\n";
    for (extra, path) in [
        ("routing_key: nonsense\n", "routing_key"),
        ("routing_key: attributes\n", "routing_attributes"),
        ("routing_attributes: [x]\n", "routing_attributes"),
        (
            "sending_queue: {queue_size: 0}\n",
            "sending_queue.queue_size",
        ),
        (
            "retry_on_failure: {multiplier: 0.5}\n",
            "retry_on_failure.multiplier",
        ),
    ] {
        let e = parse(&format!("{base}{extra}")).unwrap_err();
        assert_eq!(e.path, path, "{extra}: {e}");
    }
    let err = |y: &str| parse(y).unwrap_err().path;
    assert_eq!(
        err("protocol: {otlp: {endpoint: x:1}}\nresolver: {static: {hostnames: [a:1]}}\n"),
        "protocol.otlp.endpoint"
    );
    assert_eq!(
        err("protocol: {otlp: {}}\nresolver: {k8s: {service: x}}\n"),
        "resolver.k8s"
    );
    assert_eq!(err("protocol: {otlp: {}}\nresolver: {}\n"), "resolver");
    assert_eq!(
        err("protocol: {otlp: {compression: lzma}}\nresolver: {static: {hostnames: [a:1]}}\n"),
        "resolver.static.hostnames[0]"
    );
    assert_eq!(
        err("protocol: {otlp: {}}\nresolver: {dns: {hostname: x, port: http}}\n"),
        "resolver.dns.port"
    );
    // traceID in a metrics pipeline is refused when the pipelines are checked.
    let t = parse(&format!("{base}routing_key: traceID\n")).unwrap();
    assert_eq!(t.accepts(Signal::Metrics).unwrap_err().path, "routing_key");
    // A backend's own persistent queue would strand data; the top-level
    // one routes again on replay.
    assert_eq!(
        err("protocol: {otlp: {sending_queue: {storage: file_storage}}}\nresolver: {static: {hostnames: [a:1]}}\n"),
        "protocol.otlp.sending_queue.storage"
    );
    // The top level is off unless one of its keys is given (otelcol).
    assert_eq!(parse(base).unwrap().top_level(), None);
    let top = parse(&format!(
        "{base}retry_on_failure: {{max_elapsed_time: 0s}}\n"
    ))
    .unwrap()
    .top_level()
    .unwrap();
    assert!(top.retry.enabled && !top.queue.enabled && top.timeout.is_zero());
}

#[test]
fn routing_keys_fit_otelcols_table_of_signals() {
    let with = |key: &str| {
        let extra = if key == "attributes" {
            "routing_attributes: [tenant]\n"
        } else {
            ""
        };
        parse(&format!(
            "routing_key: {key}\n{extra}protocol: {{otlp: {{}}}}\nresolver: {{static: {{hostnames: [a:1]}}}}\n"
        ))
        .unwrap()
    };
    use Signal::*;
    for (key, fits) in [
        ("traceID", &[Traces, Logs][..]),
        ("service", &[Traces, Logs, Metrics][..]),
        ("resource", &[Logs, Metrics][..]),
        ("metric", &[Metrics][..]),
        ("streamID", &[Metrics][..]),
        ("attributes", &[Traces, Logs, Metrics][..]),
    ] {
        let cfg = with(key);
        for s in Signal::ALL {
            assert_eq!(
                cfg.accepts(s).is_ok(),
                fits.contains(&s),
                "{key} in a {s} pipeline"
            );
        }
    }
}

fn ring3() -> Ring {
    Ring::new::<String>(&[
        "10.0.0.1:4317".into(),
        "10.0.0.2:4317".into(),
        "10.0.0.3:4317".into(),
    ])
}

#[test]
fn logs_by_trace_id_go_record_by_record_to_the_owner_of_their_trace() {
    use pipeline::generate::{Generator, GeneratorOptions};
    let d = Generator::new(GeneratorOptions::default()).logs(60);
    let ring = ring3();
    let parts = keys::split_logs(&ring, RoutingKey::TraceId, &[], d);
    assert!(parts.len() > 1, "60 traces all on one member");
    let mut total = 0;
    for (owner, part) in &parts {
        for rl in &part.resource_logs {
            assert!(
                rl.resource.is_some(),
                "the resource travels with its records"
            );
            for sl in &rl.scope_logs {
                for lr in &sl.log_records {
                    assert_eq!(ring.owner(&lr.trace_id), Some(*owner));
                    total += 1;
                }
            }
        }
    }
    assert_eq!(total, 60);
}

#[test]
fn metrics_split_by_name_stream_or_attribute_keep_every_point_once() {
    use pipeline::generate::{Generator, GeneratorOptions};
    use std::collections::BTreeSet;
    let d = Generator::new(GeneratorOptions::default()).metrics(90);
    let ring = ring3();
    let points = |parts: &BTreeMap<usize, ExportMetricsServiceRequest>| -> usize {
        parts.values().map(point_count).sum()
    };
    // By name: each metric whole at the owner of its name.
    let by_name = keys::split_metrics(&ring, RoutingKey::Metric, &[], d.clone());
    assert_eq!(points(&by_name), 90);
    for (owner, part) in &by_name {
        for m in part
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            assert_eq!(ring.owner(m.name.as_bytes()), Some(*owner), "{}", m.name);
        }
    }
    // By stream: points of one metric can part ways; the same input splits
    // the same way every time.
    let by_stream = keys::split_metrics(&ring, RoutingKey::StreamId, &[], d.clone());
    assert_eq!(points(&by_stream), 90);
    assert_eq!(
        by_stream,
        keys::split_metrics(&ring, RoutingKey::StreamId, &[], d.clone())
    );
    // By attribute: one model's points all at one owner (the attribute is
    // on the data points; service.name on the resource is found too).
    let names = vec!["gen_ai.request.model".to_string()];
    let by_model = keys::split_metrics(&ring, RoutingKey::Attributes, &names, d.clone());
    assert_eq!(points(&by_model), 90);
    let mut owner_of_model: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (owner, part) in &by_model {
        for m in part
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            use opentelemetry_proto::tonic::metrics::v1::metric::Data;
            let attrs: Vec<&Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> = match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().map(|p| &p.attributes).collect(),
                Some(Data::Sum(g)) => g.data_points.iter().map(|p| &p.attributes).collect(),
                Some(Data::Histogram(g)) => g.data_points.iter().map(|p| &p.attributes).collect(),
                _ => Vec::new(),
            };
            for a in attrs {
                let model = format!("{:?}", pipeline::actions::attribute(a, &names[0]));
                owner_of_model.entry(model).or_default().insert(*owner);
            }
        }
    }
    assert_eq!(
        owner_of_model.len(),
        4,
        "every model seen: {owner_of_model:?}"
    );
    for (model, owners) in owner_of_model {
        assert_eq!(owners.len(), 1, "{model} split over {owners:?}");
    }
    let svc = vec!["service.name".to_string()];
    let by_service_attr = keys::split_metrics(&ring, RoutingKey::Attributes, &svc, d);
    assert_eq!(by_service_attr.len(), 1, "one service, one owner");
}

#[test]
fn spans_by_attribute_go_to_the_owner_of_their_values() {
    use pipeline::generate::{Generator, GeneratorOptions};
    let body = Generator::new(GeneratorOptions::default()).traces(40);
    let req = Request::parse(Signal::Traces, body.encode_to_vec().into()).unwrap();
    let ring = ring3();
    let names = vec!["gen_ai.request.model".to_string()];
    let mut parts = Parts::new();
    split_traces(
        &ring,
        RoutingKey::Attributes,
        &names,
        std::slice::from_ref(&req),
        &mut parts,
    );
    let mut total = 0;
    for (owner, reqs) in &parts {
        for r in reqs {
            let d = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(r.bytes.clone()).unwrap();
            for rs in &d.resource_spans {
                for ss in &rs.scope_spans {
                    for sp in &ss.spans {
                        let want = match pipeline::actions::attribute(&sp.attributes, &names[0]) {
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(m)) => format!("{}={m}|", names[0]),
                            _ => format!("{}=|", names[0]),
                        };
                        assert_eq!(ring.owner(want.as_bytes()), Some(*owner), "{want}");
                        total += 1;
                    }
                }
            }
        }
    }
    assert_eq!(total, req.items);
}
