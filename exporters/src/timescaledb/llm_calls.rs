//! GenAI spans → `llm_calls` rows: one per model call, with its service,
//! provider, model, operation, tokens, cost, duration and status.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use pipeline::inplace::{for_each_raw_attribute, for_each_resource_attribute, AttrValue};
use pipeline::scan::SpanIndex;
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

fn int(v: AttrValue<'_>) -> Option<i64> {
    match v {
        AttrValue::Int(i) => Some(i),
        AttrValue::Double(d) => Some(d as i64),
        AttrValue::Str(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(v: AttrValue<'_>) -> Option<&str> {
    match v {
        AttrValue::Str(s) => Some(s),
        _ => None,
    }
}

/// A decoded value as the in-place reader gives it.
fn attr_value(v: Option<&Any>) -> AttrValue<'_> {
    match v {
        Some(Any::StringValue(s)) => AttrValue::Str(s),
        Some(Any::IntValue(i)) => AttrValue::Int(*i),
        Some(Any::DoubleValue(d)) => AttrValue::Double(*d),
        Some(Any::BoolValue(b)) => AttrValue::Bool(*b),
        _ => AttrValue::Other,
    }
}

impl<'a> Call<'a> {
    /// Takes attribute `key`; `get` reads its value, only for the keys a
    /// row uses. A later duplicate wins, as in a decode.
    fn add(&mut self, key: &[u8], get: impl FnOnce() -> AttrValue<'a>) {
        match key {
            b"gen_ai.provider.name" => self.provider[0] = string(get()),
            b"gen_ai.system" => self.provider[1] = string(get()),
            b"gen_ai.response.model" => self.model[0] = string(get()),
            b"gen_ai.request.model" => self.model[1] = string(get()),
            b"gen_ai.operation.name" => self.operation = string(get()),
            b"gen_ai.usage.input_tokens" => self.input[0] = int(get()),
            b"gen_ai.usage.prompt_tokens" => self.input[1] = int(get()),
            b"llm.usage.prompt_tokens" => self.input[2] = int(get()),
            b"gen_ai.usage.output_tokens" => self.output[0] = int(get()),
            b"gen_ai.usage.completion_tokens" => self.output[1] = int(get()),
            b"llm.usage.completion_tokens" => self.output[2] = int(get()),
            b"gen_ai.usage.cost" => {
                self.cost = match get() {
                    AttrValue::Double(d) => Some(d),
                    AttrValue::Int(i) => Some(i as f64),
                    _ => None,
                }
            }
            _ => {}
        }
    }

    /// A span is a model call when it names a provider, model or operation.
    fn is_genai(&self) -> bool {
        self.provider.iter().chain(&self.model).any(Option::is_some) || self.operation.is_some()
    }
}

fn first<T: Copy>(xs: &[Option<T>]) -> Option<T> {
    xs.iter().find_map(|x| *x)
}

/// The span fields a row takes beside its attributes.
struct SpanFacts<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    start: u64,
    end: u64,
    status_code: i32,
    service: Option<&'a str>,
}

fn add_row(out: &mut Rows, span: &SpanFacts, c: &Call) {
    let status = match span.status_code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    };
    let ms = span.end.saturating_sub(span.start) as f64 / 1e6;
    out.begin()
        .time(span.start)
        .text(&hex(span.trace_id))
        .text(&hex(span.span_id))
        .opt_text(span.service)
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

/// Appends one `llm_calls` row per GenAI span of a decoded request.
pub fn add_rows(req: &ExportTraceServiceRequest, out: &mut Rows) {
    for rs in &req.resource_spans {
        let attrs = rs
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let svc = service(attrs);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let mut c = Call::default();
                for kv in &span.attributes {
                    c.add(kv.key.as_bytes(), || {
                        attr_value(kv.value.as_ref().and_then(|v| v.value.as_ref()))
                    });
                }
                if !c.is_genai() {
                    continue;
                }
                let facts = SpanFacts {
                    trace_id: &span.trace_id,
                    span_id: &span.span_id,
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano,
                    status_code: span.status.as_ref().map_or(0, |s| s.code),
                    service: svc,
                };
                add_row(out, &facts, &c);
            }
        }
    }
}

/// As [`add_rows`], from the encoded request and its span index: each
/// span's attributes are read in place and only model calls become rows;
/// nothing is decoded.
pub fn add_rows_indexed(bytes: &[u8], index: &SpanIndex, out: &mut Rows) {
    let field = |r: (u32, u32)| &bytes[r.0 as usize..r.1 as usize];
    // Each resource's service.name, read once it is needed.
    let mut services: Vec<Option<Option<&str>>> = vec![None; index.resources.len()];
    for s in &index.spans {
        let mut c = Call::default();
        for_each_raw_attribute(field(s.range), |k, v| c.add(k, || v.get()));
        if !c.is_genai() {
            continue;
        }
        let r = index.scopes[s.scope as usize].resource as usize;
        let service = *services[r].get_or_insert_with(|| {
            let mut svc = None;
            for_each_resource_attribute(field(index.resources[r].resource), |k, v| {
                if k == b"service.name" {
                    svc = string(v.get());
                }
            });
            svc
        });
        let facts = SpanFacts {
            trace_id: &s.trace_id,
            span_id: &s.span_id,
            start: s.start_time_unix_nano,
            end: s.end_time_unix_nano,
            status_code: i32::from(s.status_code),
            service,
        };
        add_row(out, &facts, &c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use pipeline::generate::{Generator, GeneratorOptions};
    use pipeline::Request;
    use prost::Message;

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn rows_read_in_place_equal_rows_from_a_decode() {
        let mut g = Generator::new(GeneratorOptions::default());
        let mut req = g.spans(500);
        // The conventions' corners: an older key, a string number, a later
        // duplicate, a non-string service name on one resource.
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans[0]
            .attributes
            .push(kv("llm.usage.prompt_tokens", Any::StringValue("42".into())));
        spans[0]
            .attributes
            .push(kv("gen_ai.request.model", Any::StringValue("later".into())));
        spans[1]
            .attributes
            .push(kv("gen_ai.system", Any::StringValue("openai".into())));
        spans[1]
            .attributes
            .push(kv("gen_ai.usage.cost", Any::IntValue(3)));
        if let Some(r) = req.resource_spans[1].resource.as_mut() {
            r.attributes.push(kv("service.name", Any::IntValue(7)));
        }
        let parsed =
            Request::parse(pipeline::Signal::Traces, Bytes::from(req.encode_to_vec())).unwrap();
        let (mut decoded, mut in_place) = (Rows::default(), Rows::default());
        add_rows(&req, &mut decoded);
        add_rows_indexed(&parsed.bytes, parsed.index.as_ref().unwrap(), &mut in_place);
        assert!(decoded.len() > 50, "{} model calls", decoded.len());
        assert_eq!(in_place.len(), decoded.len());
        assert_eq!(
            in_place.range(0, in_place.len()),
            decoded.range(0, decoded.len()),
            "the same COPY text"
        );
    }
}
