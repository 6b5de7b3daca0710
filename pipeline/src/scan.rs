//! One pass over an encoded `ExportTraceServiceRequest`: validates the wire
//! structure (tags, lengths, nesting, UTF-8, id sizes) as strictly as a prost
//! decode would, and records where every resource, scope and span lies.
//!
//! Nothing is allocated per field; the only allocations are the index vectors,
//! which callers may reuse.

use std::cell::Cell;

use crate::wire::{Field, Reader, WireError, FIXED32, FIXED64, LEN, VARINT};

/// Byte range `[start, end)` inside a request.
pub type Span32 = (u32, u32);

/// A `ResourceSpans` in the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceEntry {
    /// The whole `resource` field (tag included), or empty.
    pub resource: Span32,
    /// The whole `schema_url` field (tag included), or empty.
    pub schema_url: Span32,
}

/// A `ScopeSpans` in the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeEntry {
    /// Index into [`SpanIndex::resources`].
    pub resource: u32,
    /// The whole `scope` field (tag included), or empty.
    pub scope: Span32,
    /// The whole `schema_url` field (tag included), or empty.
    pub schema_url: Span32,
}

/// A `Span` in the request: the fields stages decide on, and where it lies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanEntry {
    /// Index into [`SpanIndex::scopes`].
    pub scope: u32,
    /// Trace id (zero if absent).
    pub trace_id: [u8; 16],
    /// Span id (zero if absent).
    pub span_id: [u8; 8],
    /// Parent span id (zero for a root span).
    pub parent_span_id: [u8; 8],
    /// Start time, Unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// End time, Unix nanoseconds.
    pub end_time_unix_nano: u64,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: u8,
    /// The whole span field inside its `ScopeSpans` (tag included).
    pub range: Span32,
}

/// Where everything in one traces request lies.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    /// One entry per `ResourceSpans`.
    pub resources: Vec<ResourceEntry>,
    /// One entry per `ScopeSpans`, in request order.
    pub scopes: Vec<ScopeEntry>,
    /// One entry per span, in request order.
    pub spans: Vec<SpanEntry>,
    /// Messages a prost decode of the request would build (spans,
    /// attributes and their values, events, …): what decoding costs.
    /// Counted by the intake scan; 0 in indexes built by splitting.
    pub messages: u64,
}

/// Two indexes are equal when everything lies in the same places;
/// `messages` is a cost the intake scan counts, which an index built by
/// re-framing does not carry.
impl PartialEq for SpanIndex {
    fn eq(&self, other: &SpanIndex) -> bool {
        self.resources == other.resources
            && self.scopes == other.scopes
            && self.spans == other.spans
    }
}

impl Eq for SpanIndex {}

impl SpanIndex {
    /// Empties the index, keeping its capacity.
    pub fn clear(&mut self) {
        self.resources.clear();
        self.scopes.clear();
        self.spans.clear();
        self.messages = 0;
    }

    /// What a request of `wire` bytes with this index costs in memory once
    /// decoded: its bytes, this index, and its messages at
    /// [`DECODED_MESSAGE_BYTES`] each. Receivers charge requests this much.
    pub fn decoded_bytes(&self, wire: usize) -> u64 {
        wire as u64
            + (self.spans.len() * std::mem::size_of::<SpanEntry>()) as u64
            + (self.scopes.len() * std::mem::size_of::<ScopeEntry>()) as u64
            + (self.resources.len() * std::mem::size_of::<ResourceEntry>()) as u64
            + self.messages * DECODED_MESSAGE_BYTES
    }
}

/// What one decoded OTLP message costs on the heap, about: prost's
/// `KeyValue` is 64 bytes, `AnyValue` 32, a `Span` 240; strings are counted
/// in the wire bytes.
pub const DECODED_MESSAGE_BYTES: u64 = 64;

/// The `what` of a scan stopped by its limit on decoded size.
pub const OVER_LIMIT: &str = "decoded size over the request limit";

