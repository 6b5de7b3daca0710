//! Copy-on-write changes to requests: decode only the parts a processor
//! changes, re-encode them, and splice them back between the untouched
//! bytes. A request nothing changes is kept as it is.

use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::batch::{Request, Signal};
use crate::scan::{span_entry, Span32, SpanEntry};
use crate::split::{reframe, traces_request, Replacements};
use crate::wire::{put_len_header, Reader};

/// Replaces each request of a batch with `f`'s rewrite of it, where `f`
/// returns one; requests `f` leaves alone keep their bytes.
pub fn rewrite_batch(
    batch: &mut crate::batch::Batch,
    mut f: impl FnMut(&Request) -> Option<Request>,
) {
    for req in &mut batch.requests {
        if let Some(new) = f(req) {
            *req = new;
        }
    }
}

/// Decodes a whole field (tag included) recorded in an index; `None` for an
/// absent field.
pub fn decode_field<M: Message + Default>(buf: &[u8], range: Span32) -> Option<M> {
    let (start, end) = (range.0 as usize, range.1 as usize);
    if start == end {
        return None;
    }
    // The field was validated by the scan; read past its header.
    let mut r = Reader::new(buf, start, end, "field");
    let field = r.next_field().ok()??;
    M::decode(&buf[field.body.0..field.body.1]).ok()
}

/// Decodes a logs or metrics request, lets `f` change it (it gets the one
/// that matches the signal), and re-encodes it when `f` says it changed.
pub fn rewrite_decoded(
    signal: Signal,
    req: &Request,
    f: impl FnOnce(
        Option<&mut ExportLogsServiceRequest>,
        Option<&mut ExportMetricsServiceRequest>,
    ) -> bool,
) -> Option<Request> {
    let bytes = match signal {
        Signal::Traces => return None,
        Signal::Logs => {
            let mut decoded = ExportLogsServiceRequest::decode(req.bytes.clone()).ok()?;
            f(Some(&mut decoded), None).then(|| decoded.encode_to_vec())?
        }
        Signal::Metrics => {
            let mut decoded = ExportMetricsServiceRequest::decode(req.bytes.clone()).ok()?;
            f(None, Some(&mut decoded)).then(|| decoded.encode_to_vec())?
        }
    };
    Some(Request {
        bytes: Bytes::from(bytes),
        items: req.items,
        index: None::<Arc<_>>,
        client: req.client.clone(),
    })
}

/// Applies `f` to every resource of a request; returns the rewritten request
/// when `f` changed any, or `None` to keep the original. Traces decode only
/// their resources, never a span; logs and metrics go through prost.
pub fn rewrite_resources(
    signal: Signal,
    req: &Request,
    mut f: impl FnMut(&mut Resource) -> bool,
) -> Option<Request> {
    if signal != Signal::Traces {
        return rewrite_decoded(signal, req, |logs, metrics| {
            let mut any = false;
            for rl in logs.into_iter().flat_map(|l| l.resource_logs.iter_mut()) {
                any |= f(rl.resource.get_or_insert_with(Resource::default));
            }
            for rm in metrics
                .into_iter()
                .flat_map(|m| m.resource_metrics.iter_mut())
            {
                any |= f(rm.resource.get_or_insert_with(Resource::default));
            }
            any
        });
    }
    let index = req.index.as_ref()?;
    let mut replaced: Vec<Option<Vec<u8>>> = vec![None; index.resources.len()];
    let mut any = false;
    for (i, entry) in index.resources.iter().enumerate() {
        let mut resource: Resource = decode_field(&req.bytes, entry.resource).unwrap_or_default();
        if f(&mut resource) {
            let mut out = Vec::with_capacity(resource.encoded_len() + 4);
            put_len_header(&mut out, 1, resource.encoded_len());
            resource.encode_raw(&mut out);
            replaced[i] = Some(out);
            any = true;
        }
    }
    let repl = Replacements {
        resources: replaced,
        ..Default::default()
    };
    any.then(|| traces_request(reframe(&req.bytes, index, 0..index.spans.len(), &repl), req))
}

/// Applies `f` to every instrumentation scope of a traces request, decoding
/// only the scopes; returns the rewritten request when `f` changed any.
pub fn rewrite_scopes(
    req: &Request,
    mut f: impl FnMut(&mut InstrumentationScope) -> bool,
) -> Option<Request> {
    let index = req.index.as_ref()?;
    let mut replaced: Vec<Option<Vec<u8>>> = vec![None; index.scopes.len()];
    let mut any = false;
    for (i, entry) in index.scopes.iter().enumerate() {
        let mut scope: InstrumentationScope =
            decode_field(&req.bytes, entry.scope).unwrap_or_default();
        if f(&mut scope) {
            // ScopeSpans.scope is field 1.
            let mut out = Vec::with_capacity(scope.encoded_len() + 4);
            put_len_header(&mut out, 1, scope.encoded_len());
            scope.encode_raw(&mut out);
            replaced[i] = Some(out);
            any = true;
        }
    }
    let repl = Replacements {
        scopes: replaced,
        ..Default::default()
    };
    any.then(|| traces_request(reframe(&req.bytes, index, 0..index.spans.len(), &repl), req))
}

