//! Receivers: the shape every receiver has, and what they share (delivering
//! into pipelines with self-metrics, binding endpoints).

pub mod admission;
pub mod conn;
pub mod filelog;
pub mod identify;
pub mod kafka;
pub mod otlp;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pipeline::component::{ConfigError, Context};
use pipeline::telemetry::{Counter, Registry};
use pipeline::{Batch, BoxConsumer, ConsumeError, Signal};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The pipelines' inputs a receiver feeds, per signal (`None`: no pipeline
/// takes that signal from this receiver).
#[derive(Clone, Default)]
pub struct SignalConsumers(pub [Option<BoxConsumer>; 3]);

impl SignalConsumers {
    /// The consumer for `signal`, if any pipeline takes it.
    pub fn get(&self, signal: Signal) -> Option<&BoxConsumer> {
        self.0[signal as usize].as_ref()
    }
}

/// Resolves when the collector starts shutting down.
#[derive(Clone)]
pub struct Stop(pub watch::Receiver<bool>);

impl Stop {
    /// Waits for the stop signal (or for the sender to go away).
    pub async fn wait(mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A validated receiver config that can start serving.
#[async_trait]
pub trait ReceiverBuilder: Send + Sync {
    /// Binds its endpoints and serves until `stop`; returns the serving tasks,
    /// which end once in-flight requests are answered.
    async fn start(
        &self,
        consumers: SignalConsumers,
        ctx: &Context,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String>;
}

/// A receiver type.
pub struct ReceiverFactory {
    /// Type name in configs.
    pub type_name: &'static str,
    /// Signals it can receive.
    pub signals: &'static [Signal],
    /// Parses and validates a config.
    pub parse: fn(serde_yaml::Value) -> Result<Arc<dyn ReceiverBuilder>, ConfigError>,
}

/// Self-metrics of one receiver on one transport.
#[derive(Clone)]
pub struct ReceiverMetrics {
    accepted: [Counter; 3],
    refused: [Counter; 3],
    malformed: Counter,
    refused_connections: Counter,
    tls_failed: Counter,
    unauthenticated: Counter,
}

impl ReceiverMetrics {
    /// Registers the series for receiver `id` on `transport` (`grpc`, `http`).
    pub fn new(reg: &Registry, id: &str, transport: &str) -> ReceiverMetrics {
        let labels = [("receiver", id), ("transport", transport)];
        let mk = |what: &str, help: &'static str| {
            Signal::ALL.map(|s| {
                reg.counter(
                    &format!("observatory_receiver_{what}_{}_total", s.item_name()),
                    help,
                    &labels,
                )
            })
        };
        ReceiverMetrics {
            accepted: mk("accepted", "Items the pipeline took."),
            refused: mk(
                "refused",
                "Items refused (the client was told to retry or that the data is bad).",
            ),
            malformed: reg.counter(
                "observatory_receiver_malformed_requests_total",
                "Requests refused before their items could be counted (bad encoding, size, type).",
                &labels,
            ),
            refused_connections: reg.counter(
                "observatory_receiver_refused_connections_total",
                "Connections closed on arrival because the listener had max_connections open.",
                &labels,
            ),
            tls_failed: reg.counter(
                "observatory_receiver_tls_handshake_failures_total",
                "Connections closed because their TLS handshake failed or did not finish in time (no client certificate, wrong CA, old TLS version).",
                &labels,
            ),
            unauthenticated: reg.counter(
                "observatory_receiver_unauthenticated_requests_total",
                "Requests refused because authentication failed (missing or wrong credentials).",
                &labels,
            ),
        }
    }

    /// The counter of requests refused by authentication.
    pub fn unauthenticated(&self) -> Counter {
        self.unauthenticated.clone()
    }

    /// Counts a connection whose TLS handshake failed.
    pub fn tls_failed(&self) {
        self.tls_failed.add(1);
    }

    /// The counter of connections closed at the connection cap.
    pub fn refused_connections(&self) -> Counter {
        self.refused_connections.clone()
    }

    /// Counts a request refused before parsing.
    pub fn malformed(&self) {
        self.malformed.add(1);
    }

    /// Counts items refused before they reached the pipeline (the receiver's
    /// admission budget was taken): the client was told to retry.
    pub fn refused(&self, signal: Signal, items: usize) {
        self.refused[signal as usize].add(items as u64);
    }

    /// Hands a batch to the pipeline and counts the outcome.
    pub async fn deliver(&self, consumer: &BoxConsumer, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal, batch.items() as u64);
        let result = consumer.consume(batch).await;
        match &result {
            Ok(()) => self.accepted[signal as usize].add(items),
            Err(_) => self.refused[signal as usize].add(items),
        }
        result
    }
}

/// Binds `endpoint` (`host:port`, `:port` for every interface), preferring
/// IPv4 when a name resolves to both, as clients dialling `localhost` do.
pub async fn bind(endpoint: &str) -> Result<TcpListener, String> {
    let target = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_string()
    };
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let mut last = format!("{endpoint} resolved to no address");
    for a in addrs {
        match TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = format!("cannot listen on {endpoint} ({a}): {e}"),
        }
    }
    Err(last)
}
