//! Which files are known and how far each was read. A file is known by
//! its fingerprint, the first `fingerprint_size` bytes, so a renamed or
//! rotated file keeps its offset and is not read twice, and a truncated one
//! (copy-truncate) is read again from its start.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How much one poll reads from one file at most: a large backlog is read
/// over several polls, in bounded batches.
pub const READ_PER_FILE: usize = 4 << 20;
/// Polls a file may go unseen (renamed out of `include`, or briefly empty)
/// before it is forgotten.
const KEEP_UNSEEN: u32 = 3;

/// A file being followed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Known {
    /// Its first bytes (up to `fingerprint_size`), hex in checkpoints.
    #[serde(with = "hex_bytes")]
    pub fingerprint: Vec<u8>,
    /// Where it was last seen.
    pub path: PathBuf,
    /// Bytes consumed (sent and taken by the pipeline); for gzip files,
    /// bytes of the decompressed text.
    pub offset: u64,
    /// A line without its newline at the end, as (offset, length, since):
    /// sent once unchanged for `force_flush_period`.
    #[serde(skip)]
    pub pending: Option<(u64, usize, Option<Instant>)>,
    /// Polls since it was last matched.
    #[serde(skip)]
    pub unseen: u32,
    /// The open file: it follows the file through a rename, so lines
    /// written just before a rotation are still read.
    #[serde(skip)]
    pub file: Option<std::fs::File>,
    /// Its inode, to notice another file now at the same path.
    #[serde(skip)]
    pub ino: u64,
    /// gzip files: the compressed size once read whole (not read again
    /// while it stays so).
    #[serde(default)]
    pub done_len: u64,
}

impl Known {
    /// A file first seen now at `path`, to be read from `offset`.
    pub fn new(fingerprint: Vec<u8>, path: PathBuf, offset: u64) -> Known {
        Known {
            fingerprint,
            path,
            offset,
            pending: None,
            unseen: 0,
            file: None,
            ino: 0,
            done_len: 0,
        }
    }

