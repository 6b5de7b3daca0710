use prost::Message;

use super::*;
use crate::generate::{Generator, GeneratorOptions};
use crate::testing::Sink;

fn span(attrs: &[(&str, Value)]) -> Span {
    Span {
        attributes: attrs
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: Some(AnyValue {
                    value: Some(v.clone()),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn cfg(yaml: &str) -> LlmCostConfig {
    parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap()
}

fn ctx() -> Context {
    crate::testing::context("llm_cost")
}

/// The processor on `book`, with counters the test reads directly.
fn processor(book: PriceBook) -> LlmCost {
    LlmCost {
        book,
        cost_attribute: "gen_ai.usage.cost".into(),
        usage: Finder::new(b"usage.").into_owned(),
        next: Arc::new(Sink::default()),
        priced: Counter::default(),
        unknown: Counter::default(),
        unknown_seen: Mutex::new(HashSet::new()),
        memo: Mutex::new(FastMap::default()),
        id: "llm_cost".into(),
        spend: Spend::new(&crate::telemetry::Registry::new(), "llm_cost"),
    }
}

fn cost_of(sp: &Span) -> Option<f64> {
    number(attr(sp, &["gen_ai.usage.cost"]))
}

#[test]
fn globs_match_like_shells() {
    assert!(glob(b"gpt-4o*", b"gpt-4o-2024-08-06"));
    assert!(glob(b"gpt-4o*", b"gpt-4o"));
    assert!(glob(b"claude-?-haiku", b"claude-3-haiku"));
    assert!(!glob(b"gpt-4o", b"gpt-4o-mini"));
    assert!(!glob(b"o1*", b"gpt-o1"));
}

#[test]
fn the_most_specific_price_wins_and_config_beats_defaults() {
    let book = PriceBook::new(&LlmCostConfig::default());
    assert_eq!(
        book.find("gpt-4o-mini-2024-07-18", Some("openai"))
            .unwrap()
            .input_per_million,
        0.15
    );
    assert_eq!(
        book.find("gpt-4o-2024-08-06", Some("openai"))
            .unwrap()
            .input_per_million,
        2.50
    );
    assert!(
        book.find("gpt-4o", Some("anthropic")).is_none(),
        "provider-scoped"
    );
    assert!(book.find("my-finetune", None).is_none());
    assert!(
        book.find(&format!("gpt-4o{}", "x".repeat(300)), Some("openai"))
            .is_none(),
        "over-long names are unknown"
    );
    let book = PriceBook::new(&cfg(
        "pricing:\n  - {model: 'gpt-4o*', input_per_million: 1, output_per_million: 2}\n",
    ));
    assert_eq!(
        book.find("gpt-4o-mini", Some("openai"))
            .unwrap()
            .input_per_million,
        1.0,
        "config first"
    );
    assert_eq!(
        book.find("claude-3-5-sonnet-20241022", Some("anthropic"))
            .unwrap()
            .output_per_million,
        15.0
    );
}

#[test]
fn remembered_prices_answer_as_the_book_does_and_unknowns_count_every_time() {
    let p = processor(PriceBook::new(&LlmCostConfig::default()));
    // The same model under different providers (or none, or an empty one)
    // is remembered separately.
    // A pair too long to remember is looked up every time.
    let long = format!("gpt-4o-{}", "x".repeat(150));
    let asks = [
        (long.as_str(), Some("openai")),
        ("gpt-4o-2024-08-06", Some("openai")),
        ("gpt-4o-2024-08-06", Some("anthropic")),
        ("gpt-4o-2024-08-06", None),
        ("gpt-4o-2024-08-06", Some("")),
        ("claude-3-5-sonnet-20241022", Some("anthropic")),
        ("my-finetune", None),
    ];
    let mut unknown = 0;
    // One batch's answers are reused across the rounds: the later rounds
    // are answered by it, and must agree with the book as the first did.
    let mut recent = Recent::default();
    for round in 0..3 {
        for (model, provider) in asks {
            let want = p.book.find(model, provider).map(|x| x.input_per_million);
            let got = p
                .lookup(model.as_bytes(), provider.map(str::as_bytes), &mut recent)
                .map(|x| x.input_per_million);
            assert_eq!(got, want, "round {round}: {model} from {provider:?}");
            unknown += u64::from(want.is_none());
        }
    }
    assert_eq!(p.unknown.get(), unknown);
    assert!(unknown >= 3, "some asks are unknown: {unknown}");
}

#[test]
fn cost_follows_the_price_and_every_usage_convention() {
    let p = processor(PriceBook::new(&cfg(
        "pricing:\n  - {model: m, input_per_million: 2.5, output_per_million: 10, cached_input_per_million: 1.25}\n",
    )));
    // 1,000,000 input (200,000 cached) and 100,000 output tokens:
    // 800,000 × 2.5 + 200,000 × 1.25 + 100,000 × 10, per million = 3.25 USD.
    let mut a = span(&[
        ("gen_ai.request.model", s("m")),
        ("gen_ai.usage.input_tokens", Value::IntValue(1_000_000)),
        (
            "gen_ai.usage.cache_read_input_tokens",
            Value::IntValue(200_000),
        ),
        ("gen_ai.usage.output_tokens", Value::IntValue(100_000)),
    ]);
    assert!(p.price(&mut a));
    assert!(
        (cost_of(&a).unwrap() - 3.25).abs() < 1e-12,
        "{:?}",
        cost_of(&a)
    );
    // Older conventions.
    let mut b = span(&[
        ("gen_ai.request.model", s("m")),
        ("gen_ai.usage.prompt_tokens", Value::IntValue(400)),
        ("gen_ai.usage.completion_tokens", Value::IntValue(100)),
    ]);
    assert!(p.price(&mut b));
    assert!((cost_of(&b).unwrap() - 0.002).abs() < 1e-12);
    let mut c = span(&[
        ("llm.request.model", s("m")),
        ("llm.usage.prompt_tokens", Value::IntValue(1_000_000)),
    ]);
    assert!(p.price(&mut c));
    assert!((cost_of(&c).unwrap() - 2.5).abs() < 1e-12);
    // Unknown model: counted, not priced; no usage: untouched.
    let mut d = span(&[
        ("gen_ai.request.model", s("other")),
        ("gen_ai.usage.input_tokens", Value::IntValue(5)),
    ]);
    assert!(!p.price(&mut d));
    assert_eq!(cost_of(&d), None);
    assert_eq!(p.unknown.get(), 1);
    let mut e = span(&[("gen_ai.request.model", s("m"))]);
    assert!(!p.price(&mut e));
    assert_eq!(p.priced.get(), 3);

    // The in-place path prices the encoded span identically, and replaces
    // (not duplicates) a cost that is already there.
    let encode = |sp: &Span| {
        opentelemetry_proto::tonic::trace::v1::ScopeSpans {
            spans: vec![sp.clone()],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let decode = |b: Vec<u8>| {
        opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(b.as_slice())
            .unwrap()
            .spans
            .remove(0)
    };
    let raw = span(&[
        ("gen_ai.request.model", s("m")),
        ("gen_ai.usage.input_tokens", Value::IntValue(1_000_000)),
        (
            "gen_ai.usage.cache_read_input_tokens",
            Value::IntValue(200_000),
        ),
        ("gen_ai.usage.output_tokens", Value::IntValue(100_000)),
    ]);
    let priced = decode(p.price_field(&encode(&raw)).unwrap());
    assert_eq!(priced, a, "in place == decoded");
    let again = decode(p.price_field(&encode(&priced)).unwrap());
    assert_eq!(
        again
            .attributes
            .iter()
            .filter(|x| x.key == "gen_ai.usage.cost")
            .count(),
        1
    );
    assert!(p
        .price_field(&encode(&span(&[("gen_ai.request.model", s("m"))])))
        .is_none());
}

#[tokio::test]
async fn an_empty_config_prices_generated_llm_spans_and_leaves_others_as_bytes() {
    let c = ctx();
    let sink = Arc::new(Sink::default());
    let p = LlmCostConfig::default().build(Signal::Traces, sink.clone(), &c);
    let sent = Generator::new(GeneratorOptions::default()).traces(40);
    let batch = Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap();
    let original = batch.requests[0].clone();
    p.consume(batch).await.unwrap();
    let out = sink.batches.lock().unwrap()[0].requests[0].clone();
    let got = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
        out.bytes.clone(),
    )
    .unwrap();
    let mut priced = 0;
    for (rs, sent_rs) in got.resource_spans.iter().zip(&sent.resource_spans) {
        for (g, w) in rs.scope_spans[0]
            .spans
            .iter()
            .zip(&sent_rs.scope_spans[0].spans)
        {
            let model = text(attr(w, &MODEL)).unwrap_or("");
            let known =
                !model.starts_with("amazon.titan") || model == "amazon.titan-text-express-v1";
            let has_usage = attr(w, &INPUT).is_some();
            match cost_of(g) {
                Some(usd) => {
                    priced += 1;
                    assert!(usd > 0.0 && has_usage && known, "{model}: {usd}");
                    // Nothing else about the span changed.
                    let mut without = g.clone();
                    without.attributes.retain(|a| a.key != "gen_ai.usage.cost");
                    assert_eq!(&without, w);
                }
                None => assert_eq!(g, w),
            }
        }
    }
    // Each trace has an embedding call (text-embedding-3-small) and a chat
    // call; the chat models rotate over four, one of them (titan's
    // "-2024-08-06" response model) unknown to the table.
    assert!(priced >= 40, "{priced}");
    let unknown = c
        .metrics
        .value(
            "observatory_processor_llm_cost_unknown_model_spans_total",
            &[("processor", "llm_cost")],
        )
        .unwrap();
    assert_eq!(priced as f64 + unknown, 80.0);
    // Spans without usage kept their exact bytes.
    let old = original.index.as_ref().unwrap();
    let new = out.index.as_ref().unwrap();
    for (a, b) in old.spans.iter().zip(&new.spans) {
        let before = &original.bytes[a.range.0 as usize..a.range.1 as usize];
        if memchr::memmem::find(before, b"usage.").is_none() {
            assert_eq!(before, &out.bytes[b.range.0 as usize..b.range.1 as usize]);
        }
    }
}

#[test]
fn every_key_pricing_reads_has_the_prefix_the_in_place_read_filters_on() {
    for k in INPUT
        .iter()
        .chain(&OUTPUT)
        .chain(&CACHED)
        .chain(&MODEL)
        .chain(&PROVIDER)
    {
        assert!(k.starts_with("gen_ai.") || k.starts_with("llm."), "{k}");
    }
}
