use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rand::{Rng, SeedableRng};

use super::*;
use crate::batch::span_count;
use crate::component::Tasks;
use crate::generate::{Generator, GeneratorOptions};
use crate::telemetry::Registry;
use crate::testing::Sink;

fn ctx() -> Context {
    Context {
        id: "batch".into(),
        metrics: Registry::new(),
        tasks: Tasks::default(),
        storage: Default::default(),
        auth: Default::default(),
        local: Default::default(),
    }
}

fn traces(gen: &mut Generator, n: usize) -> Batch {
    Batch::parse(Signal::Traces, gen.spans(n).encode_to_vec().into()).unwrap()
}

async fn drain(input: BoxConsumer, ctx: &Context) {
    drop(input);
    for (_, t) in ctx.tasks.take() {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn never_exceeds_max_and_never_loses_or_reorders_a_span() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    for round in 0..20 {
        let size = rng.random_range(1..300);
        let max = size + rng.random_range(0..200);
        let cfg = BatchConfig {
            timeout: Duration::from_secs(60),
            send_batch_size: size,
            send_batch_max_size: max,
            ..BatchConfig::default()
        };
        let sink = Arc::new(Sink::default());
        let c = ctx();
        let input = cfg.build(Signal::Traces, sink.clone(), &c);
        let mut gen = Generator::new(GeneratorOptions {
            seed: round,
            ..Default::default()
        });
        let mut sent_ids = Vec::new();
        for _ in 0..rng.random_range(1..30) {
            let b = traces(&mut gen, rng.random_range(1..700));
            sent_ids.extend(
                b.requests[0]
                    .index
                    .as_ref()
                    .unwrap()
                    .spans
                    .iter()
                    .map(|s| s.span_id),
            );
            // A full queue is a retryable refusal: the client would retry.
            while input.consume(b.clone()).await.is_err() {
                tokio::task::yield_now().await;
            }
        }
        drain(input, &c).await;
        let batches = sink.batches.lock().unwrap();
        let mut got_ids = Vec::new();
        for b in batches.iter() {
            assert!(b.items() <= max, "batch of {} over max {max}", b.items());
            let decoded = b.decode_traces().unwrap();
            assert_eq!(span_count(&decoded), b.items());
            for r in &b.requests {
                got_ids.extend(r.index.as_ref().unwrap().spans.iter().map(|s| s.span_id));
            }
        }
        assert_eq!(got_ids, sent_ids, "round {round}");
        // All but the last (flushed at shutdown) batch were sent by size.
        for b in &batches[..batches.len() - 1] {
            assert!(b.items() >= size);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_sends_a_partial_batch() {
    let cfg = BatchConfig {
        timeout: Duration::from_millis(200),
        send_batch_size: 1000,
        send_batch_max_size: 0,
        ..BatchConfig::default()
    };
    let sink = Arc::new(Sink::default());
    let c = ctx();
    let input = cfg.build(Signal::Traces, sink.clone(), &c);
    let mut gen = Generator::new(GeneratorOptions::default());
    input.consume(traces(&mut gen, 10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(sink.sizes().is_empty(), "sent before the timeout");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.sizes(), vec![10]);
    let by_timeout = c.metrics.value(
        "observatory_processor_batch_sends_total",
        &[
            ("processor", "batch"),
            ("signal", "traces"),
            ("trigger", "timeout"),
        ],
    );
    assert_eq!(by_timeout, Some(1.0));
    drain(input, &c).await;
}

#[tokio::test(start_paused = true)]
async fn downstream_refusals_are_waited_out_not_dropped() {
    let cfg = BatchConfig {
        timeout: Duration::ZERO,
        ..BatchConfig::default()
    };
    let sink = Arc::new(Sink::default());
    *sink.refuse.lock().unwrap() = 5;
    let c = ctx();
    let input = cfg.build(Signal::Logs, sink.clone(), &c);
    let logs = Generator::new(GeneratorOptions::default()).logs(4);
    input
        .consume(Batch::parse(Signal::Logs, logs.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    drain(input, &c).await;
    assert_eq!(sink.sizes(), vec![4]);
    assert_eq!(*sink.refuse.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_full_queue_is_a_retryable_refusal() {
    // A downstream that never takes anything blocks the batcher; the input
    // queue then fills and further requests are refused as retryable.
    let sink = Arc::new(Sink::default());
    *sink.refuse.lock().unwrap() = usize::MAX;
    let c = ctx();
    let cfg = BatchConfig {
        timeout: Duration::ZERO,
        ..BatchConfig::default()
    };
    let input = cfg.build(Signal::Traces, sink.clone(), &c);
    let mut gen = Generator::new(GeneratorOptions::default());
    let mut refused = None;
    for _ in 0..(QUEUE_REQUESTS + 10) {
        if let Err(e) = input.consume(traces(&mut gen, 1)).await {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(ConsumeError::Retryable(
            "batch processor queue is full".into()
        ))
    );
}

fn from_tenant(gen: &mut Generator, n: usize, tenant: Option<&str>) -> Batch {
    let mut b = traces(gen, n);
    b.requests[0].client = Some(Arc::new(crate::client::ClientInfo {
        addr: Some("10.1.2.3".parse().unwrap()),
        auth: vec![("username".into(), "u".into())],
        metadata: tenant
            .map(|t| vec![("x-tenant".to_string(), vec![t.to_string()])])
            .unwrap_or_default(),
    }));
    b
}

#[tokio::test(start_paused = true)]
async fn metadata_keys_batch_tenants_apart_and_pass_on_only_those_values() {
    let cfg = BatchConfig {
        timeout: Duration::from_millis(200),
        send_batch_size: 10,
        metadata_keys: vec!["X-Tenant".into()],
        ..BatchConfig::default()
    };
    let sink = Arc::new(Sink::default());
    let c = ctx();
    let input = cfg.build(Signal::Traces, sink.clone(), &c);
    let mut gen = Generator::new(GeneratorOptions::default());
    for (n, t) in [(6, Some("a")), (6, Some("b")), (6, Some("a")), (3, None)] {
        input.consume(from_tenant(&mut gen, n, t)).await.unwrap();
    }
    tokio::task::yield_now().await;
    // Tenant a reached 12 >= 10 and went out alone; b and "none" wait.
    let got = sink.batches.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let tenant = |b: &Batch| -> Vec<Option<Vec<String>>> {
        b.requests
            .iter()
            .map(|r| r.client.as_ref().map(|c| c.metadata("x-tenant").to_vec()))
            .collect()
    };
    assert_eq!(tenant(&got[0]), vec![Some(vec!["a".to_string()]); 2]);
    // Only the kept key travels on: no address, no auth.
    let kept = got[0].requests[0].client.as_ref().unwrap();
    assert!(kept.addr.is_none() && kept.auth.is_empty());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut sizes = sink.sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![3, 6, 12]);
    drain(input, &c).await;
}

#[tokio::test]
async fn without_metadata_keys_the_context_stops_here_and_past_the_limit_is_refused() {
    let sink = Arc::new(Sink::default());
    let c = ctx();
    let cfg = BatchConfig {
        timeout: Duration::ZERO,
        ..BatchConfig::default()
    };
    let input = cfg.build(Signal::Traces, sink.clone(), &c);
    let mut gen = Generator::new(GeneratorOptions::default());
    input
        .consume(from_tenant(&mut gen, 2, Some("a")))
        .await
        .unwrap();
    drain(input, &c).await;
    assert!(sink.batches.lock().unwrap()[0].requests[0].client.is_none());

    let cfg = BatchConfig {
        timeout: Duration::ZERO,
        metadata_keys: vec!["x-tenant".into()],
        metadata_cardinality_limit: 2,
        ..BatchConfig::default()
    };
    let c = ctx();
    let input = cfg.build(Signal::Traces, sink.clone(), &c);
    for t in ["a", "b", "a"] {
        input
            .consume(from_tenant(&mut gen, 1, Some(t)))
            .await
            .unwrap();
    }
    let e = input
        .consume(from_tenant(&mut gen, 1, Some("c")))
        .await
        .unwrap_err();
    assert!(matches!(e, ConsumeError::Permanent(m) if m.contains("metadata_cardinality_limit")));
    drain(input, &c).await;
}
