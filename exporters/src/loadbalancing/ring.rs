//! The consistent-hash ring otelcol-contrib's `loadbalancing` exporter
//! uses, reproduced so that Observatory and otelcol instances route the same
//! trace to the same backend and a fleet can move over one instance at a
//! time. The rule: endpoints sorted as strings; each gets 100 positions,
//! CRC-32 (IEEE) of its bytes followed by one byte `i` (0..99), modulo
//! 36,000; on a collision the endpoint first in order keeps the position; a
//! key's position is CRC-32 of its bytes modulo 36,000, and its owner is
//! the first position at or after it, wrapping around.

/// Positions on the ring (360 degrees with two decimals).
const POSITIONS: u32 = 36_000;

/// Positions per endpoint.
const WEIGHT: u8 = 100;

/// An immutable ring over a set of endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ring {
    /// (position, index into `endpoints`), by position.
    items: Vec<(u32, u16)>,
    /// The endpoints, sorted and without duplicates.
    endpoints: Vec<String>,
}

fn position(bytes: &[u8], extra: Option<u8>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    if let Some(b) = extra {
        h.update(&[b]);
    }
    h.finalize() % POSITIONS
}

impl Ring {
    /// A ring over `endpoints` (any order; duplicates count once).
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Ring {
        Ring::with_weight(endpoints, WEIGHT)
    }

    fn with_weight<S: AsRef<str>>(endpoints: &[S], weight: u8) -> Ring {
        let mut endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
        endpoints.sort();
        endpoints.dedup();
        let mut taken = std::collections::HashSet::new();
        let mut items = Vec::with_capacity(endpoints.len() * weight as usize);
        for (i, e) in endpoints.iter().enumerate() {
            for n in 0..weight {
                let p = position(e.as_bytes(), Some(n));
                if taken.insert(p) {
                    items.push((p, i as u16));
                }
            }
        }
        items.sort_unstable();
        Ring { items, endpoints }
    }

    /// The endpoints, sorted.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The index (into [`Ring::endpoints`]) of the owner of `key`; `None`
    /// for an empty ring.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        let first = self.items.first()?;
        let p = position(key, None);
        let i = self.items.partition_point(|(q, _)| *q < p);
        Some(self.items.get(i).unwrap_or(first).1 as usize)
    }

    /// The owner's endpoint.
    pub fn owner_endpoint(&self, key: &[u8]) -> Option<&str> {
        self.owner(key).map(|i| self.endpoints[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// otelcol-contrib's own vectors (`consistent_hashing_test.go`):
    /// positions of "endpoint-1" and "endpoint-2" at weight 5, and the
    /// owners of two trace ids on the full ring of those two endpoints.
    #[test]
    fn otelcols_published_vectors() {
        let r = Ring::with_weight(&["endpoint-2", "endpoint-1", "endpoint-1"], 5);
        let got: Vec<(u32, &str)> = r
            .items
            .iter()
            .map(|(p, i)| (*p, r.endpoints[*i as usize].as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1401, "endpoint-1"),
                (4175, "endpoint-1"),
                (10240, "endpoint-2"),
                (14133, "endpoint-1"),
                (15002, "endpoint-2"),
                (17836, "endpoint-1"),
                (21263, "endpoint-2"),
                (21667, "endpoint-1"),
                (26806, "endpoint-2"),
                (27020, "endpoint-2"),
            ]
        );
        let r = Ring::new(&["endpoint-1", "endpoint-2"]);
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&[1, 2]);
        let mut b = [0u8; 16];
        b[..2].copy_from_slice(&[128, 128]);
        assert_eq!(r.owner_endpoint(&a), Some("endpoint-1"));
        assert_eq!(r.owner_endpoint(&b), Some("endpoint-2"));
    }

    /// Vectors computed independently with Python's `zlib.crc32` following
    /// the rule in the module docs, for three `ip:port` endpoints.
    #[test]
    fn three_endpoint_vectors_from_an_independent_implementation() {
        let r = Ring::new(&["10.0.0.3:4317", "10.0.0.1:4317", "10.0.0.2:4317"]);
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        for (id, owner) in [
            ("000102030405060708090a0b0c0d0e0f", "10.0.0.1:4317"),
            ("ffffffffffffffffffffffffffffffff", "10.0.0.1:4317"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "10.0.0.3:4317"),
            ("0af7651916cd43dd8448eb211c80319c", "10.0.0.1:4317"),
        ] {
            assert_eq!(r.owner_endpoint(&hex(id)), Some(owner), "{id}");
        }
        assert_eq!(Ring::new::<&str>(&[]).owner(b"x"), None);
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_keys() {
        let all = Ring::new(&["a:1", "b:1", "c:1"]);
        let two = Ring::new(&["a:1", "b:1"]);
        let mut moved = 0;
        for k in 0u32..10_000 {
            let key = k.to_le_bytes();
            let before = all.owner_endpoint(&key).unwrap();
            let after = two.owner_endpoint(&key).unwrap();
            if before != "c:1" {
                assert_eq!(before, after);
            } else {
                moved += 1;
            }
        }
        assert!(moved > 2_000 && moved < 4_700, "{moved}");
    }
}
