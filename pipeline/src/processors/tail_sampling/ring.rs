//! The held traces: a ring in arrival order, which decisions take from the
//! front, and a map from trace id to a position in the ring.
//!
//! Among ~10^5 held traces every map probe misses the cache. Deciding a
//! trace in its turn does not probe the map at all: its entry is left to
//! go stale (a position before the ring's front) and stale entries are
//! swept out together, in one pass over the table, once they are as many
//! as the live ones. A sweep reads the table in order, which costs far
//! less than one random probe per decision.
//!
//! A map entry is 8 bytes ([`IdTable`]): the position and the id's hash,
//! each cut to 32 bits. The id itself is only in the ring, and a probe that
//! finds its hash compares the id there. An entry of id and position took
//! 24 bytes.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use tokio::time::Instant;

use super::idtable::{places_for, short_hash, At, IdTable, Probe};
use super::policy::Summary;
use crate::fasthash::Keyed;

/// A held span: its request's slot in `HeldRequests` and its position.
pub(super) type HeldSpan = (u32, u32);

/// Spans a trace holds before it needs an allocation of its own: most
/// traces have a handful.
const INLINE_SPANS: usize = 6;

/// Stale entries tolerated beyond the live ones before a sweep.
const SWEEP_SLACK: usize = 1024;

/// Ring entries per chunk: ~300 KB, under glibc's mmap threshold.
const CHUNK: usize = 2048;

/// A queue in fixed-size chunks. A `VecDeque` doubles, and as a ring it
/// touches all its capacity, so up to twice the live entries stay
/// resident; chunks come and go with the entries.
struct Chunked<T> {
    chunks: VecDeque<Vec<T>>,
    /// The front's index in the first chunk.
    head: usize,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn push_back(&mut self, x: T) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push_back(Vec::with_capacity(CHUNK));
        }
        self.chunks.back_mut().expect("pushed above").push(x);
        self.len += 1;
    }

    /// The front entry, left in place as `T::default()`.
    fn pop_front(&mut self) -> Option<T>
    where
        T: Default,
    {
        if self.len == 0 {
            return None;
        }
        let x = std::mem::take(&mut self.chunks[0][self.head]);
        self.head += 1;
        self.len -= 1;
        if self.head == CHUNK || self.len == 0 {
            // An emptied chunk goes; an empty queue starts from scratch.
            if self.head == CHUNK || self.chunks.len() == 1 {
                self.chunks.pop_front();
            }
            self.head = 0;
        }
        Some(x)
    }

    fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        let j = self.head + i;
        Some(&self.chunks[j / CHUNK][j % CHUNK])
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        let j = self.head + i;
        Some(&mut self.chunks[j / CHUNK][j % CHUNK])
    }
}

/// A trace's held spans, in arrival order; the first few inline.
#[derive(Default)]
pub(super) struct HeldSpans {
    len: u32,
    inline: [HeldSpan; INLINE_SPANS],
    more: Vec<HeldSpan>,
}

impl HeldSpans {
    pub fn push(&mut self, span: HeldSpan) {
        match self.inline.get_mut(self.len as usize) {
            Some(slot) => *slot = span,
            None => self.more.push(span),
        }
        self.len += 1;
    }

