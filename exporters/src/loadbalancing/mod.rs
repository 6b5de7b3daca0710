//! `loadbalancing`: sends each trace (or each service's data) to the one
//! backend that owns it on otelcol's consistent-hash ring, so several
//! tail-sampling instances each see whole traces. Traces are split by
//! owner by re-framing span bytes from the index (never decoded); logs and
//! metrics are split by resource. Each backend is an `otlp` exporter with
//! its own queue and retries, built from `protocol.otlp`.

mod config;
mod dns;
pub(crate) mod keys;
mod resolve;
mod ring;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use pipeline::batch::{log_count, point_count};
use pipeline::component::{parse_config, ConfigError, Context, SignalInputs};
use pipeline::consumer::{BoxConsumer, ConsumeError, Consumer};
use pipeline::rewrite::decode_field;
use pipeline::split::select_spans_merged;
use pipeline::telemetry::Counter;
use pipeline::{Batch, Request, Signal};
use prost::Message;

pub use config::{LoadBalancingConfig, RoutingKey};
pub use ring::Ring;

use crate::engine::{self, ExportError, Exporter, Sent};
use crate::{ExporterBuilder, ExporterFactory};

/// The registry entries: otelcol's name, and the one recent releases use.
pub fn factories() -> [ExporterFactory; 2] {
    let parse: fn(serde_yaml::Value) -> _ =
        |v| Ok(Arc::new(parse_config::<LoadBalancingConfig>(v)?) as _);
    [
        ExporterFactory {
            type_name: "loadbalancing",
            signals: &Signal::ALL,
            parse,
        },
        ExporterFactory {
            type_name: "load_balancing",
            signals: &Signal::ALL,
            parse,
        },
    ]
}

/// One backend: the input of its engine (queue, retries, self-metrics
/// under `<id>/<endpoint>`), and whether it has left the ring.
struct Backend {
    exporter: BoxConsumer,
    retired: Arc<AtomicBool>,
}

impl Drop for Backend {
    /// Dropped from the ring: what its queue still holds goes back to the
    /// ring (see [`Routed`]) as the engine drains.
    fn drop(&mut self) {
        self.retired.store(true, Ordering::SeqCst);
    }
}

/// The ring and the exporters of its members, swapped whole on a change.
struct Members {
    ring: Ring,
    backends: Vec<Arc<Backend>>,
}

/// What the resolver task, the consumer and the backends share.
pub(crate) struct Shared {
    cfg: LoadBalancingConfig,
    ctx: Context,
    members: RwLock<Arc<Members>>,
    changes: Counter,
    /// This instance's endpoint and its peer pipelines' inputs (`local`).
    local: Option<(String, Arc<OnceLock<SignalInputs>>)>,
    routed: [Counter; 3],
    routed_local: [Counter; 3],
    rerouted: [Counter; 3],
}

/// A backend's exporter as its engine runs it. While the backend is on the
/// ring it sends there, and a backend that is briefly down keeps its traces
/// (the engine retries) rather than splitting them mid-trace. Once it has
/// left the ring, each batch its queue still holds (and each retry) is
/// routed again over the current ring: the members that own those traces
/// now take them, so nothing waits on a dead address.
struct Routed {
    inner: Arc<dyn Exporter>,
    retired: Arc<AtomicBool>,
    lb: Weak<Shared>,
}

