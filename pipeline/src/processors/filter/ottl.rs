//! The OTTL subset `filter` understands: boolean conditions over the paths
//! of one context, parsed once at config time. Anything outside the subset
//! is refused with the reason, never ignored.
//!
//! Grammar: `expr := and ("or" and)*`, `and := not ("and" not)*`,
//! `not := "not" not | "(" expr ")" | "true" | "false" | call | value op value`,
//! with `op` one of `== != < <= > >=`, values being paths, string, int,
//! float, `true`/`false`/`nil` literals and enum names.

use regex::Regex;

/// The OTTL context a condition runs in (one per config list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// `traces.span`.
    Span,
    /// `traces.spanevent`.
    SpanEvent,
    /// `logs.log_record`.
    Log,
    /// `metrics.metric`.
    Metric,
    /// `metrics.datapoint`.
    DataPoint,
}

impl Context {
    /// The name a path may be prefixed with (`span.name`).
    fn prefix(self) -> &'static str {
        match self {
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Log => "log",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
        }
    }

    /// Plain (non-map) paths of this context.
    fn fields(self) -> &'static [(&'static str, Path)] {
        use Path::*;
        match self {
            Context::Span => &[
                ("name", Name),
                ("kind", Kind),
                ("status.code", StatusCode),
                ("status.message", StatusMessage),
                ("start_time_unix_nano", StartTime),
                ("end_time_unix_nano", EndTime),
            ],
            Context::SpanEvent => &[("name", Name), ("time_unix_nano", StartTime)],
            Context::Log => &[
                ("body", Body),
                ("severity_number", SeverityNumber),
                ("severity_text", SeverityText),
                ("event_name", Name),
                ("time_unix_nano", StartTime),
            ],
            Context::Metric => &[
                ("name", Name),
                ("description", Description),
                ("unit", Unit),
                ("type", MetricType),
            ],
            Context::DataPoint => &[
                ("metric.name", Name),
                ("metric.description", Description),
                ("metric.unit", Unit),
                ("metric.type", MetricType),
                ("time_unix_nano", StartTime),
            ],
        }
    }

    /// Map paths (`attributes["k"]`) of this context.
    fn maps(self) -> &'static [MapPath] {
        let common: &'static [MapPath] = &[
            ("resource.attributes", Path::ResourceAttr),
            ("instrumentation_scope.attributes", Path::ScopeAttr),
        ];
        match self {
            Context::Metric => common,
            _ => &[
                ("attributes", Path::Attr),
                ("resource.attributes", Path::ResourceAttr),
                ("instrumentation_scope.attributes", Path::ScopeAttr),
            ],
        }
    }

    /// Functions available here.
    fn functions(self) -> &'static [&'static str] {
        match self {
            Context::Span => &["IsMatch", "IsRootSpan"],
            Context::Metric => &["IsMatch", "HasAttrKeyOnDatapoint", "HasAttrOnDatapoint"],
            _ => &["IsMatch"],
        }
    }
}

/// A map path's text and the path it makes for a key.
type MapPath = (&'static str, fn(String) -> Path);

/// Scope paths shared by every context.
const SCOPE_FIELDS: [(&str, Path); 2] = [
    ("instrumentation_scope.name", Path::ScopeName),
    ("instrumentation_scope.version", Path::ScopeVersion),
];

/// What a path reads. Several contexts share a variant where the field
/// plays the same part (`Name` is a span's, an event's or a metric's name).
#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    /// The item's name (span, event, metric; a log's `event_name`).
    Name,
    /// Span kind.
    Kind,
    /// Span status code.
    StatusCode,
    /// Span status message.
    StatusMessage,
    /// Start time (span) or time (event, log, data point).
    StartTime,
    /// Span end time.
    EndTime,
    /// Log body.
    Body,
    /// Log severity number.
    SeverityNumber,
    /// Log severity text.
    SeverityText,
    /// Metric description.
    Description,
    /// Metric unit.
    Unit,
    /// Metric data type (`METRIC_DATA_TYPE_*`).
    MetricType,
    /// An attribute of the item.
    Attr(String),
    /// An attribute of its resource.
    ResourceAttr(String),
    /// Its instrumentation scope's name.
    ScopeName,
    /// Its instrumentation scope's version.
    ScopeVersion,
    /// An attribute of its instrumentation scope.
    ScopeAttr(String),
}

/// A value read from an item or written as a literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    /// Absent.
    Nil,
    /// A string.
    Str(&'a str),
    /// An integer (enums too).
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// A map, array or bytes value, named for messages.
    Other(&'static str),
}

/// A literal in a condition.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Nil,
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A constant.
    Lit(LitValue),
    /// A path read from the item.
    Path(Path),
}

