//! Splitting a request into a head of `n` items and the rest, for batch size
//! caps. Traces are re-framed from the span index (span bytes are copied, never
//! decoded); logs and metrics go through prost for now.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use prost::Message;

use crate::batch::{metric_points, Request, Signal};
use crate::scan::{ResourceEntry, ScopeEntry, Span32, SpanEntry, SpanIndex};
use crate::wire::{len_header_size, put_len_header};

/// The bytes of `buf` that `r` covers.
pub(crate) fn slice(buf: &[u8], r: Span32) -> &[u8] {
    &buf[r.0 as usize..r.1 as usize]
}

fn width(r: Span32) -> usize {
    (r.1 - r.0) as usize
}

/// Appends `range` of `buf` to `out`; returns where it landed in `out`.
fn copy(out: &mut Vec<u8>, buf: &[u8], range: Span32) -> Span32 {
    let at = out.len() as u32;
    out.extend_from_slice(slice(buf, range));
    (at, out.len() as u32)
}

/// Encodes the spans `spans` of an indexed traces request as a new request,
/// keeping each span's resource and scope, and indexes it while writing (the
/// new index is the old one with shifted ranges, so nothing is re-scanned).
pub fn encode_span_range(
    buf: &[u8],
    index: &SpanIndex,
    spans: std::ops::Range<usize>,
) -> (Vec<u8>, SpanIndex) {
    reframe(buf, index, spans, &Replacements::default())
}

/// New bytes for some resources and spans, by their index in the original
/// request; each is a whole field (`resource` or `spans`), tag included.
#[derive(Debug, Default)]
pub struct Replacements {
    /// Per resource: its new `resource` field.
    pub resources: Vec<Option<Vec<u8>>>,
    /// Per span: where its new `spans` field lies in `span_bytes`, and its
    /// index entry.
    pub spans: Vec<Option<(Span32, SpanEntry)>>,
    /// The new span fields one after another: one buffer for all of them,
    /// not an allocation per span.
    pub span_bytes: Vec<u8>,
    /// Per scope: its new `scope` field.
    pub scopes: Vec<Option<Vec<u8>>>,
}

impl Replacements {
    fn resource(&self, i: usize) -> Option<&[u8]> {
        self.resources.get(i).and_then(|r| r.as_deref())
    }

    fn scope(&self, i: usize) -> Option<&[u8]> {
        self.scopes.get(i).and_then(|r| r.as_deref())
    }

    fn span(&self, i: usize) -> Option<(&[u8], &SpanEntry)> {
        let (range, entry) = self.spans.get(i)?.as_ref()?;
        Some((slice(&self.span_bytes, *range), entry))
    }
}

/// As [`encode_span_range`], writing replacements in place of the original
/// resources and spans where given.
pub fn reframe(
    buf: &[u8],
    index: &SpanIndex,
    spans: std::ops::Range<usize>,
    repl: &Replacements,
) -> (Vec<u8>, SpanIndex) {
    let mut out = Vec::new();
    let mut new = SpanIndex::default();
    reframe_into(&mut out, &mut new, buf, index, spans, repl);
    (out, new)
}

