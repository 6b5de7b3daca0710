//! The bytes of a WAL segment: an 8-byte file header, then records of
//! `len u32 | crc32 u32 | body`, where body is `seq u64 | signal u8 |
//! items u32 | encoded request`, all little-endian. The checksum covers the
//! body, so a record cut short by a crash, or damaged later, is recognised.

use pipeline::{Batch, Signal};

/// First bytes of every segment file; the last byte is the format version.
pub const FILE_HEADER: &[u8; 8] = b"OBSWAL\0\x01";
/// Bytes before the body.
pub const FRAME: usize = 8;
/// Bytes of the body before the encoded request.
pub const BODY_HEAD: usize = 13;

/// The fixed part of a record, written before the request bytes.
pub fn head(seq: u64, batch: &Batch) -> [u8; FRAME + BODY_HEAD] {
    let data = batch.encoded_len();
    let mut h = [0u8; FRAME + BODY_HEAD];
    h[0..4].copy_from_slice(&((BODY_HEAD + data) as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16] = batch.signal as u8;
    h[17..21].copy_from_slice(&(batch.items() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[FRAME..]);
    for r in &batch.requests {
        crc.update(&r.bytes);
    }
    h[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// What a record's frame says about the body after it.
pub struct Frame {
    /// Body length.
    pub len: usize,
    /// Expected checksum of the body.
    pub crc: u32,
}

/// Reads a frame.
pub fn frame(b: &[u8; FRAME]) -> Frame {
    Frame {
        len: u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize,
        crc: u32::from_le_bytes(b[4..8].try_into().unwrap()),
    }
}

/// A checked body's fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Body {
    /// Sequence number.
    pub seq: u64,
    /// The signal of the request.
    pub signal: Signal,
    /// Items in it.
    pub items: usize,
}

/// Checks a body against its frame; `None` when it is damaged.
pub fn body(frame: &Frame, b: &[u8]) -> Option<Body> {
    if b.len() != frame.len || b.len() < BODY_HEAD || crc32fast::hash(b) != frame.crc {
        return None;
    }
    let signal = *Signal::ALL.get(b[8] as usize)?;
    Some(Body {
        seq: u64::from_le_bytes(b[0..8].try_into().unwrap()),
        signal,
        items: u32::from_le_bytes(b[9..13].try_into().unwrap()) as usize,
    })
}

/// One checked record found by [`walk`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// Offset of its frame in the segment.
    pub offset: usize,
    /// Frame plus body length.
    pub len: usize,
    /// Its body's fields.
    pub body: Body,
}

/// Walks the records of a segment's bytes after the file header; stops at
/// the first torn or damaged one and returns its offset as the second value.
pub fn walk(data: &[u8], start: usize) -> (Vec<Found>, Option<usize>) {
    let mut found = Vec::new();
    let mut off = start;
    while off < data.len() {
        let checked = data
            .get(off..off.saturating_add(FRAME))
            .map(|f| frame(f.try_into().expect("FRAME bytes")))
            .and_then(|f| {
                let from = off + FRAME;
                let b = data.get(from..from.checked_add(f.len)?)?;
                body(&f, b).map(|body| (body, f.len))
            });
        let Some((body, len)) = checked else {
            return (found, Some(off));
        };
        found.push(Found {
            offset: off,
            len: FRAME + len,
            body,
        });
        off += FRAME + len;
    }
    (found, None)
}

/// An acknowledgement-file entry: the record was handed to the exporter.
pub const TAKEN: u64 = 1 << 63;

/// Reads the acknowledgement file: (taken, done) sequence numbers. A torn
/// last entry (fewer than 8 bytes) is ignored; it only costs a duplicate.
pub fn acks(b: &[u8]) -> (Vec<u64>, Vec<u64>) {
    let (mut taken, mut done) = (Vec::new(), Vec::new());
    for c in b.chunks_exact(8) {
        let v = u64::from_le_bytes(c.try_into().unwrap());
        if v & TAKEN != 0 {
            taken.push(v & !TAKEN);
        } else {
            done.push(v);
        }
    }
    (taken, done)
}
