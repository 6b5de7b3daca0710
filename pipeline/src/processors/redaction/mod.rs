//! `redaction`: removes attributes not on an allow-list and masks secrets
//! and personal data in the rest, with otelcol's keys; adds named presets
//! and a switch that drops GenAI prompt and completion content. Applies to
//! span, span event and link, resource and scope attributes, log bodies (strings,
//! maps and arrays, recursively) and attributes, and metric data point
//! attributes.

mod config;
mod presets;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use regex::{Regex, RegexSet};
use sha2::Digest;

pub use config::RedactionConfig;
pub use presets::{luhn, preset, Preset, Shape, NAMES as PRESET_NAMES};

use crate::batch::{Batch, Request, Signal};
use crate::component::{parse_config, ConfigError, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::inplace::{RESOURCE_ATTRIBUTES, SCOPE_ATTRIBUTES, SPAN_ATTRIBUTES};
use crate::rewrite::{rewrite_decoded, rewrite_resources, rewrite_scopes, rewrite_spans};
use crate::telemetry::Counter;
use crate::wire::hex;

/// GenAI content attributes (current and older conventions).
const GENAI_KEYS: [&str; 5] = [
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
];
/// GenAI content events and log event names.
const GENAI_EVENTS: [&str; 8] = [
    "gen_ai.content.prompt",
    "gen_ai.content.completion",
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "gen_ai.client.inference.operation.details",
];

fn genai_key(k: &str) -> bool {
    GENAI_KEYS.contains(&k)
        || k.starts_with("gen_ai.prompt.")
        || k.starts_with("gen_ai.completion.")
}

#[derive(Clone, Copy, PartialEq)]
enum Hash {
    None,
    Md5,
    Sha1,
    Sha256,
    Sha3,
}

#[derive(Clone, Copy, PartialEq)]
enum Summary {
    Silent,
    Info,
    Debug,
}

/// A checked redaction config.
pub struct Redactor {
    allow_all: bool,
    allowed: HashSet<String>,
    ignored: HashSet<String>,
    /// Key patterns: a key matching any has its whole value masked (one
    /// clone per slot, as `any_blocked_bytes`).
    any_blocked_key: Vec<RegexSet>,
    blocked_values: Vec<Regex>,
    allowed_values: Vec<Regex>,
    presets: Vec<Preset>,
    /// Every value pattern at once, over bytes: one pass says whether any
    /// can match. One clone per slot: a regex's match cache is a pool that
    /// threads other than its first user reach through a lock, and each
    /// clone has its own pool, so threads picking different slots never
    /// contend.
    any_blocked_bytes: Vec<regex::bytes::RegexSet>,
    hash: Hash,
    summary: Summary,
    drop_genai: bool,
    /// What recently seen attribute keys ask for, per slot: keys repeat
    /// from span to span, so the key rules run about once per key.
    key_rules: Vec<Mutex<KeyRules>>,
    /// The shortest value any preset can match.
    shortest: usize,
    /// What each rule did, once a pipeline built this processor.
    counts: OnceLock<RuleCounts>,
}

/// Self-metrics per rule: values masked by each `blocked_values` pattern
/// and preset, whole values masked by key, keys removed and why.
struct RuleCounts {
    /// One per `blocked_values` pattern, then one per preset.
    patterns: Vec<Counter>,
    by_key: Counter,
    not_allowed: Counter,
    genai: Counter,
}

impl RuleCounts {
    fn new(r: &Redactor, ctx: &Context) -> RuleCounts {
        let id = ctx.id.as_str();
        let masked = |rule: &str| {
            ctx.metrics.counter(
                "observatory_processor_redaction_masked_total",
                "Values (or parts of values) masked, by the rule that matched.",
                &[("processor", id), ("rule", rule)],
            )
        };
        let removed = |reason: &str| {
            ctx.metrics.counter(
                "observatory_processor_redaction_removed_total",
                "Attributes removed, by reason.",
                &[("processor", id), ("reason", reason)],
            )
        };
        RuleCounts {
            patterns: r
                .blocked_values
                .iter()
                .map(|re| masked(re.as_str()))
                .chain(r.presets.iter().map(|p| masked(p.name)))
                .collect(),
            by_key: masked("blocked_key_patterns"),
            not_allowed: removed("not_allowed_key"),
            genai: removed("drop_genai_content"),
        }
    }
}

/// A two-way set-associative cache of key rules: a key's length and three
/// of its bytes pick a pair of places, a hit costs at most two compares,
/// and a miss only costs running the rules again. Nothing a client sends
/// can make a lookup cost more than that.
struct KeyRules {
    places: Vec<Option<Place>>,
}

/// A cached key.
struct Place {
    key: Box<[u8]>,
    rule: KeyRule,
    /// The last string found in this key's values that no blocked pattern
    /// may match: most keys repeat a few values (a model, a route, a host),
    /// and comparing with it costs less than checking the string again.
    clean: Clean,
}

/// A string known to need no work, at most [`CLEAN_MAX`] bytes.
#[derive(Default)]
struct Clean(Option<Vec<u8>>);

/// Longer strings are rarely repeated, and copying them costs more.
const CLEAN_MAX: usize = 64;

impl Clean {
    /// Whether `s` is the string remembered.
    fn is(&self, s: &[u8]) -> bool {
        self.0
            .as_deref()
            .is_some_and(|c| crate::inplace::same_bytes(c, s))
    }

    /// Remembers `s` as needing no work.
    fn remember(&mut self, s: &[u8]) {
        if s.len() <= CLEAN_MAX {
            let c = self.0.get_or_insert_with(Vec::new);
            c.clear();
            c.extend_from_slice(s);
        }
    }
}

/// Places in a [`KeyRules`] (a power of two), in pairs: a key may sit in
/// either place of its pair, so two hot keys that hash alike do not evict
/// each other on every span.
const KEY_RULES_PLACES: usize = 1024;

impl Default for KeyRules {
    fn default() -> Self {
        KeyRules {
            places: std::iter::repeat_with(|| None)
                .take(KEY_RULES_PLACES)
                .collect(),
        }
    }
}

impl KeyRules {
    /// The first place of `key`'s pair: from its length and three of its
    /// bytes, which costs far less than hashing the whole key.
    fn pair(&self, key: &[u8]) -> usize {
        let (first, last) = (key.first(), key.last());
        let mid = key.get(key.len() / 2);
        let b = |x: Option<&u8>| x.map_or(0, |b| usize::from(*b));
        (key.len().wrapping_mul(0x9e37) ^ b(first) << 7 ^ b(mid) << 3 ^ b(last))
            & (KEY_RULES_PLACES - 2)
    }

    /// The cached rule for `key`, or `compute`'s, remembered; with the
    /// key's clean string.
    #[inline]
    fn get(&mut self, key: &[u8], compute: impl FnOnce() -> KeyRule) -> (KeyRule, &mut Clean) {
        let at = self.pair(key);
        let same = |p: &Option<Place>| {
            p.as_ref()
                .is_some_and(|p| crate::inplace::same_bytes(&p.key, key))
        };
        let i = if same(&self.places[at]) {
            at
        } else if same(&self.places[at + 1]) {
            at + 1
        } else {
            self.fill(at, key, compute())
        };
        let place = self.places[i].as_mut().expect("found or just filled");
        (place.rule, &mut place.clean)
    }

    /// Puts a key not cached in the first place of its pair, and returns
    /// that place. Out of line: nearly every lookup hits, and the hit path
    /// stays small enough to inline into the attribute walk.
    #[cold]
    #[inline(never)]
    fn fill(&mut self, at: usize, key: &[u8], rule: KeyRule) -> usize {
        // The one it displaces moves to the second place.
        self.places[at + 1] = self.places[at].take();
        self.places[at] = Some(Place {
            key: key.into(),
            rule,
            clean: Clean::default(),
        });
        at
    }
}

/// What an attribute key asks of the in-place check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRule {
    /// `ignored_keys`: leave it alone.
    Ignore,
    /// Removed or masked whatever its value: the span needs work.
    Work,
    /// Kept: only its value may need masking.
    Value,
}

