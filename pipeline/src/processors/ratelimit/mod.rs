//! `ratelimit`: token buckets per source, so one noisy source cannot take
//! the capacity of the others. The bucket is picked by client context
//! values (tenant, source, address) and, optionally, a resource attribute;
//! over its rate a request is refused with a delay to retry after (HTTP 429
//! with `Retry-After`, gRPC RESOURCE_EXHAUSTED with RetryInfo) or held
//! (`throttle_behavior: delay`). Decisions are counted per key.

mod config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub use config::{Override, RateLimitConfig, Strategy, ThrottleBehavior};

use crate::actions::attribute;
use crate::batch::{log_count, point_count, Batch, Request, Signal};
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::rewrite::decode_field;
use crate::telemetry::{Counter, Registry};

/// Longest a `delay` request is held; a longer wait is refused instead.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// The key that buckets past `max_keys` share.
const OVERFLOW: &str = "_overflow";

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "ratelimit",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<RateLimitConfig>(v)?)),
    }
}

impl ProcessorBuilder for RateLimitConfig {
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        Arc::new(RateLimiter {
            cfg: self.clone(),
            signal,
            next,
            buckets: Mutex::new(HashMap::new()),
            metrics: ctx.metrics.clone(),
            id: ctx.id.clone(),
        })
    }
}

/// One key's bucket and its counters.
struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    burst: f64,
    accepted: Counter,
    throttled: Counter,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }
}

struct RateLimiter {
    cfg: RateLimitConfig,
    signal: Signal,
    next: BoxConsumer,
    buckets: Mutex<HashMap<String, Bucket>>,
    metrics: Arc<Registry>,
    id: String,
}

/// Why a batch cannot go now.
enum Refusal {
    /// Its tokens will be there after this long.
    Wait(String, Duration),
    /// It needs more tokens than the bucket ever holds.
    Never(String, f64, f64),
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

impl RateLimiter {
    /// The part of the key that comes from the client context.
    fn context_key(&self, req: &Request) -> String {
        let mut key = String::new();
        for (i, k) in self.cfg.metadata_keys.iter().enumerate() {
            if i > 0 {
                key.push(';');
            }
            let vals = req.client.as_ref().map(|c| c.lookup(k)).unwrap_or_default();
            key.push_str(k.strip_prefix("metadata.").unwrap_or(k));
            key.push(':');
            key.push_str(&vals.join(","));
        }
        key
    }

    /// Tokens a part of a request costs: `items` records in `bytes` bytes.
    fn cost(&self, items: usize, bytes: usize) -> f64 {
        match self.cfg.strategy {
            Strategy::Requests => 1.0,
            Strategy::Records => items as f64,
            Strategy::Bytes => bytes as f64,
        }
    }

    /// Each resource's attribute value, records and bytes.
    fn per_resource(&self, req: &Request, attr_key: &str) -> Vec<(String, usize, usize)> {
        let mut out: Vec<(String, usize, usize)> = Vec::new();
        let mut add = |v: String, items: usize, bytes: usize| match out
            .iter_mut()
            .find(|(k, _, _)| *k == v)
        {
            Some(e) => {
                e.1 += items;
                e.2 += bytes;
            }
            None => out.push((v, items, bytes)),
        };
        match self.signal {
            Signal::Traces => {
                let Some(index) = req.index.as_ref() else {
                    return vec![(String::new(), req.items, req.bytes.len())];
                };
                let values: Vec<String> = index
                    .resources
                    .iter()
                    .map(|r| {
                        let res: Option<Resource> = decode_field(&req.bytes, r.resource);
                        text(
                            res.as_ref()
                                .and_then(|r| attribute(&r.attributes, attr_key)),
                        )
                    })
                    .collect();
                for s in &index.spans {
                    let r = index.scopes[s.scope as usize].resource as usize;
                    add(values[r].clone(), 1, (s.range.1 - s.range.0) as usize);
                }
            }
            Signal::Logs => match ExportLogsServiceRequest::decode(req.bytes.clone()) {
                Ok(d) => {
                    for rl in d.resource_logs {
                        let v = text(
                            rl.resource
                                .as_ref()
                                .and_then(|r| attribute(&r.attributes, attr_key)),
                        );
                        let items = log_count(&ExportLogsServiceRequest {
                            resource_logs: vec![rl.clone()],
                        });
                        add(v, items, rl.encoded_len());
                    }
                }
                Err(_) => add(String::new(), req.items, req.bytes.len()),
            },
            Signal::Metrics => match ExportMetricsServiceRequest::decode(req.bytes.clone()) {
                Ok(d) => {
                    for rm in d.resource_metrics {
                        let v = text(
                            rm.resource
                                .as_ref()
                                .and_then(|r| attribute(&r.attributes, attr_key)),
                        );
                        let items = point_count(&ExportMetricsServiceRequest {
                            resource_metrics: vec![rm.clone()],
                        });
                        add(v, items, rm.encoded_len());
                    }
                }
                Err(_) => add(String::new(), req.items, req.bytes.len()),
            },
        }
        out
    }

