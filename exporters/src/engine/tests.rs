use std::sync::Mutex;

use pipeline::component::Tasks;
use pipeline::Request;

use super::*;

/// Answers each attempt from a script, then succeeds.
struct Scripted {
    script: Mutex<Vec<Result<Sent, ExportError>>>,
    attempts: Mutex<Vec<tokio::time::Instant>>,
    items: Mutex<Vec<usize>>,
}

#[async_trait]
impl Exporter for Scripted {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        self.items.lock().unwrap().push(batch.items());
        self.attempts
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        let mut s = self.script.lock().unwrap();
        if s.is_empty() {
            Ok(Sent::default())
        } else {
            s.remove(0)
        }
    }
}

fn scripted(script: Vec<Result<Sent, ExportError>>) -> Arc<Scripted> {
    Arc::new(Scripted {
        script: Mutex::new(script),
        attempts: Mutex::new(Vec::new()),
        items: Mutex::new(Vec::new()),
    })
}

fn ctx() -> Context {
    Context {
        id: "otlp/x".into(),
        metrics: Registry::new(),
        tasks: Tasks::default(),
        storage: Default::default(),
        auth: Default::default(),
        local: Default::default(),
    }
}

fn batch(items: usize) -> Batch {
    Batch::new(
        Signal::Traces,
        Request {
            bytes: Default::default(),
            items,
            index: None,
            client: None,
        },
    )
}

fn value(c: &Context, name: &str) -> f64 {
    c.metrics.value(name, &[("exporter", "otlp/x")]).unwrap()
}

async fn drain(input: BoxConsumer, c: &Context) {
    drop(input);
    for (_, t) in c.tasks.take() {
        t.await.unwrap();
    }
}