#[async_trait]
impl Exporter for Routed {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        if self.retired.load(Ordering::SeqCst) {
            if let Some(lb) = self.lb.upgrade() {
                let result = lb.route(batch.clone()).await;
                let left = result.as_ref().err().map_or(0, |u| u.left.items());
                lb.rerouted[batch.signal as usize].add((batch.items() - left) as u64);
                return result.map(|()| Sent::default()).map_err(|u| {
                    u.into_export_error(
                        batch,
                        "this backend left the ring; routing its queue again",
                    )
                });
            }
        }
        self.inner.export(batch).await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

/// The parts of a batch that no backend took, and the worst answer.
struct Unrouted {
    left: Batch,
    error: ConsumeError,
}

impl Unrouted {
    /// As an engine's export error: `Partly` when some parts went out.
    fn into_export_error(self, whole: &Batch, context: &str) -> ExportError {
        let error = match self.error {
            ConsumeError::Permanent(m) => ExportError::Permanent(format!("{context}: {m}")),
            ConsumeError::Retryable(m) => ExportError::Retryable(format!("{context}: {m}")),
            ConsumeError::Throttled {
                message,
                retry_after,
            } => ExportError::Throttled {
                after: retry_after,
                message: format!("{context}: {message}"),
            },
        };
        if self.left.items() == whole.items() || matches!(error, ExportError::Permanent(_)) {
            error
        } else {
            ExportError::Partly {
                left: Box::new(self.left),
                error: Box::new(error),
                given_up: 0,
            }
        }
    }
}

/// The exporter the top-level engine runs (`sending_queue`,
/// `retry_on_failure`, `timeout` set on `loadbalancing` itself): each
/// attempt routes over the ring as it is then, so a retry of a part whose
/// backend has left goes to the part's new owner.
struct TopLevel {
    shared: Arc<Shared>,
}

#[async_trait]
impl Exporter for TopLevel {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        self.shared
            .route(batch.clone())
            .await
            .map(|()| Sent::default())
            .map_err(|u| u.into_export_error(batch, &self.shared.ctx.id))
    }
}

impl Shared {
    /// Makes `endpoints` the members, keeping the exporters of those that
    /// stay (so their queues carry on) and building the new ones.
    pub(crate) fn set_members(self: &Arc<Self>, endpoints: &[String]) -> Result<bool, ConfigError> {
        let ring = Ring::new(endpoints);
        let old = self.current();
        if old.ring.endpoints() == ring.endpoints() && !old.backends.is_empty() {
            return Ok(false);
        }
        let mut backends = Vec::with_capacity(ring.endpoints().len());
        for e in ring.endpoints() {
            let kept = old
                .ring
                .endpoints()
                .iter()
                .position(|o| o == e)
                .map(|i| old.backends[i].clone());
            let b = match kept {
                Some(b) => b,
                None => {
                    let mut ctx = self.ctx.clone();
                    ctx.id = format!("{}/{e}", self.ctx.id);
                    let cfg = self.cfg.backend(e)?;
                    let retired = Arc::new(AtomicBool::new(false));
                    let routed = Routed {
                        inner: cfg.exporter(&ctx)?,
                        retired: retired.clone(),
                        lb: Arc::downgrade(self),
                    };
                    let exporter = engine::start(&ctx, cfg.engine(), Arc::new(routed))?;
                    Arc::new(Backend { exporter, retired })
                }
            };
            backends.push(b);
        }
        tracing::info!(exporter = %self.ctx.id, members = ?ring.endpoints(), "load-balancing ring changed");
        *self.members.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Members { ring, backends });
        self.changes.add(1);
        Ok(true)
    }

    fn current(&self) -> Arc<Members> {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Splits `batch` by owner on the current ring and hands each part on;
    /// what was refused comes back with the worst answer.
    async fn route(&self, batch: Batch) -> Result<(), Unrouted> {
        let members = self.current();
        let whole = |error| Unrouted {
            left: batch.clone(),
            error,
        };
        if members.backends.is_empty() {
            return Err(whole(ConsumeError::Retryable(format!(
                "{}: no backend resolved yet",
                self.ctx.id
            ))));
        }
        let key = match self.cfg.routing(batch.signal) {
            Ok(k) => k,
            Err(e) => return Err(whole(ConsumeError::Permanent(e.to_string()))),
        };
        let names = &self.cfg.routing_attributes;
        let mut parts = Parts::new();
        match batch.signal {
            Signal::Traces => split_traces(&members.ring, key, names, &batch.requests, &mut parts),
            s => {
                for req in &batch.requests {
                    if let Err(e) = split_decoded(s, &members.ring, key, names, req, &mut parts) {
                        return Err(whole(ConsumeError::Permanent(format!(
                            "loadbalancing: {e}"
                        ))));
                    }
                }
            }
        }
        // Every backend gets its part even if another refuses; the worst
        // answer (retryable before permanent) goes back.
        let mut worst: Option<ConsumeError> = None;
        let mut left = Vec::new();
        for (owner, requests) in parts {
            let part = Batch {
                signal: batch.signal,
                requests,
            };
            let items = part.items() as u64;
            let local = self.local.as_ref().and_then(|(endpoint, slot)| {
                (members.ring.endpoints()[owner] == *endpoint)
                    .then(|| slot.get()?[batch.signal as usize].clone())
                    .flatten()
            });
            let (target, counter) = match &local {
                Some(c) => (c, &self.routed_local),
                None => (&members.backends[owner].exporter, &self.routed),
            };
            // A retry needs the part back; the consumer takes it by value.
            let requests = part.requests.clone();
            match target.consume(part).await {
                Ok(()) => counter[batch.signal as usize].add(items),
                Err(e) => {
                    if e.is_retryable() {
                        left.extend(requests);
                    }
                    if worst.as_ref().is_none_or(|w| !w.is_retryable()) {
                        worst = Some(e);
                    }
                }
            }
        }
        match worst {
            None => Ok(()),
            Some(error) => Err(Unrouted {
                left: Batch {
                    signal: batch.signal,
                    requests: left,
                },
                error,
            }),
        }
    }
}

