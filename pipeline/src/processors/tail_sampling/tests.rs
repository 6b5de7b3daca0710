use std::collections::HashMap;

use prost::Message;
use rand::{Rng, SeedableRng};

use super::*;
use crate::component::Tasks;
use crate::generate::{Generator, GeneratorOptions};
use crate::split::split_request;
use crate::testing::Sink;

fn ctx() -> Context {
    Context {
        id: "tail_sampling".into(),
        metrics: Registry::new(),
        tasks: Tasks::default(),
        storage: Default::default(),
        auth: Default::default(),
        local: Default::default(),
    }
}

fn cfg(yaml: &str) -> TailSamplingConfig {
    parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap()
}

async fn drain(input: BoxConsumer, c: &Context) {
    drop(input);
    for (_, t) in c.tasks.take() {
        t.await.unwrap();
    }
}

async fn send(input: &BoxConsumer, batch: Batch) {
    while input.consume(batch.clone()).await.is_err() {
        tokio::task::yield_now().await;
    }
}

/// span id -> trace id of everything that came out, failing on duplicates.
fn emitted(sink: &Sink) -> HashMap<[u8; 8], [u8; 16]> {
    let mut out = HashMap::new();
    for b in sink.batches.lock().unwrap().iter() {
        for r in &b.requests {
            for s in &r.index.as_ref().unwrap().spans {
                assert!(
                    out.insert(s.span_id, s.trace_id).is_none(),
                    "span emitted twice"
                );
            }
        }
        // What is emitted is valid OTLP.
        assert!(b.decode_traces().is_ok());
    }
    out
}

const LLM_GATEWAY: &str = r#"
decision_wait: 1s
num_traces: 100000
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow
    type: latency
    latency: {threshold_ms: 5000}
  - name: some-of-the-rest
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
"#;

