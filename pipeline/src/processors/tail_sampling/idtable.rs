//! The held-trace map's table: open addressing with linear probing over
//! 8-byte entries, at most half full.
//!
//! Among ~10^5 held traces a probe misses the cache. hashbrown keeps its
//! tags and its entries apart, so taking in a new trace missed twice: on
//! the tags (which intake's lookup pass had already read) and again on
//! the entry written. Here a probe reads the entries themselves, eight to
//! a cache line, so the lookup pass brings in the line the write lands on.

/// A table entry: a ring position and the id's hash, both cut to 32 bits.
/// Hash values 0 and 1 are not used: they mark empty and emptied places.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub(super) struct At {
    pub pos: u32,
    pub hash: u32,
}

const EMPTY: u32 = 0;
const GONE: u32 = 1;

/// The smallest table once any entry is in.
const MIN_PLACES: usize = 64;

/// The 32-bit hash a table keeps for a 64-bit one.
pub(super) fn short_hash(h: u64) -> u32 {
    match h as u32 {
        EMPTY | GONE => 2,
        x => x,
    }
}

/// Where a probe for a hash ended.
pub(super) enum Probe {
    /// The place of the entry that matched.
    Found(usize),
    /// None matched; a new entry would go in this place.
    Vacant(usize),
}

/// Entries keyed by their kept hash; the caller confirms a match.
#[derive(Default)]
pub(super) struct IdTable {
    places: Vec<At>,
    /// Entries in the table.
    entries: usize,
    /// Places not empty: entries and emptied places, which both lengthen
    /// probes until the table is rebuilt.
    used: usize,
}

