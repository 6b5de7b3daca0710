use prost::Message;

use super::*;
use crate::generate::{Generator, GeneratorOptions};
use crate::testing::Rig;

fn redactor(yaml: &str) -> Redactor {
    let cfg: RedactionConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
    Redactor::new(&cfg).unwrap()
}

const ALL_PRESETS: &str = "allow_all_keys: true\nhash_function: none\nblocked_value_presets: [email, credit_card, us_ssn, ipv4, bearer_token, api_key, url_secret]\n";

/// (text with a leak, the leaked part) — real-looking, synthetic values.
const LEAKS: &[(&str, &str)] = &[
    (
        "contact jane.doe+billing@example.co.uk about it",
        "jane.doe+billing@example.co.uk",
    ),
    ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
    ("card=5555555555554444", "5555555555554444"),
    ("amex 3782-822463-10005 on file", "3782-822463-10005"),
    ("ssn 123-45-6789 verified", "123-45-6789"),
    ("client 203.0.113.42 retried", "203.0.113.42"),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ),
    (
        "OPENAI_API_KEY=sk-proj-AbCdEf0123456789GhIjKl",
        "sk-proj-AbCdEf0123456789GhIjKl",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE"),
    (
        "GET /v1/files?id=7&token=s3cr3t-t0k3n&page=2",
        "s3cr3t-t0k3n",
    ),
    ("redirect https://x.test/cb?password=hunter2", "hunter2"),
];

/// Values that only look like secrets and must stay untouched.
const LOOK_ALIKES: &[&str] = &[
    "order 1234567890123 shipped",          // 13 digits, fails Luhn
    "invoice 4111 1111 1111 1112",          // card-shaped, fails Luhn
    "2024-11-21T23:09:00.123456789Z",       // timestamp
    "1700000000123456789",                  // unix nanos (19 digits, fails Luhn)
    "550e8400-e29b-41d4-a716-446655440000", // UUID
    "ssn-like 000-12-3456 and 666-12-3456 and 123-00-4567", // invalid SSN ranges
    "version 1.14.2 build 256.1.1.1",       // not an IPv4 (256)
    "model gpt-4o-2024-08-06",
    "sk-short",                    // too short for a key
    "the key=value pair in prose", // not a query string
];

#[test]
fn every_leak_in_the_corpus_is_masked() {
    let r = redactor(ALL_PRESETS);
    for (text, secret) in LEAKS {
        let out = r
            .scrub(text)
            .unwrap_or_else(|| panic!("not masked: {text}"));
        assert!(!out.contains(secret), "{text} -> {out}");
        assert!(out.contains("****"), "{out}");
    }
}

#[test]
fn look_alikes_stay_untouched() {
    let r = redactor(ALL_PRESETS);
    for text in LOOK_ALIKES {
        assert_eq!(
            r.scrub(text),
            None,
            "{text} was changed to {:?}",
            r.scrub(text)
        );
    }
    assert!(luhn("4111111111111111") && !luhn("4111111111111112"));
}

#[test]
fn otelcol_key_rules_and_summary() {
    let r = redactor(
        r#"
allowed_keys: [description, user.email, auth.token, note]
ignored_keys: [safe]
blocked_key_patterns: [".*token.*"]
blocked_values: ["4[0-9]{12}(?:[0-9]{3})?"]
allowed_values: [".+@mycompany.com"]
hash_function: sha256
summary: debug
"#,
    );
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let mut attrs = vec![
        kv("description", "fine"),
        kv("user.email", "ops@mycompany.com"),
        kv("auth.token", "abc123"),
        kv("note", "paid with 4111111111111111"),
        kv("safe", "4111111111111111"),
        kv("password", "hunter2"),
    ];
    assert!(r.attrs(&mut attrs, true));
    let get = |k: &str| match attrs
        .iter()
        .find(|a| a.key == k)
        .and_then(|a| a.value.as_ref()?.value.clone())
    {
        Some(Value::StringValue(s)) => Some(s),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        _ => None,
    };
    assert_eq!(get("description").as_deref(), Some("fine"));
    assert_eq!(
        get("user.email").as_deref(),
        Some("ops@mycompany.com"),
        "allowed value"
    );
    let sha = |s: &str| hex(&sha2::Sha256::digest(s.as_bytes()));
    assert_eq!(
        get("auth.token"),
        Some(sha("abc123")),
        "blocked key: whole value hashed"
    );
    assert_eq!(
        get("note"),
        Some(format!("paid with {}", sha("4111111111111111")))
    );
    assert_eq!(
        get("safe").as_deref(),
        Some("4111111111111111"),
        "ignored key untouched"
    );
    assert_eq!(get("password"), None, "not on the allow-list: removed");
    assert_eq!(get("redaction.redacted.keys").as_deref(), Some("password"));
    assert_eq!(get("redaction.redacted.count").as_deref(), Some("1"));
    assert_eq!(
        get("redaction.masked.keys").as_deref(),
        Some("auth.token,note")
    );
    assert_eq!(get("redaction.masked.count").as_deref(), Some("2"));
    assert_eq!(get("redaction.ignored.count").as_deref(), Some("1"));
}