/// A literal value (kept opaque so the parser owns its forms).
#[derive(Debug, Clone, PartialEq)]
pub struct LitValue(Lit);

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub enum Expr {
    /// `true` / `false`.
    Const(bool),
    /// Any of.
    Or(Vec<Expr>),
    /// All of.
    And(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `a op b`.
    Cmp(Operand, Op, Operand),
    /// `IsMatch(target, "regex")`.
    IsMatch(Operand, Regex),
    /// `IsRootSpan()`.
    IsRootSpan,
    /// `HasAttrKeyOnDatapoint(key)` / `HasAttrOnDatapoint(key, value)`.
    PointAttr(String, Option<String>),
}

/// What an item offers to conditions.
pub trait View {
    /// The value at `path` (`Nil` when absent).
    fn get(&self, path: &Path) -> Val<'_>;
    /// Whether the item is a root span.
    fn is_root(&self) -> bool {
        false
    }
    /// Whether any data point of the metric has attribute `key` (equal to
    /// `value` when given).
    fn point_attr(&self, _key: &str, _value: Option<&str>) -> bool {
        false
    }
}

impl Expr {
    /// Evaluates against an item; an error names what could not be done.
    pub fn eval(&self, v: &dyn View) -> Result<bool, String> {
        Ok(match self {
            Expr::Const(b) => *b,
            Expr::Or(xs) => {
                for x in xs {
                    if x.eval(v)? {
                        return Ok(true);
                    }
                }
                false
            }
            Expr::And(xs) => {
                for x in xs {
                    if !x.eval(v)? {
                        return Ok(false);
                    }
                }
                true
            }
            Expr::Not(x) => !x.eval(v)?,
            Expr::Cmp(a, op, b) => compare(operand(a, v), *op, operand(b, v)),
            Expr::IsMatch(target, re) => match operand(target, v) {
                Val::Nil => false,
                Val::Str(s) => re.is_match(s),
                Val::Int(i) => re.is_match(&i.to_string()),
                Val::Double(d) => re.is_match(&d.to_string()),
                Val::Bool(b) => re.is_match(if b { "true" } else { "false" }),
                Val::Other(kind) => return Err(format!("IsMatch: target is {kind}, not a string")),
            },
            Expr::IsRootSpan => v.is_root(),
            Expr::PointAttr(k, val) => v.point_attr(k, val.as_deref()),
        })
    }
}

fn operand<'a>(o: &'a Operand, v: &'a dyn View) -> Val<'a> {
    match o {
        Operand::Path(p) => v.get(p),
        Operand::Lit(LitValue(l)) => match l {
            Lit::Nil => Val::Nil,
            Lit::Str(s) => Val::Str(s),
            Lit::Int(i) => Val::Int(*i),
            Lit::Double(d) => Val::Double(*d),
            Lit::Bool(b) => Val::Bool(*b),
        },
    }
}

/// OTTL's comparison: values of different kinds are unequal (and never
/// ordered), except ints and doubles, which compare as numbers.
pub fn compare(a: Val, op: Op, b: Val) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Nil, Val::Nil) => Some(Ordering::Equal),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (Val::Int(x), Val::Double(y)) => (x as f64).partial_cmp(&y),
        (Val::Double(x), Val::Int(y)) => x.partial_cmp(&(y as f64)),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(&y),
        (Val::Bool(x), Val::Bool(y)) => {
            return match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                _ => false,
            }
        }
        _ => None,
    };
    match (ord, op) {
        (None, Op::Ne) => true,
        (None, _) => false,
        (Some(o), Op::Eq) => o == Ordering::Equal,
        (Some(o), Op::Ne) => o != Ordering::Equal,
        (Some(o), Op::Lt) => o == Ordering::Less,
        (Some(o), Op::Le) => o != Ordering::Greater,
        (Some(o), Op::Gt) => o == Ordering::Greater,
        (Some(o), Op::Ge) => o != Ordering::Less,
    }
}

