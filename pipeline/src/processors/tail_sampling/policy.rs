//! Tail sampling policies, evaluated on a held trace's span index entries
//! and, for attribute policies, on the span bytes read in place.

use std::sync::{Arc, Mutex};

use memchr::memmem::Finder;
use regex::Regex;

use super::config::PolicyConfig;
use crate::component::ConfigError;
use crate::fasthash::FastMap;
use crate::inplace::{
    for_each_attribute_from, for_each_raw_attribute, for_each_resource_attribute, same_bytes,
    span_scalars, AttrValue, RESOURCE_ATTRIBUTES, SPAN_ATTRIBUTES,
};
use crate::scan::SpanEntry;

/// An attribute key policies look for, and its bit in [`AttrTests`] once
/// it has one.
#[derive(Debug, Clone)]
pub struct AttrKey {
    name: String,
    bit: Option<u32>,
}

impl AttrKey {
    fn new(name: String) -> AttrKey {
        AttrKey { name, bit: None }
    }
}

/// The regexes of a `string_attribute` policy and, with `cache_max_size`,
/// a cache of match results by value (models and routes repeat, regexes
/// cost). otelcol keeps an LRU of that size; this one is emptied when full,
/// so it is bounded the same way. Shared by the policy's clones; a busy
/// lock is skipped rather than waited on.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    regexes: Vec<Regex>,
    cache: Option<Arc<Mutex<MatchCache>>>,
}

#[derive(Debug)]
struct MatchCache {
    cap: usize,
    seen: FastMap<String, bool>,
}

impl Patterns {
    fn new(regexes: Vec<Regex>, cache_max_size: usize) -> Patterns {
        let cache = (cache_max_size > 0 && !regexes.is_empty()).then(|| {
            Arc::new(Mutex::new(MatchCache {
                cap: cache_max_size,
                seen: FastMap::default(),
            }))
        });
        Patterns { regexes, cache }
    }

    fn is_match(&self, s: &str) -> bool {
        if self.regexes.is_empty() {
            return false;
        }
        let Some(cache) = &self.cache else {
            return self.regexes.iter().any(|r| r.is_match(s));
        };
        if let Some(&hit) = cache
            .try_lock()
            .ok()
            .and_then(|c| c.seen.get(s).copied())
            .as_ref()
        {
            return hit;
        }
        let m = self.regexes.iter().any(|r| r.is_match(s));
        if let Ok(mut c) = cache.try_lock() {
            if c.seen.len() >= c.cap {
                c.seen.clear();
            }
            c.seen.insert(s.to_owned(), m);
        }
        m
    }

    /// Values whose result is cached now.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(0, |c| c.lock().unwrap().seen.len())
    }
}

/// What an attribute policy asks of one value.
#[derive(Debug, Clone)]
enum AttrTest {
    Numeric(f64, f64),
    Str(Patterns, Vec<String>),
    Bool(bool),
}

impl AttrTest {
    fn test(&self, v: AttrValue) -> bool {
        match self {
            AttrTest::Numeric(min, max) => v.number().is_some_and(|n| n >= *min && n <= *max),
            AttrTest::Str(regexes, exact) => match v {
                AttrValue::Str(s) => exact.iter().any(|e| e == s) || regexes.is_match(s),
                _ => false,
            },
            AttrTest::Bool(want) => v == AttrValue::Bool(*want),
        }
    }
}

/// Every attribute policy's test (nested ones too), one bit each, so a
/// span's attributes are read once, when it arrives and its bytes are still
/// in cache, and a decision ten seconds later reads one word per trace.
#[derive(Debug, Clone, Default)]
pub struct AttrTests {
    tests: Vec<(String, AttrTest)>,
    /// The distinct keys, searched for in a span's bytes before its
    /// attributes are walked: a span that lacks every key's bytes cannot
    /// hold any of them, and most spans lack them. `None` (too many keys
    /// to be worth it) always walks.
    keys: Option<Vec<Finder<'static>>>,
}

