//! A ring of snapshots of every self-metric, one a second for 15 minutes:
//! rates and the 1/5/15-minute totals come from it, with no second store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::telemetry::{Registry, SeriesInfo};

/// How long the ring reaches back.
pub const SPAN: Duration = Duration::from_secs(15 * 60);
/// How often a snapshot is taken.
pub const EVERY: Duration = Duration::from_secs(1);

struct Snapshot {
    at: Instant,
    values: Vec<f64>,
}

/// The snapshots, newest last, and what each position means.
#[derive(Default)]
struct Ring {
    series: Vec<SeriesInfo>,
    snapshots: VecDeque<Snapshot>,
}

/// The shared ring; cheap to clone.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Ring>>);

/// One series now, with what it did over the ring's windows.
#[derive(Debug, Clone)]
pub struct Reading {
    /// Name and labels.
    pub info: SeriesInfo,
    /// The value now.
    pub value: f64,
    /// Per second over the last few seconds (for a gauge, how fast it
    /// moves: CPU seconds used).
    pub rate: f64,
    /// The increase over the last 1, 5 and 15 minutes, or over as much of
    /// them as the ring holds (counters; 0 for gauges).
    pub increase: [f64; 3],
}

/// The windows `Reading::increase` covers.
pub const WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];

/// Seconds the rate is taken over: short enough to move within a second
/// of a change, long enough not to flicker with each batch.
const RATE_OVER: Duration = Duration::from_secs(3);

impl History {
    /// Takes a snapshot of `reg` as of `at`, letting go of those older
    /// than [`SPAN`].
    pub fn take(&self, reg: &Registry, at: Instant) {
        let values = reg.values();
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.series.len() != values.len() {
            ring.series = reg.describe();
        }
        ring.snapshots.push_back(Snapshot { at, values });
        while ring
            .snapshots
            .front()
            .is_some_and(|s| at.duration_since(s.at) > SPAN + EVERY)
        {
            ring.snapshots.pop_front();
        }
    }

    /// Every series as of the newest snapshot.
    pub fn readings(&self) -> Vec<Reading> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(now) = ring.snapshots.back() else {
            return Vec::new();
        };
        // The newest snapshot at least `back` old, else the oldest held.
        let at_least = |back: Duration| {
            ring.snapshots
                .iter()
                .rev()
                .find(|s| now.at.duration_since(s.at) >= back)
                .or(ring.snapshots.front())
                .expect("not empty")
        };
        let rate_from = at_least(RATE_OVER);
        let dt = now.at.duration_since(rate_from.at).as_secs_f64();
        let from: Vec<&Snapshot> = WINDOWS.iter().map(|w| at_least(*w)).collect();
        // Series registered after an old snapshot started from zero.
        let old = |s: &Snapshot, i: usize| s.values.get(i).copied().unwrap_or(0.0);
        ring.series
            .iter()
            .zip(&now.values)
            .enumerate()
            .map(|(i, (info, &value))| {
                let counter = info.counter;
                let grew = |s: &Snapshot| {
                    if counter {
                        (value - old(s, i)).max(0.0)
                    } else {
                        0.0
                    }
                };
                let moved = value - old(rate_from, i);
                Reading {
                    info: info.clone(),
                    value,
                    rate: if dt > 0.0 { moved / dt + 0.0 } else { 0.0 },
                    increase: [grew(from[0]), grew(from[1]), grew(from[2])],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_windows_come_from_the_snapshots() {
        let reg = Registry::new();
        let c = reg.counter("c_total", "c", &[]);
        reg.gauge("g", "g", &[], || 7.0);
        let h = History::default();
        let t0 = Instant::now();
        for s in 0..=120u64 {
            if s == 90 {
                // A series born mid-way counts from zero.
                reg.counter("late_total", "l", &[]).add(5);
            }
            c.add(10);
            h.take(&reg, t0 + Duration::from_secs(s));
        }
        let r = h.readings();
        let get = |n: &str| r.iter().find(|x| x.info.name == n).unwrap().clone();
        let c = get("c_total");
        assert_eq!(c.value, 1210.0);
        assert_eq!(c.rate, 10.0);
        // One minute back is 600 more; five and fifteen minutes reach the
        // oldest snapshot (two minutes), 1200 more.
        assert_eq!(c.increase, [600.0, 1200.0, 1200.0]);
        let g = get("g");
        assert_eq!((g.value, g.rate, g.increase), (7.0, 0.0, [0.0; 3]));
        // Registered after the rate's first snapshot: it moved from zero.
        assert_eq!(get("late_total").rate, 0.0);
        assert_eq!(get("late_total").increase, [5.0, 5.0, 5.0]);
    }

    #[test]
    fn the_ring_lets_old_snapshots_go() {
        let reg = Registry::new();
        let h = History::default();
        let t0 = Instant::now();
        for s in 0..2000u64 {
            h.take(&reg, t0 + Duration::from_secs(s));
        }
        assert!(h.0.lock().unwrap().snapshots.len() <= 902);
    }
}
