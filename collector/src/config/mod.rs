//! Loading the otelcol-shaped YAML config: merge files, expand `${env:…}`,
//! parse with YAML paths in every error, then check components and the
//! pipeline graph against the registry.

mod auth_refs;
mod depth;
mod env;
mod graph;
mod locate;

use std::collections::BTreeMap;
use std::fmt;

use pipeline::component::ConfigError;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

pub use graph::{Checked, PipelinePlan};

/// A config error with the file and line it points at.
#[derive(Debug)]
pub struct LoadError {
    /// File the error is in, when known.
    pub file: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The error itself.
    pub error: ConfigError,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.error),
            (Some(file), None) => write!(f, "{file}: {}", self.error),
            _ => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for LoadError {}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// `console` or `json`.
    pub encoding: String,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: "info".into(),
            encoding: "console".into(),
        }
    }
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `none` turns the endpoint off; `basic`, `normal`, `detailed` keep it.
    pub level: String,
    /// Where `/metrics` is served.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            level: "normal".into(),
            address: "localhost:8888".into(),
        }
    }
}

/// `service.telemetry`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's own logs.
    pub logs: LogsConfig,
    /// The collector's own metrics.
    pub metrics: MetricsConfig,
}

/// One entry of `service.pipelines`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Receiver ids feeding the pipeline.
    pub receivers: Vec<String>,
    /// Processor ids, in order.
    pub processors: Vec<String>,
    /// Exporter ids the pipeline fans out to.
    pub exporters: Vec<String>,
}

/// `service`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Extension ids to start.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Pipelines by id (`traces`, `logs/loki`).
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Self-telemetry.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// The whole file, components still as YAML until the registry parses them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Receivers by id.
    #[serde(default)]
    pub receivers: Mapping,
    /// Processors by id.
    #[serde(default)]
    pub processors: Mapping,
    /// Exporters by id.
    #[serde(default)]
    pub exporters: Mapping,
    /// Extensions by id.
    #[serde(default)]
    pub extensions: Mapping,
    /// Connectors are not available yet; any entry is an error.
    #[serde(default)]
    pub connectors: Mapping,
    /// The service section.
    pub service: ServiceConfig,
}

/// Merges `over` into `base`: maps merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The config sources: each file's name and text, in merge order.
pub struct Sources {
    files: Vec<(String, String)>,
}

impl Sources {
    /// Reads the files named on the command line.
    pub fn read(paths: &[String]) -> Result<Sources, LoadError> {
        let mut files = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|e| LoadError {
                file: Some(p.clone()),
                line: None,
                error: ConfigError::new("", format!("cannot read config file: {e}")),
            })?;
            files.push((p.clone(), text));
        }
        Ok(Sources { files })
    }

    /// Sources from literal text (tests, fuzzing).
    pub fn from_text(name: &str, text: &str) -> Sources {
        Sources {
            files: vec![(name.to_string(), text.to_string())],
        }
    }

    /// Locates `error` in the last file that mentions its path.
    pub fn locate(&self, error: ConfigError) -> LoadError {
        for (name, text) in self.files.iter().rev() {
            if let Some(line) = locate::line_of(text, &error.path) {
                return LoadError {
                    file: Some(name.clone()),
                    line: Some(line),
                    error,
                };
            }
        }
        for (name, text) in self.files.iter().rev() {
            if let Some(line) = locate::nearest_line(text, &error.path) {
                return LoadError {
                    file: Some(name.clone()),
                    line: Some(line),
                    error,
                };
            }
        }
        LoadError {
            file: self.files.last().map(|f| f.0.clone()),
            line: None,
            error,
        }
    }

    /// Parses, merges, expands and checks the config.
    pub fn load(&self) -> Result<Checked, LoadError> {
        self.load_with_env(&|k| std::env::var(k).ok())
    }

    /// As [`Sources::load`], with a given environment.
    pub fn load_with_env(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Checked, LoadError> {
        let mut merged = Value::Mapping(Mapping::new());
        for (name, text) in &self.files {
            if let Some(line) = depth::too_deep(text) {
                return Err(LoadError {
                    file: Some(name.clone()),
                    line: Some(line),
                    error: ConfigError::new(
                        "",
                        format!(
                            "invalid YAML: nested more than {} levels deep",
                            depth::MAX_DEPTH
                        ),
                    ),
                });
            }
            let v: Value = serde_yaml::from_str(text).map_err(|e| LoadError {
                file: Some(name.clone()),
                line: e.location().map(|l| l.line()),
                error: ConfigError::new("", format!("invalid YAML: {e}")),
            })?;
            if !v.is_null() {
                merge(&mut merged, v);
            }
        }
        env::expand(&mut merged, lookup).map_err(|m| self.locate(ConfigError::new("", m)))?;
        let raw: RawConfig = serde_path_to_error::deserialize(merged).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            self.locate(ConfigError::new(
                if path == "." { String::new() } else { path },
                msg,
            ))
        })?;
        graph::check(raw).map_err(|e| self.locate(e))
    }
}

#[cfg(test)]
mod tests;
