//! The operators as otelcol wires them: each has an `id` (its type by
//! default) and hands entries to its `output` (the next one by default);
//! `router` sends each entry to the first route whose `expr` holds (else
//! `default`, else drops it); `recombine` joins consecutive entries of a
//! source into one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pipeline::component::ConfigError;
use serde_json::Value;

use super::expr::Expr;
use super::field::{Entry, Field};
use super::operators::{text, OnError, Operator, OperatorConfig};

/// One step of the chain.
#[derive(Debug)]
enum Step {
    Op(Operator),
    Router {
        routes: Vec<(Expr, usize)>,
        default: Option<usize>,
    },
    Recombine(Box<Recombine>),
}

/// `recombine`'s settings and what it holds per source.
#[derive(Debug)]
struct Recombine {
    field: Field,
    first: Option<Expr>,
    last: Option<Expr>,
    with: String,
    max_batch: usize,
    max_log_size: usize,
    flush: Duration,
    source: Field,
    max_sources: usize,
    newest: bool,
    held: Mutex<HashMap<String, (Vec<Entry>, Instant)>>,
}

/// The checked operators and how they connect.
#[derive(Debug)]
pub struct Chain {
    steps: Vec<Step>,
    /// Where each step's entries go next (`steps.len()`: out of the chain).
    next: Vec<usize>,
    /// Each step's `type`, for metrics and logs.
    pub names: Vec<String>,
}

/// Each operator's id and type. An id not given is its type, numbered
/// when taken (`move`, `move1`, `move2`), as otelcol's stanza does; an id
/// given twice is an error.
fn ids_and_types(cfgs: &[OperatorConfig]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, c) in cfgs.iter().enumerate() {
        let at = format!("operators.{i}");
        let ty = text(&c.0, "type")
            .map_err(|e| e.under(&at))?
            .ok_or_else(|| ConfigError::new(format!("{at}.type"), "is required"))?;
        let taken = |id: &str| seen.iter().any(|(s, _)| s == id);
        let id = match text(&c.0, "id").map_err(|e| e.under(&at))? {
            Some(id) if taken(&id) => {
                return Err(ConfigError::new(
                    format!("{at}.id"),
                    format!("{id:?} is taken by an earlier operator: give each one its own id"),
                ))
            }
            Some(id) => id,
            None => (0..)
                .map(|n| {
                    if n == 0 {
                        ty.clone()
                    } else {
                        format!("{ty}{n}")
                    }
                })
                .find(|id| !taken(id))
                .expect("some number is free"),
        };
        seen.push((id, ty));
    }
    Ok(seen)
}

