use std::io::{Seek, SeekFrom};

use pipeline::generate::{Generator, GeneratorOptions};
use prost::Message;

use super::*;

fn opts(dir: &Path) -> Options {
    Options {
        dir: dir.to_path_buf(),
        fsync: false,
        max_bytes: 64 << 20,
        max_records: 1000,
        segment_bytes: 16 << 10,
        lock_timeout: Duration::from_millis(100),
        corrupt: Counter::default(),
        cache_bytes: 0,
    }
}

/// A real traces request of `n` spans, so reading back rebuilds the index.
fn traces(g: &mut Generator, n: usize) -> Batch {
    let bytes = bytes::Bytes::from(g.spans(n).encode_to_vec());
    Batch::parse(Signal::Traces, bytes).unwrap()
}

fn logs(g: &mut Generator, n: usize) -> Batch {
    let bytes = bytes::Bytes::from(g.logs(n).encode_to_vec());
    Batch::parse(Signal::Logs, bytes).unwrap()
}

fn gen() -> Generator {
    Generator::new(GeneratorOptions::default())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

async fn take(wal: &Wal) -> Taken {
    tokio::time::timeout(Duration::from_secs(5), wal.next())
        .await
        .expect("a record within 5s")
        .expect("not closed")
}

#[tokio::test]
async fn records_come_back_in_order_with_their_bytes_and_index() {
    // From disk, from the memory cache, and from both (cache overflows).
    for cache in [0, 64 << 20, 20 << 10] {
        in_order(cache).await;
    }
}

async fn in_order(cache_bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rec) = Wal::open(Options {
        cache_bytes,
        ..opts(dir.path())
    })
    .unwrap();
    assert_eq!(rec, Recovery::default());
    let mut g = gen();
    let sent: Vec<Batch> = (0..20)
        .map(|i| {
            if i % 3 == 0 {
                logs(&mut g, 7)
            } else {
                traces(&mut g, 30)
            }
        })
        .collect();
    for b in &sent {
        wal.append(b).unwrap();
    }
    assert_eq!(wal.len(), 20);
    assert!(segments(dir.path()).len() > 1, "16 KiB segments roll");
    for want in &sent {
        let t = take(&wal).await;
        assert_eq!(t.batch.signal, want.signal);
        assert_eq!(t.batch.items(), want.items());
        assert_eq!(t.batch.to_bytes(), want.to_bytes());
        let index = t.batch.requests[0].index.as_ref();
        assert_eq!(index.is_some(), want.signal == Signal::Traces);
        if let Some(ix) = index {
            assert_eq!(ix.spans.len(), 30);
        }
        wal.finish(t);
    }
    assert!(wal.is_empty());
    // Every sealed segment is gone; only the one still being written stays.
    assert_eq!(segments(dir.path()).len(), 1);
    assert!(wal.bytes() <= fs::metadata(&segments(dir.path())[0]).unwrap().len());
}

#[tokio::test]
async fn reopening_resends_only_unfinished_records_and_counts_possible_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = gen();
    let batches: Vec<Batch> = (0..10).map(|_| traces(&mut g, 25)).collect();
    // One segment, so finished and unfinished records share it and only
    // the acknowledgement file tells them apart.
    let o = Options {
        segment_bytes: 64 << 20,
        ..opts(dir.path())
    };
    {
        let (wal, _) = Wal::open(o.clone()).unwrap();
        for b in &batches {
            wal.append(b).unwrap();
        }
        // 0..4 finished; 4 and 5 handed out but not finished; 6.. never read.
        for _ in 0..4 {
            let t = take(&wal).await;
            wal.finish(t);
        }
        let _handed_out = (take(&wal).await, take(&wal).await);
    }
    let (wal, rec) = Wal::open(o.clone()).unwrap();
    assert_eq!(rec.batches, 6);
    assert_eq!(rec.items, [150, 0, 0]);
    assert_eq!(rec.redelivered, [50, 0, 0]);
    assert_eq!(rec.corrupt, 0);
    for want in &batches[4..] {
        let t = take(&wal).await;
        assert_eq!(t.batch.to_bytes(), want.to_bytes());
        wal.finish(t);
    }
    // New records go after the recovered ones, with fresh sequence numbers.
    let seq = wal.append(&batches[0]).unwrap();
    assert_eq!(seq, 11);
    drop(wal);
    let (_, rec) = Wal::open(o.clone()).unwrap();
    assert_eq!(rec.batches, 1);
}

