//! Unix nanoseconds to a UTC calendar date and time, for file paths and
//! SQL literals (no time-zone database needed for UTC).

/// A UTC instant split into its calendar parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–59.
    pub second: u32,
    /// 0–999,999.
    pub micros: u32,
}

/// The calendar parts of `ns` nanoseconds after 1970-01-01T00:00:00Z.
pub fn utc(ns: u64) -> Utc {
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    // Days since the epoch to a proleptic Gregorian date, by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Utc {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3_600,
        minute: rem % 3_600 / 60,
        second: rem % 60,
        micros: ((ns % 1_000_000_000) / 1_000) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let t = utc(1_700_000_000_123_456_789);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros),
            (2023, 11, 14, 22, 13, 20, 123_456)
        );
        let leap = utc(1_709_208_000_000_000_000);
        assert_eq!(
            (leap.year, leap.month, leap.day, leap.hour),
            (2024, 2, 29, 12)
        );
        let epoch = utc(0);
        assert_eq!((epoch.year, epoch.month, epoch.day), (1970, 1, 1));
        let eoy = utc(1_735_689_599_000_000_000);
        assert_eq!(
            (eoy.year, eoy.month, eoy.day, eoy.second),
            (2024, 12, 31, 59)
        );
    }
}