/// How far a span replacement can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only attributes changed: ids, times and status are as before, so the
    /// original index entry still holds.
    AttributesOnly,
    /// Anything may have changed: validate and index the new bytes.
    Anything,
}

thread_local! {
    /// This thread's span replacements from its last request, emptied.
    /// Their buffer holds about a request: taken new for each request, it
    /// was one large malloc and free per request and processor, each
    /// paying glibc's sorting of the buffers the hold frees (see
    /// `docs/architecture.md`).
    static SPARE: Cell<Option<Replacements>> = const { Cell::new(None) };
}

/// Larger replacement buffers are not kept: one odd request must not pin
/// its size for the thread's life.
const SPARE_MAX: usize = 4 << 20;

/// Keeps `repl`'s buffers, emptied, for this thread's next request.
fn keep_spare(mut repl: Replacements) {
    if repl.span_bytes.capacity() > SPARE_MAX {
        return;
    }
    repl.spans.clear();
    repl.span_bytes.clear();
    repl.resources.clear();
    repl.scopes.clear();
    SPARE.set(Some(repl));
}

/// Offers each span's index entry and whole field (tag included) to `f`;
/// where `f` appends new field bytes to the buffer it is given and returns
/// true, they replace the span (all replacements share that one buffer).
/// Returns the rewritten request, or `None` when `f` replaced nothing. The
/// rest are copied as they are.
pub fn replace_spans(
    req: &Request,
    reach: Reach,
    mut f: impl FnMut(&SpanEntry, &[u8], &mut Vec<u8>) -> bool,
) -> Option<Request> {
    let index = req.index.as_ref()?;
    let mut repl = SPARE.take().unwrap_or_default();
    for (i, entry) in index.spans.iter().enumerate() {
        let field = &req.bytes[entry.range.0 as usize..entry.range.1 as usize];
        let at = repl.span_bytes.len();
        if !f(entry, field, &mut repl.span_bytes) {
            repl.span_bytes.truncate(at);
            continue;
        }
        let out = &repl.span_bytes[at..];
        let entry = match reach {
            Reach::AttributesOnly => entry.clone(),
            Reach::Anything => span_entry(out).ok()?,
        };
        let range = (
            u32::try_from(at).ok()?,
            u32::try_from(repl.span_bytes.len()).ok()?,
        );
        if repl.spans.is_empty() {
            repl.spans.resize(index.spans.len(), None);
            // Room for the rest of the request, so that the buffer is not
            // grown (and copied) several times over: the replacements
            // after this one are copies of later spans, a little changed.
            let rest = req
                .bytes
                .len()
                .saturating_sub(index.spans[i].range.1 as usize);
            repl.span_bytes.reserve(rest);
        }
        repl.spans[i] = Some((range, entry));
    }
    if repl.spans.is_empty() {
        keep_spare(repl);
        return None;
    }
    let new = traces_request(reframe(&req.bytes, index, 0..index.spans.len(), &repl), req);
    keep_spare(repl);
    Some(new)
}

/// Decodes the span in a whole `spans` field and lets `f` change it; when
/// `f` says it changed, appends the re-encoded field to `out`. Returns
/// whether it did.
pub fn edit_span(field: &[u8], out: &mut Vec<u8>, f: impl FnOnce(&mut Span) -> bool) -> bool {
    let mut r = Reader::new(field, 0, field.len(), "ScopeSpans");
    let Some(body) = r.next_field().ok().flatten().map(|s| s.body) else {
        return false;
    };
    let Ok(mut span) = Span::decode(&field[body.0..body.1]) else {
        return false;
    };
    if !f(&mut span) {
        return false;
    }
    out.reserve(span.encoded_len() + 4);
    put_len_header(out, 2, span.encoded_len());
    span.encode_raw(out);
    true
}