fn regexes(at: &str, list: &[String]) -> Result<Vec<Regex>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            Regex::new(p)
                .map_err(|e| ConfigError::new(format!("{at}.{i}"), format!("invalid regex: {e}")))
        })
        .collect()
}

/// Regex clones kept per redactor; threads spread over them.
const SLOTS: usize = 8;

thread_local! {
    /// This thread's slot among the regex clones.
    static SLOT: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS
    };
}

fn mine<T>(sets: &[T]) -> &T {
    &sets[SLOT.with(|s| *s)]
}

impl Redactor {
    /// Checks a config.
    pub fn new(cfg: &RedactionConfig) -> Result<Redactor, ConfigError> {
        let presets: Vec<Preset> = cfg
            .blocked_value_presets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                preset(n).ok_or_else(|| {
                    ConfigError::new(
                        format!("blocked_value_presets.{i}"),
                        format!("unknown preset {n:?}; known: {}", PRESET_NAMES.join(", ")),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let blocked_values = regexes("blocked_values", &cfg.blocked_values)?;
        let patterns = blocked_values.iter().map(|r| r.as_str().to_string()).chain(
            presets
                .iter()
                .map(|p: &Preset| p.regex.as_str().to_string()),
        );
        let patterns: Vec<String> = patterns.collect();
        let any_blocked_bytes = regex::bytes::RegexSet::new(&patterns)
            .map_err(|e| ConfigError::new("blocked_values", format!("invalid regex: {e}")))?;
        let blocked_keys = regexes("blocked_key_patterns", &cfg.blocked_key_patterns)?;
        let any_blocked_key = RegexSet::new(blocked_keys.iter().map(|r| r.as_str()))
            .map_err(|e| ConfigError::new("blocked_key_patterns", format!("invalid regex: {e}")))?;
        let shortest = presets.iter().map(|p| p.min_len).min().unwrap_or(0);
        Ok(Redactor {
            allow_all: cfg.allow_all_keys,
            any_blocked_bytes: vec![any_blocked_bytes; SLOTS],
            any_blocked_key: vec![any_blocked_key; SLOTS],
            allowed: cfg.allowed_keys.iter().cloned().collect(),
            ignored: cfg.ignored_keys.iter().cloned().collect(),
            blocked_values,
            allowed_values: regexes("allowed_values", &cfg.allowed_values)?,
            presets,
            hash: match cfg.hash_function.as_str() {
                "none" | "" => Hash::None,
                "md5" => Hash::Md5,
                "sha1" => Hash::Sha1,
                "sha256" => Hash::Sha256,
                "sha3" => Hash::Sha3,
                other => {
                    return Err(ConfigError::new(
                        "hash_function",
                        format!("unknown {other:?}: use sha256, sha1, md5, sha3 or none"),
                    ))
                }
            },
            summary: match cfg.summary.as_str() {
                "silent" => Summary::Silent,
                "info" => Summary::Info,
                "debug" => Summary::Debug,
                other => {
                    return Err(ConfigError::new(
                        "summary",
                        format!("unknown {other:?}: use debug, info or silent"),
                    ))
                }
            },
            drop_genai: cfg.drop_genai_content,
            key_rules: (0..SLOTS).map(|_| Mutex::default()).collect(),
            shortest,
            counts: OnceLock::new(),
        })
    }

    /// The rule for one attribute key.
    fn key_rule(&self, key: &[u8]) -> KeyRule {
        let Ok(key) = std::str::from_utf8(key) else {
            return KeyRule::Work;
        };
        if self.ignored.contains(key) {
            KeyRule::Ignore
        } else if (self.drop_genai && genai_key(key))
            || (!self.allow_all && !self.allowed.contains(key))
            || self.key_blocked(key)
        {
            KeyRule::Work
        } else {
            KeyRule::Value
        }
    }

    /// Whether a string value may hold a blocked pattern: the presets'
    /// hints first (one pass over the bytes), the regex set only for values
    /// that pass one. With `blocked_values` of the user's own, the regex set
    /// always runs.
    fn may_match(&self, bytes: &[u8]) -> bool {
        if self.blocked_values.is_empty() {
            if bytes.len() < self.shortest {
                return false;
            }
            let shape = Shape::of(bytes);
            if !self.presets.iter().any(|p| (p.hint)(&shape, bytes)) {
                return false;
            }
        }
        mine(&self.any_blocked_bytes).is_match(bytes)
    }

    /// Whether a key's value is masked whole (an empty set costs nothing).
    fn key_blocked(&self, key: &str) -> bool {
        !self.any_blocked_key[0].is_empty() && mine(&self.any_blocked_key).is_match(key)
    }

    /// What a masked part becomes.
    fn mask(&self, s: &str) -> String {
        match self.hash {
            Hash::None => "****".into(),
            Hash::Md5 => hex(&md5::Md5::digest(s.as_bytes())),
            Hash::Sha1 => hex(&sha1::Sha1::digest(s.as_bytes())),
            Hash::Sha256 => hex(&sha2::Sha256::digest(s.as_bytes())),
            Hash::Sha3 => hex(&sha3::Sha3_256::digest(s.as_bytes())),
        }
    }

    /// The string with every blocked part masked, or `None` if unchanged.
    pub fn scrub(&self, s: &str) -> Option<String> {
        if !self.may_match(s.as_bytes()) || self.allowed_values.iter().any(|r| r.is_match(s)) {
            return None;
        }
        // Collect the byte ranges to mask, then mask them in one pass.
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for (i, r) in self.blocked_values.iter().enumerate() {
            spans.extend(r.find_iter(s).map(|m| (m.start(), m.end(), i)));
        }
        let first_preset = self.blocked_values.len();
        for (i, p) in self.presets.iter().enumerate() {
            for c in p.regex.captures_iter(s) {
                if let Some(m) = c.get(p.group) {
                    if (p.check)(m.as_str()) {
                        spans.push((m.start(), m.end(), first_preset + i));
                    }
                }
            }
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        let counts = self.counts.get();
        for (start, end, rule) in spans {
            if start < at {
                continue; // overlaps a part already masked
            }
            if let Some(c) = counts {
                c.patterns[rule].add(1);
            }
            out.push_str(&s[at..start]);
            out.push_str(&self.mask(&s[start..end]));
            at = end;
        }
        out.push_str(&s[at..]);
        Some(out)
    }

    /// Adds one to the counter `which` picks, once metrics exist.
    fn count(&self, which: impl FnOnce(&RuleCounts) -> &Counter) {
        if let Some(c) = self.counts.get() {
            which(c).add(1);
        }
    }

    /// Scrubs a value and everything inside it; true if it changed.
    pub fn any_value(&self, v: &mut AnyValue) -> bool {
        match &mut v.value {
            Some(Value::StringValue(s)) => match self.scrub(s) {
                Some(new) => {
                    *s = new;
                    true
                }
                None => false,
            },
            Some(Value::ArrayValue(a)) => a
                .values
                .iter_mut()
                .fold(false, |c, v| self.any_value(v) | c),
            Some(Value::KvlistValue(kv)) => {
                let mut changed = false;
                for kv in &mut kv.values {
                    if self.key_blocked(&kv.key) {
                        self.count(|c| &c.by_key);
                        kv.value = Some(AnyValue {
                            value: Some(Value::StringValue(self.mask(&format!("{:?}", kv.value)))),
                        });
                        changed = true;
                    } else if let Some(v) = &mut kv.value {
                        changed |= self.any_value(v);
                    }
                }
                changed
            }
            _ => false,
        }
    }

    /// Whether a span (its whole encoded field) has anything to redact:
    /// a key to remove or mask, a value to scrub. Spans with events or
    /// links, or with non-scalar values, are decoded to be sure.
    fn span_needs_work(&self, field: &[u8]) -> bool {
        self.needs_work(field, SPAN_ATTRIBUTES)
    }

    /// As [`Redactor::span_needs_work`] for any whole field whose message
    /// holds its attributes at field `number` (a resource, a scope).
    fn needs_work(&self, field: &[u8], number: u32) -> bool {
        let mut rules = mine(&self.key_rules)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut hit = false;
        let extras = crate::inplace::for_each_attribute_in(field, number, |key, value| {
            if hit {
                return;
            }
            let (rule, clean) = rules.get(key, || self.key_rule(key));
            hit = match rule {
                KeyRule::Ignore => false,
                KeyRule::Work => true,
                // A string with no blocked pattern in it needs no work; one
                // with a candidate is decided by the full scrub (allowed
                // values, preset checks) on the decoded span. Arrays and
                // maps are walked in place the same way, with map keys
                // checked against the blocked key patterns.
                KeyRule::Value => value.any_nested(
                    &mut |s| {
                        if clean.is(s) {
                            return false;
                        }
                        let hit = self.may_match(s);
                        if !hit {
                            clean.remember(s);
                        }
                        hit
                    },
                    &mut |k| std::str::from_utf8(k).map_or(true, |k| self.key_blocked(k)),
                ),
            };
        });
        hit || extras
    }

    /// Applies the rules to an attribute list; adds the summary when
    /// `summarize`. Returns whether anything changed.
    pub fn attrs(&self, attrs: &mut Vec<KeyValue>, summarize: bool) -> bool {
        let mut redacted: Vec<String> = Vec::new();
        let mut masked: Vec<String> = Vec::new();
        let mut ignored = 0i64;
        attrs.retain_mut(|kv| {
            if self.ignored.contains(&kv.key) {
                ignored += 1;
                return true;
            }
            let genai = self.drop_genai && genai_key(&kv.key);
            if genai || (!self.allow_all && !self.allowed.contains(&kv.key)) {
                self.count(|c| if genai { &c.genai } else { &c.not_allowed });
                redacted.push(kv.key.clone());
                return false;
            }
            if self.key_blocked(&kv.key) {
                self.count(|c| &c.by_key);
                let text = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                kv.value = Some(AnyValue {
                    value: Some(Value::StringValue(self.mask(&text))),
                });
                masked.push(kv.key.clone());
            } else if let Some(v) = &mut kv.value {
                if self.any_value(v) {
                    masked.push(kv.key.clone());
                }
            }
            true
        });
        let changed = !redacted.is_empty() || !masked.is_empty();
        if summarize && self.summary != Summary::Silent {
            let mut add = |k: &str, v: Value| {
                attrs.push(KeyValue {
                    key: k.into(),
                    value: Some(AnyValue { value: Some(v) }),
                    ..Default::default()
                })
            };
            for (what, keys) in [("redacted", &mut redacted), ("masked", &mut masked)] {
                if keys.is_empty() {
                    continue;
                }
                if self.summary == Summary::Debug {
                    keys.sort();
                    add(
                        &format!("redaction.{what}.keys"),
                        Value::StringValue(keys.join(",")),
                    );
                }
                add(
                    &format!("redaction.{what}.count"),
                    Value::IntValue(keys.len() as i64),
                );
            }
            if ignored > 0 {
                add("redaction.ignored.count", Value::IntValue(ignored));
            }
        }
        changed
    }
}

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "redaction",
        signals: &Signal::ALL,
        parse: |v| {
            let cfg: RedactionConfig = parse_config(v)?;
            Ok(Arc::new(Builder(Arc::new(Redactor::new(&cfg)?))))
        },
    }
}

struct Builder(Arc<Redactor>);

impl ProcessorBuilder for Builder {
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        self.0.counts.get_or_init(|| RuleCounts::new(&self.0, ctx));
        Arc::new(Redaction {
            signal,
            r: self.0.clone(),
            next,
        })
    }
}

struct Redaction {
    signal: Signal,
    r: Arc<Redactor>,
    next: BoxConsumer,
}

impl Redaction {
    fn traces(&self, req: &Request) -> Option<Request> {
        let r = &self.r;
        // Resources and scopes are decoded only when the in-place check
        // finds work in one of them, as spans are.
        let index = req.index.as_ref()?;
        let part = |range| crate::split::slice(&req.bytes, range);
        let resources = index
            .resources
            .iter()
            .any(|e| r.needs_work(part(e.resource), RESOURCE_ATTRIBUTES))
            .then(|| {
                rewrite_resources(Signal::Traces, req, |res| {
                    r.attrs(&mut res.attributes, false)
                })
            })
            .flatten();
        let base = resources.as_ref().unwrap_or(req);
        let scopes = index
            .scopes
            .iter()
            .any(|e| r.needs_work(part(e.scope), SCOPE_ATTRIBUTES))
            .then(|| rewrite_scopes(base, |scope| r.attrs(&mut scope.attributes, false)))
            .flatten();
        let base = scopes.as_ref().unwrap_or(base);
        // Only spans where some rule fires are decoded; the check reads
        // the attributes in place.
        let spans = rewrite_spans(
            base,
            |field| r.span_needs_work(field),
            |span| {
                let mut changed = r.attrs(&mut span.attributes, true);
                let before = span.events.len();
                if r.drop_genai {
                    span.events
                        .retain(|e| !GENAI_EVENTS.contains(&e.name.as_str()));
                }
                changed |= span.events.len() != before;
                for e in &mut span.events {
                    changed |= r.attrs(&mut e.attributes, false);
                }
                for l in &mut span.links {
                    changed |= r.attrs(&mut l.attributes, false);
                }
                changed
            },
        );
        spans.or(scopes).or(resources)
    }