    pub fn reserve(&mut self, n: usize) {
        let room = INLINE_SPANS.saturating_sub(self.len as usize);
        if n > room {
            self.more.reserve(n - room);
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeldSpan> {
        let inline = (self.len as usize).min(INLINE_SPANS);
        self.inline[..inline].iter().chain(&self.more)
    }
}

/// One held trace.
pub(super) struct Held {
    pub id: [u8; 16],
    pub spans: HeldSpans,
    /// When its first span came in.
    pub first: Instant,
    /// Encoded bytes of its spans.
    pub bytes: usize,
    /// Attribute-test bits its spans and their resources passed.
    pub hits: u64,
    /// Its spans' times, statuses and count.
    pub summary: Summary,
}

/// Where in the ring `at` points, if trace `id` is held there; positions
/// count from `base`, the front's, in 32 bits.
fn index_of(ring: &Chunked<Option<Held>>, base: u64, at: &At, id: &[u8; 16]) -> Option<usize> {
    let i = at.pos.wrapping_sub(base as u32) as usize;
    ring.get(i)?.as_ref().filter(|h| h.id == *id).map(|_| i)
}

/// The held traces, oldest first.
#[derive(Default)]
pub(super) struct Traces {
    /// Positions in the ring; some stale (see the module's doc).
    at: IdTable,
    hasher: Keyed,
    /// `None` where a trace was decided before its turn.
    ring: Chunked<Option<Held>>,
    /// The position of the ring's front.
    base: u64,
    /// Traces held.
    live: usize,
}

impl Traces {
    pub fn with_capacity(n: usize) -> Traces {
        Traces {
            at: IdTable::with_capacity(n),
            hasher: Keyed::default(),
            ring: Chunked::default(),
            base: 0,
            live: 0,
        }
    }

    /// Traces held.
    pub fn len(&self) -> usize {
        self.live
    }

    fn hash(&self, id: &[u8; 16]) -> u32 {
        short_hash(self.hasher.hash_one(id))
    }

    /// Where trace `id` (of kept hash `hash`) is: its table place and ring
    /// index if held, else the table place a new entry goes in.
    fn find(&self, hash: u32, id: &[u8; 16]) -> Result<(usize, usize), usize> {
        let (ring, base) = (&self.ring, self.base);
        let mut held = None;
        match self.at.probe(hash, |a| {
            held = index_of(ring, base, a, id);
            held.is_some()
        }) {
            Probe::Found(place) => Ok((place, held.expect("confirmed by the probe"))),
            Probe::Vacant(place) => Err(place),
        }
    }

    /// Whether trace `id` is held: a lookup for its cache misses alone
    /// (the table's and the ring's), ahead of [`Traces::entry`].
    pub fn has_entry(&self, id: &[u8; 16]) -> bool {
        self.find(self.hash(id), id).is_ok()
    }

    /// The trace `id`, taken in as first seen `now` if it is not held.
    pub fn entry(&mut self, id: [u8; 16], now: Instant) -> &mut Held {
        let hash = self.hash(&id);
        self.at.reserve_one();
        let held = match self.find(hash, &id) {
            Ok((_, i)) => Some(i),
            Err(place) => {
                // A stale entry of the same id stays until the next sweep.
                let pos = (self.base + self.ring.len() as u64) as u32;
                self.at.put(place, At { pos, hash });
                None
            }
        };
        let i = held.unwrap_or_else(|| {
            self.ring.push_back(Some(Held {
                id,
                spans: HeldSpans::default(),
                first: now,
                bytes: 0,
                hits: 0,
                summary: Summary::default(),
            }));
            self.live += 1;
            self.ring.len() - 1
        });
        self.ring
            .get_mut(i)
            .and_then(Option::as_mut)
            .expect("checked or just pushed")
    }

    /// When the oldest held trace came in.
    pub fn oldest(&mut self) -> Option<Instant> {
        while let Some(front) = self.ring.get(0) {
            match front {
                Some(held) => return Some(held.first),
                None => {
                    self.ring.pop_front();
                    self.base += 1;
                }
            }
        }
        None
    }

    /// Takes the oldest held trace out; its map entry goes stale.
    pub fn pop_oldest(&mut self) -> Option<Held> {
        self.oldest()?;
        let held = self.ring.pop_front().flatten()?;
        self.base += 1;
        self.live -= 1;
        self.sweep_if_due();
        Some(held)
    }

    /// Takes trace `id` out, ahead of its turn.
    pub fn remove(&mut self, id: &[u8; 16]) -> Option<Held> {
        let (place, i) = self.find(self.hash(id), id).ok()?;
        self.at.remove(place);
        let held = self.ring.get_mut(i)?.take()?;
        self.live -= 1;
        Some(held)
    }

    /// Drops the stale entries once they outnumber the live ones.
    fn sweep_if_due(&mut self) {
        if self.at.len() < 2 * self.live + SWEEP_SLACK {
            return;
        }
        let (base, ring) = (self.base, &self.ring);
        // Only a live trace's own entry points at a held slot: early
        // removal takes the entry out with the trace. After a burst the
        // table would stay large, and every sweep reads all of it.
        let room = places_for(2 * self.live + SWEEP_SLACK);
        self.at.sweep(room, |a| {
            ring.get(a.pos.wrapping_sub(base as u32) as usize)
                .is_some_and(Option::is_some)
        });
    }

    /// Map entries, stale ones included (for tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 16] {
        let mut id = [0; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        id
    }

    #[test]
    fn traces_leave_in_arrival_order_and_early_removals_leave_no_gap() {
        let now = Instant::now();
        let mut t = Traces::default();
        for n in 1..=4 {
            t.entry(id(n), now).spans.push((0, n));
        }
        // A second span of trace 2 joins the same entry.
        t.entry(id(2), now).spans.push((1, 9));
        assert_eq!(t.len(), 4);
        let two = t.remove(&id(2)).expect("held");
        assert_eq!(
            two.spans.iter().copied().collect::<Vec<_>>(),
            [(0, 2), (1, 9)]
        );
        assert!(t.remove(&id(2)).is_none());
        // Trace 2 seen again starts over, behind the others.
        t.entry(id(2), now).spans.push((2, 0));
        let order: Vec<u32> = std::iter::from_fn(|| t.pop_oldest())
            .map(|h| u32::from_le_bytes(h.id[..4].try_into().unwrap()))
            .collect();
        assert_eq!(order, [1, 3, 4, 2]);
        assert_eq!(t.len(), 0);
        assert!(t.oldest().is_none());
    }

    #[test]
    fn has_entry_tells_the_ids_the_map_holds() {
        let now = Instant::now();
        let mut t = Traces::default();
        for n in [1, 3, 5] {
            t.entry(id(n), now);
        }
        let held: Vec<u32> = (1..=6).filter(|&n| t.has_entry(&id(n))).collect();
        assert_eq!(held, [1, 3, 5]);
    }

    #[test]
    fn a_trace_decided_in_its_turn_starts_over_when_seen_again_and_stale_entries_are_swept() {
        let now = Instant::now();
        let mut t = Traces::default();
        t.entry(id(1), now).spans.push((0, 0));
        let first = t.pop_oldest().expect("held");
        assert_eq!(first.spans.len(), 1);
        // Its entry is stale: a later span starts a new trace, not the old.
        t.entry(id(1), now).spans.push((5, 5));
        assert_eq!(t.len(), 1);
        let again = t.pop_oldest().expect("held again");
        assert_eq!(again.spans.iter().copied().collect::<Vec<_>>(), [(5, 5)]);
        // Many traces through, 100 held at a time: the map stays bounded.
        for n in 0..100_000 {
            t.entry(id(n), now).spans.push((n, 0));
            if t.len() > 100 {
                t.pop_oldest();
            }
        }
        assert_eq!(t.len(), 100);
        assert!(t.entries() <= 2 * 100 + SWEEP_SLACK, "{}", t.entries());
        // The 100 held ones are still found, with their own spans.
        for n in 100_000 - 100..100_000 {
            let held = t.entry(id(n), now);
            assert_eq!(held.spans.iter().copied().collect::<Vec<_>>(), [(n, 0)]);
        }
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn a_trace_held_again_after_its_turn_is_found_past_its_stale_entry() {
        let now = Instant::now();
        let mut t = Traces::default();
        t.entry(id(7), now).spans.push((0, 0));
        t.entry(id(8), now).spans.push((0, 1));
        assert_eq!(t.pop_oldest().map(|h| h.id), Some(id(7)));
        // Trace 7's entry is stale; seen again, it gets a second one.
        t.entry(id(7), now).spans.push((1, 0));
        t.entry(id(7), now).spans.push((2, 0));
        assert_eq!(t.entries(), 3);
        assert!(t.has_entry(&id(7)));
        let again = t.remove(&id(7)).expect("held again");
        assert_eq!(
            again.spans.iter().copied().collect::<Vec<_>>(),
            [(1, 0), (2, 0)]
        );
        assert!(!t.has_entry(&id(7)));
        assert!(t.remove(&id(7)).is_none());
        assert_eq!(t.pop_oldest().map(|h| h.id), Some(id(8)));
        assert!(t.pop_oldest().is_none());
    }

    #[test]
    fn the_chunked_queue_keeps_order_across_chunks_and_frees_the_ones_it_leaves() {
        let mut q: Chunked<u32> = Chunked::default();
        let mut want = std::collections::VecDeque::new();
        let mut next = 0;
        // Grow to 3 chunks and a bit, drain below one, grow again, empty.
        for (push, pop) in [
            (3 * CHUNK + 5, 2 * CHUNK + 7),
            (CHUNK, 0),
            (0, 2 * CHUNK - 2),
        ] {
            for _ in 0..push {
                q.push_back(next);
                want.push_back(next);
                next += 1;
            }
            for _ in 0..pop {
                assert_eq!(q.pop_front(), want.pop_front());
            }
            assert_eq!(q.len(), want.len());
            for (i, w) in want.iter().enumerate() {
                assert_eq!(q.get(i), Some(w), "entry {i}");
            }
            assert_eq!(q.get(want.len()), None);
            // Only the chunks that hold entries stay.
            assert!(
                q.chunks.len() <= want.len().div_ceil(CHUNK) + 1,
                "{}",
                q.chunks.len()
            );
        }
        assert_eq!(q.len(), 0);
        assert_eq!(q.pop_front(), None);
        assert!(q.chunks.len() <= 1);
        q.push_back(7);
        assert_eq!(q.get(0), Some(&7));
    }

    #[test]
    fn spans_past_the_inline_ones_keep_their_order() {
        let mut s = HeldSpans::default();
        s.reserve(3);
        for i in 0..20 {
            s.push((i, i * 2));
        }
        assert_eq!(s.len(), 20);
        let want: Vec<_> = (0..20).map(|i| (i, i * 2)).collect();
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), want);
    }
}
