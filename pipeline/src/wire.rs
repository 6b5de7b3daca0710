//! Protobuf wire-format primitives: reading fields in place and writing framing.
//!
//! The scanner and the splitter work on encoded OTLP bytes directly; these are
//! the few operations they need, with errors that say where the input broke.

use std::fmt;

/// Protobuf wire types.
pub const VARINT: u8 = 0;
/// 64-bit fixed wire type.
pub const FIXED64: u8 = 1;
/// Length-delimited wire type.
pub const LEN: u8 = 2;
/// 32-bit fixed wire type.
pub const FIXED32: u8 = 5;

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset in the request where reading failed.
    pub offset: usize,
    /// What was wrong there.
    pub what: &'static str,
    /// The message being read (e.g. `Span`).
    pub message: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid protobuf: {} in {} at byte {}",
            self.what, self.message, self.offset
        )
    }
}

impl std::error::Error for WireError {}

/// A cursor over one message's bytes; offsets are absolute in the request.
pub struct Reader<'a> {
    /// The request truncated at the message's end, so `pos < buf.len()`
    /// is the only bounds check the hot path needs.
    buf: &'a [u8],
    pos: usize,
    /// Offset of the current field's tag, for errors.
    start: usize,
    /// Message name used in errors.
    pub message: &'static str,
}

/// One field header plus its payload location.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Field number.
    pub number: u32,
    /// Wire type.
    pub wire: u8,
    /// Offset of the tag (start of the whole field).
    pub start: usize,
    /// For LEN fields, the payload range; for others, the value's range.
    pub body: (usize, usize),
    /// Varint value (VARINT), or the raw fixed value (FIXED32/FIXED64).
    pub value: u64,
}

impl Field {
    /// Range of the whole field, tag included.
    pub fn whole(&self) -> (usize, usize) {
        (self.start, self.body.1)
    }
}

impl<'a> Reader<'a> {
    /// Reads `buf[start..end]` as the message named `message`.
    #[inline]
    pub fn new(buf: &'a [u8], start: usize, end: usize, message: &'static str) -> Self {
        Reader {
            buf: &buf[..end],
            pos: start,
            start,
            message,
        }
    }