/// Beyond this many distinct keys one walk is cheaper than the searches.
const PREFILTER_KEYS: usize = 4;

impl AttrTests {
    /// Gives each attribute policy in `policies` a bit (up to 64; the
    /// rest walk the spans when deciding).
    pub fn assign(policies: &mut [Policy]) -> AttrTests {
        let mut tests = AttrTests::default();
        for p in policies {
            tests.collect(p);
        }
        let mut names: Vec<&str> = tests.tests.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        tests.keys = (names.len() <= PREFILTER_KEYS).then(|| {
            names
                .iter()
                .map(|n| Finder::new(n.as_bytes()).into_owned())
                .collect()
        });
        tests
    }

    fn collect(&mut self, p: &mut Policy) {
        let (key, test) = match p {
            Policy::Numeric(key, min, max, _) => (key, AttrTest::Numeric(*min, *max)),
            Policy::Str(key, regexes, exact, _) => {
                (key, AttrTest::Str(regexes.clone(), exact.clone()))
            }
            Policy::Bool(key, want, _) => (key, AttrTest::Bool(*want)),
            Policy::And(subs) | Policy::Drop(subs) => {
                subs.iter_mut().for_each(|s| self.collect(s));
                return;
            }
            Policy::Composite(_, shares) => {
                shares.iter_mut().for_each(|s| self.collect(&mut s.policy));
                return;
            }
            _ => return,
        };
        if self.tests.len() < 64 {
            key.bit = Some(self.tests.len() as u32);
            self.tests.push((key.name.clone(), test));
        }
    }

    /// Whether there is nothing to test.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Where the first of the keys' bytes lies in `field` (0 when the
    /// keys are not searched for, see `keys`); `None` when none is there.
    fn first_key(&self, field: &[u8]) -> Option<usize> {
        match &self.keys {
            None => Some(0),
            Some(keys) => keys.iter().filter_map(|k| k.find(field)).min(),
        }
    }

    /// The bits whose test a span (whole `spans` field) passes.
    pub fn span(&self, field: &[u8]) -> u64 {
        self.bits(field, SPAN_ATTRIBUTES)
    }

    /// The bits whose test a resource (whole `resource` field) passes.
    pub fn resource(&self, field: &[u8]) -> u64 {
        self.bits(field, RESOURCE_ATTRIBUTES)
    }

    /// The bits whose test the attributes at field `number` of the message
    /// in `field` pass.
    fn bits(&self, field: &[u8], number: u32) -> u64 {
        let mut hits = 0;
        if let Some(from) = self.first_key(field) {
            // An attribute that ends before the first key's bytes cannot be
            // named by any key: those (most of a span's, when the key is
            // one llm_cost appended) are passed over unread.
            for_each_attribute_from(field, number, from, |k, v| hits |= self.hits(k, v));
        }
        hits
    }

    fn hits(&self, key: &[u8], v: crate::inplace::RawValue) -> u64 {
        let mut hits = 0;
        for (bit, (name, test)) in self.tests.iter().enumerate() {
            if same_bytes(name.as_bytes(), key) && test.test(v.get()) {
                hits |= 1 << bit;
            }
        }
        hits
    }
}

/// One held span as policies see it.
pub struct SpanRef<'a> {
    /// Its index entry.
    pub entry: &'a SpanEntry,
    /// Its whole encoded `spans` field.
    pub field: &'a [u8],
    /// Its resource's whole encoded `resource` field (empty if none).
    pub resource: &'a [u8],
}

/// What the index tells of a trace's spans, folded as they come in: the
/// policies that need no more decide without reading the held requests
/// again, whose index entries are long out of the cache by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Spans.
    pub spans: u64,
    /// The earliest start, Unix nanoseconds (`u64::MAX` with no span).
    pub start: u64,
    /// The latest end, Unix nanoseconds.
    pub end: u64,
    /// One bit per status code seen (codes past 63 share bit 63).
    pub statuses: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            spans: 0,
            start: u64::MAX,
            end: 0,
            statuses: 0,
        }
    }
}

fn status_bit(code: u8) -> u64 {
    1 << code.min(63)
}

