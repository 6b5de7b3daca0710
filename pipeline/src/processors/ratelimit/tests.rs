use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::*;
use crate::client::ClientInfo;
use crate::generate::{Generator, GeneratorOptions};
use crate::testing::{context, Sink};

fn limiter(yaml: &str) -> (BoxConsumer, Arc<Sink>, Context) {
    let cfg: RateLimitConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
    let sink = Arc::new(Sink::default());
    let ctx = context("ratelimit");
    (cfg.build(Signal::Traces, sink.clone(), &ctx), sink, ctx)
}

fn from(tenant: &str, spans: usize, seed: u64) -> Batch {
    let body = Generator::new(GeneratorOptions {
        seed,
        ..Default::default()
    })
    .spans(spans)
    .encode_to_vec();
    let mut b = Batch::parse(Signal::Traces, body.into()).unwrap();
    b.requests[0].client = Some(Arc::new(ClientInfo {
        auth: vec![("tenant".into(), tenant.into())],
        ..Default::default()
    }));
    b
}

fn count(ctx: &Context, key: &str, decision: &str) -> f64 {
    ctx.metrics
        .value(
            "observatory_processor_ratelimit_requests_total",
            &[
                ("processor", "ratelimit"),
                ("signal", "traces"),
                ("key", key),
                ("decision", decision),
            ],
        )
        .unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn a_source_ten_times_over_its_rate_leaves_the_other_untouched() {
    let (p, sink, ctx) =
        limiter("metadata_keys: [auth.tenant]\nstrategy: records\nrate: 100\nburst: 100\n");
    let (mut noisy_ok, mut noisy_refused, mut quiet_ok) = (0usize, 0usize, 0usize);
    // Ten seconds: the noisy tenant sends 1,000 spans/s (10x), the quiet
    // one 50/s.
    for tick in 0..100u64 {
        match p.consume(from("noisy", 100, tick)).await {
            Ok(()) => noisy_ok += 100,
            Err(ConsumeError::Throttled {
                retry_after,
                message,
            }) => {
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
                    "{retry_after:?}"
                );
                assert!(message.contains("noisy"), "{message}");
                noisy_refused += 100;
            }
            Err(e) => panic!("{e}"),
        }
        if tick % 2 == 0 {
            p.consume(from("quiet", 10, tick)).await.unwrap();
            quiet_ok += 10;
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(quiet_ok, 500, "every quiet span accepted");
    // The noisy tenant got its rate (100/s over 10 s, plus the burst), no more.
    assert!((1_000..=1_100).contains(&noisy_ok), "{noisy_ok}");
    assert_eq!(noisy_ok + noisy_refused, 10_000);
    assert_eq!(sink.sizes().iter().sum::<usize>(), noisy_ok + quiet_ok);
    assert_eq!(count(&ctx, "auth.tenant:quiet", "accepted"), 50.0);
    assert_eq!(count(&ctx, "auth.tenant:quiet", "throttled"), 0.0);
    assert_eq!(
        count(&ctx, "auth.tenant:noisy", "throttled"),
        (noisy_refused / 100) as f64
    );
}

#[tokio::test(start_paused = true)]
async fn resources_are_charged_to_their_own_source() {
    let (p, _sink, ctx) =
        limiter("resource_attribute: service.name\nstrategy: records\nrate: 10\nburst: 40\n");
    let b = from("t", 60, 1);
    let resources = b.requests[0].index.as_ref().unwrap().resources.len();
    assert!(resources > 1, "the test needs several resources");
    // No service has more than 40 of the 60 spans: each fits its own bucket.
    p.consume(b).await.unwrap();
    let err = p.consume(from("t", 60, 1)).await;
    let Err(ConsumeError::Throttled { message, .. }) = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("service.name:"), "{message}");
    let accepted = ctx
        .metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("observatory_processor_ratelimit_requests_total")
                && l.contains("accepted")
                && l.ends_with(" 1")
        })
        .count();
    assert_eq!(accepted, resources, "one bucket per service");
}

#[tokio::test(start_paused = true)]
async fn delay_holds_the_request_until_its_tokens_are_there() {
    let (p, sink, _ctx) = limiter("rate: 2\nburst: 1\nthrottle_behavior: delay\n");
    let start = tokio::time::Instant::now();
    for i in 0..3 {
        p.consume(from("t", 1, i)).await.unwrap();
    }
    // One from the burst, then two at 2/s.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(990) && waited < Duration::from_millis(1100),
        "{waited:?}"
    );
    assert_eq!(sink.sizes().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn overrides_set_a_keys_rate_and_oversize_requests_are_refused_for_good() {
    let (p, _sink, _ctx) = limiter(
        "metadata_keys: [auth.tenant]\nstrategy: records\nrate: 5\nburst: 5\noverrides:\n  'auth.tenant:big':\n    burst: 1000\n",
    );
    p.consume(from("big", 500, 1)).await.unwrap();
    let e = p.consume(from("small", 500, 2)).await.unwrap_err();
    assert!(
        matches!(&e, ConsumeError::Permanent(m) if m.contains("burst")),
        "{e:?}"
    );
}

#[test]
fn config_mistakes_are_named() {
    let err =
        |y: &str| parse_config::<RateLimitConfig>(serde_yaml::from_str(y).unwrap()).unwrap_err();
    assert_eq!(err("burst: 1\n").path, "");
    assert_eq!(err("rate: 0\nburst: 1\n").path, "rate");
    assert_eq!(err("rate: 1\nburst: 0\n").path, "burst");
    assert_eq!(err("rate: 1\nburst: 1\ntype: gubernator\n").path, "type");
    assert_eq!(
        err("rate: 1\nburst: 1\nthrottle_interval: 1s\n").path,
        "throttle_interval"
    );
    assert_eq!(err("rate: 1\nburst: 1\nstrategy: spans\n").path, "strategy");
    assert_eq!(
        err("rate: 1\nburst: 1\noverrides: {a: {rate: -1}}\n").path,
        "overrides.a.rate"
    );
}
