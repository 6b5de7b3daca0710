//! Named detectors for common secrets and personal data. Each is a regex
//! that finds candidates plus, where a pattern alone would catch harmless
//! look-alikes, a check on the candidate (Luhn for cards, valid ranges for
//! SSNs).

use regex::Regex;

/// A detector: what to find, which capture group to mask, and a check.
pub struct Preset {
    /// The name used in configs.
    pub name: &'static str,
    /// Candidates.
    pub regex: Regex,
    /// The group masked (0 = the whole match).
    pub group: usize,
    /// Confirms a candidate.
    pub check: fn(&str) -> bool,
    /// A necessary condition on the value's [`Shape`]: false means the
    /// regex cannot match, so most values skip the regex engine.
    pub hint: fn(&Shape, &[u8]) -> bool,
    /// The shortest value (in bytes) the regex can match.
    pub min_len: usize,
}

/// What one pass over a value's bytes tells the presets' hints.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// ASCII digits.
    pub digits: u32,
    /// `.` characters.
    pub dots: u32,
    /// Any `@`.
    pub at: bool,
    /// `-` characters.
    pub dashes: u32,
    /// Any `=`.
    pub eq: bool,
    /// Any `?` or `&`.
    pub query: bool,
    /// Any byte outside ASCII. `\d`, `\b` and `(?i)` are Unicode-aware, so
    /// hints give up (say "maybe") on such values.
    pub non_ascii: bool,
    /// Any `b` or `B` (as "bearer" starts).
    pub b: bool,
    /// Any ASCII whitespace (a bearer token follows some).
    pub space: bool,
    /// Any `k` (as in "sk-").
    pub k: bool,
    /// Any `K` (as in "AKIA").
    pub upper_k: bool,
}

/// Byte classes for [`Shape::of`], one bit each.
const DIGIT: u16 = 1;
const DOT: u16 = 2;
const AT: u16 = 4;
const DASH: u16 = 8;
const EQ: u16 = 16;
const QUERY: u16 = 32;
const NON_ASCII: u16 = 64;
const LETTER_B: u16 = 128;
const SPACE: u16 = 256;
const LOWER_K: u16 = 512;
const UPPER_K: u16 = 1024;

/// The class bits of every byte value: a table lookup per byte instead of
/// a chain of compares keeps the scan branch-free.
static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'0'..=b'9' => DIGIT,
            b'.' => DOT,
            b'@' => AT,
            b'-' => DASH,
            b'=' => EQ,
            b'?' | b'&' => QUERY,
            0x80..=0xff => NON_ASCII,
            b'b' | b'B' => LETTER_B,
            // What the regex crate's ASCII `\s` matches.
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => SPACE,
            b'k' => LOWER_K,
            b'K' => UPPER_K,
            _ => 0,
        };
        b += 1;
    }
    t
};

impl Shape {
    /// Scans a value once.
    pub fn of(bytes: &[u8]) -> Shape {
        let (mut digits, mut dots, mut dashes, mut seen) = (0u32, 0u32, 0u32, 0u16);
        for &b in bytes {
            let c = CLASS[b as usize];
            digits += u32::from(c & DIGIT);
            dots += u32::from((c & DOT) >> 1);
            dashes += u32::from((c & DASH) >> 3);
            seen |= c;
        }
        Shape {
            digits,
            dots,
            at: seen & AT != 0,
            dashes,
            eq: seen & EQ != 0,
            query: seen & QUERY != 0,
            non_ascii: seen & NON_ASCII != 0,
            b: seen & LETTER_B != 0,
            space: seen & SPACE != 0,
            k: seen & LOWER_K != 0,
            upper_k: seen & UPPER_K != 0,
        }
    }
}

/// Whether `hay` holds `needle`. Values are short: finding the first byte
/// and comparing there beats building a substring searcher per call.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memchr_iter(needle[0], hay).any(|at| hay[at..].starts_with(needle))
}

/// Whether `hay` holds `needle` (lowercase ASCII) in any case.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let (first, rest) = (needle[0], &needle[1..]);
    // Candidates start where the first letter is, in either case.
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), hay).any(|at| {
        hay.get(at + 1..at + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(rest))
    })
}

fn email_hint(s: &Shape, b: &[u8]) -> bool {
    s.non_ascii || (s.at && s.dots > 0 && b.len() >= 6)
}