#[test]
fn config_errors_are_named() {
    let err = |yaml: &str| {
        parse_config::<RedactionConfig>(serde_yaml::from_str(yaml).unwrap()).unwrap_err()
    };
    assert_eq!(err("blocked_values: ['(']").path, "blocked_values.0");
    assert_eq!(
        err("blocked_value_presets: [email, passport]").path,
        "blocked_value_presets.1"
    );
    assert_eq!(err("hash_function: crc32").path, "hash_function");
    assert_eq!(err("summary: loud").path, "summary");
}

#[tokio::test]
async fn spans_logs_and_genai_content_through_the_processor() {
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    let yaml = "allow_all_keys: true\nblocked_value_presets: [email]\ndrop_genai_content: true\nsummary: info\n";
    let Rig {
        p, sink, metrics, ..
    } = Rig::new(factory(), "redaction", yaml, Signal::Traces);
    let mut req = Generator::new(GeneratorOptions::default()).traces(2);
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(Value::StringValue(s.into())),
        })
    };
    let llm = &mut req.resource_spans[2].scope_spans[0].spans[0];
    llm.attributes.push(KeyValue {
        key: "gen_ai.prompt".into(),
        value: text("my email is jane@example.com"),
        ..Default::default()
    });
    llm.events.push(Event {
        name: "gen_ai.user.message".into(),
        attributes: vec![KeyValue {
            key: "content".into(),
            value: text("secret plans"),
            ..Default::default()
        }],
        ..Default::default()
    });
    llm.events.push(Event {
        name: "retry".into(),
        attributes: vec![KeyValue {
            key: "reason".into(),
            value: text("mail ops@example.com"),
            ..Default::default()
        }],
        ..Default::default()
    });
    p.consume(Batch::parse(Signal::Traces, req.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    let out = sink.batches.lock().unwrap()[0].decode_traces().unwrap();
    let json = serde_json::to_string(&out).unwrap();
    for gone in [
        "jane@example.com",
        "secret plans",
        "ops@example.com",
        "gen_ai.prompt",
        "gen_ai.user.message",
    ] {
        assert!(!json.contains(gone), "{gone} survived");
    }
    assert!(json.contains("\"retry\""), "other events stay");
    assert!(json.contains("redaction.redacted.count") && !json.contains("redaction.masked.count"));
    // Each rule's work is counted: the event's address by the preset, the
    // prompt by the GenAI switch.
    let count = |name: &str, label: (&str, &str)| {
        metrics
            .value(name, &[("processor", "redaction"), label])
            .unwrap()
    };
    let masked = "observatory_processor_redaction_masked_total";
    let removed = "observatory_processor_redaction_removed_total";
    assert_eq!(count(masked, ("rule", "email")), 1.0);
    assert_eq!(count(removed, ("reason", "drop_genai_content")), 1.0);
    assert_eq!(count(removed, ("reason", "not_allowed_key")), 0.0);
    // Log bodies: maps and arrays are scrubbed recursively.
    let Rig { p, sink, .. } = Rig::new(factory(), "redaction", yaml, Signal::Logs);
    let mut logs = Generator::new(GeneratorOptions::default()).logs(1);
    logs.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue {
        value: Some(Value::KvlistValue(
            opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: vec![KeyValue {
                    key: "to".into(),
                    value: Some(AnyValue {
                        value: Some(Value::ArrayValue(
                            opentelemetry_proto::tonic::common::v1::ArrayValue {
                                values: vec![
                                    text("a@example.org").unwrap(),
                                    text("no address").unwrap(),
                                ],
                            },
                        )),
                    }),
                    ..Default::default()
                }],
            },
        )),
    });
    p.consume(Batch::parse(Signal::Logs, logs.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    let out = sink.batches.lock().unwrap()[0].decode_logs().unwrap();
    let json = serde_json::to_string(&out).unwrap();
    assert!(
        !json.contains("a@example.org") && json.contains("no address"),
        "{json}"
    );
}

#[test]
fn preset_hints_never_hide_a_regex_match() {
    use rand::{Rng, SeedableRng};
    // Pieces that make up secrets and near-secrets; random strings of them
    // hit every preset's regex often, and the hint must pass every hit.
    const PIECES: &[&str] = &[
        "0",
        "4",
        "9",
        "12",
        "123",
        "4111",
        "-",
        " ",
        ".",
        "@",
        "=",
        "?",
        "&",
        "a",
        "Z",
        "x.co",
        "sk-",
        "sk-proj-",
        "AKIA",
        "ABCDEFGHIJKLMNOP",
        "bearer ",
        "Bearer\t",
        "BEARER ",
        "token",
        "key",
        "password",
        "/",
        "_",
        "~",
        "é",
        "٣",
        "\u{2003}",
    ];
    const DIGITS: &[&str] = &[
        "1",
        "23",
        "456",
        "7890",
        "4111",
        "192.",
        "10.",
        "1.",
        "-",
        "-45-",
        " ",
        "?key=",
        "&token=",
        "123-",
        "-6789",
        " 321-54-9876 ",
        " 10.0.",
        "0.1 ",
    ];
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let mut hits = std::collections::HashMap::<&str, usize>::new();
    for name in PRESET_NAMES {
        let p = preset(name).unwrap();
        for _ in 0..40_000 {
            let n = rng.random_range(1..24);
            // Half the pieces are digit runs, so cards, SSNs and IPs form.
            let s: String = (0..n)
                .map(|_| {
                    if rng.random_bool(0.5) {
                        DIGITS[rng.random_range(0..DIGITS.len())]
                    } else {
                        PIECES[rng.random_range(0..PIECES.len())]
                    }
                })
                .collect();
            if p.regex.is_match(&s) {
                *hits.entry(name).or_default() += 1;
                assert!(
                    (p.hint)(&Shape::of(s.as_bytes()), s.as_bytes()),
                    "{name}: {s:?}"
                );
                let shortest = p.regex.find_iter(&s).map(|m| m.len()).min().unwrap();
                assert!(shortest >= p.min_len, "{name}: {s:?}");
            }
        }
    }
    // Look-alikes from real spans that the hints alone turn away.
    let shape_says = |name: &str, s: &str| {
        let p = preset(name).unwrap();
        (p.hint)(&Shape::of(s.as_bytes()), s.as_bytes())
    };
    assert!(!shape_says("us_ssn", "gpt-4o-2024-08-06"));
    assert!(shape_says("us_ssn", "ssn 123-45-6789"));
    assert!(!shape_says("credit_card", "chatcmpl-9a81b2c3d4e5f6071829"));
    assert!(shape_says("credit_card", "card 4111 1111-1111 1111"));
    for name in PRESET_NAMES {
        assert!(
            hits.get(name).copied().unwrap_or(0) > 50,
            "{name} barely exercised: {hits:?}"
        );
    }
    // And the corpus of real-looking leaks passes too.
    let r = redactor(ALL_PRESETS);
    for (text, _) in LEAKS {
        assert!(r.may_match(text.as_bytes()), "{text}");
    }
}

#[tokio::test]
async fn nested_values_are_checked_in_place_and_masked_when_they_hold_secrets() {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    let yaml = "allow_all_keys: true\nblocked_key_patterns: ['(?i)passw']\nblocked_value_presets: [email]\nhash_function: none\n";
    let Rig { p, sink, .. } = Rig::new(factory(), "redaction", yaml, Signal::Traces);
    let s = |v: &str| AnyValue {
        value: Some(Value::StringValue(v.into())),
    };
    let kv = |k: &str, v: AnyValue| KeyValue {
        key: k.into(),
        value: Some(v),
        ..Default::default()
    };
    let map = |kvs: Vec<KeyValue>| AnyValue {
        value: Some(Value::KvlistValue(KeyValueList { values: kvs })),
    };
    let array = |vs: Vec<AnyValue>| AnyValue {
        value: Some(Value::ArrayValue(ArrayValue { values: vs })),
    };
    // Harmless nested values: nothing is decoded, the request is kept as is.
    let harmless = Generator::new(GeneratorOptions::default()).traces(2);
    let mut clean = harmless.clone();
    clean.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv(
            "http.headers",
            map(vec![kv("accept", array(vec![s("text/html"), s("*/*")]))]),
        ));
    let sent = Batch::parse(Signal::Traces, clean.encode_to_vec().into()).unwrap();
    let before = sent.requests[0].bytes.clone();
    p.consume(sent).await.unwrap();
    assert_eq!(sink.batches.lock().unwrap()[0].requests[0].bytes, before);

    for (attr, secret) in [
        (
            map(vec![kv("user", map(vec![kv("Password", s("hunter2"))]))]),
            "hunter2",
        ),
        (
            array(vec![s("ok"), array(vec![s("mail jane@example.com")])]),
            "jane@example.com",
        ),
    ] {
        let mut req = harmless.clone();
        req.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .push(kv("payload", attr));
        p.consume(Batch::parse(Signal::Traces, req.encode_to_vec().into()).unwrap())
            .await
            .unwrap();
        let out = sink
            .batches
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .decode_traces()
            .unwrap();
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains(secret), "{secret} survived: {json}");
        assert!(json.contains("****"), "{json}");
    }
}