/// Applies `f` to the spans whose encoded field passes `wants` (a cheap
/// byte-level filter, so spans that cannot match are never decoded); returns
/// the rewritten request when `f` changed any span, or `None`.
pub fn rewrite_spans(
    req: &Request,
    mut wants: impl FnMut(&[u8]) -> bool,
    mut f: impl FnMut(&mut Span) -> bool,
) -> Option<Request> {
    replace_spans(req, Reach::Anything, |_, field, out| {
        wants(field) && edit_span(field, out, &mut f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::generate::{Generator, GeneratorOptions};
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

    fn tag(r: &mut Resource) -> bool {
        r.attributes.push(KeyValue {
            key: "telemetry.source".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("claude".into())),
            }),
            ..Default::default()
        });
        true
    }

    #[test]
    fn traces_get_new_resources_and_keep_every_span_byte() {
        let sent = Generator::new(GeneratorOptions::default()).spans(40);
        let req = Batch::parse(Signal::Traces, sent.encode_to_vec().into())
            .unwrap()
            .requests
            .remove(0);
        let out = rewrite_resources(Signal::Traces, &req, tag).unwrap();
        let got =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                out.bytes.clone(),
            )
            .unwrap();
        assert_eq!(got.resource_spans.len(), sent.resource_spans.len());
        for (g, s) in got.resource_spans.iter().zip(&sent.resource_spans) {
            let mut want = s.resource.clone().unwrap();
            tag(&mut want);
            assert_eq!(g.resource.as_ref(), Some(&want));
            assert_eq!(g.scope_spans, s.scope_spans, "spans untouched");
        }
        // The index written alongside is exactly what a scan finds.
        let mut scanned = crate::scan::SpanIndex::default();
        crate::scan::scan_traces(&out.bytes, &mut scanned).unwrap();
        assert_eq!(out.index.as_deref(), Some(&scanned));
        // Every span's bytes are the original bytes.
        let old = req.index.as_ref().unwrap();
        for (a, b) in old.spans.iter().zip(&scanned.spans) {
            assert_eq!(
                &req.bytes[a.range.0 as usize..a.range.1 as usize],
                &out.bytes[b.range.0 as usize..b.range.1 as usize]
            );
        }
    }

    #[test]
    fn only_the_spans_changed_are_decoded_and_replaced() {
        let sent = Generator::new(GeneratorOptions::default()).spans(40);
        let req = Batch::parse(Signal::Traces, sent.encode_to_vec().into())
            .unwrap()
            .requests
            .remove(0);
        let mut decoded = 0;
        let out = rewrite_spans(
            &req,
            |field| field.windows(19).any(|w| w == b"llm.chat_completion"),
            |span| {
                decoded += 1;
                span.name.push_str(".priced");
                true
            },
        )
        .unwrap();
        assert_eq!(decoded, 8, "only the 8 LLM spans are decoded");
        let got =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                out.bytes.clone(),
            )
            .unwrap();
        let names = |r: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest| -> Vec<String> {
            r.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter().map(|s| s.name.clone()))).collect()
        };
        let want: Vec<String> = names(&sent)
            .into_iter()
            .map(|n| {
                if n == "llm.chat_completion" {
                    format!("{n}.priced")
                } else {
                    n
                }
            })
            .collect();
        assert_eq!(names(&got), want);
        let mut scanned = crate::scan::SpanIndex::default();
        crate::scan::scan_traces(&out.bytes, &mut scanned).unwrap();
        assert_eq!(out.index.as_deref(), Some(&scanned));
        assert!(rewrite_spans(&req, |_| true, |_| false).is_none());
    }

    #[test]
    fn a_request_rewritten_after_another_on_the_same_thread_carries_nothing_of_it() {
        let parse = |n: usize| {
            Batch::parse(
                Signal::Traces,
                Generator::new(GeneratorOptions::default())
                    .spans(n)
                    .encode_to_vec()
                    .into(),
            )
            .unwrap()
            .requests
            .remove(0)
        };
        let names = |r: &Request| -> Vec<String> {
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                r.bytes.clone(),
            )
            .unwrap()
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| &ss.spans))
            .map(|s| s.name.clone())
            .collect()
        };
        let (big, small) = (parse(60), parse(10));
        let mark = |suffix: &'static str| {
            move |span: &mut Span| {
                span.name.push_str(suffix);
                true
            }
        };
        // Every span of the big one replaced, then one that replaces none.
        let first = rewrite_spans(&big, |_| true, mark(".a")).unwrap();
        assert!(names(&first).iter().all(|n| n.ends_with(".a")));
        assert!(rewrite_spans(&small, |_| true, |_| false).is_none());
        // The small one's LLM spans only: each of its spans is its own.
        let llm = |field: &[u8]| field.windows(19).any(|w| w == b"llm.chat_completion");
        let out = rewrite_spans(&small, llm, mark(".b")).unwrap();
        let want: Vec<String> = names(&small)
            .into_iter()
            .map(|n| match n.as_str() {
                "llm.chat_completion" => format!("{n}.b"),
                _ => n,
            })
            .collect();
        assert!(want.iter().any(|n| n.ends_with(".b")));
        assert_eq!(names(&out), want);
        let mut scanned = crate::scan::SpanIndex::default();
        crate::scan::scan_traces(&out.bytes, &mut scanned).unwrap();
        assert_eq!(out.index.as_deref(), Some(&scanned));
    }

    #[test]
    fn unchanged_requests_are_kept() {
        let sent = Generator::new(GeneratorOptions::default()).spans(5);
        let req = Batch::parse(Signal::Traces, sent.encode_to_vec().into())
            .unwrap()
            .requests
            .remove(0);
        assert!(rewrite_resources(Signal::Traces, &req, |_| false).is_none());
    }

    #[test]
    fn logs_and_metrics_resources_are_rewritten() {
        let mut g = Generator::new(GeneratorOptions::default());
        for (signal, bytes) in [
            (Signal::Logs, g.logs(4).encode_to_vec()),
            (Signal::Metrics, g.metrics(6).encode_to_vec()),
        ] {
            let req = Batch::parse(signal, bytes.into())
                .unwrap()
                .requests
                .remove(0);
            let out = rewrite_resources(signal, &req, tag).unwrap();
            assert_eq!(out.items, req.items);
            let text = format!("{:?}", out.bytes);
            assert!(text.contains("telemetry.source"), "{signal}");
        }
    }
}