/// Deepest message nesting accepted, counted as prost counts it: the request
/// is depth 0 and every nested message, of any type, is one level deeper.
/// prost refuses a message at depth 101, so every later stage that decodes
/// (exporters that convert, processors that rewrite) could refuse what the
/// scanner took unless both count the same way.
pub const MAX_DEPTH: u32 = 100;

/// Message depths of the fixed part of a traces request.
const RESOURCE_KV_DEPTH: u32 = 3;
const SCOPE_KV_DEPTH: u32 = 4;
const SPAN_KV_DEPTH: u32 = 4;
const EVENT_KV_DEPTH: u32 = 5;

#[inline]
fn r32(range: (usize, usize)) -> Span32 {
    (range.0 as u32, range.1 as u32)
}

/// Validates and indexes an encoded `ExportTraceServiceRequest`.
pub fn scan_traces(buf: &[u8], index: &mut SpanIndex) -> Result<(), WireError> {
    scan_traces_within(buf, index, u64::MAX)
}

/// As [`scan_traces`], stopping with [`OVER_LIMIT`] as soon as the request's
/// [`SpanIndex::decoded_bytes`] passes `max_decoded`, so a request of
/// millions of tiny spans cannot grow an index (or a later decode) past it.
pub fn scan_traces_within(
    buf: &[u8],
    index: &mut SpanIndex,
    max_decoded: u64,
) -> Result<(), WireError> {
    index.clear();
    if buf.len() > u32::MAX as usize {
        return Err(WireError {
            offset: 0,
            what: "request larger than 4 GiB",
            message: "ExportTraceServiceRequest",
        });
    }
    if index.spans.capacity() > 0 {
        return request(buf, index, max_decoded);
    }
    // How many spans a request holds is known only once it is read: pushed
    // into a new Vec, 512 spans grew it eight times, each a malloc, a copy
    // and a free. This thread's scratch keeps its room, and the index gets
    // an exact copy.
    index.spans = SCRATCH.take();
    let read = request(buf, index, max_decoded);
    let mut scratch = std::mem::take(&mut index.spans);
    index.spans = scratch.as_slice().to_vec();
    if scratch.capacity() <= SCRATCH_MAX {
        scratch.clear();
        SCRATCH.set(scratch);
    }
    read
}

thread_local! {
    /// Span entries of this thread's last scan, emptied.
    static SCRATCH: Cell<Vec<SpanEntry>> = const { Cell::new(Vec::new()) };
}

/// A larger scratch is not kept: one huge request must not pin its size
/// for the thread's life (64 bytes an entry: 4 MiB).
const SCRATCH_MAX: usize = 1 << 16;

fn request(buf: &[u8], index: &mut SpanIndex, max_decoded: u64) -> Result<(), WireError> {
    let mut r = Reader::new(buf, 0, buf.len(), "ExportTraceServiceRequest");
    while let Some(f) = r.next_field()? {
        if f.number == 1 {
            r.expect(&f, LEN)?;
            resource_spans(buf, f, index, max_decoded)?;
        }
    }
    Ok(())
}

fn resource_spans(
    buf: &[u8],
    f: Field,
    index: &mut SpanIndex,
    max_decoded: u64,
) -> Result<(), WireError> {
    index.messages += 1;
    let ri = index.resources.len() as u32;
    index.resources.push(ResourceEntry::default());
    let mut r = Reader::new(buf, f.body.0, f.body.1, "ResourceSpans");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => {
                r.expect(&f, LEN)?;
                resource(buf, &f, &mut index.messages)?;
                index.resources[ri as usize].resource = r32(f.whole());
            }
            2 => {
                r.expect(&f, LEN)?;
                scope_spans(buf, f, ri, index, max_decoded)?;
            }
            3 => {
                r.expect_str(&f)?;
                index.resources[ri as usize].schema_url = r32(f.whole());
            }
            _ => {}
        }
    }
    Ok(())
}

