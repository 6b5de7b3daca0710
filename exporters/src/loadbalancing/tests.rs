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
        ("routing_key: resource\n", "routing_key"),
        ("routing_key: streamID\n", "routing_key"),
        ("routing_key: nonsense\n", "routing_key"),
        ("sending_queue: {enabled: true}\n", "sending_queue"),
        ("retry_on_failure: {enabled: true}\n", "retry_on_failure"),
        ("timeout: 1s\n", "timeout"),
        ("routing_attributes: [x]\n", "routing_attributes"),
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
    // traceID in a logs pipeline is refused when built.
    let t = parse(&format!("{base}routing_key: traceID\n")).unwrap();
    assert_eq!(t.routing(Signal::Logs).unwrap_err().path, "routing_key");
}