    /// What a batch costs, per bucket key.
    fn demand(&self, batch: &Batch) -> Vec<(String, f64)> {
        let mut demand: Vec<(String, f64)> = Vec::new();
        let mut add = |k: String, n: f64| match demand.iter_mut().find(|(d, _)| *d == k) {
            Some(e) => e.1 += n,
            None => demand.push((k, n)),
        };
        for req in &batch.requests {
            let base = self.context_key(req);
            match &self.cfg.resource_attribute {
                None => add(base, self.cost(req.items, req.bytes.len())),
                Some(a) => {
                    for (v, items, bytes) in self.per_resource(req, a) {
                        let key = if base.is_empty() {
                            format!("{a}:{v}")
                        } else {
                            format!("{base};{a}:{v}")
                        };
                        add(key, self.cost(items, bytes));
                    }
                }
            }
        }
        demand
    }

    /// A new bucket for `key`, full, with its override if any.
    fn bucket(&self, key: &str, now: Instant) -> Bucket {
        let o = self.cfg.overrides.get(key);
        let rate = o.and_then(|o| o.rate).unwrap_or(self.cfg.rate);
        let burst = o.and_then(|o| o.burst).unwrap_or(self.cfg.burst) as f64;
        let labels = |decision: &str| {
            self.metrics.counter(
                "observatory_processor_ratelimit_requests_total",
                "Rate-limit decisions per bucket key: accepted, or throttled (refused with a retry delay).",
                &[
                    ("processor", self.id.as_str()),
                    ("signal", self.signal.as_str()),
                    ("key", key),
                    ("decision", decision),
                ],
            )
        };
        Bucket {
            tokens: burst,
            at: now,
            rate,
            burst,
            accepted: labels("accepted"),
            throttled: labels("throttled"),
        }
    }

    /// Takes every key's tokens, or none.
    fn try_take(&self, demand: &mut [(String, f64)]) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _) in demand.iter_mut() {
            if !buckets.contains_key(key.as_str()) && buckets.len() >= self.cfg.max_keys {
                // A refilled bucket is the same as none: drop those first.
                buckets.retain(|_, b| {
                    b.refill(now);
                    b.tokens < b.burst
                });
                if buckets.len() >= self.cfg.max_keys {
                    *key = OVERFLOW.to_string();
                }
            }
            if !buckets.contains_key(key.as_str()) {
                let b = self.bucket(key, now);
                buckets.insert(key.clone(), b);
            }
        }
        let mut refusal = None;
        for (key, need) in demand.iter() {
            let b = buckets.get_mut(key.as_str()).expect("inserted above");
            b.refill(now);
            if *need > b.burst {
                refusal = Some(Refusal::Never(key.clone(), *need, b.burst));
                break;
            }
            if b.tokens < *need {
                let wait = Duration::from_secs_f64((need - b.tokens) / b.rate);
                refusal = Some(Refusal::Wait(key.clone(), wait));
                break;
            }
        }
        match refusal {
            None => {
                for (key, need) in demand.iter() {
                    let b = buckets.get_mut(key.as_str()).expect("inserted above");
                    b.tokens -= need;
                    b.accepted.add(1);
                }
                Ok(())
            }
            Some(r) => {
                let key = match &r {
                    Refusal::Wait(k, _) | Refusal::Never(k, _, _) => k,
                };
                if let Some(b) = buckets.get(key.as_str()) {
                    b.throttled.add(1);
                }
                Err(r)
            }
        }
    }
}

#[async_trait]
impl Consumer for RateLimiter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let mut demand = self.demand(&batch);
        loop {
            match self.try_take(&mut demand) {
                Ok(()) => break,
                Err(Refusal::Never(key, need, burst)) => {
                    return Err(ConsumeError::Permanent(format!(
                        "ratelimit: this request needs {need} tokens for {key:?}, more than its burst ({burst}) can ever hold"
                    )))
                }
                Err(Refusal::Wait(_, wait))
                    if self.cfg.throttle_behavior == ThrottleBehavior::Delay && wait <= MAX_DELAY =>
                {
                    tokio::time::sleep(wait).await;
                }
                Err(Refusal::Wait(key, wait)) => {
                    return Err(ConsumeError::Throttled {
                        message: format!("ratelimit: {key:?} is over its rate; retry after {wait:?}"),
                        retry_after: wait.max(Duration::from_millis(1)),
                    })
                }
            }
        }
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
