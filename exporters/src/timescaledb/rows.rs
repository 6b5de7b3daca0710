//! Rows in PostgreSQL's COPY text format, built straight into one buffer
//! per table: tab-separated columns, `\N` for NULL, backslash escapes,
//! arrays as `{a,b}`, jsonb as escaped JSON text.

use std::io::Write as _;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use serde_json::Value;

/// Rows for one table, back to back; `ends[i]` is where row `i` stops.
#[derive(Debug, Default)]
pub struct Rows {
    /// The COPY data.
    pub buf: Vec<u8>,
    /// End offset of every row (after its newline).
    pub ends: Vec<usize>,
    first: bool,
}

impl Rows {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of rows `lo..hi`.
    pub fn range(&self, lo: usize, hi: usize) -> &[u8] {
        let start = if lo == 0 { 0 } else { self.ends[lo - 1] };
        &self.buf[start..self.ends[hi - 1]]
    }

    fn sep(&mut self) {
        if !self.first {
            self.buf.push(b'\t');
        }
        self.first = false;
    }

    /// Starts a row.
    pub fn begin(&mut self) -> &mut Self {
        self.first = true;
        self
    }

    /// Ends the row started by [`Rows::begin`].
    pub fn end(&mut self) {
        self.buf.push(b'\n');
        self.ends.push(self.buf.len());
    }

    /// NULL.
    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.sep();
        escape_into(&mut self.buf, s.as_bytes());
        self
    }

    /// Text or NULL.
    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// Already escaped text (a cached jsonb value).
    pub fn raw(&mut self, escaped: &[u8]) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(escaped);
        self
    }

    /// Attributes as a jsonb object, written straight into the row: no
    /// JSON tree per point. Scalars are written directly; arrays and maps
    /// go through serde_json. A repeated key is kept, as jsonb keeps the
    /// last one.
    pub fn attributes(&mut self, kvs: &[KeyValue]) -> &mut Self {
        self.braced(kvs, |buf, kv| {
            json_string_into(buf, &kv.key);
            buf.push(b':');
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(v)) => json_string_into(buf, v),
                Some(Any::IntValue(v)) => {
                    let _ = write!(buf, "{v}");
                }
                Some(Any::BoolValue(v)) => {
                    buf.extend_from_slice(if *v { b"true" } else { b"false" });
                }
                _ => escape_into(
                    buf,
                    crate::values::json(kv.value.as_ref())
                        .to_string()
                        .as_bytes(),
                ),
            }
        })
    }

    /// A column of `items` between braces, comma-separated, each written by
    /// `put`: a jsonb object and a PostgreSQL array literal look alike.
    fn braced<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut put: impl FnMut(&mut Vec<u8>, T),
    ) -> &mut Self {
        self.sep();
        self.buf.push(b'{');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            put(&mut self.buf, item);
        }
        self.buf.push(b'}');
        self
    }

    /// A timestamp from Unix nanoseconds.
    pub fn time(&mut self, ns: u64) -> &mut Self {
        self.sep();
        timestamp(&mut self.buf, ns);
        self
    }

    /// A timestamp, NULL for 0 (OTLP's "not set").
    pub fn opt_time(&mut self, ns: u64) -> &mut Self {
        if ns == 0 {
            self.null()
        } else {
            self.time(ns)
        }
    }

    /// An integer.
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }

    /// An integer or NULL.
    pub fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    /// A double.
    pub fn float(&mut self, v: f64) -> &mut Self {
        self.sep();
        float_into(&mut self.buf, v);
        self
    }

    /// A double or NULL.
    pub fn opt_float(&mut self, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.float(v),
            None => self.null(),
        }
    }

    /// A boolean.
    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.buf.push(if v { b't' } else { b'f' });
        self
    }

    /// An array of doubles.
    pub fn floats(&mut self, vs: &[f64]) -> &mut Self {
        self.braced(vs, |buf, v| float_into(buf, *v))
    }

    /// An array of integers.
    pub fn ints(&mut self, vs: impl IntoIterator<Item = i64>) -> &mut Self {
        self.braced(vs, |buf, v| {
            let _ = write!(buf, "{v}");
        })
    }

    /// An array of ids in hex (empty ids left out).
    pub fn hex_ids<'a>(&mut self, ids: impl IntoIterator<Item = &'a [u8]>) -> &mut Self {
        self.sep();
        self.buf.push(b'{');
        let mut first = true;
        for id in ids.into_iter().filter(|id| !id.is_empty()) {
            if !first {
                self.buf.push(b',');
            }
            first = false;
            self.buf
                .extend_from_slice(pipeline::wire::hex(id).as_bytes());
        }
        self.buf.push(b'}');
        self
    }
}

