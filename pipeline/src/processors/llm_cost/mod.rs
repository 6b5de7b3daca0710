//! `llm_cost` (ours): prices GenAI spans from their token usage and writes
//! the cost in USD to `gen_ai.usage.cost`. Spans are never decoded: the few
//! attributes pricing needs are read in place and the cost is appended to
//! the span's bytes; spans without usage stay exactly as they came.
//! Unknown models are counted, never guessed.

mod config;
mod pricing;
mod spend;

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use memchr::memmem::Finder;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;

pub use config::{LlmCostConfig, Price};
pub use pricing::PRICES_AS_OF;
pub use spend::{Call, Origin, Spend, Tally};

use crate::batch::{Batch, Signal};
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::fasthash::FastMap;
use crate::rewrite::{replace_spans, rewrite_batch, Reach};
use crate::scan::SpanEntry;
use crate::telemetry::Counter;

/// Input-token attributes, newest convention first.
const INPUT: [&str; 3] = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
];
/// Output-token attributes, newest convention first.
const OUTPUT: [&str; 3] = [
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
];
/// Cached input tokens (a part of the input tokens).
const CACHED: [&str; 2] = [
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cache_read.input_tokens",
];
/// The model, most precise first.
const MODEL: [&str; 3] = [
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.request.model",
];
/// The provider.
const PROVIDER: [&str; 2] = ["gen_ai.provider.name", "gen_ai.system"];
/// Longer model names are treated as unknown.
const MAX_MODEL_NAME: usize = 256;
/// Distinct (provider, model) pairs whose price position is remembered.
const MEMO_ENTRIES: usize = 4096;
/// The longest remembered (provider, model) key, in bytes: real pairs are
/// far shorter, and the buffer is cleared for every priced span.
const MEMO_KEY: usize = 128;
/// Distinct unknown model names logged (each once); beyond it they are only counted.
const UNKNOWN_LOGGED: usize = 100;

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "llm_cost",
        signals: &[Signal::Traces],
        parse: |v| Ok(Arc::new(parse_config::<LlmCostConfig>(v)?)),
    }
}

/// `*` and `?` glob match.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob(rest, name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, n))) => glob(rest, n),
        (Some((p, rest)), Some((c, n))) if p == c => glob(rest, n),
        _ => false,
    }
}

/// Where a price is in a [`PriceBook`]: (table, entry).
type Position = (usize, usize);

/// The pricing tables in the order they are consulted.
pub struct PriceBook {
    tables: Vec<Vec<Price>>,
}

impl PriceBook {
    /// The book a config describes.
    pub fn new(cfg: &LlmCostConfig) -> PriceBook {
        let mut tables = vec![cfg.pricing.clone()];
        if cfg.use_default_pricing {
            tables.push(pricing::defaults());
        }
        PriceBook { tables }
    }

    /// The price for `model` from `provider`: in each table in turn, an exact
    /// name beats a glob and a longer glob beats a shorter one.
    pub fn find(&self, model: &str, provider: Option<&str>) -> Option<&Price> {
        self.position(model, provider).map(|at| self.at(at))
    }

    /// Where [`PriceBook::find`]'s answer is: (table, entry).
    fn position(&self, model: &str, provider: Option<&str>) -> Option<Position> {
        // Names come from clients; glob matching is super-linear in them.
        if model.len() > MAX_MODEL_NAME {
            return None;
        }
        let fits = |p: &Price| {
            p.provider
                .as_deref()
                .is_none_or(|want| Some(want) == provider)
        };
        for (t, table) in self.tables.iter().enumerate() {
            if let Some(i) = table.iter().position(|p| fits(p) && p.model == model) {
                return Some((t, i));
            }
            let best = table
                .iter()
                .enumerate()
                .filter(|(_, p)| fits(p) && glob(p.model.as_bytes(), model.as_bytes()))
                .max_by_key(|(_, p)| p.model.len());
            if let Some((i, _)) = best {
                return Some((t, i));
            }
        }
        None
    }

    fn at(&self, (table, entry): Position) -> &Price {
        &self.tables[table][entry]
    }
}