#[tokio::test]
async fn scope_attributes_are_redacted_for_every_signal() {
    let yaml = "allow_all_keys: true\nblocked_value_presets: [email]\nhash_function: none\n";
    let leak = || KeyValue {
        key: "owner".into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue("team lead@example.com".into())),
        }),
        ..Default::default()
    };
    let mut g = Generator::new(GeneratorOptions::default());
    let mut traces = g.traces(3);
    traces.resource_spans[1].scope_spans[0]
        .scope
        .as_mut()
        .unwrap()
        .attributes
        .push(leak());
    let mut logs = g.logs(2);
    logs.resource_logs[0].scope_logs[0]
        .scope
        .as_mut()
        .unwrap()
        .attributes
        .push(leak());
    let mut metrics = g.metrics(3);
    metrics.resource_metrics[0].scope_metrics[0]
        .scope
        .get_or_insert_with(Default::default)
        .attributes
        .push(leak());
    for (signal, bytes) in [
        (Signal::Traces, traces.encode_to_vec()),
        (Signal::Logs, logs.encode_to_vec()),
        (Signal::Metrics, metrics.encode_to_vec()),
    ] {
        let Rig { p, sink, .. } = Rig::new(factory(), "redaction", yaml, signal);
        p.consume(Batch::parse(signal, bytes.into()).unwrap())
            .await
            .unwrap();
        let b = sink.batches.lock().unwrap()[0].clone();
        let json = match signal {
            Signal::Traces => {
                let out = b.decode_traces().unwrap();
                // Spans are untouched: the same spans, in the same order.
                let spans = |r: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest| {
                    r.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|s| s.spans.clone())).collect::<Vec<_>>()
                };
                assert_eq!(spans(&out), spans(&traces));
                // The index written while re-framing is what a scan finds.
                let req = &b.requests[0];
                let mut scanned = crate::scan::SpanIndex::default();
                crate::scan::scan_traces(&req.bytes, &mut scanned).unwrap();
                assert_eq!(req.index.as_deref(), Some(&scanned));
                serde_json::to_string(&out).unwrap()
            }
            Signal::Logs => serde_json::to_string(&b.decode_logs().unwrap()).unwrap(),
            Signal::Metrics => serde_json::to_string(&b.decode_metrics().unwrap()).unwrap(),
        };
        assert!(!json.contains("lead@example.com"), "{signal}: {json}");
        assert!(json.contains("team ****"), "{signal}");
    }
}

