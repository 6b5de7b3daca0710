//! What every component shares: config parsing with YAML paths in errors,
//! the build context, and the factory shape the registry holds.

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::batch::Signal;
use crate::consumer::BoxConsumer;
use crate::telemetry::Registry;

/// A config problem, located by its YAML path (`processors.batch.timeout`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted YAML path of the offending key.
    pub path: String,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error under a parent path.
    pub fn under(mut self, prefix: &str) -> ConfigError {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

/// Checks that need no I/O, run after parsing; errors name a key relative to
/// the component.
pub trait Validate {
    /// Returns the first problem found.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Parses a component's YAML (null means all defaults) and validates it.
pub fn parse_config<T: DeserializeOwned + Validate>(
    value: serde_yaml::Value,
) -> Result<T, ConfigError> {
    let value = if value.is_null() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        value
    };
    let cfg: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.into_inner().to_string();
        // serde_yaml appends a location that means nothing once the value
        // was detached from its file; the caller adds the real line.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ConfigError::new(path, msg)
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Background tasks the service waits for when draining at shutdown.
#[derive(Clone, Default)]
pub struct Tasks(Arc<Mutex<Vec<OwnedTask>>>);

/// A task and the id of the component that owns it.
pub type OwnedTask = (String, JoinHandle<()>);

impl Tasks {
    /// Records a task owned by component `id`.
    pub fn add(&self, id: &str, handle: JoinHandle<()>) {
        self.0.lock().unwrap().push((id.to_string(), handle));
    }

    /// Takes every recorded task.
    pub fn take(&self) -> Vec<OwnedTask> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What a component gets when it is built.
#[derive(Clone)]
pub struct Context {
    /// The component id (`batch/llm`).
    pub id: String,
    /// Where its self-metrics go.
    pub metrics: Arc<Registry>,
    /// Where it records tasks to drain at shutdown.
    pub tasks: Tasks,
    /// The storage extensions (`file_storage/<name>`) persistent queues may use.
    pub storage: Storages,
    /// The auth extensions receivers and exporters may name.
    pub auth: crate::auth::Authenticators,
    /// In-process inputs of receivers' pipelines, for an exporter that
    /// hands its own instance's share to them without a network hop.
    pub local: LocalInputs,
}

/// The pipelines a receiver feeds, per signal (slot = `Signal as usize`).
pub type SignalInputs = [Option<BoxConsumer>; 3];

/// Receiver id → its pipelines' inputs, filled by the service once the
/// pipelines are built and before any receiver starts.
#[derive(Clone, Default)]
pub struct LocalInputs(
    Arc<Mutex<std::collections::BTreeMap<String, Arc<std::sync::OnceLock<SignalInputs>>>>>,
);

impl LocalInputs {
    /// The slot for `receiver`'s pipelines (created on first ask).
    pub fn slot(&self, receiver: &str) -> Arc<std::sync::OnceLock<SignalInputs>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(receiver.to_string())
            .or_default()
            .clone()
    }

    /// The receivers some exporter asked for.
    pub fn wanted(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Forgets every slot (their holders keep theirs), so that the inputs
    /// live only as long as the exporters that use them.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Where a `file_storage` extension keeps data, and how carefully.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageSpec {
    /// The directory each user gets a sub-directory of.
    pub directory: std::path::PathBuf,
    /// Call fsync after every write before answering.
    pub fsync: bool,
    /// How long to wait for a directory another process has locked.
    pub lock_timeout: std::time::Duration,
}

/// Storage extensions by id.
pub type Storages = Arc<std::collections::BTreeMap<String, StorageSpec>>;

/// A validated processor config that can build one instance per pipeline.
pub trait ProcessorBuilder: Send + Sync {
    /// Builds the instance for a pipeline of `signal` that hands on to `next`.
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer;
}

/// A processor type: its name, the signals it supports, its config parser.
pub struct ProcessorFactory {
    /// Type name in configs (`batch`).
    pub type_name: &'static str,
    /// Signals it can process.
    pub signals: &'static [Signal],
    /// Parses and validates a config.
    pub parse: fn(serde_yaml::Value) -> Result<Arc<dyn ProcessorBuilder>, ConfigError>,
}
