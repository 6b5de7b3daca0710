//! GenAI spans → `llm_calls` rows: one per model call, with its service,
//! provider, model, operation, tokens, cost, duration and status.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use pipeline::wire::hex;

use super::points::service;
use super::rows::Rows;

/// The COPY column list of `llm_calls`.
pub const COLUMNS: &str = "time, trace_id, span_id, service, provider, model, operation, input_tokens, output_tokens, cost_usd, duration_ms, status";

/// The GenAI attributes a row reads, newest convention first.
#[derive(Default)]
struct Call<'a> {
    provider: [Option<&'a str>; 2],
    model: [Option<&'a str>; 2],
    operation: Option<&'a str>,
    input: [Option<i64>; 3],
    output: [Option<i64>; 3],
    cost: Option<f64>,
}

fn int(v: &Any) -> Option<i64> {
    match v {
        Any::IntValue(i) => Some(*i),
        Any::DoubleValue(d) => Some(*d as i64),
        Any::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(v: &Any) -> Option<&str> {
    match v {
        Any::StringValue(s) => Some(s),
        _ => None,
    }
}

impl<'a> Call<'a> {
    fn read(attrs: &'a [KeyValue]) -> Call<'a> {
        let mut c = Call::default();
        for kv in attrs {
            let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
                continue;
            };
            match kv.key.as_str() {
                "gen_ai.provider.name" => c.provider[0] = string(v),
                "gen_ai.system" => c.provider[1] = string(v),
                "gen_ai.response.model" => c.model[0] = string(v),
                "gen_ai.request.model" => c.model[1] = string(v),
                "gen_ai.operation.name" => c.operation = string(v),
                "gen_ai.usage.input_tokens" => c.input[0] = int(v),
                "gen_ai.usage.prompt_tokens" => c.input[1] = int(v),
                "llm.usage.prompt_tokens" => c.input[2] = int(v),
                "gen_ai.usage.output_tokens" => c.output[0] = int(v),
                "gen_ai.usage.completion_tokens" => c.output[1] = int(v),
                "llm.usage.completion_tokens" => c.output[2] = int(v),
                "gen_ai.usage.cost" => {
                    c.cost = match v {
                        Any::DoubleValue(d) => Some(*d),
                        Any::IntValue(i) => Some(*i as f64),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// A span is a model call when it names a provider, model or operation.
    fn is_genai(&self) -> bool {
        self.provider.iter().chain(&self.model).any(Option::is_some) || self.operation.is_some()
    }
}

fn first<T: Copy>(xs: &[Option<T>]) -> Option<T> {
    xs.iter().find_map(|x| *x)
}

/// Appends one `llm_calls` row per GenAI span in `req` to `out`; other
/// spans are left out.
pub fn add_rows(req: &ExportTraceServiceRequest, out: &mut Rows) {
    for rs in &req.resource_spans {
        let attrs = rs
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let svc = service(attrs);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let c = Call::read(&span.attributes);
                if !c.is_genai() {
                    continue;
                }
                let status = match span.status.as_ref().map_or(0, |s| s.code) {
                    1 => "ok",
                    2 => "error",
                    _ => "unset",
                };
                let ms = span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano) as f64
                    / 1e6;
                out.begin()
                    .time(span.start_time_unix_nano)
                    .text(&hex(&span.trace_id))
                    .text(&hex(&span.span_id))
                    .opt_text(svc)
                    .opt_text(first(&c.provider))
                    .opt_text(first(&c.model))
                    .opt_text(c.operation)
                    .opt_int(first(&c.input))
                    .opt_int(first(&c.output))
                    .opt_float(c.cost)
                    .float(ms)
                    .text(status)
                    .end();
            }
        }
    }
}