#[test]
fn key_rules_keep_two_keys_of_one_pair_and_run_the_rules_once_each() {
    let mut rules = KeyRules::default();
    // Three keys that share a pair of places.
    let letters = b'a'..=b'z';
    let keys: Vec<Vec<u8>> = letters
        .clone()
        .flat_map(|a| {
            letters
                .clone()
                .flat_map(move |b| (b'a'..=b'z').map(move |c| vec![a, b, c]))
        })
        .collect();
    let want = rules.pair(&keys[0]);
    let same: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|k| rules.pair(k) == want)
        .take(3)
        .collect();
    assert_eq!(same.len(), 3);
    let runs = std::cell::Cell::new(0);
    let get = |rules: &mut KeyRules, k: &[u8], rule: KeyRule| {
        rules
            .get(k, || {
                runs.set(runs.get() + 1);
                rule
            })
            .0
    };
    for _ in 0..100 {
        assert_eq!(get(&mut rules, same[0], KeyRule::Work), KeyRule::Work);
        assert_eq!(get(&mut rules, same[1], KeyRule::Value), KeyRule::Value);
    }
    // A third key displaces the older of the two; the newer stays.
    assert_eq!(get(&mut rules, same[2], KeyRule::Ignore), KeyRule::Ignore);
    assert_eq!(get(&mut rules, same[1], KeyRule::Value), KeyRule::Value);
    assert_eq!(runs.get(), 3);
}