fn attr<'a>(span: &'a Span, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| span.attributes.iter().find(|a| a.key == *k))
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Cost in USD of a call with these token counts at `price`. Cached tokens
/// are part of the input tokens.
pub fn cost(price: &Price, input: f64, output: f64, cached: f64) -> f64 {
    let cached = cached.min(input).max(0.0);
    let cached_price = price
        .cached_input_per_million
        .unwrap_or(price.input_per_million);
    ((input - cached) * price.input_per_million
        + cached * cached_price
        + output * price.output_per_million)
        / 1e6
}

struct LlmCost {
    book: PriceBook,
    cost_attribute: String,
    usage: Finder<'static>,
    next: BoxConsumer,
    priced: Counter,
    unknown: Counter,
    unknown_seen: Mutex<HashSet<String>>,
    memo: Mutex<FastMap<Box<[u8]>, Option<Position>>>,
    id: String,
    spend: Arc<Spend>,
}

/// Price positions looked up in one batch. A batch names a handful of
/// models: comparing against them costs less than the shared memo's lock
/// and hash, which took a tenth of pricing (`llm_cost/price_512_spans`).
#[derive(Default)]
struct Recent(Vec<Answer>);

/// A (model, provider) pair and where its price is.
type Answer = (Box<[u8]>, Option<Box<[u8]>>, Option<Position>);

/// Distinct (provider, model) pairs a batch remembers; others go to the memo.
const RECENT: usize = 8;

impl Recent {
    /// The position for the pair, from this batch's earlier answers or `find`.
    fn position(
        &mut self,
        model: &[u8],
        provider: Option<&[u8]>,
        find: impl FnOnce() -> Option<Position>,
    ) -> Option<Position> {
        let hit = self
            .0
            .iter()
            .find(|(m, p, _)| crate::inplace::same_bytes(m, model) && p.as_deref() == provider);
        if let Some(&(_, _, at)) = hit {
            return at;
        }
        let at = find();
        if self.0.len() < RECENT {
            self.0.push((model.into(), provider.map(Into::into), at));
        }
        at
    }
}