/// COPY text escaping: backslash, tab, newline and carriage return.
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// A JSON string literal, already COPY-escaped (JSON's backslashes doubled).
fn json_string_into(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\\\""),
            b'\\' => out.extend_from_slice(b"\\\\\\\\"),
            b'\n' => out.extend_from_slice(b"\\\\n"),
            b'\t' => out.extend_from_slice(b"\\\\t"),
            b'\r' => out.extend_from_slice(b"\\\\r"),
            0..=0x1f => {
                let _ = write!(out, "\\\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// A JSON value as an escaped COPY field.
pub fn json_field(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    escape_into(&mut out, v.to_string().as_bytes());
    out
}

/// A resource's or point's attributes as an escaped jsonb field.
pub fn attributes_field(kvs: &[KeyValue]) -> Vec<u8> {
    json_field(&crate::values::attributes(kvs))
}

/// A scope as an escaped jsonb field: name, version, attributes.
pub fn scope_field(s: Option<&InstrumentationScope>) -> Vec<u8> {
    let v = match s {
        None => serde_json::json!({}),
        Some(s) => serde_json::json!({
            "name": s.name,
            "version": s.version,
            "attributes": crate::values::attributes(&s.attributes),
        }),
    };
    json_field(&v)
}

fn float_into(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00` (PostgreSQL keeps microseconds).
fn timestamp(out: &mut Vec<u8>, ns: u64) {
    let t = crate::time::utc(ns);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(f: impl FnOnce(&mut Rows)) -> String {
        let mut r = Rows::default();
        r.begin();
        f(&mut r);
        r.end();
        String::from_utf8(r.buf).unwrap()
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(
            one(|r| {
                r.time(0);
            }),
            "1970-01-01 00:00:00.000000+00\n"
        );
        assert_eq!(
            one(|r| {
                r.time(1_700_000_000_123_456_789);
            }),
            "2023-11-14 22:13:20.123456+00\n"
        );
        // A leap day.
        assert_eq!(
            one(|r| {
                r.time(1_709_208_000_000_000_000);
            }),
            "2024-02-29 12:00:00.000000+00\n"
        );
        assert_eq!(
            one(|r| {
                r.opt_time(0);
            }),
            "\\N\n"
        );
    }

    #[test]
    fn fields_are_escaped_and_separated() {
        let s = one(|r| {
            r.text("a\tb\\c\nd\re")
                .null()
                .int(-3)
                .float(f64::NAN)
                .float(0.1)
                .boolean(true);
        });
        assert_eq!(s, "a\\tb\\\\c\\nd\\re\t\\N\t-3\tNaN\t0.1\tt\n");
        let s = one(|r| {
            r.floats(&[1.5, f64::INFINITY])
                .ints([1, 2])
                .hex_ids([&[0xab_u8, 1][..], &[][..]]);
        });
        assert_eq!(s, "{1.5,Infinity}\t{1,2}\t{ab01}\n");
        let j = json_field(&serde_json::json!({"k": "tab\there \"q\" back\\slash"}));
        assert_eq!(
            String::from_utf8(j).unwrap(),
            r#"{"k":"tab\\there \\"q\\" back\\\\slash"}"#
        );
    }

    #[test]
    fn attributes_written_directly_match_serde_json() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
        let kv = |k: &str, v: Any| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let kvs = vec![
            kv("plain", Any::StringValue("gpt-4o".into())),
            kv(
                "tricky \"key\"",
                Any::StringValue("tab\there\nnl \\ q\" \u{1} é".into()),
            ),
            kv("n", Any::IntValue(-42)),
            kv("b", Any::BoolValue(true)),
            kv("d", Any::DoubleValue(0.25)),
            kv(
                "a",
                Any::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Any::IntValue(1)),
                    }],
                }),
            ),
        ];
        let mut r = Rows::default();
        r.begin().attributes(&kvs);
        r.end();
        // COPY unescaping is undoing the doubled backslashes; then both
        // must be the same JSON (serde_json sorts keys, we keep order).
        let unescape = |b: &[u8]| -> serde_json::Value {
            let t = String::from_utf8(b.to_vec()).unwrap().replace("\\\\", "\\");
            serde_json::from_str(&t).unwrap()
        };
        let direct = &r.buf[..r.buf.len() - 1];
        assert_eq!(unescape(direct), unescape(&attributes_field(&kvs)));
        assert_eq!(
            unescape(direct)["tricky \"key\""],
            "tab\there\nnl \\ q\" \u{1} é"
        );
    }

    #[test]
    fn ranges_cover_whole_rows() {
        let mut r = Rows::default();
        for i in 0..3 {
            r.begin().int(i);
            r.end();
        }
        assert_eq!(r.range(0, 3), b"0\n1\n2\n");
        assert_eq!(r.range(1, 2), b"1\n");
    }
}