/// Writes three records into one segment and closes the log: the
/// options to reopen it, the batches, and the segment file.
fn three_in_one_segment(dir: &Path) -> (Options, Vec<Batch>, PathBuf) {
    let mut g = gen();
    let batches: Vec<Batch> = (0..3).map(|_| traces(&mut g, 10)).collect();
    let o = Options {
        segment_bytes: 64 << 20,
        ..opts(dir)
    };
    let (wal, _) = Wal::open(o.clone()).unwrap();
    for b in &batches {
        wal.append(b).unwrap();
    }
    drop(wal);
    (o, batches, segments(dir).pop().unwrap())
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (o, batches, seg) = three_in_one_segment(dir.path());
    let full = fs::metadata(&seg).unwrap().len();
    let last = (FRAME + BODY_HEAD + batches[2].encoded_len()) as u64;
    // A crash half-way through the last write.
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(full - last / 2)
        .unwrap();
    let (wal, rec) = Wal::open(o.clone()).unwrap();
    assert_eq!(rec.batches, 2);
    assert_eq!(rec.corrupt, 1);
    assert_eq!(rec.discarded_bytes, last - last / 2);
    assert_eq!(wal.corrupt(), 1);
    assert_eq!(fs::metadata(&seg).unwrap().len(), full - last);
    for want in &batches[..2] {
        assert_eq!(take(&wal).await.batch.to_bytes(), want.to_bytes());
    }
    drop(wal);
    let (_, rec) = Wal::open(o).unwrap();
    assert_eq!((rec.batches, rec.corrupt), (2, 0), "cut off for good");
}

#[tokio::test]
async fn a_damaged_byte_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (o, batches, seg) = three_in_one_segment(dir.path());
    let second = FILE_HEADER.len() + FRAME + BODY_HEAD + batches[0].encoded_len();
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.seek(SeekFrom::Start((second + FRAME + BODY_HEAD + 40) as u64))
        .unwrap();
    f.write_all(b"\xff\xfe").unwrap();
    drop(f);
    let (wal, rec) = Wal::open(o).unwrap();
    assert_eq!((rec.batches, rec.corrupt), (1, 1));
    assert_eq!(take(&wal).await.batch.to_bytes(), batches[0].to_bytes());
}

#[tokio::test]
async fn full_by_records_or_bytes_until_segments_are_finished() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = gen();
    let b = traces(&mut g, 20);
    let mut o = opts(dir.path());
    o.max_records = 3;
    let (wal, _) = Wal::open(o).unwrap();
    for _ in 0..3 {
        wal.append(&b).unwrap();
    }
    let e = wal.append(&b).unwrap_err();
    assert!(matches!(e, AppendError::Full(_)), "{e}");
    assert!(e.to_string().contains("queue_size"), "{e}");
    let t = take(&wal).await;
    wal.finish(t);
    wal.append(&b).unwrap();
    drop(wal);

    let dir = tempfile::tempdir().unwrap();
    let rec = (FRAME + BODY_HEAD + b.encoded_len()) as u64;
    let mut o = opts(dir.path());
    o.segment_bytes = rec;
    o.max_bytes = 3 * (rec + FILE_HEADER.len() as u64);
    let (wal, _) = Wal::open(o).unwrap();
    for _ in 0..3 {
        wal.append(&b).unwrap();
    }
    let e = wal.append(&b).unwrap_err();
    assert!(e.to_string().contains("max_size_mib"), "{e}");
    // The first segment is sealed, so finishing its record frees its bytes.
    let t = take(&wal).await;
    wal.finish(t);
    wal.append(&b).unwrap();

    let huge = traces(&mut g, 2000);
    assert!(matches!(
        wal.append(&huge).unwrap_err(),
        AppendError::TooBig(_)
    ));
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(opts(dir.path())).unwrap();
    let e = Wal::open(opts(dir.path())).err().unwrap();
    assert!(e.contains("locked by another process"), "{e}");
}

#[tokio::test]
async fn close_wakes_waiting_readers_and_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path())).unwrap();
    let reader = {
        let wal = wal.clone();
        tokio::spawn(async move { wal.next().await.is_none() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    wal.close();
    assert!(tokio::time::timeout(Duration::from_secs(2), reader)
        .await
        .unwrap()
        .unwrap());
    let b = traces(&mut gen(), 3);
    assert!(matches!(wal.append(&b), Err(AppendError::Closed)));
}