#[tokio::test]
async fn trace_resources_are_redacted_and_requests_with_nothing_to_redact_keep_their_bytes() {
    let yaml = "allow_all_keys: true\nblocked_key_patterns: [\"(?i)secret\"]\nblocked_value_presets: [email]\nhash_function: none\n";
    let text = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let mut g = Generator::new(GeneratorOptions::default());
    // A clean request (the generator's spans carry no email and no
    // blocked key) passes as the very bytes that came in.
    let clean = Batch::parse(Signal::Traces, g.traces(3).encode_to_vec().into()).unwrap();
    let sent = clean.requests[0].bytes.clone();
    let Rig { p, sink, .. } = Rig::new(factory(), "redaction", yaml, Signal::Traces);
    p.consume(clean).await.unwrap();
    let out = sink.batches.lock().unwrap()[0].requests[0].bytes.clone();
    assert_eq!(
        out.as_ptr(),
        sent.as_ptr(),
        "an untouched request is not copied"
    );

    // One resource with a blocked key, another with an address in a value.
    let mut traces = g.traces(3);
    for (i, leak) in [
        (0, text("deploy.secret", "hunter2")),
        (2, text("owner", "oncall ops@example.com")),
    ] {
        let resource = traces.resource_spans[i].resource.as_mut().unwrap();
        resource.attributes.push(leak);
    }
    let Rig { p, sink, .. } = Rig::new(factory(), "redaction", yaml, Signal::Traces);
    p.consume(Batch::parse(Signal::Traces, traces.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    let b = sink.batches.lock().unwrap()[0].clone();
    let out = b.decode_traces().unwrap();
    let json = serde_json::to_string(&out).unwrap();
    assert!(
        !json.contains("hunter2") && !json.contains("ops@example.com"),
        "{json}"
    );
    assert!(json.contains("oncall ****"), "{json}");
    // Spans are as sent, and the index still matches the bytes.
    let spans =
        |r: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest| {
            r.resource_spans
                .iter()
                .flat_map(|rs| rs.scope_spans.iter().flat_map(|s| s.spans.clone()))
                .collect::<Vec<_>>()
        };
    assert_eq!(spans(&out), spans(&traces));
    let req = &b.requests[0];
    let mut scanned = crate::scan::SpanIndex::default();
    crate::scan::scan_traces(&req.bytes, &mut scanned).unwrap();
    assert_eq!(req.index.as_deref(), Some(&scanned));
}

#[test]
fn a_key_whose_last_string_was_clean_still_finds_the_leak_in_its_next() {
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
    let r = redactor(ALL_PRESETS);
    // A whole `spans` field holding one span with one string attribute.
    let field = |v: &str| {
        ScopeSpans {
            spans: vec![Span {
                attributes: vec![KeyValue {
                    key: "note".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(v.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let clean = ["product-docs-v3", "text-embedding-3-small", "rag.pipeline"];
    for round in 0..3 {
        for (i, (leak, _)) in LEAKS.iter().enumerate() {
            let before = clean[i % clean.len()];
            assert!(!r.span_needs_work(&field(before)), "{before}");
            assert!(!r.span_needs_work(&field(before)), "{before} again");
            // Twice: a leak is never remembered as clean.
            assert!(r.span_needs_work(&field(leak)), "round {round}: {leak}");
            assert!(
                r.span_needs_work(&field(leak)),
                "round {round}: {leak} again"
            );
        }
    }
}
