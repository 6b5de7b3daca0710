//! The persistent sending queue's write-ahead log: one directory per
//! exporter, holding segment files (`<first seq>.wal`) of checksummed
//! records and, beside each, an append-only acknowledgement file
//! (`<first seq>.ack`) of the records handed out and the ones finished.
//!
//! A record is finished once the backend took it or it was given up on
//! (and counted as failed). A segment is deleted when every record in it is
//! finished, so the disk holds only unfinished data plus the unfinished
//! part of the newest segment. Acknowledgements are never fsynced: losing
//! one can only cause a record to be sent twice, which at-least-once allows.

pub mod record;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::scan::{scan_traces, SpanIndex};
use pipeline::telemetry::Counter;
use pipeline::{Batch, Request, Signal};
use tokio::sync::{watch, Notify};

use record::{BODY_HEAD, FILE_HEADER, FRAME, TAKEN};

/// How one WAL is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// The exporter's own directory.
    pub dir: PathBuf,
    /// fsync each record (and new segment files) before `append` returns.
    pub fsync: bool,
    /// Bytes on disk the queue may hold; beyond, appends are refused.
    pub max_bytes: u64,
    /// Unfinished records the queue may hold.
    pub max_records: usize,
    /// A segment is closed once it reaches this size.
    pub segment_bytes: u64,
    /// Wait this long for another process's lock on `dir`.
    pub lock_timeout: Duration,
    /// Counts damaged records, found at start-up or when read back.
    pub corrupt: Counter,
    /// Bytes of just-appended batches also kept in memory, so consumers
    /// that keep up never read the disk back.
    pub cache_bytes: u64,
}

/// Why a record was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Over `max_bytes` or `max_records`: retry later.
    #[error("{0}")]
    Full(String),
    /// One batch larger than the whole queue may hold.
    #[error("a batch of {0} bytes is larger than the persistent queue's max_size_mib")]
    TooBig(u64),
    /// The disk refused the write.
    #[error("writing the persistent queue: {0}")]
    Io(#[from] io::Error),
    /// The queue is shutting down.
    #[error("the persistent queue is closed")]
    Closed,
}

/// What start-up found on disk.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Unfinished records found, to be sent again.
    pub batches: usize,
    /// Their items, per signal (`Signal as usize`).
    pub items: [u64; 3],
    /// Items among them that had been handed to the exporter before the
    /// stop: the backend may already have them (possible duplicates).
    pub redelivered: [u64; 3],
    /// Damaged or torn records skipped (with everything after them in
    /// their segment, since a damaged length cannot be trusted).
    pub corrupt: usize,
    /// Bytes cut off with them.
    pub discarded_bytes: u64,
}

/// A record handed to a consumer; give it back with [`Wal::finish`].
pub struct Taken {
    /// Its sequence number.
    pub seq: u64,
    segment: u64,
    /// The batch it holds.
    pub batch: Batch,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    acks: Option<File>,
    bytes: u64,
    records: u64,
    done: u64,
    sealed: bool,
}

impl Segment {
    fn ack_path(&self) -> PathBuf {
        self.path.with_extension("ack")
    }

    fn mark(&mut self, v: u64) {
        if self.acks.is_none() {
            self.acks = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.ack_path())
                .map_err(|e| tracing::warn!(path = %self.ack_path().display(), error = %e, "cannot open acknowledgement file; records may be sent twice after a restart"))
                .ok();
        }
        if let Some(f) = &mut self.acks {
            let _ = f.write_all(&v.to_le_bytes());
        }
    }

    fn remove(&self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(self.ack_path());
    }
}

struct Loc {
    seq: u64,
    segment: u64,
    offset: u64,
    len: usize,
    /// The batch as appended, while the memory cache has room: a consumer
    /// that keeps up then never reads the disk back.
    cached: Option<Batch>,
}

#[derive(Default)]
struct State {
    segments: BTreeMap<u64, Segment>,
    unread: VecDeque<Loc>,
    outstanding: usize,
    bytes: u64,
    cached_bytes: u64,
}

