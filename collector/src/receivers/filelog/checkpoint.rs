//! Read offsets kept in a `file_storage` directory: one JSON file per
//! receiver, replaced atomically (written beside, fsynced when the
//! extension says so, renamed over).

use std::io::Write;
use std::path::PathBuf;

use pipeline::component::StorageSpec;

use super::files::Known;

/// Where one receiver's offsets live.
pub struct Checkpoint {
    path: PathBuf,
    fsync: bool,
}

impl Checkpoint {
    /// The checkpoint of receiver `id` in `spec`'s directory.
    pub fn new(spec: &StorageSpec, id: &str) -> Result<Checkpoint, String> {
        let name: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::fs::create_dir_all(&spec.directory)
            .map_err(|e| format!("storage {}: {e}", spec.directory.display()))?;
        Ok(Checkpoint {
            path: spec.directory.join(format!("receiver_filelog_{name}.json")),
            fsync: spec.fsync,
        })
    }

    /// The offsets saved last, or none.
    pub fn load(&self) -> Result<Vec<Known>, String> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: not an offsets checkpoint: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Saves `known`'s offsets.
    pub fn save(&self, known: &[Known]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(known).map_err(std::io::Error::other)?)?;
        if self.fsync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}
