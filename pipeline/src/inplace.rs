//! Reading and adding span attributes in the encoded bytes, for processors
//! that look at a few attributes and add one: no decode, no re-encode.

use crate::wire::{put_len_header, put_varint, varint_len, Reader, FIXED32, FIXED64, LEN, VARINT};

/// An attribute value read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    /// `string_value`.
    Str(&'a str),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bool_value`.
    Bool(bool),
    /// Arrays, maps, bytes, or no value.
    Other,
}

impl AttrValue<'_> {
    /// The value as a number, if it is one (or a string holding one).
    pub fn number(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Double(d) => Some(*d),
            AttrValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn any_value(buf: &[u8], start: usize, end: usize) -> AttrValue<'_> {
    let mut r = Reader::new(buf, start, end, "AnyValue");
    let mut v = AttrValue::Other;
    // The last value field wins, as in a decode.
    while let Ok(Some(f)) = r.next_field() {
        v = match (f.number, f.wire) {
            (1, LEN) => std::str::from_utf8(&buf[f.body.0..f.body.1])
                .map_or(AttrValue::Other, AttrValue::Str),
            (2, VARINT) => AttrValue::Bool(f.value != 0),
            (3, VARINT) => AttrValue::Int(f.value as i64),
            (4, FIXED64) => AttrValue::Double(f64::from_bits(f.value)),
            _ => AttrValue::Other,
        };
    }
    v
}

/// An attribute value not read yet: `get` decodes it, `string_bytes` gives
/// a string's bytes without a UTF-8 pass (the scan already validated them).
#[derive(Clone, Copy)]
pub struct RawValue<'a> {
    buf: &'a [u8],
    range: (usize, usize),
}

impl<'a> RawValue<'a> {
    /// The decoded value.
    pub fn get(&self) -> AttrValue<'a> {
        if self.range.0 == self.range.1 {
            return AttrValue::Other;
        }
        any_value(self.buf, self.range.0, self.range.1)
    }

    /// The encoded `AnyValue` message (empty when there is none), for
    /// the rare kinds a caller decodes in full.
    pub fn encoded(&self) -> &'a [u8] {
        &self.buf[self.range.0..self.range.1]
    }

    /// Whether the attribute has no value at all.
    pub fn is_empty(&self) -> bool {
        self.range.0 == self.range.1
    }

    /// Walks every string inside the value (the value itself, array
    /// members, map values, at any depth) with `string`, and every map key
    /// with `key`, without decoding; stops at the first call that returns
    /// true and returns true then.
    #[inline]
    pub fn any_nested(
        &self,
        string: &mut impl FnMut(&'a [u8]) -> bool,
        key: &mut impl FnMut(&'a [u8]) -> bool,
    ) -> bool {
        strings_in(self.buf, self.range, string, key)
    }

    /// `Some(bytes)` for a string value, `None` for any other kind.
    pub fn string_bytes(&self) -> Option<&'a [u8]> {
        let mut r = Reader::new(self.buf, self.range.0, self.range.1, "AnyValue");
        let mut out = None;
        while let Ok(Some(f)) = r.next_field() {
            out = (f.number == 1 && f.wire == LEN).then(|| &self.buf[f.body.0..f.body.1]);
        }
        out
    }
}