impl ExporterBuilder for LoadBalancingConfig {
    fn accepts(&self, signal: Signal) -> Result<(), ConfigError> {
        self.routing(signal).map(|_| ())
    }

    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let counters = |name: &str, help: &'static str, to: Option<&str>| {
            Signal::ALL.map(|s| {
                let mut labels = vec![("exporter", ctx.id.as_str())];
                if let Some(t) = to {
                    labels.push(("to", t));
                }
                ctx.metrics.counter(
                    &format!(
                        "observatory_exporter_loadbalancing_{name}_{}_total",
                        s.item_name()
                    ),
                    help,
                    &labels,
                )
            })
        };
        const ROUTED: &str = "Items handed on: to a backend over the network, or to this instance's own pipelines (local).";
        let shared = Arc::new(Shared {
            cfg: self.clone(),
            ctx: ctx.clone(),
            members: RwLock::new(Arc::new(Members {
                ring: Ring::default(),
                backends: Vec::new(),
            })),
            changes: ctx.metrics.counter(
                "observatory_exporter_loadbalancing_membership_changes_total",
                "Times the set of backends changed (including the first resolution).",
                &[("exporter", ctx.id.as_str())],
            ),
            local: self
                .local
                .as_ref()
                .map(|l| (l.endpoint.clone(), ctx.local.slot(&l.receiver))),
            routed: counters("routed", ROUTED, Some("backend")),
            routed_local: counters("routed", ROUTED, Some("local")),
            rerouted: counters(
                "rerouted",
                "Items a backend that left the ring still held, routed again to the current members.",
                None,
            ),
        });
        {
            let weak = Arc::downgrade(&shared);
            ctx.metrics.gauge(
                "observatory_exporter_loadbalancing_members",
                "Backends on the ring now.",
                &[("exporter", ctx.id.as_str())],
                move || {
                    weak.upgrade()
                        .map_or(0.0, |s| s.current().backends.len() as f64)
                },
            );
        }
        resolve::start(&shared, self)?;
        match self.top_level() {
            Some(settings) => engine::start(ctx, settings, Arc::new(TopLevel { shared })),
            None => Ok(Arc::new(LoadBalancer { shared })),
        }
    }
}

struct LoadBalancer {
    shared: Arc<Shared>,
}

/// Requests per backend index.
type Parts = BTreeMap<usize, Vec<Request>>;

/// Traces by owner: each owner gets one request per batch (per client),
/// its spans re-framed from every request into one buffer.
fn split_traces(
    ring: &Ring,
    key: RoutingKey,
    names: &[String],
    reqs: &[Request],
    parts: &mut Parts,
) {
    // Per owner: (request, positions of its spans that owner takes).
    let mut picks: BTreeMap<usize, Vec<(usize, Vec<u32>)>> = BTreeMap::new();
    for (ri, req) in reqs.iter().enumerate() {
        for (o, p) in owners(ring, key, names, req, parts) {
            picks.entry(o).or_default().push((ri, p));
        }
    }
    for (o, list) in picks {
        for run in list.chunk_by(|a, b| reqs[a.0].client == reqs[b.0].client) {
            let group: Vec<(&Request, &[u32])> = run
                .iter()
                .map(|(ri, p)| (&reqs[*ri], p.as_slice()))
                .collect();
            parts
                .entry(o)
                .or_default()
                .push(select_spans_merged(&group));
        }
    }
}