/// What pricing needs from a span's attributes, read in place.
#[derive(Default)]
struct Usage<'a> {
    input: Option<(usize, f64)>,
    output: Option<(usize, f64)>,
    cached: Option<(usize, f64)>,
    model: Option<(usize, &'a [u8])>,
    provider: Option<(usize, &'a [u8])>,
    has_cost: bool,
}

/// Keeps the value whose key comes earliest in `keys` (the newest convention).
/// The value is only computed for keys in `keys`: most attributes are not
/// usage attributes and are never parsed.
#[inline(always)]
fn prefer<T>(
    slot: &mut Option<(usize, T)>,
    keys: &[&str],
    key: &[u8],
    value: impl FnOnce() -> Option<T>,
) {
    let Some(rank) = keys
        .iter()
        .position(|k| crate::inplace::same_bytes(k.as_bytes(), key))
    else {
        return;
    };
    if slot.as_ref().is_none_or(|(r, _)| rank < *r) {
        if let Some(v) = value() {
            *slot = Some((rank, v));
        }
    }
}

impl LlmCost {
    /// The price for a model, counting (and logging once) unknown ones.
    /// Names are bytes as they lie in the span: only a name not seen
    /// before is checked as UTF-8 and matched against the book.
    fn lookup(&self, model: &[u8], provider: Option<&[u8]>, recent: &mut Recent) -> Option<&Price> {
        let at = recent.position(model, provider, || self.memoized_position(model, provider));
        if at.is_none() {
            self.unknown.add(1);
            let model = String::from_utf8_lossy(model);
            let mut seen = self.unknown_seen.lock().unwrap();
            // Unknown models recur on every call: no allocation once seen.
            if seen.len() < UNKNOWN_LOGGED && !seen.contains(model.as_ref()) {
                seen.insert(model.to_string());
                let provider = String::from_utf8_lossy(provider.unwrap_or(b""));
                tracing::warn!(processor = %self.id, %model, %provider, "no price for this model; its spans are counted, not priced");
            }
        }
        at.map(|at| self.book.at(at))
    }

    /// [`PriceBook::position`], remembered: a few distinct models recur in
    /// every request, and matching them against the globs each time costs
    /// more than the rest of pricing.
    fn memoized_position(&self, model: &[u8], provider: Option<&[u8]>) -> Option<Position> {
        let position = || {
            let model = std::str::from_utf8(model).ok()?;
            let provider = match provider.map(std::str::from_utf8) {
                Some(Ok(p)) => Some(p),
                Some(Err(_)) => return None,
                None => None,
            };
            self.book.position(model, provider)
        };
        // (provider present?, provider, NUL, model), built on the stack:
        // this runs for every priced span. Longer pairs are not remembered.
        let mut buf = [0u8; MEMO_KEY];
        let provider_bytes = provider.unwrap_or(b"");
        let len = 2 + provider_bytes.len() + model.len();
        if len > MEMO_KEY {
            return position();
        }
        buf[0] = u8::from(provider.is_some());
        buf[1..1 + provider_bytes.len()].copy_from_slice(provider_bytes);
        buf[2 + provider_bytes.len()..len].copy_from_slice(model);
        let key = &buf[..len];
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = memo.get(key) {
            return *at;
        }
        let at = position();
        if memo.len() < MEMO_ENTRIES {
            memo.insert(key.into(), at);
        }
        at
    }

    /// Prices a span given as its encoded field: reads the attributes in
    /// place and appends the cost. Falls back to a decode only when the
    /// span already carries the cost attribute (it must be replaced).
    #[cfg(test)]
    fn price_field(&self, field: &[u8]) -> Option<Vec<u8>> {
        let mut tally = Tally::default();
        let mut out = Vec::new();
        let priced = self.price_field_from(
            field,
            &Origin::default(),
            &mut tally,
            &mut Recent::default(),
            &mut out,
        );
        self.spend.flush(&mut tally, 0);
        priced.map(|()| out)
    }

    /// [`LlmCost::price_field`], counting the call in `tally` as coming
    /// from `origin` and appending the new field to `out` (`Some` when it
    /// did).
    fn price_field_from(
        &self,
        field: &[u8],
        origin: &Origin,
        tally: &mut Tally,
        recent: &mut Recent,
        out: &mut Vec<u8>,
    ) -> Option<()> {
        self.usage.find(field)?;
        let mut u = Usage::default();
        let cost_key = self.cost_attribute.as_bytes();
        crate::inplace::for_each_raw_attribute(field, |key, raw| {
            u.has_cost |= key == cost_key;
            // Every key pricing reads starts with one of these.
            if !key.starts_with(b"gen_ai.") && !key.starts_with(b"llm.") {
                return;
            }
            prefer(&mut u.input, &INPUT, key, || raw.get().number());
            prefer(&mut u.output, &OUTPUT, key, || raw.get().number());
            prefer(&mut u.cached, &CACHED, key, || raw.get().number());
            let text = || raw.string_bytes();
            prefer(&mut u.model, &MODEL, key, text);
            prefer(&mut u.provider, &PROVIDER, key, text);
        });
        if u.input.is_none() && u.output.is_none() {
            return None;
        }
        let (_, model) = u.model?;
        if u.has_cost {
            // Replacing a value inside the span means a decode; still only
            // attributes change, so the span's index entry holds.
            let edited = crate::rewrite::edit_span(field, out, |s| {
                self.price_from(s, origin, tally, recent)
            });
            return edited.then_some(());
        }
        let price = self.lookup(model, u.provider.map(|p| p.1), recent)?;
        let (input, output) = (u.input.map_or(0.0, |x| x.1), u.output.map_or(0.0, |x| x.1));
        let usd = cost(price, input, output, u.cached.map_or(0.0, |x| x.1));
        self.priced.add(1);
        let call = Call {
            model,
            input,
            output,
            usd,
        };
        tally.add(&call, origin);
        crate::inplace::append_double_attribute(field, &self.cost_attribute, usd, out).then_some(())
    }

    /// Prices one decoded span; true when it changed.
    #[cfg(test)]
    fn price(&self, span: &mut Span) -> bool {
        let mut tally = Tally::default();
        let changed = self.price_from(span, &Origin::default(), &mut tally, &mut Recent::default());
        self.spend.flush(&mut tally, 0);
        changed
    }

    /// [`LlmCost::price`], counting the call in `tally` as coming from
    /// `origin`.
    fn price_from(
        &self,
        span: &mut Span,
        origin: &Origin,
        tally: &mut Tally,
        recent: &mut Recent,
    ) -> bool {
        let input = number(attr(span, &INPUT));
        let output = number(attr(span, &OUTPUT));
        if input.is_none() && output.is_none() {
            return false;
        }
        let Some(model) = text(attr(span, &MODEL)).map(str::to_string) else {
            return false;
        };
        let provider = text(attr(span, &PROVIDER)).map(str::to_string);
        let Some(price) = self.lookup(
            model.as_bytes(),
            provider.as_deref().map(str::as_bytes),
            recent,
        ) else {
            return false;
        };
        let (input, output) = (input.unwrap_or(0.0), output.unwrap_or(0.0));
        let usd = cost(
            price,
            input,
            output,
            number(attr(span, &CACHED)).unwrap_or(0.0),
        );
        let call = Call {
            model: model.as_bytes(),
            input,
            output,
            usd,
        };
        tally.add(&call, origin);
        let value = Some(AnyValue {
            value: Some(Value::DoubleValue(usd)),
        });
        match span
            .attributes
            .iter_mut()
            .find(|a| a.key == self.cost_attribute)
        {
            Some(a) => a.value = value,
            None => span.attributes.push(KeyValue {
                key: self.cost_attribute.clone(),
                value,
                ..Default::default()
            }),
        }
        self.priced.add(1);
        true
    }
}

/// Each resource's `service.name` in one request, read once per resource
/// and only for resources with a priced span.
struct Sources<'a> {
    req: &'a crate::batch::Request,
    names: Vec<Option<&'a [u8]>>,
}