#[tokio::test(start_paused = true)]
async fn every_error_and_slow_trace_comes_out_whole_and_the_rest_at_the_configured_share() {
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let input = cfg(LLM_GATEWAY).build(Signal::Traces, sink.clone(), &c);
    let mut g = Generator::new(GeneratorOptions {
        seed: 9,
        error_rate: 0.1,
        slow_rate: 0.1,
    });
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    // 4,000 traces in requests of 40; each request cut at a random span so
    // traces straddle requests, and the second halves sent in reverse order.
    let mut truth: HashMap<[u8; 16], (bool, bool, usize)> = HashMap::new(); // error, slow, spans
    let mut tails = Vec::new();
    for _ in 0..100 {
        let req = g.traces(40);
        for rs in &req.resource_spans {
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let id: [u8; 16] = s.trace_id.clone().try_into().unwrap();
                let t = truth.entry(id).or_default();
                t.0 |= s.status.as_ref().is_some_and(|st| st.code == 2);
                t.1 |= s.name == "rag.query"
                    && s.end_time_unix_nano - s.start_time_unix_nano >= 5_000_000_000;
                t.2 += 1;
            }
        }
        let parsed = Request::parse(Signal::Traces, req.encode_to_vec().into()).unwrap();
        let (head, tail) =
            split_request(Signal::Traces, &parsed, rng.random_range(1..parsed.items));
        send(&input, Batch::new(Signal::Traces, head)).await;
        tails.push(tail);
    }
    for tail in tails.into_iter().rev() {
        send(&input, Batch::new(Signal::Traces, tail)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drain(input, &c).await;

    let out = emitted(&sink);
    let mut per_trace: HashMap<[u8; 16], usize> = HashMap::new();
    for t in out.values() {
        *per_trace.entry(*t).or_default() += 1;
    }
    let (mut errors, mut slow, mut rest, mut rest_kept) = (0, 0, 0, 0);
    for (id, (error, is_slow, spans)) in &truth {
        let kept = per_trace.get(id).copied().unwrap_or(0);
        assert!(
            kept == 0 || kept == *spans,
            "trace emitted in part: {kept} of {spans}"
        );
        if *error || *is_slow {
            assert_eq!(kept, *spans, "error/slow trace not kept whole");
            errors += usize::from(*error);
            slow += usize::from(*is_slow);
        } else {
            rest += 1;
            rest_kept += usize::from(kept > 0);
        }
    }
    assert!(
        errors > 300 && slow > 300,
        "{errors} error and {slow} slow traces exercised"
    );
    // ~3,240 other traces at 10%: 324 expected, standard deviation ~17.
    assert!(
        (250..=400).contains(&rest_kept),
        "{rest_kept} of {rest} kept by the probabilistic policy"
    );
    let decided = c
        .metrics
        .value(
            "observatory_processor_tail_sampling_traces_total",
            &[("processor", "tail_sampling"), ("decision", "sampled")],
        )
        .unwrap()
        + c.metrics
            .value(
                "observatory_processor_tail_sampling_traces_total",
                &[("processor", "tail_sampling"), ("decision", "not_sampled")],
            )
            .unwrap();
    assert_eq!(
        decided,
        truth.len() as f64,
        "every trace decided exactly once"
    );
    let dropped = c
        .metrics
        .value(
            "observatory_processor_dropped_spans_total",
            &[("processor", "tail_sampling")],
        )
        .unwrap();
    assert_eq!(
        out.len() as f64 + dropped,
        20_000.0,
        "every span either emitted or counted as dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trace_is_held_for_decision_wait_then_late_spans_follow_the_cached_decision() {
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let yaml = "decision_wait: 10s\ndecision_cache: {sampled_cache_size: 100}\npolicies:\n  - {name: all, type: always_sample}\n";
    let input = cfg(yaml).build(Signal::Traces, sink.clone(), &c);
    let req = Request::parse(
        Signal::Traces,
        Generator::new(GeneratorOptions::default())
            .traces(1)
            .encode_to_vec()
            .into(),
    )
    .unwrap();
    let (head, tail) = split_request(Signal::Traces, &req, 2);
    send(&input, Batch::new(Signal::Traces, head)).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(
        sink.batches.lock().unwrap().is_empty(),
        "held for decision_wait"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(emitted(&sink).len(), 2);
    send(&input, Batch::new(Signal::Traces, tail)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(emitted(&sink).len(), 5, "late spans pass at once");
    assert_eq!(
        c.metrics.value(
            "observatory_processor_tail_sampling_late_spans_total",
            &[("processor", "tail_sampling")]
        ),
        Some(3.0)
    );
    drain(input, &c).await;
}

#[tokio::test(start_paused = true)]
async fn limits_decide_early_and_drop_policies_win() {
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let yaml = r#"
decision_wait: 60s
num_traces: 10
maximum_trace_size_bytes: 1500
policies:
  - {name: all, type: always_sample}
  - name: no-titan
    type: drop
    drop:
      drop_sub_policy:
        - name: titan
          type: string_attribute
          string_attribute: {key: gen_ai.request.model, values: ["amazon\\..*"], enabled_regex_matching: true}
"#;
    let input = cfg(yaml).build(Signal::Traces, sink.clone(), &c);
    let sent = Generator::new(GeneratorOptions::default()).traces(30);
    send(
        &input,
        Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = |reason: &str| {
        c.metrics
            .value(
                "observatory_processor_tail_sampling_early_decisions_total",
                &[("processor", "tail_sampling"), ("reason", reason)],
            )
            .unwrap()
    };
    // Each trace is ~2.3 KB, so it is decided as soon as it passes 1,500 bytes.
    assert_eq!(early("maximum_trace_size_bytes"), 30.0);
    drain(input, &c).await;
    let out = emitted(&sink);
    let titan: usize = sent
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter().flat_map(|s| &s.spans))
        .filter(|s| {
            s.attributes.iter().any(|a| {
                a.key == "gen_ai.request.model" && format!("{:?}", a.value).contains("amazon.")
            })
        })
        .count();
    assert!(titan > 0 && titan < 30);
    // A trace (~2.3 KB) passes 1,500 bytes only with its last span, the LLM
    // call, so each is decided early and whole; the drop policy overrides
    // always_sample for the titan ones.
    assert_eq!(out.len(), (30 - titan) * 5);
    let dropped = c
        .metrics
        .value(
            "observatory_processor_dropped_spans_total",
            &[("processor", "tail_sampling")],
        )
        .unwrap();
    assert_eq!(dropped, (titan * 5) as f64);

    // num_traces: with a wait far away, holding more traces decides the oldest.
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let input = cfg(
        "decision_wait: 60s\nnum_traces: 10\npolicies:\n  - {name: all, type: always_sample}\n",
    )
    .build(Signal::Traces, sink.clone(), &c);
    send(
        &input,
        Batch::parse(
            Signal::Traces,
            Generator::new(GeneratorOptions::default())
                .traces(25)
                .encode_to_vec()
                .into(),
        )
        .unwrap(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.metrics.value(
            "observatory_processor_tail_sampling_early_decisions_total",
            &[("processor", "tail_sampling"), ("reason", "num_traces")]
        ),
        Some(15.0)
    );
    assert_eq!(emitted(&sink).len(), 15 * 5);
    drain(input, &c).await;
    assert_eq!(emitted(&sink).len(), 25 * 5, "the rest go out at shutdown");
}

#[tokio::test]
async fn past_maximum_held_bytes_the_oldest_traces_are_decided_early() {
    let req = Batch::parse(
        Signal::Traces,
        Generator::new(GeneratorOptions::default())
            .traces(40)
            .encode_to_vec()
            .into(),
    )
    .unwrap();
    let spans: usize = req.requests[0]
        .index
        .as_ref()
        .unwrap()
        .spans
        .iter()
        .map(|s| (s.range.1 - s.range.0) as usize)
        .sum();
    // Room for about a quarter of the traces.
    let cap = spans / 4;
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let input = cfg(&format!(
        "decision_wait: 60s\nmaximum_held_bytes: {cap}\npolicies:\n  - {{name: all, type: always_sample}}\n"
    ))
    .build(Signal::Traces, sink.clone(), &c);
    send(&input, req).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = c
        .metrics
        .value(
            "observatory_processor_tail_sampling_early_decisions_total",
            &[
                ("processor", "tail_sampling"),
                ("reason", "maximum_held_bytes"),
            ],
        )
        .unwrap();
    assert!((28.0..=31.0).contains(&early), "{early} decided early");
    let held = c
        .metrics
        .value(
            "observatory_processor_tail_sampling_held_bytes",
            &[("processor", "tail_sampling")],
        )
        .unwrap();
    assert!(held > 0.0 && held <= cap as f64, "held {held} of {cap}");
    assert_eq!(emitted(&sink).len(), early as usize * 5, "decided whole");
    drain(input, &c).await;
    assert_eq!(emitted(&sink).len(), 40 * 5, "the rest go out at shutdown");
}

#[test]
fn maximum_held_bytes_defaults_to_a_gibibyte_and_zero_turns_it_off() {
    let d = cfg("policies:\n  - {name: all, type: always_sample}\n");
    assert_eq!(d.maximum_held_bytes, 1 << 30);
    let off = cfg("maximum_held_bytes: 0\npolicies:\n  - {name: all, type: always_sample}\n");
    assert_eq!(off.maximum_held_bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stuck_next_stage_turns_into_refusals_and_loses_nothing() {
    let c = ctx();
    let sink = Arc::new(Sink::default());
    *sink.refuse.lock().unwrap() = usize::MAX;
    let input = cfg(
        "decision_wait: 60s\nnum_traces: 10\npolicies:\n  - {name: all, type: always_sample}\n",
    )
    .build(Signal::Traces, sink.clone(), &c);
    let mut g = Generator::new(GeneratorOptions::default());
    // Each request of 20 traces decides 10 early (num_traces), 50 spans that
    // the refusing stage never takes; past OUT_SPANS input is refused.
    let mut accepted = 0;
    let refusal = loop {
        let batch = Batch::parse(Signal::Traces, g.traces(20).encode_to_vec().into()).unwrap();
        match input.consume(batch).await {
            Ok(()) => accepted += 100,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refusal.is_retryable(), "{refusal}");
    assert!(refusal.to_string().contains("next stage"), "{refusal}");
    assert!(
        accepted > OUT_SPANS,
        "{accepted} spans taken before refusing"
    );
    // The stage recovers: held and decided spans all go out, once each.
    *sink.refuse.lock().unwrap() = 0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let batch = Batch::parse(Signal::Traces, g.traces(20).encode_to_vec().into()).unwrap();
    input
        .consume(batch)
        .await
        .expect("taken again once sent on");
    drain(input, &c).await;
    assert_eq!(emitted(&sink).len(), accepted + 100);
}

#[test]
fn expected_new_traces_per_sec_sizes_the_held_map_up_to_num_traces() {
    let with = |extra: &str| {
        cfg(&format!(
            "decision_wait: 10s\n{extra}policies: [{{name: all, type: always_sample}}]"
        ))
        .initial_capacity()
    };
    assert_eq!(with(""), 0);
    assert_eq!(with("expected_new_traces_per_sec: 3000\n"), 30_000);
    assert_eq!(
        with("num_traces: 1000\nexpected_new_traces_per_sec: 3000\n"),
        1000
    );
}

#[test]
fn policy_configs_are_checked_by_name() {
    let err = |yaml: &str| {
        parse_config::<TailSamplingConfig>(serde_yaml::from_str(yaml).unwrap()).unwrap_err()
    };
    assert_eq!(err("policies: []").path, "policies");
    assert_eq!(
        err("policies: [{name: a, type: latency}]").path,
        "policies.0.latency"
    );
    assert_eq!(
        err("policies: [{name: a, type: status_code, status_code: {status_codes: [BAD]}}]").path,
        "policies.0.status_code.status_codes"
    );
    assert!(err("policies: [{name: a, type: bytes_limiting}]")
        .message
        .contains("not available yet"));
    assert_eq!(
        err("policies: [{name: a, type: rate_limiting, rate_limiting: {spans_per_second: 0}}]")
            .path,
        "policies.0.rate_limiting.spans_per_second"
    );
    assert_eq!(
        err("policies: [{name: a, type: trace_state, trace_state: {key: k, values: []}}]").path,
        "policies.0.trace_state.values"
    );
    let composite = |body: &str| {
        err(&format!(
            "policies: [{{name: c, type: composite, composite: {{max_total_spans_per_second: 10, {body}}}}}]"
        ))
    };
    let e = composite("policy_order: [x], composite_sub_policy: [{name: a, type: always_sample}]");
    assert_eq!(e.path, "policies.0.composite.policy_order.0", "{e}");
    let e = composite(
        "composite_sub_policy: [{name: a, type: always_sample}], rate_allocation: [{policy: b, percent: 5}]",
    );
    assert_eq!(
        e.path, "policies.0.composite.rate_allocation.0.policy",
        "{e}"
    );
    let e = composite("composite_sub_policy: [{name: a, type: drop, drop: {drop_sub_policy: [{name: b, type: always_sample}]}}]");
    assert_eq!(
        e.path, "policies.0.composite.composite_sub_policy.0.type",
        "{e}"
    );
    assert_eq!(
        err("policies: [{name: a, type: and, and: {and_sub_policy: [{name: b, type: nope}]}}]")
            .path,
        "policies.0.and.and_sub_policy.0.type"
    );
    let ok = cfg(LLM_GATEWAY);
    assert_eq!(ok.decision_wait, Duration::from_secs(1));
    assert_eq!(
        TailSamplingConfig::default().decision_wait,
        Duration::from_secs(10)
    );
}

#[test]
fn the_probabilistic_hash_is_fnv1a_64_over_salt_then_id() {
    // Published FNV-1a 64 vectors: "" and "a".
    assert_eq!(salted_hash("", b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(salted_hash("a", b""), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(salted_hash("", b"a"), salted_hash("a", b""));
}

/// The traces of a request as policies see them, in first-seen order.
fn views(req: &Request, second: u64) -> Vec<TraceView<'_>> {
    let index = req.index.as_ref().unwrap();
    let mut order: Vec<[u8; 16]> = Vec::new();
    let mut by_id: HashMap<[u8; 16], Vec<SpanRef>> = HashMap::new();
    for entry in &index.spans {
        let resource =
            index.resources[index.scopes[entry.scope as usize].resource as usize].resource;
        if !by_id.contains_key(&entry.trace_id) {
            order.push(entry.trace_id);
        }
        by_id.entry(entry.trace_id).or_default().push(SpanRef {
            entry,
            field: &req.bytes[entry.range.0 as usize..entry.range.1 as usize],
            resource: &req.bytes[resource.0 as usize..resource.1 as usize],
        });
    }
    order
        .into_iter()
        .map(|id| {
            let spans = by_id.remove(&id).unwrap();
            TraceView {
                trace_id: id,
                summary: Summary::of(&spans),
                spans,
                second,
                hits: None,
            }
        })
        .collect()
}

fn policy(yaml: &str) -> Policy {
    let cfg: PolicyConfig = serde_yaml::from_str(yaml).unwrap();
    Policy::new(&cfg, "policies.0").unwrap()
}

fn request(
    req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Request {
    Request::parse(Signal::Traces, req.encode_to_vec().into()).unwrap()
}

#[test]
fn rate_limiting_takes_whole_traces_while_under_the_rate_each_second() {
    let req = request(&Generator::new(GeneratorOptions::default()).traces(4));
    let mut p = policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 11}}");
    let got: Vec<Verdict> = views(&req, 7).iter().map(|t| p.evaluate(t)).collect();
    // 5 then 10 spans are under 11; 15 is not (otelcol: strictly under).
    assert_eq!(
        got,
        [
            Verdict::Sampled,
            Verdict::Sampled,
            Verdict::NotSampled,
            Verdict::NotSampled
        ]
    );
    // A new second starts a new budget.
    assert_eq!(p.evaluate(&views(&req, 8)[0]), Verdict::Sampled);
}

#[test]
fn trace_state_matches_a_listed_value_of_its_key() {
    let mut sent = Generator::new(GeneratorOptions::default()).traces(3);
    sent.resource_spans[0].scope_spans[0].spans[0].trace_state =
        "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE".into();
    let req = request(&sent);
    let mut p = policy(
        "{name: t, type: trace_state, trace_state: {key: congo, values: [nope, t61rcWkgMzE]}}",
    );
    let got: Vec<Verdict> = views(&req, 0).iter().map(|t| p.evaluate(t)).collect();
    assert_eq!(
        got,
        [Verdict::Sampled, Verdict::NotSampled, Verdict::NotSampled]
    );
    assert!(!trace_state_has(
        "congo=t61rcWkgMzEx",
        "congo",
        &["t61rcWkgMzE".into()]
    ));
    assert!(!trace_state_has(
        "xcongo=t61rcWkgMzE",
        "congo",
        &["t61rcWkgMzE".into()]
    ));
}

#[test]
fn composite_gives_each_sub_policy_its_share_then_falls_through() {
    let mut g = Generator::new(GeneratorOptions {
        error_rate: 1.0,
        ..Default::default()
    });
    let errors = request(&g.traces(3));
    let mut g = Generator::new(GeneratorOptions {
        error_rate: 0.0,
        ..Default::default()
    });
    let fine = request(&g.traces(2));
    let mut p = policy(
        r#"
name: c
type: composite
composite:
  max_total_spans_per_second: 20
  policy_order: [errors, everything]
  composite_sub_policy:
    - {name: everything, type: always_sample}
    - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  rate_allocation:
    - {policy: errors, percent: 50}
    - {policy: everything, percent: 25}
"#,
    );
    // errors may take 10 spans a second, everything 5.
    let got: Vec<Verdict> = views(&errors, 0)
        .iter()
        .chain(views(&fine, 0).iter())
        .map(|t| p.evaluate(t))
        .collect();
    assert_eq!(
        got,
        [
            Verdict::Sampled,    // errors: 5
            Verdict::Sampled,    // errors: 10
            Verdict::Sampled,    // errors full; everything: 5
            Verdict::NotSampled, // everything full
            Verdict::NotSampled,
        ]
    );
    assert_eq!(p.evaluate(&views(&fine, 1)[0]), Verdict::Sampled);
    // A sub-policy with no allocation never samples, as in otelcol.
    let mut p = policy(
        "{name: c, type: composite, composite: {max_total_spans_per_second: 100, composite_sub_policy: [{name: a, type: always_sample}]}}",
    );
    assert_eq!(p.evaluate(&views(&fine, 0)[0]), Verdict::NotSampled);
}

#[test]
fn attribute_policies_see_resource_attributes() {
    let whole = request(&Generator::new(GeneratorOptions::default()).traces(1));
    // The first three spans are all rag-api's.
    let part = request(&Generator::new(GeneratorOptions::default()).spans(3));
    let mut p = policy(
        "{name: s, type: string_attribute, string_attribute: {key: service.name, values: [llm-gateway]}}",
    );
    assert_eq!(p.evaluate(&views(&whole, 0)[0]), Verdict::Sampled);
    assert_eq!(p.evaluate(&views(&part, 0)[0]), Verdict::NotSampled);
    let mut inv = policy(
        "{name: s, type: string_attribute, string_attribute: {key: service.name, values: [llm-gateway], invert_match: true}}",
    );
    assert_eq!(
        inv.evaluate(&views(&whole, 0)[0]),
        Verdict::InvertNotSampled
    );
    assert_eq!(inv.evaluate(&views(&part, 0)[0]), Verdict::InvertSampled);
}

#[test]
fn inverted_verdicts_follow_otelcols_precedence() {
    use Verdict::*;
    let cases: [(&[Verdict], bool); 7] = [
        (&[InvertSampled], true),
        (&[InvertSampled, NotSampled], false),
        (&[InvertSampled, NotSampled, Sampled], true),
        (&[Sampled, InvertNotSampled], false),
        (&[Sampled, NotSampled], true),
        (&[Sampled, Dropped], false),
        (&[NotSampled], false),
    ];
    for (verdicts, keep) in cases {
        assert_eq!(final_decision(verdicts), keep, "{verdicts:?}");
    }
    // Inside `and`, an inverted non-match is a plain yes.
    let whole = request(&Generator::new(GeneratorOptions::default()).traces(1));
    let mut p = policy(
        "{name: a, type: and, and: {and_sub_policy: [{name: s, type: string_attribute, string_attribute: {key: service.name, values: [nope], invert_match: true}}, {name: all, type: always_sample}]}}",
    );
    assert_eq!(p.evaluate(&views(&whole, 0)[0]), Verdict::Sampled);
}

#[test]
fn attribute_bits_taken_on_arrival_decide_as_walking_the_spans_does() {
    let yaml = [
        "{name: n, type: numeric_attribute, numeric_attribute: {key: gen_ai.usage.input_tokens, min_value: 3000}}",
        "{name: s, type: string_attribute, string_attribute: {key: service.name, values: [llm-gateway]}}",
        "{name: r, type: string_attribute, string_attribute: {key: gen_ai.request.model, values: ['claude.*'], enabled_regex_matching: true, invert_match: true}}",
        "{name: b, type: boolean_attribute, boolean_attribute: {key: cache.hit, value: false}}",
        "{name: a, type: and, and: {and_sub_policy: [{name: x, type: numeric_attribute, numeric_attribute: {key: gen_ai.usage.output_tokens, max_value: 100}}, {name: y, type: always_sample}]}}",
    ];
    let mut g = Generator::new(GeneratorOptions {
        error_rate: 0.3,
        ..Default::default()
    });
    let req = request(&g.traces(200));
    // Cut traces short too, so some lack the LLM span or a resource.
    let part = request(&Generator::new(GeneratorOptions::default()).spans(303));
    // All five keys are walked for; the first four (few enough) are first
    // searched for in the span's bytes.
    for (req, yaml) in [
        (&req, &yaml[..]),
        (&part, &yaml[..]),
        (&req, &yaml[..4]),
        (&part, &yaml[..4]),
    ] {
        let mut walking: Vec<Policy> = yaml.iter().map(|y| policy(y)).collect();
        let mut with_bits = walking.clone();
        let tests = AttrTests::assign(&mut with_bits);
        let mut differ = 0;
        for mut t in views(req, 0) {
            let want: Vec<Verdict> = walking.iter_mut().map(|p| p.evaluate(&t)).collect();
            t.hits = Some(
                t.spans
                    .iter()
                    .map(|s| tests.span(s.field) | tests.resource(s.resource))
                    .fold(0, |a, b| a | b),
            );
            let got: Vec<Verdict> = with_bits.iter_mut().map(|p| p.evaluate(&t)).collect();
            assert_eq!(got, want);
            differ +=
                usize::from(want.iter().any(|v| v.samples()) && want.iter().any(|v| !v.samples()));
        }
        assert!(
            differ > 0,
            "the policies disagree on some traces, so the test can fail"
        );
    }
}

#[test]
fn a_key_whose_bytes_first_appear_inside_an_earlier_value_is_still_found() {
    use crate::generate::kv;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let cost = |usd: f64| kv("gen_ai.usage.cost", Value::DoubleValue(usd));
    let mention = kv(
        "note",
        Value::StringValue("gen_ai.usage.cost came out high".into()),
    );
    let mut p = vec![policy(
        "{name: e, type: numeric_attribute, numeric_attribute: {key: gen_ai.usage.cost, min_value: 1}}",
    )];
    let tests = AttrTests::assign(&mut p);
    // (attributes, whether the expensive test passes)
    let cases = [
        (vec![mention.clone(), cost(2.0)], true),
        (vec![cost(2.0), mention.clone()], true),
        (vec![mention.clone(), cost(0.5)], false),
        (vec![mention.clone()], false),
        (
            vec![kv("model", Value::StringValue("x".into())), cost(3.0)],
            true,
        ),
    ];
    for (attributes, want) in cases {
        let mut req = Generator::new(GeneratorOptions::default()).spans(1);
        req.resource_spans[0].scope_spans[0].spans[0].attributes = attributes.clone();
        let req = request(&req);
        let entry = &req.index.as_ref().unwrap().spans[0];
        let field = &req.bytes[entry.range.0 as usize..entry.range.1 as usize];
        assert_eq!(tests.span(field) == 1, want, "{attributes:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn sampled_spans_keep_the_context_of_the_request_that_brought_them() {
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let input = cfg("decision_wait: 1s\npolicies:\n  - {name: all, type: always_sample}\n").build(
        Signal::Traces,
        sink.clone(),
        &c,
    );
    let mut g = Generator::new(GeneratorOptions::default());
    let mut sent = HashMap::new();
    for tenant in ["a", "b"] {
        let mut b = Batch::parse(Signal::Traces, g.spans(10).encode_to_vec().into()).unwrap();
        b.requests[0].client = Some(Arc::new(crate::client::ClientInfo {
            auth: vec![("tenant".into(), tenant.into())],
            ..Default::default()
        }));
        for s in &b.requests[0].index.as_ref().unwrap().spans {
            sent.insert(s.span_id, tenant);
        }
        send(&input, b).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drain(input, &c).await;
    let mut seen = 0;
    for b in sink.batches.lock().unwrap().iter() {
        for r in &b.requests {
            let tenant = r
                .client
                .as_ref()
                .and_then(|c| c.auth_attribute("tenant"))
                .unwrap();
            for s in &r.index.as_ref().unwrap().spans {
                assert_eq!(sent[&s.span_id], tenant);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 20);
}

/// span id -> its encoded span field, for every span of `reqs`.
fn span_fields<'a>(reqs: impl IntoIterator<Item = &'a Request>) -> HashMap<[u8; 8], Vec<u8>> {
    let mut out = HashMap::new();
    for r in reqs {
        for s in &r.index.as_ref().unwrap().spans {
            let field = r.bytes[s.range.0 as usize..s.range.1 as usize].to_vec();
            out.insert(s.span_id, field);
        }
    }
    out
}

fn compressed_bytes(c: &Context) -> f64 {
    c.metrics
        .value(
            "observatory_processor_tail_sampling_compressed_bytes",
            &[("processor", "tail_sampling")],
        )
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn held_requests_wait_compressed_and_kept_traces_come_out_byte_for_byte() {
    for codec in ["lz4", "zstd", "none"] {
        let c = ctx();
        let sink = Arc::new(Sink::default());
        let input = cfg(&format!(
            "decision_wait: 10s\nheld_compression: {codec}\ncompress_after: 1s\npolicies:\n  - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}\n"
        ))
        .build(Signal::Traces, sink.clone(), &c);
        let mut g = Generator::new(GeneratorOptions {
            seed: 5,
            error_rate: 0.2,
            slow_rate: 0.0,
        });
        let (mut sent, mut failed, mut encoded) = (HashMap::new(), HashMap::new(), 0);
        let mut trace_of = HashMap::new();
        for _ in 0..20 {
            let req = g.traces(40);
            for s in req
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
            {
                let id: [u8; 16] = s.trace_id.clone().try_into().unwrap();
                let span: [u8; 8] = s.span_id.clone().try_into().unwrap();
                trace_of.insert(span, id);
                *failed.entry(id).or_insert(false) |=
                    s.status.as_ref().is_some_and(|st| st.code == 2);
            }
            let batch = Batch::parse(Signal::Traces, req.encode_to_vec().into()).unwrap();
            encoded += batch.requests[0].bytes.len();
            sent.extend(span_fields(&batch.requests));
            send(&input, batch).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            compressed_bytes(&c),
            0.0,
            "{codec}: young requests stay as received"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let packed = compressed_bytes(&c);
        if codec == "none" {
            assert_eq!(packed, 0.0);
        } else {
            assert!(
                packed > 0.0 && packed < encoded as f64 / 3.0,
                "{codec}: {packed} compressed bytes for {encoded} received"
            );
        }
        assert!(
            sink.batches.lock().unwrap().is_empty(),
            "nothing decided yet"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            compressed_bytes(&c),
            0.0,
            "{codec}: decided requests are freed"
        );
        drain(input, &c).await;

        let out = emitted(&sink);
        let batches = sink.batches.lock().unwrap();
        let fields = span_fields(batches.iter().flat_map(|b| &b.requests));
        let errors = failed.values().filter(|e| **e).count();
        assert!(errors > 50, "{errors} failed traces");
        for (span, trace) in &trace_of {
            if failed[trace] {
                assert_eq!(
                    fields.get(span),
                    sent.get(span),
                    "{codec}: spans of failed traces come out byte for byte"
                );
            } else {
                assert!(!out.contains_key(span), "{codec}: only failed traces");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn policies_that_read_span_bytes_keep_requests_as_received() {
    const POLICY: &str =
        "policies:\n  - {name: ts, type: trace_state, trace_state: {key: k, values: [v]}}\n";
    // Asked for by name, compression that cannot apply is refused.
    let err = parse_config::<TailSamplingConfig>(
        serde_yaml::from_str(&format!("held_compression: zstd\n{POLICY}")).unwrap(),
    )
    .unwrap_err();
    assert_eq!(err.path, "held_compression", "{err}");
    assert!(err.to_string().contains("reads span bytes"), "{err}");
    // Left unset, it is off.
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let input = cfg(&format!("decision_wait: 5s\ncompress_after: 0s\n{POLICY}")).build(
        Signal::Traces,
        sink.clone(),
        &c,
    );
    let mut req = Generator::new(GeneratorOptions::default()).traces(20);
    let marked = &mut req.resource_spans[0].scope_spans[0].spans[0];
    marked.trace_state = "k=v".into();
    let marked: [u8; 16] = marked.trace_id.clone().try_into().unwrap();
    send(
        &input,
        Batch::parse(Signal::Traces, req.encode_to_vec().into()).unwrap(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(compressed_bytes(&c), 0.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = emitted(&sink);
    assert!(!out.is_empty() && out.values().all(|t| *t == marked));
    drain(input, &c).await;
}