/// As [`reframe`], appending to `out` and `new`: requests concatenate, so
/// several requests' spans re-framed one after another are one request.
fn reframe_into(
    out: &mut Vec<u8>,
    new: &mut SpanIndex,
    buf: &[u8],
    index: &SpanIndex,
    spans: std::ops::Range<usize>,
    repl: &Replacements,
) {
    let first = spans.start;
    let picked = &index.spans[spans];
    // Width of span `k` of `picked` as it will be written.
    let span_width = |k: usize| {
        repl.span(first + k)
            .map_or(width(picked[k].range), |(b, _)| b.len())
    };
    // Room for every resource and scope with their headers too, so the
    // buffer is not grown (and the request copied again) near the end.
    let resources: usize = (0..index.resources.len())
        .map(|i| {
            let r = &index.resources[i];
            repl.resource(i).map_or(width(r.resource), <[u8]>::len) + width(r.schema_url) + 12
        })
        .sum();
    let scopes: usize = (0..index.scopes.len())
        .map(|i| {
            let sc = &index.scopes[i];
            repl.scope(i).map_or(width(sc.scope), <[u8]>::len) + width(sc.schema_url) + 12
        })
        .sum();
    let planned = (0..picked.len()).map(span_width).sum::<usize>() + resources + scopes + 16;
    let start = out.len();
    out.reserve(planned);
    new.spans.reserve(picked.len());
    let mut i = 0;
    while i < picked.len() {
        let resource = index.scopes[picked[i].scope as usize].resource;
        let mut j = i;
        while j < picked.len() && index.scopes[picked[j].scope as usize].resource == resource {
            j += 1;
        }
        // (scope, from, to, body size) for each run of one scope, with
        // from/to as positions in `picked`.
        let mut groups: Vec<(u32, usize, usize, usize)> = Vec::new();
        let mut k = i;
        while k < j {
            let sc = picked[k].scope;
            let mut l = k;
            let mut body = 0;
            while l < j && picked[l].scope == sc {
                body += span_width(l);
                l += 1;
            }
            let entry = &index.scopes[sc as usize];
            let scope_width = repl
                .scope(sc as usize)
                .map_or(width(entry.scope), <[u8]>::len);
            body += scope_width + width(entry.schema_url);
            groups.push((sc, k, l, body));
            k = l;
        }
        let res = &index.resources[resource as usize];
        let replaced = repl.resource(resource as usize);
        let resource_width = replaced.map_or(width(res.resource), <[u8]>::len);
        let rs_body: usize = resource_width
            + width(res.schema_url)
            + groups
                .iter()
                .map(|g| len_header_size(2, g.3) + g.3)
                .sum::<usize>();
        put_len_header(out, 1, rs_body);
        let new_ri = new.resources.len() as u32;
        let resource_field = match replaced {
            Some(bytes) => copy(out, bytes, (0, bytes.len() as u32)),
            None => copy(out, buf, res.resource),
        };
        for (sc, from, to, body) in groups {
            let entry = &index.scopes[sc as usize];
            put_len_header(out, 2, body);
            let new_si = new.scopes.len() as u32;
            let scope_field = match repl.scope(sc as usize) {
                Some(bytes) => copy(out, bytes, (0, bytes.len() as u32)),
                None => copy(out, buf, entry.scope),
            };
            for (k, span) in picked.iter().enumerate().take(to).skip(from) {
                let (range, base) = match repl.span(first + k) {
                    Some((bytes, e)) => (copy(out, bytes, (0, bytes.len() as u32)), e),
                    None => (copy(out, buf, span.range), span),
                };
                new.spans.push(SpanEntry {
                    scope: new_si,
                    range,
                    ..base.clone()
                });
            }
            let schema_url = copy(out, buf, entry.schema_url);
            new.scopes.push(ScopeEntry {
                resource: new_ri,
                scope: scope_field,
                schema_url,
            });
        }
        let schema_url = copy(out, buf, res.schema_url);
        new.resources.push(ResourceEntry {
            resource: resource_field,
            schema_url,
        });
        i = j;
    }
    debug_assert!(
        out.len() - start <= planned,
        "{} > {planned}",
        out.len() - start
    );
}

/// The request with only the spans `keep` accepts (their bytes copied as
/// they are); `None` when it keeps all of them.
pub fn filter_spans(req: &Request, mut keep: impl FnMut(&SpanEntry) -> bool) -> Option<Request> {
    let index = req.index.as_ref().expect("traces requests carry an index");
    let kept: Vec<SpanEntry> = index.spans.iter().filter(|s| keep(s)).cloned().collect();
    if kept.len() == index.spans.len() {
        return None;
    }
    let subset = SpanIndex {
        resources: index.resources.clone(),
        scopes: index.scopes.clone(),
        spans: kept,
        // Not needed to re-frame; the output's index is built anew.
        messages: 0,
    };
    let n = subset.spans.len();
    Some(traces_request(
        reframe(&req.bytes, &subset, 0..n, &Replacements::default()),
        req,
    ))
}

/// The request with only the spans at `positions` (ascending indexes into
/// its span index), their bytes copied as they are.
pub fn select_spans(req: &Request, positions: &[u32]) -> Request {
    let index = req.index.as_ref().expect("traces requests carry an index");
    if positions.len() == index.spans.len() {
        return req.clone();
    }
    let subset = SpanIndex {
        resources: index.resources.clone(),
        scopes: index.scopes.clone(),
        spans: positions
            .iter()
            .map(|&i| index.spans[i as usize].clone())
            .collect(),
        messages: 0,
    };
    let n = subset.spans.len();
    traces_request(
        reframe(&req.bytes, &subset, 0..n, &Replacements::default()),
        req,
    )
}

