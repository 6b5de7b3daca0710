//! Auth extensions (otelcol's `bearertokenauth`, `basicauth`,
//! `headers_setter`, and our `api_key`) and what they share: credentials
//! read from a file that is re-read when it changes, and comparing secrets
//! in constant time.

pub mod api_key;
pub mod basicauth;
pub mod bearertokenauth;
pub mod headers_setter;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often a credentials file is looked at (its modification time).
const RECHECK: Duration = Duration::from_secs(1);

/// Something parsed from a file, re-read when the file changes; a file
/// that fails to parse keeps the last good content (and is logged).
pub struct Watched<T> {
    path: PathBuf,
    parse: fn(&str) -> Result<T, String>,
    state: RwLock<State<T>>,
}

struct State<T> {
    checked: Instant,
    stamp: Option<(SystemTime, u64)>,
    value: Arc<T>,
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<T> Watched<T> {
    /// Reads and parses `path` now; errors name the file.
    pub fn load(path: &str, parse: fn(&str) -> Result<T, String>) -> Result<Watched<T>, String> {
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Watched {
            state: RwLock::new(State {
                checked: Instant::now(),
                stamp: stamp(&path),
                value: Arc::new(value),
            }),
            path,
            parse,
        })
    }

    /// The content, re-read first if the file changed since last looked at.
    pub fn current(&self) -> Arc<T> {
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if s.checked.elapsed() < RECHECK {
                return s.value.clone();
            }
        }
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= RECHECK {
            s.checked = Instant::now();
            let now = stamp(&self.path);
            if now != s.stamp {
                match std::fs::read_to_string(&self.path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| (self.parse)(&t))
                {
                    Ok(v) => {
                        s.value = Arc::new(v);
                        s.stamp = now;
                        tracing::info!(file = %self.path.display(), "credentials reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(file = %self.path.display(), error = %e, "credentials file not reloaded; the previous content stays in use");
                    }
                }
            }
        }
        s.value.clone()
    }
}

/// Compares two secrets without an early exit on the first difference.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

/// A header value as text, if it is one.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "one").unwrap();
        let parse = |t: &str| {
            if t.is_empty() {
                Err("empty".to_string())
            } else {
                Ok(t.to_string())
            }
        };
        let w = Watched::load(f.to_str().unwrap(), parse).unwrap();
        assert_eq!(*w.current(), "one");
        std::fs::write(&f, "second").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(*w.current(), "second");
        std::fs::write(&f, "").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(*w.current(), "second");
        assert!(Watched::load("/nonexistent/x", parse).is_err());
    }
}