/// Enum names and their values, as OTTL defines them.
fn enum_value(name: &str) -> Option<i64> {
    const NAMED: [(&str, i64); 18] = [
        ("SPAN_KIND_UNSPECIFIED", 0),
        ("SPAN_KIND_INTERNAL", 1),
        ("SPAN_KIND_SERVER", 2),
        ("SPAN_KIND_CLIENT", 3),
        ("SPAN_KIND_PRODUCER", 4),
        ("SPAN_KIND_CONSUMER", 5),
        ("STATUS_CODE_UNSET", 0),
        ("STATUS_CODE_OK", 1),
        ("STATUS_CODE_ERROR", 2),
        ("METRIC_DATA_TYPE_NONE", 0),
        ("METRIC_DATA_TYPE_GAUGE", 1),
        ("METRIC_DATA_TYPE_SUM", 2),
        ("METRIC_DATA_TYPE_HISTOGRAM", 3),
        ("METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM", 4),
        ("METRIC_DATA_TYPE_SUMMARY", 5),
        ("AGGREGATION_TEMPORALITY_UNSPECIFIED", 0),
        ("AGGREGATION_TEMPORALITY_DELTA", 1),
        ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
    ];
    if let Some((_, v)) = NAMED.iter().find(|(n, _)| *n == name) {
        return Some(*v);
    }
    // SEVERITY_NUMBER_UNSPECIFIED = 0, then TRACE..FATAL with 1-4 each.
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let (level, n) = match rest.char_indices().find(|(_, c)| c.is_ascii_digit()) {
        Some((at, _)) => (&rest[..at], rest[at..].parse::<i64>().ok()?),
        None => (rest, 1),
    };
    let base = levels.iter().position(|l| *l == level)? as i64;
    (1..=4).contains(&n).then_some(base * 4 + n)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Double(f64),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' | b')' | b'[' | b']' | b',' | b'.' => {
                out.push(match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b',' => Tok::Comma,
                    _ => Tok::Dot,
                });
                i += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = b.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'=', true) => Op::Eq,
                    (b'!', true) => Op::Ne,
                    (b'<', true) => Op::Le,
                    (b'>', true) => Op::Ge,
                    (b'<', false) => Op::Lt,
                    (b'>', false) => Op::Gt,
                    _ => return Err(format!("unexpected {:?} at column {}", c as char, i + 1)),
                };
                out.push(Tok::Op(op));
                i += if two { 2 } else { 1 };
            }
            b'"' => {
                let mut s = String::new();
                let mut chars = src[i + 1..].char_indices();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some((at, '"')) => {
                            i += at + 2;
                            break;
                        }
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, c @ ('"' | '\\'))) => s.push(c),
                            // Regexes keep their escapes: `\d` stays `\d`.
                            Some((_, c)) => {
                                s.push('\\');
                                s.push(c);
                            }
                            None => return Err("unterminated string".into()),
                        },
                        Some((_, c)) => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            b'-' | b'+' | b'*' | b'/'
                if !b.get(i + 1).is_some_and(u8::is_ascii_digit) || c == b'*' || c == b'/' =>
            {
                return Err(format!(
                    "arithmetic ({:?} at column {}) is not in the supported OTTL subset",
                    c as char,
                    i + 1
                ));
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                let text = &src[start..i];
                out.push(if let Ok(n) = text.parse::<i64>() {
                    Tok::Int(n)
                } else if let Ok(d) = text.parse::<f64>() {
                    Tok::Double(d)
                } else {
                    return Err(format!("{text:?} is not a number"));
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(src[start..i].to_string()));
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} at column {}", i + 1));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    ctx: Context,
}

