//! Entries as operators see them, and fields addressed in otelcol's
//! syntax: `body`, `body.x`, `attributes.x`, `attributes["log.file.name"]`,
//! `resource.x`.

use serde_json::{Map, Value};

/// One log entry on its way through the operators.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// The line, or what parsers made of it.
    pub body: Value,
    /// Log record attributes.
    pub attributes: Map<String, Value>,
    /// Resource attributes.
    pub resource: Map<String, Value>,
    /// When it happened (Unix ns), if a parser found out.
    pub timestamp: Option<u64>,
    /// OTLP severity number (0 = unset).
    pub severity: i32,
    /// The severity as written.
    pub severity_text: String,
}

/// Where a field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The body.
    Body,
    /// Record attributes.
    Attributes,
    /// Resource attributes.
    Resource,
}

/// A checked field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Which part of the entry.
    pub root: Root,
    /// Keys below it (empty: the body itself, or the whole map).
    pub keys: Vec<String>,
}

impl Field {
    /// Parses `body.a`, `attributes["a.b"].c`, `resource.x`.
    pub fn parse(s: &str) -> Result<Field, String> {
        let s = s.trim();
        let (root, mut rest) = [
            ("body", Root::Body),
            ("attributes", Root::Attributes),
            ("resource", Root::Resource),
        ]
        .iter()
        .find_map(|(name, root)| s.strip_prefix(name).map(|r| (*root, r)))
        .ok_or_else(|| format!("field {s:?} must start with body, attributes or resource"))?;
        let mut keys = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("[\"") {
                let end = r
                    .find("\"]")
                    .ok_or_else(|| format!("field {s:?}: unclosed [\""))?;
                keys.push(r[..end].to_string());
                rest = &r[end + 2..];
            } else if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(format!("field {s:?}: empty key"));
                }
                keys.push(r[..end].to_string());
                rest = &r[end..];
            } else {
                return Err(format!(
                    "field {s:?}: expected .key or [\"key\"] after {:?}",
                    &s[..s.len() - rest.len()]
                ));
            }
        }
        Ok(Field { root, keys })
    }

    fn map<'e>(&self, e: &'e mut Entry) -> Option<&'e mut Map<String, Value>> {
        match self.root {
            Root::Attributes => Some(&mut e.attributes),
            Root::Resource => Some(&mut e.resource),
            Root::Body => e.body.as_object_mut(),
        }
    }

    /// Whether it names a whole map (`attributes`, `resource`): only a
    /// parser's `parse_to` may.
    pub fn is_whole_map(&self) -> bool {
        self.root != Root::Body && self.keys.is_empty()
    }

    /// The value at this field.
    pub fn get<'e>(&self, e: &'e Entry) -> Option<&'e Value> {
        let (first, rest) = match self.root {
            Root::Body => {
                let mut v = &e.body;
                for k in &self.keys {
                    v = v.as_object()?.get(k)?;
                }
                return Some(v);
            }
            Root::Attributes => (&e.attributes, &self.keys[..]),
            Root::Resource => (&e.resource, &self.keys[..]),
        };
        let (k0, rest) = rest.split_first()?;
        let mut v = first.get(k0)?;
        for k in rest {
            v = v.as_object()?.get(k)?;
        }
        Some(v)
    }

    /// Takes the value out.
    pub fn take(&self, e: &mut Entry) -> Option<Value> {
        if self.root == Root::Body && self.keys.is_empty() {
            return Some(std::mem::replace(&mut e.body, Value::Null));
        }
        let (last, parents) = self.keys.split_last()?;
        let mut m = self.map(e)?;
        for k in parents {
            m = m.get_mut(k)?.as_object_mut()?;
        }
        m.remove(last)
    }

    /// Sets the value, making maps on the way.
    pub fn set(&self, e: &mut Entry, v: Value) {
        if self.root == Root::Body && self.keys.is_empty() {
            e.body = v;
            return;
        }
        if self.root == Root::Body && !e.body.is_object() {
            e.body = Value::Object(Map::new());
        }
        let Some((last, parents)) = self.keys.split_last() else {
            return;
        };
        let Some(mut m) = self.map(e) else { return };
        for k in parents {
            let slot = m
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            m = slot.as_object_mut().expect("made a map above");
        }
        m.insert(last.clone(), v);
    }

    /// Merges a map's keys into this field (a parser's `parse_to`;
    /// `attributes` and `resource` alone mean the whole map).
    pub fn merge(&self, e: &mut Entry, m: Map<String, Value>) {
        match (self.root, self.keys.is_empty()) {
            (Root::Attributes, true) => e.attributes.extend(m),
            (Root::Resource, true) => e.resource.extend(m),
            _ => {
                let mut cur = match self.get(e) {
                    Some(Value::Object(o)) => o.clone(),
                    _ => Map::new(),
                };
                cur.extend(m);
                self.set(e, Value::Object(cur));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_get_set_take() {
        let mut e = Entry {
            body: json!({"a": {"b": 1}}),
            ..Default::default()
        };
        let f = Field::parse("body.a.b").unwrap();
        assert_eq!(f.get(&e), Some(&json!(1)));
        let dotted = Field::parse("attributes[\"log.file.name\"]").unwrap();
        dotted.set(&mut e, json!("x.log"));
        assert_eq!(e.attributes["log.file.name"], "x.log");
        let r = Field::parse("resource.session.id").unwrap();
        let taken = f.take(&mut e).unwrap();
        r.set(&mut e, taken);
        assert_eq!(
            e.resource,
            json!({"session": {"id": 1}}).as_object().unwrap().clone()
        );
        assert_eq!(e.body, json!({"a": {}}));
        assert!(Field::parse("attributes").unwrap().is_whole_map());
        assert!(Field::parse("record.x").is_err());
        assert!(Field::parse("body..x").is_err());
    }
}