fn resource(buf: &[u8], f: &Field, n: &mut u64) -> Result<(), WireError> {
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "Resource");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => key_value(buf, &r, &f, RESOURCE_KV_DEPTH, n)?,
            2 => r.expect(&f, VARINT)?,
            3 => entity_ref(buf, &r, &f, n)?,
            _ => {}
        }
    }
    Ok(())
}

/// `Resource.entity_refs`: four string fields (two repeated).
fn entity_ref(buf: &[u8], parent: &Reader, f: &Field, n: &mut u64) -> Result<(), WireError> {
    parent.expect(f, LEN)?;
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "EntityRef");
    while let Some(f) = r.next_field()? {
        if (1..=4).contains(&f.number) {
            r.expect_str(&f)?;
        }
    }
    Ok(())
}

fn scope_spans(
    buf: &[u8],
    f: Field,
    ri: u32,
    index: &mut SpanIndex,
    max_decoded: u64,
) -> Result<(), WireError> {
    index.messages += 1;
    let si = index.scopes.len() as u32;
    index.scopes.push(ScopeEntry {
        resource: ri,
        ..ScopeEntry::default()
    });
    let mut r = Reader::new(buf, f.body.0, f.body.1, "ScopeSpans");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => {
                r.expect(&f, LEN)?;
                scope(buf, &f, &mut index.messages)?;
                index.scopes[si as usize].scope = r32(f.whole());
            }
            2 => {
                r.expect(&f, LEN)?;
                let mut entry = span(buf, &f, &mut index.messages)?;
                entry.scope = si;
                index.spans.push(entry);
                if index.decoded_bytes(buf.len()) > max_decoded {
                    return Err(WireError {
                        offset: f.start,
                        what: OVER_LIMIT,
                        message: "ExportTraceServiceRequest",
                    });
                }
            }
            3 => {
                r.expect_str(&f)?;
                index.scopes[si as usize].schema_url = r32(f.whole());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validates and indexes one span given as a whole `spans` field (tag,
/// length, message); ranges in the entry are relative to `field`.
pub fn span_entry(field: &[u8]) -> Result<SpanEntry, WireError> {
    let mut r = Reader::new(field, 0, field.len(), "ScopeSpans");
    match r.next_field()? {
        Some(f) if f.number == 2 && f.wire == LEN && f.body.1 == field.len() => {
            span(field, &f, &mut 0)
        }
        _ => Err(WireError {
            offset: 0,
            what: "not a single span field",
            message: "ScopeSpans",
        }),
    }
}

fn scope(buf: &[u8], f: &Field, n: &mut u64) -> Result<(), WireError> {
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "InstrumentationScope");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 | 2 => r.expect_str(&f)?,
            3 => key_value(buf, &r, &f, SCOPE_KV_DEPTH, n)?,
            4 => r.expect(&f, VARINT)?,
            _ => {}
        }
    }
    Ok(())
}

/// Reads an id field of `N` bytes (or empty, read as zeros) into `out`.
#[inline(always)]
fn read_id<const N: usize>(r: &mut Reader, buf: &[u8], out: &mut [u8; N]) -> Result<(), WireError> {
    let body = r.len_body()?;
    r.check_id(r.field_start(), body, N)?;
    match buf.get(body.0..body.1) {
        Some(id) if id.len() == N => out.copy_from_slice(id),
        _ => *out = [0; N],
    }
    Ok(())
}