    fn logs_or_metrics(&self, req: &Request) -> Option<Request> {
        let r = &self.r;
        rewrite_decoded(self.signal, req, |logs, metrics| {
            let mut changed = false;
            for rl in logs.into_iter().flat_map(|l| l.resource_logs.iter_mut()) {
                if let Some(res) = &mut rl.resource {
                    changed |= r.attrs(&mut res.attributes, false);
                }
                for scope in rl.scope_logs.iter_mut().filter_map(|s| s.scope.as_mut()) {
                    changed |= r.attrs(&mut scope.attributes, false);
                }
                for rec in rl
                    .scope_logs
                    .iter_mut()
                    .flat_map(|s| s.log_records.iter_mut())
                {
                    if r.drop_genai
                        && GENAI_EVENTS.contains(&rec.event_name.as_str())
                        && rec.body.is_some()
                    {
                        rec.body = None;
                        changed = true;
                    }
                    if let Some(body) = &mut rec.body {
                        changed |= r.any_value(body);
                    }
                    changed |= r.attrs(&mut rec.attributes, true);
                }
            }
            for rm in metrics
                .into_iter()
                .flat_map(|m| m.resource_metrics.iter_mut())
            {
                if let Some(res) = &mut rm.resource {
                    changed |= r.attrs(&mut res.attributes, false);
                }
                for scope in rm.scope_metrics.iter_mut().filter_map(|s| s.scope.as_mut()) {
                    changed |= r.attrs(&mut scope.attributes, false);
                }
                for m in rm
                    .scope_metrics
                    .iter_mut()
                    .flat_map(|s| s.metrics.iter_mut())
                {
                    crate::batch::each_point_attributes(m, |attrs| {
                        changed |= r.attrs(attrs, true);
                    });
                }
            }
            changed
        })
    }
}

#[async_trait]
impl Consumer for Redaction {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        crate::rewrite::rewrite_batch(&mut batch, |req| match self.signal {
            Signal::Traces => self.traces(req),
            _ => self.logs_or_metrics(req),
        });
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