impl State {
    /// Deletes a segment once nothing in it is unfinished or still growing.
    fn retire_if_done(&mut self, first: u64) {
        if let Some(s) = self.segments.get(&first) {
            if s.sealed && s.done == s.records {
                s.remove();
                self.bytes -= s.bytes;
                self.segments.remove(&first);
            }
        }
    }
}

struct Writer {
    current: Option<(u64, File, u64)>,
    next_seq: u64,
}

/// One exporter's write-ahead log.
pub struct Wal {
    opts: Options,
    state: Mutex<State>,
    writer: Mutex<Writer>,
    ready: Notify,
    closed: watch::Sender<bool>,
    _lock: File,
}

fn lock_dir(dir: &Path, timeout: Duration) -> Result<File, String> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let until = Instant::now() + timeout;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "{} is locked by another process (is a second collector using the same file_storage directory?)",
                    dir.display()
                ))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(format!("locking {}: {e}", path.display()))
            }
        }
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_all_vectored(f: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match f.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads one segment at start-up: its unfinished records join `unread`,
/// a torn tail is cut off. Returns `None` when nothing in it is left.
fn recover_segment(
    first: u64,
    path: PathBuf,
    st: &mut State,
    rec: &mut Recovery,
    max_seq: &mut u64,
) -> io::Result<Option<Segment>> {
    let data = fs::read(&path)?;
    let ack_path = path.with_extension("ack");
    let (taken, done) = record::acks(&fs::read(&ack_path).unwrap_or_default());
    let (taken, done): (HashSet<u64>, HashSet<u64>) =
        (taken.into_iter().collect(), done.into_iter().collect());
    if data.len() < FILE_HEADER.len() || &data[..FILE_HEADER.len()] != FILE_HEADER {
        if !data.is_empty() {
            rec.corrupt += 1;
            rec.discarded_bytes += data.len() as u64;
            tracing::warn!(path = %path.display(), "persistent queue segment has no valid header; removed");
        }
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(&ack_path);
        return Ok(None);
    }
    let file = File::open(&path)?;
    let mut seg = Segment {
        path,
        file: Arc::new(file),
        acks: None,
        bytes: 0,
        records: 0,
        done: 0,
        sealed: true,
    };
    let (found, torn) = record::walk(&data, FILE_HEADER.len());
    for r in found {
        let body = r.body;
        seg.records += 1;
        *max_seq = (*max_seq).max(body.seq);
        if done.contains(&body.seq) {
            seg.done += 1;
        } else {
            let s = body.signal as usize;
            rec.batches += 1;
            rec.items[s] += body.items as u64;
            if taken.contains(&body.seq) {
                rec.redelivered[s] += body.items as u64;
            }
            st.unread.push_back(Loc {
                seq: body.seq,
                segment: first,
                offset: r.offset as u64,
                len: r.len,
                cached: None,
            });
            st.outstanding += 1;
        }
    }
    let off = torn.unwrap_or(data.len());
    if torn.is_some() {
        rec.corrupt += 1;
        rec.discarded_bytes += (data.len() - off) as u64;
        tracing::warn!(path = %seg.path.display(), offset = off, bytes = data.len() - off, "persistent queue: torn or damaged record skipped (checksum); the rest of its segment is cut off");
        OpenOptions::new()
            .write(true)
            .open(&seg.path)?
            .set_len(off as u64)?;
    }
    seg.bytes = off as u64;
    if seg.done == seg.records {
        seg.remove();
        return Ok(None);
    }
    Ok(Some(seg))
}

impl Wal {
    /// Opens (creating) the log in `opts.dir`, locks it against a second
    /// process, and queues every unfinished record found there.
    pub fn open(opts: Options) -> Result<(Arc<Wal>, Recovery), String> {
        let dir = &opts.dir;
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let lock = lock_dir(dir, opts.lock_timeout)?;
        let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .filter_map(|e| {
                let p = e.ok()?.path();
                let first = p
                    .extension()
                    .filter(|x| *x == "wal")
                    .and(p.file_stem()?.to_str()?.parse().ok())?;
                Some((first, p))
            })
            .collect();
        found.sort();
        let mut st = State::default();
        let mut rec = Recovery::default();
        let mut max_seq = 0;
        for (first, path) in found {
            let shown = path.display().to_string();
            if let Some(seg) = recover_segment(first, path, &mut st, &mut rec, &mut max_seq)
                .map_err(|e| format!("reading {shown}: {e}"))?
            {
                st.bytes += seg.bytes;
                st.segments.insert(first, seg);
            }
        }
        opts.corrupt.add(rec.corrupt as u64);
        let (closed, _) = watch::channel(false);
        let wal = Wal {
            writer: Mutex::new(Writer {
                current: None,
                next_seq: max_seq + 1,
            }),
            state: Mutex::new(st),
            ready: Notify::new(),
            closed,
            _lock: lock,
            opts,
        };
        Ok((Arc::new(wal), rec))
    }

    /// Unfinished records.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().outstanding
    }

    /// Whether nothing is unfinished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the segment files take.
    pub fn bytes(&self) -> u64 {
        self.state.lock().unwrap().bytes
    }

    /// Damaged records found so far (at start-up or when read back).
    pub fn corrupt(&self) -> u64 {
        self.opts.corrupt.get()
    }

    /// Starts a new segment after the current one, sealing that.
    fn roll(&self, w: &mut Writer) -> io::Result<()> {
        let first = w.next_seq;
        let path = segment_path(&self.opts.dir, first);
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        f.write_all(FILE_HEADER)?;
        if self.opts.fsync {
            f.sync_all()?;
            sync_dir(&self.opts.dir)?;
        }
        let reader = File::open(&path)?;
        let old = w.current.replace((first, f, FILE_HEADER.len() as u64));
        let mut st = self.state.lock().unwrap();
        st.bytes += FILE_HEADER.len() as u64;
        st.segments.insert(
            first,
            Segment {
                path,
                file: Arc::new(reader),
                acks: None,
                bytes: FILE_HEADER.len() as u64,
                records: 0,
                done: 0,
                sealed: false,
            },
        );
        if let Some((old_first, _, _)) = old {
            if let Some(s) = st.segments.get_mut(&old_first) {
                s.sealed = true;
            }
            st.retire_if_done(old_first);
        }
        Ok(())
    }

    /// Writes `batch` (fsynced when configured) and queues it for sending.
    pub fn append(&self, batch: &Batch) -> Result<u64, AppendError> {
        let len = (FRAME + BODY_HEAD + batch.encoded_len()) as u64;
        if len + FILE_HEADER.len() as u64 > self.opts.max_bytes {
            return Err(AppendError::TooBig(len));
        }
        let mut w = self.writer.lock().unwrap();
        if *self.closed.borrow() {
            return Err(AppendError::Closed);
        }
        {
            let mut st = self.state.lock().unwrap();
            if st.outstanding >= self.opts.max_records {
                return Err(AppendError::Full(format!(
                    "holds {} batches (queue_size)",
                    st.outstanding
                )));
            }
            if st.bytes + len > self.opts.max_bytes {
                return Err(AppendError::Full(format!(
                    "holds {} MiB on disk (max_size_mib)",
                    st.bytes >> 20
                )));
            }
            st.outstanding += 1;
        }
        let result = self.write(&mut w, batch, len);
        let mut st = self.state.lock().unwrap();
        match result {
            Ok(mut loc) => {
                let seq = loc.seq;
                if st.cached_bytes + len <= self.opts.cache_bytes {
                    st.cached_bytes += len;
                    loc.cached = Some(batch.clone());
                }
                let seg = st.segments.get_mut(&loc.segment).expect("current segment");
                seg.records += 1;
                seg.bytes += len;
                st.bytes += len;
                st.unread.push_back(loc);
                drop(st);
                self.ready.notify_one();
                Ok(seq)
            }
            Err(e) => {
                st.outstanding -= 1;
                Err(e.into())
            }
        }
    }

    fn write(&self, w: &mut Writer, batch: &Batch, len: u64) -> io::Result<Loc> {
        if w.current
            .as_ref()
            .is_none_or(|(_, _, size)| *size >= self.opts.segment_bytes)
        {
            self.roll(w)?;
        }
        let seq = w.next_seq;
        let (first, file, size) = w.current.as_mut().expect("rolled");
        let head = record::head(seq, batch);
        let mut bufs: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&head))
            .chain(batch.requests.iter().map(|r| IoSlice::new(&r.bytes)))
            .collect();
        let written = write_all_vectored(file, &mut bufs).and_then(|()| {
            if self.opts.fsync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A half-written record must not sit before the next one: cut
            // it off, or if even that fails, leave this segment for a new.
            if file.set_len(*size).is_err() {
                let first = *first;
                w.current = None;
                let mut st = self.state.lock().unwrap();
                if let Some(s) = st.segments.get_mut(&first) {
                    s.sealed = true;
                }
                st.retire_if_done(first);
            }
            return Err(e);
        }
        let loc = Loc {
            seq,
            segment: *first,
            offset: *size,
            len: len as usize,
            cached: None,
        };
        *size += len;
        w.next_seq += 1;
        Ok(loc)
    }

    /// The next unread record, waiting for one; `None` once closed.
    pub async fn next(&self) -> Option<Taken> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if *self.closed.borrow() {
                return None;
            }
            let popped = {
                let mut st = self.state.lock().unwrap();
                match st.unread.pop_front() {
                    None => None,
                    Some(mut loc) => {
                        let seg = st.segments.get_mut(&loc.segment).expect("unfinished");
                        seg.mark(loc.seq | TAKEN);
                        let file = seg.file.clone();
                        if let Some(batch) = loc.cached.take() {
                            st.cached_bytes -= loc.len as u64;
                            return Some(Taken {
                                seq: loc.seq,
                                segment: loc.segment,
                                batch,
                            });
                        }
                        Some((loc, file))
                    }
                }
            };
            let Some((loc, file)) = popped else {
                tokio::select! {
                    _ = notified => continue,
                    _ = self.closed() => return None,
                }
            };
            match read(file, &loc).await {
                Ok(batch) => {
                    return Some(Taken {
                        seq: loc.seq,
                        segment: loc.segment,
                        batch,
                    })
                }
                Err(e) => {
                    tracing::error!(dir = %self.opts.dir.display(), seq = loc.seq, error = %e, "persistent queue: a record cannot be read back; skipped");
                    self.opts.corrupt.add(1);
                    self.done(loc.segment, loc.seq);
                }
            }
        }
    }

    /// Marks a record finished: sent, or given up on and counted.
    pub fn finish(&self, t: Taken) {
        self.done(t.segment, t.seq);
    }

    fn done(&self, segment: u64, seq: u64) {
        let mut st = self.state.lock().unwrap();
        st.outstanding -= 1;
        if let Some(seg) = st.segments.get_mut(&segment) {
            seg.done += 1;
            seg.mark(seq);
        }
        st.retire_if_done(segment);
    }

    /// Stops handing out records; what is unfinished stays on disk.
    pub fn close(&self) {
        self.closed.send_replace(true);
        self.ready.notify_waiters();
    }

    /// Resolves once [`Wal::close`] was called.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Reads a record back and checks it again: the disk may have changed it.
async fn read(file: Arc<File>, loc: &Loc) -> Result<Batch, String> {
    let (offset, len) = (loc.offset, loc.len);
    let buf = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map(|()| buf)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let frame = record::frame(buf[..FRAME].try_into().unwrap());
    let body = record::body(&frame, &buf[FRAME..]).ok_or("checksum mismatch")?;
    if body.seq != loc.seq {
        return Err(format!("found record {} where {} was", body.seq, loc.seq));
    }
    let bytes = bytes::Bytes::from(buf).slice(FRAME + BODY_HEAD..);
    let index = if body.signal == Signal::Traces {
        let mut index = SpanIndex::default();
        scan_traces(&bytes, &mut index).map_err(|e| e.to_string())?;
        Some(Arc::new(index))
    } else {
        None
    };
    Ok(Batch::new(
        body.signal,
        Request {
            bytes,
            items: body.items,
            index,
            // The WAL keeps bytes only: a request read back has no client
            // context (as otelcol's persistent queue by default).
            client: None,
        },
    ))
}

#[cfg(test)]
mod tests;