fn span(buf: &[u8], f: &Field, n: &mut u64) -> Result<SpanEntry, WireError> {
    *n += 1;
    let mut e = SpanEntry {
        range: r32(f.whole()),
        ..SpanEntry::default()
    };
    let mut r = Reader::new(buf, f.body.0, f.body.1, "Span");
    // Keys are (number << 3 | wire type): one arm per known field with its
    // own wire type, so each field costs one dispatch. A known number with
    // another wire type falls to the last arm and is refused there.
    while let Some(key) = r.next_key()? {
        match key {
            0x0a => read_id(&mut r, buf, &mut e.trace_id)?,
            0x12 => read_id(&mut r, buf, &mut e.span_id)?,
            0x22 => read_id(&mut r, buf, &mut e.parent_span_id)?,
            // trace_state, name
            0x1a | 0x2a => {
                let body = r.len_body()?;
                r.check_str(body)?;
            }
            // kind, dropped attribute / event / link counts
            0x30 | 0x50 | 0x60 | 0x70 => {
                r.varint_value()?;
            }
            0x39 => e.start_time_unix_nano = r.fixed64()?,
            0x41 => e.end_time_unix_nano = r.fixed64()?,
            0x4a => {
                let f = r.finish(key)?;
                key_value(buf, &r, &f, SPAN_KV_DEPTH, n)?;
            }
            0x5a => {
                let f = r.finish(key)?;
                event(buf, &r, &f, n)?;
            }
            0x6a => {
                let f = r.finish(key)?;
                link(buf, &r, &f, n)?;
            }
            0x7a => {
                let f = r.finish(key)?;
                *n += 1;
                e.status_code = status(buf, &f)?;
            }
            // flags (field 16, fixed32)
            0x85 => {
                r.fixed32()?;
            }
            _ => {
                let f = r.finish(key)?;
                if f.number <= 16 {
                    return Err(r.wrong_wire(&f));
                }
            }
        }
    }
    Ok(e)
}

fn event(buf: &[u8], parent: &Reader, f: &Field, n: &mut u64) -> Result<(), WireError> {
    parent.expect(f, LEN)?;
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "Span.Event");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => r.expect(&f, FIXED64)?,
            2 => r.expect_str(&f)?,
            3 => key_value(buf, &r, &f, EVENT_KV_DEPTH, n)?,
            4 => r.expect(&f, VARINT)?,
            _ => {}
        }
    }
    Ok(())
}

fn link(buf: &[u8], parent: &Reader, f: &Field, n: &mut u64) -> Result<(), WireError> {
    parent.expect(f, LEN)?;
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "Span.Link");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => r.expect_id(&f, 16)?,
            2 => r.expect_id(&f, 8)?,
            3 => r.expect_str(&f)?,
            4 => key_value(buf, &r, &f, EVENT_KV_DEPTH, n)?,
            5 => r.expect(&f, VARINT)?,
            6 => r.expect(&f, FIXED32)?,
            _ => {}
        }
    }
    Ok(())
}

fn status(buf: &[u8], f: &Field) -> Result<u8, WireError> {
    let mut code = 0u8;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "Status");
    while let Some(f) = r.next_field()? {
        match f.number {
            2 => r.expect_str(&f)?,
            3 => {
                r.expect(&f, VARINT)?;
                code = f.value.min(u64::from(u8::MAX)) as u8;
            }
            _ => {}
        }
    }
    Ok(code)
}

/// Whether `v` is a varint of at most 9 bytes filling `v` exactly (9 bytes
/// cannot overflow 64 bits, so no further check is needed).
#[inline(always)]
fn whole_short_varint(v: &[u8]) -> bool {
    match v.split_last() {
        Some((last, head)) => *last < 0x80 && head.len() < 9 && head.iter().all(|b| *b >= 0x80),
        None => false,
    }
}

/// The shape nearly every attribute has: `key` (ASCII) then an `AnyValue`
/// holding one ASCII string, int, bool or double, all with one-byte lengths.
/// Accepts only what the general path accepts; anything else goes there.
#[inline(always)]
fn common_key_value(b: &[u8]) -> bool {
    let [0x0a, klen, rest @ ..] = b else {
        return false;
    };
    let klen = *klen as usize;
    if klen >= 0x80 || rest.len() < klen + 2 {
        return false;
    }
    let (key, rest) = rest.split_at(klen);
    let [0x12, vlen, v @ ..] = rest else {
        return false;
    };
    if *vlen as usize != v.len() || !crate::wire::ascii(key) {
        return false;
    }
    match v {
        [] => true,
        [0x0a, slen, text @ ..] => (*slen as usize) == text.len() && crate::wire::ascii(text),
        [0x10 | 0x18, n @ ..] => whole_short_varint(n),
        [0x21, d @ ..] => d.len() == 8,
        _ => false,
    }
}

