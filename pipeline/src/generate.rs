//! Realistic fake OTLP for an LLM application, shared by tests, benches and
//! the load generator so they all measure the same shape of data.
//!
//! A trace is a RAG request: `rag.query` → `rag.embed`, `rag.retrieve` →
//! `vectordb.search`, and `llm.chat_completion` with GenAI attributes, spread
//! over three services, about ten attributes per span.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Spans in one generated trace.
pub const SPANS_PER_TRACE: usize = 5;

const SERVICES: [&str; 3] = ["rag-api", "vectordb", "llm-gateway"];
const MODELS: [(&str, &str); 4] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet"),
    ("aws.bedrock", "amazon.titan-text-express-v1"),
];

/// Knobs for generated data.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// Seed, so runs are repeatable.
    pub seed: u64,
    /// Share of traces whose LLM call fails (status ERROR), 0..=1.
    pub error_rate: f64,
    /// Share of traces that take over 5 s, 0..=1.
    pub slow_rate: f64,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            seed: 1,
            error_rate: 0.0,
            slow_rate: 0.0,
        }
    }
}

/// Makes traces, logs and metrics.
pub struct Generator {
    rng: SmallRng,
    opts: GeneratorOptions,
    /// Base time; each trace starts a little later.
    now_ns: u64,
}

/// An attribute with `value` under `key`.
pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.to_string())
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.namespace", s("rag")),
            kv("service.version", s("1.14.2")),
            kv("deployment.environment", s("production")),
            kv("host.name", s(&format!("{service}-7d9f8b6c4-x2kqp"))),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv("telemetry.sdk.language", s("python")),
            kv("telemetry.sdk.version", s("1.27.0")),
        ],
        ..Default::default()
    }
}

fn scope(service: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: format!("{service}.instrumentation"),
        version: "0.48b0".into(),
        ..Default::default()
    }
}

impl Generator {
    /// A generator with the given options.
    pub fn new(opts: GeneratorOptions) -> Self {
        Generator {
            rng: SmallRng::seed_from_u64(opts.seed),
            opts,
            now_ns: 1_700_000_000_000_000_000,
        }
    }

    fn id<const N: usize>(&mut self) -> Vec<u8> {
        let mut id = [0u8; N];
        self.rng.fill(&mut id[..]);
        id[0] |= 1; // never all zero
        id.to_vec()
    }

    /// A request with `n` spans (whole traces, the last one cut short).
    pub fn spans(&mut self, n: usize) -> ExportTraceServiceRequest {
        let mut per_service: [Vec<Span>; 3] = Default::default();
        let mut left = n;
        while left > 0 {
            for (svc, span) in self.trace().into_iter().take(left) {
                per_service[svc].push(span);
                left -= 1;
            }
        }
        let resource_spans = per_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(i, spans)| ResourceSpans {
                resource: Some(resource(SERVICES[i])),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope(SERVICES[i])),
                    spans,
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }

    /// A request with `n` whole traces.
    pub fn traces(&mut self, n: usize) -> ExportTraceServiceRequest {
        self.spans(n * SPANS_PER_TRACE)
    }

