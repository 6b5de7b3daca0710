//! File globs as otelcol's filelog takes them (doublestar): `*` and `?`
//! within one path component, `[abc]` / `[a-z]` / `[!a]` classes, and
//! `**` for any number of directories.

use std::path::{Path, PathBuf};

/// A checked glob.
#[derive(Debug, Clone)]
pub struct Glob {
    parts: Vec<String>,
    /// The directory the walk starts from: the leading literal components.
    base: PathBuf,
    /// How many of `parts` `base` covers.
    literal: usize,
}

fn is_literal(part: &str) -> bool {
    !part.contains(['*', '?', '['])
}

impl Glob {
    /// Checks an absolute or relative glob.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty glob matches nothing".into());
        }
        let absolute = pattern.starts_with('/');
        let parts: Vec<String> = pattern
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        for p in &parts {
            if p.contains("**") && p != "**" {
                return Err(format!("{pattern:?}: ** must be a whole path component"));
            }
            if p.matches('[').count() != p.matches(']').count() {
                return Err(format!("{pattern:?}: unclosed [ in {p:?}"));
            }
        }
        let literal = parts
            .iter()
            .take_while(|p| is_literal(p))
            .count()
            .min(parts.len().saturating_sub(1));
        let mut base = PathBuf::from(if absolute { "/" } else { "." });
        for p in &parts[..literal] {
            base.push(p);
        }
        Ok(Glob {
            parts,
            base,
            literal,
        })
    }

    /// Whether `path` (as the walk builds it) matches.
    pub fn matches(&self, path: &Path) -> bool {
        let Ok(rest) = path.strip_prefix(&self.base) else {
            return false;
        };
        let comps: Vec<String> = rest
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let pats: Vec<&str> = self.parts[self.literal..]
            .iter()
            .map(String::as_str)
            .collect();
        match_parts(&pats, &comps)
    }

    /// The files that match now, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let deep = self.parts[self.literal..].iter().any(|p| p == "**");
        let depth = if deep {
            usize::MAX
        } else {
            self.parts.len() - self.literal
        };
        walk(&self.base, depth, &mut |p| {
            if self.matches(p) {
                out.push(p.to_path_buf());
            }
        });
        out.sort();
        out
    }
}

/// Visits regular files under `dir`, `depth` levels down at most.
fn walk(dir: &Path, depth: usize, f: &mut impl FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        // Symlinks are followed for files, not for directories (no cycles).
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            walk(&path, depth - 1, f);
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            f(&path);
        }
    }
}

fn match_parts(pats: &[&str], comps: &[String]) -> bool {
    match pats.split_first() {
        None => comps.is_empty(),
        Some((&"**", rest)) => (0..=comps.len()).any(|i| match_parts(rest, &comps[i..])),
        Some((p, rest)) => match comps.split_first() {
            Some((c, more)) => match_one(p.as_bytes(), c.as_bytes()) && match_parts(rest, more),
            None => false,
        },
    }
}

/// One component against one pattern component.
fn match_one(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_one(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_one(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let (class, after) = (&rest[..close], &rest[close + 1..]);
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            let (negate, class) = match class.split_first() {
                Some((b'!' | b'^', r)) => (true, r),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && match_one(after, s_rest)
        }
        Some((a, rest)) => s.first() == Some(a) && match_one(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_classes_and_double_stars() {
        let g = Glob::new("/var/log/*.log").unwrap();
        assert!(g.matches(Path::new("/var/log/a.log")));
        assert!(!g.matches(Path::new("/var/log/x/a.log")));
        let g = Glob::new("/var/log/**/*.jsonl").unwrap();
        assert!(g.matches(Path::new("/var/log/a.jsonl")));
        assert!(g.matches(Path::new("/var/log/x/y/a.jsonl")));
        assert!(!g.matches(Path::new("/var/log/x/a.json")));
        let g = Glob::new("/l/app-[0-9]?.[!g]*").unwrap();
        assert!(g.matches(Path::new("/l/app-1a.log")));
        assert!(!g.matches(Path::new("/l/app-1a.gz")));
        assert!(Glob::new("/a/b**").is_err());
    }

    #[test]
    fn walks_only_as_deep_as_the_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        for f in ["a.log", "b.txt", "x/c.log", "x/y/d.log"] {
            std::fs::write(d.join(f), "1").unwrap();
        }
        let names = |g: &str| -> Vec<String> {
            Glob::new(&format!("{}/{g}", d.display()))
                .unwrap()
                .files()
                .iter()
                .map(|p| p.strip_prefix(d).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names("*.log"), ["a.log"]);
        assert_eq!(names("**/*.log"), ["a.log", "x/c.log", "x/y/d.log"]);
        assert_eq!(names("x/*/*.log"), ["x/y/d.log"]);
    }
}
