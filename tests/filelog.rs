//! The `filelog` receiver in the real binary, on files the test writes
//! while it runs: the LLM session-log shape of `examples/llm-filelog.yaml`
//! through rotation by rename and by copy-truncate, a line written in two
//! parts, a restart after SIGKILL, and gzip files. Every line must arrive
//! exactly once at the file exporter with its time, severity and fields.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// The example as shipped, pointed at the test's directories.
fn example(logs: &Path) -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/llm-filelog.yaml"
    ))
    .unwrap()
    .replace("${env:LLM_LOG_DIR:-/var/log/llm}", logs.to_str().unwrap())
    .replace(
        "${env:LLM_LOG_OUT:-./data/llm-logs.jsonl}",
        "@DIR@/out.jsonl",
    )
    .replace("${env:LLM_LOG_STATE:-./data/filelog}", "@DIR@/state")
    .replace("poll_interval: 200ms", "poll_interval: 50ms")
}

/// One session-log line; `n` makes it unique and sets its time.
fn line(session: &str, n: usize) -> String {
    let level = ["info", "warn", "error", "debug"][n % 4];
    format!(
        "{{\"timestamp\": \"2026-11-30T10:{:02}:{:02}.{:03}Z\", \"session_id\": \"{session}\", \"source\": \"claude\", \"level\": \"{level}\", \"message\": \"step {n} of {session}\"}}\n",
        n / 3600 % 60,
        n / 60 % 60,
        n % 1000
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn str_of(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter()
        .find(|k| k.key == key)
        .and_then(|k| match k.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// What arrived: body → (count, session, file name, time, severity).
fn arrived(lines: &[String]) -> BTreeMap<String, (usize, String, String, u64, i32)> {
    let mut out: BTreeMap<String, (usize, String, String, u64, i32)> = BTreeMap::new();
    for rl in logs_from(lines).resource_logs {
        let res = rl.resource.unwrap_or_default().attributes;
        assert_eq!(str_of(&res, "service.name").as_deref(), Some("claude"));
        let session = str_of(&res, "session.id").expect("session.id on the resource");
        for r in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
            let Some(Any::StringValue(body)) = r.body.and_then(|b| b.value) else {
                panic!("body is not the message")
            };
            assert!(
                str_of(&r.attributes, "level").is_none(),
                "level was removed"
            );
            assert!(str_of(&r.attributes, "timestamp").is_some());
            let file = str_of(&r.attributes, "log.file.name").expect("log.file.name");
            let e = out.entry(body).or_insert((
                0,
                session.clone(),
                file,
                r.time_unix_nano,
                r.severity_number,
            ));
            e.0 += 1;
        }
    }
    out
}

fn expect(session: &str, n: usize) -> (u64, i32) {
    let nanos = 1_796_032_800_000_000_000u64
        + ((n / 3600 % 60) * 60 + n / 60 % 60) as u64 * 1_000_000_000
        + (n % 1000) as u64 * 1_000_000;
    let _ = session;
    (nanos, [9, 13, 17, 5][n % 4])
}

fn count_records(lines: &[String]) -> usize {
    count_logs(lines)
}

#[test]
fn session_logs_arrive_once_through_rotation_with_time_severity_and_resource() {
    let logs = tempfile::tempdir().unwrap();
    let (a, b) = (logs.path().join("a.jsonl"), logs.path().join("sub"));
    std::fs::create_dir(&b).unwrap();
    let b = b.join("b.jsonl");
    // Lines there before the start are read too (start_at: beginning).
    let mut want: Vec<(String, usize)> = Vec::new();
    for n in 0..50 {
        append(&a, &line("sa", n));
        want.push(("sa".into(), n));
    }
    let c = Collector::start_with(
        &example(logs.path()),
        &[("EXTENSIONS", ", file_storage/filelog".into())],
    );
    let out = c.path("out.jsonl");
    for n in 0..50 {
        append(&b, &line("sb", n));
        want.push(("sb".into(), n));
    }
    // A line written in two parts is one entry.
    let split = line("sb", 50);
    append(&b, &split[..40]);
    std::thread::sleep(Duration::from_millis(120));
    append(&b, &split[40..]);
    want.push(("sb".into(), 50));
    wait_for_lines(&out, count_records, 101);
    // Rotation by rename: lines written just before it are read from the
    // renamed file (its name no longer matches), then the new file.
    for n in 50..60 {
        append(&a, &line("sa", n));
        want.push(("sa".into(), n));
    }
    std::fs::rename(&a, logs.path().join("a.jsonl.1")).unwrap();
    for n in 60..80 {
        append(&a, &line("sa", n));
        want.push(("sa".into(), n));
    }
    wait_for_lines(&out, count_records, 131);
    // Copy-truncate: the copy is not read again, the truncated file's new
    // lines are.
    std::fs::copy(&b, logs.path().join("sub/b.jsonl.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&b)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for n in 100..120 {
        append(&b, &line("sb", n));
        want.push(("sb".into(), n));
    }
    let lines = wait_for_lines(&out, count_records, want.len());
    let got = arrived(&lines);
    for (session, n) in &want {
        let body = format!("step {n} of {session}");
        let (count, s, file, time, sev) = got
            .get(&body)
            .unwrap_or_else(|| panic!("{body} is missing"));
        assert_eq!(*count, 1, "{body} arrived {count} times");
        assert_eq!(s, session);
        assert!(
            file.starts_with(if session == "sa" {
                "a.jsonl"
            } else {
                "b.jsonl"
            }),
            "{file}"
        );
        assert_eq!((*time, *sev), expect(session, *n), "{body}");
    }
    assert_eq!(got.len(), want.len());
    // Nothing more arrives later (no line read twice).
    std::thread::sleep(Duration::from_millis(500));
    let again = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        count_records(&again.lines().map(str::to_string).collect::<Vec<_>>()),
        want.len()
    );
}

#[test]
fn a_restart_after_sigkill_goes_on_where_the_checkpoint_stopped() {
    let logs = tempfile::tempdir().unwrap();
    let a = logs.path().join("a.jsonl");
    for n in 0..200 {
        append(&a, &line("s", n));
    }
    let mut c = Collector::start_with(
        &example(logs.path()),
        &[("EXTENSIONS", ", file_storage/filelog".into())],
    );
    let out = c.path("out.jsonl");
    wait_for_lines(&out, count_records, 200);
    // The checkpoint is written once the lines are taken: give it a poll.
    std::thread::sleep(Duration::from_millis(200));
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    for n in 200..300 {
        append(&a, &line("s", n));
    }
    // The same directory and output, a new process.
    let cfg = c.path("config.yaml");
    let harness = c.path("harness.yaml");
    let log = std::fs::File::create(c.path("collector2.log")).unwrap();
    c.child = std::process::Command::new(binary())
        .arg("--config")
        .arg(&cfg)
        .arg("--config")
        .arg(&harness)
        .stderr(log)
        .spawn()
        .unwrap();
    let lines = wait_for_lines(&out, count_records, 300);
    let got = arrived(&lines);
    assert_eq!(got.len(), 300);
    assert!(got.values().all(|v| v.0 == 1), "a line arrived twice");
}

#[test]
fn gzip_files_are_read_whole_once() {
    let logs = tempfile::tempdir().unwrap();
    let text: String = (0..120).map(|n| line("gz", n)).collect();
    std::fs::write(logs.path().join("old.jsonl"), gzip(text.as_bytes())).unwrap();
    let cfg = example(logs.path()).replace(
        "    start_at: beginning\n",
        "    start_at: beginning\n    compression: gzip\n",
    );
    let c = Collector::start_with(&cfg, &[("EXTENSIONS", ", file_storage/filelog".into())]);
    let out = c.path("out.jsonl");
    let lines = wait_for_lines(&out, count_records, 120);
    let got = arrived(&lines);
    assert_eq!(got.len(), 120);
    assert_eq!(got["step 7 of gz"].3, expect("gz", 7).0);
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        let now: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(count_records(&now), 120, "a gzip file was read again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_at_end_skips_what_was_there_and_unsupported_keys_are_refused() {
    let logs = tempfile::tempdir().unwrap();
    let a = logs.path().join("a.jsonl");
    for n in 0..10 {
        append(&a, &line("old", n));
    }
    let cfg = example(logs.path()).replace("start_at: beginning", "start_at: end");
    let c = Collector::start_with(&cfg, &[("EXTENSIONS", ", file_storage/filelog".into())]);
    std::thread::sleep(Duration::from_millis(300));
    for n in 0..5 {
        append(&a, &line("new", n));
    }
    let lines = wait_for_lines(&c.path("out.jsonl"), count_records, 5);
    assert!(arrived(&lines).keys().all(|k| k.ends_with("of new")));
    // otelcol keys we cannot honour yet are refused by name.
    let dir = tempfile::tempdir().unwrap();
    for (key, yaml) in [
        ("multiline", "multiline: {line_start_pattern: x}"),
        ("operators.0.type", "operators: [{type: key_value_parser}]"),
        (
            "operators.0.if",
            "operators: [{type: remove, field: body.x, if: 'body.x != nil'}]",
        ),
        (
            "operators.0.routes.0.expr",
            "operators: [{type: router, routes: [{output: b, expr: 'len(body) > 2'}]}, {type: noop, id: b}]",
        ),
    ] {
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!("receivers:\n  filelog:\n    include: [/tmp/x]\n    {yaml}\nexporters:\n  nop:\nservice:\n  pipelines:\n    logs:\n      receivers: [filelog]\n      exporters: [nop]\n"),
        )
        .unwrap();
        let o = std::process::Command::new(binary())
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("receivers.filelog.{key}")), "{err}");
    }
}

#[test]
fn router_and_recombine_join_stack_traces_and_parse_json_lines() {
    let logs = tempfile::tempdir().unwrap();
    let cfg = r#"
receivers:
  filelog:
    include: [@LOGS@/*.log]
    start_at: beginning
    preserve_leading_whitespaces: true
    poll_interval: 50ms
    operators:
      - type: router
        routes:
          - output: json
            expr: 'body matches "^\\{"'
        default: joiner
      - type: json_parser
        id: json
        severity: {parse_from: attributes.level}
        output: done
      - type: recombine
        id: joiner
        combine_field: body
        is_first_entry: 'body matches "^[^\\s]"'
        force_flush_period: 300ms
      - type: regex_parser
        regex: '^(?P<level>[A-Z]+) (?P<first_line>[^\n]*)'
        severity: {parse_from: attributes.level}
      - type: add
        id: done
        field: attributes.parsed
        value: true
exporters:
  file:
    path: @DIR@/out.jsonl
service:
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [file]
"#
    .replace("@LOGS@", logs.path().to_str().unwrap());
    let c = Collector::start(&cfg);
    append(
        &logs.path().join("app.log"),
        "ERROR request failed\n  at handler (app.js:10)\n  at main (app.js:1)\n{\"level\": \"info\", \"msg\": \"ok\"}\nWARN slow call\n",
    );
    // The last trace has no next first line: force_flush_period sends it.
    let lines = wait_for_lines(&c.path("out.jsonl"), count_records, 3);
    let mut got: Vec<(String, i32, bool)> = Vec::new();
    for rl in logs_from(&lines).resource_logs {
        for r in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
            let body = match r.body.and_then(|b| b.value) {
                Some(Any::StringValue(s)) => s,
                other => panic!("{other:?}"),
            };
            let parsed = r.attributes.iter().any(|k| k.key == "parsed");
            got.push((body, r.severity_number, parsed));
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "ERROR request failed\n  at handler (app.js:10)\n  at main (app.js:1)".to_string(),
                17,
                true
            ),
            ("WARN slow call".to_string(), 13, true),
            (
                "{\"level\": \"info\", \"msg\": \"ok\"}".to_string(),
                9,
                true
            ),
        ]
    );
}
