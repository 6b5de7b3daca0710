//! The collector's own telemetry: logs through `tracing`, and the Prometheus
//! endpoint with process RSS and CPU beside every component's series.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use pipeline::component::ConfigError;
use pipeline::telemetry::{proc_status_bytes, Registry};
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::config::{LogsConfig, MetricsConfig};
use crate::receivers::{bind, Stop};

/// Checks the telemetry settings.
pub fn validate(logs: &LogsConfig, metrics: &MetricsConfig) -> Result<(), ConfigError> {
    if !["debug", "info", "warn", "error"].contains(&logs.level.to_ascii_lowercase().as_str()) {
        return Err(ConfigError::new(
            "service.telemetry.logs.level",
            "must be debug, info, warn or error",
        ));
    }
    if !["console", "json"].contains(&logs.encoding.as_str()) {
        return Err(ConfigError::new(
            "service.telemetry.logs.encoding",
            "must be console or json",
        ));
    }
    if !["none", "basic", "normal", "detailed"].contains(&metrics.level.as_str()) {
        return Err(ConfigError::new(
            "service.telemetry.metrics.level",
            "must be none, basic, normal or detailed",
        ));
    }
    Ok(())
}

/// Installs the log subscriber (stderr).
pub fn init_logs(cfg: &LogsConfig) {
    let filter = EnvFilter::new(cfg.level.to_ascii_lowercase());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if cfg.encoding == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// User + system CPU seconds of this process.
pub fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name; the
    // kernel's USER_HZ is 100 on every Linux build we target.
    (ticks(11) + ticks(12)) / 100.0
}

/// Registers the process gauges.
pub fn register_process(reg: &Registry) {
    reg.gauge(
        "observatory_process_memory_rss_bytes",
        "Resident set size.",
        &[],
        || proc_status_bytes("VmRSS") as f64,
    );
    reg.gauge(
        "observatory_process_memory_peak_rss_bytes",
        "Peak resident set size.",
        &[],
        || proc_status_bytes("VmHWM") as f64,
    );
    reg.gauge(
        "observatory_process_cpu_seconds",
        "User plus system CPU time used.",
        &[],
        cpu_seconds,
    );
}

/// Serves `/metrics` at the configured address until `stop`.
pub async fn serve_metrics(
    cfg: &MetricsConfig,
    reg: Arc<Registry>,
    stop: Stop,
) -> Result<Option<JoinHandle<()>>, String> {
    if cfg.level == "none" {
        return Ok(None);
    }
    let listener = bind(&cfg.address).await?;
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let text = reg.render();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    text,
                )
            }
        }),
    );
    tracing::info!(address = %cfg.address, "self-metrics at /metrics");
    Ok(Some(tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(stop.wait())
            .await;
    })))
}