/// Parses a condition for `ctx`; the error says what is not understood and
/// what is.
pub fn parse(src: &str, ctx: Context) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
        ctx,
    };
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {} after the condition", describe(t)));
    }
    Ok(e)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Double(d) => format!("number {d}"),
        Tok::Op(op) => format!("operator {op:?}"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or("the condition ends too early")?;
        self.at += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Tok) -> Result<(), String> {
        let t = self.next()?;
        if t == want {
            Ok(())
        } else {
            Err(format!(
                "expected {}, found {}",
                describe(&want),
                describe(&t)
            ))
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut xs = vec![self.and()?];
        while self.keyword("or") {
            xs.push(self.and()?);
        }
        Ok(if xs.len() == 1 {
            xs.pop().unwrap()
        } else {
            Expr::Or(xs)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut xs = vec![self.not()?];
        while self.keyword("and") {
            xs.push(self.not()?);
        }
        Ok(if xs.len() == 1 {
            xs.pop().unwrap()
        } else {
            Expr::And(xs)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.at += 1;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        if let Some(Tok::Ident(name)) = self.peek() {
            if self.toks.get(self.at + 1) == Some(&Tok::LParen) {
                let name = name.clone();
                self.at += 2;
                return self.call(&name);
            }
        }
        let left = self.operand()?;
        match self.peek() {
            Some(Tok::Op(op)) => {
                let op = *op;
                self.at += 1;
                let right = self.operand()?;
                Ok(Expr::Cmp(left, op, right))
            }
            _ => match left {
                Operand::Lit(LitValue(Lit::Bool(b))) => Ok(Expr::Const(b)),
                _ => Err(
                    "a value alone is not a condition: compare it (==, !=, <, <=, >, >=) \
                     or call IsMatch"
                        .into(),
                ),
            },
        }
    }

    fn string_arg(&mut self, func: &str) -> Result<String, String> {
        match self.next()? {
            Tok::Str(s) => Ok(s),
            t => Err(format!("{func}: expected a string, found {}", describe(&t))),
        }
    }

    /// After `name(`.
    fn call(&mut self, name: &str) -> Result<Expr, String> {
        if !self.ctx.functions().contains(&name) {
            return Err(format!(
                "unsupported OTTL function `{name}` in the {} context; supported: {}",
                self.ctx.prefix(),
                self.ctx.functions().join(", ")
            ));
        }
        let e = match name {
            "IsMatch" => {
                let target = self.operand()?;
                self.expect(Tok::Comma)?;
                let pattern = self.string_arg(name)?;
                let re = Regex::new(&pattern)
                    .map_err(|e| format!("IsMatch: invalid regex {pattern:?}: {e}"))?;
                Expr::IsMatch(target, re)
            }
            "IsRootSpan" => Expr::IsRootSpan,
            "HasAttrKeyOnDatapoint" => Expr::PointAttr(self.string_arg(name)?, None),
            _ => {
                let key = self.string_arg(name)?;
                self.expect(Tok::Comma)?;
                Expr::PointAttr(key, Some(self.string_arg(name)?))
            }
        };
        self.expect(Tok::RParen)?;
        Ok(e)
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let lit = |l| Ok(Operand::Lit(LitValue(l)));
        match self.next()? {
            Tok::Str(s) => lit(Lit::Str(s)),
            Tok::Int(i) => lit(Lit::Int(i)),
            Tok::Double(d) => lit(Lit::Double(d)),
            Tok::Ident(w) if w == "true" || w == "false" => lit(Lit::Bool(w == "true")),
            Tok::Ident(w) if w == "nil" => lit(Lit::Nil),
            Tok::Ident(w)
                if w.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()) =>
            {
                match enum_value(&w) {
                    Some(v) => lit(Lit::Int(v)),
                    None => Err(format!("unknown enum `{w}`")),
                }
            }
            Tok::Ident(first) => self.path(first).map(Operand::Path),
            t => Err(format!("expected a value, found {}", describe(&t))),
        }
    }

    fn path(&mut self, first: String) -> Result<Path, String> {
        let mut text = first;
        while self.peek() == Some(&Tok::Dot) {
            self.at += 1;
            match self.next()? {
                Tok::Ident(s) => {
                    text.push('.');
                    text.push_str(&s);
                }
                t => return Err(format!("expected a name after `.`, found {}", describe(&t))),
            }
        }
        let ctx = self.ctx;
        // OTTL's context-qualified form: `span.name` in the span context.
        let bare = text
            .strip_prefix(ctx.prefix())
            .and_then(|r| r.strip_prefix('.'))
            .filter(|r| {
                ctx.fields().iter().any(|(n, _)| n == r) || ctx.maps().iter().any(|(n, _)| n == r)
            })
            .unwrap_or(&text)
            .to_string();
        if self.peek() == Some(&Tok::LBracket) {
            self.at += 1;
            let key = match self.next()? {
                Tok::Str(s) => s,
                t => {
                    return Err(format!(
                        "{text}[...]: expected a string key, found {}",
                        describe(&t)
                    ))
                }
            };
            self.expect(Tok::RBracket)?;
            if self.peek() == Some(&Tok::LBracket) {
                return Err(format!(
                    "{text}[{key:?}][...]: nested map keys are not supported"
                ));
            }
            return match ctx.maps().iter().find(|(n, _)| *n == bare) {
                Some((_, make)) => Ok(make(key)),
                None => Err(self.unknown_path(&text)),
            };
        }
        ctx.fields()
            .iter()
            .chain(SCOPE_FIELDS.iter())
            .find(|(n, _)| *n == bare)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| self.unknown_path(&text))
    }

    fn unknown_path(&self, text: &str) -> String {
        let mut known: Vec<String> = self
            .ctx
            .fields()
            .iter()
            .chain(SCOPE_FIELDS.iter())
            .map(|(n, _)| n.to_string())
            .collect();
        known.extend(self.ctx.maps().iter().map(|(n, _)| format!("{n}[\"key\"]")));
        format!(
            "unsupported path `{text}` in the {} context; supported: {}",
            self.ctx.prefix(),
            known.join(", ")
        )
    }
}
