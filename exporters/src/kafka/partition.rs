//! Which partition a keyed message goes to, as otelcol's Kafka exporter
//! chooses it (Sarama's hash partitioner, which franz-go's
//! `SaramaCompatHasher` reproduces): FNV-1a 32 of the key, taken as a
//! signed 32-bit number, remainder by the partition count, sign dropped.
//! librdkafka's own `fnv1a` partitioner keeps the hash unsigned, so for
//! about half the keys it picks another partition: mixed fleets would split
//! traces. Messages carry an explicit partition from here instead.

/// FNV-1a, 32 bits.
pub fn fnv1a32(key: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Sarama's `hashPartitioner` (the default `NewHashPartitioner`).
pub fn sarama_partition(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    // Go's `%` truncates toward zero like Rust's: a negative hash gives a
    // remainder in (-n, 0], which Sarama negates.
    ((fnv1a32(key) as i32) % partitions).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference test suite (Landon Curt Noll's test vectors).
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn partitions_follow_saramas_signed_remainder() {
        // "a" hashes to 0xe40c292c: as i32 that is -468965076; Go's
        // -468965076 % 10 is -6, negated 6 (unsigned it would be 0).
        assert_eq!(sarama_partition(b"a", 10), 6);
        assert_eq!(fnv1a32(b"a") % 10, 0);
        // "foobar": 0xbf9cf968 = -1080231576 as i32; % 7 = -4, so 4.
        assert_eq!(sarama_partition(b"foobar", 7), 4);
        // "": 0x811c9dc5 = -2128831035 as i32; % 3 = 0.
        assert_eq!(sarama_partition(b"", 3), 0);
        assert_eq!(sarama_partition(b"anything", 1), 0);
    }

    #[test]
    fn trace_id_keys_land_where_sarama_puts_them() {
        // Keys are the trace id in lowercase hex, as otelcol writes them.
        let cases: [(&str, [i32; 3]); 3] = [
            ("0102030405060708090a0b0c0d0e0f10", [2, 6, 2]),
            ("5b8efff798038103d269b633813fc60c", [2, 1, 5]),
            ("4bf92f3577b34da6a3ce929d0e0e4736", [0, 6, 6]),
        ];
        for (key, want) in cases {
            let got = [3, 8, 12].map(|n| sarama_partition(key.as_bytes(), n));
            assert_eq!(got, want, "{key}");
        }
        // The unsigned remainder (librdkafka's fnv1a) differs for these.
        assert_eq!(fnv1a32(b"5b8efff798038103d269b633813fc60c") % 12, 11);
    }

    #[test]
    fn trace_id_keys_spread_over_every_partition() {
        let mut seen = [0usize; 12];
        for i in 0u128..4096 {
            let key = format!(
                "{:032x}",
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
            );
            seen[sarama_partition(key.as_bytes(), 12) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 200), "{seen:?}");
    }
}
