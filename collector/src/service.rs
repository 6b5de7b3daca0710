//! Assembles and runs what a checked config describes, and shuts it down in
//! stages: receivers stop and answer what is in flight, pipelines drain,
//! exporters flush, each against one deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pipeline::component::{Context, Storages, Tasks};
use pipeline::telemetry::Registry;
use pipeline::{BoxConsumer, Fanout, Signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use crate::config::Checked;
use crate::extensions::{Health, Host};
use crate::receivers::{SignalConsumers, Stop};
use crate::telemetry;

/// How long shutdown may take before undelivered data is given up (and
/// logged with the component that still held it).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

fn stop_pair() -> (watch::Sender<bool>, Stop) {
    let (tx, rx) = watch::channel(false);
    (tx, Stop(rx))
}

async fn join_all(label: &str, handles: Vec<(String, JoinHandle<()>)>, deadline: Instant) {
    for (id, h) in handles {
        if timeout_at(deadline, h).await.is_err() {
            tracing::error!(component = %id, "{label} did not finish before the shutdown deadline; what it still held is lost");
        }
    }
}

/// Runs the collector until `shutdown` resolves, then drains.
pub async fn run(checked: Checked, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    for w in &checked.warnings {
        tracing::warn!("{w}");
    }
    let metrics = Registry::new();
    telemetry::register_process(&metrics);
    let tasks = Tasks::default();
    let health = Health::default();
    let storage: Storages = Arc::new(
        checked
            .extensions
            .iter()
            .filter_map(|(id, e)| Some((id.clone(), e.storage()?)))
            .collect(),
    );
    let mut auth = BTreeMap::new();
    for (id, e) in &checked.extensions {
        if let Some(a) = e
            .authenticator()
            .map_err(|e| format!("extensions.{id}: {e}"))?
        {
            auth.insert(id.clone(), a);
        }
    }
    let auth = Arc::new(auth);
    let local = pipeline::component::LocalInputs::default();
    let ctx = |id: &str| Context {
        id: id.to_string(),
        metrics: metrics.clone(),
        tasks: tasks.clone(),
        storage: storage.clone(),
        auth: auth.clone(),
        local: local.clone(),
    };
    // Extensions and the metrics endpoint outlive the data path so health
    // reads 503 and metrics stay scrapeable while draining.
    let (aux_stop_tx, aux_stop) = stop_pair();
    let mut aux = Vec::new();
    if let Some(h) = telemetry::serve_metrics(
        &checked.telemetry.metrics,
        metrics.clone(),
        aux_stop.clone(),
    )
    .await?
    {
        aux.push(("telemetry".to_string(), h));
    }
    let host = Host {
        health: health.clone(),
        pipelines: Arc::new(checked.pipelines.clone()),
    };
    for (id, ext) in &checked.extensions {
        for h in ext.start(&ctx(id), &host, aux_stop.clone()).await? {
            aux.push((id.clone(), h));
        }
    }

    let mut exporters: BTreeMap<String, BoxConsumer> = BTreeMap::new();
    for (id, b) in &checked.exporters {
        exporters.insert(
            id.clone(),
            b.build(&ctx(id))
                .map_err(|e| format!("exporters.{id}: {e}"))?,
        );
    }
    let mut heads: Vec<(usize, BoxConsumer)> = Vec::new();
    for (i, p) in checked.pipelines.iter().enumerate() {
        let out = Fanout::of(p.exporters.iter().map(|e| exporters[e].clone()).collect());
        let head = crate::flow::build_chain(&metrics, p, out, |pid, next| {
            checked.processors[pid].build(p.signal, next, &ctx(pid))
        });
        heads.push((i, head));
    }
    drop(exporters);

    let inputs_of = |rid: &str| {
        let mut consumers = SignalConsumers::default();
        for s in Signal::ALL {
            let feeds: Vec<BoxConsumer> = heads
                .iter()
                .filter(|(i, _)| {
                    let p = &checked.pipelines[*i];
                    p.signal == s && p.receivers.iter().any(|r| r == rid)
                })
                .map(|(_, c)| c.clone())
                .collect();
            if !feeds.is_empty() {
                consumers.0[s as usize] = Some(Fanout::of(feeds));
            }
        }
        consumers
    };
    // Exporters that hand their own share to a receiver's pipelines
    // in-process get those inputs before any data flows.
    for rid in local.wanted() {
        if !checked.receivers.contains_key(&rid) {
            return Err(format!(
                "an exporter's local.receiver names {rid:?}, which is not a receiver in any pipeline"
            ));
        }
        let _ = local.slot(&rid).set(inputs_of(&rid).0);
    }
    local.clear();
    let (stop_tx, stop) = stop_pair();
    let mut servers = Vec::new();
    for (rid, b) in &checked.receivers {
        let consumers = inputs_of(rid);
        let started = b.start(consumers, &ctx(rid), stop.clone()).await;
        for h in started.map_err(|e| format!("receivers.{rid}: {e}"))? {
            servers.push((rid.clone(), h));
        }
    }
    // From here only the receivers hold the pipelines, so stopping them
    // lets every queue close and drain in order.
    drop(heads);
    health.set(true);
    tracing::info!(
        pipelines = checked.pipelines.len(),
        "Everything is ready. Begin running and processing data."
    );

    shutdown.await;
    tracing::info!("Shutting down: stopping receivers, draining pipelines, flushing exporters");
    health.set(false);
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    let _ = stop_tx.send(true);
    join_all("receiver", servers, deadline).await;
    join_all("pipeline stage", tasks.take(), deadline).await;
    let _ = aux_stop_tx.send(true);
    join_all("extension", aux, Instant::now() + Duration::from_secs(2)).await;
    tracing::info!("Shutdown complete.");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