impl Summary {
    /// Counts one span in.
    pub fn add(&mut self, e: &SpanEntry) {
        self.spans += 1;
        self.start = self.start.min(e.start_time_unix_nano);
        self.end = self.end.max(e.end_time_unix_nano);
        self.statuses |= status_bit(e.status_code);
    }

    /// Counts another summary's spans in.
    pub fn merge(&mut self, o: &Summary) {
        self.spans += o.spans;
        self.start = self.start.min(o.start);
        self.end = self.end.max(o.end);
        self.statuses |= o.statuses;
    }

    /// The summary of `spans`.
    pub fn of(spans: &[SpanRef]) -> Summary {
        let mut s = Summary::default();
        for r in spans {
            s.add(r.entry);
        }
        s
    }
}

/// A held trace as policies see it.
pub struct TraceView<'a> {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// Its spans' index entries and bytes; empty unless a policy reads
    /// span bytes ([`Policy::reads_span_bytes`]).
    pub spans: Vec<SpanRef<'a>>,
    /// Its spans' times, statuses and count.
    pub summary: Summary,
    /// The current second of the sampler's clock, for rate limits.
    pub second: u64,
    /// Attribute-test bits found in the trace's spans and resources as they
    /// arrived (see [`AttrTests`]); `None` makes attribute policies walk
    /// the spans instead.
    pub hits: Option<u64>,
}

impl TraceView<'_> {
    /// Whether any span, or any span's resource, has attribute `key` with a
    /// value `test` accepts (otelcol's attribute policies look at both).
    fn any_attribute(&self, key: &AttrKey, mut test: impl FnMut(AttrValue) -> bool) -> bool {
        if let (Some(hits), Some(bit)) = (self.hits, key.bit) {
            return hits & (1 << bit) != 0;
        }
        let mut hit = false;
        let mut seen: &[u8] = &[];
        for s in &self.spans {
            let mut check = |k: &[u8], v: crate::inplace::RawValue| {
                if !hit && k == key.name.as_bytes() && test(v.get()) {
                    hit = true;
                }
            };
            // Spans of one resource are usually adjacent: check it once.
            if !std::ptr::eq(seen, s.resource) {
                for_each_resource_attribute(s.resource, &mut check);
                seen = s.resource;
            }
            for_each_raw_attribute(s.field, &mut check);
            if hit {
                return true;
            }
        }
        false
    }
}

/// What a policy says about a trace. The inverted forms come from
/// `invert_match` and take part in otelcol's precedence (see
/// [`final_decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Sampled,
    /// This policy would not keep it.
    NotSampled,
    /// An inverted policy found no match: keep it unless another policy
    /// says not to.
    InvertSampled,
    /// An inverted policy found a match: do not keep it.
    InvertNotSampled,
    /// A `drop` policy matched: never keep it.
    Dropped,
}

impl Verdict {
    /// Whether the verdict counts as sampling inside `and`, `drop` and
    /// `composite`, where inversions are plain decisions.
    pub fn samples(self) -> bool {
        matches!(self, Verdict::Sampled | Verdict::InvertSampled)
    }
}

/// Which verdicts the top-level policies gave a trace (a bit per kind).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally(u8);

impl Tally {
    /// Notes one policy's verdict.
    pub fn add(&mut self, v: Verdict) {
        self.0 |= 1 << v as u8;
    }

    fn has(self, v: Verdict) -> bool {
        self.0 & (1 << v as u8) != 0
    }

    /// otelcol's precedence: a drop or an inverted match refuses; then any
    /// sample keeps; then an inverted non-match keeps if no policy said
    /// not sampled.
    pub fn keep(self) -> bool {
        use Verdict::*;
        if self.has(Dropped) || self.has(InvertNotSampled) {
            return false;
        }
        self.has(Sampled) || (self.has(InvertSampled) && !self.has(NotSampled))
    }
}