impl Chain {
    /// Checks and wires `cfgs`.
    pub fn new(cfgs: &[OperatorConfig]) -> Result<Chain, ConfigError> {
        let ids = ids_and_types(cfgs)?;
        // An output must come later in the list: no cycles.
        let target = |from: usize, at: String, id: &str| -> Result<usize, ConfigError> {
            match ids.iter().position(|(x, _)| x == id) {
                Some(j) if j > from => Ok(j),
                Some(_) => Err(ConfigError::new(
                    at,
                    format!("{id:?} must come after this operator"),
                )),
                None => Err(ConfigError::new(
                    at,
                    format!("no operator has the id {id:?}"),
                )),
            }
        };
        let mut steps = Vec::new();
        let mut next = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            let at = format!("operators.{i}");
            let m = &c.0;
            next.push(match m.get("output") {
                None => i + 1,
                Some(serde_yaml::Value::String(o)) => target(i, format!("{at}.output"), o)?,
                Some(_) => {
                    return Err(ConfigError::new(
                        format!("{at}.output"),
                        "one operator id; lists (fan-out) are not supported yet",
                    ))
                }
            });
            let step = match ids[i].1.as_str() {
                "router" => router(m, i, &at, &target)?,
                "recombine" => Step::Recombine(Box::new(recombine(m).map_err(|e| e.under(&at))?)),
                _ => Step::Op(Operator::new(c).map_err(|e| e.under(&at))?),
            };
            steps.push(step);
        }
        Ok(Chain {
            steps,
            next,
            names: ids.into_iter().map(|(_, t)| t).collect(),
        })
    }

    /// Runs `e` through the chain from step `at`; what comes out goes to
    /// `out`. `failed(step, error, on_error)` hears of each failure.
    fn run_from(
        &self,
        mut at: usize,
        mut e: Entry,
        now: Instant,
        out: &mut Vec<Entry>,
        failed: &mut dyn FnMut(usize, &str, OnError),
    ) {
        while at < self.steps.len() {
            match &self.steps[at] {
                Step::Op(op) => {
                    if let Err(err) = op.apply(&mut e) {
                        failed(at, &err, op.on_error);
                        if matches!(op.on_error, OnError::Drop | OnError::DropQuiet) {
                            return;
                        }
                    }
                    at = self.next[at];
                }
                Step::Router { routes, default } => {
                    match routes
                        .iter()
                        .find(|(x, _)| x.is_true(&e))
                        .map(|r| r.1)
                        .or(*default)
                    {
                        Some(to) => at = to,
                        // No route and no default: dropped, as otelcol does.
                        None => return,
                    }
                }
                Step::Recombine(r) => {
                    for done in r.take(e, now) {
                        self.run_from(self.next[at], done, now, out, failed);
                    }
                    return;
                }
            }
        }
        out.push(e);
    }

    /// Runs one entry through.
    pub fn run(
        &self,
        e: Entry,
        now: Instant,
        out: &mut Vec<Entry>,
        failed: &mut dyn FnMut(usize, &str, OnError),
    ) {
        self.run_from(0, e, now, out, failed);
    }

    /// What `recombine` held longer than its `force_flush_period` goes on.
    pub fn tick(
        &self,
        now: Instant,
        out: &mut Vec<Entry>,
        failed: &mut dyn FnMut(usize, &str, OnError),
    ) {
        for (i, s) in self.steps.iter().enumerate() {
            if let Step::Recombine(r) = s {
                for done in r.due(now) {
                    self.run_from(self.next[i], done, now, out, failed);
                }
            }
        }
    }
}

type Target<'a> = dyn Fn(usize, String, &str) -> Result<usize, ConfigError> + 'a;

