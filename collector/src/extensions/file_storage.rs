//! `file_storage`: a directory where persistent sending queues keep their
//! write-ahead logs (`sending_queue.storage: file_storage/<name>`), with
//! otelcol's keys and defaults.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context, StorageSpec, Validate};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{ExtensionBuilder, ExtensionFactory, Host};
use crate::receivers::Stop;

/// `file_storage` config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Where the data lives; must exist unless `create_directory` is set.
    pub directory: PathBuf,
    /// Wait for the directory's lock this long (another process holding it).
    #[serde(with = "pipeline::duration")]
    pub timeout: Duration,
    /// fsync every write before it is acknowledged.
    pub fsync: bool,
    /// Create `directory` (and parents) when missing.
    pub create_directory: bool,
    /// Octal permissions for a created directory.
    pub directory_permissions: String,
    /// otelcol's bbolt compaction; accepted so otelcol configs load. A WAL
    /// deletes whole segments once acknowledged, so it has nothing to compact.
    pub compaction: Compaction,
}

/// otelcol's `compaction` block; every key accepted, none needed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Compaction {
    /// Compact at start.
    pub on_start: bool,
    /// Compact online.
    pub on_rebound: bool,
    /// Scratch directory.
    pub directory: Option<PathBuf>,
    /// Transaction size.
    pub max_transaction_size: Option<u64>,
    /// Online trigger.
    pub rebound_needed_threshold_mib: Option<u64>,
    /// Online trigger.
    pub rebound_trigger_threshold_mib: Option<u64>,
    /// Online check period.
    pub check_interval: Option<String>,
    /// Remove leftovers at start.
    pub cleanup_on_start: Option<bool>,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: PathBuf::from("/var/lib/otelcol/file_storage"),
            timeout: Duration::from_secs(1),
            fsync: false,
            create_directory: false,
            directory_permissions: "0750".into(),
            compaction: Compaction::default(),
        }
    }
}

impl FileStorageConfig {
    fn permissions(&self) -> Option<u32> {
        u32::from_str_radix(self.directory_permissions.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
    }
}

impl Validate for FileStorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.directory.as_os_str().is_empty() {
            return Err(ConfigError::new("directory", "must not be empty"));
        }
        if self.permissions().is_none() {
            return Err(ConfigError::new(
                "directory_permissions",
                format!(
                    "{:?} is not an octal mode like \"0750\"",
                    self.directory_permissions
                ),
            ));
        }
        Ok(())
    }
}

/// The registry entry.
pub fn factory() -> ExtensionFactory {
    ExtensionFactory {
        type_name: "file_storage",
        parse: |v| Ok(Arc::new(parse_config::<FileStorageConfig>(v)?)),
    }
}

#[async_trait]
impl ExtensionBuilder for FileStorageConfig {
    async fn start(
        &self,
        ctx: &Context,
        _host: &Host,
        _stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let dir = &self.directory;
        if !dir.is_dir() {
            if !self.create_directory {
                return Err(format!(
                    "extensions.{}: directory {} does not exist (create it, or set create_directory: true)",
                    ctx.id,
                    dir.display()
                ));
            }
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(self.permissions().unwrap_or(0o750))
                .create(dir)
                .map_err(|e| format!("extensions.{}: creating {}: {e}", ctx.id, dir.display()))?;
        }
        if self.compaction != Compaction::default() {
            tracing::info!(extension = %ctx.id, "compaction settings are accepted and not needed: acknowledged WAL segments are deleted whole");
        }
        tracing::info!(extension = %ctx.id, directory = %dir.display(), fsync = self.fsync, "file storage ready");
        Ok(Vec::new())
    }

    fn storage(&self) -> Option<StorageSpec> {
        Some(StorageSpec {
            directory: self.directory.clone(),
            fsync: self.fsync,
            lock_timeout: self.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otelcol_defaults_and_named_mistakes() {
        let c: FileStorageConfig = parse_config(serde_yaml::Value::Null).unwrap();
        assert_eq!(c, FileStorageConfig::default());
        assert_eq!(c.directory, PathBuf::from("/var/lib/otelcol/file_storage"));
        assert!(!c.fsync && !c.create_directory);

        let full: FileStorageConfig = parse_config(
            serde_yaml::from_str(
                "directory: /tmp/x\ntimeout: 2s\nfsync: true\ncreate_directory: true\ncompaction: {on_start: true, directory: /tmp, max_transaction_size: 65536}",
            )
            .unwrap(),
        )
        .unwrap();
        assert!(full.fsync && full.compaction.on_start);
        assert_eq!(full.timeout, Duration::from_secs(2));

        let e = parse_config::<FileStorageConfig>(serde_yaml::from_str("fsnyc: true").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("fsnyc"), "{e}");
        let e = parse_config::<FileStorageConfig>(
            serde_yaml::from_str("directory_permissions: rwx").unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("directory_permissions"), "{e}");
    }
}