/// [`Tally::keep`] over a list of verdicts.
pub fn final_decision(verdicts: &[Verdict]) -> bool {
    let mut t = Tally::default();
    verdicts.iter().for_each(|v| t.add(*v));
    t.keep()
}

fn plain(hit: bool) -> Verdict {
    if hit {
        Verdict::Sampled
    } else {
        Verdict::NotSampled
    }
}

fn inverted(hit: bool, invert: bool) -> Verdict {
    match (invert, hit) {
        (false, hit) => plain(hit),
        (true, true) => Verdict::InvertNotSampled,
        (true, false) => Verdict::InvertSampled,
    }
}

/// Spans sampled in the current second, reset when the second changes.
#[derive(Debug, Clone, Default)]
pub struct SecondCounter {
    second: u64,
    spans: u64,
}

impl SecondCounter {
    /// Adds `n` spans if `fits(total)` accepts the new total this second.
    fn take(&mut self, second: u64, n: u64, fits: impl Fn(u64) -> bool) -> bool {
        if self.second != second {
            self.second = second;
            self.spans = 0;
        }
        let total = self.spans + n;
        if fits(total) {
            self.spans = total;
        }
        fits(total)
    }
}

/// A `composite` sub-policy with its share of the span rate.
#[derive(Debug, Clone)]
pub struct Share {
    /// The sub-policy.
    pub policy: Policy,
    /// Spans per second it may sample.
    pub allocated: f64,
    /// What it sampled this second.
    pub used: SecondCounter,
}

/// Whether a W3C tracestate holds `key` with one of `values`.
pub fn trace_state_has(state: &str, key: &str, values: &[String]) -> bool {
    state.split(',').any(|member| {
        member
            .trim()
            .split_once('=')
            .is_some_and(|(k, v)| k == key && values.iter().any(|want| want == v))
    })
}

/// A checked policy.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Keep everything.
    AlwaysSample,
    /// Trace duration in [min, max] (max 0 = unbounded), nanoseconds.
    Latency(u64, u64),
    /// Any span with one of these status codes.
    StatusCode(Vec<u8>),
    /// Any span whose numeric attribute is in range.
    Numeric(AttrKey, f64, f64, bool),
    /// Any span whose string attribute matches.
    Str(AttrKey, Patterns, Vec<String>, bool),
    /// Any span whose boolean attribute has the value.
    Bool(AttrKey, bool, bool),
    /// Trace-id hash under a threshold (otelcol's FNV-1a 64 with salt).
    Probabilistic(String, u64),
    /// Span count in [min, max] (max 0 = unbounded).
    SpanCount(usize, usize),
    /// Every sub-policy samples.
    And(Vec<Policy>),
    /// Every sub-policy samples: then the trace is dropped.
    Drop(Vec<Policy>),
    /// Spans per second sampled (otelcol: strictly fewer than this).
    RateLimiting(u64, SecondCounter),
    /// Any span's trace state has the key with one of the values.
    TraceState(String, Vec<String>),
    /// Sub-policies in order, each within its share of the total rate.
    Composite(u64, Vec<Share>),
}