fn router(
    m: &serde_yaml::Mapping,
    i: usize,
    at: &str,
    target: &Target,
) -> Result<Step, ConfigError> {
    for k in m.keys() {
        let k = k.as_str().unwrap_or("");
        if !["type", "id", "routes", "default"].contains(&k) {
            return Err(ConfigError::new(
                format!("{at}.{k}"),
                "unknown key; router takes routes and default",
            ));
        }
    }
    let routes = m
        .get("routes")
        .and_then(|r| r.as_sequence())
        .ok_or_else(|| {
            ConfigError::new(
                format!("{at}.routes"),
                "is required: a list of {output, expr}",
            )
        })?;
    let routes = routes
        .iter()
        .enumerate()
        .map(|(j, r)| {
            let rat = format!("{at}.routes.{j}");
            let r = r
                .as_mapping()
                .ok_or_else(|| ConfigError::new(&rat, "must be a mapping"))?;
            if r.contains_key("attributes") {
                return Err(ConfigError::new(
                    format!("{rat}.attributes"),
                    "is not supported yet",
                ));
            }
            let expr = text(r, "expr")
                .map_err(|e| e.under(&rat))?
                .ok_or_else(|| ConfigError::new(format!("{rat}.expr"), "is required"))?;
            let expr =
                Expr::parse(&expr).map_err(|e| ConfigError::new(format!("{rat}.expr"), e))?;
            let out = text(r, "output")
                .map_err(|e| e.under(&rat))?
                .ok_or_else(|| ConfigError::new(format!("{rat}.output"), "is required"))?;
            Ok((expr, target(i, format!("{rat}.output"), &out)?))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default = match m.get("default") {
        None => None,
        Some(serde_yaml::Value::String(d)) => Some(target(i, format!("{at}.default"), d)?),
        Some(_) => return Err(ConfigError::new(format!("{at}.default"), "one operator id")),
    };
    Ok(Step::Router { routes, default })
}

fn recombine(m: &serde_yaml::Mapping) -> Result<Recombine, ConfigError> {
    let keys = [
        "type",
        "id",
        "output",
        "combine_field",
        "is_first_entry",
        "is_last_entry",
        "combine_with",
        "max_batch_size",
        "max_log_size",
        "force_flush_period",
        "source_identifier",
        "max_sources",
        "overwrite_with",
    ];
    for k in m.keys() {
        let k = k.as_str().unwrap_or("");
        if !keys.contains(&k) {
            return Err(ConfigError::new(k, "unknown key for recombine"));
        }
    }
    let expr = |k: &str| -> Result<Option<Expr>, ConfigError> {
        text(m, k)?
            .map(|s| Expr::parse(&s).map_err(|e| ConfigError::new(k, e)))
            .transpose()
    };
    let (first, last) = (expr("is_first_entry")?, expr("is_last_entry")?);
    if first.is_some() == last.is_some() {
        return Err(ConfigError::new(
            "is_first_entry",
            "give exactly one of is_first_entry and is_last_entry",
        ));
    }
    let field = |k: &str, default: &str| -> Result<Field, ConfigError> {
        Field::parse(&text(m, k)?.unwrap_or_else(|| default.into()))
            .map_err(|e| ConfigError::new(k, e))
    };
    let number = |k: &str, default: u64| -> Result<u64, ConfigError> {
        match m.get(k) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ConfigError::new(k, "must be a whole number")),
        }
    };
    let flush = match text(m, "force_flush_period")? {
        None => Duration::from_secs(5),
        Some(s) => {
            pipeline::duration::parse(&s).map_err(|e| ConfigError::new("force_flush_period", e))?
        }
    };
    let combine = text(m, "combine_field")?
        .ok_or_else(|| ConfigError::new("combine_field", "is required"))?;
    Ok(Recombine {
        field: Field::parse(&combine).map_err(|e| ConfigError::new("combine_field", e))?,
        first,
        last,
        with: text(m, "combine_with")?.unwrap_or_else(|| "\n".into()),
        max_batch: number("max_batch_size", 1000)?.max(1) as usize,
        max_log_size: number("max_log_size", 0)? as usize,
        flush,
        source: field("source_identifier", "attributes[\"log.file.path\"]")?,
        max_sources: number("max_sources", 1000)?.max(1) as usize,
        newest: match text(m, "overwrite_with")?.as_deref() {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(o) => {
                return Err(ConfigError::new(
                    "overwrite_with",
                    format!("{o:?}: use oldest or newest"),
                ))
            }
        },
        held: Mutex::new(HashMap::new()),
    })
}