/// [`RawValue::any_nested`] of the value at `range`. The common layouts
/// (one short string, one number) are read here, inlined into the caller's
/// walk; the rest (arrays, maps) in the recursive reader.
#[inline(always)]
fn strings_in<'a>(
    buf: &'a [u8],
    range: (usize, usize),
    string: &mut impl FnMut(&'a [u8]) -> bool,
    key: &mut impl FnMut(&'a [u8]) -> bool,
) -> bool {
    let value = &buf[range.0..range.1];
    if let Some(s) = short_string(value) {
        return string(s);
    }
    !one_scalar(value) && nested(buf, range, string, key)
}

fn nested<'a>(
    buf: &'a [u8],
    range: (usize, usize),
    string: &mut impl FnMut(&'a [u8]) -> bool,
    key: &mut impl FnMut(&'a [u8]) -> bool,
) -> bool {
    // The scan bounded the nesting depth, so recursion is bounded too.
    let mut r = Reader::new(buf, range.0, range.1, "AnyValue");
    while let Ok(Some(f)) = r.next_field() {
        let hit = match (f.number, f.wire) {
            (1, LEN) => string(&buf[f.body.0..f.body.1]),
            // ArrayValue { repeated AnyValue values = 1 }
            (5, LEN) => {
                let mut a = Reader::new(buf, f.body.0, f.body.1, "ArrayValue");
                let mut hit = false;
                while let (false, Ok(Some(v))) = (hit, a.next_field()) {
                    hit = v.number == 1 && v.wire == LEN && strings_in(buf, v.body, string, key);
                }
                hit
            }
            // KeyValueList { repeated KeyValue values = 1 }
            (6, LEN) => {
                let mut l = Reader::new(buf, f.body.0, f.body.1, "KeyValueList");
                let mut hit = false;
                while let (false, Ok(Some(kv))) = (hit, l.next_field()) {
                    if kv.number != 1 || kv.wire != LEN {
                        continue;
                    }
                    let mut e = Reader::new(buf, kv.body.0, kv.body.1, "KeyValue");
                    while let (false, Ok(Some(x))) = (hit, e.next_field()) {
                        hit = match (x.number, x.wire) {
                            (1, LEN) => key(&buf[x.body.0..x.body.1]),
                            (2, LEN) => strings_in(buf, x.body, string, key),
                            _ => false,
                        };
                    }
                }
                hit
            }
            _ => false,
        };
        if hit {
            return true;
        }
    }
    false
}

/// The string of an encoded `AnyValue` that is one string field with a
/// one-byte length, as nearly every value is (the layout `key_value` also
/// reads directly); `None` for anything else.
#[inline(always)]
fn short_string(value: &[u8]) -> Option<&[u8]> {
    match value {
        [0x0a, len, s @ ..] if *len < 0x80 && s.len() == usize::from(*len) => Some(s),
        _ => None,
    }
}

/// Whether an encoded `AnyValue` is one bool, int or double field and
/// nothing else. A third of span attributes are numbers, and the reader's
/// general path cost more per number than the whole string check.
#[inline(always)]
fn one_scalar(value: &[u8]) -> bool {
    match value {
        // bool_value = 2, int_value = 3: one varint, its last byte below 0x80.
        [0x10 | 0x18, varint @ ..] => varint.split_last().is_some_and(|(last, rest)| {
            *last < 0x80 && rest.len() < 10 && rest.iter().all(|b| *b >= 0x80)
        }),
        // double_value = 4: eight bytes.
        [0x21, bits @ ..] => bits.len() == 8,
        _ => false,
    }
}

/// Calls `f(key, value)` for each attribute of a span given as a whole
/// `spans` field (tag included) of a validated request, without decoding
/// any value.
pub fn for_each_raw_attribute<'a>(field: &'a [u8], f: impl FnMut(&'a [u8], RawValue<'a>)) {
    for_each_attribute_in(field, SPAN_ATTRIBUTES, f);
}

/// As [`for_each_raw_attribute`] in the same single pass, and says whether
/// the span has events or links.
pub fn for_each_raw_attribute_noting_events<'a>(
    field: &'a [u8],
    f: impl FnMut(&'a [u8], RawValue<'a>),
) -> bool {
    for_each_attribute_in(field, SPAN_ATTRIBUTES, f)
}

/// As [`for_each_raw_attribute`], for a whole `resource` field (tag
/// included; an empty slice has no attributes).
pub fn for_each_resource_attribute<'a>(field: &'a [u8], f: impl FnMut(&'a [u8], RawValue<'a>)) {
    for_each_attribute_in(field, RESOURCE_ATTRIBUTES, f);
}

/// The attributes' field number in a `Span`.
pub const SPAN_ATTRIBUTES: u32 = 9;
/// The attributes' field number in a `Resource`.
pub const RESOURCE_ATTRIBUTES: u32 = 1;
/// The attributes' field number in an `InstrumentationScope`.
pub const SCOPE_ATTRIBUTES: u32 = 3;