/// The owner of each span of `req`, as positions per owner. A request
/// without an index goes whole into `parts`.
fn owners(
    ring: &Ring,
    key: RoutingKey,
    names: &[String],
    req: &Request,
    parts: &mut Parts,
) -> BTreeMap<usize, Vec<u32>> {
    let mut positions: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let Some(index) = req.index.as_ref() else {
        // Every traces request is indexed at intake; one that is not goes
        // whole to the owner of its first bytes, rather than lost.
        if let Some(o) = ring.owner(&req.bytes[..req.bytes.len().min(16)]) {
            parts.entry(o).or_default().push(req.clone());
        }
        return positions;
    };
    let resources: Vec<Option<Resource>> = match key {
        RoutingKey::TraceId => Vec::new(),
        _ => index
            .resources
            .iter()
            .map(|r| decode_field::<Resource>(&req.bytes, r.resource))
            .collect(),
    };
    let services: Vec<Vec<u8>> = match key {
        RoutingKey::Service => resources
            .iter()
            .map(|r| keys::service(r.as_ref()))
            .collect(),
        _ => Vec::new(),
    };
    let scopes: Vec<Option<InstrumentationScope>> = match key {
        RoutingKey::Attributes => index
            .scopes
            .iter()
            .map(|s| decode_field::<InstrumentationScope>(&req.bytes, s.scope))
            .collect(),
        _ => Vec::new(),
    };
    for (i, s) in index.spans.iter().enumerate() {
        let owner = match key {
            RoutingKey::Service => {
                let r = index.scopes[s.scope as usize].resource as usize;
                ring.owner(&services[r])
            }
            RoutingKey::Attributes => {
                let sc = s.scope as usize;
                let r = index.scopes[sc].resource as usize;
                let span = decode_field::<Span>(&req.bytes, s.range).unwrap_or_default();
                ring.owner(&keys::attributes(
                    names,
                    &keys::Source {
                        resource: resources[r].as_ref(),
                        scope: scopes[sc].as_ref(),
                        item: &span.attributes,
                    },
                ))
            }
            _ => ring.owner(&s.trace_id),
        };
        if let Some(o) = owner {
            positions.entry(o).or_default().push(i as u32);
        }
    }
    positions
}

fn split_decoded(
    signal: Signal,
    ring: &Ring,
    key: RoutingKey,
    names: &[String],
    req: &Request,
    parts: &mut Parts,
) -> Result<(), String> {
    let mut encoded: Vec<(usize, Vec<u8>, usize)> = Vec::new();
    match signal {
        Signal::Logs => {
            let d =
                ExportLogsServiceRequest::decode(req.bytes.clone()).map_err(|e| e.to_string())?;
            for (o, part) in keys::split_logs(ring, key, names, d) {
                encoded.push((o, part.encode_to_vec(), log_count(&part)));
            }
        }
        Signal::Metrics => {
            let d = ExportMetricsServiceRequest::decode(req.bytes.clone())
                .map_err(|e| e.to_string())?;
            for (o, part) in keys::split_metrics(ring, key, names, d) {
                encoded.push((o, part.encode_to_vec(), point_count(&part)));
            }
        }
        Signal::Traces => unreachable!("traces are split from the index"),
    }
    for (o, bytes, items) in encoded {
        parts.entry(o).or_default().push(Request {
            bytes: bytes.into(),
            items,
            index: None,
            client: req.client.clone(),
        });
    }
    Ok(())
}

#[async_trait]
impl Consumer for LoadBalancer {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.shared.route(batch).await.map_err(|u| u.error)
    }
}

#[cfg(test)]
mod tests;
