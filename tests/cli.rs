//! The command line as otelcol users know it: `--config` (repeatable),
//! `validate`, `components`, `--version`; config errors exit 2 and name the
//! YAML path and line.

mod common;

use std::process::Command;

use common::binary;

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_default_config_and_names_errors() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (code, out, _) = run(&["validate"], &repo);
    assert_eq!(code, 0);
    assert!(out.contains("config.yaml: configuration is valid"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  batch:\n    timeoutt: 1s\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [nop]\n";
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let (code, _, err) = run(&["validate", "--config", "bad.yaml"], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.yaml:7: processors.batch.timeoutt: unknown field `timeoutt`"),
        "{err}"
    );

    // Starting on an invalid config fails the same way, before binding anything.
    let (code, _, err) = run(&["--config", "bad.yaml"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("processors.batch.timeoutt"), "{err}");

    let (code, _, err) = run(&["validate", "--config", "missing.yaml"], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("missing.yaml") && err.contains("cannot read config file"),
        "{err}"
    );
}

#[test]
fn repeated_config_flags_merge_later_over_earlier() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [nop]\n").unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "service:\n  pipelines:\n    traces:\n      exporters: [debug]\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &["validate", "--config", "a.yaml", "--config", "b.yaml"],
        dir.path(),
    );
    assert_eq!(code, 2, "b.yaml names an undefined exporter");
    assert!(
        err.contains("service.pipelines.traces.exporters: \"debug\" is not defined in exporters"),
        "{err}"
    );
    std::fs::write(dir.path().join("c.yaml"), "exporters:\n  debug:\n").unwrap();
    let (code, _, err) = run(
        &[
            "validate", "--config", "a.yaml", "--config", "b.yaml", "--config", "c.yaml",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: exporters.nop is defined but not used"),
        "{err}"
    );
}

#[test]
fn components_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["components"], dir.path());
    assert_eq!(code, 0);
    for name in [
        "receivers:\n  - otlp",
        "processors:\n  - attributes",
        "  - batch",
        "  - llm_cost",
        "  - memory_limiter",
        "  - probabilistic_sampler",
        "  - ratelimit",
        "  - redaction",
        "  - resource",
        "  - tail_sampling",
        "  - otlphttp",
        "  - file",
        "  - debug",
        "  - nop",
        "extensions:\n  - api_key\n  - basicauth\n  - bearertokenauth\n  - file_storage\n  - headers_setter\n  - health_check",
    ] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    let (code, out, _) = run(&["--version"], dir.path());
    assert_eq!(
        (code, out.trim()),
        (0, concat!("observatory ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn deploy_and_example_configs_validate() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for rel in [
        "deploy/tempo/observatory.yaml",
        "deploy/stack/observatory.yaml",
        "deploy/fleet/one-tier.yaml",
        "deploy/fleet/two-tier-gateway.yaml",
        "deploy/fleet/two-tier-sampler.yaml",
        "examples/llm-gateway.yaml",
        "examples/llm-filelog.yaml",
        "examples/kafka-gateway.yaml",
        "examples/kafka-processor.yaml",
    ] {
        let (code, out, err) = run(&["validate", "--config", rel], &repo);
        assert_eq!(code, 0, "{rel}: {err}");
        assert!(out.contains("configuration is valid"), "{rel}: {out}");
    }
}

#[test]
fn a_deeply_nested_config_is_refused_at_once() {
    // libyaml took 58 s to refuse this 200 KB file (quadratic in depth).
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let text = format!("receivers: {}{}\n", "[".repeat(n), "]".repeat(n));
    std::fs::write(dir.path().join("deep.yaml"), text).unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = run(&["validate", "--config", "deep.yaml"], dir.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("deep.yaml:1: : invalid YAML: nested more than 128 levels deep"),
        "{err}"
    );
    // A behaviour bound, not a benchmark: "at once" against the 58 s before.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