/// Walks the `KeyValue`s at field `number` of the message in a whole field;
/// returns whether the message has fields 11 or 13 (a span's events and
/// links), which callers that care get from the same pass.
pub fn for_each_attribute_in<'a>(
    field: &'a [u8],
    number: u32,
    f: impl FnMut(&'a [u8], RawValue<'a>),
) -> bool {
    for_each_attribute_from(field, number, 0, f)
}

/// As [`for_each_attribute_in`], passing over unread the `KeyValue`s that
/// end at or before byte `from` of `field`: a caller that found where the
/// key it wants first appears knows no attribute ending before that can
/// be named by it.
pub fn for_each_attribute_from<'a>(
    field: &'a [u8],
    number: u32,
    from: usize,
    mut f: impl FnMut(&'a [u8], RawValue<'a>),
) -> bool {
    let mut outer = Reader::new(field, 0, field.len(), "field");
    let Ok(Some(msg)) = outer.next_field() else {
        return false;
    };
    let mut extras = false;
    let (mut at, end) = msg.body;
    while at < end {
        // Nearly every field of a span has a one-byte tag and, when it has
        // a length or a varint, a one-byte one: those are read here, and
        // anything else takes the reader's full path.
        let (n, wire, body) = match short_field(field, at, end) {
            Some(short) => short,
            None => {
                let mut r = Reader::new(field, at, end, "message");
                let Ok(Some(a)) = r.next_field() else {
                    break;
                };
                (a.number, a.wire, a.body)
            }
        };
        if n == number && wire == LEN {
            if body.1 > from {
                let (key, range) = key_value(field, body);
                f(key, RawValue { buf: field, range });
            }
        } else {
            extras |= n == 11 || n == 13;
        }
        // Every wire type's body ends where its field does.
        at = body.1;
    }
    extras
}

/// The field at `at` as (number, wire type, body), if its tag is one byte
/// (a valid field number), its length or varint value, if any, is one
/// byte too, and it ends by `end`. `None` leaves the field to
/// [`Reader::next_field`], whose `Field::body` this matches.
#[inline(always)]
fn short_field(buf: &[u8], at: usize, end: usize) -> Option<(u32, u8, (usize, usize))> {
    let tag = *buf.get(at)?;
    if !(8..0x80).contains(&tag) {
        return None;
    }
    let wire = tag & 7;
    let (start, next) = match wire {
        LEN => {
            let len = *buf.get(at + 1)?;
            (len < 0x80).then_some((at + 2, at + 2 + usize::from(len)))?
        }
        VARINT => (*buf.get(at + 1)? < 0x80).then_some((at + 1, at + 2))?,
        FIXED64 => (at + 1, at + 9),
        FIXED32 => (at + 1, at + 5),
        _ => return None,
    };
    (next <= end).then_some((u32::from(tag >> 3), wire, (start, next)))
}

/// The key and the value's range of the `KeyValue` at `body`.
#[inline(always)]
fn key_value(buf: &[u8], body: (usize, usize)) -> (&[u8], (usize, usize)) {
    // Encoders write key then value with one-byte lengths for nearly every
    // attribute; that layout is read directly, anything else field by field.
    let kv = &buf[body.0..body.1];
    if let [0x0a, key_len, rest @ ..] = kv {
        let key_len = *key_len as usize;
        if key_len < 0x80 {
            if let [0x12, value_len, value @ ..] = &rest[key_len.min(rest.len())..] {
                if *value_len < 0x80 && value.len() == *value_len as usize {
                    let key = &kv[2..2 + key_len];
                    return (key, (body.1 - value.len(), body.1));
                }
            }
        }
    }
    let mut r = Reader::new(buf, body.0, body.1, "KeyValue");
    let mut key = &buf[0..0];
    let mut value = (0, 0);
    while let Ok(Some(x)) = r.next_field() {
        match (x.number, x.wire) {
            (1, LEN) => key = &buf[x.body.0..x.body.1],
            (2, LEN) => value = x.body,
            _ => {}
        }
    }
    (key, value)
}

/// Byte equality in 8-byte words, inline: attribute keys are a few words
/// long, and a call into libc's memcmp per attribute costs more than the
/// compare.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let last = a.len() - 8;
    let mut at = 0;
    while at < last {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last word may overlap the one before; that is still equality.
    word(a, last) == word(b, last)
}