/// otelcol's tail-sampling hash: FNV-1a 64 over the salt, then the id.
pub fn salted_hash(salt: &str, id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.as_bytes().iter().chain(id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn need<T: Clone>(v: &Option<T>, at: &str, kind: &str) -> Result<T, ConfigError> {
    v.clone().ok_or_else(|| {
        ConfigError::new(
            format!("{at}.{kind}"),
            format!("is required for type {kind}"),
        )
    })
}

impl Policy {
    /// Whether deciding reads span bytes rather than the index and the
    /// intake's attribute bits: `trace_state`, or an attribute test past
    /// the 64 that get a bit.
    pub fn reads_span_bytes(&self) -> bool {
        match self {
            Policy::TraceState(..) => true,
            Policy::Numeric(key, ..) | Policy::Str(key, ..) | Policy::Bool(key, ..) => {
                key.bit.is_none()
            }
            Policy::And(subs) | Policy::Drop(subs) => subs.iter().any(Policy::reads_span_bytes),
            Policy::Composite(_, shares) => shares.iter().any(|s| s.policy.reads_span_bytes()),
            _ => false,
        }
    }

    /// Checks a policy config at `at` (`policies.2`).
    pub fn new(p: &PolicyConfig, at: &str) -> Result<Policy, ConfigError> {
        let kind = p.kind.as_str();
        Ok(match kind {
            "always_sample" => Policy::AlwaysSample,
            "latency" => {
                let l = need(&p.latency, at, kind)?;
                if l.threshold_ms < 0
                    || l.upper_threshold_ms < 0
                    || (l.upper_threshold_ms > 0 && l.upper_threshold_ms < l.threshold_ms)
                {
                    return Err(ConfigError::new(
                        format!("{at}.latency"),
                        "thresholds must be non-negative and upper ≥ lower",
                    ));
                }
                Policy::Latency(
                    l.threshold_ms as u64 * 1_000_000,
                    l.upper_threshold_ms as u64 * 1_000_000,
                )
            }
            "status_code" => {
                let s = need(&p.status_code, at, kind)?;
                let codes = s
                    .status_codes
                    .iter()
                    .map(|c| match c.as_str() {
                        "UNSET" => Ok(0),
                        "OK" => Ok(1),
                        "ERROR" => Ok(2),
                        other => Err(ConfigError::new(
                            format!("{at}.status_code.status_codes"),
                            format!("unknown status {other:?}: use OK, ERROR or UNSET"),
                        )),
                    })
                    .collect::<Result<Vec<u8>, _>>()?;
                if codes.is_empty() {
                    return Err(ConfigError::new(
                        format!("{at}.status_code.status_codes"),
                        "must list at least one status",
                    ));
                }
                Policy::StatusCode(codes)
            }
            "numeric_attribute" => {
                let n = need(&p.numeric_attribute, at, kind)?;
                if n.min_value.is_none() && n.max_value.is_none() {
                    return Err(ConfigError::new(
                        format!("{at}.numeric_attribute"),
                        "set min_value, max_value or both",
                    ));
                }
                Policy::Numeric(
                    AttrKey::new(n.key),
                    n.min_value.unwrap_or(f64::NEG_INFINITY),
                    n.max_value.unwrap_or(f64::INFINITY),
                    n.invert_match,
                )
            }
            "string_attribute" => {
                let s = need(&p.string_attribute, at, kind)?;
                let regexes = if s.enabled_regex_matching {
                    s.values
                        .iter()
                        .map(|v| {
                            Regex::new(v).map_err(|e| {
                                ConfigError::new(
                                    format!("{at}.string_attribute.values"),
                                    format!("invalid regex: {e}"),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                let exact = if s.enabled_regex_matching {
                    Vec::new()
                } else {
                    s.values
                };
                Policy::Str(
                    AttrKey::new(s.key),
                    Patterns::new(regexes, s.cache_max_size),
                    exact,
                    s.invert_match,
                )
            }
            "boolean_attribute" => {
                let b = need(&p.boolean_attribute, at, kind)?;
                Policy::Bool(AttrKey::new(b.key), b.value, b.invert_match)
            }
            "probabilistic" => {
                let pr = need(&p.probabilistic, at, kind)?;
                if !(0.0..=100.0).contains(&pr.sampling_percentage) {
                    return Err(ConfigError::new(
                        format!("{at}.probabilistic.sampling_percentage"),
                        "must be between 0 and 100",
                    ));
                }
                let threshold = (pr.sampling_percentage / 100.0 * u64::MAX as f64) as u64;
                Policy::Probabilistic(pr.hash_salt, threshold)
            }
            "span_count" => {
                let c = need(&p.span_count, at, kind)?;
                Policy::SpanCount(c.min_spans, c.max_spans)
            }
            "and" => {
                let a = need(&p.and, at, kind)?;
                Policy::And(subs(
                    &a.and_sub_policy,
                    &format!("{at}.and.and_sub_policy"),
                )?)
            }
            "drop" => {
                let d = need(&p.drop, at, kind)?;
                Policy::Drop(subs(
                    &d.drop_sub_policy,
                    &format!("{at}.drop.drop_sub_policy"),
                )?)
            }
            "rate_limiting" => {
                let r = need(&p.rate_limiting, at, kind)?;
                if r.spans_per_second <= 0 {
                    return Err(ConfigError::new(
                        format!("{at}.rate_limiting.spans_per_second"),
                        "must be greater than zero",
                    ));
                }
                Policy::RateLimiting(r.spans_per_second as u64, SecondCounter::default())
            }
            "trace_state" => {
                let t = need(&p.trace_state, at, kind)?;
                // W3C limits: keys up to 256 characters, values up to 256.
                if t.key.is_empty() || t.key.len() > 256 {
                    return Err(ConfigError::new(
                        format!("{at}.trace_state.key"),
                        "must be 1 to 256 characters",
                    ));
                }
                if t.values.is_empty() || t.values.iter().any(|v| v.is_empty() || v.len() > 256) {
                    return Err(ConfigError::new(
                        format!("{at}.trace_state.values"),
                        "must list values of 1 to 256 characters",
                    ));
                }
                Policy::TraceState(t.key, t.values)
            }
            "composite" => composite(&need(&p.composite, at, kind)?, &format!("{at}.composite"))?,
            "bytes_limiting" | "ottl_condition" | "trace_flags" | "boolean_attribute_all" => {
                return Err(ConfigError::new(
                    format!("{at}.type"),
                    format!("policy type {kind:?} is not available yet"),
                ))
            }
            other => {
                return Err(ConfigError::new(
                    format!("{at}.type"),
                    format!("unknown policy type {other:?}"),
                ))
            }
        })
    }

    /// The policy's verdict on a trace. Rate-limited policies count what
    /// they sample, so each trace is evaluated once.
    pub fn evaluate(&mut self, t: &TraceView) -> Verdict {
        match self {
            Policy::AlwaysSample => Verdict::Sampled,
            Policy::Latency(min, max) => {
                let d = t.summary.end.saturating_sub(t.summary.start);
                plain(d >= *min && (*max == 0 || d <= *max))
            }
            Policy::StatusCode(codes) => plain(
                codes
                    .iter()
                    .any(|&c| t.summary.statuses & status_bit(c) != 0),
            ),
            Policy::Numeric(key, min, max, invert) => inverted(
                t.any_attribute(key, |v| v.number().is_some_and(|n| n >= *min && n <= *max)),
                *invert,
            ),
            Policy::Str(key, regexes, exact, invert) => inverted(
                t.any_attribute(key, |v| match v {
                    AttrValue::Str(s) => exact.iter().any(|e| e == s) || regexes.is_match(s),
                    _ => false,
                }),
                *invert,
            ),
            Policy::Bool(key, want, invert) => inverted(
                t.any_attribute(key, |v| v == AttrValue::Bool(*want)),
                *invert,
            ),
            Policy::Probabilistic(salt, threshold) => {
                plain(salted_hash(salt, &t.trace_id) <= *threshold)
            }
            Policy::SpanCount(min, max) => {
                let n = t.summary.spans as usize;
                plain(n >= *min && (*max == 0 || n <= *max))
            }
            Policy::TraceState(key, values) => plain(
                t.spans
                    .iter()
                    .any(|s| trace_state_has(span_scalars(s.field).trace_state, key, values)),
            ),
            Policy::RateLimiting(limit, used) => {
                let limit = *limit;
                plain(used.take(t.second, t.summary.spans, |n| n < limit))
            }
            // Both stop at the first sub-policy that does not sample, as
            // otelcol's do.
            Policy::And(subs) => plain(subs.iter_mut().all(|p| p.evaluate(t).samples())),
            Policy::Drop(subs) => {
                if subs.iter_mut().all(|p| p.evaluate(t).samples()) {
                    Verdict::Dropped
                } else {
                    Verdict::NotSampled
                }
            }
            Policy::Composite(max_total, shares) => {
                let n = t.summary.spans;
                for share in shares.iter_mut() {
                    if !share.policy.evaluate(t).samples() {
                        continue;
                    }
                    let (allocated, max_total) = (share.allocated, *max_total);
                    // Over its share: the next sub-policy may still take it.
                    if share.used.take(t.second, n, |total| {
                        total as f64 <= allocated && total <= max_total
                    }) {
                        return Verdict::Sampled;
                    }
                }
                Verdict::NotSampled
            }
        }
    }
}

/// A `composite` policy: sub-policies in `policy_order` (list order when
/// it is empty), each sampling up to its `rate_allocation` percent of
/// `max_total_spans_per_second`. As in otelcol, an allocation with no
/// percent gets an equal share and a sub-policy with no allocation gets
/// none.
fn composite(c: &super::config::Composite, at: &str) -> Result<Policy, ConfigError> {
    if c.max_total_spans_per_second <= 0 {
        return Err(ConfigError::new(
            format!("{at}.max_total_spans_per_second"),
            "must be greater than zero",
        ));
    }
    let subs = &c.composite_sub_policy;
    if subs.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.composite_sub_policy"),
            "must list at least one sub-policy",
        ));
    }
    let total = c.max_total_spans_per_second as f64;
    let mut shares = Vec::new();
    let order: Vec<&str> = if c.policy_order.is_empty() {
        subs.iter().map(|p| p.name.as_str()).collect()
    } else {
        c.policy_order.iter().map(String::as_str).collect()
    };
    for (i, name) in order.iter().enumerate() {
        let Some(pos) = subs.iter().position(|p| p.name == *name) else {
            return Err(ConfigError::new(
                format!("{at}.policy_order.{i}"),
                format!("no composite_sub_policy is named {name:?}"),
            ));
        };
        let sub = &subs[pos];
        let sub_at = format!("{at}.composite_sub_policy.{pos}");
        if matches!(sub.kind.as_str(), "composite" | "drop") {
            return Err(ConfigError::new(
                format!("{sub_at}.type"),
                format!("{:?} cannot be a composite sub-policy", sub.kind),
            ));
        }
        let allocated = c
            .rate_allocation
            .iter()
            .rfind(|a| a.policy == *name)
            .map_or(0.0, |a| {
                if a.percent > 0.0 {
                    a.percent / 100.0 * total
                } else {
                    total / subs.len() as f64
                }
            });
        shares.push(Share {
            policy: Policy::new(sub, &sub_at)?,
            allocated,
            used: SecondCounter::default(),
        });
    }
    if let Some((i, a)) = c
        .rate_allocation
        .iter()
        .enumerate()
        .find(|(_, a)| !subs.iter().any(|p| p.name == a.policy))
    {
        return Err(ConfigError::new(
            format!("{at}.rate_allocation.{i}.policy"),
            format!("no composite_sub_policy is named {:?}", a.policy),
        ));
    }
    Ok(Policy::Composite(
        c.max_total_spans_per_second as u64,
        shares,
    ))
}

fn subs(list: &[PolicyConfig], at: &str) -> Result<Vec<Policy>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::new(at, "must list at least one sub-policy"));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| Policy::new(p, &format!("{at}.{i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_match_cache_answers_as_the_regexes_do_and_stays_within_its_size() {
        let p = Patterns::new(vec![Regex::new("^claude-.*").unwrap()], 3);
        for _ in 0..2 {
            assert!(p.is_match("claude-3-5-sonnet"));
            assert!(!p.is_match("gpt-4o"));
        }
        assert_eq!(p.cached(), 2);
        for m in ["a", "b", "c", "d"] {
            assert!(!p.is_match(m));
            assert!(p.cached() <= 3);
        }
        // Emptied when full, then filled again; answers never change.
        assert!(p.is_match("claude-3-haiku"));
        assert!(p.cached() <= 3);
        // Without cache_max_size nothing is kept.
        let none = Patterns::new(vec![Regex::new("x").unwrap()], 0);
        assert!(none.is_match("xyz"));
        assert_eq!(none.cached(), 0);
    }
}
