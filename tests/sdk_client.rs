//! A real OpenTelemetry SDK that nobody here wrote (the Rust
//! `opentelemetry-otlp` exporter) sends to the collector over gRPC and
//! HTTP/protobuf; its spans and logs arrive with their fields intact.

mod common;

use common::*;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{LogExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

fn emit(provider: &SdkTracerProvider, transport: &str) {
    let tracer = provider.tracer("sdk-e2e");
    let mut root = tracer
        .span_builder(format!("rag.query {transport}"))
        .with_kind(SpanKind::Server)
        .start(&tracer);
    root.set_attribute(KeyValue::new("user.id", "user-42"));
    let cx =
        opentelemetry::trace::TraceContextExt::with_span(&opentelemetry::Context::current(), root);
    let mut llm = tracer
        .span_builder("llm.chat_completion")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("gen_ai.system", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", 1234i64),
            KeyValue::new("gen_ai.usage.output_tokens", 56i64),
        ])
        .start_with_context(&tracer, &cx);
    llm.set_status(Status::error("rate limited"));
    llm.end();
    opentelemetry::trace::TraceContextExt::span(&cx).end();
}

fn attr<'a>(s: &'a opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

#[test]
fn sdk_spans_and_logs_arrive_over_grpc_and_http() {
    let c = Collector::start(FILE_CONFIG);
    let resource = Resource::builder().with_service_name("sdk-client").build();

    // gRPC through tonic needs a runtime; the SDK's simple processor blocks
    // on each export, so it runs on this thread inside the runtime's context.
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let _guard = rt.enter();
        let grpc = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", c.grpc))
            .build()
            .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_simple_exporter(grpc)
            .build();
        emit(&provider, "grpc");
        provider.shutdown().unwrap();

        let logs = LogExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", c.grpc))
            .build()
            .unwrap();
        let lp = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_simple_exporter(logs)
            .build();
        let logger = lp.logger("sdk-e2e");
        let mut rec = logger.create_log_record();
        rec.set_severity_number(Severity::Warn);
        rec.set_severity_text("WARN");
        rec.set_body("token budget nearly spent".into());
        rec.add_attribute("gen_ai.request.model", "gpt-4o");
        logger.emit(rec);
        lp.shutdown().unwrap();
    }
    let http = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://127.0.0.1:{}/v1/traces", c.http))
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_simple_exporter(http)
        .build();
    emit(&provider, "http");
    provider.shutdown().unwrap();

    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, 4);
    let traces = traces_from(&lines);
    let mut spans = Vec::new();
    for rs in &traces.resource_spans {
        let svc = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|a| a.key == "service.name")
            .unwrap();
        assert_eq!(
            svc.value.as_ref().unwrap().value,
            Some(Value::StringValue("sdk-client".into()))
        );
        for ss in &rs.scope_spans {
            assert_eq!(ss.scope.as_ref().unwrap().name, "sdk-e2e");
            spans.extend(ss.spans.iter().cloned());
        }
    }
    for transport in ["grpc", "http"] {
        let root = spans
            .iter()
            .find(|s| s.name == format!("rag.query {transport}"))
            .unwrap();
        let llm = spans
            .iter()
            .find(|s| s.name == "llm.chat_completion" && s.trace_id == root.trace_id)
            .unwrap();
        assert_eq!(llm.parent_span_id, root.span_id);
        assert_eq!(root.trace_id.len(), 16);
        assert_eq!(llm.kind, 3, "client");
        assert_eq!(
            llm.status.as_ref().map(|s| (s.code, s.message.as_str())),
            Some((2, "rate limited"))
        );
        assert_eq!(
            attr(llm, "gen_ai.usage.input_tokens"),
            Some(&Value::IntValue(1234))
        );
        assert_eq!(
            attr(llm, "gen_ai.request.model"),
            Some(&Value::StringValue("gpt-4o".into()))
        );
        assert!(llm.end_time_unix_nano >= llm.start_time_unix_nano && llm.start_time_unix_nano > 0);
    }

    let lines = wait_for_lines(&c.path("logs.jsonl"), count_logs, 1);
    let logs = logs_from(&lines);
    let rec = &logs.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(
        (rec.severity_number, rec.severity_text.as_str()),
        (13, "WARN")
    );
    assert_eq!(
        rec.body.as_ref().unwrap().value,
        Some(Value::StringValue("token budget nearly spent".into()))
    );
}