impl IdTable {
    /// A table with room for `n` entries.
    pub fn with_capacity(n: usize) -> IdTable {
        let mut t = IdTable::default();
        if n > 0 {
            t.places = vec![At::default(); places_for(n)];
        }
        t
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Looks up `hash`, offering each entry with that hash to `is` until
    /// one is confirmed.
    pub fn probe(&self, hash: u32, mut is: impl FnMut(&At) -> bool) -> Probe {
        let mask = self.places.len().wrapping_sub(1);
        if self.places.is_empty() {
            return Probe::Vacant(0);
        }
        let mut i = hash as usize & mask;
        let mut free = None;
        loop {
            let a = &self.places[i];
            match a.hash {
                EMPTY => return Probe::Vacant(free.unwrap_or(i)),
                GONE => {
                    free.get_or_insert(i);
                }
                h if h == hash && is(a) => return Probe::Found(i),
                _ => {}
            }
            i = (i + 1) & mask;
        }
    }

    /// Room for one more entry; call before the [`IdTable::probe`] whose
    /// vacant place [`IdTable::put`] fills.
    pub fn reserve_one(&mut self) {
        if 2 * (self.used + 1) > self.places.len() {
            // Emptied places go too, so the table may not need to grow.
            self.refill(places_for(self.entries + 1), |_| true);
        }
    }

    /// Puts `at` in the vacant place `i` a probe gave.
    pub fn put(&mut self, i: usize, at: At) {
        debug_assert!(at.hash > GONE);
        if self.places[i].hash == EMPTY {
            self.used += 1;
        }
        self.places[i] = at;
        self.entries += 1;
    }

    /// Takes out the entry in place `i`.
    pub fn remove(&mut self, i: usize) {
        self.places[i].hash = GONE;
        self.entries -= 1;
    }

    /// Keeps the entries `keep` says to and clears emptied places. The
    /// table keeps its size unless that is under `places` or over four
    /// times it: after a burst, every later sweep would read it all.
    pub fn sweep(&mut self, places: usize, keep: impl FnMut(&At) -> bool) {
        let now = self.places.len();
        let places = if (places..=4 * places).contains(&now) {
            now
        } else {
            places
        };
        self.refill(places, keep);
    }

    /// The entries `keep` says to, in a table of `places` places.
    fn refill(&mut self, places: usize, mut keep: impl FnMut(&At) -> bool) {
        let kept: Vec<At> = self
            .places
            .iter()
            .filter(|a| a.hash > GONE && keep(a))
            .copied()
            .collect();
        if places == self.places.len() {
            self.places.fill(At::default());
        } else {
            self.places = vec![At::default(); places];
        }
        let mask = places - 1;
        for a in &kept {
            let mut i = a.hash as usize & mask;
            while self.places[i].hash != EMPTY {
                i = (i + 1) & mask;
            }
            self.places[i] = *a;
        }
        self.entries = kept.len();
        self.used = kept.len();
    }
}

/// Places for `n` entries at most half full.
pub(super) fn places_for(n: usize) -> usize {
    (2 * n).next_power_of_two().max(MIN_PLACES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pos: u32, hash: u32) -> At {
        At { pos, hash }
    }

    /// Takes `a` in unless an entry with its position is there.
    fn take_in(t: &mut IdTable, a: At) -> bool {
        t.reserve_one();
        match t.probe(a.hash, |b| b.pos == a.pos) {
            Probe::Found(_) => false,
            Probe::Vacant(i) => {
                t.put(i, a);
                true
            }
        }
    }

    fn found(t: &IdTable, a: At) -> bool {
        matches!(t.probe(a.hash, |b| b.pos == a.pos), Probe::Found(_))
    }

    #[test]
    fn entries_with_one_hash_wrap_past_the_end_and_stay_found_around_removed_ones() {
        let mut t = IdTable::with_capacity(4);
        let last = t.places.len() as u32 - 1;
        // Five entries whose hash points at the last place: four wrap.
        let same: Vec<At> = (0..5).map(|p| at(p, last + 64)).collect();
        for &a in &same {
            assert!(take_in(&mut t, a));
        }
        assert!(!take_in(&mut t, same[2]), "already in");
        assert_eq!(t.len(), 5);
        // Out of the middle of the run: the ones behind it are still found.
        let Probe::Found(i) = t.probe(same[1].hash, |b| b.pos == 1) else {
            panic!("entry 1 is in");
        };
        t.remove(i);
        assert!(!found(&t, same[1]));
        for &a in [same[0], same[2], same[3], same[4]].iter() {
            assert!(found(&t, a), "{a:?}");
        }
        // The emptied place is taken again before the run grows.
        let used = t.used;
        assert!(take_in(&mut t, same[1]));
        assert_eq!((t.len(), t.used), (5, used));
        assert!(found(&t, same[1]));
    }

    #[test]
    fn growing_and_sweeping_keep_what_they_should_and_no_more_room_than_asked() {
        let hash = |p: u32| short_hash(u64::from(p).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut t = IdTable::default();
        for p in 0..10_000 {
            assert!(take_in(&mut t, at(p, hash(p))));
        }
        assert_eq!(t.len(), 10_000);
        assert!(2 * t.used <= t.places.len());
        // Keep every tenth; the table stays its size within four times
        // the room asked for, and shrinks past that.
        let size = t.places.len();
        t.sweep(size / 2, |a| a.pos % 10 == 0);
        assert_eq!((t.len(), t.places.len()), (1_000, size));
        for p in 0..10_000 {
            assert_eq!(found(&t, at(p, hash(p))), p % 10 == 0, "{p}");
        }
        t.sweep(places_for(100), |a| a.pos % 100 == 0);
        assert_eq!((t.len(), t.places.len()), (100, places_for(100)));
        for p in (0..10_000).step_by(100) {
            assert!(found(&t, at(p, hash(p))));
        }
    }

    #[test]
    fn the_hashes_that_mark_places_are_never_kept() {
        assert_eq!(short_hash(0), 2);
        assert_eq!(short_hash(1 << 32 | 1), 2);
        assert_eq!(short_hash(7), 7);
    }
}
