//! Finds the line of a dotted YAML path in a config file, so errors can say
//! `config.yaml:12`. Block mappings only; flow style falls back to no line.

/// The 1-based line where `path` (`processors.batch.timeout`) is written.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let want: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    if want.is_empty() {
        return None;
    }
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let Some(colon) = trimmed.find(':') else {
            continue;
        };
        let key = trimmed[..colon]
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        if stack.len() == want.len() && stack.iter().zip(&want).all(|((_, k), w)| k == w) {
            return Some(no + 1);
        }
    }
    None
}

/// The line of `path` or, failing that, of its nearest ancestor.
pub fn nearest_line(text: &str, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = line_of(text, p) {
            return Some(l);
        }
        p = &p[..p.rfind('.')?];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_ancestors() {
        let text = "receivers:\n  otlp:\n    protocols:\n      grpc:\n# note\nprocessors:\n  batch:\n    timeoutt: 1s\n  batch/x:\n    timeout: 2s\n";
        assert_eq!(line_of(text, "processors.batch.timeoutt"), Some(8));
        assert_eq!(line_of(text, "processors.batch/x.timeout"), Some(10));
        assert_eq!(line_of(text, "receivers.otlp.protocols.grpc"), Some(4));
        assert_eq!(line_of(text, "processors.batch.timeout"), None);
        assert_eq!(
            nearest_line(text, "processors.batch/x.nope.deeper"),
            Some(9)
        );
    }
}