impl Recombine {
    fn key(&self, e: &Entry) -> String {
        match self.source.get(e) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "DefaultSourceIdentifier".into(),
        }
    }

    /// Takes an entry; returns the entries it completes.
    fn take(&self, e: Entry, now: Instant) -> Vec<Entry> {
        let key = self.key(&e);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let starts = self.first.as_ref().is_some_and(|f| f.is_true(&e));
        if starts {
            if let Some((batch, _)) = held.remove(&key) {
                out.push(self.combine(batch));
            }
        }
        let ends = self.last.as_ref().is_some_and(|l| l.is_true(&e));
        if !held.contains_key(&key) && held.len() >= self.max_sources {
            // Over max_sources: the oldest source goes out as it is.
            if let Some(oldest) = held
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                let (batch, _) = held.remove(&oldest).expect("found above");
                out.push(self.combine(batch));
            }
        }
        let slot = held.entry(key.clone()).or_insert_with(|| (Vec::new(), now));
        slot.0.push(e);
        slot.1 = now;
        let size: usize = slot.0.iter().map(|x| self.text_of(x).len()).sum();
        let full =
            slot.0.len() >= self.max_batch || (self.max_log_size > 0 && size >= self.max_log_size);
        if ends || full {
            let (batch, _) = held.remove(&key).expect("just added");
            out.push(self.combine(batch));
        }
        out
    }

    /// Batches not added to for `force_flush_period`.
    fn due(&self, now: Instant) -> Vec<Entry> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<String> = held
            .iter()
            .filter(|(_, (_, t))| now.duration_since(*t) >= self.flush)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| held.remove(&k))
            .map(|(batch, _)| self.combine(batch))
            .collect()
    }

    fn text_of(&self, e: &Entry) -> String {
        match self.field.get(e) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    fn combine(&self, mut batch: Vec<Entry>) -> Entry {
        let joined = batch
            .iter()
            .map(|e| self.text_of(e))
            .collect::<Vec<_>>()
            .join(&self.with);
        let mut base = if self.newest {
            batch.pop().expect("a batch has entries")
        } else {
            batch.swap_remove(0)
        };
        self.field.set(&mut base, Value::String(joined));
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(yaml: &str) -> Result<Chain, ConfigError> {
        Chain::new(&serde_yaml::from_str::<Vec<OperatorConfig>>(yaml).unwrap())
    }

    fn run(c: &Chain, lines: &[&str], now: Instant) -> Vec<Entry> {
        let mut out = Vec::new();
        for l in lines {
            let e = Entry {
                body: json!(l),
                ..Default::default()
            };
            c.run(e, now, &mut out, &mut |_, _, _| {});
        }
        out
    }

    #[test]
    fn a_router_sends_each_entry_down_its_route() {
        let c = chain(
            r#"
- type: router
  routes:
    - {output: json, expr: 'body matches "^\\{"'}
  default: plain
- {type: json_parser, id: json, output: tag}
- {type: regex_parser, id: plain, regex: '^(?P<level>\w+) (?P<msg>.*)$'}
- {type: add, id: tag, field: attributes.routed, value: true}
"#,
        )
        .unwrap();
        let out = run(&c, &[r#"{"a": 1}"#, "INFO started"], Instant::now());
        assert_eq!(out[0].attributes.get("a"), Some(&json!(1)));
        assert_eq!(out[0].attributes.get("routed"), Some(&json!(true)));
        assert_eq!(out[1].attributes.get("level"), Some(&json!("INFO")));
        assert_eq!(out[1].attributes.get("routed"), Some(&json!(true)));
        // No route and no default: dropped.
        let c = chain("- type: router\n  routes: [{output: x, expr: 'body == \"x\"'}]\n- {type: add, id: x, field: attributes.x, value: 1}\n").unwrap();
        assert_eq!(run(&c, &["y", "x"], Instant::now()).len(), 1);
    }

    #[test]
    fn recombine_joins_a_stack_trace_and_flushes_what_waits() {
        let c = chain("- type: recombine\n  combine_field: body\n  is_first_entry: 'body matches \"^[^\\\\s]\"'\n  force_flush_period: 1s\n").unwrap();
        let t0 = Instant::now();
        let out = run(
            &c,
            &["Exception: boom", "  at a()", "  at b()", "next line"],
            t0,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body, json!("Exception: boom\n  at a()\n  at b()"));
        let mut later = Vec::new();
        c.tick(
            t0 + Duration::from_millis(500),
            &mut later,
            &mut |_, _, _| {},
        );
        assert!(later.is_empty());
        c.tick(t0 + Duration::from_secs(2), &mut later, &mut |_, _, _| {});
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].body, json!("next line"));
    }

    #[test]
    fn wiring_mistakes_are_named() {
        let err = |y: &str| chain(y).unwrap_err();
        assert_eq!(
            err("- {type: add, field: body.x, value: 1, output: nope}").path,
            "operators.0.output"
        );
        assert_eq!(err("- {type: add, id: a, field: body.x, value: 1}\n- {type: add, id: b, field: body.y, value: 1, output: a}").path, "operators.1.output");
        assert_eq!(err("- {type: add, id: a, field: body.x, value: 1}\n- {type: add, id: a, field: body.y, value: 1}").path, "operators.1.id");
        // Ids not given are numbered, as stanza does.
        let c = chain("- {type: add, field: body.x, value: 1}\n- {type: add, field: body.y, value: 1}\n- {type: remove, field: body.x, output: add1}\n- {type: add, field: body.z, value: 1}").unwrap_err();
        assert_eq!(c.path, "operators.2.output");
        assert_eq!(
            err("- {type: recombine, combine_field: body}").path,
            "operators.0.is_first_entry"
        );
        assert_eq!(err("- type: router\n  routes: [{output: x, expr: 'len(body) > 1'}]\n- {type: add, id: x, field: body.x, value: 1}").path, "operators.0.routes.0.expr");
    }
}