/// Refuses a message that would sit deeper than prost decodes.
#[inline]
fn check_depth(f: &Field, depth: u32, message: &'static str) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError {
            offset: f.start,
            what: "messages nested more than 100 deep",
            message,
        });
    }
    Ok(())
}

/// Validates a `KeyValue` field at message depth `depth`; the common shape
/// (whose value sits one level deeper) is checked inline.
#[inline(always)]
fn key_value(
    buf: &[u8],
    parent: &Reader,
    f: &Field,
    depth: u32,
    n: &mut u64,
) -> Result<(), WireError> {
    parent.expect(f, LEN)?;
    if depth < MAX_DEPTH && common_key_value(&buf[f.body.0..f.body.1]) {
        // The KeyValue and its AnyValue.
        *n += 2;
        return Ok(());
    }
    key_value_general(buf, f, depth, n)
}

/// Validates any `KeyValue`, field by field.
#[inline(never)]
fn key_value_general(buf: &[u8], f: &Field, depth: u32, n: &mut u64) -> Result<(), WireError> {
    check_depth(f, depth, "KeyValue")?;
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "KeyValue");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => r.expect_str(&f)?,
            2 => any_value(buf, &r, &f, depth + 1, n)?,
            // key_strindex (profiles' string table; an int32 elsewhere).
            3 => r.expect(&f, VARINT)?,
            _ => {}
        }
    }
    Ok(())
}

