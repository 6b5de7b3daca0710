//! Extensions: components outside the data path.

pub mod auth;
pub mod file_storage;
pub mod health_check;
pub mod observatory_ui;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pipeline::component::{ConfigError, Context, StorageSpec};
use tokio::task::JoinHandle;

use crate::receivers::Stop;

/// Whether every pipeline is running (false while starting or stopping).
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// Marks the collector ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the collector is ready.
    pub fn ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the running service offers extensions (otelcol's `component.Host`).
#[derive(Clone)]
pub struct Host {
    /// Whether every pipeline is running.
    pub health: Health,
    /// The pipelines as the config defines them.
    pub pipelines: Arc<Vec<crate::config::PipelinePlan>>,
}

/// A validated extension config that can start.
#[async_trait]
pub trait ExtensionBuilder: Send + Sync {
    /// Starts serving until `stop`.
    async fn start(
        &self,
        ctx: &Context,
        host: &Host,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String>;

    /// Where a storage extension keeps data; `None` for the others.
    fn storage(&self) -> Option<StorageSpec> {
        None
    }

    /// What an auth extension offers receivers and exporters; `None` for
    /// the others. Reads its credential files.
    fn authenticator(&self) -> Result<Option<pipeline::auth::Authenticator>, String> {
        Ok(None)
    }
}

/// An extension type.
pub struct ExtensionFactory {
    /// Type name in configs.
    pub type_name: &'static str,
    /// Parses and validates a config.
    pub parse: fn(serde_yaml::Value) -> Result<Arc<dyn ExtensionBuilder>, ConfigError>,
}
