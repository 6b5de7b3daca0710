//! `filelog` config: otelcol-contrib's keys and defaults for the common
//! cases; keys we cannot honour yet are refused by name.

use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::{Deserialize, Deserializer};

use super::chain::Chain;
use super::operators::OperatorConfig;

/// A size written as otelcol's stanza writes it: a number of bytes, or a
/// number with `kb`/`KiB`, `mb`/`MiB`, `gb`/`GiB` (all powers of 1024).
pub fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n as usize),
        Raw::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().replace('_', "").to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: usize = t[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected bytes or a number with kb, mb or gb"))?;
    let scale = match t[digits..].trim() {
        "" | "b" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {s:?}: expected bytes or a number with kb, mb or gb"
            ))
        }
    };
    Ok(n * scale)
}

fn d_poll() -> Duration {
    Duration::from_millis(200)
}
fn d_flush() -> Duration {
    Duration::from_millis(500)
}

/// `filelog` (also `file_log`) receiver config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilelogConfig {
    /// Globs of the files to read (`*`, `?`, `[..]`, `**`).
    pub include: Vec<String>,
    /// Globs of matched files not to read.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in files found at start-up: `end` (otelcol's default) or `beginning`.
    #[serde(default = "d_start_at")]
    pub start_at: String,
    /// How often files are looked for and read.
    #[serde(default = "d_poll", with = "pipeline::duration")]
    pub poll_interval: Duration,
    /// Longer lines are cut into entries of this size (counted).
    #[serde(default = "d_max_log_size", deserialize_with = "byte_size")]
    pub max_log_size: usize,
    /// Files read at once; the others wait for the next poll.
    #[serde(default = "d_max_files")]
    pub max_concurrent_files: usize,
    /// Text encoding: `utf-8` (invalid bytes replaced), `ascii` or `nop`.
    #[serde(default = "d_encoding")]
    pub encoding: String,
    /// Keep whitespace at the start of each line (trimmed by default).
    #[serde(default)]
    pub preserve_leading_whitespaces: bool,
    /// Keep whitespace at the end of each line (trimmed by default).
    #[serde(default)]
    pub preserve_trailing_whitespaces: bool,
    /// Adds `log.file.name`.
    #[serde(default = "d_true")]
    pub include_file_name: bool,
    /// Adds `log.file.path`.
    #[serde(default)]
    pub include_file_path: bool,
    /// How many first bytes identify a file across renames.
    #[serde(default = "d_fingerprint", deserialize_with = "byte_size")]
    pub fingerprint_size: usize,
    /// A `file_storage` extension where read offsets are checkpointed.
    #[serde(default)]
    pub storage: Option<String>,
    /// `gzip` for gzip-compressed files; empty for plain ones.
    #[serde(default)]
    pub compression: String,
    /// A last line without its newline is sent after this long unchanged (0: never).
    #[serde(default = "d_flush", with = "pipeline::duration")]
    pub force_flush_period: Duration,
    /// Attributes added to every entry.
    #[serde(default)]
    pub attributes: serde_yaml::Mapping,
    /// Resource attributes added to every entry.
    #[serde(default)]
    pub resource: serde_yaml::Mapping,
    /// The operator chain, in otelcol's syntax.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    // Keys of otelcol's we do not honour yet: refused by name in validate.
    #[serde(default)]
    multiline: Option<serde_yaml::Value>,
    #[serde(default)]
    exclude_older_than: Option<serde_yaml::Value>,
    #[serde(default)]
    delete_after_read: Option<serde_yaml::Value>,
    #[serde(default)]
    header: Option<serde_yaml::Value>,
    #[serde(default)]
    ordering_criteria: Option<serde_yaml::Value>,
    #[serde(default)]
    retry_on_failure: Option<serde_yaml::Value>,
    #[serde(default)]
    include_file_name_resolved: Option<serde_yaml::Value>,
    #[serde(default)]
    include_file_path_resolved: Option<serde_yaml::Value>,
    #[serde(default)]
    include_file_owner_name: Option<serde_yaml::Value>,
    #[serde(default)]
    include_file_owner_group_name: Option<serde_yaml::Value>,
    #[serde(default)]
    include_file_record_number: Option<serde_yaml::Value>,
    #[serde(default)]
    acquire_fs_lock: Option<serde_yaml::Value>,
    #[serde(default)]
    polls_to_archive: Option<serde_yaml::Value>,
}