    /// Opens `path` unless the open file is the one there (same inode).
    pub fn follow(&mut self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(path)?.ino();
        if self.file.is_none() || self.ino != ino {
            self.file = Some(std::fs::File::open(path)?);
            self.ino = ino;
        }
        self.path = path.to_path_buf();
        Ok(())
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&pipeline::wire::hex(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

/// The first `n` bytes of a file.
pub fn fingerprint(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        match f.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// What one read of a file gave.
#[derive(Debug, Default, PartialEq)]
pub struct Read1 {
    /// Whole lines (and pieces of over-long ones), trimmed; blank lines
    /// give none.
    pub lines: Vec<String>,
    /// Lines cut at `max_log_size`.
    pub cut: u64,
    /// The offset once these lines are taken.
    pub consumed: u64,
}

/// How lines are cut and decoded.
#[derive(Debug, Clone, Copy)]
pub struct Cutting {
    /// Longer lines become several entries.
    pub max_log_size: usize,
    /// A last line without newline goes out after this long unchanged.
    pub force_flush: Duration,
    /// `ascii`: bytes over 0x7f become U+FFFD; `utf-8` (and `nop`)
    /// replace invalid sequences.
    pub ascii: bool,
    /// Keep whitespace at the start of lines (otelcol's
    /// `preserve_leading_whitespaces`).
    pub keep_leading: bool,
    /// Keep whitespace at the end of lines.
    pub keep_trailing: bool,
}

fn decode(bytes: &[u8], c: Cutting) -> String {
    // A line's own \r (CRLF files) goes whatever is kept.
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let trimmed = match (c.keep_leading, c.keep_trailing) {
        (false, false) => bytes.trim_ascii(),
        (true, false) => bytes.trim_ascii_end(),
        (false, true) => bytes.trim_ascii_start(),
        (true, true) => bytes,
    };
    if c.ascii {
        trimmed
            .iter()
            .map(|&b| if b < 0x80 { b as char } else { '\u{fffd}' })
            .collect()
    } else {
        String::from_utf8_lossy(trimmed).into_owned()
    }
}

/// Adds one line, cut into `max_log_size` pieces when longer.
fn push_line(out: &mut Read1, line: &[u8], c: Cutting) {
    let mut rest = line;
    while rest.len() > c.max_log_size {
        let (piece, more) = rest.split_at(c.max_log_size);
        out.cut += 1;
        let text = decode(piece, c);
        if !text.trim().is_empty() {
            out.lines.push(text);
        }
        rest = more;
    }
    let text = decode(rest, c);
    if !text.trim().is_empty() {
        out.lines.push(text);
    }
}

/// Cuts `buf` (read from `start`) into lines. `complete`: the file has no
/// more (a gzip file read whole), so a last line without newline is one.
pub fn cut(
    buf: &[u8],
    start: u64,
    c: Cutting,
    k: &mut Known,
    complete: bool,
    now: Instant,
) -> Read1 {
    let mut out = Read1::default();
    let mut at = 0usize;
    while let Some(nl) = memchr::memchr(b'\n', &buf[at..]) {
        push_line(&mut out, &buf[at..at + nl], c);
        at += nl + 1;
    }
    let tail = &buf[at..];
    let mut take_tail = complete;
    if tail.is_empty() {
        k.pending = None;
    } else if !complete {
        // A line still being written waits, unless it stays as it is for
        // force_flush_period (or fills a whole read).
        let here = (start + at as u64, tail.len());
        let since = match k.pending {
            Some((o, l, since)) if (o, l) == here => since,
            _ => Some(now),
        };
        let due = !c.force_flush.is_zero()
            && since.is_some_and(|s| now.duration_since(s) >= c.force_flush);
        take_tail = due || tail.len() >= READ_PER_FILE;
        k.pending = (!take_tail).then_some((here.0, here.1, since));
    }
    if take_tail {
        push_line(&mut out, tail, c);
        at = buf.len();
        k.pending = None;
    }
    out.consumed = start + at as u64;
    out
}

/// Reads what is new in a plain file from `k.offset`, through its open
/// file. A file shorter than the offset was truncated: when `seen` (its
/// path still shows these first bytes) it is read again from the start;
/// a file only followed after a rename is left alone then.
pub fn read_plain(k: &mut Known, c: Cutting, now: Instant, seen: bool) -> std::io::Result<Read1> {
    let Some(f) = k.file.as_mut() else {
        return Ok(Read1 {
            consumed: k.offset,
            ..Default::default()
        });
    };
    let len = f.metadata()?.len();
    if len < k.offset {
        if !seen {
            k.file = None;
            return Ok(Read1 {
                consumed: k.offset,
                ..Default::default()
            });
        }
        k.offset = 0;
        k.pending = None;
    }
    f.seek(SeekFrom::Start(k.offset))?;
    // Sized for what is there, so reading does not grow and copy it.
    let mut buf = Vec::with_capacity(((len - k.offset) as usize).min(READ_PER_FILE) + 1);
    f.take(READ_PER_FILE as u64).read_to_end(&mut buf)?;
    let start = k.offset;
    Ok(cut(&buf, start, c, k, false, now))
}

/// Reads a gzip file whole, from `k.offset` of its text on; a file read
/// whole is not read again while its size stays the same.
pub fn read_gzip(k: &mut Known, c: Cutting, now: Instant) -> std::io::Result<(Read1, u64)> {
    let f = std::fs::File::open(&k.path)?;
    let len = f.metadata()?.len();
    if len == k.done_len {
        return Ok((
            Read1 {
                consumed: k.offset,
                ..Default::default()
            },
            len,
        ));
    }
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(f).read_to_end(&mut text)?;
    let from = (k.offset as usize).min(text.len());
    Ok((cut(&text[from..], from as u64, c, k, true, now), len))
}

/// The known files, matched against what a poll finds.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Every known file.
    pub known: Vec<Known>,
}

impl Tracker {
    /// The known file `fp` is (or grew from), found by fingerprint.
    pub fn find(&mut self, fp: &[u8]) -> Option<usize> {
        // An exact match first: a copy and its original may share a prefix.
        self.known
            .iter()
            .position(|k| k.fingerprint == fp)
            .or_else(|| {
                self.known
                    .iter()
                    .position(|k| fp.starts_with(&k.fingerprint) || k.fingerprint.starts_with(fp))
            })
    }

    /// Forgets files not seen for a few polls; marks the rest unseen for
    /// the next.
    pub fn age(&mut self) {
        self.known.retain(|k| k.unseen < KEEP_UNSEEN);
        for k in &mut self.known {
            k.unseen += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Cutting {
        Cutting {
            max_log_size: 8,
            force_flush: Duration::from_millis(500),
            ascii: false,
            keep_leading: false,
            keep_trailing: false,
        }
    }

    fn known() -> Known {
        Known::new(vec![], PathBuf::new(), 0)
    }

    #[test]
    fn lines_long_lines_and_a_line_still_being_written() {
        let mut k = known();
        let t0 = Instant::now();
        let r = cut(
            b"a\n  b  \n\n0123456789abc\npart",
            100,
            c(),
            &mut k,
            false,
            t0,
        );
        assert_eq!(r.lines, ["a", "b", "01234567", "89abc"]);
        assert_eq!((r.cut, r.consumed), (1, 100 + 23));
        // The partial line waits, then goes out once unchanged for 500 ms.
        assert_eq!(k.pending.map(|p| (p.0, p.1)), Some((123, 4)));
        let r = cut(
            b"part",
            123,
            c(),
            &mut k,
            false,
            t0 + Duration::from_millis(100),
        );
        assert_eq!((r.lines.len(), r.consumed), (0, 123));
        let r = cut(
            b"part",
            123,
            c(),
            &mut k,
            false,
            t0 + Duration::from_millis(600),
        );
        assert_eq!((r.lines, r.consumed), (vec!["part".to_string()], 127));
        // A gzip file's last line needs no newline.
        let mut k = known();
        let r = cut(b"x\ny", 0, c(), &mut k, true, t0);
        assert_eq!((r.lines.len(), r.consumed), (2, 3));
        // Leading whitespace kept when asked (stack traces for recombine).
        let keep = Cutting {
            keep_leading: true,
            ..c()
        };
        let r = cut(b"  at x\r\n", 0, keep, &mut k, false, t0);
        assert_eq!(r.lines, ["  at x"]);
        // Blank lines move the offset on with no entry.
        let r = cut(b"\n \n", 7, c(), &mut k, false, t0);
        assert_eq!((r.lines.len(), r.consumed), (0, 10));
    }
}
