//! Durations written as Go writes them (`200ms`, `5s`, `1m30s`), as otelcol
//! configs do; use with `#[serde(with = "pipeline::duration")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses a Go duration string: a sequence of decimal numbers with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; `0` alone is allowed.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?}: expected a number with a unit, like 200ms, 5s or 1m30s")
    };
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats like Go for the common cases (`200ms`, `5s`).
pub fn format(d: &Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// serde deserializer for Go duration strings.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// serde serializer writing Go duration strings.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse("200ms").unwrap(), ms(200));
        assert_eq!(parse("5s").unwrap(), ms(5000));
        assert_eq!(parse("1m30s").unwrap(), ms(90_000));
        assert_eq!(parse("1.5h").unwrap(), ms(5_400_000));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("250us").unwrap(), Duration::from_micros(250));
        for bad in ["", "5", "s", "5 s", "-1s", "5sec", "1..5s"] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(format(&ms(200)), "200ms");
        assert_eq!(format(&ms(5000)), "5s");
    }
}