    #[cold]
    fn err(&self, offset: usize, what: &'static str) -> WireError {
        WireError {
            offset,
            what,
            message: self.message,
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags and most lengths in OTLP fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        let start = self.pos;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err(start, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err(start, "varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.err(start, "varint longer than 10 bytes"))
    }

    /// Reads the next field, or `None` at the end of the message.
    #[inline(always)]
    pub fn next_field(&mut self) -> Result<Option<Field>, WireError> {
        match self.next_key()? {
            Some(key) => self.finish(key).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the next field's key (number and wire type), or `None` at the
    /// end of the message. The caller reads the value with the reader its
    /// key names ([`Reader::len_body`], [`Reader::fixed64`], …) or with
    /// [`Reader::finish`]: matching on the key dispatches once per field
    /// where the number and then the wire type took two jumps.
    #[inline(always)]
    pub fn next_key(&mut self) -> Result<Option<u64>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        self.start = self.pos;
        let key = self.varint()?;
        if key >> 3 == 0 || key >> 3 > u64::from(u32::MAX >> 3) {
            return Err(self.err(self.start, "invalid field number"));
        }
        Ok(Some(key))
    }

    /// Reads the value of the field whose key [`Reader::next_key`] returned.
    #[inline(always)]
    pub fn finish(&mut self, key: u64) -> Result<Field, WireError> {
        let vstart = self.pos;
        let wire = (key & 7) as u8;
        let (body, value) = match wire {
            VARINT => {
                let v = self.varint_value()?;
                ((vstart, self.pos), v)
            }
            FIXED64 => {
                let v = self.fixed64()?;
                ((vstart, self.pos), v)
            }
            FIXED32 => {
                let v = self.fixed32()?;
                ((vstart, self.pos), u64::from(v))
            }
            LEN => {
                let b = self.len_body()?;
                (b, (b.1 - b.0) as u64)
            }
            _ => return Err(self.err(self.start, "unsupported wire type")),
        };
        Ok(Field {
            number: (key >> 3) as u32,
            wire,
            start: self.start,
            body,
            value,
        })
    }

    /// Reads a VARINT field's value.
    #[inline(always)]
    pub fn varint_value(&mut self) -> Result<u64, WireError> {
        self.varint()
    }

    /// Reads a FIXED64 field's value.
    #[inline(always)]
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        self.fixed("truncated fixed64").map(u64::from_le_bytes)
    }

    /// Reads a FIXED32 field's value.
    #[inline(always)]
    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        self.fixed("truncated fixed32").map(u32::from_le_bytes)
    }

    #[inline(always)]
    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        match self.buf.get(self.pos..self.pos + N) {
            Some(b) => {
                self.pos += N;
                Ok(b.try_into().expect("N bytes"))
            }
            None => Err(self.err(self.start, what)),
        }
    }

    /// Reads a LEN field's length and returns its payload's range.
    #[inline(always)]
    pub fn len_body(&mut self) -> Result<(usize, usize), WireError> {
        let len = self.varint()?;
        if len > (self.buf.len() - self.pos) as u64 {
            return Err(self.err(self.start, "length exceeds message"));
        }
        let b = (self.pos, self.pos + len as usize);
        self.pos = b.1;
        Ok(b)
    }

    /// Offset of the tag of the field being read.
    #[inline(always)]
    pub fn field_start(&self) -> usize {
        self.start
    }

    /// Fails unless `field` has wire type `wire`.
    #[inline(always)]
    pub fn expect(&self, field: &Field, wire: u8) -> Result<(), WireError> {
        if field.wire == wire {
            Ok(())
        } else {
            Err(self.wrong_wire(field))
        }
    }

    /// The error for a known field read with another wire type.
    #[cold]
    pub fn wrong_wire(&self, field: &Field) -> WireError {
        self.err(field.start, "wrong wire type for known field")
    }

    /// Fails unless the LEN field's payload is valid UTF-8.
    #[inline(always)]
    pub fn expect_str(&self, field: &Field) -> Result<(), WireError> {
        self.expect(field, LEN)?;
        self.check_str(field.body)
    }

    /// Fails unless the payload at `body` is valid UTF-8.
    #[inline(always)]
    pub fn check_str(&self, body: (usize, usize)) -> Result<(), WireError> {
        let s = &self.buf[body.0..body.1];
        // Attribute keys and most values are ASCII; the word-at-a-time
        // check is far cheaper than full validation on short strings.
        if !ascii(s) && std::str::from_utf8(s).is_err() {
            return Err(self.err(body.0, "string is not valid UTF-8"));
        }
        Ok(())
    }

    /// Fails unless the LEN field holds an id of `n` bytes (or is empty, as
    /// the reference implementations accept).
    #[inline(always)]
    pub fn expect_id(&self, field: &Field, n: usize) -> Result<(), WireError> {
        self.expect(field, LEN)?;
        self.check_id(field.start, field.body, n)
    }

    /// As [`Reader::expect_id`] for the payload at `body` of the field whose
    /// tag is at `start`.
    #[inline(always)]
    pub fn check_id(&self, start: usize, body: (usize, usize), n: usize) -> Result<(), WireError> {
        let len = body.1 - body.0;
        if len != 0 && len != n {
            return Err(self.err(
                start,
                if n == 16 {
                    "trace id must be 16 bytes"
                } else {
                    "span id must be 8 bytes"
                },
            ));
        }
        Ok(())
    }
}

/// Appends a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes a varint of `v` takes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the header of a LEN field with `len` payload bytes.
#[inline]
pub fn put_len_header(out: &mut Vec<u8>, number: u32, len: usize) {
    put_varint(out, (u64::from(number) << 3) | u64::from(LEN));
    put_varint(out, len as u64);
}

/// Size of a LEN field header.
#[inline]
pub fn len_header_size(number: u32, len: usize) -> usize {
    varint_len((u64::from(number) << 3) | u64::from(LEN)) + varint_len(len as u64)
}

/// Lowercase hex of `bytes` (trace and span ids, digests).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Whether every byte is ASCII. Inlined for the short strings attributes
/// hold: core's `is_ascii` is an out-of-line call that aligns before its
/// word loop, which on keys of 10–30 bytes cost more than the check itself
/// (7 % of the intake scan in `perf`).
#[inline(always)]
pub fn ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, tail) = b.as_chunks::<8>();
    let mut any = 0u64;
    for w in words {
        any |= u64::from_ne_bytes(*w);
    }
    for &x in tail {
        any |= u64::from(x);
    }
    any & HIGH == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_length() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "len of {v}");
            // Frame it as field 1 so the reader can parse it back.
            let mut msg = vec![0x08];
            msg.extend_from_slice(&out);
            let mut r = Reader::new(&msg, 0, msg.len(), "T");
            let f = r.next_field().unwrap().unwrap();
            assert_eq!((f.number, f.wire, f.value), (1, VARINT, v));
        }
    }

    #[test]
    fn truncated_and_overlong_inputs_are_errors() {
        let cases: [(&[u8], &str); 4] = [
            (&[0x0a, 0x05, 1, 2], "length exceeds message"),
            (&[0x08, 0x80], "truncated varint"),
            (&[0x09, 1, 2, 3], "truncated fixed64"),
            (&[0x0b], "unsupported wire type"),
        ];
        for (bytes, what) in cases {
            let mut r = Reader::new(bytes, 0, bytes.len(), "T");
            assert_eq!(r.next_field().unwrap_err().what, what);
        }
    }
}