fn card_hint(s: &Shape, b: &[u8]) -> bool {
    s.non_ascii || (s.digits >= 13 && digit_chain(b) >= 13)
}

/// The most digits in a row, where one space or dash may sit between two
/// of them (as the card regex allows): ids and dates with 13 digits
/// spread among letters are never candidates.
fn digit_chain(b: &[u8]) -> u32 {
    let (mut best, mut run, mut after_sep) = (0, 0, false);
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
            after_sep = false;
            best = best.max(run);
        } else if (c == b' ' || c == b'-') && run > 0 && !after_sep {
            after_sep = true;
        } else {
            run = 0;
            after_sep = false;
        }
    }
    best
}

fn ssn_hint(s: &Shape, b: &[u8]) -> bool {
    s.non_ascii || (s.digits >= 9 && s.dashes >= 2 && has_ssn_layout(b))
}

/// Whether `ddd-dd-dddd` occurs: model names and dates such as
/// `gpt-4o-2024-08-06` have the digits and dashes but not the layout.
fn has_ssn_layout(b: &[u8]) -> bool {
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    memchr::memchr_iter(b'-', b).any(|i| {
        i >= 3
            && b.get(i + 3) == Some(&b'-')
            && digits(i - 3..i)
            && digits(i + 1..i + 3)
            && digits(i + 4..i + 8)
    })
}

fn ipv4_hint(s: &Shape, _: &[u8]) -> bool {
    s.non_ascii || (s.digits >= 4 && s.dots >= 3)
}

fn bearer_hint(s: &Shape, b: &[u8]) -> bool {
    // "bearer", a space, at least 8 token characters.
    s.non_ascii || (b.len() >= 15 && s.b && s.space && contains_ignore_case(b, b"bearer"))
}

fn api_key_hint(s: &Shape, b: &[u8]) -> bool {
    s.non_ascii
        || (b.len() >= 19
            && ((s.k && s.dashes > 0 && contains(b, b"sk-"))
                || (s.upper_k && contains(b, b"AKIA"))))
}

fn url_secret_hint(s: &Shape, _: &[u8]) -> bool {
    s.non_ascii || (s.eq && s.query)
}

fn any(_: &str) -> bool {
    true
}

/// The Luhn checksum over the digits of `s` (13 to 19 digits).
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// US SSNs never have area 000, 666 or 9xx, group 00 or serial 0000.
fn ssn(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [area, group, serial] = parts.as_slice() else {
        return false;
    };
    *area != "000"
        && *area != "666"
        && !area.starts_with('9')
        && *group != "00"
        && *serial != "0000"
}

/// The names presets answer to.
pub const NAMES: [&str; 7] = [
    "email",
    "credit_card",
    "us_ssn",
    "ipv4",
    "bearer_token",
    "api_key",
    "url_secret",
];

type Check = fn(&str) -> bool;
type Hint = fn(&Shape, &[u8]) -> bool;

/// The preset called `name`.
pub fn preset(name: &str) -> Option<Preset> {
    let (regex, group, check, hint, min_len): (&str, usize, Check, Hint, usize) = match name {
        "email" => (
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
            0,
            any,
            email_hint,
            6,
        ),
        // 13-19 digits, optionally grouped by spaces or dashes.
        "credit_card" => (r"\b\d(?:[ -]?\d){12,18}\b", 0, luhn, card_hint, 13),
        "us_ssn" => (r"\b\d{3}-\d{2}-\d{4}\b", 0, ssn, ssn_hint, 11),
        "ipv4" => (
            r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
            0,
            any,
            ipv4_hint,
            7,
        ),
        "bearer_token" => (
            r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)",
            1,
            any,
            bearer_hint,
            15,
        ),
        "api_key" => (
            r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b",
            0,
            any,
            api_key_hint,
            19,
        ),
        "url_secret" => (
            r"(?i)[?&](?:token|access_token|key|api_key|apikey|password|passwd|secret|sig)=([^&#\s]+)",
            1,
            any,
            url_secret_hint,
            6,
        ),
        _ => return None,
    };
    Some(Preset {
        name: NAMES.iter().find(|n| **n == name).copied()?,
        regex: Regex::new(regex).expect("preset regexes are valid"),
        group,
        check,
        hint,
        min_len,
    })
}