/// The spans at `positions` of each request (ascending indexes into its
/// span index) as one request: one buffer and one index instead of one per
/// request, so a router hands each owner a single request per batch. The
/// requests must come from one client (the first one's is kept).
pub fn select_spans_merged(parts: &[(&Request, &[u32])]) -> Request {
    if let [(req, positions)] = parts {
        return select_spans(req, positions);
    }
    let room: usize = parts
        .iter()
        .map(|(r, p)| r.bytes.len() * p.len() / r.items.max(1) + 64)
        .sum();
    let mut out = Vec::with_capacity(room);
    let mut new = SpanIndex::default();
    let mut subset = SpanIndex::default();
    for (req, positions) in parts {
        let index = req.index.as_ref().expect("traces requests carry an index");
        subset.resources.clone_from(&index.resources);
        subset.scopes.clone_from(&index.scopes);
        subset.spans.clear();
        subset
            .spans
            .extend(positions.iter().map(|&i| index.spans[i as usize].clone()));
        let n = subset.spans.len();
        reframe_into(
            &mut out,
            &mut new,
            &req.bytes,
            &subset,
            0..n,
            &Replacements::default(),
        );
    }
    traces_request((out, new), parts[0].0)
}

/// A traces request from re-framed bytes and their index, sent by the
/// client of `from` (the request they were cut from).
pub fn traces_request((bytes, index): (Vec<u8>, SpanIndex), from: &Request) -> Request {
    Request {
        items: index.spans.len(),
        bytes: Bytes::from(bytes),
        index: Some(Arc::new(index)),
        client: from.client.clone(),
    }
}

/// Splits off the first `n` items: returns (head, rest). `n` must be less
/// than `req.items`.
pub fn split_request(signal: Signal, req: &Request, n: usize) -> (Request, Request) {
    debug_assert!(n < req.items);
    match signal {
        Signal::Traces => {
            let index = req.index.as_ref().expect("traces requests carry an index");
            let head = encode_span_range(&req.bytes, index, 0..n);
            let rest = encode_span_range(&req.bytes, index, n..index.spans.len());
            (traces_request(head, req), traces_request(rest, req))
        }
        Signal::Logs => split_logs(req, n),
        Signal::Metrics => split_metrics(req, n),
    }
}

fn split_logs(req: &Request, n: usize) -> (Request, Request) {
    let mut rest = ExportLogsServiceRequest::decode(req.bytes.clone()).expect("validated");
    let mut head = ExportLogsServiceRequest::default();
    let mut left = n;
    while left > 0 {
        let rl = &mut rest.resource_logs[0];
        let mut head_rl = rl.clone();
        head_rl.scope_logs.clear();
        while left > 0 && !rl.scope_logs.is_empty() {
            let sl = &mut rl.scope_logs[0];
            let take = left.min(sl.log_records.len());
            let mut head_sl = sl.clone();
            head_sl.log_records = sl.log_records.drain(..take).collect();
            left -= take;
            head_rl.scope_logs.push(head_sl);
            if sl.log_records.is_empty() {
                rl.scope_logs.remove(0);
            }
        }
        head.resource_logs.push(head_rl);
        if rl.scope_logs.is_empty() {
            rest.resource_logs.remove(0);
        }
    }
    let items = req.items;
    (
        Request {
            bytes: head.encode_to_vec().into(),
            items: n,
            index: None,
            client: req.client.clone(),
        },
        Request {
            bytes: rest.encode_to_vec().into(),
            items: items - n,
            index: None,
            client: req.client.clone(),
        },
    )
}

fn take_points(m: &mut Metric, n: usize) -> Metric {
    let mut head = m.clone();
    macro_rules! take {
        ($src:expr, $dst:expr) => {{
            let k = n.min($src.data_points.len());
            $dst.data_points = $src.data_points.drain(..k).collect();
        }};
    }
    match (&mut m.data, &mut head.data) {
        (Some(Data::Gauge(s)), Some(Data::Gauge(d))) => take!(s, d),
        (Some(Data::Sum(s)), Some(Data::Sum(d))) => take!(s, d),
        (Some(Data::Histogram(s)), Some(Data::Histogram(d))) => take!(s, d),
        (Some(Data::ExponentialHistogram(s)), Some(Data::ExponentialHistogram(d))) => take!(s, d),
        (Some(Data::Summary(s)), Some(Data::Summary(d))) => take!(s, d),
        _ => {}
    }
    head
}

