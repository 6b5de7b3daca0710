//! Timestamps as otelcol's stanza parses them: `strptime` layouts with its
//! directives (`%L` milliseconds, `%f` microseconds, `%s` epoch seconds…),
//! Go layouts (`gotime`), and `epoch` numbers; `location` `Local` (the
//! default) or `UTC`.

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Local, NaiveTime, TimeZone, Utc};
use serde_json::Value;

/// A checked timestamp layout.
#[derive(Debug, Clone)]
pub enum Layout {
    /// A chrono format translated from strptime or Go; `utc` when the
    /// location is UTC.
    Format {
        items: Vec<Item<'static>>,
        utc: bool,
        rfc3339: bool,
    },
    /// Seconds, milliseconds, … since the epoch: nanoseconds per unit.
    Epoch(u64),
}

/// Translates otelcol's strptime directives into chrono's.
fn from_strptime(layout: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = layout.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let d = chars.next().ok_or("a layout cannot end with %")?;
        out.push_str(match d {
            'L' => "%3f",
            'f' => "%6f",
            's' => "%s",
            'Y' | 'y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'b' | 'h' | 'B' | 'a' | 'A' | 'e' | 'p'
            | 'z' | 'j' | 'I' | 'l' | 'k' | 'T' | 'D' | 'F' | 'R' | 'n' | 't' | '%' => {
                out.push('%');
                out.push(d);
                continue;
            }
            'Z' => return Err("%Z (zone names) is not supported: use %z".into()),
            'c' | 'x' | 'X' | 'i' | 'J' | 'q' | 'g' | 'G' | 'U' | 'w' => {
                return Err(format!("strptime directive %{d} is not supported"))
            }
            other => return Err(format!("unknown strptime directive %{other}")),
        });
    }
    Ok(out)
}