    /// One trace as (service index, span) pairs, root first.
    fn trace(&mut self) -> Vec<(usize, Span)> {
        let trace_id = self.id::<16>();
        let error = self.rng.random_bool(self.opts.error_rate);
        let slow = self.rng.random_bool(self.opts.slow_rate);
        let start = self.now_ns;
        self.now_ns += 1_000_000;
        let llm_ms: u64 = if slow {
            self.rng.random_range(5_500..12_000)
        } else {
            self.rng.random_range(300..2_500)
        };
        let (system, model) = MODELS[self.rng.random_range(0..MODELS.len())];
        let input_tokens: i64 = self.rng.random_range(200..6_000);
        let output_tokens: i64 = if error {
            0
        } else {
            self.rng.random_range(20..800)
        };
        let root_id = self.id::<8>();
        let retrieve_id = self.id::<8>();
        let ms = 1_000_000u64;
        let embed_end = start + 40 * ms;
        let retrieve_end = embed_end + 60 * ms;
        let llm_end = retrieve_end + llm_ms * ms;
        let end = llm_end + 5 * ms;
        let user = format!("user-{}", self.rng.random_range(1..5_000));
        let mk =
            |g: &mut Self, name: &str, parent: &[u8], kind: span::SpanKind, t: (u64, u64)| Span {
                trace_id: trace_id.clone(),
                span_id: g.id::<8>(),
                parent_span_id: parent.to_vec(),
                name: name.into(),
                kind: kind as i32,
                start_time_unix_nano: t.0,
                end_time_unix_nano: t.1,
                flags: 0x101,
                status: Some(Status::default()),
                ..Default::default()
            };
        let mut root = mk(self, "rag.query", &[], span::SpanKind::Server, (start, end));
        root.span_id = root_id.clone();
        root.attributes = vec![
            kv("http.request.method", s("POST")),
            kv("url.path", s("/v1/query")),
            kv("url.scheme", s("https")),
            kv("http.route", s("/v1/query")),
            kv(
                "http.response.status_code",
                Value::IntValue(if error { 502 } else { 200 }),
            ),
            kv("user.id", s(&user)),
            kv(
                "session.id",
                s(&format!("sess-{:08x}", self.rng.random::<u32>())),
            ),
            kv(
                "rag.query.length",
                Value::IntValue(self.rng.random_range(10..400)),
            ),
            kv("rag.top_k", Value::IntValue(8)),
            kv("app.tenant", s("acme-corp")),
        ];
        let mut embed = mk(
            self,
            "rag.embed",
            &root_id,
            span::SpanKind::Internal,
            (start + ms, embed_end),
        );
        embed.attributes = vec![
            kv("gen_ai.system", s("openai")),
            kv("gen_ai.operation.name", s("embeddings")),
            kv("gen_ai.request.model", s("text-embedding-3-small")),
            kv(
                "gen_ai.usage.input_tokens",
                Value::IntValue(input_tokens / 20 + 5),
            ),
            kv("embedding.dimensions", Value::IntValue(1536)),
            kv("server.address", s("api.openai.com")),
            kv("server.port", Value::IntValue(443)),
            kv("cache.hit", Value::BoolValue(false)),
            kv("retry.count", Value::IntValue(0)),
            kv("app.tenant", s("acme-corp")),
        ];
        let mut retrieve = mk(
            self,
            "rag.retrieve",
            &root_id,
            span::SpanKind::Internal,
            (embed_end, retrieve_end),
        );
        retrieve.span_id = retrieve_id.clone();
        retrieve.attributes = vec![
            kv("rag.index", s("product-docs-v3")),
            kv("rag.top_k", Value::IntValue(8)),
            kv("rag.documents.returned", Value::IntValue(8)),
            kv(
                "rag.score.min",
                Value::DoubleValue(self.rng.random_range(0.3..0.6)),
            ),
            kv(
                "rag.score.max",
                Value::DoubleValue(self.rng.random_range(0.7..0.99)),
            ),
            kv("rag.filter", s("tenant=acme-corp")),
            kv("rag.rerank", Value::BoolValue(true)),
            kv("rag.rerank.model", s("rerank-english-v3.0")),
            kv("code.function", s("retrieve_context")),
            kv("code.namespace", s("rag.pipeline")),
        ];
        let mut search = mk(
            self,
            "vectordb.search",
            &retrieve_id,
            span::SpanKind::Server,
            (embed_end + 2 * ms, retrieve_end - 3 * ms),
        );
        search.attributes = vec![
            kv("db.system", s("qdrant")),
            kv("db.operation.name", s("search")),
            kv("db.collection.name", s("product-docs-v3")),
            kv("db.vector.dimensions", Value::IntValue(1536)),
            kv("db.vector.query.top_k", Value::IntValue(32)),
            kv("db.vector.distance", s("cosine")),
            kv("server.address", s("qdrant.rag.svc.cluster.local")),
            kv("server.port", Value::IntValue(6333)),
            kv("network.transport", s("tcp")),
            kv("db.response.returned_rows", Value::IntValue(32)),
        ];
        let mut llm = mk(
            self,
            "llm.chat_completion",
            &root_id,
            span::SpanKind::Client,
            (retrieve_end, llm_end),
        );
        llm.attributes = vec![
            kv("gen_ai.system", s(system)),
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.request.model", s(model)),
            kv("gen_ai.response.model", s(&format!("{model}-2024-08-06"))),
            kv("gen_ai.request.temperature", Value::DoubleValue(0.2)),
            kv("gen_ai.request.max_tokens", Value::IntValue(1024)),
            kv("gen_ai.usage.input_tokens", Value::IntValue(input_tokens)),
            kv("gen_ai.usage.output_tokens", Value::IntValue(output_tokens)),
            kv(
                "gen_ai.response.finish_reasons",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s(if error { "error" } else { "stop" })),
                    }],
                }),
            ),
            kv(
                "gen_ai.response.id",
                s(&format!("chatcmpl-{:016x}", self.rng.random::<u64>())),
            ),
        ];
        if error {
            llm.status = Some(Status {
                code: 2,
                message: "upstream returned 529: overloaded".into(),
            });
            root.status = Some(Status {
                code: 2,
                message: "llm call failed".into(),
            });
        }
        vec![(0, root), (0, embed), (0, retrieve), (1, search), (2, llm)]
    }

    /// A logs request with `n` log records, correlated to fresh trace ids.
    pub fn logs(&mut self, n: usize) -> ExportLogsServiceRequest {
        let records = (0..n)
            .map(|i| {
                let error = self.rng.random_bool(self.opts.error_rate);
                LogRecord {
                    time_unix_nano: self.now_ns + i as u64,
                    observed_time_unix_nano: self.now_ns + i as u64 + 1_000,
                    severity_number: if error { 17 } else { 9 },
                    severity_text: if error { "ERROR" } else { "INFO" }.into(),
                    body: Some(AnyValue {
                        value: Some(s(if error {
                            "llm call failed: upstream returned 529"
                        } else {
                            "answered query with 8 retrieved documents"
                        })),
                    }),
                    attributes: vec![
                        kv("gen_ai.request.model", s("gpt-4o")),
                        kv(
                            "user.id",
                            s(&format!("user-{}", self.rng.random_range(1..5_000))),
                        ),
                        kv("code.function", s("answer")),
                    ],
                    trace_id: self.id::<16>(),
                    span_id: self.id::<8>(),
                    flags: 1,
                    event_name: String::new(),
                    ..Default::default()
                }
            })
            .collect();
        self.now_ns += n as u64;
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource(SERVICES[0])),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope(SERVICES[0])),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// A metrics request with `n` data points over a gauge, a sum and a
    /// histogram.
    pub fn metrics(&mut self, n: usize) -> ExportMetricsServiceRequest {
        let t = self.now_ns;
        self.now_ns += 1_000_000_000;
        let attrs = |m: &str| {
            vec![
                kv("gen_ai.request.model", s(m)),
                kv("gen_ai.system", s("openai")),
            ]
        };
        let mut gauge = Vec::new();
        let mut sum = Vec::new();
        let mut hist = Vec::new();
        for i in 0..n {
            let (_, model) = MODELS[i % MODELS.len()];
            match i % 3 {
                0 => gauge.push(NumberDataPoint {
                    attributes: attrs(model),
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsDouble(
                        self.rng.random_range(0.0..100.0),
                    )),
                    ..Default::default()
                }),
                1 => sum.push(NumberDataPoint {
                    attributes: attrs(model),
                    start_time_unix_nano: t - 60_000_000_000,
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsInt(
                        self.rng.random_range(0..100_000),
                    )),
                    ..Default::default()
                }),
                _ => {
                    let counts: Vec<u64> = (0..5).map(|_| self.rng.random_range(0..50)).collect();
                    hist.push(HistogramDataPoint {
                        attributes: attrs(model),
                        start_time_unix_nano: t - 60_000_000_000,
                        time_unix_nano: t,
                        count: counts.iter().sum(),
                        sum: Some(1234.5),
                        bucket_counts: counts,
                        explicit_bounds: vec![100.0, 500.0, 1000.0, 5000.0],
                        min: Some(12.0),
                        max: Some(9000.0),
                        ..Default::default()
                    })
                }
            }
        }
        let mut metrics = Vec::new();
        if !gauge.is_empty() {
            metrics.push(Metric {
                name: "gen_ai.server.queue.depth".into(),
                unit: "{request}".into(),
                description: "requests waiting for a model".into(),
                data: Some(Data::Gauge(Gauge { data_points: gauge })),
                ..Default::default()
            });
        }
        if !sum.is_empty() {
            metrics.push(Metric {
                name: "gen_ai.client.token.usage.total".into(),
                unit: "{token}".into(),
                data: Some(Data::Sum(Sum {
                    data_points: sum,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
        }
        if !hist.is_empty() {
            metrics.push(Metric {
                name: "gen_ai.client.operation.duration".into(),
                unit: "ms".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: hist,
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                })),
                ..Default::default()
            });
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource(SERVICES[2])),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope(SERVICES[2])),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn spans_are_llm_shaped_and_about_466_bytes() {
        let req = Generator::new(GeneratorOptions::default()).spans(512);
        let spans: Vec<&Span> = req
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
            .collect();
        assert_eq!(spans.len(), 512);
        assert_eq!(req.resource_spans.len(), 3);
        let llm = spans
            .iter()
            .find(|s| s.name == "llm.chat_completion")
            .unwrap();
        assert!(llm
            .attributes
            .iter()
            .any(|a| a.key == "gen_ai.usage.output_tokens"));
        let per_span = req.encoded_len() / 512;
        assert!((380..=560).contains(&per_span), "{per_span} B/span");
    }

    #[test]
    fn error_rate_marks_llm_spans() {
        let req = Generator::new(GeneratorOptions {
            error_rate: 1.0,
            ..Default::default()
        })
        .traces(3);
        let errors = req.resource_spans[2].scope_spans[0]
            .spans
            .iter()
            .filter(|s| s.status.as_ref().unwrap().code == 2)
            .count();
        assert_eq!(errors, 3);
    }
}