/// The first attribute named `key` of a span (whole `spans` field), read
/// in place.
pub fn find_raw_attribute<'a>(field: &'a [u8], key: &[u8]) -> Option<RawValue<'a>> {
    let mut found = None;
    for_each_raw_attribute(field, |k, v| {
        if found.is_none() && k == key {
            found = Some(v);
        }
    });
    found
}

/// The scalar fields of a span that conditions read, taken in place.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpanScalars<'a> {
    /// `name` (empty if absent or not UTF-8, which the scan refuses).
    pub name: &'a str,
    /// `kind` as its enum number.
    pub kind: i64,
    /// `status.message`.
    pub status_message: &'a str,
    /// `trace_state` (W3C tracestate).
    pub trace_state: &'a str,
    /// `flags` (W3C trace flags and the parent-is-remote bits).
    pub flags: u32,
}

/// Reads a span's name, kind, status message, trace state and flags
/// (whole `spans` field).
pub fn span_scalars(field: &[u8]) -> SpanScalars<'_> {
    let mut out = SpanScalars::default();
    let mut outer = Reader::new(field, 0, field.len(), "ScopeSpans");
    let Ok(Some(span)) = outer.next_field() else {
        return out;
    };
    let text = |r: (usize, usize)| std::str::from_utf8(&field[r.0..r.1]).unwrap_or("");
    let mut r = Reader::new(field, span.body.0, span.body.1, "Span");
    while let Ok(Some(f)) = r.next_field() {
        match (f.number, f.wire) {
            (3, LEN) => out.trace_state = text(f.body),
            (5, LEN) => out.name = text(f.body),
            (6, VARINT) => out.kind = f.value as i64,
            (16, FIXED32) => out.flags = f.value as u32,
            (15, LEN) => {
                let mut s = Reader::new(field, f.body.0, f.body.1, "Status");
                while let Ok(Some(x)) = s.next_field() {
                    if (x.number, x.wire) == (2, LEN) {
                        out.status_message = text(x.body);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// As [`for_each_raw_attribute`], with every value decoded.
pub fn for_each_attribute<'a>(field: &'a [u8], mut f: impl FnMut(&'a [u8], AttrValue<'a>)) {
    for_each_raw_attribute(field, |k, v| f(k, v.get()));
}

/// Whether a span (whole `spans` field) has any event or link.
pub fn has_events_or_links(field: &[u8]) -> bool {
    let mut outer = Reader::new(field, 0, field.len(), "ScopeSpans");
    let Ok(Some(span)) = outer.next_field() else {
        return false;
    };
    let mut r = Reader::new(field, span.body.0, span.body.1, "Span");
    while let Ok(Some(f)) = r.next_field() {
        if f.number == 11 || f.number == 13 {
            return true;
        }
    }
    false
}

/// Appends to `out` the span field with a double attribute appended
/// (repeated fields append, so the result decodes to the span plus the
/// attribute); false, with nothing written, if `field` is not one field.
pub fn append_double_attribute(field: &[u8], key: &str, value: f64, out: &mut Vec<u8>) -> bool {
    let mut outer = Reader::new(field, 0, field.len(), "ScopeSpans");
    let Ok(Some(span)) = outer.next_field() else {
        return false;
    };
    let body = &field[span.body.0..span.body.1];
    // KeyValue { key = 1; value = 2: AnyValue { double_value = 4 } }
    let kv_len = 1 + varint_len(key.len() as u64) + key.len() + 2 + 9;
    let attr_len = 1 + varint_len(kv_len as u64) + kv_len;
    out.reserve(field.len() + attr_len + 4);
    put_len_header(out, 2, body.len() + attr_len);
    out.extend_from_slice(body);
    put_len_header(out, 9, kv_len);
    put_len_header(out, 1, key.len());
    out.extend_from_slice(key.as_bytes());
    put_len_header(out, 2, 9);
    put_varint(out, (4 << 3) | u64::from(FIXED64));
    out.extend_from_slice(&value.to_bits().to_le_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Generator, GeneratorOptions};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;
    use prost::Message;

    #[test]
    fn reads_what_prost_reads_and_appends_what_prost_decodes() {
        let req = Generator::new(GeneratorOptions::default()).spans(10);
        for span in req
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans[0].spans.iter())
        {
            let field = ScopeSpans {
                spans: vec![span.clone()],
                ..Default::default()
            }
            .encode_to_vec();
            let mut seen = Vec::new();
            for_each_attribute(&field, |k, v| {
                seen.push((String::from_utf8(k.to_vec()).unwrap(), format!("{v:?}")))
            });
            let want: Vec<(String, String)> = span
                .attributes
                .iter()
                .map(|a| {
                    let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(s)) => format!("{:?}", AttrValue::Str(s)),
                        Some(Value::IntValue(i)) => format!("{:?}", AttrValue::Int(*i)),
                        Some(Value::DoubleValue(d)) => format!("{:?}", AttrValue::Double(*d)),
                        Some(Value::BoolValue(b)) => format!("{:?}", AttrValue::Bool(*b)),
                        _ => format!("{:?}", AttrValue::Other),
                    };
                    (a.key.clone(), v)
                })
                .collect();
            assert_eq!(seen, want);

            // Appends after what the buffer already holds.
            let mut out = b"before".to_vec();
            assert!(append_double_attribute(
                &field,
                "gen_ai.usage.cost",
                0.125,
                &mut out
            ));
            assert_eq!(&out[..6], b"before");
            let back = ScopeSpans::decode(&out[6..]).unwrap().spans.remove(0);
            let mut expect = span.clone();
            expect
                .attributes
                .push(opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "gen_ai.usage.cost".into(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(Value::DoubleValue(0.125)),
                    }),
                    ..Default::default()
                });
            assert_eq!(back, expect);
        }
    }

    #[test]
    fn numbers_hold_no_string_and_a_string_after_a_number_is_still_found() {
        let walk = |value: &[u8]| {
            let mut strings = Vec::new();
            let hit = RawValue {
                buf: value,
                range: (0, value.len()),
            }
            .any_nested(
                &mut |s| {
                    strings.push(s.to_vec());
                    s == b"secret"
                },
                &mut |_| false,
            );
            (hit, strings)
        };
        let encoded = |v: Value| {
            opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }.encode_to_vec()
        };
        for v in [
            Value::IntValue(-1),
            Value::IntValue(0),
            Value::IntValue(300),
            Value::BoolValue(true),
            Value::DoubleValue(0.5),
        ] {
            let bytes = encoded(v.clone());
            assert_eq!(walk(&bytes), (false, vec![]), "{v:?}");
        }
        // A number then a string (a decoder keeps the last): the string is
        // read, whatever the number's layout.
        for number in [
            encoded(Value::IntValue(-1)),
            encoded(Value::DoubleValue(0.5)),
        ] {
            let mut bytes = number;
            bytes.extend(encoded(Value::StringValue("secret".into())));
            assert_eq!(walk(&bytes), (true, vec![b"secret".to_vec()]));
        }
        // Members of an array and values of a map take the same paths: the
        // numbers hold nothing, the strings among them are all read.
        use crate::generate::kv;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
        let any = |v: Value| AnyValue { value: Some(v) };
        let array = encoded(Value::ArrayValue(ArrayValue {
            values: vec![
                any(Value::IntValue(-1)),
                any(Value::StringValue("plain".into())),
                any(Value::DoubleValue(0.5)),
                any(Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv("n", Value::BoolValue(true)),
                        kv("s", Value::StringValue("secret".into())),
                    ],
                })),
            ],
        }));
        assert_eq!(
            walk(&array),
            (true, vec![b"plain".to_vec(), b"secret".to_vec()])
        );
    }

    #[test]
    fn the_attribute_walk_steps_over_long_and_multi_byte_fields_as_a_decoder_does() {
        use crate::generate::kv;
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
        use opentelemetry_proto::tonic::trace::v1::Span;
        let long = "x".repeat(300);
        let base = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: long.clone(),
            kind: 2,
            start_time_unix_nano: 1,
            end_time_unix_nano: u64::MAX,
            attributes: vec![
                kv("short", Value::StringValue("v".into())),
                kv(&long, Value::IntValue(-1)),
                kv("long.value", Value::StringValue(long.clone())),
                kv("d", Value::DoubleValue(0.5)),
            ],
            dropped_attributes_count: 300,
            flags: 0x301,
            ..Default::default()
        };
        let with_event = Span {
            events: vec![Event {
                name: "e".into(),
                ..Default::default()
            }],
            ..base.clone()
        };
        let with_link = Span {
            links: vec![Link {
                trace_id: vec![3; 16],
                ..Default::default()
            }],
            ..base.clone()
        };
        for (span, extras) in [(base, false), (with_event, true), (with_link, true)] {
            let field = ScopeSpans {
                spans: vec![span.clone()],
                ..Default::default()
            }
            .encode_to_vec();
            // The span's own field inside the ScopeSpans bytes.
            let mut r = Reader::new(&field, 0, field.len(), "ScopeSpans");
            let f = r.next_field().unwrap().unwrap();
            let whole = &field[f.start..f.body.1];
            let mut keys = Vec::new();
            let seen = for_each_raw_attribute_noting_events(whole, |k, v| {
                keys.push((String::from_utf8(k.to_vec()).unwrap(), v.get()))
            });
            let want: Vec<_> = span
                .attributes
                .iter()
                .map(|a| {
                    let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(s)) => AttrValue::Str(s),
                        Some(Value::IntValue(i)) => AttrValue::Int(*i),
                        Some(Value::DoubleValue(d)) => AttrValue::Double(*d),
                        _ => AttrValue::Other,
                    };
                    (a.key.clone(), v)
                })
                .collect();
            assert_eq!(keys, want);
            assert_eq!(seen, extras);
            // The span's message cut short anywhere (its field header says
            // the cut length): the walk stops without a panic and reports
            // only attributes that lie whole before the cut, in order.
            let body = &field[f.body.0..f.body.1];
            for cut in 0..body.len() {
                let mut cut_field = vec![whole[0]];
                put_varint(&mut cut_field, cut as u64);
                cut_field.extend_from_slice(&body[..cut]);
                let mut got = Vec::new();
                for_each_raw_attribute(&cut_field, |k, v| {
                    got.push((String::from_utf8(k.to_vec()).unwrap(), v.get()))
                });
                assert!(
                    got.len() <= want.len() && got[..] == want[..got.len()],
                    "cut at {cut}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn key_value_reads_unusual_layouts_as_a_decoder_does() {
        // (encoded KeyValue, key, value bytes): canonical, value first, a
        // two-byte value length, a trailing unknown field, a repeated key
        // (last wins), no value, a key length past the end.
        let long = vec![b'x'; 200];
        let mut two_byte = vec![0x0a, 1, b'k', 0x12, 0xcb, 0x01, 0x0a, 0xc8, 0x01];
        two_byte.extend_from_slice(&long);
        let cases: Vec<(Vec<u8>, &[u8], Vec<u8>)> = vec![
            (vec![0x0a, 1, b'k', 0x12, 2, 0x18, 7], b"k", vec![0x18, 7]),
            (vec![0x12, 2, 0x18, 7, 0x0a, 1, b'k'], b"k", vec![0x18, 7]),
            (two_byte, b"k", [&[0x0a, 0xc8, 0x01][..], &long].concat()),
            (
                vec![0x0a, 1, b'k', 0x12, 2, 0x18, 7, 0x18, 1],
                b"k",
                vec![0x18, 7],
            ),
            (vec![0x0a, 1, b'a', 0x0a, 1, b'b', 0x12, 0], b"b", vec![]),
            (vec![0x0a, 1, b'k'], b"k", vec![]),
            (vec![0x0a, 9, b'k', 0x12, 0], b"", vec![]),
        ];
        for (kv, key, value) in cases {
            let (k, range) = key_value(&kv, (0, kv.len()));
            assert_eq!(k, key, "{kv:?}");
            assert_eq!(&kv[range.0..range.1], &value[..], "{kv:?}");
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let keys: [&[u8]; 9] = [
            b"",
            b"a",
            b"service",
            b"service.",
            b"service.name",
            b"service.namf",
            b"gen_ai.usage.input_tokens",
            b"gen_ai.usage.input_tokenz",
            b"hen_ai.usage.input_tokens",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
        // Every length class, with one byte changed at each place.
        for n in 0..48 {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(same_bytes(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "length {n}, byte {at}");
            }
        }
    }
}
