//! The `timescaledb` exporter with the real binary and a real PostgreSQL
//! started here: metric points sent over OTLP become rows with the right
//! values, GenAI spans become `llm_calls` rows, a refused row is counted
//! and skipped, and a database restart mid-stream loses nothing.

mod common;

use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point, summary_data_point,
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use pipeline::Signal;
use prost::Message;
use sqlx::Row;

fn config(pg: &Postgres, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  timescaledb:
    endpoint: {}
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s
{extra}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [timescaledb]
    traces:
      receivers: [otlp]
      exporters: [timescaledb]
"#,
        pg.url()
    )
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

const T: u64 = 1_700_000_000_123_456_000;

fn metrics() -> ExportMetricsServiceRequest {
    let attrs = vec![
        kv("route", s("/chat")),
        kv("code", any_value::Value::IntValue(200)),
    ];
    let metric = |name: &str, unit: &str, data: Data| Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("rag-api")), kv("host.name", s("h\t1"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "meter".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                metrics: vec![
                    metric(
                        "queue.depth",
                        "{item}",
                        Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint {
                                    attributes: attrs.clone(),
                                    time_unix_nano: T,
                                    value: Some(number_data_point::Value::AsDouble(2.5)),
                                    exemplars: vec![Exemplar {
                                        trace_id: vec![0xab; 16],
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                },
                                NumberDataPoint {
                                    time_unix_nano: T + 1_000,
                                    value: Some(number_data_point::Value::AsInt(-7)),
                                    ..Default::default()
                                },
                            ],
                        }),
                    ),
                    metric(
                        "requests",
                        "1",
                        Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                attributes: attrs.clone(),
                                start_time_unix_nano: T - 60_000_000_000,
                                time_unix_nano: T,
                                value: Some(number_data_point::Value::AsInt(42)),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "latency",
                        "ms",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: attrs.clone(),
                                time_unix_nano: T,
                                count: 6,
                                sum: Some(123.5),
                                min: Some(1.0),
                                max: Some(80.0),
                                bucket_counts: vec![1, 3, 2],
                                explicit_bounds: vec![10.0, 50.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        }),
                    ),
                    metric(
                        "latency.exp",
                        "ms",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                time_unix_nano: T,
                                count: 5,
                                sum: Some(20.0),
                                scale: 3,
                                zero_count: 1,
                                zero_threshold: 0.001,
                                positive: Some(Buckets {
                                    offset: -2,
                                    bucket_counts: vec![1, 2],
                                }),
                                negative: Some(Buckets {
                                    offset: 4,
                                    bucket_counts: vec![1],
                                }),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "rpc.duration",
                        "s",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                time_unix_nano: T,
                                count: 10,
                                sum: 4.5,
                                quantile_values: vec![
                                    summary_data_point::ValueAtQuantile {
                                        quantile: 0.5,
                                        value: 0.3,
                                    },
                                    summary_data_point::ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 1.2,
                                    },
                                ],
                                ..Default::default()
                            }],
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn db(pg: &Postgres) -> sqlx::PgPool {
    sqlx::PgPool::connect(&pg.url()).await.unwrap()
}

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM observatory.{table}"))
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn wait_rows(pool: &sqlx::PgPool, table: &str, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = count(pool, table).await;
        if c >= n || Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_points_become_rows_with_their_values() {
    let pg = Postgres::start();
    let c = Collector::start(&config(&pg, ""));
    grpc_send(c.grpc, Signal::Metrics, metrics().encode_to_vec(), None)
        .await
        .unwrap();
    let pool = db(&pg).await;
    assert_eq!(wait_rows(&pool, "metric_summary", 1).await, 1);

    let rows = sqlx::query(
        "SELECT metric, unit, service, value, time = to_timestamp(1700000000.123456) AS t,
                start_time IS NULL AS no_start, resource->>'host.name' AS host,
                scope->>'name' AS scope, attributes->>'route' AS route,
                (attributes->>'code')::int AS code, exemplar_trace_ids
         FROM observatory.metric_gauge ORDER BY time",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let g = &rows[0];
    assert_eq!(g.get::<String, _>("metric"), "queue.depth");
    assert_eq!(g.get::<String, _>("unit"), "{item}");
    assert_eq!(g.get::<String, _>("service"), "rag-api");
    assert_eq!(g.get::<f64, _>("value"), 2.5);
    assert!(g.get::<bool, _>("t"));
    assert!(g.get::<bool, _>("no_start"));
    assert_eq!(g.get::<String, _>("host"), "h\t1");
    assert_eq!(g.get::<String, _>("scope"), "meter");
    assert_eq!(g.get::<String, _>("route"), "/chat");
    assert_eq!(g.get::<i32, _>("code"), 200);
    assert_eq!(
        g.get::<Vec<String>, _>("exemplar_trace_ids"),
        vec!["ab".repeat(16)]
    );
    assert_eq!(rows[1].get::<f64, _>("value"), -7.0);
    assert!(rows[1]
        .get::<Vec<String>, _>("exemplar_trace_ids")
        .is_empty());

    let sum = sqlx::query(
        "SELECT value, is_monotonic, temporality, time - start_time = INTERVAL '60 seconds' AS window
         FROM observatory.metric_sum",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sum.get::<f64, _>("value"), 42.0);
    assert!(sum.get::<bool, _>("is_monotonic"));
    assert_eq!(sum.get::<i16, _>("temporality"), 2);
    assert!(sum.get::<bool, _>("window"));

    let h = sqlx::query(
        "SELECT count, sum, min, max, bucket_counts, explicit_bounds, temporality FROM observatory.metric_histogram",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(h.get::<i64, _>("count"), 6);
    assert_eq!(h.get::<f64, _>("sum"), 123.5);
    assert_eq!(h.get::<f64, _>("min"), 1.0);
    assert_eq!(h.get::<f64, _>("max"), 80.0);
    assert_eq!(h.get::<Vec<i64>, _>("bucket_counts"), vec![1, 3, 2]);
    assert_eq!(h.get::<Vec<f64>, _>("explicit_bounds"), vec![10.0, 50.0]);
    assert_eq!(h.get::<i16, _>("temporality"), 1);

    let e = sqlx::query(
        "SELECT count, sum, min IS NULL AS no_min, scale, zero_count, zero_threshold, positive_offset,
                positive_bucket_counts, negative_offset, negative_bucket_counts
         FROM observatory.metric_exp_histogram",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(e.get::<i64, _>("count"), 5);
    assert_eq!(e.get::<f64, _>("sum"), 20.0);
    assert!(e.get::<bool, _>("no_min"));
    assert_eq!(e.get::<i32, _>("scale"), 3);
    assert_eq!(e.get::<i64, _>("zero_count"), 1);
    assert_eq!(e.get::<f64, _>("zero_threshold"), 0.001);
    assert_eq!(e.get::<i32, _>("positive_offset"), -2);
    assert_eq!(e.get::<Vec<i64>, _>("positive_bucket_counts"), vec![1, 2]);
    assert_eq!(e.get::<i32, _>("negative_offset"), 4);
    assert_eq!(e.get::<Vec<i64>, _>("negative_bucket_counts"), vec![1]);

    let q = sqlx::query(
        "SELECT count, sum, quantiles, quantile_values FROM observatory.metric_summary",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(q.get::<i64, _>("count"), 10);
    assert_eq!(q.get::<f64, _>("sum"), 4.5);
    assert_eq!(q.get::<Vec<f64>, _>("quantiles"), vec![0.5, 0.99]);
    assert_eq!(q.get::<Vec<f64>, _>("quantile_values"), vec![0.3, 1.2]);

    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM observatory.schema_migrations ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2]);
    // Plain PostgreSQL (the extension is installed here by scripts/test.sh
    // but not preloaded, so it cannot be created): a warning, and the
    // rollups as ordinary views.
    assert!(
        c.logs().contains("timescaledb") && c.logs().contains("using plain PostgreSQL tables"),
        "{}",
        c.logs()
    );
    let views: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_views WHERE schemaname = 'observatory' AND viewname IN ('llm_calls_1m', 'llm_calls_1h')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(views, 2);
    assert_eq!(
        c.metric("observatory_exporter_sent_metric_points_total{exporter=\"timescaledb\"}"),
        Some(6.0)
    );
}

fn genai_span(i: u8, model: &str, input: i64, output: i64, cost: f64, error: bool) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        name: format!("chat {model}"),
        start_time_unix_nano: T,
        end_time_unix_nano: T + 1_500_000_000,
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.provider.name", s("openai")),
            kv("gen_ai.request.model", s(model)),
            kv(
                "gen_ai.usage.input_tokens",
                any_value::Value::IntValue(input),
            ),
            kv(
                "gen_ai.usage.output_tokens",
                any_value::Value::IntValue(output),
            ),
            kv("gen_ai.usage.cost", any_value::Value::DoubleValue(cost)),
        ],
        status: error.then(|| Status {
            code: status::StatusCode::Error as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn genai_spans_become_llm_calls_and_a_refused_row_is_counted_and_skipped() {
    let pg = Postgres::start();
    let c = Collector::start(&config(&pg, ""));
    let mut spans = twenty_calls();
    // A cost that is not a number: llm_calls' check refuses the row.
    spans[6] = genai_span(7, "gpt-4o", 5, 5, f64::NAN, false);
    // Not a model call: no row.
    spans.push(Span {
        trace_id: vec![99; 16],
        span_id: vec![99; 8],
        name: "GET /".into(),
        ..Default::default()
    });
    grpc_send(c.grpc, Signal::Traces, chatbot(spans).encode_to_vec(), None)
        .await
        .unwrap();
    let pool = db(&pg).await;
    assert_eq!(wait_rows(&pool, "llm_calls", 19).await, 19);
    let failed = "observatory_exporter_send_failed_spans_total{exporter=\"timescaledb\"}";
    assert_eq!(
        c.metric_when(failed, 1.0).await,
        Some(1.0),
        "the NaN row is counted"
    );
    assert!(
        c.logs().contains("row refused by the database"),
        "{}",
        c.logs()
    );

    let r = sqlx::query(
        "SELECT trace_id, span_id, service, provider, model, operation, input_tokens, output_tokens,
                cost_usd, duration_ms, status FROM observatory.llm_calls WHERE span_id = $1",
    )
    .bind("0303030303030303")
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(r.get::<String, _>("trace_id"), "03".repeat(16));
    assert_eq!(r.get::<String, _>("service"), "chatbot");
    assert_eq!(r.get::<String, _>("provider"), "openai");
    assert_eq!(r.get::<String, _>("model"), "gpt-4o-mini");
    assert_eq!(r.get::<String, _>("operation"), "chat");
    assert_eq!(r.get::<i64, _>("input_tokens"), 300);
    assert_eq!(r.get::<i64, _>("output_tokens"), 10);
    assert!((r.get::<f64, _>("cost_usd") - 0.03).abs() < 1e-12);
    assert_eq!(r.get::<f64, _>("duration_ms"), 1500.0);
    assert_eq!(r.get::<String, _>("status"), "error");
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM observatory.llm_calls WHERE span_id = '0707070707070707'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(missing, 0);

    // The rollup view answers the dashboard's question: cost per model.
    let per_model: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT model, sum(calls)::bigint, sum(cost_usd) FROM observatory.llm_calls_1m GROUP BY model ORDER BY model",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_model.len(), 2);
    assert_eq!((per_model[0].0.as_str(), per_model[0].1), ("gpt-4o", 10));
    assert_eq!(
        (per_model[1].0.as_str(), per_model[1].1),
        ("gpt-4o-mini", 9)
    );
    let want_mini: f64 = (1..=20)
        .filter(|i| i % 2 == 1 && *i != 7)
        .map(|i| 0.01 * i as f64)
        .sum();
    assert!((per_model[1].2 - want_mini).abs() < 1e-9);

    dashboard_finds_the_calls(&pool).await;
}

/// Every query of the Grafana dashboard runs on the schema and finds the
/// calls (Grafana's macros expanded as its PostgreSQL source does).
async fn dashboard_finds_the_calls(pool: &sqlx::PgPool) {
    let dash: serde_json::Value =
        serde_json::from_str(include_str!("../deploy/grafana/llm-dashboard.json")).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 5);
    for p in panels {
        let sql = p["targets"][0]["rawSql"].as_str().unwrap();
        let sql = grafana_macros(sql);
        let rows = sqlx::query(&sql).fetch_all(pool).await;
        let rows = rows.unwrap_or_else(|e| panic!("{}: {e}\n{sql}", p["title"]));
        assert!(!rows.is_empty(), "{} found nothing", p["title"]);
    }
}

/// Expands the Grafana macros the dashboard uses, for a 100-year range.
fn grafana_macros(sql: &str) -> String {
    let mut out = sql.replace("($service)", "('chatbot')");
    for col in ["bucket", "time"] {
        out = out
            .replace(
                &format!("$__timeGroupAlias({col}, $__interval)"),
                &format!("date_trunc('minute', {col}) AS time"),
            )
            .replace(
                &format!("$__timeGroup({col}, $__interval)"),
                &format!("date_trunc('minute', {col})"),
            )
            .replace(
                &format!("$__timeFilter({col})"),
                &format!("{col} > now() - INTERVAL '100 years'"),
            );
    }
    assert!(!out.contains("$__"), "a macro left: {out}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_mid_stream_loses_nothing() {
    let pg = Postgres::start();
    // One consumer: what arrives while the database is down waits in the queue.
    let c = Collector::start(&config(&pg, "    sending_queue:\n      num_consumers: 1"));
    let mut g = pipeline::generate::Generator::new(Default::default());
    let mut sent = 0;
    for i in 0..30 {
        if i == 10 {
            pg.down();
        }
        if i == 20 {
            // While the database was down, the batches waited in the queue.
            let queued = c.metric("observatory_exporter_queue_size{exporter=\"timescaledb\"}");
            assert!(queued.unwrap() > 0.0, "{queued:?}");
            pg.up();
        }
        let req = g.metrics(40);
        sent += pipeline::batch::point_count(&req) as i64;
        grpc_send(c.grpc, Signal::Metrics, req.encode_to_vec(), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = db(&pg).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut total = 0;
    while Instant::now() < deadline {
        total = 0;
        for t in [
            "metric_gauge",
            "metric_sum",
            "metric_histogram",
            "metric_exp_histogram",
            "metric_summary",
        ] {
            total += count(&pool, t).await;
        }
        if total >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total, sent, "every accepted point is in the database, once");
    assert_eq!(
        c.metric("observatory_exporter_send_failed_metric_points_total{exporter=\"timescaledb\"}"),
        Some(0.0)
    );
}

#[test]
fn require_timescaledb_on_plain_postgres_stops_the_start_by_name() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let text = config(&pg, "    require_timescaledb: true")
        .replace("@GRPC@", &free_port().to_string())
        .replace(
            "service:\n",
            &format!(
                "service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{}\n",
                free_port()
            ),
        );
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exporters.timescaledb") && err.contains("require_timescaledb"),
        "{err}"
    );
}

/// 10 calls each to gpt-4o and gpt-4o-mini, costing $0.01 × i; call 3
/// failed.
fn twenty_calls() -> Vec<Span> {
    (1..=20)
        .map(|i| {
            let model = if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
            genai_span(i, model, 100 * i as i64, 10, 0.01 * i as f64, i == 3)
        })
        .collect()
}

/// `spans` as one request from the service "chatbot".
fn chatbot(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("chatbot"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// With the TimescaleDB extension (the Apache-2 edition Debian ships, which
/// scripts/test.sh builds from Debian's source): every table becomes a
/// hypertable with the configured chunk interval and rows land in chunks.
/// Compression, retention policies and continuous aggregates are features
/// of the Community edition; they are skipped with a warning that says so,
/// the rollups stay ordinary views, and `require_timescaledb` is satisfied.
#[tokio::test(flavor = "multi_thread")]
async fn timescaledb_makes_hypertables_and_names_what_its_edition_lacks() {
    let pg = Postgres::start_with(&[
        "shared_preload_libraries=timescaledb",
        "timescaledb.telemetry_level=off",
    ]);
    let pool = db(&pg).await;
    let available: Option<String> = sqlx::query_scalar(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert!(
        available.is_some(),
        "the timescaledb extension is not installed; scripts/test.sh builds it"
    );
    let c = Collector::start(&config(
        &pg,
        "    require_timescaledb: true
    timescaledb:
      chunk_time_interval: 1h
      compress_after: 168h
      retention: 720h
      continuous_aggregates: true",
    ));
    grpc_send(c.grpc, Signal::Metrics, metrics().encode_to_vec(), None)
        .await
        .unwrap();
    grpc_send(
        c.grpc,
        Signal::Traces,
        chatbot(twenty_calls()).encode_to_vec(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(wait_rows(&pool, "llm_calls", 20).await, 20);
    assert_eq!(wait_rows(&pool, "metric_summary", 1).await, 1);
    assert_eq!(count(&pool, "metric_gauge").await, 2);

    let hyper: Vec<String> = sqlx::query_scalar(
        "SELECT hypertable_name::text FROM timescaledb_information.hypertables
         WHERE hypertable_schema = 'observatory' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        hyper,
        [
            "llm_calls",
            "metric_exp_histogram",
            "metric_gauge",
            "metric_histogram",
            "metric_sum",
            "metric_summary"
        ]
    );
    let chunk: String = sqlx::query_scalar(
        "SELECT time_interval::text FROM timescaledb_information.dimensions
         WHERE hypertable_schema = 'observatory' AND hypertable_name = 'llm_calls'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(chunk, "01:00:00");
    let chunks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.chunks
         WHERE hypertable_schema = 'observatory' AND hypertable_name = 'llm_calls'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(chunks >= 1, "the calls are in chunks");

    let license: String = sqlx::query_scalar("SHOW timescaledb.license")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(license, "apache", "Debian's build is the Apache-2 edition");
    let logs = c.logs();
    for skipped in ["compression", "retention", "continuous aggregates"] {
        assert!(
            logs.contains(skipped) && logs.contains("timescaledb.license is apache"),
            "no warning naming {skipped}:\n{logs}"
        );
    }
    let jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_schema = 'observatory'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(jobs, 0, "no policies on the Apache edition");

    // The rollups are ordinary views over the hypertable, using the
    // extension's own time_bucket.
    let per_model: Vec<(String, i64)> = sqlx::query_as(
        "SELECT model, sum(calls)::bigint FROM observatory.llm_calls_1h GROUP BY model ORDER BY model",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        per_model,
        [("gpt-4o".to_string(), 10), ("gpt-4o-mini".to_string(), 10)]
    );
    let own_bucket: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'observatory' AND p.proname = 'time_bucket'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(own_bucket, 0, "the extension's time_bucket is used");
    dashboard_finds_the_calls(&pool).await;
}

/// Server certificate files PostgreSQL can read: owned by the server's
/// user (when the tests run as root) and the key private to it.
fn server_certs() -> (tempfile::TempDir, common::pki::Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::Pki::write(dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let ok = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    (dir, pki)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_to_postgres_is_verified_against_the_configured_ca() {
    let (_dir, pki) = server_certs();
    let pg = Postgres::start_with(&[
        "ssl=on",
        &format!("ssl_cert_file={}", pki.path("server.pem")),
        &format!("ssl_key_file={}", pki.path("server.key")),
    ]);
    let tls = |ca: &str| format!("    tls:\n      ca_file: {}\n", pki.path(ca));
    let c = Collector::start(&config(&pg, &tls("ca.pem")));
    grpc_send(c.grpc, Signal::Metrics, metrics().encode_to_vec(), None)
        .await
        .unwrap();
    // Checked over a plaintext connection of our own, so any TLS session
    // in pg_stat_ssl is the collector's.
    let pool = sqlx::PgPool::connect(&format!("{}?sslmode=disable", pg.url()))
        .await
        .unwrap();
    assert_eq!(wait_rows(&pool, "metric_summary", 1).await, 1);
    let tls_sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.backend_type = 'client backend' AND s.ssl AND s.version = 'TLSv1.3'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(tls_sessions >= 1, "the collector's connections are not TLS");

    // A CA that did not sign the server's certificate: nothing is written,
    // and the log says why.
    let wrong = Collector::start(&config(&pg, &tls("other-ca.pem")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wrong.logs().contains("UnknownIssuer") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(wrong.logs().contains("UnknownIssuer"), "{}", wrong.logs());
}