fn d_start_at() -> String {
    "end".into()
}
fn d_max_log_size() -> usize {
    1 << 20
}
fn d_max_files() -> usize {
    1024
}
fn d_encoding() -> String {
    "utf-8".into()
}
fn d_true() -> bool {
    true
}
fn d_fingerprint() -> usize {
    1000
}

impl FilelogConfig {
    /// The operators, checked and wired.
    pub fn chain(&self) -> Result<Chain, ConfigError> {
        Chain::new(&self.operators)
    }

    /// Whether files found at start-up are read from their beginning.
    pub fn from_beginning(&self) -> bool {
        self.start_at == "beginning"
    }
}

impl Validate for FilelogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let refused = [
            (
                "multiline",
                self.multiline.is_some(),
                "use the recombine operator",
            ),
            (
                "exclude_older_than",
                self.exclude_older_than.is_some(),
                "not supported yet",
            ),
            (
                "delete_after_read",
                self.delete_after_read.is_some(),
                "not supported yet",
            ),
            ("header", self.header.is_some(), "not supported yet"),
            (
                "ordering_criteria",
                self.ordering_criteria.is_some(),
                "not supported yet",
            ),
            (
                "retry_on_failure",
                self.retry_on_failure.is_some(),
                "a refused batch is always read again at the next poll",
            ),
            (
                "include_file_name_resolved",
                self.include_file_name_resolved.is_some(),
                "not supported yet",
            ),
            (
                "include_file_path_resolved",
                self.include_file_path_resolved.is_some(),
                "not supported yet",
            ),
            (
                "include_file_owner_name",
                self.include_file_owner_name.is_some(),
                "not supported yet",
            ),
            (
                "include_file_owner_group_name",
                self.include_file_owner_group_name.is_some(),
                "not supported yet",
            ),
            (
                "include_file_record_number",
                self.include_file_record_number.is_some(),
                "not supported yet",
            ),
            (
                "acquire_fs_lock",
                self.acquire_fs_lock.is_some(),
                "not supported yet",
            ),
            (
                "polls_to_archive",
                self.polls_to_archive.is_some(),
                "not supported yet",
            ),
        ];
        if let Some((key, _, why)) = refused.iter().find(|(_, set, _)| *set) {
            return Err(ConfigError::new(
                *key,
                format!("is not supported by Observatory's filelog: {why}"),
            ));
        }
        if self.include.is_empty() {
            return Err(ConfigError::new("include", "at least one glob is required"));
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, g) in globs.iter().enumerate() {
                super::glob::Glob::new(g).map_err(|e| ConfigError::new(format!("{key}.{i}"), e))?;
            }
        }
        if !["beginning", "end"].contains(&self.start_at.as_str()) {
            return Err(ConfigError::new("start_at", "must be beginning or end"));
        }
        if !["utf-8", "utf8", "ascii", "nop"].contains(&self.encoding.to_ascii_lowercase().as_str())
        {
            return Err(ConfigError::new(
                "encoding",
                format!(
                    "{:?} is not supported yet: use utf-8, ascii or nop",
                    self.encoding
                ),
            ));
        }
        if !["", "gzip"].contains(&self.compression.as_str()) {
            return Err(ConfigError::new("compression", "must be gzip or empty"));
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError::new("poll_interval", "must be above 0"));
        }
        if self.max_log_size == 0 || self.fingerprint_size == 0 || self.max_concurrent_files == 0 {
            let key = if self.max_log_size == 0 {
                "max_log_size"
            } else if self.fingerprint_size == 0 {
                "fingerprint_size"
            } else {
                "max_concurrent_files"
            };
            return Err(ConfigError::new(key, "must be above 0"));
        }
        if let Some(s) = &self.storage {
            if !s.starts_with("file_storage") {
                return Err(ConfigError::new(
                    "storage",
                    "must name a file_storage extension",
                ));
            }
        }
        self.chain().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_otelcol_writes_them() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1kb").unwrap(), 1024);
        assert_eq!(parse_size("102_400").unwrap(), 102_400);
        assert!(parse_size("1 lightyear").is_err());
    }
}
