//! `${env:NAME}` and `${env:NAME:-default}` substitution in config values,
//! as otelcol does it: in string scalars after parsing, so a value can never
//! change the document's structure; `$$` is a literal `$`.

use serde_yaml::Value;

/// Expands every string scalar in `v` using `lookup` for variables.
pub fn expand(v: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match v {
        Value::String(s) => {
            if !s.contains('$') {
                return Ok(());
            }
            let whole = is_single_reference(s);
            let expanded = expand_str(s, lookup, 0)?;
            // A value that is exactly one reference takes the type the
            // variable's text has in YAML (`${env:PORT}` → 4317).
            *v = if whole {
                match serde_yaml::from_str::<Value>(&expanded) {
                    Ok(typed @ (Value::Number(_) | Value::Bool(_))) => typed,
                    _ => Value::String(expanded),
                }
            } else {
                Value::String(expanded)
            };
            Ok(())
        }
        Value::Sequence(items) => items.iter_mut().try_for_each(|i| expand(i, lookup)),
        Value::Mapping(m) => m.iter_mut().try_for_each(|(_, i)| expand(i, lookup)),
        Value::Tagged(t) => expand(&mut t.value, lookup),
        _ => Ok(()),
    }
}

fn is_single_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && reference_end(&s[2..]) == Some(s.len() - 3)
}

/// How deep `${env:A:-${env:B:-…}}` defaults may nest.
const MAX_NESTING: usize = 8;

/// The length of the reference body starting right after a `${`, up to
/// its matching `}` (nested `${…}` in a default are skipped whole).
fn reference_end(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    nesting: usize,
) -> Result<String, String> {
    if nesting > MAX_NESTING {
        return Err(format!(
            "${{env:…}} defaults nested more than {MAX_NESTING} deep in {s:?}"
        ));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = reference_end(body).ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            out.push_str(&resolve(&body[..end], lookup, nesting)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    nesting: usize,
) -> Result<String, String> {
    // `${NAME}` is the older spelling of `${env:NAME}`.
    let spec = match reference.split_once(':') {
        Some(("env", spec)) => spec,
        Some((scheme, _))
            if !reference.contains(":-") || reference.find(':') < reference.find(":-") =>
        {
            return Err(format!(
                "unsupported config provider {scheme:?} in ${{{reference}}}: only env is available"
            ))
        }
        _ => reference,
    };
    let (name, default) = match spec.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (spec, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!(
            "invalid environment variable name {name:?} in ${{{reference}}}"
        ));
    }
    Ok(match (lookup(name), default) {
        (Some(v), _) => v,
        // A default may itself hold references: `${env:A:-${env:B}}`.
        (None, Some(d)) => expand_str(d, lookup, nesting + 1)?,
        (None, None) => {
            tracing::warn!(
                variable = name,
                "environment variable is not set; using an empty value"
            );
            String::new()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> Result<Value, String> {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        let env = |k: &str| match k {
            "PORT" => Some("4317".to_string()),
            "HOST" => Some("0.0.0.0".to_string()),
            _ => None,
        };
        expand(&mut v, &env).map(|_| v)
    }

    #[test]
    fn substitutes_like_otelcol() {
        let v = run("a: ${env:PORT}\nb: ${env:HOST}:${env:PORT}\nc: ${env:NOPE:-fallback}\nd: $${env:PORT}\ne: ${PORT}\nf: ${env:NOPE}").unwrap();
        assert_eq!(v["a"], Value::Number(4317.into()));
        assert_eq!(v["b"], Value::String("0.0.0.0:4317".into()));
        assert_eq!(v["c"], Value::String("fallback".into()));
        assert_eq!(v["d"], Value::String("${env:PORT}".into()));
        assert_eq!(v["e"], Value::Number(4317.into()));
        assert_eq!(v["f"], Value::String(String::new()));
    }

    #[test]
    fn unknown_providers_and_bad_names_are_errors() {
        assert!(run("a: ${file:/etc/x}")
            .unwrap_err()
            .contains("unsupported config provider"));
        assert!(run("a: ${env:1BAD}")
            .unwrap_err()
            .contains("invalid environment variable"));
        assert!(run("a: ${env:X").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn defaults_may_hold_references() {
        // This was taken as the literal text `${env:PORT}` plus a stray `}`.
        let v = run("a: ${env:NOPE:-${env:PORT}}\nb: x${env:NOPE:-${env:NADA:-${env:HOST}}}y\nc: ${env:HOST:-${env:PORT}}").unwrap();
        assert_eq!(v["a"], Value::Number(4317.into()));
        assert_eq!(v["b"], Value::String("x0.0.0.0y".into()));
        assert_eq!(v["c"], Value::String("0.0.0.0".into()));
        let deep = format!("a: {}x{}", "${env:NOPE:-".repeat(50), "}".repeat(50));
        assert!(run(&deep).unwrap_err().contains("nested more than 8 deep"));
    }
}