/// Translates a Go reference layout into chrono's.
fn from_gotime(layout: &str) -> Result<String, String> {
    const TOKENS: [(&str, &str); 22] = [
        ("2006", "%Y"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        (".000000000", "%.9f"),
        (".999999999", "%.f"),
        (".000000", "%.6f"),
        (".999999", "%.f"),
        (".000", "%.3f"),
        (".999", "%.f"),
        ("January", "%B"),
        ("Monday", "%A"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("15", "%H"),
        ("04", "%M"),
        ("05", "%S"),
        ("PM", "%p"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'next: while !rest.is_empty() {
        for (go, ch) in TOKENS {
            if let Some(r) = rest.strip_prefix(go) {
                if ch == "%Z" {
                    return Err("MST (zone names) is not supported: use -0700".into());
                }
                out.push_str(ch);
                rest = r;
                continue 'next;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

impl Layout {
    /// Checks `layout_type`, `layout` and `location`.
    pub fn new(layout_type: &str, layout: &str, location: Option<&str>) -> Result<Layout, String> {
        let utc = match location {
            None | Some("Local") => false,
            Some("UTC") => true,
            Some(other) => {
                return Err(format!(
                    "location {other:?} is not supported yet: use Local or UTC"
                ))
            }
        };
        match layout_type {
            "strptime" | "" => Ok(Layout::Format {
                items: items(&from_strptime(layout)?)?,
                utc,
                rfc3339: false,
            }),
            "gotime" => Ok(Layout::Format {
                rfc3339: layout.contains("Z07:00"),
                items: items(&from_gotime(layout)?)?,
                utc,
            }),
            "epoch" => Ok(Layout::Epoch(match layout {
                "s" | "s.ms" | "s.us" | "s.ns" => 1_000_000_000,
                "ms" => 1_000_000,
                "us" => 1_000,
                "ns" => 1,
                other => {
                    return Err(format!(
                        "epoch layout {other:?}: use s, ms, us, ns, s.ms, s.us or s.ns"
                    ))
                }
            })),
            other => Err(format!(
                "layout_type {other:?}: use strptime, gotime or epoch"
            )),
        }
    }

    /// Unix nanoseconds of `v`.
    pub fn parse(&self, v: &Value) -> Result<u64, String> {
        let nanos = |t: DateTime<Utc>| {
            t.timestamp_nanos_opt()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("{t} is out of range"))
        };
        match self {
            Layout::Epoch(scale) => {
                // Whole units and a decimal fraction, in integers: a float
                // would lose nanoseconds.
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.trim().to_string(),
                    _ => String::new(),
                };
                let bad = || format!("{v} is not an epoch number");
                let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
                let whole: u64 = whole.parse().map_err(|_| bad())?;
                let mut frac_ns = 0u64;
                let mut unit = *scale;
                for d in frac.bytes().take(9) {
                    if !d.is_ascii_digit() {
                        return Err(bad());
                    }
                    unit /= 10;
                    frac_ns += u64::from(d - b'0') * unit;
                }
                whole
                    .checked_mul(*scale)
                    .map(|w| w + frac_ns)
                    .ok_or_else(bad)
            }
            Layout::Format {
                items,
                utc,
                rfc3339,
            } => {
                let s = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
                if *rfc3339 {
                    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                        return nanos(t.with_timezone(&Utc));
                    }
                }
                let mut p = Parsed::new();
                chrono::format::parse(&mut p, s, items.iter())
                    .map_err(|e| format!("{s:?} does not match the layout: {e}"))?;
                if p.offset.is_some() || p.timestamp.is_some() {
                    let t = p.to_datetime().map_err(|e| format!("{s:?}: {e}"))?;
                    return nanos(t.with_timezone(&Utc));
                }
                // A date alone is midnight.
                let date = p.to_naive_date().map_err(|e| format!("{s:?}: {e}"))?;
                let time = p.to_naive_time().unwrap_or(NaiveTime::MIN);
                let naive = date.and_time(time);
                let t = if *utc {
                    Utc.from_utc_datetime(&naive)
                } else {
                    Local
                        .from_local_datetime(&naive)
                        .earliest()
                        .ok_or_else(|| format!("{s:?} does not exist in local time"))?
                        .with_timezone(&Utc)
                };
                nanos(t)
            }
        }
    }
}

/// A chrono format's items, checked once.
fn items(format: &str) -> Result<Vec<Item<'static>>, String> {
    StrftimeItems::new(format)
        .parse_to_owned()
        .map_err(|e| format!("invalid layout: {e}"))
}

/// otelcol's default severity mapping of a level name.
pub fn severity_of(text: &str) -> Option<i32> {
    Some(match text.trim().to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "information" | "informational" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "err" => 17,
        "fatal" | "critical" | "crit" | "panic" | "emergency" | "emerg" | "alert" => 21,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strptime_gotime_and_epoch() {
        let l = Layout::new("strptime", "%Y-%m-%dT%H:%M:%S.%LZ", Some("UTC")).unwrap();
        assert_eq!(
            l.parse(&json!("2026-11-30T10:00:00.123Z")).unwrap(),
            1_796_032_800_123_000_000
        );
        let l = Layout::new("strptime", "%Y-%m-%d %H:%M:%S.%f %z", None).unwrap();
        assert_eq!(
            l.parse(&json!("2026-11-30 11:00:00.000001 +0100")).unwrap(),
            1_796_032_800_000_001_000
        );
        let l = Layout::new("gotime", "2006-01-02T15:04:05Z07:00", None).unwrap();
        assert_eq!(
            l.parse(&json!("2026-11-30T10:00:00Z")).unwrap(),
            1_796_032_800_000_000_000
        );
        let l = Layout::new("epoch", "s.us", None).unwrap();
        assert_eq!(
            l.parse(&json!("1796032800.000123")).unwrap(),
            1_796_032_800_000_123_000
        );
        let l = Layout::new("epoch", "ms", None).unwrap();
        assert_eq!(
            l.parse(&json!(1_796_032_800_123u64)).unwrap(),
            1_796_032_800_123_000_000
        );
        assert!(Layout::new("strptime", "%Y %Z", None).is_err());
        assert!(Layout::new("strptime", "%Y", Some("Europe/Paris")).is_err());
        assert!(Layout::new("strptime", "%Y-%m-%d", Some("UTC"))
            .unwrap()
            .parse(&json!("nope"))
            .is_err());
        assert_eq!(severity_of("WARNING"), Some(13));
    }
}