/// Validates an `AnyValue` at message depth `depth`.
fn any_value(
    buf: &[u8],
    parent: &Reader,
    f: &Field,
    depth: u32,
    n: &mut u64,
) -> Result<(), WireError> {
    parent.expect(f, LEN)?;
    check_depth(f, depth, "AnyValue")?;
    *n += 1;
    let mut r = Reader::new(buf, f.body.0, f.body.1, "AnyValue");
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => r.expect_str(&f)?,
            2 | 3 => r.expect(&f, VARINT)?,
            4 => r.expect(&f, FIXED64)?,
            5 => {
                r.expect(&f, LEN)?;
                check_depth(&f, depth + 1, "ArrayValue")?;
                *n += 1;
                let mut a = Reader::new(buf, f.body.0, f.body.1, "ArrayValue");
                while let Some(v) = a.next_field()? {
                    if v.number == 1 {
                        any_value(buf, &a, &v, depth + 2, n)?;
                    }
                }
            }
            6 => {
                r.expect(&f, LEN)?;
                check_depth(&f, depth + 1, "KeyValueList")?;
                *n += 1;
                let mut a = Reader::new(buf, f.body.0, f.body.1, "KeyValueList");
                while let Some(v) = a.next_field()? {
                    if v.number == 1 {
                        key_value(buf, &a, &v, depth + 2, n)?;
                    }
                }
            }
            7 => r.expect(&f, LEN)?,
            // string_value_strindex.
            8 => r.expect(&f, VARINT)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Generator, GeneratorOptions};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    fn sample() -> ExportTraceServiceRequest {
        Generator::new(GeneratorOptions {
            error_rate: 0.2,
            ..GeneratorOptions::default()
        })
        .traces(40)
    }

    #[test]
    fn index_matches_prost_decode() {
        let req = sample();
        let bytes = req.encode_to_vec();
        let mut idx = SpanIndex::default();
        scan_traces(&bytes, &mut idx).unwrap();
        let spans: Vec<_> = req
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
            .collect();
        assert_eq!(idx.spans.len(), spans.len());
        assert_eq!(idx.resources.len(), req.resource_spans.len());
        for (e, s) in idx.spans.iter().zip(spans) {
            assert_eq!(e.trace_id.as_slice(), s.trace_id.as_slice());
            assert_eq!(e.span_id.as_slice(), s.span_id.as_slice());
            assert_eq!(e.start_time_unix_nano, s.start_time_unix_nano);
            assert_eq!(e.end_time_unix_nano, s.end_time_unix_nano);
            let code = s.status.as_ref().map_or(0, |st| st.code) as u8;
            assert_eq!(e.status_code, code);
            if s.parent_span_id.is_empty() {
                assert_eq!(e.parent_span_id, [0; 8]);
            } else {
                assert_eq!(e.parent_span_id.as_slice(), s.parent_span_id.as_slice());
            }
            // The recorded range is exactly the span's field: decoding it
            // as a one-span ScopeSpans gives the span back.
            let field = &bytes[e.range.0 as usize..e.range.1 as usize];
            let ss = opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(field).unwrap();
            assert_eq!(&ss.spans[0], s);
        }
        assert!(idx.spans.iter().any(|s| s.status_code == 2));
    }

    #[test]
    fn corrupted_requests_get_the_same_verdict_as_prost() {
        use rand::{Rng, SeedableRng};
        let original = sample().encode_to_vec();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
        let mut idx = SpanIndex::default();
        let (mut refused, mut accepted) = (0, 0);
        for _ in 0..6_000 {
            let mut b = original.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..b.len());
                b[at] = match rng.random_range(0..4) {
                    0 => rng.random(),
                    1 => b[at] ^ 0x80,
                    2 => 0xff,
                    _ => b[at].wrapping_add(1),
                };
            }
            let ours = scan_traces(&b, &mut idx).is_ok();
            let theirs = ExportTraceServiceRequest::decode(b.as_slice()).is_ok();
            // prost does not check id lengths; we do (as otelcol does), so
            // we may refuse what prost takes, never the other way round.
            if ours != theirs {
                assert!(theirs && !ours, "scanner accepted what prost refuses");
                let e = scan_traces(&b, &mut idx).unwrap_err();
                assert!(
                    e.what.ends_with("id must be 16 bytes")
                        || e.what.ends_with("id must be 8 bytes"),
                    "{e}"
                );
            }
            if ours {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(
            refused > 300 && accepted > 300,
            "{refused} refused, {accepted} accepted"
        );
    }

    #[test]
    fn a_new_index_holds_exactly_its_spans_whatever_this_thread_scanned_before() {
        let big = Generator::new(GeneratorOptions::default())
            .spans(600)
            .encode_to_vec();
        let small = sample().encode_to_vec();
        // What a scan into an index that already has room finds.
        let mut reused = SpanIndex::default();
        reused.spans.reserve(1);
        scan_traces(&small, &mut reused).unwrap();
        for bytes in [&big, &small, &small] {
            let mut fresh = SpanIndex::default();
            scan_traces(bytes, &mut fresh).unwrap();
            assert_eq!(fresh.spans.capacity(), fresh.spans.len());
            if bytes == &small {
                assert_eq!(fresh, reused);
            } else {
                assert_eq!(fresh.spans.len(), 600);
            }
        }
        // A refused request leaves the next scan's index its own.
        let mut bad = SpanIndex::default();
        assert!(scan_traces(&big[..big.len() - 1], &mut bad).is_err());
        let mut fresh = SpanIndex::default();
        scan_traces(&small, &mut fresh).unwrap();
        assert_eq!(fresh, reused);
    }

    #[test]
    fn empty_request_is_valid_and_empty() {
        let mut idx = SpanIndex::default();
        scan_traces(&[], &mut idx).unwrap();
        assert!(idx.spans.is_empty());
    }

    #[test]
    fn every_truncation_is_refused_like_prost() {
        let bytes = sample().encode_to_vec();
        let mut idx = SpanIndex::default();
        // Every prefix that prost refuses, the scanner refuses too, and the
        // other way round: the two validators agree on where input breaks.
        for cut in (0..bytes.len()).step_by(7) {
            let prefix = &bytes[..cut];
            let ours = scan_traces(prefix, &mut idx).is_ok();
            let theirs = ExportTraceServiceRequest::decode(prefix).is_ok();
            assert_eq!(ours, theirs, "disagree at cut {cut}");
        }
    }

    #[test]
    fn bad_utf8_bad_ids_and_wrong_wire_types_are_refused() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let mk = |span: Span| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        };
        let mut idx = SpanIndex::default();
        let short_id = mk(Span {
            trace_id: vec![1; 5],
            ..Default::default()
        });
        let err = scan_traces(&short_id, &mut idx).unwrap_err();
        assert_eq!(err.what, "trace id must be 16 bytes");

        let mut bad_name = mk(Span {
            name: "abc".into(),
            ..Default::default()
        });
        let pos = bad_name.windows(3).position(|w| w == b"abc").unwrap();
        bad_name[pos] = 0xff;
        let err = scan_traces(&bad_name, &mut idx).unwrap_err();
        assert_eq!(err.what, "string is not valid UTF-8");
        assert!(ExportTraceServiceRequest::decode(bad_name.as_slice()).is_err());

        // start_time_unix_nano (field 7) sent as a varint.
        let mut wrong = mk(Span::default());
        let tail = [0x38, 0x01];
        // Grow each enclosing length by the two appended bytes.
        wrong.extend_from_slice(&tail);
        for i in [1usize, 3, 5] {
            wrong[i] += 2;
        }
        let err = scan_traces(&wrong, &mut idx).unwrap_err();
        assert_eq!(err.what, "wrong wire type for known field");
        assert!(ExportTraceServiceRequest::decode(wrong.as_slice()).is_err());
    }

    /// A span whose one attribute is `levels` arrays (or key-value lists)
    /// nested in each other.
    fn nested(levels: usize, lists: bool) -> Vec<u8> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use opentelemetry_proto::tonic::common::v1::{
            AnyValue, ArrayValue, KeyValue, KeyValueList,
        };
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let mut v = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        for _ in 0..levels {
            v = AnyValue {
                value: Some(if lists {
                    Value::KvlistValue(KeyValueList {
                        values: vec![KeyValue {
                            key: "k".into(),
                            value: Some(v),
                            ..Default::default()
                        }],
                    })
                } else {
                    Value::ArrayValue(ArrayValue { values: vec![v] })
                }),
            };
        }
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        attributes: vec![KeyValue {
                            key: "deep".into(),
                            value: Some(v),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn nesting_is_refused_at_exactly_the_depth_prost_refuses() {
        // The attack that found this: arrays ~60 deep passed the scanner
        // (which counted only AnyValue levels) and then failed every
        // exporter's decode, taking the whole batch with them.
        let mut idx = SpanIndex::default();
        for lists in [false, true] {
            let mut refused_from = None;
            for levels in 0..120 {
                let b = nested(levels, lists);
                let ours = scan_traces(&b, &mut idx);
                let theirs = ExportTraceServiceRequest::decode(b.as_slice()).is_ok();
                assert_eq!(ours.is_ok(), theirs, "levels {levels}, lists {lists}");
                if let Err(e) = ours {
                    assert_eq!(e.what, "messages nested more than 100 deep");
                    refused_from.get_or_insert(levels);
                }
            }
            // Arrays add two messages a level (ArrayValue, AnyValue), lists three.
            assert_eq!(
                refused_from,
                Some(if lists { 32 } else { 48 }),
                "lists {lists}"
            );
        }
    }

    #[test]
    fn fields_added_to_the_protos_get_the_same_verdict_as_prost() {
        // Found by the `scan` fuzz target: Resource field 3 (entity_refs)
        // sent as a varint was skipped as unknown by the scanner and refused
        // by prost, so a later decode would have failed on it.
        let mut idx = SpanIndex::default();
        let crash = b"\x0a\x00\x0a\x0a\x7a\x00\x7a\x00\x0a\x04\x0a\x00\x18\x18\x7a\x00\x7a\x00";
        assert!(ExportTraceServiceRequest::decode(&crash[..]).is_err());
        assert!(scan_traces(crash, &mut idx).is_err());
        // A well-formed entity_ref passes both; KeyValue.key_strindex and
        // AnyValue.string_value_strindex must be varints for both.
        let rs = |resource: &[u8]| {
            let mut f = vec![0x0a, resource.len() as u8];
            f.extend_from_slice(resource);
            let mut req = vec![0x0a, f.len() as u8];
            req.extend_from_slice(&f);
            req
        };
        let cases: [(&[u8], bool); 6] = [
            (b"\x1a\x05\x0a\x01a\x12\x00", true),
            (b"\x1a\x02\x08\x01", false),
            (b"\x0a\x05\x0a\x01k\x18\x07", true),
            (b"\x0a\x06\x0a\x01k\x1a\x01x", false),
            (b"\x0a\x07\x0a\x01k\x12\x02\x40\x01", true),
            (b"\x0a\x08\x0a\x01k\x12\x03\x42\x01x", false),
        ];
        for (resource, ok) in cases {
            let b = rs(resource);
            assert_eq!(
                ExportTraceServiceRequest::decode(b.as_slice()).is_ok(),
                ok,
                "prost {resource:x?}"
            );
            assert_eq!(scan_traces(&b, &mut idx).is_ok(), ok, "scan {resource:x?}");
        }
    }

    #[test]
    fn every_span_field_in_every_wire_type_gets_the_same_verdict_as_prost() {
        // The span loop dispatches on the whole key; a key written for the
        // wrong number or wire type would accept what prost refuses, or
        // refuse what it takes.
        use crate::wire::put_varint;
        let mut idx = SpanIndex::default();
        let mut seen = [0usize; 2];
        for number in 1u64..=18 {
            for wire in [VARINT, FIXED64, LEN, FIXED32] {
                let mut span = Vec::new();
                put_varint(&mut span, (number << 3) | u64::from(wire));
                match wire {
                    VARINT => span.push(1),
                    FIXED64 => span.extend_from_slice(&7u64.to_le_bytes()),
                    FIXED32 => span.extend_from_slice(&7u32.to_le_bytes()),
                    // An id of the size its field takes, else a payload that
                    // is valid UTF-8 and an empty message at once.
                    _ => match number {
                        1 => span.extend_from_slice(&[16; 17]),
                        2 | 4 => span.extend_from_slice(&[8; 9]),
                        _ => span.push(0),
                    },
                }
                let mut req = vec![0x0a, span.len() as u8 + 4, 0x12, span.len() as u8 + 2];
                req.extend_from_slice(&[0x12, span.len() as u8]);
                req.extend_from_slice(&span);
                let theirs = ExportTraceServiceRequest::decode(req.as_slice());
                let ours = scan_traces(&req, &mut idx);
                assert_eq!(
                    ours.is_ok(),
                    theirs.is_ok(),
                    "field {number} wire {wire}: {ours:?}"
                );
                seen[usize::from(ours.is_ok())] += 1;
                if let Ok(req) = theirs {
                    let s = &req.resource_spans[0].scope_spans[0].spans[0];
                    let e = &idx.spans[0];
                    assert_eq!(e.start_time_unix_nano, s.start_time_unix_nano);
                    assert_eq!(e.end_time_unix_nano, s.end_time_unix_nano);
                    assert_eq!(e.trace_id.to_vec(), s.trace_id.clone().max(vec![0; 16]));
                    assert_eq!(e.span_id.to_vec(), s.span_id.clone().max(vec![0; 8]));
                    let parent = s.parent_span_id.clone().max(vec![0; 8]);
                    assert_eq!(e.parent_span_id.to_vec(), parent);
                }
            }
        }
        // 16 known fields take one wire type each; 2 unknown take all four.
        assert_eq!(seen, [16 * 3, 16 + 2 * 4], "[refused, accepted]");
    }
}