fn settings(queue: bool) -> EngineSettings {
    EngineSettings {
        timeout: Duration::from_secs(5),
        retry: RetryConfig {
            randomization_factor: 0.0,
            ..RetryConfig::default()
        },
        queue: QueueConfig {
            enabled: queue,
            num_consumers: 1,
            queue_size: 2,
            ..QueueConfig::default()
        },
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_exponentially_then_succeed() {
    let exp = scripted(vec![
        Err(ExportError::Retryable("503".into())),
        Err(ExportError::Retryable("503".into())),
    ]);
    let c = ctx();
    let input = start(&c, settings(true), exp.clone()).unwrap();
    input.consume(batch(10)).await.unwrap();
    drain(input, &c).await;
    let t = exp.attempts.lock().unwrap().clone();
    assert_eq!(t.len(), 3);
    assert_eq!(t[1] - t[0], Duration::from_secs(5));
    assert_eq!(t[2] - t[1], Duration::from_millis(7500));
    assert_eq!(value(&c, "observatory_exporter_sent_spans_total"), 10.0);
    assert_eq!(
        value(&c, "observatory_exporter_send_failed_spans_total"),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_waits_at_least_the_servers_delay() {
    let exp = scripted(vec![Err(ExportError::Throttled {
        after: Duration::from_secs(42),
        message: "429".into(),
    })]);
    let c = ctx();
    let input = start(&c, settings(true), exp.clone()).unwrap();
    input.consume(batch(1)).await.unwrap();
    drain(input, &c).await;
    let t = exp.attempts.lock().unwrap().clone();
    assert_eq!(t[1] - t[0], Duration::from_secs(42));
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_and_exhausted_retries_count_as_failed() {
    let exp = scripted(vec![Err(ExportError::Permanent("400".into()))]);
    let c = ctx();
    let input = start(&c, settings(true), exp.clone()).unwrap();
    input.consume(batch(3)).await.unwrap();
    drain(input, &c).await;
    assert_eq!(exp.attempts.lock().unwrap().len(), 1);
    assert_eq!(
        value(&c, "observatory_exporter_send_failed_spans_total"),
        3.0
    );

    let exp = scripted(
        (0..100)
            .map(|_| Err(ExportError::Retryable("down".into())))
            .collect(),
    );
    let c = ctx();
    let input = start(&c, settings(false), exp.clone()).unwrap();
    let err = input.consume(batch(4)).await.unwrap_err();
    assert!(err.is_retryable());
    // 5s, 7.5s, 11.25s, then 16.9s ... capped at 30s; all inside 300s.
    let t = exp.attempts.lock().unwrap().clone();
    assert!(t.last().unwrap().duration_since(t[0]) <= Duration::from_secs(300));
    assert!(t.len() > 5, "{} attempts", t.len());
    assert_eq!(
        value(&c, "observatory_exporter_send_failed_spans_total"),
        4.0
    );
}

#[tokio::test(start_paused = true)]
async fn partial_success_counts_rejected_items_as_failed() {
    let exp = scripted(vec![Ok(Sent {
        rejected: 2,
        message: "too old".into(),
    })]);
    let c = ctx();
    let input = start(&c, settings(false), exp).unwrap();
    input.consume(batch(5)).await.unwrap();
    assert_eq!(value(&c, "observatory_exporter_sent_spans_total"), 3.0);
    assert_eq!(
        value(&c, "observatory_exporter_send_failed_spans_total"),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn items_given_up_in_a_partial_send_are_counted_failed_not_sent() {
    let exp = scripted(vec![Err(ExportError::Partly {
        left: Box::new(batch(4)),
        error: Box::new(ExportError::Retryable("broker away".into())),
        given_up: 2,
    })]);
    let c = ctx();
    let input = start(&c, settings(true), exp.clone()).unwrap();
    input.consume(batch(10)).await.unwrap();
    drain(input, &c).await;
    // 10 tried: 4 sent, 2 refused for good, 4 left and sent on the retry.
    assert_eq!(*exp.items.lock().unwrap(), vec![10, 4]);
    assert_eq!(value(&c, "observatory_exporter_sent_spans_total"), 8.0);
    assert_eq!(
        value(&c, "observatory_exporter_send_failed_spans_total"),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_partial_send_only_what_is_left_is_retried() {
    let exp = scripted(vec![
        Err(ExportError::Partly {
            left: Box::new(batch(4)),
            error: Box::new(ExportError::Retryable("one backend down".into())),
            given_up: 0,
        }),
        Err(ExportError::Partly {
            left: Box::new(batch(1)),
            error: Box::new(ExportError::Permanent("refused".into())),
            given_up: 0,
        }),
    ]);
    let c = ctx();
    let input = start(&c, settings(true), exp.clone()).unwrap();
    input.consume(batch(10)).await.unwrap();
    drain(input, &c).await;
    // 10 tried, 6 sent; the 4 left tried again, 3 sent; the last one was
    // refused for good, so it is not tried a third time.
    assert_eq!(*exp.items.lock().unwrap(), vec![10, 4]);
    assert_eq!(value(&c, "observatory_exporter_sent_spans_total"), 9.0);
    assert_eq!(
        value(&c, "observatory_exporter_send_failed_spans_total"),
        1.0
    );
}

/// Never finishes an export.
struct Stuck;

#[async_trait]
impl Exporter for Stuck {
    async fn export(&self, _batch: &Batch) -> Result<Sent, ExportError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_with_a_retryable_error_and_reports_its_size() {
    let c = ctx();
    let input = start(&c, settings(true), Arc::new(Stuck)).unwrap();
    // One batch in the stuck consumer, two in the queue, the fourth refused.
    for _ in 0..3 {
        input.consume(batch(1)).await.unwrap();
        tokio::task::yield_now().await;
    }
    let err = input.consume(batch(1)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(value(&c, "observatory_exporter_queue_size"), 2.0);
    assert_eq!(value(&c, "observatory_exporter_queue_capacity"), 2.0);
    assert_eq!(
        value(&c, "observatory_exporter_enqueue_failed_spans_total"),
        1.0
    );
}

/// A batch of `len` encoded bytes (the stuck exporter never reads them).
fn sized(items: usize, len: usize) -> Batch {
    Batch::new(
        Signal::Traces,
        Request {
            bytes: vec![0u8; len].into(),
            items,
            index: None,
            client: None,
        },
    )
}

#[tokio::test(start_paused = true)]
async fn the_items_sizer_counts_queue_size_in_items() {
    let c = ctx();
    let mut s = settings(true);
    s.queue.sizer = Sizer::Items;
    s.queue.queue_size = 10;
    let input = start(&c, s, Arc::new(Stuck)).unwrap();
    // 4 in the stuck consumer (no longer queued), then 4 + 4 queued.
    for _ in 0..3 {
        input.consume(sized(4, 10)).await.unwrap();
        tokio::task::yield_now().await;
    }
    let err = input.consume(sized(4, 10)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(value(&c, "observatory_exporter_queue_size"), 8.0);
    // A smaller batch still fits.
    input.consume(sized(2, 10)).await.unwrap();
    assert_eq!(value(&c, "observatory_exporter_queue_size"), 10.0);
}

#[tokio::test(start_paused = true)]
async fn the_byte_cap_holds_whatever_the_sizer_counting_what_is_in_flight() {
    let c = ctx();
    let mut s = settings(true);
    s.queue.queue_size = 1000;
    s.queue.max_size_mib = Some(1);
    let input = start(&c, s, Arc::new(Stuck)).unwrap();
    let kib = 1024;
    input.consume(sized(1, 400 * kib)).await.unwrap();
    tokio::task::yield_now().await;
    input.consume(sized(1, 400 * kib)).await.unwrap();
    // 800 KiB held (one in flight, one queued): 400 more would pass 1 MiB.
    let err = input.consume(sized(1, 400 * kib)).await.unwrap_err();
    assert!(err.to_string().contains("max_size_mib"), "{err}");
    assert_eq!(
        value(&c, "observatory_exporter_queue_bytes"),
        (800 * kib) as f64
    );
    assert_eq!(
        value(&c, "observatory_exporter_queue_bytes_capacity"),
        (1 << 20) as f64
    );
    assert_eq!(
        value(&c, "observatory_exporter_enqueue_failed_spans_total"),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn one_batch_over_the_caps_is_let_into_an_empty_queue() {
    let c = ctx();
    let mut s = settings(true);
    s.queue.max_size_mib = Some(1);
    let input = start(&c, s, Arc::new(Stuck)).unwrap();
    input.consume(sized(1, 3 << 20)).await.unwrap();
    tokio::task::yield_now().await;
    // Now it is in flight and holds the bytes: the next one waits.
    assert!(input.consume(sized(1, 10)).await.is_err());
}

fn persistent(dir: &std::path::Path, queue_size: usize) -> (Context, EngineSettings) {
    let mut c = ctx();
    c.storage = Arc::new(
        [(
            "file_storage/q".to_string(),
            pipeline::component::StorageSpec {
                directory: dir.to_path_buf(),
                fsync: true,
                lock_timeout: Duration::from_secs(1),
            },
        )]
        .into(),
    );
    let mut s = settings(true);
    s.retry.initial_interval = Duration::from_millis(10);
    s.queue.queue_size = queue_size;
    s.queue.storage = Some("file_storage/q".into());
    (c, s)
}

#[tokio::test]
async fn the_persistent_queue_keeps_what_the_backend_has_not_taken_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let down = scripted(
        (0..10_000)
            .map(|_| Err(ExportError::Retryable("down".into())))
            .collect(),
    );
    let (c, s) = persistent(dir.path(), 3);
    let input = start(&c, s.clone(), down.clone()).unwrap();
    for n in [4, 5, 6] {
        input.consume(batch(n)).await.unwrap();
    }
    let full = input.consume(batch(7)).await.unwrap_err();
    assert!(
        full.is_retryable() && full.to_string().contains("queue_size"),
        "{full}"
    );
    assert_eq!(value(&c, "observatory_exporter_queue_size"), 3.0);
    assert!(value(&c, "observatory_exporter_queue_bytes") > 0.0);
    // Shutdown with the backend down leaves everything on disk, quickly.
    let t0 = std::time::Instant::now();
    drain(input, &c).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(down.attempts.lock().unwrap().len() >= 3);
    assert_eq!(value(&c, "observatory_exporter_sent_spans_total"), 0.0);

    drop(c);
    let up = scripted(vec![]);
    let (c, s) = persistent(dir.path(), 3);
    let input = start(&c, s, up.clone()).unwrap();
    for _ in 0..200 {
        if value(&c, "observatory_exporter_sent_spans_total") == 15.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(value(&c, "observatory_exporter_sent_spans_total"), 15.0);
    assert_eq!(
        value(&c, "observatory_exporter_queue_recovered_spans_total"),
        15.0
    );
    // Only the first batch had been handed to the (one) failing consumer.
    assert_eq!(
        value(&c, "observatory_exporter_queue_redelivered_spans_total"),
        4.0
    );
    assert_eq!(value(&c, "observatory_exporter_queue_size"), 0.0);
    drain(input, &c).await;
}

#[test]
fn persistent_queue_needs_a_listed_storage_extension() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, s) = persistent(dir.path(), 3);
    c.storage = Default::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let e = start(&c, s, scripted(vec![])).err().unwrap().to_string();
    assert!(
        e.contains("sending_queue.storage") && e.contains("file_storage/q"),
        "{e}"
    );
}