fn split_metrics(req: &Request, n: usize) -> (Request, Request) {
    let mut rest = ExportMetricsServiceRequest::decode(req.bytes.clone()).expect("validated");
    let mut head = ExportMetricsServiceRequest::default();
    let mut left = n;
    while left > 0 {
        let rm = &mut rest.resource_metrics[0];
        let mut head_rm = rm.clone();
        head_rm.scope_metrics.clear();
        while left > 0 && !rm.scope_metrics.is_empty() {
            let sm = &mut rm.scope_metrics[0];
            let mut head_sm = sm.clone();
            head_sm.metrics.clear();
            while left > 0 && !sm.metrics.is_empty() {
                let m = &mut sm.metrics[0];
                let taken = take_points(m, left);
                left -= metric_points(&taken);
                head_sm.metrics.push(taken);
                if metric_points(&sm.metrics[0]) == 0 {
                    sm.metrics.remove(0);
                }
            }
            head_rm.scope_metrics.push(head_sm);
            if sm.metrics.is_empty() {
                rm.scope_metrics.remove(0);
            }
        }
        head.resource_metrics.push(head_rm);
        if rm.scope_metrics.is_empty() {
            rest.resource_metrics.remove(0);
        }
    }
    (
        Request {
            bytes: head.encode_to_vec().into(),
            items: n,
            index: None,
            client: req.client.clone(),
        },
        Request {
            bytes: rest.encode_to_vec().into(),
            items: req.items - n,
            index: None,
            client: req.client.clone(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{log_count, point_count, span_count, Batch};
    use crate::generate::{Generator, GeneratorOptions};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    fn gen() -> Generator {
        Generator::new(GeneratorOptions::default())
    }

    #[test]
    fn spans_picked_from_several_requests_make_one_request_as_if_concatenated() {
        let mut g = gen();
        let reqs: Vec<Request> = [30, 17, 44]
            .into_iter()
            .map(|n| Request::parse(Signal::Traces, g.spans(n).encode_to_vec().into()).unwrap())
            .collect();
        let picks: Vec<Vec<u32>> = reqs
            .iter()
            .map(|r| (0..r.items as u32).filter(|i| i % 3 != 1).collect())
            .collect();
        let parts: Vec<(&Request, &[u32])> = reqs
            .iter()
            .zip(&picks)
            .map(|(r, p)| (r, p.as_slice()))
            .collect();
        let merged = select_spans_merged(&parts);
        let mut scanned = SpanIndex::default();
        crate::scan::scan_traces(&merged.bytes, &mut scanned).unwrap();
        assert_eq!(merged.index.as_deref(), Some(&scanned));
        let one_by_one = Batch {
            signal: Signal::Traces,
            requests: parts.iter().map(|(r, p)| select_spans(r, p)).collect(),
        };
        assert_eq!(merged.items, one_by_one.items());
        assert_eq!(merged.bytes, one_by_one.to_bytes());
    }

    #[test]
    fn traces_split_keeps_every_span_with_its_resource_and_scope() {
        let req = gen().spans(103);
        let parsed = Request::parse(Signal::Traces, req.encode_to_vec().into()).unwrap();
        for n in [1, 2, 40, 102] {
            let (head, rest) = split_request(Signal::Traces, &parsed, n);
            assert_eq!((head.items, rest.items), (n, 103 - n));
            // The index built while writing is exactly what a scan finds.
            for part in [&head, &rest] {
                let mut scanned = SpanIndex::default();
                crate::scan::scan_traces(&part.bytes, &mut scanned).unwrap();
                assert_eq!(part.index.as_deref(), Some(&scanned));
            }
            // Head and rest concatenated decode to the original spans, each
            // under the same resource and scope as before.
            let both = Batch {
                signal: Signal::Traces,
                requests: vec![head, rest],
            };
            let back = both.decode_traces().unwrap();
            assert_eq!(span_count(&back), 103);
            let flat = |r: &ExportTraceServiceRequest| {
                let mut v: Vec<_> = r
                    .resource_spans
                    .iter()
                    .flat_map(|rs| {
                        rs.scope_spans.iter().flat_map(move |ss| {
                            ss.spans.iter().map(move |s| {
                                (
                                    rs.resource.clone(),
                                    rs.schema_url.clone(),
                                    ss.scope.clone(),
                                    s.clone(),
                                )
                            })
                        })
                    })
                    .collect();
                v.sort_by(|a, b| a.3.span_id.cmp(&b.3.span_id));
                v
            };
            assert_eq!(flat(&back), flat(&req));
        }
    }

    #[test]
    fn logs_and_metrics_split_by_item() {
        let logs = gen().logs(10);
        let parsed = Request::parse(Signal::Logs, logs.encode_to_vec().into()).unwrap();
        let (h, r) = split_request(Signal::Logs, &parsed, 3);
        assert_eq!(
            log_count(&ExportLogsServiceRequest::decode(h.bytes).unwrap()),
            3
        );
        assert_eq!(
            log_count(&ExportLogsServiceRequest::decode(r.bytes).unwrap()),
            7
        );

        let metrics = gen().metrics(10);
        let parsed = Request::parse(Signal::Metrics, metrics.encode_to_vec().into()).unwrap();
        for n in 1..10 {
            let (h, r) = split_request(Signal::Metrics, &parsed, n);
            assert_eq!(
                point_count(&ExportMetricsServiceRequest::decode(h.bytes).unwrap()),
                n
            );
            assert_eq!(
                point_count(&ExportMetricsServiceRequest::decode(r.bytes).unwrap()),
                10 - n
            );
        }
    }
}