impl<'a> Sources<'a> {
    fn new(req: &'a crate::batch::Request) -> Sources<'a> {
        Sources {
            req,
            names: Vec::new(),
        }
    }

    fn of(&mut self, entry: &SpanEntry) -> &'a [u8] {
        let req = self.req;
        let Some(index) = req.index.as_ref() else {
            return b"";
        };
        let Some(scope) = index.scopes.get(entry.scope as usize) else {
            return b"";
        };
        let r = scope.resource as usize;
        if self.names.len() <= r {
            self.names.resize(index.resources.len().max(r + 1), None);
        }
        self.names[r].get_or_insert_with(|| {
            let range = index.resources[r].resource;
            let field = &req.bytes[range.0 as usize..range.1 as usize];
            let mut name: &[u8] = b"";
            crate::inplace::for_each_resource_attribute(field, |k, v| {
                if k == b"service.name" {
                    name = v.string_bytes().unwrap_or(b"");
                }
            });
            name
        })
    }
}

#[async_trait]
impl Consumer for LlmCost {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        // Every usage attribute key contains "usage."; spans without it are
        // not even read attribute by attribute.
        let minute = spend::now_minute();
        let mut tally = TALLY.take().unwrap_or_default();
        let mut recent = Recent::default();
        rewrite_batch(&mut batch, |req| {
            let mut sources = Sources::new(req);
            replace_spans(req, Reach::AttributesOnly, |entry, field, out| {
                let origin = Origin {
                    source: sources.of(entry),
                    trace_id: entry.trace_id,
                    seconds: entry
                        .end_time_unix_nano
                        .saturating_sub(entry.start_time_unix_nano)
                        as f64
                        / 1e9,
                    minute,
                };
                self.price_field_from(field, &origin, &mut tally, &mut recent, out)
                    .is_some()
            })
        });
        // Flushing empties it for the next batch.
        self.spend.flush(&mut tally, minute);
        TALLY.set(Some(tally));
        self.next.consume(batch).await
    }
}

thread_local! {
    /// This thread's tally between batches, empty. A batch lists ~100
    /// traces a request; a new list for each grew six times over.
    static TALLY: Cell<Option<Tally>> = const { Cell::new(None) };
}

impl ProcessorBuilder for LlmCostConfig {
    fn build(&self, _signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        let labels = [("processor", ctx.id.as_str())];
        Arc::new(LlmCost {
            book: PriceBook::new(self),
            cost_attribute: self.cost_attribute.clone(),
            usage: Finder::new(b"usage.").into_owned(),
            next,
            priced: ctx.metrics.counter(
                "observatory_processor_llm_cost_priced_spans_total",
                "Spans given a cost.",
                &labels,
            ),
            unknown: ctx.metrics.counter(
                "observatory_processor_llm_cost_unknown_model_spans_total",
                "Spans with token usage whose model has no price (left unpriced).",
                &labels,
            ),
            unknown_seen: Mutex::new(HashSet::new()),
            memo: Mutex::new(FastMap::default()),
            id: ctx.id.clone(),
            spend: Spend::new(&ctx.metrics, &ctx.id),
        })
    }
}

#[cfg(test)]
mod tests;
